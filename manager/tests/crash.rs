//! The crash suite: the real daemon under load from 8 concurrent JSON-RPC clients (allocate → report state three
//! times → finalize), killed with SIGKILL at random moments, on RocksDB and on a private append-only Redis
//! (`appendfsync always`), with the statelog SyncSectorState plugin installed. After every restart:
//!
//! - every acknowledged change is present (state at least as new as the last acknowledged one; acknowledged
//!   finalizations finalized);
//! - no sector number was handed out twice, across all rounds;
//! - every acknowledged change reached statelog at least once, in per-sector order;
//! - no change answered with a failure appears: each client sends a late `ReportAborted` for every sector it saw
//!   finalized (refused with 11001, inside the same commit groups as the others' changes on RocksDB), and its
//!   abort reason is never stored nor journaled.
//!
//! The normal run kills each daemon `DAMOCLES_CRASH_KILLS` times (default 3). The long variant:
//! `DAMOCLES_CRASH_KILLS=20 cargo test -p manager --test crash -- --nocapture`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::daemon::{RunningDaemon, TestHome};
use common::private_redis::PrivateRedis;
use jsonrpsee::core::client::ClientT;
use jsonrpsee::http_client::HttpClient;
use jsonrpsee::rpc_params;
use serde_json::{Value, json};

const CLIENTS: usize = 8;
const STEPS: u64 = 3;

/// How many times each daemon is killed.
fn kills() -> usize {
    std::env::var("DAMOCLES_CRASH_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(3)
}

/// What the clients were told succeeded.
#[derive(Default)]
struct Ledger {
    /// Every allocation acknowledged, in all rounds (a number twice here is a number handed out twice).
    allocated: Vec<u64>,
    /// The last acknowledged `ReportState` step of each sector.
    steps: BTreeMap<u64, u64>,
    /// Sectors whose `ReportFinalized` was acknowledged.
    finalized: BTreeSet<u64>,
    /// Sectors whose late `ReportAborted` was answered with a refusal (its reason must never appear).
    refused: BTreeSet<u64>,
}

/// Figures of one crash scenario.
#[derive(Debug, Default)]
struct Figures {
    kills: usize,
    operations: u64,
    lost: usize,
}

fn report(step: u64) -> Value {
    let next = format!("S{step}");
    json!({"Worker": {"Instance": "crash", "Location": "/crash"}, "StateChange": {"Prev": "", "Next": next, "Event": "Go"}, "Failure": null})
}

fn sid(number: u64) -> Value {
    json!({"Miner": 1000, "Number": number})
}

/// One client: sectors through their life until `stop`, recording what was acknowledged.
async fn client(client: HttpClient, ledger: Arc<Mutex<Ledger>>, stop: Arc<AtomicBool>, ops: Arc<AtomicU64>) {
    let spec = json!({"AllowedMiners": [], "AllowedProofTypes": []});
    'sectors: while !stop.load(Ordering::Relaxed) {
        let Ok(allocated) = client.request::<Value, _>("Venus.AllocateSector", rpc_params![spec.clone()]).await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let Some(number) = allocated["ID"]["Number"].as_u64() else { panic!("AllocateSector answered {allocated}") };
        ops.fetch_add(1, Ordering::Relaxed);
        ledger.lock().expect("ledger").allocated.push(number);
        for step in 1..=STEPS {
            if client.request::<Value, _>("Venus.ReportState", rpc_params![sid(number), report(step)]).await.is_err() {
                continue 'sectors;
            }
            ops.fetch_add(1, Ordering::Relaxed);
            ledger.lock().expect("ledger").steps.insert(number, step);
        }
        if client.request::<Value, _>("Venus.ReportFinalized", rpc_params![sid(number)]).await.is_err() {
            continue;
        }
        ops.fetch_add(1, Ordering::Relaxed);
        ledger.lock().expect("ledger").finalized.insert(number);
        // A late abort of a finalized sector is refused (11001); only an answered refusal is recorded.
        let late = client.request::<Value, _>("Venus.ReportAborted", rpc_params![sid(number), refused_reason(number)]);
        match late.await {
            Err(jsonrpsee::core::ClientError::Call(e)) if e.code() == 11001 => {
                ops.fetch_add(1, Ordering::Relaxed);
                ledger.lock().expect("ledger").refused.insert(number);
            }
            Ok(answer) => panic!("a late ReportAborted of finalized sector {number} was accepted: {answer}"),
            Err(_) => {}
        }
    }
}

/// The abort reason of sector `number`'s refused late `ReportAborted`.
fn refused_reason(number: u64) -> String {
    format!("refused-{number}")
}

/// The step a stored sector state is at (`S<k>` of its last report; 0 without one).
fn stored_step(sector: &Value) -> u64 {
    sector["LatestState"]["StateChange"]["Next"]
        .as_str()
        .and_then(|s| s.strip_prefix('S'))
        .and_then(|k| k.parse().ok())
        .unwrap_or(0)
}

/// Checks every acknowledged change against the restarted daemon; returns how many were lost (and prints them).
async fn lost_changes(daemon: &RunningDaemon, ledger: &Ledger) -> usize {
    let client = daemon.client();
    let mut lost = 0;
    let mut seen = BTreeSet::new();
    for &number in &ledger.allocated {
        if !seen.insert(number) {
            eprintln!("sector {number} was handed out twice");
            lost += 1;
        }
        // An unknown sector is error 11001, as in Go.
        let sector: Value = match client.request("Venus.FindSectorInAllStates", rpc_params![sid(number)]).await {
            Ok(sector) => sector,
            Err(jsonrpsee::core::ClientError::Call(e)) if e.code() == 11001 => Value::Null,
            Err(e) => panic!("find sector {number}: {e}"),
        };
        if sector.is_null() {
            eprintln!("acknowledged allocation of sector {number} is gone");
            lost += 1;
            continue;
        }
        let acked = ledger.steps.get(&number).copied().unwrap_or(0);
        if stored_step(&sector) < acked {
            eprintln!("sector {number}: acknowledged step {acked}, stored {}", stored_step(&sector));
            lost += 1;
        }
        if ledger.finalized.contains(&number) && sector["Finalized"] != true {
            eprintln!("sector {number}: acknowledged finalization is missing");
            lost += 1;
        }
        if ledger.refused.contains(&number) && sector["AbortReason"] == refused_reason(number).as_str() {
            eprintln!("sector {number}: a ReportAborted answered with a refusal was stored");
            lost += 1;
        }
    }
    lost
}

/// What statelog journaled per sector: its events in file order, as `I` (init), `S<k>` (update), `F` (finalize).
fn journal(home: &TestHome) -> BTreeMap<u64, Vec<String>> {
    let text = std::fs::read_to_string(home.plugins_dir().join("statelog.jsonl")).unwrap_or_default();
    let mut per_sector: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        let Ok(entry) = serde_json::from_str::<Value>(line) else { continue };
        let mark = match entry["event"].as_str() {
            Some("OnInit") => "I".to_string(),
            Some("OnUpdate") => format!("S{}", stored_step(&entry["data"]["State"])),
            Some("OnFinalize") => "F".to_string(),
            _ => continue,
        };
        for sector in entry["sectors"].as_array().into_iter().flatten() {
            if let Some(number) = sector["Number"].as_u64() {
                per_sector.entry(number).or_default().push(mark.clone());
            }
        }
    }
    per_sector
}

/// The sectors whose refused abort reason (`refused-<number>`) appears anywhere in statelog's journal, found in
/// one pass over it (the journal grows to megabytes in the long variant).
fn journaled_refusals(home: &TestHome) -> BTreeSet<u64> {
    let text = std::fs::read_to_string(home.plugins_dir().join("statelog.jsonl")).unwrap_or_default();
    text.split("\"refused-")
        .skip(1)
        .filter_map(|rest| rest.split('"').next().and_then(|digits| digits.parse().ok()))
        .collect()
}

/// The acknowledged changes statelog has not journaled (in per-sector order, first occurrences), and the refused
/// changes it journaled, as messages.
fn undelivered(home: &TestHome, ledger: &Ledger) -> Vec<String> {
    let journal = journal(home);
    let journaled_refusals = journaled_refusals(home);
    let mut missing: Vec<String> = ledger
        .refused
        .intersection(&journaled_refusals)
        .map(|number| format!("sector {number}: a ReportAborted answered with a refusal was journaled"))
        .collect();
    for &number in &ledger.allocated {
        let mut expected = vec!["I".to_string()];
        expected.extend((1..=ledger.steps.get(&number).copied().unwrap_or(0)).map(|k| format!("S{k}")));
        if ledger.finalized.contains(&number) {
            expected.push("F".to_string());
        }
        let got = journal.get(&number).cloned().unwrap_or_default();
        let positions: Vec<Option<usize>> = expected.iter().map(|mark| got.iter().position(|g| g == mark)).collect();
        let in_order = positions.windows(2).all(|w| matches!(w, [Some(a), Some(b)] if a < b));
        if positions.iter().any(Option::is_none) || !in_order {
            missing.push(format!("sector {number}: expected {expected:?} in order, journaled {got:?}"));
        }
    }
    missing
}

/// Runs the clients against `home`'s daemon, kills it `kills()` times at random moments, and checks everything
/// after every restart. `setup` edits the home before the first start.
async fn crash_rounds(name: &str, home: &TestHome) -> Figures {
    home.install_plugins(&["statelog"]);
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let ops = Arc::new(AtomicU64::new(0));
    let mut figures = Figures::default();
    let mut daemon = home.start();
    for round in 0..kills() {
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| tokio::spawn(client(daemon.client(), Arc::clone(&ledger), Arc::clone(&stop), Arc::clone(&ops))))
            .collect();
        // Kill at a random moment while the clients are busy.
        let delay = Duration::from_millis(300 + rand::random::<u64>() % 1200);
        tokio::time::sleep(delay).await;
        daemon.kill();
        figures.kills += 1;
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            c.await.expect("client task");
        }
        daemon = home.start();
        let snapshot = {
            let ledger = ledger.lock().expect("ledger");
            Ledger {
                allocated: ledger.allocated.clone(),
                steps: ledger.steps.clone(),
                finalized: ledger.finalized.clone(),
                refused: ledger.refused.clone(),
            }
        };
        let lost = lost_changes(&daemon, &snapshot).await;
        let deadline = Instant::now() + Duration::from_secs(60);
        let missing = loop {
            let missing = undelivered(home, &snapshot);
            if missing.is_empty() || Instant::now() > deadline {
                break missing;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        for m in &missing {
            eprintln!("{name} round {round}: not delivered (or a refusal delivered): {m}");
        }
        figures.lost += lost + missing.len();
        assert_eq!(lost, 0, "{name} round {round}: acknowledged changes lost (see stderr)");
        assert!(missing.is_empty(), "{name} round {round}: acknowledged changes never reached statelog");
    }
    assert_eq!(daemon.stop(), Some(0));
    figures.operations = ops.load(Ordering::Relaxed);
    let (sectors, refused) = {
        let ledger = ledger.lock().expect("ledger");
        (ledger.allocated.len(), ledger.refused.len())
    };
    eprintln!(
        "crash suite {name}: {} kills, {} answered operations on {sectors} sectors ({refused} refusals), {} lost",
        figures.kills, figures.operations, figures.lost
    );
    assert!(sectors > 0, "the clients never got an allocation through");
    assert!(refused > 0, "no refusal was ever answered: the clients never tested that refused changes stay out");
    figures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_under_load_on_rocksdb_loses_nothing() {
    let home = TestHome::init();
    let figures = crash_rounds("rocksdb", &home).await;
    assert_eq!((figures.kills, figures.lost), (kills(), 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_under_load_on_append_only_redis_loses_nothing() {
    let redis = PrivateRedis::start(&["--appendonly", "yes", "--appendfsync", "always"]);
    let home = TestHome::init();
    home.set_config("Common.DB.Driver", "redis");
    home.set_config("Common.DB.Redis.Addr", redis.url());
    home.set_config("Common.DB.Redis.Prefix", "crash");
    let figures = crash_rounds("redis", &home).await;
    assert_eq!((figures.kills, figures.lost), (kills(), 0));
}
