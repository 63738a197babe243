//! Test fixture: a FileStore plugin whose `put` panics, and whose `stat` panics for objects named
//! `panic-in-stat…`, to prove panics become errors naming the store method that panicked.
//! `onInit` panics when `<plugins dir>/panic-in-init` exists.

use std::io::Read;
use std::path::PathBuf;

use manager_plugin::PluginContext;
use manager_plugin::filestore::{InstanceInfo, ObjectReader, ObjectStat, Store, StoreConfig, StoreError};

/// Records the shutdown in `<plugins dir>/lifecycle.log`.
pub fn shutdown() -> Result<(), String> {
    lifecycle_log::shutdown("panicky-store")
}

/// Panics when `<plugins dir>/panic-in-init` exists; records the init in `<plugins dir>/lifecycle.log`.
pub fn init(ctx: &PluginContext) -> Result<(), String> {
    lifecycle_log::init(ctx, "panicky-store")?;
    if ctx.plugins_dir.join("panic-in-init").exists() {
        panic!("panicky-store: told to panic in onInit");
    }
    Ok(())
}

/// Builds the store.
pub fn open(config: StoreConfig) -> Result<PanickyStore, String> {
    Ok(PanickyStore { config })
}

/// A store whose `put` panics after reading some input.
pub struct PanickyStore {
    config: StoreConfig,
}

impl Store for PanickyStore {
    fn type_name(&self) -> String {
        "panicky-store".into()
    }
    fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").into()
    }
    fn instance(&self) -> String {
        self.config.name.clone()
    }
    fn instance_config(&self) -> StoreConfig {
        self.config.clone()
    }
    fn instance_info(&self) -> Result<InstanceInfo, StoreError> {
        Ok(InstanceInfo { config: self.config.clone(), total: 0, free: 0, used: 0 })
    }
    fn get(&self, path: &str) -> Result<ObjectReader, StoreError> {
        Err(StoreError::NotFound(path.into()))
    }
    fn del(&self, path: &str) -> Result<(), StoreError> {
        Err(StoreError::NotFound(path.into()))
    }
    fn stat(&self, path: &str) -> Result<ObjectStat, StoreError> {
        if path.starts_with("panic-in-stat") {
            panic!("panicky-store: told to panic in stat");
        }
        Err(StoreError::NotFound(path.into()))
    }
    fn put(&self, _path: &str, reader: &mut dyn Read) -> Result<u64, StoreError> {
        let mut buf = [0u8; 16];
        let _ = reader.read(&mut buf);
        panic!("panicky-store: told to panic in put");
    }
    fn full_path(&self, path: &str) -> Result<PathBuf, StoreError> {
        Ok(PathBuf::from(path))
    }
}
