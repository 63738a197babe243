//! Durability guards against the real `damocles-manager` binary: late worker calls over JSON-RPC.

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
