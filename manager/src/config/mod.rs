//! `sector-manager.cfg`: the daemon's TOML configuration, in the Go manager's shape.
//!
//! Keys are PascalCase (`[Common.DB] Driver = "rocksdb"`); every section may be omitted and then takes its
//! defaults. A config written for the Go manager loads: its sections that damocles-rs does not implement
//! (`[Common.API]`, `[Common.Proving]`, `[Miners.PoSt]`, ...) are accepted and each named once in
//! [`Config::warnings`]. Anywhere else, unlike the Go manager, an unknown or misspelt key is an error naming the
//! key, the file and the closest allowed key. [`Config::parse`] deserializes, validates and resolves relative
//! paths against the config file's directory; [`default_config_text`] is the commented file `daemon init`
//! writes. The operator's reference is `docs/config.md`.
//!
//! ```
//! use std::path::Path;
//! use manager::config::{Config, DbDriver};
//!
//! let text = "[Common.DB]\nDriver = \"redis\"\n[[Miners]]\nActor = 1000\nSealProof = 8\n";
//! let config = Config::parse(text, Path::new("/etc/damocles/sector-manager.cfg")).unwrap();
//! assert_eq!(config.common.db.driver, DbDriver::Redis);
//! assert_eq!(config.common.db.rocksdb.dir, Path::new("/etc/damocles/db"));
//! ```

mod api;
mod db;
mod default_text;
mod duration;
mod ignored;
mod miners;
mod mock_chain;
mod seal_proof;
mod stores;
mod suggest;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use api::{ApiConfig, InvalidNetwork, IpNetwork};
pub use db::{DbConfig, DbDriver, PluginDbConfig, RedisConfig, RocksDbConfig, UnsupportedDriver};
pub use default_text::default_config_text;
pub use duration::{ConfigDuration, InvalidDuration};
pub use ignored::{Ignored, ignored_warning};
pub use miners::{MinerConfig, MinerEntry, MinerSectorConfig};
pub use mock_chain::MockChainConfig;
pub use seal_proof::{SEAL_PROOFS, is_non_interactive, seal_proof_for_size, sector_size_of};
pub use stores::StoreEntry;

use ignored::Warnings;

/// The whole configuration, validated: `[Common]`, `[[Miners]]` and `[API]`, plus the warnings about what the
/// file holds but damocles-rs ignores.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Config {
    /// `[Common]`: plugins, database and stores.
    pub common: CommonConfig,
    /// `[[Miners]]`: the miner actors this manager allocates sectors for.
    pub miners: Vec<MinerConfig>,
    /// `[API]`: the JSON-RPC listener.
    pub api: ApiConfig,
    /// `[MockChain]`: seal against the mock chain (test clusters only).
    pub mock_chain: MockChainConfig,
    /// One line per ignored section, key or example block, e.g.
    /// `ignored: [Common.Proving] — not supported by damocles-rs`; the daemon logs them at start-up.
    pub warnings: Vec<String>,
}

/// The file as written; [`Config::parse`] turns it into a [`Config`].
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "PascalCase")]
struct ConfigFile {
    common: CommonConfig,
    miners: Vec<MinerEntry>,
    #[serde(rename = "API")]
    api: ApiConfig,
    mock_chain: MockChainConfig,
}

/// `[Common]`: settings shared by every miner.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "PascalCase")]
pub struct CommonConfig {
    /// `[Common.Plugins]`: where plugins are loaded from.
    pub plugins: PluginsConfig,
    /// `[Common.DB]`: where sector metadata is kept.
    #[serde(rename = "DB")]
    pub db: DbConfig,
    /// `[[Common.PieceStores]]`: stores for deal pieces.
    pub piece_stores: Vec<StoreEntry>,
    /// `[[Common.PersistStores]]`: stores for sealed sectors.
    pub persist_stores: Vec<StoreEntry>,
    /// `StoreCapacityTimeout`: a store whose capacity call runs longer is unavailable; see
    /// [`CommonConfig::capacity_options`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_capacity_timeout: Option<ConfigDuration>,
    /// `StoreCapacityRefresh`: how often each store's capacity is re-read; see [`CommonConfig::capacity_options`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_capacity_refresh: Option<ConfigDuration>,
    /// `[Common.API]` (Go only: the chain, messager and market endpoints).
    #[serde(rename = "API")]
    pub chain_api: Ignored,
    /// `[Common.Proving]` (Go only).
    pub proving: Ignored,
    /// `ScanPersistStores` (Go only).
    pub scan_persist_stores: Ignored,
    /// `[Common.MongoKVStore]` (Go v0.5's switch to MongoDB; `Enable = true` is refused like `Driver = "mongo"`).
    #[serde(rename = "MongoKVStore")]
    pub mongo_kv_store: Ignored,
}

/// `[Common.Plugins]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "PascalCase")]
pub struct PluginsConfig {
    /// `Dir`: directory scanned for plugin `.so` files; empty (the default) loads no plugins.
    pub dir: PathBuf,
    /// `SyncHungAfterSecs`: a SyncSectorState hook running longer is shown `hung` in `Plugins.List`; default 60.
    pub sync_hung_after_secs: u64,
    /// `SyncBacklogWarning`: a warning is logged when a SyncSectorState plugin's pending events reach this, and
    /// at each tenfold; 0 disables; default 10000.
    pub sync_backlog_warning: u64,
    /// `ProcessCallTimeoutSecs`: how long the manager waits for an answer of a process plugin before it kills the
    /// process; default 60, 0 counts as 1.
    pub process_call_timeout_secs: u64,
    /// `ProcessRestartBackoffMs`: the wait before restarting a crashed process plugin; doubles with each crash
    /// within the crash-loop window; default 500, 0 counts as 1.
    pub process_restart_backoff_ms: u64,
    /// `ProcessRestartBackoffMaxMs`: the longest restart wait; default 30000.
    pub process_restart_backoff_max_ms: u64,
    /// `ProcessCrashLoopLimit`: this many crashes within `ProcessCrashLoopWindowSecs` and the plugin is `Failed`
    /// (not restarted until `util plugins restart`/`enable`); default 5, 0 counts as 1.
    pub process_crash_loop_limit: u32,
    /// `ProcessCrashLoopWindowSecs`: the crash-loop window; default 300.
    pub process_crash_loop_window_secs: u64,
    /// `ProcessMaxAddressSpace`: a process plugin's `RLIMIT_AS` in bytes; 0 (default) leaves it unlimited.
    pub process_max_address_space: u64,
    /// `ProcessMaxOpenFiles`: a process plugin's `RLIMIT_NOFILE`; 0 (default) keeps the manager's.
    pub process_max_open_files: u64,
    /// `ProcessUid`: run process plugins as this uid (the manager must be allowed to switch); default: its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process_uid: Option<u32>,
    /// `MaxFileSize`: plugin files larger than this many bytes (from their metadata) are refused unread; default
    /// 256 MiB.
    pub max_file_size: u64,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig {
            dir: PathBuf::new(),
            sync_hung_after_secs: 60,
            sync_backlog_warning: 10_000,
            process_call_timeout_secs: 60,
            process_restart_backoff_ms: 500,
            process_restart_backoff_max_ms: 30_000,
            process_crash_loop_limit: 5,
            process_crash_loop_window_secs: 300,
            process_max_address_space: 0,
            process_max_open_files: 0,
            process_uid: None,
            max_file_size: plugin_image::limits::DEFAULT_MAX_FILE_SIZE,
        }
    }
}

impl PluginsConfig {
    /// How process plugins are run, from these keys.
    pub fn process_options(&self) -> crate::plugins::process::ProcessOptions {
        let nonzero = |v: u64| (v > 0).then_some(v);
        crate::plugins::process::ProcessOptions {
            call_timeout: std::time::Duration::from_secs(self.process_call_timeout_secs.max(1)),
            limits: crate::plugins::process::spawn::Limits {
                address_space: nonzero(self.process_max_address_space),
                open_files: nonzero(self.process_max_open_files),
                uid: self.process_uid,
            },
            restart: crate::plugins::process::RestartPolicy {
                backoff_initial: std::time::Duration::from_millis(self.process_restart_backoff_ms.max(1)),
                backoff_max: std::time::Duration::from_millis(
                    self.process_restart_backoff_max_ms.max(self.process_restart_backoff_ms.max(1)),
                ),
                crash_loop_limit: self.process_crash_loop_limit.max(1),
                crash_loop_window: std::time::Duration::from_secs(self.process_crash_loop_window_secs),
            },
            ..Default::default()
        }
    }

    /// How the plugins dir is loaded, from these keys.
    pub fn load_options(&self) -> crate::plugins::LoadOptions {
        crate::plugins::LoadOptions { file_limits: self.file_limits(), process: self.process_options() }
    }

    /// What reading and checking one plugin file may cost: `MaxFileSize` and the fixed time budget.
    pub fn file_limits(&self) -> plugin_image::limits::FileLimits {
        plugin_image::limits::FileLimits { max_file_size: self.max_file_size, ..Default::default() }
    }
}

/// Why a configuration file could not be used; every message names the file and, where there is one, the key.
/// No variant has an error source: the message already says everything once.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}: {error}", file.display())]
    Read {
        /// The config file.
        file: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The file is not valid TOML, has an unknown key, a value of the wrong type or an unsupported driver.
    #[error("invalid config file {}: {message}", file.display())]
    Parse {
        /// The config file.
        file: PathBuf,
        /// toml's error (it names the key and shows the offending line), with a "did you mean" for an unknown key.
        message: String,
    },
    /// A value parsed but breaks a rule (missing plugin name, duplicate store, bad address, ...).
    #[error("invalid config file {}: {key}: {reason}", file.display())]
    Invalid {
        /// The config file.
        file: PathBuf,
        /// The offending key, e.g. `Common.PersistStores[1].Name` (entries counted from 0).
        key: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
}

/// toml's error as one message, with the closest allowed key when the error is an unknown key.
fn parse_error_message(err: &toml::de::Error) -> String {
    let text = err.to_string();
    let text = text.trim_end();
    match suggest::suggestion(err.message()) {
        Some(key) => format!("{text}\ndid you mean `{key}`?"),
        None => text.to_owned(),
    }
}

impl Config {
    /// Reads, parses and validates the config file at `path`; see [`Config::parse`].
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|error| ConfigError::Read { file: path.to_path_buf(), error })?;
        Config::parse(&text, path)
    }

    /// Logs every warning (see [`Config::warnings`]).
    pub fn log_warnings(&self) {
        for warning in &self.warnings {
            tracing::warn!("{warning}");
        }
    }

    /// Parses and validates `text`, the contents of `file`, then resolves relative paths (plugins dir,
    /// RocksDB dir, local store paths) against `file`'s directory. `file` is also named in every error.
    pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
        let parsed: ConfigFile = toml::from_str(text)
            .map_err(|err| ConfigError::Parse { file: file.to_path_buf(), message: parse_error_message(&err) })?;
        let invalid = |(key, reason)| ConfigError::Invalid { file: file.to_path_buf(), key, reason };
        let mut config = Config::from_file(parsed).map_err(invalid)?;
        config.validate().map_err(invalid)?;
        config.drop_empty_store_examples();
        config.resolve_relative_paths(file.parent().unwrap_or(Path::new("")));
        Ok(config)
    }

    /// Resolves the miners, applies Go's defaults (store `Name` = `Path`) and collects the warnings.
    fn from_file(file: ConfigFile) -> Result<Config, (String, String)> {
        let ConfigFile { mut common, miners, api, mock_chain } = file;
        let mut warnings = Warnings::default();
        warnings.ignored("[Common.API]", &common.chain_api);
        warnings.ignored("[Common.Proving]", &common.proving);
        warnings.ignored("[Common] ScanPersistStores", &common.scan_persist_stores);
        db::check_go_only_sections(&common.db, &common.mongo_kv_store, &mut warnings)?;
        for (key, store) in stores_mut(&mut common) {
            if !store.plugin.is_empty() {
                let reason = format!(
                    "Plugin = {:?} is the Go manager's path to a Go plugin; damocles-rs loads FileStore plugins by \
                     name: put the plugin's .so in [Common.Plugins] Dir, set PluginName and remove Plugin",
                    store.plugin
                );
                return Err((format!("{key}.Plugin"), reason));
            }
            if store.is_empty_example() {
                warnings.add(format!(
                    "ignored: {key} sets neither Name, Path nor PluginName (like the Go default config's example)"
                ));
            } else if store.name.is_empty() {
                store.name = store.path.clone();
            }
        }
        let mut resolved = Vec::with_capacity(miners.len());
        for (index, entry) in miners.into_iter().enumerate() {
            resolved.extend(entry.resolve(index, &mut warnings)?);
        }
        Ok(Config { common, miners: resolved, api, mock_chain, warnings: warnings.into_vec() })
    }

    /// Drops the store entries that describe no store (warned about in [`Config::from_file`]).
    fn drop_empty_store_examples(&mut self) {
        self.common.piece_stores.retain(|store| !store.is_empty_example());
        self.common.persist_stores.retain(|store| !store.is_empty_example());
    }

    /// The configuration `daemon init` writes for `home` (and [`default_config_text`] parses to): plugins in
    /// `<home>/plugins`, RocksDB in `<home>/db`, piece store `pieces` at `<home>/pieces`, persist store `persist`
    /// at `<home>/persist`, and one example miner (Actor 1000, SealProof 8) so `AllocateSector` works at once.
    /// `home` should be absolute ([`crate::home::Home::resolve`] makes it so).
    pub fn default_for_home(home: &Path) -> Config {
        let store = |name: &str| StoreEntry {
            name: name.to_owned(),
            path: home.join(name).to_string_lossy().into_owned(),
            ..StoreEntry::default()
        };
        Config {
            common: CommonConfig {
                plugins: PluginsConfig { dir: home.join("plugins"), ..Default::default() },
                db: DbConfig { rocksdb: RocksDbConfig { dir: home.join("db") }, ..DbConfig::default() },
                piece_stores: vec![store("pieces")],
                persist_stores: vec![store("persist")],
                ..CommonConfig::default()
            },
            miners: vec![MinerConfig { actor: 1000, seal_proof: 8, sector: MinerSectorConfig::default() }],
            api: ApiConfig { trusted_networks: ApiConfig::loopback(), ..ApiConfig::default() },
            mock_chain: MockChainConfig::default(),
            warnings: Vec::new(),
        }
    }

    /// Every store with the key prefix that names it in errors, piece stores first.
    fn stores(&self) -> impl Iterator<Item = (String, &StoreEntry)> {
        let pieces = self.common.piece_stores.iter().enumerate().map(|(i, s)| (format!("Common.PieceStores[{i}]"), s));
        let persist =
            self.common.persist_stores.iter().enumerate().map(|(i, s)| (format!("Common.PersistStores[{i}]"), s));
        pieces.chain(persist).filter(|(_, store)| !store.is_empty_example())
    }

    /// Checks the rules serde cannot express; the error is `(key, reason)`.
    fn validate(&self) -> Result<(), (String, String)> {
        self.validate_db()?;
        self.validate_stores()?;
        stores::validate_capacity_timing(&self.common)?;
        self.validate_miners()?;
        self.validate_api()
    }

    fn validate_db(&self) -> Result<(), (String, String)> {
        let db = &self.common.db;
        if db.driver == DbDriver::Plugin && db.plugin.plugin_name.trim().is_empty() {
            let reason = "Driver = \"plugin\" needs the name of a KVStore plugin in [Common.DB.Plugin] PluginName";
            return Err(("Common.DB.Plugin.PluginName".to_owned(), reason.to_owned()));
        }
        db.redis.validate_timeouts()
    }

    fn validate_stores(&self) -> Result<(), (String, String)> {
        let mut seen: HashMap<&str, String> = HashMap::new();
        for (key, store) in self.stores() {
            if store.name.trim().is_empty() {
                return Err((
                    format!("{key}.Name"),
                    "every store needs a Name (or a Path, which Name defaults to)".to_owned(),
                ));
            }
            if store.is_local() && store.path.trim().is_empty() {
                let reason = format!("store {:?} has no Path; set Path, or PluginName for a plugin store", store.name);
                return Err((format!("{key}.Path"), reason));
            }
            if let Some(first) = seen.insert(&store.name, key.clone()) {
                let reason = format!("store name {:?} is already used by {first}; names must be unique", store.name);
                return Err((format!("{key}.Name"), reason));
            }
        }
        Ok(())
    }

    fn validate_miners(&self) -> Result<(), (String, String)> {
        let mut seen: HashMap<u64, usize> = HashMap::new();
        for (i, miner) in self.miners.iter().enumerate() {
            if let Some(first) = seen.insert(miner.actor, i) {
                let reason = format!("actor {} is already configured in Miners[{first}]", miner.actor);
                return Err((format!("Miners[{i}].Actor"), reason));
            }
        }
        Ok(())
    }

    fn validate_api(&self) -> Result<(), (String, String)> {
        let percent = self.api.trusted_reserved_percent;
        if percent > 100 {
            let reason = format!("{percent} is not a percentage (0 to 100) of MaxConnections");
            return Err(("API.TrustedReservedPercent".to_owned(), reason));
        }
        let listen = &self.api.listen;
        listen.parse::<SocketAddr>().map(drop).map_err(|err| {
            let reason = format!("{listen:?} is not a socket address ({err}); write IP:PORT, e.g. \"127.0.0.1:1789\"");
            ("API.Listen".to_owned(), reason)
        })
    }

    /// Makes relative paths absolute against `base` (the config file's directory). Plugin store paths are the
    /// plugin's business and stay as written.
    /// A leading `~/` means `$HOME` (as in a shell), for paths copied from documentation.
    fn resolve_relative_paths(&mut self, base: &Path) {
        let home = std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from);
        let resolve = |path: &Path| match (path.strip_prefix("~"), &home) {
            (Ok(rest), Some(home)) => home.join(rest),
            _ => base.join(path),
        };
        let plugins = &mut self.common.plugins.dir;
        if !plugins.as_os_str().is_empty() && plugins.is_relative() {
            *plugins = resolve(&*plugins);
        }
        let rocksdb = &mut self.common.db.rocksdb.dir;
        if rocksdb.is_relative() {
            *rocksdb = resolve(&*rocksdb);
        }
        let stores = self.common.piece_stores.iter_mut().chain(self.common.persist_stores.iter_mut());
        for store in stores.filter(|store| store.is_local() && Path::new(&store.path).is_relative()) {
            store.path = resolve(Path::new(&store.path)).to_string_lossy().into_owned();
        }
    }
}

/// Every store entry, mutable, with the key prefix that names it in errors, piece stores first.
fn stores_mut(common: &mut CommonConfig) -> impl Iterator<Item = (String, &mut StoreEntry)> {
    let pieces = common.piece_stores.iter_mut().enumerate().map(|(i, s)| (format!("Common.PieceStores[{i}]"), s));
    let persist = common.persist_stores.iter_mut().enumerate().map(|(i, s)| (format!("Common.PersistStores[{i}]"), s));
    pieces.chain(persist)
}
