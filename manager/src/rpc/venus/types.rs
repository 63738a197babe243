//! The request and answer shapes of the `Venus` methods, byte-compatible with the Go manager's (`core/types.go`,
//! `core/worker.go`) and decodable by damocles-worker's serde types (`damocles-worker/src/rpc/sealer/mod.rs`).

use manager_plugin::sector::SectorId;
use serde::{Deserialize, Serialize};

/// `AllocateSector`'s request: which miners and proof types the worker accepts. An absent, `null` or empty list
/// allows any (the worker sends `Option<Vec<_>>`, worker `rpc/sealer/mod.rs:54`; Go `core/types.go:18`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocateSectorSpec {
    /// Acceptable miners.
    pub allowed_miners: Option<Vec<u64>>,
    /// Acceptable seal proof types.
    pub allowed_proof_types: Option<Vec<i64>>,
}

impl AllocateSectorSpec {
    /// Whether the spec lets a sector of `actor` with `seal_proof` be allocated.
    pub fn allows(&self, actor: u64, seal_proof: i64) -> bool {
        allowed(&self.allowed_miners, actor) && allowed(&self.allowed_proof_types, seal_proof)
    }
}

/// An absent or empty list allows everything.
fn allowed<T: PartialEq>(list: &Option<Vec<T>>, value: T) -> bool {
    list.as_ref().is_none_or(|list| list.is_empty() || list.contains(&value))
}

/// `ReportState`'s answer (Go `core/types.go:544` `SectorStateResp`, whose ID is tagged `json:"Id"`; worker
/// `SectorState`, `rpc/sealer/mod.rs:309`, `rename_all = "PascalCase"` on field `id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SectorStateResp {
    /// The sector.
    pub id: SectorId,
    /// Whether it is finalized (the worker then cleans it up).
    pub finalized: bool,
    /// The abort reason; Go always answers a string (empty when not aborted), never `null`.
    pub abort_reason: Option<String>,
}

/// The summary inside `WorkerPing`'s payload (Go `core/worker.go:42`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct WorkerInfoSummary {
    /// Sealing threads.
    pub threads: u64,
    /// Threads without a job.
    pub empty: u64,
    /// Paused threads.
    pub paused: u64,
    /// Running threads.
    pub running: u64,
    /// Threads waiting.
    pub waiting: u64,
    /// Threads in error.
    pub errors: u64,
}

/// `WorkerPing`'s payload (Go `core/worker.go:66`; worker `rpc/sealer/mod.rs:389`). Missing keys decode to their
/// zero value as in Go; `Name` and `Dest` must not be empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct WorkerInfo {
    /// Worker instance name.
    pub name: String,
    /// Where the worker's own API listens.
    pub dest: String,
    /// The worker's version.
    pub version: String,
    /// Its sealing threads.
    pub summary: WorkerInfoSummary,
}

/// One entry of `Venus.WorkerPingInfoList` (Go `core/worker.go:61`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WorkerPingInfo {
    /// What the worker sent last.
    pub info: WorkerInfo,
    /// When, in Unix seconds.
    pub last_ping: i64,
}
