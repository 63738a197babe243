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

mod api;
mod db;
mod default_text;
mod miners;
mod stores;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use api::{ApiConfig, InvalidNetwork, IpNetwork};
pub use db::{DbConfig, DbDriver, PluginDbConfig, RedisConfig, RocksDbConfig, UnsupportedDriver};
pub use default_text::default_config_text;
pub use miners::MinerConfig;
pub use stores::StoreEntry;

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
