//! One host-side adapter around every KV and file-store object a plugin hands out (applied by
//! [`PluginRecord::open_db`](super::PluginRecord::open_db) and
//! [`open_store`](super::PluginRecord::open_store), so no call site can forget it):
//!
//! - every closure or reader the host passes into the plugin (transaction bodies, `peek` callbacks, upload
//!   readers) runs under [`host_callback::catch`], so a host panic never unwinds into plugin frames;
//! - a KVStore plugin that panics in a write (`put`, `del`, `update`) may have applied part of it: the adapter
//!   raises the plugin's [`WriteFence`], after which every write through it is refused (reads go on) and the
//!   registry shows the plugin `Disabled` with the reason. Restarting the daemon lifts the fence;
//! - every call into the plugin object is timed ([`crate::metrics::plugin_calls`]).

use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use manager_plugin::filestore::{InstanceInfo, ObjectReader, ObjectStat, Store, StoreConfig};
use manager_plugin::kv::{Db, KvIter, KvStore, Txn, TxnFn};
use manager_plugin::{KvError, StoreError};

use super::host_callback::catch;
use crate::metrics::plugin_calls::{KvCallTimers, StoreCallTimers};

/// Raised when a KVStore plugin panicked in a write: from then on writes through it are refused.
#[derive(Debug, Default)]
pub struct WriteFence {
    reason: Mutex<Option<String>>,
}

impl WriteFence {
    /// Why writes are refused, if they are.
    pub fn reason(&self) -> Option<String> {
        self.reason.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn raise(&self, plugin: &str, what: &str, panic: &str) {
        let mut reason = self.reason.lock().unwrap_or_else(|p| p.into_inner());
        if reason.is_none() {
            let text = format!(
                "KVStore plugin '{plugin}' panicked inside {what} ({panic}) and may have applied part of it; \
                 writes through it are refused until the daemon restarts: check its data, then restart"
            );
            tracing::error!("{text}");
            *reason = Some(text);
        }
    }

    fn check(&self) -> Result<(), KvError> {
        match self.reason() {
            Some(reason) => Err(KvError::Backend(format!("write refused: {reason}"))),
            None => Ok(()),
        }
    }
}

/// Wraps a plugin's database (see the module docs).
pub struct HostDb {
    inner: Box<dyn Db>,
    plugin: Arc<str>,
    fence: Arc<WriteFence>,
    timers: Arc<KvCallTimers>,
}

impl HostDb {
    /// Wraps `inner`, a database of the KVStore plugin `plugin`, fenced by `fence`.
    pub fn new(inner: Box<dyn Db>, plugin: &str, fence: Arc<WriteFence>) -> HostDb {
        HostDb { inner, plugin: plugin.into(), fence, timers: Arc::new(KvCallTimers::new(plugin)) }
    }
}

impl Db for HostDb {
    fn run(&self) -> Result<(), KvError> {
        self.inner.run()
    }
    fn close(&self) -> Result<(), KvError> {
        self.inner.close()
    }
    fn open_collection(&self, name: &str) -> Result<Box<dyn KvStore>, KvError> {
        let inner = self.inner.open_collection(name)?;
        Ok(Box::new(HostKvStore {
            inner,
            plugin: Arc::clone(&self.plugin),
            fence: Arc::clone(&self.fence),
            timers: Arc::clone(&self.timers),
        }))
    }
}

struct HostKvStore {
    inner: Box<dyn KvStore>,
    plugin: Arc<str>,
    fence: Arc<WriteFence>,
    timers: Arc<KvCallTimers>,
}

impl HostKvStore {
    fn write<T>(&self, what: &str, f: impl FnOnce() -> Result<T, KvError>) -> Result<T, KvError> {
        self.fence.check()?;
        let result = f();
        if let Err(KvError::Panicked(panic)) = &result {
            self.fence.raise(&self.plugin, what, panic);
        }
        result
    }
}

/// Runs host transaction body `f` under [`catch`]; a host panic becomes `KvError::Aborted`.
fn caught_body<'a>(f: TxnFn<'a>) -> impl FnMut(&dyn Txn) -> Result<(), KvError> + 'a {
    move |txn: &dyn Txn| catch("a transaction body", || f(txn)).unwrap_or_else(|m| Err(KvError::Aborted(m)))
}

/// Runs `peek` with the host callback under [`catch`]; a host panic becomes `KvError::Aborted`.
fn caught_peek(
    f: &mut dyn FnMut(&[u8]),
    peek: impl FnOnce(&mut dyn FnMut(&[u8])) -> Result<(), KvError>,
) -> Result<(), KvError> {
    let mut failure = None;
    let result = peek(&mut |value: &[u8]| {
        if failure.is_none()
            && let Err(m) = catch("a peek callback", || f(value))
        {
            failure = Some(m);
        }
    });
    match failure {
        Some(m) => Err(KvError::Aborted(m)),
        None => result,
    }
}

impl KvStore for HostKvStore {
    fn get(&self, key: &[u8]) -> Result<Vec<u8>, KvError> {
        self.timers.get.time(|| self.inner.get(key))
    }
    fn peek(&self, key: &[u8], f: &mut dyn FnMut(&[u8])) -> Result<(), KvError> {
        self.timers.get.time(|| caught_peek(f, |cb| self.inner.peek(key, cb)))
    }
    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), KvError> {
        self.write("put", || self.timers.put.time(|| self.inner.put(key, value)))
    }
    fn del(&self, key: &[u8]) -> Result<(), KvError> {
        self.write("del", || self.timers.del.time(|| self.inner.del(key)))
    }
    fn scan(&self, prefix: &[u8]) -> Result<Box<dyn KvIter>, KvError> {
        self.timers.scan.time(|| self.inner.scan(prefix))
    }
    fn scan_after(&self, prefix: &[u8], after: &[u8]) -> Result<Option<Box<dyn KvIter>>, KvError> {
        self.timers.scan.time(|| self.inner.scan_after(prefix, after))
    }
    fn view(&self, f: TxnFn<'_>) -> Result<(), KvError> {
        let mut body = caught_body(f);
        self.timers.view.time(|| self.inner.view(&mut |txn: &dyn Txn| body(&HostTxn(txn))))
    }
    fn update(&self, f: TxnFn<'_>) -> Result<(), KvError> {
        let mut body = caught_body(f);
        self.write("a write transaction", || {
            self.timers.update.time(|| self.inner.update(&mut |txn: &dyn Txn| body(&HostTxn(txn))))
        })
    }
    fn need_retry_transactions(&self) -> bool {
        self.inner.need_retry_transactions()
    }
}

/// A plugin transaction as the host's body sees it: `peek` callbacks caught like everywhere else.
struct HostTxn<'a>(&'a dyn Txn);

impl Txn for HostTxn<'_> {
    fn get(&self, key: &[u8]) -> Result<Vec<u8>, KvError> {
        self.0.get(key)
    }
    fn peek(&self, key: &[u8], f: &mut dyn FnMut(&[u8])) -> Result<(), KvError> {
        caught_peek(f, |cb| self.0.peek(key, cb))
    }
    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), KvError> {
        self.0.put(key, value)
    }
    fn del(&self, key: &[u8]) -> Result<(), KvError> {
        self.0.del(key)
    }
    fn scan(&self, prefix: &[u8]) -> Result<Vec<manager_plugin::kv::Entry>, KvError> {
        self.0.scan(prefix)
    }
}

/// Wraps a plugin's store: readers the host hands to `put` run under [`catch`]; calls are timed.
pub struct HostStore {
    inner: Box<dyn Store>,
    timers: StoreCallTimers,
}

impl HostStore {
    /// Wraps `inner`, a store of the FileStore plugin `plugin`.
    pub fn new(inner: Box<dyn Store>, plugin: &str) -> HostStore {
        HostStore { inner, timers: StoreCallTimers::new(plugin) }
    }
}

impl Store for HostStore {
    fn type_name(&self) -> String {
        self.inner.type_name()
    }
    fn version(&self) -> String {
        self.inner.version()
    }
    fn instance(&self) -> String {
        self.inner.instance()
    }
    fn instance_config(&self) -> StoreConfig {
        self.inner.instance_config()
    }
    fn instance_info(&self) -> Result<InstanceInfo, StoreError> {
        self.timers.instance_info.time(|| self.inner.instance_info())
    }
    fn get(&self, path: &str) -> Result<ObjectReader, StoreError> {
        self.timers.get.time(|| self.inner.get(path))
    }
    fn del(&self, path: &str) -> Result<(), StoreError> {
        self.timers.del.time(|| self.inner.del(path))
    }
    fn stat(&self, path: &str) -> Result<ObjectStat, StoreError> {
        self.timers.stat.time(|| self.inner.stat(path))
    }
    fn put(&self, path: &str, reader: &mut dyn Read) -> Result<u64, StoreError> {
        self.timers.put.time(|| self.inner.put(path, &mut CaughtReader(reader)))
    }
    fn full_path(&self, path: &str) -> Result<PathBuf, StoreError> {
        self.inner.full_path(path)
    }
}

/// A host reader handed to a plugin: a host panic becomes an `io::Error`.
struct CaughtReader<'a>(&'a mut dyn Read);

impl Read for CaughtReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        catch("a reader handed to a FileStore plugin", || self.0.read(buf)).unwrap_or_else(|m| Err(io::Error::other(m)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use manager_plugin::kv::Entry;

    /// A store whose writes panic on demand, standing in for a plugin object (already guarded plugin-side, so a
    /// panic arrives as `KvError::Panicked`).
    struct Flaky;
    impl KvStore for Flaky {
        fn get(&self, _: &[u8]) -> Result<Vec<u8>, KvError> {
            Ok(b"v".to_vec())
        }
        fn peek(&self, _: &[u8], f: &mut dyn FnMut(&[u8])) -> Result<(), KvError> {
            f(b"v");
            Ok(())
        }
        fn put(&self, key: &[u8], _: &[u8]) -> Result<(), KvError> {
            if key == b"boom" { Err(KvError::Panicked("half written".into())) } else { Ok(()) }
        }
        fn del(&self, _: &[u8]) -> Result<(), KvError> {
            Ok(())
        }
        fn scan(&self, _: &[u8]) -> Result<Box<dyn KvIter>, KvError> {
            Err(KvError::Closed)
        }
        fn view(&self, f: TxnFn<'_>) -> Result<(), KvError> {
            f(&NoTxn)
        }
        fn update(&self, f: TxnFn<'_>) -> Result<(), KvError> {
            f(&NoTxn)
        }
        fn need_retry_transactions(&self) -> bool {
            false
        }
    }
    struct NoTxn;
    impl Txn for NoTxn {
        fn get(&self, _: &[u8]) -> Result<Vec<u8>, KvError> {
            Err(KvError::KeyNotFound)
        }
        fn peek(&self, _: &[u8], f: &mut dyn FnMut(&[u8])) -> Result<(), KvError> {
            f(b"v");
            Ok(())
        }
        fn put(&self, _: &[u8], _: &[u8]) -> Result<(), KvError> {
            Ok(())
        }
        fn del(&self, _: &[u8]) -> Result<(), KvError> {
            Ok(())
        }
        fn scan(&self, _: &[u8]) -> Result<Vec<Entry>, KvError> {
            Ok(Vec::new())
        }
    }

    fn store(fence: &Arc<WriteFence>) -> HostKvStore {
        HostKvStore {
            inner: Box::new(Flaky),
            plugin: "flaky".into(),
            fence: Arc::clone(fence),
            timers: Arc::new(KvCallTimers::new("flaky")),
        }
    }

    #[test]
    fn a_host_panic_in_a_transaction_body_or_peek_callback_becomes_an_error() {
        let fence = Arc::new(WriteFence::default());
        let s = store(&fence);
        let err = s.update(&mut |_| panic!("host bug")).unwrap_err();
        assert!(matches!(&err, KvError::Aborted(m) if m.contains("a transaction body panicked: host bug")), "{err}");
        let err = s.view(&mut |txn| txn.peek(b"k", &mut |_| panic!("peek bug"))).unwrap_err();
        assert!(matches!(&err, KvError::Aborted(m) if m.contains("peek bug")), "{err}");
        let err = s.peek(b"k", &mut |_| panic!("outer peek bug")).unwrap_err();
        assert!(matches!(&err, KvError::Aborted(m) if m.contains("outer peek bug")), "{err}");
        assert!(fence.reason().is_none(), "a host panic is not the plugin's");
    }

    #[test]
    fn a_plugin_panic_in_a_write_fences_every_later_write_but_not_reads() {
        let fence = Arc::new(WriteFence::default());
        let s = store(&fence);
        s.put(b"ok", b"v").unwrap();
        assert!(matches!(s.put(b"boom", b"v"), Err(KvError::Panicked(_))));
        let reason = fence.reason().expect("fence raised");
        assert!(reason.contains("KVStore plugin 'flaky' panicked inside put (half written)"), "{reason}");
        let err = s.put(b"ok", b"v").unwrap_err();
        assert!(err.to_string().starts_with("write refused: KVStore plugin 'flaky'"), "{err}");
        assert!(s.update(&mut |_| Ok(())).is_err());
        assert!(s.del(b"ok").is_err());
        assert_eq!(s.get(b"k").unwrap(), b"v");
    }
}
