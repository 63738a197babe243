use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use manager_plugin::sector::{Cid, SectorId};

use super::*;

/// 2026-01-01 00:00:00 UTC in ms.
const START_MS: u64 = 1_767_225_600_000;

/// A test's own clock, which it moves forward.
fn clock() -> Arc<AtomicU64> {
    Arc::new(AtomicU64::new(START_MS))
}

fn mock_at(seed_delay_secs: u64, now: &Arc<AtomicU64>) -> MockChain {
    let now = Arc::clone(now);
    MockChain::new(Duration::from_secs(seed_delay_secs), Box::new(move || now.load(Ordering::SeqCst)))
}

fn mock(seed_delay_secs: u64) -> MockChain {
    mock_at(seed_delay_secs, &clock())
}

fn apply(sector: &mut SectorState, updates: &[SectorUpdate]) {
    updates.iter().for_each(|u| sector.apply(u));
}

fn pre(ticket: &Ticket, r: &str) -> PreCommitInfo {
    PreCommitInfo {
        comm_r: Cid { value: r.into() },
        comm_d: Cid { value: "baga6ea4seaq".into() },
        ticket: ticket.clone(),
    }
}

#[test]
fn the_head_follows_the_wall_clock_from_mainnet_genesis() {
    let head = mock(0).head().unwrap();
    assert_eq!(head, ((START_MS / 1000 - GENESIS_UNIX_SECS) / EPOCH_SECS) as i64);
}

#[test]
fn the_ticket_is_deterministic_per_sector_and_stored_once() {
    let now = clock();
    let chain = mock_at(0, &now);
    let mut sector = SectorState::new(SectorId { miner: 1000, number: 1 }, 8);
    let first = chain.assign_ticket(&sector).unwrap();
    assert_eq!(first.answer.ticket.0.len(), 32);
    assert!(first.updates.iter().any(|u| matches!(u, SectorUpdate::MockChain(_))), "marks the sector");
    // A fresh chain (a restart) draws the same bytes for the same sector, another sector different ones.
    assert_eq!(mock(0).assign_ticket(&sector).unwrap().answer.ticket, first.answer.ticket);
    let other = SectorState::new(SectorId { miner: 1000, number: 2 }, 8);
    assert_ne!(chain.assign_ticket(&other).unwrap().answer.ticket, first.answer.ticket);
    apply(&mut sector, &first.updates);
    // Once stored, the stored ticket is the answer, whatever the head does.
    now.fetch_add(3_600_000, Ordering::SeqCst);
    let again = chain.assign_ticket(&sector).unwrap();
    assert_eq!((again.answer, again.updates.len()), (first.answer, 0));
}

#[test]
fn pre_commit_follows_the_commit_manager() {
    let chain = mock(0);
    let mut sector = SectorState::new(SectorId { miner: 1000, number: 3 }, 8);
    assert_eq!(chain.pre_commit_state(&sector).unwrap().state, OnChainState::Failed);
    let ticket = chain.assign_ticket(&sector).unwrap();
    apply(&mut sector, &ticket.updates);
    let submitted = chain.submit_pre_commit(&sector, pre(&ticket.answer, "bagboea4b5abc1"), false).unwrap();
    assert_eq!(submitted.answer.res, SubmitResult::Accepted);
    apply(&mut sector, &submitted.updates);
    assert_eq!(chain.pre_commit_state(&sector).unwrap().state, OnChainState::Landed);
    let same = chain.submit_pre_commit(&sector, pre(&ticket.answer, "bagboea4b5abc1"), false).unwrap();
    assert_eq!((same.answer.res, same.updates.len()), (SubmitResult::Accepted, 0));
    let other = chain.submit_pre_commit(&sector, pre(&ticket.answer, "bagboea4b5abc2"), false).unwrap();
    assert_eq!((other.answer.res, other.updates.len()), (SubmitResult::MismatchedSubmission, 0));
    let reset = chain.submit_pre_commit(&sector, pre(&ticket.answer, "bagboea4b5abc2"), true).unwrap();
    assert_eq!(reset.answer.res, SubmitResult::Accepted);
    apply(&mut sector, &reset.updates);
    assert_eq!(sector.pre.unwrap().comm_r.value, "bagboea4b5abc2");
}

#[test]
fn the_seed_waits_for_the_pre_commit_and_the_delay() {
    let now = clock();
    let chain = mock_at(45, &now);
    let mut sector = SectorState::new(SectorId { miner: 1000, number: 4 }, 8);
    let ticket = chain.assign_ticket(&sector).unwrap();
    apply(&mut sector, &ticket.updates);
    let refused = chain.wait_seed(&sector, 8).unwrap_err();
    assert!(matches!(&refused, ChainError::NotYet(m) if m.contains("SubmitPreCommit")), "{refused:?}");
    // NonInteractivePoRep needs no pre-commit.
    assert!(matches!(chain.wait_seed(&sector, 18).unwrap().answer, SeedAnswer::Ready(_)));
    let submitted = chain.submit_pre_commit(&sector, pre(&ticket.answer, "bagboea4b5abc1"), false).unwrap();
    apply(&mut sector, &submitted.updates);
    assert_eq!(chain.wait_seed(&sector, 8).unwrap().answer, SeedAnswer::Wait(45));
    now.fetch_add(44_500, Ordering::SeqCst);
    assert_eq!(chain.wait_seed(&sector, 8).unwrap().answer, SeedAnswer::Wait(1), "rounded up, at least 1");
    now.fetch_add(500, Ordering::SeqCst);
    let ready = chain.wait_seed(&sector, 8).unwrap();
    let SeedAnswer::Ready(seed) = ready.answer.clone() else { panic!("{ready:?}") };
    assert_eq!(seed.seed.0.len(), 32);
    assert!(seed.epoch > ticket.answer.epoch, "the seed's epoch is after the ticket's");
    assert_eq!(seed.epoch, sector.mock_chain.clone().unwrap().pre_commit_epoch + PRE_COMMIT_CHALLENGE_DELAY);
    apply(&mut sector, &ready.updates);
    let again = mock_at(45, &now).wait_seed(&sector, 8).unwrap();
    assert_eq!((again.answer, again.updates.len()), (SeedAnswer::Ready(seed), 0));
}

#[test]
fn proofs_need_a_pre_commit_and_follow_the_commit_manager() {
    let chain = mock(0);
    let mut sector = SectorState::new(SectorId { miner: 1000, number: 5 }, 8);
    let proof = |b: u8| ProofInfo { proof: Bytes(vec![b; 192]) };
    assert_eq!(chain.submit_proof(&sector, proof(1), false).unwrap().answer.res, SubmitResult::Rejected);
    let ticket = chain.assign_ticket(&sector).unwrap();
    apply(&mut sector, &ticket.updates);
    let submitted = chain.submit_pre_commit(&sector, pre(&ticket.answer, "bagboea4b5abc1"), false).unwrap();
    apply(&mut sector, &submitted.updates);
    let seed = chain.wait_seed(&sector, 8).unwrap();
    apply(&mut sector, &seed.updates);
    assert_eq!(chain.proof_state(&sector).unwrap().state, OnChainState::Failed);
    let accepted = chain.submit_proof(&sector, proof(1), false).unwrap();
    assert_eq!(accepted.answer.res, SubmitResult::Accepted);
    apply(&mut sector, &accepted.updates);
    assert_eq!(chain.proof_state(&sector).unwrap().state, OnChainState::Landed);
    assert_eq!(chain.submit_proof(&sector, proof(1), false).unwrap().answer.res, SubmitResult::Accepted);
    assert_eq!(chain.submit_proof(&sector, proof(2), false).unwrap().answer.res, SubmitResult::MismatchedSubmission);
    let replaced = chain.submit_proof(&sector, proof(2), true).unwrap();
    assert_eq!(replaced.answer.res, SubmitResult::Accepted);
    assert_eq!(replaced.updates, vec![SectorUpdate::Proof(proof(2))]);
}
