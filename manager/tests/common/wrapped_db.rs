//! A [`Db`] that hands out its inner database's collections through a wrapper, and [`Forwarding`], the
//! collection wrapper that passes every call through except those it instruments: the delegation every
//! instrumented test database (counting reads, gating commits, racing commits) shares.

use manager_plugin::kv::{Db, KvError, KvIter, KvStore, TxnFn};

/// How a [`WrappedDb`] wraps one collection: given the inner database, the collection's name and the inner
/// collection, the collection to hand out.
pub type WrapCollection = dyn Fn(&dyn Db, &str, Box<dyn KvStore>) -> Result<Box<dyn KvStore>, KvError> + Send + Sync;

/// `inner`, with every collection it opens passed through `wrap`; `run` and `close` go straight through.
pub struct WrappedDb {
    inner: Box<dyn Db>,
    wrap: Box<WrapCollection>,
}

impl WrappedDb {
    /// Wraps `inner`'s collections with `wrap`.
    pub fn new(
        inner: Box<dyn Db>,
        wrap: impl Fn(&dyn Db, &str, Box<dyn KvStore>) -> Result<Box<dyn KvStore>, KvError> + Send + Sync + 'static,
    ) -> WrappedDb {
        WrappedDb { inner, wrap: Box::new(wrap) }
    }
}

impl Db for WrappedDb {
    fn run(&self) -> Result<(), KvError> {
        self.inner.run()
    }
    fn close(&self) -> Result<(), KvError> {
        self.inner.close()
    }
    fn open_collection(&self, name: &str) -> Result<Box<dyn KvStore>, KvError> {
        (self.wrap)(&*self.inner, name, self.inner.open_collection(name)?)
    }
}

/// A collection wrapper that forwards every call to [`inner`](Forwarding::inner); implementors override only the
/// calls they instrument. Hand it out as a [`KvStore`] with [`Forwarded`].
pub trait Forwarding: Send + Sync {
    /// The wrapped collection.
    fn inner(&self) -> &dyn KvStore;
    fn get(&self, key: &[u8]) -> Result<Vec<u8>, KvError> {
        self.inner().get(key)
    }
    fn peek(&self, key: &[u8], f: &mut dyn FnMut(&[u8])) -> Result<(), KvError> {
        self.inner().peek(key, f)
    }
    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), KvError> {
        self.inner().put(key, value)
    }
    fn del(&self, key: &[u8]) -> Result<(), KvError> {
        self.inner().del(key)
    }
    fn scan(&self, prefix: &[u8]) -> Result<Box<dyn KvIter>, KvError> {
        self.inner().scan(prefix)
    }
    fn scan_after(&self, prefix: &[u8], after: &[u8]) -> Result<Option<Box<dyn KvIter>>, KvError> {
        self.inner().scan_after(prefix, after)
    }
    fn view(&self, f: TxnFn<'_>) -> Result<(), KvError> {
        self.inner().view(f)
    }
    fn update(&self, f: TxnFn<'_>) -> Result<(), KvError> {
        self.inner().update(f)
    }
}

/// A [`Forwarding`] wrapper as a [`KvStore`].
pub struct Forwarded<T>(pub T);

impl<T: Forwarding> KvStore for Forwarded<T> {
    fn get(&self, key: &[u8]) -> Result<Vec<u8>, KvError> {
        self.0.get(key)
    }
    fn peek(&self, key: &[u8], f: &mut dyn FnMut(&[u8])) -> Result<(), KvError> {
        self.0.peek(key, f)
    }
    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), KvError> {
        self.0.put(key, value)
    }
    fn del(&self, key: &[u8]) -> Result<(), KvError> {
        self.0.del(key)
    }
    fn scan(&self, prefix: &[u8]) -> Result<Box<dyn KvIter>, KvError> {
        self.0.scan(prefix)
    }
    fn scan_after(&self, prefix: &[u8], after: &[u8]) -> Result<Option<Box<dyn KvIter>>, KvError> {
        self.0.scan_after(prefix, after)
    }
    fn view(&self, f: TxnFn<'_>) -> Result<(), KvError> {
        self.0.view(f)
    }
    fn update(&self, f: TxnFn<'_>) -> Result<(), KvError> {
        self.0.update(f)
    }
    fn need_retry_transactions(&self) -> bool {
        self.0.inner().need_retry_transactions()
    }
}
