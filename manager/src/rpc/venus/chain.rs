//! The chain-facing sealing methods of damocles-worker's trait (`rpc/sealer/mod.rs:493-552`): `AssignTicket`,
//! `SubmitPreCommit`, `PollPreCommitState`, `WaitSeed`, `SubmitProof`, `PollProofState`, answered by the
//! configured [`Chain`](crate::chain::Chain); plus `AcquireDeals`, `SubmitPersisted(Ex)` and
//! `SectorIndexerFind`, which need no chain. A chain decision and the sector changes it needs are written in the
//! sector's own transaction (`StateManager::update_with`), and reach SyncSectorState plugins as one update.
//!
//! Without a chain (`[MockChain]` off) the chain methods answer [`CHAIN_UNAVAILABLE`]. An unknown or finalized
//! sector is 11001, as in Go (`modules/sealer/sealer.go:39`, `sectorStateErr`).

use jsonrpsee::RpcModule;
use jsonrpsee::core::RegisterMethodError;
use jsonrpsee::types::ErrorObjectOwned;
use manager_plugin::sector::{AllocatedSector, Bytes, ProofInfo, SectorId, SectorState, Seed, Ticket, WorkerState};
use serde::{Deserialize, Serialize};

use super::super::AppState;
use super::super::params::{INVALID_PARAMS, SECTOR_NOT_FOUND, SERVER_ERROR, error};
use super::{add, sector_error};
use crate::chain::commitment::{Commitment, to_cid};
use crate::chain::{ChainError, ChainMode, Decision, OnChainState, Polled, SeedAnswer, SubmitResult, Submitted};
use crate::sectors::{IndexKind, SectorLocation};

/// The error code of a chain-facing method when no chain is configured (`[MockChain]` off). Not -32001, which
/// jsonrpsee uses for any unknown error; like every code but 11001, the worker treats it as temporary.
pub const CHAIN_UNAVAILABLE: i32 = 12001;

/// The methods answered by the chain (the mock, or [`CHAIN_UNAVAILABLE`]).
pub const CHAIN_METHODS: [&str; 6] = [
    "Venus.AssignTicket",
    "Venus.SubmitPreCommit",
    "Venus.PollPreCommitState",
    "Venus.WaitSeed",
    "Venus.SubmitProof",
    "Venus.PollProofState",
];

/// The message of [`CHAIN_UNAVAILABLE`].
pub fn chain_unavailable_message(method: &str) -> String {
    format!(
        "{method}: no chain is connected to this manager (damocles-rs has no Filecoin node client yet); for a test \
         cluster set [MockChain] Enabled = true in sector-manager.cfg or run `damocles-manager daemon run \
         --mock-chain` — nothing sealed against the mock can go on chain"
    )
}

/// Worker `PreCommitOnChainInfo` (`rpc/sealer/mod.rs:210`): commitments as 32 numbers.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PreCommitOnChainInfo {
    comm_r: [u8; 32],
    comm_d: [u8; 32],
    ticket: Ticket,
}

/// Go `SubmitPreCommitResp` / `SubmitProofResp` (`core/types.go:285`, `:306`).
#[derive(Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
struct SubmitResp {
    res: SubmitResult,
    desc: Option<String>,
}

/// Go `PollPreCommitStateResp` / `PollProofStateResp` (`core/types.go:290`, `:311`).
#[derive(Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
struct PollResp {
    state: OnChainState,
    desc: Option<String>,
}

/// Go `WaitSeedResp` (`core/types.go:295`).
#[derive(Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
struct WaitSeedResp {
    should_wait: bool,
    delay: u64,
    seed: Option<Seed>,
}

/// Go `SectorIndexLocation` (`core/types.go:474`).
#[derive(Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
struct IndexLocation {
    found: bool,
    instance: SectorLocation,
}

impl From<Submitted> for SubmitResp {
    fn from(s: Submitted) -> Self {
        SubmitResp { res: s.res, desc: s.desc }
    }
}

impl From<Polled> for PollResp {
    fn from(p: Polled) -> Self {
        PollResp { state: p.state, desc: p.desc }
    }
}

fn chain_error(method: &str, err: ChainError) -> ErrorObjectOwned {
    match err {
        ChainError::Unavailable => error(CHAIN_UNAVAILABLE, chain_unavailable_message(method)),
        ChainError::NotYet(message) => error(SERVER_ERROR, format!("{method}: {message}")),
    }
}

/// Refuses at once without a chain, so the answer does not depend on the sector.
fn require_chain(state: &AppState, method: &str) -> Result<(), ErrorObjectOwned> {
    match state.chain.mode() {
        ChainMode::None => Err(chain_error(method, ChainError::Unavailable)),
        ChainMode::Mock => Ok(()),
    }
}

/// Runs a chain decision on online sector `sid` in the sector's transaction and answers it.
fn decide<T>(
    state: &AppState,
    method: &str,
    sid: SectorId,
    mut f: impl FnMut(&SectorState) -> Result<Decision<T>, ChainError>,
) -> Result<T, ErrorObjectOwned> {
    require_chain(state, method)?;
    let decided = state.sectors.update_with(sid, |sector| f(sector).map(|d| (d.answer, d.updates)));
    match decided.map_err(sector_error)? {
        Ok((answer, _)) => Ok(answer),
        Err(err) => Err(chain_error(method, err)),
    }
}

/// Reads online sector `sid` and asks the chain about it (nothing is written).
fn poll(
    state: &AppState,
    method: &str,
    sid: SectorId,
    f: impl FnOnce(&SectorState) -> Result<Polled, ChainError>,
) -> Result<PollResp, ErrorObjectOwned> {
    require_chain(state, method)?;
    let sector = online(state, method, sid)?;
    f(&sector).map(PollResp::from).map_err(|err| chain_error(method, err))
}

fn online(state: &AppState, method: &str, sid: SectorId) -> Result<SectorState, ErrorObjectOwned> {
    state.sectors.find(WorkerState::Online, sid).map_err(sector_error)?.ok_or_else(|| {
        error(SECTOR_NOT_FOUND, format!("{method}: sector {sid} not found online (unknown, or already finalized)"))
    })
}

/// Registers the chain-facing methods.
pub fn register(module: &mut RpcModule<AppState>) -> Result<(), RegisterMethodError> {
    add(module, "Venus.AssignTicket", |state, mut args| {
        let sid: SectorId = args.next("id")?;
        args.finish()?;
        decide(state, "Venus.AssignTicket", sid, |sector| state.chain.assign_ticket(sector))
    })?;
    // Go `modules/sealer/sealer.go:276`: the commitments become CIDs (`IntoPreCommitInfo`), then the commit
    // manager's rules (`commitmgr.go:478-548`).
    add(module, "Venus.SubmitPreCommit", |state, mut args| {
        let sector: AllocatedSector = args.next("sector")?;
        let info: PreCommitOnChainInfo = args.next("info")?;
        let reset: bool = args.next("reset")?;
        args.finish()?;
        let pre = manager_plugin::sector::PreCommitInfo {
            comm_r: to_cid(Commitment::Replica, &info.comm_r),
            comm_d: to_cid(Commitment::Data, &info.comm_d),
            ticket: info.ticket,
        };
        decide(state, "Venus.SubmitPreCommit", sector.id, |s| state.chain.submit_pre_commit(s, pre.clone(), reset))
            .map(SubmitResp::from)
    })?;
    add(module, "Venus.PollPreCommitState", |state, mut args| {
        let sid: SectorId = args.next("id")?;
        args.finish()?;
        poll(state, "Venus.PollPreCommitState", sid, |sector| state.chain.pre_commit_state(sector))
    })?;
    add(module, "Venus.WaitSeed", |state, mut args| {
        let sid: SectorId = args.next("id")?;
        let proof_type: i64 = args.next("proof_type")?;
        args.finish()?;
        let answer = decide(state, "Venus.WaitSeed", sid, |sector| state.chain.wait_seed(sector, proof_type))?;
        Ok(match answer {
            SeedAnswer::Wait(delay) => WaitSeedResp { should_wait: true, delay, seed: None },
            SeedAnswer::Ready(seed) => WaitSeedResp { should_wait: false, delay: 0, seed: Some(seed) },
        })
    })?;
    add(module, "Venus.SubmitProof", |state, mut args| {
        let sid: SectorId = args.next("id")?;
        let proof: ProofOnChainInfo = args.next("proof")?;
        let reset: bool = args.next("reset")?;
        args.finish()?;
        let proof = ProofInfo { proof: proof.proof };
        decide(state, "Venus.SubmitProof", sid, |sector| state.chain.submit_proof(sector, proof.clone(), reset))
            .map(SubmitResp::from)
    })?;
    add(module, "Venus.PollProofState", |state, mut args| {
        let sid: SectorId = args.next("id")?;
        args.finish()?;
        poll(state, "Venus.PollProofState", sid, |sector| state.chain.proof_state(sector))
    })?;
    register_without_chain(module)
}

/// Worker `ProofOnChainInfo` (`rpc/sealer/mod.rs:224`).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ProofOnChainInfo {
    proof: Bytes,
}

/// The methods of the sealing flow that need no chain.
fn register_without_chain(module: &mut RpcModule<AppState>) -> Result<(), RegisterMethodError> {
    // The deal seam: damocles-rs has no deal source (market) yet, so every sector is CC and the answer is `null`
    // (worker `sealer.rs:224-245` then seals CC unless `disable_cc`). A deal source answers here, as Go's
    // `DealManager.Acquire` (`modules/impl/mock/sealer.go`, `AcquireDeals`) does.
    add(module, "Venus.AcquireDeals", |state, mut args| {
        let sid: SectorId = args.next("id")?;
        let _spec: Option<serde_json::Value> = args.next("spec")?;
        args.finish()?;
        online(state, "Venus.AcquireDeals", sid)?;
        Ok(None::<Vec<manager_plugin::sector::SectorPiece>>)
    })?;
    // Go `modules/sealer/sealer.go:303-339`: `true` once the instance is a configured persist store, recorded in
    // the sector indexer; `false` for any other instance (the worker then stops: permanent).
    add(module, "Venus.SubmitPersistedEx", |state, mut args| {
        let sid: SectorId = args.next("id")?;
        let instance: String = args.next("instance")?;
        let is_upgrade: bool = args.next("is_upgrade")?;
        args.finish()?;
        submit_persisted(state, sid, instance, is_upgrade)
    })?;
    // Go's legacy form (`core/api.go:50`), not in the worker's trait any more.
    add(module, "Venus.SubmitPersisted", |state, mut args| {
        let sid: SectorId = args.next("id")?;
        let instance: String = args.next("instance")?;
        args.finish()?;
        submit_persisted(state, sid, instance, false)
    })?;
    // Go `modules/sealer/sealer_cli.go` `SectorIndexerFind`: where a sector's files are.
    add(module, "Venus.SectorIndexerFind", |state, mut args| {
        let kind: String = args.next("indexType")?;
        let sid: SectorId = args.next("sid")?;
        args.finish()?;
        let kind = match kind.as_str() {
            "normal" => IndexKind::Normal,
            "upgrade" => IndexKind::Upgrade,
            other => {
                return Err(error(INVALID_PARAMS, format!("invalid `indexType` {other:?}: use normal or upgrade")));
            }
        };
        let found = state.sectors.find_location(sid, kind).map_err(sector_error)?;
        let empty = SectorLocation { sealed_file: String::new(), cache_dir: String::new() };
        Ok(IndexLocation { found: found.is_some(), instance: found.unwrap_or(empty) })
    })
}

fn submit_persisted(
    state: &AppState,
    sid: SectorId,
    instance: String,
    upgrade: bool,
) -> Result<bool, ErrorObjectOwned> {
    online(state, "Venus.SubmitPersistedEx", sid)?;
    if state.stores.basic_info(&instance).is_none() {
        tracing::warn!(sector = %sid, %instance, "SubmitPersisted: not a configured persist store; answering false");
        return Ok(false);
    }
    let kind = if upgrade { IndexKind::Upgrade } else { IndexKind::Normal };
    let location = SectorLocation { sealed_file: instance.clone(), cache_dir: instance };
    state.sectors.record_location(sid, kind, &location).map_err(sector_error)?;
    Ok(true)
}
