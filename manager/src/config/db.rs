//! `[Common.DB]`: which KV driver holds sector metadata, and each driver's settings.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::ConfigDuration;
use crate::kvstore::RedisTimeouts;

/// `[Common.DB]`: the KV driver and its per-driver settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "PascalCase")]
pub struct DbConfig {
    /// `Driver`: which of the sections below is used; default `rocksdb`.
    pub driver: DbDriver,
    /// `[Common.DB.RocksDB]`, used when `Driver = "rocksdb"`.
    #[serde(rename = "RocksDB")]
    pub rocksdb: RocksDbConfig,
    /// `[Common.DB.Redis]`, used when `Driver = "redis"`.
    pub redis: RedisConfig,
    /// `[Common.DB.Plugin]`, used when `Driver = "plugin"`.
    pub plugin: PluginDbConfig,
    /// `[Common.DB.Badger]` (Go only; accepted and ignored).
    pub badger: super::Ignored,
    /// `[Common.DB.Mongo]` (Go only; accepted and ignored).
    pub mongo: super::Ignored,
}

/// `[Common.DB] Driver`: the KV driver that holds sector metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", rename_all = "lowercase")]
pub enum DbDriver {
    /// `"rocksdb"`: embedded RocksDB (the default).
    #[default]
    RocksDb,
    /// `"redis"`: a Redis server.
    Redis,
    /// `"plugin"`: a KVStore plugin named by `[Common.DB.Plugin] PluginName`.
    Plugin,
}

impl DbDriver {
    /// Every supported driver, in the order error messages list them.
    pub const ALL: [DbDriver; 3] = [DbDriver::RocksDb, DbDriver::Redis, DbDriver::Plugin];

    /// The name as written in the config file (`"rocksdb"`, `"redis"`, `"plugin"`).
    pub fn as_str(self) -> &'static str {
        match self {
            DbDriver::RocksDb => "rocksdb",
            DbDriver::Redis => "redis",
            DbDriver::Plugin => "plugin",
        }
    }
}

impl fmt::Display for DbDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `Driver` value that names no supported driver; its message lists the supported ones and, for the Go
/// manager's drivers, how to move.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported Common.DB.Driver {value:?}; supported drivers: rocksdb, redis, plugin{}", go_driver_hint(.value))]
pub struct UnsupportedDriver {
    /// The value found in the config.
    pub value: String,
}

/// How to move off one of the Go manager's drivers; empty for any other value.
fn go_driver_hint(value: &str) -> String {
    let (what, instead) = match value.to_ascii_lowercase().as_str() {
        "badger" => ("the Go manager's embedded Badger database", "Driver = \"rocksdb\" (embedded, the default)"),
        "mongo" => ("MongoDB", "Driver = \"redis\" (a shared server) or a KVStore plugin that talks to MongoDB"),
        _ => return String::new(),
    };
    format!(
        ". damocles-rs cannot read {what}: set {instead}, or Driver = \"plugin\" with a KVStore plugin; \
         the new database starts empty, so carry sectors over with Venus.ImportSector"
    )
}

/// Refuses `[Common.MongoKVStore] Enable = true` (Go v0.5's way to pick MongoDB) and warns about the Go-only
/// database sections that are present.
pub(super) fn check_go_only_sections(
    db: &DbConfig,
    mongo_kv_store: &super::Ignored,
    warnings: &mut super::ignored::Warnings,
) -> Result<(), (String, String)> {
    let enabled = mongo_kv_store.0.as_ref().and_then(|v| v.get("Enable")).and_then(toml::Value::as_bool);
    if enabled == Some(true) {
        let reason = UnsupportedDriver { value: "mongo".to_owned() }.to_string();
        return Err(("Common.MongoKVStore.Enable".to_owned(), reason));
    }
    warnings.ignored("[Common.MongoKVStore]", mongo_kv_store);
    warnings.ignored("[Common.DB.Badger]", &db.badger);
    warnings.ignored("[Common.DB.Mongo]", &db.mongo);
    Ok(())
}

impl FromStr for DbDriver {
    type Err = UnsupportedDriver;

    /// Parses a driver name, ignoring ASCII case (`"RocksDB"` is `rocksdb`).
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        DbDriver::ALL
            .into_iter()
            .find(|driver| driver.as_str().eq_ignore_ascii_case(value))
            .ok_or_else(|| UnsupportedDriver { value: value.to_owned() })
    }
}

impl TryFrom<String> for DbDriver {
    type Error = UnsupportedDriver;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

/// `[Common.DB.RocksDB]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "PascalCase")]
pub struct RocksDbConfig {
    /// `Dir`: the database directory; default `db` next to the config file.
    pub dir: PathBuf,
}

impl Default for RocksDbConfig {
    fn default() -> Self {
        RocksDbConfig { dir: PathBuf::from("db") }
    }
}

/// `[Common.DB.Redis]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "PascalCase")]
pub struct RedisConfig {
    /// `Addr`: connection URL; default `redis://127.0.0.1:6379`.
    pub addr: String,
    /// `Prefix`: prepended to every key so several managers can share one server; default `damocles`.
    pub prefix: String,
    /// `RequirePersistence`: refuse a server with `appendonly no`; default true. `false` is for tests and
    /// throw-away setups only (warned about at every start).
    pub require_persistence: bool,
    /// `ConnectTimeout`: how long opening a connection to Redis may take; default `"1.5s"`.
    pub connect_timeout: ConfigDuration,
    /// `CommandTimeout`: how long each Redis command (sending it, and its answer) may take; default `"3s"`.
    pub command_timeout: ConfigDuration,
}

impl RedisConfig {
    /// The timeouts as the Redis driver takes them.
    pub fn timeouts(&self) -> RedisTimeouts {
        RedisTimeouts { connect: self.connect_timeout.0, command: self.command_timeout.0 }
    }

    /// Refuses a zero timeout (it would mean "wait forever" to the socket); the error is `(key, reason)`.
    pub(super) fn validate_timeouts(&self) -> Result<(), (String, String)> {
        for (key, value) in [("ConnectTimeout", self.connect_timeout), ("CommandTimeout", self.command_timeout)] {
            if value.0 == std::time::Duration::ZERO {
                return Err((
                    format!("Common.DB.Redis.{key}"),
                    "must be more than 0, e.g. \"3s\" (or remove the key for the default)".to_owned(),
                ));
            }
        }
        Ok(())
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            addr: "redis://127.0.0.1:6379".to_owned(),
            prefix: "damocles".to_owned(),
            require_persistence: true,
            connect_timeout: ConfigDuration(RedisTimeouts::default().connect),
            command_timeout: ConfigDuration(RedisTimeouts::default().command),
        }
    }
}

/// `[Common.DB.Plugin]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "PascalCase")]
pub struct PluginDbConfig {
    /// `PluginName`: the KVStore plugin to use; required when `Driver = "plugin"`.
    pub plugin_name: String,
    /// `[Common.DB.Plugin.Meta]`: free-form settings handed to the plugin.
    pub meta: BTreeMap<String, String>,
}
