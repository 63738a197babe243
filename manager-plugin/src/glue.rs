//! What `plugin build` generates code against. Plugin authors never call this module; the generated cdylib
//! wrapper maps each manifest `export` to the author's function through these helpers, which box the author's
//! object behind the [guards](crate::guard) and convert the author's error type.
//!
//! A generated wrapper embeds the [section](crate::abi::section) the host checks (with
//! [`plugin_section!`](crate::plugin_section)) and exports a Rust-ABI `fn() -> PluginModule` (with
//! [`plugin_module!`](crate::plugin_module)); the host resolves the latter only after the fingerprint matched.

use std::fmt::Display;
use std::sync::Arc;

use crate::error::PluginError;
use crate::filestore::{Store, StoreConfig};
use crate::guard::{DropGuard, GuardedDb, GuardedHandler, GuardedStore, guard};
use crate::jsonrpc::JsonRpcHandler;
use crate::kv::{Db, Meta};
use crate::lifecycle::PluginContext;
use crate::sync::{FinalizeEvent, ImportEvent, InitEvent, RestoreEvent, SectorEvent, UpdateEvent};

/// Signature of the Rust-ABI module symbol ([`MODULE_SYMBOL`](crate::abi::MODULE_SYMBOL)).
pub type ModuleFn = fn() -> PluginModule;

/// Exports the Rust-ABI module symbol ([`MODULE_SYMBOL`](crate::abi::MODULE_SYMBOL)) returning `$module`, typed
/// as [`ModuleFn`]. Used by the code `plugin build` generates, so the symbol's shape is covered by the SDK digest.
#[macro_export]
macro_rules! plugin_module {
    ($module:expr) => {
        /// Rust-ABI entry points; resolved by the host only after the fingerprint matched.
        #[unsafe(no_mangle)]
        pub fn damocles_plugin_module() -> $crate::glue::PluginModule {
            $module
        }
        const _: $crate::glue::ModuleFn = damocles_plugin_module;
    };
}

/// A plugin's entry points, each already guarded.
pub struct PluginModule {
    /// Installs log forwarding and counters, then runs the author's `onInit` (if any).
    pub init: fn(&PluginContext) -> Result<(), PluginError>,
    /// Runs the author's `onShutdown` (if any).
    pub shutdown: fn() -> Result<(), PluginError>,
    /// The kind-specific exports.
    pub exports: Exports,
}

/// Kind-specific entry points.
pub enum Exports {
    /// A KVStore constructor.
    KvStore {
        /// Builds a database from `[Common.DB.Plugin.Meta]`.
        constructor: fn(&Meta) -> Result<Box<dyn Db>, PluginError>,
    },
    /// A FileStore constructor.
    FileStore {
        /// Builds a store instance from its configuration.
        constructor: fn(StoreConfig) -> Result<Box<dyn Store>, PluginError>,
    },
    /// SyncSectorState hooks.
    SyncSectorState(SyncHooks),
    /// A JSON-RPC handler factory.
    RegisterJsonRpc {
        /// Returns the namespace and its handler.
        handler: HandlerFn,
    },
}

/// A RegisterJsonRpc entry point: returns the namespace and its handler.
pub type HandlerFn = fn() -> Result<(String, Box<dyn JsonRpcHandler>), PluginError>;

/// A hook entry point.
pub type Hook<E> = Option<fn(&E) -> Result<(), PluginError>>;

/// The SyncSectorState hooks a plugin exports; absent hooks ignore their events.
#[derive(Default, Clone, Copy)]
pub struct SyncHooks {
    /// `OnImport`.
    pub on_import: Hook<ImportEvent>,
    /// `OnInit`.
    pub on_init: Hook<InitEvent>,
    /// `OnUpdate`.
    pub on_update: Hook<UpdateEvent>,
    /// `OnFinalize`.
    pub on_finalize: Hook<FinalizeEvent>,
    /// `OnRestore`.
    pub on_restore: Hook<RestoreEvent>,
}

impl SyncHooks {
    /// Hands `event` to the matching hook; `Ok` when the plugin does not export it.
    pub fn deliver(&self, event: &SectorEvent) -> Result<(), PluginError> {
        fn call<E>(hook: Hook<E>, e: &E) -> Result<(), PluginError> {
            hook.map_or(Ok(()), |h| h(e))
        }
        match event {
            SectorEvent::Import(e) => call(self.on_import, e),
            SectorEvent::Init(e) => call(self.on_init, e),
            SectorEvent::Update(e) => call(self.on_update, e),
            SectorEvent::Finalize(e) => call(self.on_finalize, e),
            SectorEvent::Restore(e) => call(self.on_restore, e),
        }
    }
}

/// Generated `init`: connects counters and logging, then runs the author's `onInit`.
pub fn init<E: Display>(
    ctx: &PluginContext,
    on_init: impl FnOnce(&PluginContext) -> Result<(), E>,
) -> Result<(), PluginError> {
    crate::guard::set_stats(ctx.stats.clone());
    crate::logging::install(Arc::clone(&ctx.log_sink));
    hook(|| on_init(ctx))
}

/// Generated hook or lifecycle call: guards `f` and converts its error.
pub fn hook<E: Display>(f: impl FnOnce() -> Result<(), E>) -> Result<(), PluginError> {
    guard(|| f().map_err(PluginError::msg))
}

/// Generated KVStore constructor.
pub fn kv_constructor<D: Db + 'static, E: Display>(
    f: impl FnOnce() -> Result<D, E>,
) -> Result<Box<dyn Db>, PluginError> {
    guard(|| f().map(|db| Box::new(GuardedDb(DropGuard::new(db))) as Box<dyn Db>).map_err(PluginError::msg))
}

/// Generated FileStore constructor.
pub fn file_store_constructor<S: Store + 'static, E: Display>(
    f: impl FnOnce() -> Result<S, E>,
) -> Result<Box<dyn Store>, PluginError> {
    guard(|| f().map(|s| Box::new(GuardedStore(DropGuard::new(s))) as Box<dyn Store>).map_err(PluginError::msg))
}

/// Generated RegisterJsonRpc handler factory.
pub fn rpc_handler<H: JsonRpcHandler + 'static, E: Display>(
    f: impl FnOnce() -> Result<(String, H), E>,
) -> Result<(String, Box<dyn JsonRpcHandler>), PluginError> {
    guard(|| {
        f().map(|(ns, h)| (ns, Box::new(GuardedHandler(DropGuard::new(h))) as Box<dyn JsonRpcHandler>))
            .map_err(PluginError::msg)
    })
}
