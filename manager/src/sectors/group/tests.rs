//! Group commit against a real RocksDB whose commits the tests hold, fail or fence.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};

use manager_plugin::kv::{KvIter, TxnFn};
use manager_plugin::sector::{SectorId, SectorUpdate, WorkerState};
use manager_plugin::sync::SectorEvent;

use super::*;
use crate::kvstore::RocksDb;
use crate::sectors::change::Repeat;
use crate::sectors::outbox::OutboxRecord;
use crate::sectors::{COLLECTION, StateManager};

/// What the next `update` of the scripted collection does.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Step {
    /// Wait until the test opens the gate, then run as usual.
    Block,
    /// Run the body, then fail the commit as a failed WAL write would (nothing is stored).
    Fail,
    /// Commit, then answer an error as a lost acknowledgement would (all of it is stored).
    ApplyThenFail,
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
            Some(Step::ApplyThenFail) => {
                self.inner.update(f)?;
                Err(KvError::Backend("injected: the commit's answer was lost".into()))
            }
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
            Change::Finalize { id: sid(1), updates: Vec::new(), repeat: Repeat::NotFound },
            Change::Finalize { id: sid(1), updates: abort("late"), repeat: Repeat::NotFound },
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
            Change::Finalize { id: sid(2), updates: Vec::new(), repeat: Repeat::ReturnUnchanged },
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

#[test]
fn a_group_stops_at_its_byte_bound_and_the_rest_follow_in_arrival_order() {
    let (_dir, script, sectors) = open();
    sectors.allocate(1000, 8, 1).unwrap();
    // Each change writes about 3 MiB (the state, the event's copy of it, its update): two pass the 4 MiB bound.
    let big = |i: usize| format!("{i}{}", "x".repeat(1 << 20));
    let changes = (0..6).map(|i| Change::Update { id: sid(1), updates: abort(&big(i)) }).collect();
    let (answers, transactions) = behind_a_blocked_group(&sectors, &script, &[], changes);
    assert_eq!(transactions, 4, "the blocked group, then the six changes in three groups of two");
    for (i, answer) in answers.iter().enumerate() {
        assert!(matches!(answer, Ok(Answer::State(s)) if s.abort_reason == big(i)), "change {i}");
    }
    let reasons: Vec<String> = events(&sectors)
        .into_iter()
        .filter_map(|(_, event)| match event {
            SectorEvent::Update(update) => update.state.abort_reason.get(..1).map(str::to_string),
            _ => None,
        })
        .collect();
    assert_eq!(reasons, ["b", "0", "1", "2", "3", "4", "5"], "arrival order across groups");
}

#[test]
fn a_group_whose_outcome_is_unknown_holds_the_horizon_below_all_of_its_seqs() {
    let (_dir, script, sectors) = open();
    sectors.allocate(1000, 8, 3).unwrap();
    let before = events(&sectors).len() + 1; // and the blocker's
    // The group commits but its answer is lost, and settling cannot reach the store either.
    let (answers, _) = behind_a_blocked_group(
        &sectors,
        &script,
        &[Step::ApplyThenFail, Step::Fail],
        (1..=3).map(|n| Change::Update { id: sid(n), updates: abort("unknown outcome") }).collect(),
    );
    assert!(answers.iter().all(Result::is_err), "nobody is told a change succeeded that may not have");
    let group_seqs: Vec<u64> = events(&sectors)[before..].iter().map(|(seq, _)| *seq).collect();
    assert_eq!(group_seqs.len(), 3, "the group did commit");
    assert_eq!(sectors.sequencer.doubtful().len(), 1);
    assert!(
        sectors.sequencer.horizon() < group_seqs[0],
        "no deliverer may pass any event of a group whose outcome is unknown: horizon {} vs seqs {group_seqs:?}",
        sectors.sequencer.horizon()
    );
    // The store answers again: the next change settles the group as applied, then commits.
    assert_eq!(sectors.update(sid(1), abort("after")).unwrap().abort_reason, "after");
    assert!(sectors.sequencer.doubtful().is_empty());
}
