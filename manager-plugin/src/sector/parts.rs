//! The parts of a [`SectorState`](super::SectorState), each the JSON shape of its Go type in
//! `damocles-manager/core/types.go` and `core/types_sector_state.go` (PascalCase; `null` for nil pointers).

use serde::{Deserialize, Serialize};

use super::codec::{Bytes, Cid, GoJson};

/// A chain randomness ticket (Go `core.Ticket`, `types.go:223`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Ticket {
    /// Randomness.
    pub ticket: Bytes,
    /// Epoch it was drawn at.
    pub epoch: i64,
}

/// Interactive PoRep seed (Go `core.Seed`, `types.go:301`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Seed {
    /// Randomness.
    pub seed: Bytes,
    /// Epoch it was drawn at.
    pub epoch: i64,
}

/// Where a legacy deal's piece lies (Go `core.PieceInfo`, `types.go:47`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PieceInfo {
    /// Padded size in bytes.
    pub size: u64,
    /// Padded offset in the sector.
    pub offset: u64,
    /// Piece commitment.
    pub cid: Cid,
}

/// A legacy (builtin market) deal, or a filler piece with `ID` 0: an element of Go's `Deals`
/// (`core.LegacyDealInfo`, `types.go:53`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LegacyDeal {
    /// Deal ID; 0 for a filler piece.
    #[serde(rename = "ID")]
    pub id: u64,
    /// Unpadded payload size.
    #[serde(default)]
    pub payload_size: u64,
    /// The piece.
    pub piece: PieceInfo,
    /// The deal proposal (Go `*market.DealProposal`), kept as written; `null` for a filler piece.
    #[serde(default)]
    pub proposal: GoJson,
    /// Whether the worker uses the piece data as is instead of padding it.
    #[serde(default)]
    pub is_compatible: bool,
}

/// A piece's commitment and size (Go `abi.PieceInfo`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PieceRef {
    /// Padded size in bytes.
    #[serde(default)]
    pub size: u64,
    /// Piece commitment. Required (`deserialize_with` makes a missing key an error, where `Cid` alone would read
    /// it as undefined): it tells this shape from the legacy one when old records are read.
    #[serde(rename = "PieceCID", deserialize_with = "Cid::deserialize")]
    pub piece_cid: Cid,
}

/// A piece of Go's V2 `Pieces` (`core.SectorPieceV2`, `types.go:130`): the piece and, for a deal, its info.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SectorPiece {
    /// The piece.
    pub piece: PieceRef,
    /// The deal (Go `*core.DealInfoV2`: `DealID`, `AllocationID`, `PayloadSize`, `IsBuiltinMarket`, ...), kept as
    /// written; `null` for a filler piece.
    #[serde(default)]
    pub deal_info: GoJson,
}

impl SectorPiece {
    /// Go's `HasDealInfo`: a deal ID or an allocation ID is set.
    pub fn has_deal_info(&self) -> bool {
        let set = |key| self.deal_info.get(key).and_then(GoJson::as_u64).is_some_and(|id| id != 0);
        set("DealID") || set("AllocationID")
    }
}

/// Pre-commit results (Go `core.PreCommitInfo`, `types.go:337`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PreCommitInfo {
    /// Replica commitment.
    pub comm_r: Cid,
    /// Data commitment.
    pub comm_d: Cid,
    /// Ticket used.
    pub ticket: Ticket,
}

/// Commit proof (Go `core.ProofInfo`, `types.go:281`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProofInfo {
    /// The proof bytes.
    pub proof: Bytes,
}

/// On-chain message tracking (Go `core.MessageInfo`, `types.go:377`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct MessageInfo {
    /// Pre-commit message.
    pub pre_commit_cid: Option<Cid>,
    /// Prove-commit message.
    pub commit_cid: Option<Cid>,
    /// Whether the manager still has to send a message.
    pub need_send: bool,
}

/// Termination tracking (Go `core.TerminateInfo`, `types.go:383`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TerminateInfo {
    /// Terminate message.
    pub terminate_cid: Option<Cid>,
    /// Epoch the sector was terminated at.
    pub terminated_at: i64,
    /// Epoch the termination was requested at.
    pub added_height: i64,
}

/// A sector's public on-chain info (Go `core.SectorPublicInfo`, `types.go:426`), the snap-up `UpgradePublic`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct SectorPublicInfo {
    /// Replica commitment, 32 numbers.
    pub comm_r: [u8; 32],
    /// Sealed CID.
    #[serde(rename = "SealedCID")]
    pub sealed_cid: Cid,
    /// Activation epoch.
    pub activation: i64,
    /// Expiration epoch.
    pub expiration: i64,
}

/// What a snap-up produced (Go `core.SectorUpgradedInfo`, `types_sector_state.go:29`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct SectorUpgradedInfo {
    /// The persist store instance holding the upgraded files.
    pub access_instance: String,
    /// New sealed CID.
    #[serde(rename = "SealedCID")]
    pub sealed_cid: Cid,
    /// New unsealed CID.
    #[serde(rename = "UnsealedCID")]
    pub unsealed_cid: Cid,
    /// The replica-update proof.
    pub proof: Bytes,
}

/// Identifies the worker instance reporting.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WorkerIdentifier {
    /// Worker instance name.
    pub instance: String,
    /// Worker's local sector location.
    pub location: String,
}

/// A state transition reported by a worker.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StateChange {
    /// State before.
    pub prev: String,
    /// State after.
    pub next: String,
    /// Event that caused it.
    pub event: String,
}

/// A failure reported by a worker.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SectorFailure {
    /// Severity (e.g. `temporary`, `permanent`).
    pub level: String,
    /// Description.
    pub desc: String,
}

/// `Venus.ReportState` payload: what a worker says happened to a sector.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReportStateReq {
    /// Reporting worker.
    pub worker: WorkerIdentifier,
    /// The transition.
    pub state_change: StateChange,
    /// Failure, if any.
    pub failure: Option<SectorFailure>,
}

/// What the mock chain (`[MockChain]`, damocles-rs only) recorded for a sector: present on every sector it
/// handed a ticket to, so such a sector is recognisable for ever — nothing sealed against the mock can go on a
/// real chain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct MockChainRecord {
    /// The mock head epoch the pre-commit landed at; 0 until it landed.
    pub pre_commit_epoch: i64,
    /// Unix time in milliseconds the pre-commit landed at (`SeedDelay` counts from it); 0 until it landed.
    pub pre_commit_at_ms: u64,
}
