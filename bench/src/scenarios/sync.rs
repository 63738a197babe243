//! `sync_fanout`, `sync_fanout_process` and `catchup_linear`: state changes with SyncSectorState plugins attached
//! (the `bench-sync` fixture, steered by files in the plugins dir; in process or as child processes), and the
//! drain of a backlog after an outage.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::json;

use super::rpc::{CONNECTIONS, Measured, allocate, report_state_load};
use super::{Scale, Scenario};
use crate::daemon::{Daemon, Home};
use crate::report::Outcome;
use crate::toolchain::Toolchain;

/// The `i`-th benchmark sync plugin's name.
pub fn plugin_name(i: usize) -> String {
    format!("bench-sync-{i:02}")
}

/// A home with `count` bench-sync plugins installed.
pub fn home_with_plugins(tools: &Toolchain, count: usize) -> anyhow::Result<Home> {
    let home = Home::init(tools)?;
    for i in 0..count {
        home.install_plugin(&tools.bench_sync_plugin(&plugin_name(i))?)?;
    }
    Ok(home)
}

/// Each sync plugin's pending events, by name.
fn pending(daemon: &Daemon) -> anyhow::Result<Vec<(String, u64)>> {
    let list = daemon.call("Plugins.List", json!([]))?;
    let plugins = list.as_array().context("Plugins.List did not answer a list")?;
    let sync = plugins.iter().filter(|p| p["Kind"] == "SyncSectorState");
    // A plugin the daemon refused never drains: say why at once rather than wait out the limit.
    if let Some(down) = sync.clone().find(|p| p["State"] != "Ready") {
        bail!(
            "sync plugin {} is {} (the benchmark needs every plugin Ready; a refused plugin usually means the \
             --manager binary is older than the SDK the plugins were built with: rebuild it): {}",
            down["Name"],
            down["State"],
            down["LastError"]
        );
    }
    Ok(sync
        .map(|p| {
            let name = p["Name"].as_str().unwrap_or("?").to_string();
            // No lag reported yet counts as not drained.
            (name, p["SyncLag"]["Pending"].as_u64().unwrap_or(u64::MAX))
        })
        .collect())
}

/// Waits until every sync plugin but those in `except` has nothing pending.
fn wait_drained(daemon: &Daemon, except: &[String], limit: Duration) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let left: Vec<(String, u64)> =
            pending(daemon)?.into_iter().filter(|(n, p)| *p > 0 && !except.contains(n)).collect();
        if left.is_empty() {
            return Ok(started.elapsed());
        }
        if started.elapsed() > limit {
            bail!("sync plugins still have events pending after {} s: {left:?}", limit.as_secs());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// ReportState load on two daemons, `per_round` calls each per round over 2 rounds alternating which goes first;
/// before every run the fast sync plugins of both catch up (all but `slow`), so no delivery runs beside the other
/// daemon's load.
fn alternate(sides: [&Daemon; 2], slow: &str, per_round: usize) -> anyhow::Result<[Measured; 2]> {
    let ids = [allocate(sides[0], CONNECTIONS)?, allocate(sides[1], CONNECTIONS)?];
    let except_slow = [slow.to_string()];
    let mut totals: [Option<Measured>; 2] = [None, None];
    for round in 0..2 {
        for side in if round == 0 { [0, 1] } else { [1, 0] } {
            for daemon in sides {
                wait_drained(daemon, &except_slow, Duration::from_secs(300))?;
            }
            let daemon = sides[side];
            Measured::run(daemon, || report_state_load(daemon, &ids[side], per_round))?.accumulate(&mut totals[side]);
        }
    }
    let [a, b] = totals;
    Ok([a.context("no rounds")?, b.context("no rounds")?])
}

/// Tells `home`'s slow plugin to sleep `ms` per event.
fn set_sleep(home: &Home, slow: &str, ms: u64) -> anyhow::Result<()> {
    Ok(std::fs::write(home.plugins_dir().join(format!("{slow}.sleep-ms")), ms.to_string())?)
}

/// After a measured run, the slow plugin's downstream recovers: the whole outbox must drain. The backlog and how
/// long it took.
fn drain_slow(home: &Home, daemon: &Daemon, slow: &str) -> anyhow::Result<(u64, Duration)> {
    let backlog: u64 = pending(daemon)?.iter().map(|(_, p)| p).sum();
    set_sleep(home, slow, 0)?;
    Ok((backlog, wait_drained(daemon, &[], Duration::from_secs(600))?))
}

/// `sync_fanout`.
pub fn fanout(tools: &Toolchain, scale: Scale) -> anyhow::Result<Vec<Outcome>> {
    let per_round = scale.pick(20_000, 1_000);
    let bare = Home::init(tools)?;
    let eight = home_with_plugins(tools, 8)?;
    let slow = plugin_name(0);
    set_sleep(&eight, &slow, 50)?;
    let bare_daemon = bare.start()?;
    let eight_daemon = eight.start()?;
    let [none, with] = alternate([&bare_daemon, &eight_daemon], &slow, per_round)?;
    bare_daemon.stop()?;
    let (backlog, drain) = drain_slow(&eight, &eight_daemon, &slow)?;
    eight_daemon.stop()?;
    Ok(vec![Outcome {
        name: Scenario::SyncFanout.name().into(),
        figure: format!("ReportState with 8 sync plugins: {}", with.load.summary()),
        baseline: format!("no sync plugins: {}", none.load.summary()),
        value: with.load.rate() / none.load.rate(),
        target: Scenario::SyncFanout.target(),
        note: format!(
            "one plugin sleeps 50 ms per event, seven return at once; {} calls per side over 2 rounds alternating; \
             afterwards the slow plugin's {backlog} pending events drained in {:.1} s once it stopped sleeping. \
             Daemon per ReportState with the plugins: {}. Without: {}",
            with.load.calls,
            drain.as_secs_f64(),
            with.explain(),
            none.explain()
        ),
    }])
}

/// `sync_fanout_process`.
pub fn fanout_process(tools: &Toolchain, scale: Scale) -> anyhow::Result<Vec<Outcome>> {
    let per_round = scale.pick(20_000, 1_000);
    let in_process = home_with_plugins(tools, 8)?;
    let process = Home::init(tools)?;
    for i in 0..8 {
        process.install_plugin(&tools.bench_sync_process_plugin(&plugin_name(i))?)?;
    }
    let slow = plugin_name(0);
    set_sleep(&in_process, &slow, 50)?;
    set_sleep(&process, &slow, 50)?;
    let in_process_daemon = in_process.start()?;
    let process_daemon = process.start()?;
    let [so, child] = alternate([&in_process_daemon, &process_daemon], &slow, per_round)?;
    in_process_daemon.stop()?;
    let (backlog, drain) = drain_slow(&process, &process_daemon, &slow)?;
    process_daemon.stop()?;
    Ok(vec![Outcome {
        name: Scenario::SyncFanoutProcess.name().into(),
        figure: format!("ReportState with 8 process sync plugins: {}", child.load.summary()),
        baseline: format!("8 in-process (.so) sync plugins: {}", so.load.summary()),
        value: child.load.rate() / so.load.rate(),
        target: Scenario::SyncFanoutProcess.target(),
        note: format!(
            "the bench-sync fixture built both ways (`plugin build` and `plugin build --process`), one plugin \
             sleeping 50 ms per event on each side, seven returning at once; {} calls per side over 2 rounds \
             alternating; afterwards the slow process plugin's {backlog} pending events drained in {:.1} s. Daemon \
             per ReportState with process plugins: {}. With in-process plugins: {}",
            child.load.calls,
            drain.as_secs_f64(),
            child.explain(),
            so.explain()
        ),
    }])
}

/// `catchup_linear`.
pub fn catchup_linear(tools: &Toolchain, scale: Scale) -> anyhow::Result<Vec<Outcome>> {
    let (small, factor) = scale.pick((4_000, 8), (500, 4));
    let home = home_with_plugins(tools, 1)?;
    let name = plugin_name(0);
    let fail_file = home.plugins_dir().join(format!("{name}.fail"));
    let daemon = home.start()?;
    let ids = allocate(&daemon, CONNECTIONS)?;
    wait_drained(&daemon, &[], Duration::from_secs(60))?;
    let mut drains = Vec::new();
    for events in [small, small * factor] {
        std::fs::write(&fail_file, "")?;
        // The plugin reads its steering files every 100 ms.
        std::thread::sleep(Duration::from_millis(200));
        report_state_load(&daemon, &ids, events)?;
        let backlog = wait_backlog(&daemon, &name, events as u64)?;
        std::fs::remove_file(&fail_file)?;
        drains.push(drain_time(&daemon, &name, backlog)?);
    }
    daemon.stop()?;
    let (small_drain, big_drain) = (drains[0], drains[1]);
    Ok(vec![Outcome {
        name: Scenario::CatchupLinear.name().into(),
        figure: format!("{}k events drained in {:.3} s", small * factor / 1000, big_drain.as_secs_f64()),
        baseline: format!("{}k events drained in {:.3} s (x {factor})", small / 1000, small_drain.as_secs_f64()),
        value: big_drain.as_secs_f64() / (small_drain.as_secs_f64() * factor as f64),
        target: Scenario::CatchupLinear.target(),
        note: "a sync plugin failing every event while the backlog is made with ReportState, then recovering; the \
               drain is timed from the first delivered event (after the retry backoff) to an empty backlog, \
               polling Plugins.List"
            .into(),
    }])
}

fn pending_of(daemon: &Daemon, name: &str) -> anyhow::Result<u64> {
    let found = pending(daemon)?.into_iter().find(|(n, _)| n == name).map(|(_, p)| p);
    found.with_context(|| format!("{name} is not in Plugins.List"))
}

/// Waits until `name` (still failing) shows a backlog of at least `events`; the backlog.
fn wait_backlog(daemon: &Daemon, name: &str, events: u64) -> anyhow::Result<u64> {
    // The count is refreshed at delivery attempts (the failing retries): wait for one that saw the whole backlog.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let backlog = pending_of(daemon, name)?;
        if backlog >= events && backlog != u64::MAX {
            return Ok(backlog);
        }
        if Instant::now() > deadline {
            bail!("{name} shows {backlog} events pending after 90 s, expected at least {events}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits for the backlog of `name` (`backlog` events, its downstream now recovered) to start moving, then times
/// it to empty.
fn drain_time(daemon: &Daemon, name: &str, backlog: u64) -> anyhow::Result<Duration> {
    // The first retry comes after the worker's backoff (at most 60 s).
    let deadline = Instant::now() + Duration::from_secs(90);
    let started = loop {
        if pending_of(daemon, name)? < backlog {
            break Instant::now();
        }
        if Instant::now() > deadline {
            bail!("{name}'s backlog of {backlog} did not start draining within 90 s");
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let deadline = Instant::now() + Duration::from_secs(600);
    while pending_of(daemon, name)? > 0 {
        if Instant::now() > deadline {
            bail!("{name}'s backlog did not drain within 600 s");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(started.elapsed())
}
