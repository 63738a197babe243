//! Test fixture: memdb (real transactions) with two violations of the KV contract that `plugin test` must name:
//! `scan` yields its entries in reverse byte order, and `del` of a missing key is an error. Everything else
//! (transactions, `Txn::scan`, conflicts) is memdb's and correct.

use manager_plugin::kv::{Db, Entry, KvError, KvIter, KvStore, Meta, TxnFn};

/// Opens the wrapped memdb.
pub fn open(meta: &Meta) -> Result<SloppyDb, KvError> {
    memdb::open(meta).map(SloppyDb)
}

/// memdb, handing out sloppy collections.
pub struct SloppyDb(memdb::MemDb);

impl Db for SloppyDb {
    fn run(&self) -> Result<(), KvError> {
        self.0.run()
    }

    fn close(&self) -> Result<(), KvError> {
        self.0.close()
    }

    fn open_collection(&self, name: &str) -> Result<Box<dyn KvStore>, KvError> {
        Ok(Box::new(SloppyStore(self.0.open_collection(name)?)))
    }
}

struct SloppyStore(Box<dyn KvStore>);

impl KvStore for SloppyStore {
    fn get(&self, key: &[u8]) -> Result<Vec<u8>, KvError> {
        self.0.get(key)
    }

    fn peek(&self, key: &[u8], f: &mut dyn FnMut(&[u8])) -> Result<(), KvError> {
        self.0.peek(key, f)
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), KvError> {
        self.0.put(key, value)
    }

    /// Violation: deleting a missing key must succeed.
    fn del(&self, key: &[u8]) -> Result<(), KvError> {
        match self.0.get(key) {
            Err(KvError::KeyNotFound) => Err(KvError::Backend("sloppy-kv: cannot delete a missing key".into())),
            _ => self.0.del(key),
        }
    }

    /// Violation: scans must yield ascending byte order.
    fn scan(&self, prefix: &[u8]) -> Result<Box<dyn KvIter>, KvError> {
        let mut inner = self.0.scan(prefix)?;
        let mut entries = Vec::new();
        while let Some(entry) = inner.next_entry()? {
            entries.push(entry);
        }
        Ok(Box::new(Reversed(entries)))
    }

    fn view(&self, f: TxnFn<'_>) -> Result<(), KvError> {
        self.0.view(f)
    }

    fn update(&self, f: TxnFn<'_>) -> Result<(), KvError> {
        self.0.update(f)
    }

    fn need_retry_transactions(&self) -> bool {
        self.0.need_retry_transactions()
    }
}

/// Yields the entries last to first.
struct Reversed(Vec<Entry>);

impl KvIter for Reversed {
    fn next_entry(&mut self) -> Result<Option<Entry>, KvError> {
        Ok(self.0.pop())
    }
}
