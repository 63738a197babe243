//! A wake-up signal: a generation counter and a condition variable, so a waiter never misses a notification
//! sent between its last look and its wait.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Wakes waiters when something changed (new outbox entries, a cursor moved, stop was asked).
#[derive(Default)]
pub(super) struct Signal {
    generation: Mutex<u64>,
    changed: Condvar,
}

impl Signal {
    /// The current generation: pass it to [`wait_past`](Signal::wait_past) after looking for work.
    pub(super) fn generation(&self) -> u64 {
        *self.lock()
    }

    /// Bumps the generation and wakes every waiter.
    pub(super) fn notify(&self) {
        *self.lock() += 1;
        self.changed.notify_all();
    }

    /// Waits until the generation differs from `seen` or `timeout` passed; returns the generation then.
    pub(super) fn wait_past(&self, seen: u64, timeout: Duration) -> u64 {
        let guard = self.lock();
        let (guard, _) =
            self.changed.wait_timeout_while(guard, timeout, |now| *now == seen).unwrap_or_else(PoisonError::into_inner);
        *guard
    }

    fn lock(&self) -> MutexGuard<'_, u64> {
        self.generation.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Signal;

    #[test]
    fn a_notification_sent_before_the_wait_is_not_lost() {
        let signal = Signal::default();
        let seen = signal.generation();
        signal.notify();
        // Would sleep the whole hour if the notification had been lost.
        assert_eq!(signal.wait_past(seen, Duration::from_secs(3600)), seen + 1);
    }

    #[test]
    fn waiting_without_notification_times_out() {
        let signal = Signal::default();
        let seen = signal.generation();
        assert_eq!(signal.wait_past(seen, Duration::from_millis(10)), seen);
    }
}
