//! Supervision of one process plugin: its current [`Generation`], restarts after an unexpected end (a signal, an
//! exit, a kill after a call passed its deadline) with a doubling backoff, the crash-loop limit after which it is
//! `Failed`, and the operator's restart / disable / enable. Callers never hold a generation across calls: every
//! call asks [`ProcessPlugin::current`], which fails at once, naming the plugin, while no process serves.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use manager_plugin::lifecycle::CallStats;
use manager_plugin::manifest::{Kind, Manifest};
use manager_plugin::process::wire::{Call, Value, WireError};
use plugin_image::limits::FileLimits;

use super::ProcessOptions;
use super::bound::Bound;
use super::generation::Generation;
use super::marker::Marker;

mod operator;

/// How long a stopped generation may take to exit after its socket closed before it is killed.
pub(super) const STOP_GRACE: Duration = Duration::from_secs(5);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Where a supervised plugin is.
#[derive(Clone)]
enum Phase {
    /// A process serves.
    Running(Arc<Generation>),
    /// Its process ended unexpectedly; a new one starts after the backoff. `after` is the generation that ended.
    Restarting { why: String, after: u64 },
    /// It crashed too often within the window; only the operator starts it again.
    Failed { why: String },
    /// The operator disabled it.
    Disabled,
    /// The manager is shutting it down.
    ShutDown,
}

/// Why a call finds no process serving (the call fails at once with this).
#[derive(Debug, thiserror::Error)]
pub enum NotServing {
    /// Its process ended; a new one starts after the backoff.
    #[error("plugin {name} restarting ({kind} process plugin; its process ended: {why}); try again shortly")]
    Restarting {
        /// The plugin.
        name: String,
        /// Its kind.
        kind: Kind,
        /// How the process ended.
        why: String,
    },
    /// The crash-loop limit was reached (or the operator's start failed).
    #[error(
        "plugin {name} failed ({kind} process plugin, not restarted: {why}); `util plugins restart {name}` starts it \
         again"
    )]
    Failed {
        /// The plugin.
        name: String,
        /// Its kind.
        kind: Kind,
        /// Why.
        why: String,
    },
    /// `util plugins disable`.
    #[error(
        "plugin {name} is disabled by the operator ({kind} process plugin); `util plugins enable {name}` starts it \
         again"
    )]
    Disabled {
        /// The plugin.
        name: String,
        /// Its kind.
        kind: Kind,
    },
    /// The daemon is stopping.
    #[error("plugin {name} is shut down ({kind} process plugin); the daemon is stopping")]
    ShutDown {
        /// The plugin.
        name: String,
        /// Its kind.
        kind: Kind,
    },
}

/// Why a plugin is `Failed` after crashing too often.
#[derive(Debug, thiserror::Error)]
#[error(
    "crashed {crashes} times within {window_secs} s ([Common.Plugins] ProcessCrashLoopLimit / \
     ProcessCrashLoopWindowSecs); last: {last}"
)]
pub struct CrashLoop {
    /// Crashes within the window.
    pub crashes: u32,
    /// The window.
    pub window_secs: u64,
    /// How the last process ended.
    pub last: String,
}

/// Why an automatic restart did not happen: the executable was replaced since its process started (the operator
/// starts the new file, knowingly).
#[derive(Debug, thiserror::Error)]
#[error("the file at {file} changed since it was started; run `util plugins restart {name}`")]
pub struct FileChanged {
    /// The plugin's file.
    pub file: String,
    /// The plugin.
    pub name: String,
}

/// Why an operator's restart or enable did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The file at the plugin's path is not a loadable process plugin now.
    #[error("not restarted: {error}")]
    MarkerRefused {
        /// The loader's refusal.
        error: String,
    },
    /// The file at the plugin's path is another plugin.
    #[error(
        "not restarted: {file} now holds the {kind} plugin {name:?}, not the {started_kind} plugin {started_name:?} \
         that was started from it; put a build of {label} there (or restart the daemon to load a different plugin)"
    )]
    OtherPlugin {
        /// The file.
        file: String,
        /// Its kind now.
        kind: Kind,
        /// Its name now.
        name: String,
        /// The running plugin's kind.
        started_kind: Kind,
        /// The running plugin's name.
        started_name: String,
        /// The running plugin's label.
        label: String,
    },
    /// The new process did not start or complete its handshake and `onInit`.
    #[error("plugin {label}: the operator's start failed: {why}")]
    StartFailed {
        /// The plugin.
        label: String,
        /// Why.
        why: String,
    },
}

/// What `Plugins.List` shows of a process plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessStatus {
    /// `Ready`, `Restarting`, `Failed`, `Disabled (by operator)` or `Dying`.
    pub state: String,
    /// Why it is not running, when it is not.
    pub why: Option<String>,
    /// The running process's id.
    pub pid: Option<u32>,
    /// Restarts so far (after crashes and by the operator).
    pub restarts: u64,
    /// Unexpected ends of its process so far (and failed starts of a restart).
    pub crashes: u64,
    /// How long the running process has served.
    pub uptime: Option<Duration>,
}

/// On how many processes [`ProcessPlugin::call_serving`] tries a call whose process ended under it.
pub const CALL_ATTEMPTS: u32 = 3;

/// A process plugin under supervision (see the module docs).
pub struct ProcessPlugin {
    label: String,
    manifest: Manifest,
    file: PathBuf,
    marker: Mutex<Marker>,
    options: ProcessOptions,
    file_limits: FileLimits,
    stats: Arc<CallStats>,
    /// The plugins dir `onInit` was told; every new generation is initialized with it.
    plugins_dir: Mutex<Option<PathBuf>>,
    phase: Mutex<Phase>,
    /// Signalled when the phase changes (a backoff wait ends early when the operator acts).
    changed: Condvar,
    /// One start or stop at a time (the watcher's restart, the operator's commands).
    control: Mutex<()>,
    /// When the recent crashes happened (within the crash-loop window).
    recent_crashes: Mutex<VecDeque<Instant>>,
    restarts: AtomicU64,
    crashes: AtomicU64,
    generations: AtomicU64,
    /// The plugin-side objects the manager opened (databases, collections, stores, the handler): re-opened on a
    /// new generation before it serves, so the first callers after a restart do not queue behind the re-open.
    objects: Mutex<Vec<Weak<Bound>>>,
}

impl ProcessPlugin {
    /// Starts `file` (whose marker is `marker`) and watches it. `label` is `<Kind>/<name>`; `stats` counts calls.
    pub fn start(
        file: &Path,
        marker: &Marker,
        options: &ProcessOptions,
        file_limits: &FileLimits,
        label: &str,
        stats: Arc<CallStats>,
    ) -> Result<Arc<ProcessPlugin>, String> {
        let first = Generation::start(file, marker, options, label, Arc::clone(&stats), 1)?;
        let plugin = Arc::new(ProcessPlugin {
            label: label.to_string(),
            manifest: marker.manifest.clone(),
            file: file.to_path_buf(),
            marker: Mutex::new(marker.clone()),
            options: *options,
            file_limits: *file_limits,
            stats,
            plugins_dir: Mutex::default(),
            phase: Mutex::new(Phase::ShutDown),
            changed: Condvar::new(),
            control: Mutex::default(),
            recent_crashes: Mutex::default(),
            restarts: AtomicU64::new(0),
            crashes: AtomicU64::new(0),
            generations: AtomicU64::new(1),
            objects: Mutex::default(),
        });
        plugin.install(Arc::new(first));
        Ok(plugin)
    }

    /// `<Kind>/<name>`.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// How long one answer of the plugin may take (`[Common.Plugins] ProcessCallTimeoutSecs`).
    pub fn call_timeout(&self) -> Duration {
        self.options.call_timeout
    }

    /// The generation serving now, or an error saying at once why none does ("plugin NAME restarting …").
    pub fn current(&self) -> Result<Arc<Generation>, WireError> {
        let (name, kind) = (self.manifest.name.clone(), self.manifest.kind);
        let not_serving = match &*lock(&self.phase) {
            Phase::Running(generation) => return Ok(Arc::clone(generation)),
            Phase::Restarting { why, .. } => NotServing::Restarting { name, kind, why: why.clone() },
            Phase::Failed { why } => NotServing::Failed { name, kind, why: why.clone() },
            Phase::Disabled => NotServing::Disabled { name, kind },
            Phase::ShutDown => NotServing::ShutDown { name, kind },
        };
        Err(WireError::Protocol(not_serving.to_string()))
    }

    /// Like [`current`](Self::current), but while the plugin is restarting waits for the new process (at most
    /// the longest backoff plus two start timeouts): the daemon wiring a plugin at start must not leave it out
    /// for the whole run because its process was restarting at that moment.
    pub fn wait_serving(&self) -> Result<Arc<Generation>, WireError> {
        self.wait_phase_while(|p| matches!(p, Phase::Restarting { .. }));
        self.current()
    }

    /// Waits while `waiting` holds of the phase, at most the longest backoff plus two start timeouts (a restart).
    fn wait_phase_while(&self, waiting: impl FnMut(&mut Phase) -> bool) {
        let limit = self.options.restart.backoff_max + self.options.start_timeout * 2;
        let phase = lock(&self.phase);
        drop(self.changed.wait_timeout_while(phase, limit, waiting).unwrap_or_else(|p| p.into_inner()));
    }

    /// Runs `call` on the serving process (waiting while it restarts, as [`wait_serving`](Self::wait_serving));
    /// when that process ends during the call (a crash just after start-up, while the daemon wires its plugins),
    /// runs it again on the restarted process, on at most [`CALL_ATTEMPTS`] processes.
    pub fn call_serving(&self, call: impl Fn() -> Call) -> Result<(Arc<Generation>, Value), WireError> {
        let mut attempt = 1;
        loop {
            let generation = self.wait_serving()?;
            match generation.conn.call(call()) {
                Err(_) if generation.ended().is_some() && attempt < CALL_ATTEMPTS => {
                    attempt += 1;
                    // Its watcher moves the plugin on from this generation (restarting, failed) shortly.
                    self.wait_phase_while(|p| matches!(p, Phase::Running(g) if g.number == generation.number));
                }
                result => return result.map(|value| (generation, value)),
            }
        }
    }

    /// Registers `object` to be re-opened on every new generation before it serves.
    pub fn register(&self, object: &Arc<Bound>) {
        let mut objects = lock(&self.objects);
        objects.retain(|o| o.strong_count() > 0);
        objects.push(Arc::downgrade(object));
    }

    /// Whether generation `number` is the one serving (not stopped on purpose, not replaced).
    fn serves(&self, number: u64) -> bool {
        matches!(&*lock(&self.phase), Phase::Running(generation) if generation.number == number)
    }

    /// Records `plugins_dir` for `onInit` (run now, and on every later generation) and runs it on the current one.
    pub fn set_plugins_dir(&self, plugins_dir: &Path) {
        *lock(&self.plugins_dir) = Some(plugins_dir.to_path_buf());
    }

    /// The plugins dir `onInit` is told, once known.
    pub fn plugins_dir(&self) -> Option<PathBuf> {
        lock(&self.plugins_dir).clone()
    }

    /// Marks the plugin shut down (its process is not restarted any more) and returns the generation to shut.
    pub fn begin_shutdown(&self) -> Option<Arc<Generation>> {
        let _control = lock(&self.control);
        self.set_phase(Phase::ShutDown)
    }

    /// Stops the process for good and never restarts it (`onInit` failed when the daemon loaded the plugin, which
    /// the registry then disables; the operator's commands are refused for it).
    pub fn stop_for_good(&self) {
        let _control = lock(&self.control);
        if let Some(generation) = self.set_phase(Phase::Disabled) {
            // Not initialized: no onShutdown is owed.
            generation.conn.close();
            generation.conn.kill_until_exited();
        }
    }

    /// State, pid, counters and uptime.
    pub fn status(&self) -> ProcessStatus {
        let (state, why, generation) = match &*lock(&self.phase) {
            Phase::Running(generation) => ("Ready", None, Some(Arc::clone(generation))),
            Phase::Restarting { why, .. } => ("Restarting", Some(why.clone()), None),
            Phase::Failed { why } => ("Failed", Some(why.clone()), None),
            Phase::Disabled => ("Disabled (by operator)", None, None),
            Phase::ShutDown => ("Dying", None, None),
        };
        ProcessStatus {
            state: state.to_string(),
            why,
            pid: generation.as_ref().map(|g| g.pid),
            restarts: self.restarts.load(Ordering::Relaxed),
            crashes: self.crashes.load(Ordering::Relaxed),
            uptime: generation.map(|g| g.started.elapsed()),
        }
    }

    /// Replaces the phase; returns the generation that was running, if one was.
    fn set_phase(&self, phase: Phase) -> Option<Arc<Generation>> {
        let old = std::mem::replace(&mut *lock(&self.phase), phase);
        self.changed.notify_all();
        match old {
            Phase::Running(generation) => Some(generation),
            _ => None,
        }
    }

    /// Makes `generation` the serving one and starts its watcher.
    fn install(self: &Arc<Self>, generation: Arc<Generation>) {
        self.set_phase(Phase::Running(Arc::clone(&generation)));
        let weak = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name(format!("plugin-watch {}", self.label))
            .spawn(move || watch(weak, generation));
        if let Err(e) = spawned {
            tracing::error!(plugin = %self.label, "cannot start the supervisor thread; a crash will not be restarted: {e}");
        }
    }

    /// Starts a new generation and runs `onInit` on it (when the plugin was initialized).
    fn start_generation(&self) -> Result<Arc<Generation>, String> {
        let number = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        let marker = lock(&self.marker).clone();
        let generation =
            Generation::start(&self.file, &marker, &self.options, &self.label, Arc::clone(&self.stats), number)?;
        if let Some(dir) = self.plugins_dir() {
            super::init_generation(&generation, &dir, &self.label).map_err(|e| {
                // Not initialized, so no onShutdown is owed: just end it.
                generation.conn.kill_until_exited();
                format!("onInit failed: {e}")
            })?;
        }
        let generation = Arc::new(generation);
        // Opened in registration order: a collection after its database (which it would open itself anyway).
        let objects: Vec<Arc<Bound>> = lock(&self.objects).iter().filter_map(Weak::upgrade).collect();
        for object in objects {
            if let Err(e) = object.on(&generation) {
                // Its callers retry at first use and get this error then.
                tracing::warn!(plugin = %self.label, "re-opening a plugin object on the new process failed: {}", super::connection::describe(&e));
            }
        }
        Ok(generation)
    }

    /// After `ended` (the serving generation) ended with `why`: counts the crash and either schedules a restart or
    /// marks the plugin `Failed`. Returns the backoff to wait, or `None` when nothing is to be restarted.
    fn crashed(&self, ended: u64, why: &str) -> Option<Duration> {
        let _control = lock(&self.control);
        {
            let phase = lock(&self.phase);
            // Stopped on purpose (operator, shutdown), or already replaced: not a crash.
            let current = match &*phase {
                Phase::Running(generation) => generation.number == ended,
                Phase::Restarting { after, .. } => *after == ended,
                _ => false,
            };
            if !current {
                return None;
            }
        }
        self.crashes.fetch_add(1, Ordering::Relaxed);
        let policy = self.options.restart;
        let recent = {
            let mut recent = lock(&self.recent_crashes);
            let now = Instant::now();
            recent.push_back(now);
            while recent.front().is_some_and(|t| now.duration_since(*t) > policy.crash_loop_window) {
                recent.pop_front();
            }
            recent.len() as u32
        };
        if recent >= policy.crash_loop_limit {
            let window_secs = policy.crash_loop_window.as_secs();
            let why = CrashLoop { crashes: recent, window_secs, last: why.to_string() }.to_string();
            tracing::error!(plugin = %self.label, "process plugin failed: {why}");
            self.set_phase(Phase::Failed { why });
            return None;
        }
        let backoff = policy.backoff(recent);
        tracing::warn!(plugin = %self.label, backoff_ms = backoff.as_millis() as u64, "process plugin ended ({why}); restarting");
        self.set_phase(Phase::Restarting { why: why.to_string(), after: ended });
        Some(backoff)
    }

    /// Waits `backoff` (cut short when the operator changes the phase), then restarts the plugin if it is still
    /// restarting after generation `after`. The new generation, when one started.
    fn restart_after(self: &Arc<Self>, after: u64, backoff: Duration) -> Result<(), Option<Duration>> {
        {
            let phase = lock(&self.phase);
            let waiting = |p: &mut Phase| matches!(p, Phase::Restarting { after: a, .. } if *a == after);
            let (phase, _) =
                self.changed.wait_timeout_while(phase, backoff, waiting).unwrap_or_else(|p| p.into_inner());
            if !matches!(&*phase, Phase::Restarting { after: a, .. } if *a == after) {
                return Ok(());
            }
        }
        let control = lock(&self.control);
        if !matches!(&*lock(&self.phase), Phase::Restarting { after: a, .. } if *a == after) {
            return Ok(());
        }
        if let Err(changed) = self.same_file() {
            tracing::error!(plugin = %self.label, "not restarting the process plugin: {changed}");
            self.set_phase(Phase::Failed { why: changed.to_string() });
            return Ok(());
        }
        match self.start_generation() {
            Ok(generation) => {
                self.restarts.fetch_add(1, Ordering::Relaxed);
                tracing::info!(plugin = %self.label, pid = generation.pid, "process plugin restarted");
                self.install(generation);
                Ok(())
            }
            Err(e) => {
                drop(control);
                tracing::error!(plugin = %self.label, "restarting the process plugin failed: {e}");
                Err(self.crashed(after, &format!("the restart failed: {e}")))
            }
        }
    }
}

impl Drop for ProcessPlugin {
    fn drop(&mut self) {
        // The watcher holds the generation, not the plugin: closing its socket ends the process and the watcher.
        if let Some(generation) = self.set_phase(Phase::ShutDown) {
            generation.conn.close();
        }
    }
}

/// The watcher of one generation: waits for its process to end and, when that was not asked for, restarts it.
fn watch(plugin: Weak<ProcessPlugin>, generation: Arc<Generation>) {
    let why = loop {
        if let Some(why) = generation.conn.wait_ended(Duration::from_secs(3600)) {
            break why;
        }
    };
    let number = generation.number;
    let plugin = plugin.upgrade();
    // Stopped on purpose (the operator's restart or disable, the daemon's shutdown): `Generation::stop` owns the
    // kill, after its grace. Otherwise the socket's end alone does not prove the process is gone: make sure before
    // a new one starts.
    if plugin.as_ref().is_none_or(|p| p.serves(number)) {
        generation.conn.kill_until_exited();
    }
    drop(generation);
    let Some(plugin) = plugin else { return };
    let mut backoff = plugin.crashed(number, &why);
    while let Some(wait) = backoff {
        backoff = match plugin.restart_after(number, wait) {
            Ok(()) => None,
            Err(next) => next,
        };
    }
}
