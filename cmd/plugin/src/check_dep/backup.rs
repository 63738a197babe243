//! The backup `--fix` takes of a plugin's `Cargo.toml` and `Cargo.lock` before touching them.
//!
//! The original bytes are held in memory and, in case the process dies or a restore fails, in a temporary copy
//! in the system temp directory (never in the crate directory). Dropping the backup deletes those copies: no
//! backup file is left behind, whether the fix worked or was rolled back.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use super::error::CheckDepError;

/// One file's state before `--fix`.
#[derive(Debug)]
struct SavedFile {
    path: PathBuf,
    /// `None`: the file did not exist, and restoring deletes it.
    original: Option<Vec<u8>>,
    /// A copy of `original` outside the crate, kept only if a restore fails.
    copy: Option<NamedTempFile>,
}

/// The original content of a set of files, restorable byte for byte.
#[derive(Debug)]
pub struct Backup {
    files: Vec<SavedFile>,
}

impl Backup {
    /// Saves `paths` (a missing file is saved as "did not exist").
    pub fn take(paths: &[&Path]) -> Result<Self, CheckDepError> {
        let mut files = Vec::new();
        for path in paths {
            let io = |source| CheckDepError::Io { path: path.to_path_buf(), source };
            let original = match fs::read(path) {
                Ok(bytes) => Some(bytes),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(io(e)),
            };
            let copy = match &original {
                Some(bytes) => {
                    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                    let mut copy = tempfile::Builder::new()
                        .prefix(&format!("check-dep-backup-{name}-"))
                        .tempfile()
                        .map_err(|e| CheckDepError::Io { path: std::env::temp_dir(), source: e })?;
                    copy.write_all(bytes)
                        .and_then(|()| copy.flush())
                        .map_err(|e| CheckDepError::Io { path: copy.path().to_path_buf(), source: e })?;
                    Some(copy)
                }
                None => None,
            };
            files.push(SavedFile { path: path.to_path_buf(), original, copy });
        }
        Ok(Backup { files })
    }

    /// Puts every file back as it was: same bytes, and deleted when it did not exist. Writing in place keeps the
    /// file's permissions. On failure the untouched temporary copy is kept and named in the error.
    pub fn restore(mut self) -> Result<(), CheckDepError> {
        for file in &mut self.files {
            let result = match &file.original {
                Some(bytes) => fs::write(&file.path, bytes),
                None => match fs::remove_file(&file.path) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    other => other,
                },
            };
            if let Err(source) = result {
                let kept = match file.copy.take().map(NamedTempFile::keep) {
                    Some(Ok((_, kept))) => kept,
                    _ => PathBuf::from("(nowhere: the file did not exist before)"),
                };
                return Err(CheckDepError::RestoreFailed { file: file.path.clone(), kept, source });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_puts_back_bytes_and_deletes_new_files() {
        let dir = tempfile::tempdir().unwrap();
        let toml = dir.path().join("Cargo.toml");
        let lock = dir.path().join("Cargo.lock");
        fs::write(&toml, b"[package]\r\nname = \"x\" # kept as is\n").unwrap();
        let backup = Backup::take(&[&toml, &lock]).unwrap();
        fs::write(&toml, b"changed").unwrap();
        fs::write(&lock, b"new").unwrap();
        backup.restore().unwrap();
        assert_eq!(fs::read(&toml).unwrap(), b"[package]\r\nname = \"x\" # kept as is\n");
        assert!(!lock.exists());
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["Cargo.toml"], "nothing else in the crate directory");
    }

    #[test]
    fn dropping_a_backup_leaves_no_copy() {
        let dir = tempfile::tempdir().unwrap();
        let toml = dir.path().join("Cargo.toml");
        fs::write(&toml, b"x").unwrap();
        let backup = Backup::take(&[&toml]).unwrap();
        let copy = backup.files[0].copy.as_ref().unwrap().path().to_path_buf();
        assert_eq!(fs::read(&copy).unwrap(), b"x");
        drop(backup);
        assert!(!copy.exists());
    }
}
