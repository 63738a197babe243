//! The KV conformance suite: every semantic promised by `manager_plugin::kv`, checked through the SDK traits only,
//! so it runs unchanged against the built-in drivers (`manager/tests/kv_drivers.rs`) and against KVStore plugins
//! (`plugin test`). Each check returns why it failed instead of panicking.
//!
//! Each check opens its own collections with names unique to the run, so the suite can share a database (a Redis
//! server, say) with other runs. The caller opens the database and calls `Db::run` first; the suite never closes
//! it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use manager_plugin::kv::{Db, Entry, KvError, KvStore, Meta, Txn};

mod concurrency;

pub use concurrency::{
    concurrent_updates_lose_no_increment, update_conflicts_when_a_key_it_read_changed, view_sees_a_consistent_state,
};

use super::{Context as _, Outcome, check, ensure, ensure_eq};
use crate::plugins::registry::PluginRecord;

/// One check of the suite.
pub type Check = fn(&dyn Db) -> Result<(), String>;

/// Every check, by behaviour name, in the order they run.
pub const CHECKS: &[(&str, Check)] = &[
    ("missing-key", missing_keys_are_not_found),
    ("delete-missing", deleting_a_missing_key_succeeds),
    ("put-get-peek-round-trip", put_get_and_peek_round_trip),
    ("put-overwrites", put_overwrites),
    ("ordered-scans-with-prefixes", scan_yields_keys_with_the_prefix_in_byte_order),
    ("scan-with-empty-prefix", scan_with_an_empty_prefix_yields_every_key),
    ("scan-after-a-key", scan_after_yields_the_later_keys_of_the_prefix),
    ("iterator-pages-through-many-keys", scan_pages_through_many_keys),
    ("collections-isolated", collections_are_isolated),
    ("atomic-update-commits", update_commits_every_write_when_the_closure_succeeds),
    ("atomic-update-rolls-back", update_rolls_back_every_write_when_the_closure_fails),
    ("txn-reads-own-writes", txn_reads_its_own_writes_and_deletes),
    ("view-is-consistent", view_sees_a_consistent_state),
    ("conflict-reporting", update_conflicts_when_a_key_it_read_changed),
    ("concurrent-updates-lose-nothing", concurrent_updates_lose_no_increment),
    ("reopened-collection-sees-its-data", reopened_collection_sees_its_data),
];

/// Runs every check against `db` (already running), one outcome per behaviour.
pub fn run_all(db: &dyn Db) -> Vec<Outcome> {
    CHECKS.iter().map(|(behaviour, f)| check(behaviour, || f(db))).collect()
}

/// `plugin test` of a KVStore plugin: its constructor with `meta` (`plugin test --meta`; empty by default, with
/// `$SCRATCH` in a value replaced by a directory inside `scratch`), `Db::run`, the suite, `Db::close`.
pub(super) fn run(record: &PluginRecord, scratch: &Path, meta: &Meta) -> Vec<Outcome> {
    let dir = scratch.join("kv").display().to_string();
    let meta: Meta = meta.iter().map(|(k, v)| (k.clone(), v.replace("$SCRATCH", &dir))).collect();
    let mut db = None;
    let mut outcomes = vec![check("open-and-run", || {
        let opened = record.open_db(&meta).ctx("the constructor")?;
        opened.run().ctx("Db::run")?;
        db = Some(opened);
        Ok(())
    })];
    if let Some(db) = db {
        outcomes.extend(run_all(db.as_ref()));
        outcomes.push(check("close", || db.close().ctx("Db::close")));
    }
    outcomes
}

/// A collection name unique to this process, time and call, so runs sharing a database never meet.
pub fn unique_name(check: &str) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    format!("conformance-{check}-{}-{nanos:x}-{seq}", std::process::id())
}

fn open(db: &dyn Db, check: &str) -> Result<Box<dyn KvStore>, String> {
    let name = unique_name(check);
    db.open_collection(&name).ctx(&format!("open collection {name:?}"))
}

/// Every entry a scan of `prefix` yields, in order.
pub fn scan_all(store: &dyn KvStore, prefix: &[u8]) -> Result<Vec<Entry>, KvError> {
    let mut iter = store.scan(prefix)?;
    let mut entries = Vec::new();
    while let Some(entry) = iter.next_entry()? {
        entries.push(entry);
    }
    Ok(entries)
}

fn scan(store: &dyn KvStore, prefix: &[u8]) -> Result<Vec<Entry>, String> {
    scan_all(store, prefix).ctx(&format!("scan of prefix {:?}", esc(prefix)))
}

/// Bytes as failure messages show them, `b"a\xff"`: ASCII as is, other bytes escaped.
#[derive(PartialEq, Eq)]
struct Shown(String);

impl std::fmt::Debug for Shown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "b\"{}\"", self.0)
    }
}

fn esc(bytes: &[u8]) -> Shown {
    Shown(bytes.escape_ascii().to_string())
}

/// A get's result as failure messages show it.
fn text(result: Result<Vec<u8>, KvError>) -> Result<Shown, KvError> {
    result.map(|value| esc(&value))
}

fn keys(entries: &[Entry]) -> Vec<Shown> {
    entries.iter().map(|(key, _)| esc(key)).collect()
}

fn entries(entries: &[Entry]) -> Vec<(Shown, Shown)> {
    entries.iter().map(|(key, value)| (esc(key), esc(value))).collect()
}

/// Runs a check inside a transaction closure: its failure aborts the transaction with the reason.
fn in_txn(f: impl FnOnce() -> Result<(), String>) -> Result<(), KvError> {
    f().map_err(KvError::Aborted)
}

fn peek_value(store: &dyn KvStore, key: &[u8]) -> Result<Vec<u8>, KvError> {
    let mut seen = None;
    store.peek(key, &mut |value| seen = Some(value.to_vec()))?;
    seen.ok_or_else(|| KvError::Aborted("peek returned Ok without calling the closure".into()))
}

fn txn_peek_value(txn: &dyn Txn, key: &[u8]) -> Result<Vec<u8>, KvError> {
    let mut seen = None;
    txn.peek(key, &mut |value| seen = Some(value.to_vec()))?;
    seen.ok_or_else(|| KvError::Aborted("Txn::peek returned Ok without calling the closure".into()))
}

/// A missing key is `KeyNotFound` everywhere: get, peek, and both inside view and update.
pub fn missing_keys_are_not_found(db: &dyn Db) -> Result<(), String> {
    let store = open(db, "missing")?;
    ensure_eq!(store.get(b"absent"), Err(KvError::KeyNotFound), "get of a missing key");
    ensure_eq!(peek_value(&*store, b"absent"), Err(KvError::KeyNotFound), "peek of a missing key");
    let check = &mut |txn: &dyn Txn| {
        in_txn(|| {
            ensure_eq!(txn.get(b"absent"), Err(KvError::KeyNotFound), "Txn::get of a missing key");
            ensure_eq!(txn_peek_value(txn, b"absent"), Err(KvError::KeyNotFound), "Txn::peek of a missing key");
            ensure_eq!(txn.scan(b"absent"), Ok(Vec::new()), "Txn::scan of a missing prefix");
            Ok(())
        })
    };
    store.view(check).ctx("view")?;
    store.update(check).ctx("update")?;
    ensure!(scan(&*store, b"")?.is_empty(), "a new collection is not empty");
    Ok(())
}

/// Deleting an absent key succeeds, directly and in a transaction.
pub fn deleting_a_missing_key_succeeds(db: &dyn Db) -> Result<(), String> {
    let store = open(db, "del-missing")?;
    store.del(b"absent").ctx("del of a missing key")?;
    store.update(&mut |txn| txn.del(b"absent-too")).ctx("Txn::del of a missing key")?;
    store.put(b"k", b"v").ctx("put")?;
    store.del(b"k").ctx("del")?;
    store.del(b"k").ctx("a second del of the same key")?;
    ensure_eq!(store.get(b"k"), Err(KvError::KeyNotFound), "get after del");
    Ok(())
}

/// What is put is what get and peek return, for binary keys and values (including an empty value).
pub fn put_get_and_peek_round_trip(db: &dyn Db) -> Result<(), String> {
    let store = open(db, "round-trip")?;
    let pairs: [(&[u8], &[u8]); 4] = [
        (b"plain", b"value"),
        (&[0x00, 0xff, 0x00], &[0xff, 0x00, 0x80]),
        (b"empty-value", b""),
        (&[0xff; 40], &[0x5a; 70_000]),
    ];
    for (key, value) in pairs {
        store.put(key, value).ctx(&format!("put {:?}", esc(key)))?;
    }
    // A read that fails is reported with its whole error (a panic's full text), not as a truncated `got Err(…)`.
    for (key, value) in pairs {
        let got = store.get(key).ctx(&format!("get {:?}", esc(key)))?;
        ensure_eq!(esc(&got), esc(value), "get {:?}", esc(key));
        let peeked = peek_value(&*store, key).ctx(&format!("peek {:?}", esc(key)))?;
        ensure_eq!(esc(&peeked), esc(value), "peek {:?}", esc(key));
    }
    store
        .view(&mut |txn| {
            in_txn(|| {
                for (key, value) in pairs {
                    let got = txn.get(key).ctx(&format!("Txn::get {:?}", esc(key)))?;
                    ensure_eq!(esc(&got), esc(value), "Txn::get {:?}", esc(key));
                    let peeked = txn_peek_value(txn, key).ctx(&format!("Txn::peek {:?}", esc(key)))?;
                    ensure_eq!(esc(&peeked), esc(value), "Txn::peek {:?}", esc(key));
                }
                Ok(())
            })
        })
        .ctx("view")
}

/// A second put replaces the value, directly and through a transaction.
pub fn put_overwrites(db: &dyn Db) -> Result<(), String> {
    let store = open(db, "overwrite")?;
    store.put(b"k", b"first").ctx("put")?;
    store.put(b"k", b"second, longer").ctx("put again")?;
    ensure_eq!(text(store.get(b"k")), Ok(esc(b"second, longer")), "get after an overwrite");
    store.update(&mut |txn| txn.put(b"k", b"3")).ctx("update")?;
    ensure_eq!(text(store.get(b"k")), Ok(esc(b"3")), "get after an overwrite in a transaction");
    ensure_eq!(scan(&*store, b"")?.len(), 1, "entries after overwrites (an overwrite adds no entry)");
    Ok(())
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

/// Puts every key of [`ORDER_KEYS`] (the `i`-th with value `v<i>`) into `store`; returns what it now holds.
fn put_order_keys(store: &dyn KvStore) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, String> {
    let mut model = BTreeMap::new();
    for (i, key) in ORDER_KEYS.iter().enumerate() {
        let value = format!("v{i}").into_bytes();
        store.put(key, &value).ctx(&format!("put {:?}", esc(key)))?;
        model.insert(key.to_vec(), value);
    }
    Ok(model)
}

/// `scan` (and `Txn::scan` in view and update) yields exactly the keys with the prefix, in ascending byte order.
pub fn scan_yields_keys_with_the_prefix_in_byte_order(db: &dyn Db) -> Result<(), String> {
    let store = open(db, "order")?;
    let model = put_order_keys(&*store)?;
    for prefix in ORDER_PREFIXES {
        let expected = expected_scan(&model, prefix);
        let seen = scan(&*store, prefix)?;
        ensure_eq!(keys(&seen), keys(&expected), "keys of a scan of prefix {:?}", esc(prefix));
        ensure_eq!(entries(&seen), entries(&expected), "entries of a scan of prefix {:?}", esc(prefix));
        let check = &mut |txn: &dyn Txn| {
            let seen = txn.scan(prefix)?;
            in_txn(|| {
                ensure_eq!(entries(&seen), entries(&expected), "Txn::scan of prefix {:?}", esc(prefix));
                Ok(())
            })
        };
        store.view(check).ctx("view")?;
        store.update(check).ctx("update")?;
    }
    Ok(())
}

/// Every entry `scan_after` yields, in order; `None` when the store cannot start a scan at a key.
fn scan_after(store: &dyn KvStore, prefix: &[u8], after: &[u8]) -> Result<Option<Vec<Entry>>, String> {
    let context = || format!("scan_after of prefix {:?} after {:?}", esc(prefix), esc(after));
    let Some(mut iter) = store.scan_after(prefix, after).ctx(&context())? else { return Ok(None) };
    let mut entries = Vec::new();
    while let Some(entry) = iter.next_entry().ctx(&context())? {
        entries.push(entry);
    }
    Ok(Some(entries))
}

/// `scan_after`, where the store offers it, yields exactly the keys with the prefix that sort after the key, in
/// ascending byte order (a key before the prefix starts at the prefix; one past it yields nothing).
pub fn scan_after_yields_the_later_keys_of_the_prefix(db: &dyn Db) -> Result<(), String> {
    let store = open(db, "scan-after")?;
    let model = put_order_keys(&*store)?;
    let extra: [&[u8]; 3] = [b"", &[0x01, 0x00], &[0xff, 0xff, 0xff, 0xff]];
    for prefix in ORDER_PREFIXES {
        for after in ORDER_KEYS.iter().copied().chain(ORDER_PREFIXES).chain(extra) {
            let Some(seen) = scan_after(&*store, prefix, after)? else { return Ok(()) };
            let expected: Vec<Entry> =
                expected_scan(&model, prefix).into_iter().filter(|(key, _)| key.as_slice() > after).collect();
            ensure_eq!(
                entries(&seen),
                entries(&expected),
                "entries of scan_after of prefix {:?} after {:?}",
                esc(prefix),
                esc(after)
            );
        }
    }
    Ok(())
}

/// An empty prefix yields every key of the collection.
pub fn scan_with_an_empty_prefix_yields_every_key(db: &dyn Db) -> Result<(), String> {
    let store = open(db, "empty-prefix")?;
    let all: Vec<Vec<u8>> = vec![vec![0x00], b"m".to_vec(), vec![0xff, 0xff, 0xff]];
    for key in all.iter().rev() {
        store.put(key, b"x").ctx(&format!("put {:?}", esc(key)))?;
    }
    ensure_eq!(
        keys(&scan(&*store, b"")?),
        all.iter().map(|k| esc(k)).collect::<Vec<_>>(),
        "keys of a scan with an empty prefix"
    );
    Ok(())
}

/// A scan longer than any sensible page yields every key once, in order.
pub fn scan_pages_through_many_keys(db: &dyn Db) -> Result<(), String> {
    let store = open(db, "many")?;
    let expected: Vec<Vec<u8>> = (0u32..1300).map(|i| format!("key-{i:05}").into_bytes()).collect();
    store
        .update(&mut |txn| {
            for key in expected.iter().rev() {
                txn.put(key, key)?;
            }
            Ok(())
        })
        .ctx("an update putting 1300 keys")?;
    store.put(b"other", b"not in the prefix").ctx("put")?;
    let entries = scan(&*store, b"key-")?;
    ensure_eq!(keys(&entries), expected.iter().map(|k| esc(k)).collect::<Vec<_>>(), "keys of a scan through 1300 keys");
    ensure!(entries.iter().all(|(key, value)| key == value), "a scan yielded values that do not follow their keys");
    ensure_eq!(scan(&*store, b"")?.len(), expected.len() + 1, "entries of a scan with an empty prefix");
    if let Some(after) = scan_after(&*store, b"key-", b"key-00100")? {
        let expected: Vec<Shown> = expected[101..].iter().map(|k| esc(k)).collect();
        ensure_eq!(keys(&after), expected, "keys of scan_after through 1199 keys");
    }
    Ok(())
}

/// The same key in two collections holds two values; scans and deletes stay inside their collection. The names
/// are prefixes of each other (with a `:`), to catch drivers that join names and keys carelessly.
pub fn collections_are_isolated(db: &dyn Db) -> Result<(), String> {
    let base = unique_name("isolated");
    let open_named = |name: &str| db.open_collection(name).ctx(&format!("open collection {name:?}"));
    let one = open_named(&base)?;
    let two = open_named(&format!("{base}:k"))?;
    one.put(b"k:x", b"in one").ctx("put")?;
    one.put(b"shared", b"one").ctx("put")?;
    two.put(b"x", b"in two").ctx("put")?;
    two.put(b"shared", b"two").ctx("put")?;
    ensure_eq!(text(one.get(b"shared")), Ok(esc(b"one")), "get of a key both collections hold");
    ensure_eq!(text(two.get(b"shared")), Ok(esc(b"two")), "get of a key both collections hold");
    ensure_eq!(one.get(b"x"), Err(KvError::KeyNotFound), "get of a key only the other collection holds");
    ensure_eq!(two.get(b"k:x"), Err(KvError::KeyNotFound), "get of a key only the other collection holds");
    ensure_eq!(keys(&scan(&*one, b"")?), [esc(b"k:x"), esc(b"shared")], "scan of one collection");
    ensure_eq!(keys(&scan(&*two, b"")?), [esc(b"shared"), esc(b"x")], "scan of the other collection");
    one.del(b"shared").ctx("del")?;
    ensure_eq!(text(two.get(b"shared")), Ok(esc(b"two")), "a delete in another collection");
    two.update(&mut |txn| txn.put(b"k:x", b"two's")).ctx("update")?;
    ensure_eq!(text(one.get(b"k:x")), Ok(esc(b"in one")), "a transaction in another collection");
    Ok(())
}

fn seed(store: &dyn KvStore) -> Result<(), String> {
    for (key, value) in [(&b"keep"[..], &b"0"[..]), (b"change", b"old"), (b"drop", b"doomed")] {
        store.put(key, value).ctx("put")?;
    }
    Ok(())
}

/// When the closure returns `Ok`, every put and delete lands.
pub fn update_commits_every_write_when_the_closure_succeeds(db: &dyn Db) -> Result<(), String> {
    let store = open(db, "commit")?;
    seed(&*store)?;
    store
        .update(&mut |txn| {
            txn.put(b"change", b"new")?;
            txn.put(b"added-1", b"1")?;
            txn.put(b"added-2", b"2")?;
            txn.del(b"drop")
        })
        .ctx("update")?;
    let expected: Vec<Entry> = [("added-1", "1"), ("added-2", "2"), ("change", "new"), ("keep", "0")]
        .iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect();
    ensure_eq!(entries(&scan(&*store, b"")?), entries(&expected), "the collection after a committed update");
    Ok(())
}

/// When the closure returns `Err`, the error comes back unchanged and none of the writes land.
pub fn update_rolls_back_every_write_when_the_closure_fails(db: &dyn Db) -> Result<(), String> {
    let store = open(db, "rollback")?;
    seed(&*store)?;
    let before = scan(&*store, b"")?;
    let result = store.update(&mut |txn| {
        txn.put(b"change", b"new")?;
        txn.put(b"added", b"1")?;
        txn.del(b"drop")?;
        txn.del(b"keep")?;
        let own = txn.get(b"added");
        in_txn(|| {
            ensure_eq!(text(own), Ok(esc(b"1")), "Txn::get of the transaction's own put");
            Ok(())
        })?;
        Err(KvError::Aborted("the closure gave up".to_string()))
    });
    ensure_eq!(result, Err(KvError::Aborted("the closure gave up".to_string())), "an update whose closure failed");
    ensure_eq!(entries(&scan(&*store, b"")?), entries(&before), "the collection after a failed update");
    let result = store.update(&mut |txn| {
        txn.put(b"added", b"1")?;
        txn.get(b"absent").map(drop)
    });
    ensure_eq!(result, Err(KvError::KeyNotFound), "a Txn error returned by the closure");
    ensure_eq!(store.get(b"added"), Err(KvError::KeyNotFound), "a put of a failed update");
    Ok(())
}

/// Inside a transaction, get, peek and scan see the transaction's own puts and deletes.
pub fn txn_reads_its_own_writes_and_deletes(db: &dyn Db) -> Result<(), String> {
    let store = open(db, "own-writes")?;
    seed(&*store)?;
    store
        .update(&mut |txn| {
            txn.put(b"new", b"fresh")?;
            let (new, new_peeked) = (txn.get(b"new"), txn_peek_value(txn, b"new"));
            txn.put(b"change", b"changed")?;
            let changed = txn.get(b"change");
            txn.del(b"drop")?;
            let (dropped, dropped_peeked) = (txn.get(b"drop"), txn_peek_value(txn, b"drop"));
            txn.put(b"flicker", b"1")?;
            txn.del(b"flicker")?;
            let flickered = txn.get(b"flicker");
            txn.del(b"keep")?;
            txn.put(b"keep", b"back")?;
            let (all, ke) = (txn.scan(b"")?, txn.scan(b"ke")?);
            in_txn(|| {
                ensure_eq!(text(new), Ok(esc(b"fresh")), "Txn::get of its own put");
                ensure_eq!(text(new_peeked), Ok(esc(b"fresh")), "Txn::peek of its own put");
                ensure_eq!(text(changed), Ok(esc(b"changed")), "Txn::get of its own overwrite");
                ensure_eq!(dropped, Err(KvError::KeyNotFound), "Txn::get of its own delete");
                ensure_eq!(dropped_peeked, Err(KvError::KeyNotFound), "Txn::peek of its own delete");
                ensure_eq!(flickered, Err(KvError::KeyNotFound), "Txn::get after its own put and delete");
                ensure_eq!(
                    keys(&all),
                    [esc(b"change"), esc(b"keep"), esc(b"new")],
                    "Txn::scan merging the transaction's writes in byte order"
                );
                let expected = entries(&[(b"keep".to_vec(), b"back".to_vec())]);
                ensure_eq!(entries(&ke), expected, "Txn::scan of prefix \"ke\"");
                Ok(())
            })
        })
        .ctx("update")?;
    ensure_eq!(text(store.get(b"keep")), Ok(esc(b"back")), "get after the update");
    ensure_eq!(store.get(b"flicker"), Err(KvError::KeyNotFound), "get after the update");
    Ok(())
}

/// A collection opened again (while another handle is alive, and after it is dropped) sees the data.
pub fn reopened_collection_sees_its_data(db: &dyn Db) -> Result<(), String> {
    let name = unique_name("reopen");
    let first = db.open_collection(&name).ctx("open")?;
    first.put(b"k", b"v").ctx("put")?;
    let second = db.open_collection(&name).ctx("open again")?;
    ensure_eq!(text(second.get(b"k")), Ok(esc(b"v")), "get through a second handle");
    second.put(b"k2", b"v2").ctx("put through the second handle")?;
    ensure_eq!(text(first.get(b"k2")), Ok(esc(b"v2")), "get through the first handle");
    drop((first, second));
    let third = db.open_collection(&name).ctx("open a third time")?;
    ensure_eq!(keys(&scan(&*third, b"")?), [esc(b"k"), esc(b"k2")], "scan after reopening");
    Ok(())
}
