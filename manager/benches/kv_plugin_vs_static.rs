//! The same KV workload (put, get, scan) on memdb linked statically and on memdb loaded as a plugin `.so`,
//! interleaved in one run, printing each side's time and the plugin/static ratio. Run: `cargo bench -p manager`.
//! Target: plugin ≤ 1.10× static.

#[path = "../tests/common/plugins.rs"]
#[allow(dead_code)]
mod plugins;

use std::hint::black_box;
use std::time::{Duration, Instant};

use manager::plugins::PluginRegistry;
use manager_plugin::Kind;
use manager_plugin::kv::{Db, KvStore, Meta};

const KEYS: usize = 20_000;
const ROUNDS: usize = 15;

fn main() {
    let dir = plugins::plugins_dir(&["memdb"]);
    let registry = PluginRegistry::load(dir.path()).expect("load plugins");
    let plugin_db = registry.get(Kind::KvStore, "memdb").expect("memdb ready").open_db(&Meta::new()).expect("open");
    let static_db: Box<dyn Db> = Box::new(memdb::open(&Meta::new()).expect("open"));
    let keys: Vec<Vec<u8>> = (0..KEYS).map(|i| format!("m-1000-n-{i:08}").into_bytes()).collect();
    let value = vec![7u8; 256];

    let mut totals = [[Duration::ZERO; 3]; 2];
    for round in 0..ROUNDS {
        // Alternate which side goes first so drift on a noisy machine hits both equally.
        let order: [(usize, &dyn Db); 2] = if round % 2 == 0 {
            [(0, static_db.as_ref()), (1, plugin_db.as_ref())]
        } else {
            [(1, plugin_db.as_ref()), (0, static_db.as_ref())]
        };
        for (side, db) in order {
            let coll = db.open_collection(&format!("bench-{round}")).expect("collection");
            let times = workload(coll.as_ref(), &keys, &value);
            for (total, t) in totals[side].iter_mut().zip(times) {
                *total += t;
            }
        }
    }
    println!("memdb KV workload, {KEYS} keys x {ROUNDS} rounds (total time per operation kind)");
    println!("{:<6} {:>12} {:>12} {:>8}", "op", "static", "plugin", "ratio");
    let names = ["put", "get", "scan"];
    for (i, name) in names.iter().enumerate() {
        let (s, p) = (totals[0][i], totals[1][i]);
        println!("{name:<6} {:>10.2?} {:>10.2?} {:>7.3}x", s, p, p.as_secs_f64() / s.as_secs_f64());
    }
    let s: Duration = totals[0].iter().sum();
    let p: Duration = totals[1].iter().sum();
    println!("{:<6} {:>10.2?} {:>10.2?} {:>7.3}x (target <= 1.10x)", "all", s, p, p.as_secs_f64() / s.as_secs_f64());
}

fn workload(coll: &dyn KvStore, keys: &[Vec<u8>], value: &[u8]) -> [Duration; 3] {
    let start = Instant::now();
    for k in keys {
        coll.put(k, value).expect("put");
    }
    let put = start.elapsed();
    let start = Instant::now();
    for k in keys {
        black_box(coll.get(k).expect("get"));
    }
    let get = start.elapsed();
    let start = Instant::now();
    let mut it = coll.scan(b"m-1000-").expect("scan");
    let mut n = 0;
    while let Some(entry) = it.next_entry().expect("next") {
        black_box(entry);
        n += 1;
    }
    assert_eq!(n, keys.len());
    [put, get, start.elapsed()]
}
