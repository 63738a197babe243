use serde_json::json;

use super::*;

/// Go-shaped states (`manager-plugin/tests/data/go-sector-states.json`), each field from Go's
/// `core/types_sector_state.go:35-69` and `core/types.go` (`LegacyDealInfo` :53, `SectorPieceV2` :130,
/// `PreCommitInfo` :337, `MessageInfo` :377, `TerminateInfo` :383, `SectorPublicInfo` :426,
/// `SectorUpgradedInfo` types_sector_state.go:29), written as Go's `encoding/json` writes them: nil slices and
/// pointers `null`, the `omitempty` pointers (`Ticket`, `Seed`, `Pre`, `Proof`, `LatestState`) left out, `cid.Cid`
/// as `{"/": ...}` (`null` when undefined), `[]byte` as base64, `[32]byte` as 32 numbers. `cc` is a fresh CC
/// sector, `full` a sealed and snap-upgraded sector with legacy and V2 deals, `imported` an operator's import.
pub(crate) fn go_states() -> serde_json::Value {
    serde_json::from_str(include_str!("../../tests/data/go-sector-states.json")).unwrap()
}

#[test]
fn a_new_sector_is_written_as_go_writes_a_cc_sector() {
    let s = SectorState::new(SectorId { miner: 1000, number: 1 }, 8);
    assert_eq!(serde_json::to_value(&s).unwrap(), go_states()["cc"]);
}

#[test]
fn a_go_state_reads_and_writes_back_unchanged() {
    for name in ["cc", "full", "imported"] {
        let go = go_states()[name].clone();
        let s: SectorState = serde_json::from_value(go.clone()).unwrap();
        assert_eq!(serde_json::to_value(&s).unwrap(), go, "{name}");
    }
    let go = go_states()["full"].clone();
    let s: SectorState = serde_json::from_value(go.clone()).unwrap();
    assert_eq!(s.deals.as_ref().unwrap()[0].id, 9);
    assert!(s.pieces.as_ref().unwrap()[0].has_deal_info());
    assert!(!s.pieces.as_ref().unwrap()[1].has_deal_info());
    assert_eq!(s.terminate_info.terminated_at, 500);
    assert_eq!(s.upgrade_landed_epoch, Some(777));
    assert_eq!(serde_json::to_value(&s).unwrap(), go);
}

/// Go writes `null` for every nil slice and pointer, and Go's decoder leaves a field at its zero value on `null`.
#[test]
fn null_is_accepted_for_every_field() {
    let mut go = go_states()["full"].clone();
    for (key, value) in go.as_object_mut().unwrap().iter_mut() {
        if key != "ID" {
            *value = serde_json::Value::Null;
        }
    }
    let s: SectorState = serde_json::from_value(go).unwrap();
    assert_eq!(s, SectorState::new(SectorId { miner: 1002, number: 77 }, 0));
}

/// What damocles-rs wrote before its state followed Go (manager-plugin `src/sector.rs` at c8d683d: `Pieces` of
/// `Deal {ID, PayloadSize, Piece {Size, Cid}}`, `Pre.Deals`, `Ticket: null`) still reads, and is written in Go's
/// shape.
#[test]
fn records_written_before_read_as_legacy_deals() {
    let old = json!({
        "ID": {"Miner": 1000, "Number": 3}, "SectorType": 8, "Ticket": null, "Seed": null,
        "Pieces": [{"ID": 7, "PayloadSize": 100, "Piece": {"Size": 128, "Cid": {"/": "baga"}}}],
        "Pre": {"CommR": {"/": "bagboea"}, "CommD": {"/": "baga6"}, "Ticket": {"Ticket": "AQID", "Epoch": 7},
                "Deals": [7]},
        "Proof": null, "MessageInfo": {"PreCommitCid": null, "CommitCid": null, "NeedSend": false},
        "LatestState": null, "Finalized": false, "Removed": false, "AbortReason": "", "Imported": false,
        "NeedRebuild": false, "Unsealing": false, "Upgraded": false
    });
    let s: SectorState = serde_json::from_value(old).unwrap();
    let deals = s.deals.clone().unwrap();
    assert_eq!((deals[0].id, deals[0].payload_size, deals[0].piece.size), (7, 100, 128));
    assert_eq!(deals[0].piece.cid.value, "baga");
    assert_eq!(s.pieces, None);
    assert_eq!(s.pre.as_ref().unwrap().comm_r.value, "bagboea");
    let written = serde_json::to_value(&s).unwrap();
    assert_eq!(written["Pieces"], serde_json::Value::Null);
    assert_eq!(written["Deals"][0]["Piece"], json!({"Size": 128, "Offset": 0, "Cid": {"/": "baga"}}));
    assert!(written["Pre"].get("Deals").is_none());

    // A CC record of before: `"Pieces": []`.
    let cc: SectorState = serde_json::from_value(json!({"ID": {"Miner": 1, "Number": 2}, "Pieces": []})).unwrap();
    assert_eq!((cc.deals, cc.pieces), (None, Some(Vec::new())));

    // An outbox `Pieces` update of before is a `Deals` update.
    let update: SectorUpdate = serde_json::from_value(
        json!({"Pieces": [{"ID": 7, "PayloadSize": 100, "Piece": {"Size": 128, "Cid": {"/": "baga"}}}]}),
    )
    .unwrap();
    assert_eq!(update, SectorUpdate::Deals(Some(deals)));
}

#[test]
fn the_mock_chain_mark_is_omitted_unless_set() {
    let mut s = SectorState::new(SectorId { miner: 1, number: 1 }, 8);
    assert!(serde_json::to_value(&s).unwrap().get("MockChain").is_none());
    s.apply(&SectorUpdate::MockChain(MockChainRecord { pre_commit_epoch: 5, pre_commit_at_ms: 9 }));
    let v = serde_json::to_value(&s).unwrap();
    assert_eq!(v["MockChain"], json!({"PreCommitEpoch": 5, "PreCommitAtMs": 9}));
    assert_eq!(serde_json::from_value::<SectorState>(v).unwrap(), s);
}
