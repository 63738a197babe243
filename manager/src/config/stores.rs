//! `[[Common.PieceStores]]` and `[[Common.PersistStores]]` entries.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{CommonConfig, ConfigDuration};
use crate::filestore::CapacityOptions;

/// `[Common] StoreCapacityTimeout` when not set: a store's capacity call running longer makes it unavailable.
pub const DEFAULT_STORE_CAPACITY_TIMEOUT: ConfigDuration = ConfigDuration::from_secs(5);
/// `[Common] StoreCapacityRefresh` when not set: how often each store's capacity is re-read.
pub const DEFAULT_STORE_CAPACITY_REFRESH: ConfigDuration = ConfigDuration::from_secs(2);

impl CommonConfig {
    /// How store capacity is read: `StoreCapacityTimeout` (default 5 s) and `StoreCapacityRefresh` (default 2 s).
    pub fn capacity_options(&self) -> CapacityOptions {
        CapacityOptions {
            timeout: self.store_capacity_timeout.unwrap_or(DEFAULT_STORE_CAPACITY_TIMEOUT).0,
            refresh: self.store_capacity_refresh.unwrap_or(DEFAULT_STORE_CAPACITY_REFRESH).0,
        }
    }
}

/// Refuses a zero `StoreCapacityTimeout` or `StoreCapacityRefresh`; the error is `(key, reason)`.
pub(super) fn validate_capacity_timing(common: &CommonConfig) -> Result<(), (String, String)> {
    let keys = [
        ("StoreCapacityTimeout", common.store_capacity_timeout),
        ("StoreCapacityRefresh", common.store_capacity_refresh),
    ];
    for (key, value) in keys {
        if value.is_some_and(|d| d.0 == Duration::ZERO) {
            return Err((
                format!("Common.{key}"),
                "must be more than 0, e.g. \"5s\" (or remove the key for the default)".to_owned(),
            ));
        }
    }
    Ok(())
}

/// One `[[Common.PieceStores]]` or `[[Common.PersistStores]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "PascalCase")]
pub struct StoreEntry {
    /// `Name`: unique across piece and persist stores; defaults to `Path` as written (as in Go).
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
    /// `Plugin`: the Go manager's legacy path to a Go plugin; only `""` is accepted (use `PluginName`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub plugin: String,
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

    /// Whether the entry says nothing about a store: the Go default config's example block with every key
    /// commented out. Such entries are skipped with a warning.
    pub fn is_empty_example(&self) -> bool {
        self.name.is_empty() && self.path.is_empty() && self.plugin_name.is_empty() && self.plugin.is_empty()
    }
}
