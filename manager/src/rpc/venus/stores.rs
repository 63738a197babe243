//! Persist-store methods: `Venus.StoreReserveSpace`, `Venus.StoreBasicInfo` (damocles-worker), and
//! `Venus.StoreReleaseReserved`, `Venus.StoreList` (operators).

use jsonrpsee::RpcModule;
use jsonrpsee::core::RegisterMethodError;
use manager_plugin::sector::{SectorId, WorkerState};

use super::super::AppState;
use super::super::params::{SECTOR_NOT_FOUND, SERVER_ERROR, error};
use super::{add, sector_error};

/// Registers the store methods.
pub fn register(module: &mut RpcModule<AppState>) -> Result<(), RegisterMethodError> {
    // Go `modules/sealer/sealer.go:817`: only a sector in progress (online) may reserve space; otherwise 11001.
    add(module, "Venus.StoreReserveSpace", |state, mut args| {
        let sid: SectorId = args.next("sid")?;
        let size: u64 = args.next("size")?;
        let candidates: Option<Vec<String>> = args.next("candidates")?;
        args.finish()?;
        if state.sectors.find(WorkerState::Online, sid).map_err(sector_error)?.is_none() {
            return Err(error(
                SECTOR_NOT_FOUND,
                format!(
                    "Venus.StoreReserveSpace: sector {sid} not found online (only a sector in progress reserves space)"
                ),
            ));
        }
        state.stores.reserve(sid, size, &candidates.unwrap_or_default()).map_err(|e| error(SERVER_ERROR, e.to_string()))
    })?;
    add(module, "Venus.StoreReleaseReserved", |state, mut args| {
        let sid: SectorId = args.next("sid")?;
        args.finish()?;
        Ok(state.stores.release(sid))
    })?;
    // Go `modules/sealer/sealer.go:842`: `null` for an unknown store.
    add(module, "Venus.StoreBasicInfo", |state, mut args| {
        let name: String = args.next("instanceName")?;
        args.finish()?;
        Ok(state.stores.basic_info(&name))
    })?;
    add(module, "Venus.StoreList", |state, args| {
        args.finish()?;
        Ok(state.stores.list())
    })
}
