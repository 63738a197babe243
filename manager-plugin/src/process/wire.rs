//! The messages of the process-plugin protocol (`docs/plugin-protocol.md`). Every SDK type crosses through its own
//! serde implementation (`SectorEvent`, `StoreConfig`, the boundary errors…), so a change to those types changes
//! the protocol with them; byte strings cross as base64 text ([`Blob`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

use crate::error::{KvError, PluginError, RpcError, StoreError};
use crate::filestore::{InstanceInfo, ObjectStat, StoreConfig};
use crate::lifecycle::{LogLevel, LogRecord};
use crate::sync::SectorEvent;

/// Major version of the protocol: a manager talks only to plugins of the same major version.
pub const PROTOCOL_MAJOR: u32 = 1;
/// Minor version: additions a peer of the same major version may ignore.
pub const PROTOCOL_MINOR: u32 = 1;

/// An object the plugin process holds for the manager (a database, collection, iterator, store, object stream).
pub type Handle = u64;

/// Bytes, carried as base64 text (JSON has no byte strings; an array of numbers would be 3–4 times larger).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Blob(pub Vec<u8>);

impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use base64::Engine as _;
        serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use base64::Engine as _;
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        base64::engine::general_purpose::STANDARD.decode(text.as_bytes()).map(Blob).map_err(serde::de::Error::custom)
    }
}

/// The plugin's first message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// [`PROTOCOL_MAJOR`] of the plugin's SDK.
    pub protocol_major: u32,
    /// [`PROTOCOL_MINOR`] of the plugin's SDK.
    pub protocol_minor: u32,
    /// The plugin's `manifest.toml` text.
    pub manifest: String,
    /// When `plugin build` built it.
    pub build_time: String,
    /// The SDK version it was built with.
    pub sdk_version: String,
}

/// Manager → plugin.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ToPlugin {
    /// A call; the plugin answers with [`FromPlugin::Reply`] of the same `id`.
    Request {
        /// Chosen by the manager, unique per connection.
        id: u64,
        /// What to do.
        call: Call,
    },
    /// The manager's answer to a [`FromPlugin::Callback`] of call `id`.
    Answer {
        /// The call the callback belongs to.
        id: u64,
        /// The answer.
        answer: Answer,
    },
    /// The manager dropped its proxy of `handle`: the plugin drops the object.
    Release {
        /// The object.
        handle: Handle,
    },
}

/// Plugin → manager.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum FromPlugin {
    /// The handshake, sent once, first.
    Hello(Hello),
    /// The result of call `id`.
    Reply {
        /// The call.
        id: u64,
        /// Its result.
        reply: Result<Value, WireError>,
    },
    /// Call `id` needs the manager (a transaction body to run, bytes of an upload).
    Callback {
        /// The call.
        id: u64,
        /// What it needs.
        callback: Callback,
    },
    /// A log event of the plugin's `tracing`.
    Log(LogRecord),
}

/// What the manager asks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Call {
    /// Runs the plugin's `onInit` (after log forwarding is installed at `max_level`).
    Init {
        /// `[Common.Plugins] Dir`.
        plugins_dir: String,
        /// The most verbose level the manager keeps.
        max_level: LogLevel,
    },
    /// Runs the plugin's `onShutdown`.
    Shutdown,
    /// KVStore constructor → [`Value::Handle`] of the database.
    OpenDb {
        /// `[Common.DB.Plugin.Meta]`.
        meta: BTreeMap<String, String>,
    },
    /// `Db::run`.
    DbRun {
        /// The database.
        db: Handle,
    },
    /// `Db::close`.
    DbClose {
        /// The database.
        db: Handle,
    },
    /// `Db::open_collection` → [`Value::Handle`].
    OpenCollection {
        /// The database.
        db: Handle,
        /// The collection.
        name: String,
    },
    /// `KvStore::get` (and `peek`, whose value crosses as a copy) → [`Value::Bytes`].
    Get {
        /// The collection.
        coll: Handle,
        /// The key.
        key: Blob,
    },
    /// `KvStore::put`.
    Put {
        /// The collection.
        coll: Handle,
        /// The key.
        key: Blob,
        /// The value.
        value: Blob,
    },
    /// `KvStore::del`.
    Del {
        /// The collection.
        coll: Handle,
        /// The key.
        key: Blob,
    },
    /// `KvStore::scan` → [`Value::Handle`] of an iterator.
    Scan {
        /// The collection.
        coll: Handle,
        /// The prefix.
        prefix: Blob,
    },
    /// Up to `max` entries of an iterator → [`Value::Entries`].
    IterNext {
        /// The iterator.
        iter: Handle,
        /// Most entries to return.
        max: u32,
    },
    /// `KvStore::view`: the body runs in the manager through [`Callback::TxnOpen`].
    View {
        /// The collection.
        coll: Handle,
    },
    /// `KvStore::update`: the body runs in the manager through [`Callback::TxnOpen`], once per attempt.
    Update {
        /// The collection.
        coll: Handle,
    },
    /// `KvStore::need_retry_transactions` → [`Value::Bool`].
    NeedRetry {
        /// The collection.
        coll: Handle,
    },
    /// FileStore constructor → [`Value::Store`].
    OpenStore {
        /// The store's configuration.
        config: StoreConfig,
    },
    /// `Store::instance_info` → [`Value::Info`].
    InstanceInfo {
        /// The store.
        store: Handle,
    },
    /// `Store::get` → [`Value::Handle`] of an object stream.
    StoreGet {
        /// The store.
        store: Handle,
        /// The object.
        path: String,
    },
    /// Up to `max` bytes of an object stream → [`Value::Bytes`] (empty at the end).
    Read {
        /// The stream.
        stream: Handle,
        /// Most bytes to return.
        max: u32,
    },
    /// `Store::del`.
    StoreDel {
        /// The store.
        store: Handle,
        /// The object.
        path: String,
    },
    /// `Store::stat` → [`Value::Stat`].
    StoreStat {
        /// The store.
        store: Handle,
        /// The object.
        path: String,
    },
    /// `Store::put` → [`Value::Size`]; the bytes cross through [`Callback::NeedBytes`].
    StorePut {
        /// The store.
        store: Handle,
        /// The object.
        path: String,
    },
    /// `Store::full_path` → [`Value::Text`].
    FullPath {
        /// The store.
        store: Handle,
        /// The object.
        path: String,
    },
    /// A SyncSectorState event for the matching hook.
    Deliver {
        /// The event, as the SDK serializes it.
        event: Box<SectorEvent>,
    },
    /// Since 1.1: SyncSectorState events, in order, each for its matching hook → [`Value::Delivered`]. The plugin
    /// stops at the first hook that fails: the events after it are not handed to any hook.
    DeliverBatch {
        /// The events, oldest first.
        events: EventBatch,
    },
    /// The RegisterJsonRpc handler → [`Value::Handler`].
    RpcHandler,
    /// `JsonRpcHandler::call` → [`Value::Text`].
    RpcCall {
        /// The method (without namespace).
        method: String,
        /// The params, JSON text.
        params: String,
    },
}

/// The events of a [`Call::DeliverBatch`], oldest first. On the wire, a JSON array of `SectorEvent`s in the SDK's
/// serde encoding; the plugin decodes it into [`EventBatch::Decoded`]. The manager sends
/// [`EventBatch::Encoded`]: the JSON each event was stored as, so an event is not encoded again for every plugin.
#[derive(Debug, Clone)]
pub enum EventBatch {
    /// The events, decoded (what a plugin receives; boxed, so a batch never needs one large allocation).
    Decoded(Vec<Box<SectorEvent>>),
    /// Each event's JSON, as `serde_json` encoded the `SectorEvent` (written verbatim; the codec is JSON).
    Encoded(Vec<Arc<RawValue>>),
}

impl EventBatch {
    /// How many events it carries.
    pub fn len(&self) -> usize {
        match self {
            EventBatch::Decoded(events) => events.len(),
            EventBatch::Encoded(events) => events.len(),
        }
    }

    /// Whether it carries none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Serialize for EventBatch {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            EventBatch::Decoded(events) => events.serialize(serializer),
            EventBatch::Encoded(events) => serializer.collect_seq(events.iter().map(|event| &**event)),
        }
    }
}

impl<'de> Deserialize<'de> for EventBatch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<Box<SectorEvent>>::deserialize(deserializer).map(EventBatch::Decoded)
    }
}

/// A successful result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Value {
    /// Nothing to return.
    Unit,
    /// A new object.
    Handle(Handle),
    /// Bytes.
    Bytes(Blob),
    /// A flag.
    Bool(bool),
    /// Entries of an iterator; `done` when it has no more.
    Entries {
        /// Key/value pairs in order.
        entries: Vec<(Blob, Blob)>,
        /// The iterator is exhausted.
        done: bool,
    },
    /// A store instance and what its infallible methods return (asked once, not per call).
    Store {
        /// The store object.
        handle: Handle,
        /// `Store::type_name`.
        type_name: String,
        /// `Store::version`.
        version: String,
        /// `Store::instance`.
        instance: String,
        /// `Store::instance_config`.
        config: StoreConfig,
    },
    /// `Store::instance_info`.
    Info(InstanceInfo),
    /// `Store::stat`.
    Stat(ObjectStat),
    /// A size in bytes.
    Size(u64),
    /// Text (a path, a JSON-RPC result).
    Text(String),
    /// How far a [`Call::DeliverBatch`] got: the first `delivered` events were handled; `error` is why the next
    /// one failed (none failed when `delivered` is the batch's length).
    Delivered {
        /// Events handled successfully, from the first.
        delivered: u32,
        /// The failure of event number `delivered`, if one failed.
        error: Option<PluginError>,
    },
    /// The RegisterJsonRpc handler's namespace and methods.
    Handler {
        /// The namespace.
        namespace: String,
        /// Method names without namespace.
        methods: Vec<String>,
    },
}

/// A failed result, in the error type of the SDK call it answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireError {
    /// Lifecycle, constructors, hooks.
    Plugin(PluginError),
    /// KV calls.
    Kv(KvError),
    /// FileStore calls.
    Store(StoreError),
    /// JSON-RPC calls.
    Rpc(RpcError),
    /// The request made no sense to the plugin (unknown handle, wrong kind): a manager bug or a protocol mismatch.
    Protocol(String),
}

/// What a call in the plugin needs from the manager.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Callback {
    /// A transaction attempt is open: the manager runs its body, sending [`Answer::TxnOp`]s and then
    /// [`Answer::TxnEnd`] with the body's result.
    TxnOpen,
    /// The result of the last [`Answer::TxnOp`].
    TxnReply(Result<Value, KvError>),
    /// `Store::put` reads up to `max` bytes: the manager answers [`Answer::Bytes`].
    NeedBytes {
        /// Most bytes wanted.
        max: u32,
    },
}

/// The manager's answer to a [`Callback`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    /// One operation of the open transaction.
    TxnOp(TxnOp),
    /// The body returned: the plugin's transaction gets this result (and commits when it is `Ok`).
    TxnEnd(Result<(), KvError>),
    /// Bytes of an upload (empty at its end), or why reading it failed.
    Bytes(Result<Blob, String>),
}

/// An operation inside a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOp {
    /// `Txn::get` (and `peek`) → [`Value::Bytes`].
    Get {
        /// The key.
        key: Blob,
    },
    /// `Txn::put`.
    Put {
        /// The key.
        key: Blob,
        /// The value.
        value: Blob,
    },
    /// `Txn::del`.
    Del {
        /// The key.
        key: Blob,
    },
    /// `Txn::scan` → [`Value::Entries`].
    Scan {
        /// The prefix.
        prefix: Blob,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_cross_as_base64_text_and_come_back_exactly() {
        let call = Call::Put { coll: 7, key: Blob(vec![0, 255, 10]), value: Blob(Vec::new()) };
        let text = serde_json::to_string(&ToPlugin::Request { id: 1, call }).unwrap();
        assert_eq!(text, r#"{"Request":{"id":1,"call":{"Put":{"coll":7,"key":"AP8K","value":""}}}}"#);
        match serde_json::from_str::<ToPlugin>(&text).unwrap() {
            ToPlugin::Request { call: Call::Put { key, .. }, .. } => assert_eq!(key.0, [0, 255, 10]),
            other => panic!("{other:?}"),
        }
        assert!(!text.contains('\n'), "one message per line");
    }

    #[test]
    fn an_encoded_event_batch_is_written_verbatim_and_read_back_as_sdk_events() {
        use crate::sector::{SectorId, SectorState, WorkerState};
        use crate::sync::{FinalizeEvent, ImportEvent};
        let state = |number| SectorState::new(SectorId { miner: 1, number }, 8);
        let events = vec![
            SectorEvent::Import(ImportEvent { worker_state: WorkerState::Online, state: state(2), overwrite: false }),
            SectorEvent::Finalize(FinalizeEvent { sector_id: SectorId { miner: 1, number: 3 }, state: state(3) }),
        ];
        let encoded: Vec<Arc<RawValue>> =
            events.iter().map(|event| Arc::from(serde_json::value::to_raw_value(event).unwrap())).collect();
        let sent = ToPlugin::Request { id: 9, call: Call::DeliverBatch { events: EventBatch::Encoded(encoded) } };
        let text = serde_json::to_string(&sent).unwrap();
        let decoded = serde_json::to_string(&ToPlugin::Request {
            id: 9,
            call: Call::DeliverBatch { events: EventBatch::Decoded(events.iter().cloned().map(Box::new).collect()) },
        })
        .unwrap();
        assert_eq!(text, decoded, "the same bytes as encoding the events");
        match serde_json::from_str::<ToPlugin>(&text).unwrap() {
            ToPlugin::Request { call: Call::DeliverBatch { events: EventBatch::Decoded(back) }, .. } => {
                assert_eq!(back.into_iter().map(|event| *event).collect::<Vec<_>>(), events)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn sdk_errors_cross_with_their_variant() {
        let reply = FromPlugin::Reply { id: 3, reply: Err(WireError::Kv(KvError::Panicked("boom".into()))) };
        let back: FromPlugin = serde_json::from_str(&serde_json::to_string(&reply).unwrap()).unwrap();
        match back {
            FromPlugin::Reply { reply: Err(WireError::Kv(KvError::Panicked(m))), .. } => assert_eq!(m, "boom"),
            other => panic!("{other:?}"),
        }
    }
}
