//! Trial loads in a child process. A file that passed every static check may still crash or hang while it is
//! mapped (its relocations, its `.init_array` constructors). Before the daemon maps it, the manager's own binary,
//! started in a hidden probe mode ([`SUBCOMMAND`]), maps exactly the same sealed bytes and resolves the module;
//! a child that dies of a signal, fails or does not finish within [`TIMEOUT`] gets the file refused, naming the
//! signal or the timeout. All probes of a start-up run in parallel.
//!
//! Probing is on when the binary called [`enable`] (the `damocles-manager` binary does, at start-up); a process
//! that embeds the registry without the probe mode (unit and in-process tests) loads without it.
//!
//! A passed trial load is remembered ([`remember_passes_in`]; the daemon uses `<home>/plugin-probes/`), bound to
//! the plugin's bytes, the manager binary and everything else the load depends on ([`records`] says exactly
//! what is trusted); the child runs sandboxed so the plugin's constructors cannot write a pass for themselves
//! ([`sandbox`]). Only passes are remembered; a refused file is probed at every start.

mod dependencies;
pub mod records;
pub mod sandbox;

use std::io::{Read as _, Seek as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use plugin_image::limits::FileLimits;

use self::records::{Pass, RecordsDir};
use super::library::{self, LoadError, SealedFile};

/// The hidden subcommand of `damocles-manager` that runs one trial load.
pub const SUBCOMMAND: &str = "__probe-plugin";
/// Its option carrying the size cap the parent read the file under.
pub const MAX_FILE_SIZE_ARG: &str = "--max-file-size";
/// How long a trial load may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// The most a probe child may write to its stdout (the sandbox line and a line per shared object).
const MAX_REPORT_BYTES: usize = 1024 * 1024;

static PROGRAM: RwLock<Option<PathBuf>> = RwLock::new(None);
static RECORDS: RwLock<Option<RecordsDir>> = RwLock::new(None);

/// Turns probing on, with `program` (a `damocles-manager` binary) as the child; `None` turns it off.
pub fn enable(program: Option<PathBuf>) {
    *PROGRAM.write().unwrap_or_else(|p| p.into_inner()) = program;
}

/// Remembers passed trial loads in `dir` (see [`records`]: created when missing, refused when it is a symbolic
/// link or others can write it, records of other manager binaries removed); `None` forgets nothing and
/// remembers nothing.
pub fn remember_passes_in(dir: Option<PathBuf>) {
    let program = PROGRAM.read().unwrap_or_else(|p| p.into_inner()).clone();
    let records = match (dir, program) {
        (Some(dir), Some(program)) => RecordsDir::open(&dir, &program),
        _ => None,
    };
    *RECORDS.write().unwrap_or_else(|p| p.into_inner()) = records;
}

/// Stores a pass once the daemon's own load of the plugin returned (see [`RecordsDir::keep`]).
pub fn keep(pass: Pass) {
    if let Some(records) = RECORDS.read().unwrap_or_else(|p| p.into_inner()).as_ref() {
        records.keep(pass);
    }
}

/// A trial load: running, or remembered from an earlier start.
pub enum Probe {
    /// A child process trial-loading the file.
    Running {
        /// The `__probe-plugin` child.
        child: Child,
        /// When it started.
        started: Instant,
        /// Its error output (a file, not a pipe: nothing the child leaves behind can block reading it).
        stderr: std::fs::File,
    },
    /// These bytes passed a trial load by this manager binary before; the record is spent until [`keep`].
    Remembered(Pass),
}

/// Starts a trial load of `sealed` unless a valid record says these bytes passed before (the record is then
/// spent: see [`records`]); `None` when probing is off.
pub fn start(sealed: &SealedFile) -> Option<Result<Probe, LoadError>> {
    let program = PROGRAM.read().unwrap_or_else(|p| p.into_inner()).clone()?;
    let remembered = RECORDS.read().unwrap_or_else(|p| p.into_inner()).as_ref().and_then(|r| r.spend(&sealed.digest));
    Some(match remembered {
        Some(pass) => Ok(Probe::Remembered(pass)),
        None => spawn(&program, sealed),
    })
}

fn spawn(program: &Path, sealed: &SealedFile) -> Result<Probe, LoadError> {
    let refuse = |reason: String| LoadError::Probe { file: sealed.file.clone(), reason };
    let stderr = stderr_file().map_err(|e| refuse(format!("cannot create a file for its error output: {e}")))?;
    let child_stderr =
        stderr.try_clone().map_err(|e| refuse(format!("cannot share a file for its error output: {e}")))?;
    let child = Command::new(program)
        .arg(SUBCOMMAND)
        .arg(sealed.path_for_child())
        .arg(MAX_FILE_SIZE_ARG)
        .arg(sealed.max_file_size.to_string())
        .stdin(Stdio::null())
        // A pipe: what the child wrote before the plugin's code ran cannot be rewritten by that code.
        .stdout(Stdio::piped())
        .stderr(Stdio::from(child_stderr))
        // Its own process group: a timeout kills whatever its constructors started, too.
        .process_group(0)
        .spawn()
        .map_err(|e| refuse(format!("cannot start {} {SUBCOMMAND}: {e}", program.display())))?;
    Ok(Probe::Running { child, started: Instant::now(), stderr })
}

/// Waits for a trial load of `sealed`; `Ok` only when it exited successfully within [`TIMEOUT`] (or passed
/// before), with the pass to [`keep`] once the daemon's own load returned (`None`: nothing to remember).
pub fn finish(probe: Probe, sealed: &SealedFile) -> Result<Option<Pass>, LoadError> {
    match probe {
        Probe::Remembered(pass) => Ok(Some(pass)),
        Probe::Running { child, started, stderr } => {
            let report = wait(child, started, stderr, &sealed.file)?;
            let records = RECORDS.read().unwrap_or_else(|p| p.into_inner());
            Ok(records.as_ref().and_then(|r| r.earned(&sealed.digest, &report)))
        }
    }
}

/// Waits for the child, reading its stdout as it goes; its stdout when it exited successfully.
fn wait(mut child: Child, started: Instant, mut stderr_file: std::fs::File, file: &Path) -> Result<String, LoadError> {
    let refuse = |reason: String| LoadError::Probe { file: file.to_path_buf(), reason };
    let mut stdout = child.stdout.take();
    if let Some(out) = &stdout {
        set_nonblocking(out);
    }
    let mut report = Vec::new();
    let status = loop {
        if let Some(out) = stdout.as_mut() {
            drain(out, &mut report);
        }
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
    if let Some(out) = stdout.as_mut() {
        drain(out, &mut report);
    }
    let mut stderr = String::new();
    if stderr_file.seek(std::io::SeekFrom::Start(0)).is_ok() {
        let _ = stderr_file.by_ref().take(64 * 1024).read_to_string(&mut stderr);
    }
    if status.success() {
        return Ok(String::from_utf8_lossy(&report).into_owned());
    }
    use std::os::unix::process::ExitStatusExt as _;
    match status.signal() {
        Some(signal) => Err(refuse(format!("it was killed by signal {signal} ({})", signal_name(signal)))),
        None => Err(refuse(format!("it failed ({status}): {}", stderr.trim()))),
    }
}

fn set_nonblocking(out: &ChildStdout) {
    use std::os::fd::AsRawFd as _;
    // SAFETY: fcntl on a descriptor the `ChildStdout` owns.
    unsafe {
        let flags = libc::fcntl(out.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(out.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
}

/// Reads what the child wrote so far, up to [`MAX_REPORT_BYTES`] (past that nothing more is read: a child that
/// blocks on a full pipe runs into the timeout).
fn drain(out: &mut ChildStdout, report: &mut Vec<u8>) {
    let mut buf = [0u8; 8192];
    while report.len() < MAX_REPORT_BYTES {
        match out.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => report.extend_from_slice(&buf[..n]),
        }
    }
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

/// The child side: denies itself every filesystem write ([`sandbox`]) and says so on its stdout, then maps the
/// sealed bytes at `path` (re-checking them first, under the parent's size cap) and lists the shared objects it
/// has mapped, one `object <path>` line each.
pub fn run_child(path: &Path, max_file_size: u64) -> Result<(), LoadError> {
    use std::io::Write as _;
    use std::os::fd::AsRawFd as _;
    // Opened before the sandbox: Landlock also denies reading another process's `/proc/<pid>/fd`.
    let sealed = std::fs::File::open(path).map_err(|source| LoadError::Read { file: path.to_path_buf(), source })?;
    let path = PathBuf::from(format!("/proc/self/fd/{}", sealed.as_raw_fd()));
    let mut stdout = std::io::stdout().lock();
    match sandbox::deny_filesystem_writes() {
        Ok(line) => writeln!(stdout, "{line}"),
        Err(why) => writeln!(stdout, "sandbox: none ({why})"),
    }
    .and_then(|()| stdout.flush())
    .map_err(|e| LoadError::Probe { file: path.to_path_buf(), reason: format!("cannot write to its stdout: {e}") })?;
    let limits = FileLimits { max_file_size, ..Default::default() };
    let checked = library::check(&path, &limits)?;
    let opened = library::map(library::seal(checked)?)?;
    for object in dependencies::loaded_objects() {
        let _ = writeln!(stdout, "object {}", object.display());
    }
    let _ = stdout.flush();
    drop(opened);
    drop(sealed);
    Ok(())
}
