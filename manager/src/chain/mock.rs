//! The mock chain (`[MockChain]`): a deterministic stand-in for a Filecoin chain, for running a worker cluster,
//! a store or a plugin end to end without one. What it fakes, and why nothing sealed against it can go on chain,
//! is in `docs/sealing.md`.
//!
//! Everything it "puts on chain" lives in the sector's own state (`Ticket`, `Pre`, `Seed`, `Proof` and the
//! `MockChain` record), written in the sector's transaction, so a restart changes no answer:
//! - the head epoch is the wall clock: `(unix seconds − 1598306400) / 30`, mainnet's genesis and block time;
//! - the ticket and the seed are SHA-256 over a domain tag, the miner, the number (and the seed's epoch);
//!   the ticket is drawn at `head − 900` (Go's `SealRandomnessLookback`), the seed at the pre-commit's epoch
//!   `+ 150` (Go's `PreCommitChallengeDelay`), or `head − 1` for NonInteractivePoRep, as Go
//!   (`modules/sealer/sealer.go:340-394`);
//! - a pre-commit or proof lands as it is submitted; `SeedDelay` is how long after the pre-commit landed the
//!   seed is ready.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use manager_plugin::sector::{
    Bytes, MockChainRecord, PreCommitInfo, ProofInfo, SectorState, SectorUpdate, Seed, Ticket,
};
use sha2::{Digest as _, Sha256};

use super::{Chain, ChainError, ChainMode, Decision, OnChainState, Polled, SeedAnswer, SubmitResult, Submitted};
use crate::config::is_non_interactive;

/// Filecoin mainnet's genesis, Unix seconds: epoch 0 of the mock head.
pub const GENESIS_UNIX_SECS: u64 = 1_598_306_400;
/// Seconds per epoch (mainnet's block time).
pub const EPOCH_SECS: u64 = 30;
/// How far behind the head a ticket is drawn (Go `policy.SealRandomnessLookback`).
pub const SEAL_RANDOMNESS_LOOKBACK: i64 = 900;
/// Epochs from a pre-commit to its seed (Go `policy.GetPreCommitChallengeDelay()`).
pub const PRE_COMMIT_CHALLENGE_DELAY: i64 = 150;

/// Unix time in milliseconds.
pub type Clock = Box<dyn Fn() -> u64 + Send + Sync>;

/// The system clock, Unix milliseconds.
pub fn system_clock() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The mock chain; see the module doc.
pub struct MockChain {
    seed_delay: Duration,
    clock: Clock,
}

impl MockChain {
    /// A mock chain whose seeds are ready `seed_delay` after their pre-commit landed, reading time from `clock`.
    pub fn new(seed_delay: Duration, clock: Clock) -> MockChain {
        MockChain { seed_delay, clock }
    }

    fn head_at(now_ms: u64) -> i64 {
        ((now_ms / 1000).saturating_sub(GENESIS_UNIX_SECS) / EPOCH_SECS) as i64
    }
}

/// 32 bytes of randomness for `tag` and the sector (and `epoch`, for seeds).
fn randomness(tag: &str, sector: &SectorState, epoch: Option<i64>) -> Bytes {
    let mut hash = Sha256::new();
    hash.update(b"damocles-rs/mock-chain/");
    hash.update(tag.as_bytes());
    hash.update([0]);
    hash.update(sector.id.miner.to_be_bytes());
    hash.update(sector.id.number.to_be_bytes());
    if let Some(epoch) = epoch {
        hash.update(epoch.to_be_bytes());
    }
    Bytes(hash.finalize().to_vec())
}

/// The sector's mock record; a fresh one when the mock never handled it (storing it marks the sector).
fn record_of(sector: &SectorState) -> MockChainRecord {
    sector.mock_chain.clone().unwrap_or_default()
}

/// Go `commitmgr.go:498-510` and `:626-634`: a submission after an earlier one, without `reset`, is answered and
/// changes nothing: `Accepted` when it is the same, `MismatchedSubmission` when it differs. `None`: store it.
fn resubmitted<T: PartialEq>(stored: Option<&T>, new: &T, reset: bool, what: &str) -> Option<Decision<Submitted>> {
    let stored = stored.filter(|_| !reset)?;
    let answer = if stored == new {
        Submitted { res: SubmitResult::Accepted, desc: None }
    } else {
        let desc =
            format!("a different {what} was submitted for this sector before; submit with reset = true to replace it");
        Submitted { res: SubmitResult::MismatchedSubmission, desc: Some(desc) }
    };
    Some(Decision::unchanged(answer))
}

impl Chain for MockChain {
    fn mode(&self) -> ChainMode {
        ChainMode::Mock
    }

    fn head(&self) -> Result<i64, ChainError> {
        Ok(Self::head_at((self.clock)()))
    }

    fn assign_ticket(&self, sector: &SectorState) -> Result<Decision<Ticket>, ChainError> {
        if let Some(ticket) = &sector.ticket {
            return Ok(Decision::unchanged(ticket.clone()));
        }
        let epoch = (self.head()? - SEAL_RANDOMNESS_LOOKBACK).max(0);
        let ticket = Ticket { ticket: randomness("ticket", sector, None), epoch };
        let updates = vec![SectorUpdate::Ticket(ticket.clone()), SectorUpdate::MockChain(record_of(sector))];
        Ok(Decision { answer: ticket, updates })
    }

    fn submit_pre_commit(
        &self,
        sector: &SectorState,
        info: PreCommitInfo,
        reset: bool,
    ) -> Result<Decision<Submitted>, ChainError> {
        if let Some(answer) = resubmitted(sector.pre.as_ref(), &info, reset, "pre-commit") {
            return Ok(answer);
        }
        let now = (self.clock)();
        let record = MockChainRecord { pre_commit_epoch: Self::head_at(now), pre_commit_at_ms: now };
        let updates = vec![SectorUpdate::Pre(info), SectorUpdate::MockChain(record)];
        Ok(Decision { answer: Submitted { res: SubmitResult::Accepted, desc: None }, updates })
    }

    fn pre_commit_state(&self, sector: &SectorState) -> Result<Polled, ChainError> {
        Ok(match sector.pre {
            Some(_) => Polled { state: OnChainState::Landed, desc: None },
            // Go `commitmgr.go:565-571`: nothing to send and no message: failed, the worker submits again.
            None => Polled {
                state: OnChainState::Failed,
                desc: Some("no pre-commit was submitted for this sector (Venus.SubmitPreCommit)".to_string()),
            },
        })
    }

    fn wait_seed(&self, sector: &SectorState, proof_type: i64) -> Result<Decision<SeedAnswer>, ChainError> {
        let now = (self.clock)();
        let epoch = if is_non_interactive(proof_type) {
            if let Some(seed) = &sector.seed {
                return Ok(Decision::unchanged(SeedAnswer::Ready(seed.clone())));
            }
            Self::head_at(now) - 1
        } else {
            if sector.pre.is_none() {
                return Err(ChainError::NotYet(format!(
                    "sector {} has no pre-commit on the mock chain: submit it first (Venus.SubmitPreCommit); \
                     only NonInteractivePoRep seal proofs (15-19) need none",
                    sector.id
                )));
            }
            // A pre-commit stored without the mock (an imported state) counts as landed long ago.
            let record = sector.mock_chain.clone().unwrap_or(MockChainRecord {
                pre_commit_epoch: sector.pre.as_ref().map_or(0, |p| p.ticket.epoch + SEAL_RANDOMNESS_LOOKBACK),
                pre_commit_at_ms: 0,
            });
            let ready_at = record.pre_commit_at_ms.saturating_add(self.seed_delay.as_millis() as u64);
            if now < ready_at {
                return Ok(Decision::unchanged(SeedAnswer::Wait((ready_at - now).div_ceil(1000).max(1))));
            }
            record.pre_commit_epoch + PRE_COMMIT_CHALLENGE_DELAY
        };
        let seed = Seed { seed: randomness("seed", sector, Some(epoch)), epoch };
        // Stored once; after a pre-commit reset the seed follows the new pre-commit.
        let updates =
            if sector.seed.as_ref() == Some(&seed) { Vec::new() } else { vec![SectorUpdate::Seed(seed.clone())] };
        Ok(Decision { answer: SeedAnswer::Ready(seed), updates })
    }

    fn submit_proof(
        &self,
        sector: &SectorState,
        proof: ProofInfo,
        reset: bool,
    ) -> Result<Decision<Submitted>, ChainError> {
        let rejected =
            |desc: &str| Decision::unchanged(Submitted { res: SubmitResult::Rejected, desc: Some(desc.into()) });
        // Go `commitmgr.go:622-624`.
        if sector.pre.is_none() {
            return Ok(rejected("pre-commit info not found"));
        }
        if let Some(answer) = resubmitted(sector.proof.as_ref(), &proof, reset, "proof") {
            return Ok(answer);
        }
        if sector.seed.is_none() {
            return Ok(rejected("no seed was drawn for this sector (Venus.WaitSeed)"));
        }
        let answer = Submitted { res: SubmitResult::Accepted, desc: None };
        Ok(Decision { answer, updates: vec![SectorUpdate::Proof(proof)] })
    }

    fn proof_state(&self, sector: &SectorState) -> Result<Polled, ChainError> {
        Ok(match sector.proof {
            Some(_) => Polled { state: OnChainState::Landed, desc: None },
            None => Polled {
                state: OnChainState::Failed,
                desc: Some("no proof was submitted for this sector (Venus.SubmitProof)".to_string()),
            },
        })
    }
}

#[cfg(test)]
mod tests;
