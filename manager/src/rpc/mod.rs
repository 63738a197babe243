//! The JSON-RPC API: [`venus`] (the core namespace workers use), [`plugin_api`] (`Plugins.List` and plugin
//! namespaces), [`piece`] (piece HTTP), all served by [`server`] behind [`auth`] (the bearer token, or a trusted network for worker calls).

pub mod auth;
pub mod connections;
pub mod healthcheck;
pub mod params;
pub mod piece;
pub mod plugin_api;
pub mod refused_peers;
pub mod server;
pub mod venus;
pub mod worker_pings;

use std::sync::Arc;

use jsonrpsee::RpcModule;

use crate::chain::Chain;
use crate::config::MinerConfig;
use crate::filestore::StoreManager;
use crate::plugins::PluginRegistry;
use crate::sectors::{DeliveryControl, StateManager};

pub use server::{RpcServer, ServerLimits, start};

/// What the RPC methods work on.
pub struct AppState {
    /// Sector metadata.
    pub sectors: Arc<StateManager>,
    /// Piece and persist stores.
    pub stores: Arc<StoreManager>,
    /// Loaded plugins.
    pub registry: Arc<PluginRegistry>,
    /// Configured miners (what `AllocateSector` hands out).
    pub miners: Vec<MinerConfig>,
    /// Worker liveness.
    pub workers: venus::WorkerPings,
    /// Operator requests to the running SyncSectorState delivery (`Plugins.SkipSyncEvent`).
    pub delivery: DeliveryControl,
    /// The chain the sealing methods use (`[MockChain]`).
    pub chain: Arc<dyn Chain>,
}

/// The full method set: `Venus.*`, `Plugins.List`, and every mountable plugin namespace.
pub fn build_module(state: AppState) -> Result<RpcModule<AppState>, jsonrpsee::core::RegisterMethodError> {
    let registry = Arc::clone(&state.registry);
    let mut module = RpcModule::new(state);
    venus::register(&mut module)?;
    plugin_api::register(&mut module)?;
    plugin_api::mount_plugins(&mut module, &registry);
    Ok(module)
}
