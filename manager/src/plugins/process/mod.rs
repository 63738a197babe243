//! Process plugins, the manager's side: an executable `plugin-<name>` in the plugins dir (built by
//! `plugin build --process`) is started as a contained child process ([`spawn`]) and spoken to over a Unix socket
//! ([`connection`], protocol in `docs/plugin-protocol.md`); [`proxies`] give the rest of the manager the same SDK
//! traits a `.so` plugin's objects implement. [`marker`] reads what the executable is without running it.

pub mod connection;
pub mod load;
pub mod marker;
pub mod proxies;
pub mod spawn;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use manager_plugin::PluginError;
use manager_plugin::filestore::{Store, StoreConfig};
use manager_plugin::jsonrpc::JsonRpcHandler;
use manager_plugin::kv::{Db, Meta};
use manager_plugin::lifecycle::{CallStats, LogSink as _};
use manager_plugin::process::codec::LineReader;
use manager_plugin::process::wire::{Call, FromPlugin, PROTOCOL_MAJOR, Value};
use manager_plugin::sync::SectorEvent;

use self::connection::Connection;
use self::marker::Marker;
use self::proxies::{RemoteDb, RemoteHandler, RemoteStore, handle, plugin_error};
use self::spawn::Limits;
use super::log_sink::PluginLogSink;

/// How process plugins are run (`[Common.Plugins]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessOptions {
    /// How long the manager waits for one answer of a plugin before it kills the process.
    pub call_timeout: Duration,
    /// How long a started process may take to say hello.
    pub start_timeout: Duration,
    /// Resource limits and uid.
    pub limits: Limits,
}

impl Default for ProcessOptions {
    fn default() -> Self {
        ProcessOptions {
            call_timeout: Duration::from_secs(60),
            start_timeout: Duration::from_secs(10),
            limits: Limits::default(),
        }
    }
}

/// A running process plugin.
pub struct ProcessPlugin {
    conn: Arc<Connection>,
    pid: u32,
}

impl ProcessPlugin {
    /// Starts `file`, whose marker is `marker`, and completes the handshake: the plugin must speak this protocol's
    /// major version and carry the same manifest its marker does. `label` is `<Kind>/<name>`; `stats` counts calls.
    pub fn start(
        file: &Path,
        marker: &Marker,
        options: &ProcessOptions,
        label: &str,
        stats: Arc<CallStats>,
    ) -> Result<ProcessPlugin, String> {
        let started =
            spawn::spawn(file, options.limits, label).map_err(|e| format!("cannot start the process: {e}"))?;
        let kill = started.killer();
        let fail = |why: String| {
            kill();
            why
        };
        let reading = started.socket.try_clone().map_err(|e| fail(format!("cannot use the socket: {e}")))?;
        reading.set_read_timeout(Some(options.start_timeout)).map_err(|e| fail(format!("socket: {e}")))?;
        let mut reader = LineReader::new(reading);
        let hello = match reader.read_message::<FromPlugin>() {
            Ok(Some(FromPlugin::Hello(hello))) => hello,
            Ok(Some(other)) => return Err(fail(format!("the handshake started with {other:?}, not Hello"))),
            Ok(None) => {
                let why = started.ended.get().unwrap_or_else(|| "the process closed its socket".into());
                return Err(fail(format!("no handshake: {why}")));
            }
            Err(e) => {
                return Err(fail(format!(
                    "no handshake within {} s ({e}); is it a process plugin built by `plugin build --process`?",
                    options.start_timeout.as_secs()
                )));
            }
        };
        if hello.protocol_major != PROTOCOL_MAJOR {
            return Err(fail(format!(
                "it speaks protocol {}.{}, this manager speaks {PROTOCOL_MAJOR}.x; rebuild it with this manager's \
                 `plugin build --process`",
                hello.protocol_major, hello.protocol_minor
            )));
        }
        if hello.manifest != marker.manifest_text {
            return Err(fail("its handshake carries another manifest than its file's marker".into()));
        }
        // The same socket (one open file description): clearing the timeout here clears it for the reader.
        started.socket.set_read_timeout(None).map_err(|e| fail(format!("socket: {e}")))?;
        let writer = started.socket.try_clone().map_err(|e| fail(format!("cannot use the socket: {e}")))?;
        let pid = started.pid;
        let conn = Connection::start(
            label.to_string(),
            writer,
            reader,
            Arc::clone(&started.ended),
            stats,
            options.call_timeout,
            kill,
        )
        .map_err(|e| format!("cannot start the connection thread: {e}"))?;
        tracing::info!(plugin = %label, pid, protocol = %marker.protocol, "started process plugin");
        Ok(ProcessPlugin { conn, pid })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Runs the plugin's `onInit` with `plugins_dir`; its logs arrive at the level the daemon keeps.
    pub fn init(&self, plugins_dir: &Path, label: &str) -> Result<(), PluginError> {
        let max_level = PluginLogSink::new(label.to_string()).max_level();
        let call = Call::Init { plugins_dir: plugins_dir.display().to_string(), max_level };
        self.conn.call(call).map(drop).map_err(plugin_error)
    }

    /// Runs the plugin's `onShutdown`.
    pub fn shutdown(&self) -> Result<(), PluginError> {
        self.conn.call(Call::Shutdown).map(drop).map_err(plugin_error)
    }

    /// KVStore constructor.
    pub fn open_db(&self, meta: &Meta) -> Result<Box<dyn Db>, PluginError> {
        let db = self.conn.call(Call::OpenDb { meta: meta.clone() }).and_then(handle).map_err(plugin_error)?;
        Ok(Box::new(RemoteDb::new(Arc::clone(&self.conn), db)))
    }

    /// FileStore constructor.
    pub fn open_store(&self, config: StoreConfig) -> Result<Box<dyn Store>, PluginError> {
        let value = self.conn.call(Call::OpenStore { config }).map_err(plugin_error)?;
        Ok(Box::new(RemoteStore::new(Arc::clone(&self.conn), value).map_err(plugin_error)?))
    }

    /// Hands a SyncSectorState event to the plugin's matching hook (a hook it does not export ignores it).
    pub fn deliver(&self, event: &SectorEvent) -> Result<(), PluginError> {
        self.conn.call(Call::Deliver { event: Box::new(event.clone()) }).map(drop).map_err(plugin_error)
    }

    /// The RegisterJsonRpc namespace and handler.
    pub fn rpc_handler(&self) -> Result<(String, Box<dyn JsonRpcHandler>), PluginError> {
        match self.conn.call(Call::RpcHandler).map_err(plugin_error)? {
            Value::Handler { namespace, methods } => {
                Ok((namespace, Box::new(RemoteHandler::new(Arc::clone(&self.conn), methods))))
            }
            other => Err(PluginError::Failed(format!("unexpected reply {other:?}"))),
        }
    }

    /// Why the process is gone, if it is.
    pub fn ended(&self) -> Option<String> {
        self.conn.ended()
    }
}

impl Drop for ProcessPlugin {
    fn drop(&mut self) {
        // The plugin exits when its socket closes.
        self.conn.close();
    }
}
