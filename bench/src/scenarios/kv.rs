//! `plugin_kv_overhead`: the same KV workload (put, get, scan) on memdb linked statically and on memdb loaded as
//! a plugin `.so` through the manager's registry, interleaved in one process.

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use manager::plugins::PluginRegistry;
use manager_plugin::Kind;
use manager_plugin::kv::{Db, KvStore, Meta};

use super::Scale;
use crate::report::Outcome;
use crate::toolchain::Toolchain;

/// `plugin_kv_overhead`.
pub fn plugin_kv_overhead(tools: &Toolchain, scale: Scale) -> anyhow::Result<Vec<Outcome>> {
    let (keys, rounds) = scale.pick((20_000, 16), (2_000, 2));
    let so = tools.example_plugin("memdb")?;
    let dir = tools.scratch()?;
    std::fs::copy(&so, dir.path().join(so.file_name().context("plugin file name")?))?;
    let registry = PluginRegistry::load(dir.path()).context("loading memdb as a plugin")?;
    let plugin = registry.get(Kind::KvStore, "memdb").context("memdb is not loaded")?;
    let plugin_db = plugin.open_db(&Meta::new()).context("memdb plugin: open")?;
    let static_db: Box<dyn Db> = Box::new(memdb::open(&Meta::new()).context("memdb: open")?);
    let keys: Vec<Vec<u8>> = (0..keys).map(|i| format!("m-1000-n-{i:08}").into_bytes()).collect();
    let value = vec![7u8; 256];
    let mut totals = [Duration::ZERO; 2];
    for round in 0..rounds {
        // Alternate which side goes first so drift on a noisy machine hits both equally.
        let order: [(usize, &dyn Db); 2] = if round % 2 == 0 {
            [(0, static_db.as_ref()), (1, plugin_db.as_ref())]
        } else {
            [(1, plugin_db.as_ref()), (0, static_db.as_ref())]
        };
        for (side, db) in order {
            let collection = db.open_collection(&format!("bench-{round}"))?;
            totals[side] += workload(collection.as_ref(), &keys, &value)?;
        }
    }
    registry.shutdown();
    let per_op = |d: Duration| d.as_secs_f64() * 1e9 / (keys.len() * rounds * 3) as f64;
    Ok(vec![Outcome {
        name: "plugin_kv_overhead".into(),
        figure: format!("memdb as .so: {:.0} ns per operation", per_op(totals[1])),
        baseline: format!("memdb linked statically: {:.0} ns per operation", per_op(totals[0])),
        value: totals[1].as_secs_f64() / totals[0].as_secs_f64(),
        target: super::Scenario::PluginKvOverhead.target(),
        note: format!(
            "{} keys of 256 bytes, put then get then a prefix scan, {rounds} rounds alternating which side goes first",
            keys.len()
        ),
    }])
}

fn workload(collection: &dyn KvStore, keys: &[Vec<u8>], value: &[u8]) -> anyhow::Result<Duration> {
    let started = Instant::now();
    for k in keys {
        collection.put(k, value)?;
    }
    for k in keys {
        black_box(collection.get(k)?);
    }
    let mut it = collection.scan(b"m-1000-")?;
    let mut n = 0;
    while let Some(entry) = it.next_entry()? {
        black_box(entry);
        n += 1;
    }
    if n != keys.len() {
        bail!("scan found {n} of {} keys", keys.len());
    }
    Ok(started.elapsed())
}
