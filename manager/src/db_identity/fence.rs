//! The identity check inside every transaction, while the daemon runs.
//!
//! [`verify`](super::verify) compares identities once, at start-up; a database can still be lost under a running
//! daemon (a Redis server restarted empty, a flushed prefix, a KVStore plugin whose storage went away). So the
//! daemon's `sectors` collection is wrapped in an [`IdentityFencedDb`]: every transaction, read-only or not,
//! first reads `meta/identity` *inside the transaction* (for Redis that `WATCH`es it, so an identity that
//! changes before the commit fails the `EXEC`) and compares it with the identity verified at start-up. Missing
//! or different: the transaction's body never runs, nothing is written, and the error names the database
//! ([`refusal`](crate::kvstore::refusal), also in the log and `/metrics`). A later check that finds the
//! identity again (the database restored) lifts the refusal, without a restart.
//!
//! Reads are fenced too: on an empty database every sector looks unknown, and "unknown" answered to a worker is
//! 11001, which makes it abort the sector.

use std::sync::Arc;

use manager_plugin::kv::{Db, KvError, KvIter, KvStore, Txn, TxnFn};

use super::{DbDescription, DbIdentity, IDENTITY_KEY};
use crate::kvstore::refusal::{self, RefusalCause};
use crate::sectors::COLLECTION;

/// A database whose `sectors` collection checks the identity in every transaction (see the module docs).
pub struct IdentityFencedDb {
    inner: Arc<dyn Db>,
    fence: Arc<Fence>,
}

/// What every transaction compares against.
struct Fence {
    expected: DbIdentity,
    describe: DbDescription,
}

impl IdentityFencedDb {
    /// Wraps `inner`, whose identity [`verify`](super::verify) found to be `expected`.
    pub fn new(inner: Arc<dyn Db>, expected: DbIdentity, describe: DbDescription) -> IdentityFencedDb {
        IdentityFencedDb { inner, fence: Arc::new(Fence { expected, describe }) }
    }
}

impl Db for IdentityFencedDb {
    fn run(&self) -> Result<(), KvError> {
        self.inner.run()
    }

    fn close(&self) -> Result<(), KvError> {
        self.inner.close()
    }

    /// The `sectors` collection fenced; any other collection as the driver gives it (the identity lives in
    /// `sectors`, and a transaction spans one collection).
    fn open_collection(&self, name: &str) -> Result<Box<dyn KvStore>, KvError> {
        let inner = self.inner.open_collection(name)?;
        if name != COLLECTION {
            return Ok(inner);
        }
        Ok(Box::new(FencedCollection { inner, fence: Arc::clone(&self.fence) }))
    }
}

impl Fence {
    /// Reads the identity in `txn` and compares it: `Ok` when it is the expected one.
    fn check(&self, txn: &dyn Txn) -> Result<(), KvError> {
        let found = match txn.get(IDENTITY_KEY) {
            Ok(bytes) => Some(bytes),
            Err(KvError::KeyNotFound) => None,
            Err(err) => return Err(err),
        };
        let decoded = found.as_deref().map(serde_json::from_slice::<DbIdentity>);
        match decoded {
            Some(Ok(identity)) if identity == self.expected => {
                refusal::accept(RefusalCause::Identity);
                Ok(())
            }
            other => Err(refusal::refuse(RefusalCause::Identity, &self.message(other))),
        }
    }

    fn message(&self, found: Option<Result<DbIdentity, serde_json::Error>>) -> String {
        let (db, expected) = (&self.describe.name, &self.expected);
        let what = match found {
            None => format!(
                "{db} has no identity any more (it is empty or was replaced: {}), but this manager started on \
                 identity {expected}",
                self.describe.likely_causes
            ),
            Some(Ok(found)) => format!(
                "{db} now has identity {found}, but this manager started on identity {expected}: it is another \
                 database"
            ),
            Some(Err(err)) => format!("{db} holds an unreadable identity ({err}); this manager expects {expected}"),
        };
        format!(
            "{what}. Every read and write is refused so that no sector number is handed out twice. Bring the \
             database back (e.g. restart Redis on its data files): the manager goes on by itself. If the data is \
             gone for good, stop the daemon and start it once with `daemon run --adopt-db` (and set [Miners.Sector] \
             MinNumber above the last sector number used)"
        )
    }
}

/// The fenced `sectors` collection: plain reads and writes go through fenced transactions too.
struct FencedCollection {
    inner: Box<dyn KvStore>,
    fence: Arc<Fence>,
}

impl FencedCollection {
    fn fenced<'a>(&'a self, f: TxnFn<'a>) -> impl FnMut(&dyn Txn) -> Result<(), KvError> + 'a {
        move |txn: &dyn Txn| {
            self.fence.check(txn)?;
            f(txn)
        }
    }
}

impl KvStore for FencedCollection {
    fn get(&self, key: &[u8]) -> Result<Vec<u8>, KvError> {
        let mut value = None;
        self.view(&mut |txn| {
            value = Some(txn.get(key)?);
            Ok(())
        })?;
        value.ok_or(KvError::KeyNotFound)
    }

    fn peek(&self, key: &[u8], f: &mut dyn FnMut(&[u8])) -> Result<(), KvError> {
        self.view(&mut |txn| txn.peek(key, &mut *f))
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), KvError> {
        manager_plugin::kv::update_with_retry(self, super::TXN_ATTEMPTS, &mut |txn| txn.put(key, value))
    }

    fn del(&self, key: &[u8]) -> Result<(), KvError> {
        manager_plugin::kv::update_with_retry(self, super::TXN_ATTEMPTS, &mut |txn| txn.del(key))
    }

    /// Checks the identity once (a scan is not a transaction), then scans.
    fn scan(&self, prefix: &[u8]) -> Result<Box<dyn KvIter>, KvError> {
        self.view(&mut |_| Ok(()))?;
        self.inner.scan(prefix)
    }

    /// Checks the identity once, then scans from `after` if the store can.
    fn scan_after(&self, prefix: &[u8], after: &[u8]) -> Result<Option<Box<dyn KvIter>>, KvError> {
        self.view(&mut |_| Ok(()))?;
        self.inner.scan_after(prefix, after)
    }

    fn view(&self, f: TxnFn<'_>) -> Result<(), KvError> {
        self.inner.view(&mut self.fenced(f))
    }

    fn update(&self, f: TxnFn<'_>) -> Result<(), KvError> {
        self.inner.update(&mut self.fenced(f))
    }

    fn need_retry_transactions(&self) -> bool {
        self.inner.need_retry_transactions()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kvstore::RocksDb;

    fn describe() -> DbDescription {
        DbDescription { name: "RocksDB at /test".into(), likely_causes: "a test" }
    }

    #[test]
    fn a_lost_or_replaced_identity_refuses_every_transaction_and_its_return_lifts_the_refusal() {
        let dir = tempfile::tempdir().unwrap();
        let raw: Arc<dyn Db> = Arc::new(RocksDb::open(dir.path()).unwrap());
        raw.run().unwrap();
        let identity = DbIdentity::new();
        let plain = raw.open_collection(COLLECTION).unwrap();
        plain.put(IDENTITY_KEY, &serde_json::to_vec(&identity).unwrap()).unwrap();
        let fenced = IdentityFencedDb::new(Arc::clone(&raw), identity.clone(), describe());
        let store = fenced.open_collection(COLLECTION).unwrap();
        store.put(b"next/1000", b"3").unwrap();
        assert_eq!(store.get(b"next/1000").unwrap(), b"3");

        plain.del(IDENTITY_KEY).unwrap();
        let err = store.put(b"next/1000", b"1").unwrap_err();
        assert!(matches!(&err, KvError::Aborted(m) if m.contains("RocksDB at /test has no identity")), "{err}");
        assert!(matches!(store.get(b"next/1000"), Err(KvError::Aborted(_))), "reads are refused too");
        let mut ran = false;
        assert!(
            store
                .update(&mut |_| {
                    ran = true;
                    Ok(())
                })
                .is_err()
        );
        assert!(!ran, "the body of a refused transaction never runs");
        assert_eq!(plain.get(b"next/1000").unwrap(), b"3", "nothing was written");

        plain.put(IDENTITY_KEY, &serde_json::to_vec(&DbIdentity::new()).unwrap()).unwrap();
        let err = store.get(b"next/1000").unwrap_err();
        assert!(err.to_string().contains("now has identity"), "{err}");

        plain.put(IDENTITY_KEY, &serde_json::to_vec(&identity).unwrap()).unwrap();
        store.put(b"next/1000", b"4").unwrap();
        assert_eq!(store.get(b"next/1000").unwrap(), b"4");
    }
}
