//! Trial loads in a child process. A file that passed every static check may still crash or hang while it is
//! mapped (its relocations, its `.init_array` constructors). Before the daemon maps it, the manager's own binary,
//! started in a hidden probe mode ([`SUBCOMMAND`]), maps exactly the same sealed bytes and resolves the module;
//! a child that dies of a signal, fails or does not finish within [`TIMEOUT`] gets the file refused, naming the
//! signal or the timeout. All probes of a start-up run in parallel.
//!
//! Probing is on when the binary called [`enable`] (the `damocles-manager` binary does, at start-up); a process
//! that embeds the registry without the probe mode (unit and in-process tests) loads without it.
//!
//! A passed trial load is remembered ([`remember_passes_in`]; the daemon uses `<home>/plugin-probes/`) under the
//! SHA-256 of the sealed bytes and the identity of the probing binary (device, inode, size, modification time),
//! so a restart does not trial-load the same file with the same manager again: a changed byte or a rebuilt or
//! replaced manager probes again. Only passes are remembered; a refused file is probed at every start.

use std::io::{Read as _, Seek as _};
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use sha2::Digest as _;

use super::library::{self, LoadError, SealedFile};

/// The hidden subcommand of `damocles-manager` that runs one trial load.
pub const SUBCOMMAND: &str = "__probe-plugin";
/// How long a trial load may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);

static PROGRAM: RwLock<Option<PathBuf>> = RwLock::new(None);
static RECORDS: RwLock<Option<PathBuf>> = RwLock::new(None);

/// Turns probing on, with `program` (a `damocles-manager` binary) as the child; `None` turns it off.
pub fn enable(program: Option<PathBuf>) {
    *PROGRAM.write().unwrap_or_else(|p| p.into_inner()) = program;
}

/// Remembers passed trial loads as files in `dir` (created when missing, records of other manager binaries
/// removed); `None` forgets nothing and remembers nothing.
pub fn remember_passes_in(dir: Option<PathBuf>) {
    if let (Some(dir), Some(program)) = (&dir, PROGRAM.read().unwrap_or_else(|p| p.into_inner()).as_ref())
        && let Some(identity) = program_identity(program)
        && trusted_dir(dir)
    {
        prune(dir, &identity);
    }
    *RECORDS.write().unwrap_or_else(|p| p.into_inner()) = dir;
}

/// A trial load: running, or remembered from an earlier start.
pub enum Probe {
    /// A child process trial-loading the file.
    Running {
        /// The `__probe-plugin` child.
        child: Child,
        /// When it started.
        started: Instant,
        /// Where to remember a pass.
        record: Option<PathBuf>,
        /// Its error output (a file, not a pipe: nothing the child leaves behind can block reading it).
        stderr: std::fs::File,
    },
    /// These bytes passed a trial load by this manager binary before.
    Remembered,
}

/// Starts a trial load of `sealed`, or `None` when probing is off.
pub fn start(sealed: &SealedFile) -> Option<Result<Probe, LoadError>> {
    let program = PROGRAM.read().unwrap_or_else(|p| p.into_inner()).clone()?;
    let record = RECORDS.read().unwrap_or_else(|p| p.into_inner()).as_ref().and_then(|dir| {
        let identity = program_identity(&program)?;
        Some(dir.join(record_name(&sealed.digest, &identity)))
    });
    let trusted = record.as_ref().and_then(|r| r.parent()).is_some_and(trusted_dir);
    if trusted && record.as_ref().is_some_and(|r| r.is_file()) {
        return Some(Ok(Probe::Remembered));
    }
    let stderr = match stderr_file() {
        Ok(file) => file,
        Err(e) => {
            return Some(Err(LoadError::Probe {
                file: sealed.file.clone(),
                reason: format!("cannot create a file for its error output: {e}"),
            }));
        }
    };
    let child_stderr = match stderr.try_clone() {
        Ok(clone) => Stdio::from(clone),
        Err(e) => {
            return Some(Err(LoadError::Probe {
                file: sealed.file.clone(),
                reason: format!("cannot share a file for its error output: {e}"),
            }));
        }
    };
    let spawned = Command::new(&program)
        .arg(SUBCOMMAND)
        .arg(sealed.path_for_child())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(child_stderr)
        // Its own process group: a timeout kills whatever its constructors started, too.
        .process_group(0)
        .spawn()
        .map(|child| Probe::Running { child, started: Instant::now(), record, stderr })
        .map_err(|e| LoadError::Probe {
            file: sealed.file.clone(),
            reason: format!("cannot start {} {SUBCOMMAND}: {e}", program.display()),
        });
    Some(spawned)
}

/// Waits for a trial load of `file`; `Ok` only when it exited successfully within [`TIMEOUT`] (or passed
/// before), and then remembered.
pub fn finish(probe: Probe, file: &Path) -> Result<(), LoadError> {
    match probe {
        Probe::Remembered => Ok(()),
        Probe::Running { child, started, record, stderr } => {
            wait(child, started, stderr, file)?;
            if let Some(record) = record {
                remember(&record, file);
            }
            Ok(())
        }
    }
}

fn wait(mut child: Child, started: Instant, mut stderr_file: std::fs::File, file: &Path) -> Result<(), LoadError> {
    let refuse = |reason: String| LoadError::Probe { file: file.to_path_buf(), reason };
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() >= TIMEOUT => {
                // SAFETY: kill(2) of the child's own process group (it was started with process_group(0)).
                unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
                let _ = child.kill();
                let _ = child.wait();
                return Err(refuse(format!("it did not finish within {} s (killed)", TIMEOUT.as_secs())));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => return Err(refuse(format!("cannot wait for it: {e}"))),
        }
    };
    let mut stderr = String::new();
    if stderr_file.seek(std::io::SeekFrom::Start(0)).is_ok() {
        let _ = stderr_file.by_ref().take(64 * 1024).read_to_string(&mut stderr);
    }
    if status.success() {
        return Ok(());
    }
    use std::os::unix::process::ExitStatusExt as _;
    match status.signal() {
        Some(signal) => Err(refuse(format!("it was killed by signal {signal} ({})", signal_name(signal)))),
        None => Err(refuse(format!("it failed ({status}): {}", stderr.trim()))),
    }
}

/// The probing binary as it is on disk now (device, inode, size, modification and status-change times): a
/// rebuild, a replacement or any write to it changes it (the status-change time cannot be set back). `None` when
/// it cannot be read: then nothing is reused or remembered.
fn program_identity(program: &Path) -> Option<String> {
    let m = std::fs::metadata(program).ok()?;
    let text = format!(
        "{}:{}:{}:{}.{}:{}.{}",
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec()
    );
    Some(hex(&sha2::Sha256::digest(text.as_bytes())[..8]))
}

/// Whether `dir` may hold records: owned by this user and writable by nobody else (a record is trusted by its
/// existence alone).
fn trusted_dir(dir: &Path) -> bool {
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    std::fs::metadata(dir).is_ok_and(|m| m.is_dir() && m.uid() == me && m.mode() & 0o022 == 0)
}

/// An anonymous file for a child's error output.
fn stderr_file() -> std::io::Result<std::fs::File> {
    use std::os::fd::FromRawFd as _;
    // SAFETY: a valid C string and flags; the descriptor returned is owned by the `File` below.
    let fd = unsafe { libc::memfd_create(c"damocles-probe-stderr".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
}

fn record_name(digest: &[u8; 32], program: &str) -> String {
    format!("{}.{program}", hex(digest))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes a pass record (best effort: a failure only means probing again next time).
fn remember(record: &Path, file: &Path) {
    let write = || -> std::io::Result<()> {
        let dir = record.parent().ok_or_else(|| std::io::Error::other("record has no directory"))?;
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        let temp = record.with_extension("partial");
        std::fs::write(&temp, format!("{}\n", file.display()))?;
        std::fs::rename(&temp, record)
    };
    if let Err(e) = write() {
        tracing::warn!(record = %record.display(), error = %e, "cannot remember a passed plugin trial load; it will be probed again at the next start");
    }
}

/// Removes records of other manager binaries (and unfinished ones) from `dir`.
fn prune(dir: &Path, program: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let keep = name.to_str().and_then(|n| n.rsplit_once('.')).is_some_and(|(_, id)| id == program);
        if !keep {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGBUS => "SIGBUS",
        libc::SIGABRT => "SIGABRT",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGTRAP => "SIGTRAP",
        _ => "see `kill -l`",
    }
}

/// The child side: maps the sealed bytes at `path` (re-checking them first) and resolves the module.
pub fn run_child(path: &Path) -> Result<(), LoadError> {
    let checked = library::check(path)?;
    let opened = library::map(library::seal(checked)?)?;
    drop(opened);
    Ok(())
}
