//! The KV suite's concurrency checks: views see whole updates, conflicts are reported, and concurrent updates
//! through `update_with_retry` lose nothing.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use manager_plugin::kv::{Db, KvError, Txn, update_with_retry};

use super::{esc, in_txn, open, text};
use crate::plugins::selftest::{Context as _, ensure_eq};

const TOTAL: u64 = 1000;

fn read_u64(txn: &dyn Txn, key: &[u8]) -> Result<u64, KvError> {
    let bytes = txn.get(key)?;
    let array: [u8; 8] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| KvError::Aborted(format!("{:?} holds {} bytes, not an 8-byte counter", esc(key), bytes.len())))?;
    Ok(u64::from_be_bytes(array))
}

/// A view never sees half of an update: a writer moves units between two keys (their sum stays `TOTAL`) while a
/// reader checks the sum through get and through scan. A view that lost a race may report `Conflict`.
///
/// The closure reports a torn read as an error: an optimistic store without snapshots (Redis) may run an attempt
/// on torn reads, but must then discard that attempt, whatever the closure returned.
pub fn view_sees_a_consistent_state(db: &dyn Db) -> Result<(), String> {
    let store = open(db, "consistent-view")?;
    store.put(b"a", &TOTAL.to_be_bytes()).ctx("put a")?;
    store.put(b"b", &0u64.to_be_bytes()).ctx("put b")?;
    let moves = AtomicUsize::new(0);
    let writer_done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let result = (0..200u64).try_for_each(|i| {
                update_with_retry(&*store, 1000, &mut |txn| {
                    let (a, b) = (read_u64(txn, b"a")?, read_u64(txn, b"b")?);
                    let step = (i % 7).min(a);
                    txn.put(b"a", &(a - step).to_be_bytes())?;
                    txn.put(b"b", &(b.saturating_add(step)).to_be_bytes())
                })
                .ctx("a writer's update")?;
                moves.fetch_add(1, Ordering::Relaxed);
                Ok::<(), String>(())
            });
            writer_done.store(true, Ordering::Relaxed);
            result
        });
        while !writer_done.load(Ordering::Relaxed) {
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
                Ok(()) => ensure_eq!(last_attempt, Some((TOTAL, TOTAL)), "the sums a view returning Ok saw"),
                Err(KvError::Conflict) => {}
                Err(err) => return Err(format!("a view while a writer ran: {err}")),
            }
        }
        writer.join().map_err(|_| "the writer thread panicked".to_string())?
    })?;
    ensure_eq!(moves.load(Ordering::Relaxed), 200, "updates the writer made");
    store
        .view(&mut |txn| {
            let sum = read_u64(txn, b"a")? + read_u64(txn, b"b")?;
            in_txn(|| {
                ensure_eq!(sum, TOTAL, "the sum seen by a view after the writer stopped");
                Ok(())
            })
        })
        .ctx("an uncontended view")
}

/// An update that read a key changed by someone else before it committed fails with `Conflict`, whether it wrote
/// that key (lost update) or only read it (write skew). Checked only for stores that ask for retries (optimistic
/// ones); a store that serialises updates cannot lose this race, and would deadlock on the write from inside.
pub fn update_conflicts_when_a_key_it_read_changed(db: &dyn Db) -> Result<(), String> {
    let store = open(db, "conflict")?;
    if !store.need_retry_transactions() {
        return Ok(());
    }
    store.put(b"k", b"0").ctx("put")?;
    let result = store.update(&mut |txn| {
        let value = txn.get(b"k")?;
        store.put(b"k", b"changed behind the transaction's back")?;
        txn.put(b"k", &[value, b"+1".to_vec()].concat())
    });
    ensure_eq!(result, Err(KvError::Conflict), "an update whose written key changed before its commit (lost update)");
    ensure_eq!(
        text(store.get(b"k")),
        Ok(esc(b"changed behind the transaction's back")),
        "the key after a conflicting update"
    );
    let result = store.update(&mut |txn| {
        let value = txn.get(b"k")?;
        store.put(b"k", b"changed again")?;
        txn.put(b"copy", &value)
    });
    ensure_eq!(result, Err(KvError::Conflict), "an update whose key only read changed before its commit (write skew)");
    ensure_eq!(store.get(b"copy"), Err(KvError::KeyNotFound), "a write of a conflicting update");
    Ok(())
}

/// 4 threads x 50 increments of one counter through `update_with_retry` end at exactly 200.
pub fn concurrent_updates_lose_no_increment(db: &dyn Db) -> Result<(), String> {
    let store = open(db, "counter")?;
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    (0..50).try_for_each(|_| {
                        update_with_retry(&*store, 10_000, &mut |txn| {
                            let count = match read_u64(txn, b"counter") {
                                Err(KvError::KeyNotFound) => 0,
                                other => other?,
                            };
                            txn.put(b"counter", &(count + 1).to_be_bytes())
                        })
                        .ctx("an increment")
                    })
                })
            })
            .collect();
        threads.into_iter().try_for_each(|t| t.join().map_err(|_| "an incrementing thread panicked".to_string())?)
    })?;
    let mut count = None;
    store
        .view(&mut |txn| {
            count = Some(read_u64(txn, b"counter"));
            Ok(())
        })
        .ctx("view")?;
    ensure_eq!(count, Some(Ok(200)), "the counter after 4 threads x 50 increments");
    Ok(())
}
