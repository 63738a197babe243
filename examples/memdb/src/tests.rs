//! Unit tests of the in-memory store.

use std::sync::Barrier;
use std::time::Duration;

use super::*;

fn collection(name: &str) -> (MemDb, Box<dyn KvStore>) {
    let db = open(&Meta::new()).unwrap();
    db.run().unwrap();
    let c = db.open_collection(name).unwrap();
    (db, c)
}

fn keys(entries: &[Entry]) -> Vec<&[u8]> {
    entries.iter().map(|(k, _)| k.as_slice()).collect()
}

fn drain(mut it: Box<dyn KvIter>) -> Vec<Entry> {
    let mut out = Vec::new();
    while let Some(e) = it.next_entry().unwrap() {
        out.push(e);
    }
    out
}

#[test]
fn a_missing_key_is_key_not_found_and_deleting_it_succeeds() {
    let (_db, c) = collection("c");
    assert_eq!(c.get(b"nope"), Err(KvError::KeyNotFound));
    assert_eq!(c.peek(b"nope", &mut |_| panic!("called")), Err(KvError::KeyNotFound));
    assert_eq!(c.del(b"nope"), Ok(()));
}

#[test]
fn put_get_peek_and_del_round_trip() {
    let (_db, c) = collection("c");
    c.put(b"k", b"v1").unwrap();
    c.put(b"k", b"v2").unwrap();
    assert_eq!(c.get(b"k").unwrap(), b"v2");
    let mut seen = Vec::new();
    c.peek(b"k", &mut |v| seen = v.to_vec()).unwrap();
    assert_eq!(seen, b"v2");
    c.del(b"k").unwrap();
    assert_eq!(c.get(b"k"), Err(KvError::KeyNotFound));
}

#[test]
fn opening_a_collection_twice_shares_its_data_but_names_are_separate() {
    let db = MemDb::new();
    let a1 = db.open_collection("a").unwrap();
    let a2 = db.open_collection("a").unwrap();
    let b = db.open_collection("b").unwrap();
    a1.put(b"k", b"v").unwrap();
    assert_eq!(a2.get(b"k").unwrap(), b"v");
    assert_eq!(b.get(b"k"), Err(KvError::KeyNotFound));
}

#[test]
fn scan_yields_keys_with_the_prefix_in_ascending_byte_order() {
    let (_db, c) = collection("c");
    for k in [&b"b2"[..], b"a", b"b10", b"b", b"c", b"b\xff", b"b1"] {
        c.put(k, k).unwrap();
    }
    let got = drain(c.scan(b"b").unwrap());
    assert_eq!(keys(&got), [&b"b"[..], b"b1", b"b10", b"b2", b"b\xff"]);
    assert!(got.iter().all(|(k, v)| k == v));
    assert!(drain(c.scan(b"d").unwrap()).is_empty());
}

#[test]
fn scan_with_an_empty_prefix_yields_every_key() {
    let (_db, c) = collection("c");
    for k in [&b"\xff\xff"[..], b"", b"m", b"\x00"] {
        c.put(k, b"v").unwrap();
    }
    assert_eq!(keys(&drain(c.scan(b"").unwrap())), [&b""[..], b"\x00", b"m", b"\xff\xff"]);
    assert_eq!(keys(&drain(c.scan(b"\xff").unwrap())), [&b"\xff\xff"[..]]);
}

#[test]
fn a_scan_iterator_does_not_see_writes_made_after_it_was_created() {
    let (_db, c) = collection("c");
    c.put(b"a", b"1").unwrap();
    let it = c.scan(b"").unwrap();
    c.put(b"b", b"2").unwrap();
    assert_eq!(keys(&drain(it)), [&b"a"[..]]);
}

#[test]
fn update_commits_all_its_writes_when_the_closure_returns_ok() {
    let (_db, c) = collection("c");
    c.put(b"gone", b"x").unwrap();
    c.update(&mut |txn: &dyn Txn| {
        txn.put(b"a", b"1")?;
        txn.put(b"b", b"2")?;
        txn.del(b"gone")
    })
    .unwrap();
    assert_eq!(c.get(b"a").unwrap(), b"1");
    assert_eq!(c.get(b"b").unwrap(), b"2");
    assert_eq!(c.get(b"gone"), Err(KvError::KeyNotFound));
}

#[test]
fn update_applies_nothing_and_returns_the_closures_error_when_it_fails() {
    let (_db, c) = collection("c");
    c.put(b"keep", b"old").unwrap();
    let err = c.update(&mut |txn: &dyn Txn| {
        txn.put(b"keep", b"new")?;
        txn.put(b"added", b"1")?;
        txn.del(b"keep")?;
        Err(KvError::Aborted("changed my mind".into()))
    });
    assert_eq!(err, Err(KvError::Aborted("changed my mind".into())));
    assert_eq!(c.get(b"keep").unwrap(), b"old");
    assert_eq!(c.get(b"added"), Err(KvError::KeyNotFound));
}

#[test]
fn update_writes_are_invisible_to_other_readers_until_commit() {
    let (_db, c) = collection("c");
    c.update(&mut |txn: &dyn Txn| {
        txn.put(b"k", b"v")?;
        assert_eq!(c.get(b"k"), Err(KvError::KeyNotFound), "uncommitted write leaked");
        Ok(())
    })
    .unwrap();
    assert_eq!(c.get(b"k").unwrap(), b"v");
}

#[test]
fn reads_inside_update_see_the_transactions_own_writes() {
    let (_db, c) = collection("c");
    c.put(b"p1", b"base").unwrap();
    c.update(&mut |txn: &dyn Txn| {
        assert_eq!(txn.get(b"p1")?, b"base");
        txn.put(b"p1", b"mine")?;
        txn.put(b"p0", b"new")?;
        assert_eq!(txn.get(b"p1")?, b"mine");
        let mut peeked = Vec::new();
        txn.peek(b"p0", &mut |v| peeked = v.to_vec())?;
        assert_eq!(peeked, b"new");
        assert_eq!(keys(&txn.scan(b"p")?), [&b"p0"[..], b"p1"]);
        assert_eq!(txn.scan(b"p")?[1].1, b"mine");
        Ok(())
    })
    .unwrap();
}

#[test]
fn a_delete_inside_update_hides_the_key_from_the_transaction_and_a_later_put_revives_it() {
    let (_db, c) = collection("c");
    c.put(b"k1", b"v").unwrap();
    c.put(b"k2", b"v").unwrap();
    c.update(&mut |txn: &dyn Txn| {
        txn.del(b"k1")?;
        assert_eq!(txn.get(b"k1"), Err(KvError::KeyNotFound));
        assert_eq!(keys(&txn.scan(b"k")?), [&b"k2"[..]]);
        txn.del(b"never-there")?;
        txn.put(b"k1", b"again")?;
        assert_eq!(txn.get(b"k1")?, b"again");
        txn.del(b"k2")
    })
    .unwrap();
    assert_eq!(c.get(b"k1").unwrap(), b"again");
    assert_eq!(c.get(b"k2"), Err(KvError::KeyNotFound));
}

#[test]
fn view_reads_and_refuses_writes() {
    let (_db, c) = collection("c");
    c.put(b"a", b"1").unwrap();
    c.view(&mut |txn: &dyn Txn| {
        assert_eq!(txn.get(b"a")?, b"1");
        assert_eq!(keys(&txn.scan(b"")?), [&b"a"[..]]);
        let err = txn.put(b"b", b"2").unwrap_err();
        assert!(err.to_string().contains("read-only transaction"), "{err}");
        assert!(txn.del(b"a").is_err());
        Ok(())
    })
    .unwrap();
    assert_eq!(c.get(b"b"), Err(KvError::KeyNotFound));
}

#[test]
fn a_view_sees_no_commit_that_happens_while_it_runs() {
    let db = MemDb::new();
    let c = db.open_collection("c").unwrap();
    c.put(b"n", b"0").unwrap();
    let writer = db.open_collection("c").unwrap();
    let started = Barrier::new(2);
    thread::scope(|s| {
        let c = &c;
        let started = &started;
        s.spawn(move || {
            c.view(&mut |txn: &dyn Txn| {
                started.wait();
                let first = txn.get(b"n")?;
                thread::sleep(Duration::from_millis(50));
                assert_eq!(txn.get(b"n")?, first, "view saw a commit");
                Ok(())
            })
            .unwrap();
        });
        started.wait();
        writer.put(b"n", b"1").unwrap();
    });
    assert_eq!(c.get(b"n").unwrap(), b"1");
}

#[test]
fn concurrent_read_modify_write_updates_lose_no_increment() {
    let db = MemDb::new();
    let c = db.open_collection("c").unwrap();
    c.put(b"n", b"0").unwrap();
    thread::scope(|s| {
        for _ in 0..4 {
            let c = &c;
            s.spawn(move || {
                for _ in 0..100 {
                    c.update(&mut |txn: &dyn Txn| {
                        let n: u32 = String::from_utf8(txn.get(b"n")?).unwrap().parse().unwrap();
                        thread::yield_now();
                        txn.put(b"n", (n + 1).to_string().as_bytes())
                    })
                    .unwrap();
                }
            });
        }
    });
    assert_eq!(c.get(b"n").unwrap(), b"400");
}

#[test]
fn a_nested_write_on_the_same_collection_is_an_error_not_a_deadlock() {
    let (_db, c) = collection("c");
    let mut inner = None;
    c.update(&mut |_txn: &dyn Txn| {
        inner = Some(c.put(b"k", b"v"));
        Ok(())
    })
    .unwrap();
    let err = inner.unwrap().unwrap_err();
    assert!(err.to_string().contains("nested write on collection \"c\""), "{err}");
    // The writer turn was given back.
    c.put(b"k", b"v").unwrap();
}

#[test]
fn close_makes_every_later_call_fail_with_closed() {
    let (db, c) = collection("c");
    c.put(b"k", b"v").unwrap();
    let mut it = c.scan(b"").unwrap();
    db.close().unwrap();
    assert_eq!(c.get(b"k"), Err(KvError::Closed));
    assert_eq!(c.put(b"k", b"v"), Err(KvError::Closed));
    assert_eq!(c.del(b"k"), Err(KvError::Closed));
    assert!(matches!(c.scan(b""), Err(KvError::Closed)));
    assert_eq!(it.next_entry(), Err(KvError::Closed));
    assert_eq!(c.view(&mut |_: &dyn Txn| Ok(())), Err(KvError::Closed));
    assert_eq!(c.update(&mut |_: &dyn Txn| Ok(())), Err(KvError::Closed));
    assert!(matches!(db.open_collection("c"), Err(KvError::Closed)));
    assert_eq!(db.run(), Err(KvError::Closed));
}

#[test]
fn an_update_whose_database_closes_meanwhile_commits_nothing() {
    let (db, c) = collection("c");
    let data = Arc::clone(&lock(&db.collections)["c"]);
    let err = c.update(&mut |txn: &dyn Txn| {
        txn.put(b"k", b"v")?;
        db.close()
    });
    assert_eq!(err, Err(KvError::Closed));
    assert!(data.map.read().unwrap().is_empty());
}

#[test]
fn the_manifest_names_open_as_the_kvstore_constructor() {
    let m = manager_plugin::Manifest::parse(include_str!("../manifest.toml"), "manifest.toml").unwrap();
    assert_eq!((m.name.as_str(), m.kind), ("memdb", manager_plugin::Kind::KvStore));
    let constructor = m.export_for(manager_plugin::manifest::ExtPoint::Constructor).unwrap();
    assert_eq!(constructor.impl_path, "open");
}

#[test]
fn open_fits_the_generated_constructor_glue() {
    let db = manager_plugin::glue::kv_constructor(|| open(&Meta::new())).unwrap();
    let c = db.open_collection("c").unwrap();
    c.put(b"k", b"v").unwrap();
    assert_eq!(c.get(b"k").unwrap(), b"v");
}

#[test]
fn open_refuses_settings_and_names_them() {
    let meta = Meta::from([("Path".to_string(), "/tmp/x".to_string())]);
    let err = open(&meta).err().unwrap();
    assert!(err.to_string().contains("\"Path\""), "{err}");
}
