//! Durability guards against the real `damocles-manager` binary: sector number ranges and late worker calls over
//! JSON-RPC.

mod common;

use common::daemon::TestHome;
use jsonrpsee::core::ClientError;
use jsonrpsee::rpc_params;
use serde_json::{Value, json};

fn error_code(err: ClientError) -> (i32, String) {
    match err {
        ClientError::Call(obj) => (obj.code(), obj.message().to_string()),
        other => panic!("expected a JSON-RPC error, got {other}"),
    }
}

fn miner(actor: u64, sector: toml::Table) -> toml::Value {
    let mut entry = toml::Table::new();
    entry.insert("Actor".into(), (actor as i64).into());
    entry.insert("SealProof".into(), 8i64.into());
    entry.insert("Sector".into(), toml::Value::Table(sector));
    toml::Value::Table(entry)
}

fn table(pairs: &[(&str, toml::Value)]) -> toml::Table {
    pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

/// `[Miners.Sector]` over RPC: a disabled miner is never picked, a miner starts above its floor, a miner whose
/// range is full is skipped, and `AllocateSector` answers null once no miner can allocate, also after a restart.
#[tokio::test(flavor = "multi_thread")]
async fn allocation_follows_the_miners_sector_ranges_across_restarts() {
    let home = TestHome::init();
    home.set_config(
        "Miners",
        toml::Value::Array(vec![
            miner(1000, table(&[("Enabled", false.into())])),
            miner(
                1001,
                table(&[("InitNumber", 5i64.into()), ("MinNumber", 100i64.into()), ("MaxNumber", 102i64.into())]),
            ),
            miner(1002, table(&[("InitNumber", 7i64.into()), ("MaxNumber", 8i64.into()), ("Verbose", true.into())])),
        ]),
    );
    let spec = json!({"AllowedMiners": [], "AllowedProofTypes": []});
    let mut handed_out = Vec::new();
    for round in 0..2 {
        let daemon = home.start();
        let batch: Vec<Value> =
            daemon.call("Venus.AllocateSectorsBatch", rpc_params![spec.clone(), 2]).await.expect("batch");
        handed_out
            .extend(batch.iter().map(|s| (s["ID"]["Miner"].as_u64().unwrap(), s["ID"]["Number"].as_u64().unwrap())));
        if round == 0 {
            assert_eq!(handed_out, [(1001, 101), (1001, 102)], "MinNumber wins over InitNumber; 1000 is disabled");
            // 1001 is full (102 = MaxNumber): the next goes to 1002, starting above its InitNumber.
            let one: Value = daemon.call("Venus.AllocateSector", rpc_params![spec.clone()]).await.expect("allocate");
            assert_eq!((one["ID"]["Miner"].as_u64(), one["ID"]["Number"].as_u64()), (Some(1002), Some(8)));
        } else {
            assert!(batch.is_empty(), "every range is full after the restart: {batch:?}");
            let none: Value = daemon.call("Venus.AllocateSector", rpc_params![spec.clone()]).await.expect("allocate");
            assert_eq!(none, Value::Null, "no miner can allocate");
            let only_disabled = json!({"AllowedMiners": [1000], "AllowedProofTypes": []});
            let none: Value = daemon.call("Venus.AllocateSector", rpc_params![only_disabled]).await.expect("allocate");
            assert_eq!(none, Value::Null, "a disabled miner is never picked");
        }
        assert_eq!(daemon.stop(), Some(0));
    }
}

/// A late `ReportAborted` (a worker that restarted) on a sector it already finalized answers 11001 and leaves the
/// record as it was, so the sealed sector does not become restorable without `forced`.
#[tokio::test(flavor = "multi_thread")]
async fn a_late_report_aborted_answers_11001_and_changes_nothing() {
    let home = TestHome::init();
    let daemon = home.start();
    let spec = json!({"AllowedMiners": [1000], "AllowedProofTypes": []});
    let allocated: Value = daemon.call("Venus.AllocateSector", rpc_params![spec]).await.expect("allocate");
    let sid = allocated["ID"].clone();
    let _: Value = daemon.call("Venus.ReportFinalized", rpc_params![sid.clone()]).await.expect("finalize");
    let before: Value = daemon.call("Venus.FindSectorInAllStates", rpc_params![sid.clone()]).await.expect("find");
    let late = daemon.call::<Value>("Venus.ReportAborted", rpc_params![sid.clone(), "late"]).await;
    let (code, message) = error_code(late.expect_err("late abort"));
    assert_eq!(code, 11001, "{message}");
    assert!(message.contains("not found among online sectors"), "{message}");
    let after: Value = daemon.call("Venus.FindSectorInAllStates", rpc_params![sid.clone()]).await.expect("find");
    assert_eq!(after, before);
    let refused = daemon.call::<Value>("Venus.RestoreSector", rpc_params![sid, false]).await;
    assert!(refused.is_err(), "a sealed sector that was never aborted needs `forced`");
    assert_eq!(daemon.stop(), Some(0));
}
