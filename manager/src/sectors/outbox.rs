//! The durable outbox: sequence numbers, the entries written with each state change, and reading them back in
//! order for delivery.
//!
//! **Seq generation.** Seqs come from one process-wide generator, `max(wall-clock nanos, last + 1)`, seeded at
//! open from the largest seq the collection remembers (outbox entries and cursors), so a seq is never reused even
//! when the clock goes back across a restart. A shared counter key is deliberately avoided: every transaction
//! would read-modify-write it and conflict with every other.
//!
//! **The visibility horizon.** Seqs are drawn before their transactions commit, and transactions on different
//! sectors commit in any order, so seq 5 may become visible after seq 6. A deliverer that delivered 6 and moved
//! its cursor past 5 would lose 5 for good. Each [`StateManager`](super::StateManager) therefore tracks the seqs
//! it has drawn whose operations have not finished yet ("in flight"); [`Sequencer::horizon`] is the highest seq
//! below which nothing is in flight, and deliverers never read past it. Any seq at or below the horizon belongs
//! to an operation that has committed (its entry is visible) or failed (its entry will never exist), and every
//! later seq is above it. This assumes one manager process writes the collection (as the Go manager's in-memory
//! sector locks do).

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use manager_plugin::kv::{KvError, KvIter, KvStore, Txn, update_with_retry};
use serde::{Deserialize, Serialize};

use super::keys::{self, CURSOR_PREFIX, OUTBOX_PREFIX, SEQ_DIGITS};
use super::signal::Signal;

/// How many times a conflicting transaction is retried.
pub(super) const TXN_ATTEMPTS: usize = 32;

/// How many outbox entries one garbage-collection transaction deletes.
const GC_CHUNK: usize = 256;

/// The last seq handed out in this process.
static LAST_SEQ: Mutex<u64> = Mutex::new(0);

/// An outbox entry as stored: `{"Seq":..,"Event":..}`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct OutboxRecord<E> {
    /// The entry's seq (also its key).
    pub(super) seq: u64,
    /// The event.
    pub(super) event: E,
}

/// Hands out seqs and knows which of them are still in flight.
pub(super) struct Sequencer {
    in_flight: Mutex<BTreeSet<u64>>,
    /// Seqs whose commit failed ambiguously and could not be settled yet (see `settle.rs`); they stay in
    /// `in_flight` too, holding the horizon, until settled.
    doubtful: Mutex<BTreeSet<u64>>,
    /// Notified whenever an operation that drew seqs finished (committed or not).
    signal: Signal,
}

impl Sequencer {
    /// A sequencer whose seqs will all be greater than `seed`.
    pub(super) fn new(seed: u64) -> Sequencer {
        let mut last = last_seq();
        *last = (*last).max(seed);
        Sequencer { in_flight: Mutex::default(), doubtful: Mutex::default(), signal: Signal::default() }
    }

    /// A ticket for one operation: the seqs it draws are in flight until it is dropped.
    pub(super) fn ticket(&self) -> SeqTicket<'_> {
        SeqTicket { sequencer: self, drawn: Vec::new(), attempt: None, doubtful: None }
    }

    /// The seqs whose outcome is still unknown, oldest first.
    pub(super) fn doubtful(&self) -> Vec<u64> {
        self.doubtful.lock().unwrap_or_else(PoisonError::into_inner).iter().copied().collect()
    }

    /// Seq `seq`'s outcome is known now: it leaves the in-flight set, and deliverers are woken.
    pub(super) fn settled(&self, seq: u64) {
        let mut in_flight = self.in_flight();
        self.doubtful.lock().unwrap_or_else(PoisonError::into_inner).remove(&seq);
        in_flight.remove(&seq);
        drop(in_flight);
        self.signal.notify();
    }

    /// The highest seq at or below which no operation is in flight (see the module docs).
    pub(super) fn horizon(&self) -> u64 {
        let in_flight = self.in_flight();
        match in_flight.first() {
            Some(&oldest) => oldest - 1,
            None => *last_seq(),
        }
    }

    /// Notified after every operation that drew a seq, once its outcome is visible.
    pub(super) fn signal(&self) -> &Signal {
        &self.signal
    }

    fn in_flight(&self) -> MutexGuard<'_, BTreeSet<u64>> {
        self.in_flight.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The seqs drawn by one operation; they leave the in-flight set when the ticket is dropped, which the operation
/// does only after its transaction returned.
pub(super) struct SeqTicket<'a> {
    sequencer: &'a Sequencer,
    drawn: Vec<u64>,
    /// The first seq drawn by the current attempt of the transaction, if any: held in doubt, it keeps the horizon
    /// below every seq of the attempt (a group commit draws one per change).
    attempt: Option<u64>,
    /// A seq to keep in flight after the drop: its outcome is unknown.
    doubtful: Option<u64>,
}

impl SeqTicket<'_> {
    /// Starts a new attempt of the transaction: [`attempt_seq`](SeqTicket::attempt_seq) forgets the last one's.
    pub(super) fn begin_attempt(&mut self) {
        self.attempt = None;
    }

    /// The first seq the current attempt drew, if it drew one.
    pub(super) fn attempt_seq(&self) -> Option<u64> {
        self.attempt
    }

    /// Keeps `seq` in flight after the ticket is dropped, until [`Sequencer::settled`]: its commit failed
    /// ambiguously and it may still become visible.
    pub(super) fn hold_in_doubt(&mut self, seq: u64) {
        self.sequencer.doubtful.lock().unwrap_or_else(PoisonError::into_inner).insert(seq);
        self.doubtful = Some(seq);
    }

    /// Draws a new seq. Call it inside the transaction, after the reads the transaction depends on, so that of
    /// two committed transactions touching the same key the later one always carries the greater seq.
    pub(super) fn draw(&mut self) -> u64 {
        // The in-flight lock is held across the draw so `horizon` never sees a drawn seq missing from the set.
        let mut in_flight = self.sequencer.in_flight();
        let seq = {
            let mut last = last_seq();
            *last = now_nanos().max(last.saturating_add(1));
            *last
        };
        in_flight.insert(seq);
        self.drawn.push(seq);
        self.attempt.get_or_insert(seq);
        seq
    }
}

impl Drop for SeqTicket<'_> {
    fn drop(&mut self) {
        if self.drawn.is_empty() {
            return;
        }
        let mut in_flight = self.sequencer.in_flight();
        for seq in self.drawn.iter().filter(|&&seq| Some(seq) != self.doubtful) {
            in_flight.remove(seq);
        }
        drop(in_flight);
        self.sequencer.signal.notify();
    }
}

fn last_seq() -> MutexGuard<'static, u64> {
    LAST_SEQ.lock().unwrap_or_else(PoisonError::into_inner)
}

fn now_nanos() -> u64 {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    u64::try_from(nanos).unwrap_or(u64::MAX)
}

/// Writes `event` (a [`SectorEvent`](manager_plugin::sync::SectorEvent) or its JSON already encoded) to the outbox in `txn`, under a seq drawn from
/// `ticket`. Call it after the transaction's reads (see [`SeqTicket::draw`]).
///
/// The entry's key is read first, so the transaction depends on it: settling an ambiguous commit writes a fence
/// there (`settle.rs`), which makes this transaction fail if it was still on its way to the store.
pub(super) fn emit<E: Serialize + ?Sized>(txn: &dyn Txn, ticket: &mut SeqTicket<'_>, event: &E) -> Result<(), KvError> {
    let seq = ticket.draw();
    let key = keys::outbox_key(seq);
    match txn.get(&key) {
        // Taken (a fence left behind): try again with a new seq.
        Ok(_) => return Err(KvError::Conflict),
        Err(KvError::KeyNotFound) => {}
        Err(err) => return Err(err),
    }
    let json = serde_json::to_vec(&OutboxRecord { seq, event })
        .map_err(|err| KvError::Aborted(format!("encode outbox entry {seq}: {err}")))?;
    txn.put(&key, &json)
}

/// Calls `visit(seq, value)` for the outbox entries with `after < seq <= upto`, in seq order, until it returns
/// `false`.
///
/// A store that can start a scan at a key ([`KvStore::scan_after`]: RocksDB, Redis) is read with one scan from
/// `after`'s key. For the others, rather than scanning the whole outbox and skipping what was delivered (quadratic while one target lags far
/// behind another), it scans only the key prefixes that can hold greater seqs: with `after` = d0 d1 … d19, the
/// greater keys are, in ascending order, those starting with d0…d18 followed by a digit above d19, then d0…d17
/// followed by a digit above d18, and so on: at most 180 small prefix scans, most of them empty.
pub(super) fn visit_after(
    store: &dyn KvStore,
    after: u64,
    upto: u64,
    visit: &mut dyn FnMut(u64, Vec<u8>) -> bool,
) -> Result<(), KvError> {
    if after >= upto {
        return Ok(());
    }
    if let Some(mut iter) = store.scan_after(OUTBOX_PREFIX.as_bytes(), &keys::outbox_key(after))? {
        return visit_entries(&mut *iter, upto, visit).map(|_| ());
    }
    let digits = format!("{after:0SEQ_DIGITS$}");
    for position in (0..SEQ_DIGITS).rev() {
        let current = digits.as_bytes()[position];
        for next in (current + 1)..=b'9' {
            let mut prefix = format!("{OUTBOX_PREFIX}{}", &digits[..position]).into_bytes();
            prefix.push(next);
            // Prefixes come in ascending order: once one starts above `upto`, so do all the rest.
            match lowest_seq_with_prefix(&prefix) {
                Some(lowest) if lowest <= upto => {}
                _ => return Ok(()),
            }
            if !visit_entries(&mut *store.scan(&prefix)?, upto, visit)? {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Calls `visit` for the outbox entries of `iter` up to `upto`; `false` once it stopped early (past `upto` or
/// `visit` said so).
fn visit_entries(
    iter: &mut dyn KvIter,
    upto: u64,
    visit: &mut dyn FnMut(u64, Vec<u8>) -> bool,
) -> Result<bool, KvError> {
    while let Some((key, value)) = iter.next_entry()? {
        let Some(seq) = keys::parse_outbox_key(&key) else {
            tracing::warn!(key = %String::from_utf8_lossy(&key), "skipping a malformed outbox key");
            continue;
        };
        if seq > upto || !visit(seq, value) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The smallest seq whose key starts with `prefix` (`outbox/` + leading digits), or `None` if it overflows.
fn lowest_seq_with_prefix(prefix: &[u8]) -> Option<u64> {
    let mut digits = prefix[OUTBOX_PREFIX.len()..].to_vec();
    digits.resize(SEQ_DIGITS, b'0');
    keys::parse_decimal(&digits)
}

/// Up to `limit` outbox entries with `after < seq <= upto`, in seq order.
pub(super) fn read_after(
    store: &dyn KvStore,
    after: u64,
    upto: u64,
    limit: usize,
) -> Result<Vec<(u64, Vec<u8>)>, KvError> {
    let mut entries = Vec::new();
    visit_after(store, after, upto, &mut |seq, value| {
        entries.push((seq, value));
        entries.len() < limit
    })?;
    Ok(entries)
}

/// How many outbox entries have a seq greater than `after` (a full count: delivery keeps its lag incrementally).
#[cfg(test)]
pub(super) fn count_after(store: &dyn KvStore, after: u64) -> Result<u64, KvError> {
    let mut count = 0;
    visit_after(store, after, u64::MAX, &mut |_, _| {
        count += 1;
        true
    })?;
    Ok(count)
}

/// The largest seq the collection remembers: in the outbox or in a cursor (the outbox may have been emptied by
/// garbage collection). New seqs must be greater.
pub(super) fn largest_known_seq(store: &dyn KvStore) -> Result<u64, KvError> {
    let mut largest = largest_outbox_seq(store)?;
    let mut iter = store.scan(CURSOR_PREFIX.as_bytes())?;
    while let Some((_, value)) = iter.next_entry()? {
        largest = largest.max(keys::parse_decimal(&value).unwrap_or(0));
    }
    Ok(largest)
}

/// The largest seq in the outbox (0 when empty), without reading the whole outbox: the digits are found from the
/// first down, each by probing `outbox/<digits so far><9..0>` for one entry (at most 10 probes per digit). Only
/// when a malformed key breaks the probing does it fall back to reading every key.
fn largest_outbox_seq(store: &dyn KvStore) -> Result<u64, KvError> {
    let mut digits = String::with_capacity(SEQ_DIGITS);
    'position: while digits.len() < SEQ_DIGITS {
        for digit in ('0'..='9').rev() {
            let prefix = format!("{OUTBOX_PREFIX}{digits}{digit}");
            if store.scan(prefix.as_bytes())?.next_entry()?.is_some() {
                digits.push(digit);
                continue 'position;
            }
        }
        if digits.is_empty() {
            return Ok(0);
        }
        break;
    }
    if let Some(seq) = keys::parse_decimal(digits.as_bytes()).filter(|_| digits.len() == SEQ_DIGITS) {
        return Ok(seq);
    }
    let mut largest = 0;
    let mut iter = store.scan(OUTBOX_PREFIX.as_bytes())?;
    while let Some((key, _)) = iter.next_entry()? {
        largest = largest.max(keys::parse_outbox_key(&key).unwrap_or(0));
    }
    Ok(largest)
}

/// Deletes every outbox entry with `after < seq <= upto`; returns how many it deleted. The entries are found with
/// the prefix scans of [`visit_after`], which start after `after`: a collector that passes the seq it collected
/// through last time never walks again over the deletion markers of its earlier passes.
pub(super) fn delete_through(store: &dyn KvStore, after: u64, upto: u64) -> Result<usize, KvError> {
    let mut deleted = 0;
    let mut after = after;
    loop {
        let mut chunk = Vec::with_capacity(GC_CHUNK);
        visit_after(store, after, upto, &mut |seq, _| {
            chunk.push(seq);
            chunk.len() < GC_CHUNK
        })?;
        let Some(&last) = chunk.last() else { return Ok(deleted) };
        update_with_retry(store, TXN_ATTEMPTS, &mut |txn| {
            chunk.iter().try_for_each(|&seq| txn.del(&keys::outbox_key(seq)))
        })?;
        deleted += chunk.len();
        if chunk.len() < GC_CHUNK {
            return Ok(deleted);
        }
        after = last;
    }
}

/// The persisted cursor of target `name`. A target seen for the first time is registered: its cursor is persisted
/// right away, at 0 (everything still in the outbox is owed to it), so garbage collection keeps its backlog from
/// then on, also in a later run where it is absent, whether or not it ever acknowledged an event.
pub(super) fn load_or_register_cursor(store: &dyn KvStore, name: &str) -> Result<u64, KvError> {
    let key = keys::cursor_key(name);
    let mut cursor = 0;
    update_with_retry(store, TXN_ATTEMPTS, &mut |txn| {
        cursor = match txn.get(&key) {
            Ok(value) => keys::parse_decimal(&value).ok_or_else(|| {
                KvError::Backend(format!(
                    "cursor {:?} holds {:?}, not a decimal seq",
                    String::from_utf8_lossy(&key),
                    String::from_utf8_lossy(&value)
                ))
            })?,
            Err(KvError::KeyNotFound) => {
                txn.put(&key, b"0")?;
                0
            }
            Err(err) => return Err(err),
        };
        Ok(())
    })?;
    Ok(cursor)
}

/// Persists target `name`'s cursor.
pub(super) fn save_cursor(store: &dyn KvStore, name: &str, seq: u64) -> Result<(), KvError> {
    let key = keys::cursor_key(name);
    let value = seq.to_string();
    update_with_retry(store, TXN_ATTEMPTS, &mut |txn| txn.put(&key, value.as_bytes()))
}

/// Every persisted cursor, by target name, including those of targets not running now.
pub(super) fn persisted_cursors(store: &dyn KvStore) -> Result<Vec<(String, u64)>, KvError> {
    let mut iter = store.scan(keys::CURSOR_PREFIX.as_bytes())?;
    let mut cursors = Vec::new();
    while let Some((key, value)) = iter.next_entry()? {
        let name = String::from_utf8_lossy(&key[keys::CURSOR_PREFIX.len()..]).into_owned();
        let seq = keys::parse_decimal(&value).ok_or_else(|| {
            KvError::Backend(format!("cursor {name:?} holds {:?}, not a decimal seq", String::from_utf8_lossy(&value)))
        })?;
        cursors.push((name, seq));
    }
    Ok(cursors)
}

/// Deletes target `name`'s cursor; `false` if it had none.
pub(super) fn delete_cursor(store: &dyn KvStore, name: &str) -> Result<bool, KvError> {
    let key = keys::cursor_key(name);
    let mut existed = false;
    update_with_retry(store, TXN_ATTEMPTS, &mut |txn| {
        existed = match txn.get(&key) {
            Ok(_) => true,
            Err(KvError::KeyNotFound) => false,
            Err(err) => return Err(err),
        };
        txn.del(&key)
    })?;
    Ok(existed)
}

#[cfg(test)]
mod tests {
    use manager_plugin::kv::{Db, Meta};

    use super::*;

    fn store_with(seqs: &[u64]) -> Box<dyn KvStore> {
        let db = memdb::open(&Meta::new()).expect("memdb");
        let store = db.open_collection("sectors").expect("collection");
        for &seq in seqs {
            store.put(&keys::outbox_key(seq), seq.to_string().as_bytes()).expect("put");
        }
        store.put(b"online/m-1-n-1", b"{}").expect("put");
        store
    }

    fn seqs_after(store: &dyn KvStore, after: u64, upto: u64) -> Vec<u64> {
        read_after(store, after, upto, usize::MAX).expect("read").into_iter().map(|(seq, _)| seq).collect()
    }

    #[test]
    fn reading_after_a_cursor_yields_exactly_the_greater_seqs_in_order() {
        let seqs = [0, 1, 9, 10, 11, 99, 100, 12345, 1_700_000_000_000_000_000, 1_700_000_000_000_000_001, u64::MAX];
        let store = store_with(&seqs);
        for (i, &after) in seqs.iter().enumerate() {
            assert_eq!(seqs_after(&*store, after, u64::MAX), seqs[i + 1..].to_vec(), "after {after}");
        }
        assert_eq!(seqs_after(&*store, 50, 12345), vec![99, 100, 12345]);
        assert_eq!(seqs_after(&*store, 5, 5), Vec::<u64>::new());
        assert_eq!(count_after(&*store, 10).expect("count"), 7);
        assert_eq!(read_after(&*store, 0, u64::MAX, 2).expect("read").len(), 2);
    }

    #[test]
    fn the_largest_seq_is_found_by_probing_without_reading_every_entry() {
        for seqs in [vec![], vec![7], vec![1, 99, 100, 12345], vec![5, 1_700_000_000_000_000_001, u64::MAX - 1]] {
            let store = store_with(&seqs);
            assert_eq!(largest_outbox_seq(&*store).expect("largest"), seqs.iter().copied().max().unwrap_or(0));
        }
    }

    #[test]
    fn garbage_collection_deletes_only_through_the_given_seq() {
        let seqs: Vec<u64> = (1..=600).collect();
        let store = store_with(&seqs);
        assert_eq!(delete_through(&*store, 0, 550).expect("gc"), 550);
        assert_eq!(seqs_after(&*store, 0, u64::MAX), (551..=600).collect::<Vec<_>>());
        assert_eq!(largest_known_seq(&*store).expect("largest"), 600);
    }

    #[test]
    fn garbage_collection_starts_after_where_the_last_pass_ended() {
        let seqs: Vec<u64> = (1..=600).collect();
        let store = store_with(&seqs);
        // Entries at or below `after` are not even looked at: a pass never walks its predecessors' work again.
        assert_eq!(delete_through(&*store, 100, 550).expect("gc"), 450);
        let left = seqs_after(&*store, 0, u64::MAX);
        assert_eq!(left, (1..=100).chain(551..=600).collect::<Vec<_>>());
    }

    #[test]
    fn seqs_increase_and_stay_in_flight_until_the_ticket_drops() {
        let sequencer = Sequencer::new(0);
        let mut first = sequencer.ticket();
        let a = first.draw();
        let mut second = sequencer.ticket();
        let b = second.draw();
        assert!(b > a);
        assert_eq!(sequencer.horizon(), a - 1);
        drop(first);
        assert_eq!(sequencer.horizon(), b - 1);
        drop(second);
        assert!(sequencer.horizon() >= b);
    }

    #[test]
    fn a_seed_from_the_future_is_respected() {
        let seed = now_nanos() + 3_600_000_000_000;
        let sequencer = Sequencer::new(seed);
        let mut ticket = sequencer.ticket();
        assert!(ticket.draw() > seed);
    }
}
