//! SyncSectorState events: typed, structured notifications of every sector state change.
//!
//! The manager writes each event to a durable outbox in the same transaction as the change, then delivers it to
//! every ready SyncSectorState plugin, in order per sector, at least once. Hooks must therefore be idempotent.

use serde::{Deserialize, Serialize};

use crate::manifest::ExtPoint;
use crate::sector::{AllocatedSector, SectorId, SectorState, SectorUpdate, WorkerState};

/// A sector was imported (`Venus.ImportSector`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImportEvent {
    /// Where it was stored.
    pub worker_state: WorkerState,
    /// The imported state.
    pub state: SectorState,
    /// Whether an existing record was overwritten.
    pub overwrite: bool,
}

/// Sectors were allocated and initialized.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InitEvent {
    /// The new sectors.
    pub sectors: Vec<AllocatedSector>,
    /// Always online for new sectors.
    pub worker_state: WorkerState,
}

/// A sector's state was updated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateEvent {
    /// The sector.
    #[serde(rename = "SectorID")]
    pub sector_id: SectorId,
    /// Which collection it lives in.
    pub worker_state: WorkerState,
    /// The changes applied, in order.
    pub updates: Vec<SectorUpdate>,
    /// The state after the changes.
    pub state: SectorState,
}

/// A sector was finalized (moved from online to offline).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FinalizeEvent {
    /// The sector.
    #[serde(rename = "SectorID")]
    pub sector_id: SectorId,
    /// The final state.
    pub state: SectorState,
}

/// A sector was restored (moved from offline back to online).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RestoreEvent {
    /// The sector.
    #[serde(rename = "SectorID")]
    pub sector_id: SectorId,
    /// The restored state.
    pub state: SectorState,
}

/// Any sector state change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SectorEvent {
    /// See [`ImportEvent`].
    Import(ImportEvent),
    /// See [`InitEvent`].
    Init(InitEvent),
    /// See [`UpdateEvent`].
    Update(UpdateEvent),
    /// See [`FinalizeEvent`].
    Finalize(FinalizeEvent),
    /// See [`RestoreEvent`].
    Restore(RestoreEvent),
}

impl SectorEvent {
    /// The hook that receives this event.
    pub fn ext_point(&self) -> ExtPoint {
        match self {
            SectorEvent::Import(_) => ExtPoint::OnImport,
            SectorEvent::Init(_) => ExtPoint::OnInit,
            SectorEvent::Update(_) => ExtPoint::OnUpdate,
            SectorEvent::Finalize(_) => ExtPoint::OnFinalize,
            SectorEvent::Restore(_) => ExtPoint::OnRestore,
        }
    }

    /// The sectors this event concerns.
    pub fn sector_ids(&self) -> Vec<SectorId> {
        match self {
            SectorEvent::Import(e) => vec![e.state.id],
            SectorEvent::Init(e) => e.sectors.iter().map(|s| s.id).collect(),
            SectorEvent::Update(e) => vec![e.sector_id],
            SectorEvent::Finalize(e) => vec![e.sector_id],
            SectorEvent::Restore(e) => vec![e.sector_id],
        }
    }
}
