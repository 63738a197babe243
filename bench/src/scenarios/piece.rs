//! `piece_put_vs_copy` (with the daemon's peak RSS) and `piece_get_vs_nginx`: piece HTTP transfers of a 2 GiB
//! file against `cp` + `sync` on the same disk, and against nginx serving the same file (speed and server CPU per
//! GiB), with `cat` as an information line.

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::bail;

use super::{Scale, Scenario};
use crate::daemon::{Daemon, Home};
use crate::disk_probe;
use crate::http;
use crate::nginx::Nginx;
use crate::proc_stats::ProcCost;
use crate::report::{Outcome, Target};
use crate::toolchain::Toolchain;

const MIB: u64 = 1 << 20;
const GIB: f64 = (1u64 << 30) as f64;
/// Timed runs per side; each figure is the median.
const ROUNDS: usize = 3;

/// Makes the disk state the same for every timed run: `sync` writes back every dirty page first (the previous
/// run's, the source's, other processes'), which the timed run's own fsync would otherwise wait behind on a shared
/// disk; then `source` is read into the page cache again (under memory pressure it may have been evicted since
/// the last run, and a run reading it from disk competes with its own writes).
fn settle(source: &Path) -> anyhow::Result<()> {
    timed_commands(&[&["sync"], &["sh", "-c", &format!("cat '{}' > /dev/null", source.display())]])?;
    Ok(())
}

/// `min–max` of durations, seconds.
fn spread(times: &[Duration]) -> String {
    let min = times.iter().min().copied().unwrap_or_default();
    let max = times.iter().max().copied().unwrap_or_default();
    format!("{:.2}–{:.2} s", min.as_secs_f64(), max.as_secs_f64())
}

/// `piece_put_vs_copy` and `piece_put_peak_rss_mib`.
pub fn put_vs_copy(tools: &Toolchain, scale: Scale) -> anyhow::Result<Vec<Outcome>> {
    let size = scale.pick(2048 * MIB, 64 * MIB);
    let source = source_file(tools, size)?;
    let scratch = tools.scratch()?;
    let home = Home::init(tools)?;
    let daemon = home.start()?;
    let (mut puts, mut copies) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let name = format!("bench-put-{round}");
        let copy_to = scratch.path().join(&name);
        let mut run_copy = || -> anyhow::Result<()> {
            settle(&source)?;
            copies.push(timed_commands(&[&["cp", path(&source), path(&copy_to)], &["sync", path(&copy_to)]])?);
            Ok(())
        };
        let mut run_put = || -> anyhow::Result<()> {
            settle(&source)?;
            puts.push(put_piece(&daemon, &name, &source)?);
            Ok(())
        };
        if round % 2 == 0 {
            run_copy()?;
            run_put()?;
        } else {
            run_put()?;
            run_copy()?;
        }
        std::fs::remove_file(&copy_to)?;
        std::fs::remove_file(home.path().join("pieces").join(&name))?;
    }
    daemon.stop()?;
    let (rss, rss_note) = fresh_peak_rss(tools, &source, size)?;
    let (put, copy) = (disk_probe::median(&mut puts.clone()), disk_probe::median(&mut copies.clone()));
    let mib = (size / MIB) as f64;
    let rate = |d: Duration| mib / d.as_secs_f64();
    Ok(vec![
        Outcome {
            name: Scenario::PiecePutVsCopy.name().into(),
            figure: format!("PUT: {:.2} s per {mib:.0} MiB ({:.0} MiB/s)", put.as_secs_f64(), rate(put)),
            baseline: format!("cp + sync: {:.2} s per {mib:.0} MiB ({:.0} MiB/s)", copy.as_secs_f64(), rate(copy)),
            value: copy.as_secs_f64() / put.as_secs_f64(),
            target: Scenario::PiecePutVsCopy.target(),
            note: format!(
                "ratio = copy time / PUT time, medians of {ROUNDS} runs per side alternating which goes first \
                 (PUT {}, copy {}); the PUT is answered after the piece store synced the file; before every run a \
                 global `sync` (no run waits behind other writeback) and the source read into the page cache again",
                spread(&puts),
                spread(&copies)
            ),
        },
        Outcome {
            name: "piece_put_peak_rss_mib".into(),
            figure: format!("daemon peak RSS (VmHWM) {rss:.1} MiB {rss_note}"),
            baseline: "-".into(),
            value: rss,
            target: Target::at_most(64.0),
            note: String::new(),
        },
    ])
}

/// Peak RSS of a fresh daemon over one PUT of `source` and two GETs of it.
fn fresh_peak_rss(tools: &Toolchain, source: &Path, size: u64) -> anyhow::Result<(f64, String)> {
    let home = Home::init(tools)?;
    let daemon = home.start()?;
    put_piece(&daemon, "bench-rss", source)?;
    for _ in 0..2 {
        get_piece(daemon.port, "/piecestore/bench-rss", Some(&daemon.token), size)?;
    }
    let rss = daemon.peak_rss_mib()?;
    daemon.stop()?;
    Ok((rss, format!("on a fresh daemon over one PUT and two GETs of {} MiB", size / MIB)))
}

/// `piece_get_vs_nginx`, `piece_get_cpu_vs_nginx` and the information line `piece_get_vs_read`.
pub fn get_vs_nginx(tools: &Toolchain, scale: Scale) -> anyhow::Result<Vec<Outcome>> {
    let size = scale.pick(2048 * MIB, 64 * MIB);
    let source = source_file(tools, size)?;
    let home = Home::init(tools)?;
    let daemon = home.start()?;
    put_piece(&daemon, "bench-get", &source)?;
    let pieces = home.path().join("pieces");
    let stored = pieces.join("bench-get");
    let nginx_dir = tools.scratch()?;
    let nginx = Nginx::start(nginx_dir.path(), &pieces)?;
    let cat = format!("cat '{}' > /dev/null", stored.display());
    // Everything reads the stored file from the page cache: warm it once.
    timed_commands(&[&["sh", "-c", &cat]])?;
    let (mut gets, mut nginx_gets, mut reads) = (Vec::new(), Vec::new(), Vec::new());
    let (mut daemon_cost, mut nginx_cost) = (ProcCost::default(), ProcCost::default());
    for round in 0..ROUNDS {
        let mut sides: [&mut dyn FnMut() -> anyhow::Result<()>; 3] = [
            &mut || {
                let before = daemon.sample()?;
                gets.push(get_piece(daemon.port, "/piecestore/bench-get", Some(&daemon.token), size)?);
                daemon_cost = daemon_cost.add(before.cost_until(&daemon.sample()?));
                Ok(())
            },
            &mut || {
                let before = nginx.sample()?;
                nginx_gets.push(get_piece(nginx.port, "/bench-get", None, size)?);
                nginx_cost = nginx_cost.add(nginx.cost_since(&before)?);
                Ok(())
            },
            &mut || {
                reads.push(timed_commands(&[&["sh", "-c", &cat]])?);
                Ok(())
            },
        ];
        // A different side first in every round.
        sides.rotate_left(round % 3);
        for side in sides {
            side()?;
        }
    }
    daemon.stop()?;
    let version = nginx.version.clone();
    drop(nginx);
    let (get, served, read) = (
        disk_probe::median(&mut gets.clone()),
        disk_probe::median(&mut nginx_gets.clone()),
        disk_probe::median(&mut reads.clone()),
    );
    let mib = (size / MIB) as f64;
    let gib_served = (size as f64 / GIB) * ROUNDS as f64;
    let per_gib = |cost: ProcCost| cost.cpu.as_secs_f64() * 1e3 / gib_served;
    let timing = |what: &str, d: Duration| {
        format!("{what}: {:.2} s per {mib:.0} MiB ({:.0} MiB/s)", d.as_secs_f64(), mib / d.as_secs_f64())
    };
    let client = "the benchmark's client (one connection, 1 MiB reads, body discarded)";
    Ok(vec![
        Outcome {
            name: Scenario::PieceGetVsNginx.name().into(),
            figure: timing("GET /piecestore", get),
            baseline: timing(&format!("{version} with sendfile on"), served),
            value: served.as_secs_f64() / get.as_secs_f64(),
            target: Scenario::PieceGetVsNginx.target(),
            note: format!(
                "ratio = nginx time / daemon time (speed), medians of {ROUNDS} runs per side in rotating order \
                 (daemon {}, nginx {}); both serve the same stored piece from the page cache to {client}; nginx \
                 started by the benchmark on a free loopback port, one master and one worker, its own prefix and \
                 config",
                spread(&gets),
                spread(&nginx_gets)
            ),
        },
        Outcome {
            name: "piece_get_cpu_vs_nginx".into(),
            figure: format!("daemon CPU {:.0} ms per GiB served", per_gib(daemon_cost)),
            baseline: format!("nginx master + worker CPU {:.0} ms per GiB served", per_gib(nginx_cost)),
            value: per_gib(daemon_cost) / per_gib(nginx_cost).max(f64::MIN_POSITIVE),
            target: Target::at_most(1.0),
            note: "server CPU (utime + stime from /proc/<pid>/stat) over the same runs; the client's CPU is not \
                   counted on either side"
                .into(),
        },
        Outcome {
            name: "piece_get_vs_read".into(),
            figure: timing("GET /piecestore", get),
            baseline: timing("cat file > /dev/null", read),
            value: read.as_secs_f64() / get.as_secs_f64(),
            target: Target::info(),
            note: format!(
                "information only: cat copies the page cache once, a TCP client's read copies every byte again, \
                 for the daemon and nginx alike (cat {})",
                spread(&reads)
            ),
        },
    ])
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

/// A file of `size` pseudo-random bytes (cached between runs under the target dir), synced.
fn source_file(tools: &Toolchain, size: u64) -> anyhow::Result<PathBuf> {
    let dir = tools.target_dir.join("bench-work");
    std::fs::create_dir_all(&dir)?;
    let file = dir.join(format!("piece-source-{}MiB", size / MIB));
    if std::fs::metadata(&file).is_ok_and(|m| m.len() == size) {
        return Ok(file);
    }
    let partial = file.with_extension("partial");
    let mut out = std::io::BufWriter::with_capacity(MIB as usize, std::fs::File::create(&partial)?);
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut chunk = vec![0u8; MIB as usize];
    for _ in 0..size / MIB {
        for word in chunk.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        out.write_all(&chunk)?;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&partial, &file)?;
    Ok(file)
}

/// Runs the commands one after the other; their total wall time.
fn timed_commands(commands: &[&[&str]]) -> anyhow::Result<Duration> {
    let started = Instant::now();
    for command in commands {
        let status = Command::new(command[0]).args(&command[1..]).status()?;
        if !status.success() {
            bail!("{} failed ({status})", command.join(" "));
        }
    }
    Ok(started.elapsed())
}

/// `PUT /piecestore/<name>` of `file`; the time until the answer.
fn put_piece(daemon: &Daemon, name: &str, file: &Path) -> anyhow::Result<Duration> {
    let size = std::fs::metadata(file)?.len();
    let started = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", daemon.port))?;
    let head = format!(
        "PUT /piecestore/{name} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n",
        daemon.token
    );
    stream.write_all(head.as_bytes())?;
    // A daemon that refuses the piece answers before the body is in and closes: report its answer, not the
    // broken pipe.
    let sent = std::io::copy(&mut std::fs::File::open(file)?, &mut stream);
    let mut reader = BufReader::new(stream);
    if let Err(e) = sent {
        let answer = http::read_head(&mut reader).map(|head| {
            let mut body = String::new();
            let _ = http::body_reader(&mut reader, &head).read_to_string(&mut body);
            format!("HTTP {} {}", head.status, body.trim())
        });
        bail!("PUT /piecestore/{name}: sending the body failed ({e}); the daemon answered: {answer:?}");
    }
    let answer = http::read_head(&mut reader)?;
    let mut body = String::new();
    http::body_reader(&mut reader, &answer).read_to_string(&mut body)?;
    if !(200..300).contains(&answer.status) {
        bail!("PUT /piecestore/{name}: HTTP {} {body}", answer.status);
    }
    Ok(started.elapsed())
}

/// `GET <path>` on `port` (with the daemon's token when given), reading and discarding `size` bytes; the time
/// until the last byte.
fn get_piece(port: u16, path: &str, token: Option<&str>, size: u64) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let head = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n");
    stream.write_all(head.as_bytes())?;
    let mut reader = BufReader::with_capacity(MIB as usize, stream);
    let answer = http::read_head(&mut reader)?;
    if answer.status != 200 {
        bail!("GET {path} on port {port}: HTTP {}", answer.status);
    }
    let got = std::io::copy(&mut http::body_reader(&mut reader, &answer), &mut std::io::sink())?;
    if got != size {
        bail!("GET {path} on port {port}: {got} bytes of {size}");
    }
    Ok(started.elapsed())
}
