//! [`StateManager`]: the sector records, their queries, and the transaction discipline every change follows.

use std::sync::Arc;

use manager_plugin::kv::{Db, KvError, KvStore, Txn};
use manager_plugin::sector::{SectorId, SectorState, WorkerState};
use manager_plugin::sync::SectorEvent;

use super::error::SectorError;
use super::keys::{self, COLLECTION};
use super::locks::LockTable;
use super::outbox::{self, SeqTicket, Sequencer, TXN_ATTEMPTS};
use super::settle::commit_outcome_unknown;

/// Keeps every sector's state (online while being worked on, offline once finalized), hands out sector numbers,
/// and records each change in a durable outbox for SyncSectorState plugins (see [`Deliverer`](super::Deliverer)).
///
/// What callers may rely on:
/// - operations on one sector are serialized (per-sector locks; a batch takes its locks in sorted order);
/// - every change is ONE transaction of the `sectors` collection that also writes its outbox event: after a crash
///   the sector is wholly before or wholly after the change, and the event exists exactly when the change does;
/// - a change never waits for, or fails because of, event delivery;
/// - sector numbers are never handed out twice, also across restarts.
///
/// Every method blocks on the store; call them from a blocking context (e.g. `spawn_blocking`).
pub struct StateManager {
    pub(super) store: Box<dyn KvStore>,
    pub(super) locks: LockTable,
    pub(super) sequencer: Sequencer,
    /// Keeps the database alive as long as its collection handle.
    _db: Arc<dyn Db>,
}

/// Why a transaction body stopped: a store error (retried on conflict) or a sector-level refusal (returned as is).
pub(super) enum Abort {
    Kv(KvError),
    Sector(SectorError),
}

impl From<KvError> for Abort {
    fn from(err: KvError) -> Self {
        Abort::Kv(err)
    }
}

impl From<SectorError> for Abort {
    fn from(err: SectorError) -> Self {
        Abort::Sector(err)
    }
}

impl StateManager {
    /// Opens (creating if needed) the `sectors` collection of `db`. The database must already be running.
    pub fn open(db: Arc<dyn Db>) -> Result<StateManager, SectorError> {
        let store = db
            .open_collection(COLLECTION)
            .map_err(|source| SectorError::kv(format!("open collection {COLLECTION:?}"), source))?;
        let seed = outbox::largest_known_seq(&*store)
            .map_err(|source| SectorError::kv(format!("read the outbox of collection {COLLECTION:?}"), source))?;
        Ok(StateManager { store, locks: LockTable::default(), sequencer: Sequencer::new(seed), _db: db })
    }

    /// Sector `id` in state `ws`, or `None` when it is not there.
    pub fn find(&self, ws: WorkerState, id: SectorId) -> Result<Option<SectorState>, SectorError> {
        self.read(|| format!("find sector {id} among {} sectors", ws.collection()), |txn| load_sector(txn, ws, id))
    }

    /// The delivery cursors of every SyncSectorState plugin that ever received events, by name.
    pub fn sync_cursors(&self) -> Result<Vec<(String, u64)>, SectorError> {
        outbox::persisted_cursors(&*self.store).map_err(|source| SectorError::kv("read delivery cursors", source))
    }

    /// Forgets plugin `name`'s delivery cursor, so the outbox no longer keeps events for it (use after removing a
    /// SyncSectorState plugin for good). `false` if it had none. A plugin that comes back starts from the oldest
    /// event still in the outbox.
    pub fn retire_sync_cursor(&self, name: &str) -> Result<bool, SectorError> {
        let retired = outbox::delete_cursor(&*self.store, name)
            .map_err(|source| SectorError::kv(format!("retire the delivery cursor of {name:?}"), source))?;
        self.sequencer.signal().notify();
        Ok(retired)
    }

    /// Sector `id` and where it is (online first, like the Go manager), or `None`. Both states are read from one
    /// snapshot, so a sector moving between them is never missed.
    pub fn find_in_all_states(&self, id: SectorId) -> Result<Option<(WorkerState, SectorState)>, SectorError> {
        self.read(
            || format!("find sector {id}"),
            |txn| {
                for ws in [WorkerState::Online, WorkerState::Offline] {
                    if let Some(state) = load_sector(txn, ws, id)? {
                        return Ok(Some((ws, state)));
                    }
                }
                Ok(None)
            },
        )
    }

    /// Runs `body` in a read-only transaction. `op` names the operation in errors.
    pub(super) fn read<T>(
        &self,
        op: impl FnOnce() -> String,
        mut body: impl FnMut(&dyn Txn) -> Result<T, Abort>,
    ) -> Result<T, SectorError> {
        let mut output = None;
        let mut refusal = None;
        let result = self.store.view(&mut |txn| run_body(&mut body, txn, &mut output, &mut refusal));
        finish(op, result, output, refusal)
    }

    /// Runs `body` in a read-write transaction, retried on conflict. `body` draws the seq of the event it writes
    /// from the ticket; the ticket's seqs leave the in-flight set (and deliverers are woken) only after the
    /// transaction's outcome is known: committed, not committed, or, when the commit failed ambiguously and could
    /// not be settled, later (see `settle.rs`). A commit that failed but is found applied is a success.
    pub(super) fn write<T>(
        &self,
        op: impl FnOnce() -> String,
        mut body: impl FnMut(&dyn Txn, &mut SeqTicket<'_>) -> Result<T, Abort>,
    ) -> Result<T, SectorError> {
        self.settle_doubtful();
        let mut ticket = self.sequencer.ticket();
        let mut output = None;
        let mut refusal = None;
        // Whether the last attempt's body succeeded, so an error came from the commit itself.
        let mut committing;
        let mut tries = 0;
        let result = loop {
            tries += 1;
            committing = false;
            ticket.begin_attempt();
            let attempt = self.store.update(&mut |txn| {
                ticket.begin_attempt();
                committing = false;
                run_body(&mut |txn| body(txn, &mut ticket), txn, &mut output, &mut refusal)?;
                committing = true;
                Ok(())
            });
            if matches!(attempt, Err(KvError::Conflict)) {
                crate::metrics::global().kv_conflicts.inc();
            }
            match attempt {
                Err(KvError::Conflict) if self.store.need_retry_transactions() && tries < TXN_ATTEMPTS => {
                    crate::metrics::global().kv_retries.inc();
                    continue;
                }
                other => break other,
            }
        };
        let result = match (result, ticket.attempt_seq()) {
            (Err(err), Some(seq)) if committing && commit_outcome_unknown(&err) => {
                self.settle_failed_commit(&mut ticket, seq, err)
            }
            (other, _) => other,
        };
        drop(ticket);
        finish(op, result, output, refusal)
    }
}

/// Runs one attempt of a transaction body, keeping its output or its refusal for [`finish`].
fn run_body<T>(
    body: &mut dyn FnMut(&dyn Txn) -> Result<T, Abort>,
    txn: &dyn Txn,
    output: &mut Option<T>,
    refusal: &mut Option<SectorError>,
) -> Result<(), KvError> {
    *refusal = None;
    // The body may run inside a KVStore plugin's guard: a panic here must not unwind into the plugin.
    let outcome = crate::plugins::host_callback::catch("a sector transaction body", || body(txn));
    match outcome.map_err(KvError::Aborted)? {
        Ok(value) => {
            *output = Some(value);
            Ok(())
        }
        Err(Abort::Kv(err)) => Err(err),
        Err(Abort::Sector(err)) => {
            let message = err.to_string();
            *refusal = Some(err);
            Err(KvError::Aborted(message))
        }
    }
}

/// The outcome of a transaction: the body's output, its refusal, or the store's error named by `op`.
fn finish<T>(
    op: impl FnOnce() -> String,
    result: Result<(), KvError>,
    output: Option<T>,
    refusal: Option<SectorError>,
) -> Result<T, SectorError> {
    match (result, refusal) {
        // Only the refusal of the attempt that ended the transaction: an earlier attempt's refusal (decided on
        // stale reads) must not stand in for a later store error such as a refused write.
        (Err(KvError::Aborted(message)), Some(refusal)) if message == refusal.to_string() => Err(refusal),
        (Err(source), _) => Err(SectorError::kv(op(), source)),
        (Ok(()), _) => output.ok_or_else(|| {
            SectorError::kv(op(), KvError::Backend("the store committed without running the transaction".into()))
        }),
    }
}

/// Decodes the sector record stored under `key`.
pub(super) fn decode(key: &[u8], value: &[u8]) -> Result<SectorState, SectorError> {
    serde_json::from_slice(value).map_err(|err| SectorError::codec(key, format!("not a sector state: {err}")))
}

/// Sector `id` in state `ws`, as `txn` sees it.
pub(super) fn load_sector(txn: &dyn Txn, ws: WorkerState, id: SectorId) -> Result<Option<SectorState>, Abort> {
    let key = keys::sector_key(ws, id);
    match txn.get(&key) {
        Ok(value) => Ok(Some(decode(&key, &value)?)),
        Err(KvError::KeyNotFound) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

/// Whether sector `id` exists in state `ws` (the read is tracked by the transaction like any other).
pub(super) fn sector_exists(txn: &dyn Txn, ws: WorkerState, id: SectorId) -> Result<bool, Abort> {
    match txn.peek(&keys::sector_key(ws, id), &mut |_| {}) {
        Ok(()) => Ok(true),
        Err(KvError::KeyNotFound) => Ok(false),
        Err(err) => Err(err.into()),
    }
}

/// Writes `state` as sector `state.id` in state `ws`.
pub(super) fn save_sector(txn: &dyn Txn, ws: WorkerState, state: &SectorState) -> Result<(), Abort> {
    let key = keys::sector_key(ws, state.id);
    let json = serde_json::to_vec(state).map_err(|err| SectorError::codec(&key, format!("encode: {err}")))?;
    Ok(txn.put(&key, &json)?)
}

/// Deletes sector `id` from state `ws`.
pub(super) fn delete_sector(txn: &dyn Txn, ws: WorkerState, id: SectorId) -> Result<(), Abort> {
    Ok(txn.del(&keys::sector_key(ws, id))?)
}

/// Writes `event` to the outbox in `txn`. Call it after the transaction's reads (see [`SeqTicket::draw`]).
///
/// The entry's key is read first, so the transaction depends on it: settling an ambiguous commit writes a fence
/// there (`settle.rs`), which makes this transaction fail if it was still on its way to the store.
pub(super) fn emit(txn: &dyn Txn, ticket: &mut SeqTicket<'_>, event: &SectorEvent) -> Result<(), Abort> {
    let seq = ticket.draw();
    match txn.get(&keys::outbox_key(seq)) {
        // Taken (a fence left behind): try again with a new seq.
        Ok(_) => return Err(KvError::Conflict.into()),
        Err(KvError::KeyNotFound) => {}
        Err(err) => return Err(err.into()),
    }
    Ok(outbox::put_event(txn, seq, event)?)
}
