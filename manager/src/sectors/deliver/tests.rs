//! Batched delivery ([`EventTarget::deliver_batch`]) on the in-memory store: what a batch that fails midway or is
//! taken only in part leaves delivered, and that nothing repeats or goes missing across a restart.

use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use manager_plugin::kv::{Db, Meta};
use manager_plugin::sync::SectorEvent;

use super::{BatchDelivery, Deliverer, DeliveryOptions, EventTarget, SkipError, StoredEvent};
use crate::sectors::StateManager;

/// How the test target was called: `true` for a batch call, with the sector number of each event.
type Call = (bool, Vec<u64>);

/// A target that takes up to `take` events per batch call and refuses the first delivery of sector `fail_once`.
/// When `hold` is set, its next batch call announces itself, waits to be released, and then fails as a whole (as a
/// process plugin's call fails when the process dies).
struct Batcher {
    take: usize,
    fail_once: Mutex<Option<u64>>,
    calls: Mutex<Vec<Call>>,
    accepted: Mutex<Vec<u64>>,
    hold: Mutex<Option<(mpsc::Sender<()>, mpsc::Receiver<()>)>>,
}

impl Batcher {
    fn new(take: usize, fail_once: Option<u64>) -> Arc<Batcher> {
        Arc::new(Batcher {
            take,
            fail_once: Mutex::new(fail_once),
            calls: Mutex::default(),
            accepted: Mutex::default(),
            hold: Mutex::default(),
        })
    }

    /// Makes the next batch call block until the returned sender sends; the receiver hears when it started.
    fn hold_next(&self) -> (mpsc::Receiver<()>, mpsc::Sender<()>) {
        let (entered_tx, entered_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel();
        *self.hold.lock().expect("hold") = Some((entered_tx, release_rx));
        (entered_rx, release_tx)
    }

    fn accepted(&self) -> Vec<u64> {
        self.accepted.lock().expect("accepted").clone()
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("calls").clone()
    }

    /// Handles `events` in order up to the first refusal.
    fn handle(&self, batch: bool, events: &[&SectorEvent]) -> BatchDelivery {
        let numbers: Vec<u64> = events.iter().map(|event| event.sector_ids()[0].number).collect();
        self.calls.lock().expect("calls").push((batch, numbers.clone()));
        for (at, number) in numbers.iter().enumerate() {
            let mut fail_once = self.fail_once.lock().expect("fail_once");
            if *fail_once == Some(*number) {
                *fail_once = None;
                return BatchDelivery { delivered: at, error: Some(format!("refused sector {number}")) };
            }
            self.accepted.lock().expect("accepted").push(*number);
        }
        BatchDelivery { delivered: numbers.len(), error: None }
    }
}

impl EventTarget for Batcher {
    fn name(&self) -> String {
        "batcher".into()
    }

    fn deliver(&self, event: &SectorEvent) -> Result<(), String> {
        match self.handle(false, &[event]).error {
            None => Ok(()),
            Some(error) => Err(error),
        }
    }

    fn batch_limit(&self) -> usize {
        usize::MAX
    }

    fn deliver_batch(&self, events: &[&StoredEvent]) -> BatchDelivery {
        let events: Vec<&SectorEvent> = events.iter().take(self.take).map(|stored| &stored.event).collect();
        let held = self.hold.lock().expect("hold").take();
        if let Some((entered, release)) = held {
            let _ = entered.send(());
            let _ = release.recv();
            let numbers = events.iter().map(|event| event.sector_ids()[0].number).collect();
            self.calls.lock().expect("calls").push((true, numbers));
            return BatchDelivery { delivered: 0, error: Some("the plugin process ended".into()) };
        }
        self.handle(true, &events)
    }

    fn report_lag(&self, _pending: u64, _last_error: Option<String>) {}
}

/// Retries within milliseconds (commits wake the threads; the poll interval is only a fallback).
fn fast() -> DeliveryOptions {
    let retry = Duration::from_millis(2);
    DeliveryOptions { initial_backoff: retry, max_backoff: retry * 10, ..DeliveryOptions::default() }
}

/// A state manager on a fresh in-memory database, with `count` sectors allocated one by one (one `OnInit` event
/// each, for sectors 1..=count).
fn with_sectors(count: u64) -> Arc<StateManager> {
    let db: Arc<dyn Db> = Arc::new(memdb::open(&Meta::new()).expect("memdb"));
    let sectors = Arc::new(StateManager::open(db).expect("open"));
    allocate(&sectors, count);
    sectors
}

fn allocate(sectors: &StateManager, count: u64) {
    for _ in 0..count {
        sectors.allocate(1000, 8, 1).expect("allocate");
    }
}

fn start(sectors: &Arc<StateManager>, target: &Arc<Batcher>) -> Deliverer {
    Deliverer::start(Arc::clone(sectors), vec![Arc::clone(target) as Arc<dyn EventTarget>], fast())
}

fn wait_accepted(target: &Batcher, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while target.accepted().len() < count {
        assert!(Instant::now() < deadline, "timed out: accepted {:?}", target.accepted());
        thread::sleep(Duration::from_millis(5));
    }
}

fn batch(numbers: impl IntoIterator<Item = u64>) -> Call {
    (true, numbers.into_iter().collect())
}

#[test]
fn a_batch_failing_midway_keeps_its_head_retries_the_failed_event_alone_and_sends_its_tail_one_by_one() {
    let sectors = with_sectors(20);
    let target = Batcher::new(usize::MAX, Some(8));
    let deliverer = start(&sectors, &target);
    wait_accepted(&target, 20);
    assert!(deliverer.stop().is_empty());
    assert_eq!(target.accepted(), (1..=20).collect::<Vec<_>>(), "in order, nothing twice, nothing missing");
    let mut expected = vec![batch(1..=20), (false, vec![8])];
    expected.extend((9..=20).map(|n| batch([n])));
    assert_eq!(target.calls(), expected);

    // After a restart, the persisted cursor is past all of them, and a backlog goes in one batch again.
    allocate(&sectors, 10);
    let deliverer = start(&sectors, &target);
    wait_accepted(&target, 30);
    assert!(deliverer.stop().is_empty());
    assert_eq!(target.accepted(), (1..=30).collect::<Vec<_>>());
    assert_eq!(target.calls().last(), Some(&batch(21..=30)));
}

#[test]
fn a_target_taking_part_of_a_batch_gets_the_rest_next_without_a_retry() {
    let sectors = with_sectors(10);
    let target = Batcher::new(4, None);
    let deliverer = start(&sectors, &target);
    wait_accepted(&target, 10);
    assert!(deliverer.stop().is_empty());
    assert_eq!(target.accepted(), (1..=10).collect::<Vec<_>>());
    assert_eq!(target.calls(), vec![batch(1..=4), batch(5..=8), batch(9..=10)]);
}

#[test]
fn a_skip_asked_while_a_batch_runs_is_refused_when_the_batch_fails_and_nothing_is_skipped() {
    let sectors = with_sectors(5);
    let target = Batcher::new(usize::MAX, None);
    let (entered, release) = target.hold_next();
    let deliverer = start(&sectors, &target);
    entered.recv_timeout(Duration::from_secs(30)).expect("the batch call started");
    // The watchdog shows the call by its first event; the operator asks to skip that one.
    let worker = Arc::clone(&deliverer.shared.workers[0]);
    let first = worker.progress().in_flight.expect("a call in flight").seq;
    let control = deliverer.control();
    let asked = thread::spawn(move || control.skip("batcher", first, Duration::from_secs(30)));
    let deadline = Instant::now() + Duration::from_secs(30);
    while worker.progress().skip != Some(first) {
        assert!(Instant::now() < deadline, "the skip was never recorded");
        thread::sleep(Duration::from_millis(5));
    }
    release.send(()).expect("release");
    match asked.join().expect("skip thread") {
        Err(SkipError::InBatch { seq, count, .. }) => assert_eq!((seq, count), (first, 5)),
        other => panic!("expected InBatch, got {other:?}"),
    }
    wait_accepted(&target, 5);
    assert!(deliverer.stop().is_empty());
    assert_eq!(target.accepted(), (1..=5).collect::<Vec<_>>(), "nothing skipped, nothing twice");
    let mut expected = vec![batch(1..=5), (false, vec![1])];
    expected.extend((2..=5).map(|n| batch([n])));
    assert_eq!(target.calls(), expected, "the failed event retried alone, the rest one per call");
}
