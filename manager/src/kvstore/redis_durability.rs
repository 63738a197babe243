//! What the Redis driver checks about the server before the manager trusts it with sector numbers.
//!
//! Redis keeps data in memory; whether an acknowledged write survives a restart is the server's configuration.
//! A server without append-only persistence comes back empty after a restart, and on an empty database sector
//! numbers start again at the bottom. So at start-up the driver reads `CONFIG GET` and:
//!
//! - **refuses** `appendonly no`, unless `[Common.DB.Redis] RequirePersistence = false` (then it warns at every
//!   start);
//! - **warns** (once per start) when `appendfsync` is not `always`, naming the window of acknowledged writes a
//!   power loss can take (`everysec`: about one second; `no`: whatever the OS has not flushed, ~30 s on Linux);
//! - **refuses** a `maxmemory-policy` other than `noeviction`: every other policy lets the server delete keys
//!   (`volatile-*` the ones with an expiry, such as the writer lease) when memory runs out.
//!
//! A server that does not allow `CONFIG GET` (some managed services) cannot be checked: that is refused too,
//! unless `RequirePersistence = false`, since nothing then shows the data survives a restart.

use std::collections::HashMap;

use ::redis::Connection;
use manager_plugin::kv::KvError;

use super::RedisDb;

/// The server settings the check reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisPersistence {
    /// `appendonly`: `yes` or `no`.
    pub appendonly: String,
    /// `appendfsync`: `always`, `everysec` or `no`.
    pub appendfsync: String,
    /// `maxmemory-policy`: `noeviction`, `allkeys-lru`, ...
    pub maxmemory_policy: String,
}

impl RedisPersistence {
    /// Reads the settings with `CONFIG GET` on `conn`.
    fn read(conn: &mut Connection) -> ::redis::RedisResult<RedisPersistence> {
        let mut get = |name: &str| -> ::redis::RedisResult<String> {
            let reply: HashMap<String, String> = ::redis::cmd("CONFIG").arg("GET").arg(name).query(conn)?;
            Ok(reply.get(name).cloned().unwrap_or_default())
        };
        Ok(RedisPersistence {
            appendonly: get("appendonly")?,
            appendfsync: get("appendfsync")?,
            maxmemory_policy: get("maxmemory-policy")?,
        })
    }

    /// Whether the settings keep every acknowledged write across a restart and never evict; the refusal's
    /// message otherwise. Warnings (weaker fsync, persistence not required) are logged here.
    pub fn judge(&self, addr: &str, require_persistence: bool) -> Result<(), String> {
        if self.maxmemory_policy != "noeviction" {
            return Err(format!(
                "Redis at {addr} has maxmemory-policy {:?}, which lets the server delete keys (sector records, \
                 counters, events) when memory runs out; set `maxmemory-policy noeviction` in redis.conf (and \
                 `CONFIG SET maxmemory-policy noeviction`)",
                self.maxmemory_policy
            ));
        }
        if self.appendonly != "yes" {
            if require_persistence {
                return Err(format!(
                    "Redis at {addr} has append-only persistence off (appendonly {:?}): a restart of the server \
                     loses every sector record, and sector numbers would be handed out again. Enable it with \
                     `appendonly yes` and `appendfsync always` in redis.conf (and `CONFIG SET appendonly yes`), or, \
                     for a test or throw-away setup only, set [Common.DB.Redis] RequirePersistence = false",
                    self.appendonly
                ));
            }
            tracing::warn!(
                redis = %addr, appendonly = %self.appendonly,
                "Redis persistence is off and [Common.DB.Redis] RequirePersistence = false: a restart of the \
                 server loses every sector record (start-up is then refused by the database identity check)"
            );
            return Ok(());
        }
        if self.appendfsync != "always" {
            let window = match self.appendfsync.as_str() {
                "everysec" => "about the last second",
                _ => "whatever the operating system has not flushed yet (up to ~30 s on Linux)",
            };
            tracing::warn!(
                redis = %addr, appendfsync = %self.appendfsync,
                "Redis fsyncs its append-only file with appendfsync {:?}: a power loss or kernel crash can take {window} \
                 of acknowledged writes (sector numbers handed out in that window could be handed out again); set \
                 `appendfsync always` for none",
                self.appendfsync
            );
        }
        Ok(())
    }
}

impl RedisDb {
    /// Reads the server's persistence settings and refuses a server that can lose or evict acknowledged writes
    /// (see the module docs); `require_persistence` is `[Common.DB.Redis] RequirePersistence`.
    pub fn check_durability(&self, require_persistence: bool) -> Result<RedisPersistence, KvError> {
        let addr = self.addr().to_string();
        let read = self.with_connection(RedisPersistence::read);
        let settings = match read {
            Ok(settings) => settings,
            Err(err) if require_persistence => {
                return Err(KvError::Backend(format!(
                    "cannot read the configuration of Redis at {addr} (CONFIG GET: {err}), so its persistence \
                     cannot be checked; allow CONFIG GET for the manager, or set [Common.DB.Redis] \
                     RequirePersistence = false after making sure the server persists every write"
                )));
            }
            Err(err) => {
                tracing::warn!(redis = %addr, error = %err, "cannot read the Redis configuration; not checking persistence");
                return Ok(RedisPersistence {
                    appendonly: String::new(),
                    appendfsync: String::new(),
                    maxmemory_policy: String::new(),
                });
            }
        };
        settings.judge(&addr, require_persistence).map_err(KvError::Backend)?;
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::RedisPersistence;

    fn settings(appendonly: &str, appendfsync: &str, policy: &str) -> RedisPersistence {
        RedisPersistence {
            appendonly: appendonly.into(),
            appendfsync: appendfsync.into(),
            maxmemory_policy: policy.into(),
        }
    }

    #[test]
    fn only_append_only_without_eviction_is_accepted_when_persistence_is_required() {
        assert!(settings("yes", "always", "noeviction").judge("h:1", true).is_ok());
        assert!(settings("yes", "everysec", "noeviction").judge("h:1", true).is_ok(), "weaker fsync only warns");
        let off = settings("no", "everysec", "noeviction").judge("h:1", true).unwrap_err();
        assert!(off.contains("h:1") && off.contains("appendonly") && off.contains("RequirePersistence"), "{off}");
        assert!(settings("no", "always", "noeviction").judge("h:1", false).is_ok(), "explicitly not required");
        for policy in ["allkeys-lru", "volatile-ttl", "allkeys-random"] {
            let evicting = settings("yes", "always", policy).judge("h:1", false).unwrap_err();
            assert!(evicting.contains(policy) && evicting.contains("noeviction"), "{evicting}");
        }
    }
}
