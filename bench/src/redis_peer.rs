//! The equal-work durable peer of `Venus.ReportState`: a private `redis-server` (its own port and scratch dir,
//! never the shared one) with `appendonly yes` and `appendfsync always`, doing per call what ReportState does — a
//! Lua script that reads the sector's state, writes the new one and appends the event to a stream — driven by the
//! benchmark's own load generator ([`crate::http::run_load`]), the same 32 connections as the daemon's load.

use std::io::{BufRead, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use crate::http::{self, Load};

/// ReportState's work in Redis: read the state (GET), write the new one (SET), append the event (XADD), in one
/// atomic script, as one fsynced append-only-file write per event-loop turn.
pub const REPORT_STATE_SCRIPT: &str = "\
local previous = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', '100000', '*', 'e', ARGV[2])
return 1";

/// A redis-server of the benchmark's own, durable as ReportState is (every acknowledged write fsynced).
pub struct RedisPeer {
    child: Child,
    /// Its loopback port.
    pub port: u16,
    /// `Redis 7.0.15`, from `redis-server --version`.
    pub version: String,
}

impl RedisPeer {
    /// Starts `redis-server` in `dir` on a free loopback port: append-only with an fsync per write, no snapshots.
    pub fn start(dir: &Path) -> anyhow::Result<RedisPeer> {
        let version = Command::new("redis-server")
            .arg("--version")
            .output()
            .map(|o| redis_version(&String::from_utf8_lossy(&o.stdout)))
            .context("redis-server is not installed (Debian package redis-server; scripts/setup.sh --redis)")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--dir"])
            .arg(dir)
            .args(["--save", "", "--appendonly", "yes", "--appendfsync", "always"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start redis-server (scripts/setup.sh --redis installs it)")?;
        let peer = RedisPeer { child, port, version };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if peer.command(&["PING"]).is_ok_and(|r| r == "PONG") {
                return Ok(peer);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("redis-server on 127.0.0.1:{port} did not answer PING within 10 s")
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// One command on a fresh connection; its simple-string, integer or bulk answer as text.
    pub fn command(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.write_all(&resp_command(&args.iter().map(|a| a.as_bytes()).collect::<Vec<_>>()))?;
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        match reply_kind(line.as_bytes())? {
            Reply::Done(text) => Ok(text),
            Reply::Bulk(n) => {
                let mut body = vec![0u8; n + 2];
                reader.read_exact(&mut body)?;
                body.truncate(n);
                Ok(String::from_utf8_lossy(&body).into_owned())
            }
        }
    }

    /// `calls` runs of [`REPORT_STATE_SCRIPT`] over `connections` connections, one in flight each, connection `c`
    /// on sector key `c`, every call with `state` and `event` bytes.
    pub fn report_state_load(
        &self,
        connections: usize,
        calls: usize,
        state: &[u8],
        event: &[u8],
    ) -> anyhow::Result<Load> {
        let sha = self.command(&["SCRIPT", "LOAD", REPORT_STATE_SCRIPT])?;
        let port = self.port;
        let requests: Vec<Vec<u8>> = (0..connections)
            .map(|c| {
                let key = format!("sector/m-1000-n-{c}");
                resp_command(&[b"EVALSHA", sha.as_bytes(), b"2", key.as_bytes(), b"outbox", state, event])
            })
            .collect();
        let requests = std::sync::Arc::new(requests);
        http::run_load(connections, calls, move |c, calls| {
            let requests = std::sync::Arc::clone(&requests);
            async move { connection(port, &requests[c], calls).await }
        })
    }
}

impl Drop for RedisPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn connection(port: u16, request: &[u8], calls: usize) -> anyhow::Result<Vec<Duration>> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream.set_nodelay(true)?;
    let mut stream = tokio::io::BufReader::new(stream);
    let mut latencies = Vec::with_capacity(calls);
    let mut line = Vec::new();
    let mut body = Vec::new();
    for i in 0..calls {
        let sent = Instant::now();
        stream.get_mut().write_all(request).await?;
        line.clear();
        stream.read_until(b'\n', &mut line).await?;
        if let Reply::Bulk(n) = reply_kind(&line).with_context(|| format!("call {i}"))? {
            body.resize(n + 2, 0);
            stream.read_exact(&mut body).await?;
        }
        latencies.push(sent.elapsed());
    }
    Ok(latencies)
}

/// `Redis server v=7.0.15 sha=...` → `Redis 7.0.15`.
fn redis_version(text: &str) -> String {
    match text.split_whitespace().find_map(|w| w.strip_prefix("v=")) {
        Some(v) => format!("Redis {v}"),
        None => text.trim().to_string(),
    }
}

/// A command as a RESP array of bulk strings.
pub fn resp_command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// What the first line of a reply says.
#[derive(Debug, PartialEq)]
pub enum Reply {
    /// A complete simple-string or integer reply (its text); a null bulk string is the empty text.
    Done(String),
    /// A bulk string of this many bytes follows (plus CRLF).
    Bulk(usize),
}

/// Reads the first line of a RESP reply; an error reply is an error with Redis's text.
pub fn reply_kind(line: &[u8]) -> anyhow::Result<Reply> {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches(['\r', '\n']);
    match text.as_bytes().first() {
        Some(b'+' | b':') => Ok(Reply::Done(text[1..].to_string())),
        Some(b'-') => bail!("Redis answered an error: {}", &text[1..]),
        Some(b'$') if &text[1..] == "-1" => Ok(Reply::Done(String::new())),
        Some(b'$') => Ok(Reply::Bulk(text[1..].parse().with_context(|| format!("bad bulk length in {text:?}"))?)),
        _ => {
            bail!("unexpected Redis reply {text:?} (the connection closed, or a reply type this client does not read)")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_is_read_from_the_servers_banner() {
        assert_eq!(
            redis_version("Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64\n"),
            "Redis 7.0.15"
        );
        assert_eq!(redis_version("something else\n"), "something else");
    }

    #[test]
    fn commands_are_resp_arrays_of_bulk_strings() {
        assert_eq!(resp_command(&[b"GET", b"k\r\n"]), b"*2\r\n$3\r\nGET\r\n$3\r\nk\r\n\r\n");
    }

    #[test]
    fn replies_are_read_by_their_first_line_and_errors_fail_with_redis_text() {
        assert_eq!(reply_kind(b":1\r\n").unwrap(), Reply::Done("1".into()));
        assert_eq!(reply_kind(b"+PONG\r\n").unwrap(), Reply::Done("PONG".into()));
        assert_eq!(reply_kind(b"$40\r\n").unwrap(), Reply::Bulk(40));
        assert_eq!(reply_kind(b"$-1\r\n").unwrap(), Reply::Done(String::new()));
        let error = reply_kind(b"-NOSCRIPT No matching script\r\n").unwrap_err().to_string();
        assert!(error.contains("NOSCRIPT No matching script"), "{error}");
        assert!(reply_kind(b"").is_err());
        assert!(reply_kind(b"$x\r\n").is_err());
    }

    /// The peer for real: a private durable redis-server runs the script, which leaves the state and the event.
    #[test]
    fn the_durable_peer_runs_report_states_work_on_its_own_server() {
        let dir = tempfile::tempdir().unwrap();
        let peer = RedisPeer::start(dir.path()).unwrap();
        assert_ne!(peer.port, 6379);
        let persistence = peer.command(&["INFO", "persistence"]).unwrap();
        assert!(persistence.contains("aof_enabled:1"), "{persistence}");
        let load = peer.report_state_load(4, 40, &[b's'; 464], &[b'e'; 700]).unwrap();
        assert_eq!(load.calls, 40);
        assert_eq!(peer.command(&["STRLEN", "sector/m-1000-n-3"]).unwrap(), "464");
        assert_eq!(peer.command(&["XLEN", "outbox"]).unwrap(), "40");
        assert!(dir.path().read_dir().unwrap().next().is_some(), "the append-only file is in the scratch dir");
    }
}
