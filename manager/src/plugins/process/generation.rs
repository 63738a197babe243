//! One run of a process plugin: the child process, started contained ([`super::spawn`]), past its handshake, and
//! the [`Connection`] to it. A supervised plugin ([`super::ProcessPlugin`]) goes through generations: each restart
//! is a new one, and a generation never serves again once its process ended.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use manager_plugin::lifecycle::CallStats;
use manager_plugin::process::codec::LineReader;
use manager_plugin::process::wire::{Call, FromPlugin, PROTOCOL_MAJOR};

use super::ProcessOptions;
use super::connection::Connection;
use super::marker::Marker;
use super::spawn;

/// A started plugin process and its connection.
pub struct Generation {
    /// The connection; every call of this generation goes through it.
    pub conn: Arc<Connection>,
    /// The process id.
    pub pid: u32,
    /// When the process completed its handshake.
    pub started: Instant,
    /// 1 for the first process of a plugin, counting up with every restart.
    pub number: u64,
    /// The protocol minor version the plugin said it speaks (calls added after it are not sent to it).
    pub protocol_minor: u32,
}

impl Generation {
    /// Starts `file`, whose marker is `marker`, and completes the handshake: the plugin must speak this protocol's
    /// major version and carry the same manifest its marker does. `label` is `<Kind>/<name>`; `stats` counts calls.
    pub fn start(
        file: &Path,
        marker: &Marker,
        options: &ProcessOptions,
        label: &str,
        stats: Arc<CallStats>,
        number: u64,
    ) -> Result<Generation, String> {
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
        // The same socket (one open file description): from here on, readers check their deadline every slice.
        started.socket.set_read_timeout(Some(super::demux::READ_SLICE)).map_err(|e| fail(format!("socket: {e}")))?;
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
        tracing::info!(plugin = %label, pid, generation = number, protocol = %marker.protocol, "started process plugin");
        Ok(Generation { conn, pid, started: Instant::now(), number, protocol_minor: hello.protocol_minor })
    }

    /// Why the process is gone, if it is.
    pub fn ended(&self) -> Option<String> {
        self.conn.ended()
    }

    /// Ends the process on purpose: runs its `onShutdown` (waiting at most `grace`), closes its socket (a plugin
    /// exits when it sees the end of it), waits up to `grace` for it to exit, then kills it. Returns once the
    /// process has exited (so a restarted one never meets it holding files or locks), killing it again until then.
    pub fn stop(&self, grace: Duration) {
        if self.ended().is_none()
            && let Ok(pending) = self.conn.start_call(Call::Shutdown)
            && pending.next_within(grace).is_none()
        {
            tracing::warn!(
                pid = self.pid,
                "onShutdown did not return within {} s; stopping the process",
                grace.as_secs()
            );
        }
        self.conn.close();
        if !self.conn.wait_exited(grace) {
            self.conn.kill_until_exited();
        }
    }
}

impl Drop for Generation {
    fn drop(&mut self) {
        self.conn.close();
    }
}
