//! The key-value store SPI. Built-in drivers (RocksDB, Redis) and KVStore plugins implement the same traits.
//!
//! Semantics every implementation must keep (the manager relies on them, and the conformance suite checks them):
//! - a missing key is [`KvError::KeyNotFound`]; deleting a missing key succeeds;
//! - [`KvStore::scan`] yields keys in ascending byte order; an empty prefix yields every key;
//! - [`KvStore::update`] commits only when the closure returns `Ok`, and either all of its writes land or none;
//! - a transaction that lost a race returns [`KvError::Conflict`].
//!
//! Callers (the host) must not call into the same collection from inside a `view`/`update` closure or a `peek`
//! callback: use the [`Txn`] handle instead. Lock-based stores may deadlock on such re-entry.

use std::collections::BTreeMap;

pub use crate::error::KvError;

/// Free-form string settings handed to a KVStore constructor (`[Common.DB.Plugin.Meta]`).
pub type Meta = BTreeMap<String, String>;

/// A key-value pair yielded by a scan.
pub type Entry = (Vec<u8>, Vec<u8>);

/// A transaction closure: host code run by the store with a transaction handle.
pub type TxnFn<'a> = &'a mut dyn FnMut(&dyn Txn) -> Result<(), KvError>;

/// A database: a set of named collections.
pub trait Db: Send + Sync {
    /// Starts background work, if any. Called once before the first collection is opened.
    fn run(&self) -> Result<(), KvError>;
    /// Flushes and closes. Later calls on any collection may fail with [`KvError::Closed`].
    fn close(&self) -> Result<(), KvError>;
    /// Opens (creating if needed) the collection called `name`.
    fn open_collection(&self, name: &str) -> Result<Box<dyn KvStore>, KvError>;
}

/// One collection of keys.
pub trait KvStore: Send + Sync {
    /// The value of `key`, or [`KvError::KeyNotFound`].
    fn get(&self, key: &[u8]) -> Result<Vec<u8>, KvError>;
    /// Calls `f` with the value of `key` without the caller owning a copy (or [`KvError::KeyNotFound`]).
    fn peek(&self, key: &[u8], f: &mut dyn FnMut(&[u8])) -> Result<(), KvError>;
    /// Sets `key` to `value`.
    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), KvError>;
    /// Removes `key`; succeeds when it is absent.
    fn del(&self, key: &[u8]) -> Result<(), KvError>;
    /// Iterates the keys starting with `prefix`, in ascending byte order.
    fn scan(&self, prefix: &[u8]) -> Result<Box<dyn KvIter>, KvError>;
    /// Iterates the keys starting with `prefix` that sort after `after`, in ascending byte order, when the store
    /// can start a scan at a key (a seek); `Ok(None)` when it cannot, and the caller falls back to
    /// [`scan`](KvStore::scan). The default is `Ok(None)`: a store needs nothing new to stay correct.
    fn scan_after(&self, prefix: &[u8], after: &[u8]) -> Result<Option<Box<dyn KvIter>>, KvError> {
        let _ = (prefix, after);
        Ok(None)
    }
    /// Runs `f` in a read-only transaction.
    fn view(&self, f: TxnFn<'_>) -> Result<(), KvError>;
    /// Runs `f` in a read-write transaction, committed only when `f` returns `Ok`.
    fn update(&self, f: TxnFn<'_>) -> Result<(), KvError>;
    /// Whether callers should retry an [`update`](KvStore::update) that returned [`KvError::Conflict`].
    fn need_retry_transactions(&self) -> bool;
}

/// A transaction handle, valid only inside the closure it was passed to.
pub trait Txn {
    /// The value of `key` as seen by this transaction (including its own writes).
    fn get(&self, key: &[u8]) -> Result<Vec<u8>, KvError>;
    /// Calls `f` with the value of `key`.
    fn peek(&self, key: &[u8], f: &mut dyn FnMut(&[u8])) -> Result<(), KvError>;
    /// Sets `key` to `value` when the transaction commits.
    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), KvError>;
    /// Removes `key` when the transaction commits.
    fn del(&self, key: &[u8]) -> Result<(), KvError>;
    /// Keys starting with `prefix` as seen by this transaction, in ascending byte order.
    fn scan(&self, prefix: &[u8]) -> Result<Vec<Entry>, KvError>;
}

/// A forward iterator over a scan.
pub trait KvIter: Send {
    /// The next entry, `Ok(None)` at the end.
    fn next_entry(&mut self) -> Result<Option<Entry>, KvError>;
}

/// Runs `update`, retrying on [`KvError::Conflict`] while the store asks for retries (at most `attempts` times),
/// pausing [`retry_pause`] between attempts so that contending writers spread out instead of colliding again.
pub fn update_with_retry(store: &dyn KvStore, attempts: usize, f: TxnFn<'_>) -> Result<(), KvError> {
    let mut tries = 0;
    loop {
        tries += 1;
        match store.update(&mut *f) {
            Err(KvError::Conflict) if store.need_retry_transactions() && tries < attempts => {
                std::thread::sleep(retry_pause(tries - 1));
            }
            other => return other,
        }
    }
}

/// The pause before retry number `attempt` (0-based) of a conflicting transaction: exponential from 1 ms,
/// capped at 64 ms, with "full jitter" (a uniformly random duration up to that bound), so that the total wait of
/// 32 attempts stays under two seconds.
pub fn retry_pause(attempt: usize) -> std::time::Duration {
    let cap_micros = 1_000u64 << attempt.min(6);
    std::time::Duration::from_micros(jitter(cap_micros))
}

/// A pseudo-random number in `0..=bound` from the clock and the thread, good enough to de-synchronize retries.
fn jitter(bound: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    hasher.finish() % bound.saturating_add(1)
}

/// The smallest key greater than every key starting with `prefix`, or `None` when there is none
/// (an empty prefix, or one made only of `0xff`). Handy for range scans.
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::{prefix_end, retry_pause};

    #[test]
    fn retry_pauses_are_bounded_and_jittered() {
        let pauses: Vec<_> = (0..200).map(|attempt| retry_pause(attempt % 32)).collect();
        assert!(pauses.iter().all(|p| *p <= std::time::Duration::from_millis(64)));
        assert!(retry_pause(0) <= std::time::Duration::from_millis(1));
        let distinct: std::collections::HashSet<_> = (0..50).map(|_| retry_pause(6)).collect();
        assert!(distinct.len() > 10, "pauses are jittered: {distinct:?}");
    }

    #[test]
    fn prefix_end_increments_the_last_byte_that_can_be_incremented() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
        assert_eq!(prefix_end(b""), None);
    }
}
