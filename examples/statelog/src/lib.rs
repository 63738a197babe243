//! # statelog: a SyncSectorState plugin that journals sector state changes
//!
//! Exports all five hooks. Each event becomes one JSON line appended (and synced) to
//! `<plugins dir>/statelog.jsonl`, the file chosen by [`init`] (the plugin's `onInit`):
//!
//! ```text
//! {"event":"OnUpdate","sectors":[{"Miner":1000,"Number":1}],"worker_state":"Online","data":{"SectorID":...}}
//! ```
//!
//! - `event` is the hook (`OnImport`, `OnInit`, `OnUpdate`, `OnFinalize`, `OnRestore`);
//! - `sectors` lists the sectors concerned;
//! - `worker_state` is the event's own `WorkerState` field, `null` for events that have none (finalize and
//!   restore, which move a sector offline and back online);
//! - `data` is the event struct as `serde_json` serializes it (PascalCase field names, like the Go manager).
//!
//! Delivery is at least once, so the same event can appear twice after a manager restart; readers deduplicate if
//! they care. The file is opened for each event, so it can be rotated by moving it away.
//!
//! ```
//! use manager_plugin::sector::{SectorId, SectorState, WorkerState};
//! use manager_plugin::sync::FinalizeEvent;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let log = statelog::StateLog::in_dir(dir.path()).unwrap();
//! let id = SectorId { miner: 1000, number: 1 };
//! log.append(&FinalizeEvent { sector_id: id, state: SectorState::new(id, 8) }).unwrap();
//! let text = std::fs::read_to_string(log.path()).unwrap();
//! assert!(text.starts_with(r#"{"event":"OnFinalize","sectors":[{"Miner":1000,"Number":1}],"worker_state":null,"#));
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fs::OpenOptions;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use manager_plugin::PluginContext;
use manager_plugin::manifest::ExtPoint;
use manager_plugin::sector::{SectorId, WorkerState};
use manager_plugin::sync::{FinalizeEvent, ImportEvent, InitEvent, RestoreEvent, UpdateEvent};
use serde::Serialize;

/// The journal's file name inside the plugins directory.
pub const FILE_NAME: &str = "statelog.jsonl";

/// Why an event could not be journaled. The manager keeps an undelivered event and retries it.
#[derive(Debug, thiserror::Error)]
pub enum StateLogError {
    /// A hook ran before `onInit` chose the file.
    #[error(
        "statelog: onInit has not run, so there is no journal file yet; the manager must initialize the plugin first"
    )]
    NotInitialized,
    /// The journal could not be opened or written.
    #[error("statelog: cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The journal file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The event could not be serialized.
    #[error("statelog: cannot serialize a {event} event: {source}")]
    Serialize {
        /// The hook that received it.
        event: ExtPoint,
        /// The serializer's error.
        source: serde_json::Error,
    },
}

/// A sector event this plugin can journal: one of the five `manager_plugin::sync` event structs.
pub trait JournaledEvent: Serialize {
    /// The hook that receives this event.
    const EXT_POINT: ExtPoint;
    /// The sectors it concerns.
    fn sectors(&self) -> Vec<SectorId>;
    /// Its own worker state, if it carries one.
    fn worker_state(&self) -> Option<WorkerState>;
}

impl JournaledEvent for ImportEvent {
    const EXT_POINT: ExtPoint = ExtPoint::OnImport;
    fn sectors(&self) -> Vec<SectorId> {
        vec![self.state.id]
    }
    fn worker_state(&self) -> Option<WorkerState> {
        Some(self.worker_state)
    }
}

impl JournaledEvent for InitEvent {
    const EXT_POINT: ExtPoint = ExtPoint::OnInit;
    fn sectors(&self) -> Vec<SectorId> {
        self.sectors.iter().map(|s| s.id).collect()
    }
    fn worker_state(&self) -> Option<WorkerState> {
        Some(self.worker_state)
    }
}

impl JournaledEvent for UpdateEvent {
    const EXT_POINT: ExtPoint = ExtPoint::OnUpdate;
    fn sectors(&self) -> Vec<SectorId> {
        vec![self.sector_id]
    }
    fn worker_state(&self) -> Option<WorkerState> {
        Some(self.worker_state)
    }
}

impl JournaledEvent for FinalizeEvent {
    const EXT_POINT: ExtPoint = ExtPoint::OnFinalize;
    fn sectors(&self) -> Vec<SectorId> {
        vec![self.sector_id]
    }
    fn worker_state(&self) -> Option<WorkerState> {
        None
    }
}

impl JournaledEvent for RestoreEvent {
    const EXT_POINT: ExtPoint = ExtPoint::OnRestore;
    fn sectors(&self) -> Vec<SectorId> {
        vec![self.sector_id]
    }
    fn worker_state(&self) -> Option<WorkerState> {
        None
    }
}

/// One journal line.
#[derive(Serialize)]
struct Line<'a, E> {
    event: ExtPoint,
    sectors: Vec<SectorId>,
    worker_state: Option<WorkerState>,
    data: &'a E,
}

/// An append-only JSON-lines journal file.
#[derive(Debug)]
pub struct StateLog {
    path: PathBuf,
    /// Serializes appends so concurrent hooks never interleave within a line.
    appending: Mutex<()>,
}

impl StateLog {
    /// The journal `<dir>/statelog.jsonl`, created if missing. Fails (naming the file) when it cannot be opened
    /// for appending, so a bad plugins directory shows up at `onInit` rather than at the first event.
    ///
    /// Only the directory is checked here; the journal is opened for each event, so a journal that is briefly
    /// unwritable makes deliveries fail (and the manager retry them) instead of disabling the plugin.
    pub fn in_dir(dir: &Path) -> Result<StateLog, StateLogError> {
        let path = dir.join(FILE_NAME);
        match std::fs::metadata(dir) {
            Ok(meta) if meta.is_dir() => Ok(StateLog { path, appending: Mutex::new(()) }),
            Ok(_) => Err(StateLogError::Io { op: "open", path, source: io::ErrorKind::NotADirectory.into() }),
            Err(source) => Err(StateLogError::Io { op: "open", path, source }),
        }
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `event` as one line, written with a single `write_all` and synced before returning.
    pub fn append<E: JournaledEvent>(&self, event: &E) -> Result<(), StateLogError> {
        let line =
            Line { event: E::EXT_POINT, sectors: event.sectors(), worker_state: event.worker_state(), data: event };
        let mut bytes =
            serde_json::to_vec(&line).map_err(|source| StateLogError::Serialize { event: E::EXT_POINT, source })?;
        bytes.push(b'\n');
        let io_error = |op| move |source| StateLogError::Io { op, path: self.path.clone(), source };
        {
            let _appending = self.appending.lock().unwrap_or_else(PoisonError::into_inner);
            let mut file = self.open()?;
            file.write_all(&bytes).map_err(io_error("append to"))?;
            file.sync_data().map_err(io_error("sync"))?;
        }
        tracing::debug!(event = %E::EXT_POINT, sectors = ?line.sectors, "journaled sector event");
        Ok(())
    }

    fn open(&self) -> Result<std::fs::File, StateLogError> {
        OpenOptions::new().create(true).append(true).open(&self.path).map_err(|source| StateLogError::Io {
            op: "open",
            path: self.path.clone(),
            source,
        })
    }
}

/// Where the hooks find the journal chosen by `onInit`. Each plugin library has its own copy of this static.
struct ActiveLog(RwLock<Option<Arc<StateLog>>>);

impl ActiveLog {
    const fn new() -> ActiveLog {
        ActiveLog(RwLock::new(None))
    }

    fn set(&self, log: StateLog) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(log));
    }

    fn append<E: JournaledEvent>(&self, event: &E) -> Result<(), StateLogError> {
        let log = self.0.read().unwrap_or_else(PoisonError::into_inner).clone();
        log.ok_or(StateLogError::NotInitialized)?.append(event)
    }
}

static ACTIVE: ActiveLog = ActiveLog::new();

/// `onInit`: journals to `<ctx.plugins_dir>/statelog.jsonl` from now on (a later call switches files).
pub fn init(ctx: &PluginContext) -> Result<(), StateLogError> {
    let log = StateLog::in_dir(&ctx.plugins_dir)?;
    tracing::info!(path = %log.path().display(), "statelog journals sector events");
    ACTIVE.set(log);
    Ok(())
}

/// `OnImport` hook: journals a sector import.
pub fn on_import(event: &ImportEvent) -> Result<(), StateLogError> {
    ACTIVE.append(event)
}

/// `OnInit` hook (sectors allocated, not the plugin's `onInit`): journals the new sectors.
pub fn on_init(event: &InitEvent) -> Result<(), StateLogError> {
    ACTIVE.append(event)
}

/// `OnUpdate` hook: journals a sector state update.
pub fn on_update(event: &UpdateEvent) -> Result<(), StateLogError> {
    ACTIVE.append(event)
}

/// `OnFinalize` hook: journals a sector moving offline.
pub fn on_finalize(event: &FinalizeEvent) -> Result<(), StateLogError> {
    ACTIVE.append(event)
}

/// `OnRestore` hook: journals a sector moving back online.
pub fn on_restore(event: &RestoreEvent) -> Result<(), StateLogError> {
    ACTIVE.append(event)
}

#[cfg(test)]
mod tests;
