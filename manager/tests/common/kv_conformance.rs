//! The KV conformance suite: every semantic promised by `manager_plugin::kv`, checked through the SDK traits only,
//! so it runs unchanged against the built-in drivers and against KVStore plugins loaded from a `.so`.
//!
//! Each check opens its own collections with names unique to the run, so the suite can share a database (a Redis
//! server, say) with other runs. The caller opens the database and calls `Db::run` first; the suite never closes
//! it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use manager_plugin::kv::{Db, Entry, KvError, KvStore, Txn, update_with_retry};

/// Runs every check against `db` (already running).
pub fn run_all(db: &dyn Db) {
    missing_keys_are_not_found(db);
    deleting_a_missing_key_succeeds(db);
    put_get_and_peek_round_trip(db);
    put_overwrites(db);
    scan_yields_keys_with_the_prefix_in_byte_order(db);
    scan_with_an_empty_prefix_yields_every_key(db);
    scan_pages_through_many_keys(db);
    collections_are_isolated(db);
    update_commits_every_write_when_the_closure_succeeds(db);
    update_rolls_back_every_write_when_the_closure_fails(db);
    txn_reads_its_own_writes_and_deletes(db);
    view_sees_a_consistent_state(db);
    update_conflicts_when_a_key_it_read_changed(db);
    concurrent_updates_lose_no_increment(db);
    reopened_collection_sees_its_data(db);
}

/// A collection name unique to this process, time and call, so runs sharing a database never meet.
pub fn unique_name(check: &str) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    format!("conformance-{check}-{}-{nanos:x}-{seq}", std::process::id())
}

fn open(db: &dyn Db, check: &str) -> Box<dyn KvStore> {
    let name = unique_name(check);
    db.open_collection(&name).unwrap_or_else(|err| panic!("open collection {name:?}: {err}"))
}

/// Every entry a scan of `prefix` yields, in order.
pub fn scan_all(store: &dyn KvStore, prefix: &[u8]) -> Vec<Entry> {
    let mut iter = store.scan(prefix).expect("scan");
    let mut entries = Vec::new();
    while let Some(entry) = iter.next_entry().expect("next_entry") {
        entries.push(entry);
    }
    entries
}

fn keys(entries: &[Entry]) -> Vec<Vec<u8>> {
    entries.iter().map(|(key, _)| key.clone()).collect()
}

fn peek_value(store: &dyn KvStore, key: &[u8]) -> Result<Vec<u8>, KvError> {
    let mut seen = None;
    store.peek(key, &mut |value| seen = Some(value.to_vec()))?;
    Ok(seen.expect("peek returned Ok without calling the closure"))
}

fn txn_peek_value(txn: &dyn Txn, key: &[u8]) -> Result<Vec<u8>, KvError> {
    let mut seen = None;
    txn.peek(key, &mut |value| seen = Some(value.to_vec()))?;
    Ok(seen.expect("Txn::peek returned Ok without calling the closure"))
}

/// A missing key is `KeyNotFound` everywhere: get, peek, and both inside view and update.
pub fn missing_keys_are_not_found(db: &dyn Db) {
    let store = open(db, "missing");
    assert_eq!(store.get(b"absent"), Err(KvError::KeyNotFound));
    assert_eq!(peek_value(&*store, b"absent"), Err(KvError::KeyNotFound));
    let check = &mut |txn: &dyn Txn| {
        assert_eq!(txn.get(b"absent"), Err(KvError::KeyNotFound));
        assert_eq!(txn_peek_value(txn, b"absent"), Err(KvError::KeyNotFound));
        assert_eq!(txn.scan(b"absent"), Ok(Vec::new()));
        Ok(())
    };
    store.view(check).expect("view");
    store.update(check).expect("update");
    assert!(scan_all(&*store, b"").is_empty(), "a new collection is empty");
}

/// Deleting an absent key succeeds, directly and in a transaction.
pub fn deleting_a_missing_key_succeeds(db: &dyn Db) {
    let store = open(db, "del-missing");
    store.del(b"absent").expect("del of a missing key");
    store.update(&mut |txn| txn.del(b"absent-too")).expect("Txn::del of a missing key");
    store.put(b"k", b"v").expect("put");
    store.del(b"k").expect("del");
    store.del(b"k").expect("second del");
    assert_eq!(store.get(b"k"), Err(KvError::KeyNotFound));
}

/// What is put is what get and peek return, for binary keys and values (including an empty value).
pub fn put_get_and_peek_round_trip(db: &dyn Db) {
    let store = open(db, "round-trip");
    let pairs: [(&[u8], &[u8]); 4] = [
        (b"plain", b"value"),
        (&[0x00, 0xff, 0x00], &[0xff, 0x00, 0x80]),
        (b"empty-value", b""),
        (&[0xff; 40], &[0x5a; 70_000]),
    ];
    for (key, value) in pairs {
        store.put(key, value).expect("put");
    }
    for (key, value) in pairs {
        assert_eq!(store.get(key).as_deref(), Ok(value), "get {key:x?}");
        assert_eq!(peek_value(&*store, key).as_deref(), Ok(value), "peek {key:x?}");
    }
    store
        .view(&mut |txn| {
            for (key, value) in pairs {
                assert_eq!(txn.get(key).as_deref(), Ok(value), "Txn::get {key:x?}");
                assert_eq!(txn_peek_value(txn, key).as_deref(), Ok(value), "Txn::peek {key:x?}");
            }
            Ok(())
        })
        .expect("view");
}

/// A second put replaces the value, directly and through a transaction.
pub fn put_overwrites(db: &dyn Db) {
    let store = open(db, "overwrite");
    store.put(b"k", b"first").expect("put");
    store.put(b"k", b"second, longer").expect("put again");
    assert_eq!(store.get(b"k").as_deref(), Ok(&b"second, longer"[..]));
    store.update(&mut |txn| txn.put(b"k", b"3")).expect("update");
    assert_eq!(store.get(b"k").as_deref(), Ok(&b"3"[..]));
    assert_eq!(scan_all(&*store, b"").len(), 1, "an overwrite adds no entry");
}

/// Keys chosen to trip byte-order mistakes: 0x00 and 0xff bytes, prefixes of each other, high bytes that sort
/// after ASCII, and a prefix (`01 ff`) whose end needs a carry (`02`).
const ORDER_KEYS: [&[u8]; 16] = [
    b"b",
    &[0xff, 0xff],
    b"a\xff",
    &[0x01, 0xff, 0xff],
    &[0x00],
    b"ab",
    &[0x02],
    &[0xff],
    b"a",
    &[0x01, 0xff],
    &[0x80],
    &[0x00, 0x00],
    b"a\x00",
    &[0xff, 0x00],
    &[0x01, 0xfe, 0xff],
    &[0x7f],
];

const ORDER_PREFIXES: [&[u8]; 8] = [b"", &[0x00], &[0x01, 0xff], &[0x01], b"a", &[0xff], &[0xff, 0xff], b"zz"];

fn expected_scan(model: &BTreeMap<Vec<u8>, Vec<u8>>, prefix: &[u8]) -> Vec<Entry> {
    model.iter().filter(|(key, _)| key.starts_with(prefix)).map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// `scan` (and `Txn::scan` in view and update) yields exactly the keys with the prefix, in ascending byte order.
pub fn scan_yields_keys_with_the_prefix_in_byte_order(db: &dyn Db) {
    let store = open(db, "order");
    let mut model = BTreeMap::new();
    for (i, key) in ORDER_KEYS.iter().enumerate() {
        let value = format!("v{i}").into_bytes();
        store.put(key, &value).expect("put");
        model.insert(key.to_vec(), value);
    }
    for prefix in ORDER_PREFIXES {
        let expected = expected_scan(&model, prefix);
        assert_eq!(keys(&scan_all(&*store, prefix)), keys(&expected), "scan order for prefix {prefix:x?}");
        assert_eq!(scan_all(&*store, prefix), expected, "scan entries for prefix {prefix:x?}");
        let check = &mut |txn: &dyn Txn| {
            assert_eq!(txn.scan(prefix)?, expected, "Txn::scan for prefix {prefix:x?}");
            Ok(())
        };
        store.view(check).expect("view");
        store.update(check).expect("update");
    }
}

/// An empty prefix yields every key of the collection.
pub fn scan_with_an_empty_prefix_yields_every_key(db: &dyn Db) {
    let store = open(db, "empty-prefix");
    let all: Vec<Vec<u8>> = vec![vec![0x00], b"m".to_vec(), vec![0xff, 0xff, 0xff]];
    for key in all.iter().rev() {
        store.put(key, b"x").expect("put");
    }
    assert_eq!(keys(&scan_all(&*store, b"")), all);
}

/// A scan longer than any sensible page yields every key once, in order.
pub fn scan_pages_through_many_keys(db: &dyn Db) {
    let store = open(db, "many");
    let expected: Vec<Vec<u8>> = (0u32..1300).map(|i| format!("key-{i:05}").into_bytes()).collect();
    store
        .update(&mut |txn| {
            for key in expected.iter().rev() {
                txn.put(key, key)?;
            }
            Ok(())
        })
        .expect("bulk update");
    store.put(b"other", b"not in the prefix").expect("put");
    let entries = scan_all(&*store, b"key-");
    assert_eq!(keys(&entries), expected);
    assert!(entries.iter().all(|(key, value)| key == value), "values follow their keys");
    assert_eq!(scan_all(&*store, b"").len(), expected.len() + 1);
}

/// The same key in two collections holds two values; scans and deletes stay inside their collection. The names
/// are prefixes of each other (with a `:`), to catch drivers that join names and keys carelessly.
pub fn collections_are_isolated(db: &dyn Db) {
    let base = unique_name("isolated");
    let open_named = |name: &str| db.open_collection(name).unwrap_or_else(|err| panic!("open {name:?}: {err}"));
    let one = open_named(&base);
    let two = open_named(&format!("{base}:k"));
    one.put(b"k:x", b"in one").expect("put one");
    one.put(b"shared", b"one").expect("put one");
    two.put(b"x", b"in two").expect("put two");
    two.put(b"shared", b"two").expect("put two");
    assert_eq!(one.get(b"shared").as_deref(), Ok(&b"one"[..]));
    assert_eq!(two.get(b"shared").as_deref(), Ok(&b"two"[..]));
    assert_eq!(one.get(b"x"), Err(KvError::KeyNotFound));
    assert_eq!(two.get(b"k:x"), Err(KvError::KeyNotFound));
    assert_eq!(keys(&scan_all(&*one, b"")), vec![b"k:x".to_vec(), b"shared".to_vec()]);
    assert_eq!(keys(&scan_all(&*two, b"")), vec![b"shared".to_vec(), b"x".to_vec()]);
    one.del(b"shared").expect("del one");
    assert_eq!(two.get(b"shared").as_deref(), Ok(&b"two"[..]), "a delete stays in its collection");
    two.update(&mut |txn| txn.put(b"k:x", b"two's")).expect("update two");
    assert_eq!(one.get(b"k:x").as_deref(), Ok(&b"in one"[..]), "a transaction stays in its collection");
}

fn seed(store: &dyn KvStore) {
    for (key, value) in [(&b"keep"[..], &b"0"[..]), (b"change", b"old"), (b"drop", b"doomed")] {
        store.put(key, value).expect("seed");
    }
}

/// When the closure returns `Ok`, every put and delete lands.
pub fn update_commits_every_write_when_the_closure_succeeds(db: &dyn Db) {
    let store = open(db, "commit");
    seed(&*store);
    store
        .update(&mut |txn| {
            txn.put(b"change", b"new")?;
            txn.put(b"added-1", b"1")?;
            txn.put(b"added-2", b"2")?;
            txn.del(b"drop")
        })
        .expect("update");
    let expected: Vec<Entry> = [("added-1", "1"), ("added-2", "2"), ("change", "new"), ("keep", "0")]
        .iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect();
    assert_eq!(scan_all(&*store, b""), expected);
}

/// When the closure returns `Err`, the error comes back unchanged and none of the writes land.
pub fn update_rolls_back_every_write_when_the_closure_fails(db: &dyn Db) {
    let store = open(db, "rollback");
    seed(&*store);
    let before = scan_all(&*store, b"");
    let result = store.update(&mut |txn| {
        txn.put(b"change", b"new")?;
        txn.put(b"added", b"1")?;
        txn.del(b"drop")?;
        txn.del(b"keep")?;
        assert_eq!(txn.get(b"added").as_deref(), Ok(&b"1"[..]));
        Err(KvError::Aborted("the closure gave up".to_string()))
    });
    assert_eq!(result, Err(KvError::Aborted("the closure gave up".to_string())));
    assert_eq!(scan_all(&*store, b""), before, "a failed update changed the collection");
    let result = store.update(&mut |txn| {
        txn.put(b"added", b"1")?;
        txn.get(b"absent").map(drop)
    });
    assert_eq!(result, Err(KvError::KeyNotFound), "a Txn error returned by the closure comes back as is");
    assert_eq!(store.get(b"added"), Err(KvError::KeyNotFound));
}

/// Inside a transaction, get, peek and scan see the transaction's own puts and deletes.
pub fn txn_reads_its_own_writes_and_deletes(db: &dyn Db) {
    let store = open(db, "own-writes");
    seed(&*store);
    store
        .update(&mut |txn| {
            txn.put(b"new", b"fresh")?;
            assert_eq!(txn.get(b"new").as_deref(), Ok(&b"fresh"[..]));
            assert_eq!(txn_peek_value(txn, b"new").as_deref(), Ok(&b"fresh"[..]));
            txn.put(b"change", b"changed")?;
            assert_eq!(txn.get(b"change").as_deref(), Ok(&b"changed"[..]));
            txn.del(b"drop")?;
            assert_eq!(txn.get(b"drop"), Err(KvError::KeyNotFound));
            assert_eq!(txn_peek_value(txn, b"drop"), Err(KvError::KeyNotFound));
            txn.put(b"flicker", b"1")?;
            txn.del(b"flicker")?;
            assert_eq!(txn.get(b"flicker"), Err(KvError::KeyNotFound));
            txn.del(b"keep")?;
            txn.put(b"keep", b"back")?;
            let seen = keys(&txn.scan(b"")?);
            let expected: Vec<Vec<u8>> = ["change", "keep", "new"].iter().map(|k| k.as_bytes().to_vec()).collect();
            assert_eq!(seen, expected, "Txn::scan merges the transaction's writes in byte order");
            assert_eq!(txn.scan(b"ke")?, vec![(b"keep".to_vec(), b"back".to_vec())]);
            Ok(())
        })
        .expect("update");
    assert_eq!(store.get(b"keep").as_deref(), Ok(&b"back"[..]));
    assert_eq!(store.get(b"flicker"), Err(KvError::KeyNotFound));
}

const TOTAL: u64 = 1000;

fn read_u64(txn: &dyn Txn, key: &[u8]) -> Result<u64, KvError> {
    let bytes = txn.get(key)?;
    let array: [u8; 8] = bytes.as_slice().try_into().expect("an 8-byte counter");
    Ok(u64::from_be_bytes(array))
}

/// A view never sees half of an update: a writer moves units between two keys (their sum stays `TOTAL`) while a
/// reader checks the sum through get and through scan. A view that lost a race may report `Conflict`.
///
/// The closure reports a torn read as an error rather than panicking: an optimistic store without snapshots (Redis)
/// may run an attempt on torn reads, but must then discard that attempt, whatever the closure returned.
pub fn view_sees_a_consistent_state(db: &dyn Db) {
    let store = open(db, "consistent-view");
    store.put(b"a", &TOTAL.to_be_bytes()).expect("put a");
    store.put(b"b", &0u64.to_be_bytes()).expect("put b");
    let (moves, views_ok, views_conflicted) = (AtomicUsize::new(0), AtomicUsize::new(0), AtomicUsize::new(0));
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for i in 0..200u64 {
                update_with_retry(&*store, 1000, &mut |txn| {
                    let (a, b) = (read_u64(txn, b"a")?, read_u64(txn, b"b")?);
                    let step = (i % 7).min(a);
                    txn.put(b"a", &(a - step).to_be_bytes())?;
                    txn.put(b"b", &(b.saturating_add(step)).to_be_bytes())
                })
                .expect("move");
                moves.fetch_add(1, Ordering::Relaxed);
            }
        });
        while moves.load(Ordering::Relaxed) < 200 {
            let mut last_attempt = None;
            let result = store.view(&mut |txn| {
                let by_get = read_u64(txn, b"a")?.saturating_add(read_u64(txn, b"b")?);
                let by_scan =
                    txn.scan(b"")?.into_iter().map(|(_, v)| u64::from_be_bytes(v.try_into().unwrap_or([0; 8])));
                let sums = (by_get, by_scan.fold(0u64, u64::saturating_add));
                last_attempt = Some(sums);
                match sums {
                    (TOTAL, TOTAL) => Ok(()),
                    (by_get, by_scan) => {
                        Err(KvError::Aborted(format!("torn read: sums {by_get} (get), {by_scan} (scan)")))
                    }
                }
            });
            match result {
                Ok(()) => {
                    assert_eq!(last_attempt, Some((TOTAL, TOTAL)), "view returned Ok although its closure failed");
                    views_ok.fetch_add(1, Ordering::Relaxed);
                }
                Err(KvError::Conflict) => _ = views_conflicted.fetch_add(1, Ordering::Relaxed),
                Err(err) => panic!("view failed: {err}"),
            }
        }
    });
    let final_sum = store.view(&mut |txn| {
        assert_eq!(read_u64(txn, b"a")? + read_u64(txn, b"b")?, TOTAL, "view after the writer stopped");
        Ok(())
    });
    assert_eq!(final_sum, Ok(()), "an uncontended view failed");
    let (ok, conflicted) = (views_ok.load(Ordering::Relaxed), views_conflicted.load(Ordering::Relaxed));
    eprintln!("consistent view: while the writer ran, {ok} views succeeded and {conflicted} returned Conflict");
}

/// An update that read a key changed by someone else before it committed fails with `Conflict`, whether it wrote
/// that key (lost update) or only read it (write skew). Checked only for stores that ask for retries (optimistic
/// ones); a store that serialises updates cannot lose this race, and would deadlock on the write from inside.
pub fn update_conflicts_when_a_key_it_read_changed(db: &dyn Db) {
    let store = open(db, "conflict");
    if !store.need_retry_transactions() {
        return;
    }
    store.put(b"k", b"0").expect("put");
    let result = store.update(&mut |txn| {
        let value = txn.get(b"k")?;
        store.put(b"k", b"changed behind the transaction's back")?;
        txn.put(b"k", &[value, b"+1".to_vec()].concat())
    });
    assert_eq!(result, Err(KvError::Conflict), "lost update");
    assert_eq!(store.get(b"k").as_deref(), Ok(&b"changed behind the transaction's back"[..]));

    let result = store.update(&mut |txn| {
        let value = txn.get(b"k")?;
        store.put(b"k", b"changed again")?;
        txn.put(b"copy", &value)
    });
    assert_eq!(result, Err(KvError::Conflict), "write skew: a key only read changed before the commit");
    assert_eq!(store.get(b"copy"), Err(KvError::KeyNotFound), "a conflicting update wrote nothing");
}

/// 4 threads x 50 increments of one counter through `update_with_retry` end at exactly 200.
pub fn concurrent_updates_lose_no_increment(db: &dyn Db) {
    let store = open(db, "counter");
    let attempts = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..50 {
                    update_with_retry(&*store, 10_000, &mut |txn| {
                        attempts.fetch_add(1, Ordering::Relaxed);
                        let count = match read_u64(txn, b"counter") {
                            Err(KvError::KeyNotFound) => 0,
                            other => other?,
                        };
                        txn.put(b"counter", &(count + 1).to_be_bytes())
                    })
                    .expect("increment");
                }
            });
        }
    });
    let count = store.view(&mut |txn| {
        assert_eq!(read_u64(txn, b"counter"), Ok(200), "lost increments");
        Ok(())
    });
    count.expect("view");
    eprintln!("concurrent counter: 200 increments took {} attempts", attempts.load(Ordering::Relaxed));
}

/// A collection opened again (while another handle is alive, and after it is dropped) sees the data.
pub fn reopened_collection_sees_its_data(db: &dyn Db) {
    let name = unique_name("reopen");
    let first = db.open_collection(&name).expect("open");
    first.put(b"k", b"v").expect("put");
    let second = db.open_collection(&name).expect("open again");
    assert_eq!(second.get(b"k").as_deref(), Ok(&b"v"[..]));
    second.put(b"k2", b"v2").expect("put through the second handle");
    assert_eq!(first.get(b"k2").as_deref(), Ok(&b"v2"[..]));
    drop((first, second));
    let third = db.open_collection(&name).expect("open a third time");
    assert_eq!(keys(&scan_all(&*third, b"")), vec![b"k".to_vec(), b"k2".to_vec()]);
}
