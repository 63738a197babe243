//! The changes a [`StateManager`] makes: allocate, update, finalize, restore, import.
//!
//! Each one runs ONE transaction (its own, under the locks of the sectors it touches, or its group's, `group.rs`)
//! that reads the sector, writes the new state and writes the event to the outbox (the seq drawn after the
//! reads). Update, finalize, restore and import are [`Change`]s (`change.rs`); allocation and `update_with` run
//! here.

use std::sync::Arc;

use manager_plugin::sector::{AllocatedSector, SectorId, SectorState, SectorUpdate, WorkerState};
use manager_plugin::sync::{InitEvent, SectorEvent, UpdateEvent};

use super::change::{Answer, Change, Repeat, require};
use super::error::SectorError;
use super::keys;
use super::locks::LockKey;
use super::manager::{StateManager, emit, load_sector, save_sector};
use super::numbers::{NumberRange, plan_numbers};

/// How many times an allocation re-plans when an import took one of its planned numbers in the meantime.
const ALLOCATE_ATTEMPTS: usize = 16;

/// A miner an allocation may pick, with the numbers it may hand out (see [`StateManager::allocate_first`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinerCandidate {
    /// The miner actor ID.
    pub miner: u64,
    /// The seal proof its sectors get.
    pub proof_type: i64,
    /// Its `[Miners.Sector]` number range.
    pub range: NumberRange,
    /// Log at warn level when its range is full (Go's `Verbose`); at debug level otherwise.
    pub verbose: bool,
}

impl StateManager {
    /// Allocates `count` new sectors of `miner` with seal proof `proof_type`: takes the next numbers from the
    /// miner's counter (skipping any number that already has a record, e.g. an imported sector), creates their
    /// online records and writes one `Init` event, all in one transaction. Numbers are never handed out twice,
    /// also across restarts. `count == 0` allocates nothing and writes no event.
    pub fn allocate(&self, miner: u64, proof_type: i64, count: u32) -> Result<Vec<AllocatedSector>, SectorError> {
        self.allocate_in(miner, proof_type, count, NumberRange::UNBOUNDED)?
            .ok_or_else(|| SectorError::Allocation { miner, message: "the sector numbers are exhausted".to_string() })
    }

    /// Allocates `count` sectors from the first candidate whose range can hold them, in the given order (the Go
    /// manager picks among them at random; a fixed order is easier to predict). A candidate whose range is full
    /// is skipped. `Ok(empty)` when no candidate can allocate, or `count == 0`.
    pub fn allocate_first(
        &self,
        candidates: impl IntoIterator<Item = MinerCandidate>,
        count: u32,
    ) -> Result<Vec<AllocatedSector>, SectorError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        for candidate in candidates {
            let MinerCandidate { miner, proof_type, range, verbose } = candidate;
            if let Some(sectors) = self.allocate_in(miner, proof_type, count, range)? {
                return Ok(sectors);
            }
            if verbose {
                tracing::warn!(miner, count, ?range, "sector number range exhausted; skipping the miner");
            } else {
                tracing::debug!(miner, count, ?range, "sector number range exhausted; skipping the miner");
            }
        }
        Ok(Vec::new())
    }

    /// Like [`allocate`](StateManager::allocate), within `range`: `Ok(None)`, writing nothing, when the range
    /// cannot hold `count` more numbers.
    pub fn allocate_in(
        &self,
        miner: u64,
        proof_type: i64,
        count: u32,
        range: NumberRange,
    ) -> Result<Option<Vec<AllocatedSector>>, SectorError> {
        if count == 0 {
            return Ok(Some(Vec::new()));
        }
        let op = || format!("allocate {count} sector(s) for miner t0{miner}");
        let _counter = self.locks.lock([LockKey::Counter(miner)]);
        for _ in 0..ALLOCATE_ATTEMPTS {
            // Plan outside the transaction so the new sectors can be locked before it starts, then check inside
            // that the plan still holds (an import may have taken a number in between).
            let Some(planned) = self.read(op, |txn| plan_numbers(txn, miner, count, range))? else {
                return Ok(None);
            };
            let _sectors =
                self.locks.lock(planned.numbers.iter().map(|&number| LockKey::Sector(SectorId { miner, number })));
            let allocated = self.write(op, |txn, ticket| {
                let Some(plan) = plan_numbers(txn, miner, count, range)? else {
                    return Ok(Some(None));
                };
                if plan != planned {
                    return Ok(None);
                }
                let sectors: Vec<AllocatedSector> = plan
                    .numbers
                    .iter()
                    .map(|&number| AllocatedSector { id: SectorId { miner, number }, proof_type })
                    .collect();
                for sector in &sectors {
                    save_sector(txn, WorkerState::Online, &SectorState::new(sector.id, proof_type))?;
                }
                txn.put(&keys::next_key(miner), plan.next.to_string().as_bytes())?;
                let event = InitEvent { sectors: sectors.clone(), worker_state: WorkerState::Online };
                emit(txn, ticket, &SectorEvent::Init(event))?;
                Ok(Some(Some(sectors)))
            })?;
            if let Some(sectors) = allocated {
                if let Some(first) = sectors.as_ref().and_then(|s| s.first()) {
                    tracing::debug!(miner, count, first = first.id.number, "allocated sectors");
                }
                return Ok(sectors);
            }
        }
        Err(SectorError::Allocation {
            miner,
            message: format!(
                "concurrent imports kept taking the planned numbers ({ALLOCATE_ATTEMPTS} attempts); retry"
            ),
        })
    }

    /// Applies `updates` in order to online sector `id` and writes one `Update` event. An empty list changes
    /// nothing and writes no event. Fails with [`SectorError::NotFound`] when the sector is not online.
    pub fn update(&self, id: SectorId, updates: Vec<SectorUpdate>) -> Result<SectorState, SectorError> {
        self.apply(Change::Update { id, updates }).map(Answer::into_state)
    }

    /// [`update`](StateManager::update) for async callers: with group commit it waits for its group without
    /// holding a thread; otherwise it runs on the blocking pool.
    pub async fn update_async(
        self: &Arc<Self>,
        id: SectorId,
        updates: Vec<SectorUpdate>,
    ) -> Result<SectorState, SectorError> {
        self.apply_async(Change::Update { id, updates }).await.map(Answer::into_state)
    }

    /// Lets `decide` look at online sector `id` and choose the updates, inside the sector's transaction: the
    /// updates are applied in order and written with one `Update` event (none when the list is empty), so what
    /// `decide` answered and what is stored commit together (the chain-facing methods, `crate::chain`). `decide`
    /// may run more than once (a conflict retries the transaction); its refusal `E` writes nothing. Fails with
    /// [`SectorError::NotFound`] when the sector is not online.
    pub fn update_with<T, E>(
        &self,
        id: SectorId,
        mut decide: impl FnMut(&SectorState) -> Result<(T, Vec<SectorUpdate>), E>,
    ) -> Result<Result<(T, SectorState), E>, SectorError> {
        let _lock = self.locks.lock([LockKey::Sector(id)]);
        self.write(
            || format!("update sector {id}"),
            |txn, ticket| {
                let mut state = require(load_sector(txn, WorkerState::Online, id)?, id, Some(WorkerState::Online))?;
                let (answer, updates) = match decide(&state) {
                    Ok(decided) => decided,
                    Err(refusal) => return Ok(Err(refusal)),
                };
                if updates.is_empty() {
                    return Ok(Ok((answer, state)));
                }
                updates.iter().for_each(|update| state.apply(update));
                save_sector(txn, WorkerState::Online, &state)?;
                let event =
                    UpdateEvent { sector_id: id, worker_state: WorkerState::Online, updates, state: state.clone() };
                emit(txn, ticket, &SectorEvent::Update(event))?;
                Ok(Ok((answer, state)))
            },
        )
    }

    /// Finalizes sector `id`: moves it from online to offline with `Finalized = true` and writes a `Finalize`
    /// event. Finalizing a sector that is already offline returns it unchanged without writing anything (so a
    /// worker may safely repeat `ReportFinalized`). Fails with [`SectorError::NotFound`] when the sector is
    /// in neither state.
    pub fn finalize(&self, id: SectorId) -> Result<SectorState, SectorError> {
        self.apply(finalize(id)).map(Answer::into_state)
    }

    /// [`finalize`](StateManager::finalize) for async callers (see [`update_async`](StateManager::update_async)).
    pub async fn finalize_async(self: &Arc<Self>, id: SectorId) -> Result<SectorState, SectorError> {
        self.apply_async(finalize(id)).await.map(Answer::into_state)
    }

    /// Applies `updates` and finalizes the ONLINE sector `id`, in one transaction (e.g. the abort reason of
    /// `ReportAborted`, which the Go manager sets in its finalize hook).
    ///
    /// A sector that is not online (already finalized, or unknown) fails with [`SectorError::NotFound`] among
    /// online sectors, and nothing is written: like the Go manager, whose finalize loads the online record only
    /// (`damocles-manager/modules/impl/sectors/state_mgr.go`, `Finalize`), so a late `ReportAborted` from a
    /// worker that restarted cannot rewrite a sector finalized meanwhile (answered with code 11001).
    pub fn finalize_with(&self, id: SectorId, updates: Vec<SectorUpdate>) -> Result<SectorState, SectorError> {
        self.apply(Change::Finalize { id, updates, repeat: Repeat::NotFound }).map(Answer::into_state)
    }

    /// [`finalize_with`](StateManager::finalize_with) for async callers (see
    /// [`update_async`](StateManager::update_async)).
    pub async fn finalize_with_async(
        self: &Arc<Self>,
        id: SectorId,
        updates: Vec<SectorUpdate>,
    ) -> Result<SectorState, SectorError> {
        self.apply_async(Change::Finalize { id, updates, repeat: Repeat::NotFound }).await.map(Answer::into_state)
    }

    /// Restores sector `id` from offline to online (`Finalized = false`) and writes a `Restore` event.
    ///
    /// Without `forced` the Go manager's rules apply: only an aborted sector (non-empty `AbortReason`) without
    /// deals may be restored, and its abort reason is cleared; otherwise [`SectorError::RestoreRefused`].
    /// With `forced` the sector is restored as it is. A sector that is already online (only) is returned
    /// unchanged without an event, whatever `forced` says, so a repeated restore is harmless.
    /// Fails with [`SectorError::NotFound`] when the sector is in neither state.
    pub fn restore(&self, id: SectorId, forced: bool) -> Result<SectorState, SectorError> {
        self.apply(Change::Restore { id, forced }).map(Answer::into_state)
    }

    /// Imports `state`, as given (Go keeps `Imported` as it is sent, `modules/sealer/sealer_cli.go:470-481`), into
    /// state `ws`. Returns `false`, writing nothing, when the
    /// sector already exists in either state and `overwrite` is off. With `overwrite`, an existing record is
    /// replaced, and a record in the other state is removed, so a sector always lives in one state only.
    /// Writes an `Import` event whenever it writes the sector.
    pub fn import(&self, ws: WorkerState, state: SectorState, overwrite: bool) -> Result<bool, SectorError> {
        match self.apply(Change::Import { ws, state: Box::new(state), overwrite })? {
            Answer::Imported(imported) => Ok(imported),
            Answer::State(_) => Ok(true),
        }
    }
}

/// `ReportFinalized`'s change: a repeat answers the offline record unchanged.
fn finalize(id: SectorId) -> Change {
    Change::Finalize { id, updates: Vec::new(), repeat: Repeat::ReturnUnchanged }
}

impl Answer {
    /// The state a sector change answers (an import answers whether it wrote, and is never asked for one).
    fn into_state(self) -> SectorState {
        match self {
            Answer::State(state) => state,
            Answer::Imported(_) => SectorState::default(),
        }
    }
}
