//! The delivery loop of one target: take the events after the cursor from the feed (or read them from the outbox
//! when the target is behind the feed's window), deliver in order with retries, persist the cursor, report the
//! lag.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use manager_plugin::sync::SectorEvent;

use super::super::outbox;
use super::feed::{FeedEntry, Next};
use super::progress::{InFlight, SkipOutcome, WorkerState, unix_now};
use super::{BATCH, Shared, StoredEvent, control, panic_message};

/// The delivery loop of one target.
pub(super) struct TargetWorker {
    pub(super) shared: Arc<Shared>,
    pub(super) state: Arc<WorkerState>,
}

/// While a target keeps up with a stream of events, its cursor is written at most this often (each write is a
/// synced transaction): a crash re-delivers the batch in progress and the events acknowledged in this time before
/// it (delivery is at least once). A target that stops, fails or is skipped past an event writes it at once; one that caught up
/// writes it when due.
pub(super) const CURSOR_PERSIST_INTERVAL: Duration = Duration::from_millis(200);

/// When [`TargetWorker::persist`] writes.
#[derive(Clone, Copy)]
enum Persist {
    /// Now (stopping, retrying, skipping).
    Now,
    /// After a batch: once the last write is [`CURSOR_PERSIST_INTERVAL`] old.
    Batched,
}

/// How one event's delivery ended.
enum Outcome {
    Delivered,
    Skipped,
    Stopped,
}

impl TargetWorker {
    fn name(&self) -> &str {
        &self.state.name
    }

    pub(super) fn run(&self) {
        if !self.load_cursor() {
            return;
        }
        self.report_lag(None);
        let feed = &self.shared.feed;
        loop {
            let seen = feed.appended.generation();
            if self.shared.is_stopping() {
                break;
            }
            let cursor = self.state.progress().cursor;
            let batch = match feed.next(cursor, BATCH) {
                Next::Entries(entries) => entries,
                Next::Behind { through } => match self.read_backlog(cursor, through) {
                    Some(entries) => entries,
                    None => continue,
                },
                Next::CaughtUp => {
                    // A deferred cursor is written once it is due, unless more events came meanwhile.
                    self.persist(Persist::Batched);
                    let wait = self.deferred_due().map_or(self.shared.options.poll_interval, |due| {
                        due.clamp(Duration::from_millis(1), self.shared.options.poll_interval)
                    });
                    feed.appended.wait_past(seen, wait);
                    continue;
                }
            };
            let mut rest: &[Arc<FeedEntry>] = &batch;
            while !rest.is_empty() && !self.shared.is_stopping() {
                match self.deliver_leading(rest) {
                    Some(taken) => rest = &rest[taken..],
                    None => {
                        self.persist(Persist::Now);
                        return;
                    }
                }
            }
            self.persist(Persist::Batched);
            self.report_lag(None);
        }
        self.persist(Persist::Now);
    }

    /// The outbox entries after `cursor` through `through` (a backlog older than the feed's window), decoded
    /// here. `None` after a read error (logged; retried after a pause) or when there are none: the cursor then
    /// moves to `through` (nothing lies between) and the feed serves the rest.
    fn read_backlog(&self, cursor: u64, through: u64) -> Option<Vec<Arc<FeedEntry>>> {
        match outbox::read_after(&*self.shared.sectors.store, cursor, through, BATCH) {
            Ok(batch) if batch.is_empty() => {
                self.state.progress().pass_empty(through);
                None
            }
            Ok(batch) => Some(batch.into_iter().map(|(seq, value)| Arc::new(FeedEntry::decode(seq, value))).collect()),
            Err(err) => {
                tracing::warn!(target_name = %self.name(), error = %err, "cannot read the outbox; retrying");
                self.shared.pause(self.shared.options.poll_interval);
                None
            }
        }
    }

    /// Loads the persisted cursor, retrying while the store fails; `false` when asked to stop meanwhile.
    fn load_cursor(&self) -> bool {
        let mut backoff = self.shared.options.initial_backoff;
        loop {
            match outbox::load_or_register_cursor(&*self.shared.sectors.store, self.name()) {
                Ok(cursor) => {
                    let mut progress = self.state.progress();
                    progress.cursor = cursor;
                    progress.persisted = cursor;
                    progress.counted_through = cursor;
                    progress.pending = 0;
                    drop(progress);
                    self.shared.cursor_advanced(self.name(), cursor);
                    return true;
                }
                Err(err) => {
                    tracing::warn!(target_name = %self.name(), error = %err, "cannot load the delivery cursor; retrying");
                    self.report_lag(Some(format!("load delivery cursor: {err}")));
                }
            }
            if self.shared.pause(backoff) {
                return false;
            }
            backoff = (backoff * 2).min(self.shared.options.max_backoff);
        }
    }

    /// Delivers the leading entries of `rest` (one call of the target), retrying the one that fails until it is
    /// delivered or skipped. How many entries the cursor moved past (at least one), or `None` when stop was
    /// requested during a retry.
    fn deliver_leading(&self, rest: &[Arc<FeedEntry>]) -> Option<usize> {
        let first = rest.first()?;
        let stored = match &first.event {
            Ok(stored) => stored,
            // Retrying cannot help an entry that does not decode: skip it rather than wedge the target.
            Err(err) => {
                tracing::error!(target_name = %self.name(), seq = first.seq, error = %err, "skipping an undecodable outbox entry");
                self.state.progress().advance(first.seq);
                self.report_lag(Some(format!("skipped undecodable outbox entry {}: {err}", first.seq)));
                return Some(1);
            }
        };
        let one_at_a_time = {
            let progress = self.state.progress();
            progress.skip.is_some() || first.seq <= progress.single_through
        };
        let events: Vec<&StoredEvent> = if one_at_a_time {
            vec![stored]
        } else {
            let limit = self.state.target.batch_limit().max(1);
            rest.iter().take(limit).map_while(|entry| entry.event.as_ref().ok()).collect()
        };
        self.begin_call(first.seq);
        let result = catch_unwind(AssertUnwindSafe(|| self.state.target.deliver_batch(&events)));
        self.end_call(first.seq);
        let (delivered, error) = match result {
            Ok(outcome) => (outcome.delivered.min(events.len()), outcome.error),
            Err(panic) => (0, Some(format!("panicked: {}", panic_message(&*panic)))),
        };
        for entry in &rest[..delivered] {
            self.delivered(entry.seq);
            self.state.progress().advance(entry.seq);
        }
        let error = match error {
            Some(error) if delivered < events.len() => error,
            _ if delivered > 0 => return Some(delivered),
            _ => "the target took none of the events offered".to_string(),
        };
        if delivered == 0 && events.len() > 1 {
            self.refuse_batch_skip(first.seq, events.len());
        }
        // The failed entry is retried alone, and the rest of this batch goes one per call after it.
        let failed = &rest[delivered];
        if let Some(last) = rest.get(events.len() - 1) {
            let mut progress = self.state.progress();
            progress.single_through = progress.single_through.max(last.seq);
        }
        match self.retry(failed.seq, &events[delivered].event, &failed.value, error) {
            Outcome::Delivered => self.state.progress().advance(failed.seq),
            Outcome::Skipped => {
                self.state.progress().advance(failed.seq);
                self.persist(Persist::Now);
            }
            Outcome::Stopped => return None,
        }
        Some(delivered + 1)
    }

    /// Retries `event` (stored as `value`), whose delivery just failed with `error`, until it succeeds, an
    /// operator skips it, or stop is requested.
    fn retry(&self, seq: u64, event: &SectorEvent, value: &[u8], mut error: String) -> Outcome {
        let mut backoff = self.shared.options.initial_backoff;
        for attempt in 1u64.. {
            tracing::warn!(
                target_name = %self.name(), seq, attempt, error = %error, retry_in = ?backoff,
                "sync event delivery failed"
            );
            self.state.progress().failing = Some(seq);
            // Keep what was acknowledged so far, so a restart during a long outage does not repeat it.
            self.persist(Persist::Now);
            self.report_lag(Some(format!("event {seq} ({:?}): {error}", event.ext_point())));
            if self.wait_retry(backoff, seq) {
                return Outcome::Stopped;
            }
            backoff = (backoff * 2).min(self.shared.options.max_backoff);
            if self.state.progress().skip == Some(seq) && self.skip(seq, value) {
                return Outcome::Skipped;
            }
            self.begin_call(seq);
            let result = catch_unwind(AssertUnwindSafe(|| self.state.target.deliver(event)));
            self.end_call(seq);
            error = match result {
                Ok(Ok(())) => {
                    tracing::info!(target_name = %self.name(), seq, attempts = attempt + 1, "sync event delivered after retries");
                    self.delivered(seq);
                    return Outcome::Delivered;
                }
                Ok(Err(message)) => message,
                Err(panic) => format!("panicked: {}", panic_message(&*panic)),
            };
        }
        Outcome::Stopped
    }

    fn begin_call(&self, seq: u64) {
        let mut progress = self.state.progress();
        progress.in_flight = Some(InFlight { seq, began: Instant::now(), began_unix: unix_now() });
        progress.hung_reported = false;
    }

    fn end_call(&self, seq: u64) {
        let mut progress = self.state.progress();
        let call = progress.in_flight.take();
        if progress.hung_reported
            && let Some(call) = call
        {
            let seconds = call.began.elapsed().as_secs();
            tracing::warn!(target_name = %self.state.name, seq, seconds, "a hung SyncSectorState hook returned");
        }
        progress.hung_reported = false;
    }

    /// Clears failure and skip state once `seq` was delivered; a pending skip request hears it was not needed.
    fn delivered(&self, seq: u64) {
        let mut progress = self.state.progress();
        progress.failing = None;
        if progress.skip.take() == Some(seq) {
            progress.skip_outcome = Some((seq, SkipOutcome::Delivered));
            self.state.changed.notify_all();
        }
    }

    /// A skip asked while a call of `count` events starting at `seq` ran (a batch shows as its first event) cannot
    /// know which event was stuck once that call failed as a whole: it is answered as not done, and the events go
    /// one per call, where a skip names the event exactly.
    fn refuse_batch_skip(&self, seq: u64, count: usize) {
        let mut progress = self.state.progress();
        if progress.skip == Some(seq) {
            progress.skip = None;
            progress.skip_outcome = Some((seq, SkipOutcome::InBatch(count)));
            self.state.changed.notify_all();
        }
    }

    /// Saves the event and reports the outcome to the waiting operator; `true` when the event is skipped.
    fn skip(&self, seq: u64, value: &[u8]) -> bool {
        let dir = &self.shared.watch.skipped_events_dir;
        let saved = control::save_skipped(dir, self.name(), seq, value);
        let mut progress = self.state.progress();
        progress.skip = None;
        let skipped = match saved {
            Ok(path) => {
                tracing::warn!(
                    target_name = %self.state.name, seq, file = %path.display(),
                    "skipped a sync event at the operator's request; the event was saved to the file"
                );
                progress.failing = None;
                progress.skip_outcome = Some((seq, SkipOutcome::Skipped(path)));
                true
            }
            Err(reason) => {
                tracing::error!(target_name = %self.state.name, seq, %reason, "cannot save the event to skip; not skipping it");
                progress.skip_outcome = Some((seq, SkipOutcome::Failed(reason)));
                false
            }
        };
        self.state.changed.notify_all();
        skipped
    }

    /// Waits `backoff` before retrying `seq`, waking early for a skip request; `true` when stop is requested.
    fn wait_retry(&self, backoff: Duration, seq: u64) -> bool {
        let progress = self.state.progress();
        let _ = self
            .state
            .changed
            .wait_timeout_while(progress, backoff, |p| !self.shared.is_stopping() && p.skip != Some(seq))
            .unwrap_or_else(PoisonError::into_inner);
        self.shared.is_stopping()
    }

    /// How long until a deferred cursor write is due (`None`: nothing is deferred).
    fn deferred_due(&self) -> Option<Duration> {
        let progress = self.state.progress();
        (progress.cursor != progress.persisted).then(|| {
            progress.persisted_at.map_or(Duration::ZERO, |at| CURSOR_PERSIST_INTERVAL.saturating_sub(at.elapsed()))
        })
    }

    /// Persists the cursor if it moved (with [`Persist::Batched`], only when the last write is
    /// [`CURSOR_PERSIST_INTERVAL`] old); a failure is logged and retried at the next call.
    fn persist(&self, when: Persist) {
        let (cursor, persisted, persisted_at) = {
            let progress = self.state.progress();
            (progress.cursor, progress.persisted, progress.persisted_at)
        };
        if cursor == persisted {
            return;
        }
        let recent = persisted_at.is_some_and(|at| at.elapsed() < CURSOR_PERSIST_INTERVAL);
        if matches!(when, Persist::Batched) && recent {
            return;
        }
        match outbox::save_cursor(&*self.shared.sectors.store, self.name(), cursor) {
            Ok(()) => {
                let mut progress = self.state.progress();
                progress.persisted = cursor;
                progress.persisted_at = Some(Instant::now());
                drop(progress);
                self.shared.cursor_advanced(self.name(), cursor);
            }
            Err(err) => {
                tracing::warn!(target_name = %self.name(), cursor, error = %err, "cannot persist the delivery cursor")
            }
        }
    }

    /// Tells the target its lag: pending entries after the cursor, counting only entries not counted before.
    fn report_lag(&self, last_error: Option<String>) {
        let pending = match self.state.count_pending(&self.shared) {
            Ok(pending) => pending,
            Err(err) => {
                tracing::warn!(target_name = %self.name(), error = %err, "cannot count pending events");
                self.state.progress().pending
            }
        };
        control::check_backlog(&self.shared, &self.state, pending);
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| self.state.target.report_lag(pending, last_error))) {
            let panic = panic_message(&*panic);
            tracing::warn!(target_name = %self.name(), %panic, "sync target panicked in report_lag");
        }
    }
}
