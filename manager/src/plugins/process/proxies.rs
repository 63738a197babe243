//! The SDK traits implemented over a process plugin's connection: the manager's code holds these exactly as it
//! holds a `.so` plugin's objects. Dropping a proxy releases the plugin's object.
//!
//! A transaction (`KvStore::update`/`view`) runs its body here, in the manager: the plugin opens the transaction
//! and sends `TxnOpen`; each `Txn` call of the body is an `Answer::TxnOp` answered by a `TxnReply`; the body's
//! result goes back as `TxnEnd`, and the plugin commits (or retries, sending `TxnOpen` again) and replies.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::Arc;

use manager_plugin::filestore::{InstanceInfo, ObjectReader, ObjectStat, Store, StoreConfig};
use manager_plugin::jsonrpc::JsonRpcHandler;
use manager_plugin::kv::{Db, Entry, KvIter, KvStore, Txn, TxnFn};
use manager_plugin::process::CHUNK;
use manager_plugin::process::wire::{Answer, Blob, Call, Callback, Handle, TxnOp, Value, WireError};
use manager_plugin::{KvError, PluginError, RpcError, StoreError};

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
pub struct RemoteDb(Held);

impl RemoteDb {
    /// The database `handle` of `conn`.
    pub fn new(conn: Arc<Connection>, handle: Handle) -> RemoteDb {
        RemoteDb(Held { conn, handle })
    }
}

impl Db for RemoteDb {
    fn run(&self) -> Result<(), KvError> {
        self.0.conn.call(Call::DbRun { db: self.0.handle }).and_then(unit).map_err(kv_error)
    }
    fn close(&self) -> Result<(), KvError> {
        self.0.conn.call(Call::DbClose { db: self.0.handle }).and_then(unit).map_err(kv_error)
    }
    fn open_collection(&self, name: &str) -> Result<Box<dyn KvStore>, KvError> {
        let conn = &self.0.conn;
        let coll = conn.call(Call::OpenCollection { db: self.0.handle, name: name.to_string() }).and_then(handle);
        Ok(Box::new(RemoteKvStore(Held { conn: Arc::clone(conn), handle: coll.map_err(kv_error)? })))
    }
}

struct RemoteKvStore(Held);

impl RemoteKvStore {
    fn call(&self, call: Call) -> Result<Value, KvError> {
        self.0.conn.call(call).map_err(kv_error)
    }

    /// Runs a transaction whose body is `f` (see the module docs).
    fn transaction(&self, call: Call, f: TxnFn<'_>) -> Result<(), KvError> {
        let pending = self.0.conn.start_call(call).map_err(kv_error)?;
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
        self.call(Call::Get { coll: self.0.handle, key: Blob(key.to_vec()) }).and_then(|v| bytes(v).map_err(kv_error))
    }
    fn peek(&self, key: &[u8], f: &mut dyn FnMut(&[u8])) -> Result<(), KvError> {
        f(&self.get(key)?);
        Ok(())
    }
    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), KvError> {
        let call = Call::Put { coll: self.0.handle, key: Blob(key.to_vec()), value: Blob(value.to_vec()) };
        self.call(call).and_then(|v| unit(v).map_err(kv_error))
    }
    fn del(&self, key: &[u8]) -> Result<(), KvError> {
        self.call(Call::Del { coll: self.0.handle, key: Blob(key.to_vec()) }).and_then(|v| unit(v).map_err(kv_error))
    }
    fn scan(&self, prefix: &[u8]) -> Result<Box<dyn KvIter>, KvError> {
        let iter = self.call(Call::Scan { coll: self.0.handle, prefix: Blob(prefix.to_vec()) })?;
        let iter = handle(iter).map_err(kv_error)?;
        Ok(Box::new(RemoteIter {
            held: Held { conn: Arc::clone(&self.0.conn), handle: iter },
            buffer: VecDeque::new(),
            done: false,
        }))
    }
    fn view(&self, f: TxnFn<'_>) -> Result<(), KvError> {
        self.transaction(Call::View { coll: self.0.handle }, f)
    }
    fn update(&self, f: TxnFn<'_>) -> Result<(), KvError> {
        self.transaction(Call::Update { coll: self.0.handle }, f)
    }
    fn need_retry_transactions(&self) -> bool {
        matches!(self.call(Call::NeedRetry { coll: self.0.handle }), Ok(Value::Bool(true)))
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
    held: Held,
    type_name: String,
    version: String,
    instance: String,
    config: StoreConfig,
}

impl RemoteStore {
    /// The store described by an `OpenStore` reply.
    pub fn new(conn: Arc<Connection>, value: Value) -> Result<RemoteStore, WireError> {
        match value {
            Value::Store { handle, type_name, version, instance, config } => {
                Ok(RemoteStore { held: Held { conn, handle }, type_name, version, instance, config })
            }
            other => Err(unexpected(other)),
        }
    }

    fn call(&self, call: Call) -> Result<Value, StoreError> {
        self.held.conn.call(call).map_err(store_error)
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
        match self.call(Call::InstanceInfo { store: self.held.handle })? {
            Value::Info(info) => Ok(info),
            other => Err(store_error(unexpected(other))),
        }
    }
    fn get(&self, path: &str) -> Result<ObjectReader, StoreError> {
        let stream = self.call(Call::StoreGet { store: self.held.handle, path: path.to_string() })?;
        let stream = handle(stream).map_err(store_error)?;
        Ok(Box::new(RemoteReader { held: Held { conn: Arc::clone(&self.held.conn), handle: stream }, done: false }))
    }
    fn del(&self, path: &str) -> Result<(), StoreError> {
        self.call(Call::StoreDel { store: self.held.handle, path: path.to_string() })
            .and_then(|v| unit(v).map_err(store_error))
    }
    fn stat(&self, path: &str) -> Result<ObjectStat, StoreError> {
        match self.call(Call::StoreStat { store: self.held.handle, path: path.to_string() })? {
            Value::Stat(stat) => Ok(stat),
            other => Err(store_error(unexpected(other))),
        }
    }
    fn put(&self, path: &str, reader: &mut dyn Read) -> Result<u64, StoreError> {
        let call = Call::StorePut { store: self.held.handle, path: path.to_string() };
        let pending = self.held.conn.start_call(call).map_err(store_error)?;
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
        match self.call(Call::FullPath { store: self.held.handle, path: path.to_string() })? {
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
    conn: Arc<Connection>,
    methods: Vec<String>,
}

impl RemoteHandler {
    /// The handler of `conn`, listing `methods`.
    pub fn new(conn: Arc<Connection>, methods: Vec<String>) -> RemoteHandler {
        RemoteHandler { conn, methods }
    }
}

impl JsonRpcHandler for RemoteHandler {
    fn methods(&self) -> Vec<String> {
        self.methods.clone()
    }
    fn call(&self, method: &str, params: &str) -> Result<String, RpcError> {
        match self.conn.call(Call::RpcCall { method: method.to_string(), params: params.to_string() }) {
            Ok(Value::Text(answer)) => Ok(answer),
            Ok(other) => Err(rpc_error(unexpected(other))),
            Err(e) => Err(rpc_error(e)),
        }
    }
}
