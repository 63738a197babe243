//! Starting a process plugin contained (`docs/plugin-abi.md`, "Process plugins"):
//!
//! - a clean environment: only `DAMOCLES_PLUGIN_FD` (the manager's secrets, tokens and paths never leak in);
//! - its own process group (a terminal's Ctrl-C reaches the manager, which stops its plugins in order);
//! - `PR_SET_PDEATHSIG = SIGKILL`, set in the child, checked against a parent that died before it was set. The
//!   signal fires when the *thread* that forked exits, so every plugin is forked by one long-lived thread
//!   ([`spawner`]), never by a short-lived pool thread;
//! - SIGPIPE ignored (a write to a closed socket is an error, not a death);
//! - only the protocol socket is inherited: every other descriptor of the manager is `O_CLOEXEC` (std opens all
//!   of them so), and the socket's flag is cleared in the child alone;
//! - resource limits (`RLIMIT_AS`, `RLIMIT_NOFILE`) and an optional uid from `[Common.Plugins]`;
//! - the child is reaped by a thread of its own, which records how it ended.

use std::io::{self, BufRead, BufReader};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex, OnceLock};

use manager_plugin::process::ENV_FD;

use super::connection::Ended;

/// Resource limits of a process plugin (`[Common.Plugins]`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// `RLIMIT_AS` in bytes (address space), if limited.
    pub address_space: Option<u64>,
    /// `RLIMIT_NOFILE` (open files), if limited.
    pub open_files: Option<u64>,
    /// Run as this uid (the manager must be allowed to switch to it), if set.
    pub uid: Option<u32>,
}

/// A started plugin process.
pub struct Started {
    /// The manager's end of the protocol socket.
    pub socket: UnixStream,
    /// Its pid.
    pub pid: u32,
    /// A pidfd of the process: signals through it can never reach a recycled pid.
    pidfd: Option<OwnedFd>,
    /// Set by the reaper when the process ended.
    pub ended: Arc<Ended>,
}

impl Started {
    /// Sends SIGKILL to the process (no-op once it was reaped).
    pub fn killer(&self) -> Box<dyn Fn() + Send + Sync> {
        let pidfd: Option<OwnedFd> = self.pidfd.as_ref().and_then(|fd| fd.try_clone().ok());
        let pid = self.pid;
        let ended = Arc::clone(&self.ended);
        Box::new(move || match &pidfd {
            // SAFETY: pidfd_send_signal(2) on a descriptor this closure owns; no pointers passed.
            Some(fd) => unsafe {
                libc::syscall(libc::SYS_pidfd_send_signal, fd.as_raw_fd(), libc::SIGKILL, std::ptr::null::<u8>(), 0);
            },
            // Not `ended.get()`: a deadline or the socket's end sets a reason before the process is gone.
            None if !ended.exited() => {
                // SAFETY: plain kill(2); the process is not reaped yet (the reaper sets `exited` when it is), so
                // the pid is still its own.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            }
            None => {}
        })
    }
}

struct Request {
    file: PathBuf,
    limits: Limits,
    label: String,
    reply: Sender<io::Result<Started>>,
}

/// The long-lived thread that forks every plugin process (see the module docs on `PR_SET_PDEATHSIG`).
fn spawner() -> &'static Mutex<Sender<Request>> {
    static SPAWNER: OnceLock<Mutex<Sender<Request>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = channel::<Request>();
        let started = std::thread::Builder::new().name("plugin-spawner".into()).spawn(move || {
            for request in rx {
                let _ = request.reply.send(spawn_here(&request.file, request.limits, &request.label));
            }
        });
        if let Err(e) = started {
            tracing::error!("cannot start the plugin spawner thread: {e}");
        }
        Mutex::new(tx)
    })
}

/// Starts the process plugin `file` (see the module docs).
pub fn spawn(file: &Path, limits: Limits, label: &str) -> io::Result<Started> {
    let (reply, answer) = channel();
    let request = Request { file: file.to_path_buf(), limits, label: label.to_string(), reply };
    spawner()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send(request)
        .map_err(|_| io::Error::other("the plugin spawner thread is gone"))?;
    answer.recv().map_err(|_| io::Error::other("the plugin spawner thread is gone"))?
}

fn spawn_here(file: &Path, limits: Limits, label: &str) -> io::Result<Started> {
    let (ours, theirs) = UnixStream::pair()?;
    let fd: RawFd = theirs.as_raw_fd();
    let parent = std::process::id() as libc::pid_t;
    let mut command = Command::new(file);
    command
        .env_clear()
        .env(ENV_FD, fd.to_string())
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: the closure runs between fork and exec and calls only async-signal-safe functions.
    unsafe {
        command.pre_exec(move || contain(parent, fd, limits));
    }
    let mut child = command.spawn()?;
    drop(theirs);
    let pid = child.id();
    // SAFETY: pidfd_open(2) of our own unreaped child; the result is a new descriptor or -1.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    // SAFETY: a descriptor pidfd_open just returned is ours alone.
    let pidfd = (raw >= 0).then(|| unsafe { OwnedFd::from_raw_fd(raw as RawFd) });
    let ended = Arc::new(Ended::default());
    forward_output(&mut child, label);
    reap(child, label, Arc::clone(&ended));
    Ok(Started { socket: ours, pid, pidfd, ended })
}

/// In the child, before exec: only async-signal-safe calls.
fn contain(parent: libc::pid_t, fd: RawFd, limits: Limits) -> io::Result<()> {
    // SAFETY: each call is async-signal-safe and takes no pointers but the rlimit structs on this stack.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
        // The manager died between fork and prctl: the signal will never come.
        if libc::getppid() != parent {
            libc::_exit(70);
        }
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
        for (resource, limit) in [(libc::RLIMIT_AS, limits.address_space), (libc::RLIMIT_NOFILE, limits.open_files)] {
            if let Some(limit) = limit {
                let rlim = libc::rlimit { rlim_cur: limit as libc::rlim_t, rlim_max: limit as libc::rlim_t };
                if libc::setrlimit(resource, &rlim) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        if let Some(uid) = limits.uid
            && libc::setuid(uid) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The child's stdout and stderr become daemon log lines tagged with the plugin (a panic before logging was set
/// up, a `println!`).
fn forward_output(child: &mut Child, label: &str) {
    let outputs: [(Option<Box<dyn io::Read + Send>>, bool); 2] = [
        (child.stdout.take().map(|s| Box::new(s) as Box<dyn io::Read + Send>), false),
        (child.stderr.take().map(|s| Box::new(s) as Box<dyn io::Read + Send>), true),
    ];
    for (stream, is_stderr) in outputs {
        let Some(stream) = stream else { continue };
        let thread_label = label.to_string();
        let spawned = std::thread::Builder::new().name(format!("plugin-output {label}")).spawn(move || {
            let label = thread_label;
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if is_stderr {
                    tracing::warn!(plugin = %label, "stderr: {line}");
                } else {
                    tracing::info!(plugin = %label, "stdout: {line}");
                }
            }
        });
        if let Err(e) = spawned {
            tracing::warn!(plugin = %label, "cannot forward the plugin's output: {e}");
        }
    }
}

/// Waits for the child on a thread of its own (so it never stays a zombie) and records how it ended.
fn reap(mut child: Child, label: &str, ended: Arc<Ended>) {
    let thread_label = label.to_string();
    let spawned = std::thread::Builder::new().name(format!("plugin-reaper {label}")).spawn(move || {
        let label = thread_label;
        let (why, clean) = match child.wait() {
            Ok(status) => (describe_exit(status), status.success()),
            Err(e) => (format!("the plugin process could not be waited for: {e}"), false),
        };
        if clean {
            tracing::info!(plugin = %label, "{why}");
        } else {
            tracing::warn!(plugin = %label, "{why}");
        }
        ended.set_exited(why);
    });
    if let Err(e) = spawned {
        tracing::error!(plugin = %label, "cannot start the reaper thread: {e}");
    }
}

/// "the plugin process exited with status 3" / "… was killed by signal 11 (SIGSEGV)".
pub fn describe_exit(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("the plugin process exited with status {code}"),
        (None, Some(signal)) => format!("the plugin process was killed by signal {signal} ({})", signal_name(signal)),
        _ => format!("the plugin process ended: {status}"),
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGKILL => "SIGKILL",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGFPE => "SIGFPE",
        _ => "signal",
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;
    use std::time::Duration;

    use super::*;

    /// Without a pidfd the fallback kill(2) must fire while the process is unreaped, even though a reason (a call's
    /// deadline, the socket's end) was recorded first.
    #[test]
    fn without_a_pidfd_the_kill_reaches_a_process_whose_end_reason_is_already_set() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("sleeper");
        std::fs::write(&file, "#!/bin/sh\nexec /bin/sleep 30\n").expect("write");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let mut started = spawn(&file, Limits::default(), "Test/sleeper").expect("spawn");
        started.pidfd = None;
        started.ended.set("it did not answer within 1 s".into());
        started.killer()();
        assert!(started.ended.wait_exited(Duration::from_secs(5)), "the process survived its kill");
        assert!(started.ended.get().is_some());
    }
}
