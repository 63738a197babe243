//! Trial loads in a child process. A file that passed every static check may still crash or hang while it is
//! mapped (its relocations, its `.init_array` constructors). Before the daemon maps it, the manager's own binary,
//! started in a hidden probe mode ([`SUBCOMMAND`]), maps exactly the same sealed bytes and resolves the module;
//! a child that dies of a signal, fails or does not finish within [`TIMEOUT`] gets the file refused, naming the
//! signal or the timeout. All probes of a start-up run in parallel.
//!
//! Probing is on when the binary called [`enable`] (the `damocles-manager` binary does, at start-up); a process
//! that embeds the registry without the probe mode (unit and in-process tests) loads without it.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use super::library::{self, LoadError, SealedFile};

/// The hidden subcommand of `damocles-manager` that runs one trial load.
pub const SUBCOMMAND: &str = "__probe-plugin";
/// How long a trial load may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);

static PROGRAM: RwLock<Option<PathBuf>> = RwLock::new(None);

/// Turns probing on, with `program` (a `damocles-manager` binary) as the child; `None` turns it off.
pub fn enable(program: Option<PathBuf>) {
    *PROGRAM.write().unwrap_or_else(|p| p.into_inner()) = program;
}

/// A running trial load.
pub struct Probe {
    child: Child,
    started: Instant,
}

/// Starts a trial load of `sealed`, or `None` when probing is off.
pub fn start(sealed: &SealedFile) -> Option<Result<Probe, LoadError>> {
    let program = PROGRAM.read().unwrap_or_else(|p| p.into_inner()).clone()?;
    let spawned = Command::new(&program)
        .arg(SUBCOMMAND)
        .arg(sealed.path_for_child())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map(|child| Probe { child, started: Instant::now() })
        .map_err(|e| LoadError::Probe {
            file: sealed.file.clone(),
            reason: format!("cannot start {} {SUBCOMMAND}: {e}", program.display()),
        });
    Some(spawned)
}

/// Waits for a trial load of `file`; `Ok` only when it exited successfully within [`TIMEOUT`].
pub fn finish(mut probe: Probe, file: &Path) -> Result<(), LoadError> {
    let refuse = |reason: String| LoadError::Probe { file: file.to_path_buf(), reason };
    let status = loop {
        match probe.child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if probe.started.elapsed() >= TIMEOUT => {
                let _ = probe.child.kill();
                let _ = probe.child.wait();
                return Err(refuse(format!("it did not finish within {} s (killed)", TIMEOUT.as_secs())));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => return Err(refuse(format!("cannot wait for it: {e}"))),
        }
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = probe.child.stderr.take() {
        let _ = pipe.by_ref().take(64 * 1024).read_to_string(&mut stderr);
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
