//! Process plugins, the manager's side: an executable `plugin-<name>` in the plugins dir (built by
//! `plugin build --process`) is started as a contained child process ([`spawn`]) and spoken to over a Unix socket
//! ([`connection`], protocol in `docs/plugin-protocol.md`); [`proxies`] give the rest of the manager the same SDK
//! traits a `.so` plugin's objects implement, bound ([`bound`]) to whichever process serves now. [`supervisor`]
//! restarts a process that ended ([`generation`]: one run of it). [`marker`] reads what the executable is without
//! running it.

pub mod bound;
pub mod connection;
pub mod demux;
pub mod generation;
pub mod load;
pub mod marker;
pub mod proxies;
pub mod spawn;
pub mod supervisor;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use manager_plugin::PluginError;
use manager_plugin::filestore::{Store, StoreConfig};
use manager_plugin::jsonrpc::JsonRpcHandler;
use manager_plugin::kv::{Db, Meta};
use manager_plugin::lifecycle::LogSink as _;
use manager_plugin::process::wire::{Call, EventBatch, Value};
use manager_plugin::sync::SectorEvent;

use self::connection::describe;
use self::generation::Generation;
use self::proxies::{RemoteDb, RemoteHandler, RemoteStore, plugin_error};
use self::spawn::Limits;
pub use self::supervisor::{ProcessPlugin, ProcessStatus};
use super::log_sink::PluginLogSink;
use crate::sectors::StoredEvent;

/// How process plugins are run (`[Common.Plugins]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessOptions {
    /// How long the manager waits for one answer of a plugin before it kills the process.
    pub call_timeout: Duration,
    /// How long a started process may take to say hello.
    pub start_timeout: Duration,
    /// Resource limits and uid.
    pub limits: Limits,
    /// Restarts after a crash.
    pub restart: RestartPolicy,
}

impl Default for ProcessOptions {
    fn default() -> Self {
        ProcessOptions {
            call_timeout: Duration::from_secs(60),
            start_timeout: Duration::from_secs(10),
            limits: Limits::default(),
            restart: RestartPolicy::default(),
        }
    }
}

/// When a crashed process plugin is started again (`[Common.Plugins]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// The wait before the first restart after a crash.
    pub backoff_initial: Duration,
    /// The longest wait (it doubles with every crash within the window up to this).
    pub backoff_max: Duration,
    /// This many crashes within `crash_loop_window` and the plugin is `Failed`: not restarted until the operator
    /// restarts or enables it.
    pub crash_loop_limit: u32,
    /// The window of the crash-loop limit.
    pub crash_loop_window: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            crash_loop_limit: 5,
            crash_loop_window: Duration::from_secs(300),
        }
    }
}

impl RestartPolicy {
    /// The wait before restarting after the `recent`-th crash within the window (1 for the first):
    /// `backoff_initial` doubled `recent - 1` times, at most `backoff_max`.
    pub fn backoff(&self, recent: u32) -> Duration {
        let doublings = recent.saturating_sub(1).min(20);
        self.backoff_initial.saturating_mul(1 << doublings).min(self.backoff_max)
    }
}

/// Runs `onInit` on `generation` with `plugins_dir`; its logs arrive at the level the daemon keeps.
fn init_generation(generation: &Generation, plugins_dir: &Path, label: &str) -> Result<(), PluginError> {
    let max_level = PluginLogSink::new(label.to_string()).max_level();
    let call = Call::Init { plugins_dir: plugins_dir.display().to_string(), max_level };
    generation.conn.call(call).map(drop).map_err(plugin_error)
}

impl ProcessPlugin {
    /// Runs the plugin's `onInit` with `plugins_dir` (and again on every process that replaces this one). When it
    /// fails, the process is stopped for good.
    pub fn init(&self, plugins_dir: &Path) -> Result<(), PluginError> {
        self.set_plugins_dir(plugins_dir);
        let result = self
            .current()
            .map_err(plugin_error)
            .and_then(|generation| init_generation(&generation, plugins_dir, self.label()));
        if result.is_err() {
            // The registry disables the plugin: no process of it may run (none would ever be used), also not one
            // its watcher restarted after a crash in onInit.
            self.stop_for_good();
        }
        result
    }

    /// Runs the plugin's `onShutdown` and ends its process; it is not restarted after.
    pub fn shutdown(&self) -> Result<(), PluginError> {
        let Some(generation) = self.begin_shutdown() else { return Ok(()) };
        let result = generation.conn.call(Call::Shutdown).map(drop).map_err(plugin_error);
        generation.conn.close();
        // Its watcher leaves a generation stopped on purpose to the one stopping it: the kill after the grace.
        if !generation.conn.wait_exited(supervisor::STOP_GRACE) {
            generation.conn.kill_until_exited();
        }
        result
    }

    /// KVStore constructor: a database that follows the plugin across restarts.
    pub fn open_db(self: &Arc<Self>, meta: &Meta) -> Result<Box<dyn Db>, PluginError> {
        RemoteDb::open(Arc::clone(self), meta.clone()).map(|db| Box::new(db) as Box<dyn Db>).map_err(plugin_error)
    }

    /// FileStore constructor: a store that follows the plugin across restarts.
    pub fn open_store(self: &Arc<Self>, config: StoreConfig) -> Result<Box<dyn Store>, PluginError> {
        RemoteStore::open(Arc::clone(self), config).map(|s| Box::new(s) as Box<dyn Store>).map_err(plugin_error)
    }

    /// Hands a SyncSectorState event to the plugin's matching hook (a hook it does not export ignores it). Fails at
    /// once while the plugin restarts (the deliverer retries the event).
    pub fn deliver(&self, event: &SectorEvent) -> Result<(), PluginError> {
        let generation = self.current().map_err(plugin_error)?;
        generation.conn.call(Call::Deliver { event: Box::new(event.clone()) }).map(drop).map_err(plugin_error)
    }

    /// Hands the leading `events` to the plugin's matching hooks, in order, in one call (a plugin speaking
    /// protocol 1.0 takes one event per call), as many as `pace` allows; says how many were handled and why the
    /// next one failed, if one did. All of `events` must be of hooks the plugin exports.
    pub fn deliver_batch(&self, events: &[&StoredEvent], pace: &BatchPace) -> (usize, Option<PluginError>) {
        let generation = match self.current() {
            Ok(generation) => generation,
            Err(e) => return (0, Some(plugin_error(e))),
        };
        let Some(first) = events.first() else { return (0, None) };
        if generation.protocol_minor < 1 {
            return one_delivered(self.deliver(&first.event));
        }
        let count = pace.limit(self.call_timeout(), events.len());
        let encoded = events[..count].iter().map(|stored| Arc::clone(&stored.json)).collect();
        let call = Call::DeliverBatch { events: EventBatch::Encoded(encoded) };
        let started = Instant::now();
        match generation.conn.call(call) {
            Ok(Value::Delivered { delivered, error }) => {
                let delivered = (delivered as usize).min(count);
                pace.record(delivered + usize::from(error.is_some()), started.elapsed());
                match error {
                    Some(error) if delivered < count => {
                        generation.conn.record_hook_failure(&error);
                        (delivered, Some(error))
                    }
                    _ => (delivered, None),
                }
            }
            Ok(other) => (0, Some(PluginError::Failed(format!("the plugin answered a DeliverBatch with {other:?}")))),
            Err(e) => {
                // A batch that ran into the deadline says the hooks got slower: the next ones are sized by it.
                let took = started.elapsed();
                if took >= self.call_timeout() {
                    pace.record(count, took);
                }
                (0, Some(plugin_error(e)))
            }
        }
    }

    /// The RegisterJsonRpc namespace and a handler that follows the plugin across restarts.
    pub fn rpc_handler(self: &Arc<Self>) -> Result<(String, Box<dyn JsonRpcHandler>), PluginError> {
        let (namespace, handler) = RemoteHandler::open(Arc::clone(self)).map_err(plugin_error)?;
        Ok((namespace, Box::new(handler)))
    }

    /// Why the plugin does not serve now, if it does not.
    pub fn ended(&self) -> Option<String> {
        self.current().err().map(|e| describe(&e))
    }
}

/// A one-event delivery's result as a batch's: how many were handled, and why the next one failed.
pub fn one_delivered(result: Result<(), PluginError>) -> (usize, Option<PluginError>) {
    match result {
        Ok(()) => (1, None),
        Err(error) => (0, Some(error)),
    }
}

/// Bounds the events of one `DeliverBatch` call so that, at the hooks' recent speed, the call takes at most a
/// quarter of the call deadline (`[Common.Plugins] ProcessCallTimeoutSecs`): a steadily slow plugin is not killed for the size of its batch. Until a call was
/// measured, a batch carries one event.
#[derive(Debug, Default)]
pub struct BatchPace {
    /// A moving average of the time one event took, nanoseconds (0: not measured yet).
    per_event_nanos: AtomicU64,
}

impl BatchPace {
    /// How many of `available` events the next call carries.
    pub fn limit(&self, call_timeout: Duration, available: usize) -> usize {
        let per_event = u128::from(self.per_event_nanos.load(Ordering::Relaxed));
        if per_event == 0 {
            return available.min(1);
        }
        let fits = (call_timeout.as_nanos() / 4) / per_event;
        fits.clamp(1, available.max(1) as u128) as usize
    }

    /// Records that a call handling `events` events took `took`.
    pub fn record(&self, events: usize, took: Duration) {
        let Some(sample) = took.as_nanos().checked_div(events as u128) else { return };
        let sample = u64::try_from(sample).unwrap_or(u64::MAX).max(1);
        let old = self.per_event_nanos.load(Ordering::Relaxed);
        let average = if old == 0 { sample } else { old - old / 4 + sample / 4 };
        self.per_event_nanos.store(average.max(1), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_restart_backoff_doubles_per_recent_crash_up_to_the_maximum() {
        let policy = RestartPolicy {
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(3),
            crash_loop_limit: 10,
            crash_loop_window: Duration::from_secs(60),
        };
        let waits: Vec<u128> = (1..=6).map(|n| policy.backoff(n).as_millis()).collect();
        assert_eq!(waits, [500, 1000, 2000, 3000, 3000, 3000]);
        assert_eq!(policy.backoff(0), Duration::from_millis(500), "no crash yet counts as the first");
        assert_eq!(policy.backoff(u32::MAX), Duration::from_secs(3), "no overflow");
    }

    #[test]
    fn a_batch_carries_one_event_until_measured_then_what_fits_a_quarter_of_the_call_timeout() {
        let pace = BatchPace::default();
        let timeout = Duration::from_secs(60);
        assert_eq!(pace.limit(timeout, 64), 1, "unmeasured");
        pace.record(10, Duration::from_millis(1));
        assert_eq!(pace.limit(timeout, 64), 64, "fast hooks: the whole batch");
        assert_eq!(pace.limit(timeout, 5), 5, "never more than offered");
        let slow = BatchPace::default();
        slow.record(1, Duration::from_secs(1));
        assert_eq!(slow.limit(timeout, 64), 15, "1 s per event: 15 s of a 60 s timeout");
        let hung = BatchPace::default();
        hung.record(1, Duration::from_secs(120));
        assert_eq!(hung.limit(timeout, 64), 1, "slower than the timeout: still one");
        hung.record(0, Duration::from_secs(1));
        assert_eq!(hung.limit(timeout, 64), 1, "a call that handled nothing is not a measurement");
    }
}
