//! Test fixture: a small KVStore that keeps every collection in a file (`<Meta dir>/<collection>.kv`, rewritten
//! whole and renamed into place on every committed write), so its data outlives its process; every call first
//! checks the crash trigger (`crash-trigger`), and a committed sector change (a commit writing an `outbox/` key,
//! `manager/src/sectors/keys.rs`) checks the named point `after-commit` (the write is on disk, the reply never
//! leaves: a commit whose outcome the manager cannot know).
//!
//! Writers of a collection take turns (one lock), so an update never conflicts.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use manager_plugin::PluginContext;
use manager_plugin::kv::{Db, Entry, KvError, KvIter, KvStore, Meta, Txn, TxnFn};

const NAME: &str = "crashy-kv";

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

/// Remembers the plugins dir for the trigger.
pub fn init(ctx: &PluginContext) -> Result<(), Infallible> {
    crash_trigger::init(ctx);
    Ok(())
}

/// The database in the directory `Meta` key `dir`.
pub fn open(meta: &Meta) -> Result<CrashyDb, KvError> {
    crash_trigger::check(NAME);
    let dir = meta.get("dir").ok_or_else(|| KvError::Backend("crashy-kv needs Meta key `dir`".into()))?;
    std::fs::create_dir_all(dir).map_err(|e| KvError::Backend(format!("{dir}: {e}")))?;
    Ok(CrashyDb { dir: PathBuf::from(dir), collections: Mutex::default() })
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The database: one file per collection.
pub struct CrashyDb {
    dir: PathBuf,
    collections: Mutex<HashMap<String, Arc<Collection>>>,
}

impl Db for CrashyDb {
    fn run(&self) -> Result<(), KvError> {
        crash_trigger::check(NAME);
        Ok(())
    }
    fn close(&self) -> Result<(), KvError> {
        Ok(())
    }
    fn open_collection(&self, name: &str) -> Result<Box<dyn KvStore>, KvError> {
        crash_trigger::check(NAME);
        let mut collections = lock(&self.collections);
        if let Some(c) = collections.get(name) {
            return Ok(Box::new(Handle(Arc::clone(c))));
        }
        let file = self.dir.join(format!("{name}.kv"));
        let collection = Arc::new(Collection { map: Mutex::new(load(&file)?), file });
        collections.insert(name.to_string(), Arc::clone(&collection));
        Ok(Box::new(Handle(collection)))
    }
}

struct Collection {
    file: PathBuf,
    map: Mutex<Map>,
}

/// Reads a collection file: records of (u32 key length, key, u32 value length, value), little-endian.
fn load(file: &Path) -> Result<Map, KvError> {
    let bytes = match std::fs::read(file) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Map::new()),
        Err(e) => return Err(KvError::Backend(format!("{}: {e}", file.display()))),
    };
    let corrupt = || KvError::Backend(format!("{}: truncated record", file.display()));
    let mut map = Map::new();
    let mut rest = bytes.as_slice();
    let take = |rest: &mut &[u8]| -> Result<Vec<u8>, KvError> {
        let (len, tail) = rest.split_first_chunk::<4>().ok_or_else(corrupt)?;
        let len = u32::from_le_bytes(*len) as usize;
        let (item, tail) = tail.split_at_checked(len).ok_or_else(corrupt)?;
        *rest = tail;
        Ok(item.to_vec())
    };
    while !rest.is_empty() {
        let key = take(&mut rest)?;
        let value = take(&mut rest)?;
        map.insert(key, value);
    }
    Ok(map)
}

/// Writes `map` to a temporary file and renames it over the collection's file.
fn save(file: &Path, map: &Map) -> Result<(), KvError> {
    let failed = |e: std::io::Error| KvError::Backend(format!("{}: {e}", file.display()));
    let mut bytes = Vec::new();
    for (key, value) in map {
        for item in [key, value] {
            bytes.extend_from_slice(&(item.len() as u32).to_le_bytes());
            bytes.extend_from_slice(item);
        }
    }
    let temp = file.with_extension("kv.tmp");
    let mut out = std::fs::File::create(&temp).map_err(failed)?;
    out.write_all(&bytes).map_err(failed)?;
    drop(out);
    std::fs::rename(&temp, file).map_err(failed)
}

struct Handle(Arc<Collection>);

/// A transaction: reads see the committed map under the writers' lock plus its own buffered writes.
struct Pending<'a> {
    map: &'a Map,
    writes: Mutex<BTreeMap<Vec<u8>, Option<Vec<u8>>>>,
    read_only: bool,
}

impl Txn for Pending<'_> {
    fn get(&self, key: &[u8]) -> Result<Vec<u8>, KvError> {
        match lock(&self.writes).get(key) {
            Some(Some(v)) => Ok(v.clone()),
            Some(None) => Err(KvError::KeyNotFound),
            None => self.map.get(key).cloned().ok_or(KvError::KeyNotFound),
        }
    }
    fn peek(&self, key: &[u8], f: &mut dyn FnMut(&[u8])) -> Result<(), KvError> {
        f(&self.get(key)?);
        Ok(())
    }
    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), KvError> {
        if self.read_only {
            return Err(KvError::Backend("a write in a view".into()));
        }
        lock(&self.writes).insert(key.to_vec(), Some(value.to_vec()));
        Ok(())
    }
    fn del(&self, key: &[u8]) -> Result<(), KvError> {
        if self.read_only {
            return Err(KvError::Backend("a delete in a view".into()));
        }
        lock(&self.writes).insert(key.to_vec(), None);
        Ok(())
    }
    fn scan(&self, prefix: &[u8]) -> Result<Vec<Entry>, KvError> {
        let mut merged: Map =
            self.map.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(k, v)| (k.clone(), v.clone())).collect();
        for (key, value) in lock(&self.writes).iter().filter(|(k, _)| k.starts_with(prefix)) {
            match value {
                Some(v) => merged.insert(key.clone(), v.clone()),
                None => merged.remove(key),
            };
        }
        Ok(merged.into_iter().collect())
    }
}

impl Handle {
    fn transaction(&self, f: TxnFn<'_>, read_only: bool) -> Result<(), KvError> {
        crash_trigger::check(NAME);
        let mut map = lock(&self.0.map);
        let pending = Pending { map: &map, writes: Mutex::default(), read_only };
        f(&pending)?;
        let writes = std::mem::take(&mut *lock(&pending.writes));
        if writes.is_empty() {
            return Ok(());
        }
        let sector_change = writes.keys().any(|k| k.starts_with(b"outbox/"));
        let mut next = map.clone();
        for (key, value) in writes {
            match value {
                Some(v) => next.insert(key, v),
                None => next.remove(&key),
            };
        }
        save(&self.0.file, &next)?;
        *map = next;
        if sector_change {
            crash_trigger::check_at(NAME, "after-commit");
        }
        Ok(())
    }
}

impl KvStore for Handle {
    fn get(&self, key: &[u8]) -> Result<Vec<u8>, KvError> {
        crash_trigger::check(NAME);
        lock(&self.0.map).get(key).cloned().ok_or(KvError::KeyNotFound)
    }
    fn peek(&self, key: &[u8], f: &mut dyn FnMut(&[u8])) -> Result<(), KvError> {
        f(&self.get(key)?);
        Ok(())
    }
    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), KvError> {
        self.transaction(&mut |txn| txn.put(key, value), false)
    }
    fn del(&self, key: &[u8]) -> Result<(), KvError> {
        self.transaction(&mut |txn| txn.del(key), false)
    }
    fn scan(&self, prefix: &[u8]) -> Result<Box<dyn KvIter>, KvError> {
        crash_trigger::check(NAME);
        let map = lock(&self.0.map);
        let entries: Vec<Entry> =
            map.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(k, v)| (k.clone(), v.clone())).collect();
        Ok(Box::new(Entries(entries.into_iter())))
    }
    fn view(&self, f: TxnFn<'_>) -> Result<(), KvError> {
        self.transaction(f, true)
    }
    fn update(&self, f: TxnFn<'_>) -> Result<(), KvError> {
        self.transaction(f, false)
    }
    fn need_retry_transactions(&self) -> bool {
        false
    }
}

struct Entries(std::vec::IntoIter<Entry>);

impl KvIter for Entries {
    fn next_entry(&mut self) -> Result<Option<Entry>, KvError> {
        Ok(self.0.next())
    }
}
