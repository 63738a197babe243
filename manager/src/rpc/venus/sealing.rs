//! The sealing methods damocles-worker drives a sector with: `Venus.AllocateSector`, `Venus.AllocateSectorsBatch`,
//! `Venus.ReportState`, `Venus.ReportFinalized`, `Venus.ReportAborted`.

use std::sync::Arc;

use jsonrpsee::RpcModule;
use jsonrpsee::core::RegisterMethodError;
use jsonrpsee::types::ErrorObjectOwned;
use manager_plugin::sector::{AllocatedSector, ReportStateReq, SectorId, SectorState, SectorUpdate, WorkerState};
use rand::seq::SliceRandom;

use super::super::AppState;
use super::super::params::{INVALID_PARAMS, SERVER_ERROR, error};
use super::types::{AllocateSectorSpec, SectorStateResp};
use super::{add, add_async, sector_error};
use crate::sectors::MinerCandidate;

/// The most sectors one `AllocateSectorsBatch` call may allocate (one transaction, one lock on the miner).
pub const MAX_BATCH: u32 = 1024;

/// Registers the sealing methods.
pub fn register(module: &mut RpcModule<AppState>) -> Result<(), RegisterMethodError> {
    // Go `modules/sealer/sealer.go:135`: `null` when no configured miner fits the spec.
    add(module, "Venus.AllocateSector", |state, mut args| {
        let spec: AllocateSectorSpec = args.next("spec")?;
        args.finish()?;
        Ok(allocate(state, &spec, 1)?.into_iter().next())
    })?;
    // Go `modules/sealer/sealer.go:146` and `modules/impl/sectors/mgr.go:39`: count 0 is an error. Where Go answers
    // `null` for "nothing fits", we answer `[]`: the worker declares `Vec<AllocatedSector>` (worker
    // `rpc/sealer/mod.rs:486`) and cannot decode `null`.
    add(module, "Venus.AllocateSectorsBatch", |state, mut args| {
        let spec: AllocateSectorSpec = args.next("spec")?;
        let count: u32 = args.next("count")?;
        args.finish()?;
        if count == 0 || count > MAX_BATCH {
            return Err(error(
                INVALID_PARAMS,
                format!(
                    "Venus.AllocateSectorsBatch: parameter `count` is {count}; allocate 1 to {MAX_BATCH} sectors per call"
                ),
            ));
        }
        allocate(state, &spec, count)
    })?;
    // Go `modules/sealer/sealer.go:417`: an online sector records the report; a finalized (offline) one is answered
    // as it is, unchanged, so the worker learns it is finalized and cleans up; 11001 when it is in neither state.
    add_async(module, "Venus.ReportState", |state, mut args| {
        let sid: SectorId = args.next("sid")?;
        let req: ReportStateReq = args.next("req")?;
        args.finish()?;
        Ok(async move {
            let sector = match state.sectors.update_async(sid, vec![SectorUpdate::LatestState(req)]).await {
                Ok(updated) => updated,
                Err(e) if e.is_not_found() => {
                    let sectors = Arc::clone(&state.sectors);
                    tokio::task::spawn_blocking(move || sectors.find(WorkerState::Offline, sid))
                        .await
                        .map_err(|join| error(SERVER_ERROR, format!("Venus.ReportState: find sector {sid}: {join}")))?
                        .map_err(sector_error)?
                        .ok_or_else(|| sector_error(e))?
                }
                Err(e) => return Err(sector_error(e)),
            };
            Ok(state_resp(sector))
        })
    })?;
    // Go `modules/sealer/sealer.go:445`: the answer is a nil `core.Meta` (`null`), and the sector's reservation
    // is released.
    add_async(module, "Venus.ReportFinalized", |state, mut args| {
        let sid: SectorId = args.next("sid")?;
        args.finish()?;
        Ok(to_completion("Venus.ReportFinalized", async move {
            state.sectors.finalize_async(sid).await.map_err(sector_error)?;
            state.stores.release(sid);
            Ok(())
        }))
    })?;
    // Go `modules/sealer/sealer.go:471`: as ReportFinalized, with the abort reason recorded.
    add_async(module, "Venus.ReportAborted", |state, mut args| {
        let sid: SectorId = args.next("sid")?;
        let reason: String = args.next("reason")?;
        args.finish()?;
        Ok(to_completion("Venus.ReportAborted", async move {
            state
                .sectors
                .finalize_with_async(sid, vec![SectorUpdate::AbortReason(reason)])
                .await
                .map_err(sector_error)?;
            state.stores.release(sid);
            Ok(())
        }))
    })
}

/// Runs `work` as a task of its own: jsonrpsee drops a method's future when its client disconnects, and a
/// finalize committed by its group must still release the sector's reservation (it lives in memory only).
async fn to_completion<T: Send + 'static>(
    method: &'static str,
    work: impl Future<Output = Result<T, ErrorObjectOwned>> + Send + 'static,
) -> Result<T, ErrorObjectOwned> {
    tokio::spawn(work).await.map_err(|join| error(SERVER_ERROR, format!("{method}: {join}")))?
}

/// Go answers `AbortReason` as a pointer to the sector's field: always a string, empty when not aborted.
fn state_resp(sector: SectorState) -> SectorStateResp {
    SectorStateResp { id: sector.id, finalized: sector.finalized, abort_reason: Some(sector.abort_reason) }
}

/// Allocates `count` sectors from one of the enabled miners the spec allows, tried in random order as Go picks
/// them, whose `[Miners.Sector]` range can hold them; nothing when no miner fits (`AllocateSector` answers null).
fn allocate(state: &AppState, spec: &AllocateSectorSpec, count: u32) -> Result<Vec<AllocatedSector>, ErrorObjectOwned> {
    let mut candidates: Vec<_> =
        state.miners.iter().filter(|m| m.sector.enabled && spec.allows(m.actor, m.seal_proof)).collect();
    candidates.shuffle(&mut rand::rng());
    let candidates = candidates.into_iter().map(|m| MinerCandidate {
        miner: m.actor,
        proof_type: m.seal_proof,
        range: m.sector.number_range(),
        verbose: m.sector.verbose,
    });
    state.sectors.allocate_first(candidates, count).map_err(sector_error)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn work_run_to_completion_finishes_when_its_caller_goes_away() {
        let (done, finished) = tokio::sync::oneshot::channel();
        let gate = Arc::new(tokio::sync::Notify::new());
        let opened = Arc::clone(&gate);
        let caller = tokio::spawn(to_completion("Test.Method", async move {
            opened.notified().await;
            let _ = done.send(());
            Ok(())
        }));
        tokio::task::yield_now().await;
        // The client disconnected: jsonrpsee drops the method's future.
        caller.abort();
        let _ = caller.await;
        gate.notify_one();
        let ran = tokio::time::timeout(Duration::from_secs(5), finished).await.expect("within 5 s");
        assert!(ran.is_ok(), "the work was dropped with its caller");
    }
}
