//! A [`Db`] that hands out its inner database's collections through a wrapper: the delegation every
//! instrumented test database (counting reads, gating commits, commits that land late) shares.

use manager_plugin::kv::{Db, KvError, KvStore};

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
