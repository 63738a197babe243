//! Capacity figures of each store, read in the background and cached, so that no request ever waits on a store
//! that does not answer.
//!
//! Every store has one refresher thread that calls `Store::instance_info` every [`CapacityOptions::refresh`] (or
//! sooner when [`CapacityCache::refresh_soon`] asks) and publishes the answer. Readers never call the store: they
//! take the cached figure. A store whose `instance_info` has been running for longer than
//! [`CapacityOptions::timeout`] is [`Capacity::Unanswered`] — unavailable — whatever it answered before; a hung
//! call only ever blocks its own refresher thread. Until the first answer, readers wait for it, at most until the
//! timeout.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use manager_plugin::filestore::Store;

/// How capacity figures are refreshed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapacityOptions {
    /// How long one `instance_info` call may run before the store is shown unavailable (default 5 s,
    /// `[Common] StoreCapacityTimeout`).
    pub timeout: Duration,
    /// How often the figures are re-read (default 2 s, `[Common] StoreCapacityRefresh`).
    pub refresh: Duration,
}

impl Default for CapacityOptions {
    fn default() -> Self {
        CapacityOptions { timeout: Duration::from_secs(5), refresh: Duration::from_secs(2) }
    }
}

/// What is known about a store's capacity right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Capacity {
    /// The store's last answer.
    Known {
        /// Bytes on the volume.
        total: u64,
        /// Bytes free.
        free: u64,
        /// Bytes used.
        used: u64,
    },
    /// The store's last answer was an error.
    Failed(String),
    /// The store has not answered for longer than the timeout; `since` is when the call began (Unix seconds).
    Unanswered {
        /// How long the call has been running.
        running: Duration,
        /// When it began, Unix seconds.
        since: u64,
    },
}

impl Capacity {
    /// Why the store cannot be used, or `None` when its figures are known.
    pub(super) fn problem(&self, timeout: Duration) -> Option<String> {
        match self {
            Capacity::Known { .. } => None,
            Capacity::Failed(err) => Some(format!("capacity unknown ({err})")),
            Capacity::Unanswered { running, since } => Some(format!(
                "unavailable: instance_info has not answered for {:.1} s (called at Unix time {since}, timeout {:.1} s, \
                 [Common] StoreCapacityTimeout); the store is skipped until it answers",
                running.as_secs_f64(),
                timeout.as_secs_f64()
            )),
        }
    }
}

/// The cached capacity of one store, shared with its refresher thread.
pub(super) struct CapacityCache {
    slot: Mutex<Slot>,
    changed: Condvar,
    options: CapacityOptions,
}

#[derive(Default)]
struct Slot {
    latest: Option<Capacity>,
    /// When the running `instance_info` call began (monotonic, and wall clock for display).
    asking_since: Option<(Instant, SystemTime)>,
    /// Set by `refresh_soon`: re-read without waiting for the interval.
    wanted: bool,
    stopped: bool,
}

impl CapacityCache {
    /// Starts the refresher thread of `store` (named `name` in logs) and returns its cache.
    pub(super) fn start(name: &str, store: Arc<dyn Store>, options: CapacityOptions) -> Arc<CapacityCache> {
        let cache = Arc::new(CapacityCache { slot: Mutex::new(Slot::default()), changed: Condvar::new(), options });
        let weak = Arc::downgrade(&cache);
        let thread_name = format!("capacity-{name}");
        let store_name = name.to_string();
        let spawned =
            std::thread::Builder::new().name(thread_name).spawn(move || refresh_loop(&store_name, &store, &weak));
        if let Err(e) = spawned {
            // Without its thread the store simply never gets figures: it is listed with the reason and skipped.
            tracing::error!(store = name, "cannot start the capacity refresher thread: {e}");
            cache.lock().latest = Some(Capacity::Failed(format!("no refresher thread: {e}")));
        }
        cache
    }

    fn lock(&self) -> MutexGuard<'_, Slot> {
        // Every update is a plain field assignment: the slot stays consistent across a panic.
        self.slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current figure. Waits for the first answer, at most until the running call passes the timeout.
    pub(super) fn current(&self) -> Capacity {
        let mut slot = self.lock();
        loop {
            if let Some((began, wall)) = slot.asking_since {
                let running = began.elapsed();
                if running >= self.options.timeout {
                    let since = wall.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
                    return Capacity::Unanswered { running, since };
                }
                if slot.latest.is_none() {
                    let left = self.options.timeout - running;
                    slot = self.changed.wait_timeout(slot, left).unwrap_or_else(|p| p.into_inner()).0;
                    continue;
                }
            }
            match &slot.latest {
                Some(latest) => return latest.clone(),
                // Not asked yet (the thread has not started its first call): wait for it to begin.
                None if slot.stopped => return Capacity::Failed("the store manager is stopping".into()),
                None => {
                    slot = self.changed.wait_timeout(slot, self.options.timeout).unwrap_or_else(|p| p.into_inner()).0;
                    if slot.latest.is_none() && slot.asking_since.is_none() {
                        return Capacity::Failed("the capacity refresher has not started".into());
                    }
                }
            }
        }
    }

    /// Asks for a re-read now (after a write changed the free space).
    pub(super) fn refresh_soon(&self) {
        self.lock().wanted = true;
        self.changed.notify_all();
    }

    /// Ends the refresher thread (a call hung inside the store keeps its thread until it returns).
    pub(super) fn stop(&self) {
        self.lock().stopped = true;
        self.changed.notify_all();
    }

    /// Whether an `instance_info` call into the store is running now.
    pub(super) fn in_call(&self) -> bool {
        self.lock().asking_since.is_some()
    }

    /// The configured timeout.
    pub(super) fn timeout(&self) -> Duration {
        self.options.timeout
    }

    /// The current figure without waiting (for metrics scrapes): `Failed` until the first answer.
    pub(super) fn peek(&self) -> Capacity {
        let slot = self.lock();
        if let Some((began, wall)) = slot.asking_since
            && began.elapsed() >= self.options.timeout
        {
            let since = wall.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            return Capacity::Unanswered { running: began.elapsed(), since };
        }
        slot.latest.clone().unwrap_or_else(|| Capacity::Failed("not read yet".into()))
    }
}

/// A store's cached capacity figures, as metrics show them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreFigures {
    /// The store's name.
    pub name: String,
    /// Piece or persist.
    pub kind: super::StoreKind,
    /// Bytes on the volume (0 while unknown).
    pub total: u64,
    /// Bytes free (0 while unknown).
    pub free: u64,
    /// Bytes reserved by sectors.
    pub reserved: u64,
    /// Whether the figures are the store's last answer (else it failed, hangs or has not answered yet).
    pub known: bool,
}

impl super::StoreManager {
    /// The cached figures of every store, piece stores first; never calls a store nor waits for one.
    pub fn capacity_figures(&self) -> Vec<StoreFigures> {
        let reserved: Vec<u64> = {
            let state = self.lock_state();
            (0..self.persist.len())
                .map(|index| state.reservations.items_on(index).iter().fold(0u64, |sum, r| sum.saturating_add(r.size)))
                .collect()
        };
        let reserved_on = |index: usize| reserved.get(index).copied().unwrap_or(0);
        let pieces = self.piece.iter().map(|store| (store, 0));
        let persists = self.persist.iter().enumerate().map(|(index, store)| (store, reserved_on(index)));
        pieces
            .chain(persists)
            .map(|(store, reserved)| {
                let (total, free, known) = match store.capacity.peek() {
                    Capacity::Known { total, free, .. } => (total, free, true),
                    _ => (0, 0, false),
                };
                StoreFigures { name: store.config.name.clone(), kind: store.kind, total, free, reserved, known }
            })
            .collect()
    }
}

fn refresh_loop(name: &str, store: &Arc<dyn Store>, cache: &Weak<CapacityCache>) {
    loop {
        {
            let Some(cache) = cache.upgrade() else { return };
            let mut slot = cache.lock();
            if slot.stopped {
                return;
            }
            slot.asking_since = Some((Instant::now(), SystemTime::now()));
            slot.wanted = false;
            cache.changed.notify_all();
        }
        // No lock and no strong reference held across the store call: a hung store blocks only this thread.
        let began = Instant::now();
        let answer = match store.instance_info() {
            Ok(info) => Capacity::Known { total: info.total, free: info.free, used: info.used },
            Err(e) => Capacity::Failed(e.to_string()),
        };
        let Some(cache) = cache.upgrade() else { return };
        let took = began.elapsed();
        if took >= cache.options.timeout {
            tracing::warn!(store = name, seconds = took.as_secs_f64(), "instance_info answered again after a hang");
        }
        if let Capacity::Failed(err) = &answer {
            tracing::warn!(store = name, "cannot read the capacity of the store: {err}");
        }
        let mut slot = cache.lock();
        slot.latest = Some(answer);
        slot.asking_since = None;
        cache.changed.notify_all();
        let deadline = Instant::now() + cache.options.refresh;
        while !slot.stopped && !slot.wanted {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            slot = cache.changed.wait_timeout(slot, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
        }
    }
}
