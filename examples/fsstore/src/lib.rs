//! # fsstore: a FileStore on a local directory
//!
//! Objects are regular files under a root directory (`Path` of a `[[Common.PieceStores]]` or
//! `[[Common.PersistStores]]` entry); an object path `a/b.car` is the file `<root>/a/b.car`. The manager loads it
//! as a plugin or links it statically as its built-in local store, so it is the one implementation of both.
//!
//! What a caller may rely on:
//! - object paths are checked with [`validate_object_path`]: absolute paths, `..`, `.` and empty components are
//!   refused, so no object lives outside the root;
//! - [`put`](Store::put) is atomic and durable: the data goes to a temporary file in the target's directory, is
//!   synced, then renamed over the target, and every directory it created and the target's directory are synced,
//!   so readers see the old object or the whole new one, also after a power loss. A failed put leaves the old
//!   object as it was and removes its temporary file; the temporary files of a process killed mid-put are
//!   removed (and logged) when the store opens next (see `durable.rs`);
//! - a read-only store refuses [`put`](Store::put) and [`del`](Store::del) with [`StoreError::ReadOnly`];
//! - only regular files are objects: a directory at an object path is reported as [`StoreError::NotFound`].
//!
//! ```
//! use manager_plugin::filestore::{Store, StoreConfig};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let cfg = StoreConfig { name: "pieces".into(), path: dir.path().display().to_string(), ..Default::default() };
//! let store = fsstore::FsStore::open(cfg).unwrap();
//! assert_eq!(store.put("deals/p1.car", &mut &b"hello"[..]).unwrap(), 5);
//! assert_eq!(store.stat("deals/p1.car").unwrap().size, 5);
//! assert_eq!(std::io::read_to_string(store.get("deals/p1.car").unwrap()).unwrap(), "hello");
//! ```
//!
//! Symbolic links inside the root are followed: an operator who links a directory into the store extends it.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod durable;

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write as _};
use std::path::{Path, PathBuf};

use durable::{TempFile, create_dirs_synced, sync_dir};

use manager_plugin::StoreError;
use manager_plugin::filestore::{InstanceInfo, ObjectReader, ObjectStat, Store, StoreConfig, validate_object_path};

/// Size of the chunks `put` copies in.
const COPY_BUFFER_BYTES: usize = 1 << 20;

/// The FileStore constructor named in `manifest.toml`; the same as [`FsStore::open`].
pub fn open(cfg: StoreConfig) -> Result<FsStore, StoreError> {
    FsStore::open(cfg)
}

/// A file store rooted at a local directory.
#[derive(Debug, Clone)]
pub struct FsStore {
    cfg: StoreConfig,
    root: PathBuf,
}

impl FsStore {
    /// The value of [`Store::type_name`].
    pub const TYPE_NAME: &'static str = "fsstore";

    /// Opens the store rooted at `cfg.path` (made absolute against the current directory).
    ///
    /// A writable store creates its root (and missing parents) when it does not exist; a read-only store
    /// refuses a missing root, since creating it would be a write (and often means a volume is not mounted).
    /// An existing root that is not a directory is refused. `cfg.meta` is not used.
    pub fn open(cfg: StoreConfig) -> Result<FsStore, StoreError> {
        let fail = |what: String| StoreError::Io(format!("store {:?}: {what}", cfg.name));
        if cfg.path.is_empty() {
            return Err(fail("Path is empty; set it to the directory that holds the store's objects".into()));
        }
        let root =
            std::path::absolute(&cfg.path).map_err(|e| fail(format!("cannot resolve Path {:?}: {e}", cfg.path)))?;
        match fs::metadata(&root) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(fail(format!(
                    "{} exists and is not a directory; point Path at a directory",
                    root.display()
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && cfg.read_only => {
                return Err(fail(format!(
                    "{} does not exist, and a read-only store does not create it; check Path (is the volume \
                     mounted?)",
                    root.display()
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                create_dirs_synced(&root).map_err(|e| fail(format!("cannot create {}: {e}", root.display())))?;
            }
            Err(e) => return Err(fail(format!("cannot inspect {}: {e}", root.display()))),
        }
        if !cfg.read_only
            && let Err(e) = durable::sweep(&cfg.name, &root)
        {
            tracing::warn!(store = %cfg.name, error = %e, "cannot sweep the temporary files of interrupted uploads");
        }
        Ok(FsStore { cfg, root })
    }

    /// The absolute root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file of a valid object path.
    /// The file of an object. Components starting with `.` are reserved for the store's own temporary files, so
    /// an upload in progress (or one a crash left behind) can never be read, stat'ed or overwritten as an object.
    fn object_file(&self, path: &str) -> Result<PathBuf, StoreError> {
        let parts = validate_object_path(path)?;
        if parts.iter().any(|part| part.starts_with('.')) {
            return Err(StoreError::InvalidPath {
                path: path.to_string(),
                reason: "components starting with `.` are reserved for the store's temporary files".to_string(),
            });
        }
        Ok(parts.iter().fold(self.root.clone(), |file, part| file.join(part)))
    }

    fn check_writable(&self) -> Result<(), StoreError> {
        if self.cfg.read_only { Err(StoreError::ReadOnly(self.cfg.name.clone())) } else { Ok(()) }
    }
}

impl Store for FsStore {
    fn type_name(&self) -> String {
        FsStore::TYPE_NAME.to_string()
    }

    /// The crate version.
    fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").to_string()
    }

    fn instance(&self) -> String {
        self.cfg.name.clone()
    }

    fn instance_config(&self) -> StoreConfig {
        self.cfg.clone()
    }

    /// Figures of the volume holding the root: `free` is what unprivileged writers may still use, `used` is
    /// everything not free on the volume (by any user, not only this store).
    fn instance_info(&self) -> Result<InstanceInfo, StoreError> {
        let stats = fs4::statvfs(&self.root).map_err(|e| {
            StoreError::Io(format!("store {:?}: cannot read capacity of {}: {e}", self.cfg.name, self.root.display()))
        })?;
        Ok(InstanceInfo {
            config: self.cfg.clone(),
            total: stats.total_space(),
            free: stats.available_space(),
            used: stats.total_space().saturating_sub(stats.free_space()),
        })
    }

    /// Returns the opened file itself as the reader, so reads stream from disk.
    fn get(&self, path: &str) -> Result<ObjectReader, StoreError> {
        let file_path = self.object_file(path)?;
        let file = File::open(&file_path).map_err(|e| object_error("open", path, e))?;
        let meta = file.metadata().map_err(|e| object_error("stat", path, e))?;
        if !meta.is_file() {
            return Err(StoreError::NotFound(path.to_string()));
        }
        Ok(Box::new(file))
    }

    fn del(&self, path: &str) -> Result<(), StoreError> {
        self.check_writable()?;
        let file_path = self.object_file(path)?;
        let meta = fs::symlink_metadata(&file_path).map_err(|e| object_error("stat", path, e))?;
        if meta.is_dir() {
            return Err(StoreError::NotFound(path.to_string()));
        }
        fs::remove_file(&file_path).map_err(|e| object_error("remove", path, e))
    }

    fn stat(&self, path: &str) -> Result<ObjectStat, StoreError> {
        let file_path = self.object_file(path)?;
        let meta = fs::metadata(&file_path).map_err(|e| object_error("stat", path, e))?;
        if !meta.is_file() {
            return Err(StoreError::NotFound(path.to_string()));
        }
        Ok(ObjectStat { size: meta.len() })
    }

    /// Creates missing parent directories, writes a synced temporary file beside the target, renames it over
    /// the target and syncs the directory. Every error before the rename leaves the old object intact; if only
    /// the final directory sync fails, the new object is in place but might not survive a power loss.
    fn put(&self, path: &str, reader: &mut dyn Read) -> Result<u64, StoreError> {
        self.check_writable()?;
        let target = self.object_file(path)?;
        let fail = |what: String| StoreError::Io(format!("store {:?}: put {path:?}: {what}", self.cfg.name));
        let (Some(dir), Some(file_name)) = (target.parent(), target.file_name()) else {
            // Unreachable for a validated path (at least one non-empty component below the root).
            return Err(fail("no file name".into()));
        };
        create_dirs_synced(dir).map_err(|e| fail(format!("cannot create directory {}: {e}", dir.display())))?;
        let mut temp = TempFile::create(&self.root, dir, &file_name.to_string_lossy())
            .map_err(|e| fail(format!("cannot create a temporary file in {}: {e}", dir.display())))?;
        let copy_error = |e: io::Error| fail(format!("copying into {} failed: {e}", temp.path.display()));
        let written = {
            // `io::copy` reads straight into a `BufWriter`'s buffer: large chunks for multi-GiB sector files.
            let mut writer = BufWriter::with_capacity(COPY_BUFFER_BYTES, &temp.file);
            let written = io::copy(reader, &mut writer).map_err(copy_error)?;
            writer.flush().map_err(copy_error)?;
            written
        };
        temp.file.sync_all().map_err(|e| fail(format!("cannot sync {}: {e}", temp.path.display())))?;
        temp.rename_to(&target).map_err(|e| fail(format!("cannot rename into place: {e}")))?;
        sync_dir(dir).map_err(|e| {
            fail(format!("the new object is in place, but syncing directory {} failed: {e}", dir.display()))
        })?;
        Ok(written)
    }

    /// `root` joined with the object path. The signature cannot refuse a path, so an invalid one is joined as
    /// given minus leading `/` (it stays under the root unless it has `..`): callers validate paths first.
    fn full_path(&self, path: &str) -> Result<PathBuf, StoreError> {
        self.object_file(path)
    }
}

/// Maps an I/O error on an existing-object operation: a missing file, or a path running through a file
/// (`a/b` where `a` is a file), is [`StoreError::NotFound`].
fn object_error(op: &str, path: &str, err: io::Error) -> StoreError {
    match err.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => StoreError::NotFound(path.to_string()),
        _ => StoreError::io(op, path, err),
    }
}

#[cfg(test)]
mod tests;
