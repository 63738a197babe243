//! # memdb: an in-memory KVStore plugin
//!
//! Every collection is an ordered map (`BTreeMap<Vec<u8>, Vec<u8>>`) kept in memory; nothing survives a restart.
//! It is small enough to read in one sitting, yet keeps every rule of the [`manager_plugin::kv`] SPI, so the
//! manager can run on it (tests, demos, benchmarks):
//!
//! - [`view`](KvStore::view) sees one consistent snapshot of the collection;
//! - [`update`](KvStore::update) is atomic (its writes are buffered and applied together only when the closure
//!   returns `Ok`) and isolated (writers on one collection take turns, so an update never conflicts and
//!   [`need_retry_transactions`](KvStore::need_retry_transactions) is `false`);
//! - reads inside an update see the update's own buffered writes and deletes.
//!
//! ```
//! use manager_plugin::kv::{Db, KvError, KvStore, Meta, Txn};
//!
//! let db = memdb::open(&Meta::new()).unwrap();
//! let sectors = db.open_collection("online").unwrap();
//! sectors.update(&mut |txn: &dyn Txn| {
//!     txn.put(b"m-1000-n-1", b"{}")?;
//!     assert_eq!(txn.get(b"m-1000-n-1")?, b"{}");
//!     Ok(())
//! }).unwrap();
//! assert_eq!(sectors.get(b"m-1000-n-1").unwrap(), b"{}");
//! assert_eq!(sectors.get(b"m-1000-n-2"), Err(KvError::KeyNotFound));
//! ```
//!
//! Inside a transaction closure the host works through the [`Txn`] handle. It must not call the same collection
//! from a [`view`](KvStore::view) closure or a [`peek`](KvStore::peek) callback (those hold the collection's read
//! lock, and a queued writer would deadlock them); inside an [`update`](KvStore::update), reads of the collection
//! are harmless (they see the committed state) and a nested write is refused with an error instead of deadlocking.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::{self, ThreadId};

use manager_plugin::kv::{Db, Entry, KvError, KvIter, KvStore, Meta, Txn, TxnFn, prefix_end};

/// The KVStore constructor named in `manifest.toml`.
///
/// memdb has no settings: any key in `meta` (`[Common.DB.Plugin.Meta]`) is refused with an error naming it,
/// so a setting meant for another driver is not silently ignored.
pub fn open(meta: &Meta) -> Result<MemDb, KvError> {
    if let Some(key) = meta.keys().next() {
        return Err(KvError::Backend(format!(
            "memdb takes no settings, but [Common.DB.Plugin.Meta] sets {key:?}; remove it"
        )));
    }
    Ok(MemDb::new())
}

/// An in-memory database: a set of named collections. Opening the same name twice yields the same data.
#[derive(Default)]
pub struct MemDb {
    collections: Mutex<HashMap<String, Arc<Collection>>>,
    closed: Arc<AtomicBool>,
}

impl MemDb {
    /// An empty, open database.
    pub fn new() -> MemDb {
        MemDb::default()
    }

    fn check_open(&self) -> Result<(), KvError> {
        check_open(&self.closed)
    }
}

impl Db for MemDb {
    /// Nothing runs in the background; fails only after [`close`](Db::close).
    fn run(&self) -> Result<(), KvError> {
        self.check_open()
    }

    /// Marks the database closed: every later call on it, its collections, their transactions and their scan
    /// iterators returns [`KvError::Closed`]. The data is freed once the last collection handle is dropped.
    fn close(&self) -> Result<(), KvError> {
        self.closed.store(true, Ordering::Release);
        lock(&self.collections).clear();
        Ok(())
    }

    fn open_collection(&self, name: &str) -> Result<Box<dyn KvStore>, KvError> {
        let mut collections = lock(&self.collections);
        // Checked under the registry lock so a collection cannot be registered after `close` cleared it.
        self.check_open()?;
        let data = Arc::clone(collections.entry(name.to_string()).or_default());
        Ok(Box::new(MemCollection { name: name.to_string(), data, closed: Arc::clone(&self.closed) }))
    }
}

/// The shared state of one collection.
#[derive(Default)]
struct Collection {
    map: RwLock<BTreeMap<Vec<u8>, Vec<u8>>>,
    /// Serializes writers (plain puts and deletes, and whole update transactions) so an update reads a stable
    /// base; readers only ever wait for the short write lock taken to apply a change.
    writer: WriterLock,
}

/// A handle on one collection, as handed to the host.
struct MemCollection {
    name: String,
    data: Arc<Collection>,
    closed: Arc<AtomicBool>,
}

impl MemCollection {
    fn check_open(&self) -> Result<(), KvError> {
        check_open(&self.closed)
    }

    fn read(&self) -> RwLockReadGuard<'_, BTreeMap<Vec<u8>, Vec<u8>>> {
        self.data.map.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, BTreeMap<Vec<u8>, Vec<u8>>> {
        self.data.map.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn begin_write(&self) -> Result<WriterGuard<'_>, KvError> {
        self.data.writer.acquire(&self.name)
    }
}

impl KvStore for MemCollection {
    fn get(&self, key: &[u8]) -> Result<Vec<u8>, KvError> {
        self.check_open()?;
        self.read().get(key).cloned().ok_or(KvError::KeyNotFound)
    }

    fn peek(&self, key: &[u8], f: &mut dyn FnMut(&[u8])) -> Result<(), KvError> {
        self.check_open()?;
        let map = self.read();
        let value = map.get(key).ok_or(KvError::KeyNotFound)?;
        f(value);
        Ok(())
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), KvError> {
        self.check_open()?;
        let _writer = self.begin_write()?;
        self.write().insert(key.to_vec(), value.to_vec());
        Ok(())
    }

    fn del(&self, key: &[u8]) -> Result<(), KvError> {
        self.check_open()?;
        let _writer = self.begin_write()?;
        self.write().remove(key);
        Ok(())
    }

    /// Snapshots the matching entries: the iterator does not see later writes and holds no lock.
    fn scan(&self, prefix: &[u8]) -> Result<Box<dyn KvIter>, KvError> {
        self.check_open()?;
        let entries = with_prefix(&self.read(), prefix).map(|(k, v)| (k.clone(), v.clone())).collect::<Vec<_>>();
        Ok(Box::new(SnapshotIter { entries: entries.into_iter(), closed: Arc::clone(&self.closed) }))
    }

    /// Holds the collection's read lock for the duration of `f`, so `f` sees one consistent state.
    fn view(&self, f: TxnFn<'_>) -> Result<(), KvError> {
        self.check_open()?;
        let map = self.read();
        f(&ReadTxn { collection: &self.name, map: &map, closed: &self.closed })
    }

    /// Takes the collection's writer turn for the duration of `f`, buffers `f`'s writes, and applies them all
    /// under one write lock when `f` returns `Ok` (none when it returns `Err`, whose error is returned as is).
    fn update(&self, f: TxnFn<'_>) -> Result<(), KvError> {
        self.check_open()?;
        let _writer = self.begin_write()?;
        let writes = {
            // No other writer can change the map while we hold the writer turn, so this read guard is a stable
            // base; readers are not blocked by it.
            let base = self.read();
            let txn = WriteTxn { base: &base, writes: RefCell::default(), closed: &self.closed };
            f(&txn)?;
            txn.writes.into_inner()
        };
        self.check_open()?;
        let mut map = self.write();
        for (key, value) in writes {
            match value {
                Some(value) => map.insert(key, value),
                None => map.remove(&key),
            };
        }
        Ok(())
    }

    /// Always `false`: updates take turns, so they never conflict.
    fn need_retry_transactions(&self) -> bool {
        false
    }
}

/// The handle passed to a [`view`](KvStore::view) closure: reads the locked map, refuses writes.
struct ReadTxn<'a> {
    collection: &'a str,
    map: &'a BTreeMap<Vec<u8>, Vec<u8>>,
    closed: &'a AtomicBool,
}

impl ReadTxn<'_> {
    fn refuse_write(&self, op: &str) -> Result<(), KvError> {
        check_open(self.closed)?;
        Err(KvError::Backend(format!(
            "{op} in a read-only transaction (view) of collection {:?}; use update to write",
            self.collection
        )))
    }
}

impl Txn for ReadTxn<'_> {
    fn get(&self, key: &[u8]) -> Result<Vec<u8>, KvError> {
        check_open(self.closed)?;
        self.map.get(key).cloned().ok_or(KvError::KeyNotFound)
    }

    fn peek(&self, key: &[u8], f: &mut dyn FnMut(&[u8])) -> Result<(), KvError> {
        check_open(self.closed)?;
        f(self.map.get(key).ok_or(KvError::KeyNotFound)?);
        Ok(())
    }

    fn put(&self, _key: &[u8], _value: &[u8]) -> Result<(), KvError> {
        self.refuse_write("put")
    }

    fn del(&self, _key: &[u8]) -> Result<(), KvError> {
        self.refuse_write("del")
    }

    fn scan(&self, prefix: &[u8]) -> Result<Vec<Entry>, KvError> {
        check_open(self.closed)?;
        Ok(with_prefix(self.map, prefix).map(|(k, v)| (k.clone(), v.clone())).collect())
    }
}

/// The handle passed to an [`update`](KvStore::update) closure: reads the base overlaid with the buffered
/// writes, where `None` marks a delete.
struct WriteTxn<'a> {
    base: &'a BTreeMap<Vec<u8>, Vec<u8>>,
    writes: RefCell<BTreeMap<Vec<u8>, Option<Vec<u8>>>>,
    closed: &'a AtomicBool,
}

impl WriteTxn<'_> {
    /// Calls `f` with the value of `key` as this transaction sees it.
    fn with_value<T>(&self, key: &[u8], f: impl FnOnce(&[u8]) -> T) -> Result<T, KvError> {
        check_open(self.closed)?;
        let writes = self.writes.borrow();
        let value = match writes.get(key) {
            Some(buffered) => buffered.as_deref(),
            None => self.base.get(key).map(Vec::as_slice),
        };
        value.map(f).ok_or(KvError::KeyNotFound)
    }
}

impl Txn for WriteTxn<'_> {
    fn get(&self, key: &[u8]) -> Result<Vec<u8>, KvError> {
        self.with_value(key, <[u8]>::to_vec)
    }

    fn peek(&self, key: &[u8], f: &mut dyn FnMut(&[u8])) -> Result<(), KvError> {
        // Copied out first: `f` is host code and must not run while the write buffer is borrowed.
        let value = self.get(key)?;
        f(&value);
        Ok(())
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), KvError> {
        check_open(self.closed)?;
        self.writes.borrow_mut().insert(key.to_vec(), Some(value.to_vec()));
        Ok(())
    }

    fn del(&self, key: &[u8]) -> Result<(), KvError> {
        check_open(self.closed)?;
        self.writes.borrow_mut().insert(key.to_vec(), None);
        Ok(())
    }

    fn scan(&self, prefix: &[u8]) -> Result<Vec<Entry>, KvError> {
        check_open(self.closed)?;
        let mut merged: BTreeMap<&[u8], &[u8]> =
            with_prefix(self.base, prefix).map(|(k, v)| (k.as_slice(), v.as_slice())).collect();
        let writes = self.writes.borrow();
        for (key, value) in with_prefix(&writes, prefix) {
            match value {
                Some(value) => merged.insert(key, value),
                None => merged.remove(key.as_slice()),
            };
        }
        Ok(merged.into_iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect())
    }
}

/// A scan's snapshot of matching entries, in ascending key order.
struct SnapshotIter {
    entries: std::vec::IntoIter<Entry>,
    closed: Arc<AtomicBool>,
}

impl KvIter for SnapshotIter {
    fn next_entry(&mut self) -> Result<Option<Entry>, KvError> {
        check_open(&self.closed)?;
        Ok(self.entries.next())
    }
}

/// The entries of `map` whose key starts with `prefix`, in ascending key order.
fn with_prefix<'m, V>(map: &'m BTreeMap<Vec<u8>, V>, prefix: &[u8]) -> impl Iterator<Item = (&'m Vec<u8>, &'m V)> {
    let end = prefix_end(prefix);
    let upper = match &end {
        Some(end) => Bound::Excluded(end.as_slice()),
        None => Bound::Unbounded,
    };
    map.range::<[u8], _>((Bound::Included(prefix), upper))
}

fn check_open(closed: &AtomicBool) -> Result<(), KvError> {
    if closed.load(Ordering::Acquire) { Err(KvError::Closed) } else { Ok(()) }
}

/// Locks `mutex`, ignoring poisoning: every critical section here leaves its data consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A writer turn that knows which thread holds it, so a nested write from the same thread is an error instead
/// of a deadlock.
#[derive(Default)]
struct WriterLock {
    holder: Mutex<Option<ThreadId>>,
    released: Condvar,
}

/// Holds a [`WriterLock`] turn; gives it back when dropped (also while unwinding).
struct WriterGuard<'a> {
    lock: &'a WriterLock,
}

impl WriterLock {
    fn acquire(&self, collection: &str) -> Result<WriterGuard<'_>, KvError> {
        let me = thread::current().id();
        let mut holder = lock(&self.holder);
        if *holder == Some(me) {
            return Err(KvError::Backend(format!(
                "nested write on collection {collection:?} from inside its own update; \
                 write through the transaction handle instead"
            )));
        }
        while holder.is_some() {
            holder = self.released.wait(holder).unwrap_or_else(PoisonError::into_inner);
        }
        *holder = Some(me);
        Ok(WriterGuard { lock: self })
    }
}

impl Drop for WriterGuard<'_> {
    fn drop(&mut self) {
        *lock(&self.lock.holder) = None;
        self.lock.released.notify_one();
    }
}

#[cfg(test)]
mod tests;
