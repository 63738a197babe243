//! Test fixture: the fsstore example behind the crash trigger (`crash-trigger`), checked before every call.

use std::convert::Infallible;
use std::io::Read;
use std::path::PathBuf;

use manager_plugin::PluginContext;
use manager_plugin::filestore::{InstanceInfo, ObjectReader, ObjectStat, Store, StoreConfig, StoreError};

const NAME: &str = "crashy-store";

/// Remembers the plugins dir for the trigger.
pub fn init(ctx: &PluginContext) -> Result<(), Infallible> {
    crash_trigger::init(ctx);
    Ok(())
}

/// An fsstore instance.
pub fn open(config: StoreConfig) -> Result<Crashy, StoreError> {
    fsstore::open(config).map(Crashy)
}

/// fsstore, behind the trigger.
pub struct Crashy(fsstore::FsStore);

impl Store for Crashy {
    fn type_name(&self) -> String {
        self.0.type_name()
    }
    fn version(&self) -> String {
        self.0.version()
    }
    fn instance(&self) -> String {
        self.0.instance()
    }
    fn instance_config(&self) -> StoreConfig {
        self.0.instance_config()
    }
    fn instance_info(&self) -> Result<InstanceInfo, StoreError> {
        crash_trigger::check(NAME);
        self.0.instance_info()
    }
    fn get(&self, path: &str) -> Result<ObjectReader, StoreError> {
        crash_trigger::check(NAME);
        self.0.get(path)
    }
    fn del(&self, path: &str) -> Result<(), StoreError> {
        crash_trigger::check(NAME);
        self.0.del(path)
    }
    fn stat(&self, path: &str) -> Result<ObjectStat, StoreError> {
        crash_trigger::check(NAME);
        self.0.stat(path)
    }
    fn put(&self, path: &str, reader: &mut dyn Read) -> Result<u64, StoreError> {
        crash_trigger::check(NAME);
        self.0.put(path, reader)
    }
    fn full_path(&self, path: &str) -> Result<PathBuf, StoreError> {
        crash_trigger::check(NAME);
        self.0.full_path(path)
    }
}
