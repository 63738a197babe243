//! Test fixture: a SyncSectorState plugin steered by files in its plugins directory.
//!
//! - `hang` exists: every hook blocks until the file is removed (a hung network call);
//! - `fail-<number>` exists: every event concerning sector `<number>` fails (a poison event);
//! - otherwise the event is appended to `stuck-sync.log` as `<hook> <sector number>...`.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use manager_plugin::PluginContext;
use manager_plugin::sector::SectorId;
use manager_plugin::sync::{FinalizeEvent, ImportEvent, InitEvent, UpdateEvent};

static DIR: OnceLock<PathBuf> = OnceLock::new();

/// Remembers the plugins directory.
pub fn init(ctx: &PluginContext) -> Result<(), String> {
    DIR.set(ctx.plugins_dir.clone()).map_err(|_| "stuck-sync: initialized twice".to_string())
}

fn handle(hook: &str, sectors: &[SectorId]) -> Result<(), String> {
    let dir = DIR.get().ok_or("stuck-sync: onInit has not run")?;
    while dir.join("hang").exists() {
        std::thread::sleep(Duration::from_millis(50));
    }
    for sector in sectors {
        if dir.join(format!("fail-{}", sector.number)).exists() {
            return Err(format!("stuck-sync: told to fail events of sector {}", sector.number));
        }
    }
    let numbers: Vec<String> = sectors.iter().map(|s| s.number.to_string()).collect();
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("stuck-sync.log"))
        .map_err(|e| format!("stuck-sync: open log: {e}"))?;
    writeln!(log, "{hook} {}", numbers.join(" ")).map_err(|e| format!("stuck-sync: write log: {e}"))
}

/// `OnImport`.
pub fn on_import(event: &ImportEvent) -> Result<(), String> {
    handle("OnImport", &[event.state.id])
}

/// `OnInit`.
pub fn on_init(event: &InitEvent) -> Result<(), String> {
    let ids: Vec<SectorId> = event.sectors.iter().map(|s| s.id).collect();
    handle("OnInit", &ids)
}

/// `OnUpdate`.
pub fn on_update(event: &UpdateEvent) -> Result<(), String> {
    handle("OnUpdate", &[event.sector_id])
}

/// `OnFinalize`.
pub fn on_finalize(event: &FinalizeEvent) -> Result<(), String> {
    handle("OnFinalize", &[event.sector_id])
}
