//! What operators and the watchdog do to delivery while it runs: skip one poison event
//! ([`DeliveryControl::skip`]), notice hooks that hang and backlogs that grow ([`watch`]).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::progress::{SkipOutcome, WorkerState, backlog_level, threshold_of};
use super::{Shared, panic_message};

/// Why an operator's skip was not done.
#[derive(Debug, thiserror::Error)]
pub enum SkipError {
    /// No delivery thread of that name runs.
    #[error(
        "no SyncSectorState plugin named {name:?} is being delivered to; `util plugins list` shows the loaded ones"
    )]
    NotDelivering {
        /// The name asked for.
        name: String,
    },
    /// The plugin is not stuck on any event.
    #[error("plugin {name:?} is not stuck on event {seq}: its cursor is at {cursor} and no delivery is failing")]
    NotStuck {
        /// The plugin.
        name: String,
        /// The seq asked for.
        seq: u64,
        /// Its cursor.
        cursor: u64,
    },
    /// The plugin is stuck on another event.
    #[error("plugin {name:?} is stuck on event {current}, not {seq}; only the event it is stuck on can be skipped")]
    NotCurrent {
        /// The plugin.
        name: String,
        /// The seq asked for.
        seq: u64,
        /// The event it is stuck on.
        current: u64,
    },
    /// The event could not be written to the skipped-events directory; it was not skipped.
    #[error("event {seq} of plugin {name:?} was not skipped: saving it failed: {reason}")]
    SaveFailed {
        /// The plugin.
        name: String,
        /// The event.
        seq: u64,
        /// What failed.
        reason: String,
    },
    /// The event was delivered before the skip could apply.
    #[error("event {seq} of plugin {name:?} was delivered after all; nothing was skipped")]
    Delivered {
        /// The plugin.
        name: String,
        /// The event.
        seq: u64,
    },
    /// The event was the first of a batch whose call failed: which event was stuck is not known.
    #[error(
        "event {seq} of plugin {name:?} was not skipped: it was the first of {count} events handed to the plugin in \
         one call, which failed, so which of them was stuck is not known; they are now delivered one per call: ask \
         again for the event the plugin is stuck on"
    )]
    InBatch {
        /// The plugin.
        name: String,
        /// The event.
        seq: u64,
        /// Events in that call.
        count: usize,
    },
    /// The plugin's hook is still running on the event; the skip applies if that call fails.
    #[error(
        "plugin {name:?}'s hook has been running on event {seq} since Unix time {since} and has not returned; the \
         skip is recorded and applies if the call fails (a hook that never returns needs the plugin fixed or \
         removed and the daemon restarted)"
    )]
    HookRunning {
        /// The plugin.
        name: String,
        /// The event.
        seq: u64,
        /// When the call began, Unix seconds.
        since: u64,
    },
}

/// A handle on a running [`Deliverer`](super::Deliverer) for operator requests.
#[derive(Clone)]
pub struct DeliveryControl {
    pub(super) shared: Arc<Shared>,
}

impl DeliveryControl {
    /// Moves plugin `name`'s cursor past event `seq`, the event it is stuck on (failing, or in a hook call),
    /// after writing the event to a file in the skipped-events directory; returns that file. Waits at most
    /// `wait` for the delivery thread to do it.
    pub fn skip(&self, name: &str, seq: u64, wait: Duration) -> Result<PathBuf, SkipError> {
        let worker = self
            .shared
            .workers
            .iter()
            .find(|worker| worker.name == name)
            .ok_or_else(|| SkipError::NotDelivering { name: name.to_string() })?;
        let mut progress = worker.progress();
        let stuck_on = progress.failing.or(progress.in_flight.map(|call| call.seq));
        match stuck_on {
            Some(current) if current == seq => {}
            Some(current) => return Err(SkipError::NotCurrent { name: name.to_string(), seq, current }),
            None => return Err(SkipError::NotStuck { name: name.to_string(), seq, cursor: progress.cursor }),
        }
        tracing::warn!(target_name = %name, seq, "operator asked to skip a sync event");
        progress.skip = Some(seq);
        progress.skip_outcome = None;
        worker.changed.notify_all();
        let (progress, _) = worker
            .changed
            .wait_timeout_while(progress, wait, |p| !matches!(&p.skip_outcome, Some((done, _)) if *done == seq))
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match &progress.skip_outcome {
            Some((_, SkipOutcome::Skipped(path))) => Ok(path.clone()),
            Some((_, SkipOutcome::Failed(reason))) => {
                Err(SkipError::SaveFailed { name: name.to_string(), seq, reason: reason.clone() })
            }
            Some((_, SkipOutcome::Delivered)) => Err(SkipError::Delivered { name: name.to_string(), seq }),
            Some((_, SkipOutcome::InBatch(count))) => {
                Err(SkipError::InBatch { name: name.to_string(), seq, count: *count })
            }
            None => Err(SkipError::HookRunning {
                name: name.to_string(),
                seq,
                since: progress.in_flight.map_or(0, |call| call.began_unix),
            }),
        }
    }
}

impl DeliveryControl {
    /// The hook calls running now: plugin name, event seq and since when (Unix seconds).
    pub fn hooks_running(&self) -> Vec<(String, u64, u64)> {
        self.shared
            .workers
            .iter()
            .filter_map(|worker| {
                worker.progress().in_flight.map(|call| (worker.name.clone(), call.seq, call.began_unix))
            })
            .collect()
    }
}

/// Writes a skipped event's stored bytes to `<dir>/<name>-<seq>.json` (a temp file, synced, then renamed).
pub(super) fn save_skipped(dir: &Path, name: &str, seq: u64, value: &[u8]) -> Result<PathBuf, String> {
    let safe: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    let path = dir.join(format!("{safe}-{seq}.json"));
    let temp = dir.join(format!(".{safe}-{seq}.json.tmp"));
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(value)?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        std::fs::rename(&temp, &path)?;
        if let Ok(parent) = std::fs::File::open(dir) {
            let _ = parent.sync_all();
        }
        Ok(())
    };
    write().map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(path)
}

/// The watchdog: reports hooks running past the hung limit (with a fresh pending count, since a hung thread
/// reports nothing) and backlogs crossing warning thresholds, until stop.
pub(super) fn watch(shared: &Shared) {
    let hung_after = shared.watch.hung_after;
    let tick = (hung_after / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    while !shared.pause(tick) {
        for worker in &shared.workers {
            let hung = {
                let mut progress = worker.progress();
                match progress.in_flight {
                    Some(call) if call.began.elapsed() >= hung_after && !progress.hung_reported => {
                        progress.hung_reported = true;
                        Some((call, true))
                    }
                    Some(call) if progress.hung_reported => Some((call, false)),
                    _ => None,
                }
            };
            let Some((call, newly)) = hung else { continue };
            let pending = match worker.count_pending(shared) {
                Ok(pending) => pending,
                Err(err) => {
                    tracing::warn!(target_name = %worker.name, error = %err, "cannot count pending events");
                    worker.progress().pending
                }
            };
            check_backlog(shared, worker, pending);
            if newly {
                tracing::warn!(
                    target_name = %worker.name, seq = call.seq, since = call.began_unix,
                    running_secs = call.began.elapsed().as_secs(),
                    "SyncSectorState hook has been running past the hung limit; delivery to this plugin is stuck \
                     (fix the plugin, or `util plugins skip` the event if the call ever fails)"
                );
            }
            let report = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                worker.target.report_hung(pending, call.seq, call.began_unix)
            }));
            if let Err(panic) = report {
                tracing::warn!(target_name = %worker.name, panic = %panic_message(&*panic), "sync target panicked in report_hung");
            }
        }
    }
}

/// Logs when `pending` crosses a backlog warning threshold, up or down.
pub(super) fn check_backlog(shared: &Shared, worker: &WorkerState, pending: u64) {
    let first = shared.watch.backlog_warning;
    let level = backlog_level(pending, first);
    let previous = {
        let mut progress = worker.progress();
        std::mem::replace(&mut progress.backlog_level, level)
    };
    if level > previous {
        tracing::warn!(
            target_name = %worker.name, pending, threshold = threshold_of(level, first),
            "SyncSectorState plugin's backlog crossed a warning threshold"
        );
    } else if level < previous && level == 0 {
        tracing::info!(target_name = %worker.name, pending, "SyncSectorState plugin's backlog is back below the warning threshold");
    }
}
