//! What makes a put survive a crash: synced directories, temporary files that fit any name, and a journal of the
//! uploads in progress so those a crash interrupted are swept at the next start.
//!
//! - [`create_dirs_synced`] creates the missing directories of a path one by one and syncs the parent of each,
//!   so the new entries are on disk before an object is renamed into them.
//! - [`TempFile`] is `.<name>.<pid>.<n>.tmp` beside the target, `<name>` shortened so the whole name stays within
//!   255 bytes (a temporary name must fit wherever the final name fits). Before it is created, a marker naming it
//!   is written to `<root>/.fsstore-uploads/<pid>.<n>`; the marker is removed with the temporary file, or after
//!   the rename.
//! - [`sweep`] runs when a writable store opens: every marker left names a temporary file of an upload that
//!   never finished; both are removed, and each removal is logged. Only markers are read, so opening a store
//!   holding millions of objects costs nothing extra. A store root must not be written by two processes at once.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The journal directory under the root (components starting with `.` are never objects).
pub(crate) const UPLOADS_DIR: &str = ".fsstore-uploads";

/// The longest file name most file systems accept, in bytes.
const NAME_MAX: usize = 255;

/// Syncs directory `dir`, so the entries created or renamed in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` and its missing parents, syncing the parent of every directory it creates.
pub(crate) fn create_dirs_synced(dir: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut current = dir;
    while !current.try_exists()? {
        missing.push(current);
        match current.parent() {
            Some(parent) => current = parent,
            None => break,
        }
    }
    for dir in missing.into_iter().rev() {
        match fs::create_dir(dir) {
            Ok(()) => {}
            // Created concurrently by another put: it exists, which is what we need (its creator syncs it).
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => continue,
            Err(err) => return Err(err),
        }
        if let Some(parent) = dir.parent() {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

/// A temporary file next to an object's target, journaled while it exists, removed on drop unless it was renamed
/// into place.
pub(crate) struct TempFile {
    pub(crate) path: PathBuf,
    pub(crate) file: File,
    marker: PathBuf,
    persisted: bool,
}

impl TempFile {
    /// Creates `<dir>/.<name>.<pid>.<n>.tmp` (never reusing an existing file), journaled under `root`.
    pub(crate) fn create(root: &Path, dir: &Path, name: &str) -> io::Result<TempFile> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let pid = std::process::id();
        let uploads = root.join(UPLOADS_DIR);
        create_dirs_synced(&uploads)?;
        let mut attempts = 0;
        loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(temp_name(name, pid, n));
            let marker = uploads.join(format!("{pid}.{n}"));
            write_marker(&marker, &path)?;
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => return Ok(TempFile { path, file, marker, persisted: false }),
                Err(err) => {
                    let _ = fs::remove_file(&marker);
                    // A leftover of a crashed process that had the same pid: try the next name.
                    if err.kind() == io::ErrorKind::AlreadyExists && attempts < 16 {
                        attempts += 1;
                        continue;
                    }
                    return Err(err);
                }
            }
        }
    }

    /// Renames the file over `target`; the journal entry goes once the rename is done.
    pub(crate) fn rename_to(&mut self, target: &Path) -> io::Result<()> {
        fs::rename(&self.path, target)?;
        self.persisted = true;
        let _ = fs::remove_file(&self.marker);
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.persisted {
            // Best effort: the put already reports the error that brought us here; the sweep catches the rest.
            let _ = fs::remove_file(&self.path);
            let _ = fs::remove_file(&self.marker);
        }
    }
}

/// `.<name>.<pid>.<n>.tmp`, with `name` cut (at a character boundary) so the result fits in [`NAME_MAX`] bytes.
pub(crate) fn temp_name(name: &str, pid: u32, n: u64) -> String {
    let suffix = format!(".{pid}.{n}.tmp");
    let room = NAME_MAX.saturating_sub(1 + suffix.len());
    let mut cut = name.len().min(room);
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(".{}{suffix}", &name[..cut])
}

/// Writes a journal marker naming `temp` and syncs it, before `temp` exists.
fn write_marker(marker: &Path, temp: &Path) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).create(true).truncate(true).open(marker)?;
    file.write_all(temp.as_os_str().as_encoded_bytes())?;
    file.sync_all()
}

/// Removes the temporary files of uploads a crash interrupted (named by the journal's markers under `root`), and
/// the markers; logs each removal. Returns the temporary files removed.
pub(crate) fn sweep(store: &str, root: &Path) -> io::Result<Vec<PathBuf>> {
    let uploads = root.join(UPLOADS_DIR);
    let entries = match fs::read_dir(&uploads) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err),
    };
    let mut removed = Vec::new();
    for entry in entries {
        let marker = entry?.path();
        let named = fs::read(&marker)?;
        let temp = PathBuf::from(os_string_from_bytes(named));
        // Only a temporary file inside the root is ever removed, whatever a marker says.
        if temp.starts_with(root) && is_temp_name(&temp) {
            match fs::remove_file(&temp) {
                Ok(()) => {
                    tracing::warn!(store, file = %temp.display(), "removed the temporary file of an interrupted upload");
                    removed.push(temp);
                }
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(err),
            }
        }
        fs::remove_file(&marker)?;
    }
    sync_dir(&uploads)?;
    Ok(removed)
}

/// A path from marker bytes (written from an `OsStr` of the same platform).
fn os_string_from_bytes(bytes: Vec<u8>) -> std::ffi::OsString {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStringExt;
        std::ffi::OsString::from_vec(bytes)
    }
    #[cfg(not(unix))]
    {
        std::ffi::OsString::from(String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// Whether `path`'s file name has the shape of a temporary file (`.<name>.<pid>.<n>.tmp`).
fn is_temp_name(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else { return false };
    let Some(stem) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")) else { return false };
    let mut parts = stem.rsplitn(3, '.');
    let (n, pid) = (parts.next(), parts.next());
    let digits = |s: Option<&str>| s.is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()));
    digits(n) && digits(pid) && parts.next().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_fit_in_255_bytes_and_keep_their_shape() {
        let long = "é".repeat(127); // 254 bytes
        let name = temp_name(&long, u32::MAX, u64::MAX);
        assert!(name.len() <= NAME_MAX, "{} bytes", name.len());
        assert!(is_temp_name(Path::new(&name)), "{name}");
        assert_eq!(temp_name("piece.car", 12, 3), ".piece.car.12.3.tmp");
        assert!(!is_temp_name(Path::new(".piece.car")) && !is_temp_name(Path::new("piece.car.1.2.tmp")));
    }
}
