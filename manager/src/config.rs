//! `sector-manager.cfg`: the daemon's TOML configuration, in the Go manager's shape.
//!
//! Keys are PascalCase (`[Common.DB] Driver = "rocksdb"`); every section may be omitted and then takes its
//! defaults. Unlike the Go manager, an unknown or misspelt key is an error naming the key and the file.
//! [`Config::parse`] deserializes, validates and resolves relative paths against the config file's directory;
//! [`default_config_text`] is the commented file `daemon init` writes. The operator's reference is
//! `docs/config.md`.
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

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The whole configuration file: `[Common]`, `[[Miners]]` and `[API]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "PascalCase")]
pub struct Config {
    /// `[Common]`: plugins, database and stores.
    pub common: CommonConfig,
    /// `[[Miners]]`: the miner actors this manager allocates sectors for.
    pub miners: Vec<MinerConfig>,
    /// `[API]`: the JSON-RPC listener.
    #[serde(rename = "API")]
    pub api: ApiConfig,
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
}

/// `[Common.Plugins]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "PascalCase")]
pub struct PluginsConfig {
    /// `Dir`: directory scanned for plugin `.so` files; empty (the default) loads no plugins.
    pub dir: PathBuf,
}

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

/// A `Driver` value that names no supported driver; its message lists the supported ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported Common.DB.Driver {value:?}; supported drivers: rocksdb, redis, plugin")]
pub struct UnsupportedDriver {
    /// The value found in the config.
    pub value: String,
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
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig { addr: "redis://127.0.0.1:6379".to_owned(), prefix: "damocles".to_owned() }
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

/// One `[[Common.PieceStores]]` or `[[Common.PersistStores]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "PascalCase")]
pub struct StoreEntry {
    /// `Name`: non-empty and unique across piece and persist stores.
    pub name: String,
    /// `Path`: the directory of a local store (resolved against the config file's directory); for a plugin
    /// store it is handed to the plugin unchanged.
    pub path: String,
    /// `[...Meta]`: free-form settings handed to a plugin store.
    pub meta: BTreeMap<String, String>,
    /// `PluginName`: empty for the built-in local-filesystem store, else the FileStore plugin to use.
    pub plugin_name: String,
    /// `ReadOnly`: never chosen for writes.
    pub read_only: bool,
    /// `Strict`: handed to the store as the SDK's `StoreConfig::strict` (refuse objects whose layout does not
    /// match exactly; implementation-defined).
    pub strict: bool,
    /// `Weight`: relative chance of being picked for a reservation; see [`StoreEntry::effective_weight`].
    pub weight: u32,
    /// `AllowMiners`: if non-empty, only these miner actors may use the store.
    pub allow_miners: Vec<u64>,
    /// `DenyMiners`: these miner actors may never use the store (wins over `AllowMiners`).
    pub deny_miners: Vec<u64>,
}

impl StoreEntry {
    /// The weight used for random selection: `Weight`, with 0 (the default) counting as 1.
    pub fn effective_weight(&self) -> u32 {
        self.weight.max(1)
    }

    /// Whether this is the built-in local-filesystem store (no `PluginName`).
    pub fn is_local(&self) -> bool {
        self.plugin_name.is_empty()
    }
}

/// One `[[Miners]]` entry; both keys are required.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct MinerConfig {
    /// `Actor`: the miner actor ID (1000 for `t01000`); unique.
    pub actor: u64,
    /// `SealProof`: the registered seal proof `AllocateSector` hands out (8 = 32 GiB V1_1).
    pub seal_proof: i64,
}

/// `[API]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "PascalCase")]
pub struct ApiConfig {
    /// `Listen`: the JSON-RPC socket address; default `127.0.0.1:1789`.
    pub listen: String,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig { listen: "127.0.0.1:1789".to_owned() }
    }
}

/// Why a configuration file could not be used; every message names the file and, where there is one, the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}: {source}", file.display())]
    Read {
        /// The config file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML, has an unknown key, a value of the wrong type or an unsupported driver.
    #[error("invalid config file {}: {source}", file.display())]
    Parse {
        /// The config file.
        file: PathBuf,
        /// toml's error; it names the key and shows the offending line.
        source: toml::de::Error,
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

impl Config {
    /// Reads, parses and validates the config file at `path`; see [`Config::parse`].
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { file: path.to_path_buf(), source })?;
        Config::parse(&text, path)
    }

    /// Parses and validates `text`, the contents of `file`, then resolves relative paths (plugins dir,
    /// RocksDB dir, local store paths) against `file`'s directory. `file` is also named in every error.
    pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
        let mut config: Config =
            toml::from_str(text).map_err(|source| ConfigError::Parse { file: file.to_path_buf(), source })?;
        config.validate().map_err(|(key, reason)| ConfigError::Invalid { file: file.to_path_buf(), key, reason })?;
        config.resolve_relative_paths(file.parent().unwrap_or(Path::new("")));
        Ok(config)
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
                plugins: PluginsConfig { dir: home.join("plugins") },
                db: DbConfig { rocksdb: RocksDbConfig { dir: home.join("db") }, ..DbConfig::default() },
                piece_stores: vec![store("pieces")],
                persist_stores: vec![store("persist")],
            },
            miners: vec![MinerConfig { actor: 1000, seal_proof: 8 }],
            api: ApiConfig::default(),
        }
    }

    /// Every store with the key prefix that names it in errors, piece stores first.
    fn stores(&self) -> impl Iterator<Item = (String, &StoreEntry)> {
        let pieces = self.common.piece_stores.iter().enumerate().map(|(i, s)| (format!("Common.PieceStores[{i}]"), s));
        let persist =
            self.common.persist_stores.iter().enumerate().map(|(i, s)| (format!("Common.PersistStores[{i}]"), s));
        pieces.chain(persist)
    }

    /// Checks the rules serde cannot express; the error is `(key, reason)`.
    fn validate(&self) -> Result<(), (String, String)> {
        self.validate_db()?;
        self.validate_stores()?;
        self.validate_miners()?;
        self.validate_api()
    }

    fn validate_db(&self) -> Result<(), (String, String)> {
        let db = &self.common.db;
        if db.driver == DbDriver::Plugin && db.plugin.plugin_name.trim().is_empty() {
            let reason = "Driver = \"plugin\" needs the name of a KVStore plugin in [Common.DB.Plugin] PluginName";
            return Err(("Common.DB.Plugin.PluginName".to_owned(), reason.to_owned()));
        }
        Ok(())
    }

    fn validate_stores(&self) -> Result<(), (String, String)> {
        let mut seen: HashMap<&str, String> = HashMap::new();
        for (key, store) in self.stores() {
            if store.name.trim().is_empty() {
                return Err((format!("{key}.Name"), "every store needs a non-empty Name".to_owned()));
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
        let listen = &self.api.listen;
        listen.parse::<SocketAddr>().map(drop).map_err(|err| {
            let reason = format!("{listen:?} is not a socket address ({err}); write IP:PORT, e.g. \"127.0.0.1:1789\"");
            ("API.Listen".to_owned(), reason)
        })
    }

    /// Makes relative paths absolute against `base` (the config file's directory). Plugin store paths are the
    /// plugin's business and stay as written.
    fn resolve_relative_paths(&mut self, base: &Path) {
        let plugins = &mut self.common.plugins.dir;
        if !plugins.as_os_str().is_empty() && plugins.is_relative() {
            *plugins = base.join(&*plugins);
        }
        let rocksdb = &mut self.common.db.rocksdb.dir;
        if rocksdb.is_relative() {
            *rocksdb = base.join(&*rocksdb);
        }
        let stores = self.common.piece_stores.iter_mut().chain(self.common.persist_stores.iter_mut());
        for store in stores.filter(|store| store.is_local() && Path::new(&store.path).is_relative()) {
            store.path = base.join(&store.path).to_string_lossy().into_owned();
        }
    }
}

/// A TOML string literal for `path`, quoted and escaped as TOML requires.
fn toml_string(path: &Path) -> String {
    toml::Value::String(path.to_string_lossy().into_owned()).to_string()
}

/// The commented `sector-manager.cfg` that `daemon init` writes for `home`. It explains every section and key
/// (with commented-out Redis, Plugin and plugin-store examples) and parses to exactly
/// [`Config::default_for_home`]`(home)`. `home` should be absolute: relative paths in the file would be resolved
/// against the file's directory.
pub fn default_config_text(home: &Path) -> String {
    let plugins = toml_string(&home.join("plugins"));
    let db = toml_string(&home.join("db"));
    let pieces = toml_string(&home.join("pieces"));
    let persist = toml_string(&home.join("persist"));
    format!(
        r#"# damocles-manager configuration (sector-manager.cfg), written by `damocles-manager daemon init`.
#
# TOML. Keys are case-sensitive PascalCase; an unknown or misspelt key is an error naming the key.
# Every section may be omitted and then takes the defaults noted below.
# Relative paths are relative to the directory holding this file.
# Reference: docs/config.md.

[Common.Plugins]
# Directory scanned for plugin .so files. Empty ("") loads no plugins.
Dir = {plugins}

[Common.DB]
# Where sector metadata lives: "rocksdb" (embedded, default) | "redis" | "plugin" (a KVStore plugin).
Driver = "rocksdb"

[Common.DB.RocksDB]
# Database directory, used when Driver = "rocksdb". Default: "db" next to this file.
Dir = {db}

# Used when Driver = "redis" (several managers, or you already run Redis):
# [Common.DB.Redis]
# Addr = "redis://127.0.0.1:6379"   # connection URL (default)
# Prefix = "damocles"               # prepended to every key (default)

# Used when Driver = "plugin": a KVStore plugin loaded from Common.Plugins.Dir.
# [Common.DB.Plugin]
# PluginName = "memdb"              # required with Driver = "plugin"
# [Common.DB.Plugin.Meta]           # free-form strings handed to the plugin
# SomeKey = "value"

# Piece stores hold deal pieces (PUT/GET /piecestore/<name>). Repeat the block for more stores.
[[Common.PieceStores]]
Name = "pieces"                     # non-empty, unique across PieceStores and PersistStores
Path = {pieces}
# ReadOnly = false                  # true: never written to
# PluginName = ""                   # empty: built-in local filesystem store; else a FileStore plugin
# [Common.PieceStores.Meta]         # free-form strings handed to a plugin store

# Persist stores hold sealed sectors; a reservation picks one at random, weighted by Weight.
[[Common.PersistStores]]
Name = "persist"
Path = {persist}
# ReadOnly = false                  # true: never chosen for new sectors
# Strict = false                    # true: the store refuses objects whose layout does not match exactly
# Weight = 1                        # relative chance of being picked; 0 counts as 1
# AllowMiners = [1000]              # if non-empty, only these miner actors
# DenyMiners = [1001]               # never these miner actors (wins over AllowMiners)

# A store backed by a FileStore plugin (Path is handed to the plugin as written):
# [[Common.PersistStores]]
# Name = "remote"
# PluginName = "fsstore"
# [Common.PersistStores.Meta]
# Root = "/mnt/remote"

# Miner actors this manager allocates sectors for. Repeat the block for more miners.
[[Miners]]
Actor = 1000                        # miner actor ID (t01000); unique
SealProof = 8                       # registered seal proof AllocateSector hands out (8 = 32 GiB V1_1)

[API]
# JSON-RPC listen address (IP:PORT). Default: "127.0.0.1:1789".
Listen = "127.0.0.1:1789"
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "/etc/damocles/sector-manager.cfg";

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new(FILE))
    }

    fn error_text(text: &str) -> String {
        match parse(text) {
            Ok(config) => panic!("expected an error, parsed {config:?}"),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn default_text_parses_to_default_for_home() {
        let home = Path::new("/home/op/.damocles-manager");
        let parsed = Config::parse(&default_config_text(home), &home.join("sector-manager.cfg")).unwrap();
        assert_eq!(parsed, Config::default_for_home(home));
    }

    #[test]
    fn default_text_survives_a_home_with_quotes_and_backslashes() {
        let home = Path::new(r#"/tmp/we "ird"\dir"#);
        let parsed = Config::parse(&default_config_text(home), Path::new("/elsewhere/x.cfg")).unwrap();
        assert_eq!(parsed, Config::default_for_home(home));
    }

    #[test]
    fn empty_file_takes_all_defaults() {
        let config = parse("").unwrap();
        assert_eq!(config.common.db.driver, DbDriver::RocksDb);
        assert_eq!(config.common.db.rocksdb.dir, Path::new("/etc/damocles/db"));
        assert_eq!(config.common.db.redis, RedisConfig::default());
        assert_eq!(config.common.plugins.dir, PathBuf::new());
        assert_eq!(config.api.listen, "127.0.0.1:1789");
        assert!(config.miners.is_empty());
    }

    #[test]
    fn unknown_key_error_names_the_key_and_the_file() {
        let message = error_text("[Common.DB]\nDrvier = \"redis\"\n");
        assert!(message.contains("Drvier"), "{message}");
        assert!(message.contains(FILE), "{message}");
    }

    #[test]
    fn unknown_key_in_a_store_is_an_error() {
        let message = error_text("[[Common.PieceStores]]\nName = \"a\"\nPath = \"/a\"\nReadonly = true\n");
        assert!(message.contains("Readonly"), "{message}");
    }

    #[test]
    fn unsupported_driver_lists_the_supported_ones() {
        let message = error_text("[Common.DB]\nDriver = \"mysql\"\n");
        assert!(message.contains("mysql") && message.contains("Driver"), "{message}");
        assert!(message.contains("rocksdb, redis, plugin"), "{message}");
        assert!(message.contains(FILE), "{message}");
    }

    #[test]
    fn driver_names_ignore_case() {
        assert_eq!(parse("[Common.DB]\nDriver = \"RocksDB\"\n").unwrap().common.db.driver, DbDriver::RocksDb);
    }

    #[test]
    fn plugin_driver_without_plugin_name_is_an_error() {
        let message = error_text("[Common.DB]\nDriver = \"plugin\"\n");
        assert!(message.contains("Common.DB.Plugin.PluginName") && message.contains(FILE), "{message}");
        let ok = parse("[Common.DB]\nDriver = \"plugin\"\n[Common.DB.Plugin]\nPluginName = \"memdb\"\n").unwrap();
        assert_eq!(ok.common.db.plugin.plugin_name, "memdb");
    }

    #[test]
    fn duplicate_store_names_across_kinds_are_an_error() {
        let text = "[[Common.PieceStores]]\nName = \"a\"\nPath = \"/a\"\n\
            [[Common.PersistStores]]\nName = \"a\"\nPath = \"/b\"\n";
        let message = error_text(text);
        assert!(message.contains("Common.PersistStores[0].Name") && message.contains("Common.PieceStores[0]"));
        assert!(message.contains(FILE), "{message}");
    }

    #[test]
    fn store_without_name_or_path_is_an_error() {
        assert!(error_text("[[Common.PersistStores]]\nPath = \"/a\"\n").contains("Common.PersistStores[0].Name"));
        assert!(error_text("[[Common.PersistStores]]\nName = \"a\"\n").contains("Common.PersistStores[0].Path"));
        assert!(parse("[[Common.PersistStores]]\nName = \"a\"\nPluginName = \"s3\"\n").is_ok());
    }

    #[test]
    fn duplicate_miner_actor_is_an_error() {
        let message = error_text("[[Miners]]\nActor = 7\nSealProof = 8\n[[Miners]]\nActor = 7\nSealProof = 9\n");
        assert!(message.contains("Miners[1].Actor"), "{message}");
    }

    #[test]
    fn listen_must_be_a_socket_address() {
        assert!(error_text("[API]\nListen = \"localhost\"\n").contains("API.Listen"));
        assert_eq!(parse("[API]\nListen = \"[::1]:2000\"\n").unwrap().api.listen, "[::1]:2000");
    }

    #[test]
    fn weight_zero_counts_as_one() {
        let store = StoreEntry { weight: 0, ..StoreEntry::default() };
        assert_eq!(store.effective_weight(), 1);
        assert_eq!(StoreEntry { weight: 5, ..store }.effective_weight(), 5);
    }

    #[test]
    fn relative_paths_resolve_against_the_config_directory() {
        let text = "[Common.Plugins]\nDir = \"p\"\n[Common.DB.RocksDB]\nDir = \"../d\"\n\
            [[Common.PieceStores]]\nName = \"a\"\nPath = \"a\"\n\
            [[Common.PersistStores]]\nName = \"b\"\nPath = \"bucket/x\"\nPluginName = \"s3\"\n";
        let config = parse(text).unwrap();
        assert_eq!(config.common.plugins.dir, Path::new("/etc/damocles/p"));
        assert_eq!(config.common.db.rocksdb.dir, Path::new("/etc/damocles/../d"));
        assert_eq!(config.common.piece_stores[0].path, "/etc/damocles/a");
        assert_eq!(config.common.persist_stores[0].path, "bucket/x", "plugin store paths are left alone");
    }

    #[test]
    fn every_toml_example_in_the_docs_parses() {
        let docs = include_str!("../../docs/config.md");
        let blocks: Vec<&str> = docs.split("```toml\n").skip(1).filter_map(|rest| rest.split("```").next()).collect();
        assert!(blocks.len() >= 4, "expected examples in docs/config.md");
        for block in blocks {
            if let Err(err) = parse(block) {
                panic!("example in docs/config.md does not parse: {err}\n{block}");
            }
        }
    }
}
