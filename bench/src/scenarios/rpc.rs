//! `rpc_state_vs_noop` and `rpc_state_vs_durable_redis`: `Venus.ReportState` throughput on RocksDB under 32
//! keep-alive clients, against a no-op call on the same server and against a Redis server doing the same durable
//! work per call ([`crate::redis_peer`]); each figure with what a call cost the server.

use anyhow::{Context as _, bail};
use manager::kvstore::{Db as _, RocksDb};
use serde_json::{Value, json};

use super::{Scale, Scenario};
use crate::daemon::{Daemon, Home};
use crate::disk_probe;
use crate::http::{self, Load};
use crate::proc_stats::{ProcCost, ProcSample};
use crate::redis_peer::RedisPeer;
use crate::report::{Outcome, Target};
use crate::rocksdb_stats::WriteCounts;
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

/// A load run and what the daemon paid for it.
pub struct Measured {
    /// The client's view.
    pub load: Load,
    /// The daemon's CPU time and context switches.
    pub cost: ProcCost,
    /// Its process plugins' (child processes') CPU time and context switches, all of them together.
    pub children: ProcCost,
    /// RocksDB's write counters over the run (and up to a second around it).
    pub writes: WriteCounts,
}

impl Measured {
    /// Runs `run` on `daemon`, reading the daemon's `/proc` counters and RocksDB's statistics around it.
    pub fn run(daemon: &Daemon, run: impl FnOnce() -> anyhow::Result<Load>) -> anyhow::Result<Measured> {
        let writes_before = daemon.write_counts()?;
        let before = (daemon.sample()?, daemon.children_sample());
        let load = run()?;
        let after = (daemon.sample()?, daemon.children_sample());
        let writes_after = daemon.write_counts()?;
        Ok(Measured {
            load,
            cost: before.0.cost_until(&after.0),
            children: before.1.cost_until(&after.1),
            writes: writes_before.until(&writes_after),
        })
    }

    /// Both runs as one.
    pub fn merge(self, other: Measured) -> Measured {
        Measured {
            load: self.load.merge(other.load),
            cost: self.cost.add(other.cost),
            children: self.children.add(other.children),
            writes: self.writes.add(other.writes),
        }
    }

    /// `self` merged into `total`.
    pub fn accumulate(self, total: &mut Option<Measured>) {
        *total = Some(match total.take() {
            Some(prev) => prev.merge(self),
            None => self,
        });
    }

    /// What one call cost the daemon: CPU, context switches, WAL syncs and writes per sync.
    pub fn explain(&self) -> String {
        let children = if self.children == ProcCost::default() {
            String::new()
        } else {
            format!("; its process plugins together: {}", self.children.per_call(self.load.calls))
        };
        format!("{}{children}; {}", self.cost.per_call(self.load.calls), self.writes.per_call(self.load.calls))
    }
}

/// `rpc_state_vs_noop` and `rpc_state_p99_vs_noop`.
pub fn state_vs_noop(tools: &Toolchain, scale: Scale) -> anyhow::Result<Vec<Outcome>> {
    let per_round = scale.pick(30_000, 1_500);
    let home = Home::init(tools)?;
    let daemon = home.start()?;
    let ids = allocate(&daemon, CONNECTIONS)?;
    // Warm-up: connections, caches, RocksDB's first files.
    report_state_load(&daemon, &ids, per_round / 10)?;
    let (mut state, mut noop): (Option<Measured>, Option<Measured>) = (None, None);
    for round in 0..2 {
        let run_state = || Measured::run(&daemon, || report_state_load(&daemon, &ids, per_round));
        let run_noop = || Measured::run(&daemon, || noop_load(&daemon, per_round));
        if round == 0 {
            run_state()?.accumulate(&mut state);
            run_noop()?.accumulate(&mut noop);
        } else {
            run_noop()?.accumulate(&mut noop);
            run_state()?.accumulate(&mut state);
        }
    }
    let fdatasync = disk_probe::fdatasync_micros(home.path(), FDATASYNC_ROUNDS)?;
    daemon.stop()?;
    let (state, noop) = (state.context("no rounds")?, noop.context("no rounds")?);
    let p99 = |m: &Measured| m.load.quantile(0.99).as_secs_f64();
    Ok(vec![
        Outcome {
            name: Scenario::RpcStateVsNoop.name().into(),
            figure: format!("ReportState: {}", state.load.summary()),
            baseline: format!("Version: {}", noop.load.summary()),
            value: state.load.rate() / noop.load.rate(),
            target: Scenario::RpcStateVsNoop.target(),
            note: format!(
                "{} ReportState and {} Version calls over {CONNECTIONS} keep-alive connections, 2 rounds \
                 alternating which goes first; each ReportState is acknowledged after its synced RocksDB commit. \
                 Daemon per ReportState: {}. Per Version: {}. The disk: {fdatasync:.0} µs per fdatasync of 512 \
                 bytes (median of {FDATASYNC_ROUNDS}, same run){}",
                state.load.calls,
                noop.load.calls,
                state.explain(),
                noop.cost.per_call(noop.load.calls),
                client_bound_warning(&noop.load)
            ),
        },
        Outcome {
            name: "rpc_state_p99_vs_noop".into(),
            figure: format!("ReportState p99 {:.2} ms", p99(&state) * 1e3),
            baseline: format!("Version p99 {:.2} ms", p99(&noop) * 1e3),
            value: p99(&state) / p99(&noop),
            target: Target::at_most(2.0),
            note: format!("the latencies of the runs above, {CONNECTIONS} clients"),
        },
    ])
}

/// Rounds of the fdatasync probe printed beside every durable figure.
const FDATASYNC_ROUNDS: usize = 200;

/// `rpc_state_vs_durable_redis`.
pub fn state_vs_durable_redis(tools: &Toolchain, scale: Scale) -> anyhow::Result<Vec<Outcome>> {
    let per_round = scale.pick(30_000, 1_500);
    let (state_bytes, event_bytes) = encoded_state_and_event(tools)?;
    let redis_dir = tools.scratch()?;
    let redis = RedisPeer::start(redis_dir.path())?;
    let home = Home::init(tools)?;
    let daemon = home.start()?;
    let ids = allocate(&daemon, CONNECTIONS)?;
    report_state_load(&daemon, &ids, per_round / 10)?;
    redis.report_state_load(CONNECTIONS, per_round / 10, &state_bytes, &event_bytes)?;
    let mut state: Option<Measured> = None;
    let (mut peer, mut peer_cost): (Option<Load>, ProcCost) = (None, ProcCost::default());
    for round in 0..2 {
        let mut run_peer = || -> anyhow::Result<()> {
            let before = ProcSample::read(redis.pid())?;
            let load = redis.report_state_load(CONNECTIONS, per_round, &state_bytes, &event_bytes)?;
            peer_cost = peer_cost.add(before.cost_until(&ProcSample::read(redis.pid())?));
            peer = Some(match peer.take() {
                Some(prev) => prev.merge(load),
                None => load,
            });
            Ok(())
        };
        if round == 0 {
            run_peer()?;
        }
        Measured::run(&daemon, || report_state_load(&daemon, &ids, per_round))?.accumulate(&mut state);
        if round == 1 {
            run_peer()?;
        }
    }
    let fdatasync = disk_probe::fdatasync_micros(home.path(), FDATASYNC_ROUNDS)?;
    daemon.stop()?;
    let (state, peer) = (state.context("no rounds")?, peer.context("no rounds")?);
    Ok(vec![Outcome {
        name: Scenario::RpcStateVsDurableRedis.name().into(),
        figure: format!("ReportState: {}", state.load.summary()),
        baseline: format!("durable Redis GET+SET+XADD script: {}", peer.summary()),
        value: state.load.rate() / peer.rate(),
        target: Scenario::RpcStateVsDurableRedis.target(),
        note: format!(
            "{}, its own server on a free port with `appendonly yes`, `appendfsync always`, no snapshots; per call \
             one EVALSHA of a Lua script doing GET of the sector's state, SET of the new state ({} bytes) and XADD of \
             the event ({} bytes) — the bytes the daemon stored for the same ReportState; both driven by the same \
             load generator, {CONNECTIONS} connections, {} calls per side over 2 rounds alternating. Daemon per \
             ReportState: {}. Redis per call: {}. The disk: {fdatasync:.0} µs per fdatasync of 512 bytes",
            redis.version,
            state_bytes.len(),
            event_bytes.len(),
            state.load.calls,
            state.explain(),
            peer_cost.per_call(peer.calls)
        ),
    }])
}

/// A sector state and an outbox event as the daemon encodes them for this benchmark's ReportState calls: read
/// from the RocksDB of a daemon that ran a few (one sync plugin failing keeps the events in the outbox).
fn encoded_state_and_event(tools: &Toolchain) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let home = super::sync::home_with_plugins(tools, 1)?;
    std::fs::write(home.plugins_dir().join(format!("{}.fail", super::sync::plugin_name(0))), "")?;
    let daemon = home.start()?;
    let ids = allocate(&daemon, CONNECTIONS)?;
    report_state_load(&daemon, &ids, CONNECTIONS * 4)?;
    daemon.stop()?;
    let dir = home.path().join("db");
    let db = RocksDb::open(&dir).with_context(|| format!("open the daemon's RocksDB in {}", dir.display()))?;
    db.run()?;
    // The daemon's layout (`manager/src/sectors/keys.rs`): one `sectors` collection, states under `online/`,
    // events under `outbox/`.
    let sectors = db.open_collection("sectors")?;
    let last = |prefix: &[u8]| -> anyhow::Result<Option<Vec<u8>>> {
        let mut iter = sectors.scan(prefix)?;
        let mut last = None;
        while let Some((_, value)) = iter.next_entry()? {
            last = Some(value);
        }
        Ok(last)
    };
    let state = last(b"online/")?.with_context(|| format!("no sector state in {}", dir.display()))?;
    let event = last(b"outbox/")?.with_context(|| format!("no outbox event in {}", dir.display()))?;
    db.close()?;
    Ok((state, event))
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
