//! The sector data model shared with plugins. JSON field names follow the Go damocles-manager (PascalCase),
//! so stored records and RPC payloads stay compatible: `{"ID":{"Miner":1000,"Number":1},...}`.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

/// A miner actor ID.
pub type ActorId = u64;

/// Identifies a sector: the miner that owns it and its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
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

/// A CID, serialized the way Go's `cid.Cid` is: `{"/": "bafy..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Cid {
    /// The CID's string form.
    #[serde(rename = "/")]
    pub value: String,
}

/// Bytes serialized as base64, like Go's `[]byte`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Bytes(pub Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&BASE64.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Option::<String>::deserialize(d)?.unwrap_or_default();
        BASE64.decode(text.as_bytes()).map(Bytes).map_err(serde::de::Error::custom)
    }
}

/// A chain randomness ticket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Ticket {
    /// Randomness.
    pub ticket: Bytes,
    /// Epoch it was drawn at.
    pub epoch: i64,
}

/// Interactive PoRep seed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Seed {
    /// Randomness.
    pub seed: Bytes,
    /// Epoch it was drawn at.
    pub epoch: i64,
}

/// A piece placed in a sector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PieceInfo {
    /// Padded size in bytes.
    pub size: u64,
    /// Piece commitment.
    pub cid: Cid,
}

/// A deal (or filler piece, `ID` 0) in a sector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Deal {
    /// Deal ID; 0 for a filler piece.
    #[serde(rename = "ID")]
    pub id: u64,
    /// Unpadded payload size.
    pub payload_size: u64,
    /// The piece.
    pub piece: PieceInfo,
}

/// Pre-commit results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PreCommitInfo {
    /// Replica commitment.
    pub comm_r: Cid,
    /// Data commitment.
    pub comm_d: Cid,
    /// Ticket used.
    pub ticket: Ticket,
    /// Deal IDs included.
    #[serde(default)]
    pub deals: Vec<u64>,
}

/// Commit proof.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProofInfo {
    /// The proof bytes.
    pub proof: Bytes,
}

/// On-chain message tracking.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MessageInfo {
    /// Pre-commit message.
    pub pre_commit_cid: Option<Cid>,
    /// Prove-commit message.
    pub commit_cid: Option<Cid>,
    /// Whether the manager still has to send a message.
    pub need_send: bool,
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

/// Everything the manager knows about a sector. Stored as JSON under `m-<miner>-n-<number>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct SectorState {
    /// Sector identity.
    #[serde(rename = "ID")]
    pub id: SectorId,
    /// Registered seal proof type.
    pub sector_type: i64,
    /// Ticket, once drawn.
    pub ticket: Option<Ticket>,
    /// Seed, once drawn.
    pub seed: Option<Seed>,
    /// Pieces in the sector.
    pub pieces: Vec<Deal>,
    /// Pre-commit info.
    pub pre: Option<PreCommitInfo>,
    /// Commit proof.
    pub proof: Option<ProofInfo>,
    /// Message tracking.
    pub message_info: MessageInfo,
    /// Last state reported by a worker.
    pub latest_state: Option<ReportStateReq>,
    /// Sealing finished and the sector moved offline.
    pub finalized: bool,
    /// Removed by an operator.
    pub removed: bool,
    /// Why sealing was aborted, if it was.
    pub abort_reason: String,
    /// Imported from elsewhere rather than sealed here.
    pub imported: bool,
    /// Needs rebuilding.
    pub need_rebuild: bool,
    /// Being unsealed.
    pub unsealing: bool,
    /// Snap-upgraded.
    pub upgraded: bool,
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
            pieces: Vec::new(),
            pre: None,
            proof: None,
            message_info: MessageInfo::default(),
            latest_state: None,
            finalized: false,
            removed: false,
            abort_reason: String::new(),
            imported: false,
            need_rebuild: false,
            unsealing: false,
            upgraded: false,
        }
    }

    /// Applies one typed update.
    pub fn apply(&mut self, update: &SectorUpdate) {
        match update.clone() {
            SectorUpdate::Ticket(v) => self.ticket = Some(v),
            SectorUpdate::Seed(v) => self.seed = Some(v),
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
        }
    }
}

/// One typed change to a sector's state (instead of the Go manager's reflection over field lists).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SectorUpdate {
    /// Sets the ticket.
    Ticket(Ticket),
    /// Sets the seed.
    Seed(Seed),
    /// Replaces the pieces.
    Pieces(Vec<Deal>),
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
mod tests {
    use super::*;

    #[test]
    fn sector_json_uses_the_go_field_names() {
        let mut s = SectorState::new(SectorId { miner: 1000, number: 1 }, 8);
        s.apply(&SectorUpdate::Ticket(Ticket { ticket: Bytes(vec![1, 2, 3]), epoch: 7 }));
        let v: serde_json::Value = serde_json::to_value(&s).unwrap();
        assert_eq!(v["ID"], serde_json::json!({"Miner": 1000, "Number": 1}));
        assert_eq!(v["SectorType"], 8);
        assert_eq!(v["Ticket"], serde_json::json!({"Ticket": "AQID", "Epoch": 7}));
        let back: SectorState = serde_json::from_value(v).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn missing_fields_take_defaults() {
        let s: SectorState = serde_json::from_str(r#"{"ID":{"Miner":1,"Number":2}}"#).unwrap();
        assert_eq!(s.id, SectorId { miner: 1, number: 2 });
        assert!(!s.finalized);
    }
}
