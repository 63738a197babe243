//! [`StateManager`]: the sector records, their queries, and the transaction discipline every change follows.

use std::sync::Arc;

use manager_plugin::kv::{Db, KvError, KvStore, Txn};
use manager_plugin::sector::{SectorId, SectorState, WorkerState};
use manager_plugin::sync::SectorEvent;

use super::change::{Answer, Change, Reads};
use super::error::SectorError;
use super::group::GroupWriter;
use super::keys::{self, COLLECTION};
use super::locks::{LockKey, LockTable};
use super::outbox::{self, SeqTicket, Sequencer};
use super::settle::{commit_settled, settle_doubtful};

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
/// Every method blocks on the store; call them from a blocking context (e.g. `spawn_blocking`), or use the
/// `*_async` variants.
///
/// Opened with [`open_grouped`](StateManager::open_grouped) (the daemon does for RocksDB), the single-sector
/// changes (update, finalize, restore, import) go through one writer thread that commits the changes waiting at
/// once as ONE transaction (`group.rs`); opened with [`open`](StateManager::open), each is its own transaction.
pub struct StateManager {
    pub(super) store: Arc<dyn KvStore>,
    pub(super) locks: LockTable,
    pub(super) sequencer: Arc<Sequencer>,
    /// The group-commit writer, when the changes are grouped.
    pub(super) group: Option<GroupWriter>,
    /// Keeps the database alive as long as its collection handle.
    db: Arc<dyn Db>,
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
    /// Opens (creating if needed) the `sectors` collection of `db`, every change its own transaction. The
    /// database must already be running.
    pub fn open(db: Arc<dyn Db>) -> Result<StateManager, SectorError> {
        let store: Arc<dyn KvStore> = Arc::from(
            db.open_collection(COLLECTION)
                .map_err(|source| SectorError::kv(format!("open collection {COLLECTION:?}"), source))?,
        );
        let seed = outbox::largest_known_seq(&*store)
            .map_err(|source| SectorError::kv(format!("read the outbox of collection {COLLECTION:?}"), source))?;
        let sequencer = Arc::new(Sequencer::new(seed));
        Ok(StateManager { store, locks: LockTable::default(), sequencer, group: None, db })
    }

    /// Like [`open`](StateManager::open), with group commit for the single-sector changes: one writer thread
    /// commits every change waiting (up to a bound in count and bytes) as one transaction, one synced write,
    /// then answers each caller (see `group.rs`). For a store whose transaction commit is one local write
    /// (RocksDB); a store answering over the network keeps one transaction per change.
    pub fn open_grouped(db: Arc<dyn Db>) -> Result<StateManager, SectorError> {
        let mut sectors = StateManager::open(db)?;
        let writer =
            GroupWriter::start(Arc::clone(&sectors.store), Arc::clone(&sectors.sequencer), Arc::clone(&sectors.db))
                .map_err(|err| SectorError::kv("start the group-commit writer", KvError::Backend(err.to_string())))?;
        sectors.group = Some(writer);
        Ok(sectors)
    }

    /// Applies `change`: through the group writer when there is one, else in its own transaction under the
    /// sector's lock.
    pub(super) fn apply(&self, change: Change) -> Result<Answer, SectorError> {
        match &self.group {
            Some(group) => group.apply_blocking(change),
            None => self.apply_direct(&change),
        }
    }

    /// [`apply`](StateManager::apply) without holding a thread while the group commits (or, without group
    /// commit, on the blocking pool).
    pub(super) async fn apply_async(self: &Arc<Self>, change: Change) -> Result<Answer, SectorError> {
        match &self.group {
            Some(group) => group.apply(change).await,
            None => {
                let this = Arc::clone(self);
                let describe = change.describe();
                tokio::task::spawn_blocking(move || this.apply_direct(&change)).await.unwrap_or_else(|err| {
                    Err(SectorError::kv(describe, KvError::Panicked(format!("the blocking task ended: {err}"))))
                })
            }
        }
    }

    /// `change` as its own transaction, under its sector's lock.
    fn apply_direct(&self, change: &Change) -> Result<Answer, SectorError> {
        let _lock = self.locks.lock([LockKey::Sector(change.sector())]);
        self.write(|| change.describe(), |txn, ticket| Ok(change.decide(Reads(txn))?.write_in(txn, ticket)?))
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
        settle_doubtful(&*self.store, &self.sequencer);
        let mut ticket = self.sequencer.ticket();
        let mut output = None;
        let mut refusal = None;
        let result = commit_settled(&*self.store, &mut ticket, &mut |txn, ticket| {
            run_body(&mut |txn| body(txn, ticket), txn, &mut output, &mut refusal)
        });
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
    Reads(txn).load(ws, id)
}

/// Whether sector `id` exists in state `ws` (the read is tracked by the transaction like any other).
pub(super) fn sector_exists(txn: &dyn Txn, ws: WorkerState, id: SectorId) -> Result<bool, Abort> {
    Reads(txn).exists(ws, id)
}

/// Writes `state` as sector `state.id` in state `ws`.
pub(super) fn save_sector(txn: &dyn Txn, ws: WorkerState, state: &SectorState) -> Result<(), Abort> {
    let key = keys::sector_key(ws, state.id);
    let json = serde_json::to_vec(state).map_err(|err| SectorError::codec(&key, format!("encode: {err}")))?;
    Ok(txn.put(&key, &json)?)
}

/// Writes `event` to the outbox in `txn` (see [`outbox::emit`]).
pub(super) fn emit(txn: &dyn Txn, ticket: &mut SeqTicket<'_>, event: &SectorEvent) -> Result<(), Abort> {
    Ok(outbox::emit(txn, ticket, event)?)
}
