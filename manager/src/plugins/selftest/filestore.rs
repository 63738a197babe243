//! The FileStore conformance suite: what the manager relies on from a `manager_plugin::filestore::Store`, checked
//! on an instance rooted in the scratch directory.

use std::io::Read;
use std::path::Path;

use manager_plugin::filestore::{Store, StoreConfig, StoreError};

use super::{Context as _, Outcome, check, ensure, ensure_eq};
use crate::plugins::registry::PluginRecord;

/// One check of the suite: the writable instance, and the directory it is rooted in.
type Check = fn(&dyn Store, &OpenReadOnly<'_>) -> Result<(), String>;

/// Opens a read-only instance on the same root.
type OpenReadOnly<'a> = dyn Fn() -> Result<Box<dyn Store>, String> + 'a;

/// Every check, by behaviour name, in the order they run.
const CHECKS: &[(&str, Check)] = &[
    ("instance-info", instance_info_answers),
    ("put-stat-get-round-trip", put_stat_and_get_round_trip),
    ("not-found", missing_objects_are_not_found),
    ("atomic-put", a_failed_put_leaves_the_old_object_or_none),
    ("invalid-paths", invalid_paths_are_refused),
    ("read-only", a_read_only_instance_refuses_writes_and_serves_reads),
];

/// Paths that must be refused: they would escape the store or are ambiguous.
const INVALID_PATHS: [&str; 6] = ["", "/etc/passwd", "../x", "a/../../b", "a//b", "./a"];

/// `plugin test` of a FileStore plugin: an instance named `plugin-test` whose `Path` is `<scratch>/store`.
pub(super) fn run(record: &PluginRecord, scratch: &Path) -> Vec<Outcome> {
    let config = |read_only: bool| StoreConfig {
        name: "plugin-test".into(),
        path: scratch.join("store").display().to_string(),
        read_only,
        weight: 1,
        ..StoreConfig::default()
    };
    let mut store = None;
    let mut outcomes = vec![check("open", || {
        store = Some(record.open_store(config(false)).ctx("the constructor")?);
        Ok(())
    })];
    let Some(store) = store else { return outcomes };
    let open_read_only = || record.open_store(config(true)).ctx("the constructor with ReadOnly = true");
    outcomes.extend(CHECKS.iter().map(|(behaviour, f)| check(behaviour, || f(store.as_ref(), &open_read_only))));
    outcomes
}

fn read_all(store: &dyn Store, path: &str) -> Result<Vec<u8>, String> {
    let mut reader = store.get(path).ctx(&format!("get {path:?}"))?;
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).ctx(&format!("reading {path:?}"))?;
    Ok(bytes)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

/// `instance_info` answers, for the configured instance.
fn instance_info_answers(store: &dyn Store, _: &OpenReadOnly<'_>) -> Result<(), String> {
    let info = store.instance_info().ctx("instance_info")?;
    ensure_eq!(info.config.name, "plugin-test", "the name in instance_info's config");
    ensure_eq!(store.instance_config().name, "plugin-test", "the name in instance_config");
    Ok(())
}

/// What `put` stores, `stat` sizes and `get` returns, also nested and empty, and after an overwrite.
fn put_stat_and_get_round_trip(store: &dyn Store, _: &OpenReadOnly<'_>) -> Result<(), String> {
    for (path, bytes) in
        [("round-trip/a.car", pattern(300_000, 1)), ("round-trip/empty", Vec::new()), ("top-level", pattern(10, 2))]
    {
        let written = store.put(path, &mut bytes.as_slice()).ctx(&format!("put {path:?}"))?;
        ensure_eq!(written, bytes.len() as u64, "the size put {path:?} returned");
        ensure_eq!(store.stat(path).ctx(&format!("stat {path:?}"))?.size, bytes.len() as u64, "stat {path:?}");
        ensure!(read_all(store, path)? == bytes, "get {path:?} returned other bytes than were put");
    }
    let newer = pattern(1000, 3);
    store.put("round-trip/a.car", &mut newer.as_slice()).ctx("an overwriting put")?;
    ensure_eq!(store.stat("round-trip/a.car").ctx("stat")?.size, 1000, "stat after an overwrite");
    ensure!(read_all(store, "round-trip/a.car")? == newer, "get after an overwrite returned the old bytes");
    store.del("top-level").ctx("del")?;
    ensure!(matches!(store.stat("top-level"), Err(StoreError::NotFound(_))), "stat after del is not NotFound");
    Ok(())
}

/// `get`, `stat` and `del` of an object that does not exist answer `NotFound`.
fn missing_objects_are_not_found(store: &dyn Store, _: &OpenReadOnly<'_>) -> Result<(), String> {
    let path = "missing/object";
    ensure!(
        matches!(store.get(path), Err(StoreError::NotFound(_))),
        "get of a missing object: {}",
        err(store.get(path))
    );
    ensure!(
        matches!(store.stat(path), Err(StoreError::NotFound(_))),
        "stat of a missing object: {}",
        err(store.stat(path))
    );
    ensure!(
        matches!(store.del(path), Err(StoreError::NotFound(_))),
        "del of a missing object: {}",
        err(store.del(path))
    );
    Ok(())
}

fn err<T>(result: Result<T, StoreError>) -> String {
    match result {
        Ok(_) => "got Ok, expected NotFound".into(),
        Err(e) => format!("got {e:?}, expected NotFound"),
    }
}

/// A reader that yields `good` bytes, then fails: a client that disconnects mid-upload.
struct FailingReader {
    left: usize,
}

impl Read for FailingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Err(std::io::Error::other("the upload was cut off (plugin test)"));
        }
        let n = buf.len().min(self.left);
        buf[..n].fill(0xee);
        self.left -= n;
        Ok(n)
    }
}

/// A put whose reader fails is an error, and leaves the old object whole (or no object when there was none).
fn a_failed_put_leaves_the_old_object_or_none(store: &dyn Store, _: &OpenReadOnly<'_>) -> Result<(), String> {
    let old = pattern(5000, 4);
    store.put("atomic/existing", &mut old.as_slice()).ctx("put")?;
    let result = store.put("atomic/existing", &mut FailingReader { left: 70_000 });
    ensure!(result.is_err(), "a put whose reader failed answered {result:?}, not an error");
    ensure!(read_all(store, "atomic/existing")? == old, "a failed put over an object changed it (not atomic)");
    let result = store.put("atomic/new", &mut FailingReader { left: 70_000 });
    ensure!(result.is_err(), "a put whose reader failed answered {result:?}, not an error");
    let stat = store.stat("atomic/new");
    ensure!(
        matches!(stat, Err(StoreError::NotFound(_))),
        "a failed put of a new object left one behind: stat answered {stat:?}"
    );
    Ok(())
}

/// Every operation refuses paths that escape the store or are ambiguous, with `InvalidPath`.
fn invalid_paths_are_refused(store: &dyn Store, _: &OpenReadOnly<'_>) -> Result<(), String> {
    let invalid = |what: &str, path: &str, result: Result<(), StoreError>| match result {
        Err(StoreError::InvalidPath { .. }) => Ok(()),
        other => Err(format!("{what} {path:?}: got {other:?}, expected InvalidPath")),
    };
    for path in INVALID_PATHS {
        invalid("put", path, store.put(path, &mut &b"x"[..]).map(drop))?;
        invalid("get", path, store.get(path).map(drop))?;
        invalid("stat", path, store.stat(path).map(drop))?;
        invalid("del", path, store.del(path))?;
    }
    Ok(())
}

/// An instance configured `ReadOnly = true` on the same root refuses put and del with `ReadOnly`, and reads.
fn a_read_only_instance_refuses_writes_and_serves_reads(
    store: &dyn Store,
    open_read_only: &OpenReadOnly<'_>,
) -> Result<(), String> {
    let bytes = pattern(100, 5);
    store.put("read-only/object", &mut bytes.as_slice()).ctx("put through the writable instance")?;
    let read_only = open_read_only()?;
    let put = read_only.put("read-only/other", &mut &b"x"[..]);
    ensure!(matches!(put, Err(StoreError::ReadOnly(_))), "put on a read-only instance: got {put:?}, expected ReadOnly");
    let del = read_only.del("read-only/object");
    ensure!(matches!(del, Err(StoreError::ReadOnly(_))), "del on a read-only instance: got {del:?}, expected ReadOnly");
    ensure!(read_all(read_only.as_ref(), "read-only/object")? == bytes, "get through a read-only instance");
    Ok(())
}
