//! `/metrics` of the real daemon: scraped over HTTP after real calls, parsed with a Prometheus text parser, and
//! every counter checked to move by exactly the calls made; the token guards it; random method names do not
//! grow the registry; `[API] MetricsListen` serves it alone, without the token.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::daemon::{RunningDaemon, TestHome, raw_http};
use common::wrapped_db::{Forwarded, Forwarding, WrappedDb};
use jsonrpsee::rpc_params;
use manager::filestore::StoreManager;
use manager::kvstore::RocksDb;
use manager::metrics::MetricsExporter;
use manager::plugins::PluginRegistry;
use manager::sectors::StateManager;
use manager_plugin::Kind;
use manager_plugin::filestore::StoreConfig;
use manager_plugin::kv::{Db, KvError, KvStore, TxnFn};
use manager_plugin::sector::{SectorId, SectorUpdate};
use prometheus_parse::{Sample, Scrape, Value};
use serde_json::{Value as Json, json};

/// A parsed scrape.
struct Metrics(Scrape);

impl Metrics {
    /// `GET /metrics` on `port` with `token`, parsed; panics unless it is a 200 in the text format.
    fn scrape(port: u16, token: Option<&str>) -> Metrics {
        let response = raw_http(port, "GET", "/metrics", token, b"").expect("GET /metrics");
        let text = String::from_utf8(response.body).expect("UTF-8 text");
        assert_eq!(response.status, 200, "{text}");
        Metrics::parse(&text)
    }

    fn parse(text: &str) -> Metrics {
        let scrape = Scrape::parse(text.lines().map(|line| Ok(line.to_string()))).expect("Prometheus text");
        assert!(!scrape.samples.is_empty(), "no samples in:\n{text}");
        Metrics(scrape)
    }

    fn of(daemon: &RunningDaemon) -> Metrics {
        Metrics::scrape(daemon.port, Some(&daemon.token))
    }

    fn samples<'a>(&'a self, metric: &'a str, labels: &'a [(&'a str, &'a str)]) -> impl Iterator<Item = &'a Sample> {
        self.0.samples.iter().filter(move |s| {
            s.metric == metric && labels.iter().all(|(name, value)| s.labels.get(name) == Some(*value))
        })
    }

    /// The value of the one series of `metric` with `labels` (0 when absent: counters start at 0).
    fn value(&self, metric: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<f64> = self
            .samples(metric, labels)
            .map(|s| match &s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
                other => panic!("{metric} is not a number: {other:?}"),
            })
            .collect();
        assert!(found.len() <= 1, "{metric} {labels:?} matches {} series", found.len());
        found.first().copied().unwrap_or(0.0)
    }

    /// The sum of every series of `metric` with `labels`.
    fn sum(&self, metric: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples(metric, labels)
            .map(|s| match &s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
                other => panic!("{metric} is not a number: {other:?}"),
            })
            .sum()
    }

    /// Every value of `label` among the series of `metric`.
    fn label_values(&self, metric: &str, label: &str) -> Vec<String> {
        let mut values: Vec<String> =
            self.samples(metric, &[]).filter_map(|s| s.labels.get(label).map(str::to_string)).collect();
        values.sort();
        values.dedup();
        values
    }

    fn has_help(&self, metric: &str) -> bool {
        self.0.docs.contains_key(metric)
    }
}

fn sid(number: u64) -> Json {
    json!({"Miner": 1000, "Number": number})
}

fn report(next: &str) -> Json {
    json!({"Worker": {"Instance": "w1", "Location": "/sealing/1"}, "StateChange": {"Prev": "Empty", "Next": next, "Event": "Go"}, "Failure": null})
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn post(daemon: &RunningDaemon, body: &str) -> u16 {
    raw_http(daemon.port, "POST", "/rpc/v0", Some(&daemon.token), body.as_bytes()).expect("POST").status
}

#[tokio::test(flavor = "multi_thread")]
async fn every_counter_moves_by_exactly_the_calls_made() {
    let home = TestHome::init();
    home.install_plugins(&["counter", "statelog"]);
    let daemon = home.start();
    let before = Metrics::of(&daemon);

    // RPC: one allocation, one state report that succeeds and one that fails, two plugin calls, one batch of two.
    let spec = json!({"AllowedMiners": [1000], "AllowedProofTypes": []});
    let allocated: Json = daemon.call("Venus.AllocateSector", rpc_params![spec]).await.unwrap();
    let number = allocated["ID"]["Number"].as_u64().unwrap();
    let _: Json = daemon.call("Venus.ReportState", rpc_params![sid(number), report("PC1Done")]).await.unwrap();
    daemon.call::<Json>("Venus.ReportState", rpc_params![sid(987_654), report("X")]).await.unwrap_err();
    let _: i64 = daemon.call("AtomicCounter.Incr", rpc_params!["jobs"]).await.unwrap();
    let _: i64 = daemon.call("AtomicCounter.Incr", rpc_params!["jobs"]).await.unwrap();
    let batch = r#"[{"jsonrpc":"2.0","id":1,"method":"Venus.Version","params":[]},
                    {"jsonrpc":"2.0","id":2,"method":"Venus.Version","params":[]}]"#;
    assert_eq!(post(&daemon, batch), 200);

    // Pieces: 300,001 bytes up, the same down.
    let piece: Vec<u8> = (0..300_001u32).map(|i| (i % 251) as u8).collect();
    let put = raw_http(daemon.port, "PUT", "/piecestore/metrics-piece", Some(&daemon.token), &piece).unwrap();
    assert_eq!(put.status, 200, "{}", String::from_utf8_lossy(&put.body));
    let got = raw_http(daemon.port, "GET", "/piecestore/metrics-piece", Some(&daemon.token), b"").unwrap();
    assert_eq!((got.status, got.body.len()), (200, piece.len()));

    // The two sector events reach statelog (allocation and state change), and its backlog drains.
    let hooks = [("plugin", "statelog"), ("kind", "SyncSectorState")];
    wait_for("statelog's two deliveries", || {
        let now = Metrics::of(&daemon);
        now.sum("damocles_plugin_call_duration_seconds_count", &hooks)
            - before.sum("damocles_plugin_call_duration_seconds_count", &hooks)
            == 2.0
            && now.value("damocles_sync_plugin_pending_events", &[("plugin", "statelog")]) == 0.0
    });
    let after = Metrics::of(&daemon);
    let delta = |metric: &str, labels: &[(&str, &str)]| after.value(metric, labels) - before.value(metric, labels);

    let report_state = [("method", "Venus.ReportState")];
    assert_eq!(delta("damocles_rpc_calls_total", &report_state), 2.0);
    assert_eq!(delta("damocles_rpc_errors_total", &report_state), 1.0);
    assert_eq!(delta("damocles_rpc_call_duration_seconds_count", &report_state), 2.0);
    assert_eq!(delta("damocles_rpc_calls_total", &[("method", "Venus.AllocateSector")]), 1.0);
    assert_eq!(delta("damocles_rpc_errors_total", &[("method", "Venus.AllocateSector")]), 0.0);
    assert_eq!(delta("damocles_rpc_calls_total", &[("method", "Venus.Version")]), 2.0, "both calls of the batch");
    assert_eq!(delta("damocles_rpc_call_duration_seconds_count", &[("method", "Venus.Version")]), 2.0);
    assert_eq!(delta("damocles_rpc_calls_total", &[("method", "AtomicCounter.Incr")]), 2.0);

    let counter = [("plugin", "counter"), ("kind", "RegisterJsonRpc")];
    assert_eq!(delta("damocles_plugin_calls_total", &counter), 2.0, "the plugin's own counters, read at scrape time");
    assert_eq!(delta("damocles_plugin_errors_total", &counter), 0.0);
    assert_eq!(delta("damocles_plugin_panics_total", &counter), 0.0);
    assert_eq!(after.value("damocles_plugin_ready", &counter), 1.0);
    let handler = [("plugin", "counter"), ("kind", "RegisterJsonRpc"), ("ext_point", "Handler")];
    assert_eq!(delta("damocles_plugin_call_duration_seconds_count", &handler), 2.0);
    let delivered: f64 = ["OnInit", "OnUpdate"]
        .iter()
        .map(|hook| {
            delta("damocles_plugin_call_duration_seconds_count", &[("plugin", "statelog"), ("ext_point", hook)])
        })
        .sum();
    assert_eq!(delivered, 2.0, "the allocation (OnInit) and the state change (OnUpdate)");
    assert_eq!(after.value("damocles_sync_plugin_failing", &[("plugin", "statelog")]), 0.0);
    assert_eq!(after.value("damocles_sync_plugin_hung", &[("plugin", "statelog")]), 0.0);

    assert_eq!(delta("damocles_piece_received_bytes_total", &[]), piece.len() as f64);
    assert_eq!(delta("damocles_piece_sent_bytes_total", &[]), piece.len() as f64);
    assert_eq!(delta("damocles_kv_txn_conflicts_total", &[]), 0.0, "one client never conflicts with itself");
    assert_eq!(delta("damocles_kv_txn_retries_total", &[]), 0.0);

    for (store, kind) in [("pieces", "piece"), ("persist", "persist")] {
        let labels = [("store", store), ("kind", kind)];
        assert_eq!(after.value("damocles_store_available", &labels), 1.0, "{store}");
        let (total, free) =
            (after.value("damocles_store_capacity_bytes", &labels), after.value("damocles_store_free_bytes", &labels));
        assert!(total > 0.0 && free > 0.0 && free <= total, "{store}: total {total}, free {free}");
        assert_eq!(after.value("damocles_store_reserved_bytes", &labels), 0.0);
    }
    assert!(after.has_help("damocles_rpc_call_duration_seconds"), "HELP lines are present");
    assert_eq!(daemon.stop(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn random_method_names_collapse_into_one_series() {
    let home = TestHome::init();
    let daemon = home.start();
    let before = Metrics::of(&daemon);
    let methods_before = before.label_values("damocles_rpc_calls_total", "method");
    for i in 0..40 {
        let body = format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"Random{i}.Nope{}","params":[]}}"#, i * 7919);
        assert_eq!(post(&daemon, &body), 200);
    }
    let body = r#"[{"jsonrpc":"2.0","id":1,"method":"Venus.NoSuch1","params":[]},{"jsonrpc":"2.0","id":2,"method":"Venus.NoSuch2","params":[]}]"#;
    assert_eq!(post(&daemon, body), 200);
    let after = Metrics::of(&daemon);
    let other = [("method", "other")];
    assert_eq!(
        after.value("damocles_rpc_calls_total", &other) - before.value("damocles_rpc_calls_total", &other),
        42.0
    );
    assert_eq!(
        after.value("damocles_rpc_errors_total", &other) - before.value("damocles_rpc_errors_total", &other),
        42.0
    );
    let methods_after = after.label_values("damocles_rpc_calls_total", "method");
    let new: Vec<&String> = methods_after.iter().filter(|m| !methods_before.contains(m)).collect();
    assert!(new.iter().all(|m| *m == "other"), "new series: {new:?}");
    assert!(methods_after.iter().all(|m| !m.contains("Nope") && !m.contains("NoSuch")), "{methods_after:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_need_the_token_also_from_a_trusted_network() {
    let home = TestHome::init();
    home.set_config("API.TrustedNetworks", vec!["127.0.0.0/8".to_string()]);
    let daemon = home.start();
    let refused = raw_http(daemon.port, "GET", "/metrics", None, b"").unwrap();
    assert_eq!(refused.status, 401, "{}", String::from_utf8_lossy(&refused.body));
    assert_eq!(raw_http(daemon.port, "GET", "/metrics", Some("wrong"), b"").unwrap().status, 401);
    assert_eq!(raw_http(daemon.port, "POST", "/metrics", Some(&daemon.token), b"").unwrap().status, 405);
    Metrics::of(&daemon);
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_listen_serves_only_metrics_without_the_token() {
    let home = TestHome::init();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    home.set_config("API.MetricsListen", format!("127.0.0.1:{port}"));
    let daemon = home.start();
    let before = Metrics::scrape(port, None);
    let _: Json = daemon.call("Venus.Version", rpc_params![]).await.unwrap();
    let after = Metrics::scrape(port, None);
    let version = [("method", "Venus.Version")];
    assert_eq!(
        after.value("damocles_rpc_calls_total", &version) - before.value("damocles_rpc_calls_total", &version),
        1.0
    );
    assert_eq!(raw_http(port, "GET", "/rpc/v0", None, b"").unwrap().status, 404, "only /metrics there");
    assert_eq!(raw_http(port, "POST", "/metrics", None, b"").unwrap().status, 405);
    assert_eq!(raw_http(daemon.port, "GET", "/metrics", None, b"").unwrap().status, 401, "Listen still needs it");
    assert_eq!(daemon.stop(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_metrics_listen_address_in_use_stops_start_up_naming_the_key() {
    let home = TestHome::init();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    home.set_config("API.MetricsListen", taken.local_addr().unwrap().to_string());
    let out = std::process::Command::new(common::daemon::binary())
        .arg("--home")
        .arg(home.path())
        .args(["daemon", "run"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("[API] MetricsListen"), "{stderr}");
}

/// RocksDB where another writer rewrites `key` (same value) inside the next `races` write transactions, after
/// their body ran and before they commit: a real optimistic-transaction conflict each time.
struct RacedStore {
    inner: Box<dyn KvStore>,
    rival: Box<dyn KvStore>,
    key: Vec<u8>,
    races: Arc<AtomicUsize>,
}

impl Forwarding for RacedStore {
    fn inner(&self) -> &dyn KvStore {
        &*self.inner
    }
    fn update(&self, f: TxnFn<'_>) -> Result<(), KvError> {
        self.inner.update(&mut |txn| {
            f(txn)?;
            if self.races.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
                let value = self.rival.get(&self.key)?;
                self.rival.put(&self.key, &value)?;
            }
            Ok(())
        })
    }
}

#[test]
fn kv_conflicts_and_retries_count_each_lost_race() {
    let dir = tempfile::tempdir().unwrap();
    let races = Arc::new(AtomicUsize::new(0));
    let raced = Arc::clone(&races);
    let db = WrappedDb::new(Box::new(RocksDb::open(dir.path()).unwrap()), move |db, name, inner| {
        let rival = db.open_collection(name)?;
        Ok(Box::new(Forwarded(RacedStore {
            inner,
            rival,
            key: b"online/m-1000-n-1".to_vec(),
            races: Arc::clone(&raced),
        })) as Box<dyn KvStore>)
    });
    db.run().unwrap();
    let sectors = StateManager::open(Arc::new(db)).unwrap();
    sectors.allocate(1000, 8, 1).unwrap();
    let metrics = manager::metrics::global();
    let (conflicts, retries) = (metrics.kv_conflicts.get(), metrics.kv_retries.get());

    races.store(3, Ordering::SeqCst);
    sectors.update(SectorId { miner: 1000, number: 1 }, vec![SectorUpdate::Removed(true)]).unwrap();
    assert_eq!(races.load(Ordering::SeqCst), 0, "three attempts lost their race");
    assert_eq!(metrics.kv_conflicts.get() - conflicts, 3);
    assert_eq!(metrics.kv_retries.get() - retries, 3, "each conflict was retried; the fourth attempt committed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hung_store_shows_unavailable_and_never_holds_up_a_scrape() {
    let home = TestHome::init();
    home.install_plugins(&["hung-store"]);
    let path = home.path().join("hung").display().to_string();
    home.edit_config(|doc| {
        let common = doc.get_mut("Common").and_then(|c| c.as_table_mut()).expect("[Common]");
        let stores = common.get_mut("PersistStores").and_then(|s| s.as_array_mut()).expect("PersistStores");
        let mut store = toml::Table::new();
        store.insert("Name".into(), "hung".into());
        store.insert("Path".into(), path.into());
        store.insert("PluginName".into(), "hung-store".into());
        stores.push(toml::Value::Table(store));
    });
    let daemon = home.start();
    // Its first instance_info call is running and will never return: a scrape that waited for it would take
    // the rest of the 5 s capacity timeout.
    let started = Instant::now();
    let first = Metrics::of(&daemon);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "the scrape waited {took:?} for the hung store");
    let hung = [("store", "hung"), ("kind", "persist")];
    assert_eq!(first.value("damocles_store_available", &hung), 0.0);
    std::thread::sleep(Duration::from_secs(6));
    let later = Metrics::of(&daemon);
    assert_eq!(later.value("damocles_store_available", &hung), 0.0, "past the timeout it is unavailable");
    assert_eq!(later.value("damocles_store_capacity_bytes", &hung), 0.0);
    assert_eq!(later.value("damocles_store_available", &[("store", "persist"), ("kind", "persist")]), 1.0);
    let timed = [("plugin", "hung-store"), ("ext_point", "Store.instance_info")];
    assert_eq!(later.value("damocles_plugin_call_duration_seconds_count", &timed), 0.0, "the call never ended");
}

#[test]
fn a_plugin_panic_counts_once_as_a_call_an_error_and_a_panic() {
    let dir = common::plugins::plugins_dir(&["panicky-store"]);
    let registry = Arc::new(PluginRegistry::load(dir.path()).unwrap());
    let stores = Arc::new(StoreManager::open(Vec::new(), Vec::new(), &registry).unwrap());
    let exporter = MetricsExporter::new(Arc::clone(&registry), stores);
    let store_dir = tempfile::tempdir().unwrap();
    let config = StoreConfig { name: "p".into(), path: store_dir.path().display().to_string(), ..Default::default() };
    let store = registry.get(Kind::FileStore, "panicky-store").unwrap().open_store(config).unwrap();

    let before = Metrics::parse(&exporter.render().unwrap());
    store.put("x", &mut &b"data"[..]).unwrap_err();
    let after = Metrics::parse(&exporter.render().unwrap());
    let delta = |metric: &str, labels: &[(&str, &str)]| after.value(metric, labels) - before.value(metric, labels);
    let plugin = [("plugin", "panicky-store"), ("kind", "FileStore")];
    assert_eq!(delta("damocles_plugin_calls_total", &plugin), 1.0);
    assert_eq!(delta("damocles_plugin_errors_total", &plugin), 1.0);
    assert_eq!(delta("damocles_plugin_panics_total", &plugin), 1.0);
    assert_eq!(after.value("damocles_plugin_ready", &plugin), 1.0, "a caught panic leaves a FileStore plugin ready");
    let put = [("plugin", "panicky-store"), ("kind", "FileStore"), ("ext_point", "Store.put")];
    assert_eq!(delta("damocles_plugin_call_duration_seconds_count", &put), 1.0);
    registry.shutdown();
}
