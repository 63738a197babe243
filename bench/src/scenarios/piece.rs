//! `piece_put_vs_copy` and `piece_get_vs_read`: piece HTTP transfers of a 2 GiB file against the plain file
//! operations on the same disk.

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::bail;

use super::{Scale, Scenario};
use crate::daemon::{Daemon, Home};
use crate::http;
use crate::report::{Outcome, Target};
use crate::toolchain::Toolchain;

const MIB: u64 = 1 << 20;
const ROUNDS: usize = 2;

/// `piece_put_vs_copy` and `piece_put_peak_rss_mib`.
pub fn put_vs_copy(tools: &Toolchain, scale: Scale) -> anyhow::Result<Vec<Outcome>> {
    let size = scale.pick(2048 * MIB, 64 * MIB);
    let source = source_file(tools, size)?;
    // Both sides read the source from the page cache.
    timed_commands(&[&["sh", "-c", &format!("cat '{}' > /dev/null", source.display())]])?;
    let scratch = tools.scratch()?;
    let home = Home::init(tools)?;
    let daemon = home.start()?;
    let (mut put, mut copy) = (Duration::ZERO, Duration::ZERO);
    for round in 0..ROUNDS {
        let name = format!("bench-put-{round}");
        let copy_to = scratch.path().join(&name);
        let run_copy = || timed_commands(&[&["cp", path(&source), path(&copy_to)], &["sync", path(&copy_to)]]);
        let (p, c) = if round % 2 == 0 {
            let c = run_copy()?;
            (put_piece(&daemon, &name, &source)?, c)
        } else {
            let p = put_piece(&daemon, &name, &source)?;
            (p, run_copy()?)
        };
        put += p;
        copy += c;
        std::fs::remove_file(&copy_to)?;
        std::fs::remove_file(home.path().join("pieces").join(&name))?;
    }
    let rss = daemon.peak_rss_mib()?;
    daemon.stop()?;
    let mib = (size / MIB) as f64;
    let rate = |d: Duration| mib * ROUNDS as f64 / d.as_secs_f64();
    Ok(vec![
        Outcome {
            name: Scenario::PiecePutVsCopy.name().into(),
            figure: format!(
                "PUT: {:.2} s per {mib:.0} MiB ({:.0} MiB/s)",
                put.as_secs_f64() / ROUNDS as f64,
                rate(put)
            ),
            baseline: format!(
                "cp + sync: {:.2} s per {mib:.0} MiB ({:.0} MiB/s)",
                copy.as_secs_f64() / ROUNDS as f64,
                rate(copy)
            ),
            value: copy.as_secs_f64() / put.as_secs_f64(),
            target: Scenario::PiecePutVsCopy.target(),
            note: format!(
                "ratio = copy time / PUT time; the PUT is answered after the piece store synced the file; {ROUNDS} \
                 rounds alternating which goes first; the source file is in the page cache for both"
            ),
        },
        Outcome {
            name: "piece_put_peak_rss_mib".into(),
            figure: format!("daemon peak RSS (VmHWM) {rss:.1} MiB after {ROUNDS} PUTs of {mib:.0} MiB"),
            baseline: "-".into(),
            value: rss,
            target: Target::at_most(64.0),
            note: String::new(),
        },
    ])
}

/// `piece_get_vs_read`.
pub fn get_vs_read(tools: &Toolchain, scale: Scale) -> anyhow::Result<Vec<Outcome>> {
    let size = scale.pick(2048 * MIB, 64 * MIB);
    let source = source_file(tools, size)?;
    let home = Home::init(tools)?;
    let daemon = home.start()?;
    put_piece(&daemon, "bench-get", &source)?;
    let stored = home.path().join("pieces/bench-get");
    let (mut get, mut read) = (Duration::ZERO, Duration::ZERO);
    // Both read the stored file from the page cache: warm it once.
    timed_commands(&[&["sh", "-c", &format!("cat '{}' > /dev/null", stored.display())]])?;
    for round in 0..ROUNDS {
        let cat = format!("cat '{}' > /dev/null", stored.display());
        let run_read = || timed_commands(&[&["sh", "-c", &cat]]);
        let (g, r) = if round % 2 == 0 {
            let r = run_read()?;
            (get_piece(&daemon, "bench-get", size)?, r)
        } else {
            let g = get_piece(&daemon, "bench-get", size)?;
            (g, run_read()?)
        };
        get += g;
        read += r;
    }
    let rss = daemon.peak_rss_mib()?;
    daemon.stop()?;
    let mib = (size / MIB) as f64;
    let rate = |d: Duration| mib * ROUNDS as f64 / d.as_secs_f64();
    Ok(vec![Outcome {
        name: Scenario::PieceGetVsRead.name().into(),
        figure: format!("GET: {:.2} s per {mib:.0} MiB ({:.0} MiB/s)", get.as_secs_f64() / ROUNDS as f64, rate(get)),
        baseline: format!(
            "cat: {:.2} s per {mib:.0} MiB ({:.0} MiB/s)",
            read.as_secs_f64() / ROUNDS as f64,
            rate(read)
        ),
        value: read.as_secs_f64() / get.as_secs_f64(),
        target: Scenario::PieceGetVsRead.target(),
        note: format!(
            "ratio = cat time / GET time; both read the stored piece from the page cache; the client reads and \
             discards the body; daemon peak RSS {rss:.1} MiB"
        ),
    }])
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

/// `GET /piecestore/<name>`, reading and discarding `size` bytes; the time until the last byte.
fn get_piece(daemon: &Daemon, name: &str, size: u64) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", daemon.port))?;
    let head = format!(
        "GET /piecestore/{name} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        daemon.token
    );
    stream.write_all(head.as_bytes())?;
    let mut reader = BufReader::with_capacity(MIB as usize, stream);
    let answer = http::read_head(&mut reader)?;
    if answer.status != 200 {
        bail!("GET /piecestore/{name}: HTTP {}", answer.status);
    }
    let got = std::io::copy(&mut http::body_reader(&mut reader, &answer), &mut std::io::sink())?;
    if got != size {
        bail!("GET /piecestore/{name}: {got} bytes of {size}");
    }
    Ok(started.elapsed())
}
