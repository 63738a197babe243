//! The `Venus` namespace: the API damocles-worker speaks, with the Go manager's method names, positional
//! parameters and PascalCase JSON, plus the operator's sector methods. One file per method group:
//! [`sealing`] (allocate, report), [`stores`], [`workers`] (ping), [`admin`] (operator).

pub mod admin;
pub mod sealing;
pub mod stores;
pub mod types;
pub mod workers;

use jsonrpsee::RpcModule;
use jsonrpsee::types::ErrorObjectOwned;
use serde::Serialize;

use super::AppState;
use super::params::{Args, SECTOR_NOT_FOUND, SERVER_ERROR, error};
use crate::sectors::SectorError;

pub use sealing::MAX_BATCH;
pub use types::{AllocateSectorSpec, SectorStateResp, WorkerInfo, WorkerInfoSummary, WorkerPingInfo};
pub use workers::WorkerPings;

/// Every method of damocles-worker's `Sealer` trait (`damocles-worker/src/rpc/sealer/mod.rs:476`-`653`), in the
/// trait's order. These, and only these, may be called without the token from `[API] TrustedNetworks`.
pub const WORKER_METHODS: [&str; 25] = [
    "Venus.AllocateSector",
    "Venus.AllocateSectorsBatch",
    "Venus.AcquireDeals",
    "Venus.AssignTicket",
    "Venus.SubmitPreCommit",
    "Venus.PollPreCommitState",
    "Venus.SubmitPersistedEx",
    "Venus.WaitSeed",
    "Venus.SubmitProof",
    "Venus.PollProofState",
    "Venus.ReportState",
    "Venus.ReportFinalized",
    "Venus.ReportAborted",
    "Venus.AllocateSanpUpSector",
    "Venus.SubmitSnapUpProof",
    "Venus.WorkerPing",
    "Venus.StoreReserveSpace",
    "Venus.StoreBasicInfo",
    "Venus.AllocateRebuildSector",
    "Venus.AllocateUnsealSector",
    "Venus.AchieveUnsealSector",
    "Venus.AcquireUnsealDest",
    "Venus.WdPoStAllocateJobs",
    "Venus.WdPoStHeartbeatJobs",
    "Venus.WdPoStFinishJob",
];

/// A sector error as JSON-RPC: 11001 (what damocles-worker and Go use) when the sector does not exist.
fn sector_error(err: SectorError) -> ErrorObjectOwned {
    let code = if err.is_not_found() { SECTOR_NOT_FOUND } else { SERVER_ERROR };
    error(code, err.to_string())
}

/// Registers every `Venus.*` method on `module`.
pub fn register(module: &mut RpcModule<AppState>) -> Result<(), jsonrpsee::core::RegisterMethodError> {
    sealing::register(module)?;
    workers::register(module)?;
    stores::register(module)?;
    admin::register(module)
}

/// Registers one blocking method (the state manager and stores are synchronous).
pub(super) fn add<R, F>(
    module: &mut RpcModule<AppState>,
    name: &'static str,
    f: F,
) -> Result<(), jsonrpsee::core::RegisterMethodError>
where
    R: Serialize + Clone + Send + 'static,
    F: Fn(&AppState, Args) -> Result<R, ErrorObjectOwned> + Clone + Send + Sync + 'static,
{
    module.register_blocking_method(name, move |params, state, _| {
        let args = Args::new(name, &params)?;
        f(&state, args)
    })?;
    Ok(())
}
