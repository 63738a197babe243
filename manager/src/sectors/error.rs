//! The errors of sector operations.

use manager_plugin::kv::KvError;
use manager_plugin::sector::{SectorId, WorkerState};

/// Why a sector operation failed. Every message names the sector (as `s-t0<miner>-<number>`) or the stored key
/// and the operation, so it can be shown to an operator as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SectorError {
    /// The sector does not exist (in `state`, or in either state when `None`).
    #[error("sector {id} not found{}", in_state(.state))]
    NotFound {
        /// The sector looked for.
        id: SectorId,
        /// Where it was looked for; `None` means both online and offline.
        state: Option<WorkerState>,
    },
    /// A non-forced restore was refused (the Go manager's rules: only aborted sectors without deals).
    #[error("cannot restore sector {id}: {reason}; restore it with forced = true to override")]
    RestoreRefused {
        /// The sector.
        id: SectorId,
        /// Why it was refused.
        reason: String,
    },
    /// Sector numbers could not be allocated.
    #[error("allocate sectors for miner t0{miner}: {message}")]
    Allocation {
        /// The miner actor.
        miner: u64,
        /// What went wrong.
        message: String,
    },
    /// The key-value store failed.
    #[error("{op}: {source}")]
    Kv {
        /// The operation, naming the sector or key (e.g. `finalize sector s-t01000-1`).
        op: String,
        /// The store's error.
        #[source]
        source: KvError,
    },
    /// A stored record could not be decoded (or a record could not be encoded).
    #[error("record {key:?} in collection \"sectors\": {message}")]
    Codec {
        /// The record's key.
        key: String,
        /// The decoder's complaint.
        message: String,
    },
}

impl SectorError {
    /// Whether the error means the sector does not exist (the RPC layer maps it to error code 11001).
    pub fn is_not_found(&self) -> bool {
        matches!(self, SectorError::NotFound { .. })
    }

    pub(super) fn not_found(id: SectorId, state: Option<WorkerState>) -> SectorError {
        SectorError::NotFound { id, state }
    }

    pub(super) fn kv(op: impl Into<String>, source: KvError) -> SectorError {
        SectorError::Kv { op: op.into(), source }
    }

    pub(super) fn codec(key: &[u8], message: impl std::fmt::Display) -> SectorError {
        SectorError::Codec { key: String::from_utf8_lossy(key).into_owned(), message: message.to_string() }
    }
}

fn in_state(state: &Option<WorkerState>) -> String {
    match state {
        Some(ws) => format!(" among {} sectors", ws.collection()),
        None => " (neither online nor offline)".to_string(),
    }
}
