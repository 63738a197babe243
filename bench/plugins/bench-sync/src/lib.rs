//! Benchmark fixture: a SyncSectorState plugin steered by files in its plugins directory, named after the
//! plugin's manifest name (the benchmark builds one copy per name):
//!
//! - `<name>.sleep-ms` holds a number: every event takes that long (a slow downstream system);
//! - `<name>.fail` exists: every event fails (an outage; the manager keeps the backlog and retries);
//! - otherwise an event costs what reading it costs.
//!
//! The files are read at most every 100 ms, not per event, so steering costs nothing measurable.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use manager_plugin::PluginContext;
use manager_plugin::sync::{FinalizeEvent, ImportEvent, InitEvent, RestoreEvent, UpdateEvent};

struct Steering {
    dir: PathBuf,
    name: String,
    read_at: Option<Instant>,
    sleep: Duration,
    fail: bool,
}

static STEERING: Mutex<Option<Steering>> = Mutex::new(None);

/// Remembers where the steering files are.
pub fn init(ctx: &PluginContext) -> Result<(), String> {
    let steering = Steering {
        dir: ctx.plugins_dir.clone(),
        name: ctx.manifest.name.clone(),
        read_at: None,
        sleep: Duration::ZERO,
        fail: false,
    };
    *STEERING.lock().map_err(|_| "bench-sync: steering lock poisoned")? = Some(steering);
    Ok(())
}

fn handle() -> Result<(), String> {
    let (sleep, fail, name) = {
        let mut guard = STEERING.lock().map_err(|_| "bench-sync: steering lock poisoned")?;
        let steering = guard.as_mut().ok_or("bench-sync: onInit has not run")?;
        if steering.read_at.is_none_or(|at| at.elapsed() >= Duration::from_millis(100)) {
            let base = steering.dir.join(&steering.name);
            let sleep_ms = std::fs::read_to_string(base.with_extension("sleep-ms"))
                .ok()
                .and_then(|text| text.trim().parse::<u64>().ok())
                .unwrap_or(0);
            steering.sleep = Duration::from_millis(sleep_ms);
            steering.fail = base.with_extension("fail").exists();
            steering.read_at = Some(Instant::now());
        }
        (steering.sleep, steering.fail, steering.name.clone())
    };
    if fail {
        return Err(format!("{name}: told to fail (steering file {name}.fail exists)"));
    }
    if !sleep.is_zero() {
        std::thread::sleep(sleep);
    }
    Ok(())
}

/// `OnImport`.
pub fn on_import(_: &ImportEvent) -> Result<(), String> {
    handle()
}

/// `OnInit`.
pub fn on_init(_: &InitEvent) -> Result<(), String> {
    handle()
}

/// `OnUpdate`.
pub fn on_update(_: &UpdateEvent) -> Result<(), String> {
    handle()
}

/// `OnFinalize`.
pub fn on_finalize(_: &FinalizeEvent) -> Result<(), String> {
    handle()
}

/// `OnRestore`.
pub fn on_restore(_: &RestoreEvent) -> Result<(), String> {
    handle()
}
