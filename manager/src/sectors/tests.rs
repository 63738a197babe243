//! Behaviour of [`StateManager`] on the in-memory store: records, numbering, events, refusals.

use std::sync::Arc;
use std::thread;

use manager_plugin::kv::{Db, KvStore, Meta};
use manager_plugin::sector::{Cid, LegacyDeal, PieceInfo, SectorId, SectorState, SectorUpdate, WorkerState};
use manager_plugin::sync::SectorEvent;

use super::outbox::OutboxRecord;
use super::{COLLECTION, JobFilter, MinerCandidate, NumberRange, SectorError, StateManager};

fn open() -> (Arc<dyn Db>, StateManager) {
    let db: Arc<dyn Db> = Arc::new(memdb::open(&Meta::new()).expect("memdb"));
    let sectors = StateManager::open(Arc::clone(&db)).expect("open");
    (db, sectors)
}

fn raw(db: &Arc<dyn Db>) -> Box<dyn KvStore> {
    db.open_collection(COLLECTION).expect("collection")
}

/// Every event in the outbox, in seq order.
fn events(db: &Arc<dyn Db>) -> Vec<(u64, SectorEvent)> {
    let store = raw(db);
    let mut iter = store.scan(b"outbox/").expect("scan");
    let mut out = Vec::new();
    while let Some((_, value)) = iter.next_entry().expect("next") {
        let record: OutboxRecord<SectorEvent> = serde_json::from_slice(&value).expect("outbox entry");
        out.push((record.seq, record.event));
    }
    out
}

fn sid(number: u64) -> SectorId {
    SectorId { miner: 1000, number }
}

fn deal() -> LegacyDeal {
    let piece = PieceInfo { size: 128, offset: 0, cid: Cid { value: "baga".into() } };
    LegacyDeal { id: 7, payload_size: 100, piece, ..LegacyDeal::default() }
}

#[test]
fn allocation_numbers_start_at_one_per_miner_and_never_repeat() {
    let (db, sectors) = open();
    let first = sectors.allocate(1000, 8, 3).expect("allocate");
    let numbers: Vec<u64> = first.iter().map(|s| s.id.number).collect();
    assert_eq!(numbers, vec![1, 2, 3]);
    assert!(first.iter().all(|s| s.proof_type == 8 && s.id.miner == 1000));
    assert_eq!(sectors.allocate(1000, 8, 1).expect("allocate")[0].id.number, 4);
    assert_eq!(sectors.allocate(2000, 8, 1).expect("allocate")[0].id.number, 1);
    assert_eq!(sectors.allocate(1000, 8, 0).expect("allocate nothing"), vec![]);
    let online = sectors.list(WorkerState::Online, JobFilter::All).expect("list");
    assert_eq!(online.len(), 5);
    assert_eq!(online[0].id, SectorId { miner: 1000, number: 1 });
    assert_eq!(online[4].id, SectorId { miner: 2000, number: 1 });
    // One Init event per allocation, none for the empty one.
    let inits: Vec<usize> = events(&db)
        .into_iter()
        .map(|(_, e)| match e {
            SectorEvent::Init(init) => init.sectors.len(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(inits, vec![3, 1, 1]);
}

fn numbers(allocated: &[manager_plugin::sector::AllocatedSector]) -> Vec<u64> {
    allocated.iter().map(|s| s.id.number).collect()
}

fn range(floor: u64, max: Option<u64>) -> NumberRange {
    NumberRange { floor, max }
}

#[test]
fn allocation_starts_above_the_floor_and_continues_from_the_counter_above_it() {
    let (_db, sectors) = open();
    // A migrated miner: its first number is floor + 1, not 1.
    let first = sectors.allocate_in(1000, 8, 2, range(100, None)).expect("allocate").expect("room");
    assert_eq!(numbers(&first), vec![101, 102]);
    // A counter above the floor wins: max(counter, floor) + 1.
    assert_eq!(numbers(&sectors.allocate_in(1000, 8, 1, range(50, None)).expect("allocate").expect("room")), [103]);
    // Raising the floor later jumps ahead; numbers below it are never handed out again.
    assert_eq!(numbers(&sectors.allocate_in(1000, 8, 1, range(200, None)).expect("allocate").expect("room")), [201]);
    assert_eq!(numbers(&sectors.allocate(1000, 8, 1).expect("allocate")), [202]);
}

#[test]
fn a_full_range_allocates_nothing_and_the_next_candidate_is_used() {
    let (db, sectors) = open();
    assert_eq!(numbers(&sectors.allocate_in(1000, 8, 2, range(0, Some(3))).expect("allocate").expect("room")), [1, 2]);
    let before = events(&db).len();
    // Two more would end at 4 > MaxNumber 3: refused as a whole, nothing written, counter untouched.
    assert_eq!(sectors.allocate_in(1000, 8, 2, range(0, Some(3))).expect("allocate"), None);
    assert_eq!(events(&db).len(), before);
    assert_eq!(numbers(&sectors.allocate_in(1000, 8, 1, range(0, Some(3))).expect("allocate").expect("room")), [3]);
    let candidate = |miner, max| MinerCandidate { miner, proof_type: 8, range: range(0, Some(max)), verbose: true };
    let picked = sectors.allocate_first([candidate(1000, 3), candidate(2000, 1)], 1).expect("allocate");
    assert_eq!(picked[0].id, SectorId { miner: 2000, number: 1 }, "the full miner is skipped");
    assert!(sectors.allocate_first([candidate(1000, 3), candidate(2000, 1)], 1).expect("allocate").is_empty());
    assert!(sectors.allocate_first(Vec::new(), 1).expect("no candidates").is_empty());
}

#[test]
fn numbers_stop_at_filecoins_limit_2_pow_63_minus_1_without_overflow() {
    let (_db, sectors) = open();
    let limit = super::MAX_SECTOR_NUMBER;
    assert_eq!(limit, (1u64 << 63) - 1);
    assert_eq!(sectors.allocate_in(1000, 8, 1, range(u64::MAX, None)).expect("allocate"), None);
    assert_eq!(sectors.allocate_in(1000, 8, 1, range(limit, None)).expect("allocate"), None);
    // A MaxNumber above the limit does not lift it.
    assert_eq!(sectors.allocate_in(1000, 8, 1, range(limit, Some(u64::MAX))).expect("allocate"), None);
    assert_eq!(sectors.allocate_in(1000, 8, 2, range(limit - 1, None)).expect("allocate"), None, "one left");
    let last = sectors.allocate_in(1000, 8, 1, range(limit - 1, None)).expect("allocate").expect("room");
    assert_eq!(numbers(&last), [limit]);
    assert_eq!(sectors.allocate_in(1000, 8, 1, range(0, None)).expect("allocate"), None);
    let err = sectors.allocate(1000, 8, 1).expect_err("exhausted");
    assert!(err.to_string().contains("t01000") && err.to_string().contains("exhausted"), "{err}");
    // A count the range cannot hold is refused before anything is planned.
    assert_eq!(sectors.allocate_in(2000, 8, u32::MAX, range(0, Some(10))).expect("allocate"), None);
}

#[test]
fn allocation_skips_numbers_taken_by_imported_sectors() {
    let (_db, sectors) = open();
    assert!(sectors.import(WorkerState::Offline, SectorState::new(sid(2), 8), false).expect("import"));
    let numbers: Vec<u64> = sectors.allocate(1000, 8, 3).expect("allocate").iter().map(|s| s.id.number).collect();
    assert_eq!(numbers, vec![1, 3, 4]);
}

#[test]
fn a_sector_goes_online_offline_and_back_with_one_event_per_change() {
    let (db, sectors) = open();
    let id = sectors.allocate(1000, 8, 1).expect("allocate")[0].id;
    let updated = sectors.update(id, vec![SectorUpdate::AbortReason("no deals".into())]).expect("update");
    assert_eq!(updated.abort_reason, "no deals");
    let finalized = sectors.finalize(id).expect("finalize");
    assert!(finalized.finalized);
    assert_eq!(sectors.find(WorkerState::Online, id).expect("find"), None);
    assert_eq!(sectors.find_in_all_states(id).expect("find").map(|(ws, _)| ws), Some(WorkerState::Offline));
    // Finalizing again is harmless and silent.
    assert_eq!(sectors.finalize(id).expect("finalize again"), finalized);
    let restored = sectors.restore(id, false).expect("restore");
    assert!(!restored.finalized);
    assert_eq!(restored.abort_reason, "", "a normal restore clears the abort reason");
    assert_eq!(sectors.find(WorkerState::Offline, id).expect("find"), None);
    // Restoring an online sector is harmless and silent.
    assert_eq!(sectors.restore(id, false).expect("restore again"), restored);

    let kinds: Vec<String> = events(&db).into_iter().map(|(_, e)| format!("{:?}", e.ext_point())).collect();
    assert_eq!(kinds, vec!["OnInit", "OnUpdate", "OnFinalize", "OnRestore"]);
    let seqs: Vec<u64> = events(&db).into_iter().map(|(seq, _)| seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn an_empty_update_writes_nothing() {
    let (db, sectors) = open();
    let id = sectors.allocate(1000, 8, 1).expect("allocate")[0].id;
    let before = sectors.find(WorkerState::Online, id).expect("find");
    assert_eq!(Some(sectors.update(id, Vec::new()).expect("empty update")), before);
    assert_eq!(events(&db).len(), 1, "only the Init event");
}

#[test]
fn refused_and_missing_sectors_write_nothing() {
    let (db, sectors) = open();
    let missing = sectors.update(sid(9), vec![SectorUpdate::Removed(true)]).expect_err("update missing");
    assert!(missing.is_not_found());
    assert_eq!(missing.to_string(), "sector s-t01000-9 not found among online sectors");
    assert!(sectors.finalize(sid(9)).expect_err("finalize missing").is_not_found());
    assert!(sectors.restore(sid(9), true).expect_err("restore missing").is_not_found());

    let id = sectors.allocate(1000, 8, 1).expect("allocate")[0].id;
    sectors.finalize(id).expect("finalize");
    // Finalized but never aborted: the Go manager refuses a normal restore.
    let refused = sectors.restore(id, false).expect_err("restore of a sector that was not aborted");
    assert!(matches!(refused, SectorError::RestoreRefused { .. }), "{refused}");
    assert!(refused.to_string().contains("s-t01000-1"), "{refused}");
    // Updates only apply to online sectors.
    assert!(sectors.update(id, vec![SectorUpdate::Removed(true)]).expect_err("update offline").is_not_found());
    assert_eq!(events(&db).len(), 2, "only Init and Finalize were written");
    assert!(sectors.restore(id, true).expect("forced restore").id == id);
}

#[test]
fn a_late_abort_of_a_finalized_sector_is_not_found_and_changes_nothing() {
    let (db, sectors) = open();
    let id = sectors.allocate(1000, 8, 1).expect("allocate")[0].id;
    let finalized = sectors.finalize(id).expect("finalize");
    let before = events(&db).len();
    // A worker that restarted reports an abort for the sector it had already finalized.
    let late = sectors.finalize_with(id, vec![SectorUpdate::AbortReason("late".into())]).expect_err("late abort");
    assert!(late.is_not_found(), "{late}");
    assert_eq!(late.to_string(), "sector s-t01000-1 not found among online sectors");
    assert_eq!(sectors.find(WorkerState::Offline, id).expect("find"), Some(finalized));
    assert_eq!(events(&db).len(), before, "a late abort must not emit an event");
    // So a sealed sector without deals does not become restorable without `forced`.
    let refused = sectors.restore(id, false).expect_err("restore of a sector that was not aborted");
    assert!(matches!(refused, SectorError::RestoreRefused { .. }), "{refused}");
    // The same for a repeated abort, and for an abort of a sector that never existed.
    let aborted = sectors.allocate(1000, 8, 1).expect("allocate")[0].id;
    sectors.finalize_with(aborted, vec![SectorUpdate::AbortReason("first".into())]).expect("abort");
    let repeated = sectors.finalize_with(aborted, vec![SectorUpdate::AbortReason("second".into())]);
    assert!(repeated.expect_err("repeated abort").is_not_found());
    let stored = sectors.find(WorkerState::Offline, aborted).expect("find").expect("offline");
    assert_eq!(stored.abort_reason, "first");
    assert!(sectors.finalize_with(sid(99), Vec::new()).expect_err("unknown").is_not_found());
}

#[test]
fn a_sector_with_deals_needs_a_forced_restore() {
    let (_db, sectors) = open();
    let id = sectors.allocate(1000, 8, 1).expect("allocate")[0].id;
    sectors
        .finalize_with(id, vec![SectorUpdate::Deals(Some(vec![deal()])), SectorUpdate::AbortReason("x".into())])
        .expect("finalize");
    let refused = sectors.restore(id, false).expect_err("restore with deals");
    assert!(refused.to_string().contains("deals"), "{refused}");
    let restored = sectors.restore(id, true).expect("forced");
    assert_eq!(restored.abort_reason, "x", "a forced restore keeps the record as it is");
}

#[test]
fn import_respects_existing_records_unless_told_to_overwrite() {
    let (db, sectors) = open();
    let mut state = SectorState::new(sid(5), 8);
    assert!(sectors.import(WorkerState::Online, state.clone(), false).expect("import"));
    let stored = sectors.find(WorkerState::Online, sid(5)).expect("find").expect("imported");
    assert!(!stored.imported, "Imported is kept as given, as Go (sealer_cli.go:470-481)");
    state.abort_reason = "changed".into();
    // Exists online: refused whichever state the import targets.
    assert!(!sectors.import(WorkerState::Online, state.clone(), false).expect("import"));
    assert!(!sectors.import(WorkerState::Offline, state.clone(), false).expect("import"));
    assert_eq!(events(&db).len(), 1);
    // Overwriting into offline moves the sector: it lives in one state only.
    assert!(sectors.import(WorkerState::Offline, state, true).expect("overwrite"));
    assert_eq!(sectors.find(WorkerState::Online, sid(5)).expect("find"), None);
    let (ws, stored) = sectors.find_in_all_states(sid(5)).expect("find").expect("present");
    assert_eq!((ws, stored.abort_reason.as_str()), (WorkerState::Offline, "changed"));
    match events(&db).pop() {
        Some((_, SectorEvent::Import(import))) => {
            assert!(import.overwrite && import.worker_state == WorkerState::Offline)
        }
        other => panic!("expected an Import event, got {other:?}"),
    }
}

#[test]
fn list_filters_by_job_and_sorts_by_sector() {
    let (_db, sectors) = open();
    sectors.allocate(1000, 8, 12).expect("allocate");
    sectors.update(sid(10), vec![SectorUpdate::Upgraded(true)]).expect("update");
    sectors.update(sid(2), vec![SectorUpdate::NeedRebuild(true)]).expect("update");
    let numbers = |job| -> Vec<u64> {
        sectors.list(WorkerState::Online, job).expect("list").iter().map(|s| s.id.number).collect()
    };
    assert_eq!(numbers(JobFilter::All), (1..=12).collect::<Vec<_>>(), "numeric, not lexicographic, order");
    assert_eq!(numbers(JobFilter::SnapUp), vec![10]);
    assert_eq!(numbers(JobFilter::Rebuild), vec![2]);
    assert_eq!(numbers(JobFilter::Sealing).len(), 10);
    assert!(numbers(JobFilter::Unseal).is_empty());
}

#[test]
fn a_corrupt_record_is_reported_with_its_key() {
    let (db, sectors) = open();
    raw(&db).put(b"online/m-1000-n-3", b"not json").expect("put");
    let err = sectors.find(WorkerState::Online, sid(3)).expect_err("corrupt");
    assert!(matches!(err, SectorError::Codec { .. }));
    assert!(err.to_string().contains("online/m-1000-n-3"), "{err}");
    raw(&db).put(b"next/1000", b"twelve").expect("put");
    let err = sectors.allocate(1000, 8, 1).expect_err("corrupt counter");
    assert!(err.to_string().contains("next/1000"), "{err}");
}

#[test]
fn concurrent_changes_keep_each_sectors_events_in_order() {
    let (db, sectors) = open();
    let sectors = Arc::new(sectors);
    sectors.allocate(1000, 8, 4).expect("allocate");
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let sectors = Arc::clone(&sectors);
            thread::spawn(move || {
                for i in 0..50u64 {
                    let id = sid(1 + t % 4);
                    sectors.update(id, vec![SectorUpdate::AbortReason(format!("{t}-{i}"))]).expect("update");
                }
            })
        })
        .collect();
    let allocator = {
        let sectors = Arc::clone(&sectors);
        thread::spawn(move || (0..20).for_each(|_| drop(sectors.allocate(1000, 8, 2).expect("allocate"))))
    };
    threads.into_iter().chain([allocator]).for_each(|t| t.join().expect("worker"));
    // Per sector, the events' states follow each thread's own order, and the last event is the stored state.
    for number in 1..=4 {
        let states: Vec<SectorState> = events(&db)
            .into_iter()
            .filter_map(|(_, e)| match e {
                SectorEvent::Update(u) if u.sector_id == sid(number) => Some(u.state),
                _ => None,
            })
            .collect();
        assert_eq!(states.len(), 100);
        for t in [number - 1, number + 3] {
            let order: Vec<u64> = states
                .iter()
                .filter_map(|s| s.abort_reason.strip_prefix(&format!("{t}-")).map(|i| i.parse().expect("index")))
                .collect();
            assert_eq!(order, (0..50).collect::<Vec<_>>(), "thread {t} on sector {number}");
        }
        assert_eq!(Some(states[99].clone()), sectors.find(WorkerState::Online, sid(number)).expect("find"));
    }
    let allocated: usize = events(&db)
        .into_iter()
        .filter_map(|(_, e)| match e {
            SectorEvent::Init(i) => Some(i.sectors.len()),
            _ => None,
        })
        .sum();
    assert_eq!(allocated, 44);
    assert_eq!(sectors.allocate(1000, 8, 1).expect("allocate")[0].id.number, 45);
}
