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
use super::outbox::{Sequencer, TXN_ATTEMPTS};
use super::settle::{commit_outcome_unknown, settle_doubtful, settle_failed_commit};

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
        // Whether the last attempt's body completed, so an error came from the commit itself.
        let mut committing = false;
        let mut tries = 0;
        let result = loop {
            tries += 1;
            let attempt = self.store.update(&mut |txn| {
                ticket.begin_attempt();
                committing = false;
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
                            answers.push(Ok(plan.write_in(txn, &mut ticket)?));
                        }
                        // Decided on reads only: nothing of it was written.
                        Ok(Err(Abort::Sector(refusal))) => answers.push(Err(refusal)),
                        Ok(Err(Abort::Kv(err))) => return Err(err),
                        Err(panic) => {
                            answers.push(Err(SectorError::kv(pending.change.describe(), KvError::Panicked(panic))))
                        }
                    }
                }
                committing = true;
                Ok(())
            });
            if matches!(attempt, Err(KvError::Conflict)) {
                crate::metrics::global().kv_conflicts.inc();
                if self.store.need_retry_transactions() && tries < TXN_ATTEMPTS {
                    crate::metrics::global().kv_retries.inc();
                    continue;
                }
            }
            break attempt;
        };
        let result = match (result, ticket.attempt_seq()) {
            (Err(err), Some(seq)) if committing && commit_outcome_unknown(&err) => {
                settle_failed_commit(&*self.store, &mut ticket, seq, err)
            }
            (other, _) => other,
        };
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
mod tests {
    use std::collections::VecDeque;
    use std::sync::{Condvar, Mutex};

    use manager_plugin::kv::{KvIter, TxnFn};
    use manager_plugin::sector::{SectorId, SectorUpdate, WorkerState};
    use manager_plugin::sync::SectorEvent;

    use super::*;
    use crate::kvstore::RocksDb;
    use crate::sectors::outbox::OutboxRecord;
    use crate::sectors::{COLLECTION, StateManager};

    /// What the next `update` of the scripted collection does.
    #[derive(Clone, Copy, PartialEq, Debug)]
    enum Step {
        /// Wait until the test opens the gate, then run as usual.
        Block,
        /// Run the body, then fail the commit as a failed WAL write would (nothing is stored).
        Fail,
    }

    /// The steps of the next `update` calls (then plain ones), the gate, and how many updates ran.
    #[derive(Default)]
    struct Script {
        state: Mutex<ScriptState>,
        changed: Condvar,
    }

    #[derive(Default)]
    struct ScriptState {
        steps: VecDeque<Step>,
        blocked: bool,
        open: bool,
        updates: usize,
    }

    impl Script {
        fn lock(&self) -> std::sync::MutexGuard<'_, ScriptState> {
            self.state.lock().unwrap()
        }
        fn plan(&self, steps: &[Step]) {
            let mut state = self.lock();
            state.steps.extend(steps);
            state.open = false;
        }
        fn wait_blocked(&self) {
            let mut state = self.lock();
            while !state.blocked {
                state = self.changed.wait(state).unwrap();
            }
        }
        fn open(&self) {
            self.lock().open = true;
            self.changed.notify_all();
        }
        fn updates(&self) -> usize {
            self.lock().updates
        }
    }

    struct ScriptedDb {
        inner: RocksDb,
        script: Arc<Script>,
    }

    impl Db for ScriptedDb {
        fn run(&self) -> Result<(), KvError> {
            self.inner.run()
        }
        fn close(&self) -> Result<(), KvError> {
            self.inner.close()
        }
        fn open_collection(&self, name: &str) -> Result<Box<dyn KvStore>, KvError> {
            Ok(Box::new(Scripted { inner: self.inner.open_collection(name)?, script: Arc::clone(&self.script) }))
        }
    }

    struct Scripted {
        inner: Box<dyn KvStore>,
        script: Arc<Script>,
    }

    impl KvStore for Scripted {
        fn get(&self, key: &[u8]) -> Result<Vec<u8>, KvError> {
            self.inner.get(key)
        }
        fn peek(&self, key: &[u8], f: &mut dyn FnMut(&[u8])) -> Result<(), KvError> {
            self.inner.peek(key, f)
        }
        fn put(&self, key: &[u8], value: &[u8]) -> Result<(), KvError> {
            self.inner.put(key, value)
        }
        fn del(&self, key: &[u8]) -> Result<(), KvError> {
            self.inner.del(key)
        }
        fn scan(&self, prefix: &[u8]) -> Result<Box<dyn KvIter>, KvError> {
            self.inner.scan(prefix)
        }
        fn view(&self, f: TxnFn<'_>) -> Result<(), KvError> {
            self.inner.view(f)
        }
        fn update(&self, f: TxnFn<'_>) -> Result<(), KvError> {
            let step = {
                let mut state = self.script.lock();
                state.updates += 1;
                state.steps.pop_front()
            };
            match step {
                None => self.inner.update(f),
                Some(Step::Block) => {
                    let mut state = self.script.lock();
                    state.blocked = true;
                    self.script.changed.notify_all();
                    while !state.open {
                        state = self.script.changed.wait(state).unwrap();
                    }
                    state.blocked = false;
                    drop(state);
                    self.inner.update(f)
                }
                Some(Step::Fail) => self.inner.update(&mut |txn| {
                    f(txn)?;
                    Err(KvError::Backend("injected: the WAL write failed".into()))
                }),
            }
        }
        fn need_retry_transactions(&self) -> bool {
            self.inner.need_retry_transactions()
        }
    }

    fn open() -> (tempfile::TempDir, Arc<Script>, Arc<StateManager>) {
        let dir = tempfile::tempdir().unwrap();
        let script = Arc::new(Script::default());
        let db: Arc<dyn Db> =
            Arc::new(ScriptedDb { inner: RocksDb::open(dir.path()).unwrap(), script: Arc::clone(&script) });
        db.run().unwrap();
        let sectors = Arc::new(StateManager::open_grouped(db).unwrap());
        (dir, script, sectors)
    }

    fn sid(number: u64) -> SectorId {
        SectorId { miner: 1000, number }
    }

    fn abort(reason: &str) -> Vec<SectorUpdate> {
        vec![SectorUpdate::AbortReason(reason.into())]
    }

    fn events(sectors: &StateManager) -> Vec<(u64, SectorEvent)> {
        let mut iter = sectors.store.scan(b"outbox/").unwrap();
        let mut out = Vec::new();
        while let Some((_, value)) = iter.next_entry().unwrap() {
            let record: OutboxRecord<SectorEvent> = serde_json::from_slice(&value).unwrap();
            out.push((record.seq, record.event));
        }
        out
    }

    /// Holds the writer in a first group (one update of sector 1) while `changes` queue up behind it, then lets
    /// everything run (the updates after the blocked one follow `after`); returns the answers of `changes` and
    /// how many transactions ran.
    fn behind_a_blocked_group(
        sectors: &Arc<StateManager>,
        script: &Script,
        after: &[Step],
        changes: Vec<Change>,
    ) -> (Vec<Result<Answer, SectorError>>, usize) {
        let mut steps = vec![Step::Block];
        steps.extend(after);
        script.plan(&steps);
        let updates_before = script.updates();
        let blocker = {
            let sectors = Arc::clone(sectors);
            thread::spawn(move || sectors.update(sid(1), abort("blocker")))
        };
        script.wait_blocked();
        let answers = sectors.group.as_ref().unwrap().submit_all(changes);
        script.open();
        blocker.join().unwrap().expect("the blocking group commits");
        let answers = answers.into_iter().map(|answer| answer.blocking_recv().unwrap()).collect();
        (answers, script.updates() - updates_before)
    }

    #[test]
    fn a_group_applies_its_changes_in_arrival_order_and_a_refused_one_fails_alone() {
        let (_dir, script, sectors) = open();
        sectors.allocate(1000, 8, 2).unwrap();
        let (answers, transactions) = behind_a_blocked_group(
            &sectors,
            &script,
            &[],
            vec![
                Change::Update { id: sid(1), updates: abort("first") },
                Change::Update { id: sid(99), updates: abort("unknown") },
                Change::Restore { id: sid(2), forced: false },
                Change::Update { id: sid(1), updates: abort("second") },
                Change::Finalize { id: sid(1), updates: Vec::new(), repeat: super::super::change::Repeat::NotFound },
                Change::Finalize { id: sid(1), updates: abort("late"), repeat: super::super::change::Repeat::NotFound },
            ],
        );
        assert_eq!(transactions, 2, "the blocked group, then every queued change in one");
        let reason = |answer: &Result<Answer, SectorError>| match answer {
            Ok(Answer::State(state)) => (state.abort_reason.clone(), state.finalized),
            other => panic!("expected a state, got {other:?}"),
        };
        assert_eq!(reason(&answers[0]), ("first".to_string(), false));
        assert!(matches!(&answers[1], Err(e) if e.is_not_found()), "{:?}", answers[1]);
        // Sector 2 is online: restoring answers it unchanged, without an event.
        assert!(matches!(&answers[2], Ok(Answer::State(s)) if s.id == sid(2) && !s.finalized));
        assert_eq!(reason(&answers[3]), ("second".to_string(), false), "the second update saw the first");
        assert_eq!(reason(&answers[4]), ("second".to_string(), true));
        assert!(matches!(&answers[5], Err(e) if e.is_not_found()), "finalized earlier in the same group");

        let stored = sectors.find(WorkerState::Offline, sid(1)).unwrap().expect("sector 1 finalized");
        assert_eq!(stored.abort_reason, "second");
        assert!(sectors.find(WorkerState::Online, sid(1)).unwrap().is_none());
        let events = events(&sectors);
        let marks: Vec<String> = events
            .iter()
            .map(|(_, event)| match event {
                SectorEvent::Init(_) => "init".to_string(),
                SectorEvent::Update(update) => update.state.abort_reason.clone(),
                SectorEvent::Finalize(finalize) => format!("finalize {}", finalize.state.abort_reason),
                other => panic!("unexpected event {other:?}"),
            })
            .collect();
        assert_eq!(marks, ["init", "blocker", "first", "second", "finalize second"]);
        assert!(events.windows(2).all(|w| w[0].0 < w[1].0), "seqs follow commit order");
        assert!(sectors.sequencer.horizon() >= events.last().unwrap().0, "nothing of the group is left in flight");
    }

    #[test]
    fn a_failed_group_write_fails_every_caller_and_stores_none_of_it() {
        let (_dir, script, sectors) = open();
        sectors.allocate(1000, 8, 2).unwrap();
        let before = events(&sectors).len();
        let (answers, transactions) = behind_a_blocked_group(
            &sectors,
            &script,
            &[Step::Fail],
            vec![
                Change::Update { id: sid(1), updates: abort("lost") },
                Change::Finalize { id: sid(2), updates: Vec::new(), repeat: super::super::change::Repeat::ReturnUnchanged },
                Change::Update { id: sid(99), updates: abort("unknown") },
            ],
        );
        assert_eq!(transactions, 4, "the blocked group, the failed one, then settling: fence written and removed");
        for answer in &answers {
            let err = answer.as_ref().expect_err("every caller of the failed group fails");
            assert!(err.to_string().contains("injected: the WAL write failed"), "{err}");
        }
        assert_eq!(sectors.find(WorkerState::Online, sid(1)).unwrap().unwrap().abort_reason, "blocker");
        assert!(sectors.find(WorkerState::Online, sid(2)).unwrap().is_some(), "sector 2 was not finalized");
        assert_eq!(events(&sectors).len(), before + 1, "only the blocker's event");
        assert!(sectors.sequencer.doubtful().is_empty(), "the failed commit was settled as not applied");
        // The writer goes on: the next change commits.
        assert_eq!(sectors.update(sid(1), abort("after")).unwrap().abort_reason, "after");
    }

    #[test]
    fn the_identity_fence_refuses_a_whole_group_and_its_return_lifts_the_refusal() {
        use crate::db_identity::{DbDescription, DbIdentity, IDENTITY_KEY, IdentityFencedDb};
        let dir = tempfile::tempdir().unwrap();
        let raw: Arc<dyn Db> = Arc::new(RocksDb::open(dir.path()).unwrap());
        raw.run().unwrap();
        let plain = raw.open_collection(COLLECTION).unwrap();
        let identity = DbIdentity::new();
        let encoded = serde_json::to_vec(&identity).unwrap();
        plain.put(IDENTITY_KEY, &encoded).unwrap();
        let describe = DbDescription { name: "RocksDB at /test".into(), likely_causes: "a test" };
        let fenced: Arc<dyn Db> = Arc::new(IdentityFencedDb::new(Arc::clone(&raw), identity, describe));
        let sectors = StateManager::open_grouped(fenced).unwrap();
        sectors.allocate(1000, 8, 1).unwrap();

        plain.del(IDENTITY_KEY).unwrap();
        let err = sectors.update(sid(1), abort("refused")).unwrap_err();
        assert!(err.to_string().contains("RocksDB at /test has no identity"), "{err}");
        assert!(!err.is_not_found());
        plain.put(IDENTITY_KEY, &encoded).unwrap();
        let stored: manager_plugin::sector::SectorState =
            serde_json::from_slice(&plain.get(b"online/m-1000-n-1").unwrap()).unwrap();
        assert_eq!(stored.abort_reason, "", "nothing of the refused group was written");
        assert_eq!(sectors.update(sid(1), abort("back")).unwrap().abort_reason, "back");
    }
}
