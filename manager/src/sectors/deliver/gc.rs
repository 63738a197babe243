//! Outbox garbage collection: deletes the entries every target, running or not, has acknowledged.

use std::time::Duration;

use super::super::outbox;
use super::Shared;

/// The least time between two deleting passes. A pass starts after the seq the previous one collected through,
/// so it never walks over the deletion markers of earlier passes (RocksDB keeps them until a flush; scanning them
/// from the outbox's start once made GC the largest CPU cost of `ReportState`). Deleting less often only keeps
/// delivered entries a little longer, and puts more deletions in each synced transaction.
const GC_INTERVAL: Duration = Duration::from_millis(250);

/// The smallest persisted cursor of a target that is not running now (`u64::MAX` when there is none).
fn absent_targets_floor(shared: &Shared) -> u64 {
    let running = shared.cursors();
    match outbox::persisted_cursors(&*shared.sectors.store) {
        Ok(cursors) => cursors
            .into_iter()
            .filter(|(name, _)| !running.contains_key(name))
            .map(|(_, seq)| seq)
            .min()
            .unwrap_or(u64::MAX),
        Err(err) => {
            tracing::warn!(error = %err, "cannot read delivery cursors; keeping the outbox for now");
            0
        }
    }
}

/// Deletes outbox entries every current target has acknowledged, or, without targets, every committed entry;
/// in both cases never past the cursor of a target that is not running now (a plugin refused or failing in this
/// run keeps its backlog). Such a cursor is retired only explicitly ([`StateManager::retire_sync_cursor`]).
pub(super) fn collect_garbage(shared: &Shared) {
    let sequencer = &shared.sectors.sequencer;
    let signal = if shared.targets == 0 { sequencer.signal() } else { &shared.cursor_moved };
    let mut collected_through = 0;
    loop {
        let seen = signal.generation();
        if shared.is_stopping() {
            break;
        }
        let through = if shared.targets == 0 {
            Some(sequencer.horizon())
        } else {
            let cursors = shared.cursors();
            // Until every target has loaded its cursor, the smallest one is unknown.
            (cursors.len() == shared.targets).then(|| cursors.values().copied().min().unwrap_or(0))
        };
        let through = through.map(|through| through.min(absent_targets_floor(shared)));
        if let Some(through) = through.filter(|&through| through > collected_through) {
            match outbox::delete_through(&*shared.sectors.store, collected_through, through) {
                Ok(deleted) => {
                    collected_through = through;
                    if deleted > 0 {
                        tracing::debug!(deleted, through, "collected delivered outbox entries");
                    }
                }
                Err(err) => tracing::warn!(error = %err, "cannot delete delivered outbox entries; retrying later"),
            }
            if shared.pause(GC_INTERVAL) {
                break;
            }
        }
        signal.wait_past(seen, shared.options.poll_interval);
    }
}
