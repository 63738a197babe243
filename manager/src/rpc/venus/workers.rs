//! Worker liveness: `Venus.WorkerPing` (called by damocles-worker every few seconds) and
//! `Venus.WorkerPingInfoList`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

use jsonrpsee::RpcModule;
use jsonrpsee::core::RegisterMethodError;

use super::super::AppState;
use super::super::params::{INVALID_PARAMS, error};
use super::add;
use super::types::{WorkerInfo, WorkerPingInfo};

/// Last ping of each worker, by name (in memory: workers ping every few seconds).
#[derive(Default)]
pub struct WorkerPings(Mutex<HashMap<String, WorkerPingInfo>>);

impl WorkerPings {
    fn record(&self, info: WorkerInfo) {
        let last_ping = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        if let Ok(mut pings) = self.0.lock() {
            pings.insert(info.name.clone(), WorkerPingInfo { info, last_ping });
        }
    }

    /// Every worker that pinged, ordered by name.
    pub fn list(&self) -> Vec<WorkerPingInfo> {
        let Ok(pings) = self.0.lock() else { return Vec::new() };
        let mut list: Vec<WorkerPingInfo> = pings.values().cloned().collect();
        list.sort_by(|a, b| a.info.name.cmp(&b.info.name));
        list
    }
}

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
