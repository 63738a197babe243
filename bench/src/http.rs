//! The benchmark's HTTP/1.1 client: single calls, and the load generator (keep-alive connections, one call in
//! flight each, on a single-threaded runtime so it takes at most one core).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

/// A JSON-RPC request body.
pub fn request_body(method: &str, params: &Value) -> Vec<u8> {
    json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string().into_bytes()
}

fn request_head(method: &str, path: &str, token: &str, length: u64, keep_alive: bool) -> String {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\nConnection: {connection}\r\n\r\n"
    )
}

/// One JSON-RPC call on a fresh connection; its `result`, or an error naming the method.
pub fn call(port: u16, token: &str, method: &str, params: Value) -> anyhow::Result<Value> {
    let body = request_body(method, &params);
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.write_all(request_head("POST", "/rpc/v0", token, body.len() as u64, false).as_bytes())?;
    stream.write_all(&body)?;
    let mut reader = BufReader::new(stream);
    let head = read_head(&mut reader)?;
    let mut text = Vec::new();
    body_reader(&mut reader, &head).read_to_end(&mut text)?;
    let answer: Value = serde_json::from_slice(&text)
        .with_context(|| format!("{method}: HTTP {} with a non-JSON body", head.status))?;
    if let Some(error) = answer.get("error") {
        bail!("{method}: {error}");
    }
    answer.get("result").cloned().with_context(|| format!("{method}: no result in {answer}"))
}

/// A response's status line and the headers the benchmark needs.
pub struct Head {
    /// The status code.
    pub status: u16,
    /// `Content-Length`, if any.
    pub length: Option<u64>,
    /// Whether the body is chunked.
    pub chunked: bool,
}

/// Reads the status line and headers.
pub fn read_head(reader: &mut impl BufRead) -> anyhow::Result<Head> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).context("no HTTP status line")?;
    let mut head = Head { status, length: None, chunked: false };
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            return Ok(head);
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                head.length = v.trim().parse().ok();
            } else if k.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked") {
                head.chunked = true;
            }
        }
    }
}

/// The body of a response whose head was read: by length, chunked, or to the end of the connection.
pub fn body_reader<'a, R: BufRead + 'a>(reader: &'a mut R, head: &Head) -> Box<dyn Read + 'a> {
    if head.chunked {
        Box::new(Chunked { inner: reader, left: 0, done: false })
    } else if let Some(n) = head.length {
        Box::new(reader.take(n))
    } else {
        Box::new(reader)
    }
}

/// A chunked transfer-coded body.
struct Chunked<R> {
    inner: R,
    left: u64,
    done: bool,
}

impl<R: BufRead> Read for Chunked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let invalid = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
        if self.done {
            return Ok(0);
        }
        if self.left == 0 {
            let mut line = String::new();
            self.inner.read_line(&mut line)?;
            if line.trim().is_empty() {
                // The CRLF that ends the previous chunk.
                line.clear();
                self.inner.read_line(&mut line)?;
            }
            let size = line.trim().split(';').next().unwrap_or("");
            self.left = u64::from_str_radix(size, 16).map_err(|_| invalid("bad chunk size"))?;
            if self.left == 0 {
                self.done = true;
                return Ok(0);
            }
        }
        let want = buf.len().min(self.left as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(invalid("connection closed inside a chunk"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// What a load run measured.
pub struct Load {
    /// Calls answered.
    pub calls: usize,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// CPU time the load generator itself used (its one thread).
    pub client_cpu: Duration,
    latencies: Vec<Duration>,
}

impl Load {
    /// Calls per second.
    pub fn rate(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }

    /// The latency at quantile `q` (0..=1).
    pub fn quantile(&self, q: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        sorted.get(((sorted.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or_default()
    }

    /// `9.8k calls/s, p50 2.9 ms, p99 9.6 ms, client 41% of a core`.
    pub fn summary(&self) -> String {
        format!(
            "{:.1}k calls/s, p50 {:.2} ms, p99 {:.2} ms, client {:.0}% of a core",
            self.rate() / 1000.0,
            self.quantile(0.5).as_secs_f64() * 1e3,
            self.quantile(0.99).as_secs_f64() * 1e3,
            self.client_share() * 100.0
        )
    }

    /// The load generator's CPU time over the wall time: near 1.0, the client (one thread) was the bottleneck.
    pub fn client_share(&self) -> f64 {
        self.client_cpu.as_secs_f64() / self.elapsed.as_secs_f64()
    }

    /// Both runs as one (rates and quantiles over all calls).
    pub fn merge(mut self, other: Load) -> Load {
        self.calls += other.calls;
        self.elapsed += other.elapsed;
        self.client_cpu += other.client_cpu;
        self.latencies.extend(other.latencies);
        self
    }
}

/// `calls` JSON-RPC calls over `connections` keep-alive connections, one in flight each; `body(connection, i)`
/// makes the i-th request of a connection. Any error answer or transport failure fails the run.
pub fn load(
    port: u16,
    token: &str,
    connections: usize,
    calls: usize,
    body: impl Fn(usize, usize) -> Vec<u8> + Send + Sync + 'static,
) -> anyhow::Result<Load> {
    let body = std::sync::Arc::new(body);
    let token: std::sync::Arc<str> = token.into();
    run_load(connections, calls, move |c, calls| {
        let (token, body) = (std::sync::Arc::clone(&token), std::sync::Arc::clone(&body));
        async move { connection(port, &token, calls, |i| body(c, i)).await }
    })
}

/// The load generator for any protocol: `connection(c, calls)` runs connection `c`'s `calls` calls, one in flight,
/// and returns their latencies; all connections run on one single-threaded runtime, so the client takes at most
/// one core whatever the server is.
pub fn run_load<F, Fut>(connections: usize, calls: usize, connection: F) -> anyhow::Result<Load>
where
    F: Fn(usize, usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Vec<Duration>>> + Send + 'static,
{
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let per_connection = calls.div_ceil(connections.max(1));
    let cpu_before = thread_cpu();
    let mut load = runtime.block_on(async move {
        let started = Instant::now();
        let tasks: Vec<_> = (0..connections).map(|c| tokio::spawn(connection(c, per_connection))).collect();
        let mut latencies = Vec::with_capacity(per_connection * connections);
        for task in tasks {
            latencies.extend(task.await??);
        }
        anyhow::Ok(Load { calls: latencies.len(), elapsed: started.elapsed(), client_cpu: Duration::ZERO, latencies })
    })?;
    load.client_cpu = thread_cpu().saturating_sub(cpu_before);
    Ok(load)
}

/// CPU time (user + system) of the calling thread, which runs the whole single-threaded load generator.
fn thread_cpu() -> Duration {
    // SAFETY: getrusage fills the zeroed struct we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

async fn connection(
    port: u16,
    token: &str,
    calls: usize,
    body: impl Fn(usize) -> Vec<u8>,
) -> anyhow::Result<Vec<Duration>> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream.set_nodelay(true)?;
    let mut stream = tokio::io::BufReader::new(stream);
    let mut latencies = Vec::with_capacity(calls);
    let mut line = String::new();
    let mut answer = Vec::new();
    for i in 0..calls {
        let body = body(i);
        let mut request = request_head("POST", "/rpc/v0", token, body.len() as u64, true).into_bytes();
        request.extend_from_slice(&body);
        let sent = Instant::now();
        stream.get_mut().write_all(&request).await?;
        line.clear();
        stream.read_line(&mut line).await?;
        if !line.starts_with("HTTP/1.1 200") {
            bail!("HTTP answer {:?} to call {i}", line.trim());
        }
        let mut length = None;
        loop {
            line.clear();
            if stream.read_line(&mut line).await? == 0 || line.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse::<usize>().ok();
            }
        }
        let length = length.context("an answer without Content-Length")?;
        answer.resize(length, 0);
        stream.read_exact(&mut answer).await?;
        latencies.push(sent.elapsed());
        if answer.windows(8).any(|w| w == b"\"error\":") {
            bail!("error answer to call {i}: {}", String::from_utf8_lossy(&answer));
        }
    }
    Ok(latencies)
}
