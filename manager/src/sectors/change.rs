//! The single-sector changes (update, finalize, restore, import) as values, decided in two phases so that the
//! direct path and the group commit (`group.rs`) share one implementation:
//!
//! 1. [`Change::decide`] only reads (through [`Reads`], which cannot write) and either refuses the change or
//!    returns a [`Plan`]: the keys to delete and write, the new state encoded ONCE, and the event encoded with
//!    those same bytes (no second encoding of the state, no clone of it into the event).
//! 2. [`Plan::write`] writes the plan and its outbox entry. It can fail only with a store error, never with a
//!    refusal: a change is refused before it has written anything, so a refused change in a group leaves nothing
//!    behind in the group's transaction.

use manager_plugin::kv::{KvError, Txn};
use manager_plugin::sector::{SectorId, SectorState, SectorUpdate, WorkerState};
use serde::Serialize;
use serde_json::value::RawValue;

use super::error::SectorError;
use super::keys;
use super::manager::{Abort, decode};
use super::outbox::{self, SeqTicket};

/// One change of one sector, as the RPC layer and the operator commands ask for it.
#[derive(Debug, Clone)]
pub(super) enum Change {
    /// Apply `updates` in order to online sector `id` (nothing, no event, when empty).
    Update { id: SectorId, updates: Vec<SectorUpdate> },
    /// Apply `updates` and move online sector `id` offline; `repeat` says what an offline sector gets.
    Finalize { id: SectorId, updates: Vec<SectorUpdate>, repeat: Repeat },
    /// Move offline sector `id` back online (Go's rules unless `forced`).
    Restore { id: SectorId, forced: bool },
    /// Write `state` into `ws` (replacing a record in either state only with `overwrite`).
    Import { ws: WorkerState, state: Box<SectorState>, overwrite: bool },
}

/// What finalizing a sector that is already offline does.
#[derive(Debug, Clone, Copy)]
pub(super) enum Repeat {
    /// Return the offline record unchanged, writing nothing (a repeated `ReportFinalized`).
    ReturnUnchanged,
    /// Answer [`SectorError::NotFound`] among online sectors, writing nothing (a late `ReportAborted`).
    NotFound,
}

/// What a change answers its caller.
// Every answer but an import's is a state: boxing it would add an allocation to the common case.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Answer {
    /// The sector's state after the change (or unchanged).
    State(SectorState),
    /// Whether an import wrote the sector.
    Imported(bool),
}

/// A transaction seen only through its reads: what [`Change::decide`] gets, so it cannot write.
#[derive(Clone, Copy)]
pub(super) struct Reads<'a>(pub(super) &'a dyn Txn);

impl Reads<'_> {
    /// Sector `id` in state `ws`, or `None`.
    pub(super) fn load(&self, ws: WorkerState, id: SectorId) -> Result<Option<SectorState>, Abort> {
        let key = keys::sector_key(ws, id);
        match self.0.get(&key) {
            Ok(value) => Ok(Some(decode(&key, &value)?)),
            Err(KvError::KeyNotFound) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    /// Whether sector `id` exists in state `ws` (the read is tracked like any other).
    pub(super) fn exists(&self, ws: WorkerState, id: SectorId) -> Result<bool, Abort> {
        match self.0.peek(&keys::sector_key(ws, id), &mut |_| {}) {
            Ok(()) => Ok(true),
            Err(KvError::KeyNotFound) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }
}

/// What a decided change writes: nothing (`writes: None`), or one record deleted, one written and one event.
pub(super) struct Plan {
    answer: Answer,
    writes: Option<Writes>,
}

struct Writes {
    delete: Option<Vec<u8>>,
    key: Vec<u8>,
    /// The new state, encoded once: the record's value and, verbatim, the event's `State`.
    state: Box<RawValue>,
    /// The event (`SectorEvent`'s JSON), built around `state`'s bytes.
    event: Box<RawValue>,
}

impl Change {
    /// Names the change in errors (as the direct path always did).
    pub(super) fn describe(&self) -> String {
        match self {
            Change::Update { id, .. } => format!("update sector {id}"),
            Change::Finalize { id, .. } => format!("finalize sector {id}"),
            Change::Restore { id, .. } => format!("restore sector {id}"),
            Change::Import { ws, state, .. } => format!("import sector {} into {} sectors", state.id, ws.collection()),
        }
    }

    /// The sector the change concerns (its lock on the direct path).
    pub(super) fn sector(&self) -> SectorId {
        match self {
            Change::Update { id, .. } | Change::Finalize { id, .. } | Change::Restore { id, .. } => *id,
            Change::Import { state, .. } => state.id,
        }
    }

    /// Reads what the change depends on and decides it: a refusal, or the plan to write.
    pub(super) fn decide(&self, reads: Reads<'_>) -> Result<Plan, Abort> {
        match self {
            Change::Update { id, updates } => {
                let mut state = require(reads.load(WorkerState::Online, *id)?, *id, Some(WorkerState::Online))?;
                if updates.is_empty() {
                    return Ok(Plan::unchanged(Answer::State(state)));
                }
                updates.iter().for_each(|update| state.apply(update));
                let encoded = encode(*id, &state)?;
                let event = encode_event(
                    *id,
                    &Event::Update { sector_id: *id, worker_state: WorkerState::Online, updates, state: &encoded },
                )?;
                Ok(Plan::write(None, WorkerState::Online, *id, encoded, event, Answer::State(state)))
            }
            Change::Finalize { id, updates, repeat } => {
                let Some(mut state) = reads.load(WorkerState::Online, *id)? else {
                    return match repeat {
                        Repeat::ReturnUnchanged => Ok(Plan::unchanged(Answer::State(require(
                            reads.load(WorkerState::Offline, *id)?,
                            *id,
                            None,
                        )?))),
                        Repeat::NotFound => Err(SectorError::not_found(*id, Some(WorkerState::Online)).into()),
                    };
                };
                updates.iter().for_each(|update| state.apply(update));
                state.finalized = true;
                let encoded = encode(*id, &state)?;
                let event = encode_event(*id, &Event::Finalize { sector_id: *id, state: &encoded })?;
                Ok(Plan::write(
                    Some(WorkerState::Online),
                    WorkerState::Offline,
                    *id,
                    encoded,
                    event,
                    Answer::State(state),
                ))
            }
            Change::Restore { id, forced } => {
                let Some(mut state) = reads.load(WorkerState::Offline, *id)? else {
                    return Ok(Plan::unchanged(Answer::State(require(
                        reads.load(WorkerState::Online, *id)?,
                        *id,
                        None,
                    )?)));
                };
                if !forced {
                    let refuse = |reason: &str| SectorError::RestoreRefused { id: *id, reason: reason.to_string() };
                    if state.has_pieces() {
                        return Err(refuse("it holds deals").into());
                    }
                    if state.abort_reason.is_empty() {
                        return Err(refuse("it was not aborted").into());
                    }
                    state.abort_reason.clear();
                }
                state.finalized = false;
                let encoded = encode(*id, &state)?;
                let event = encode_event(*id, &Event::Restore { sector_id: *id, state: &encoded })?;
                Ok(Plan::write(
                    Some(WorkerState::Offline),
                    WorkerState::Online,
                    *id,
                    encoded,
                    event,
                    Answer::State(state),
                ))
            }
            Change::Import { ws, state, overwrite } => {
                let (ws, id) = (*ws, state.id);
                let other = keys::other_state(ws);
                let in_other = reads.exists(other, id)?;
                let existed = in_other || reads.exists(ws, id)?;
                if existed && !overwrite {
                    return Ok(Plan::unchanged(Answer::Imported(false)));
                }
                let encoded = encode(id, state)?;
                let event = encode_event(id, &Event::Import { worker_state: ws, state: &encoded, overwrite: existed })?;
                Ok(Plan::write(in_other.then_some(other), ws, id, encoded, event, Answer::Imported(true)))
            }
        }
    }
}

impl Plan {
    fn unchanged(answer: Answer) -> Plan {
        Plan { answer, writes: None }
    }

    /// A plan writing `state` as sector `id` in `ws` (after deleting it from `delete_from`) with `event`.
    fn write(
        delete_from: Option<WorkerState>,
        ws: WorkerState,
        id: SectorId,
        state: Box<RawValue>,
        event: Box<RawValue>,
        answer: Answer,
    ) -> Plan {
        let delete = delete_from.map(|from| keys::sector_key(from, id));
        Plan { answer, writes: Some(Writes { delete, key: keys::sector_key(ws, id), state, event }) }
    }

    /// Bytes the plan writes (records and event), for the group's byte bound.
    pub(super) fn size(&self) -> usize {
        self.writes.as_ref().map_or(0, |w| w.key.len() + w.state.get().len() + w.event.get().len())
    }

    /// Writes the plan in `txn`, its event under a seq drawn from `ticket` (after every read of the change), and
    /// returns the answer. Only store errors: every refusal was decided by [`Change::decide`].
    pub(super) fn write_in(self, txn: &dyn Txn, ticket: &mut SeqTicket<'_>) -> Result<Answer, KvError> {
        let Some(writes) = self.writes else { return Ok(self.answer) };
        if let Some(delete) = &writes.delete {
            txn.del(delete)?;
        }
        txn.put(&writes.key, writes.state.get().as_bytes())?;
        outbox::emit(txn, ticket, &*writes.event)?;
        Ok(self.answer)
    }
}

/// Encodes sector `id`'s state: the one encoding its record and its event share.
fn encode(id: SectorId, state: &SectorState) -> Result<Box<RawValue>, Abort> {
    serde_json::value::to_raw_value(state)
        .map_err(|err| SectorError::codec(&keys::sector_key(WorkerState::Online, id), format!("encode: {err}")).into())
}

/// Encodes sector `id`'s event (its state already encoded, copied as is).
fn encode_event(id: SectorId, event: &Event<'_>) -> Result<Box<RawValue>, Abort> {
    serde_json::value::to_raw_value(event).map_err(|err| {
        SectorError::codec(&keys::sector_key(WorkerState::Online, id), format!("encode its event: {err}")).into()
    })
}

/// [`SectorEvent`](manager_plugin::sync::SectorEvent)'s JSON (same variant and field names, same order), with the
/// state as already-encoded bytes; `change::tests` checks it byte for byte against the SDK's own encoding.
#[derive(Serialize)]
enum Event<'a> {
    Import {
        #[serde(rename = "WorkerState")]
        worker_state: WorkerState,
        #[serde(rename = "State")]
        state: &'a RawValue,
        #[serde(rename = "Overwrite")]
        overwrite: bool,
    },
    Update {
        #[serde(rename = "SectorID")]
        sector_id: SectorId,
        #[serde(rename = "WorkerState")]
        worker_state: WorkerState,
        #[serde(rename = "Updates")]
        updates: &'a [SectorUpdate],
        #[serde(rename = "State")]
        state: &'a RawValue,
    },
    Finalize {
        #[serde(rename = "SectorID")]
        sector_id: SectorId,
        #[serde(rename = "State")]
        state: &'a RawValue,
    },
    Restore {
        #[serde(rename = "SectorID")]
        sector_id: SectorId,
        #[serde(rename = "State")]
        state: &'a RawValue,
    },
}

/// The sector, or [`SectorError::NotFound`].
pub(super) fn require(state: Option<SectorState>, id: SectorId, ws: Option<WorkerState>) -> Result<SectorState, Abort> {
    state.ok_or_else(|| SectorError::not_found(id, ws).into())
}

#[cfg(test)]
mod tests {
    use manager_plugin::sector::{ReportStateReq, SectorId, SectorState, SectorUpdate, WorkerState};
    use manager_plugin::sync::{FinalizeEvent, ImportEvent, RestoreEvent, SectorEvent, UpdateEvent};

    use super::*;

    #[test]
    fn events_built_around_the_encoded_state_are_byte_for_byte_the_sdks_encoding() {
        let id = SectorId { miner: 1000, number: 7 };
        let mut state = SectorState::new(id, 8);
        let updates = vec![SectorUpdate::LatestState(ReportStateReq::default()), SectorUpdate::AbortReason("x".into())];
        updates.iter().for_each(|u| state.apply(u));
        let raw = serde_json::value::to_raw_value(&state).unwrap();
        let cases = [
            (
                Event::Update { sector_id: id, worker_state: WorkerState::Online, updates: &updates, state: &raw },
                SectorEvent::Update(UpdateEvent {
                    sector_id: id,
                    worker_state: WorkerState::Online,
                    updates: updates.clone(),
                    state: state.clone(),
                }),
            ),
            (
                Event::Finalize { sector_id: id, state: &raw },
                SectorEvent::Finalize(FinalizeEvent { sector_id: id, state: state.clone() }),
            ),
            (
                Event::Restore { sector_id: id, state: &raw },
                SectorEvent::Restore(RestoreEvent { sector_id: id, state: state.clone() }),
            ),
            (
                Event::Import { worker_state: WorkerState::Offline, state: &raw, overwrite: true },
                SectorEvent::Import(ImportEvent {
                    worker_state: WorkerState::Offline,
                    state: state.clone(),
                    overwrite: true,
                }),
            ),
        ];
        for (ours, sdk) in cases {
            assert_eq!(serde_json::to_string(&ours).unwrap(), serde_json::to_string(&sdk).unwrap());
        }
    }
}
