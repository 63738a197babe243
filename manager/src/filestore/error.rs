//! Errors of the store manager. Each names the store and, where there is one, the object.

use manager_plugin::{PluginError, StoreError};

use super::info::StoreKind;

/// Why a store could not be opened, or a piece could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum FileStoreError {
    /// A configured store has no name.
    #[error("{kind} store #{position} has an empty Name; give every [[Common.{}]] entry a unique Name", kind.section())]
    UnnamedStore {
        /// Piece or persist.
        kind: StoreKind,
        /// 1-based position in its config section.
        position: usize,
    },
    /// Two stores of the same kind share a name.
    #[error("{kind} store {name:?} is configured more than once; rename one of the [[Common.{}]] entries", kind.section())]
    DuplicateStore {
        /// Piece or persist.
        kind: StoreKind,
        /// The shared name.
        name: String,
    },
    /// The built-in local store refused its configuration.
    #[error("{kind} store {store:?}: cannot open the built-in local store: {source}")]
    OpenLocal {
        /// Piece or persist.
        kind: StoreKind,
        /// The store's name.
        store: String,
        /// What the local store reported.
        source: StoreError,
    },
    /// The store names a FileStore plugin that is not loaded or not ready.
    #[error(
        "{kind} store {store:?} needs FileStore plugin {plugin:?}, which is not ready: {why} (put the plugin's .so \
         into [Common.Plugins] Dir, or clear PluginName to use the built-in local store)"
    )]
    PluginNotReady {
        /// Piece or persist.
        kind: StoreKind,
        /// The store's name.
        store: String,
        /// The configured `PluginName`.
        plugin: String,
        /// The registry's explanation.
        why: String,
    },
    /// The FileStore plugin's constructor failed.
    #[error("{kind} store {store:?}: FileStore plugin {plugin:?} could not open it: {source}")]
    OpenPlugin {
        /// Piece or persist.
        kind: StoreKind,
        /// The store's name.
        store: String,
        /// The configured `PluginName`.
        plugin: String,
        /// What the plugin reported.
        source: PluginError,
    },
    /// A piece name that is not a valid object path (absolute, `..`, empty...).
    #[error("invalid piece name {name:?}: {source}")]
    InvalidPieceName {
        /// The name as given.
        name: String,
        /// Why the path is refused.
        source: StoreError,
    },
    /// Neither `name` nor `name.car` exists in any piece store.
    #[error("piece {name:?} (nor {name}.car) not found in any piece store")]
    PieceNotFound {
        /// The piece name.
        name: String,
    },
    /// No piece store can take a new piece.
    #[error("no piece store can take piece {name:?}: {reasons}")]
    NoWritablePieceStore {
        /// The piece name.
        name: String,
        /// Why each piece store was passed over (or that none is configured).
        reasons: String,
    },
    /// A reservation larger than any sector could need (`StoreReserveSpace`).
    #[error(
        "StoreReserveSpace for sector {sector}: size {size} bytes exceeds the limit of {max} bytes (1 PiB); pass the \
         sector's sealed file and cache size in bytes"
    )]
    ReservationTooLarge {
        /// The sector.
        sector: manager_plugin::sector::SectorId,
        /// The requested size.
        size: u64,
        /// [`super::reserve::MAX_RESERVATION`].
        max: u64,
    },
    /// A store operation on an object failed.
    #[error("store {store:?}: {op} {object:?}: {source}")]
    Store {
        /// The store's name.
        store: String,
        /// The operation (`put`, `get`, `stat`).
        op: &'static str,
        /// The object path.
        object: String,
        /// What the store reported.
        source: StoreError,
    },
}

impl FileStoreError {
    /// Whether the error means the piece does not exist (HTTP 404), as opposed to a failure.
    pub fn is_not_found(&self) -> bool {
        matches!(self, FileStoreError::PieceNotFound { .. })
    }

    /// Whether the caller's input was at fault: an invalid piece name or one the store refuses (a reserved
    /// name), HTTP 400; an absurd reservation size.
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            FileStoreError::InvalidPieceName { .. }
                | FileStoreError::ReservationTooLarge { .. }
                | FileStoreError::Store { source: manager_plugin::StoreError::InvalidPath { .. }, .. }
        )
    }
}
