//! `rpc_state_vs_noop` and `rpc_state_vs_redis`: `Venus.ReportState` throughput on RocksDB under 32 keep-alive
//! clients, against a no-op call on the same server and against a Redis server doing one durable write per call.

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use super::{Scale, Scenario};
use crate::daemon::{Daemon, Home};
use crate::http::{self, Load};
use crate::report::Outcome;
use crate::toolchain::Toolchain;

/// Keep-alive client connections of every RPC load.
pub const CONNECTIONS: usize = 32;

/// Allocates `count` sectors (miner 1000 of the default config).
pub fn allocate(daemon: &Daemon, count: usize) -> anyhow::Result<Vec<Value>> {
    let mut ids = Vec::with_capacity(count);
    while ids.len() < count {
        let batch = (count - ids.len()).min(1024);
        let answer = daemon
            .call("Venus.AllocateSectorsBatch", json!([{"AllowedMiners": null, "AllowedProofTypes": null}, batch]))?;
        let allocated = answer.as_array().context("AllocateSectorsBatch did not answer a list")?;
        if allocated.is_empty() {
            bail!("AllocateSectorsBatch allocated nothing");
        }
        ids.extend(allocated.iter().filter_map(|a| a.get("ID").cloned()));
    }
    Ok(ids)
}

/// `calls` `Venus.ReportState` calls, connection `c` reporting on sector `ids[c]`, each a new state.
pub fn report_state_load(daemon: &Daemon, ids: &[Value], calls: usize) -> anyhow::Result<Load> {
    if ids.len() < CONNECTIONS {
        bail!("{} sectors for {CONNECTIONS} connections", ids.len());
    }
    let ids = ids.to_vec();
    http::load(daemon.port, &daemon.token, CONNECTIONS, calls, move |c, i| {
        let report = json!({
            "Worker": {"Instance": format!("bench-{c}"), "Location": "/bench"},
            "StateChange": {"Prev": format!("S{}", i.saturating_sub(1)), "Next": format!("S{i}"), "Event": "Bench"},
            "Failure": null,
        });
        http::request_body("Venus.ReportState", &json!([ids[c], report]))
    })
}

/// `calls` `Venus.Version` calls.
pub fn noop_load(daemon: &Daemon, calls: usize) -> anyhow::Result<Load> {
    let body = http::request_body("Venus.Version", &json!([]));
    http::load(daemon.port, &daemon.token, CONNECTIONS, calls, move |_, _| body.clone())
}

/// `rpc_state_vs_noop`.
pub fn state_vs_noop(tools: &Toolchain, scale: Scale) -> anyhow::Result<Vec<Outcome>> {
    let per_round = scale.pick(30_000, 1_500);
    let home = Home::init(tools)?;
    let daemon = home.start()?;
    let ids = allocate(&daemon, CONNECTIONS)?;
    // Warm-up: connections, caches, RocksDB's first files.
    report_state_load(&daemon, &ids, per_round / 10)?;
    let (mut state, mut noop): (Option<Load>, Option<Load>) = (None, None);
    for round in 0..2 {
        let run_state = || report_state_load(&daemon, &ids, per_round);
        let run_noop = || noop_load(&daemon, per_round);
        let (s, n) = if round == 0 {
            let s = run_state()?;
            (s, run_noop()?)
        } else {
            let n = run_noop()?;
            (run_state()?, n)
        };
        state = Some(match state.take() {
            Some(prev) => prev.merge(s),
            None => s,
        });
        noop = Some(match noop.take() {
            Some(prev) => prev.merge(n),
            None => n,
        });
    }
    daemon.stop()?;
    let (state, noop) = (state.context("no rounds")?, noop.context("no rounds")?);
    Ok(vec![Outcome {
        name: Scenario::RpcStateVsNoop.name().into(),
        figure: format!("ReportState: {}", state.summary()),
        baseline: format!("Version: {}", noop.summary()),
        value: state.rate() / noop.rate(),
        target: Scenario::RpcStateVsNoop.target(),
        note: format!(
            "{} ReportState and {} Version calls over {CONNECTIONS} keep-alive connections, 2 rounds alternating \
             which goes first; each ReportState is one synced RocksDB commit{}",
            state.calls,
            noop.calls,
            client_bound_warning(&noop)
        ),
    }])
}

/// `rpc_state_vs_redis`.
pub fn state_vs_redis(tools: &Toolchain, scale: Scale) -> anyhow::Result<Vec<Outcome>> {
    let (per_round, redis_calls) = scale.pick((30_000, 100_000), (1_500, 5_000));
    let (plain_dir, durable_dir) = (tools.scratch()?, tools.scratch()?);
    // The baseline: a Redis as installed (no append-only file); and one as durable as ReportState.
    let plain = RedisPeer::start(plain_dir.path(), false)?;
    let durable = RedisPeer::start(durable_dir.path(), true)?;
    let home = Home::init(tools)?;
    let daemon = home.start()?;
    let ids = allocate(&daemon, CONNECTIONS)?;
    report_state_load(&daemon, &ids, per_round / 10)?;
    let mut state: Option<Load> = None;
    let (mut plain_rates, mut durable_rates) = (Vec::new(), Vec::new());
    for round in 0..2 {
        if round == 1 {
            plain_rates.push(plain.benchmark(redis_calls)?);
            durable_rates.push(durable.benchmark(redis_calls)?);
        }
        let s = report_state_load(&daemon, &ids, per_round)?;
        state = Some(match state.take() {
            Some(prev) => prev.merge(s),
            None => s,
        });
        if round == 0 {
            plain_rates.push(plain.benchmark(redis_calls)?);
            durable_rates.push(durable.benchmark(redis_calls)?);
        }
    }
    daemon.stop()?;
    let state = state.context("no rounds")?;
    let mean = |rates: &[f64]| rates.iter().sum::<f64>() / rates.len() as f64;
    let (plain_rate, durable_rate) = (mean(&plain_rates), mean(&durable_rates));
    Ok(vec![Outcome {
        name: Scenario::RpcStateVsRedis.name().into(),
        figure: format!("ReportState: {}", state.summary()),
        baseline: format!("redis-benchmark -t set -c 32: {:.1}k calls/s", plain_rate / 1000.0),
        value: state.rate() / plain_rate,
        target: Scenario::RpcStateVsRedis.target(),
        note: format!(
            "Redis {} run by the benchmark on a free port with its default persistence (no append-only file, as \
             installed); {redis_calls} SETs per run, 2 runs interleaved with the ReportState runs. The same with \
             `appendonly yes`, `appendfsync always` (acknowledged writes on disk, as ReportState's; the set-up of \
             `scripts/setup.sh`): {:.1}k SETs/s, ratio {:.2}",
            plain.version,
            durable_rate / 1000.0,
            state.rate() / durable_rate
        ),
    }])
}

/// A warning when the load generator used nearly a whole core during `load` (it may have capped the figure).
pub fn client_bound_warning(load: &Load) -> String {
    if load.client_share() > 0.9 {
        format!(
            "; WARNING: the load generator used {:.0}% of a core during the baseline, which may be client-bound \
             (its figure too low, the ratio too high)",
            load.client_share() * 100.0
        )
    } else {
        String::new()
    }
}

/// A redis-server of the benchmark's own.
struct RedisPeer {
    child: Child,
    port: u16,
    version: String,
}

impl RedisPeer {
    /// A redis-server in `dir`; `durable`: append-only with an fsync per write.
    fn start(dir: &Path, durable: bool) -> anyhow::Result<RedisPeer> {
        let version = Command::new("redis-benchmark")
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .context(
                "redis-benchmark is not installed (Debian package redis-tools; scripts/setup.sh --redis installs it)",
            )?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut command = Command::new("redis-server");
        command.args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--dir"]).arg(dir);
        if durable {
            command.args(["--save", "", "--appendonly", "yes", "--appendfsync", "always"]);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("redis-server is not installed (scripts/setup.sh --redis installs it)")?;
        let peer = RedisPeer { child, port, version };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if peer.ping() {
                return Ok(peer);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("redis-server on 127.0.0.1:{port} did not answer PING within 10 s")
    }

    fn ping(&self) -> bool {
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else { return false };
        let mut answer = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok() && stream.read_exact(&mut answer).is_ok() && &answer == b"+PONG\r\n"
    }

    /// `redis-benchmark -t set -c 32 -n <calls>`: SETs per second.
    fn benchmark(&self, calls: usize) -> anyhow::Result<f64> {
        let out = Command::new("redis-benchmark")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-t", "set", "-c", "32", "--csv"])
            .args(["-n", &calls.to_string()])
            .output()
            .context("cannot run redis-benchmark")?;
        let text = String::from_utf8_lossy(&out.stdout);
        // `"SET","88105.73",...` (the first field the test, the second requests per second).
        text.lines()
            .find_map(|l| l.strip_prefix("\"SET\",\""))
            .and_then(|rest| rest.split('"').next())
            .and_then(|rps| rps.parse().ok())
            .with_context(|| format!("no SET rate in redis-benchmark's output: {text}"))
    }
}

impl Drop for RedisPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
