//! Built-in key-value drivers.
//!
//! The manager keeps its state (sectors, outbox...) behind the SDK's KV SPI ([`manager_plugin::kv`]): a [`Db`]
//! holds named collections ([`KvStore`]), each with point reads and writes, ordered prefix scans and closure-based
//! transactions. The built-in drivers implement exactly those traits, so the manager runs the same code path
//! whether the store is built in or loaded from a KVStore plugin, and one conformance suite checks them all
//! (`manager/tests/common/kv_conformance.rs`).
//!
//! - [`RocksDb`] (the default): embedded RocksDB, one column family per collection, optimistic transactions.
//! - [`RedisDb`]: a Redis server, one key per entry plus a sorted-set index per collection, WATCH/MULTI/EXEC
//!   transactions.
//!
//! Both report a lost race as [`KvError::Conflict`] and answer `true` to
//! [`KvStore::need_retry_transactions`], so callers wrap updates in [`manager_plugin::kv::update_with_retry`].
//!
//! ```no_run
//! use manager::kvstore::RocksDb;
//! use manager_plugin::kv::{Db, KvError};
//!
//! # fn main() -> Result<(), KvError> {
//! let db = RocksDb::open(std::path::Path::new("/var/lib/damocles/meta"))?;
//! db.run()?;
//! let sectors = db.open_collection("sectors")?;
//! sectors.put(b"m-1000-n-1", b"{}")?;
//! assert_eq!(sectors.get(b"m-1000-n-1")?, b"{}");
//! db.close()?;
//! # Ok(())
//! # }
//! ```

mod redis;
mod redis_durability;
mod redis_lease;
pub mod refusal;
mod rocksdb;

use std::fmt::Display;

pub use self::redis::{RedisDb, RedisTimeouts};
pub use self::redis_durability::RedisPersistence;
pub use self::redis_lease::{LEASE_TTL, LeaseHolder, LeasedRedisDb};
pub use self::rocksdb::RocksDb;
pub use manager_plugin::kv::{Db, Entry, KvError, KvIter, KvStore, Txn};

/// How many entries a driver's scan iterator fetches from the backend at a time, at most.
///
/// Scans are paged because an SPI iterator must own its state (`Box<dyn KvIter>` is `'static`), while backend
/// iterators borrow their database; paging also bounds the memory of a scan over a large collection.
const SCAN_PAGE: usize = 512;

/// The first page's size: pages double up to [`SCAN_PAGE`], so a caller that reads a few entries (a probe, a
/// batch) does not fetch hundreds.
const FIRST_SCAN_PAGE: usize = 32;

/// A [`KvError::Backend`] naming the operation and collection that failed.
fn backend_error(op: &str, collection: &str, err: impl Display) -> KvError {
    KvError::Backend(format!("{op} in collection {collection:?}: {err}"))
}

/// The error of a write attempted through a read-only ([`KvStore::view`]) transaction.
fn read_only_error(op: &str, collection: &str) -> KvError {
    KvError::Backend(format!("{op} in collection {collection:?}: the transaction is read-only (use `update` to write)"))
}

/// The key right after `key` in byte order: where a paged scan resumes.
fn successor(key: &[u8]) -> Vec<u8> {
    let mut next = Vec::with_capacity(key.len() + 1);
    next.extend_from_slice(key);
    next.push(0);
    next
}

/// A page-at-a-time [`KvIter`]: `fetch(after, limit)` returns up to `limit` entries in byte order, starting after
/// the key `after` (from the start of the scan when `None`). Each driver supplies its own `fetch`.
struct PagedIter<F> {
    fetch: F,
    last: Option<Vec<u8>>,
    page: std::collections::VecDeque<Entry>,
    exhausted: bool,
    /// The next page's size.
    page_size: usize,
}

impl<F> PagedIter<F>
where
    F: FnMut(Option<&[u8]>, usize) -> Result<Vec<Entry>, KvError> + Send,
{
    fn new(fetch: F) -> Self {
        PagedIter { fetch, last: None, page: Default::default(), exhausted: false, page_size: FIRST_SCAN_PAGE }
    }

    /// The scan of `prefix` (which `fetch` scans), from its start, or after the key `after` when given (from the
    /// start too when `after` sorts before the prefix).
    fn starting_after(fetch: F, prefix: &[u8], after: Option<&[u8]>) -> Self {
        PagedIter { last: after.filter(|&after| after >= prefix).map(<[u8]>::to_vec), ..PagedIter::new(fetch) }
    }

    fn refill(&mut self) -> Result<(), KvError> {
        let page = (self.fetch)(self.last.as_deref(), self.page_size)?;
        self.exhausted = page.len() < self.page_size;
        self.page_size = (self.page_size * 2).min(SCAN_PAGE);
        if let Some((key, _)) = page.last() {
            self.last = Some(key.clone());
        }
        self.page.extend(page);
        Ok(())
    }
}

impl<F> KvIter for PagedIter<F>
where
    F: FnMut(Option<&[u8]>, usize) -> Result<Vec<Entry>, KvError> + Send,
{
    fn next_entry(&mut self) -> Result<Option<Entry>, KvError> {
        if self.page.is_empty() && !self.exhausted {
            self.refill()?;
        }
        Ok(self.page.pop_front())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successor_is_the_next_key_in_byte_order() {
        assert_eq!(successor(b"a"), b"a\0");
        assert!(successor(&[0xff]).as_slice() > [0xff].as_slice());
        assert!(successor(&[0xff]).as_slice() < [0xff, 0x01].as_slice());
    }

    /// A paged iterator over `keys` (values are the keys) and the page sizes it asked for.
    fn paged(keys: &[Vec<u8>], start: Option<&[u8]>) -> (Vec<Vec<u8>>, Vec<usize>) {
        let all = keys.to_vec();
        let limits = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let asked = std::sync::Arc::clone(&limits);
        let fetch = move |after: Option<&[u8]>, limit| {
            asked.lock().expect("limits").push(limit);
            Ok(all
                .iter()
                .filter(|k| after.is_none_or(|a| k.as_slice() > a))
                .take(limit)
                .map(|k| (k.clone(), k.clone()))
                .collect())
        };
        let mut iter = match start {
            Some(after) => PagedIter::starting_after(fetch, &[], Some(after)),
            None => PagedIter::new(fetch),
        };
        let mut seen = Vec::new();
        while let Some((key, _)) = iter.next_entry().expect("next_entry") {
            seen.push(key);
        }
        let limits = limits.lock().expect("limits").clone();
        (seen, limits)
    }

    #[test]
    fn paged_iter_yields_every_page_then_stops() {
        let keys: Vec<Vec<u8>> = (0..(SCAN_PAGE * 2 + 3) as u32).map(|i| i.to_be_bytes().to_vec()).collect();
        let (seen, limits) = paged(&keys, None);
        assert_eq!(seen, keys);
        // Pages double from the first size up to the largest; the short last page ends the scan.
        assert_eq!(limits, [FIRST_SCAN_PAGE, 64, 128, 256, SCAN_PAGE, SCAN_PAGE]);
    }

    #[test]
    fn paged_iter_starting_after_a_key_yields_only_later_keys() {
        let keys: Vec<Vec<u8>> = (0..100u32).map(|i| i.to_be_bytes().to_vec()).collect();
        let (seen, _) = paged(&keys, Some(&keys[40]));
        assert_eq!(seen, keys[41..].to_vec());
        let (seen, limits) = paged(&keys, Some(&[0xff]));
        assert_eq!((seen, limits), (Vec::<Vec<u8>>::new(), vec![FIRST_SCAN_PAGE]));
    }
}
