//! The manager's end of one process plugin's socket: numbered calls with a deadline, callbacks routed back to the
//! call that waits for them ([`super::demux`]: the waiting caller reads its own reply), log events into the
//! daemon's `tracing`, and a clear reason for every call once the process is gone.

use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use manager_plugin::PluginError;
use manager_plugin::error::BoundaryError as _;
use manager_plugin::lifecycle::CallStats;
use manager_plugin::process::codec::{LineReader, write_line};
use manager_plugin::process::wire::{Answer, Call, Callback, Handle, ToPlugin, Value, WireError};

use super::demux::{Demux, Waited};

/// What arrives for a waiting call.
#[derive(Debug)]
pub enum Incoming {
    /// Its result.
    Reply(Result<Value, WireError>),
    /// It needs the manager.
    Callback(Callback),
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How the plugin process ended, set once by whoever learns it first (its reaper, or the reader at EOF).
#[derive(Default)]
pub struct Ended {
    state: Mutex<EndState>,
    changed: Condvar,
}

#[derive(Default)]
struct EndState {
    why: Option<String>,
    /// The reaper saw the process exit (the reader's EOF alone does not prove it is gone).
    exited: bool,
}

impl Ended {
    /// Records why the process ended (the first reason wins).
    pub fn set(&self, why: String) {
        let mut state = lock(&self.state);
        if state.why.is_none() {
            state.why = Some(why);
        }
        self.changed.notify_all();
    }

    /// The reaper's record: the process exited, `why`.
    pub fn set_exited(&self, why: String) {
        lock(&self.state).exited = true;
        self.set(why);
    }

    /// Why it ended, if it did.
    pub fn get(&self) -> Option<String> {
        lock(&self.state).why.clone()
    }

    /// Whether the reaper saw the process exit (a reason alone, from a deadline or the socket's end, is not that).
    pub fn exited(&self) -> bool {
        lock(&self.state).exited
    }

    /// Waits up to `limit` for a reason.
    pub fn wait(&self, limit: Duration) -> Option<String> {
        let state = lock(&self.state);
        let (state, _) =
            self.changed.wait_timeout_while(state, limit, |s| s.why.is_none()).unwrap_or_else(|p| p.into_inner());
        state.why.clone()
    }

    /// Waits up to `limit` for the process to have exited (reaped); whether it has.
    pub fn wait_exited(&self, limit: Duration) -> bool {
        let state = lock(&self.state);
        let (state, _) =
            self.changed.wait_timeout_while(state, limit, |s| !s.exited).unwrap_or_else(|p| p.into_inner());
        state.exited
    }
}

/// One process plugin's connection.
pub struct Connection {
    label: String,
    /// The writing half; its write timeout is the call deadline (a plugin that stops reading its socket must not
    /// hold every later call, and the operator's stop, behind a full socket buffer).
    writer: Mutex<UnixStream>,
    /// Another descriptor of the same socket, so that [`Connection::close`] never waits for the writer's lock.
    closer: UnixStream,
    /// The reading side: calls wait there for their messages.
    demux: Demux,
    next_id: AtomicU64,
    /// Set when the process is gone; every later call fails with it.
    ended: Arc<Ended>,
    stats: Arc<CallStats>,
    timeout: Duration,
    /// Kills the process (a call passed its deadline: the plugin may be stuck for good).
    kill: Box<dyn Fn() + Send + Sync>,
}

impl Connection {
    /// Starts serving `reader` (the socket's reading half, past the handshake, whose read timeout bounds how long
    /// a message may stall half written); a background thread reads it while no call does.
    pub fn start(
        label: String,
        writer: UnixStream,
        reader: LineReader<UnixStream>,
        ended: Arc<Ended>,
        stats: Arc<CallStats>,
        timeout: Duration,
        kill: Box<dyn Fn() + Send + Sync>,
    ) -> std::io::Result<Arc<Connection>> {
        writer.set_write_timeout(Some(timeout))?;
        let closer = writer.try_clone()?;
        let demux = Demux::new(label.clone(), reader, Arc::clone(&ended));
        let conn = Arc::new(Connection {
            label,
            writer: Mutex::new(writer),
            closer,
            demux,
            next_id: AtomicU64::new(1),
            ended,
            stats,
            timeout,
            kill,
        });
        let serving = Arc::clone(&conn);
        std::thread::Builder::new()
            .name(format!("plugin-conn {}", conn.label))
            .spawn(move || serving.demux.background())?;
        Ok(conn)
    }

    fn send(&self, message: &ToPlugin) -> Result<(), WireError> {
        let failed = |why: String| WireError::Protocol(format!("plugin {}: {why}", self.label));
        if let Some(why) = self.ended.get() {
            return Err(failed(why));
        }
        let written = {
            let mut writer = lock(&self.writer);
            // A send that waited for the lock behind one that timed out must not write into a killed process.
            if let Some(why) = self.ended.get() {
                return Err(failed(why));
            }
            write_line(&mut *writer, message)
        };
        let Err(e) = written else { return Ok(()) };
        if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) {
            // Its socket stayed full for the whole deadline: the plugin stopped reading (stopped, stuck). A line
            // may be half written, so this connection can never be used again.
            let why = format!(
                "it did not read its socket within {} s ([Common.Plugins] ProcessCallTimeoutSecs); its process was \
                 killed",
                self.timeout.as_secs()
            );
            tracing::error!(plugin = %self.label, "{why}");
            self.ended.set(why);
            (self.kill)();
            return Err(failed(self.ended.get().unwrap_or_default()));
        }
        // A broken pipe is the process dying: wait a moment for how it ended (its reaper knows), say that.
        let why = self.ended.wait(Duration::from_millis(500));
        Err(failed(why.unwrap_or_else(|| format!("writing to its process failed: {e}"))))
    }

    /// Sends `call` and returns the handle to wait on it. Counts the call.
    pub fn start_call(self: &Arc<Self>, call: Call) -> Result<PendingCall, WireError> {
        self.stats.record_call();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.demux.open(id);
        let pending = PendingCall { conn: Arc::clone(self), id };
        if let Err(e) = self.send(&ToPlugin::Request { id, call }) {
            self.record(&Err(e.clone()));
            return Err(e);
        }
        Ok(pending)
    }

    /// Runs a call that needs no callbacks and returns its result.
    pub fn call(self: &Arc<Self>, call: Call) -> Result<Value, WireError> {
        let pending = self.start_call(call)?;
        match pending.next()? {
            Incoming::Reply(reply) => pending.finish(reply),
            Incoming::Callback(cb) => pending.finish(Err(WireError::Protocol(format!("unexpected callback {cb:?}")))),
        }
    }

    /// Tells the plugin the manager dropped `handle`.
    pub fn release(&self, handle: Handle) {
        let _ = self.send(&ToPlugin::Release { handle });
    }

    /// Closes the socket: the plugin process exits when it sees the end of it.
    /// Never waits for a send in progress (that one fails at once).
    pub fn close(&self) {
        let _ = self.closer.shutdown(std::net::Shutdown::Both);
    }

    /// Why the process is gone, if it is.
    pub fn ended(&self) -> Option<String> {
        self.ended.get()
    }

    /// Waits up to `limit` for the process to be gone; why it went, if it did.
    pub fn wait_ended(&self, limit: Duration) -> Option<String> {
        self.ended.wait(limit)
    }

    /// Waits up to `limit` for the process to have exited (reaped, not only its socket closed); whether it has.
    pub fn wait_exited(&self, limit: Duration) -> bool {
        self.ended.wait_exited(limit)
    }

    /// Kills the process (SIGKILL through its pidfd).
    pub fn kill(&self) {
        (self.kill)();
    }

    /// Kills the process and returns once its reaper saw it exit, killing again every 2 s until then (logging
    /// each time): a new generation must never run beside the old one (a KV plugin's old process could still
    /// commit after the restart's settle fenced it off).
    pub fn kill_until_exited(&self) {
        let mut tries = 0u32;
        loop {
            (self.kill)();
            if self.ended.wait_exited(Duration::from_secs(2)) {
                return;
            }
            tries += 1;
            tracing::error!(plugin = %self.label, tries, "the plugin process has not exited after SIGKILL; killing it again before a new one starts");
        }
    }

    /// Counts the failure of a hook that arrived inside a successful reply (a `DeliverBatch` that stopped at it),
    /// as a failed call is counted.
    pub fn record_hook_failure(&self, error: &PluginError) {
        if error.is_failure() {
            self.stats.record_failure(error.to_string(), error.is_panic());
        }
    }

    fn record(&self, result: &Result<Value, WireError>) {
        if let Err(e) = result {
            let (failure, panicked) = match e {
                WireError::Kv(e) => (e.is_failure(), e.is_panic()),
                WireError::Store(e) => (e.is_failure(), e.is_panic()),
                WireError::Rpc(e) => (e.is_failure(), e.is_panic()),
                WireError::Plugin(e) => (e.is_failure(), e.is_panic()),
                WireError::Protocol(_) => (true, false),
            };
            if failure {
                self.stats.record_failure(describe(e), panicked);
            }
        }
    }
}

/// The error's own message, without the variant.
pub fn describe(error: &WireError) -> String {
    match error {
        WireError::Kv(e) => e.to_string(),
        WireError::Store(e) => e.to_string(),
        WireError::Rpc(e) => e.to_string(),
        WireError::Plugin(e) => e.to_string(),
        WireError::Protocol(m) => m.clone(),
    }
}

/// A call in flight.
pub struct PendingCall {
    conn: Arc<Connection>,
    id: u64,
}

impl PendingCall {
    /// The next reply or callback, within the deadline; past it, the process is killed (it may be stuck for good,
    /// holding locks) and the call fails saying so.
    pub fn next(&self) -> Result<Incoming, WireError> {
        let why = match self.conn.demux.wait(self.id, Instant::now() + self.conn.timeout) {
            Waited::Message(incoming) => return Ok(incoming),
            Waited::TimedOut => {
                let why = format!(
                    "it did not answer within {} s ([Common.Plugins] ProcessCallTimeoutSecs); its process was killed",
                    self.conn.timeout.as_secs()
                );
                tracing::error!(plugin = %self.conn.label, "{why}");
                self.conn.ended.set(why.clone());
                (self.conn.kill)();
                why
            }
            Waited::Closed => self.conn.ended().unwrap_or_else(|| "the plugin process ended".into()),
        };
        let error = WireError::Protocol(format!("plugin {}: {why}", self.conn.label));
        self.conn.record(&Err(error.clone()));
        Err(error)
    }

    /// The next reply or callback if it arrives within `limit` (no deadline kill: for a caller that stops the
    /// process anyway).
    pub fn next_within(&self, limit: Duration) -> Option<Incoming> {
        match self.conn.demux.wait(self.id, Instant::now() + limit) {
            Waited::Message(incoming) => Some(incoming),
            Waited::TimedOut | Waited::Closed => None,
        }
    }

    /// Answers a callback of this call.
    pub fn answer(&self, answer: Answer) -> Result<(), WireError> {
        self.conn.send(&ToPlugin::Answer { id: self.id, answer })
    }

    /// Counts the call's result and returns it.
    pub fn finish(&self, result: Result<Value, WireError>) -> Result<Value, WireError> {
        self.conn.record(&result);
        result
    }

    /// The connection.
    pub fn connection(&self) -> &Arc<Connection> {
        &self.conn
    }
}

impl Drop for PendingCall {
    fn drop(&mut self) {
        self.conn.demux.forget(self.id);
    }
}
