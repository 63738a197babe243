//! The plugin registry: loads every `*.so` of the plugins directory and starts every process plugin
//! (`plugin-<name>` executables, [`super::process`]), initializes the plugins in load order, answers lookups by
//! kind and name, reports their state and counters, and shuts them down in reverse order.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use manager_plugin::filestore::{Store, StoreConfig};
use manager_plugin::jsonrpc::JsonRpcHandler;
use manager_plugin::kv::{Db, Meta};
use manager_plugin::lifecycle::{CallCounts, CallStats, PluginContext};
use manager_plugin::manifest::{Kind, Manifest};
use manager_plugin::{PluginError, PluginState};
use plugin_image::limits::FileLimits;
use serde::{Deserialize, Serialize};

use super::backend::{Backend, SyncDelivery, is_process_plugin_file};
use super::host_adapter::{HostDb, HostStore, WriteFence};
use super::library::{self, LoadError};
use super::log_sink::PluginLogSink;
use super::probe;
use super::process::{ProcessOptions, ProcessPlugin};

mod control;

pub use control::{Control, ControlRefused};

/// Why the plugins directory itself could not be read. The message carries the OS error, so it is deliberately
/// not a `source()` as well: an error chain would print it twice.
#[derive(Debug, thiserror::Error)]
#[error("plugins dir {dir}: {io_error} (set [Common.Plugins] Dir to an existing directory, or to \"\" for no plugins)")]
pub struct PluginsDirError {
    /// The configured directory.
    pub dir: PathBuf,
    /// The I/O error.
    pub io_error: std::io::Error,
}

/// Delivery lag of a SyncSectorState plugin, reported by the sector event deliverer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SyncLag {
    /// Events not yet delivered to this plugin.
    pub pending: u64,
    /// The last delivery error, if the last attempt failed.
    pub last_error: Option<String>,
    /// `idle` (nothing pending), `delivering`, `failing` (retrying `last_error`'s event) or `hung` (a hook call
    /// running past `[Common.Plugins] SyncHungAfterSecs`).
    pub state: String,
    /// While `hung`: when the running hook call began, Unix seconds.
    pub hung_since: Option<u64>,
    /// While `hung`: the event (outbox seq) the running call delivers. (While `failing`, `last_error` starts
    /// with `event <seq>`.) `util plugins skip NAME SEQ` takes this seq.
    pub hung_event: Option<u64>,
}

/// One loaded (or started) plugin.
pub struct PluginRecord {
    manifest: Manifest,
    file: PathBuf,
    build_time: String,
    backend: Backend,
    stats: Arc<CallStats>,
    status: Mutex<Status>,
    /// Raised when the plugin panicked in a KV write (see `host_adapter`).
    fence: Arc<WriteFence>,
}

struct Status {
    state: PluginState,
    last_error: Option<String>,
    sync_lag: Option<SyncLag>,
    /// `onInit` succeeded, so `onShutdown` is owed exactly once.
    initialized: bool,
}

impl PluginRecord {
    /// A record of a plugin whose code is `backend`, counted by `stats`, not yet initialized.
    pub(super) fn new(
        manifest: Manifest,
        file: PathBuf,
        build_time: String,
        backend: Backend,
        stats: Arc<CallStats>,
    ) -> PluginRecord {
        PluginRecord {
            manifest,
            file,
            build_time,
            backend,
            stats,
            fence: Arc::default(),
            status: Mutex::new(Status {
                state: PluginState::Uninitialized,
                last_error: None,
                sync_lag: None,
                initialized: false,
            }),
        }
    }

    /// `in-process`, or `process` for a process plugin.
    pub fn mode(&self) -> &'static str {
        self.backend.mode()
    }

    /// The supervised process, for a process plugin that started.
    pub fn process(&self) -> Option<&Arc<ProcessPlugin>> {
        self.backend.process()
    }

    /// The plugin's manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// `<Kind>/<name>`, as used in logs.
    pub fn label(&self) -> String {
        format!("{}/{}", self.manifest.kind, self.manifest.name)
    }

    /// The file it was loaded from.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Current state (`Disabled` once a KV write panicked: see [`WriteFence`]). A process plugin restarting,
    /// failed or disabled by the operator stays `Ready` here, so the daemon wires it at start: its proxies fail
    /// fast, saying why, while no process serves, and serve again once one does.
    pub fn state(&self) -> PluginState {
        if self.fence.reason().is_some() {
            return PluginState::Disabled;
        }
        self.status().state
    }

    /// Call counters.
    pub fn counts(&self) -> CallCounts {
        self.stats.snapshot()
    }

    fn status(&self) -> MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Marks the plugin Disabled with `reason` (e.g. its JSON-RPC namespace collides).
    pub fn disable(&self, reason: String) {
        tracing::warn!(plugin = %self.label(), "plugin disabled: {reason}");
        let mut status = self.status();
        status.state = PluginState::Disabled;
        status.last_error = Some(reason);
    }

    /// Records delivery lag (SyncSectorState plugins).
    pub fn set_sync_lag(&self, lag: SyncLag) {
        self.status().sync_lag = Some(lag);
    }

    /// Builds a database (KVStore plugins).
    pub fn open_db(&self, meta: &Meta) -> Result<Box<dyn Db>, PluginError> {
        let db = self.backend.open_db(meta, self.manifest.kind).ok_or_else(|| self.wrong_kind(Kind::KvStore))?;
        db.map(|db| Box::new(HostDb::new(db, &self.manifest.name, Arc::clone(&self.fence))) as Box<dyn Db>)
    }

    /// Builds a store instance (FileStore plugins).
    pub fn open_store(&self, config: StoreConfig) -> Result<Box<dyn Store>, PluginError> {
        let store =
            self.backend.open_store(config, self.manifest.kind).ok_or_else(|| self.wrong_kind(Kind::FileStore))?;
        store.map(|s| Box::new(HostStore::new(s, &self.manifest.name)) as Box<dyn Store>)
    }

    /// How events reach the hooks (SyncSectorState plugins).
    pub fn sync_delivery(&self) -> Result<SyncDelivery, PluginError> {
        self.backend.sync_delivery(&self.manifest).ok_or_else(|| self.wrong_kind(Kind::SyncSectorState))
    }

    /// The namespace and handler (RegisterJsonRpc plugins).
    pub fn rpc_handler(&self) -> Result<(String, Box<dyn JsonRpcHandler>), PluginError> {
        self.backend.rpc_handler(self.manifest.kind).ok_or_else(|| self.wrong_kind(Kind::RegisterJsonRpc))?
    }

    fn wrong_kind(&self, wanted: Kind) -> PluginError {
        PluginError::msg(format!("plugin {} is a {} plugin, not {wanted}", self.label(), self.manifest.kind))
    }

    fn info(&self) -> PluginInfo {
        let process = self.backend.process().map(|p| p.status());
        let status = self.status();
        // Disabled at load (onInit failed): its own reason, not the process's stopped state.
        let at_load = status.state == PluginState::Disabled;
        let fenced = self.fence.reason().or_else(|| if at_load { None } else { self.backend.ended() });
        let counts = self.counts();
        let state = match &process {
            _ if self.fence.reason().is_some() => PluginState::Disabled.to_string(),
            // A process plugin says whether it serves: Ready, Restarting, Failed, Disabled (by operator).
            Some(process) if status.state == PluginState::Ready => process.state.clone(),
            _ if fenced.is_some() => PluginState::Disabled.to_string(),
            _ => status.state.to_string(),
        };
        PluginInfo {
            kind: Some(self.manifest.kind.to_string()),
            name: Some(self.manifest.name.clone()),
            description: self.manifest.description.clone(),
            file: self.file.display().to_string(),
            build_time: Some(self.build_time.clone()),
            state,
            last_error: fenced.or_else(|| status.last_error.clone()).or(counts.last_failure),
            calls: counts.calls,
            errors: counts.errors,
            panics: counts.panics,
            sync_lag: status.sync_lag.clone(),
            mode: Some(self.mode().to_string()),
            pid: process.as_ref().and_then(|p| p.pid),
            restarts: process.as_ref().map_or(0, |p| p.restarts),
            crashes: process.as_ref().map_or(0, |p| p.crashes),
            uptime_secs: process.as_ref().and_then(|p| p.uptime).map(|u| u.as_secs()),
        }
    }
}

/// What `Plugins.List` / `util plugins list` shows for one plugin file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PluginInfo {
    /// Kind (absent when the file was refused before its manifest could be read).
    pub kind: Option<String>,
    /// Name (absent when unknown).
    pub name: Option<String>,
    /// Manifest description.
    pub description: String,
    /// The file.
    pub file: String,
    /// Build time embedded by `plugin build`.
    pub build_time: Option<String>,
    /// `Uninitialized`, `Ready`, `Dying` or `Disabled`.
    pub state: String,
    /// Why it is disabled, or its last failure.
    pub last_error: Option<String>,
    /// Calls into the plugin.
    pub calls: u64,
    /// Failed calls.
    pub errors: u64,
    /// Calls that panicked (caught).
    pub panics: u64,
    /// Delivery lag (SyncSectorState only).
    pub sync_lag: Option<SyncLag>,
    /// `in-process` (a `.so`) or `process` (absent for a refused file).
    #[serde(default)]
    pub mode: Option<String>,
    /// The process id of a running process plugin.
    #[serde(default)]
    pub pid: Option<u32>,
    /// How often a process plugin was restarted (after crashes and by the operator).
    #[serde(default)]
    pub restarts: u64,
    /// How often a process plugin's process ended unexpectedly (or a restart of it failed).
    #[serde(default)]
    pub crashes: u64,
    /// How long a running process plugin's process has served, in seconds.
    #[serde(default)]
    pub uptime_secs: Option<u64>,
}

/// All plugins of the plugins directory.
#[derive(Default)]
pub struct PluginRegistry {
    plugins: Vec<Arc<PluginRecord>>,
    refused: Vec<(PathBuf, LoadError)>,
    options: LoadOptions,
}

/// How the files of a plugins dir are loaded (`[Common.Plugins]`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// What reading and checking one plugin file may cost, whatever its form (`MaxFileSize`, time budget).
    pub file_limits: FileLimits,
    /// How process plugins are run.
    pub process: ProcessOptions,
}

impl PluginRegistry {
    /// A registry without plugins.
    pub fn empty() -> Self {
        PluginRegistry::default()
    }

    /// Loads every `*.so` directly in `dir` (filename order) and initializes them in that order.
    ///
    /// A file that cannot be loaded, or whose `onInit` fails, does not stop the others: it is logged and listed.
    /// An empty `dir` means no plugins; a missing one is an error.
    pub fn load(dir: &Path) -> Result<Self, PluginsDirError> {
        PluginRegistry::load_with(dir, LoadOptions::default())
    }

    /// [`load`](Self::load) with `options` (`[Common.Plugins]`: the file size cap, how process plugins run).
    pub fn load_with(dir: &Path, options: LoadOptions) -> Result<Self, PluginsDirError> {
        if dir.as_os_str().is_empty() {
            return Ok(PluginRegistry::empty());
        }
        Ok(PluginRegistry::load_files(dir, plugin_files(dir)?, options))
    }

    /// Loads exactly `file`, through the same steps as [`load`](Self::load), with `plugins_dir` as the directory
    /// its `onInit` is told (`plugin test` uses a scratch directory). A refusal is in [`refused`](Self::refused).
    pub fn load_file(file: &Path, plugins_dir: &Path) -> Self {
        PluginRegistry::load_files(plugins_dir, vec![file.to_path_buf()], LoadOptions::default())
    }

    fn load_files(dir: &Path, files: Vec<PathBuf>, options: LoadOptions) -> Self {
        let mut registry = PluginRegistry { options, ..PluginRegistry::empty() };
        let limits = &options.file_limits;
        let (process_files, files): (Vec<PathBuf>, Vec<PathBuf>) =
            files.into_iter().partition(|f| is_process_plugin_file(f));
        // 1. Judge every file from its bytes (one at a time: at most one file's bytes in memory, then sealed)
        //    and seal the accepted ones; nothing is mapped yet.
        let mut sealed: Vec<library::SealedFile> = Vec::new();
        for file in files {
            let checked =
                library::check(&file, limits).and_then(|c| check_duplicate(&sealed, c)).and_then(library::seal);
            match checked {
                Ok(s) => sealed.push(s),
                Err(err) => registry.refuse(file, err),
            }
        }
        // 2. Trial-load them all in child processes (in parallel), 3. then map the survivors, in filename order;
        //    a pass is remembered only once the daemon's own load returned.
        let probes: Vec<_> = sealed.iter().map(probe::start).collect();
        for (s, started) in sealed.into_iter().zip(probes) {
            let file = s.file.clone();
            let probed = match started {
                None => Ok(None),
                Some(started) => started.and_then(|p| probe::finish(p, &s)),
            };
            let mapped = probed.and_then(|pass| library::map(s).map(|opened| (opened, pass)));
            match mapped {
                Ok((opened, pass)) => {
                    if let Some(pass) = pass {
                        probe::keep(pass);
                    }
                    registry.plugins.push(Arc::new(PluginRecord::new(
                        opened.manifest,
                        opened.file,
                        opened.build_time,
                        Backend::Library(opened.module),
                        Arc::default(),
                    )))
                }
                Err(err) => registry.refuse(file, err),
            }
        }
        // 4. Start the process plugins (their code never runs in the manager).
        super::process::load::start_all(&mut registry, process_files);
        registry.init_all(dir);
        registry
    }

    /// How the plugins were loaded: file limits and how process plugins are run.
    pub fn options(&self) -> LoadOptions {
        self.options
    }

    /// Adds a loaded plugin (not yet initialized).
    pub(super) fn push(&mut self, record: PluginRecord) {
        self.plugins.push(Arc::new(record));
    }

    pub(super) fn refuse(&mut self, file: PathBuf, err: LoadError) {
        tracing::error!("refused plugin: {err}");
        self.refused.push((file, err));
    }

    fn init_all(&self, dir: &Path) {
        for record in &self.plugins {
            let ctx = PluginContext {
                plugins_dir: dir.to_path_buf(),
                manifest: record.manifest.clone(),
                log_sink: Arc::new(PluginLogSink::new(record.label())),
                stats: Arc::clone(&record.stats),
            };
            if record.state() == PluginState::Disabled {
                continue;
            }
            match record.backend.init(&ctx) {
                Ok(()) => {
                    let mut status = record.status();
                    status.state = PluginState::Ready;
                    status.initialized = true;
                    drop(status);
                    tracing::info!("loaded plugin '{}', build time: '{}'.", record.label(), record.build_time);
                }
                Err(err) => record.disable(format!("onInit failed: {err}")),
            }
        }
    }

    /// Runs `onShutdown` once for every plugin that was initialized, in reverse load order.
    pub fn shutdown(&self) {
        self.shutdown_except(&|_| false);
    }

    /// [`shutdown`](Self::shutdown), leaving out the plugins for which `busy` is true (a call into them has not
    /// returned, so `onShutdown` must not run under it); those are logged and stay initialized.
    pub fn shutdown_except(&self, busy: &dyn Fn(&Manifest) -> bool) {
        for record in self.plugins.iter().rev() {
            if busy(&record.manifest) {
                tracing::warn!(plugin = %record.label(), "not running onShutdown: a call into the plugin is still running");
                continue;
            }
            let owed = {
                let mut status = record.status();
                let owed = std::mem::take(&mut status.initialized);
                if owed {
                    status.state = PluginState::Dying;
                }
                owed
            };
            if owed && let Err(err) = record.backend.shutdown() {
                tracing::warn!(plugin = %record.label(), "onShutdown failed: {err}");
            }
        }
    }

    /// The ready plugin of `kind` called `name`.
    pub fn get(&self, kind: Kind, name: &str) -> Option<Arc<PluginRecord>> {
        self.plugins
            .iter()
            .find(|p| p.manifest.kind == kind && p.manifest.name == name && p.state() == PluginState::Ready)
            .cloned()
    }

    /// Any loaded plugin (ready or not) of `kind` called `name`, to explain why it is not ready.
    pub fn find_any(&self, kind: Kind, name: &str) -> Option<Arc<PluginRecord>> {
        self.plugins.iter().find(|p| p.manifest.kind == kind && p.manifest.name == name).cloned()
    }

    /// Explains why no ready plugin `kind/name` exists (not found, refused, or in which state and why).
    pub fn why_not_ready(&self, kind: Kind, name: &str) -> String {
        if let Some(record) = self.find_any(kind, name) {
            let info = record.info();
            return format!(
                "plugin '{kind}/{name}' ({}) is {}{}",
                record.file.display(),
                info.state,
                info.last_error.as_ref().map(|e| format!(": {e}")).unwrap_or_default()
            );
        }
        let refusals: Vec<String> = self.refused.iter().map(|(_, e)| format!("  - {e}")).collect();
        format!(
            "no {kind} plugin named '{name}' was loaded{}",
            if refusals.is_empty() { String::new() } else { format!("; refused files:\n{}", refusals.join("\n")) }
        )
    }

    /// The ready plugins of `kind`, in load order.
    pub fn ready(&self, kind: Kind) -> impl Iterator<Item = &Arc<PluginRecord>> {
        self.plugins.iter().filter(move |p| p.manifest.kind == kind && p.state() == PluginState::Ready)
    }

    /// Every plugin file, loaded or refused, in load order of the loaded ones, then the refused ones.
    pub fn list(&self) -> Vec<PluginInfo> {
        let loaded = self.plugins.iter().map(|p| p.info());
        let refused = self.refused.iter().map(|(file, err)| refused_info(file, err));
        loaded.chain(refused).collect()
    }

    /// The refused files and why.
    pub fn refused(&self) -> impl Iterator<Item = (&Path, &LoadError)> {
        self.refused.iter().map(|(f, e)| (f.as_path(), e))
    }
}

/// Refuses a second plugin with the same kind and name as an already accepted one, before either is mapped.
fn check_duplicate(
    accepted: &[library::SealedFile],
    checked: library::CheckedFile,
) -> Result<library::CheckedFile, LoadError> {
    let (kind, name) = (checked.manifest.kind, &checked.manifest.name);
    match accepted.iter().find(|p| p.manifest.kind == kind && &p.manifest.name == name) {
        Some(first) => Err(LoadError::Duplicate {
            file: checked.file.clone(),
            kind,
            name: name.clone(),
            first: first.file.clone(),
        }),
        None => Ok(checked),
    }
}

fn refused_info(file: &Path, err: &LoadError) -> PluginInfo {
    let kind = err.plugin_kind().map(|k| k.to_string());
    let name = err.plugin_name().map(str::to_string);
    PluginInfo {
        kind,
        name,
        description: String::new(),
        file: file.display().to_string(),
        build_time: None,
        state: PluginState::Disabled.to_string(),
        last_error: Some(err.to_string()),
        calls: 0,
        errors: 0,
        panics: 0,
        sync_lag: None,
        mode: None,
        pid: None,
        restarts: 0,
        crashes: 0,
        uptime_secs: None,
    }
}

fn plugin_files(dir: &Path) -> Result<Vec<PathBuf>, PluginsDirError> {
    let err = |io_error| PluginsDirError { dir: dir.to_path_buf(), io_error };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)?
        .into_iter()
        .map(|e| e.path())
        .filter(|p| p.is_file() && (p.extension().is_some_and(|e| e == "so") || is_process_plugin_file(p)))
        .collect();
    files.sort();
    Ok(files)
}
