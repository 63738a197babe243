//! The single-writer lease of a Redis namespace prefix: two managers on one prefix would hand out the same sector
//! numbers and break the outbox's visibility horizon, so the second one refuses to start.
//!
//! The lease is the key `<prefix>:writer-lease`, holding the holder's host, pid, start time and a random token,
//! set with `SET NX PX` and an expiry of [`LEASE_TTL`]. A thread renews it every third of that (only while it
//! still holds the holder's token) and `close` deletes it. A manager killed without `close` leaves the lease
//! until it expires; a restart on the same host takes it over at once when the recorded pid is no longer
//! running, so a crash and restart are not delayed.
//!
//! What the lease does not do: fence a manager that lost it (a process stopped for longer than the expiry, then
//! resumed). The renewal thread then logs an error at every attempt; its writes are not refused.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use manager_plugin::kv::{Db, KvError, KvStore};
use serde::{Deserialize, Serialize};

use super::RedisDb;

/// How long a lease lasts without renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(30);

/// Who holds a prefix's lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LeaseHolder {
    /// The holder's host name.
    pub host: String,
    /// The holder's process id.
    pub pid: u32,
    /// When it took the lease (RFC 3339, UTC).
    pub since: String,
    /// Random, to tell this holder from a later one with the same host and pid.
    pub token: String,
}

impl LeaseHolder {
    fn this_process() -> LeaseHolder {
        let now = time::OffsetDateTime::now_utc();
        let bytes: [u8; 16] = rand::random();
        LeaseHolder {
            host: host_name(),
            pid: std::process::id(),
            since: now.format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| now.to_string()),
            token: bytes.iter().map(|b| format!("{b:02x}")).collect(),
        }
    }
}

/// The host name, from the kernel (`/proc/sys/kernel/hostname`), or `unknown-host`.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown-host".to_string())
}

/// Whether process `pid` runs on this host.
fn process_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Sets `KEYS[1]` to `ARGV[2]` with expiry `ARGV[3]` ms only if it still holds `ARGV[1]` (a dead holder's value).
const TAKE_OVER: &str = r"if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) return 1 end return 0";
/// Extends `KEYS[1]` by `ARGV[2]` ms only if it holds `ARGV[1]` (our value).
const RENEW: &str = r"if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0";
/// Deletes `KEYS[1]` only if it holds `ARGV[1]` (our value).
const RELEASE: &str = r"if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1]) end return 0";

/// A [`RedisDb`] that holds its prefix's writer lease while open: use it as the manager's database.
pub struct LeasedRedisDb {
    inner: RedisDb,
    lease: Arc<Lease>,
    renewer: Mutex<Option<JoinHandle<()>>>,
}

/// The lease's key and value, and the renewal thread's stop signal.
struct Lease {
    db: RedisDb,
    key: String,
    value: String,
    stopping: AtomicBool,
    stop_lock: Mutex<()>,
    stop: Condvar,
}

impl LeasedRedisDb {
    /// Takes the writer lease of `prefix` on `db`'s server, or refuses naming the manager that holds it.
    pub fn acquire(db: RedisDb, prefix: &str) -> Result<LeasedRedisDb, KvError> {
        let key = format!("{prefix}:writer-lease");
        let holder = LeaseHolder::this_process();
        let value = serde_json::to_string(&holder).map_err(|err| KvError::Backend(format!("encode lease: {err}")))?;
        let ttl_ms = LEASE_TTL.as_millis().to_string();
        let addr = db.addr().to_string();
        let fail = |err: String| KvError::Backend(format!("take the writer lease {key:?} on Redis at {addr}: {err}"));
        let taken: Option<String> = db
            .with_connection(|conn| {
                ::redis::cmd("SET").arg(&key).arg(&value).arg("NX").arg("PX").arg(&ttl_ms).query(conn)
            })
            .map_err(fail)?;
        if taken.is_none() {
            let current: Option<String> =
                db.with_connection(|conn| ::redis::cmd("GET").arg(&key).query(conn)).map_err(fail)?;
            let current = current.unwrap_or_default();
            let other: Option<LeaseHolder> = serde_json::from_str(&current).ok();
            let dead_here = other.as_ref().is_some_and(|o| o.host == holder.host && !process_alive(o.pid));
            let took_over = dead_here
                && db
                    .with_connection(|conn| {
                        ::redis::Script::new(TAKE_OVER)
                            .key(&key)
                            .arg(&current)
                            .arg(&value)
                            .arg(&ttl_ms)
                            .invoke::<i64>(conn)
                    })
                    .map_err(fail)?
                    == 1;
            if !took_over {
                return Err(KvError::Backend(refusal(&addr, prefix, other.as_ref(), &current)));
            }
            tracing::info!(redis = %addr, prefix, "took over the writer lease of a manager on this host that is gone");
        }
        let lease = Arc::new(Lease {
            db: RedisDb::clone_handle(&db),
            key,
            value,
            stopping: AtomicBool::new(false),
            stop_lock: Mutex::new(()),
            stop: Condvar::new(),
        });
        let renewing = Arc::clone(&lease);
        let renewer = std::thread::Builder::new()
            .name("redis-lease".to_string())
            .spawn(move || renewing.renew_until_stopped())
            .map_err(|err| KvError::Backend(format!("start the lease renewal thread: {err}")))?;
        tracing::info!(redis = %addr, prefix, pid = holder.pid, "holding the writer lease of the Redis prefix");
        Ok(LeasedRedisDb { inner: db, lease, renewer: Mutex::new(Some(renewer)) })
    }

    /// The underlying database (e.g. for [`RedisDb::check_durability`]).
    pub fn inner(&self) -> &RedisDb {
        &self.inner
    }
}

/// The message refusing a second manager.
fn refusal(addr: &str, prefix: &str, holder: Option<&LeaseHolder>, raw: &str) -> String {
    let who = match holder {
        Some(h) => format!("the manager on host {:?}, pid {}, since {}", h.host, h.pid, h.since),
        None => format!("an unknown holder ({raw:?})"),
    };
    format!(
        "Redis at {addr}, prefix {prefix:?} is in use by {who}: two managers on one prefix would hand out the same \
         sector numbers. Stop that manager, or give this one its own [Common.DB.Redis] Prefix. If that manager is \
         gone for good (its host is down), start again after its lease expires (at most {} s)",
        LEASE_TTL.as_secs()
    )
}

impl Lease {
    fn renew_until_stopped(&self) {
        let interval = LEASE_TTL / 3;
        let ttl_ms = LEASE_TTL.as_millis().to_string();
        loop {
            let guard = self.stop_lock.lock().unwrap_or_else(PoisonError::into_inner);
            let _ = self
                .stop
                .wait_timeout_while(guard, interval, |_| !self.stopping.load(Ordering::Acquire))
                .unwrap_or_else(PoisonError::into_inner);
            if self.stopping.load(Ordering::Acquire) {
                return;
            }
            let renewed = self.db.with_connection(|conn| {
                ::redis::Script::new(RENEW).key(&self.key).arg(&self.value).arg(&ttl_ms).invoke::<i64>(conn)
            });
            match renewed {
                Ok(1) => {}
                Ok(_) => tracing::error!(
                    lease = %self.key,
                    "lost the writer lease of the Redis prefix (it expired or another manager took it): two \
                     managers may now write the same prefix; stop one of them"
                ),
                Err(err) => tracing::warn!(lease = %self.key, error = %err, "cannot renew the writer lease; retrying"),
            }
        }
    }

    fn release(&self) {
        self.stopping.store(true, Ordering::Release);
        let _guard = self.stop_lock.lock().unwrap_or_else(PoisonError::into_inner);
        self.stop.notify_all();
    }
}

impl Db for LeasedRedisDb {
    fn run(&self) -> Result<(), KvError> {
        self.inner.run()
    }

    /// Closes the database and gives the lease up, so the next manager need not wait for it to expire.
    fn close(&self) -> Result<(), KvError> {
        self.lease.release();
        if let Some(renewer) = self.renewer.lock().unwrap_or_else(PoisonError::into_inner).take() {
            let _ = renewer.join();
        }
        let released = self.lease.db.with_connection(|conn| {
            ::redis::Script::new(RELEASE).key(&self.lease.key).arg(&self.lease.value).invoke::<i64>(conn)
        });
        if let Err(err) = released {
            tracing::warn!(lease = %self.lease.key, error = %err, "cannot release the writer lease; it expires by itself");
        }
        self.inner.close()
    }

    fn open_collection(&self, name: &str) -> Result<Box<dyn KvStore>, KvError> {
        self.inner.open_collection(name)
    }
}

impl Drop for LeasedRedisDb {
    fn drop(&mut self) {
        self.lease.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_names_the_holder_and_the_fixes() {
        let holder =
            LeaseHolder { host: "node-7".into(), pid: 4242, since: "2026-01-01T00:00:00Z".into(), token: "t".into() };
        let message = refusal("10.0.0.5:6379", "damocles", Some(&holder), "");
        for part in ["10.0.0.5:6379", "\"damocles\"", "node-7", "4242", "2026-01-01T00:00:00Z", "Prefix", "30 s"] {
            assert!(message.contains(part), "{part} missing: {message}");
        }
    }

    #[test]
    fn this_process_is_alive_and_a_reaped_child_is_not() {
        assert!(process_alive(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().expect("spawn true");
        let pid = child.id();
        child.wait().expect("wait");
        assert!(!process_alive(pid));
    }
}
