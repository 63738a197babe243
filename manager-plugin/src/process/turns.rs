//! Whose turn it is to read the socket, in a process plugin (leader/follower without a wake-up per request).
//!
//! One thread at a time holds the socket (the leader). A request that may wait for the manager (a transaction
//! body, an upload: it needs answers read from the same socket) is run after the socket was handed to another
//! thread ([`Turns::hand_off`]). Any other request the leader runs itself without waking anyone
//! ([`Turns::run_inline`]): the socket is left unattended meanwhile, and a standby thread takes it over once it
//! was unattended for [`TAKEOVER`], so a slow request delays the others by at most that. Afterwards the leader
//! takes the socket back if nobody took it over ([`Turns::resume`]).
//!
//! The standby checks every [`TAKEOVER`] while requests come in, and sleeps until woken once none came for
//! [`ACTIVE`]: a busy plugin pays a thousand cheap wake-ups a second, an idle one none.

use std::sync::{Mutex, MutexGuard};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

/// How long a request run by the leader may leave the socket unread before the standby reads it.
pub const TAKEOVER: Duration = Duration::from_millis(1);

/// How long after the last request run by a leader the standby keeps checking on its own.
pub const ACTIVE: Duration = Duration::from_millis(100);

/// Idle threads kept (besides the main thread, which never exits); more exit when their turn ends.
const MAX_IDLE: usize = 8;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct State {
    /// A thread holds the socket (it reads, or runs a request with the socket unattended).
    held: bool,
    /// Since when the holder runs a request with the socket unread.
    unattended: Option<Instant>,
    /// The thread standing by to take the socket over.
    standby: Option<Thread>,
    /// The standby sleeps until woken (no request for [`ACTIVE`]).
    deep: bool,
    /// When the last request was run by a leader.
    last_inline: Instant,
    /// Threads with nothing to do, sleeping until woken.
    idle: Vec<Thread>,
}

/// The turn-taking of one plugin process's threads.
pub struct Turns {
    state: Mutex<State>,
}

/// What a caller must do after a turn change: start one more thread (none was idle to stand by).
#[must_use]
pub struct StartThread(pub bool);

impl Default for Turns {
    fn default() -> Self {
        Turns {
            state: Mutex::new(State {
                held: false,
                unattended: None,
                standby: None,
                deep: false,
                last_inline: Instant::now(),
                idle: Vec::new(),
            }),
        }
    }
}

impl Turns {
    /// Blocks until the calling thread holds the socket: `Some` (with whether to start a thread), or `None` when
    /// enough threads are idle and this one (never `main`) should exit.
    pub fn next_turn(&self, main: bool) -> Option<StartThread> {
        let me = thread::current();
        let mut state = lock(&self.state);
        loop {
            if !state.held {
                state.held = true;
                state.unattended = None;
                return Some(StartThread(false));
            }
            if state.standby.is_none() {
                state.standby = Some(me.clone());
                break;
            }
            if !state.idle.iter().any(|t| t.id() == me.id()) {
                if state.idle.len() >= MAX_IDLE && !main {
                    return None;
                }
                state.idle.push(me.clone());
            }
            drop(state);
            thread::park();
            state = lock(&self.state);
            // Woken on purpose (taken off the list) or spuriously (still on it): look again either way.
        }
        // Standing by.
        loop {
            let overdue = state.unattended.is_some_and(|since| since.elapsed() >= TAKEOVER);
            if !state.held || overdue {
                state.held = true;
                state.unattended = None;
                state.standby = None;
                state.deep = false;
                return Some(state.wake_idle());
            }
            if state.last_inline.elapsed() < ACTIVE {
                state.deep = false;
                let left = state.unattended.map_or(TAKEOVER, |since| TAKEOVER.saturating_sub(since.elapsed()));
                drop(state);
                thread::park_timeout(left);
            } else {
                state.deep = true;
                drop(state);
                thread::park();
            }
            state = lock(&self.state);
        }
    }

    /// The leader runs a request itself, leaving the socket unattended until [`Turns::resume`].
    pub fn run_inline(&self) -> StartThread {
        let mut state = lock(&self.state);
        let now = Instant::now();
        state.unattended = Some(now);
        state.last_inline = now;
        if state.deep {
            state.deep = false;
            if let Some(standby) = &state.standby {
                standby.unpark();
            }
        }
        if state.standby.is_none() { state.wake_idle() } else { StartThread(false) }
    }

    /// After a request run inline: whether the socket is still the caller's (nobody took it over).
    pub fn resume(&self) -> bool {
        lock(&self.state).unattended.take().is_some()
    }

    /// The leader gives the socket up before running a request that may wait for the manager.
    pub fn hand_off(&self) -> StartThread {
        let mut state = lock(&self.state);
        state.held = false;
        state.unattended = None;
        if let Some(standby) = &state.standby {
            standby.unpark();
            return StartThread(false);
        }
        state.wake_idle()
    }
}

impl State {
    /// Wakes an idle thread (it takes the free turn: the socket, or standing by), or asks for a new one.
    fn wake_idle(&mut self) -> StartThread {
        match self.idle.pop() {
            Some(idle) => {
                idle.unpark();
                StartThread(false)
            }
            None => StartThread(true),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Threads taking turns, each "request" recorded: a slow inline request lets the standby take the socket
    /// over; a hand-off wakes someone at once; nobody holds the socket twice.
    #[test]
    fn one_holder_at_a_time_and_a_slow_request_is_taken_over() {
        let turns = Arc::new(Turns::default());
        let holders = Arc::new(AtomicUsize::new(0));
        let served = Arc::new(AtomicUsize::new(0));
        let started = Arc::new(AtomicUsize::new(1));
        fn run(turns: Arc<Turns>, holders: Arc<AtomicUsize>, served: Arc<AtomicUsize>, started: Arc<AtomicUsize>) {
            let spawn = |start: StartThread| {
                if start.0 {
                    started.fetch_add(1, Ordering::SeqCst);
                    let (t, h, s, st) = (turns.clone(), holders.clone(), served.clone(), started.clone());
                    thread::spawn(move || run(t, h, s, st));
                }
            };
            while let Some(start) = turns.next_turn(false) {
                spawn(start);
                loop {
                    // Reading the socket.
                    assert_eq!(holders.swap(1, Ordering::SeqCst), 0, "two threads read the socket");
                    thread::yield_now();
                    let n = served.fetch_add(1, Ordering::SeqCst);
                    holders.store(0, Ordering::SeqCst);
                    if n >= 300 {
                        return;
                    }
                    if n.is_multiple_of(3) {
                        spawn(turns.hand_off());
                        thread::sleep(Duration::from_micros(200));
                        break;
                    }
                    spawn(turns.run_inline());
                    if n.is_multiple_of(5) {
                        thread::sleep(TAKEOVER * 3);
                    }
                    if !turns.resume() {
                        break;
                    }
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        let (t, h, s, st) = (turns.clone(), holders.clone(), served.clone(), started.clone());
        thread::spawn(move || run(t, h, s, st));
        while served.load(Ordering::SeqCst) < 300 {
            assert!(Instant::now() < deadline, "turns stalled at {}", served.load(Ordering::SeqCst));
            thread::sleep(Duration::from_millis(5));
        }
        // Threads are started only for requests running at once (a few here), not per request.
        assert!(started.load(Ordering::SeqCst) <= 40, "{} threads for 300 requests", started.load(Ordering::SeqCst));
    }
}
