//! [`Deliverer`]: hands the outbox's events to each [`EventTarget`] (a SyncSectorState plugin, via the daemon's
//! adapter), in seq order, at least once, surviving restarts.
//!
//! - One thread per target, so a slow, failing or panicking target delays only itself; state changes never wait
//!   for any of them (they only append to the outbox).
//! - One reader thread (`feed`) reads each new entry once, as the visibility horizon passes it, decodes it once
//!   and keeps the newest in memory for all targets, waking them once per read; a target behind that window (a
//!   backlog) reads the outbox itself.
//! - Each target has a cursor, `cursor/<name>`: the last seq it acknowledged. It is persisted only after the
//!   events up to it were delivered successfully: at once before each back-off, skip and stop, and otherwise at
//!   most every [`worker::CURSOR_PERSIST_INTERVAL`] (200 ms; each write is a synced transaction), so a restart
//!   re-delivers at most the events after the last persisted cursor (after a crash: the batch in progress and
//!   those acknowledged in the 200 ms before it, unless writing the cursor failed) and loses none.
//! - A target may take several consecutive events per call ([`EventTarget::deliver_batch`], up to [`BATCH`]): the
//!   events before the one that failed count as delivered; the failed one is retried alone, and the rest of that
//!   batch is then delivered one per call, so a poison event is found by itself.
//! - A failed or panicking delivery is retried, same event, with exponential back-off; the target hears its lag
//!   (pending events, last error) on every attempt through [`EventTarget::report_lag`]. The lag is kept
//!   incrementally (see `progress`): each entry is counted once, so draining a backlog costs linear work.
//! - A watchdog thread reports a hook running longer than [`DeliveryWatch::hung_after`] through
//!   [`EventTarget::report_hung`], and logs a warning when a backlog crosses [`DeliveryWatch::backlog_warning`]
//!   (and each tenfold of it). An operator moves a target past the one event it is stuck on with
//!   [`DeliveryControl::skip`], which first saves the event to a file.
//! - Threads never read past the [visibility horizon](super::outbox), so an event committed late with a smaller
//!   seq is never skipped.
//! - A garbage-collection thread deletes the outbox entries every current target has acknowledged (seq <= the
//!   smallest cursor). With no targets at all it deletes entries as soon as they are committed: nobody is owed
//!   them. A target that is new (no cursor yet) starts at the oldest entry still in the outbox.

mod control;
mod feed;
mod gc;
mod progress;
#[cfg(test)]
mod tests;
mod worker;

use std::any::Any;
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use manager_plugin::sync::SectorEvent;
use serde_json::value::RawValue;

use super::manager::StateManager;
use super::signal::Signal;
pub use control::{DeliveryControl, SkipError};
use progress::WorkerState;

/// How many outbox entries a target thread reads at a time.
const BATCH: usize = 64;

/// Where the deliverer sends events: the daemon adapts each ready SyncSectorState plugin to this trait.
pub trait EventTarget: Send + Sync {
    /// A stable, unique name: it keys the target's persisted cursor (`cursor/<name>`).
    fn name(&self) -> String;
    /// Delivers one event. `Err` (or a panic) means "not delivered": the same event is offered again later.
    /// Events may be delivered more than once (after a failure or a restart), so handling must be idempotent.
    fn deliver(&self, event: &SectorEvent) -> Result<(), String>;
    /// Most events one [`deliver_batch`](Self::deliver_batch) call is offered: 1 by default; a target whose every
    /// call costs a round trip (a process plugin) takes more.
    fn batch_limit(&self) -> usize {
        1
    }
    /// Delivers the leading events of `events` (consecutive, oldest first, at least one, at most
    /// [`batch_limit`](Self::batch_limit)), in order, and says how far it got; the events it did not take are
    /// offered again. A failure stops the batch: the events after the failed one must not have been delivered. A
    /// panic counts as none delivered. By default one event per call ([`deliver`](Self::deliver)).
    fn deliver_batch(&self, events: &[&StoredEvent]) -> BatchDelivery {
        match events.first().map(|stored| self.deliver(&stored.event)) {
            Some(Ok(())) => BatchDelivery { delivered: 1, error: None },
            Some(Err(error)) => BatchDelivery { delivered: 0, error: Some(error) },
            None => BatchDelivery::default(),
        }
    }
    /// Hears the target's lag after each attempt: events not yet acknowledged and the last error (`None` once a
    /// delivery succeeded). The daemon forwards it to the plugin registry (`PluginRecord::set_sync_lag`).
    fn report_lag(&self, pending: u64, last_error: Option<String>);
    /// Hears, from the watchdog, that the hook delivering event `seq` has been running since `since_unix` (Unix
    /// seconds) for longer than [`DeliveryWatch::hung_after`], with the current pending count. The next
    /// [`report_lag`](Self::report_lag) means it returned. Does nothing by default.
    fn report_hung(&self, pending: u64, seq: u64, since_unix: u64) {
        let _ = (pending, seq, since_unix);
    }
}

/// An outbox event as [`EventTarget::deliver_batch`] receives it: decoded, and the JSON it was stored as (the
/// SDK's serde encoding of the `SectorEvent`), which a process plugin's target forwards without encoding it again.
#[derive(Debug)]
pub struct StoredEvent {
    /// The event.
    pub event: SectorEvent,
    /// Its JSON.
    pub json: Arc<RawValue>,
}

/// How far an [`EventTarget::deliver_batch`] call got.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchDelivery {
    /// Events delivered, counted from the first of the batch.
    pub delivered: usize,
    /// Why event number `delivered` failed. `None` while `delivered` is short of the batch: the target took only
    /// the first `delivered`, and the rest is offered again.
    pub error: Option<String>,
}

/// What the deliverer watches for, besides delivering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryWatch {
    /// A hook call running longer than this is reported hung (default 60 s).
    pub hung_after: Duration,
    /// A warning is logged when a target's pending events reach this, and again at each tenfold of it
    /// (default 10,000; 0 disables).
    pub backlog_warning: u64,
    /// Where [`DeliveryControl::skip`] saves skipped events (default `skipped-events`, relative to the working
    /// directory; the daemon uses `<home>/skipped-events`).
    pub skipped_events_dir: PathBuf,
}

impl Default for DeliveryWatch {
    fn default() -> Self {
        DeliveryWatch {
            hung_after: Duration::from_secs(60),
            backlog_warning: 10_000,
            skipped_events_dir: PathBuf::from("skipped-events"),
        }
    }
}

/// Tuning of a [`Deliverer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryOptions {
    /// Wait before the first retry of a failed delivery.
    pub initial_backoff: Duration,
    /// Longest wait between retries (the wait doubles up to it).
    pub max_backoff: Duration,
    /// How often threads look for work without being woken (a fallback: commits wake them at once).
    pub poll_interval: Duration,
    /// How long [`Deliverer::stop`] waits for the threads (a target stuck in `deliver` is left behind).
    pub stop_timeout: Duration,
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        DeliveryOptions {
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
            poll_interval: Duration::from_secs(5),
            stop_timeout: Duration::from_secs(5),
        }
    }
}

/// Runs delivery in the background until [`stop`](Deliverer::stop)ped (dropping it also asks the threads to
/// stop, without waiting).
pub struct Deliverer {
    shared: Arc<Shared>,
    threads: Vec<(String, JoinHandle<()>)>,
}

/// What the threads share.
struct Shared {
    sectors: Arc<StateManager>,
    options: DeliveryOptions,
    watch: DeliveryWatch,
    /// Every target's shared state, in start order.
    workers: Vec<Arc<WorkerState>>,
    stopping: AtomicBool,
    stop_lock: Mutex<()>,
    stop_requested: Condvar,
    /// The in-memory cursor of every target that has loaded its own; garbage collection waits for all of them.
    cursors: Mutex<HashMap<String, u64>>,
    targets: usize,
    cursor_moved: Signal,
    /// The events read and decoded once for every target.
    feed: feed::Feed,
}

impl Deliverer {
    /// Starts one delivery thread per target and one garbage-collection thread. A target whose name repeats an
    /// earlier one is refused (logged): two targets must not share a cursor.
    pub fn start(
        sectors: Arc<StateManager>,
        targets: Vec<Arc<dyn EventTarget>>,
        options: DeliveryOptions,
    ) -> Deliverer {
        Deliverer::start_with(sectors, targets, options, DeliveryWatch::default())
    }

    /// [`start`](Self::start), watching as `watch` says (hung hooks, backlog warnings, skipped events).
    pub fn start_with(
        sectors: Arc<StateManager>,
        targets: Vec<Arc<dyn EventTarget>>,
        options: DeliveryOptions,
        watch: DeliveryWatch,
    ) -> Deliverer {
        let mut named: Vec<(String, Arc<dyn EventTarget>)> = Vec::new();
        for target in targets {
            let name = match catch_unwind(AssertUnwindSafe(|| target.name())) {
                Ok(name) => name,
                Err(panic) => {
                    let panic = panic_message(&*panic);
                    tracing::error!(%panic, "a sync target panicked in name(); not delivering to it");
                    continue;
                }
            };
            if named.iter().any(|(existing, _)| *existing == name) {
                tracing::error!(target_name = %name, "two sync targets share the name; delivering to the first only");
                continue;
            }
            named.push((name, target));
        }
        let workers: Vec<Arc<WorkerState>> =
            named.into_iter().map(|(name, target)| Arc::new(WorkerState::new(name, target))).collect();
        // The feed starts at the horizon: older entries are a backlog each target reads from the outbox.
        let feed = feed::Feed::new(sectors.sequencer.horizon());
        let shared = Arc::new(Shared {
            sectors,
            feed,
            options,
            watch,
            targets: workers.len(),
            workers,
            stopping: AtomicBool::new(false),
            stop_lock: Mutex::new(()),
            stop_requested: Condvar::new(),
            cursors: Mutex::default(),
            cursor_moved: Signal::default(),
        });
        let mut threads = Vec::new();
        for state in &shared.workers {
            let worker = worker::TargetWorker { shared: Arc::clone(&shared), state: Arc::clone(state) };
            threads.extend(spawn(&shared, format!("sync-{}", state.name), move || worker.run()));
        }
        if !shared.workers.is_empty() {
            let reader = Arc::clone(&shared);
            threads.extend(spawn(&shared, "outbox-feed".to_string(), move || feed::read(&reader)));
        }
        let gc = Arc::clone(&shared);
        threads.extend(spawn(&shared, "outbox-gc".to_string(), move || gc::collect_garbage(&gc)));
        if !shared.workers.is_empty() {
            let watchdog = Arc::clone(&shared);
            threads.extend(spawn(&shared, "sync-watchdog".to_string(), move || control::watch(&watchdog)));
        }
        Deliverer { shared, threads }
    }

    /// A handle for operator requests (skipping a poison event) while delivery runs.
    pub fn control(&self) -> DeliveryControl {
        DeliveryControl { shared: Arc::clone(&self.shared) }
    }

    /// Asks every thread to stop and waits for them, at most `stop_timeout`; a thread still inside a target's
    /// `deliver` then is left to finish on its own (logged). Cursors are persisted as the threads leave. Returns
    /// the names of the targets whose thread was left running (a hook call that has not returned): their
    /// plugins must not be shut down under that call.
    pub fn stop(mut self) -> Vec<String> {
        self.shared.request_stop();
        let deadline = Instant::now() + self.shared.options.stop_timeout;
        let mut busy = Vec::new();
        for (name, handle) in std::mem::take(&mut self.threads) {
            while !handle.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
            if handle.is_finished() {
                if handle.join().is_err() {
                    tracing::error!(thread = %name, "delivery thread ended with a panic");
                }
            } else {
                tracing::warn!(thread = %name, "delivery thread did not stop in time (a target is busy); leaving it");
                if let Some(target) = name.strip_prefix("sync-") {
                    busy.push(target.to_string());
                }
            }
        }
        busy
    }
}

impl Drop for Deliverer {
    fn drop(&mut self) {
        self.shared.request_stop();
    }
}

/// Spawns a named thread that re-runs `body` after a panic (a bug of ours must not end delivery for good).
/// `None` (logged) when the system refuses a new thread; the outbox keeps the events for the next start.
fn spawn(shared: &Arc<Shared>, name: String, body: impl Fn() + Send + 'static) -> Option<(String, JoinHandle<()>)> {
    let supervisor = Arc::clone(shared);
    let thread_name = name.clone();
    let run = move || {
        while !supervisor.is_stopping() {
            match catch_unwind(AssertUnwindSafe(&body)) {
                Ok(()) => break,
                Err(panic) => {
                    let panic = panic_message(&*panic);
                    tracing::error!(thread = %thread_name, %panic, "delivery thread panicked; restarting it");
                    supervisor.pause(supervisor.options.max_backoff);
                }
            }
        }
    };
    match thread::Builder::new().name(name.clone()).spawn(run) {
        Ok(handle) => Some((name, handle)),
        Err(err) => {
            tracing::error!(thread = %name, error = %err, "cannot start delivery thread");
            None
        }
    }
}

impl Shared {
    fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    fn request_stop(&self) {
        self.stopping.store(true, Ordering::Release);
        // Set before notifying: a thread that read a signal's generation before this sees it change.
        let _guard = self.stop_lock.lock().unwrap_or_else(PoisonError::into_inner);
        self.stop_requested.notify_all();
        self.sectors.sequencer.signal().notify();
        self.cursor_moved.notify();
        self.feed.appended.notify();
        for worker in &self.workers {
            // Under the worker's lock, so a thread about to wait on it cannot miss the wake-up.
            let _progress = worker.progress();
            worker.changed.notify_all();
        }
    }

    /// Sleeps `duration` unless stop is requested first; returns whether to stop.
    fn pause(&self, duration: Duration) -> bool {
        let guard = self.stop_lock.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = self
            .stop_requested
            .wait_timeout_while(guard, duration, |_| !self.is_stopping())
            .unwrap_or_else(PoisonError::into_inner);
        self.is_stopping()
    }

    fn cursors(&self) -> MutexGuard<'_, HashMap<String, u64>> {
        self.cursors.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records target `name`'s acknowledged cursor and wakes garbage collection.
    fn cursor_advanced(&self, name: &str, cursor: u64) {
        self.cursors().insert(name.to_string(), cursor);
        self.cursor_moved.notify();
    }
}

/// The message of a caught panic.
fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        text.to_string()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "non-string panic payload".to_string()
    }
}
