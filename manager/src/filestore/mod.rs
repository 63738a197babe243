//! # filestore: piece stores, persist stores and space reservations
//!
//! Each `[[Common.PieceStores]]` / `[[Common.PersistStores]]` entry becomes one [`Store`] instance: the built-in
//! local file system store ([`fsstore::FsStore`], linked statically) when `PluginName` is empty, otherwise the
//! ready FileStore plugin of that name. Built-in and plugin stores sit behind the same SDK trait, so everything
//! below treats them alike. [`StoreManager`] holds them all:
//!
//! - **pieces** (deal data the piece HTTP endpoint streams in and out): [`StoreManager::put_piece`] writes to
//!   the first writable piece store with room; [`StoreManager::open_piece`] looks for `name`, then
//!   `name.car`, in each piece store in config order;
//! - **persist stores** (where workers move sealed sectors): [`StoreManager::reserve`] picks a store for a
//!   sector (allow/deny miners, read-only, free space minus reservations, weighted random pick, idempotent per
//!   sector) and [`StoreManager::release`] frees it. Reservations are kept in memory only:
//!   workers reserve again after a manager restart;
//! - **listing**: [`StoreManager::list`] and [`StoreManager::basic_info`] give the wire shapes of `StoreList`
//!   and `StoreBasicInfo`.
//!
//! ```
//! use manager::filestore::{StoreManager, StoreSpec};
//! use manager::plugins::PluginRegistry;
//! use manager_plugin::filestore::StoreConfig;
//! use manager_plugin::sector::SectorId;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let spec = |name: &str| StoreSpec {
//!     config: StoreConfig { name: name.into(), path: dir.path().join(name).display().to_string(), ..Default::default() },
//!     ..Default::default()
//! };
//! let stores = StoreManager::open(vec![spec("pieces")], vec![spec("persist")], &PluginRegistry::empty()).unwrap();
//!
//! stores.put_piece("baga6ea4sea", &mut &b"piece data"[..]).unwrap();
//! assert_eq!(stores.piece_size("baga6ea4sea").unwrap(), 10);
//!
//! let sector = SectorId { miner: 1000, number: 1 };
//! assert_eq!(stores.reserve(sector, 1024, &[]).unwrap().unwrap().name, "persist");
//! assert!(stores.release(sector));
//! ```
//!
//! [`Store`]: manager_plugin::filestore::Store

mod capacity;
mod error;
mod info;
mod manager;
mod reserve;

pub use capacity::{CapacityOptions, StoreFigures};
pub use error::FileStoreError;
pub use info::{ReservedItem, StoreBasicInfo, StoreDetailedInfo, StoreKind, StoreSpec};
pub use manager::StoreManager;
pub use reserve::MAX_RESERVATION;

#[cfg(test)]
mod tests;
