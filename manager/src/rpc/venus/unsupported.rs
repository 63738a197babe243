//! The methods of damocles-worker's `Sealer` trait that damocles-rs deliberately does not implement. Each is
//! registered so the worker gets a clear answer instead of a generic "method not found":
//!
//! - chain-facing methods (tickets, seeds, pre-commit and prove-commit messages, deals, snap-up, rebuild,
//!   unseal) need a Filecoin chain, messager and market connection, which this manager does not have: they answer
//!   [`CHAIN_REQUIRED`] with a message naming the method;
//! - the WindowPoSt job queue (`WdPoSt*`) answers "method not found" (-32601), which damocles-worker reads as
//!   "the manager's worker-prover is off" (worker `sealing/sealing_thread/planner/wdpost.rs:357`).

use jsonrpsee::RpcModule;
use jsonrpsee::core::RegisterMethodError;

use super::super::AppState;
use super::super::params::error;

/// The JSON-RPC error code of a method that needs a chain connection.
pub const CHAIN_REQUIRED: i32 = -32001;
/// JSON-RPC "method not found".
pub const METHOD_NOT_FOUND: i32 = -32601;

/// The chain-facing methods: the worker's trait (`rpc/sealer/mod.rs:493`-`630`) plus Go's legacy
/// `SubmitPersisted` (Go `core/api.go:50`).
pub const CHAIN_METHODS: [&str; 15] = [
    "Venus.AcquireDeals",
    "Venus.AssignTicket",
    "Venus.SubmitPreCommit",
    "Venus.PollPreCommitState",
    "Venus.SubmitPersisted",
    "Venus.SubmitPersistedEx",
    "Venus.WaitSeed",
    "Venus.SubmitProof",
    "Venus.PollProofState",
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

/// The message of a chain-facing method's error.
pub fn chain_required_message(method: &str) -> String {
    format!(
        "{method} needs a chain connection (Filecoin node, messager, market), which this manager (damocles-rs) \
         does not have; it allocates sectors and keeps their state only. Run the chain-facing sealing steps \
         against the Go damocles-manager"
    )
}

/// Registers every deliberately unsupported method.
pub fn register(module: &mut RpcModule<AppState>) -> Result<(), RegisterMethodError> {
    for method in CHAIN_METHODS {
        module.register_method(method, move |_, _, _| {
            Err::<(), _>(error(CHAIN_REQUIRED, chain_required_message(method)))
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
