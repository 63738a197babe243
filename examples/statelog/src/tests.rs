//! Unit tests of the journal and the hooks.

use std::sync::Arc;

use manager_plugin::glue;
use manager_plugin::lifecycle::{CallStats, LogLevel, LogRecord, LogSink};
use manager_plugin::sector::{AllocatedSector, SectorState, SectorUpdate};
use manager_plugin::{Kind, Manifest};
use serde_json::{Value, json};

use super::*;

const SECTOR: SectorId = SectorId { miner: 1000, number: 1 };

/// Prints forwarded records: `glue::init` replaces the panic hook with one that logs, so this is where a
/// failing test's panic message shows up.
struct StderrLogs;

impl LogSink for StderrLogs {
    fn max_level(&self) -> LogLevel {
        LogLevel::Debug
    }
    fn log(&self, record: &LogRecord) {
        eprintln!("{:?} {}: {} {:?}", record.level, record.target, record.message, record.fields);
    }
}

fn manifest() -> Manifest {
    Manifest::parse(include_str!("../manifest.toml"), "examples/statelog/manifest.toml").unwrap()
}

fn context(plugins_dir: &Path) -> PluginContext {
    PluginContext {
        plugins_dir: plugins_dir.to_path_buf(),
        manifest: manifest(),
        log_sink: Arc::new(StderrLogs),
        stats: Arc::new(CallStats::default()),
    }
}

fn state() -> SectorState {
    SectorState::new(SECTOR, 8)
}

fn update_event() -> UpdateEvent {
    UpdateEvent {
        sector_id: SECTOR,
        worker_state: WorkerState::Online,
        updates: vec![SectorUpdate::AbortReason("bad ticket".into())],
        state: state(),
    }
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn the_manifest_exports_every_hook_and_on_init() {
    let m = manifest();
    assert_eq!(m.kind, Kind::SyncSectorState);
    assert_eq!(m.on_init.as_deref(), Some("init"));
    for (point, function) in [
        (ExtPoint::OnImport, "on_import"),
        (ExtPoint::OnInit, "on_init"),
        (ExtPoint::OnUpdate, "on_update"),
        (ExtPoint::OnFinalize, "on_finalize"),
        (ExtPoint::OnRestore, "on_restore"),
    ] {
        assert_eq!(m.export_for(point).map(|e| e.impl_path.as_str()), Some(function), "{point}");
    }
}

#[test]
fn after_on_init_every_hook_appends_one_line_to_the_plugins_dir_journal() {
    let dir = tempfile::tempdir().unwrap();
    glue::init(&context(dir.path()), init).unwrap();
    let second = SectorId { miner: 1000, number: 2 };
    let import = ImportEvent { worker_state: WorkerState::Offline, state: state(), overwrite: true };
    let alloc = InitEvent {
        sectors: vec![AllocatedSector { id: SECTOR, proof_type: 8 }, AllocatedSector { id: second, proof_type: 8 }],
        worker_state: WorkerState::Online,
    };
    let finalize = FinalizeEvent { sector_id: SECTOR, state: state() };
    let restore = RestoreEvent { sector_id: SECTOR, state: state() };
    // Called the way the generated wrapper calls them.
    glue::hook(|| on_import(&import)).unwrap();
    glue::hook(|| on_init(&alloc)).unwrap();
    glue::hook(|| on_update(&update_event())).unwrap();
    glue::hook(|| on_finalize(&finalize)).unwrap();
    glue::hook(|| on_restore(&restore)).unwrap();

    let got = lines(&dir.path().join(FILE_NAME));
    let one = json!([{"Miner": 1000, "Number": 1}]);
    let expected = [
        ("OnImport", one.clone(), json!("Offline"), serde_json::to_value(&import).unwrap()),
        (
            "OnInit",
            json!([{"Miner": 1000, "Number": 1}, {"Miner": 1000, "Number": 2}]),
            json!("Online"),
            serde_json::to_value(&alloc).unwrap(),
        ),
        ("OnUpdate", one.clone(), json!("Online"), serde_json::to_value(update_event()).unwrap()),
        ("OnFinalize", one.clone(), Value::Null, serde_json::to_value(&finalize).unwrap()),
        ("OnRestore", one, Value::Null, serde_json::to_value(&restore).unwrap()),
    ];
    assert_eq!(got.len(), expected.len());
    for (line, (event, sectors, worker_state, data)) in got.iter().zip(expected) {
        assert_eq!(line, &json!({"event": event, "sectors": sectors, "worker_state": worker_state, "data": data}));
    }
}

#[test]
fn a_hook_before_on_init_fails_saying_so() {
    let err = ActiveLog::new().append(&update_event()).unwrap_err();
    assert!(matches!(err, StateLogError::NotInitialized));
    assert!(err.to_string().contains("onInit has not run"), "{err}");
}

#[test]
fn data_uses_the_go_field_names() {
    let dir = tempfile::tempdir().unwrap();
    let log = StateLog::in_dir(dir.path()).unwrap();
    log.append(&update_event()).unwrap();
    let line = &lines(log.path())[0];
    assert_eq!(line["data"]["SectorID"], json!({"Miner": 1000, "Number": 1}));
    assert_eq!(line["data"]["WorkerState"], "Online");
    assert_eq!(line["data"]["Updates"], json!([{"AbortReason": "bad ticket"}]));
}

#[test]
fn a_redelivered_event_is_simply_appended_again() {
    let dir = tempfile::tempdir().unwrap();
    let log = StateLog::in_dir(dir.path()).unwrap();
    log.append(&update_event()).unwrap();
    log.append(&update_event()).unwrap();
    let got = lines(log.path());
    assert_eq!(got.len(), 2);
    assert_eq!(got[0], got[1]);
}

#[test]
fn appends_keep_existing_lines_and_concurrent_appends_never_interleave() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(FILE_NAME), "{\"earlier\":true}\n").unwrap();
    let log = StateLog::in_dir(dir.path()).unwrap();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..25 {
                    log.append(&update_event()).unwrap();
                }
            });
        }
    });
    let got = lines(log.path());
    assert_eq!(got.len(), 101);
    assert_eq!(got[0], json!({"earlier": true}));
    assert!(got[1..].iter().all(|l| l["event"] == "OnUpdate"));
}

#[test]
fn a_missing_plugins_dir_fails_at_init_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let err = StateLog::in_dir(&dir.path().join("missing")).unwrap_err().to_string();
    assert!(err.contains("cannot open") && err.contains("missing/statelog.jsonl"), "{err}");
}
