//! The sector indexer: which persist store instance holds a sector's sealed file and cache, as Go keeps it
//! (`modules/sealer/sealer.go:303-339`, `core.SectorAccessStores`), recorded by `SubmitPersisted(Ex)` and read by
//! `SectorIndexerFind`. One key per sector and kind in the `sectors` collection (`index/<kind>/m-<miner>-n-<n>`),
//! written in a transaction that also reads the sector, so it survives restarts. Not a sector state change: no
//! event (Go's indexer is not part of the sector state either).

use manager_plugin::kv::KvError;
use manager_plugin::sector::{SectorId, WorkerState};
use serde::{Deserialize, Serialize};

use super::error::SectorError;
use super::keys;
use super::locks::LockKey;
use super::manager::{StateManager, sector_exists};

/// Go's `core.SectorIndexType`: a sector's own files, or those of its snap-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexKind {
    /// `normal`.
    Normal,
    /// `upgrade`.
    Upgrade,
}

impl IndexKind {
    /// Go's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            IndexKind::Normal => "normal",
            IndexKind::Upgrade => "upgrade",
        }
    }
}

/// Go's `core.SectorAccessStores`: the store instances holding the sealed file and the cache directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SectorLocation {
    /// Store instance of the sealed file.
    pub sealed_file: String,
    /// Store instance of the cache directory.
    pub cache_dir: String,
}

impl StateManager {
    /// Records that online sector `id`'s files (of `kind`) are in `location`. Fails with
    /// [`SectorError::NotFound`] when the sector is not online (Go loads the online state first).
    pub fn record_location(&self, id: SectorId, kind: IndexKind, location: &SectorLocation) -> Result<(), SectorError> {
        let key = keys::index_key(kind.as_str(), id);
        let value = serde_json::to_vec(location).map_err(|err| SectorError::codec(&key, format!("encode: {err}")))?;
        let _lock = self.locks.lock([LockKey::Sector(id)]);
        self.write(
            || format!("record where sector {id}'s files are"),
            |txn, _| {
                if !sector_exists(txn, WorkerState::Online, id)? {
                    return Err(SectorError::not_found(id, Some(WorkerState::Online)).into());
                }
                Ok(txn.put(&key, &value)?)
            },
        )
    }

    /// Where sector `id`'s files (of `kind`) are, if recorded.
    pub fn find_location(&self, id: SectorId, kind: IndexKind) -> Result<Option<SectorLocation>, SectorError> {
        let key = keys::index_key(kind.as_str(), id);
        self.read(
            || format!("find where sector {id}'s files are"),
            |txn| match txn.get(&key) {
                Ok(value) => serde_json::from_slice(&value)
                    .map(Some)
                    .map_err(|err| SectorError::codec(&key, format!("not a sector location: {err}")).into()),
                Err(KvError::KeyNotFound) => Ok(None),
                Err(err) => Err(err.into()),
            },
        )
    }
}
