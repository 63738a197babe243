//! Where a loaded plugin's code runs: mapped into the manager (a `.so`, its [`PluginModule`]) or in a child
//! process ([`ProcessPlugin`]). The registry's records call through this, so the rest of the manager holds the same
//! SDK objects either way.

use std::path::Path;
use std::sync::Arc;

use manager_plugin::PluginError;
use manager_plugin::filestore::{Store, StoreConfig};
use manager_plugin::glue::{Exports, PluginModule, SyncHooks};
use manager_plugin::jsonrpc::JsonRpcHandler;
use manager_plugin::kv::{Db, Meta};
use manager_plugin::lifecycle::PluginContext;
use manager_plugin::manifest::{ExtPoint, Kind, Manifest};
use manager_plugin::sync::SectorEvent;

use crate::sectors::StoredEvent;

use super::process::{BatchPace, ProcessPlugin, one_delivered};

/// A RegisterJsonRpc plugin's namespace and handler.
pub type NamespacedHandler = (String, Box<dyn JsonRpcHandler>);

/// A plugin's code: in process or in a child process.
pub enum Backend {
    /// A mapped `.so`.
    Library(PluginModule),
    /// A child process.
    Process(Arc<ProcessPlugin>),
    /// A process plugin that could not be started (its record is `Disabled` with the reason).
    NotStarted,
}

impl Backend {
    /// Runs the plugin's `onInit`.
    pub fn init(&self, ctx: &PluginContext) -> Result<(), PluginError> {
        match self {
            Backend::Library(module) => (module.init)(ctx),
            Backend::Process(process) => process.init(&ctx.plugins_dir),
            Backend::NotStarted => Err(PluginError::msg("the plugin process is not running")),
        }
    }

    /// Runs the plugin's `onShutdown`.
    pub fn shutdown(&self) -> Result<(), PluginError> {
        match self {
            Backend::Library(module) => (module.shutdown)(),
            Backend::Process(process) => process.shutdown(),
            Backend::NotStarted => Ok(()),
        }
    }

    /// KVStore constructor; `None` when the plugin is of another kind.
    pub fn open_db(&self, meta: &Meta, kind: Kind) -> Option<Result<Box<dyn Db>, PluginError>> {
        match self {
            Backend::Library(PluginModule { exports: Exports::KvStore { constructor }, .. }) => Some(constructor(meta)),
            Backend::Process(process) if kind == Kind::KvStore => Some(process.open_db(meta)),
            _ => None,
        }
    }

    /// FileStore constructor; `None` when the plugin is of another kind.
    pub fn open_store(&self, config: StoreConfig, kind: Kind) -> Option<Result<Box<dyn Store>, PluginError>> {
        match self {
            Backend::Library(PluginModule { exports: Exports::FileStore { constructor }, .. }) => {
                Some(constructor(config))
            }
            Backend::Process(process) if kind == Kind::FileStore => Some(process.open_store(config)),
            _ => None,
        }
    }

    /// SyncSectorState delivery; `None` when the plugin is of another kind.
    pub fn sync_delivery(&self, manifest: &Manifest) -> Option<SyncDelivery> {
        match self {
            Backend::Library(PluginModule { exports: Exports::SyncSectorState(hooks), .. }) => {
                Some(SyncDelivery::Hooks(*hooks))
            }
            Backend::Process(process) if manifest.kind == Kind::SyncSectorState => {
                let exported = [
                    ExtPoint::OnImport,
                    ExtPoint::OnInit,
                    ExtPoint::OnUpdate,
                    ExtPoint::OnFinalize,
                    ExtPoint::OnRestore,
                ]
                .into_iter()
                .filter(|p| manifest.export_for(*p).is_some())
                .collect();
                Some(SyncDelivery::Process { process: Arc::clone(process), exported, pace: Arc::default() })
            }
            _ => None,
        }
    }

    /// RegisterJsonRpc handler; `None` when the plugin is of another kind.
    pub fn rpc_handler(&self, kind: Kind) -> Option<Result<NamespacedHandler, PluginError>> {
        match self {
            Backend::Library(PluginModule { exports: Exports::RegisterJsonRpc { handler }, .. }) => Some(handler()),
            Backend::Process(process) if kind == Kind::RegisterJsonRpc => Some(process.rpc_handler()),
            _ => None,
        }
    }

    /// `in-process` or `process`, for listings.
    pub fn mode(&self) -> &'static str {
        match self {
            Backend::Library(_) => "in-process",
            Backend::Process(_) | Backend::NotStarted => "process",
        }
    }

    /// The supervised process plugin, if this is one that started.
    pub fn process(&self) -> Option<&Arc<ProcessPlugin>> {
        match self {
            Backend::Process(process) => Some(process),
            Backend::Library(_) | Backend::NotStarted => None,
        }
    }

    /// Why the plugin's process does not serve now, if it is one and it does not.
    pub fn ended(&self) -> Option<String> {
        match self {
            Backend::Library(_) | Backend::NotStarted => None,
            Backend::Process(process) => process.ended(),
        }
    }
}

/// How a SyncSectorState plugin's events reach its hooks.
#[derive(Clone)]
pub enum SyncDelivery {
    /// The hooks of a mapped `.so`.
    Hooks(SyncHooks),
    /// A process plugin, with the hooks its manifest exports.
    Process {
        /// The process.
        process: Arc<ProcessPlugin>,
        /// The exported hooks.
        exported: Vec<ExtPoint>,
        /// How many events one call carries.
        pace: Arc<BatchPace>,
    },
}

impl SyncDelivery {
    /// Hands `event` to the matching hook; `Ok` when the plugin does not export it.
    pub fn deliver(&self, event: &SectorEvent) -> Result<(), PluginError> {
        match self {
            SyncDelivery::Hooks(hooks) => hooks.deliver(event),
            SyncDelivery::Process { process, exported, .. } => {
                if exported.contains(&event.ext_point()) {
                    process.deliver(event)
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Most events one [`deliver_batch`](Self::deliver_batch) call takes: one in process (a call costs nothing
    /// to batch away), all offered to a process plugin ([`ProcessPlugin::deliver_batch`] bounds them itself).
    pub fn batch_limit(&self) -> usize {
        match self {
            SyncDelivery::Hooks(_) => 1,
            SyncDelivery::Process { .. } => usize::MAX,
        }
    }

    /// Hands the leading `events` to their hooks, in order, in as few calls as the plugin allows (one call per
    /// event in process; one call for many to a process plugin); says how many were handled (an event of a hook
    /// the plugin does not export counts as handled) and why the next one failed, if one did.
    pub fn deliver_batch(&self, events: &[&StoredEvent]) -> (usize, Option<PluginError>) {
        let SyncDelivery::Process { process, exported, pace } = self else {
            return events.first().map_or((0, None), |stored| one_delivered(self.deliver(&stored.event)));
        };
        // What is sent, and where each sent event stands in `events`.
        let (at, sent): (Vec<usize>, Vec<&StoredEvent>) =
            events.iter().enumerate().filter(|(_, stored)| exported.contains(&stored.event.ext_point())).unzip();
        if sent.is_empty() {
            return (events.len(), None);
        }
        let (handled, error) = process.deliver_batch(&sent, pace);
        // Past the handled ones up to the next event that was sent and not handled (the skipped ones between
        // count as handled); all of them when every sent event was handled.
        (at.get(handled).copied().unwrap_or(events.len()), error)
    }

    /// Whether the plugin exports the hook of `point`.
    pub fn exports(&self, point: ExtPoint) -> bool {
        match self {
            SyncDelivery::Hooks(hooks) => match point {
                ExtPoint::OnImport => hooks.on_import.is_some(),
                ExtPoint::OnInit => hooks.on_init.is_some(),
                ExtPoint::OnUpdate => hooks.on_update.is_some(),
                ExtPoint::OnFinalize => hooks.on_finalize.is_some(),
                ExtPoint::OnRestore => hooks.on_restore.is_some(),
                _ => false,
            },
            SyncDelivery::Process { exported, .. } => exported.contains(&point),
        }
    }
}

/// Whether `file` is a process plugin by its name: `plugin-<name>` without an extension (a `.so` is loaded in
/// process; anything else in the plugins dir is ignored).
pub fn is_process_plugin_file(file: &Path) -> bool {
    file.extension().is_none() && file.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("plugin-"))
}
