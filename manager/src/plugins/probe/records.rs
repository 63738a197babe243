//! Remembered trial loads: `<home>/plugin-probes/`, one record per passed plugin and manager binary.
//!
//! What is trusted, exactly (also in `docs/plugin-abi.md`):
//! - the directory: a real directory (a symbolic link is refused, and nothing in it is read, written or
//!   deleted), owned by the daemon's user and writable by nobody else, opened once and used through that
//!   descriptor;
//! - a record: named `<SHA-256 of the plugin bytes>.<16 hex digits of the manager identity>`, a regular file
//!   (not a link) owned by the daemon's user, writable by nobody else, whose content is byte for byte what
//!   [`dependencies::record_text`] writes today for those bytes, this manager binary, the shared objects the
//!   record lists as they are on disk now, the loader's configuration files and the `LD_*` variables. Anything
//!   else (empty, malformed, stale) is ignored and removed, each removal logged;
//! - the writer: only the daemon writes records, after the probe child passed inside a Landlock sandbox that
//!   denied it every filesystem write ([`super::sandbox`]) and the daemon's own load of the same bytes returned.
//!   Without Landlock no record is read or written. A record is spent (renamed away) before the daemon loads
//!   the plugin on its strength and put back when the load returned, so a load that crashes the daemon leaves
//!   no pass behind: the next start probes again.
//!
//! Another process of the same user can write a record that passes all of this: it is out of scope (it can
//! equally replace the plugin or the manager binary).

use std::io::{Read as _, Write as _};
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use sha2::Digest as _;

use super::dependencies;

/// A record is a few KiB; anything larger is not one of ours.
const MAX_RECORD_BYTES: u64 = 1024 * 1024;
/// Suffix of a record being written.
const WRITING: &str = "tmp";
/// Suffix of a record spent by a load in progress.
const LOADING: &str = "loading";

/// The records directory, opened once without following a symbolic link and checked.
pub struct RecordsDir {
    /// The path as configured, for messages.
    path: PathBuf,
    /// The directory itself; every operation goes through `/proc/self/fd/N`, never through `path` again.
    dir: std::fs::File,
    /// The manager binary and its identity (the record name's suffix).
    manager: PathBuf,
    manager_id: String,
    /// The shared objects this process had mapped before any plugin: ld.so, libc and the manager's other
    /// libraries. Every record must list each of them.
    baseline: Vec<PathBuf>,
}

/// A pass the daemon may act on: spent (renamed away) or freshly earned; [`Pass::keep`] stores it once the
/// daemon's own load returned.
pub struct Pass {
    name: String,
    /// The text to write (`None`: put the spent record back).
    text: Option<String>,
}

impl RecordsDir {
    /// Opens (creating it when missing, mode 0700) and checks `path`, prunes what is not a current record, and
    /// logs why when it cannot be used.
    pub fn open(path: &Path, manager: &Path) -> Option<RecordsDir> {
        let refuse = |why: String| {
            tracing::error!(
                "{}: {why}; passed plugin trial loads are not remembered (every start trial-loads every plugin)",
                path.display()
            );
            None
        };
        if super::sandbox::kernel_abi() == 0 {
            tracing::warn!(
                "this kernel has no Landlock: the probe child cannot be kept from writing a pass for itself, so \
                 passed plugin trial loads are not remembered (every start trial-loads every plugin)"
            );
            return None;
        }
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => {
                return refuse(
                    "is a symbolic link, refused (nothing in its target is read, written or deleted): remove the \
                     link, the daemon creates the directory"
                        .into(),
                );
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Err(e) = std::fs::DirBuilder::new().mode(0o700).create(path) {
                    return refuse(format!("cannot create it: {e}"));
                }
            }
            Err(e) => return refuse(format!("cannot read it: {e}")),
        }
        let dir = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
        {
            Ok(dir) => dir,
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return refuse("is a symbolic link, refused: remove the link, the daemon creates the directory".into());
            }
            Err(e) => return refuse(format!("cannot open it as a directory: {e}")),
        };
        let meta = match dir.metadata() {
            Ok(meta) => meta,
            Err(e) => return refuse(format!("cannot read it: {e}")),
        };
        if meta.uid() != euid() || meta.mode() & 0o022 != 0 {
            return refuse(format!(
                "owned by uid {} with mode {:o}, it must be owned by the daemon's user (uid {}) and writable by \
                 nobody else: chmod 700 it",
                meta.uid(),
                meta.mode() & 0o7777,
                euid()
            ));
        }
        let manager_id = hex(&sha2::Sha256::digest(dependencies::file_identity(manager).as_bytes())[..8]);
        let records = RecordsDir {
            path: path.to_path_buf(),
            dir,
            manager: manager.to_path_buf(),
            manager_id,
            baseline: dependencies::loaded_objects(),
        };
        records.prune();
        Some(records)
    }

    /// The path of `name` inside the opened directory (not through the configured path).
    fn entry(&self, name: &str) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.dir.as_raw_fd())).join(name)
    }

    fn shown(&self, name: &str) -> String {
        self.path.join(name).display().to_string()
    }

    fn remove(&self, name: &str, why: &str) {
        match std::fs::remove_file(self.entry(name)) {
            Ok(()) => tracing::info!("removed plugin probe record {}: {why}", self.shown(name)),
            Err(e) => tracing::warn!("cannot remove plugin probe record {} ({why}): {e}", self.shown(name)),
        }
    }

    /// Removes records of other manager binaries and leftovers of unfinished writes and loads; names that are
    /// not of the record format are left alone.
    fn prune(&self) {
        let Ok(entries) = std::fs::read_dir(self.entry("")) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            match RecordName::parse(name) {
                Some(RecordName::Record { manager_id, .. }) if manager_id != self.manager_id => {
                    self.remove(name, "made by another manager binary")
                }
                Some(RecordName::Record { .. }) => {}
                Some(RecordName::Leftover) => self.remove(name, "left by an interrupted write or load"),
                None => tracing::debug!("{} is not a plugin probe record; left alone", self.shown(name)),
            }
        }
    }

    /// The name of the record for plugin bytes with SHA-256 `digest`.
    fn name(&self, digest: &[u8; 32]) -> String {
        format!("{}.{}", hex(digest), self.manager_id)
    }

    /// A valid record for `digest`, spent (renamed away) so that a crash while loading leaves no pass behind;
    /// an invalid one is removed.
    pub fn spend(&self, digest: &[u8; 32]) -> Option<Pass> {
        let name = self.name(digest);
        let text = match self.read(&name)? {
            Ok(text) => text,
            Err(why) => {
                self.remove(&name, &why);
                return None;
            }
        };
        if let Err(why) = self.verify(&hex(digest), &text) {
            self.remove(&name, &why);
            return None;
        }
        let spent = format!("{name}.{LOADING}");
        if let Err(e) = std::fs::rename(self.entry(&name), self.entry(&spent)) {
            tracing::warn!("cannot spend plugin probe record {}: {e}; trial-loading again", self.shown(&name));
            return None;
        }
        Some(Pass { name, text: None })
    }

    /// Reads record `name`: `None` when there is none, `Err` when it is not one to trust.
    fn read(&self, name: &str) -> Option<Result<String, String>> {
        let file = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(self.entry(name))
        {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => return Some(Err(format!("cannot open it (a link or unreadable): {e}"))),
        };
        let meta = match file.metadata() {
            Ok(meta) => meta,
            Err(e) => return Some(Err(format!("cannot read it: {e}"))),
        };
        if !meta.is_file() || meta.uid() != euid() || meta.mode() & 0o022 != 0 {
            return Some(Err(format!(
                "not a regular file owned by uid {} and writable by nobody else (uid {}, mode {:o})",
                euid(),
                meta.uid(),
                meta.mode() & 0o7777
            )));
        }
        let mut text = String::new();
        if file.take(MAX_RECORD_BYTES).read_to_string(&mut text).is_err() {
            return Some(Err("not text".into()));
        }
        if text.is_empty() {
            return Some(Err("empty".into()));
        }
        Some(Ok(text))
    }

    /// Whether `text` is exactly the record this manager would write today for the plugin `digest`.
    fn verify(&self, digest: &str, text: &str) -> Result<(), String> {
        let objects = dependencies::recorded_objects(text).map_err(|e| format!("malformed: {e}"))?;
        if let Some(missing) = self.baseline.iter().find(|o| !objects.contains(o)) {
            return Err(format!("malformed: does not list {}, which every load maps", missing.display()));
        }
        let expected = dependencies::record_text(digest, &self.manager, &objects)
            .ok_or("stale: a path or variable it depends on cannot be recorded")?;
        match text.lines().zip(expected.lines()).find(|(found, now)| found != now) {
            Some((found, now)) => Err(format!("stale: it says `{found}`, today it is `{now}`")),
            None if text != expected => Err("stale: the LD_* variables or the listed files differ".into()),
            None => Ok(()),
        }
    }

    /// A pass earned by a probe child that reported `report` (its stdout): the sandbox line first, then one
    /// `object <path>` line per shared object it had mapped. `None` (nothing to remember) unless the child was
    /// sandboxed.
    pub fn earned(&self, digest: &[u8; 32], report: &str) -> Option<Pass> {
        let mut lines = report.lines();
        if lines.next() != Some(super::sandbox::ENFORCED_LINE) {
            tracing::warn!("a plugin probe child ran without its sandbox; its pass is not remembered");
            return None;
        }
        let mut objects: Vec<PathBuf> = lines.filter_map(|l| l.strip_prefix("object ")).map(PathBuf::from).collect();
        objects.extend(self.baseline.iter().cloned());
        objects.sort();
        objects.dedup();
        let text = dependencies::record_text(&hex(digest), &self.manager, &objects)?;
        Some(Pass { name: self.name(digest), text: Some(text) })
    }

    /// Stores `pass` once the daemon's own load of the plugin returned: writes a new record (0600, through a
    /// temporary name and a rename) or puts a spent one back. Best effort: a failure means probing next time.
    pub fn keep(&self, pass: Pass) {
        let result = match &pass.text {
            None => std::fs::rename(self.entry(&format!("{}.{LOADING}", pass.name)), self.entry(&pass.name)),
            Some(text) => self.write(&pass.name, text),
        };
        if let Err(e) = result {
            tracing::warn!(
                "cannot remember a passed plugin trial load in {}: {e}; it will be probed again at the next start",
                self.shown(&pass.name)
            );
        }
    }

    fn write(&self, name: &str, text: &str) -> std::io::Result<()> {
        let temp = format!("{name}.{WRITING}");
        let _ = std::fs::remove_file(self.entry(&temp));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(self.entry(&temp))?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(self.entry(&temp), self.entry(name))
    }
}

/// What a name in the records directory is.
enum RecordName<'a> {
    /// `<64 hex>.<16 hex>`: a record.
    Record { manager_id: &'a str },
    /// A record name followed by `.tmp` or `.loading`, or the older `<64 hex>.partial`.
    Leftover,
}

impl<'a> RecordName<'a> {
    fn parse(name: &'a str) -> Option<RecordName<'a>> {
        let is_hex =
            |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let mut parts = name.split('.');
        let (digest, second, third, rest) = (parts.next()?, parts.next()?, parts.next(), parts.next());
        if !is_hex(digest, 64) || rest.is_some() {
            return None;
        }
        match third {
            None if is_hex(second, 16) => Some(RecordName::Record { manager_id: second }),
            None if second == "partial" => Some(RecordName::Leftover),
            Some(WRITING | LOADING) if is_hex(second, 16) => Some(RecordName::Leftover),
            _ => None,
        }
    }
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
