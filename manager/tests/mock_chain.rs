//! The worker's whole CC flow against the mock chain (`[MockChain]`), with the exact JSON damocles-worker sends
//! (its serde types, `common/worker.rs`), no token (a trusted loopback network), for many sectors at once; the
//! manager is SIGKILLed between pre-commit and seed and restarted, and every sector still reaches finalized,
//! while the statelog SyncSectorState plugin journals every step.
//!
//! The calls follow the worker's sealing planner (`damocles-worker/src/sealing/sealing_thread/planner/sealer.rs`
//! at commit 4235a895; lines noted), with a `ReportState` for every transition as `common.rs:114` sends them.

mod common;

use std::time::Duration;

use common::daemon::{RunningDaemon, TestHome, raw_http};
use common::worker::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Sectors sealed at once.
const SECTORS: u64 = 12;
/// `[MockChain] SeedDelay`, seconds.
const SEED_DELAY: u64 = 3;

/// One sealing thread of a worker: its sector, talking to the manager at `port` as the worker's client does.
struct Thread {
    port: u16,
    name: String,
}

impl Thread {
    /// Calls `method` with `params` serialized as the worker's client does (a tuple of its argument types: a JSON
    /// array), and decodes the result into the worker's type.
    async fn call<T: DeserializeOwned>(&self, method: &str, params: impl Serialize) -> T {
        let params = serde_json::to_string(&params).unwrap();
        post_from(LOCAL, self.port, &call_body(method, &params)).await.result()
    }

    async fn call_err(&self, method: &str, params: impl Serialize) -> (i64, String) {
        let params = serde_json::to_string(&params).unwrap();
        post_from(LOCAL, self.port, &call_body(method, &params)).await.error()
    }

    /// `ReportState` of a transition (worker `planner/common/task.rs:111-143`).
    async fn report(&self, id: &SectorID, prev: &str, next: &str, event: &str) {
        let req = ReportStateReq {
            worker: WorkerIdentifier {
                instance: self.name.clone(),
                location: format!("/sealing/{}", id.number).into(),
            },
            state_change: SectorStateChange { prev: prev.into(), next: next.into(), event: event.into() },
            failure: None,
        };
        let state: SectorState = self.call("Venus.ReportState", (id, req)).await;
        assert!(!state.finalized, "{id:?} still in progress");
    }

    /// `WaitSeed` until the seed comes (`sealer.rs:416-440`): `ShouldWait` must come with a delay of at least 1.
    async fn wait_seed(&self, id: &SectorID, waits: &mut u32) -> Seed {
        for _ in 0..20 {
            let wait: WaitSeedResp = self.call("Venus.WaitSeed", (id, SealProof(8))).await;
            if let Some(seed) = wait.seed {
                return seed;
            }
            assert!(wait.should_wait && (1..=SEED_DELAY).contains(&wait.delay), "{wait:?}");
            *waits += 1;
            tokio::time::sleep(Duration::from_secs(wait.delay)).await;
        }
        panic!("{id:?}: no seed after 20 waits");
    }
}

/// What a sector's PC2 and C2 "computed": distinct per sector, so a mix-up between sectors shows.
fn comm(tag: u8, number: u64) -> [u8; 32] {
    let mut comm = [tag; 32];
    comm[..8].copy_from_slice(&number.to_be_bytes());
    comm
}

/// Phase one, before the crash: allocate, deals, ticket, pre-commit, persist, and the first `WaitSeed`.
async fn seal_until_seed(thread: Thread) -> (AllocatedSector, Ticket) {
    // `sealer.rs:183`: the worker's allowed miners and proof types.
    let spec = AllocateSectorSpec { allowed_miners: Some(vec![1000]), allowed_proof_types: Some(vec![SealProof(8)]) };
    let sector: Option<AllocatedSector> = thread.call("Venus.AllocateSector", (spec,)).await;
    let sector = sector.expect("the configured miner fits");
    let id = sector.id.clone();
    thread.report(&id, "Empty", "Allocated", "Allocate").await;
    // `sealer.rs:224`: no deal source: CC.
    let deals: Option<DealsV2> =
        thread.call("Venus.AcquireDeals", (&id, AcquireDealsSpec { max_deals: None, min_used_space: None })).await;
    assert!(deals.is_none(), "a CC sector");
    thread.report(&id, "Allocated", "DealsAcquired", "AcquireDealsV2").await;
    thread.report(&id, "DealsAcquired", "PieceAdded", "AddPiece").await;
    thread.report(&id, "PieceAdded", "TreeDBuilt", "BuildTreeD").await;
    // `common/sealing.rs:193`.
    let ticket: Ticket = thread.call("Venus.AssignTicket", (&id,)).await;
    thread.report(&id, "TreeDBuilt", "TicketAssigned", "AssignTicket").await;
    thread.report(&id, "TicketAssigned", "PC1Done", "PC1").await;
    thread.report(&id, "PC1Done", "PC2Done", "PC2").await;
    // `sealer.rs:287-338`.
    let info =
        PreCommitOnChainInfo { comm_r: comm(0xc1, id.number), comm_d: comm(0xd1, id.number), ticket: ticket.clone() };
    let submitted: SubmitPreCommitResp = thread.call("Venus.SubmitPreCommit", (&sector, &info, false)).await;
    assert_eq!(submitted.res, SubmitResult::Accepted, "{submitted:?}");
    thread.report(&id, "PC2Done", "PCSubmitted", "SubmitPC").await;
    // `sealer.rs:340-397`.
    let polled: PollPreCommitStateResp = thread.call("Venus.PollPreCommitState", (&id,)).await;
    assert_eq!(polled.state, OnChainState::Landed, "{polled:?}");
    thread.report(&id, "PCSubmitted", "PCLanded", "CheckPC").await;
    // `common/sealing.rs:569`, `:663`.
    let store: Option<StoreBasicInfo> =
        thread.call("Venus.StoreReserveSpace", (&id, 1u64 << 20, vec!["persist".to_string()])).await;
    assert_eq!(store.expect("room in persist").name, "persist");
    thread.report(&id, "PCLanded", "Persisted", "Persist").await;
    let persisted: bool = thread.call("Venus.SubmitPersistedEx", (&id, "persist", false)).await;
    assert!(persisted);
    thread.report(&id, "Persisted", "PersistanceSubmitted", "SubmitPersistance").await;
    // The seed is not ready yet: the worker is told to wait.
    let wait: WaitSeedResp = thread.call("Venus.WaitSeed", (&id, SealProof(8))).await;
    assert!(wait.should_wait && wait.seed.is_none() && (1..=SEED_DELAY).contains(&wait.delay), "{wait:?}");
    (sector, ticket)
}

/// Phase two, after the restart: the seed, the proof, finalized. Returns how often `WaitSeed` said "wait".
async fn seal_from_seed(thread: Thread, sector: AllocatedSector, ticket: Ticket) -> u32 {
    let id = sector.id.clone();
    // What the manager answered before the crash, it answers after it.
    let again: Ticket = thread.call("Venus.AssignTicket", (&id,)).await;
    assert_eq!(again, ticket, "{id:?}: the same ticket after a restart");
    let info = PreCommitOnChainInfo { comm_r: comm(0xc1, id.number), comm_d: comm(0xd1, id.number), ticket };
    let repeated: SubmitPreCommitResp = thread.call("Venus.SubmitPreCommit", (&sector, &info, false)).await;
    assert_eq!(repeated.res, SubmitResult::Accepted, "the same pre-commit again: {repeated:?}");
    let other = PreCommitOnChainInfo { comm_r: comm(0xee, id.number), ..info };
    let mismatched: SubmitPreCommitResp = thread.call("Venus.SubmitPreCommit", (&sector, &other, false)).await;
    assert_eq!(mismatched.res, SubmitResult::MismatchedSubmission, "{mismatched:?}");
    let polled: PollPreCommitStateResp = thread.call("Venus.PollPreCommitState", (&id,)).await;
    assert_eq!(polled.state, OnChainState::Landed);

    let mut waits = 0;
    let seed = thread.wait_seed(&id, &mut waits).await;
    assert!(seed.epoch > again.epoch, "the seed's epoch follows the ticket's");
    assert_eq!(thread.wait_seed(&id, &mut waits).await, seed, "the same seed on every call");
    thread.report(&id, "PersistanceSubmitted", "SeedAssigned", "AssignSeed").await;
    thread.report(&id, "SeedAssigned", "C1Done", "C1").await;
    thread.report(&id, "C1Done", "C2Done", "C2").await;
    // `sealer.rs:495-531`.
    let proof = ProofOnChainInfo { proof: B64Vec(comm(0x9f, id.number).repeat(6)) };
    let submitted: SubmitProofResp = thread.call("Venus.SubmitProof", (&id, &proof, false)).await;
    assert_eq!(submitted.res, SubmitResult::Accepted, "{submitted:?}");
    thread.report(&id, "C2Done", "ProofSubmitted", "SubmitProof").await;
    // `sealer.rs:533-605`.
    let polled: PollProofStateResp = thread.call("Venus.PollProofState", (&id,)).await;
    assert_eq!(polled.state, OnChainState::Landed, "{polled:?}");
    thread.report(&id, "ProofSubmitted", "Finished", "Finish").await;
    // `common/task.rs:145-160`.
    thread.call::<()>("Venus.ReportFinalized", (&id,)).await;
    // Finalized: the chain methods now answer 11001, as Go's (`sealer.go:39`).
    assert_eq!(thread.call_err("Venus.PollProofState", (&id,)).await.0, 11001);
    waits
}

fn thread_at(daemon: &RunningDaemon) -> Thread {
    Thread { port: daemon.port, name: "worker-0".into() }
}

/// A home sealing against the mock chain: statelog installed, loopback trusted, `SeedDelay` set.
fn mock_chain_home() -> TestHome {
    let home = TestHome::init();
    home.install_plugins(&["statelog"]);
    home.set_config("API.TrustedNetworks", toml::Value::Array(vec!["127.0.0.1/32".into()]));
    home.set_config("MockChain.Enabled", true);
    home.set_config("MockChain.SeedDelay", format!("{SEED_DELAY}s"));
    home
}

fn statelog(home: &TestHome) -> Vec<Value> {
    let text = std::fs::read_to_string(home.plugins_dir().join("statelog.jsonl")).unwrap_or_default();
    text.lines().map(|l| serde_json::from_str(l).expect("json line")).collect()
}

/// What statelog journaled for sector `number`, one step per event: `Init`, `Finalize`, or the update's kinds
/// (e.g. `Ticket+MockChain`, `LatestState:PC1Done`); a repeated event (at-least-once delivery after the crash)
/// counts once.
fn journaled_steps(events: &[Value], number: u64) -> Vec<String> {
    let mut steps: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for event in events.iter().filter(|e| e["sectors"].as_array().unwrap().iter().any(|s| s["Number"] == number)) {
        if !seen.insert(event.to_string()) {
            continue;
        }
        let step = match event["event"].as_str().unwrap() {
            "OnInit" => "Init".to_string(),
            "OnFinalize" => "Finalize".to_string(),
            "OnUpdate" => {
                let state = &event["data"]["State"];
                assert!(state.get("Deals").is_some() && state.get("TerminateInfo").is_some(), "Go-shaped: {state}");
                let kinds: Vec<String> = event["data"]["Updates"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|u| {
                        let (kind, value) = u.as_object().unwrap().iter().next().unwrap();
                        match kind.as_str() {
                            "LatestState" => format!("LatestState:{}", value["StateChange"]["Next"].as_str().unwrap()),
                            other => other.to_string(),
                        }
                    })
                    .collect();
                kinds.join("+")
            }
            other => panic!("unexpected {other}"),
        };
        steps.push(step);
    }
    steps
}

fn expected_steps() -> Vec<String> {
    let reported = |next: &str| format!("LatestState:{next}");
    let mut steps = vec!["Init".to_string()];
    steps.extend(["Allocated", "DealsAcquired", "PieceAdded", "TreeDBuilt"].map(reported));
    steps.push("Ticket+MockChain".into());
    steps.extend(["TicketAssigned", "PC1Done", "PC2Done"].map(reported));
    steps.push("Pre+MockChain".into());
    steps.extend(["PCSubmitted", "PCLanded", "Persisted", "PersistanceSubmitted"].map(reported));
    steps.push("Seed".into());
    steps.extend(["SeedAssigned", "C1Done", "C2Done"].map(reported));
    steps.push("Proof".into());
    steps.extend(["ProofSubmitted", "Finished"].map(reported));
    steps.push("Finalize".into());
    steps
}

async fn find(daemon: &RunningDaemon, ws: &str, number: u64) -> Value {
    daemon.call("Venus.FindSector", jsonrpsee::rpc_params![ws, json!({"Miner": 1000, "Number": number})]).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_workers_cc_flow_survives_a_kill_between_pre_commit_and_seed() {
    cc_flow_through_a_kill(mock_chain_home()).await;
}

/// The same on Redis (the shared server, a prefix of this test's own): the chain's answers are written in the
/// sector's Redis transaction.
#[tokio::test(flavor = "multi_thread")]
async fn the_workers_cc_flow_survives_a_kill_on_redis() {
    let home = mock_chain_home();
    home.set_config("Common.DB.Driver", "redis");
    home.set_config("Common.DB.Redis.Addr", "redis://127.0.0.1:6379");
    home.set_config("Common.DB.Redis.Prefix", format!("damocles-mock-chain-{}-{}", std::process::id(), home.port));
    cc_flow_through_a_kill(home).await;
}

/// Seals [`SECTORS`] sectors at once through a SIGKILL between pre-commit and seed; checks the stored states and
/// statelog's journal.
async fn cc_flow_through_a_kill(home: TestHome) {
    let daemon = home.start();
    let log = daemon.log();
    assert!(log.contains("MOCK CHAIN") && log.contains("chain=\"mock\""), "loud at start-up:\n{log}");
    let version: String = daemon.call("Venus.Version", jsonrpsee::rpc_params![]).await.unwrap();
    assert!(version.ends_with("+mock-chain"), "{version}");
    let metrics = raw_http(daemon.port, "GET", "/metrics", Some(&daemon.token), b"").unwrap();
    assert!(String::from_utf8_lossy(&metrics.body).contains("damocles_chain_mode{mode=\"mock\"} 1"));

    // Phase one, all sectors at once.
    let threads = (0..SECTORS).map(|i| Thread { port: daemon.port, name: format!("worker-{i}") });
    let tasks: Vec<_> = threads.map(|thread| tokio::spawn(seal_until_seed(thread))).collect();
    let mut sealing = Vec::new();
    for task in tasks {
        sealing.push(task.await.expect("phase one"));
    }
    for (sector, _) in &sealing {
        let state = find(&daemon, "online", sector.id.number).await;
        assert!(state["Pre"]["CommR"]["/"].as_str().unwrap().starts_with("bagboea4b5abc"), "{state}");
        assert!(state.get("Seed").is_none() && state["MockChain"]["PreCommitEpoch"].as_i64().unwrap() > 0, "{state}");
    }
    // The crash: between pre-commit and seed.
    daemon.kill();

    let daemon = home.start();
    let tasks: Vec<_> = sealing
        .into_iter()
        .enumerate()
        .map(|(i, (sector, ticket))| {
            let thread = Thread { port: daemon.port, name: format!("worker-{i}") };
            tokio::spawn(seal_from_seed(thread, sector, ticket))
        })
        .collect();
    let mut waits = 0;
    for task in tasks {
        waits += task.await.expect("phase two");
    }
    assert!(waits > 0, "some sector was told to wait for its seed after the restart");

    // Every sector is finalized with what the mock put on chain, marked as mock-sealed.
    let offline: Vec<Value> = daemon.call("Venus.ListSectors", jsonrpsee::rpc_params!["offline", 0]).await.unwrap();
    assert_eq!(offline.len() as u64, SECTORS);
    for state in &offline {
        assert_eq!(state["Finalized"], true);
        for key in ["Ticket", "Seed", "Pre", "Proof", "MockChain"] {
            assert!(state.get(key).is_some_and(|v| !v.is_null()), "{key} in {state}");
        }
        assert_eq!((&state["Deals"], &state["Pieces"]), (&Value::Null, &Value::Null), "CC, as Go writes it");
    }
    // statelog journaled every step of every sector, in order.
    let expected = expected_steps();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let events = statelog(&home);
        let done = offline.iter().all(|s| journaled_steps(&events, s["ID"]["Number"].as_u64().unwrap()) == expected);
        if done {
            break;
        }
        if std::time::Instant::now() > deadline {
            let first = offline[0]["ID"]["Number"].as_u64().unwrap();
            panic!("statelog misses steps: {:#?}\nexpected {expected:#?}", journaled_steps(&events, first));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(daemon.stop(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_mock_chain_refuses_out_of_order_calls_as_go_does() {
    let home = mock_chain_home();
    // `daemon run --mock-chain` turns it on without the config.
    home.set_config("MockChain.Enabled", false);
    let daemon = home.start_with(&["--mock-chain"]);
    let thread = Thread { port: daemon.port, name: "worker-0".into() };
    let spec = AllocateSectorSpec { allowed_miners: None, allowed_proof_types: None };
    let sector: AllocatedSector =
        thread.call::<Option<AllocatedSector>>("Venus.AllocateSector", (spec,)).await.unwrap();
    let id = sector.id.clone();
    // No pre-commit yet: `PollPreCommitState` is Failed (never NotFound), `WaitSeed` a temporary error naming the
    // missing pre-commit, a proof is Rejected.
    let polled: PollPreCommitStateResp = thread.call("Venus.PollPreCommitState", (&id,)).await;
    assert_eq!(polled.state, OnChainState::Failed);
    let (code, message) = thread.call_err("Venus.WaitSeed", (&id, SealProof(8))).await;
    assert!(code != 11001 && message.contains("SubmitPreCommit"), "{code}: {message}");
    let proof = ProofOnChainInfo { proof: B64Vec(vec![1; 192]) };
    let rejected: SubmitProofResp = thread.call("Venus.SubmitProof", (&id, &proof, false)).await;
    assert_eq!(rejected.res, SubmitResult::Rejected);
    let polled: PollProofStateResp = thread.call("Venus.PollProofState", (&id,)).await;
    assert_eq!(polled.state, OnChainState::Failed);
    // NonInteractivePoRep (`planner/niporep.rs:244`) needs no pre-commit.
    let ni: WaitSeedResp = thread.call("Venus.WaitSeed", (&id, SealProof(18))).await;
    assert!(ni.seed.is_some(), "{ni:?}");
    // A reset replaces a different pre-commit.
    let ticket: Ticket = thread.call("Venus.AssignTicket", (&id,)).await;
    let info = PreCommitOnChainInfo { comm_r: comm(1, id.number), comm_d: comm(2, id.number), ticket: ticket.clone() };
    let _: SubmitPreCommitResp = thread.call("Venus.SubmitPreCommit", (&sector, &info, false)).await;
    let first = find(&daemon, "online", id.number).await["Pre"]["CommR"]["/"].as_str().unwrap().to_owned();
    let other = PreCommitOnChainInfo { comm_r: comm(3, id.number), comm_d: comm(2, id.number), ticket };
    let reset: SubmitPreCommitResp = thread.call("Venus.SubmitPreCommit", (&sector, &other, true)).await;
    assert_eq!(reset.res, SubmitResult::Accepted);
    let replaced = find(&daemon, "online", id.number).await["Pre"]["CommR"]["/"].as_str().unwrap().to_owned();
    assert!(first.starts_with("bagboea4b5abc") && replaced.starts_with("bagboea4b5abc"), "kept as CIDs");
    assert_ne!(first, replaced, "replaced by the reset");
    // Unknown sectors are 11001, as Go.
    let ghost = SectorID { miner: 1000, number: 987_654 };
    for method in ["Venus.AssignTicket", "Venus.PollPreCommitState", "Venus.PollProofState"] {
        assert_eq!(thread.call_err(method, (&ghost,)).await.0, 11001, "{method}");
    }
    // The persisted instance is recorded where lookups find it, across a restart; an unknown store is false.
    let unknown: bool = thread.call("Venus.SubmitPersistedEx", (&id, "nowhere", false)).await;
    assert!(!unknown);
    let _: bool = thread.call("Venus.SubmitPersistedEx", (&id, "persist", false)).await;
    assert_eq!(daemon.stop(), Some(0));
    let daemon = home.start();
    // Without --mock-chain (and with Enabled = false) the chain methods answer 12001 again.
    assert_eq!(thread_at(&daemon).call_err("Venus.AssignTicket", (&id,)).await.0, 12001);
    let found: Value = daemon
        .call("Venus.SectorIndexerFind", jsonrpsee::rpc_params!["normal", json!({"Miner": 1000, "Number": id.number})])
        .await
        .unwrap();
    assert_eq!(found, json!({"Found": true, "Instance": {"SealedFile": "persist", "CacheDir": "persist"}}));
    assert_eq!(daemon.stop(), Some(0));
}
