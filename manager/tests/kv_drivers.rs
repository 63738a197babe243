//! The built-in KV drivers against the conformance suite, plus what the suite cannot check through the SPI alone:
//! persistence across close and reopen, `Closed` after close, and what opening RocksDB costs in memory.
//!
//! The Redis tests need a server at `DAMOCLES_TEST_REDIS` (default `redis://127.0.0.1:6379`); they fail, rather
//! than skip, when it is unreachable.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::kv_conformance::{self, scan_all};
use manager::kvstore::{RedisDb, RocksDb};
use manager_plugin::kv::{Db, KvError};

fn redis_addr() -> String {
    std::env::var("DAMOCLES_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

/// A namespace no other run uses, so tests can share the server; its keys are deleted when it drops (even when
/// the test fails), so runs leave the server as they found it.
struct Namespace(String);

impl Namespace {
    fn new() -> Self {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        Namespace(format!("damocles-test-{}-{nanos:x}", std::process::id()))
    }

    fn open(&self) -> RedisDb {
        let addr = redis_addr();
        RedisDb::open(&addr, &self.0).unwrap_or_else(|err| {
            panic!(
                "Redis is unreachable at {addr} ({err}). These tests need a real server: start one with \
                 `redis-server --daemonize yes` (CI starts it), or point DAMOCLES_TEST_REDIS at one."
            )
        })
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let Ok(mut conn) = redis::Client::open(redis_addr()).and_then(|client| client.get_connection()) else {
            return;
        };
        let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg(format!("{}:*", self.0)).query(&mut conn).unwrap_or_default();
        for chunk in keys.chunks(500) {
            let _ = redis::cmd("DEL").arg(chunk).exec(&mut conn);
        }
    }
}

#[test]
fn rocksdb_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = RocksDb::open(dir.path()).expect("open RocksDB");
    db.run().expect("run");
    kv_conformance::run_all(&db);
    db.close().expect("close");
}

#[test]
fn redis_passes_the_conformance_suite() {
    let namespace = Namespace::new();
    let db = namespace.open();
    db.run().expect("run");
    kv_conformance::run_all(&db);
    db.close().expect("close");
}

#[test]
fn rocksdb_data_survives_close_and_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let db = RocksDb::open(dir.path()).expect("open");
        db.run().expect("run");
        let sectors = db.open_collection("sectors").expect("open sectors");
        sectors.put(b"m-1000-n-1", b"{\"one\":1}").expect("put");
        sectors.put(b"m-1000-n-2", b"{\"two\":2}").expect("put");
        sectors.del(b"m-1000-n-2").expect("del");
        let outbox = db.open_collection("outbox").expect("open outbox");
        outbox.update(&mut |txn| txn.put(&[0x00, 0xff], b"event")).expect("update");
        db.close().expect("close");
    }
    let db = RocksDb::open(dir.path()).expect("reopen");
    db.run().expect("run");
    let sectors = db.open_collection("sectors").expect("reopen sectors");
    assert_eq!(scan_all(&*sectors, b""), vec![(b"m-1000-n-1".to_vec(), b"{\"one\":1}".to_vec())]);
    let outbox = db.open_collection("outbox").expect("reopen outbox");
    assert_eq!(outbox.get(&[0x00, 0xff]).as_deref(), Ok(&b"event"[..]));
    db.close().expect("close");
}

/// The process's anonymous resident memory, in KiB (`RssAnon` in `/proc/self/status`).
fn resident_anonymous_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status.lines().find(|l| l.starts_with("RssAnon:")).expect("RssAnon line");
    line.split_whitespace().nth(1).and_then(|kib| kib.parse().ok()).expect("RssAnon in KiB")
}

/// Opening the database costs little resident memory: RocksDB's default validation locks for optimistic
/// transactions (1 << 20 mutexes) are 40 MiB written at open, more than the rest of an idle daemon, and would put
/// the daemon over its memory target (`piece_put_peak_rss_mib` <= 64 in `docs/performance.md`).
#[test]
fn opening_rocksdb_costs_little_resident_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let before = resident_anonymous_kib();
    let db = RocksDb::open(dir.path()).expect("open");
    db.run().expect("run");
    let sectors = db.open_collection("sectors").expect("open sectors");
    sectors.put(b"m-1000-n-1", b"{}").expect("put");
    let grown = resident_anonymous_kib().saturating_sub(before);
    // Other tests of this binary run meanwhile; 16 MiB leaves them room and still catches the 40 MiB.
    assert!(grown < 16 * 1024, "opening RocksDB made {grown} KiB resident");
    db.close().expect("close");
}

#[test]
fn rocksdb_calls_after_close_fail_with_closed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = RocksDb::open(dir.path()).expect("open");
    let store = db.open_collection("c").expect("open collection");
    store.put(b"k", b"v").expect("put");
    let mut iter = store.scan(b"").expect("scan");
    db.close().expect("close");
    db.close().expect("a second close is a no-op");
    assert_eq!(store.get(b"k"), Err(KvError::Closed));
    assert_eq!(store.put(b"k", b"v"), Err(KvError::Closed));
    assert_eq!(store.update(&mut |_| Ok(())), Err(KvError::Closed));
    assert_eq!(iter.next_entry(), Err(KvError::Closed));
    assert!(matches!(db.open_collection("c"), Err(KvError::Closed)));
    // The files were released: the directory opens again in the same process.
    drop(store);
    RocksDb::open(dir.path()).expect("reopen after close");
}

#[test]
fn redis_calls_after_close_fail_with_closed() {
    let namespace = Namespace::new();
    let db = namespace.open();
    let store = db.open_collection("c").expect("open collection");
    store.put(b"k", b"v").expect("put");
    db.close().expect("close");
    assert_eq!(store.get(b"k"), Err(KvError::Closed));
    assert_eq!(store.update(&mut |_| Ok(())), Err(KvError::Closed));
    assert!(matches!(db.open_collection("c"), Err(KvError::Closed)));
    let db = namespace.open();
    let store = db.open_collection("c").expect("reopen collection");
    assert_eq!(store.get(b"k").as_deref(), Ok(&b"v"[..]), "the data outlives the connection");
}

#[test]
fn redis_open_fails_with_a_message_naming_the_address_when_nothing_listens() {
    let Err(err) = RedisDb::open("redis://127.0.0.1:1", "unused") else {
        panic!("opened a Redis database on port 1");
    };
    let message = err.to_string();
    assert!(message.contains("127.0.0.1:1") && message.contains("redis-server"), "unhelpful error: {message}");
}
