//! The file store (object store) SPI, used for piece stores and persist stores. The manager's built-in local
//! store and FileStore plugins implement the same [`Store`] trait.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use crate::error::StoreError;

/// How a store instance is configured (`[[Common.PieceStores]]` / `[[Common.PersistStores]]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StoreConfig {
    /// Instance name, unique among the manager's stores.
    pub name: String,
    /// Root path (meaning is up to the implementation).
    pub path: String,
    /// Free-form settings.
    pub meta: BTreeMap<String, String>,
    /// Refuse objects whose layout does not match exactly (implementation-defined).
    pub strict: bool,
    /// Refuse writes and deletes.
    pub read_only: bool,
    /// Relative weight when picking a persist store; 0 counts as 1.
    pub weight: u32,
}

/// Capacity figures of an instance, in bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InstanceInfo {
    /// The instance's configuration.
    pub config: StoreConfig,
    /// Capacity of the underlying volume.
    pub total: u64,
    /// Space still available for new objects.
    pub free: u64,
    /// Space used by the volume.
    pub used: u64,
}

/// Metadata of one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ObjectStat {
    /// Size in bytes.
    pub size: u64,
}

/// A streaming reader over an object.
pub type ObjectReader = Box<dyn Read + Send>;

/// An object store instance. Object paths are relative, `/`-separated, without `..` components.
pub trait Store: Send + Sync {
    /// Implementation name (e.g. `local`, `fsstore`).
    fn type_name(&self) -> String;
    /// Implementation version.
    fn version(&self) -> String;
    /// The instance name (`StoreConfig::name`).
    fn instance(&self) -> String;
    /// The configuration this instance was built with.
    fn instance_config(&self) -> StoreConfig;
    /// Capacity figures.
    fn instance_info(&self) -> Result<InstanceInfo, StoreError>;
    /// Opens the object at `path` for streaming reads.
    fn get(&self, path: &str) -> Result<ObjectReader, StoreError>;
    /// Removes the object; [`StoreError::NotFound`] if absent, [`StoreError::ReadOnly`] on a read-only store.
    fn del(&self, path: &str) -> Result<(), StoreError>;
    /// Object metadata, or [`StoreError::NotFound`].
    fn stat(&self, path: &str) -> Result<ObjectStat, StoreError>;
    /// Writes the whole of `reader` to `path`, atomically: readers see the old object or the complete new one.
    /// Returns the number of bytes written.
    fn put(&self, path: &str, reader: &mut dyn Read) -> Result<u64, StoreError>;
    /// Where the object lives, for implementations that have a filesystem path; refuses invalid object paths.
    fn full_path(&self, path: &str) -> Result<PathBuf, StoreError>;
}

/// Checks an object path: relative, non-empty, no `..`, `.` or empty components, no NUL. Returns its components.
pub fn validate_object_path(path: &str) -> Result<Vec<&str>, StoreError> {
    let invalid = |reason: &str| StoreError::InvalidPath { path: path.to_string(), reason: reason.to_string() };
    if path.is_empty() {
        return Err(invalid("empty path"));
    }
    if path.starts_with('/') {
        return Err(invalid("absolute paths are not allowed"));
    }
    if path.contains('\0') {
        return Err(invalid("NUL byte in path"));
    }
    let parts: Vec<&str> = path.split('/').collect();
    for part in &parts {
        match *part {
            ".." => return Err(invalid("`..` components are not allowed")),
            "." | "" => return Err(invalid("empty or `.` components are not allowed")),
            _ => {}
        }
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_paths_escaping_the_store_are_refused() {
        for bad in ["", "/etc/passwd", "../x", "a/../../b", "a//b", "./a", "a/\0"] {
            assert!(matches!(validate_object_path(bad), Err(StoreError::InvalidPath { .. })), "{bad:?}");
        }
        assert_eq!(validate_object_path("a/b.car").unwrap(), ["a", "b.car"]);
    }
}
