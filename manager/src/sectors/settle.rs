//! Settling ambiguous commits: a transaction whose commit returned an error that does not say whether it was
//! applied (a Redis `EXEC` that timed out client-side and runs later, a connection lost mid-commit).
//!
//! Releasing such a transaction's seq at once would be wrong both ways: if it committed after all, the horizon
//! would already have moved past it and a deliverer could move its cursor beyond the event for good; and the
//! worker would be told a change failed that was applied. So the seq stays in flight until its outcome is known:
//!
//! 1. Every change reads its outbox key before writing it (`emit`), so the key is part of what its commit
//!    depends on (Redis `WATCH`, RocksDB's conflict check).
//! 2. Settling runs a transaction on that key: if the entry is there, the change committed (and the caller is
//!    answered with success); if not, it writes a fence there first. A commit still on its way then fails its
//!    check, so the change can never appear later. The fence is then deleted (a fence left by a crash in between
//!    is skipped by deliverers as an undecodable entry and collected like any other).
//! 3. When settling fails too (the store is still unreachable), the seq is kept in doubt, holding the horizon,
//!    and settling is retried before every later change.

use manager_plugin::kv::{KvError, KvStore, Txn, update_with_retry};

use super::keys;
use super::outbox::{SeqTicket, Sequencer, TXN_ATTEMPTS};

/// What a fence entry holds: not an outbox record, so no deliverer ever mistakes it for an event.
const FENCE: &[u8] = b"fence: an ambiguous commit was settled as not applied";

/// Runs `body` as one transaction of `store` drawing its seqs on `ticket`: retried on a conflict as the store asks
/// (at most [`TXN_ATTEMPTS`]), and a commit that failed after the body completed, with an outcome unknown, settled
/// through the attempt's first seq ([`settle_failed_commit`]). The one commit path of per-change writes and groups.
pub(super) fn commit_settled(
    store: &dyn KvStore,
    ticket: &mut SeqTicket<'_>,
    body: &mut dyn FnMut(&dyn Txn, &mut SeqTicket<'_>) -> Result<(), KvError>,
) -> Result<(), KvError> {
    // Whether the last attempt's body completed, so an error came from the commit itself.
    let mut committing;
    let mut tries = 0;
    let result = loop {
        tries += 1;
        // An attempt that fails before its body runs must not settle the previous attempt's seq.
        committing = false;
        ticket.begin_attempt();
        let attempt = store.update(&mut |txn| {
            ticket.begin_attempt();
            committing = false;
            body(txn, ticket)?;
            committing = true;
            Ok(())
        });
        if matches!(attempt, Err(KvError::Conflict)) {
            crate::metrics::global().kv_conflicts.inc();
            if store.need_retry_transactions() && tries < TXN_ATTEMPTS {
                crate::metrics::global().kv_retries.inc();
                continue;
            }
        }
        break attempt;
    };
    match (result, ticket.attempt_seq()) {
        (Err(err), Some(seq)) if committing && commit_outcome_unknown(&err) => {
            settle_failed_commit(store, ticket, seq, err)
        }
        (other, _) => other,
    }
}

/// Whether a commit that failed with `err` may nevertheless have been applied.
pub(super) fn commit_outcome_unknown(err: &KvError) -> bool {
    match err {
        KvError::Backend(_) | KvError::Closed | KvError::Panicked(_) => true,
        KvError::KeyNotFound | KvError::Conflict | KvError::Aborted(_) => false,
    }
}

/// After the commit drawing `seq` (any seq of it: a commit is all or nothing) failed with `err` whose outcome is
/// unknown: `Ok` when it was applied after all, `Err(err)` when it was not (and now never will be). When that
/// cannot be told yet, `seq` stays in flight ([`SeqTicket::hold_in_doubt`]) and `err` is returned.
pub(super) fn settle_failed_commit(
    store: &dyn KvStore,
    ticket: &mut SeqTicket<'_>,
    seq: u64,
    err: KvError,
) -> Result<(), KvError> {
    match settle(store, seq) {
        Ok(true) => {
            tracing::warn!(seq, error = %err, "a commit reported an error but was applied; answering success");
            Ok(())
        }
        Ok(false) => Err(err),
        Err(settle_err) => {
            tracing::warn!(
                seq, error = %err, settle_error = %settle_err,
                "cannot tell whether a failed commit was applied; holding delivery at its event until the store \
                 answers (retried before the next change)"
            );
            ticket.hold_in_doubt(seq);
            Err(err)
        }
    }
}

/// Retries settling every seq still in doubt, oldest first; stops at the first the store cannot answer.
pub(super) fn settle_doubtful(store: &dyn KvStore, sequencer: &Sequencer) {
    for seq in sequencer.doubtful() {
        match settle(store, seq) {
            Ok(committed) => {
                tracing::info!(seq, committed, "settled a commit whose outcome was unknown");
                sequencer.settled(seq);
            }
            Err(err) => {
                tracing::warn!(seq, error = %err, "still cannot settle a commit whose outcome is unknown");
                return;
            }
        }
    }
}

/// Whether the change that drew `seq` committed; if it did not, fences it so it never will.
fn settle(store: &dyn KvStore, seq: u64) -> Result<bool, KvError> {
    let key = keys::outbox_key(seq);
    let mut committed = false;
    update_with_retry(store, TXN_ATTEMPTS, &mut |txn| {
        committed = match txn.get(&key) {
            Ok(value) => value != FENCE,
            Err(KvError::KeyNotFound) => {
                txn.put(&key, FENCE)?;
                false
            }
            Err(err) => return Err(err),
        };
        Ok(())
    })?;
    if !committed {
        let removed = update_with_retry(store, TXN_ATTEMPTS, &mut |txn| match txn.get(&key) {
            Ok(value) if value == FENCE => txn.del(&key),
            Ok(_) | Err(KvError::KeyNotFound) => Ok(()),
            Err(err) => Err(err),
        });
        if let Err(err) = removed {
            tracing::warn!(seq, error = %err, "cannot remove a fence from the outbox; it is skipped and collected");
        }
    }
    Ok(committed)
}
