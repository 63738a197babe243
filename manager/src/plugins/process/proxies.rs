//! The SDK traits implemented over a process plugin's connection: the manager's code holds these exactly as it
//! holds a `.so` plugin's objects. Dropping a proxy releases the plugin's object. A database, collection, store
//! or handler follows the plugin across restarts ([`Bound`]); an iterator, an object being read or a transaction
//! belongs to the process it was started on and fails once that process is gone.
//!
//! A transaction (`KvStore::update`/`view`) runs its body here, in the manager: the plugin opens the transaction
//! and sends `TxnOpen`; each `Txn` call of the body is an `Answer::TxnOp` answered by a `TxnReply`; the body's
//! result goes back as `TxnEnd`, and the plugin commits (or retries, sending `TxnOpen` again) and replies.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use manager_plugin::filestore::{InstanceInfo, ObjectReader, ObjectStat, Store, StoreConfig};
use manager_plugin::jsonrpc::JsonRpcHandler;
use manager_plugin::kv::{Db, Entry, KvIter, KvStore, Meta, Txn, TxnFn};
use manager_plugin::process::CHUNK;
use manager_plugin::process::wire::{Answer, Blob, Call, Callback, Handle, TxnOp, Value, WireError};
use manager_plugin::{KvError, PluginError, RpcError, StoreError};

use super::ProcessPlugin;
use super::bound::Bound;
use super::connection::{Connection, Incoming, PendingCall, describe};

/// A call's error in the KV error type.
pub fn kv_error(error: WireError) -> KvError {
    match error {
        WireError::Kv(e) => e,
        other => KvError::Backend(describe(&other)),
    }
}

/// A call's error in the FileStore error type.
pub fn store_error(error: WireError) -> StoreError {
    match error {
        WireError::Store(e) => e,
        other => StoreError::Io(describe(&other)),
    }
}

/// A call's error in the lifecycle error type.
pub fn plugin_error(error: WireError) -> PluginError {
    match error {
        WireError::Plugin(e) => e,
        other => PluginError::Failed(describe(&other)),
    }
}

/// A call's error in the JSON-RPC error type.
pub fn rpc_error(error: WireError) -> RpcError {
    match error {
        WireError::Rpc(e) => e,
        other => RpcError::new(RpcError::INTERNAL, describe(&other)),
    }
}

fn unexpected(value: Value) -> WireError {
    WireError::Protocol(format!("unexpected reply {value:?}"))
}

/// The handle in a reply.
pub fn handle(value: Value) -> Result<Handle, WireError> {
    match value {
        Value::Handle(h) => Ok(h),
        other => Err(unexpected(other)),
    }
}

fn unit(value: Value) -> Result<(), WireError> {
    match value {
        Value::Unit => Ok(()),
        other => Err(unexpected(other)),
    }
}

fn bytes(value: Value) -> Result<Vec<u8>, WireError> {
    match value {
        Value::Bytes(Blob(b)) => Ok(b),
        other => Err(unexpected(other)),
    }
}

fn entries(value: Value) -> Result<(Vec<Entry>, bool), WireError> {
    match value {
        Value::Entries { entries, done } => Ok((entries.into_iter().map(|(k, v)| (k.0, v.0)).collect(), done)),
        other => Err(unexpected(other)),
    }
}

/// Releases the plugin's object when the proxy is dropped.
struct Held {
    conn: Arc<Connection>,
    handle: Handle,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.conn.release(self.handle);
    }
}

/// A KVStore plugin's database.
pub struct RemoteDb {
    db: Arc<Bound>,
    /// `run` was called: a re-opened database is run too.
    ran: Arc<AtomicBool>,
}

impl RemoteDb {
    /// Opens the database with `meta` on `plugin` (and again, with the same `meta`, on every restarted process).
    pub fn open(plugin: Arc<ProcessPlugin>, meta: Meta) -> Result<RemoteDb, WireError> {
        let ran = Arc::new(AtomicBool::new(false));
        let ran_here = Arc::clone(&ran);
        let opener = Box::new(move |generation: &Arc<super::generation::Generation>| {
            let db = generation.conn.call(Call::OpenDb { meta: meta.clone() }).and_then(handle)?;
            if ran_here.load(Ordering::Acquire) {
                generation.conn.call(Call::DbRun { db }).and_then(unit)?;
            }
            Ok(db)
        });
        Ok(RemoteDb { db: Bound::open(plugin, opener, true)?, ran })
    }
}

impl Db for RemoteDb {
    fn run(&self) -> Result<(), KvError> {
        let (generation, db) = self.db.get().map_err(kv_error)?;
        generation.conn.call(Call::DbRun { db }).and_then(unit).map_err(kv_error)?;
        self.ran.store(true, Ordering::Release);
        Ok(())
    }
    fn close(&self) -> Result<(), KvError> {
        let (generation, db) = self.db.get().map_err(kv_error)?;
        generation.conn.call(Call::DbClose { db }).and_then(unit).map_err(kv_error)
    }
    fn open_collection(&self, name: &str) -> Result<Box<dyn KvStore>, KvError> {
        let (db, name) = (Arc::clone(&self.db), name.to_string());
        let opener = Box::new(move |generation: &Arc<super::generation::Generation>| {
            let db = db.on(generation)?;
            generation.conn.call(Call::OpenCollection { db, name: name.clone() }).and_then(handle)
        });
        let plugin = Arc::clone(self.db.plugin());
        Ok(Box::new(RemoteKvStore(Bound::open(plugin, opener, true).map_err(kv_error)?)))
    }
}

struct RemoteKvStore(Arc<Bound>);

impl RemoteKvStore {
    fn call(&self, call: impl FnOnce(Handle) -> Call) -> Result<Value, KvError> {
        let (generation, coll) = self.0.get().map_err(kv_error)?;
        generation.conn.call(call(coll)).map_err(kv_error)
    }

    /// Runs a transaction whose body is `f` (see the module docs).
    fn transaction(&self, call: impl FnOnce(Handle) -> Call, f: TxnFn<'_>) -> Result<(), KvError> {
        let (generation, coll) = self.0.get().map_err(kv_error)?;
        let pending = generation.conn.start_call(call(coll)).map_err(kv_error)?;
        loop {
            match pending.next().map_err(kv_error)? {
                Incoming::Callback(Callback::TxnOpen) => {
                    let result = f(&RemoteTxn { call: &pending });
                    pending.answer(Answer::TxnEnd(result)).map_err(kv_error)?;
                }
                Incoming::Reply(reply) => return pending.finish(reply).and_then(unit).map_err(kv_error),
                Incoming::Callback(other) => {
                    let error = WireError::Protocol(format!("unexpected callback {other:?} in a transaction"));
                    return pending.finish(Err(error)).and_then(unit).map_err(kv_error);
                }
            }
        }
    }
}

impl KvStore for RemoteKvStore {
    fn get(&self, key: &[u8]) -> Result<Vec<u8>, KvError> {
        self.call(|coll| Call::Get { coll, key: Blob(key.to_vec()) }).and_then(|v| bytes(v).map_err(kv_error))
    }
    fn peek(&self, key: &[u8], f: &mut dyn FnMut(&[u8])) -> Result<(), KvError> {
        f(&self.get(key)?);
        Ok(())
    }
    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), KvError> {
        let call = |coll| Call::Put { coll, key: Blob(key.to_vec()), value: Blob(value.to_vec()) };
        self.call(call).and_then(|v| unit(v).map_err(kv_error))
    }
    fn del(&self, key: &[u8]) -> Result<(), KvError> {
        self.call(|coll| Call::Del { coll, key: Blob(key.to_vec()) }).and_then(|v| unit(v).map_err(kv_error))
    }
    fn scan(&self, prefix: &[u8]) -> Result<Box<dyn KvIter>, KvError> {
        let (generation, coll) = self.0.get().map_err(kv_error)?;
        let iter = generation.conn.call(Call::Scan { coll, prefix: Blob(prefix.to_vec()) }).and_then(handle);
        Ok(Box::new(RemoteIter {
            held: Held { conn: Arc::clone(&generation.conn), handle: iter.map_err(kv_error)? },
            buffer: VecDeque::new(),
            done: false,
        }))
    }
    fn view(&self, f: TxnFn<'_>) -> Result<(), KvError> {
        self.transaction(|coll| Call::View { coll }, f)
    }
    fn update(&self, f: TxnFn<'_>) -> Result<(), KvError> {
        self.transaction(|coll| Call::Update { coll }, f)
    }
    fn need_retry_transactions(&self) -> bool {
        matches!(self.call(|coll| Call::NeedRetry { coll }), Ok(Value::Bool(true)))
    }
}

/// How many entries one `IterNext` fetches.
const ITER_BATCH: u32 = 256;

struct RemoteIter {
    held: Held,
    buffer: VecDeque<Entry>,
    done: bool,
}

impl KvIter for RemoteIter {
    fn next_entry(&mut self) -> Result<Option<Entry>, KvError> {
        if self.buffer.is_empty() && !self.done {
            let value = self.held.conn.call(Call::IterNext { iter: self.held.handle, max: ITER_BATCH });
            let (batch, done) = value.and_then(entries).map_err(kv_error)?;
            self.buffer.extend(batch);
            self.done = done;
        }
        Ok(self.buffer.pop_front())
    }
}

/// The plugin's transaction, as the manager's body sees it.
struct RemoteTxn<'a> {
    call: &'a PendingCall,
}

impl RemoteTxn<'_> {
    fn op(&self, op: TxnOp) -> Result<Value, KvError> {
        self.call.answer(Answer::TxnOp(op)).map_err(kv_error)?;
        match self.call.next().map_err(kv_error)? {
            Incoming::Callback(Callback::TxnReply(result)) => result,
            other => Err(KvError::Backend(format!("unexpected message in a transaction: {other:?}"))),
        }
    }
}

impl Txn for RemoteTxn<'_> {
    fn get(&self, key: &[u8]) -> Result<Vec<u8>, KvError> {
        self.op(TxnOp::Get { key: Blob(key.to_vec()) }).and_then(|v| bytes(v).map_err(kv_error))
    }
    fn peek(&self, key: &[u8], f: &mut dyn FnMut(&[u8])) -> Result<(), KvError> {
        f(&self.get(key)?);
        Ok(())
    }
    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), KvError> {
        self.op(TxnOp::Put { key: Blob(key.to_vec()), value: Blob(value.to_vec()) })
            .and_then(|v| unit(v).map_err(kv_error))
    }
    fn del(&self, key: &[u8]) -> Result<(), KvError> {
        self.op(TxnOp::Del { key: Blob(key.to_vec()) }).and_then(|v| unit(v).map_err(kv_error))
    }
    fn scan(&self, prefix: &[u8]) -> Result<Vec<Entry>, KvError> {
        self.op(TxnOp::Scan { prefix: Blob(prefix.to_vec()) })
            .and_then(|v| entries(v).map(|(e, _)| e).map_err(kv_error))
    }
}

/// A FileStore plugin's store instance; its infallible methods answer what the plugin said when it was opened.
pub struct RemoteStore {
    store: Arc<Bound>,
    type_name: String,
    version: String,
    instance: String,
    config: StoreConfig,
}

/// What an `OpenStore` reply says: the handle, type name, version, instance name and effective config.
type Opened = (Handle, String, String, String, StoreConfig);

fn opened(value: Value) -> Result<Opened, WireError> {
    match value {
        Value::Store { handle, type_name, version, instance, config } => {
            Ok((handle, type_name, version, instance, config))
        }
        other => Err(unexpected(other)),
    }
}

impl RemoteStore {
    /// Opens the store `config` on `plugin` (and again, with the same config, on every restarted process).
    pub fn open(plugin: Arc<ProcessPlugin>, config: StoreConfig) -> Result<RemoteStore, WireError> {
        let (generation, value) = plugin.call_serving(|| Call::OpenStore { config: config.clone() })?;
        let (first, type_name, version, instance, effective) = opened(value)?;
        let reopen = std::sync::Mutex::new(Some((Arc::clone(&generation), first)));
        let opener = Box::new(move |generation: &Arc<super::generation::Generation>| {
            // The first open's handle, then a new open on every later generation.
            let mut reopen = reopen.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((on, handle)) = reopen.take()
                && Arc::ptr_eq(&on, generation)
            {
                return Ok(handle);
            }
            generation.conn.call(Call::OpenStore { config: config.clone() }).and_then(opened).map(|o| o.0)
        });
        let store = Bound::open(plugin, opener, true)?;
        Ok(RemoteStore { store, type_name, version, instance, config: effective })
    }

    fn call(&self, call: impl FnOnce(Handle) -> Call) -> Result<Value, StoreError> {
        let (generation, store) = self.store.get().map_err(store_error)?;
        generation.conn.call(call(store)).map_err(store_error)
    }
}

impl Store for RemoteStore {
    fn type_name(&self) -> String {
        self.type_name.clone()
    }
    fn version(&self) -> String {
        self.version.clone()
    }
    fn instance(&self) -> String {
        self.instance.clone()
    }
    fn instance_config(&self) -> StoreConfig {
        self.config.clone()
    }
    fn instance_info(&self) -> Result<InstanceInfo, StoreError> {
        match self.call(|store| Call::InstanceInfo { store })? {
            Value::Info(info) => Ok(info),
            other => Err(store_error(unexpected(other))),
        }
    }
    fn get(&self, path: &str) -> Result<ObjectReader, StoreError> {
        let (generation, store) = self.store.get().map_err(store_error)?;
        let stream = generation.conn.call(Call::StoreGet { store, path: path.to_string() }).and_then(handle);
        let held = Held { conn: Arc::clone(&generation.conn), handle: stream.map_err(store_error)? };
        Ok(Box::new(RemoteReader { held, done: false }))
    }
    fn del(&self, path: &str) -> Result<(), StoreError> {
        self.call(|store| Call::StoreDel { store, path: path.to_string() }).and_then(|v| unit(v).map_err(store_error))
    }
    fn stat(&self, path: &str) -> Result<ObjectStat, StoreError> {
        match self.call(|store| Call::StoreStat { store, path: path.to_string() })? {
            Value::Stat(stat) => Ok(stat),
            other => Err(store_error(unexpected(other))),
        }
    }
    fn put(&self, path: &str, reader: &mut dyn Read) -> Result<u64, StoreError> {
        let (generation, store) = self.store.get().map_err(store_error)?;
        let pending =
            generation.conn.start_call(Call::StorePut { store, path: path.to_string() }).map_err(store_error)?;
        let mut buf = Vec::new();
        loop {
            match pending.next().map_err(store_error)? {
                Incoming::Callback(Callback::NeedBytes { max }) => {
                    buf.resize((max as usize).clamp(1, CHUNK), 0);
                    let answer = loop {
                        match reader.read(&mut buf) {
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                            Ok(n) => break Ok(Blob(buf[..n].to_vec())),
                            Err(e) => break Err(e.to_string()),
                        }
                    };
                    pending.answer(Answer::Bytes(answer)).map_err(store_error)?;
                }
                Incoming::Reply(reply) => {
                    return match pending.finish(reply).map_err(store_error)? {
                        Value::Size(n) => Ok(n),
                        other => Err(store_error(unexpected(other))),
                    };
                }
                Incoming::Callback(other) => {
                    let error = WireError::Protocol(format!("unexpected callback {other:?} in a put"));
                    return Err(store_error(pending.finish(Err(error.clone())).err().unwrap_or(error)));
                }
            }
        }
    }
    fn full_path(&self, path: &str) -> Result<PathBuf, StoreError> {
        match self.call(|store| Call::FullPath { store, path: path.to_string() })? {
            Value::Text(p) => Ok(PathBuf::from(p)),
            other => Err(store_error(unexpected(other))),
        }
    }
}

/// An object being read from a FileStore plugin, a chunk per call.
struct RemoteReader {
    held: Held,
    done: bool,
}

impl Read for RemoteReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        let max = buf.len().min(CHUNK) as u32;
        let value = self.held.conn.call(Call::Read { stream: self.held.handle, max });
        let chunk = value.and_then(bytes).map_err(|e| io::Error::other(describe(&e)))?;
        if chunk.len() > buf.len() {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "the plugin sent more bytes than asked for"));
        }
        buf[..chunk.len()].copy_from_slice(&chunk);
        self.done = chunk.is_empty();
        Ok(chunk.len())
    }
}

/// A RegisterJsonRpc plugin's handler.
pub struct RemoteHandler {
    handler: Arc<Bound>,
    methods: Vec<String>,
}

impl RemoteHandler {
    /// Builds the handler on `plugin` (and again on every restarted process); returns its namespace too.
    pub fn open(plugin: Arc<ProcessPlugin>) -> Result<(String, RemoteHandler), WireError> {
        let (generation, value) = plugin.call_serving(|| Call::RpcHandler)?;
        let (namespace, methods) = match value {
            Value::Handler { namespace, methods } => (namespace, methods),
            other => return Err(unexpected(other)),
        };
        let first = std::sync::Mutex::new(Some(generation));
        let (label, expected) = (plugin.label().to_string(), (namespace.clone(), methods.clone()));
        let opener = Box::new(move |generation: &Arc<super::generation::Generation>| {
            let mut first = first.lock().unwrap_or_else(|p| p.into_inner());
            if first.take().is_some_and(|on| Arc::ptr_eq(&on, generation)) {
                return Ok(0);
            }
            match generation.conn.call(Call::RpcHandler)? {
                Value::Handler { namespace, methods } => {
                    if (&namespace, &methods) != (&expected.0, &expected.1) {
                        // The mounted names stay until the daemon restarts; calls reach the new handler.
                        tracing::warn!(
                            plugin = %label,
                            "the restarted process serves namespace {namespace} ({}), mounted was {} ({}); restart \
                             the daemon to mount the new names",
                            methods.join(", "), expected.0, expected.1.join(", ")
                        );
                    }
                    Ok(0)
                }
                other => Err(unexpected(other)),
            }
        });
        let handler = Bound::open(plugin, opener, false)?;
        Ok((namespace, RemoteHandler { handler, methods }))
    }
}

impl JsonRpcHandler for RemoteHandler {
    fn methods(&self) -> Vec<String> {
        self.methods.clone()
    }
    fn call(&self, method: &str, params: &str) -> Result<String, RpcError> {
        let (generation, _) = self.handler.get().map_err(rpc_error)?;
        match generation.conn.call(Call::RpcCall { method: method.to_string(), params: params.to_string() }) {
            Ok(Value::Text(answer)) => Ok(answer),
            Ok(other) => Err(rpc_error(unexpected(other))),
            Err(e) => Err(rpc_error(e)),
        }
    }
}
