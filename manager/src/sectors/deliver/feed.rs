//! The fan-out feed: one reader thread reads each new outbox entry once, decodes it once, and keeps the newest
//! entries in memory for every target thread. A target keeping up takes its next events from the feed (no store
//! read, no decode, its lag counted from the feed's window); a target whose cursor is older than the window (a
//! backlog: after an outage, behind a slow plugin, at start) reads the outbox itself, as before, until it reaches
//! the window.
//!
//! The window holds **every** outbox entry with `base < seq <= read_through`, in seq order, so a target whose
//! cursor is inside it misses nothing; `read_through` never passes the visibility horizon. Entries leave the
//! window once every running target passed them, and the oldest leave anyway past [`WINDOW`] entries (the slow
//! targets then read them from the outbox).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use manager_plugin::sync::SectorEvent;
use serde_json::value::RawValue;

use super::super::outbox::{self, OutboxRecord};
use super::super::signal::Signal;
use super::{Shared, StoredEvent};

/// Most entries the window keeps (the oldest leave first).
const WINDOW: usize = 1024;

/// Most entries the reader reads from the outbox at a time.
const READ_BATCH: usize = 256;

/// One outbox entry, decoded once for every target.
pub(super) struct FeedEntry {
    /// Its seq.
    pub(super) seq: u64,
    /// The event, or why the stored entry does not decode.
    pub(super) event: Result<StoredEvent, String>,
    /// The stored entry (saved to a file when an operator skips it).
    pub(super) value: Vec<u8>,
}

impl FeedEntry {
    /// Decodes the stored entry `value` of `seq`.
    pub(super) fn decode(seq: u64, value: Vec<u8>) -> FeedEntry {
        let event = serde_json::from_slice::<OutboxRecord<Box<RawValue>>>(&value)
            .and_then(|record| {
                let event = serde_json::from_str::<SectorEvent>(record.event.get())?;
                Ok(StoredEvent { event, json: Arc::from(record.event) })
            })
            .map_err(|err| err.to_string());
        FeedEntry { seq, event, value }
    }
}

/// What a target reads next.
pub(super) enum Next {
    /// The entries after its cursor, in seq order.
    Entries(Vec<Arc<FeedEntry>>),
    /// Its cursor is older than the window: read the outbox after it, through `through` (everything up to there is
    /// committed), and come back.
    Behind {
        /// The window's base.
        through: u64,
    },
    /// Nothing after its cursor has been read yet.
    CaughtUp,
}

/// The window of decoded entries and the signal of new ones.
pub(super) struct Feed {
    window: Mutex<Window>,
    /// Notified when entries were added (and on stop).
    pub(super) appended: Signal,
}

struct Window {
    /// Every outbox entry with `base < seq <= read_through`, in seq order.
    entries: VecDeque<Arc<FeedEntry>>,
    base: u64,
    read_through: u64,
}

impl Feed {
    /// An empty window starting after `start` (entries up to it are read by the targets from the outbox).
    pub(super) fn new(start: u64) -> Feed {
        let window = Window { entries: VecDeque::new(), base: start, read_through: start };
        Feed { window: Mutex::new(window), appended: Signal::default() }
    }

    fn window(&self) -> MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Up to `limit` entries after `cursor`.
    pub(super) fn next(&self, cursor: u64, limit: usize) -> Next {
        let window = self.window();
        if cursor < window.base {
            return Next::Behind { through: window.base };
        }
        let first = window.entries.partition_point(|entry| entry.seq <= cursor);
        if first == window.entries.len() {
            return Next::CaughtUp;
        }
        Next::Entries(window.entries.range(first..).take(limit).cloned().collect())
    }

    /// How many entries follow `cursor` through the window's end, and that end; `None` when the cursor is older
    /// than the window (the outbox must be counted).
    pub(super) fn pending_after(&self, cursor: u64) -> Option<(u64, u64)> {
        let window = self.window();
        if cursor < window.base {
            return None;
        }
        let first = window.entries.partition_point(|entry| entry.seq <= cursor);
        Some(((window.entries.len() - first) as u64, window.read_through.max(cursor)))
    }

    /// Where the reader continues.
    fn read_through(&self) -> u64 {
        self.window().read_through
    }

    /// Adds the entries read after `read_through` up to `through` (all of them, in seq order), then lets go of the
    /// entries at or below `passed` (every running target's cursor) and of the oldest beyond [`WINDOW`].
    fn append(&self, entries: Vec<Arc<FeedEntry>>, through: u64, passed: u64) {
        let added = !entries.is_empty();
        let mut window = self.window();
        window.entries.extend(entries);
        window.read_through = window.read_through.max(through);
        while let Some(front) = window.entries.front() {
            if front.seq > passed && window.entries.len() <= WINDOW {
                break;
            }
            window.base = front.seq;
            window.entries.pop_front();
        }
        drop(window);
        if added {
            self.appended.notify();
        }
    }
}

/// The reader: follows the visibility horizon, reading and decoding each new outbox entry once, until stop.
pub(super) fn read(shared: &Shared) {
    let sequencer = &shared.sectors.sequencer;
    let feed = &shared.feed;
    loop {
        let seen = sequencer.signal().generation();
        if shared.is_stopping() {
            break;
        }
        let from = feed.read_through();
        let horizon = sequencer.horizon();
        if horizon > from {
            match outbox::read_after(&*shared.sectors.store, from, horizon, READ_BATCH) {
                Ok(batch) => {
                    // A full batch may have left entries behind; an incomplete one read everything through the
                    // horizon.
                    let through = match batch.last() {
                        Some(&(last, _)) if batch.len() == READ_BATCH => last,
                        _ => horizon,
                    };
                    let entries =
                        batch.into_iter().map(|(seq, value)| Arc::new(FeedEntry::decode(seq, value))).collect();
                    feed.append(entries, through, slowest_cursor(shared));
                    continue;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot read the outbox for delivery; retrying");
                    if shared.pause(shared.options.poll_interval) {
                        break;
                    }
                    continue;
                }
            }
        }
        sequencer.signal().wait_past(seen, shared.options.poll_interval);
    }
    feed.appended.notify();
}

/// The smallest in-memory cursor of the running targets.
fn slowest_cursor(shared: &Shared) -> u64 {
    shared.workers.iter().map(|worker| worker.progress().cursor).min().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(seqs: impl IntoIterator<Item = u64>) -> Vec<Arc<FeedEntry>> {
        seqs.into_iter().map(|seq| Arc::new(FeedEntry { seq, event: Err(String::new()), value: Vec::new() })).collect()
    }

    fn seqs(next: Next) -> Vec<u64> {
        match next {
            Next::Entries(entries) => entries.iter().map(|entry| entry.seq).collect(),
            Next::Behind { through } => panic!("behind through {through}"),
            Next::CaughtUp => Vec::new(),
        }
    }

    #[test]
    fn a_cursor_inside_the_window_gets_exactly_the_later_entries() {
        let feed = Feed::new(10);
        feed.append(entries([12, 15, 20]), 25, 0);
        assert_eq!(seqs(feed.next(10, 64)), vec![12, 15, 20]);
        assert_eq!(seqs(feed.next(13, 64)), vec![15, 20]);
        assert_eq!(seqs(feed.next(12, 1)), vec![15]);
        assert_eq!(seqs(feed.next(20, 64)), Vec::<u64>::new());
        assert_eq!(feed.pending_after(12), Some((2, 25)));
        assert_eq!(feed.pending_after(20), Some((0, 25)));
        assert!(matches!(feed.next(9, 64), Next::Behind { through: 10 }));
        assert_eq!(feed.pending_after(9), None);
    }

    #[test]
    fn entries_every_target_passed_leave_and_the_base_follows() {
        let feed = Feed::new(0);
        feed.append(entries([1, 2, 3, 4]), 4, 2);
        assert!(matches!(feed.next(1, 64), Next::Behind { through: 2 }));
        assert_eq!(seqs(feed.next(2, 64)), vec![3, 4]);
    }

    #[test]
    fn the_window_keeps_the_newest_entries_and_sends_slow_targets_to_the_outbox() {
        let feed = Feed::new(0);
        let count = WINDOW as u64 + 10;
        feed.append(entries(1..=count), count, 0);
        assert!(matches!(feed.next(0, 64), Next::Behind { through: 10 }));
        assert_eq!(seqs(feed.next(10, 2)), vec![11, 12]);
        assert_eq!(feed.pending_after(10), Some((WINDOW as u64, count)));
    }
}
