//! `sync_fanout` and `catchup_linear`: state changes with SyncSectorState plugins attached (the `bench-sync`
//! fixture, steered by files in the plugins dir), and the drain of a backlog after an outage.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::json;

use super::rpc::{CONNECTIONS, allocate, report_state_load};
use super::{Scale, Scenario};
use crate::daemon::{Daemon, Home};
use crate::http::Load;
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
    Ok(plugins
        .iter()
        .filter(|p| p["Kind"] == "SyncSectorState")
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

/// `sync_fanout`.
pub fn fanout(tools: &Toolchain, scale: Scale) -> anyhow::Result<Vec<Outcome>> {
    let per_round = scale.pick(20_000, 1_000);
    let bare = Home::init(tools)?;
    let eight = home_with_plugins(tools, 8)?;
    let slow = plugin_name(0);
    std::fs::write(eight.plugins_dir().join(format!("{slow}.sleep-ms")), "50")?;
    let bare_daemon = bare.start()?;
    let eight_daemon = eight.start()?;
    let bare_ids = allocate(&bare_daemon, CONNECTIONS)?;
    let eight_ids = allocate(&eight_daemon, CONNECTIONS)?;
    let except_slow = [slow.clone()];
    let (mut none, mut with): (Option<Load>, Option<Load>) = (None, None);
    for round in 0..2 {
        for side in if round == 0 { [0, 1] } else { [1, 0] } {
            // The seven fast plugins catch up before any measured run, so their delivery never runs beside
            // the other daemon's load.
            wait_drained(&eight_daemon, &except_slow, Duration::from_secs(300))?;
            let (daemon, ids, total) =
                if side == 0 { (&bare_daemon, &bare_ids, &mut none) } else { (&eight_daemon, &eight_ids, &mut with) };
            let run = report_state_load(daemon, ids, per_round)?;
            *total = Some(match total.take() {
                Some(prev) => prev.merge(run),
                None => run,
            });
        }
    }
    bare_daemon.stop()?;
    let (none, with) = (none.context("no rounds")?, with.context("no rounds")?);
    // Afterwards: the slow plugin's downstream recovers; the whole outbox must drain.
    let backlog: u64 = pending(&eight_daemon)?.iter().map(|(_, p)| p).sum();
    std::fs::write(eight.plugins_dir().join(format!("{slow}.sleep-ms")), "0")?;
    let drain = wait_drained(&eight_daemon, &[], Duration::from_secs(600))?;
    eight_daemon.stop()?;
    Ok(vec![Outcome {
        name: Scenario::SyncFanout.name().into(),
        figure: format!("ReportState with 8 sync plugins: {}", with.summary()),
        baseline: format!("no sync plugins: {}", none.summary()),
        value: with.rate() / none.rate(),
        target: Scenario::SyncFanout.target(),
        note: format!(
            "one plugin sleeps 50 ms per event, seven return at once; {} calls per side over 2 rounds alternating; \
             afterwards the slow plugin's {backlog} pending events drained in {:.1} s once it stopped sleeping",
            with.calls,
            drain.as_secs_f64()
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
