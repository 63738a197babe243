//! Bounded waits for liveness tests: every wait names what it waited for when it runs out.

use std::process::Command;
use std::time::{Duration, Instant};

use super::daemon::RunningDaemon;

/// Awaits `call` for at most `limit`, naming `what` when it takes longer.
pub async fn within<T>(what: &str, limit: Duration, call: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(limit, call).await {
        Ok(value) => value,
        Err(_) => panic!("{what} did not answer within {limit:?}"),
    }
}

/// SIGTERM, then waits at most `limit` for the exit; returns the exit code.
pub fn stop_within(mut daemon: RunningDaemon, limit: Duration) -> Option<i32> {
    let _ = Command::new("kill").args(["-TERM", &daemon.child.id().to_string()]).status();
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = daemon.child.try_wait().expect("try_wait") {
            return status.code();
        }
        assert!(Instant::now() < deadline, "the daemon did not exit within {limit:?} of SIGTERM:\n{}", daemon.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}
