//! Per-sector (and per-miner counter) locks that serialize the operations on one sector.
//!
//! A lock set is taken in sorted order, all of it before the operation starts, so two batches that share
//! sectors cannot deadlock. The table holds only the keys currently held, so it never grows with the number of
//! sectors ever touched.

use std::collections::HashSet;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use manager_plugin::sector::SectorId;

/// What a lock protects. The derived order (every counter before every sector) is the acquisition order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum LockKey {
    /// A miner's sector-number counter (serializes allocations for one miner).
    Counter(u64),
    /// One sector.
    Sector(SectorId),
}

/// The keys currently held; waiters sleep on `released`.
#[derive(Default)]
pub(super) struct LockTable {
    held: Mutex<HashSet<LockKey>>,
    released: Condvar,
}

/// Holds a set of keys; releases them when dropped (also while unwinding).
#[must_use = "the keys are released when the guard is dropped"]
pub(super) struct LockGuard<'a> {
    table: &'a LockTable,
    keys: Vec<LockKey>,
}

impl LockTable {
    /// Takes every key of `keys`, in sorted order, waiting for each while another operation holds it.
    ///
    /// A thread must not take a key it already holds (it would wait for itself); a caller that takes a second
    /// set while holding a first must only add keys greater than those it holds.
    pub(super) fn lock(&self, keys: impl IntoIterator<Item = LockKey>) -> LockGuard<'_> {
        let mut keys: Vec<LockKey> = keys.into_iter().collect();
        keys.sort_unstable();
        keys.dedup();
        let mut held = self.held();
        for key in &keys {
            while held.contains(key) {
                held = self.released.wait(held).unwrap_or_else(PoisonError::into_inner);
            }
            held.insert(*key);
        }
        LockGuard { table: self, keys }
    }

    fn held(&self) -> MutexGuard<'_, HashSet<LockKey>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        if self.keys.is_empty() {
            return;
        }
        let mut held = self.table.held();
        for key in &self.keys {
            held.remove(key);
        }
        drop(held);
        self.table.released.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::thread;

    use super::*;

    fn sector(number: u64) -> LockKey {
        LockKey::Sector(SectorId { miner: 1, number })
    }

    #[test]
    fn holders_of_one_sector_take_turns() {
        let table = Arc::new(LockTable::default());
        let inside = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (table, inside) = (Arc::clone(&table), Arc::clone(&inside));
                thread::spawn(move || {
                    for _ in 0..200 {
                        let _guard = table.lock([sector(1)]);
                        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two holders at once");
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("locker thread");
        }
        assert!(table.held().is_empty(), "keys leaked");
    }

    #[test]
    fn overlapping_batches_in_opposite_orders_do_not_deadlock() {
        let table = Arc::new(LockTable::default());
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let table = Arc::clone(&table);
                thread::spawn(move || {
                    for _ in 0..500 {
                        let keys = if i % 2 == 0 {
                            [sector(1), sector(2), sector(3)]
                        } else {
                            [sector(3), sector(2), sector(1)]
                        };
                        let _guard = table.lock(keys);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("locker thread");
        }
    }

    #[test]
    fn different_sectors_do_not_wait_for_each_other() {
        let table = LockTable::default();
        let _one = table.lock([sector(1)]);
        let _two = table.lock([sector(2), LockKey::Counter(1)]);
    }
}
