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
    add(module, "Venus.Version", |_, args| {
        args.finish()?;
        Ok(format!("damocles-rs/{}", env!("CARGO_PKG_VERSION")))
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
    })
}
