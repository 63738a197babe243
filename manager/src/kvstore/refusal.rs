//! Refused writes: whether the manager refuses to write its database right now, and why.
//!
//! Two guards refuse writes while the daemon runs (see `docs/reliability.md`):
//! - the **database identity** ([`RefusalCause::Identity`], `db_identity::fence`): every transaction reads
//!   `meta/identity` inside the transaction and refuses when it is missing or another one (a Redis server that
//!   came back empty, a flushed prefix, a KVStore plugin that lost its storage);
//! - the **writer lease** of a Redis prefix ([`RefusalCause::WriterLease`], `redis_lease.rs`): every commit is
//!   conditional on the lease key still holding this manager's value.
//!
//! A refusal is a [`KvError::Aborted`] (nothing was written, so a commit refused here is never "outcome
//! unknown"), logged at `error` when it starts (and again at most every [`LOG_EVERY`] while it lasts), counted
//! and shown in `/metrics` (`damocles_db_writes_refused{cause}`), and lifted by the first check that passes
//! again: the operator recovers without a restart once the database is back.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use manager_plugin::kv::KvError;

/// How often a refusal that lasts is logged again.
pub const LOG_EVERY: Duration = Duration::from_secs(60);

/// What makes the manager refuse writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalCause {
    /// The database's identity is missing or not the one this manager verified at start-up.
    Identity,
    /// This manager does not hold the writer lease of its Redis prefix.
    WriterLease,
}

impl RefusalCause {
    /// Every cause, in the order of `/metrics`.
    pub const ALL: [RefusalCause; 2] = [RefusalCause::Identity, RefusalCause::WriterLease];

    /// The cause's label in `/metrics` and the log.
    pub fn label(self) -> &'static str {
        match self {
            RefusalCause::Identity => "identity",
            RefusalCause::WriterLease => "writer_lease",
        }
    }

    fn slot(self) -> &'static Slot {
        match self {
            RefusalCause::Identity => &SLOTS[0],
            RefusalCause::WriterLease => &SLOTS[1],
        }
    }
}

/// The state of one cause.
struct Slot {
    refused: AtomicBool,
    /// Operations refused for this cause since the process started.
    count: AtomicU64,
    detail: Mutex<Option<Detail>>,
}

struct Detail {
    message: String,
    since: Instant,
    logged: Instant,
}

static SLOTS: [Slot; 2] = [Slot::new(), Slot::new()];

impl Slot {
    const fn new() -> Slot {
        Slot { refused: AtomicBool::new(false), count: AtomicU64::new(0), detail: Mutex::new(None) }
    }
}

/// Records that an operation was refused for `cause` (logging when the refusal starts, when its reason
/// changes, and every [`LOG_EVERY`]) and returns the operation's error: `write refused: <message>`.
pub fn refuse(cause: RefusalCause, message: &str) -> KvError {
    let slot = cause.slot();
    slot.count.fetch_add(1, Ordering::Relaxed);
    let mut detail = slot.detail.lock().unwrap_or_else(|p| p.into_inner());
    let now = Instant::now();
    let log = match detail.as_mut() {
        Some(d) if d.message == message && d.logged.elapsed() < LOG_EVERY => false,
        Some(d) => {
            d.message = message.to_string();
            d.logged = now;
            true
        }
        None => {
            *detail = Some(Detail { message: message.to_string(), since: now, logged: now });
            true
        }
    };
    slot.refused.store(true, Ordering::Release);
    if log {
        let refused = slot.count.load(Ordering::Relaxed);
        tracing::error!(cause = cause.label(), refused, "writes refused: {message}");
    }
    KvError::Aborted(format!("write refused: {message}"))
}

/// Records that a check of `cause` passed: lifts a refusal (logging how long it lasted). Cheap when none.
pub fn accept(cause: RefusalCause) {
    let slot = cause.slot();
    // A load first: every transaction passes here, and a shared write on each would contend.
    if !slot.refused.load(Ordering::Acquire) || !slot.refused.swap(false, Ordering::AcqRel) {
        return;
    }
    let detail = slot.detail.lock().unwrap_or_else(|p| p.into_inner()).take();
    let lasted = detail.as_ref().map(|d| d.since.elapsed()).unwrap_or_default();
    tracing::warn!(cause = cause.label(), "writes accepted again after {lasted:.1?} of refusal");
}

/// Whether writes are refused for any cause.
pub fn any() -> bool {
    SLOTS.iter().any(|slot| slot.refused.load(Ordering::Acquire))
}

/// Each cause: whether it refuses writes now, its message, and how many operations it refused so far.
pub fn status() -> Vec<(RefusalCause, Option<String>, u64)> {
    RefusalCause::ALL
        .iter()
        .map(|&cause| {
            let slot = cause.slot();
            let message = if slot.refused.load(Ordering::Acquire) {
                slot.detail.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(|d| d.message.clone())
            } else {
                None
            };
            (cause, message, slot.count.load(Ordering::Relaxed))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_an_abort_naming_the_reason_and_lasts_until_a_check_passes() {
        let err = refuse(RefusalCause::WriterLease, "Redis at x, prefix \"p\": lease lost");
        assert_eq!(err, KvError::Aborted("write refused: Redis at x, prefix \"p\": lease lost".into()));
        assert!(any());
        let (_, message, count) = status()[1].clone();
        assert_eq!(message.as_deref(), Some("Redis at x, prefix \"p\": lease lost"));
        assert!(count >= 1);
        accept(RefusalCause::WriterLease);
        assert_eq!(status()[1].1, None);
    }
}
