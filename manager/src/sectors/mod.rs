//! The sector state manager and the durable fan-out of its changes to SyncSectorState plugins.
//!
//! - [`StateManager`] keeps every sector's [`SectorState`](manager_plugin::sector::SectorState) online (being
//!   worked on) or offline (finalized), hands out sector numbers, and applies the operations the `Venus` RPC
//!   exposes: allocate, update, finalize, restore, import, list, find. Each change is one transaction of the
//!   `sectors` collection that also appends the change's [`SectorEvent`](manager_plugin::sync::SectorEvent) to
//!   an outbox.
//! - [`Deliverer`] reads the outbox in the background and hands each event to every [`EventTarget`] in seq
//!   order, at least once, with retries and back-off, persisting a cursor per target.
//!
//! The key layout is described in `keys.rs`, the ordering argument in `outbox.rs`, and both, for operators and
//! plugin authors, in `docs/sectors.md`.
//!
//! ```
//! use std::sync::Arc;
//! use manager::sectors::{Deliverer, DeliveryOptions, JobFilter, StateManager};
//! use manager_plugin::kv::Meta;
//! use manager_plugin::sector::{SectorUpdate, WorkerState};
//!
//! let db = Arc::new(memdb::open(&Meta::new()).unwrap());
//! let sectors = Arc::new(StateManager::open(db).unwrap());
//! let deliverer = Deliverer::start(Arc::clone(&sectors), Vec::new(), DeliveryOptions::default());
//!
//! let allocated = sectors.allocate(1000, 8, 2).unwrap();
//! let id = allocated[0].id;
//! sectors.update(id, vec![SectorUpdate::AbortReason("no deals".into())]).unwrap();
//! sectors.finalize(id).unwrap();
//! assert_eq!(sectors.list(WorkerState::Offline, JobFilter::All).unwrap().len(), 1);
//! sectors.restore(id, false).unwrap(); // aborted and without deals: restorable without `forced`
//! assert!(sectors.find(WorkerState::Online, id).unwrap().is_some());
//! deliverer.stop();
//! ```

mod change;
mod deliver;
mod error;
mod group;
mod index;
mod job;
mod keys;
mod listing;
mod locks;
mod manager;
mod numbers;
mod outbox;
mod settle;
mod signal;
mod transitions;

pub use deliver::{
    BatchDelivery, Deliverer, DeliveryControl, DeliveryOptions, DeliveryWatch, EventTarget, SkipError, StoredEvent,
};
pub use error::SectorError;
pub use index::{IndexKind, SectorLocation};
pub use job::JobFilter;
pub use keys::COLLECTION;
pub use listing::SectorListing;
pub use manager::StateManager;
pub use numbers::{MAX_SECTOR_NUMBER, NumberRange};
pub use transitions::MinerCandidate;

#[cfg(test)]
mod tests;
