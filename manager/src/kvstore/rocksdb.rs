//! The embedded RocksDB driver (the default).
//!
//! One database per directory, one column family per collection (created on first open, reopened at start-up).
//! The database is an `OptimisticTransactionDB`: [`KvStore::update`] buffers its writes in a RocksDB transaction
//! taken with a snapshot, reads keys with `GetForUpdate` so that a key read or written by the transaction and
//! changed by anyone else after its snapshot fails the commit, and maps that failure to [`KvError::Conflict`].
//! Optimistic rather than pessimistic locking because the manager's transactions are short and rarely collide,
//! and because a lock-based `TransactionDB` would make a closure that reads a key another closure holds wait
//! (or time out) instead of failing fast and retrying.
//!
//! Every write (plain or committed) is synced to the write-ahead log before it returns, so an acknowledged write
//! survives a crash of the process or of the machine.
//!
//! **Memory** is bounded for a daemon whose whole database is sector metadata: memtables of at most
//! [`WRITE_BUFFER_BYTES`] per column family and [`ALL_WRITE_BUFFERS_BYTES`] in all (a flush is forced past it),
//! and one block cache of [`BLOCK_CACHE_BYTES`] shared by every column family (RocksDB's defaults: 64 MiB
//! memtables per column family and a 32 MiB cache each), and [`OCC_LOCK_BUCKETS`] striped locks for validating
//! commits (RocksDB's default takes 40 MiB).
//!
//! **WAL recycling** (`recycle_log_file_num`) is deliberately not set. RocksDB's own `SanitizeOptions`
//! (`db_impl_open.cc`) says it is incompatible with point-in-time WAL recovery, the mode durability needs, because
//! of a bug that leaves a hole in the recovered data (rocksdb PR 7252), although the code only switches it off for
//! two other recovery modes. It would not pay either: `rpc_state_vs_noop` measured 0.351 with 4 recycled files
//! against 0.379 without, one run each on the same release build.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use ::rocksdb::{
    BlockBasedOptions, BoundColumnFamily, Cache, DBCompressionType, ErrorKind, IteratorMode, MultiThreaded,
    OptimisticTransactionDB, OptimisticTransactionDBOptions, OptimisticTransactionOptions, Options, ReadOptions,
    Transaction, WriteOptions,
};
use manager_plugin::kv::{self, Db, Entry, KvError, KvIter, KvStore, Txn, TxnFn};

use super::{PagedIter, backend_error, read_only_error, successor};

type TxnDb = OptimisticTransactionDB<MultiThreaded>;

/// The memtable size of one column family (the data of a column family is flushed to disk past it).
const WRITE_BUFFER_BYTES: usize = 8 << 20;

/// The memtables of every column family together.
const ALL_WRITE_BUFFERS_BYTES: usize = 16 << 20;

/// The striped locks that validate optimistic commits. RocksDB's default, 1 << 20 mutexes, is 40 MiB allocated and
/// written at open: more than the rest of the daemon's resident memory. Commits come from the one group writer
/// and a few background threads (cursors, GC, multi-sector changes), so 1,024 stripes rarely collide, and a
/// collision only makes two validations take turns.
const OCC_LOCK_BUCKETS: u32 = 1024;

/// The block cache shared by every column family.
const BLOCK_CACHE_BYTES: usize = 8 << 20;

/// An embedded RocksDB database: the manager's default KV driver.
///
/// Dropping the last handle (the `RocksDb` and every collection opened from it) closes the database;
/// [`Db::close`] does it explicitly and makes later calls fail with [`KvError::Closed`].
pub struct RocksDb {
    shared: Arc<Shared>,
}

/// State shared by the database handle, its collections and their iterators.
struct Shared {
    dir: PathBuf,
    /// `None` once closed. Operations clone the `Arc` so that `close` never waits for them.
    db: RwLock<Option<Arc<TxnDb>>>,
    /// Names of the column families that exist; also serialises their creation.
    collections: Mutex<BTreeSet<String>>,
    write_opts: WriteOptions,
    /// The one block cache of every column family.
    cache: Cache,
}

impl RocksDb {
    /// Opens (creating if needed) the database in `dir`, with every collection it already holds.
    pub fn open(dir: &Path) -> Result<RocksDb, KvError> {
        let open_error =
            |err: &dyn std::fmt::Display| KvError::Backend(format!("open RocksDB in {}: {err}", dir.display()));
        std::fs::create_dir_all(dir).map_err(|err| open_error(&err))?;
        let names = existing_column_families(dir).map_err(|err| open_error(&err))?;
        let cache = Cache::new_lru_cache(BLOCK_CACHE_BYTES);
        let descriptors =
            names.iter().map(|name| ::rocksdb::ColumnFamilyDescriptor::new(name, column_family_options(&cache)));
        let db = TxnDb::open_cf_descriptors_with_otxn_db_options(
            &db_options(&cache),
            &validation_options(),
            dir,
            descriptors,
        )
        .map_err(|err| open_error(&err))?;
        let mut write_opts = WriteOptions::default();
        write_opts.set_sync(true);
        let shared = Shared {
            dir: dir.to_path_buf(),
            db: RwLock::new(Some(Arc::new(db))),
            collections: Mutex::new(names.into_iter().collect()),
            write_opts,
            cache,
        };
        Ok(RocksDb { shared: Arc::new(shared) })
    }

    /// The directory the database lives in.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }
}

/// How commits are validated: in parallel, under [`OCC_LOCK_BUCKETS`] striped locks.
fn validation_options() -> OptimisticTransactionDBOptions {
    let mut opts = OptimisticTransactionDBOptions::new();
    opts.set_occ_lock_buckets(OCC_LOCK_BUCKETS);
    opts
}

fn db_options(cache: &Cache) -> Options {
    let mut opts = column_family_options(cache);
    opts.set_db_write_buffer_size(ALL_WRITE_BUFFERS_BYTES);
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_keep_log_file_num(4);
    // Benchmark hook (`bench/`): how often RocksDB dumps its statistics (commit groups, WAL syncs) into its LOG;
    // RocksDB's default (600 s) unless this variable names another period in seconds.
    if let Some(secs) = std::env::var("DAMOCLES_ROCKSDB_STATS_DUMP_SEC").ok().and_then(|v| v.parse::<u32>().ok()) {
        opts.set_stats_dump_period_sec(secs);
    }
    opts
}

fn column_family_options(cache: &Cache) -> Options {
    let mut opts = Options::default();
    opts.set_write_buffer_size(WRITE_BUFFER_BYTES);
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(cache);
    opts.set_block_based_table_factory(&table);
    // The crate is built without compression libraries; say so instead of relying on RocksDB's fallback.
    opts.set_compression_type(DBCompressionType::None);
    // Keep enough memtable history to validate optimistic transactions (`-1`: the whole write buffer) instead of
    // failing them with `TryAgain`; RocksDB only does this by itself for column families present at open.
    opts.set_max_write_buffer_size_to_maintain(-1);
    opts
}

/// The column families of the database in `dir`, or just the default one for a new database.
fn existing_column_families(dir: &Path) -> Result<Vec<String>, ::rocksdb::Error> {
    if dir.join("CURRENT").exists() {
        TxnDb::list_cf(&Options::default(), dir)
    } else {
        Ok(vec![::rocksdb::DEFAULT_COLUMN_FAMILY_NAME.to_string()])
    }
}

impl Shared {
    fn db(&self) -> Result<Arc<TxnDb>, KvError> {
        let guard = self.db.read().unwrap_or_else(PoisonError::into_inner);
        guard.clone().ok_or(KvError::Closed)
    }

    fn ensure_column_family(&self, name: &str) -> Result<(), KvError> {
        let db = self.db()?;
        let mut collections = self.collections.lock().unwrap_or_else(PoisonError::into_inner);
        if !collections.contains(name) {
            db.create_cf(name, &column_family_options(&self.cache))
                .map_err(|err| backend_error("create column family", name, err))?;
            collections.insert(name.to_string());
        }
        Ok(())
    }
}

impl Db for RocksDb {
    fn run(&self) -> Result<(), KvError> {
        self.shared.db().map(drop)
    }

    fn close(&self) -> Result<(), KvError> {
        let taken = self.shared.db.write().unwrap_or_else(PoisonError::into_inner).take();
        let Some(db) = taken else { return Ok(()) };
        let names = self.shared.collections.lock().unwrap_or_else(PoisonError::into_inner).clone();
        for name in &names {
            if let Some(cf) = db.cf_handle(name) {
                db.flush_cf(&cf).map_err(|err| backend_error("flush", name, err))?;
            }
        }
        db.flush_wal(true).map_err(|err| KvError::Backend(format!("sync RocksDB WAL: {err}")))
        // The database closes when `db` drops: here, or when the last in-flight operation ends.
    }

    fn open_collection(&self, name: &str) -> Result<Box<dyn KvStore>, KvError> {
        self.shared.ensure_column_family(name)?;
        Ok(Box::new(RocksCollection { shared: Arc::clone(&self.shared), name: name.to_string() }))
    }
}

/// One collection: a column family.
struct RocksCollection {
    shared: Arc<Shared>,
    name: String,
}

impl RocksCollection {
    /// The paged scan of `prefix`, from its start or after the key `after`.
    fn paged_scan(&self, prefix: &[u8], after: Option<&[u8]>) -> Result<Box<dyn KvIter>, KvError> {
        self.shared.db()?;
        let collection = RocksCollection { shared: Arc::clone(&self.shared), name: self.name.clone() };
        let scanned = prefix.to_vec();
        let fetch = move |after: Option<&[u8]>, limit| collection.scan_page(&scanned, after, limit);
        Ok(Box::new(PagedIter::starting_after(fetch, prefix, after)))
    }

    fn cf<'a>(&self, db: &'a TxnDb) -> Result<Arc<BoundColumnFamily<'a>>, KvError> {
        db.cf_handle(&self.name).ok_or_else(|| backend_error("look up", &self.name, "the column family is missing"))
    }

    fn err(&self, op: &str) -> impl Fn(::rocksdb::Error) -> KvError + '_ {
        let op = op.to_string();
        move |err| backend_error(&op, &self.name, err)
    }

    /// Runs `f` in a transaction on a snapshot; commits it when `writable` and `f` returned `Ok`.
    fn transact(&self, writable: bool, f: TxnFn<'_>) -> Result<(), KvError> {
        let db = self.shared.db()?;
        let cf = self.cf(&db)?;
        let mut txn_opts = OptimisticTransactionOptions::default();
        txn_opts.set_snapshot(true);
        let txn = db.transaction_opt(&self.shared.write_opts, &txn_opts);
        f(&RocksTxn { txn: &txn, cf: &cf, name: &self.name, writable })?;
        if !writable {
            return Ok(());
        }
        txn.commit().map_err(|err| match err.kind() {
            ErrorKind::Busy | ErrorKind::TryAgain => KvError::Conflict,
            _ => backend_error("commit transaction", &self.name, err),
        })
    }
}

impl KvStore for RocksCollection {
    fn get(&self, key: &[u8]) -> Result<Vec<u8>, KvError> {
        let db = self.shared.db()?;
        db.get_cf(&self.cf(&db)?, key).map_err(self.err("get"))?.ok_or(KvError::KeyNotFound)
    }

    fn peek(&self, key: &[u8], f: &mut dyn FnMut(&[u8])) -> Result<(), KvError> {
        let db = self.shared.db()?;
        let value = db.get_pinned_cf(&self.cf(&db)?, key).map_err(self.err("peek"))?;
        f(&value.ok_or(KvError::KeyNotFound)?);
        Ok(())
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), KvError> {
        let db = self.shared.db()?;
        db.put_cf_opt(&self.cf(&db)?, key, value, &self.shared.write_opts).map_err(self.err("put"))
    }

    fn del(&self, key: &[u8]) -> Result<(), KvError> {
        let db = self.shared.db()?;
        db.delete_cf_opt(&self.cf(&db)?, key, &self.shared.write_opts).map_err(self.err("delete"))
    }

    fn scan(&self, prefix: &[u8]) -> Result<Box<dyn KvIter>, KvError> {
        self.paged_scan(prefix, None)
    }

    fn scan_after(&self, prefix: &[u8], after: &[u8]) -> Result<Option<Box<dyn KvIter>>, KvError> {
        self.paged_scan(prefix, Some(after)).map(Some)
    }

    fn view(&self, f: TxnFn<'_>) -> Result<(), KvError> {
        self.transact(false, f)
    }

    fn update(&self, f: TxnFn<'_>) -> Result<(), KvError> {
        self.transact(true, f)
    }

    fn need_retry_transactions(&self) -> bool {
        true
    }
}

impl RocksCollection {
    /// Up to `limit` entries starting with `prefix`, after the key `after`, from the latest committed state.
    fn scan_page(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Result<Vec<Entry>, KvError> {
        let db = self.shared.db()?;
        let cf = self.cf(&db)?;
        let start = after.map_or_else(|| prefix.to_vec(), successor);
        let iter = db.iterator_cf_opt(&cf, bounded_read_options(&start, prefix), from(&start));
        collect_prefixed(iter, prefix, limit).map_err(self.err("scan"))
    }
}

/// Read options that stop iteration at the end of `prefix`'s range, starting from `start`.
fn bounded_read_options(start: &[u8], prefix: &[u8]) -> ReadOptions {
    let mut opts = ReadOptions::default();
    opts.set_iterate_lower_bound(start.to_vec());
    if let Some(end) = kv::prefix_end(prefix) {
        opts.set_iterate_upper_bound(end);
    }
    opts
}

fn from(start: &[u8]) -> IteratorMode<'_> {
    IteratorMode::From(start, ::rocksdb::Direction::Forward)
}

/// Up to `limit` entries of `iter` while their keys start with `prefix`.
fn collect_prefixed<I>(iter: I, prefix: &[u8], limit: usize) -> Result<Vec<Entry>, ::rocksdb::Error>
where
    I: Iterator<Item = Result<(Box<[u8]>, Box<[u8]>), ::rocksdb::Error>>,
{
    let mut entries = Vec::new();
    for item in iter.take(limit) {
        let (key, value) = item?;
        if !key.starts_with(prefix) {
            break;
        }
        entries.push((key.into_vec(), value.into_vec()));
    }
    Ok(entries)
}

/// A transaction handle: reads at the transaction's snapshot plus its own writes.
struct RocksTxn<'a> {
    txn: &'a Transaction<'a, TxnDb>,
    cf: &'a Arc<BoundColumnFamily<'a>>,
    name: &'a str,
    writable: bool,
}

impl RocksTxn<'_> {
    /// Reads `key`; in a writable transaction the key is tracked so that a concurrent change fails the commit.
    fn read(&self, op: &str, key: &[u8], f: &mut dyn FnMut(&[u8])) -> Result<(), KvError> {
        let snapshot = self.txn.snapshot();
        let mut opts = ReadOptions::default();
        opts.set_snapshot(&snapshot);
        let value = if self.writable {
            self.txn.get_pinned_for_update_cf_opt(self.cf, key, true, &opts)
        } else {
            self.txn.get_pinned_cf_opt(self.cf, key, &opts)
        };
        let value = value.map_err(|err| backend_error(op, self.name, err))?;
        f(&value.ok_or(KvError::KeyNotFound)?);
        Ok(())
    }

    fn check_writable(&self, op: &str) -> Result<(), KvError> {
        if self.writable { Ok(()) } else { Err(read_only_error(op, self.name)) }
    }
}

impl Txn for RocksTxn<'_> {
    fn get(&self, key: &[u8]) -> Result<Vec<u8>, KvError> {
        let mut out = Vec::new();
        self.read("get in transaction", key, &mut |value| out = value.to_vec())?;
        Ok(out)
    }

    fn peek(&self, key: &[u8], f: &mut dyn FnMut(&[u8])) -> Result<(), KvError> {
        self.read("peek in transaction", key, f)
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), KvError> {
        self.check_writable("put")?;
        self.txn.put_cf(self.cf, key, value).map_err(|err| backend_error("put in transaction", self.name, err))
    }

    fn del(&self, key: &[u8]) -> Result<(), KvError> {
        self.check_writable("delete")?;
        self.txn.delete_cf(self.cf, key).map_err(|err| backend_error("delete in transaction", self.name, err))
    }

    /// Scanned keys are read at the snapshot but not tracked for conflicts (RocksDB has no range tracking):
    /// read a key with [`Txn::get`] when the commit must depend on it.
    fn scan(&self, prefix: &[u8]) -> Result<Vec<Entry>, KvError> {
        let snapshot = self.txn.snapshot();
        let mut opts = bounded_read_options(prefix, prefix);
        opts.set_snapshot(&snapshot);
        let iter = self.txn.iterator_cf_opt(self.cf, opts, from(prefix));
        collect_prefixed(iter, prefix, usize::MAX).map_err(|err| backend_error("scan in transaction", self.name, err))
    }
}
