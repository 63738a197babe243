//! Start-up cost of loading 16 plugins: the registry's load (read, static checks, seal, map, init) without and
//! with the trial load of each file in a child process, interleaved, printing each side's time and the ratio.
//! Run: `cargo bench -p manager --bench plugin_startup`.

#[path = "../tests/common/plugins.rs"]
#[allow(dead_code)]
mod plugins;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use manager::plugins::{PluginRegistry, probe};

const PLUGINS: usize = 16;
const ROUNDS: usize = 6;

/// 16 distinct KVStore plugins: copies of memdb whose embedded manifest name is patched in place (same length).
fn sixteen_plugins() -> tempfile::TempDir {
    let memdb = std::fs::read(plugins::built("memdb")).expect("read memdb");
    let needle = b"name = \"memdb\"";
    let at = memdb.windows(needle.len()).position(|w| w == needle).expect("manifest name in the section");
    let dir = tempfile::tempdir().expect("temp dir");
    for i in 0..PLUGINS {
        let mut bytes = memdb.clone();
        bytes[at..at + needle.len()].copy_from_slice(format!("name = \"md{i:03}\"").as_bytes());
        std::fs::write(dir.path().join(format!("plugin-md{i:03}.so")), bytes).expect("write plugin");
    }
    dir
}

fn load_once(dir: &std::path::Path) -> Duration {
    let started = Instant::now();
    let registry = PluginRegistry::load(dir).expect("load");
    let elapsed = started.elapsed();
    assert_eq!(
        registry.refused().count(),
        0,
        "{:?}",
        registry.refused().map(|(_, e)| e.to_string()).collect::<Vec<_>>()
    );
    registry.shutdown();
    elapsed
}

fn main() {
    let dir = sixteen_plugins();
    let manager = PathBuf::from(env!("CARGO_BIN_EXE_damocles-manager"));
    let mut totals = [Duration::ZERO; 2];
    for round in 0..ROUNDS {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for side in order {
            probe::enable((side == 1).then(|| manager.clone()));
            totals[side] += load_once(dir.path());
        }
    }
    probe::enable(None);
    let per = |d: Duration| d.as_secs_f64() * 1000.0 / ROUNDS as f64;
    println!("loading {PLUGINS} plugins, mean of {ROUNDS} rounds:");
    println!("  static checks + seal + map + init:          {:8.1} ms", per(totals[0]));
    println!("  the same with a trial load per file (probe): {:8.1} ms", per(totals[1]));
    println!("  ratio probe / no probe: {:.2}x", totals[1].as_secs_f64() / totals[0].as_secs_f64());
}
