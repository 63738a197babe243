//! Test fixture: a FileStore plugin whose `instance_info` never returns (a hung network mount, a dead object
//! store endpoint), to prove that one unanswering store never freezes reservations or listings.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use manager_plugin::filestore::{InstanceInfo, ObjectReader, ObjectStat, Store, StoreConfig, StoreError};

/// Builds the store.
pub fn open(config: StoreConfig) -> Result<HungStore, String> {
    Ok(HungStore { config })
}

/// A store whose capacity call blocks forever; every object is absent.
pub struct HungStore {
    config: StoreConfig,
}

impl Store for HungStore {
    fn type_name(&self) -> String {
        "hung-store".into()
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
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
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
    fn put(&self, _path: &str, _reader: &mut dyn Read) -> Result<u64, StoreError> {
        Err(StoreError::Io("hung-store takes no writes".into()))
    }
    fn full_path(&self, path: &str) -> Result<PathBuf, StoreError> {
        Ok(PathBuf::from(path))
    }
}
