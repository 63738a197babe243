//! Shutdown with a deadline on every step, so that no hung plugin call or database keeps the process alive:
//!
//! | step | bound |
//! |---|---|
//! | finish in-flight requests | [`DRAIN_TIMEOUT`] (30 s) |
//! | stop SyncSectorState delivery | 5 s (`DeliveryOptions::stop_timeout`), within [`STEP_TIMEOUT`] |
//! | close the database | [`STEP_TIMEOUT`] (10 s) |
//! | `onShutdown` of every plugin, in reverse load order | [`STEP_TIMEOUT`] (10 s) in all |
//! | the async runtime's blocking threads | [`RUNTIME_TIMEOUT`] (5 s, in `main`) |
//!
//! A plugin with a call still running (a hook that did not return, a capacity call that hangs) is left out of
//! `onShutdown`. A second SIGINT/SIGTERM during shutdown logs the step in progress and the hook calls still
//! running, then exits at once with status 130 (SIGINT) or 143 (SIGTERM).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use manager_plugin::Kind;
use manager_plugin::kv::Db;

use crate::filestore::StoreManager;
use crate::plugins::PluginRegistry;
use crate::sectors::Deliverer;

/// How long shutdown waits for in-flight requests.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long each later shutdown step (stop delivery, close the database, `onShutdown`) may take.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the runtime waits for its blocking threads after the daemon returned.
pub const RUNTIME_TIMEOUT: Duration = Duration::from_secs(5);
/// The worst-case time from the first signal to exit.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(30 + 3 * 10 + 5);

/// The shutdown step in progress, for the log of a second signal.
#[derive(Clone, Default)]
pub struct Step(Arc<Mutex<Option<(&'static str, Instant)>>>);

impl Step {
    /// Records that `step` begins now.
    pub fn begin(&self, step: &'static str) {
        tracing::info!("shutdown: {step}");
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some((step, Instant::now()));
    }

    /// The step in progress and for how long, e.g. `closing the database (for 3.2 s)`.
    pub fn describe(&self) -> String {
        match *self.0.lock().unwrap_or_else(PoisonError::into_inner) {
            Some((step, since)) => format!("{step} (for {:.1} s)", since.elapsed().as_secs_f64()),
            None => "not yet shutting down".to_string(),
        }
    }
}

/// Runs `work` on a thread of its own and waits at most `limit` for it; `None` (logged) when it did not finish:
/// the thread is left behind, and the process exits without it.
async fn bounded<T: Send + 'static>(
    what: &str,
    limit: Duration,
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new().name("shutdown".into()).spawn(move || {
        let _ = tx.send(work());
    });
    if let Err(e) = spawned {
        tracing::error!("shutdown: cannot start a thread for {what}: {e}; skipping it");
        return None;
    }
    match tokio::time::timeout(limit, rx).await {
        Ok(Ok(value)) => Some(value),
        Ok(Err(_)) => {
            tracing::error!("shutdown: {what} panicked");
            None
        }
        Err(_) => {
            tracing::error!("shutdown: {what} did not finish within {limit:?}; going on without it");
            None
        }
    }
}

/// Stops delivery, closes the database and shuts the plugins down, in that order, each within its bound.
pub(super) async fn close(
    deliverer: Option<Deliverer>,
    stores: Option<Arc<StoreManager>>,
    db: Arc<dyn Db>,
    registry: Arc<PluginRegistry>,
    step: &Step,
) {
    step.begin("stopping SyncSectorState delivery");
    let busy_sync = match deliverer {
        Some(deliverer) => bounded("stopping delivery", STEP_TIMEOUT, move || deliverer.stop()).await,
        None => Some(Vec::new()),
    };
    // `None`: the stop itself hung, so every SyncSectorState plugin may be inside a hook.
    let all_sync_busy = busy_sync.is_none();
    let busy_sync = busy_sync.unwrap_or_default();

    let busy_stores = match &stores {
        Some(stores) => {
            stores.stop();
            // A capacity call in progress normally ends within milliseconds; a hung one never does.
            let deadline = Instant::now() + Duration::from_secs(1);
            while !stores.plugins_in_call().is_empty() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            stores.plugins_in_call()
        }
        None => Vec::new(),
    };

    step.begin("closing the database");
    match bounded("closing the database", STEP_TIMEOUT, move || db.close()).await {
        Some(Ok(())) => tracing::info!("database closed"),
        Some(Err(e)) => tracing::error!("closing the database failed: {e}"),
        None => {}
    }

    step.begin("running onShutdown of the plugins");
    let busy = move |manifest: &manager_plugin::manifest::Manifest| match manifest.kind {
        Kind::SyncSectorState => all_sync_busy || busy_sync.contains(&manifest.name),
        Kind::FileStore => busy_stores.contains(&manifest.name),
        _ => false,
    };
    if bounded("onShutdown of the plugins", STEP_TIMEOUT, move || registry.shutdown_except(&busy)).await.is_some() {
        tracing::info!("shutdown complete; bye");
    }
}
