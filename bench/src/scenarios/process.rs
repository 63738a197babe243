//! `plugin_kv_process_vs_socket`: what a KV call through a process plugin costs over the bare round trip on its
//! socket, with the in-process (`.so`) figure beside it.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use manager::plugins::PluginRegistry;
use manager_plugin::Kind;
use manager_plugin::kv::{Db, KvStore, Meta};
use manager_plugin::process::codec::write_line;
use manager_plugin::process::wire::{Blob, Call, FromPlugin, ToPlugin, Value};

use super::{Scale, Scenario};
use crate::echo::EchoServer;
use crate::report::Outcome;
use crate::toolchain::Toolchain;

/// The key and value of every get (a sector-sized key, a 256-byte value as in `plugin_kv_overhead`).
const KEY: &[u8] = b"m-1000-n-00000001";
const VALUE: [u8; 256] = [7u8; 256];

/// The protocol lines of one `KvStore::get` of [`KEY`] answered with [`VALUE`], as the manager and the plugin
/// write them (`manager-plugin/src/process/wire.rs`, JSON Lines framing of `codec.rs`); `id` and the collection
/// handle sized as in the measured run.
pub fn get_lines(id: u64, coll: u64) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let mut request = Vec::new();
    write_line(&mut request, &ToPlugin::Request { id, call: Call::Get { coll, key: Blob(KEY.to_vec()) } })?;
    let mut answer = Vec::new();
    write_line(&mut answer, &FromPlugin::Reply { id, reply: Ok(Value::Bytes(Blob(VALUE.to_vec()))) })?;
    Ok((request, answer))
}

/// A memdb collection through a plugin registry loaded from a dir holding only `file`.
struct Loaded {
    _dir: tempfile::TempDir,
    registry: PluginRegistry,
    _db: Box<dyn Db>,
    collection: Box<dyn KvStore>,
}

fn load(tools: &Toolchain, file: &Path) -> anyhow::Result<Loaded> {
    let dir = tools.scratch()?;
    std::fs::copy(file, dir.path().join(file.file_name().context("plugin file name")?))
        .with_context(|| format!("cannot copy {}", file.display()))?;
    let registry = PluginRegistry::load(dir.path()).with_context(|| format!("loading {}", file.display()))?;
    let plugin = registry.get(Kind::KvStore, "memdb").with_context(|| format!("{} is not loaded", file.display()))?;
    let db = plugin.open_db(&Meta::new()).context("memdb: open")?;
    let collection = db.open_collection("bench").context("memdb: open collection")?;
    collection.put(KEY, &VALUE)?;
    Ok(Loaded { _dir: dir, registry, _db: db, collection })
}

fn gets(collection: &dyn KvStore, n: usize) -> anyhow::Result<Duration> {
    let started = std::time::Instant::now();
    for _ in 0..n {
        black_box(collection.get(black_box(KEY))?);
    }
    Ok(started.elapsed())
}

/// `plugin_kv_process_vs_socket`.
pub fn kv_process_vs_socket(tools: &Toolchain, scale: Scale) -> anyhow::Result<Vec<Outcome>> {
    let (per_round, rounds) = scale.pick((20_000, 6), (1_000, 3));
    let process = load(tools, &tools.example_process_plugin("memdb")?)?;
    let in_process = load(tools, &tools.example_plugin("memdb")?)?;
    // The manager numbers calls per connection and handles per plugin: ids of the run's magnitude, handle 2.
    let (request, answer) = get_lines((per_round * rounds) as u64, 2)?;
    let mut echo = EchoServer::start(&answer)?;
    // Warm-up: connections, caches, the child's first pages.
    gets(process.collection.as_ref(), per_round / 10)?;
    gets(in_process.collection.as_ref(), per_round / 10)?;
    echo.round_trips(&request, per_round / 10)?;
    let mut totals = [Duration::ZERO; 3];
    for round in 0..rounds {
        let mut order = [0usize, 1, 2];
        order.rotate_left(round % 3);
        for side in order {
            totals[side] += match side {
                0 => gets(process.collection.as_ref(), per_round)?,
                1 => echo.round_trips(&request, per_round)?,
                _ => gets(in_process.collection.as_ref(), per_round)?,
            };
        }
    }
    drop(echo);
    process.registry.shutdown();
    in_process.registry.shutdown();
    let calls = (per_round * rounds) as f64;
    let micros = |d: Duration| d.as_secs_f64() * 1e6 / calls;
    Ok(vec![Outcome {
        name: Scenario::PluginKvProcessVsSocket.name().into(),
        figure: format!("memdb as a process plugin: {:.1} µs per get", micros(totals[0])),
        baseline: format!(
            "raw Unix-socket round trip with the same bytes ({} + {}): {:.1} µs",
            request.len(),
            answer.len(),
            micros(totals[1])
        ),
        value: totals[0].as_secs_f64() / totals[1].as_secs_f64(),
        target: Scenario::PluginKvProcessVsSocket.target(),
        note: format!(
            "in process (memdb as .so, same run): {:.2} µs per get; {} gets per side over {rounds} rounds in rotating \
             order; the baseline is a socketpair with a child process (this benchmark re-run as an echo server) \
             answering each request line with the reply line, no encoding on either side",
            micros(totals[2]),
            per_round * rounds
        ),
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_protocol_lines_are_single_json_lines_carrying_key_and_value() {
        let (request, answer) = get_lines(120_000, 2).unwrap();
        for line in [&request, &answer] {
            assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
            assert_eq!(line.last(), Some(&b'\n'));
        }
        let request: ToPlugin = serde_json::from_slice(&request).unwrap();
        assert!(
            matches!(request, ToPlugin::Request { id: 120_000, call: Call::Get { coll: 2, ref key } } if key.0 == KEY)
        );
        let answer: FromPlugin = serde_json::from_slice(&answer).unwrap();
        assert!(
            matches!(answer, FromPlugin::Reply { id: 120_000, reply: Ok(Value::Bytes(ref v)) } if v.0 == VALUE),
            "{answer:?}"
        );
    }
}
