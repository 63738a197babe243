//! What configures a store ([`StoreSpec`]) and what the RPC API reports about stores ([`StoreBasicInfo`],
//! [`StoreDetailedInfo`]). Wire shapes use PascalCase field names, as damocles-worker and the Go manager do.

use std::collections::BTreeMap;
use std::fmt;

use manager_plugin::filestore::StoreConfig;
use manager_plugin::sector::{ActorId, SectorId};
use serde::{Deserialize, Serialize};

/// One configured store: a `[[Common.PieceStores]]` or `[[Common.PersistStores]]` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreSpec {
    /// Name, path, meta, read-only, weight... handed to the store implementation as is.
    pub config: StoreConfig,
    /// The FileStore plugin that implements the store; empty means the built-in local file system store.
    pub plugin_name: String,
    /// Miners that may reserve space here; empty means every miner (persist stores only).
    pub allow_miners: Vec<ActorId>,
    /// Miners that may never reserve space here; wins over `allow_miners` (persist stores only).
    pub deny_miners: Vec<ActorId>,
}

/// Which miners may reserve space on a persist store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct MinerPolicy {
    pub(crate) allow: Vec<ActorId>,
    pub(crate) deny: Vec<ActorId>,
}

impl MinerPolicy {
    /// Deny wins; an empty allow list allows every miner not denied.
    pub(crate) fn allows(&self, miner: ActorId) -> bool {
        !self.deny.contains(&miner) && (self.allow.is_empty() || self.allow.contains(&miner))
    }
}

/// Whether a store holds pieces (deal data uploaded over HTTP) or persisted sectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// A `[[Common.PieceStores]]` entry.
    Piece,
    /// A `[[Common.PersistStores]]` entry.
    Persist,
}

impl StoreKind {
    /// `piece` or `persist`, as on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::Piece => "piece",
            StoreKind::Persist => "persist",
        }
    }

    /// The config section that declares stores of this kind.
    pub fn section(self) -> &'static str {
        match self {
            StoreKind::Piece => "PieceStores",
            StoreKind::Persist => "PersistStores",
        }
    }
}

impl fmt::Display for StoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a worker needs to reach a persist store (`StoreReserveSpace`, `StoreBasicInfo`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StoreBasicInfo {
    /// The store's name.
    pub name: String,
    /// The configured path.
    pub path: String,
    /// `Strict`, as configured (Go `core/types.go:484` answers it too).
    pub strict: bool,
    /// `ReadOnly`, as configured.
    pub read_only: bool,
    /// `Weight`, as used (0 counts as 1).
    pub weight: u32,
    /// The configured meta.
    pub meta: BTreeMap<String, String>,
}

impl From<&StoreConfig> for StoreBasicInfo {
    fn from(config: &StoreConfig) -> Self {
        StoreBasicInfo {
            name: config.name.clone(),
            path: config.path.clone(),
            strict: config.strict,
            read_only: config.read_only,
            weight: config.weight,
            meta: config.meta.clone(),
        }
    }
}

/// One reservation held on a persist store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReservedItem {
    /// The sector, formatted as the Go manager does (`s-t01000-1`).
    pub by: String,
    /// The sector.
    pub sector: SectorId,
    /// Reserved bytes.
    pub size: u64,
    /// When the reservation was made (or last renewed), in Unix seconds.
    pub at: i64,
}

/// A store with its capacity and reservations (`StoreList`, `util store list`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StoreDetailedInfo {
    /// The store's name.
    pub name: String,
    /// The configured path.
    pub path: String,
    /// The configured meta.
    pub meta: BTreeMap<String, String>,
    /// Piece or persist.
    pub kind: StoreKind,
    /// The implementation (`Store::type_name`, e.g. `fsstore`).
    pub r#type: String,
    /// The FileStore plugin behind the store; empty for the built-in local store.
    pub plugin_name: String,
    /// Capacity of the underlying volume, in bytes (0 when it could not be read; see `Error`).
    pub total: u64,
    /// Bytes still available.
    pub free: u64,
    /// Bytes used on the volume.
    pub used: u64,
    /// `Used` as a percentage of `Total`.
    pub used_percent: f64,
    /// Bytes reserved by sectors (persist stores).
    pub reserved: u64,
    /// The reservations, ordered by sector.
    pub reserved_by: Vec<ReservedItem>,
    /// Refuses writes; never picked for pieces or reservations.
    pub read_only: bool,
    /// Relative weight when picking a persist store (0 counts as 1).
    pub weight: u32,
    /// Miners that may reserve here (empty = all).
    pub allow_miners: Vec<ActorId>,
    /// Miners that may never reserve here.
    pub deny_miners: Vec<ActorId>,
    /// `false` while the store's `instance_info` has been running past the capacity timeout: reservations and
    /// piece writes skip the store until it answers again.
    pub available: bool,
    /// Why the capacity figures could not be read, if they could not.
    pub error: Option<String>,
}
