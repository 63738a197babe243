//! The sector data model shared with plugins. [`SectorState`]'s JSON is the Go damocles-manager's
//! (`damocles-manager/core/types_sector_state.go`): PascalCase, both `Deals` (legacy) and `Pieces` (V2), `null`
//! for nil slices and pointers, and the `omitempty` fields left out when empty, so a Go state read and written
//! back is the same JSON value. `legacy` reads what damocles-rs wrote before (`Pieces` in the legacy shape).

mod codec;
mod legacy;
mod parts;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use codec::{Bytes, Cid, GoJson};
pub use parts::{
    LegacyDeal, MessageInfo, MockChainRecord, PieceInfo, PieceRef, PreCommitInfo, ProofInfo, ReportStateReq,
    SectorFailure, SectorPiece, SectorPublicInfo, SectorUpgradedInfo, Seed, StateChange, TerminateInfo, Ticket,
    WorkerIdentifier,
};

/// A miner actor ID.
pub type ActorId = u64;

/// Identifies a sector: the miner that owns it and its number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SectorId {
    /// Owning miner actor.
    pub miner: ActorId,
    /// Sector number, unique per miner.
    pub number: u64,
}

impl fmt::Display for SectorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s-t0{}-{}", self.miner, self.number)
    }
}

/// Whether a sector is still being worked on (online) or finalized (offline).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WorkerState {
    /// In progress.
    Online,
    /// Finalized.
    Offline,
}

impl WorkerState {
    /// The KV collection holding sectors in this state.
    pub fn collection(self) -> &'static str {
        match self {
            WorkerState::Online => "online",
            WorkerState::Offline => "offline",
        }
    }
}

/// Everything the manager knows about a sector, stored as JSON under `m-<miner>-n-<number>`: Go's
/// `core.SectorState` (`types_sector_state.go:35`), field for field and in Go's order, plus `MockChain`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", from = "legacy::SectorStateWire")]
pub struct SectorState {
    /// Sector identity.
    #[serde(rename = "ID")]
    pub id: SectorId,
    /// Registered seal proof type.
    pub sector_type: i64,
    /// Ticket, once drawn (omitted when `None`, Go's `omitempty`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ticket: Option<Ticket>,
    /// Seed, once drawn (omitted when `None`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<Seed>,
    /// Legacy deals (Go `LegacyPieces`, JSON `Deals`); `None` is Go's nil slice, `null`.
    #[serde(rename = "Deals")]
    pub deals: Option<Vec<LegacyDeal>>,
    /// V2 pieces (Go `SectorPieces`); `None` is Go's nil slice, `null` (every CC sector).
    pub pieces: Option<Vec<SectorPiece>>,
    /// Pre-commit info (omitted when `None`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pre: Option<PreCommitInfo>,
    /// Commit proof (omitted when `None`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proof: Option<ProofInfo>,
    /// Message tracking.
    pub message_info: MessageInfo,
    /// Termination tracking.
    pub terminate_info: TerminateInfo,
    /// Last state reported by a worker (omitted when `None`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest_state: Option<ReportStateReq>,
    /// Sealing finished and the sector moved offline.
    pub finalized: bool,
    /// Removed by an operator.
    pub removed: bool,
    /// Why sealing was aborted, if it was.
    pub abort_reason: String,
    /// Snap-upgraded.
    pub upgraded: bool,
    /// Snap-up: the sector's public info before the upgrade.
    pub upgrade_public: Option<SectorPublicInfo>,
    /// Snap-up: what the upgrade produced.
    pub upgraded_info: Option<SectorUpgradedInfo>,
    /// Snap-up: the upgrade message.
    #[serde(rename = "UpgradeMessageID")]
    pub upgrade_message_id: Option<String>,
    /// Snap-up: the epoch the upgrade landed at.
    pub upgrade_landed_epoch: Option<i64>,
    /// Imported from elsewhere rather than sealed here.
    pub imported: bool,
    /// Needs rebuilding.
    pub need_rebuild: bool,
    /// Being unsealed.
    pub unsealing: bool,
    /// damocles-rs only: present when the mock chain (`[MockChain]`) handled this sector — it can never go on a
    /// real chain. Omitted otherwise, so Go's states round-trip unchanged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mock_chain: Option<MockChainRecord>,
}

impl Default for SectorState {
    fn default() -> Self {
        SectorState::new(SectorId { miner: 0, number: 0 }, 0)
    }
}

impl SectorState {
    /// A freshly allocated sector.
    pub fn new(id: SectorId, sector_type: i64) -> Self {
        SectorState {
            id,
            sector_type,
            ticket: None,
            seed: None,
            deals: None,
            pieces: None,
            pre: None,
            proof: None,
            message_info: MessageInfo::default(),
            terminate_info: TerminateInfo::default(),
            latest_state: None,
            finalized: false,
            removed: false,
            abort_reason: String::new(),
            upgraded: false,
            upgrade_public: None,
            upgraded_info: None,
            upgrade_message_id: None,
            upgrade_landed_epoch: None,
            imported: false,
            need_rebuild: false,
            unsealing: false,
            mock_chain: None,
        }
    }

    /// Whether the sector holds any piece, legacy or V2 (filler pieces included).
    pub fn has_pieces(&self) -> bool {
        self.deals.as_ref().is_some_and(|d| !d.is_empty()) || self.pieces.as_ref().is_some_and(|p| !p.is_empty())
    }

    /// Applies one typed update.
    pub fn apply(&mut self, update: &SectorUpdate) {
        match update.clone() {
            SectorUpdate::Ticket(v) => self.ticket = Some(v),
            SectorUpdate::Seed(v) => self.seed = Some(v),
            SectorUpdate::Deals(v) => self.deals = v,
            SectorUpdate::Pieces(v) => self.pieces = v,
            SectorUpdate::Pre(v) => self.pre = Some(v),
            SectorUpdate::Proof(v) => self.proof = Some(v),
            SectorUpdate::MessageInfo(v) => self.message_info = v,
            SectorUpdate::LatestState(v) => self.latest_state = Some(v),
            SectorUpdate::AbortReason(v) => self.abort_reason = v,
            SectorUpdate::Removed(v) => self.removed = v,
            SectorUpdate::NeedRebuild(v) => self.need_rebuild = v,
            SectorUpdate::Unsealing(v) => self.unsealing = v,
            SectorUpdate::Upgraded(v) => self.upgraded = v,
            SectorUpdate::MockChain(v) => self.mock_chain = Some(v),
        }
    }
}

/// One typed change to a sector's state (instead of the Go manager's reflection over field lists).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "legacy::SectorUpdateWire")]
pub enum SectorUpdate {
    /// Sets the ticket.
    Ticket(Ticket),
    /// Sets the seed.
    Seed(Seed),
    /// Replaces the legacy deals (`Deals`).
    Deals(Option<Vec<LegacyDeal>>),
    /// Replaces the V2 pieces (`Pieces`).
    Pieces(Option<Vec<SectorPiece>>),
    /// Sets pre-commit info.
    Pre(PreCommitInfo),
    /// Sets the proof.
    Proof(ProofInfo),
    /// Replaces message info.
    MessageInfo(MessageInfo),
    /// Records the last worker report.
    LatestState(ReportStateReq),
    /// Sets the abort reason.
    AbortReason(String),
    /// Marks removed.
    Removed(bool),
    /// Marks rebuild needed.
    NeedRebuild(bool),
    /// Marks unsealing.
    Unsealing(bool),
    /// Marks upgraded.
    Upgraded(bool),
    /// Sets what the mock chain recorded (marks the sector as handled by the mock chain).
    MockChain(MockChainRecord),
}

/// A sector handed out by `AllocateSector`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocatedSector {
    /// Its identity.
    #[serde(rename = "ID")]
    pub id: SectorId,
    /// Registered seal proof type.
    #[serde(rename = "ProofType")]
    pub proof_type: i64,
}

#[cfg(test)]
mod tests;
