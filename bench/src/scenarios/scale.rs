//! `scale_1m`: a store holding 1,000,000 sectors, against an empty one: start-up time, memory, and listing them
//! with `Venus.ListSectors` and `util sectors list`.

use std::io::{BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::json;

use super::startup::median;
use super::{Scale, Scenario};
use crate::daemon::{Daemon, Home};
use crate::http;
use crate::report::{Outcome, Target};
use crate::toolchain::Toolchain;

/// `scale_1m`.
pub fn one_million(tools: &Toolchain, scale: Scale) -> anyhow::Result<Vec<Outcome>> {
    let (sectors, rounds) = scale.pick((1_000_000usize, 3), (20_000, 1));
    let empty = Home::init(tools)?;
    let full = Home::init(tools)?;
    let populate_started = Instant::now();
    {
        let daemon = full.start()?;
        let allocated = super::rpc::allocate(&daemon, sectors)?.len();
        if allocated != sectors {
            bail!("allocated {allocated} sectors of {sectors}");
        }
        daemon.stop()?;
    }
    let populate = populate_started.elapsed();
    let (mut empty_starts, mut full_starts) = (Vec::new(), Vec::new());
    let mut startup_rss: f64 = 0.0;
    for round in 0..rounds {
        for side in if round % 2 == 0 { [0, 1] } else { [1, 0] } {
            let home = if side == 0 { &empty } else { &full };
            let daemon = home.start()?;
            if side == 0 {
                empty_starts.push(daemon.startup);
            } else {
                full_starts.push(daemon.startup);
                startup_rss = startup_rss.max(daemon.peak_rss_mib()?);
            }
            daemon.stop()?;
        }
    }
    let daemon = full.start()?;
    let (listed, bytes, list_time) = list_sectors(&daemon)?;
    if listed != sectors {
        bail!("Venus.ListSectors listed {listed} sectors of {sectors}");
    }
    let cli_time = util_sectors_list(tools, &full)?;
    let rss = daemon.peak_rss_mib()?;
    daemon.stop()?;
    let (empty_start, full_start) = (median(empty_starts), median(full_starts));
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    Ok(vec![
        Outcome {
            name: Scenario::Scale1m.name().into(),
            figure: format!(
                "{sectors} sectors: start-up {:.1} ms, RSS after start-up {startup_rss:.1} MiB",
                ms(full_start)
            ),
            baseline: format!("empty store: start-up {:.1} ms", ms(empty_start)),
            value: full_start.as_secs_f64() / empty_start.as_secs_f64(),
            target: Scenario::Scale1m.target(),
            note: format!(
                "start-up = exec to the first answered RPC, medians of {rounds} alternating starts; the sectors were \
                 allocated with AllocateSectorsBatch (1024 per call) in {:.1} s; Venus.ListSectors answered {listed} \
                 sectors ({:.1} MiB of JSON) in {:.2} s; `util sectors list` printed them in {:.2} s",
                populate.as_secs_f64(),
                bytes as f64 / (1 << 20) as f64,
                list_time.as_secs_f64(),
                cli_time.as_secs_f64()
            ),
        },
        Outcome {
            name: "scale_1m_rss_mib".into(),
            figure: format!("daemon peak RSS (VmHWM) {rss:.1} MiB after start-up and Venus.ListSectors of {sectors}"),
            baseline: "-".into(),
            value: rss,
            target: Target::at_most(256.0),
            note: String::new(),
        },
    ])
}

/// `Venus.ListSectors("online", 0)` read as a stream: the sectors counted, the body's bytes, the time.
fn list_sectors(daemon: &Daemon) -> anyhow::Result<(usize, u64, Duration)> {
    let started = Instant::now();
    let body = http::request_body("Venus.ListSectors", &json!(["online", 0]));
    let mut stream = TcpStream::connect(("127.0.0.1", daemon.port))?;
    let head = format!(
        "POST /rpc/v0 HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        daemon.token,
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(&body)?;
    let mut reader = BufReader::with_capacity(1 << 20, stream);
    let answer = http::read_head(&mut reader)?;
    if answer.status != 200 {
        bail!("Venus.ListSectors: HTTP {}", answer.status);
    }
    // Count the sectors without holding the answer: every sector object has exactly one `"ID":{`.
    let needle = b"\"ID\":{";
    let (mut count, mut bytes, mut carry) = (0usize, 0u64, Vec::new());
    let mut start = Vec::new();
    let mut body = http::body_reader(&mut reader, &answer);
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        let n = body.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        if start.len() < 256 {
            start.extend_from_slice(&chunk[..n.min(256)]);
        }
        bytes += n as u64;
        carry.extend_from_slice(&chunk[..n]);
        count += carry.windows(needle.len()).filter(|w| w == needle).count();
        let keep = carry.len().min(needle.len() - 1);
        carry.drain(..carry.len() - keep);
    }
    if !start.starts_with(b"{\"jsonrpc\"") || start.windows(8).any(|w| w == b"\"error\":") {
        bail!("Venus.ListSectors answered {}", String::from_utf8_lossy(&start));
    }
    Ok((count, bytes, started.elapsed()))
}

/// `damocles-manager util sectors list` with its output discarded; the time.
fn util_sectors_list(tools: &Toolchain, home: &Home) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let status = Command::new(&tools.manager)
        .arg("--home")
        .arg(home.path())
        .args(["util", "sectors", "list"])
        .stdout(Stdio::null())
        .status()
        .context("cannot run util sectors list")?;
    if !status.success() {
        bail!("util sectors list failed ({status})");
    }
    Ok(started.elapsed())
}
