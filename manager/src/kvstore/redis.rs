//! The Redis driver.
//!
//! Layout, for namespace prefix `P` and collection `C` (with `%` and `:` in `C` escaped as `%25` and `%3A`, so
//! that no two collections' keys can collide):
//! - `P:C:k:<key bytes>`: a string holding the value of `<key bytes>`;
//! - `P:C:index`: a sorted set whose members are the collection's keys, all with score 0, so `ZRANGEBYLEX` yields
//!   them in byte order for scans. A plain put or delete changes both in one `MULTI`/`EXEC`.
//!
//! Namespaces must not extend one another with `:` (`a` and `a:b` could collide).
//!
//! Transactions are optimistic, with `WATCH`/`MULTI`/`EXEC` on a connection dedicated to the transaction: a read
//! first `WATCH`es what it reads (the entry key; for a scan, the index and every entry found), writes are buffered
//! in the handle (so the transaction reads its own writes) and applied in one `MULTI`/`EXEC` when the closure
//! returns `Ok`. `EXEC` answers nil when a watched key changed, which becomes [`KvError::Conflict`]. A Lua script
//! would need every key the transaction reads known before it runs; the closure decides what to read as it goes,
//! so `WATCH` fits. A view validates its reads the same way with an empty `MULTI`/`EXEC` and is retried a few
//! times before it reports [`KvError::Conflict`]: Redis has no snapshots, and this is how a view sees one state.
//!
//! Because reads are validated only at the end, one attempt of a closure may see a mix of older and newer values
//! (RocksDB closures never do: they read a snapshot). Such an attempt never produces the answer: when the reads
//! turn out stale, whatever the closure returned, `Ok` or its own error, is discarded and the attempt reported as
//! a conflict (retried, for a view). So a closure must not act on what it reads except through its result:
//! no panicking on a broken invariant, no side effects it cannot repeat.
//!
//! Durability is the server's (`appendonly`, `appendfsync`): [`RedisDb::check_durability`] (`redis_durability.rs`)
//! refuses a server that would lose or evict acknowledged writes.
//!
//! **Liveness.** Connecting and every command have short timeouts ([`RedisTimeouts`], `[Common.DB.Redis]
//! ConnectTimeout` and `CommandTimeout`), so
//! while Redis is down or stalled a call fails within a few seconds with an error naming Redis and its address,
//! and the next call after it is back simply opens a new connection: no restart needed. A pooled connection the
//! server or network dropped (`CLIENT KILL`, `timeout`, a restart) is replaced: plain commands are re-sent on a
//! fresh one; a transaction on a connection idle for a while is checked with `PING` first, and a transaction
//! whose connection breaks before its `EXEC` was sent is run again on a fresh connection (its reads are redone,
//! nothing was written). A connection breaking during `EXEC` is reported, not retried: the commit may have
//! happened. Conflicting views are retried with exponential back-off and jitter ([`retry_pause`]). A server that
//! stops answering (stalled, not gone) costs one command timeout, not one per pooled connection: a failed
//! `PING` check drops the whole idle pool, and a timed-out check or read fails the call at once (a fresh
//! connection would only wait again).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use ::redis::{Client, Connection, RedisError, RedisResult, Value};
use manager_plugin::kv::{self, Db, Entry, KvError, KvIter, KvStore, Txn, TxnFn};

use super::redis_lease::LeaseFence;
use super::{PagedIter, backend_error, read_only_error};

/// How long connecting may take by default (`[Common.DB.Redis] ConnectTimeout`).
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(1500);
/// How long each command may take by default before the operation fails (`[Common.DB.Redis] CommandTimeout`).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(3);

/// The driver's timeouts: while Redis is down or stalled, every call fails within about these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedisTimeouts {
    /// Opening a connection (default [`CONNECT_TIMEOUT`]).
    pub connect: Duration,
    /// Sending one command and reading its answer, each (default [`COMMAND_TIMEOUT`]).
    pub command: Duration,
}

impl Default for RedisTimeouts {
    fn default() -> Self {
        RedisTimeouts { connect: CONNECT_TIMEOUT, command: COMMAND_TIMEOUT }
    }
}
/// A pooled connection idle longer than this is checked with `PING` before a transaction uses it.
const CHECK_IDLE_AFTER: Duration = Duration::from_secs(2);
/// Idle connections kept for reuse; more are opened under load and closed when returned.
const MAX_IDLE: usize = 16;
/// How many times a view is run before a persistent race is reported as [`KvError::Conflict`].
const VIEW_ATTEMPTS: usize = 16;

/// A Redis-backed database: every collection lives under one namespace prefix on one server.
pub struct RedisDb {
    shared: Arc<Shared>,
}

/// State shared by the database handle, its collections and their iterators.
struct Shared {
    client: Client,
    /// `host:port` (or socket path) of the server, for messages.
    addr: String,
    prefix: String,
    /// Idle connections with the time they were returned.
    idle: Mutex<Vec<(Connection, Instant)>>,
    closed: AtomicBool,
    timeouts: RedisTimeouts,
    /// Set while a [`LeasedRedisDb`](super::LeasedRedisDb) holds the prefix: every commit that writes is then
    /// conditional on the lease (`redis_lease.rs`).
    lease: OnceLock<Arc<LeaseFence>>,
}

impl RedisDb {
    /// Connects to the server at `addr` (e.g. `redis://127.0.0.1:6379`) and checks it answers; every key is
    /// stored under `namespace_prefix`. Default timeouts.
    pub fn open(addr: &str, namespace_prefix: &str) -> Result<RedisDb, KvError> {
        RedisDb::open_with(addr, namespace_prefix, RedisTimeouts::default())
    }

    /// [`open`](Self::open) with explicit timeouts.
    pub fn open_with(addr: &str, namespace_prefix: &str, timeouts: RedisTimeouts) -> Result<RedisDb, KvError> {
        // The URL may carry a password: errors name the server by host and port only.
        let client = Client::open(addr)
            .map_err(|err| KvError::Backend(format!("invalid Redis address (expected redis://host:port): {err}")))?;
        let shared = Shared {
            addr: client.get_connection_info().addr().to_string(),
            client,
            prefix: namespace_prefix.to_string(),
            idle: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
            timeouts,
            lease: OnceLock::new(),
        };
        let mut conn = shared.connect()?;
        ::redis::cmd("PING")
            .query::<String>(&mut conn)
            .map_err(|err| KvError::Backend(format!("ping Redis at {}: {err}", shared.addr)))?;
        shared.checkin(conn);
        Ok(RedisDb { shared: Arc::new(shared) })
    }
}

impl RedisDb {
    /// `host:port` (or socket path) of the server.
    pub(super) fn addr(&self) -> &str {
        &self.shared.addr
    }

    /// Another handle on the same connections (for the lease renewal thread of `redis_lease.rs`).
    pub(super) fn clone_handle(&self) -> RedisDb {
        RedisDb { shared: Arc::clone(&self.shared) }
    }

    /// Makes every later commit that writes conditional on `fence` (the writer lease this handle holds).
    pub(super) fn fence_with_lease(&self, fence: Arc<LeaseFence>) {
        let _ = self.shared.lease.set(fence);
    }

    /// Runs `f` on a pooled connection: for the start-up checks of `redis_durability.rs` and `redis_lease.rs`.
    pub(super) fn with_connection<R>(&self, f: impl FnMut(&mut Connection) -> RedisResult<R>) -> Result<R, String> {
        self.shared.with_conn(f).map_err(|err| match err {
            RedisOrKv::Kv(err) => err.to_string(),
            RedisOrKv::Redis(err) => err.to_string(),
        })
    }
}

impl Shared {
    fn connect(&self) -> Result<Connection, KvError> {
        let connect = || -> RedisResult<Connection> {
            let conn = self.client.get_connection_with_timeout(self.timeouts.connect)?;
            conn.set_read_timeout(Some(self.timeouts.command))?;
            conn.set_write_timeout(Some(self.timeouts.command))?;
            Ok(conn)
        };
        connect().map_err(|err| {
            KvError::Backend(format!(
                "connect to Redis at {} (timeout {:?}, [Common.DB.Redis] ConnectTimeout): {err} (is redis-server \
                 running there?)",
                self.addr, self.timeouts.connect
            ))
        })
    }

    /// A connection for the caller's exclusive use: an idle one (`true`), or a new one.
    fn checkout(&self) -> Result<(Connection, bool), KvError> {
        match self.checkout_idle()? {
            Some((conn, _)) => Ok((conn, true)),
            None => Ok((self.connect()?, false)),
        }
    }

    /// An idle connection and how long it was idle, if there is one.
    fn checkout_idle(&self) -> Result<Option<(Connection, Duration)>, KvError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(KvError::Closed);
        }
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        Ok(idle.map(|(conn, since)| (conn, since.elapsed())))
    }

    /// A connection for a transaction: an idle one that answers (checked with `PING` when it was idle for a
    /// while), else a new one; `true` when reused.
    ///
    /// When the check fails, every other idle connection is dropped unchecked: they are older still, and whatever
    /// broke this one (a restart, `CLIENT KILL`, a stalled server) broke them too. Checking each in turn would
    /// cost one `CommandTimeout` per pooled connection while the server is stalled. A check that timed out (a
    /// stalled server, not a dropped connection) is the caller's error at once: a new connection would only wait
    /// again.
    fn checkout_checked(&self) -> Result<(Connection, bool), KvError> {
        if let Some((mut conn, idle_for)) = self.checkout_idle()? {
            if idle_for < CHECK_IDLE_AFTER {
                return Ok((conn, true));
            }
            let ping = ::redis::cmd("PING").query::<String>(&mut conn);
            let Err(err) = ping else {
                return Ok((conn, true));
            };
            let others = std::mem::take(&mut *self.idle.lock().unwrap_or_else(PoisonError::into_inner)).len();
            tracing::debug!(
                redis = %self.addr,
                "dropped a pooled Redis connection that no longer answers ({err}), and the {others} other idle ones"
            );
            if err.is_timeout() {
                return Err(KvError::Backend(format!(
                    "Redis at {}: no answer to PING within {:?} ([Common.DB.Redis] CommandTimeout); is Redis \
                     overloaded or stopped?",
                    self.addr, self.timeouts.command
                )));
            }
        }
        Ok((self.connect()?, false))
    }

    /// Returns a connection in a clean state (no `WATCH`, no `MULTI`) for reuse.
    fn checkin(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if !self.closed.load(Ordering::Acquire) && idle.len() < MAX_IDLE {
            idle.push((conn, Instant::now()));
        }
    }

    /// Runs `f` (idempotent) on a pooled connection; a connection that saw an error is dropped, not reused.
    fn with_conn<R>(&self, mut f: impl FnMut(&mut Connection) -> RedisResult<R>) -> Result<R, RedisOrKv> {
        let (mut conn, reused) = self.checkout()?;
        let result = match f(&mut conn) {
            // The server or the network may have dropped an idle connection: try once more on a fresh one.
            Err(err) if reused && err.is_connection_dropped() => {
                conn = self.connect()?;
                f(&mut conn)?
            }
            other => other?,
        };
        self.checkin(conn);
        Ok(result)
    }
}

/// An error of a pooled call: the pool's own (closed, cannot connect) or the command's.
enum RedisOrKv {
    Kv(KvError),
    Redis(RedisError),
}

impl From<KvError> for RedisOrKv {
    fn from(err: KvError) -> Self {
        RedisOrKv::Kv(err)
    }
}

impl From<RedisError> for RedisOrKv {
    fn from(err: RedisError) -> Self {
        RedisOrKv::Redis(err)
    }
}

impl Db for RedisDb {
    fn run(&self) -> Result<(), KvError> {
        Ok(())
    }

    fn close(&self) -> Result<(), KvError> {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.idle.lock().unwrap_or_else(PoisonError::into_inner).clear();
        Ok(())
    }

    fn open_collection(&self, name: &str) -> Result<Box<dyn KvStore>, KvError> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(KvError::Closed);
        }
        Ok(Box::new(RedisCollection::new(Arc::clone(&self.shared), name)))
    }
}

/// One collection: entry keys under a common prefix plus a sorted-set index.
struct RedisCollection {
    shared: Arc<Shared>,
    name: String,
    key_prefix: Vec<u8>,
    index: Vec<u8>,
}

impl RedisCollection {
    fn new(shared: Arc<Shared>, name: &str) -> Self {
        let base = format!("{}:{}:", shared.prefix, escape_collection(name));
        RedisCollection {
            key_prefix: format!("{base}k:").into_bytes(),
            index: format!("{base}index").into_bytes(),
            shared,
            name: name.to_string(),
        }
    }

    /// The Redis key holding the value of `key`.
    fn entry_key(&self, key: &[u8]) -> Vec<u8> {
        [self.key_prefix.as_slice(), key].concat()
    }

    /// Runs `f` on a pooled connection, naming the operation and collection in errors.
    fn call<R>(&self, op: &str, f: impl FnMut(&mut Connection) -> RedisResult<R>) -> Result<R, KvError> {
        self.shared.with_conn(f).map_err(|err| match err {
            RedisOrKv::Kv(err) => err,
            RedisOrKv::Redis(err) => self.error(op, err),
        })
    }

    /// An error of a Redis command, naming the server, the operation and the collection.
    fn error(&self, op: &str, err: RedisError) -> KvError {
        let hint = if err.is_timeout() {
            format!(
                " (no answer within {:?}, [Common.DB.Redis] CommandTimeout; is Redis overloaded or stopped?)",
                self.shared.timeouts.command
            )
        } else if err.is_connection_dropped() || err.is_connection_refusal() || err.is_io_error() {
            " (is redis-server running and reachable?)".to_string()
        } else {
            String::new()
        };
        backend_error(op, &self.name, format!("Redis at {}: {err}{hint}", self.shared.addr))
    }

    /// A backend error naming the server and the collection, for a failure that is not one command's error.
    fn error_message(&self, message: &str) -> KvError {
        backend_error("transaction", &self.name, format!("Redis at {}: {message}", self.shared.addr))
    }

    /// Queues the commands applying `value` (`None`: delete) to `key` in `pipe`.
    fn queue_write(&self, pipe: &mut ::redis::Pipeline, key: &[u8], value: Option<&[u8]>) {
        match value {
            Some(value) => {
                pipe.cmd("SET").arg(self.entry_key(key)).arg(value).ignore();
                pipe.cmd("ZADD").arg(&self.index).arg(0).arg(key).ignore();
            }
            None => {
                pipe.cmd("DEL").arg(self.entry_key(key)).ignore();
                pipe.cmd("ZREM").arg(&self.index).arg(key).ignore();
            }
        }
    }

    fn write(&self, op: &str, key: &[u8], value: Option<&[u8]>) -> Result<(), KvError> {
        if self.shared.lease.get().is_some() {
            // A transaction, so that the write is conditional on the lease like every other commit.
            return kv::update_with_retry(self, VIEW_ATTEMPTS, &mut |txn| match value {
                Some(value) => txn.put(key, value),
                None => txn.del(key),
            });
        }
        let mut pipe = ::redis::pipe();
        pipe.atomic();
        self.queue_write(&mut pipe, key, value);
        self.call(op, |conn| pipe.exec(conn))
    }

    /// Values of `keys` (entry keys are derived), skipping keys deleted since they were listed.
    fn values(&self, conn: &mut Connection, keys: Vec<Vec<u8>>, watch: bool) -> RedisResult<Vec<Entry>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let entry_keys: Vec<Vec<u8>> = keys.iter().map(|key| self.entry_key(key)).collect();
        let mut pipe = ::redis::pipe();
        if watch {
            pipe.cmd("WATCH").arg(&entry_keys).ignore();
        }
        pipe.cmd("MGET").arg(&entry_keys);
        let (values,): (Vec<Option<Vec<u8>>>,) = pipe.query(conn)?;
        Ok(keys.into_iter().zip(values).filter_map(|(key, value)| Some((key, value?))).collect())
    }

    /// The paged scan of `prefix`, from its start or after the key `after`.
    fn paged_scan(&self, prefix: &[u8], after: Option<&[u8]>) -> Result<Box<dyn KvIter>, KvError> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(KvError::Closed);
        }
        let collection = RedisCollection::new(Arc::clone(&self.shared), &self.name);
        let scanned = prefix.to_vec();
        let fetch = move |after: Option<&[u8]>, limit| {
            collection.call("scan", |conn| collection.scan_range(conn, &scanned, after, Some(limit), false))
        };
        Ok(Box::new(PagedIter::starting_after(fetch, prefix, after)))
    }

    /// Up to `limit` entries starting with `prefix` after the key `after`, on `conn`.
    fn scan_range(
        &self,
        conn: &mut Connection,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: Option<usize>,
        watch: bool,
    ) -> RedisResult<Vec<Entry>> {
        let min = match after {
            Some(after) => [b"(".as_slice(), after].concat(),
            None if prefix.is_empty() => b"-".to_vec(),
            None => [b"[".as_slice(), prefix].concat(),
        };
        let max = kv::prefix_end(prefix).map_or_else(|| b"+".to_vec(), |end| [b"(".as_slice(), &end].concat());
        let mut pipe = ::redis::pipe();
        if watch {
            pipe.cmd("WATCH").arg(&self.index).ignore();
        }
        pipe.cmd("ZRANGEBYLEX").arg(&self.index).arg(min).arg(max);
        if let Some(limit) = limit {
            pipe.arg("LIMIT").arg(0).arg(limit);
        }
        let (keys,): (Vec<Vec<u8>>,) = pipe.query(conn)?;
        self.values(conn, keys, watch)
    }

    /// Runs `f` with a transaction on a dedicated connection, then commits its writes (or, for a view,
    /// validates its reads). `Ok(None)` means a watched key changed: the attempt saw stale data.
    ///
    /// The closure's own error is validated too: an error decided on stale reads becomes a retry, not an answer.
    fn transact_once(&self, writable: bool, f: TxnFn<'_>) -> Result<Option<()>, KvError> {
        let (conn, reused) = self.shared.checkout_checked()?;
        let attempt = self.attempt(conn, writable, &mut *f);
        match attempt {
            // The pooled connection broke before anything was committed: redo the reads on a fresh one.
            Attempt::BrokenBeforeCommit(err) if reused => {
                tracing::debug!(redis = %self.shared.addr, "a pooled Redis connection broke in a transaction: {err}");
                match self.attempt(self.shared.connect()?, writable, f) {
                    Attempt::Done(outcome) => outcome,
                    Attempt::BrokenBeforeCommit(err) => Err(err),
                }
            }
            Attempt::BrokenBeforeCommit(err) => Err(err),
            Attempt::Done(outcome) => outcome,
        }
    }

    /// One run of the closure on `conn`, then the commit (or validation).
    fn attempt(&self, conn: Connection, writable: bool, f: TxnFn<'_>) -> Attempt {
        let txn = RedisTxn {
            collection: self,
            conn: RefCell::new(conn),
            writes: RefCell::default(),
            writable,
            broken: Cell::new(None),
            stalled: Cell::new(false),
        };
        let result = f(&txn);
        if let Some(err) = txn.broken.take() {
            return Attempt::BrokenBeforeCommit(err);
        }
        if txn.stalled.get() {
            // The server did not answer within `CommandTimeout`: ending the transaction would only wait again.
            // The connection, with a reply possibly still on its way, is dropped with `txn`.
            let stalled = || {
                self.error_message(&format!(
                    "a read of the transaction got no answer within {:?} ([Common.DB.Redis] CommandTimeout)",
                    self.shared.timeouts.command
                ))
            };
            return Attempt::Done(Err(result.err().unwrap_or_else(stalled)));
        }
        Attempt::Done(match result {
            Ok(()) => txn.finish(true),
            Err(err) => match txn.finish(false) {
                Ok(None) => Ok(None),
                _ => Err(err),
            },
        })
    }
}

impl KvStore for RedisCollection {
    fn get(&self, key: &[u8]) -> Result<Vec<u8>, KvError> {
        let entry_key = self.entry_key(key);
        let value: Option<Vec<u8>> = self.call("get", |conn| ::redis::cmd("GET").arg(&entry_key).query(conn))?;
        value.ok_or(KvError::KeyNotFound)
    }

    fn peek(&self, key: &[u8], f: &mut dyn FnMut(&[u8])) -> Result<(), KvError> {
        f(&self.get(key)?);
        Ok(())
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), KvError> {
        self.write("put", key, Some(value))
    }

    fn del(&self, key: &[u8]) -> Result<(), KvError> {
        self.write("delete", key, None)
    }

    fn scan(&self, prefix: &[u8]) -> Result<Box<dyn KvIter>, KvError> {
        self.paged_scan(prefix, None)
    }

    fn scan_after(&self, prefix: &[u8], after: &[u8]) -> Result<Option<Box<dyn KvIter>>, KvError> {
        self.paged_scan(prefix, Some(after)).map(Some)
    }

    fn view(&self, f: TxnFn<'_>) -> Result<(), KvError> {
        for attempt in 0..VIEW_ATTEMPTS {
            if self.transact_once(false, &mut *f)?.is_some() {
                return Ok(());
            }
            std::thread::sleep(kv::retry_pause(attempt));
        }
        Err(KvError::Conflict)
    }

    fn update(&self, f: TxnFn<'_>) -> Result<(), KvError> {
        self.transact_once(true, f)?.ok_or(KvError::Conflict)
    }

    fn need_retry_transactions(&self) -> bool {
        true
    }
}

/// How one transaction attempt ended.
enum Attempt {
    /// Committed, validated, failed or conflicted: the outcome to report.
    Done(Result<Option<()>, KvError>),
    /// The connection broke while the closure read, before any commit was sent.
    BrokenBeforeCommit(KvError),
}

/// A transaction handle: reads go to the server (watching what they read), writes wait in `writes`.
struct RedisTxn<'a> {
    collection: &'a RedisCollection,
    conn: RefCell<Connection>,
    /// Buffered writes: `None` is a delete.
    writes: RefCell<BTreeMap<Vec<u8>, Option<Vec<u8>>>>,
    writable: bool,
    /// Set when a read failed because the connection broke.
    broken: Cell<Option<KvError>>,
    /// Set when a read timed out: the server is stalled.
    stalled: Cell<bool>,
}

impl RedisTxn<'_> {
    fn backend(&self, op: &str, err: RedisError) -> KvError {
        // A timeout means a stalled server, not a dropped connection: retrying on a fresh connection would only
        // wait another `CommandTimeout`.
        let stalled = err.is_timeout();
        self.stalled.set(self.stalled.get() || stalled);
        let broken = !stalled && (err.is_connection_dropped() || err.is_io_error());
        let error = self.collection.error(op, err);
        if broken {
            self.broken.set(Some(error.clone()));
        }
        error
    }

    /// Ends the transaction with one `MULTI`/`EXEC` holding the buffered writes when `apply` (none otherwise), so
    /// the reads are validated either way: `Ok(None)` when a watched key changed (and nothing was written).
    fn finish(self, apply: bool) -> Result<Option<()>, KvError> {
        let mut pipe = ::redis::pipe();
        pipe.atomic();
        if apply {
            for (key, value) in self.writes.borrow().iter() {
                self.collection.queue_write(&mut pipe, key, value.as_deref());
            }
        }
        let mut conn = self.conn.into_inner();
        if let Some(lease) = self.collection.shared.lease.get().filter(|_| apply && !self.writes.borrow().is_empty()) {
            // WATCHed with the reads: a lease taken by another manager before the EXEC fails the EXEC.
            let held = lease.check(&mut conn).map_err(|err| self.collection.error("check the writer lease", err))?;
            if let Err(refused) = held {
                // Refused before MULTI: nothing was sent; the connection is clean after UNWATCH (in `check`).
                self.collection.shared.checkin(conn);
                return Err(refused);
            }
        }
        let outcome: Option<Vec<Value>> =
            pipe.query(&mut conn).map_err(|err| self.collection.error("commit transaction", err))?;
        // EXEC, answered or not, forgets every WATCH: the connection is clean again.
        self.collection.shared.checkin(conn);
        Ok(outcome.map(drop))
    }

    fn buffer(&self, op: &str, key: &[u8], value: Option<&[u8]>) -> Result<(), KvError> {
        if !self.writable {
            return Err(read_only_error(op, &self.collection.name));
        }
        self.writes.borrow_mut().insert(key.to_vec(), value.map(<[u8]>::to_vec));
        Ok(())
    }
}

impl Txn for RedisTxn<'_> {
    fn get(&self, key: &[u8]) -> Result<Vec<u8>, KvError> {
        if let Some(buffered) = self.writes.borrow().get(key) {
            return buffered.clone().ok_or(KvError::KeyNotFound);
        }
        let entry_key = self.collection.entry_key(key);
        let mut pipe = ::redis::pipe();
        pipe.cmd("WATCH").arg(&entry_key).ignore().cmd("GET").arg(&entry_key);
        let (value,): (Option<Vec<u8>>,) =
            pipe.query(&mut *self.conn.borrow_mut()).map_err(|err| self.backend("get in transaction", err))?;
        value.ok_or(KvError::KeyNotFound)
    }

    fn peek(&self, key: &[u8], f: &mut dyn FnMut(&[u8])) -> Result<(), KvError> {
        f(&self.get(key)?);
        Ok(())
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), KvError> {
        self.buffer("put", key, Some(value))
    }

    fn del(&self, key: &[u8]) -> Result<(), KvError> {
        self.buffer("delete", key, None)
    }

    /// Watches every entry found and the collection's index, so a value changed in the range, or a key added to
    /// or removed from the collection (anywhere: the index is one Redis key), fails the commit.
    fn scan(&self, prefix: &[u8]) -> Result<Vec<Entry>, KvError> {
        let found = self
            .collection
            .scan_range(&mut self.conn.borrow_mut(), prefix, None, None, true)
            .map_err(|err| self.backend("scan in transaction", err))?;
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = found.into_iter().collect();
        for (key, value) in self.writes.borrow().iter().filter(|(key, _)| key.starts_with(prefix)) {
            match value {
                Some(value) => merged.insert(key.clone(), value.clone()),
                None => merged.remove(key),
            };
        }
        Ok(merged.into_iter().collect())
    }
}

/// `name` with `%` and `:` percent-encoded, so a collection's keys never extend into another collection's.
fn escape_collection(name: &str) -> String {
    name.replace('%', "%25").replace(':', "%3A")
}

#[cfg(test)]
mod tests {
    use super::escape_collection;

    #[test]
    fn escaped_collection_names_contain_no_separator_and_stay_distinct() {
        assert_eq!(escape_collection("sectors"), "sectors");
        assert_eq!(escape_collection("a:b"), "a%3Ab");
        assert_ne!(escape_collection("a%3Ab"), escape_collection("a:b"));
    }
}
