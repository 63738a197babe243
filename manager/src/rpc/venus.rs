//! The `Venus` namespace: the core API damocles-worker speaks (method names and positional parameter shapes as
//! the Go manager's, PascalCase JSON).

use jsonrpsee::RpcModule;
use jsonrpsee::types::ErrorObjectOwned;
use manager_plugin::sector::{AllocatedSector, ReportStateReq, SectorId, SectorState, SectorUpdate, WorkerState};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::params::{Args, SECTOR_NOT_FOUND, SERVER_ERROR, error};
use crate::filestore::FileStoreError;
use crate::sectors::{JobFilter, MinerCandidate, SectorError};

/// `AllocateSector`'s request: which miners and proof types the worker accepts (empty = any).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocateSectorSpec {
    /// Acceptable miners.
    pub allowed_miners: Vec<u64>,
    /// Acceptable seal proof types.
    pub allowed_proof_types: Vec<i64>,
}

/// `ReportState`'s answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SectorStateResp {
    /// The sector.
    #[serde(rename = "ID")]
    pub id: SectorId,
    /// Whether it is finalized.
    pub finalized: bool,
    /// Why it was aborted, if it was.
    pub abort_reason: Option<String>,
}

/// `WorkerPing`'s payload, as far as the manager uses it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct WorkerInfo {
    /// Worker instance name.
    pub name: String,
    /// Anything else the worker reports.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

pub use super::worker_pings::{WorkerPingInfo, WorkerPings};

/// The empty object the Go manager returns as `Meta`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Empty {}

/// Decodes a worker state as the Go manager writes it (`"online"`/`"offline"`, any case).
fn worker_state(args: &mut Args, name: &str) -> Result<WorkerState, ErrorObjectOwned> {
    let text: String = args.next(name)?;
    match text.to_ascii_lowercase().as_str() {
        "online" => Ok(WorkerState::Online),
        "offline" => Ok(WorkerState::Offline),
        other => {
            Err(error(super::params::INVALID_PARAMS, format!("invalid `{name}` {other:?}: use online or offline")))
        }
    }
}

fn sector_error(err: SectorError) -> ErrorObjectOwned {
    let code = if err.is_not_found() { SECTOR_NOT_FOUND } else { SERVER_ERROR };
    error(code, err.to_string())
}

fn store_error(err: FileStoreError) -> ErrorObjectOwned {
    error(SERVER_ERROR, err.to_string())
}

/// The most sectors one `AllocateSectorsBatch` call may allocate (one transaction, one lock on the miner).
pub const MAX_BATCH: u32 = 1024;

/// Registers every `Venus.*` method on `module`.
pub fn register(module: &mut RpcModule<AppState>) -> Result<(), jsonrpsee::core::RegisterMethodError> {
    add(module, "Venus.Version", |_, args| {
        args.finish()?;
        Ok(format!("damocles-rs/{}", env!("CARGO_PKG_VERSION")))
    })?;
    add(module, "Venus.AllocateSector", |state, mut args| {
        let spec: AllocateSectorSpec = args.next("spec")?;
        args.finish()?;
        Ok(allocate(state, &spec, 1)?.into_iter().next())
    })?;
    add(module, "Venus.AllocateSectorsBatch", |state, mut args| {
        let spec: AllocateSectorSpec = args.next("spec")?;
        let count: u32 = args.next("count")?;
        args.finish()?;
        if count > MAX_BATCH {
            return Err(error(
                super::params::INVALID_PARAMS,
                format!("Venus.AllocateSectorsBatch: parameter `count` {count} exceeds the maximum {MAX_BATCH}"),
            ));
        }
        allocate(state, &spec, count)
    })?;
    add(module, "Venus.ReportState", |state, mut args| {
        let sid: SectorId = args.next("sid")?;
        let req: ReportStateReq = args.next("req")?;
        args.finish()?;
        let updated = state.sectors.update(sid, vec![SectorUpdate::LatestState(req)]).map_err(sector_error)?;
        Ok(SectorStateResp {
            id: updated.id,
            finalized: updated.finalized,
            abort_reason: (!updated.abort_reason.is_empty()).then_some(updated.abort_reason),
        })
    })?;
    add(module, "Venus.ReportFinalized", |state, mut args| {
        let sid: SectorId = args.next("sid")?;
        args.finish()?;
        state.sectors.finalize(sid).map_err(sector_error)?;
        Ok(Empty {})
    })?;
    add(module, "Venus.ReportAborted", |state, mut args| {
        let sid: SectorId = args.next("sid")?;
        let reason: String = args.next("reason")?;
        args.finish()?;
        state.sectors.finalize_with(sid, vec![SectorUpdate::AbortReason(reason)]).map_err(sector_error)?;
        Ok(Empty {})
    })?;
    add(module, "Venus.WorkerPing", |state, mut args| {
        let info: WorkerInfo = args.next("winfo")?;
        args.finish()?;
        tracing::debug!(worker = %info.name, "worker ping");
        state.workers.record(info.name);
        Ok(Empty {})
    })?;
    add(module, "Venus.WorkerPingInfoList", |state, args| {
        args.finish()?;
        Ok(state.workers.list())
    })?;
    add(module, "Venus.StoreReserveSpace", |state, mut args| {
        let sid: SectorId = args.next("sid")?;
        let size: u64 = args.next("size")?;
        let candidates: Option<Vec<String>> = args.next("candidates")?;
        args.finish()?;
        state.stores.reserve(sid, size, &candidates.unwrap_or_default()).map_err(store_error)
    })?;
    add(module, "Venus.StoreReleaseReserved", |state, mut args| {
        let sid: SectorId = args.next("sid")?;
        args.finish()?;
        Ok(state.stores.release(sid))
    })?;
    add(module, "Venus.StoreBasicInfo", |state, mut args| {
        let name: String = args.next("instanceName")?;
        args.finish()?;
        Ok(state.stores.basic_info(&name))
    })?;
    add(module, "Venus.StoreList", |state, args| {
        args.finish()?;
        Ok(state.stores.list())
    })?;
    add(module, "Venus.ImportSector", |state, mut args| {
        let ws = worker_state(&mut args, "ws")?;
        let sector: SectorState = args.next("state")?;
        let overwrite: bool = args.next("override")?;
        args.finish()?;
        state.sectors.import(ws, sector, overwrite).map_err(sector_error)
    })?;
    add(module, "Venus.RestoreSector", |state, mut args| {
        let sid: SectorId = args.next("sid")?;
        let forced: bool = args.next("forced")?;
        args.finish()?;
        state.sectors.restore(sid, forced).map_err(sector_error)?;
        Ok(Empty {})
    })?;
    add(module, "Venus.ListSectors", |state, mut args| {
        let ws = worker_state(&mut args, "ws")?;
        let job: Option<u8> = args.next("job")?;
        args.finish()?;
        let job = JobFilter::from_code(job.unwrap_or(0))
            .ok_or_else(|| error(super::params::INVALID_PARAMS, "invalid `job`: use 0 (all) to 4 (unseal)"))?;
        state.sectors.list(ws, job).map_err(sector_error)
    })?;
    add(module, "Venus.FindSector", |state, mut args| {
        let ws = worker_state(&mut args, "ws")?;
        let sid: SectorId = args.next("sid")?;
        args.finish()?;
        state.sectors.find(ws, sid).map_err(sector_error)
    })?;
    add(module, "Venus.FindSectorInAllStates", |state, mut args| {
        let sid: SectorId = args.next("sid")?;
        args.finish()?;
        Ok(state.sectors.find_in_all_states(sid).map_err(sector_error)?.map(|(_, s)| s))
    })?;
    Ok(())
}

/// Allocates `count` sectors from the first enabled miner the spec allows whose `[Miners.Sector]` range can
/// hold them (none: an empty answer, which `AllocateSector` turns into null).
fn allocate(state: &AppState, spec: &AllocateSectorSpec, count: u32) -> Result<Vec<AllocatedSector>, ErrorObjectOwned> {
    let candidates = state.miners.iter().filter(|m| {
        m.sector.enabled
            && (spec.allowed_miners.is_empty() || spec.allowed_miners.contains(&m.actor))
            && (spec.allowed_proof_types.is_empty() || spec.allowed_proof_types.contains(&m.seal_proof))
    });
    let candidates = candidates.map(|m| MinerCandidate {
        miner: m.actor,
        proof_type: m.seal_proof,
        range: m.sector.number_range(),
        verbose: m.sector.verbose,
    });
    state.sectors.allocate_first(candidates, count).map_err(sector_error)
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
