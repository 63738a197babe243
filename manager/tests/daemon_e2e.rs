//! End to end: the `damocles-manager` binary on a temp home, spoken to over JSON-RPC/HTTP like a worker would.

mod common;

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::daemon::{RunningDaemon, TestHome, raw_http, read_head};
use jsonrpsee::core::ClientError;
use jsonrpsee::rpc_params;
use serde_json::{Value, json};

fn sid(number: u64) -> Value {
    json!({"Miner": 1000, "Number": number})
}

fn error_code(err: ClientError) -> (i32, String) {
    match err {
        ClientError::Call(obj) => (obj.code(), obj.message().to_string()),
        other => panic!("expected a JSON-RPC error, got {other}"),
    }
}

fn report(next: &str) -> Value {
    json!({"Worker": {"Instance": "w1", "Location": "/sealing/1"}, "StateChange": {"Prev": "Empty", "Next": next, "Event": "Go"}, "Failure": null})
}

/// allocate → report state → finalize → list offline → restore; import with and without override; errors.
async fn sector_lifecycle(daemon: &RunningDaemon) {
    let spec = json!({"AllowedMiners": [1000], "AllowedProofTypes": []});
    let allocated: Value = daemon.call("Venus.AllocateSector", rpc_params![spec.clone()]).await.unwrap();
    assert_eq!(allocated["ID"]["Miner"], 1000);
    let number = allocated["ID"]["Number"].as_u64().unwrap();
    assert_eq!(allocated["ProofType"], 8);

    let resp: Value = daemon.call("Venus.ReportState", rpc_params![sid(number), report("PC1Done")]).await.unwrap();
    assert_eq!(resp, json!({"Id": sid(number), "Finalized": false, "AbortReason": ""}), "Go's SectorStateResp");
    let online: Vec<Value> = daemon.call("Venus.ListSectors", rpc_params!["online", 0]).await.unwrap();
    let found = online.iter().find(|s| s["ID"]["Number"] == number).expect("sector listed online");
    assert_eq!(found["LatestState"]["StateChange"]["Next"], "PC1Done");

    let finalized: Value = daemon.call("Venus.ReportFinalized", rpc_params![sid(number)]).await.unwrap();
    assert!(finalized.is_null(), "Go answers a nil core.Meta: {finalized}");
    let after: Value = daemon.call("Venus.ReportState", rpc_params![sid(number), report("Late")]).await.unwrap();
    assert_eq!(after["Finalized"], true, "a finalized sector is answered, not refused: {after}");
    let offline: Vec<Value> = daemon.call("Venus.ListSectors", rpc_params!["offline", 0]).await.unwrap();
    let finalized = offline.iter().find(|s| s["ID"]["Number"] == number).expect("listed offline");
    assert_eq!(finalized["Finalized"], true);
    let gone = daemon.call::<Value>("Venus.FindSector", rpc_params!["online", sid(number)]).await.unwrap_err();
    assert_eq!(error_code(gone).0, 11001, "Go answers an error for a sector not found (state_mgr.go Load)");

    // A sector that finished normally is restored only when forced.
    let err = daemon.call::<Value>("Venus.RestoreSector", rpc_params![sid(number), false]).await.unwrap_err();
    assert!(error_code(err).1.contains("forced"));
    let _: Value = daemon.call("Venus.RestoreSector", rpc_params![sid(number), true]).await.unwrap();
    let restored: Option<Value> = daemon.call("Venus.FindSector", rpc_params!["online", sid(number)]).await.unwrap();
    assert_eq!(restored.expect("restored online")["Finalized"], false);

    // Import: refused without override when it exists, accepted with it.
    let imported = json!({"ID": sid(900_000), "SectorType": 8, "Finalized": true});
    let ok: bool = daemon.call("Venus.ImportSector", rpc_params!["offline", imported.clone(), false]).await.unwrap();
    assert!(ok);
    let again: bool = daemon.call("Venus.ImportSector", rpc_params!["offline", imported.clone(), false]).await.unwrap();
    assert!(!again, "an existing sector is not overwritten without override");
    let forced: bool = daemon.call("Venus.ImportSector", rpc_params!["offline", imported, true]).await.unwrap();
    assert!(forced);
    let any: Value = daemon.call("Venus.FindSectorInAllStates", rpc_params![sid(900_000)]).await.unwrap();
    assert_eq!(any["Imported"], false, "kept as given, as Go (sealer_cli.go:470-481)");
    let err = daemon.call::<Value>("Venus.FindSectorInAllStates", rpc_params![sid(900_001)]).await.unwrap_err();
    assert_eq!(error_code(err).0, 11001);

    // Stores: reserve space for the sector (idempotent), look it up, release it.
    let reserved: Option<Value> =
        daemon.call("Venus.StoreReserveSpace", rpc_params![sid(number), 1024, Vec::<String>::new()]).await.unwrap();
    let reserved = reserved.expect("the default persist store has room");
    assert_eq!(reserved["Name"], "persist");
    let again: Option<Value> =
        daemon.call("Venus.StoreReserveSpace", rpc_params![sid(number), 1024, vec!["persist"]]).await.unwrap();
    assert_eq!(again.expect("same store")["Name"], "persist");
    let info: Option<Value> = daemon.call("Venus.StoreBasicInfo", rpc_params!["persist"]).await.unwrap();
    assert_eq!(info.expect("known store")["Name"], "persist");
    let released: bool = daemon.call("Venus.StoreReleaseReserved", rpc_params![sid(number)]).await.unwrap();
    assert!(released);
    let _: Value =
        daemon.call("Venus.WorkerPing", rpc_params![json!({"Name": "w1", "Dest": "10.0.0.7:17890"})]).await.unwrap();
    let workers: Vec<Value> = daemon.call("Venus.WorkerPingInfoList", rpc_params![]).await.unwrap();
    assert_eq!(workers.len(), 1);
    assert_eq!(workers[0]["Info"]["Name"], "w1");
    let version: String = daemon.call("Venus.Version", rpc_params![]).await.unwrap();
    assert!(version.starts_with("damocles-rs/"), "{version}");

    // A sector that does not exist: 11001. Bad params: invalid params naming the parameter.
    let err = daemon.call::<Value>("Venus.ReportState", rpc_params![sid(777_777), report("X")]).await.unwrap_err();
    assert_eq!(error_code(err).0, 11001);
    let err = daemon.call::<Value>("Venus.ReportState", rpc_params!["not a sector id", report("X")]).await.unwrap_err();
    let (code, message) = error_code(err);
    assert_eq!(code, -32602);
    assert!(message.contains("`sid`"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_drives_a_sector_through_its_life_on_rocksdb() {
    let home = TestHome::init();
    let daemon = home.start();
    sector_lifecycle(&daemon).await;
    assert_eq!(daemon.stop(), Some(0), "SIGTERM exits 0");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_drives_a_sector_through_its_life_on_redis() {
    let home = TestHome::init();
    let prefix = format!("damocles-e2e-{}-{}", std::process::id(), home.port);
    home.set_config("Common.DB.Driver", "redis");
    home.set_config("Common.DB.Redis.Addr", "redis://127.0.0.1:6379");
    home.set_config("Common.DB.Redis.Prefix", prefix);
    let daemon = home.start();
    sector_lifecycle(&daemon).await;
    assert_eq!(daemon.stop(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_drives_a_sector_through_its_life_on_the_memdb_plugin() {
    let home = TestHome::init();
    home.install_plugins(&["memdb"]);
    home.set_config("Common.DB.Driver", "plugin");
    home.set_config("Common.DB.Plugin.PluginName", "memdb");
    let daemon = home.start();
    sector_lifecycle(&daemon).await;
    assert!(daemon.log().contains("loaded plugin 'KVStore/memdb', build time: '"), "{}", daemon.log());
    assert_eq!(daemon.stop(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_kvstore_plugin_stops_start_up_with_a_message_naming_it() {
    let home = TestHome::init();
    home.set_config("Common.DB.Driver", "plugin");
    home.set_config("Common.DB.Plugin.PluginName", "nosuchdb");
    let out = std::process::Command::new(common::daemon::binary())
        .arg("--home")
        .arg(home.path())
        .args(["daemon", "run"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no KVStore plugin named 'nosuchdb' was loaded"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_keeps_every_acknowledged_change_and_never_reuses_a_sector_number() {
    let home = TestHome::init();
    let daemon = home.start();
    let spec = json!({"AllowedMiners": [], "AllowedProofTypes": []});
    let first: Vec<Value> = daemon.call("Venus.AllocateSectorsBatch", rpc_params![spec.clone(), 3]).await.unwrap();
    let last_number = first.iter().map(|s| s["ID"]["Number"].as_u64().unwrap()).max().unwrap();
    let _: Value = daemon.call("Venus.ReportState", rpc_params![sid(last_number), report("Acked")]).await.unwrap();
    daemon.kill();

    let daemon = home.start();
    let sector: Option<Value> = daemon.call("Venus.FindSector", rpc_params!["online", sid(last_number)]).await.unwrap();
    assert_eq!(sector.expect("survived")["LatestState"]["StateChange"]["Next"], "Acked");
    let next: Value = daemon.call("Venus.AllocateSector", rpc_params![spec]).await.unwrap();
    assert!(next["ID"]["Number"].as_u64().unwrap() > last_number, "numbers are never reused: {next}");
    assert_eq!(daemon.stop(), Some(0));
}

/// Go-shaped sector states (`manager-plugin/tests/data/go-sector-states.json`; each field's source in Go's
/// `core/types_sector_state.go` and `core/types.go` is noted in `manager-plugin/src/sector/tests.rs`).
fn go_states() -> Value {
    serde_json::from_str(include_str!("../../manager-plugin/tests/data/go-sector-states.json")).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn go_sector_states_import_and_read_back_unchanged() {
    let home = TestHome::init();
    home.install_plugins(&["statelog"]);
    let daemon = home.start();
    let states = go_states();
    for (name, ws) in [("cc", "online"), ("full", "offline"), ("imported", "offline")] {
        let state = &states[name];
        let ok: bool = daemon.call("Venus.ImportSector", rpc_params![ws, state.clone(), false]).await.unwrap();
        assert!(ok, "{name}");
        let found: Value = daemon.call("Venus.FindSector", rpc_params![ws, state["ID"].clone()]).await.unwrap();
        assert_eq!(&found, state, "{name}: FindSector answers the imported JSON value");
        let any: Value = daemon.call("Venus.FindSectorInAllStates", rpc_params![state["ID"].clone()]).await.unwrap();
        assert_eq!(&any, state, "{name}");
        let listed: Vec<Value> = daemon.call("Venus.ListSectors", rpc_params![ws, 0]).await.unwrap();
        assert!(listed.contains(state), "{name}: ListSectors answers it unchanged");
    }
    // SyncSectorState plugins receive the same shape.
    wait_for("three import events", || statelog_events(&home).len() >= 3);
    for (event, name) in statelog_events(&home).iter().zip(["cc", "full", "imported"]) {
        assert_eq!(event["event"], "OnImport");
        assert_eq!(event["data"]["State"], states[name], "{name}: the plugin gets Go's JSON");
    }
    assert_eq!(daemon.stop(), Some(0));
}

fn statelog_events(home: &TestHome) -> Vec<Value> {
    let text = std::fs::read_to_string(home.plugins_dir().join("statelog.jsonl")).unwrap_or_default();
    text.lines().map(|l| serde_json::from_str(l).expect("json line")).collect()
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn statelog_receives_every_event_in_order_through_failures_and_restarts() {
    let home = TestHome::init();
    home.install_plugins(&["statelog"]);
    let daemon = home.start();
    let spec = json!({"AllowedMiners": [], "AllowedProofTypes": []});
    let a: Value = daemon.call("Venus.AllocateSector", rpc_params![spec.clone()]).await.unwrap();
    let n = a["ID"]["Number"].as_u64().unwrap();
    let _: Value = daemon.call("Venus.ReportState", rpc_params![sid(n), report("S1")]).await.unwrap();
    wait_for("the first two events", || statelog_events(&home).len() >= 2);

    // Break the plugin: its log file becomes a directory, so every append fails.
    let log = home.plugins_dir().join("statelog.jsonl");
    std::fs::rename(&log, home.plugins_dir().join("statelog.before")).unwrap();
    std::fs::create_dir(&log).unwrap();
    let _: Value = daemon.call("Venus.ReportState", rpc_params![sid(n), report("S2")]).await.unwrap();
    let _: Value = daemon.call("Venus.ReportState", rpc_params![sid(n), report("S3")]).await.unwrap();
    // State changes are not held up by the failing plugin, and its lag shows in Plugins.List.
    wait_for("lag reported", || {
        let rt = tokio::runtime::Handle::current();
        let plugins: Vec<Value> =
            tokio::task::block_in_place(|| rt.block_on(daemon.call("Plugins.List", rpc_params![]))).unwrap();
        let statelog = plugins.iter().find(|p| p["Name"] == "statelog").cloned().unwrap_or_default();
        statelog["SyncLag"]["Pending"].as_u64().unwrap_or(0) >= 2 && statelog["SyncLag"]["LastError"].is_string()
    });
    assert_eq!(daemon.stop(), Some(0));

    // Restart while still broken, then repair: everything arrives, in order.
    let daemon = home.start();
    let _: Value = daemon.call("Venus.ReportFinalized", rpc_params![sid(n)]).await.unwrap();
    std::fs::remove_dir(&log).unwrap();
    std::fs::rename(home.plugins_dir().join("statelog.before"), &log).unwrap();
    wait_for("all five events", || statelog_events(&home).len() >= 5);
    let events = statelog_events(&home);
    let kinds: Vec<&str> = events.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["OnInit", "OnUpdate", "OnUpdate", "OnUpdate", "OnFinalize"], "{events:#?}");
    let nexts: Vec<&str> = events[1..4]
        .iter()
        .map(|e| e["data"]["Updates"][0]["LatestState"]["StateChange"]["Next"].as_str().unwrap())
        .collect();
    assert_eq!(nexts, ["S1", "S2", "S3"]);
    assert_eq!(daemon.stop(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_counter_plugin_answers_as_atomic_counter() {
    let home = TestHome::init();
    home.install_plugins(&["counter"]);
    let daemon = home.start();
    let one: i64 = daemon.call("AtomicCounter.Incr", rpc_params!["jobs"]).await.unwrap();
    let two: i64 = daemon.call("AtomicCounter.Incr", rpc_params!["jobs"]).await.unwrap();
    assert_eq!((one, two), (1, 2));
    let plugins: Vec<Value> = daemon.call("Plugins.List", rpc_params![]).await.unwrap();
    let counter = plugins.iter().find(|p| p["Name"] == "counter").unwrap();
    assert_eq!(counter["State"], "Ready");
    assert!(counter["Calls"].as_u64().unwrap() >= 2);
    assert_eq!(daemon.stop(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_without_the_token_get_401_and_run_nothing() {
    let home = TestHome::init();
    // `daemon init` trusts loopback for the worker methods; this test is about the token alone.
    home.set_config("API.TrustedNetworks", Vec::<String>::new());
    let daemon = home.start();
    let body = br#"{"jsonrpc":"2.0","id":1,"method":"Venus.AllocateSector","params":[{}]}"#;
    assert_eq!(raw_http(daemon.port, "POST", "/rpc/v0", None, body).unwrap().status, 401);
    assert_eq!(raw_http(daemon.port, "POST", "/rpc/v0", Some("wrong"), body).unwrap().status, 401);
    assert_eq!(raw_http(daemon.port, "GET", "/piecestore/x", None, b"").unwrap().status, 401);
    let online: Vec<Value> = daemon.call("Venus.ListSectors", rpc_params!["online", 0]).await.unwrap();
    assert!(online.is_empty(), "the refused AllocateSector did not run");
    assert_eq!(raw_http(daemon.port, "DELETE", "/piecestore/x", Some(&daemon.token), b"").unwrap().status, 405);
    assert_eq!(raw_http(daemon.port, "GET", "/piecestore/absent", Some(&daemon.token), b"").unwrap().status, 404);
    assert_eq!(daemon.stop(), Some(0));
}

/// A FileStore plugin that panics in `stat` while a piece is downloaded: the answer (HTTP 500) names `stat`, the
/// method that panicked, with the panic's text, not `get`; and the daemon keeps serving.
#[test]
fn a_plugin_panic_during_a_piece_download_names_the_store_method_that_panicked() {
    let home = TestHome::init();
    home.install_plugins(&["panicky-store"]);
    let root = home.path().join("panicky-pieces").display().to_string();
    home.edit_config(|doc| {
        let common = doc.get_mut("Common").and_then(|c| c.as_table_mut()).expect("[Common]");
        let mut store = toml::Table::new();
        store.insert("Name".into(), "panicky".into());
        store.insert("Path".into(), root.into());
        store.insert("PluginName".into(), "panicky-store".into());
        common.insert("PieceStores".into(), toml::Value::Array(vec![toml::Value::Table(store)]));
    });
    let daemon = home.start();
    let answer = raw_http(daemon.port, "GET", "/piecestore/panic-in-stat-1", Some(&daemon.token), b"").unwrap();
    let body = String::from_utf8_lossy(&answer.body);
    assert_eq!(answer.status, 500, "{body}");
    assert_eq!(
        body.trim(),
        "store \"panicky\": stat \"panic-in-stat-1\": plugin panicked: panicky-store: told to panic in stat"
    );
    assert_eq!(raw_http(daemon.port, "GET", "/piecestore/absent", Some(&daemon.token), b"").unwrap().status, 404);
    assert_eq!(daemon.stop(), Some(0));
}

/// A deterministic byte pattern, so the download can be checked without keeping the upload.
fn pattern(offset: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        let x = offset + i as u64;
        *b = (x ^ (x >> 11) ^ (x >> 23)) as u8;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_piece_larger_than_1_gib_streams_in_and_out_with_flat_memory() {
    const SIZE: u64 = (1 << 30) + 12_345;
    let home = TestHome::init();
    let daemon = home.start();
    let port = daemon.port;
    let token = daemon.token.clone();

    let upload = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let head = format!(
            "PUT /piecestore/big.car HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: {SIZE}\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut sent = 0u64;
        while sent < SIZE {
            let n = (SIZE - sent).min(buf.len() as u64) as usize;
            pattern(sent, &mut buf[..n]);
            stream.write_all(&buf[..n]).unwrap();
            sent += n as u64;
        }
        let mut reader = BufReader::new(stream);
        read_head(&mut reader).unwrap().0
    });
    assert_eq!(upload.await.unwrap(), 200);

    let port = daemon.port;
    let token = daemon.token.clone();
    let download = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        // `big` falls back to `big.car`.
        let head = format!(
            "GET /piecestore/big HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).unwrap();
        let mut reader = BufReader::new(stream);
        let (status, length) = read_head(&mut reader).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut expected = vec![0u8; 1 << 20];
        let mut got = 0u64;
        loop {
            let n = reader.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            pattern(got, &mut expected[..n]);
            assert!(buf[..n] == expected[..n], "content differs near offset {got}");
            got += n as u64;
        }
        (status, length, got)
    });
    assert_eq!(download.await.unwrap(), (200, Some(SIZE), SIZE));
    let peak = daemon.peak_rss();
    eprintln!("daemon peak RSS after a {} MiB PUT and GET: {} MiB", SIZE >> 20, peak >> 20);
    assert!(peak < 256 << 20, "daemon peak RSS {} MiB for a {} MiB piece", peak >> 20, SIZE >> 20);
    assert_eq!(daemon.stop(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_cut_off_midway_stores_nothing() {
    let home = TestHome::init();
    let daemon = home.start();
    {
        let mut stream = TcpStream::connect(("127.0.0.1", daemon.port)).unwrap();
        let head = format!(
            "PUT /piecestore/cut.car HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: 10000000\r\n\r\n",
            daemon.token
        );
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(&vec![7u8; 3_000_000]).unwrap();
    } // connection dropped after 3 of 10 MB
    let get = || raw_http(daemon.port, "GET", "/piecestore/cut.car", Some(&daemon.token), b"").unwrap().status;
    // Give the daemon time to notice the disconnect, then the piece must still be absent.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(get(), 404);
    // fsstore's journal of uploads in progress (`.fsstore-uploads`) may remain, empty.
    let journal = home.path().join("pieces/.fsstore-uploads");
    let leftovers: Vec<_> = std::fs::read_dir(home.path().join("pieces"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|name| name != ".fsstore-uploads")
        .chain(std::fs::read_dir(&journal).into_iter().flatten().flatten().map(|e| e.file_name()))
        .collect();
    assert!(leftovers.is_empty(), "no partial or temporary file or journal entry remains: {leftovers:?}");
    assert_eq!(daemon.stop(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_util_commands_talk_to_the_running_daemon() {
    let home = TestHome::init();
    home.install_plugins(&["counter"]);
    let daemon = home.start();
    let spec = json!({"AllowedMiners": [], "AllowedProofTypes": []});
    let allocated: Value = daemon.call("Venus.AllocateSector", rpc_params![spec]).await.unwrap();
    let number = allocated["ID"]["Number"].as_u64().unwrap().to_string();
    let util = |args: &[&str]| {
        let out = std::process::Command::new(common::daemon::binary())
            .arg("--home")
            .arg(home.path())
            .arg("util")
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, plugins) = util(&["plugins", "list"]);
    assert!(
        ok && plugins.contains("RegisterJsonRpc") && plugins.contains("counter") && plugins.contains("Ready"),
        "{plugins}"
    );
    let (ok, online) = util(&["sectors", "list"]);
    assert!(ok && online.contains(&format!("\"Number\": {number}")), "{online}");
    let (ok, offline) = util(&["sectors", "list", "--offline"]);
    assert!(ok && offline.trim() == "[]", "{offline}");
    let (ok, found) = util(&["sectors", "find", "1000", &number]);
    assert!(ok && found.contains("\"SectorType\": 8"), "{found}");
    let (ok, missing) = util(&["sectors", "find", "1000", "999999"]);
    assert!(!ok && missing.contains("sector s-t01000-999999 not found"), "{missing}");
    let (ok, stores) = util(&["store", "list"]);
    assert!(ok && stores.contains("\"Name\": \"pieces\"") && stores.contains("\"Name\": \"persist\""), "{stores}");
    assert_eq!(daemon.stop(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_also_answers_over_websocket_with_the_token() {
    use jsonrpsee::core::client::ClientT;
    let home = TestHome::init();
    let daemon = home.start();
    let url = format!("ws://127.0.0.1:{}/rpc/v0", daemon.port);
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::AUTHORIZATION, format!("Bearer {}", daemon.token).parse().unwrap());
    let client = jsonrpsee::ws_client::WsClientBuilder::default().set_headers(headers).build(&url).await.unwrap();
    let version: String = client.request("Venus.Version", rpc_params![]).await.unwrap();
    assert!(version.starts_with("damocles-rs/"));
    let refused = jsonrpsee::ws_client::WsClientBuilder::default().build(&url).await;
    assert!(refused.is_err(), "a WebSocket upgrade without the token is refused");
    assert_eq!(daemon.stop(), Some(0));
}
