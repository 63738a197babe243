//! The methods of damocles-worker's `Sealer` trait that damocles-rs deliberately does not implement. Each is
//! registered so the worker gets a clear answer instead of a generic "method not found":
//!
//! - snap-up, rebuild and unseal (`AllocateSanpUpSector`, `SubmitSnapUpProof`, `AllocateRebuildSector`,
//!   `AllocateUnsealSector`, `AchieveUnsealSector`, `AcquireUnsealDest`) need a market and on-chain sector
//!   info that neither a chain-less manager nor the mock chain has: they answer [`NOT_IMPLEMENTED`] with a
//!   message naming the method;
//! - the WindowPoSt job queue (`WdPoSt*`) answers "method not found" (-32601), which damocles-worker reads as
//!   "the manager's worker-prover is off" (worker `sealing/sealing_thread/planner/wdpost.rs:357`).

use jsonrpsee::RpcModule;
use jsonrpsee::core::RegisterMethodError;

use super::super::AppState;
use super::super::params::error;

/// The JSON-RPC error code of a worker method damocles-rs does not implement (not -32001, jsonrpsee's code for
/// any unknown error; like every code but 11001, the worker treats it as temporary).
pub const NOT_IMPLEMENTED: i32 = 12002;
/// JSON-RPC "method not found".
pub const METHOD_NOT_FOUND: i32 = -32601;

/// Snap-up, rebuild and unseal (worker `rpc/sealer/mod.rs:572-630`).
pub const UNIMPLEMENTED_METHODS: [&str; 6] = [
    "Venus.AllocateSanpUpSector",
    "Venus.SubmitSnapUpProof",
    "Venus.AllocateRebuildSector",
    "Venus.AllocateUnsealSector",
    "Venus.AchieveUnsealSector",
    "Venus.AcquireUnsealDest",
];

/// The WindowPoSt job-queue methods (worker `rpc/sealer/mod.rs:632`-`653`).
pub const WDPOST_METHODS: [&str; 3] =
    ["Venus.WdPoStAllocateJobs", "Venus.WdPoStHeartbeatJobs", "Venus.WdPoStFinishJob"];

/// The message of an unimplemented method's error.
pub fn not_implemented_message(method: &str) -> String {
    format!(
        "{method}: snap-up, rebuild and unseal are not implemented by this manager (damocles-rs), with or without \
         [MockChain]; configure the worker's sealing threads for sealing only (CC or deals), or run these jobs \
         against the Go damocles-manager"
    )
}

/// Registers every deliberately unsupported method.
pub fn register(module: &mut RpcModule<AppState>) -> Result<(), RegisterMethodError> {
    for method in UNIMPLEMENTED_METHODS {
        module.register_method(method, move |_, _, _| {
            Err::<(), _>(error(NOT_IMPLEMENTED, not_implemented_message(method)))
        })?;
    }
    for method in WDPOST_METHODS {
        module.register_method(method, move |_, _, _| {
            let message =
                format!("Method not found: {method} (damocles-rs has no WindowPoSt job queue; worker-prover is off)");
            Err::<(), _>(error(METHOD_NOT_FOUND, message))
        })?;
    }
    Ok(())
}
