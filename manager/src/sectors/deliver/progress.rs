//! One target's delivery progress, shared between its delivery thread, the watchdog and operator requests.
//!
//! The lag is kept incrementally: `pending` counts the outbox entries in `(cursor, counted_through]`. A target
//! whose cursor is inside the feed's window takes the count from the window (`feed`: no store access). Behind
//! it, entries committed later are counted once, when the horizon passes them ([`WorkerState::count_new`]), and
//! each delivered entry takes one off. So the whole life of an entry costs at most one counting visit, never a
//! rescan of the backlog.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use manager_plugin::kv::{KvError, KvStore};

use super::super::outbox;
use super::{EventTarget, Shared};

/// The hook call running now.
#[derive(Debug, Clone, Copy)]
pub(super) struct InFlight {
    pub(super) seq: u64,
    pub(super) began: Instant,
    /// Unix seconds, for display.
    pub(super) began_unix: u64,
}

/// What became of an operator's skip request.
#[derive(Debug, Clone)]
pub(super) enum SkipOutcome {
    /// The event was saved to this file and the cursor moved past it.
    Skipped(PathBuf),
    /// The event could not be saved; it was not skipped.
    Failed(String),
    /// The event was delivered after all before the skip applied.
    Delivered,
    /// The event was the first of this many handed over in one call, which failed: which one was stuck is not
    /// known, so none was skipped.
    InBatch(usize),
}

/// A target's progress.
#[derive(Debug, Default)]
pub(super) struct Progress {
    /// Last acknowledged seq.
    pub(super) cursor: u64,
    /// Last persisted cursor.
    pub(super) persisted: u64,
    /// When it was written (this run).
    pub(super) persisted_at: Option<std::time::Instant>,
    /// Outbox entries with `cursor < seq <= counted_through`.
    pub(super) pending: u64,
    pub(super) counted_through: u64,
    /// The hook call running now, if any.
    pub(super) in_flight: Option<InFlight>,
    /// The event whose delivery failed and is being retried.
    pub(super) failing: Option<u64>,
    /// Events up to this seq are delivered one per call: the rest of a batch in which one failed.
    pub(super) single_through: u64,
    /// An operator asked to skip this event.
    pub(super) skip: Option<u64>,
    /// The outcome of the last skip request, by seq.
    pub(super) skip_outcome: Option<(u64, SkipOutcome)>,
    /// The running hook was reported hung.
    pub(super) hung_reported: bool,
    /// How many backlog warning thresholds `pending` is above.
    pub(super) backlog_level: u32,
}

impl Progress {
    /// The cursor moves past entry `seq`, the next one after it.
    pub(super) fn advance(&mut self, seq: u64) {
        if seq <= self.counted_through {
            self.pending = self.pending.saturating_sub(1);
        } else {
            // Everything counted was at or below the old cursor's successors: nothing counted is left.
            self.counted_through = seq;
            self.pending = 0;
        }
        self.cursor = seq;
    }

    /// The cursor moves to `seq`, past no entry (none lies between the cursor and it).
    pub(super) fn pass_empty(&mut self, seq: u64) {
        if seq > self.counted_through {
            self.counted_through = seq;
            self.pending = 0;
        }
        self.cursor = self.cursor.max(seq);
    }
}

/// One target with its progress.
pub(super) struct WorkerState {
    pub(super) name: String,
    pub(super) target: Arc<dyn EventTarget>,
    progress: Mutex<Progress>,
    /// Notified on stop requests, skip requests and skip outcomes.
    pub(super) changed: Condvar,
}

impl WorkerState {
    pub(super) fn new(name: String, target: Arc<dyn EventTarget>) -> WorkerState {
        WorkerState { name, target, progress: Mutex::default(), changed: Condvar::new() }
    }

    pub(super) fn progress(&self) -> MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The pending total: taken from the feed's window when the cursor is inside it (no store access), else
    /// counted in the outbox ([`count_new`](Self::count_new)).
    pub(super) fn count_pending(&self, shared: &Shared) -> Result<u64, KvError> {
        let cursor = self.progress().cursor;
        let Some((pending, through)) = shared.feed.pending_after(cursor) else {
            return self.count_new(&*shared.sectors.store, shared.sectors.sequencer.horizon());
        };
        let mut progress = self.progress();
        if progress.cursor == cursor {
            progress.pending = pending;
            progress.counted_through = through;
        }
        Ok(progress.pending)
    }

    /// Counts the entries committed since the last count (up to `horizon`) and returns the pending total.
    /// Visits only new entries; a concurrent count or a cursor that overtook the count makes this one a no-op.
    pub(super) fn count_new(&self, store: &dyn KvStore, horizon: u64) -> Result<u64, KvError> {
        let from = {
            let progress = self.progress();
            if progress.counted_through >= horizon {
                return Ok(progress.pending);
            }
            progress.counted_through.max(progress.cursor)
        };
        let mut added = 0u64;
        outbox::visit_after(store, from, horizon, &mut |_, _| {
            added += 1;
            true
        })?;
        let mut progress = self.progress();
        if progress.counted_through.max(progress.cursor) == from {
            progress.pending = progress.pending.saturating_add(added);
            progress.counted_through = horizon;
        }
        Ok(progress.pending)
    }
}

/// Unix seconds now.
pub(super) fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// How many of the thresholds `first`, `10 × first`, `100 × first`… `pending` has reached.
pub(super) fn backlog_level(pending: u64, first: u64) -> u32 {
    if first == 0 {
        return 0;
    }
    let mut level = 0;
    let mut threshold = first;
    while pending >= threshold {
        level += 1;
        match threshold.checked_mul(10) {
            Some(next) => threshold = next,
            None => break,
        }
    }
    level
}

/// The threshold of `level` (1 = `first`).
pub(super) fn threshold_of(level: u32, first: u64) -> u64 {
    (1..level).fold(first, |t, _| t.saturating_mul(10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backlog_levels_are_decades_of_the_first_threshold() {
        assert_eq!(backlog_level(9_999, 10_000), 0);
        assert_eq!(backlog_level(10_000, 10_000), 1);
        assert_eq!(backlog_level(99_999, 10_000), 1);
        assert_eq!(backlog_level(1_000_000, 10_000), 3);
        assert_eq!(backlog_level(u64::MAX, 10_000), 16);
        assert_eq!(backlog_level(5, 0), 0);
        assert_eq!(threshold_of(3, 10_000), 1_000_000);
    }

    #[test]
    fn advancing_takes_counted_entries_off_and_resets_past_the_count() {
        let mut progress = Progress { cursor: 10, counted_through: 20, pending: 3, ..Default::default() };
        progress.advance(12);
        assert_eq!((progress.cursor, progress.pending), (12, 2));
        progress.advance(25);
        assert_eq!((progress.cursor, progress.pending, progress.counted_through), (25, 0, 25));
    }
}
