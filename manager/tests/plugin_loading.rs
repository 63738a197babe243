//! Real `.so` plugins, built by `plugin build` during the test run, loaded through the registry.

mod common;

use std::io::Read;

use common::plugins::{build_plugin, built, captured_logs, log_text, plugins_dir, workspace_root};
use manager::plugins::{LoadError, PluginRegistry};
use manager_plugin::filestore::StoreConfig;
use manager_plugin::kv::{KvError, Meta};
use manager_plugin::sector::{SectorId, SectorState, SectorUpdate, WorkerState};
use manager_plugin::sync::{SectorEvent, UpdateEvent};
use manager_plugin::{Kind, PluginState, StoreError};

fn load(dir: &std::path::Path) -> PluginRegistry {
    captured_logs();
    PluginRegistry::load(dir).expect("plugins dir loads")
}

#[test]
fn memdb_loaded_as_a_plugin_passes_the_kv_conformance_suite() {
    let dir = plugins_dir(&["memdb"]);
    let registry = load(dir.path());
    let memdb = registry.get(Kind::KvStore, "memdb").expect("memdb is ready");
    let db = memdb.open_db(&Meta::new()).expect("constructor");
    db.run().expect("run");
    common::kv_conformance::run_all(db.as_ref());
    assert!(memdb.counts().calls > 0, "guards count calls");
    registry.shutdown();
}

#[test]
fn every_example_loads_and_serves_through_the_registry() {
    let dir = plugins_dir(&["memdb", "fsstore", "counter", "statelog"]);
    let registry = load(dir.path());
    let states: Vec<(String, String)> =
        registry.list().into_iter().map(|p| (p.name.unwrap_or_default(), p.state)).collect();
    assert_eq!(states.len(), 4, "{states:?}");
    assert!(states.iter().all(|(_, s)| s == "Ready"), "{states:?}: {:?}", registry.list());

    // FileStore: put, get, stat, del.
    let store_dir = tempfile::tempdir().unwrap();
    let config = StoreConfig { name: "s1".into(), path: store_dir.path().display().to_string(), ..Default::default() };
    let store = registry.get(Kind::FileStore, "fsstore").unwrap().open_store(config).unwrap();
    assert_eq!(store.put("a/b.car", &mut &b"hello"[..]).unwrap(), 5);
    let mut text = String::new();
    store.get("a/b.car").unwrap().read_to_string(&mut text).unwrap();
    assert_eq!(text, "hello");
    assert_eq!(store.stat("a/b.car").unwrap().size, 5);
    store.del("a/b.car").unwrap();
    assert!(matches!(store.stat("a/b.car"), Err(StoreError::NotFound(_))));
    assert!(matches!(store.put("../escape", &mut &b"x"[..]), Err(StoreError::InvalidPath { .. })));

    // RegisterJsonRpc: AtomicCounter.Incr.
    let (namespace, handler) = registry.get(Kind::RegisterJsonRpc, "counter").unwrap().rpc_handler().unwrap();
    assert_eq!(namespace, "AtomicCounter");
    assert_eq!(handler.call("Incr", r#"["x"]"#).unwrap(), "1");
    assert_eq!(handler.call("Incr", r#"["x"]"#).unwrap(), "2");
    assert_eq!(handler.call("Get", r#"["x"]"#).unwrap(), "2");
    let err = handler.call("Nope", "[]").unwrap_err();
    assert_eq!(err.code, manager_plugin::RpcError::METHOD_NOT_FOUND, "{err}");

    // SyncSectorState: an event reaches statelog's file.
    let hooks = registry.get(Kind::SyncSectorState, "statelog").unwrap().sync_delivery().unwrap();
    let id = SectorId { miner: 1000, number: 7 };
    let update = SectorUpdate::AbortReason("test".into());
    let mut state = SectorState::new(id, 8);
    state.apply(&update);
    let event = SectorEvent::Update(UpdateEvent {
        sector_id: id,
        worker_state: WorkerState::Online,
        updates: vec![update],
        state,
    });
    hooks.deliver(&event).unwrap();
    let log = std::fs::read_to_string(dir.path().join("statelog.jsonl")).unwrap();
    let line: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert_eq!(line["event"], "OnUpdate");
    assert_eq!(line["sectors"][0]["Number"], 7);

    // Exactly one "loaded plugin" line per ready plugin (counter and statelog load only in this test; memdb and
    // fsstore also load in others sharing this process's log).
    let logs = log_text();
    for label in ["RegisterJsonRpc/counter", "SyncSectorState/statelog", "KVStore/memdb", "FileStore/fsstore"] {
        let line = format!("loaded plugin '{label}', build time: '");
        let count = logs.matches(&line).count();
        assert!(count >= 1, "missing {line:?} in:\n{logs}");
        if label.starts_with("RegisterJsonRpc") || label.starts_with("SyncSectorState") {
            assert_eq!(count, 1, "{line:?} logged {count} times");
        }
    }
    registry.shutdown();
    assert!(registry.list().iter().all(|p| p.state == "Dying"));
}

#[test]
fn panics_in_plugin_code_become_errors_and_the_process_lives_on() {
    let dir = plugins_dir(&["panicky-kv", "panicky-store"]);
    let registry = load(dir.path());
    let kv = registry.get(Kind::KvStore, "panicky-kv").expect("ready");
    let meta = |at: &str| Meta::from([("panic_in".to_string(), at.to_string())]);

    let err = kv.open_db(&meta("constructor")).err().expect("constructor panic is an error");
    assert!(err.to_string().contains("told to panic in the constructor"), "{err}");

    let db = kv.open_db(&meta("get")).unwrap();
    let coll = db.open_collection("c").unwrap();
    assert!(matches!(coll.get(b"k"), Err(KvError::Panicked(m)) if m.contains("panic in get")));
    coll.put(b"k", b"still alive").unwrap();

    let db = kv.open_db(&meta("iter")).unwrap();
    let mut it = db.open_collection("c").unwrap().scan(b"").unwrap();
    assert!(matches!(it.next_entry(), Err(KvError::Panicked(m)) if m.contains("panic in the iterator")));

    // Dropping a plugin object runs the author's Drop inside the plugin's guard too.
    let db = kv.open_db(&meta("drop")).unwrap();
    let it = db.open_collection("c").unwrap().scan(b"").unwrap();
    drop(it);

    let store_dir = tempfile::tempdir().unwrap();
    let config = StoreConfig { name: "p".into(), path: store_dir.path().display().to_string(), ..Default::default() };
    let store = registry.get(Kind::FileStore, "panicky-store").unwrap().open_store(config).unwrap();
    let err = store.put("x", &mut &b"data"[..]).unwrap_err();
    assert!(matches!(&err, StoreError::Panicked(m) if m.contains("panic in put")), "{err}");

    let counts = kv.counts();
    assert_eq!(counts.panics, 4, "{counts:?}");
    assert!(counts.last_failure.as_deref().unwrap_or("").contains("panicked in drop"), "{counts:?}");
    let listed = registry.list();
    let kv_info = listed.iter().find(|p| p.name.as_deref() == Some("panicky-kv")).unwrap();
    assert_eq!(kv_info.panics, 4);
    assert_eq!(kv_info.state, "Ready");
    // The plugin's panic hook forwards the panic to the daemon's log, tagged with the plugin.
    assert!(log_text().contains("KVStore/panicky-kv"), "{}", log_text());
}

#[test]
fn plugins_init_in_load_order_and_shut_down_once_in_reverse_order() {
    let dir = plugins_dir(&["panicky-kv", "panicky-store"]);
    let registry = load(dir.path());
    registry.shutdown();
    registry.shutdown();
    let log = std::fs::read_to_string(dir.path().join("lifecycle.log")).unwrap();
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        ["init panicky-kv", "init panicky-store", "shutdown panicky-store", "shutdown panicky-kv"]
    );
}

#[test]
fn a_panicking_on_init_leaves_the_plugin_disabled_with_its_error() {
    let dir = plugins_dir(&["panicky-kv", "memdb"]);
    std::fs::write(dir.path().join("panic-in-init"), b"").unwrap();
    let registry = load(dir.path());
    let record = registry.find_any(Kind::KvStore, "panicky-kv").unwrap();
    assert_eq!(record.state(), PluginState::Disabled);
    assert!(registry.get(Kind::KvStore, "panicky-kv").is_none());
    let why = registry.why_not_ready(Kind::KvStore, "panicky-kv");
    assert!(why.contains("Disabled: onInit failed: plugin panicked: panicky-kv: told to panic in onInit"), "{why}");
    assert!(registry.get(Kind::KvStore, "memdb").is_some(), "other plugins still load");
    registry.shutdown();
    let log = std::fs::read_to_string(dir.path().join("lifecycle.log")).unwrap();
    assert!(!log.contains("shutdown panicky-kv"), "no onShutdown for a plugin whose onInit failed: {log}");
}

#[test]
fn files_that_are_not_plugins_are_refused_and_the_rest_still_load() {
    let dir = plugins_dir(&["memdb"]);
    let libm = ["/lib/x86_64-linux-gnu/libm.so.6", "/usr/lib/x86_64-linux-gnu/libm.so.6"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("libm present");
    std::fs::copy(libm, dir.path().join("plugin-libm.so")).unwrap();
    let memdb = std::fs::read(built("memdb")).unwrap();
    std::fs::write(dir.path().join("plugin-truncated.so"), &memdb[..memdb.len() / 3]).unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"ignored: not a .so").unwrap();

    let registry = load(dir.path());
    assert!(registry.get(Kind::KvStore, "memdb").is_some());
    let refused: Vec<String> = registry.refused().map(|(_, e)| e.to_string()).collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(
        refused[0].contains("plugin-libm.so: not a damocles plugin (no `.damocles_plugin` section)"),
        "{refused:?}"
    );
    assert!(
        refused[1].contains("plugin-truncated.so: not a loadable library: truncated or corrupt ELF file"),
        "{refused:?}"
    );
    let listed = registry.list();
    assert_eq!(listed.len(), 3);
    assert!(listed.iter().filter(|p| p.state == "Disabled").all(|p| p.last_error.is_some()));
}

#[test]
fn two_plugins_with_the_same_kind_and_name_are_refused_naming_both_files() {
    let dir = plugins_dir(&["memdb"]);
    std::fs::copy(dir.path().join("plugin-memdb.so"), dir.path().join("plugin-memdb2.so")).unwrap();
    let registry = load(dir.path());
    let refused: Vec<&LoadError> = registry.refused().map(|(_, e)| e).collect();
    assert_eq!(refused.len(), 1);
    let msg = refused[0].to_string();
    assert!(msg.contains("plugin-memdb2.so: duplicate plugin 'KVStore/memdb', already loaded from"), "{msg}");
    assert!(msg.contains("plugin-memdb.so"), "{msg}");
    assert!(registry.get(Kind::KvStore, "memdb").is_some());
}

#[test]
fn a_plugin_built_with_another_sdk_feature_is_refused_before_its_code_runs() {
    let src = tempfile::tempdir().unwrap();
    let sdk = workspace_root().join("manager-plugin");
    std::fs::write(
        src.path().join("Cargo.toml"),
        format!(
            "[package]\nname = \"canary\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[dependencies]\n\
             manager-plugin = {{ path = {:?}, features = [\"fingerprint-canary\"] }}\n\n[workspace]\n",
            sdk.display().to_string()
        ),
    )
    .unwrap();
    std::fs::copy(workspace_root().join("Cargo.lock"), src.path().join("Cargo.lock")).unwrap();
    std::fs::write(
        src.path().join("manifest.toml"),
        "name = \"canary\"\nkind = \"SyncSectorState\"\nonInit = \"init\"\nexport = [{ extPoint = \"OnInit\", impl = \"on_init\" }]\n",
    )
    .unwrap();
    std::fs::create_dir(src.path().join("src")).unwrap();
    std::fs::write(
        src.path().join("src/lib.rs"),
        "pub fn init(ctx: &manager_plugin::PluginContext) -> Result<(), String> {\n\
         std::fs::write(ctx.plugins_dir.join(\"canary-ran\"), b\"\").map_err(|e| e.to_string())\n}\n\
         pub fn on_init(_: &manager_plugin::sync::InitEvent) -> Result<(), String> { Ok(()) }\n",
    )
    .unwrap();
    // First line of defence: plugin build refuses it, naming the SDK feature.
    let err = build_plugin(src.path(), "canary", false).expect_err("plugin build refuses the canary").to_string();
    assert!(
        err.contains("manager-plugin[default,fingerprint-canary] => [default] (extra fingerprint-canary)"),
        "{err}"
    );
    // Second line: built anyway, the manager refuses it before running any of its code.
    let so = build_plugin(src.path(), "canary", true).expect("build with --skip-check-dep");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(&so, dir.path().join("plugin-canary.so")).unwrap();

    let registry = load(dir.path());
    let refused: Vec<String> = registry.refused().map(|(_, e)| e.to_string()).collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    let msg = &refused[0];
    assert!(msg.contains("plugin 'canary' was built differently from this manager"), "{msg}");
    assert!(msg.contains("- sdk-features: plugin \"default,fingerprint-canary\" => manager \"default\""), "{msg}");
    assert!(msg.contains("fix: cargo run -p plugin -- check-dep --fix"), "{msg}");
    assert!(!dir.path().join("canary-ran").exists(), "no plugin code may run before the fingerprint check");
}

#[test]
fn a_plugin_file_truncated_or_replaced_on_disk_after_loading_keeps_working() {
    let dir = plugins_dir(&["memdb"]);
    let registry = load(dir.path());
    let memdb = registry.get(Kind::KvStore, "memdb").expect("memdb is ready");
    let file = dir.path().join("plugin-memdb.so");
    // `cp` over a loaded library truncates the same inode: with the file itself mapped, touching a page of it
    // afterwards is SIGBUS. The manager maps a sealed copy of the checked bytes instead.
    std::fs::OpenOptions::new().write(true).open(&file).unwrap().set_len(0).unwrap();
    let db = memdb.open_db(&Meta::new()).expect("constructor");
    db.run().expect("run");
    common::kv_conformance::run_all(db.as_ref());
    std::fs::write(&file, b"garbage written in place").unwrap();
    common::kv_conformance::run_all(db.as_ref());
    registry.shutdown();
}

#[test]
fn a_missing_plugins_dir_is_an_error_naming_it_and_an_empty_setting_means_no_plugins() {
    let err = PluginRegistry::load(std::path::Path::new("/nonexistent/plugins")).err().expect("error");
    assert!(err.to_string().starts_with("plugins dir /nonexistent/plugins: "), "{err}");
    let registry = PluginRegistry::load(std::path::Path::new("")).unwrap();
    assert!(registry.list().is_empty());
}
