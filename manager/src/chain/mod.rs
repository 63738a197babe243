//! The chain as the sealing RPCs see it: the head epoch, ticket and seed randomness, pre-commit and proof
//! submission and their on-chain state. The `Venus.*` sealing methods (`rpc::venus::chain`) only ever talk to a
//! [`Chain`], chosen at start-up from the config ([`from_config`]): the [`mock::MockChain`] with
//! `[MockChain] Enabled = true` (or `daemon run --mock-chain`), otherwise [`Disconnected`], which refuses every
//! call. A real chain client is another implementation of the trait; the RPCs do not change.
//!
//! Every method is a decision on the sector's current state: it answers, and says which [`SectorUpdate`]s the
//! answer needs stored. The caller runs it inside the sector's own transaction (`StateManager::update_with`), so
//! the answer and the stored change commit together or not at all: a manager killed at any moment answers the
//! same after a restart.

pub mod commitment;
pub mod mock;

use manager_plugin::sector::{PreCommitInfo, ProofInfo, SectorState, SectorUpdate, Seed, Ticket};

use crate::config::MockChainConfig;

/// Which chain the daemon talks to: logged at start-up, part of `Venus.Version`'s answer and of `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainMode {
    /// No chain: chain-facing methods answer [`CHAIN_UNAVAILABLE`](crate::rpc::venus::chain::CHAIN_UNAVAILABLE).
    None,
    /// The mock chain: nothing sealed can go on a real chain.
    Mock,
}

impl ChainMode {
    /// `none` or `mock`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChainMode::None => "none",
            ChainMode::Mock => "mock",
        }
    }
}

/// Go's `core.SubmitResult` (`core/types.go:228`), an integer ≥ 1 on the wire (the worker's `serde_repr`
/// enum, `rpc/sealer/mod.rs:165`, has no 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum SubmitResult {
    /// Accepted.
    Accepted = 1,
    /// The same submission again.
    DuplicateSubmit = 2,
    /// A different submission for the same sector (the worker pauses: permanent).
    MismatchedSubmission = 3,
    /// Refused (the worker aborts the sector).
    Rejected = 4,
    /// Files are missing.
    FilesMissed = 5,
}

/// Go's `core.OnChainState` (`core/types.go:242`), an integer ≥ 1 on the wire (worker `rpc/sealer/mod.rs:184`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum OnChainState {
    /// Waiting to be sent or aggregated.
    Pending = 1,
    /// In a message.
    Packed = 2,
    /// On chain.
    Landed = 3,
    /// Unknown to the chain (the worker treats it as permanent).
    NotFound = 4,
    /// Failed; the worker submits again.
    Failed = 5,
    /// Failed for good.
    PermFailed = 6,
    /// Will never get on chain.
    ShouldAbort = 7,
}

/// Both enums are written as their integer, as the worker's `serde_repr` reads them.
macro_rules! serialize_as_integer {
    ($($ty:ty),*) => {$(
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_u64(*self as u64)
            }
        }
    )*};
}

serialize_as_integer!(SubmitResult, OnChainState);

/// The answer to a submission: Go's `SubmitPreCommitResp` / `SubmitProofResp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// The result.
    pub res: SubmitResult,
    /// Why, for anything but `Accepted`.
    pub desc: Option<String>,
}

/// The answer to a poll: Go's `PollPreCommitStateResp` / `PollProofStateResp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Polled {
    /// The state.
    pub state: OnChainState,
    /// Why, for a failure.
    pub desc: Option<String>,
}

/// The answer to `WaitSeed`: the seed, or how long to wait for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeedAnswer {
    /// Ask again in this many seconds (≥ 1: the worker refuses `ShouldWait` with `Delay` 0, `sealer.rs:429`).
    Wait(u64),
    /// The seed.
    Ready(Seed),
}

/// An answer and the changes it needs stored with it, in the sector's transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<T> {
    /// What the caller answers.
    pub answer: T,
    /// What must be stored for the answer to hold after a restart; empty when nothing changes.
    pub updates: Vec<SectorUpdate>,
}

impl<T> Decision<T> {
    /// An answer that changes nothing.
    pub fn unchanged(answer: T) -> Decision<T> {
        Decision { answer, updates: Vec::new() }
    }
}

/// Why the chain could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// No chain is configured.
    #[error("no chain is connected to this manager (damocles-rs); for a test cluster set [MockChain] Enabled = true")]
    Unavailable,
    /// The sector's state does not allow the call yet; the worker retries (a temporary error).
    #[error("{0}")]
    NotYet(String),
}

/// The chain the sealing methods use. Each method gets the sector's current state and decides; it must not block
/// on anything but itself (it runs inside the sector's transaction, which a conflict may run again).
pub trait Chain: Send + Sync {
    /// Which chain this is.
    fn mode(&self) -> ChainMode;

    /// The current head epoch.
    fn head(&self) -> Result<i64, ChainError>;

    /// `AssignTicket`: the sector's ticket, the same on every call.
    fn assign_ticket(&self, sector: &SectorState) -> Result<Decision<Ticket>, ChainError>;

    /// `SubmitPreCommit`: `info` submitted for `sector`; `reset` replaces a different earlier submission.
    fn submit_pre_commit(
        &self,
        sector: &SectorState,
        info: PreCommitInfo,
        reset: bool,
    ) -> Result<Decision<Submitted>, ChainError>;

    /// `PollPreCommitState`.
    fn pre_commit_state(&self, sector: &SectorState) -> Result<Polled, ChainError>;

    /// `WaitSeed` for seal proof `proof_type`.
    fn wait_seed(&self, sector: &SectorState, proof_type: i64) -> Result<Decision<SeedAnswer>, ChainError>;

    /// `SubmitProof`.
    fn submit_proof(
        &self,
        sector: &SectorState,
        proof: ProofInfo,
        reset: bool,
    ) -> Result<Decision<Submitted>, ChainError>;

    /// `PollProofState`.
    fn proof_state(&self, sector: &SectorState) -> Result<Polled, ChainError>;
}

/// No chain: every call is [`ChainError::Unavailable`].
#[derive(Debug, Default)]
pub struct Disconnected;

impl Chain for Disconnected {
    fn mode(&self) -> ChainMode {
        ChainMode::None
    }

    fn head(&self) -> Result<i64, ChainError> {
        Err(ChainError::Unavailable)
    }

    fn assign_ticket(&self, _: &SectorState) -> Result<Decision<Ticket>, ChainError> {
        Err(ChainError::Unavailable)
    }

    fn submit_pre_commit(&self, _: &SectorState, _: PreCommitInfo, _: bool) -> Result<Decision<Submitted>, ChainError> {
        Err(ChainError::Unavailable)
    }

    fn pre_commit_state(&self, _: &SectorState) -> Result<Polled, ChainError> {
        Err(ChainError::Unavailable)
    }

    fn wait_seed(&self, _: &SectorState, _: i64) -> Result<Decision<SeedAnswer>, ChainError> {
        Err(ChainError::Unavailable)
    }

    fn submit_proof(&self, _: &SectorState, _: ProofInfo, _: bool) -> Result<Decision<Submitted>, ChainError> {
        Err(ChainError::Unavailable)
    }

    fn proof_state(&self, _: &SectorState) -> Result<Polled, ChainError> {
        Err(ChainError::Unavailable)
    }
}

/// The chain `[MockChain]` selects: the mock when enabled, otherwise none.
pub fn from_config(config: &MockChainConfig) -> std::sync::Arc<dyn Chain> {
    if config.enabled {
        std::sync::Arc::new(mock::MockChain::new(config.seed_delay.0, Box::new(mock::system_clock)))
    } else {
        std::sync::Arc::new(Disconnected)
    }
}
