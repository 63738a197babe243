//! Test fixture: a FileStore plugin whose `put` panics, to prove panics become errors.
//! `onInit` panics when `<plugins dir>/panic-in-init` exists.

use std::io::Read;
use std::path::PathBuf;

use manager_plugin::PluginContext;
use manager_plugin::filestore::{InstanceInfo, ObjectReader, ObjectStat, Store, StoreConfig, StoreError};

static PLUGINS_DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// Appends `event` to `<plugins dir>/lifecycle.log`, so tests can check the order of init and shutdown calls.
fn record(dir: &std::path::Path, event: &str) -> Result<(), String> {
    use std::io::Write as _;
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("lifecycle.log"))
        .map_err(|e| e.to_string())?;
    writeln!(log, "{event} panicky-store").map_err(|e| e.to_string())
}

/// Records the shutdown in `<plugins dir>/lifecycle.log`.
pub fn shutdown() -> Result<(), String> {
    match PLUGINS_DIR.get() {
        Some(dir) => record(dir, "shutdown"),
        None => Err("shutdown before init".into()),
    }
}

/// Panics when `<plugins dir>/panic-in-init` exists; records the init in `<plugins dir>/lifecycle.log`.
pub fn init(ctx: &PluginContext) -> Result<(), String> {
    let _ = PLUGINS_DIR.set(ctx.plugins_dir.clone());
    record(&ctx.plugins_dir, "init")?;
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
