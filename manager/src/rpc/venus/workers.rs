//! Worker liveness: `Venus.WorkerPing` (called by damocles-worker every few seconds) and
//! `Venus.WorkerPingInfoList`.

use jsonrpsee::RpcModule;
use jsonrpsee::core::RegisterMethodError;

use super::super::AppState;
use super::super::params::{INVALID_PARAMS, error};
use super::add;
use super::types::WorkerInfo;

/// Registers the worker-liveness methods.
pub fn register(module: &mut RpcModule<AppState>) -> Result<(), RegisterMethodError> {
    // Go `modules/sealer/sealer.go:795`: an empty Name or Dest is refused; the answer is a nil `core.Meta`.
    add(module, "Venus.WorkerPing", |state, mut args| {
        let info: WorkerInfo = args.next("winfo")?;
        args.finish()?;
        if info.name.is_empty() {
            return Err(error(INVALID_PARAMS, "Venus.WorkerPing: worker name is required (`Name` is empty)"));
        }
        if info.dest.is_empty() {
            return Err(error(INVALID_PARAMS, "Venus.WorkerPing: worker dest is required (`Dest` is empty)"));
        }
        tracing::debug!(worker = %info.name, dest = %info.dest, "worker ping");
        state.workers.record(info);
        Ok(())
    })?;
    add(module, "Venus.WorkerPingInfoList", |state, args| {
        args.finish()?;
        Ok(state.workers.list())
    })
}
