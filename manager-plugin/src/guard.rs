//! Plugin-side guards. Every function a plugin exports and every object it hands to the host is wrapped so that
//! a panic is caught *inside the plugin* (by the plugin's own copy of std, the only one that can catch it) and
//! returned as an error on that one call. The guards also count calls, failures and panics into the host's
//! [`CallStats`].
//!
//! Dropping a guarded object is guarded too: the author's `Drop` runs inside the plugin's `catch_unwind`.
//!
//! Host code that a guard calls back (transaction closures, readers, log sinks) must never panic: a host panic
//! unwinding into a plugin's `catch_unwind` would abort the process. The manager catches panics in every such
//! callback on its own side (`host_callback`).

use std::any::Any;
use std::fmt::Display;
use std::io::{self, Read};
use std::mem::ManuallyDrop;
use std::ops::Deref;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use crate::error::{BoundaryError, KvError, RpcError, StoreError};
use crate::filestore::{InstanceInfo, ObjectReader, ObjectStat, Store, StoreConfig};
use crate::jsonrpc::JsonRpcHandler;
use crate::kv::{Db, Entry, KvIter, KvStore, Txn, TxnFn};
use crate::lifecycle::CallStats;

static STATS: OnceLock<Arc<CallStats>> = OnceLock::new();

/// Connects the guards of this plugin to the host's counters. Called by the generated init glue.
pub(crate) fn set_stats(stats: Arc<CallStats>) {
    let _ = STATS.set(stats);
}

fn stats() -> &'static CallStats {
    STATS.get_or_init(Default::default)
}

/// The message of a caught panic payload.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}

/// Runs one plugin call: counts it, catches a panic as `E::from_panic`, and records failures.
///
/// An error that is already a caught panic (propagated from a nested guard) is not counted again.
pub fn guard<T, E: BoundaryError + Display>(f: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
    let stats = stats();
    stats.record_call();
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => {
            if err.is_failure() && !err.is_panic() {
                stats.record_failure(err.to_string(), false);
            }
            Err(err)
        }
        Err(payload) => {
            let err = E::from_panic(panic_message(payload.as_ref()));
            drop_payload(payload);
            stats.record_failure(err.to_string(), true);
            Err(err)
        }
    }
}

/// Drops a caught panic payload inside a nested catch: a payload whose `Drop` panics would otherwise unwind out
/// of the guard after `catch_unwind` returned (rust-lang/rust#86027). A second payload is leaked, not dropped.
pub fn drop_payload(payload: Box<dyn Any + Send>) {
    if let Err(second) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        std::mem::forget(second);
    }
}

/// Like [`guard`] for calls that cannot fail: a panic yields `fallback`.
fn guard_infallible<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    guard::<T, KvError>(|| Ok(f())).unwrap_or(fallback)
}

/// Owns a plugin object and drops it inside `catch_unwind`, so a panicking `Drop` becomes a counted panic.
pub struct DropGuard<T>(ManuallyDrop<T>);

impl<T> DropGuard<T> {
    /// Takes ownership of `value`.
    pub fn new(value: T) -> Self {
        DropGuard(ManuallyDrop::new(value))
    }
}

impl<T> Deref for DropGuard<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> std::ops::DerefMut for DropGuard<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T> Drop for DropGuard<T> {
    fn drop(&mut self) {
        // SAFETY: `self.0` is never used again: this is the guard's own drop.
        let value = unsafe { ManuallyDrop::take(&mut self.0) };
        if let Err(payload) = catch_unwind(AssertUnwindSafe(move || drop(value))) {
            stats().record_failure(format!("plugin panicked in drop: {}", panic_message(payload.as_ref())), true);
            drop_payload(payload);
        }
    }
}

/// Wraps a plugin's [`Db`].
pub struct GuardedDb<D>(pub DropGuard<D>);

impl<D: Db> Db for GuardedDb<D> {
    fn run(&self) -> Result<(), KvError> {
        guard(|| self.0.run())
    }
    fn close(&self) -> Result<(), KvError> {
        guard(|| self.0.close())
    }
    fn open_collection(&self, name: &str) -> Result<Box<dyn KvStore>, KvError> {
        guard(|| self.0.open_collection(name).map(|c| Box::new(GuardedKvStore(DropGuard::new(c))) as Box<dyn KvStore>))
    }
}

/// Wraps a plugin's [`KvStore`].
pub struct GuardedKvStore(pub DropGuard<Box<dyn KvStore>>);

impl KvStore for GuardedKvStore {
    fn get(&self, key: &[u8]) -> Result<Vec<u8>, KvError> {
        guard(|| self.0.get(key))
    }
    fn peek(&self, key: &[u8], f: &mut dyn FnMut(&[u8])) -> Result<(), KvError> {
        guard(|| self.0.peek(key, f))
    }
    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), KvError> {
        guard(|| self.0.put(key, value))
    }
    fn del(&self, key: &[u8]) -> Result<(), KvError> {
        guard(|| self.0.del(key))
    }
    fn scan(&self, prefix: &[u8]) -> Result<Box<dyn KvIter>, KvError> {
        guard(|| self.0.scan(prefix).map(|it| Box::new(GuardedIter(DropGuard::new(it))) as Box<dyn KvIter>))
    }
    fn scan_after(&self, prefix: &[u8], after: &[u8]) -> Result<Option<Box<dyn KvIter>>, KvError> {
        guard(|| {
            let iter = self.0.scan_after(prefix, after)?;
            Ok(iter.map(|it| Box::new(GuardedIter(DropGuard::new(it))) as Box<dyn KvIter>))
        })
    }
    fn view(&self, f: TxnFn<'_>) -> Result<(), KvError> {
        guard(|| self.0.view(&mut |txn: &dyn Txn| f(&GuardedTxn(txn))))
    }
    fn update(&self, f: TxnFn<'_>) -> Result<(), KvError> {
        guard(|| self.0.update(&mut |txn: &dyn Txn| f(&GuardedTxn(txn))))
    }
    fn need_retry_transactions(&self) -> bool {
        guard_infallible(false, || self.0.need_retry_transactions())
    }
}

/// Wraps a plugin's [`Txn`] for the duration of a host closure.
pub struct GuardedTxn<'a>(pub &'a dyn Txn);

impl Txn for GuardedTxn<'_> {
    fn get(&self, key: &[u8]) -> Result<Vec<u8>, KvError> {
        guard(|| self.0.get(key))
    }
    fn peek(&self, key: &[u8], f: &mut dyn FnMut(&[u8])) -> Result<(), KvError> {
        guard(|| self.0.peek(key, f))
    }
    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), KvError> {
        guard(|| self.0.put(key, value))
    }
    fn del(&self, key: &[u8]) -> Result<(), KvError> {
        guard(|| self.0.del(key))
    }
    fn scan(&self, prefix: &[u8]) -> Result<Vec<Entry>, KvError> {
        guard(|| self.0.scan(prefix))
    }
}

/// Wraps a plugin's [`KvIter`].
pub struct GuardedIter(pub DropGuard<Box<dyn KvIter>>);

impl KvIter for GuardedIter {
    fn next_entry(&mut self) -> Result<Option<Entry>, KvError> {
        guard(|| self.0.next_entry())
    }
}

/// Wraps a plugin's [`Store`].
pub struct GuardedStore<S>(pub DropGuard<S>);

impl<S: Store> Store for GuardedStore<S> {
    fn type_name(&self) -> String {
        guard_infallible(String::new(), || self.0.type_name())
    }
    fn version(&self) -> String {
        guard_infallible(String::new(), || self.0.version())
    }
    fn instance(&self) -> String {
        guard_infallible(String::new(), || self.0.instance())
    }
    fn instance_config(&self) -> StoreConfig {
        guard_infallible(StoreConfig::default(), || self.0.instance_config())
    }
    fn instance_info(&self) -> Result<InstanceInfo, StoreError> {
        guard(|| self.0.instance_info())
    }
    fn get(&self, path: &str) -> Result<ObjectReader, StoreError> {
        guard(|| self.0.get(path).map(|r| Box::new(GuardedReader(DropGuard::new(r))) as ObjectReader))
    }
    fn del(&self, path: &str) -> Result<(), StoreError> {
        guard(|| self.0.del(path))
    }
    fn stat(&self, path: &str) -> Result<ObjectStat, StoreError> {
        guard(|| self.0.stat(path))
    }
    fn put(&self, path: &str, reader: &mut dyn Read) -> Result<u64, StoreError> {
        guard(|| self.0.put(path, reader))
    }
    fn full_path(&self, path: &str) -> Result<PathBuf, StoreError> {
        guard(|| self.0.full_path(path))
    }
}

/// Wraps a plugin's object reader: a panic becomes an `io::Error`, an error keeps its `io::ErrorKind`, and a
/// count larger than the buffer (which would make the host read past it) becomes an `InvalidData` error.
///
/// Only `read` is implemented: std's provided `Read` methods (`read_to_end`, `read_exact`...) all go through it,
/// so none of the author's overrides of those runs unguarded.
pub struct GuardedReader(pub DropGuard<ObjectReader>);

impl Read for GuardedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let stats = stats();
        stats.record_call();
        let capacity = buf.len();
        match catch_unwind(AssertUnwindSafe(|| self.0.read(buf))) {
            Ok(Ok(n)) if n <= capacity => Ok(n),
            Ok(Ok(n)) => {
                let message = format!("plugin reader returned {n} bytes for a buffer of {capacity}");
                stats.record_failure(message.clone(), false);
                Err(io::Error::new(io::ErrorKind::InvalidData, message))
            }
            Ok(Err(err)) => {
                if err.kind() != io::ErrorKind::Interrupted {
                    stats.record_failure(err.to_string(), false);
                }
                Err(err)
            }
            Err(payload) => {
                let message = format!("plugin panicked: {}", panic_message(payload.as_ref()));
                drop_payload(payload);
                stats.record_failure(message.clone(), true);
                Err(io::Error::other(message))
            }
        }
    }
}

/// Wraps a plugin's [`JsonRpcHandler`].
pub struct GuardedHandler<H>(pub DropGuard<H>);

impl<H: JsonRpcHandler> JsonRpcHandler for GuardedHandler<H> {
    fn methods(&self) -> Vec<String> {
        guard_infallible(Vec::new(), || self.0.methods())
    }
    fn call(&self, method: &str, params: &str) -> Result<String, RpcError> {
        guard(|| self.0.call(method, params))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::PluginError;

    #[test]
    fn a_panic_becomes_an_error_of_the_calls_type() {
        let r: Result<(), KvError> = guard(|| panic!("boom"));
        assert_eq!(r, Err(KvError::Panicked("boom".into())));
        let r: Result<(), PluginError> = guard(|| panic!("{}", String::from("formatted")));
        assert_eq!(r, Err(PluginError::Panicked("formatted".into())));
    }

    #[test]
    fn a_panicking_reader_yields_an_io_error() {
        struct Bad;
        impl Read for Bad {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                panic!("reader broke")
            }
        }
        let mut r = GuardedReader(DropGuard::new(Box::new(Bad)));
        let err = r.read(&mut [0; 4]).unwrap_err();
        assert!(err.to_string().contains("reader broke"), "{err}");
    }

    #[test]
    fn a_panic_payload_whose_drop_panics_stays_inside_the_guard() {
        struct PanicsOnDrop;
        impl Drop for PanicsOnDrop {
            fn drop(&mut self) {
                panic!("payload drop broke");
            }
        }
        let r: Result<(), KvError> = guard(|| std::panic::panic_any(PanicsOnDrop));
        assert_eq!(r, Err(KvError::Panicked("panic with a non-string payload".into())));
    }

    #[test]
    fn a_reader_returning_more_than_asked_is_an_error_and_error_kinds_survive() {
        struct Liar;
        impl Read for Liar {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                Ok(buf.len() + 100)
            }
        }
        let mut r = GuardedReader(DropGuard::new(Box::new(Liar)));
        let mut buf = Vec::new();
        let err = r.read_to_end(&mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");

        struct Missing;
        impl Read for Missing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::NotFound, "gone"))
            }
        }
        let err = GuardedReader(DropGuard::new(Box::new(Missing))).read(&mut [0; 4]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn a_panicking_drop_is_caught_and_counted() {
        struct PanicsOnDrop;
        impl Drop for PanicsOnDrop {
            fn drop(&mut self) {
                panic!("drop broke");
            }
        }
        let before = stats().snapshot().panics;
        drop(DropGuard::new(PanicsOnDrop));
        assert!(stats().snapshot().panics > before);
    }
}
