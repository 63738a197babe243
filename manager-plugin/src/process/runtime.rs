//! The plugin side of the process protocol: what the `main` that `plugin build --process` generates runs. It
//! serves the same [`PluginModule`] an in-process plugin exports (the same generated, guarded entry points) over
//! the socket the manager passed as fd `$DAMOCLES_PLUGIN_FD`.
//!
//! Threads take turns reading the socket ([`super::turns`]): the thread that read a request runs it, so a
//! request wakes one thread, as on a plain request/response socket; a request that may wait for the manager (a
//! transaction body, an upload: their answers arrive on the same socket, routed to the thread of their call) is
//! run only after the socket was handed on, and one that runs long has it taken over. The process exits when the
//! manager closes the socket.

use std::collections::HashMap;
use std::io::{self, Read};
use std::os::fd::FromRawFd as _;
use std::os::unix::net::UnixStream;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, MutexGuard};

use super::ENV_FD;
use super::codec::{LineReader, write_line};
use super::turns::{StartThread, Turns};
use super::wire::{
    Answer, Blob, Call, Callback, EventBatch, FromPlugin, Handle, Hello, PROTOCOL_MAJOR, PROTOCOL_MINOR, ToPlugin,
    TxnOp, Value, WireError,
};
use crate::error::{KvError, PluginError, StoreError};
use crate::filestore::{ObjectReader, Store};
use crate::glue::{Exports, PluginModule, SyncHooks};
use crate::jsonrpc::JsonRpcHandler;
use crate::kv::{Db, KvIter, KvStore, Txn};
use crate::lifecycle::{CallStats, LogLevel, LogRecord, LogSink, PluginContext};
use crate::manifest::Manifest;
use crate::sync::SectorEvent;

/// Serves `module` to the manager over `$DAMOCLES_PLUGIN_FD`, then exits: 0 when the manager closed the
/// connection, 1 on a protocol or I/O failure, 2 when not started by a manager.
pub fn serve(module: PluginModule, manifest: &'static str, build_time: &'static str) -> ! {
    let Some(fd) = std::env::var(ENV_FD).ok().and_then(|v| v.parse::<i32>().ok()).filter(|fd| *fd > 2) else {
        eprintln!(
            "this is a damocles-manager process plugin: put it in the manager's [Common.Plugins] Dir, which starts \
             it; test it with `plugin test {}`",
            std::env::args().next().unwrap_or_else(|| "FILE".into())
        );
        std::process::exit(2);
    };
    // SAFETY: the manager passes this descriptor, open and ours alone, as the protocol socket.
    let stream = unsafe { UnixStream::from_raw_fd(fd) };
    match run(module, manifest, build_time, stream) {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("process plugin: {e}");
            std::process::exit(1)
        }
    }
}

fn run(module: PluginModule, manifest: &'static str, build_time: &'static str, stream: UnixStream) -> io::Result<()> {
    let out = Arc::new(Out(Mutex::new(stream.try_clone()?)));
    out.send(&FromPlugin::Hello(Hello {
        protocol_major: PROTOCOL_MAJOR,
        protocol_minor: PROTOCOL_MINOR,
        manifest: manifest.to_string(),
        build_time: build_time.to_string(),
        sdk_version: crate::abi::SDK_VERSION.to_string(),
    }))?;
    let server = Arc::new(Server {
        module,
        manifest,
        out,
        objects: Mutex::default(),
        next_handle: AtomicU64::new(1),
        answers: Mutex::default(),
        handler: Mutex::default(),
        reader: Mutex::new(LineReader::new(stream)),
        turns: Turns::default(),
    });
    server.take_turns(true);
    Ok(())
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The socket's writing half: one message at a time.
struct Out(Mutex<UnixStream>);

impl Out {
    fn send(&self, message: &FromPlugin) -> io::Result<()> {
        write_line(&mut *lock(&self.0), message)
    }
}

/// Forwards the plugin's log events to the manager.
struct SocketLog {
    out: Arc<Out>,
    max: LogLevel,
}

impl LogSink for SocketLog {
    fn max_level(&self) -> LogLevel {
        self.max
    }
    fn log(&self, record: &LogRecord) {
        let _ = self.out.send(&FromPlugin::Log(record.clone()));
    }
}

/// An object held for the manager.
enum Object {
    Db(Arc<dyn Db>),
    Collection(Arc<dyn KvStore>),
    Iter(Arc<Mutex<Box<dyn KvIter>>>),
    Store(Arc<dyn Store>),
    Stream(Arc<Mutex<ObjectReader>>),
}

struct Server {
    module: PluginModule,
    manifest: &'static str,
    out: Arc<Out>,
    objects: Mutex<HashMap<Handle, Object>>,
    next_handle: AtomicU64,
    answers: Mutex<HashMap<u64, Sender<Answer>>>,
    handler: Mutex<Option<Arc<dyn JsonRpcHandler>>>,
    /// The socket's reading half, read by the thread whose turn it is (so never contended).
    reader: Mutex<LineReader<UnixStream>>,
    turns: Turns,
}

fn protocol(message: impl Into<String>) -> WireError {
    WireError::Protocol(message.into())
}

impl Server {
    /// One thread's life: read when it is its turn, run the requests it read. Only the main thread returns (when
    /// enough others are idle, the others end); the socket's end exits the process.
    fn take_turns(self: &Arc<Self>, main: bool) {
        while let Some(start) = self.turns.next_turn(main) {
            self.start_thread(start);
            loop {
                let message = match lock(&self.reader).read_message::<ToPlugin>() {
                    Ok(Some(message)) => message,
                    Ok(None) => std::process::exit(0),
                    Err(e) => {
                        eprintln!("process plugin: {e}");
                        std::process::exit(1)
                    }
                };
                match message {
                    ToPlugin::Request { id, call } => {
                        let (tx, rx) = channel();
                        lock(&self.answers).insert(id, tx);
                        let waits_for_manager =
                            matches!(call, Call::View { .. } | Call::Update { .. } | Call::StorePut { .. });
                        if waits_for_manager {
                            self.start_thread(self.turns.hand_off());
                            self.handle(id, call, rx);
                            break;
                        }
                        self.start_thread(self.turns.run_inline());
                        self.handle(id, call, rx);
                        if !self.turns.resume() {
                            break;
                        }
                    }
                    ToPlugin::Answer { id, answer } => {
                        if let Some(tx) = lock(&self.answers).get(&id) {
                            let _ = tx.send(answer);
                        }
                    }
                    ToPlugin::Release { handle } => {
                        let released = lock(&self.objects).remove(&handle);
                        drop(released);
                    }
                }
            }
        }
    }

    /// Starts one more thread to take turns when asked to.
    fn start_thread(self: &Arc<Self>, start: StartThread) {
        if !start.0 {
            return;
        }
        let server = Arc::clone(self);
        let spawned = std::thread::Builder::new().name("plugin-call".into()).spawn(move || server.take_turns(false));
        if let Err(e) = spawned {
            // Nobody would read the socket while a request runs: a manager waiting on it would hang.
            eprintln!("process plugin: cannot start a thread: {e}");
            std::process::exit(1);
        }
    }

    fn handle(&self, id: u64, call: Call, answers: Receiver<Answer>) {
        let reply = catch_unwind(AssertUnwindSafe(|| self.dispatch(id, call, &answers))).unwrap_or_else(|payload| {
            Err(protocol(format!("the plugin runtime panicked: {}", crate::guard::panic_message(payload.as_ref()))))
        });
        lock(&self.answers).remove(&id);
        let _ = self.out.send(&FromPlugin::Reply { id, reply });
    }

    fn insert(&self, object: Object) -> Handle {
        let handle = self.next_handle.fetch_add(1, Ordering::Relaxed);
        lock(&self.objects).insert(handle, object);
        handle
    }

    fn collection(&self, handle: Handle) -> Result<Arc<dyn KvStore>, WireError> {
        match lock(&self.objects).get(&handle) {
            Some(Object::Collection(c)) => Ok(Arc::clone(c)),
            _ => Err(protocol(format!("no collection {handle}"))),
        }
    }

    fn db(&self, handle: Handle) -> Result<Arc<dyn Db>, WireError> {
        match lock(&self.objects).get(&handle) {
            Some(Object::Db(db)) => Ok(Arc::clone(db)),
            _ => Err(protocol(format!("no database {handle}"))),
        }
    }

    fn store(&self, handle: Handle) -> Result<Arc<dyn Store>, WireError> {
        match lock(&self.objects).get(&handle) {
            Some(Object::Store(s)) => Ok(Arc::clone(s)),
            _ => Err(protocol(format!("no store {handle}"))),
        }
    }

    fn dispatch(&self, id: u64, call: Call, answers: &Receiver<Answer>) -> Result<Value, WireError> {
        let kv = WireError::Kv;
        let st = WireError::Store;
        let unit = |_| Value::Unit;
        match call {
            Call::Init { plugins_dir, max_level } => {
                let manifest = Manifest::parse(self.manifest, "manifest.toml")
                    .map_err(|e| WireError::Plugin(PluginError::msg(e)))?;
                let ctx = PluginContext {
                    plugins_dir: PathBuf::from(plugins_dir),
                    manifest,
                    log_sink: Arc::new(SocketLog { out: Arc::clone(&self.out), max: max_level }),
                    stats: Arc::new(CallStats::default()),
                };
                (self.module.init)(&ctx).map(unit).map_err(WireError::Plugin)
            }
            Call::Shutdown => (self.module.shutdown)().map(unit).map_err(WireError::Plugin),
            Call::OpenDb { meta } => match &self.module.exports {
                Exports::KvStore { constructor } => {
                    let db = constructor(&meta).map_err(WireError::Plugin)?;
                    Ok(Value::Handle(self.insert(Object::Db(Arc::from(db)))))
                }
                _ => Err(protocol("not a KVStore plugin")),
            },
            Call::DbRun { db } => self.db(db)?.run().map(unit).map_err(kv),
            Call::DbClose { db } => self.db(db)?.close().map(unit).map_err(kv),
            Call::OpenCollection { db, name } => {
                let collection = self.db(db)?.open_collection(&name).map_err(kv)?;
                Ok(Value::Handle(self.insert(Object::Collection(Arc::from(collection)))))
            }
            Call::Get { coll, key } => self.collection(coll)?.get(&key.0).map(|v| Value::Bytes(Blob(v))).map_err(kv),
            Call::Put { coll, key, value } => self.collection(coll)?.put(&key.0, &value.0).map(unit).map_err(kv),
            Call::Del { coll, key } => self.collection(coll)?.del(&key.0).map(unit).map_err(kv),
            Call::Scan { coll, prefix } => {
                let iter = self.collection(coll)?.scan(&prefix.0).map_err(kv)?;
                Ok(Value::Handle(self.insert(Object::Iter(Arc::new(Mutex::new(iter))))))
            }
            Call::IterNext { iter, max } => {
                let iter = match lock(&self.objects).get(&iter) {
                    Some(Object::Iter(i)) => Arc::clone(i),
                    _ => return Err(protocol(format!("no iterator {iter}"))),
                };
                let mut iter = lock(&iter);
                let mut entries = Vec::new();
                while entries.len() < max.max(1) as usize {
                    match iter.next_entry().map_err(kv)? {
                        Some((k, v)) => entries.push((Blob(k), Blob(v))),
                        None => return Ok(Value::Entries { entries, done: true }),
                    }
                }
                Ok(Value::Entries { entries, done: false })
            }
            Call::View { coll } => {
                self.collection(coll)?.view(&mut |txn| self.txn_body(id, txn, answers)).map(unit).map_err(kv)
            }
            Call::Update { coll } => {
                self.collection(coll)?.update(&mut |txn| self.txn_body(id, txn, answers)).map(unit).map_err(kv)
            }
            Call::NeedRetry { coll } => Ok(Value::Bool(self.collection(coll)?.need_retry_transactions())),
            Call::OpenStore { config } => match &self.module.exports {
                Exports::FileStore { constructor } => {
                    let store: Arc<dyn Store> = Arc::from(constructor(config).map_err(WireError::Plugin)?);
                    let (type_name, version, instance, config) =
                        (store.type_name(), store.version(), store.instance(), store.instance_config());
                    let handle = self.insert(Object::Store(store));
                    Ok(Value::Store { handle, type_name, version, instance, config })
                }
                _ => Err(protocol("not a FileStore plugin")),
            },
            Call::InstanceInfo { store } => self.store(store)?.instance_info().map(Value::Info).map_err(st),
            Call::StoreGet { store, path } => {
                let reader = self.store(store)?.get(&path).map_err(st)?;
                Ok(Value::Handle(self.insert(Object::Stream(Arc::new(Mutex::new(reader))))))
            }
            Call::Read { stream, max } => {
                let stream = match lock(&self.objects).get(&stream) {
                    Some(Object::Stream(s)) => Arc::clone(s),
                    _ => return Err(protocol(format!("no object stream {stream}"))),
                };
                let mut buf = vec![0u8; (max as usize).clamp(1, super::CHUNK)];
                let n = loop {
                    match lock(&stream).read(&mut buf) {
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        other => break other.map_err(|e| st(StoreError::Io(e.to_string())))?,
                    }
                };
                buf.truncate(n);
                Ok(Value::Bytes(Blob(buf)))
            }
            Call::StoreDel { store, path } => self.store(store)?.del(&path).map(unit).map_err(st),
            Call::StoreStat { store, path } => self.store(store)?.stat(&path).map(Value::Stat).map_err(st),
            Call::StorePut { store, path } => {
                let mut reader = CallbackReader { id, out: &self.out, answers, done: false };
                self.store(store)?.put(&path, &mut reader).map(Value::Size).map_err(st)
            }
            Call::FullPath { store, path } => {
                self.store(store)?.full_path(&path).map(|p| Value::Text(p.display().to_string())).map_err(st)
            }
            Call::Deliver { event } => match &self.module.exports {
                Exports::SyncSectorState(hooks) => hooks.deliver(&event).map(unit).map_err(WireError::Plugin),
                _ => Err(protocol("not a SyncSectorState plugin")),
            },
            Call::DeliverBatch { events: EventBatch::Decoded(events) } => match &self.module.exports {
                Exports::SyncSectorState(hooks) => Ok(deliver_in_order(hooks, &events)),
                _ => Err(protocol("not a SyncSectorState plugin")),
            },
            Call::DeliverBatch { events: EventBatch::Encoded(_) } => Err(protocol("an encoded batch is never read")),
            Call::RpcHandler => match &self.module.exports {
                Exports::RegisterJsonRpc { handler } => {
                    let (namespace, handler) = handler().map_err(WireError::Plugin)?;
                    let handler: Arc<dyn JsonRpcHandler> = Arc::from(handler);
                    let methods = handler.methods();
                    *lock(&self.handler) = Some(handler);
                    Ok(Value::Handler { namespace, methods })
                }
                _ => Err(protocol("not a RegisterJsonRpc plugin")),
            },
            Call::RpcCall { method, params } => {
                let handler = lock(&self.handler).clone().ok_or_else(|| protocol("no handler was built"))?;
                handler.call(&method, &params).map(Value::Text).map_err(WireError::Rpc)
            }
        }
    }

    /// One attempt of a transaction body, run by the manager: open it, serve its operations, return its result.
    fn txn_body(&self, id: u64, txn: &dyn Txn, answers: &Receiver<Answer>) -> Result<(), KvError> {
        let gone = |e: io::Error| KvError::Backend(format!("the manager's connection failed: {e}"));
        self.out.send(&FromPlugin::Callback { id, callback: Callback::TxnOpen }).map_err(gone)?;
        loop {
            let op = match answers.recv() {
                Ok(Answer::TxnOp(op)) => op,
                Ok(Answer::TxnEnd(result)) => return result,
                Ok(other) => return Err(KvError::Backend(format!("unexpected answer in a transaction: {other:?}"))),
                Err(_) => return Err(KvError::Backend("the manager went away during a transaction".into())),
            };
            let result = match op {
                TxnOp::Get { key } => txn.get(&key.0).map(|v| Value::Bytes(Blob(v))),
                TxnOp::Put { key, value } => txn.put(&key.0, &value.0).map(|()| Value::Unit),
                TxnOp::Del { key } => txn.del(&key.0).map(|()| Value::Unit),
                TxnOp::Scan { prefix } => txn.scan(&prefix.0).map(|entries| Value::Entries {
                    entries: entries.into_iter().map(|(k, v)| (Blob(k), Blob(v))).collect(),
                    done: true,
                }),
            };
            self.out.send(&FromPlugin::Callback { id, callback: Callback::TxnReply(result) }).map_err(gone)?;
        }
    }
}

/// Hands `events` to their hooks in order, stopping at the first that fails (a later event must not reach a hook
/// before an earlier one was handled).
fn deliver_in_order(hooks: &SyncHooks, events: &[Box<SectorEvent>]) -> Value {
    for (delivered, event) in events.iter().enumerate() {
        if let Err(error) = hooks.deliver(event) {
            return Value::Delivered { delivered: delivered as u32, error: Some(error) };
        }
    }
    Value::Delivered { delivered: events.len() as u32, error: None }
}

/// The reader a plugin's `Store::put` gets: each `read` asks the manager for the next bytes of the upload.
struct CallbackReader<'a> {
    id: u64,
    out: &'a Out,
    answers: &'a Receiver<Answer>,
    done: bool,
}

impl Read for CallbackReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        let max = buf.len().min(super::CHUNK) as u32;
        self.out.send(&FromPlugin::Callback { id: self.id, callback: Callback::NeedBytes { max } })?;
        match self.answers.recv() {
            Ok(Answer::Bytes(Ok(Blob(bytes)))) if bytes.len() <= buf.len() => {
                buf[..bytes.len()].copy_from_slice(&bytes);
                self.done = bytes.is_empty();
                Ok(bytes.len())
            }
            Ok(Answer::Bytes(Ok(_))) => Err(io::Error::other("the manager sent more bytes than asked for")),
            Ok(Answer::Bytes(Err(message))) => Err(io::Error::other(message)),
            Ok(other) => Err(io::Error::other(format!("unexpected answer during an upload: {other:?}"))),
            Err(_) => Err(io::Error::other("the manager went away during an upload")),
        }
    }
}
