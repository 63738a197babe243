//! The single-writer lease of a Redis namespace prefix: two managers on one prefix would hand out the same sector
//! numbers and break the outbox's visibility horizon, so the second one refuses to start, and a manager that
//! lost the lease stops writing.
//!
//! The lease is the key `<prefix>:writer-lease`, holding the holder's host, pid, boot id, PID namespace, process
//! start time and a random token, set with `SET NX PX` and an expiry of [`LEASE_TTL`]. A thread renews it every
//! third of that (only while it still holds the holder's value) and `close` deletes it.
//!
//! **Take-over.** A manager killed without `close` leaves the lease until it expires. A new manager takes it over
//! at once only when the holder is provably gone: same host, same boot id, same PID namespace (the inode of
//! `/proc/self/ns/pid`), and no process with the holder's pid and start time. A holder in another PID namespace
//! (another container, even with host networking), on another boot or another host cannot be checked from here:
//! the new manager waits for the lease to expire.
//!
//! **Fencing.** Every commit that writes (`redis.rs`, `RedisTxn::finish`) first `WATCH`es the lease key and reads
//! it: not this manager's value → the write is refused ([`refusal`](super::refusal)) and nothing is sent; taken
//! by another manager between that read and the `EXEC` → the `EXEC` fails. So a manager that lost the lease
//! (paused past the expiry, then resumed) cannot write, whatever its renewal thread believes.
//!
//! **Getting it back.** Every acquisition increments `<prefix>:writer-lease-epoch` and remembers the value. When
//! renewal finds the lease gone (expired, or the server lost its data), the manager takes it back only if the
//! epoch is still its own (in one Lua script): nobody else held the lease in between, so its in-memory outbox
//! state is still the truth. Otherwise writes stay refused until a restart, and the log says so.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use ::redis::{Connection, RedisResult};
use manager_plugin::kv::{Db, KvError, KvStore};
use serde::{Deserialize, Serialize};

use super::RedisDb;
use super::refusal::{self, RefusalCause};

/// How long a lease lasts without renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(30);

/// Who holds a prefix's lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LeaseHolder {
    /// The holder's host name.
    pub host: String,
    /// The holder's process id (in its PID namespace).
    pub pid: u32,
    /// When it took the lease (RFC 3339, UTC).
    pub since: String,
    /// Random, to tell this holder from a later one with the same host and pid.
    pub token: String,
    /// The holder's kernel boot id (`/proc/sys/kernel/random/boot_id`); empty from managers before it.
    #[serde(default)]
    pub boot_id: String,
    /// The inode of the holder's PID namespace (`/proc/self/ns/pid`); 0 when unknown.
    #[serde(default)]
    pub pid_namespace: u64,
    /// The holder's start time in clock ticks since boot (`/proc/<pid>/stat`, field 22); 0 when unknown.
    #[serde(default)]
    pub start_time: u64,
}

impl LeaseHolder {
    fn this_process() -> LeaseHolder {
        let now = time::OffsetDateTime::now_utc();
        let bytes: [u8; 16] = rand::random();
        let pid = std::process::id();
        LeaseHolder {
            host: host_name(),
            pid,
            since: now.format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| now.to_string()),
            token: bytes.iter().map(|b| format!("{b:02x}")).collect(),
            boot_id: boot_id(),
            pid_namespace: pid_namespace(),
            start_time: process_start_time(pid).unwrap_or(0),
        }
    }

    /// Whether `self`, as seen from `here` (this process), is provably no longer running: same host, boot and
    /// PID namespace, and no process with its pid and start time. Anything this process cannot check is not
    /// proof.
    fn provably_gone(&self, here: &LeaseHolder) -> bool {
        self.host == here.host
            && !self.boot_id.is_empty()
            && self.boot_id == here.boot_id
            && self.pid_namespace != 0
            && self.pid_namespace == here.pid_namespace
            && self.start_time != 0
            && process_start_time(self.pid) != Some(self.start_time)
    }

    fn describe(&self) -> String {
        format!(
            "the manager on host {:?}, pid {} (PID namespace {}), since {}",
            self.host, self.pid, self.pid_namespace, self.since
        )
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

/// This boot's id, or empty when the kernel does not say.
fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").map(|id| id.trim().to_string()).unwrap_or_default()
}

/// The inode of this process's PID namespace, or 0.
fn pid_namespace() -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/pid").map(|meta| meta.ino()).unwrap_or(0)
}

/// The start time of process `pid` in this PID namespace (clock ticks since boot), or `None` when there is none.
fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces: count fields after the last ')'.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
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
/// Takes the free lease `KEYS[1]` back (value `ARGV[2]`, expiry `ARGV[3]` ms) only if the epoch `KEYS[2]` is
/// still ours (`ARGV[1]`): nobody held the lease since we took it.
const RECLAIM: &str = r"if redis.call('EXISTS', KEYS[1]) == 0 and redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) return 1 end return 0";

/// What every writing commit checks: the lease key still holds this manager's value.
pub(super) struct LeaseFence {
    key: String,
    value: String,
    /// `Redis at <addr>, prefix "<prefix>"`, for messages.
    db: String,
}

impl LeaseFence {
    /// `WATCH`es the lease key and reads it on `conn`: `Ok(Ok(()))` while it holds our value; the refusal
    /// otherwise (and the connection's watches are dropped, so it can be reused).
    pub(super) fn check(&self, conn: &mut Connection) -> RedisResult<Result<(), KvError>> {
        let mut pipe = ::redis::pipe();
        pipe.cmd("WATCH").arg(&self.key).ignore().cmd("GET").arg(&self.key);
        let (current,): (Option<String>,) = pipe.query(conn)?;
        if current.as_deref() == Some(self.value.as_str()) {
            refusal::accept(RefusalCause::WriterLease);
            return Ok(Ok(()));
        }
        ::redis::cmd("UNWATCH").exec(conn)?;
        Ok(Err(refusal::refuse(RefusalCause::WriterLease, &self.lost(current.as_deref()))))
    }

    /// Why this manager does not hold the lease, when it holds `current`.
    fn lost(&self, current: Option<&str>) -> String {
        let now = match current {
            None => "the lease is gone (it expired while this manager could not renew it, or the server lost its \
                     data)"
                .to_string(),
            Some(raw) => match serde_json::from_str::<LeaseHolder>(raw) {
                Ok(holder) => format!("the lease is held by {}", holder.describe()),
                Err(_) => format!("the lease holds an unknown value ({raw:?})"),
            },
        };
        format!(
            "{}: this manager (pid {}) no longer holds the writer lease {:?}: {now}. Writes are refused so that \
             two managers never write one prefix. It takes the lease back by itself if nobody else held it in \
             between (within {} s); otherwise stop the other manager, then restart this one",
            self.db,
            std::process::id(),
            self.key,
            (LEASE_TTL / 3).as_secs()
        )
    }
}

/// A [`RedisDb`] that holds its prefix's writer lease while open: use it as the manager's database.
pub struct LeasedRedisDb {
    inner: RedisDb,
    lease: Arc<Lease>,
    renewer: Mutex<Option<JoinHandle<()>>>,
}

/// The lease's key and value, and the renewal thread's stop signal.
struct Lease {
    db: RedisDb,
    fence: Arc<LeaseFence>,
    /// `<prefix>:writer-lease-epoch`, and its value when this manager took the lease.
    epoch_key: String,
    epoch: i64,
    stopping: AtomicBool,
    stop_lock: Mutex<()>,
    stop: Condvar,
}

impl LeasedRedisDb {
    /// Takes the writer lease of `prefix` on `db`'s server, or refuses naming the manager that holds it; from
    /// then on every commit of `db` that writes is conditional on holding it.
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
            let gone = other.as_ref().is_some_and(|o| o.provably_gone(&holder));
            let took_over = gone
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
                return Err(KvError::Backend(refusal(&addr, prefix, other.as_ref(), &current, &holder)));
            }
            tracing::info!(
                redis = %addr, prefix,
                "took over the writer lease of a manager in this PID namespace that is gone (same boot, no process \
                 with its pid and start time)"
            );
        }
        let epoch_key = format!("{prefix}:writer-lease-epoch");
        let epoch: i64 = db.with_connection(|conn| ::redis::cmd("INCR").arg(&epoch_key).query(conn)).map_err(fail)?;
        let fence = Arc::new(LeaseFence { key, value, db: format!("Redis at {addr}, prefix {prefix:?}") });
        db.fence_with_lease(Arc::clone(&fence));
        refusal::accept(RefusalCause::WriterLease);
        let lease = Arc::new(Lease {
            db: RedisDb::clone_handle(&db),
            fence,
            epoch_key,
            epoch,
            stopping: AtomicBool::new(false),
            stop_lock: Mutex::new(()),
            stop: Condvar::new(),
        });
        let renewing = Arc::clone(&lease);
        let renewer = std::thread::Builder::new()
            .name("redis-lease".to_string())
            .spawn(move || renewing.renew_until_stopped())
            .map_err(|err| KvError::Backend(format!("start the lease renewal thread: {err}")))?;
        tracing::info!(redis = %addr, prefix, pid = holder.pid, epoch, "holding the writer lease of the Redis prefix");
        Ok(LeasedRedisDb { inner: db, lease, renewer: Mutex::new(Some(renewer)) })
    }

    /// The underlying database (e.g. for [`RedisDb::check_durability`]).
    pub fn inner(&self) -> &RedisDb {
        &self.inner
    }
}

/// The message refusing a second manager.
fn refusal(addr: &str, prefix: &str, holder: Option<&LeaseHolder>, raw: &str, here: &LeaseHolder) -> String {
    let (who, why_wait) = match holder {
        Some(h) if h.host == here.host && h.pid_namespace != here.pid_namespace => (
            h.describe(),
            " It runs on this host but in another PID namespace (another container?), so whether it is alive \
             cannot be checked from here.",
        ),
        Some(h) => (h.describe(), ""),
        None => (format!("an unknown holder ({raw:?})"), ""),
    };
    format!(
        "Redis at {addr}, prefix {prefix:?} is in use by {who}: two managers on one prefix would hand out the same \
         sector numbers.{why_wait} Stop that manager, or give this one its own [Common.DB.Redis] Prefix. If that \
         manager is gone for good, start again after its lease expires (at most {} s)",
        LEASE_TTL.as_secs()
    )
}

impl Lease {
    fn renew_until_stopped(&self) {
        let interval = LEASE_TTL / 3;
        let ttl_ms = LEASE_TTL.as_millis().to_string();
        let fence = &self.fence;
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
                let renewed: i64 =
                    ::redis::Script::new(RENEW).key(&fence.key).arg(&fence.value).arg(&ttl_ms).invoke(conn)?;
                if renewed == 1 {
                    return Ok(Ok(()));
                }
                let reclaimed: i64 = ::redis::Script::new(RECLAIM)
                    .key(&fence.key)
                    .key(&self.epoch_key)
                    .arg(self.epoch)
                    .arg(&fence.value)
                    .arg(&ttl_ms)
                    .invoke(conn)?;
                if reclaimed == 1 {
                    tracing::warn!(
                        lease = %fence.key,
                        "took the writer lease back: it was free and nobody else held it in between"
                    );
                    return Ok(Ok(()));
                }
                let current: Option<String> = ::redis::cmd("GET").arg(&fence.key).query(conn)?;
                Ok(Err(fence.lost(current.as_deref())))
            });
            match renewed {
                Ok(Ok(())) => refusal::accept(RefusalCause::WriterLease),
                Ok(Err(lost)) => {
                    let _ = refusal::refuse(RefusalCause::WriterLease, &lost);
                }
                Err(err) => tracing::warn!(lease = %fence.key, error = %err, "cannot renew the writer lease; retrying"),
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
        let fence = &self.lease.fence;
        let released = self.lease.db.with_connection(|conn| {
            ::redis::Script::new(RELEASE).key(&fence.key).arg(&fence.value).invoke::<i64>(conn)
        });
        if let Err(err) = released {
            tracing::warn!(lease = %fence.key, error = %err, "cannot release the writer lease; it expires by itself");
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

    fn holder(host: &str, pid: u32) -> LeaseHolder {
        LeaseHolder {
            host: host.into(),
            pid,
            since: "2026-01-01T00:00:00Z".into(),
            token: "t".into(),
            boot_id: boot_id(),
            pid_namespace: pid_namespace(),
            start_time: 1,
        }
    }

    #[test]
    fn the_refusal_names_the_holder_and_the_fixes() {
        let here = LeaseHolder::this_process();
        let message = refusal("10.0.0.5:6379", "damocles", Some(&holder("node-7", 4242)), "", &here);
        for part in ["10.0.0.5:6379", "\"damocles\"", "node-7", "4242", "2026-01-01T00:00:00Z", "Prefix", "30 s"] {
            assert!(message.contains(part), "{part} missing: {message}");
        }
    }

    #[test]
    fn only_a_holder_of_this_boot_and_pid_namespace_without_its_process_is_provably_gone() {
        let here = LeaseHolder::this_process();
        assert!(here.start_time > 0 && here.pid_namespace > 0 && !here.boot_id.is_empty());
        assert!(!here.provably_gone(&here), "this process is alive");
        let mut child = std::process::Command::new("true").spawn().expect("spawn true");
        let pid = child.id();
        child.wait().expect("wait");
        let reaped = LeaseHolder { pid, ..here.clone() };
        assert!(reaped.provably_gone(&here));
        // The same pid, reused by another process: its start time differs, so the holder is gone.
        let reused = LeaseHolder { start_time: here.start_time + 1, ..here.clone() };
        assert!(reused.provably_gone(&here));
        for unprovable in [
            LeaseHolder { pid_namespace: here.pid_namespace + 1, ..reaped.clone() },
            LeaseHolder { boot_id: "another-boot".into(), ..reaped.clone() },
            LeaseHolder { host: "another-host".into(), ..reaped.clone() },
            LeaseHolder { boot_id: String::new(), pid_namespace: 0, start_time: 0, ..reaped.clone() },
        ] {
            assert!(!unprovable.provably_gone(&here), "{unprovable:?}");
        }
    }
}
