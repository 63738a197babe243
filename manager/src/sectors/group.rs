//! Group commit: one writer thread commits the single-sector changes waiting at once as ONE transaction.
//!
//! Callers hand a [`Change`] to the writer and wait for its answer (an async caller without holding a thread).
//! The writer takes every change waiting, up to [`MAX_GROUP_CHANGES`], and runs them in one transaction of the
//! store, in arrival order: each change reads what it depends on (seeing the writes of the changes before it in
//! the group, so two changes of one sector apply in arrival order), is decided (refused, or planned with its
//! state encoded once and the event built around those bytes), then writes its records and its outbox entry
//! under a seq drawn right then, so seqs follow commit order. Once the changes written pass
//! [`MAX_GROUP_BYTES`], the rest wait for the next group. The transaction commits as one synced write; only
//! then is every caller answered.
//!
//! What each caller gets:
//! - a change refused by its own reads (unknown sector, restore refused, undecodable record) gets its refusal;
//!   it wrote nothing (refusals are decided before any write, `change.rs`), and the others commit;
//! - when the transaction fails (store error, identity fence, commit error) every caller of the group gets the
//!   error and nothing of the group is stored; a conflict retries the whole group; a commit whose outcome is
//!   unknown is settled through the group's last seq (the group is all or nothing, `settle.rs`);
//! - a crash before the synced write leaves none of the group; after it, all of it; nobody was answered before.
//!
//! The transaction is the store's optimistic one (`KvStore::update`), kept on purpose: the identity fence reads
//! `meta/identity` inside it, and the writers outside the group (allocations, chain answers, settling, cursors,
//! GC) are validated against it at commit; its cost (a snapshot, a tracked read per key) is paid once per
//! group, and its commit is RocksDB's one `WriteBatch` written with `sync = true`.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;

use manager_plugin::kv::{Db, KvError, KvStore};
use tokio::sync::oneshot;

use super::change::{Answer, Change, Reads};
use super::error::SectorError;
use super::manager::Abort;
use super::outbox::Sequencer;
use super::settle::{commit_settled, settle_doubtful};

/// The most changes one group commits.
pub(super) const MAX_GROUP_CHANGES: usize = 256;

/// Once a group's changes wrote this many bytes (records and events), the changes still waiting go to the next
/// group.
pub(super) const MAX_GROUP_BYTES: usize = 4 << 20;

/// A change waiting for its group, and where its answer goes.
struct Pending {
    change: Change,
    reply: oneshot::Sender<Result<Answer, SectorError>>,
}

/// The handle callers submit changes through; the writer thread ends when it is dropped.
pub(super) struct GroupWriter {
    queue: mpsc::Sender<Pending>,
}

impl GroupWriter {
    /// Starts the writer thread of `store`.
    pub(super) fn start(
        store: Arc<dyn KvStore>,
        sequencer: Arc<Sequencer>,
        db: Arc<dyn Db>,
    ) -> std::io::Result<GroupWriter> {
        let (queue, waiting) = mpsc::channel();
        let writer = Writer { store, sequencer, _db: db, waiting };
        thread::Builder::new().name("sector-commit".into()).spawn(move || writer.run())?;
        Ok(GroupWriter { queue })
    }

    /// Applies `change` in the next group, waiting for it without holding a thread.
    pub(super) async fn apply(&self, change: Change) -> Result<Answer, SectorError> {
        let id = change.sector();
        self.submit(change)?.await.unwrap_or_else(|_| Err(writer_gone(id)))
    }

    /// Applies `change` in the next group, blocking this thread until it committed (not from async code).
    pub(super) fn apply_blocking(&self, change: Change) -> Result<Answer, SectorError> {
        let id = change.sector();
        self.submit(change)?.blocking_recv().unwrap_or_else(|_| Err(writer_gone(id)))
    }

    fn submit(&self, change: Change) -> Result<oneshot::Receiver<Result<Answer, SectorError>>, SectorError> {
        let (reply, answer) = oneshot::channel();
        let id = change.sector();
        self.queue.send(Pending { change, reply }).map_err(|_| writer_gone(id))?;
        Ok(answer)
    }

    /// Submits `changes` at once, so they arrive one after the other with nothing between them (tests).
    #[cfg(test)]
    pub(super) fn submit_all(&self, changes: Vec<Change>) -> Vec<oneshot::Receiver<Result<Answer, SectorError>>> {
        changes.into_iter().map(|change| self.submit(change).expect("the writer runs")).collect()
    }
}

/// The error of a change whose writer is gone (the state manager was dropped, or the writer panicked).
fn writer_gone(id: manager_plugin::sector::SectorId) -> SectorError {
    SectorError::kv(
        format!("change sector {id}"),
        KvError::Aborted("the sector writer stopped before answering".into()),
    )
}

/// The writer thread's state.
struct Writer {
    store: Arc<dyn KvStore>,
    sequencer: Arc<Sequencer>,
    /// Keeps the database alive while the writer runs.
    _db: Arc<dyn Db>,
    waiting: mpsc::Receiver<Pending>,
}

impl Writer {
    /// Commits groups until every [`GroupWriter`] is dropped.
    fn run(self) {
        let mut waiting = VecDeque::new();
        loop {
            if waiting.is_empty() {
                match self.waiting.recv() {
                    Ok(pending) => waiting.push_back(pending),
                    Err(mpsc::RecvError) => return,
                }
            }
            while waiting.len() < MAX_GROUP_CHANGES {
                match self.waiting.try_recv() {
                    Ok(pending) => waiting.push_back(pending),
                    Err(_) => break,
                }
            }
            let group: Vec<Pending> = waiting.drain(..waiting.len().min(MAX_GROUP_CHANGES)).collect();
            // A panic here drops the group's replies: its callers get an error, and the writer goes on.
            match catch_unwind(AssertUnwindSafe(|| self.commit(group))) {
                Ok(rest) => rest.into_iter().rev().for_each(|pending| waiting.push_front(pending)),
                Err(_) => {
                    tracing::error!("manager bug: the sector writer panicked; its group was answered with errors")
                }
            }
        }
    }

    /// Commits `group` (or its first part, within [`MAX_GROUP_BYTES`]) as one transaction and answers each of its
    /// callers; returns the changes left for the next group.
    fn commit(&self, mut group: Vec<Pending>) -> Vec<Pending> {
        settle_doubtful(&*self.store, &self.sequencer);
        let mut ticket = self.sequencer.ticket();
        let mut answers = Vec::with_capacity(group.len());
        let mut taken = group.len();
        let result = commit_settled(&*self.store, &mut ticket, &mut |txn, ticket| {
            answers.clear();
            taken = group.len();
            let mut bytes = 0;
            for (i, pending) in group.iter().enumerate() {
                if bytes >= MAX_GROUP_BYTES {
                    taken = i;
                    break;
                }
                let decided = crate::plugins::host_callback::catch("deciding a sector change", || {
                    pending.change.decide(Reads(txn))
                });
                match decided {
                    Ok(Ok(plan)) => {
                        bytes += plan.size();
                        answers.push(Ok(plan.write_in(txn, ticket)?));
                    }
                    // Decided on reads only: nothing of it was written.
                    Ok(Err(Abort::Sector(refusal))) => answers.push(Err(refusal)),
                    Ok(Err(Abort::Kv(err))) => return Err(err),
                    Err(panic) => {
                        answers.push(Err(SectorError::kv(pending.change.describe(), KvError::Panicked(panic))))
                    }
                }
            }
            Ok(())
        });
        // The group's seqs leave the in-flight set together: one wake-up of the deliverers per group.
        drop(ticket);
        let rest = group.split_off(taken.min(group.len()));
        match result {
            Ok(()) => {
                for (pending, answer) in group.into_iter().zip(answers) {
                    let _ = pending.reply.send(answer);
                }
            }
            Err(err) => {
                for pending in group {
                    let _ = pending.reply.send(Err(SectorError::kv(pending.change.describe(), err.clone())));
                }
            }
        }
        rest
    }
}

#[cfg(test)]
mod tests;
