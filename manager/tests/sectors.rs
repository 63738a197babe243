//! The sector state manager and its durable event delivery, on the RocksDB driver in a temporary directory:
//! the sector lifecycle, numbering across restarts, import, not-found errors, and delivery to targets that fail,
//! block, panic, or come back after a restart.

mod common;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::wrapped_db::{Forwarded, Forwarding, WrappedDb};
use manager::kvstore::RocksDb;
use manager::sectors::{COLLECTION, Deliverer, DeliveryOptions, EventTarget, JobFilter, StateManager};
use manager_plugin::kv::{Db, KvError, KvIter, KvStore, Txn, TxnFn};
use manager_plugin::manifest::ExtPoint;
use manager_plugin::sector::{SectorId, SectorState, SectorUpdate, WorkerState};
use manager_plugin::sync::SectorEvent;

const MINER: u64 = 1000;

fn sid(number: u64) -> SectorId {
    SectorId { miner: MINER, number }
}

/// A RocksDB database in a temporary directory that can be closed and reopened.
struct Store {
    dir: tempfile::TempDir,
}

impl Store {
    fn new() -> Store {
        Store { dir: tempfile::tempdir().expect("tempdir") }
    }

    fn open(&self) -> Opened {
        Opened::at(self.dir.path())
    }
}

/// An open database and its state manager.
struct Opened {
    db: Arc<dyn Db>,
    sectors: Arc<StateManager>,
}

impl Opened {
    fn at(dir: &Path) -> Opened {
        let db = RocksDb::open(dir).expect("open RocksDB");
        db.run().expect("run");
        let db: Arc<dyn Db> = Arc::new(db);
        let sectors = Arc::new(StateManager::open(Arc::clone(&db)).expect("open the state manager"));
        Opened { db, sectors }
    }

    /// Number of entries in the outbox.
    fn outbox_len(&self) -> usize {
        let store: Box<dyn KvStore> = self.db.open_collection(COLLECTION).expect("collection");
        let mut iter = store.scan(b"outbox/").expect("scan");
        let mut count = 0;
        while iter.next_entry().expect("next").is_some() {
            count += 1;
        }
        count
    }

    fn deliver_to(&self, targets: &[Arc<Recorder>]) -> Deliverer {
        let targets = targets.iter().map(|t| Arc::clone(t) as Arc<dyn EventTarget>).collect();
        Deliverer::start(Arc::clone(&self.sectors), targets, fast())
    }

    /// Closes the database; every user of it must be gone (stop deliverers first).
    fn close(self) {
        let Opened { db, sectors } = self;
        assert_eq!(Arc::strong_count(&sectors), 1, "the state manager is still in use");
        drop(sectors);
        db.close().expect("close");
    }
}

fn fast() -> DeliveryOptions {
    DeliveryOptions {
        initial_backoff: Duration::from_millis(2),
        max_backoff: Duration::from_millis(20),
        poll_interval: Duration::from_millis(50),
        stop_timeout: Duration::from_secs(10),
    }
}

/// Polls `condition` until it holds; fails the test after 30 s, saying what was awaited.
fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

/// What a test target does on each delivery attempt.
#[derive(Clone, Copy)]
enum Behaviour {
    Accept,
    /// Fails this many attempts (in total), then accepts.
    FailFirst(usize),
    /// Panics this many attempts (in total), then accepts.
    PanicFirst(usize),
}

/// A target that records what it accepted and the lag it was told, and can be held inside `deliver`.
struct Recorder {
    name: String,
    behaviour: Behaviour,
    attempts: AtomicUsize,
    accepted: Mutex<Vec<SectorEvent>>,
    lags: Mutex<Vec<(u64, Option<String>)>>,
    /// While set, `deliver` announces itself on `entered` and waits for a message on `release`.
    hold: Mutex<Option<(mpsc::Sender<()>, mpsc::Receiver<()>)>>,
    inside: AtomicBool,
}

impl Recorder {
    fn new(name: &str, behaviour: Behaviour) -> Arc<Recorder> {
        Arc::new(Recorder {
            name: name.to_string(),
            behaviour,
            attempts: AtomicUsize::new(0),
            accepted: Mutex::default(),
            lags: Mutex::default(),
            hold: Mutex::default(),
            inside: AtomicBool::new(false),
        })
    }

    /// Makes the next delivery block until the returned sender sends; the receiver hears when it started.
    fn hold_next(&self) -> (mpsc::Receiver<()>, mpsc::Sender<()>) {
        let (entered_tx, entered_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel();
        *self.hold.lock().expect("hold") = Some((entered_tx, release_rx));
        (entered_rx, release_tx)
    }

    fn accepted(&self) -> Vec<SectorEvent> {
        self.accepted.lock().expect("accepted").clone()
    }

    fn summary(&self) -> Vec<(ExtPoint, Vec<SectorId>)> {
        summarize(&self.accepted())
    }

    fn last_lag(&self) -> Option<(u64, Option<String>)> {
        self.lags.lock().expect("lags").last().cloned()
    }
}

impl EventTarget for Recorder {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn deliver(&self, event: &SectorEvent) -> Result<(), String> {
        let attempt = self.attempts.fetch_add(1, Ordering::SeqCst) + 1;
        let hold = self.hold.lock().expect("hold").take();
        if let Some((entered, release)) = hold {
            self.inside.store(true, Ordering::SeqCst);
            let _ = entered.send(());
            let _ = release.recv();
            self.inside.store(false, Ordering::SeqCst);
        }
        match self.behaviour {
            Behaviour::FailFirst(n) if attempt <= n => return Err(format!("refused attempt {attempt}")),
            Behaviour::PanicFirst(n) if attempt <= n => panic!("target panics on attempt {attempt}"),
            _ => {}
        }
        self.accepted.lock().expect("accepted").push(event.clone());
        Ok(())
    }

    fn report_lag(&self, pending: u64, last_error: Option<String>) {
        self.lags.lock().expect("lags").push((pending, last_error));
    }
}

fn summarize(events: &[SectorEvent]) -> Vec<(ExtPoint, Vec<SectorId>)> {
    events.iter().map(|e| (e.ext_point(), e.sector_ids())).collect()
}

/// Runs a fixed script of changes (single-threaded) and returns the events it must produce, summarized.
fn script(sectors: &StateManager) -> Vec<(ExtPoint, Vec<SectorId>)> {
    let mut expected = Vec::new();
    let ids: Vec<SectorId> = sectors.allocate(MINER, 8, 3).expect("allocate").iter().map(|s| s.id).collect();
    expected.push((ExtPoint::OnInit, ids.clone()));
    for round in 0..3 {
        for &id in &ids {
            sectors.update(id, vec![SectorUpdate::AbortReason(format!("round {round}"))]).expect("update");
            expected.push((ExtPoint::OnUpdate, vec![id]));
        }
    }
    sectors.finalize(ids[0]).expect("finalize");
    expected.push((ExtPoint::OnFinalize, vec![ids[0]]));
    sectors.restore(ids[0], false).expect("restore");
    expected.push((ExtPoint::OnRestore, vec![ids[0]]));
    let imported = SectorState::new(sid(ids[2].number + 100), 8);
    sectors.import(WorkerState::Offline, imported.clone(), false).expect("import");
    expected.push((ExtPoint::OnImport, vec![imported.id]));
    expected
}

#[test]
fn a_sector_goes_through_allocate_update_finalize_and_restore() {
    let store = Store::new();
    let opened = store.open();
    let sectors = &opened.sectors;
    let id = sectors.allocate(MINER, 8, 1).expect("allocate")[0].id;
    assert_eq!(id, sid(1));
    let updated = sectors.update(id, vec![SectorUpdate::AbortReason("no deal".into())]).expect("update");
    assert_eq!(updated.abort_reason, "no deal");
    assert!(sectors.finalize(id).expect("finalize").finalized);

    let offline = sectors.list(WorkerState::Offline, JobFilter::All).expect("list offline");
    assert_eq!(offline.iter().map(|s| s.id).collect::<Vec<_>>(), vec![id]);
    assert!(offline[0].finalized);
    assert!(sectors.list(WorkerState::Online, JobFilter::All).expect("list online").is_empty());

    let restored = sectors.restore(id, false).expect("restore");
    assert!(!restored.finalized);
    assert_eq!(sectors.find_in_all_states(id).expect("find").map(|(ws, _)| ws), Some(WorkerState::Online));
    assert!(sectors.list(WorkerState::Offline, JobFilter::All).expect("list offline").is_empty());
    opened.close();
}

#[test]
fn sector_numbers_are_never_reused_across_reopen() {
    let store = Store::new();
    let opened = store.open();
    let first: Vec<u64> = opened.sectors.allocate(MINER, 8, 3).expect("allocate").iter().map(|s| s.id.number).collect();
    opened.sectors.finalize(sid(2)).expect("finalize");
    opened.close();

    let opened = store.open();
    let second: Vec<u64> =
        opened.sectors.allocate(MINER, 8, 2).expect("allocate").iter().map(|s| s.id.number).collect();
    assert_eq!(first, vec![1, 2, 3]);
    assert_eq!(second, vec![4, 5]);
    assert!(opened.sectors.find(WorkerState::Offline, sid(2)).expect("find").expect("still offline").finalized);
    opened.close();
}

#[test]
fn a_batch_allocation_creates_every_sector_with_one_event() {
    let store = Store::new();
    let opened = store.open();
    let batch = opened.sectors.allocate(MINER, 8, 5).expect("allocate");
    assert_eq!(batch.iter().map(|s| s.id.number).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
    let online = opened.sectors.list(WorkerState::Online, JobFilter::Sealing).expect("list");
    assert_eq!(online.len(), 5);
    assert!(online.iter().all(|s| s.sector_type == 8 && !s.finalized));
    assert_eq!(opened.outbox_len(), 1, "one Init event for the whole batch");
    opened.close();
}

#[test]
fn import_writes_only_new_sectors_unless_told_to_overwrite() {
    let store = Store::new();
    let opened = store.open();
    let sectors = &opened.sectors;
    let mut state = SectorState::new(sid(42), 8);
    assert!(sectors.import(WorkerState::Offline, state.clone(), false).expect("import"));
    state.abort_reason = "second".into();
    assert!(!sectors.import(WorkerState::Offline, state.clone(), false).expect("import again"));
    assert!(!sectors.import(WorkerState::Online, state.clone(), false).expect("import into the other state"));
    let stored = sectors.find(WorkerState::Offline, sid(42)).expect("find").expect("present");
    assert!(!stored.imported && stored.abort_reason.is_empty(), "stored as given");

    assert!(sectors.import(WorkerState::Offline, state, true).expect("overwrite"));
    let stored = sectors.find(WorkerState::Offline, sid(42)).expect("find").expect("present");
    assert_eq!(stored.abort_reason, "second");
    assert_eq!(opened.outbox_len(), 2, "one Import event per write");
    // The imported number is skipped by allocation.
    sectors.allocate(MINER, 8, 41).expect("allocate");
    assert_eq!(sectors.allocate(MINER, 8, 1).expect("allocate")[0].id.number, 43);
    opened.close();
}

#[test]
fn operations_on_missing_sectors_fail_as_not_found() {
    let store = Store::new();
    let opened = store.open();
    let sectors = &opened.sectors;
    let errors = [
        sectors.update(sid(7), vec![SectorUpdate::Removed(true)]).expect_err("update"),
        sectors.finalize(sid(7)).expect_err("finalize"),
        sectors.restore(sid(7), true).expect_err("restore"),
    ];
    for err in errors {
        assert!(err.is_not_found(), "{err}");
        assert!(err.to_string().contains("s-t01000-7"), "{err}");
    }
    assert_eq!(sectors.find(WorkerState::Online, sid(7)).expect("find"), None);
    assert_eq!(sectors.find_in_all_states(sid(7)).expect("find"), None);
    assert_eq!(opened.outbox_len(), 0, "failed operations write no event");
    opened.close();
}

#[test]
fn concurrent_changes_reach_a_target_in_order_per_sector() {
    let store = Store::new();
    let opened = store.open();
    let target = Recorder::new("order", Behaviour::Accept);
    let deliverer = opened.deliver_to(&[Arc::clone(&target)]);
    const THREADS: u64 = 6;
    const ROUNDS: u64 = 40;
    opened.sectors.allocate(MINER, 8, THREADS as u32).expect("allocate");
    let workers: Vec<_> = (1..=THREADS)
        .map(|number| {
            let sectors = Arc::clone(&opened.sectors);
            thread::spawn(move || {
                for round in 0..ROUNDS {
                    sectors.update(sid(number), vec![SectorUpdate::AbortReason(round.to_string())]).expect("update");
                }
            })
        })
        .collect();
    workers.into_iter().for_each(|w| w.join().expect("worker"));
    let total = 1 + (THREADS * ROUNDS) as usize;
    wait_until("every event is delivered", || target.accepted().len() >= total);

    let events = target.accepted();
    assert_eq!(events.len(), total, "no event twice");
    let mut rounds: BTreeMap<SectorId, Vec<u64>> = BTreeMap::new();
    for event in &events[1..] {
        match event {
            SectorEvent::Update(update) => rounds
                .entry(update.sector_id)
                .or_default()
                .push(update.state.abort_reason.parse().expect("round number")),
            other => panic!("unexpected event {other:?}"),
        }
    }
    for number in 1..=THREADS {
        assert_eq!(rounds[&sid(number)], (0..ROUNDS).collect::<Vec<_>>(), "events of sector {number}");
    }
    deliverer.stop();
    opened.close();
}

#[test]
fn a_failing_target_receives_every_event_in_order_once_it_recovers() {
    let store = Store::new();
    let opened = store.open();
    let flaky = Recorder::new("flaky", Behaviour::FailFirst(7));
    let steady = Recorder::new("steady", Behaviour::Accept);
    let deliverer = opened.deliver_to(&[Arc::clone(&flaky), Arc::clone(&steady)]);
    let expected = script(&opened.sectors);
    wait_until("both targets received everything", || {
        flaky.accepted().len() >= expected.len() && steady.accepted().len() >= expected.len()
    });
    assert_eq!(steady.summary(), expected);
    assert_eq!(flaky.summary(), expected, "no gap, no repeat, same order");
    assert_eq!(flaky.accepted(), steady.accepted());
    assert_eq!(flaky.attempts.load(Ordering::SeqCst), expected.len() + 7);
    // Each failed attempt was reported with its error; the lag cleared once the target caught up.
    let errors = flaky.lags.lock().expect("lags").iter().filter(|(_, e)| e.is_some()).count();
    assert_eq!(errors, 7);
    let reported_failure = flaky.lags.lock().expect("lags").iter().any(|(pending, e)| {
        *pending > 0 && e.as_deref().is_some_and(|e| e.contains("refused attempt 1") && e.contains("OnInit"))
    });
    assert!(reported_failure, "the first failure was reported with pending events and its message");
    wait_until("the lag is cleared", || flaky.last_lag() == Some((0, None)));
    deliverer.stop();
    opened.close();
}

#[test]
fn a_panicking_target_is_retried_and_does_not_stop_delivery() {
    let store = Store::new();
    let opened = store.open();
    let panicky = Recorder::new("panicky", Behaviour::PanicFirst(3));
    let deliverer = opened.deliver_to(&[Arc::clone(&panicky)]);
    let expected = script(&opened.sectors);
    wait_until("the panicking target received everything", || panicky.accepted().len() >= expected.len());
    assert_eq!(panicky.summary(), expected);
    let panics = panicky
        .lags
        .lock()
        .expect("lags")
        .iter()
        .filter(|(_, e)| e.as_deref().is_some_and(|e| e.contains("panicked")))
        .count();
    assert_eq!(panics, 3);
    deliverer.stop();
    opened.close();
}

#[test]
fn a_blocked_target_neither_blocks_state_changes_nor_other_targets() {
    let store = Store::new();
    let opened = store.open();
    let slow = Recorder::new("slow", Behaviour::Accept);
    let quick = Recorder::new("quick", Behaviour::Accept);
    let (entered, release) = slow.hold_next();
    let deliverer = opened.deliver_to(&[Arc::clone(&slow), Arc::clone(&quick)]);
    opened.sectors.allocate(MINER, 8, 1).expect("allocate");
    entered.recv_timeout(Duration::from_secs(30)).expect("the slow target starts delivering");

    // The slow target is stuck inside `deliver`; every change still completes, and the other target keeps up.
    for round in 0..50 {
        opened.sectors.update(sid(1), vec![SectorUpdate::AbortReason(round.to_string())]).expect("update");
    }
    opened.sectors.finalize(sid(1)).expect("finalize");
    wait_until("the quick target received everything", || quick.accepted().len() >= 52);
    assert!(slow.inside.load(Ordering::SeqCst), "the slow target is still blocked");
    assert!(slow.accepted().is_empty());
    // Nothing the slow target has not acknowledged was collected.
    assert_eq!(opened.outbox_len(), 52);

    release.send(()).expect("release");
    wait_until("the slow target caught up", || slow.accepted().len() >= 52);
    assert_eq!(slow.accepted(), quick.accepted());
    wait_until("the outbox is collected", || opened.outbox_len() == 0);
    deliverer.stop();
    opened.close();
}

/// The feed keeps the newest 1,024 decoded events for every target; a target held while 3,000 events are written
/// by 4 threads falls out of that window, reads its backlog from the outbox and then rejoins the feed: it gets
/// every event in the order the quick one got them, and both end with no lag.
#[test]
fn a_target_behind_the_feed_window_reads_the_outbox_and_misses_nothing() {
    let store = Store::new();
    let opened = store.open();
    let held = Recorder::new("held", Behaviour::Accept);
    let quick = Recorder::new("quick", Behaviour::Accept);
    let (entered, release) = held.hold_next();
    let deliverer = opened.deliver_to(&[Arc::clone(&held), Arc::clone(&quick)]);
    opened.sectors.allocate(MINER, 8, 4).expect("allocate");
    entered.recv_timeout(Duration::from_secs(30)).expect("the held target starts delivering");
    thread::scope(|scope| {
        for number in 1..=4 {
            let sectors = &opened.sectors;
            scope.spawn(move || {
                for round in 0..750 {
                    sectors.update(sid(number), vec![SectorUpdate::AbortReason(round.to_string())]).expect("update");
                }
            });
        }
    });
    let total = 1 + 4 * 750;
    wait_until("the quick target received everything", || quick.accepted().len() >= total);
    release.send(()).expect("release");
    wait_until("the held target caught up", || held.accepted().len() >= total);
    assert_eq!(held.accepted().len(), total, "no repeats");
    assert_eq!(held.accepted(), quick.accepted(), "the same events in the same order");
    wait_until("both lags are cleared", || held.last_lag() == Some((0, None)) && quick.last_lag() == Some((0, None)));
    deliverer.stop();
    opened.close();
}

#[test]
fn a_cursor_survives_reopening_without_repeats_or_losses() {
    let store = Store::new();
    let opened = store.open();
    let first = Recorder::new("statelog", Behaviour::Accept);
    let deliverer = opened.deliver_to(&[Arc::clone(&first)]);
    let before = script(&opened.sectors);
    wait_until("the first run delivered its events", || first.accepted().len() >= before.len());
    deliverer.stop();
    // Changes made while nobody delivers wait in the outbox, also across the restart.
    opened.sectors.update(sid(1), vec![SectorUpdate::Removed(true)]).expect("update");
    opened.sectors.finalize(sid(2)).expect("finalize");
    opened.close();

    let opened = store.open();
    opened.sectors.update(sid(3), vec![SectorUpdate::Removed(true)]).expect("update");
    let second = Recorder::new("statelog", Behaviour::Accept);
    let deliverer = opened.deliver_to(&[Arc::clone(&second)]);
    let after = vec![
        (ExtPoint::OnUpdate, vec![sid(1)]),
        (ExtPoint::OnFinalize, vec![sid(2)]),
        (ExtPoint::OnUpdate, vec![sid(3)]),
    ];
    wait_until("the second run delivered the rest", || second.accepted().len() >= after.len());
    thread::sleep(Duration::from_millis(100)); // room for a (wrong) re-delivery to show up
    assert_eq!(first.summary(), before);
    assert_eq!(second.summary(), after);
    deliverer.stop();
    opened.close();
}

#[test]
fn the_outbox_keeps_only_what_some_target_still_needs() {
    let store = Store::new();
    let opened = store.open();
    // No targets: nobody is owed anything, entries go as soon as they are committed.
    let deliverer = opened.deliver_to(&[]);
    opened.sectors.allocate(MINER, 8, 2).expect("allocate");
    wait_until("the outbox is empty without targets", || opened.outbox_len() == 0);
    deliverer.stop();

    // With a target: entries stay until it acknowledged them.
    opened.sectors.update(sid(1), vec![SectorUpdate::Removed(true)]).expect("update");
    assert_eq!(opened.outbox_len(), 1, "kept while no deliverer runs");
    let target = Recorder::new("gc", Behaviour::Accept);
    let (entered, release) = target.hold_next();
    let deliverer = opened.deliver_to(&[Arc::clone(&target)]);
    entered.recv_timeout(Duration::from_secs(30)).expect("delivery starts");
    opened.sectors.update(sid(2), vec![SectorUpdate::Removed(true)]).expect("update");
    thread::sleep(Duration::from_millis(100));
    assert_eq!(opened.outbox_len(), 2, "unacknowledged entries are kept");
    release.send(()).expect("release");
    wait_until("acknowledged entries are collected", || opened.outbox_len() == 0);
    assert_eq!(target.accepted().len(), 2);
    deliverer.stop();
    opened.close();
}

#[test]
fn a_plugin_absent_for_a_run_keeps_its_backlog_until_its_cursor_is_retired() {
    let store = Store::new();
    let opened = store.open();
    opened.sectors.allocate(MINER, 8, 1).expect("allocate");
    let target = Recorder::new("audit", Behaviour::Accept);
    let deliverer = opened.deliver_to(&[Arc::clone(&target)]);
    wait_until("the first event is delivered", || target.accepted().len() == 1);
    deliverer.stop();
    assert_eq!(opened.sectors.sync_cursors().expect("cursors").len(), 1);

    // A run where the plugin is missing (refused, failing onInit...): its events are kept, not collected.
    let deliverer = opened.deliver_to(&[]);
    opened.sectors.update(sid(1), vec![SectorUpdate::Removed(true)]).expect("update");
    opened.sectors.update(sid(1), vec![SectorUpdate::Removed(false)]).expect("update");
    thread::sleep(Duration::from_millis(300));
    assert_eq!(opened.outbox_len(), 2, "the absent plugin's backlog is kept");
    deliverer.stop();

    // It comes back and gets everything it missed, in order.
    let back = Recorder::new("audit", Behaviour::Accept);
    let deliverer = opened.deliver_to(&[Arc::clone(&back)]);
    wait_until("the backlog is delivered", || back.accepted().len() == 2);
    deliverer.stop();

    // Removed for good: retiring its cursor lets the outbox go.
    let deliverer = opened.deliver_to(&[]);
    opened.sectors.update(sid(1), vec![SectorUpdate::Removed(true)]).expect("update");
    thread::sleep(Duration::from_millis(200));
    assert_eq!(opened.outbox_len(), 1);
    assert!(opened.sectors.retire_sync_cursor("audit").expect("retire"));
    wait_until("the outbox is collected after retiring", || opened.outbox_len() == 0);
    assert!(!opened.sectors.retire_sync_cursor("audit").expect("retire again"));
    deliverer.stop();
    opened.close();
}

#[test]
fn a_plugin_that_never_acknowledged_an_event_keeps_its_backlog_while_absent() {
    let store = Store::new();
    let opened = store.open();
    opened.sectors.allocate(MINER, 8, 1).expect("allocate");
    // First run: the plugin is there, but its downstream is down: it never acknowledges anything.
    let down = Recorder::new("audit", Behaviour::FailFirst(usize::MAX));
    let deliverer = opened.deliver_to(&[Arc::clone(&down)]);
    wait_until("a delivery was attempted", || down.attempts.load(Ordering::SeqCst) > 0);
    deliverer.stop();
    assert_eq!(opened.sectors.sync_cursors().expect("cursors"), vec![("audit".to_string(), 0)], "registered");

    // Next run: the plugin fails onInit (absent) while another target acknowledges everything.
    let other = Recorder::new("other", Behaviour::Accept);
    let deliverer = opened.deliver_to(&[Arc::clone(&other)]);
    opened.sectors.update(sid(1), vec![SectorUpdate::Removed(true)]).expect("update");
    wait_until("the other target has everything", || other.accepted().len() == 2);
    thread::sleep(Duration::from_millis(300));
    assert_eq!(opened.outbox_len(), 2, "the absent plugin's backlog is kept although it never acknowledged one");
    deliverer.stop();

    // It comes back and receives all of it, in order.
    let back = Recorder::new("audit", Behaviour::Accept);
    let deliverer = opened.deliver_to(&[Arc::clone(&back)]);
    wait_until("the backlog is delivered", || back.accepted().len() == 2);
    assert_eq!(summarize(&back.accepted()), summarize(&other.accepted()));
    deliverer.stop();
    opened.close();
}

#[test]
fn a_second_target_with_the_same_name_is_refused_and_the_first_gets_everything() {
    let store = Store::new();
    let opened = store.open();
    let first = Recorder::new("twin", Behaviour::Accept);
    let second = Recorder::new("twin", Behaviour::Accept);
    let deliverer = opened.deliver_to(&[Arc::clone(&first), Arc::clone(&second)]);
    let expected = script(&opened.sectors);
    wait_until("the first twin has everything", || first.accepted().len() >= expected.len());
    thread::sleep(Duration::from_millis(100));
    assert_eq!(first.summary(), expected);
    assert_eq!(second.attempts.load(Ordering::SeqCst), 0, "the second twin would share the first one's cursor");
    deliverer.stop();
    opened.close();
}

#[test]
fn an_undecodable_outbox_entry_is_skipped_and_reported_without_wedging_the_target() {
    let store = Store::new();
    let opened = store.open();
    opened.sectors.allocate(MINER, 8, 1).expect("allocate");
    let raw: Box<dyn KvStore> = opened.db.open_collection(COLLECTION).expect("collection");
    let mut iter = raw.scan(b"outbox/").expect("scan");
    let (key, _) = iter.next_entry().expect("next").expect("the Init entry");
    drop(iter);
    let seq: u64 = String::from_utf8_lossy(&key["outbox/".len()..]).parse().expect("seq");
    raw.put(format!("outbox/{:020}", seq + 1).as_bytes(), b"{not an event").expect("put garbage");
    opened.sectors.update(sid(1), vec![SectorUpdate::Removed(true)]).expect("update");
    let target = Recorder::new("reader", Behaviour::Accept);
    let deliverer = opened.deliver_to(&[Arc::clone(&target)]);
    wait_until("both real events are delivered", || target.accepted().len() == 2);
    let kinds: Vec<ExtPoint> = target.accepted().iter().map(SectorEvent::ext_point).collect();
    assert_eq!(kinds, vec![ExtPoint::OnInit, ExtPoint::OnUpdate]);
    let reported = target.lags.lock().expect("lags").iter().any(|(_, error)| {
        error.as_deref().is_some_and(|e| e.contains("undecodable") && e.contains(&(seq + 1).to_string()))
    });
    assert!(reported, "the skipped entry is reported as the target's last error");
    deliverer.stop();
    opened.close();
}

#[test]
fn a_commit_wakes_delivery_at_once_without_waiting_for_the_poll_interval() {
    let store = Store::new();
    let opened = store.open();
    let target = Recorder::new("prompt", Behaviour::Accept);
    let options = DeliveryOptions { poll_interval: Duration::from_secs(3600), ..fast() };
    let deliverer =
        Deliverer::start(Arc::clone(&opened.sectors), vec![Arc::clone(&target) as Arc<dyn EventTarget>], options);
    thread::sleep(Duration::from_millis(100)); // the thread is asleep in its (hour-long) poll
    opened.sectors.allocate(MINER, 8, 1).expect("allocate");
    wait_until("the event is delivered long before the poll interval", || target.accepted().len() == 1);
    deliverer.stop();
    opened.close();
}

#[test]
fn stop_leaves_a_target_stuck_in_deliver_behind_after_the_stop_timeout() {
    let store = Store::new();
    let opened = store.open();
    let stuck = Recorder::new("stuck", Behaviour::Accept);
    let (entered, release) = stuck.hold_next();
    let options = DeliveryOptions { stop_timeout: Duration::from_millis(200), ..fast() };
    let deliverer =
        Deliverer::start(Arc::clone(&opened.sectors), vec![Arc::clone(&stuck) as Arc<dyn EventTarget>], options);
    opened.sectors.allocate(MINER, 8, 1).expect("allocate");
    entered.recv_timeout(Duration::from_secs(30)).expect("delivery starts");
    let stopping = Instant::now();
    deliverer.stop();
    assert!(stopping.elapsed() < Duration::from_secs(10), "stop waited for the stuck target");
    assert!(stuck.inside.load(Ordering::SeqCst));
    release.send(()).expect("release");
}

/// Holds the commit of the next transaction that writes `key`, once armed, until released: a way to make a
/// transaction that drew its seq early commit late.
struct CommitGate {
    key: Vec<u8>,
    armed: Mutex<Option<(mpsc::Sender<()>, mpsc::Receiver<()>)>>,
}

impl CommitGate {
    /// Arms the gate; the receiver hears when a transaction is held, the sender releases it.
    fn arm(&self) -> (mpsc::Receiver<()>, mpsc::Sender<()>) {
        let (entered_tx, entered_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel();
        *self.armed.lock().expect("gate") = Some((entered_tx, release_rx));
        (entered_rx, release_tx)
    }

    fn hold_if_armed(&self) {
        let armed = self.armed.lock().expect("gate").take();
        if let Some((entered, release)) = armed {
            let _ = entered.send(());
            let _ = release.recv();
        }
    }
}

struct GatedStore {
    inner: Box<dyn KvStore>,
    gate: Arc<CommitGate>,
}

impl Forwarding for GatedStore {
    fn inner(&self) -> &dyn KvStore {
        &*self.inner
    }
    fn update(&self, f: TxnFn<'_>) -> Result<(), KvError> {
        self.inner.update(&mut |txn| {
            let watched = WatchedTxn { inner: txn, key: &self.gate.key, wrote: Cell::new(false) };
            f(&watched)?;
            if watched.wrote.get() {
                self.gate.hold_if_armed();
            }
            Ok(())
        })
    }
}

/// Notes whether a transaction wrote the gate's key.
struct WatchedTxn<'a> {
    inner: &'a dyn Txn,
    key: &'a [u8],
    wrote: Cell<bool>,
}

impl Txn for WatchedTxn<'_> {
    fn get(&self, key: &[u8]) -> Result<Vec<u8>, KvError> {
        self.inner.get(key)
    }
    fn peek(&self, key: &[u8], f: &mut dyn FnMut(&[u8])) -> Result<(), KvError> {
        self.inner.peek(key, f)
    }
    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), KvError> {
        if key == self.key {
            self.wrote.set(true);
        }
        self.inner.put(key, value)
    }
    fn del(&self, key: &[u8]) -> Result<(), KvError> {
        self.inner.del(key)
    }
    fn scan(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>, KvError> {
        self.inner.scan(prefix)
    }
}

#[test]
fn an_event_that_commits_late_is_still_delivered_before_later_seqs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gate = Arc::new(CommitGate { key: b"online/m-1000-n-1".to_vec(), armed: Mutex::default() });
    let gate_for_db = Arc::clone(&gate);
    // RocksDB whose transactions pass through the gate after their body ran, before they commit.
    let db = WrappedDb::new(Box::new(RocksDb::open(dir.path()).expect("open RocksDB")), move |_, _, inner| {
        Ok(Box::new(Forwarded(GatedStore { inner, gate: Arc::clone(&gate_for_db) })) as Box<dyn KvStore>)
    });
    db.run().expect("run");
    let sectors = Arc::new(StateManager::open(Arc::new(db)).expect("open"));
    sectors.allocate(MINER, 8, 2).expect("allocate");
    let target = Recorder::new("late", Behaviour::Accept);
    let deliverer = Deliverer::start(Arc::clone(&sectors), vec![Arc::clone(&target) as Arc<dyn EventTarget>], fast());
    wait_until("the Init event is delivered", || target.accepted().len() == 1);

    // Sector 1's update draws its seq, then stalls before committing; sector 2's update commits meanwhile with a
    // greater seq. Delivering sector 2's event now would move the cursor past sector 1's for good.
    let (held, release) = gate.arm();
    let early = {
        let sectors = Arc::clone(&sectors);
        thread::spawn(move || sectors.update(sid(1), vec![SectorUpdate::Removed(true)]).map(|_| ()))
    };
    held.recv_timeout(Duration::from_secs(30)).expect("sector 1's transaction is held");
    sectors.update(sid(2), vec![SectorUpdate::Removed(true)]).expect("update sector 2");
    thread::sleep(Duration::from_millis(200));
    assert_eq!(target.accepted().len(), 1, "a later seq was delivered while an earlier one was in flight");

    release.send(()).expect("release");
    early.join().expect("thread").expect("update sector 1");
    wait_until("both updates are delivered", || target.accepted().len() == 3);
    let order: Vec<Vec<SectorId>> = target.accepted().iter().skip(1).map(SectorEvent::sector_ids).collect();
    assert_eq!(order, vec![vec![sid(1)], vec![sid(2)]]);
    deliverer.stop();
}

/// When a [`late_commit_db`] transaction writing its key is armed, what happens to it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Late {
    /// The caller gets an error; the writes wait for [`LateState::land`] (an EXEC that times out
    /// client-side and runs later).
    Defer,
    /// The writes are applied, then the caller gets an error (the EXEC ran, its reply was lost).
    ApplyThenFail,
}

struct LateState {
    key: Vec<u8>,
    armed: Mutex<Option<Late>>,
    versions: Mutex<BTreeMap<Vec<u8>, u64>>,
    pending: Mutex<Option<Deferred>>,
    /// A handle on the collection for landing deferred commits.
    landing: Mutex<Option<Box<dyn KvStore>>>,
}

/// A deferred commit: the keys read with their write counters then, and the writes (`None` deletes).
struct Deferred {
    reads: Vec<(Vec<u8>, u64)>,
    writes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl LateState {
    fn version(&self, key: &[u8]) -> u64 {
        self.versions.lock().expect("versions").get(key).copied().unwrap_or(0)
    }

    fn bump(&self, keys: impl IntoIterator<Item = Vec<u8>>) {
        let mut versions = self.versions.lock().expect("versions");
        keys.into_iter().for_each(|key| *versions.entry(key).or_default() += 1);
    }

    /// Applies the deferred commit unless a key it read was written meanwhile; whether it landed.
    fn land(&self) -> bool {
        let Deferred { reads, writes } = self.pending.lock().expect("pending").take().expect("a deferred commit");
        if reads.iter().any(|(key, version)| self.version(key) != *version) {
            return false;
        }
        apply(&**self.landing.lock().expect("landing").as_ref().expect("collection opened"), &writes);
        self.bump(writes.into_iter().map(|(key, _)| key));
        true
    }
}

fn apply(store: &dyn KvStore, writes: &[(Vec<u8>, Option<Vec<u8>>)]) {
    store
        .update(&mut |txn| {
            writes.iter().try_for_each(|(key, value)| match value {
                Some(value) => txn.put(key, value),
                None => txn.del(key),
            })
        })
        .expect("apply the deferred writes");
}

/// RocksDB behind a Redis-like commit that can answer an error and still be applied, now or later. A deferred
/// commit lands only if no key it read was written since (Redis's `WATCH` rule: any write, even of the same
/// value, or a delete), tracked by a per-key write counter over every write through this wrapper.
fn late_commit_db(dir: &std::path::Path, late: &Arc<LateState>) -> WrappedDb {
    let late = Arc::clone(late);
    WrappedDb::new(Box::new(RocksDb::open(dir).expect("open RocksDB")), move |db, name, inner| {
        *late.landing.lock().expect("landing") = Some(db.open_collection(name)?);
        Ok(Box::new(LateCommitStore { inner, late: Arc::clone(&late) }) as Box<dyn KvStore>)
    })
}

struct LateCommitStore {
    inner: Box<dyn KvStore>,
    late: Arc<LateState>,
}

impl KvStore for LateCommitStore {
    fn get(&self, key: &[u8]) -> Result<Vec<u8>, KvError> {
        self.inner.get(key)
    }
    fn peek(&self, key: &[u8], f: &mut dyn FnMut(&[u8])) -> Result<(), KvError> {
        self.inner.peek(key, f)
    }
    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), KvError> {
        self.inner.put(key, value)?;
        self.late.bump([key.to_vec()]);
        Ok(())
    }
    fn del(&self, key: &[u8]) -> Result<(), KvError> {
        self.inner.del(key)?;
        self.late.bump([key.to_vec()]);
        Ok(())
    }
    fn scan(&self, prefix: &[u8]) -> Result<Box<dyn KvIter>, KvError> {
        self.inner.scan(prefix)
    }
    fn view(&self, f: TxnFn<'_>) -> Result<(), KvError> {
        self.inner.view(f)
    }
    fn update(&self, f: TxnFn<'_>) -> Result<(), KvError> {
        let mut reads = Vec::new();
        let mut writes = Vec::new();
        let mut deferred = None;
        let result = self.inner.update(&mut |txn| {
            let recording =
                RecordingTxn { inner: txn, late: &self.late, reads: RefCell::default(), writes: RefCell::default() };
            f(&recording)?;
            reads = recording.reads.take();
            writes = recording.writes.take();
            if writes.iter().any(|(key, _)| *key == self.late.key) {
                deferred = self.late.armed.lock().expect("armed").take();
                if deferred == Some(Late::Defer) {
                    return Err(KvError::Aborted("deferred".into()));
                }
            }
            Ok(())
        });
        match deferred {
            Some(Late::Defer) => {
                let mut pending = self.late.pending.lock().expect("pending");
                assert!(pending.is_none(), "one deferred commit at a time");
                *pending = Some(Deferred { reads, writes });
                Err(KvError::Backend("timed out waiting for the EXEC reply".into()))
            }
            Some(Late::ApplyThenFail) => {
                result?;
                self.late.bump(writes.into_iter().map(|(key, _)| key));
                Err(KvError::Backend("connection reset while reading the EXEC reply".into()))
            }
            None => {
                result?;
                self.late.bump(writes.into_iter().map(|(key, _)| key));
                Ok(())
            }
        }
    }
    fn need_retry_transactions(&self) -> bool {
        self.inner.need_retry_transactions()
    }
}

/// A write a transaction made: the key and its new value (`None` for a delete).
type RecordedWrite = (Vec<u8>, Option<Vec<u8>>);

/// Records what a transaction reads (with the key's write counter at that moment) and writes.
struct RecordingTxn<'a> {
    inner: &'a dyn Txn,
    late: &'a LateState,
    reads: RefCell<Vec<(Vec<u8>, u64)>>,
    writes: RefCell<Vec<RecordedWrite>>,
}

impl Txn for RecordingTxn<'_> {
    fn get(&self, key: &[u8]) -> Result<Vec<u8>, KvError> {
        self.reads.borrow_mut().push((key.to_vec(), self.late.version(key)));
        self.inner.get(key)
    }
    fn peek(&self, key: &[u8], f: &mut dyn FnMut(&[u8])) -> Result<(), KvError> {
        self.reads.borrow_mut().push((key.to_vec(), self.late.version(key)));
        self.inner.peek(key, f)
    }
    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), KvError> {
        self.writes.borrow_mut().push((key.to_vec(), Some(value.to_vec())));
        self.inner.put(key, value)
    }
    fn del(&self, key: &[u8]) -> Result<(), KvError> {
        self.writes.borrow_mut().push((key.to_vec(), None));
        self.inner.del(key)
    }
    fn scan(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>, KvError> {
        self.inner.scan(prefix)
    }
}

/// A state manager on a [`late_commit_db`] whose armed key is sector 1's online record, with a delivering target.
fn late_commit_setup() -> (tempfile::TempDir, Arc<LateState>, Arc<StateManager>, Arc<Recorder>, Deliverer) {
    let dir = tempfile::tempdir().expect("tempdir");
    let late = Arc::new(LateState {
        key: b"online/m-1000-n-1".to_vec(),
        armed: Mutex::default(),
        versions: Mutex::default(),
        pending: Mutex::default(),
        landing: Mutex::default(),
    });
    let db = late_commit_db(dir.path(), &late);
    db.run().expect("run");
    let sectors = Arc::new(StateManager::open(Arc::new(db)).expect("open"));
    sectors.allocate(MINER, 8, 2).expect("allocate");
    let target = Recorder::new("ambiguous", Behaviour::Accept);
    let deliverer = Deliverer::start(Arc::clone(&sectors), vec![Arc::clone(&target) as Arc<dyn EventTarget>], fast());
    wait_until("the Init event is delivered", || target.accepted().len() == 1);
    (dir, late, sectors, target, deliverer)
}

/// Whether `target` received an `Update` of sector `number`.
fn got_update_of(target: &Recorder, number: u64) -> bool {
    target.accepted().iter().any(|e| matches!(e, SectorEvent::Update(u) if u.sector_id == sid(number)))
}

#[test]
fn a_commit_that_answers_an_error_and_runs_later_is_fenced_so_nothing_is_lost() {
    let (_dir, late, sectors, target, deliverer) = late_commit_setup();
    *late.armed.lock().expect("armed") = Some(Late::Defer);
    let err = sectors.update(sid(1), vec![SectorUpdate::Removed(true)]).expect_err("the commit timed out");
    assert!(err.to_string().contains("EXEC"), "{err}");
    // A later change commits and is delivered while the first one is still on its way.
    sectors.update(sid(2), vec![SectorUpdate::Removed(true)]).expect("update sector 2");
    wait_until("sector 2's update is delivered", || got_update_of(&target, 2));
    // The late EXEC finally runs: it must not apply, since its event could never be delivered any more.
    assert!(!late.land(), "a commit that lands after its seq was passed would lose its event");
    thread::sleep(Duration::from_millis(200));
    let stored = sectors.find(WorkerState::Online, sid(1)).expect("find").expect("online");
    assert!(!stored.removed, "the state changed without an event");
    assert!(!got_update_of(&target, 1));
    deliverer.stop();
}

#[test]
fn a_commit_that_answers_an_error_but_was_applied_is_reported_as_done_and_delivered() {
    let (_dir, late, sectors, target, deliverer) = late_commit_setup();
    *late.armed.lock().expect("armed") = Some(Late::ApplyThenFail);
    let updated = sectors.update(sid(1), vec![SectorUpdate::Removed(true)]).expect("applied, so a success");
    assert!(updated.removed);
    sectors.update(sid(2), vec![SectorUpdate::Removed(true)]).expect("update sector 2");
    wait_until("both updates are delivered", || got_update_of(&target, 1) && got_update_of(&target, 2));
    let order: Vec<Vec<SectorId>> = target.accepted().iter().skip(1).map(SectorEvent::sector_ids).collect();
    assert_eq!(order, vec![vec![sid(1)], vec![sid(2)]]);
    deliverer.stop();
}

#[test]
fn sixty_four_concurrent_updates_of_one_sector_lose_nothing() {
    let store = Store::new();
    let opened = store.open();
    opened.sectors.allocate(MINER, 8, 1).expect("allocate");
    let target = Recorder::new("contention", Behaviour::Accept);
    let deliverer = opened.deliver_to(&[Arc::clone(&target)]);
    let threads: Vec<_> = (0..64)
        .map(|i| {
            let sectors = Arc::clone(&opened.sectors);
            thread::spawn(move || sectors.update(sid(1), vec![SectorUpdate::AbortReason(format!("t{i}"))]).map(|_| ()))
        })
        .collect();
    for t in threads {
        t.join().expect("thread").expect("update");
    }
    wait_until("every update is delivered", || target.accepted().len() == 65);
    let reasons: Vec<String> = target
        .accepted()
        .iter()
        .filter_map(|e| match e {
            SectorEvent::Update(u) => Some(u.state.abort_reason.clone()),
            _ => None,
        })
        .collect();
    let distinct: std::collections::BTreeSet<&String> = reasons.iter().collect();
    assert_eq!(distinct.len(), 64, "an update was lost or applied twice");
    let stored = opened.sectors.find(WorkerState::Online, sid(1)).expect("find").expect("online");
    assert_eq!(Some(&stored.abort_reason), reasons.last(), "the last event is the stored state");
    deliverer.stop();
    opened.close();
}

#[test]
fn concurrent_batches_and_imports_over_overlapping_numbers_never_share_a_number() {
    let store = Store::new();
    let opened = store.open();
    let allocators: Vec<_> = (0..16)
        .map(|_| {
            let sectors = Arc::clone(&opened.sectors);
            thread::spawn(move || {
                (0..8)
                    .flat_map(|_| sectors.allocate(MINER, 8, 8).expect("allocate"))
                    .map(|s| s.id.number)
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let importers: Vec<_> = (0..4u64)
        .map(|t| {
            let sectors = Arc::clone(&opened.sectors);
            thread::spawn(move || {
                // Numbers the allocators are about to plan: every import forces a re-plan or a skip.
                (0..32u64)
                    .filter(|i| {
                        let state = SectorState::new(sid(500 + t * 32 + i), 8);
                        sectors.import(WorkerState::Offline, state, false).expect("import")
                    })
                    .map(|i| 500 + t * 32 + i)
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let mut allocated: Vec<u64> = allocators.into_iter().flat_map(|t| t.join().expect("allocator")).collect();
    let imported: Vec<u64> = importers.into_iter().flat_map(|t| t.join().expect("importer")).collect();
    assert_eq!(allocated.len(), 16 * 8 * 8);
    allocated.sort_unstable();
    let before = allocated.len();
    allocated.dedup();
    assert_eq!(allocated.len(), before, "a number was handed out twice");
    assert!(imported.iter().all(|n| allocated.binary_search(n).is_err()), "an imported number was handed out");
    let online = opened.sectors.list(WorkerState::Online, JobFilter::All).expect("list");
    assert_eq!(online.len(), allocated.len());
    opened.close();
}

/// Sector records and pending outbox events exactly as the manager wrote them before sector states took Go's
/// shape (`data/pre-go-shape-sectors.json`: `Pieces` holding legacy deals, `Pre.Deals`, `"Pieces":[]` for CC, a
/// `Pieces` update), written into a RocksDB database as they were stored, still read and deliver: the legacy
/// deals come out as Go's `Deals`, and the records are written back in Go's shape on the next change.
#[test]
fn records_and_events_written_before_the_go_shape_still_decode() {
    let pairs: Vec<(String, String)> =
        serde_json::from_str(include_str!("data/pre-go-shape-sectors.json")).expect("fixture");
    let store = Store::new();
    {
        let db = RocksDb::open(store.dir.path()).expect("open RocksDB");
        db.run().expect("run");
        let collection = db.open_collection(COLLECTION).expect("collection");
        collection
            .update(&mut |txn| pairs.iter().try_for_each(|(key, value)| txn.put(key.as_bytes(), value.as_bytes())))
            .expect("write the old records");
        drop(collection);
        db.close().expect("close");
    }
    let opened = store.open();
    let online = opened.sectors.list(WorkerState::Online, JobFilter::All).expect("list online");
    assert_eq!(online.iter().map(|s| s.id.number).collect::<Vec<_>>(), [1, 2]);
    let (cc, with_deals) = (&online[0], &online[1]);
    assert_eq!((&cc.deals, &cc.pieces), (&None, &Some(Vec::new())), "the old CC record's `Pieces: []`");
    let deals = with_deals.deals.as_ref().expect("legacy Pieces read as Deals");
    assert_eq!((deals.len(), deals[0].id, deals[0].piece.cid.value.as_str()), (2, 7, "baga6ea4seaqdeal"));
    assert_eq!(with_deals.pieces, None);
    assert_eq!(with_deals.pre.as_ref().expect("pre").comm_r.value, "bagboea4b5abcold");
    assert!(with_deals.imported && with_deals.abort_reason == "test");
    assert!(opened.sectors.find(WorkerState::Offline, sid(3)).expect("find").expect("offline").finalized);
    let next = opened.sectors.allocate(MINER, 8, 1).expect("allocate")[0].id.number;
    assert_eq!(next, 4, "the old counter holds");

    // The events still pending for statelog decode and are delivered.
    let statelog = Recorder::new("statelog", Behaviour::Accept);
    let deliverer = opened.deliver_to(&[Arc::clone(&statelog)]);
    wait_until("the old events and the allocation are delivered", || statelog.accepted().len() >= 6);
    deliverer.stop();
    let accepted = statelog.accepted();
    let kinds: Vec<ExtPoint> = accepted.iter().map(SectorEvent::ext_point).collect();
    use ExtPoint::*;
    assert_eq!(kinds, [OnInit, OnUpdate, OnImport, OnUpdate, OnFinalize, OnInit]);
    let SectorEvent::Update(update) = &accepted[3] else { panic!("{:?}", accepted[3]) };
    let SectorUpdate::Deals(Some(deals)) = &update.updates[0] else { panic!("{:?}", update.updates) };
    assert_eq!(deals.len(), 2, "the old `Pieces` update is a `Deals` update");
    assert_eq!(update.state.deals.as_ref().map(Vec::len), Some(2));

    // Written back in Go's shape on the next change.
    opened.sectors.update(sid(2), vec![SectorUpdate::Removed(false)]).expect("update");
    let raw = opened.db.open_collection(COLLECTION).expect("collection");
    let mut value = Vec::new();
    raw.view(&mut |txn| {
        value = txn.get(b"online/m-1000-n-2")?;
        Ok(())
    })
    .expect("read");
    let written: serde_json::Value = serde_json::from_slice(&value).expect("json");
    assert_eq!(written["Pieces"], serde_json::Value::Null);
    assert_eq!(written["Deals"][0]["Piece"]["Cid"]["/"], "baga6ea4seaqdeal");
    assert!(written["Pre"].get("Deals").is_none() && written.get("TerminateInfo").is_some(), "{written}");
    drop(raw);
    opened.close();
}
