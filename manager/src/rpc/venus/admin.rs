//! The operator's sector methods (`Venus.Version`, `ListSectors`, `FindSector`, `FindSectorInAllStates`,
//! `ImportSector`, `RestoreSector`). damocles-worker never calls them; `ImportSector` and `RestoreSector` change
//! state and always need the API token.

use jsonrpsee::RpcModule;
use jsonrpsee::core::RegisterMethodError;
use jsonrpsee::types::ErrorObjectOwned;
use manager_plugin::sector::{SectorId, SectorState, WorkerState};

use super::super::AppState;
use super::super::params::{Args, INVALID_PARAMS, error};
use super::{add, listing, sector_error};
use crate::chain::ChainMode;
use crate::sectors::SectorError;

/// Decodes a worker state as the Go manager writes it (`"online"`/`"offline"`, any case).
pub(super) fn worker_state(args: &mut Args, name: &str) -> Result<WorkerState, ErrorObjectOwned> {
    let text: String = args.next(name)?;
    match text.to_ascii_lowercase().as_str() {
        "online" => Ok(WorkerState::Online),
        "offline" => Ok(WorkerState::Offline),
        other => Err(error(INVALID_PARAMS, format!("invalid `{name}` {other:?}: use online or offline"))),
    }
}

/// Registers the operator's sector methods.
pub fn register(module: &mut RpcModule<AppState>) -> Result<(), RegisterMethodError> {
    // The chain mode is part of the answer, so a client sees a mock-chain manager for what it is.
    add(module, "Venus.Version", |state, args| {
        args.finish()?;
        let version = format!("damocles-rs/{}", env!("CARGO_PKG_VERSION"));
        Ok(match state.chain.mode() {
            ChainMode::Mock => format!("{version}+mock-chain"),
            ChainMode::None => version,
        })
    })?;
    add(module, "Venus.ImportSector", |state, mut args| {
        let ws = worker_state(&mut args, "ws")?;
        let sector: Option<SectorState> = args.next("state")?;
        let overwrite: bool = args.next("override")?;
        args.finish()?;
        // Go `modules/sealer/sealer_cli.go:470`: a `null` state imports nothing and answers false.
        match sector {
            Some(sector) => state.sectors.import(ws, sector, overwrite).map_err(sector_error),
            None => Ok(false),
        }
    })?;
    // Go `modules/sealer/sealer_cli.go:38`: the answer is a nil `core.Meta` (`null`).
    add(module, "Venus.RestoreSector", |state, mut args| {
        let sid: SectorId = args.next("sid")?;
        let forced: bool = args.next("forced")?;
        args.finish()?;
        state.sectors.restore(sid, forced).map_err(sector_error)?;
        Ok(())
    })?;
    // Answered whole here only inside a batch or over WebSocket; a single HTTP call is streamed (`listing`).
    add(module, listing::METHOD, |state, args| {
        let (ws, job) = listing::params(args)?;
        state.sectors.list(ws, job).map_err(sector_error)
    })?;
    // Go `modules/sealer/sealer_cli.go:393-409` (`state_mgr.go` `Load`): an unknown sector is an error, not
    // `null` (here 11001, the code of every missing sector).
    add(module, "Venus.FindSector", |state, mut args| {
        let ws = worker_state(&mut args, "ws")?;
        let sid: SectorId = args.next("sid")?;
        args.finish()?;
        let found = state.sectors.find(ws, sid).map_err(sector_error)?;
        found.ok_or_else(|| sector_error(SectorError::NotFound { id: sid, state: Some(ws) }))
    })?;
    add(module, "Venus.FindSectorInAllStates", |state, mut args| {
        let sid: SectorId = args.next("sid")?;
        args.finish()?;
        let found = state.sectors.find_in_all_states(sid).map_err(sector_error)?;
        found.map(|(_, s)| s).ok_or_else(|| sector_error(SectorError::NotFound { id: sid, state: None }))
    })
}
