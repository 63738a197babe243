//! [`StoreManager`]: opens the configured stores and serves pieces and store listings. Reservations are in
//! [`super::reserve`].

use std::collections::HashSet;
use std::fmt;
use std::io::Read;
use std::sync::{Arc, Mutex, MutexGuard};

use manager_plugin::StoreError;
use manager_plugin::filestore::{ObjectReader, Store, StoreConfig, validate_object_path};
use manager_plugin::manifest::Kind;

use super::capacity::{Capacity, CapacityCache, CapacityOptions};
use super::error::FileStoreError;
use super::info::{MinerPolicy, ReservedItem, StoreBasicInfo, StoreDetailedInfo, StoreKind, StoreSpec};
use super::reserve::ReserveState;
use crate::plugins::PluginRegistry;

/// The suffix tried when a piece is not found under its plain name.
const CAR_SUFFIX: &str = ".car";

/// The manager's piece stores and persist stores, and the space reserved on persist stores.
///
/// Every store, built-in or plugin, sits behind the SDK's [`Store`] trait. The manager is `Send + Sync`; store
/// calls are blocking, so async callers run them on a blocking thread. Capacity figures come from a cache that
/// each store's own thread refreshes (see [`CapacityOptions`]); no lock of the manager is ever held across a
/// store call.
pub struct StoreManager {
    pub(super) piece: Vec<ManagedStore>,
    pub(super) persist: Vec<ManagedStore>,
    pub(super) state: Mutex<ReserveState>,
}

/// One opened store with what its configuration says about it.
pub(super) struct ManagedStore {
    pub(super) kind: StoreKind,
    /// The configuration from the manager's config file: the authority on name, read-only and weight.
    pub(super) config: StoreConfig,
    /// Empty for the built-in local store.
    pub(super) plugin: String,
    pub(super) policy: MinerPolicy,
    pub(super) store: Arc<dyn Store>,
    /// Capacity figures, refreshed by the store's own thread.
    pub(super) capacity: Arc<CapacityCache>,
}

impl ManagedStore {
    /// Wraps an opened store and starts its capacity refresher.
    pub(super) fn new(
        kind: StoreKind,
        config: StoreConfig,
        plugin: String,
        policy: MinerPolicy,
        store: Arc<dyn Store>,
        options: CapacityOptions,
    ) -> ManagedStore {
        let capacity = CapacityCache::start(&config.name, Arc::clone(&store), options);
        ManagedStore { kind, config, plugin, policy, store, capacity }
    }

    pub(super) fn name(&self) -> &str {
        &self.config.name
    }
}

impl StoreManager {
    /// Opens every store: the built-in local file system store ([`fsstore::FsStore`]) when `plugin_name` is
    /// empty, otherwise the ready FileStore plugin of that name.
    ///
    /// Fails, naming the store, when a name is empty or used twice within its kind, when the local store
    /// refuses its configuration, or when the plugin is missing, not ready (with the registry's explanation) or
    /// its constructor fails. Names are checked before any store is opened.
    pub fn open(
        piece: Vec<StoreSpec>,
        persist: Vec<StoreSpec>,
        registry: &PluginRegistry,
    ) -> Result<StoreManager, FileStoreError> {
        StoreManager::open_with(piece, persist, registry, CapacityOptions::default())
    }

    /// [`open`](Self::open) with explicit capacity refresh options.
    pub fn open_with(
        piece: Vec<StoreSpec>,
        persist: Vec<StoreSpec>,
        registry: &PluginRegistry,
        options: CapacityOptions,
    ) -> Result<StoreManager, FileStoreError> {
        check_names(StoreKind::Piece, &piece)?;
        check_names(StoreKind::Persist, &persist)?;
        let piece = open_all(StoreKind::Piece, piece, registry, options)?;
        let persist = open_all(StoreKind::Persist, persist, registry, options)?;
        Ok(StoreManager::from_opened(piece, persist))
    }

    /// The FileStore plugins with a capacity call running now (a hung one never ends): shutdown must not run
    /// their `onShutdown` under that call.
    pub fn plugins_in_call(&self) -> Vec<String> {
        self.piece
            .iter()
            .chain(&self.persist)
            .filter(|store| !store.plugin.is_empty() && store.capacity.in_call())
            .map(|store| store.plugin.clone())
            .collect()
    }

    /// Stops the capacity refresher threads (a thread inside a hung store call ends when the call returns).
    pub fn stop(&self) {
        for store in self.piece.iter().chain(&self.persist) {
            store.capacity.stop();
        }
    }

    pub(super) fn from_opened(piece: Vec<ManagedStore>, persist: Vec<ManagedStore>) -> StoreManager {
        StoreManager { piece, persist, state: Mutex::new(ReserveState::new()) }
    }

    pub(super) fn lock_state(&self) -> MutexGuard<'_, ReserveState> {
        // The state stays consistent across a panic: every mutation is a single map operation.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Writes a piece of unknown size: the same as [`put_piece_sized`](Self::put_piece_sized) with `None`.
    pub fn put_piece(&self, name: &str, reader: &mut dyn Read) -> Result<(String, u64), FileStoreError> {
        self.put_piece_sized(name, None, reader)
    }

    /// Streams `reader` into the first piece store (in config order) that is writable and has room: at least
    /// `size` bytes free when the size is known, any free space at all otherwise. Returns the store's name and
    /// the bytes written.
    ///
    /// The write is atomic per the [`Store`] contract; an existing piece of that name in the chosen store is
    /// replaced. A failing write is not retried on another store, since `reader` is partly consumed.
    pub fn put_piece_sized(
        &self,
        name: &str,
        size: Option<u64>,
        reader: &mut dyn Read,
    ) -> Result<(String, u64), FileStoreError> {
        check_piece_name(name)?;
        let store = self.piece_store_for(name, size)?;
        let written = store.store.put(name, reader);
        store.capacity.refresh_soon();
        let written = written.map_err(|source| FileStoreError::Store {
            store: store.name().to_string(),
            op: "put",
            object: name.to_string(),
            source,
        })?;
        if let Some(expected) = size.filter(|&expected| expected != written) {
            // A store that stopped reading early committed a short object: take it back out.
            let _ = store.store.del(name);
            return Err(FileStoreError::Store {
                store: store.name().to_string(),
                op: "put",
                object: name.to_string(),
                source: manager_plugin::StoreError::Io(format!("the store wrote {written} of {expected} bytes")),
            });
        }
        tracing::info!(store = store.name(), piece = name, bytes = written, "stored piece");
        Ok((store.name().to_string(), written))
    }

    /// The first writable piece store with room for `size` bytes (any room when unknown).
    fn piece_store_for(&self, name: &str, size: Option<u64>) -> Result<&ManagedStore, FileStoreError> {
        if self.piece.is_empty() {
            return Err(FileStoreError::NoWritablePieceStore {
                name: name.to_string(),
                reasons: "no piece stores are configured; add a [[Common.PieceStores]] entry".to_string(),
            });
        }
        let needed = size.unwrap_or(1);
        let mut reasons = Vec::new();
        for store in &self.piece {
            if store.config.read_only {
                reasons.push(format!("{:?} is read-only", store.name()));
                continue;
            }
            match store.capacity.current() {
                Capacity::Known { free, .. } if free >= needed => return Ok(store),
                Capacity::Known { free, .. } => reasons.push(format!(
                    "{:?} has {free} bytes free, {} needed",
                    store.name(),
                    size.map_or_else(|| "some".to_string(), |s| s.to_string())
                )),
                other => {
                    let why = other.problem(store.capacity.timeout()).unwrap_or_default();
                    reasons.push(format!("{:?}: {why}", store.name()));
                }
            }
        }
        Err(FileStoreError::NoWritablePieceStore { name: name.to_string(), reasons: reasons.join("; ") })
    }

    /// Opens a piece for streaming: `name`, then `name.car`, in each piece store in config order.
    ///
    /// [`FileStoreError::PieceNotFound`] when no store has either; when a store fails otherwise (I/O...), the
    /// other stores are still tried and the first such failure is returned if none has the piece.
    pub fn open_piece(&self, name: &str) -> Result<ObjectReader, FileStoreError> {
        self.find_piece(name, |store, object| store.get(object).map_err(failed_in("get")))
    }

    /// The size of a piece, looked up as in [`open_piece`](Self::open_piece).
    pub fn piece_size(&self, name: &str) -> Result<u64, FileStoreError> {
        self.find_piece(name, |store, object| store.stat(object).map(|stat| stat.size).map_err(failed_in("stat")))
    }

    /// Opens a piece and returns its size with it, from the same store and object (one lookup).
    pub fn open_piece_with_size(&self, name: &str) -> Result<(ObjectReader, u64), FileStoreError> {
        self.find_piece(name, |store, object| {
            // The SPI cannot stat an opened reader, so a concurrent replace could pair one version's size with
            // another's bytes: stat on both sides of the open and retry until they agree. (A mismatch that slips
            // through still cannot corrupt silently: the client sees a short or long body for its Content-Length.)
            let mut attempts = 0;
            loop {
                let before = store.stat(object).map_err(failed_in("stat"))?.size;
                let reader = store.get(object).map_err(failed_in("get"))?;
                let after = store.stat(object).map_err(failed_in("stat"))?.size;
                attempts += 1;
                if before == after || attempts == 3 {
                    return Ok((reader, after));
                }
            }
        })
    }

    /// The one lookup order for pieces: each store in turn, `name` then `name.car`. `lookup` names the store
    /// method that failed, so an error (a plugin panic in `stat`, say) is reported against that method.
    fn find_piece<T>(
        &self,
        name: &str,
        mut lookup: impl FnMut(&dyn Store, &str) -> Result<T, FailedIn>,
    ) -> Result<T, FileStoreError> {
        check_piece_name(name)?;
        let car_name = format!("{name}{CAR_SUFFIX}");
        let mut first_failure = None;
        for store in &self.piece {
            for object in [name, car_name.as_str()] {
                match lookup(store.store.as_ref(), object) {
                    Ok(found) => return Ok(found),
                    Err(FailedIn { source: StoreError::NotFound(_), .. }) => {}
                    Err(FailedIn { op, source }) => {
                        tracing::warn!(store = store.name(), object, "{op} failed: {source}");
                        first_failure.get_or_insert(FileStoreError::Store {
                            store: store.name().to_string(),
                            op,
                            object: object.to_string(),
                            source,
                        });
                    }
                }
            }
        }
        Err(first_failure.unwrap_or_else(|| FileStoreError::PieceNotFound { name: name.to_string() }))
    }

    /// Name, path and meta of the persist store called `name`.
    pub fn basic_info(&self, name: &str) -> Option<StoreBasicInfo> {
        self.persist.iter().find(|store| store.name() == name).map(|store| StoreBasicInfo::from(&store.config))
    }

    /// Every store, piece stores first, then persist stores, each in config order, with capacity figures and
    /// the reservations held on it. The figures are the cached ones; a store whose capacity cannot be read is
    /// listed with zeros and `Error` set, and one whose `instance_info` is hung also with `Available: false`.
    pub fn list(&self) -> Vec<StoreDetailedInfo> {
        // Snapshot the reservations first so no store call runs under the lock.
        let reserved: Vec<Vec<ReservedItem>> = {
            let state = self.lock_state();
            (0..self.persist.len()).map(|index| state.reservations.items_on(index)).collect()
        };
        let pieces = self.piece.iter().map(|store| detailed_info(store, Vec::new()));
        let persists = self.persist.iter().zip(reserved).map(|(store, items)| detailed_info(store, items));
        pieces.chain(persists).collect()
    }
}

impl Drop for StoreManager {
    fn drop(&mut self) {
        self.stop();
    }
}

impl fmt::Debug for StoreManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = |stores: &[ManagedStore]| stores.iter().map(|s| s.name().to_string()).collect::<Vec<_>>();
        f.debug_struct("StoreManager")
            .field("piece", &names(&self.piece))
            .field("persist", &names(&self.persist))
            .finish_non_exhaustive()
    }
}

/// A store error with the store method that returned it.
struct FailedIn {
    op: &'static str,
    source: StoreError,
}

/// Tags a store error with the method `op` that returned it.
fn failed_in(op: &'static str) -> impl Fn(StoreError) -> FailedIn {
    move |source| FailedIn { op, source }
}

fn check_piece_name(name: &str) -> Result<(), FileStoreError> {
    validate_object_path(name)
        .map(|_| ())
        .map_err(|source| FileStoreError::InvalidPieceName { name: name.to_string(), source })
}

fn check_names(kind: StoreKind, specs: &[StoreSpec]) -> Result<(), FileStoreError> {
    let mut seen = HashSet::new();
    for (index, spec) in specs.iter().enumerate() {
        let name = &spec.config.name;
        if name.is_empty() {
            return Err(FileStoreError::UnnamedStore { kind, position: index + 1 });
        }
        if !seen.insert(name) {
            return Err(FileStoreError::DuplicateStore { kind, name: name.clone() });
        }
    }
    Ok(())
}

fn open_all(
    kind: StoreKind,
    specs: Vec<StoreSpec>,
    registry: &PluginRegistry,
    options: CapacityOptions,
) -> Result<Vec<ManagedStore>, FileStoreError> {
    specs
        .into_iter()
        .map(|spec| {
            let store = open_store(kind, &spec, registry)?;
            tracing::info!(
                kind = %kind,
                store = %spec.config.name,
                path = %spec.config.path,
                implementation = %store.type_name(),
                read_only = spec.config.read_only,
                "opened store"
            );
            let policy = MinerPolicy { allow: spec.allow_miners, deny: spec.deny_miners };
            Ok(ManagedStore::new(kind, spec.config, spec.plugin_name, policy, store, options))
        })
        .collect()
}

fn open_store(kind: StoreKind, spec: &StoreSpec, registry: &PluginRegistry) -> Result<Arc<dyn Store>, FileStoreError> {
    let store = spec.config.name.clone();
    if spec.plugin_name.is_empty() {
        return match fsstore::FsStore::open(spec.config.clone()) {
            Ok(local) => Ok(Arc::new(local)),
            Err(source) => Err(FileStoreError::OpenLocal { kind, store, source }),
        };
    }
    let plugin = spec.plugin_name.clone();
    let Some(record) = registry.get(Kind::FileStore, &plugin) else {
        let why = registry.why_not_ready(Kind::FileStore, &plugin);
        return Err(FileStoreError::PluginNotReady { kind, store, plugin, why });
    };
    record.open_store(spec.config.clone()).map(Arc::from).map_err(|source| FileStoreError::OpenPlugin {
        kind,
        store,
        plugin,
        source,
    })
}

fn detailed_info(store: &ManagedStore, reserved_by: Vec<ReservedItem>) -> StoreDetailedInfo {
    let capacity = store.capacity.current();
    let error = capacity.problem(store.capacity.timeout());
    let available = !matches!(capacity, Capacity::Unanswered { .. });
    let (total, free, used) = match capacity {
        Capacity::Known { total, free, used } => (total, free, used),
        _ => (0, 0, 0),
    };
    // Display only: f64 precision is plenty for a percentage.
    let used_percent = if total == 0 { 0.0 } else { used as f64 * 100.0 / total as f64 };
    StoreDetailedInfo {
        name: store.config.name.clone(),
        path: store.config.path.clone(),
        meta: store.config.meta.clone(),
        kind: store.kind,
        r#type: store.store.type_name(),
        plugin_name: store.plugin.clone(),
        total,
        free,
        used,
        used_percent,
        reserved: reserved_by.iter().fold(0u64, |sum, item| sum.saturating_add(item.size)),
        reserved_by,
        read_only: store.config.read_only,
        weight: store.config.weight,
        allow_miners: store.policy.allow.clone(),
        deny_miners: store.policy.deny.clone(),
        available,
        error,
    }
}
