//! The KV conformance suite for tests: `manager::plugins::selftest::kv` (the one suite `plugin test` also runs),
//! with every failing behaviour turned into a test failure.

use manager_plugin::kv::{Db, Entry, KvStore};

/// Runs every check against `db` (already running); panics listing each failed behaviour.
pub fn run_all(db: &dyn Db) {
    let failures: Vec<String> =
        manager::plugins::selftest::kv::run_all(db).iter().filter(|o| !o.passed).map(|o| o.line()).collect();
    assert!(failures.is_empty(), "KV conformance failures:\n{}", failures.join("\n"));
}

/// Every entry a scan of `prefix` yields, in order.
pub fn scan_all(store: &dyn KvStore, prefix: &[u8]) -> Vec<Entry> {
    manager::plugins::selftest::kv::scan_all(store, prefix).expect("scan")
}
