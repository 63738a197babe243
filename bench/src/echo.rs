//! The baseline of `plugin_kv_process_vs_socket`: a raw request/response round trip with a child process over a
//! Unix socketpair — the shape of the process-plugin connection — carrying given bytes and doing nothing else:
//! no encoding, no dispatch. The child is this benchmark's own binary, re-run as an echo server.

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::fd::{AsRawFd as _, FromRawFd as _};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// The environment variable that makes `damocles-bench` an echo server on the named inherited descriptor.
const ENV_FD: &str = "DAMOCLES_BENCH_ECHO_FD";

/// In a child started by [`EchoServer::start`]: serves and returns `true`; otherwise `false`.
pub fn serve_if_asked() -> bool {
    let Some(fd) = std::env::var(ENV_FD).ok().and_then(|v| v.parse::<i32>().ok()) else { return false };
    // SAFETY: the parent passed us this descriptor, open and ours alone.
    let stream = unsafe { UnixStream::from_raw_fd(fd) };
    if let Err(e) = serve(stream) {
        eprintln!("damocles-bench echo server: {e}");
    }
    true
}

/// The first line is the answer; every later line is answered with it; ends with the stream.
fn serve(stream: UnixStream) -> std::io::Result<()> {
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::with_capacity(64 << 10, stream);
    let mut answer = Vec::new();
    reader.read_until(b'\n', &mut answer)?;
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        writer.write_all(&answer)?;
    }
}

/// A running echo child and the benchmark's end of its socket.
pub struct EchoServer {
    child: Child,
    writer: UnixStream,
    reader: BufReader<UnixStream>,
    answer_len: usize,
}

impl EchoServer {
    /// Starts the child; it will answer every request line with `answer` (one line, ending in `\n`).
    pub fn start(answer: &[u8]) -> anyhow::Result<EchoServer> {
        if answer.last() != Some(&b'\n') || answer[..answer.len() - 1].contains(&b'\n') {
            bail!("an echo answer is one line ending in a newline");
        }
        let (ours, theirs) = UnixStream::pair()?;
        let fd = theirs.as_raw_fd();
        let exe = std::env::current_exe().context("where is damocles-bench")?;
        let mut command = Command::new(exe);
        command.env_clear().env(ENV_FD, fd.to_string()).stdin(Stdio::null()).stdout(Stdio::null());
        // SAFETY: only fcntl(2), async-signal-safe, between fork and exec: the child inherits its end.
        unsafe {
            command.pre_exec(move || {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().context("cannot start the echo server")?;
        drop(theirs);
        let mut writer = ours.try_clone()?;
        writer.write_all(answer)?;
        Ok(EchoServer { child, writer, reader: BufReader::with_capacity(64 << 10, ours), answer_len: answer.len() })
    }

    /// `rounds` round trips of `request` (one line); the total time.
    pub fn round_trips(&mut self, request: &[u8], rounds: usize) -> anyhow::Result<Duration> {
        let mut line = Vec::with_capacity(4096);
        let started = Instant::now();
        for _ in 0..rounds {
            self.writer.write_all(request)?;
            line.clear();
            if self.reader.read_until(b'\n', &mut line)? != self.answer_len {
                bail!("the echo server answered {} bytes instead of {}", line.len(), self.answer_len);
            }
        }
        Ok(started.elapsed())
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        let _ = self.writer.shutdown(std::net::Shutdown::Both);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
