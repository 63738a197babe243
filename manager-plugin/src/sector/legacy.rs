//! Reading sector states and updates in every shape they were ever written in: Go's (`Deals` legacy, `Pieces`
//! V2, `null` for any nil slice or pointer) and what damocles-rs wrote before it followed Go exactly — `Pieces`
//! holding legacy deals (`[{"ID":..,"PayloadSize":..,"Piece":{"Size":..,"Cid":..}}]`, Go's `Deals` shape),
//! `Pre.Deals` (a list of deal IDs Go does not have; dropped: the deals themselves are in `Deals`), and the
//! `Pieces` update of the same legacy shape. Written back, such a record takes Go's shape.

use serde::Deserialize;

use super::codec::null_default;
use super::parts::{
    LegacyDeal, MessageInfo, MockChainRecord, PreCommitInfo, ProofInfo, ReportStateReq, SectorPiece, SectorPublicInfo,
    SectorUpgradedInfo, Seed, TerminateInfo, Ticket,
};
use super::{SectorId, SectorState, SectorUpdate};

/// One element of a stored `Pieces`: Go's V2 piece, or (records written by damocles-rs before) a legacy deal.
/// V2 is tried first: it needs `Piece.PieceCID`, which a legacy deal's `Piece` never has.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum PieceEntry {
    V2(SectorPiece),
    Legacy(LegacyDeal),
}

/// Splits stored `Pieces` into V2 pieces and legacy deals.
fn split(entries: Option<Vec<PieceEntry>>) -> (Option<Vec<SectorPiece>>, Vec<LegacyDeal>) {
    let Some(entries) = entries else {
        return (None, Vec::new());
    };
    let (mut pieces, mut deals) = (Vec::new(), Vec::new());
    for entry in entries {
        match entry {
            PieceEntry::V2(piece) => pieces.push(piece),
            PieceEntry::Legacy(deal) => deals.push(deal),
        }
    }
    // An old record's legacy-only `Pieces` becomes `Deals`; its `Pieces` is then Go's nil.
    let pieces = if pieces.is_empty() && !deals.is_empty() { None } else { Some(pieces) };
    (pieces, deals)
}

/// [`SectorState`] as stored, in any of its shapes (see the module doc).
#[derive(Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(super) struct SectorStateWire {
    #[serde(rename = "ID", deserialize_with = "null_default")]
    id: SectorId,
    #[serde(deserialize_with = "null_default")]
    sector_type: i64,
    ticket: Option<Ticket>,
    seed: Option<Seed>,
    #[serde(rename = "Deals")]
    deals: Option<Vec<LegacyDeal>>,
    pieces: Option<Vec<PieceEntry>>,
    pre: Option<PreCommitInfo>,
    proof: Option<ProofInfo>,
    #[serde(deserialize_with = "null_default")]
    message_info: MessageInfo,
    #[serde(deserialize_with = "null_default")]
    terminate_info: TerminateInfo,
    latest_state: Option<ReportStateReq>,
    #[serde(deserialize_with = "null_default")]
    finalized: bool,
    #[serde(deserialize_with = "null_default")]
    removed: bool,
    #[serde(deserialize_with = "null_default")]
    abort_reason: String,
    #[serde(deserialize_with = "null_default")]
    upgraded: bool,
    upgrade_public: Option<SectorPublicInfo>,
    upgraded_info: Option<SectorUpgradedInfo>,
    #[serde(rename = "UpgradeMessageID")]
    upgrade_message_id: Option<String>,
    upgrade_landed_epoch: Option<i64>,
    #[serde(deserialize_with = "null_default")]
    imported: bool,
    #[serde(deserialize_with = "null_default")]
    need_rebuild: bool,
    #[serde(deserialize_with = "null_default")]
    unsealing: bool,
    mock_chain: Option<MockChainRecord>,
}

impl From<SectorStateWire> for SectorState {
    fn from(w: SectorStateWire) -> SectorState {
        let (pieces, old_deals) = split(w.pieces);
        let deals = match (w.deals, old_deals.is_empty()) {
            (deals, true) => deals,
            (Some(mut deals), false) => {
                deals.extend(old_deals);
                Some(deals)
            }
            (None, false) => Some(old_deals),
        };
        SectorState {
            id: w.id,
            sector_type: w.sector_type,
            ticket: w.ticket,
            seed: w.seed,
            deals,
            pieces,
            pre: w.pre,
            proof: w.proof,
            message_info: w.message_info,
            terminate_info: w.terminate_info,
            latest_state: w.latest_state,
            finalized: w.finalized,
            removed: w.removed,
            abort_reason: w.abort_reason,
            upgraded: w.upgraded,
            upgrade_public: w.upgrade_public,
            upgraded_info: w.upgraded_info,
            upgrade_message_id: w.upgrade_message_id,
            upgrade_landed_epoch: w.upgrade_landed_epoch,
            imported: w.imported,
            need_rebuild: w.need_rebuild,
            unsealing: w.unsealing,
            mock_chain: w.mock_chain,
        }
    }
}

/// [`SectorUpdate`] as stored in outbox events, in any of its shapes: a `Pieces` update of legacy deals (written
/// before) is a `Deals` update.
#[derive(Deserialize)]
pub(super) enum SectorUpdateWire {
    Ticket(Ticket),
    Seed(Seed),
    Deals(Option<Vec<LegacyDeal>>),
    Pieces(Option<Vec<PieceEntry>>),
    Pre(PreCommitInfo),
    Proof(ProofInfo),
    MessageInfo(MessageInfo),
    LatestState(ReportStateReq),
    AbortReason(String),
    Removed(bool),
    NeedRebuild(bool),
    Unsealing(bool),
    Upgraded(bool),
    MockChain(MockChainRecord),
}

impl From<SectorUpdateWire> for SectorUpdate {
    fn from(w: SectorUpdateWire) -> SectorUpdate {
        match w {
            SectorUpdateWire::Ticket(v) => SectorUpdate::Ticket(v),
            SectorUpdateWire::Seed(v) => SectorUpdate::Seed(v),
            SectorUpdateWire::Deals(v) => SectorUpdate::Deals(v),
            SectorUpdateWire::Pieces(entries) => match split(entries) {
                (pieces, deals) if deals.is_empty() => SectorUpdate::Pieces(pieces),
                (_, deals) => SectorUpdate::Deals(Some(deals)),
            },
            SectorUpdateWire::Pre(v) => SectorUpdate::Pre(v),
            SectorUpdateWire::Proof(v) => SectorUpdate::Proof(v),
            SectorUpdateWire::MessageInfo(v) => SectorUpdate::MessageInfo(v),
            SectorUpdateWire::LatestState(v) => SectorUpdate::LatestState(v),
            SectorUpdateWire::AbortReason(v) => SectorUpdate::AbortReason(v),
            SectorUpdateWire::Removed(v) => SectorUpdate::Removed(v),
            SectorUpdateWire::NeedRebuild(v) => SectorUpdate::NeedRebuild(v),
            SectorUpdateWire::Unsealing(v) => SectorUpdate::Unsealing(v),
            SectorUpdateWire::Upgraded(v) => SectorUpdate::Upgraded(v),
            SectorUpdateWire::MockChain(v) => SectorUpdate::MockChain(v),
        }
    }
}
