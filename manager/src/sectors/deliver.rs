//! [`Deliverer`]: hands the outbox's events to each [`EventTarget`] (a SyncSectorState plugin, via the daemon's
//! adapter), in seq order, at least once, surviving restarts.
//!
//! - One thread per target, so a slow, failing or panicking target delays only itself; state changes never wait
//!   for any of them (they only append to the outbox).
//! - Each target has a cursor, `cursor/<name>`: the last seq it acknowledged. It is persisted only after the
//!   events up to it were delivered successfully (after each batch, and before each back-off), so a restart
//!   re-delivers at most the events after the last persisted cursor and loses none.
//! - A failed or panicking delivery is retried, same event, with exponential back-off; the target hears its lag
//!   (pending events, last error) on every attempt through [`EventTarget::report_lag`].
//! - Threads never read past the [visibility horizon](super::outbox), so an event committed late with a smaller
//!   seq is never skipped.
//! - A garbage-collection thread deletes the outbox entries every current target has acknowledged (seq <= the
//!   smallest cursor). With no targets at all it deletes entries as soon as they are committed: nobody is owed
//!   them. A target that is new (no cursor yet) starts at the oldest entry still in the outbox.

use std::any::Any;
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use manager_plugin::sync::SectorEvent;

use super::manager::StateManager;
use super::outbox::{self, OutboxRecord};
use super::signal::Signal;

/// How many outbox entries a target thread reads at a time.
const BATCH: usize = 64;

/// Where the deliverer sends events: the daemon adapts each ready SyncSectorState plugin to this trait.
pub trait EventTarget: Send + Sync {
    /// A stable, unique name: it keys the target's persisted cursor (`cursor/<name>`).
    fn name(&self) -> String;
    /// Delivers one event. `Err` (or a panic) means "not delivered": the same event is offered again later.
    /// Events may be delivered more than once (after a failure or a restart), so handling must be idempotent.
    fn deliver(&self, event: &SectorEvent) -> Result<(), String>;
    /// Hears the target's lag after each attempt: events not yet acknowledged and the last error (`None` once a
    /// delivery succeeded). The daemon forwards it to the plugin registry (`PluginRecord::set_sync_lag`).
    fn report_lag(&self, pending: u64, last_error: Option<String>);
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
    stopping: AtomicBool,
    stop_lock: Mutex<()>,
    stop_requested: Condvar,
    /// The in-memory cursor of every target that has loaded its own; garbage collection waits for all of them.
    cursors: Mutex<HashMap<String, u64>>,
    targets: usize,
    cursor_moved: Signal,
}

impl Deliverer {
    /// Starts one delivery thread per target and one garbage-collection thread. A target whose name repeats an
    /// earlier one is refused (logged): two targets must not share a cursor.
    pub fn start(
        sectors: Arc<StateManager>,
        targets: Vec<Arc<dyn EventTarget>>,
        options: DeliveryOptions,
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
        let shared = Arc::new(Shared {
            sectors,
            options,
            stopping: AtomicBool::new(false),
            stop_lock: Mutex::new(()),
            stop_requested: Condvar::new(),
            cursors: Mutex::default(),
            targets: named.len(),
            cursor_moved: Signal::default(),
        });
        let mut threads = Vec::new();
        for (name, target) in named {
            let worker = TargetWorker::new(Arc::clone(&shared), name.clone(), target);
            threads.extend(spawn(&shared, format!("sync-{name}"), move || worker.run()));
        }
        let gc = Arc::clone(&shared);
        threads.extend(spawn(&shared, "outbox-gc".to_string(), move || collect_garbage(&gc)));
        Deliverer { shared, threads }
    }

    /// Asks every thread to stop and waits for them, at most `stop_timeout`; a thread still inside a target's
    /// `deliver` then is left to finish on its own (logged). Cursors are persisted as the threads leave.
    pub fn stop(mut self) {
        self.shared.request_stop();
        let deadline = Instant::now() + self.shared.options.stop_timeout;
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
            }
        }
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

/// The delivery loop of one target.
struct TargetWorker {
    shared: Arc<Shared>,
    name: String,
    target: Arc<dyn EventTarget>,
    state: Mutex<Progress>,
}

/// A target's progress: acknowledged (`cursor`) and persisted seqs, and the last pending count.
#[derive(Default)]
struct Progress {
    cursor: u64,
    persisted: u64,
    pending: u64,
}

impl TargetWorker {
    fn new(shared: Arc<Shared>, name: String, target: Arc<dyn EventTarget>) -> TargetWorker {
        TargetWorker { shared, name, target, state: Mutex::default() }
    }

    fn progress(&self) -> MutexGuard<'_, Progress> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn run(&self) {
        if !self.load_cursor() {
            return;
        }
        self.report_lag(None);
        let sequencer = &self.shared.sectors.sequencer;
        loop {
            let seen = sequencer.signal().generation();
            if self.shared.is_stopping() {
                break;
            }
            let cursor = self.progress().cursor;
            let batch = match outbox::read_after(&*self.shared.sectors.store, cursor, sequencer.horizon(), BATCH) {
                Ok(batch) => batch,
                Err(err) => {
                    tracing::warn!(target_name = %self.name, error = %err, "cannot read the outbox; retrying");
                    if self.shared.pause(self.shared.options.poll_interval) {
                        break;
                    }
                    continue;
                }
            };
            if batch.is_empty() {
                sequencer.signal().wait_past(seen, self.shared.options.poll_interval);
                continue;
            }
            for (seq, value) in batch {
                if self.shared.is_stopping() {
                    break;
                }
                match serde_json::from_slice::<OutboxRecord<SectorEvent>>(&value) {
                    Ok(record) => {
                        if !self.deliver_with_retry(seq, &record.event) {
                            self.persist();
                            return;
                        }
                    }
                    // Retrying cannot help an entry that does not decode: skip it rather than wedge the target.
                    Err(err) => {
                        let name = &self.name;
                        tracing::error!(target_name = %name, seq, error = %err, "skipping an undecodable outbox entry");
                        self.report_lag(Some(format!("skipped undecodable outbox entry {seq}: {err}")));
                    }
                }
                self.progress().cursor = seq;
            }
            self.persist();
            self.report_lag(None);
        }
        self.persist();
    }

    /// Loads the persisted cursor, retrying while the store fails; `false` when asked to stop meanwhile.
    fn load_cursor(&self) -> bool {
        let mut backoff = self.shared.options.initial_backoff;
        loop {
            match outbox::load_or_register_cursor(&*self.shared.sectors.store, &self.name) {
                Ok(cursor) => {
                    let mut progress = self.progress();
                    progress.cursor = cursor;
                    progress.persisted = cursor;
                    drop(progress);
                    self.shared.cursor_advanced(&self.name, cursor);
                    return true;
                }
                Err(err) => {
                    tracing::warn!(target_name = %self.name, error = %err, "cannot load the delivery cursor; retrying");
                    self.report_lag(Some(format!("load delivery cursor: {err}")));
                }
            }
            if self.shared.pause(backoff) {
                return false;
            }
            backoff = (backoff * 2).min(self.shared.options.max_backoff);
        }
    }

    /// Delivers `event` until it succeeds; `false` when asked to stop first.
    fn deliver_with_retry(&self, seq: u64, event: &SectorEvent) -> bool {
        let mut backoff = self.shared.options.initial_backoff;
        for attempt in 1u64.. {
            let error = match catch_unwind(AssertUnwindSafe(|| self.target.deliver(event))) {
                Ok(Ok(())) => {
                    if attempt > 1 {
                        tracing::info!(target_name = %self.name, seq, attempt, "sync event delivered after retries");
                    }
                    return true;
                }
                Ok(Err(message)) => message,
                Err(panic) => format!("panicked: {}", panic_message(&*panic)),
            };
            tracing::warn!(
                target_name = %self.name, seq, attempt, error = %error, retry_in = ?backoff,
                "sync event delivery failed"
            );
            // Keep what was acknowledged so far, so a restart during a long outage does not repeat it.
            self.persist();
            self.report_lag(Some(format!("event {seq} ({:?}): {error}", event.ext_point())));
            if self.shared.pause(backoff) {
                return false;
            }
            backoff = (backoff * 2).min(self.shared.options.max_backoff);
        }
        false
    }

    /// Persists the cursor if it moved; a failure is logged and retried at the next call.
    fn persist(&self) {
        let (cursor, persisted) = {
            let progress = self.progress();
            (progress.cursor, progress.persisted)
        };
        if cursor == persisted {
            return;
        }
        match outbox::save_cursor(&*self.shared.sectors.store, &self.name, cursor) {
            Ok(()) => {
                self.progress().persisted = cursor;
                self.shared.cursor_advanced(&self.name, cursor);
            }
            Err(err) => {
                tracing::warn!(target_name = %self.name, cursor, error = %err, "cannot persist the delivery cursor")
            }
        }
    }

    /// Tells the target its lag (pending entries after the cursor; the last count if counting fails).
    fn report_lag(&self, last_error: Option<String>) {
        let cursor = self.progress().cursor;
        let pending = match outbox::count_after(&*self.shared.sectors.store, cursor) {
            Ok(pending) => {
                self.progress().pending = pending;
                pending
            }
            Err(err) => {
                tracing::warn!(target_name = %self.name, error = %err, "cannot count pending events");
                self.progress().pending
            }
        };
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| self.target.report_lag(pending, last_error))) {
            let panic = panic_message(&*panic);
            tracing::warn!(target_name = %self.name, %panic, "sync target panicked in report_lag");
        }
    }
}

/// The smallest persisted cursor of a target that is not running now (`u64::MAX` when there is none).
fn absent_targets_floor(shared: &Shared) -> u64 {
    let running = shared.cursors();
    match outbox::persisted_cursors(&*shared.sectors.store) {
        Ok(cursors) => cursors
            .into_iter()
            .filter(|(name, _)| !running.contains_key(name))
            .map(|(_, seq)| seq)
            .min()
            .unwrap_or(u64::MAX),
        Err(err) => {
            tracing::warn!(error = %err, "cannot read delivery cursors; keeping the outbox for now");
            0
        }
    }
}

/// Deletes outbox entries every current target has acknowledged, or, without targets, every committed entry;
/// in both cases never past the cursor of a target that is not running now (a plugin refused or failing in this
/// run keeps its backlog). Such a cursor is retired only explicitly ([`StateManager::retire_sync_cursor`]).
fn collect_garbage(shared: &Shared) {
    let sequencer = &shared.sectors.sequencer;
    let signal = if shared.targets == 0 { sequencer.signal() } else { &shared.cursor_moved };
    let mut collected_through = 0;
    loop {
        let seen = signal.generation();
        if shared.is_stopping() {
            break;
        }
        let through = if shared.targets == 0 {
            Some(sequencer.horizon())
        } else {
            let cursors = shared.cursors();
            // Until every target has loaded its cursor, the smallest one is unknown.
            (cursors.len() == shared.targets).then(|| cursors.values().copied().min().unwrap_or(0))
        };
        let through = through.map(|through| through.min(absent_targets_floor(shared)));
        if let Some(through) = through.filter(|&through| through > collected_through) {
            match outbox::delete_through(&*shared.sectors.store, through) {
                Ok(deleted) => {
                    collected_through = through;
                    if deleted > 0 {
                        tracing::debug!(deleted, through, "collected delivered outbox entries");
                    }
                }
                Err(err) => tracing::warn!(error = %err, "cannot delete delivered outbox entries; retrying later"),
            }
        }
        signal.wait_past(seen, shared.options.poll_interval);
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
