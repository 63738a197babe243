//! The `Venus` namespace: the API damocles-worker speaks, with the Go manager's method names, positional
//! parameters and PascalCase JSON, plus the operator's sector methods. One file per method group:
//! [`sealing`] (allocate, report), [`chain`] (tickets, seeds, pre-commit, proof, persisted, deals: the configured
//! chain), [`stores`], [`workers`] (ping), [`admin`] (operator), [`listing`] (`ListSectors`, streamed over HTTP),
//! [`unsupported`] (snap-up, rebuild, unseal and WindowPoSt methods, answered with deliberate errors).
//! `docs/rpc.md` lists every method of the worker's trait and what damocles-rs does with it.

pub mod admin;
pub mod chain;
pub mod listing;
pub mod sealing;
pub mod stores;
pub mod types;
pub mod unsupported;
pub mod workers;

use std::future::Future;
use std::sync::Arc;

use jsonrpsee::RpcModule;
use jsonrpsee::types::ErrorObjectOwned;
use serde::Serialize;

use super::AppState;
use super::params::{Args, SECTOR_NOT_FOUND, SERVER_ERROR, error};
use crate::sectors::SectorError;

pub use super::worker_pings::WorkerPings;
pub use sealing::MAX_BATCH;
pub use types::{AllocateSectorSpec, SectorStateResp, WorkerInfo, WorkerInfoSummary, WorkerPingInfo};

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

/// A sector error as JSON-RPC: 11001 (what damocles-worker and Go use) when the sector does not exist. While the
/// database is refused (lost identity or writer lease, `kvstore::refusal`) nothing is answered 11001: the worker
/// aborts a sector on 11001, and "not found" then says nothing about the sector.
fn sector_error(err: SectorError) -> ErrorObjectOwned {
    let code = if err.is_not_found() && !crate::kvstore::refusal::any() { SECTOR_NOT_FOUND } else { SERVER_ERROR };
    error(code, err.to_string())
}

/// Registers every `Venus.*` method on `module`.
pub fn register(module: &mut RpcModule<AppState>) -> Result<(), jsonrpsee::core::RegisterMethodError> {
    sealing::register(module)?;
    chain::register(module)?;
    workers::register(module)?;
    stores::register(module)?;
    admin::register(module)?;
    unsupported::register(module)
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

/// Registers one async method: its params are decoded where the call arrives, and `f` returns the future doing
/// the work (for the sector changes, waiting for their group commit without holding a thread).
pub(super) fn add_async<R, F, Fut>(
    module: &mut RpcModule<AppState>,
    name: &'static str,
    f: F,
) -> Result<(), jsonrpsee::core::RegisterMethodError>
where
    R: Serialize + Clone + Send + 'static,
    Fut: Future<Output = Result<R, ErrorObjectOwned>> + Send + 'static,
    F: Fn(Arc<AppState>, Args<'_>) -> Result<Fut, ErrorObjectOwned> + Clone + Send + Sync + 'static,
{
    module.register_async_method(name, move |params, state, _| {
        let started = Args::new(name, &params).and_then(|args| f(state, args));
        async move { started?.await }
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::unsupported::{UNIMPLEMENTED_METHODS, WDPOST_METHODS};
    use super::*;

    /// Every worker method is implemented, answered by the chain, or deliberately unsupported: none is left to a
    /// generic answer.
    #[test]
    fn every_worker_method_is_registered() {
        let implemented = [
            "Venus.AllocateSector",
            "Venus.AllocateSectorsBatch",
            "Venus.AcquireDeals",
            "Venus.SubmitPersistedEx",
            "Venus.ReportState",
            "Venus.ReportFinalized",
            "Venus.ReportAborted",
            "Venus.WorkerPing",
            "Venus.StoreReserveSpace",
            "Venus.StoreBasicInfo",
        ];
        let groups = [&implemented[..], &chain::CHAIN_METHODS[..], &UNIMPLEMENTED_METHODS[..], &WDPOST_METHODS[..]];
        for method in WORKER_METHODS {
            let known = groups.iter().filter(|group| group.contains(&method)).count();
            assert_eq!(known, 1, "{method} must be in exactly one group");
        }
        assert_eq!(groups.iter().map(|g| g.len()).sum::<usize>(), WORKER_METHODS.len());
    }
}
