//! Reading one process plugin's socket without a hand-off per call (leader/follower): a caller waiting for its
//! reply reads the socket itself when nobody else does, so a reply wakes exactly the thread that waits for it, as
//! a plain request/response socket would. Messages for other calls are queued for them and their thread woken; a
//! leader that got its own message hands the socket to a caller still waiting, if any.
//!
//! A leader reads with the socket's read timeout, [`READ_SLICE`] (set by `generation.rs`): a read that found
//! nothing for that long returns, the leader checks its deadline and reads on; a message cut by it is kept
//! (`LineReader`), so a slow writer loses nothing and a stalled one meets the waiting call's deadline.
//!
//! While no call is in flight, a background thread reads log records and the socket's end. It never holds the
//! socket across a blocking read of nothing: it waits for readability first, and after it found a leader reading
//! (or nothing left to read) it stays away for [`IDLE_BACKOFF`], so busy traffic wakes it at most a few times a
//! second instead of once per reply.

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsRawFd as _, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::Thread;
use std::time::{Duration, Instant};

use manager_plugin::lifecycle::LogSink as _;
use manager_plugin::process::codec::LineReader;
use manager_plugin::process::wire::FromPlugin;

use super::connection::{Ended, Incoming};
use crate::plugins::log_sink::PluginLogSink;

/// How long the background reader stays away after finding the socket in a caller's hands.
pub const IDLE_BACKOFF: Duration = Duration::from_millis(100);

/// The socket's read timeout: how often a leader waiting for a message checks its deadline.
pub const READ_SLICE: Duration = Duration::from_millis(250);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What a wait for a call's next message ended with.
#[derive(Debug)]
pub enum Waited {
    /// The call's next reply or callback.
    Message(Incoming),
    /// The deadline passed first.
    TimedOut,
    /// The socket ended (or broke the protocol): nothing more will arrive; the reason is in [`Ended`].
    Closed,
}

#[derive(Default)]
struct Slot {
    queue: VecDeque<Incoming>,
    /// The caller's thread while it sleeps waiting for a message or for the socket.
    sleeper: Option<Thread>,
}

#[derive(Default)]
struct State {
    /// Someone holds the socket (a caller, or the background reader).
    leader: bool,
    /// The socket ended; nobody reads it again.
    closed: bool,
    slots: HashMap<u64, Slot>,
}

/// The reading side of one connection.
pub struct Demux {
    label: String,
    fd: RawFd,
    /// Locked only by the leader (so never contended): the mutex makes the reader `Sync`.
    reader: Mutex<LineReader<UnixStream>>,
    state: Mutex<State>,
    ended: Arc<Ended>,
    log: PluginLogSink,
}

/// What one read brought, for the thread that read it.
enum Read {
    /// The message the reader waits for.
    Own(Incoming),
    /// Something else, already routed.
    Other,
    /// Nothing complete within [`READ_SLICE`].
    Silent,
    /// The socket ended.
    Closed,
}

impl Demux {
    /// Reads `reader` (past the handshake) for the calls of the plugin `label`.
    pub fn new(label: String, reader: LineReader<UnixStream>, ended: Arc<Ended>) -> Demux {
        let fd = reader.get_ref().as_raw_fd();
        let log = PluginLogSink::new(label.clone());
        Demux { label, fd, reader: Mutex::new(reader), state: Mutex::default(), ended, log }
    }

    /// Registers call `id` before its request is sent (a reply can never arrive for an unknown call).
    pub fn open(&self, id: u64) {
        lock(&self.state).slots.insert(id, Slot::default());
    }

    /// Forgets call `id`; later messages for it are dropped.
    pub fn forget(&self, id: u64) {
        lock(&self.state).slots.remove(&id);
    }

    /// Waits until `deadline` for the next message of call `id`, reading the socket itself when nobody does.
    pub fn wait(&self, id: u64, deadline: Instant) -> Waited {
        loop {
            let mut guard = lock(&self.state);
            let State { leader, closed, slots } = &mut *guard;
            let Some(slot) = slots.get_mut(&id) else { return Waited::Closed };
            if let Some(message) = slot.queue.pop_front() {
                return Waited::Message(message);
            }
            if *closed {
                return Waited::Closed;
            }
            let now = Instant::now();
            if now >= deadline {
                slot.sleeper = None;
                return Waited::TimedOut;
            }
            if !*leader {
                *leader = true;
                drop(guard);
                match self.lead(Some(id), deadline) {
                    Some(Read::Own(message)) => return Waited::Message(message),
                    // Timed out, or closed, or another's message: the loop says which.
                    _ => continue,
                }
            }
            slot.sleeper = Some(std::thread::current());
            drop(guard);
            std::thread::park_timeout(deadline - now);
        }
    }

    /// As leader (the caller set [`State::leader`]): reads until `own`'s message, the deadline or the end, then
    /// steps down. `None` when the deadline passed. The deadline is checked after every read, not only after a
    /// silent one: a call whose plugin thread hangs while the plugin's other threads keep answering must still
    /// meet it.
    fn lead(&self, own: Option<u64>, deadline: Instant) -> Option<Read> {
        let mut reader = lock(&self.reader);
        loop {
            match self.read_one(&mut reader, own) {
                Read::Other | Read::Silent if Instant::now() < deadline => continue,
                Read::Other | Read::Silent => {
                    drop(reader);
                    self.step_down();
                    return None;
                }
                read => {
                    drop(reader);
                    if !matches!(read, Read::Closed) {
                        self.step_down();
                    }
                    return Some(read);
                }
            }
        }
    }

    /// Reads and routes one message.
    fn read_one(&self, reader: &mut LineReader<UnixStream>, own: Option<u64>) -> Read {
        let (id, message) = match reader.read_message::<FromPlugin>() {
            Ok(Some(FromPlugin::Reply { id, reply })) => (id, Incoming::Reply(reply)),
            Ok(Some(FromPlugin::Callback { id, callback })) => (id, Incoming::Callback(callback)),
            Ok(Some(FromPlugin::Log(record))) => {
                self.log.log(&record);
                return Read::Other;
            }
            Ok(Some(FromPlugin::Hello(_))) => {
                tracing::warn!(plugin = %self.label, "a second handshake, ignored");
                return Read::Other;
            }
            Ok(None) => {
                self.close("the plugin process closed its connection".into());
                return Read::Closed;
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Read::Silent;
            }
            Err(e) => {
                self.close(format!("the plugin process broke the protocol ({e})"));
                return Read::Closed;
            }
        };
        if own == Some(id) {
            return Read::Own(message);
        }
        let mut state = lock(&self.state);
        if let Some(slot) = state.slots.get_mut(&id) {
            slot.queue.push_back(message);
            if let Some(sleeper) = slot.sleeper.take() {
                sleeper.unpark();
            }
        }
        Read::Other
    }

    /// Gives up the socket; wakes a caller that sleeps waiting for it, if any.
    fn step_down(&self) {
        let mut state = lock(&self.state);
        state.leader = false;
        if let Some(slot) = state.slots.values_mut().find(|s| s.sleeper.is_some() && s.queue.is_empty())
            && let Some(sleeper) = slot.sleeper.take()
        {
            sleeper.unpark();
        }
    }

    /// The socket ended: records why (the reaper's words, how the process ended, when it has them soon) and wakes
    /// every waiting caller.
    fn close(&self, end: String) {
        let why = self.ended.wait(Duration::from_secs(2)).unwrap_or(end);
        self.ended.set(why);
        let mut state = lock(&self.state);
        state.closed = true;
        state.leader = false;
        for slot in state.slots.values_mut() {
            if let Some(sleeper) = slot.sleeper.take() {
                sleeper.unpark();
            }
        }
    }

    /// The background reader: reads what arrives while no call does (log records, the socket's end) until the
    /// socket ends. Runs on a thread of its own.
    pub fn background(&self) {
        loop {
            match readable(self.fd, Duration::MAX) {
                Ok(_) => {}
                Err(e) => {
                    self.close(format!("the plugin's socket cannot be waited on ({e})"));
                    return;
                }
            }
            {
                let mut state = lock(&self.state);
                if state.closed {
                    return;
                }
                if state.leader {
                    drop(state);
                    std::thread::sleep(IDLE_BACKOFF);
                    continue;
                }
                state.leader = true;
            }
            // A caller may have read what woke us before we took the socket: read only what is there now.
            let mut reader = lock(&self.reader);
            let ready = reader.has_buffered_message() || readable(self.fd, Duration::ZERO).unwrap_or(true);
            if !ready {
                drop(reader);
                self.step_down();
                std::thread::sleep(IDLE_BACKOFF);
                continue;
            }
            let read = self.read_one(&mut reader, None);
            drop(reader);
            match read {
                Read::Closed => return,
                // Half a message for a whole read slice: keep it, look again later.
                Read::Silent => {
                    self.step_down();
                    std::thread::sleep(IDLE_BACKOFF);
                }
                _ => self.step_down(),
            }
        }
    }
}

/// Waits up to `limit` for `fd` to be readable (or at its end); whether it is.
fn readable(fd: RawFd, limit: Duration) -> std::io::Result<bool> {
    let started = Instant::now();
    loop {
        let left = limit.saturating_sub(started.elapsed());
        let timeout = if limit == Duration::MAX {
            -1
        } else {
            // Rounded up, so a wait never ends before its limit.
            i32::try_from(left.as_micros().div_ceil(1000)).unwrap_or(i32::MAX)
        };
        let mut pollfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(&mut pollfd, 1, timeout) };
        if n >= 0 {
            return Ok(n > 0);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use manager_plugin::process::codec::write_line;
    use manager_plugin::process::wire::{Value, WireError};

    use super::*;

    fn reply(id: u64, n: u64) -> Vec<u8> {
        let mut line = Vec::new();
        write_line(&mut line, &FromPlugin::Reply { id, reply: Ok::<_, WireError>(Value::Size(n)) }).unwrap();
        line
    }

    fn demux() -> (Arc<Demux>, UnixStream, Arc<Ended>) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let ended = Arc::new(Ended::default());
        (Arc::new(Demux::new("KVStore/test".into(), LineReader::new(ours), Arc::clone(&ended))), theirs, ended)
    }

    fn size(waited: Waited) -> u64 {
        match waited {
            Waited::Message(Incoming::Reply(Ok(Value::Size(n)))) => n,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn concurrent_callers_each_get_their_own_reply_whoever_reads_them() {
        let (demux, mut plugin, _ended) = demux();
        let background = {
            let demux = Arc::clone(&demux);
            std::thread::spawn(move || demux.background())
        };
        const CALLS: u64 = 64;
        for id in 1..=CALLS {
            demux.open(id);
        }
        let callers: Vec<_> = (1..=CALLS)
            .map(|id| {
                let demux = Arc::clone(&demux);
                std::thread::spawn(move || size(demux.wait(id, Instant::now() + Duration::from_secs(30))))
            })
            .collect();
        // Replies in reverse order, in bursts, with log records between them.
        let mut log = Vec::new();
        let record = manager_plugin::lifecycle::LogRecord {
            level: manager_plugin::lifecycle::LogLevel::Info,
            target: "t".into(),
            message: "m".into(),
            fields: Vec::new(),
        };
        write_line(&mut log, &FromPlugin::Log(record)).unwrap();
        for id in (1..=CALLS).rev() {
            let mut burst = reply(id, id * 10);
            burst.extend_from_slice(&log);
            plugin.write_all(&burst).unwrap();
            if id.is_multiple_of(8) {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        for (caller, id) in callers.into_iter().zip(1..=CALLS) {
            assert_eq!(caller.join().unwrap(), id * 10);
        }
        drop(plugin);
        background.join().unwrap();
        demux.open(999);
        assert!(matches!(demux.wait(999, Instant::now() + Duration::from_secs(5)), Waited::Closed));
    }

    /// The hang that kept `process_supervision`'s KV crash test waiting for a restart: one plugin thread hung in
    /// a call while the others kept answering other calls; its caller, reading the socket for everyone, never
    /// looked at its deadline.
    #[test]
    fn a_call_meets_its_deadline_while_the_plugin_keeps_answering_other_calls() {
        let (demux, mut plugin, _ended) = demux();
        demux.reader.lock().unwrap().get_ref().set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        demux.open(1);
        demux.open(2);
        // Replies to call 2 every 2 ms for up to 3 s (until the wait below ends: unread, they would fill the socket).
        let streaming = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let stream = std::thread::spawn({
            let streaming = Arc::clone(&streaming);
            move || {
                let until = Instant::now() + Duration::from_secs(3);
                let mut n = 0;
                while Instant::now() < until && streaming.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    plugin.write_all(&reply(2, n)).unwrap();
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        });
        let started = Instant::now();
        let waited = demux.wait(1, Instant::now() + Duration::from_millis(200));
        let took = started.elapsed();
        streaming.store(false, std::sync::atomic::Ordering::Relaxed);
        assert!(matches!(waited, Waited::TimedOut), "{waited:?}");
        assert!(took < Duration::from_secs(1), "the deadline was 200 ms; the wait took {took:?}");
        // Call 2's replies were routed meanwhile.
        assert_eq!(size(demux.wait(2, Instant::now() + Duration::from_secs(5))), 1);
        stream.join().unwrap();
    }

    #[test]
    fn a_reply_is_read_by_its_caller_and_a_deadline_and_the_end_are_told_apart() {
        let (demux, mut plugin, ended) = demux();
        // As `generation.rs` sets it (shorter, for the test).
        demux.reader.lock().unwrap().get_ref().set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        demux.open(1);
        plugin.write_all(&reply(1, 7)).unwrap();
        assert_eq!(size(demux.wait(1, Instant::now() + Duration::from_secs(5))), 7);
        let started = Instant::now();
        assert!(matches!(demux.wait(1, Instant::now() + Duration::from_millis(50)), Waited::TimedOut));
        assert!(started.elapsed() >= Duration::from_millis(50));
        // A reply for a call nobody waits for any more is dropped; the next one still arrives.
        demux.open(2);
        demux.forget(1);
        plugin.write_all(&[reply(1, 1), reply(2, 2)].concat()).unwrap();
        assert_eq!(size(demux.wait(2, Instant::now() + Duration::from_secs(5))), 2);
        // Half a message, then nothing: the waiting call meets its deadline; the rest arrives, nothing was lost.
        let line = reply(2, 3);
        let (head, tail) = line.split_at(10);
        plugin.write_all(head).unwrap();
        let started = Instant::now();
        assert!(matches!(demux.wait(2, Instant::now() + Duration::from_millis(100)), Waited::TimedOut));
        assert!(started.elapsed() >= Duration::from_millis(100));
        plugin.write_all(tail).unwrap();
        assert_eq!(size(demux.wait(2, Instant::now() + Duration::from_secs(5))), 3);
        // The end of the socket: every waiting call learns it, with the reason recorded for the process.
        ended.set("killed by the test".into());
        drop(plugin);
        assert!(matches!(demux.wait(2, Instant::now() + Duration::from_secs(5)), Waited::Closed));
        assert_eq!(ended.get().as_deref(), Some("killed by the test"));
    }
}
