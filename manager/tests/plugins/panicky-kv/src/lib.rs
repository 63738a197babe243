//! Test fixture: a KVStore plugin that panics on demand, to prove panics become errors.
//! `Meta` key `panic_in` = `constructor` | `get` | `get-unwrap` (get panics as an `unwrap` of an I/O error does, a
//! long message) | `iter` | `drop` (the iterator's `Drop`); `onInit` panics when `<plugins dir>/panic-in-init`
//! exists.

use std::sync::Mutex;

use manager_plugin::PluginContext;
use manager_plugin::kv::{Db, Entry, KvError, KvIter, KvStore, Meta, TxnFn};

/// Records the shutdown in `<plugins dir>/lifecycle.log`.
pub fn shutdown() -> Result<(), String> {
    lifecycle_log::shutdown("panicky-kv")
}

/// Panics when `<plugins dir>/panic-in-init` exists; records the init in `<plugins dir>/lifecycle.log`.
pub fn init(ctx: &PluginContext) -> Result<(), String> {
    lifecycle_log::init(ctx, "panicky-kv")?;
    if ctx.plugins_dir.join("panic-in-init").exists() {
        panic!("panicky-kv: told to panic in onInit");
    }
    Ok(())
}

/// Panics when `panic_in = "constructor"`.
pub fn open(meta: &Meta) -> Result<PanickyDb, String> {
    let panic_in = meta.get("panic_in").cloned().unwrap_or_default();
    if panic_in == "constructor" {
        panic!("panicky-kv: told to panic in the constructor");
    }
    Ok(PanickyDb { panic_in })
}

/// A database whose single collection holds one key, `k`.
pub struct PanickyDb {
    panic_in: String,
}

impl Db for PanickyDb {
    fn run(&self) -> Result<(), KvError> {
        Ok(())
    }
    fn close(&self) -> Result<(), KvError> {
        Ok(())
    }
    fn open_collection(&self, _name: &str) -> Result<Box<dyn KvStore>, KvError> {
        Ok(Box::new(PanickyStore { panic_in: self.panic_in.clone(), value: Mutex::new(b"v".to_vec()) }))
    }
}

struct PanickyStore {
    panic_in: String,
    value: Mutex<Vec<u8>>,
}

impl PanickyStore {
    fn value(&self) -> Vec<u8> {
        self.value.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl KvStore for PanickyStore {
    fn get(&self, _key: &[u8]) -> Result<Vec<u8>, KvError> {
        if self.panic_in == "get" {
            panic!("panicky-kv: told to panic in get");
        }
        if self.panic_in == "get-unwrap" {
            // The panic an author's `unwrap()` on an I/O error raises, message and all.
            let failed: Result<(), std::io::Error> = std::hint::black_box(Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "cannot open /var/lib/panicky-kv/segment-000042.log",
            )));
            failed.unwrap();
        }
        Ok(self.value())
    }
    fn peek(&self, key: &[u8], f: &mut dyn FnMut(&[u8])) -> Result<(), KvError> {
        f(&self.get(key)?);
        Ok(())
    }
    fn put(&self, _key: &[u8], value: &[u8]) -> Result<(), KvError> {
        if let Ok(mut v) = self.value.lock() {
            *v = value.to_vec();
        }
        Ok(())
    }
    fn del(&self, _key: &[u8]) -> Result<(), KvError> {
        Ok(())
    }
    fn scan(&self, _prefix: &[u8]) -> Result<Box<dyn KvIter>, KvError> {
        Ok(Box::new(PanickyIter {
            panic: self.panic_in == "iter",
            panic_on_drop: self.panic_in == "drop",
            done: false,
            value: self.value(),
        }))
    }
    fn view(&self, _f: TxnFn<'_>) -> Result<(), KvError> {
        Err(KvError::Backend("panicky-kv has no transactions".into()))
    }
    fn update(&self, _f: TxnFn<'_>) -> Result<(), KvError> {
        Err(KvError::Backend("panicky-kv has no transactions".into()))
    }
    fn need_retry_transactions(&self) -> bool {
        false
    }
}

struct PanickyIter {
    panic: bool,
    panic_on_drop: bool,
    done: bool,
    value: Vec<u8>,
}

impl Drop for PanickyIter {
    fn drop(&mut self) {
        if self.panic_on_drop {
            panic!("panicky-kv: told to panic when the iterator is dropped");
        }
    }
}

impl KvIter for PanickyIter {
    fn next_entry(&mut self) -> Result<Option<Entry>, KvError> {
        if self.panic {
            panic!("panicky-kv: told to panic in the iterator");
        }
        if std::mem::replace(&mut self.done, true) {
            return Ok(None);
        }
        Ok(Some((b"k".to_vec(), self.value.clone())))
    }
}
