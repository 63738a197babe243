//! Delivery cost grows linearly with the backlog: a SyncSectorState target that was failing for a while, then
//! recovers, drains 4k and 32k events with the same KV work per event. The work is counted (entries read from
//! the KV store), not timed; the wall times are printed for `docs/reliability.md`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::wrapped_db::{Forwarded, Forwarding, WrappedDb};
use manager::sectors::{Deliverer, DeliveryOptions, EventTarget, StateManager};
use manager_plugin::kv::{Db, Entry, KvError, KvIter, KvStore, Meta};
use manager_plugin::sector::{SectorId, SectorUpdate};
use manager_plugin::sync::SectorEvent;

/// The database the delivery runs on (memdb: outbox read by prefix scans; RocksDB: by scans from a key), counting
/// the entries read outside transactions; the temp dir, if any, must outlive it.
fn counting_db(reads: Arc<AtomicU64>, rocksdb: bool) -> (WrappedDb, Option<tempfile::TempDir>) {
    let count = move |_: &dyn Db, _: &str, inner: Box<dyn KvStore>| -> Result<Box<dyn KvStore>, KvError> {
        Ok(Box::new(Forwarded(CountingStore { inner, reads: Arc::clone(&reads) })))
    };
    if rocksdb {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = manager::kvstore::RocksDb::open(dir.path()).expect("RocksDB");
        db.run().expect("run");
        return (WrappedDb::new(Box::new(db), count), Some(dir));
    }
    (WrappedDb::new(Box::new(memdb::open(&Meta::new()).expect("memdb")), count), None)
}

struct CountingStore {
    inner: Box<dyn KvStore>,
    reads: Arc<AtomicU64>,
}

impl Forwarding for CountingStore {
    fn inner(&self) -> &dyn KvStore {
        &*self.inner
    }
    fn get(&self, key: &[u8]) -> Result<Vec<u8>, KvError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.inner.get(key)
    }
    fn peek(&self, key: &[u8], f: &mut dyn FnMut(&[u8])) -> Result<(), KvError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.inner.peek(key, f)
    }
    fn scan(&self, prefix: &[u8]) -> Result<Box<dyn KvIter>, KvError> {
        // Opening an iterator is work too: count it as one read.
        self.reads.fetch_add(1, Ordering::Relaxed);
        Ok(Box::new(CountingIter { inner: self.inner.scan(prefix)?, reads: Arc::clone(&self.reads) }))
    }
    fn scan_after(&self, prefix: &[u8], after: &[u8]) -> Result<Option<Box<dyn KvIter>>, KvError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        let inner = self.inner.scan_after(prefix, after)?;
        Ok(inner.map(|inner| Box::new(CountingIter { inner, reads: Arc::clone(&self.reads) }) as Box<dyn KvIter>))
    }
}

struct CountingIter {
    inner: Box<dyn KvIter>,
    reads: Arc<AtomicU64>,
}

impl KvIter for CountingIter {
    fn next_entry(&mut self) -> Result<Option<Entry>, KvError> {
        let entry = self.inner.next_entry()?;
        if entry.is_some() {
            self.reads.fetch_add(1, Ordering::Relaxed);
        }
        Ok(entry)
    }
}

/// Refuses every event while `failing`; counts what it accepted.
struct Flaky {
    failing: AtomicBool,
    accepted: AtomicUsize,
}

impl EventTarget for Flaky {
    fn name(&self) -> String {
        "flaky".into()
    }
    fn deliver(&self, _event: &SectorEvent) -> Result<(), String> {
        if self.failing.load(Ordering::SeqCst) {
            return Err("outage".into());
        }
        self.accepted.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn report_lag(&self, _pending: u64, _last_error: Option<String>) {}
}

/// Builds a backlog of `events` while the target fails, then lets it recover; returns the KV entries read per
/// event while failing and draining, and the drain's wall time.
fn drain(events: usize, rocksdb: bool) -> (f64, Duration) {
    let reads = Arc::new(AtomicU64::new(0));
    let (db, _dir) = counting_db(Arc::clone(&reads), rocksdb);
    let db: Arc<dyn Db> = Arc::new(db);
    let sectors = Arc::new(StateManager::open(Arc::clone(&db)).expect("state manager"));
    let target = Arc::new(Flaky { failing: AtomicBool::new(true), accepted: AtomicUsize::new(0) });
    let options = DeliveryOptions {
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        poll_interval: Duration::from_millis(50),
        stop_timeout: Duration::from_secs(10),
    };
    let deliverer = Deliverer::start(Arc::clone(&sectors), vec![Arc::clone(&target) as Arc<dyn EventTarget>], options);
    let allocated = sectors.allocate(1000, 8, 16).expect("allocate");
    let ids: Vec<SectorId> = allocated.iter().map(|s| s.id).collect();
    reads.store(0, Ordering::SeqCst);
    for n in 1..events {
        let id = ids[n % ids.len()];
        sectors.update(id, vec![SectorUpdate::AbortReason(format!("update {n}"))]).expect("update");
    }
    // One event from the allocation, `events - 1` updates.
    let started = Instant::now();
    target.failing.store(false, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(300);
    while target.accepted.load(Ordering::SeqCst) < events {
        assert!(Instant::now() < deadline, "only {} of {events} delivered", target.accepted.load(Ordering::SeqCst));
        std::thread::sleep(Duration::from_millis(5));
    }
    let took = started.elapsed();
    deliverer.stop();
    let per_event = reads.load(Ordering::SeqCst) as f64 / events as f64;
    (per_event, took)
}

#[test]
fn draining_a_backlog_costs_the_same_work_per_event_at_4k_and_32k() {
    assert_linear(false);
}

#[test]
fn draining_a_backlog_from_rocksdb_costs_the_same_work_per_event_at_4k_and_32k() {
    assert_linear(true);
}

fn assert_linear(rocksdb: bool) {
    let (small, small_time) = drain(4_000, rocksdb);
    let (large, large_time) = drain(32_000, rocksdb);
    eprintln!(
        "drain after an outage (rocksdb: {rocksdb}): 4k events {small_time:?} ({small:.1} KV reads/event), 32k events {large_time:?} \
         ({large:.1} KV reads/event); time ratio {:.1} for 8x the events",
        large_time.as_secs_f64() / small_time.as_secs_f64()
    );
    // Linear work: the reads per event must not grow with the backlog (a rescan per batch makes them grow 8x).
    assert!(large <= small * 1.5 + 2.0, "KV reads per event grew from {small:.1} to {large:.1}");
}
