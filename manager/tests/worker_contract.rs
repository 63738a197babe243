//! The worker's side of the contract: the exact JSON an unmodified damocles-worker sends, replayed against the
//! real daemon binary WITHOUT a token from a trusted network (`127.0.0.0/8`), every answer decoded into the
//! worker's own types.
//!
//! The worker's serde types and client are in `common/worker.rs` (copied from damocles-worker with their serde
//! attributes). The daemon runs on the Go manager's default config plus what damocles-rs needs. The whole
//! sealing flow against the mock chain is `mock_chain.rs`.

mod common;

use std::net::IpAddr;

use common::daemon::TestHome;
use common::worker::*;
use serde_json::{Value, json};

// ---- the JSON the worker sends --------------------------------------------------------------------------------

/// The params of each call, byte for byte as the worker's jsonrpc client serializes its arguments (a JSON array,
/// one element per argument), with the trait method's line. [`fixtures_are_what_the_worker_types_serialize`]
/// proves the sealing fixtures equal the serialization of the types above.
const ALLOCATE_ANY: &str = r#"[{"AllowedMiners":null,"AllowedProofTypes":null}]"#; // mod.rs:479
const ALLOCATE_NONE: &str = r#"[{"AllowedMiners":[999],"AllowedProofTypes":[8]}]"#; // mod.rs:479
const ALLOCATE_BATCH: &str = r#"[{"AllowedMiners":[1000],"AllowedProofTypes":[8]},2]"#; // mod.rs:486
const REPORT_STATE_REQ: &str = r#"{"Worker":{"Instance":"worker-1","Location":"/sealing/1"},"StateChange":{"Prev":"Empty","Next":"Allocated","Event":"SetUp"},"Failure":null}"#; // mod.rs:556
const WORKER_PING: &str = r#"[{"Name":"worker-1","Dest":"10.0.0.7:17890","Version":"v0.11.0","Summary":{"Threads":4,"Empty":1,"Paused":0,"Running":3,"Waiting":0,"Errors":0}}]"#; // mod.rs:587
const STORE_BASIC_INFO: &str = r#"["persist"]"#; // mod.rs:598

fn sid_json(number: u64) -> String {
    format!(r#"{{"Miner":1000,"Number":{number}}}"#)
}

/// The params of the chain-facing methods (trait lines noted), built from the worker's argument types.
fn chain_calls(sid: &str) -> Vec<(&'static str, String)> {
    let sector = format!(r#"{{"ID":{sid},"ProofType":8}}"#);
    let ticket = r#"{"Ticket":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","Epoch":100}"#;
    let bytes32 = format!("[{}]", ["0"; 32].join(","));
    let cid = r#"{"/":"baga6ea4seaqao7s73y24kcutaosvacpdjgfe5pw76ooefnyqw4ynr3d2y6x2mpq"}"#;
    vec![
        ("Venus.AcquireDeals", format!(r#"[{sid},{{"MaxDeals":null,"MinUsedSpace":null}}]"#)), // mod.rs:494
        ("Venus.AssignTicket", format!("[{sid}]")),                                            // mod.rs:502
        (
            "Venus.SubmitPreCommit", // mod.rs:506
            format!(r#"[{sector},{{"CommR":{bytes32},"CommD":{bytes32},"Ticket":{ticket}}},false]"#),
        ),
        ("Venus.PollPreCommitState", format!("[{sid}]")), // mod.rs:515
        ("Venus.SubmitPersistedEx", format!(r#"[{sid},"persist",false]"#)), // mod.rs:526
        ("Venus.WaitSeed", format!("[{sid},8]")), // mod.rs:535
        ("Venus.SubmitProof", format!(r#"[{sid},{{"Proof":"AQID"}},false]"#)), // mod.rs:543
        ("Venus.PollProofState", format!("[{sid}]")), // mod.rs:552
        (
            "Venus.AllocateSanpUpSector", // mod.rs:573
            r#"[{"Sector":{"AllowedMiners":null,"AllowedProofTypes":null},"Deals":{"MaxDeals":null,"MinUsedSpace":null}}]"#.to_owned(),
        ),
        (
            "Venus.SubmitSnapUpProof", // mod.rs:580
            format!(r#"[{sid},{{"CommR":{bytes32},"CommD":{bytes32},"AccessInstance":"persist","Pieces":[{cid}],"Proof":"AQID"}}]"#),
        ),
        ("Venus.AllocateRebuildSector", ALLOCATE_ANY.to_owned()), // mod.rs:605
        ("Venus.AllocateUnsealSector", ALLOCATE_ANY.to_owned()),  // mod.rs:612
        ("Venus.AchieveUnsealSector", format!(r#"[{sid},{cid},""]"#)), // mod.rs:618
        ("Venus.AcquireUnsealDest", format!("[{sid},{cid}]")), // mod.rs:626
    ]
}

/// Snap-up, rebuild and unseal: not implemented, with or without the mock chain.
const UNIMPLEMENTED: [&str; 6] = [
    "Venus.AllocateSanpUpSector",
    "Venus.SubmitSnapUpProof",
    "Venus.AllocateRebuildSector",
    "Venus.AllocateUnsealSector",
    "Venus.AchieveUnsealSector",
    "Venus.AcquireUnsealDest",
];

/// The WindowPoSt job-queue calls (mod.rs:633, 641, 648).
fn wdpost_calls() -> Vec<(&'static str, String)> {
    vec![
        ("Venus.WdPoStAllocateJobs", r#"[{"AllowedMiners":null,"AllowedProofTypes":null},1,"worker-1"]"#.to_owned()),
        ("Venus.WdPoStHeartbeatJobs", r#"[["job-1"],"worker-1"]"#.to_owned()),
        ("Venus.WdPoStFinishJob", r#"["job-1",null,"failed"]"#.to_owned()),
    ]
}

/// The Go manager's default config, with what damocles-rs needs added: the worker's network trusted, a persist
/// and a piece store, and a miner with its seal proof.
fn go_config_home(trusted: &str) -> TestHome {
    let home = TestHome::init();
    let dir = home.path().display().to_string();
    let go_default = include_str!("data/go-default.cfg");
    let config = format!(
        "{go_default}\n\
         [Common.DB.RocksDB]\nDir = \"{dir}/db\"\n\
         [[Common.PieceStores]]\nName = \"pieces\"\nPath = \"{dir}/pieces\"\n\
         [[Common.PersistStores]]\nName = \"persist\"\nPath = \"{dir}/persist\"\n\
         [[Miners]]\nActor = 1000\nSealProof = 8\n\
         [API]\nListen = \"127.0.0.1:{port}\"\nTrustedNetworks = [\"{trusted}\"]\n",
        port = home.port
    );
    std::fs::write(home.path().join("sector-manager.cfg"), config).unwrap();
    home
}

// ---- the tests ------------------------------------------------------------------------------------------------

#[test]
fn fixtures_are_what_the_worker_types_serialize() {
    // The worker's client serializes its arguments as a tuple: a JSON array in argument order.
    let any = (AllocateSectorSpec { allowed_miners: None, allowed_proof_types: None },);
    assert_eq!(serde_json::to_string(&any).unwrap(), ALLOCATE_ANY);
    let batch =
        (AllocateSectorSpec { allowed_miners: Some(vec![1000]), allowed_proof_types: Some(vec![SealProof(8)]) }, 2u32);
    assert_eq!(serde_json::to_string(&batch).unwrap(), ALLOCATE_BATCH);
    let req = ReportStateReq {
        worker: WorkerIdentifier { instance: "worker-1".into(), location: "/sealing/1".into() },
        state_change: SectorStateChange { prev: "Empty".into(), next: "Allocated".into(), event: "SetUp".into() },
        failure: None,
    };
    assert_eq!(serde_json::to_string(&req).unwrap(), REPORT_STATE_REQ);
    let ping = WorkerInfo {
        name: "worker-1".into(),
        dest: "10.0.0.7:17890".into(),
        version: "v0.11.0".into(),
        summary: WorkerInfoSummary { threads: 4, empty: 1, running: 3, ..Default::default() },
    };
    assert_eq!(serde_json::to_string(&(ping,)).unwrap(), WORKER_PING);
    let deals = AcquireDealsSpec { max_deals: None, min_used_space: None };
    assert_eq!(serde_json::to_string(&deals).unwrap(), r#"{"MaxDeals":null,"MinUsedSpace":null}"#);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unmodified_worker_seals_against_a_go_config_without_a_token() {
    let home = go_config_home("127.0.0.0/8");
    let daemon = home.start();
    assert!(daemon.log().contains("127.0.0.0/8"), "trusted networks are logged:\n{}", daemon.log());

    // Start-up: the worker checks its persist stores exist (run.rs:90).
    let store: Option<StoreBasicInfo> = call(&daemon, "Venus.StoreBasicInfo", STORE_BASIC_INFO).await.result();
    assert_eq!(store.expect("known store").name, "persist");
    let unknown: Option<StoreBasicInfo> = call(&daemon, "Venus.StoreBasicInfo", r#"["nope"]"#).await.result();
    assert!(unknown.is_none());

    // Ping: `()` decodes from null only.
    call(&daemon, "Venus.WorkerPing", WORKER_PING).await.result::<()>();
    let nameless = r#"[{"Name":"","Dest":"10.0.0.7:17890","Version":"v","Summary":{"Threads":0,"Empty":0,"Paused":0,"Running":0,"Waiting":0,"Errors":0}}]"#;
    assert!(call(&daemon, "Venus.WorkerPing", nameless).await.error().1.contains("worker name is required"));
    let destless = WORKER_PING.replace("10.0.0.7:17890", "");
    assert!(call(&daemon, "Venus.WorkerPing", &destless).await.error().1.contains("worker dest is required"));

    // Allocation.
    let allocated: Option<AllocatedSector> = call(&daemon, "Venus.AllocateSector", ALLOCATE_ANY).await.result();
    let allocated = allocated.expect("the configured miner fits");
    assert_eq!((allocated.id.miner, allocated.proof_type), (1000, SealProof(8)));
    let none: Option<AllocatedSector> = call(&daemon, "Venus.AllocateSector", ALLOCATE_NONE).await.result();
    assert!(none.is_none());
    let batch: Vec<AllocatedSector> = call(&daemon, "Venus.AllocateSectorsBatch", ALLOCATE_BATCH).await.result();
    assert_eq!(batch.len(), 2);
    let empty: Vec<AllocatedSector> =
        call(&daemon, "Venus.AllocateSectorsBatch", r#"[{"AllowedMiners":[999],"AllowedProofTypes":null},1]"#)
            .await
            .result();
    assert!(empty.is_empty(), "nothing fits: [] (the worker cannot decode null)");

    // Reports on a sector in progress.
    let sid = sid_json(allocated.id.number);
    let state: SectorState = call(&daemon, "Venus.ReportState", &format!("[{sid},{REPORT_STATE_REQ}]")).await.result();
    assert_eq!((state.id.clone(), state.finalized), (allocated.id.clone(), false));
    let reserved: Option<StoreBasicInfo> =
        call(&daemon, "Venus.StoreReserveSpace", &format!(r#"[{sid},1024,["persist"]]"#)).await.result();
    assert_eq!(reserved.expect("room in persist").name, "persist");

    // Finalized: null; then ReportState answers the offline state, as Go does.
    call(&daemon, "Venus.ReportFinalized", &format!("[{sid}]")).await.result::<()>();
    let state: SectorState = call(&daemon, "Venus.ReportState", &format!("[{sid},{REPORT_STATE_REQ}]")).await.result();
    assert!(state.finalized);
    assert_eq!(state.abort_reason.as_deref(), Some(""), "Go answers the (empty) abort reason as a string");
    let (code, _) = call(&daemon, "Venus.StoreReserveSpace", &format!(r#"[{sid},1024,["persist"]]"#)).await.error();
    assert_eq!(code, 11001, "a finalized sector reserves nothing");

    // Aborted: null; ReportState then carries the reason.
    let aborted = sid_json(batch[0].id.number);
    call(&daemon, "Venus.ReportAborted", &format!(r#"[{aborted},"pc1 failed"]"#)).await.result::<()>();
    let state: SectorState =
        call(&daemon, "Venus.ReportState", &format!("[{aborted},{REPORT_STATE_REQ}]")).await.result();
    assert_eq!((state.finalized, state.abort_reason.as_deref()), (true, Some("pc1 failed")));

    // A sector the manager never allocated.
    let ghost = sid_json(999_999);
    assert_eq!(call(&daemon, "Venus.ReportState", &format!("[{ghost},{REPORT_STATE_REQ}]")).await.error().0, 11001);
    assert_eq!(call(&daemon, "Venus.StoreReserveSpace", &format!("[{ghost},1,[]]")).await.error().0, 11001);

    // Without [MockChain], the chain-facing methods answer 12001 naming the method and the switch; snap-up,
    // rebuild and unseal answer 12002; neither is jsonrpsee's generic -32001.
    let live = sid_json(batch[1].id.number);
    for (method, params) in chain_calls(&live) {
        let answer = call(&daemon, method, &params).await;
        match method {
            // No deal source: CC (worker `sealer.rs:224-245`).
            "Venus.AcquireDeals" => assert!(answer.result::<Option<DealsV2>>().is_none(), "{}", answer.text),
            // A configured persist store needs no chain.
            "Venus.SubmitPersistedEx" => assert!(answer.result::<bool>(), "{}", answer.text),
            _ => {
                let (code, message) = answer.error();
                let expected = if UNIMPLEMENTED.contains(&method) { 12002 } else { 12001 };
                assert_eq!(code, expected, "{method}: {message}");
                assert!(message.contains(method), "{message}");
                if expected == 12001 {
                    assert!(message.contains("[MockChain]") && message.contains("--mock-chain"), "{message}");
                }
            }
        }
    }
    let (code, _) = call(&daemon, "Venus.AssignTicket", &format!("[{ghost}]")).await.error();
    assert_eq!(code, 12001, "without a chain the answer does not depend on the sector");
    for (method, params) in wdpost_calls() {
        let (code, message) = call(&daemon, method, &params).await.error();
        assert_eq!(code, -32601, "{method} reads as worker-prover off: {message}");
    }
    assert_eq!(daemon.stop(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_methods_need_the_token_even_from_a_trusted_network() {
    let home = go_config_home("127.0.0.0/8");
    let daemon = home.start();
    let import = r#"[ "offline", {"ID":{"Miner":1000,"Number":424242},"SectorType":8}, false ]"#;
    for (method, params) in [
        ("Venus.ImportSector", import),
        ("Venus.RestoreSector", r#"[{"Miner":1000,"Number":1},true]"#),
        ("Plugins.List", "[]"),
        ("Plugins.RetireSyncCursor", r#"["statelog"]"#),
        ("Venus.ListSectors", r#"["online",0]"#),
    ] {
        let answer = call(&daemon, method, params).await;
        assert_eq!(answer.status, 401, "{method}: {}", answer.text);
        assert!(answer.text.contains(method) && answer.text.contains("Bearer"), "{}", answer.text);
    }
    // A batch smuggling an admin call behind a worker call is refused whole, and nothing in it runs.
    let batch = format!("[{},{}]", call_body("Venus.WorkerPing", WORKER_PING), call_body("Venus.ImportSector", import));
    let answer = post_from(LOCAL, daemon.port, &batch).await;
    assert_eq!(answer.status, 401, "{}", answer.text);
    let imported = daemon
        .call::<Value>("Venus.FindSectorInAllStates", jsonrpsee::rpc_params![json!({"Miner":1000,"Number":424242})])
        .await;
    assert!(imported.is_err(), "the refused batch imported nothing: {imported:?}");
    let workers: Vec<Value> = daemon.call("Venus.WorkerPingInfoList", jsonrpsee::rpc_params![]).await.unwrap();
    assert!(workers.is_empty(), "the refused batch's ping did not run either");
    // A worker-only batch passes.
    let batch = format!(
        "[{},{}]",
        call_body("Venus.WorkerPing", WORKER_PING),
        call_body("Venus.StoreBasicInfo", STORE_BASIC_INFO)
    );
    let answer = post_from(LOCAL, daemon.port, &batch).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    // Pieces: GET without a token from a trusted network, PUT never.
    let get = common::daemon::raw_http(daemon.port, "GET", "/piecestore/absent", None, b"").unwrap();
    assert_eq!(get.status, 404, "GET reaches the store");
    let put = common::daemon::raw_http(daemon.port, "PUT", "/piecestore/p.car", None, b"data").unwrap();
    assert_eq!(put.status, 401);
    // With the token, the admin call works.
    let ok: bool = daemon
        .call(
            "Venus.ImportSector",
            jsonrpsee::rpc_params!["offline", json!({"ID":{"Miner":1000,"Number":424242},"SectorType":8}), false],
        )
        .await
        .unwrap();
    assert!(ok);
    assert_eq!(daemon.stop(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_outside_the_trusted_networks_needs_the_token() {
    let home = go_config_home("127.0.0.2/32");
    let daemon = home.start();
    let from = |last: u8| IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, last));
    let trusted = post_from(from(2), daemon.port, &call_body("Venus.StoreBasicInfo", STORE_BASIC_INFO)).await;
    assert!(trusted.result::<Option<StoreBasicInfo>>().is_some());
    let outsider = post_from(from(3), daemon.port, &call_body("Venus.StoreBasicInfo", STORE_BASIC_INFO)).await;
    assert_eq!(outsider.status, 401, "{}", outsider.text);
    assert!(outsider.text.contains("127.0.0.3") && outsider.text.contains("TrustedNetworks"), "{}", outsider.text);
    assert_eq!(daemon.stop(), Some(0));
}
