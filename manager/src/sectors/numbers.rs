//! Which sector numbers an allocation hands out: the miner's counter, its configured range, and the records
//! already present (imported sectors), with checked arithmetic throughout.
//!
//! The Go manager's rule (`damocles-manager/modules/impl/sectors/number_allocator.go:62-66` and
//! `damocles-manager/modules/impl/sectors/mgr.go:64-83`): with `current` the last number handed out (0 for a new
//! miner) and `floor` the configured `MinNumber`, or `InitNumber` when `MinNumber` is unset, the allocation of
//! `n` numbers hands out `max(current, floor) + 1 ..= max(current, floor) + n`, and is refused (the miner is
//! skipped) when the last of them would exceed `MaxNumber`. This port stores the NEXT number in `next/<miner>`,
//! so `current = next - 1`, and additionally skips numbers that already have a record.

use manager_plugin::kv::{KvError, Txn};
use manager_plugin::sector::{SectorId, WorkerState};

use super::error::SectorError;
use super::keys;
use super::manager::{Abort, sector_exists};

/// The numbers a miner may be given: above `floor`, at most `max` (the Go `[Miners.Sector]` keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NumberRange {
    /// Numbers handed out are greater than this (`MinNumber`, else `InitNumber`; 0 by default).
    pub floor: u64,
    /// No number handed out is greater than this (`MaxNumber`); `None`, and anything above it, means
    /// [`MAX_SECTOR_NUMBER`].
    pub max: Option<u64>,
}

/// The largest sector number Filecoin allows (go-state-types `abi/sector.go`: `const MaxSectorNumber =
/// math.MaxInt64`, "the maximum assignable sector number"): never handed out above, whatever the range says.
pub const MAX_SECTOR_NUMBER: u64 = i64::MAX as u64;

impl NumberRange {
    /// Every number from 1 to [`MAX_SECTOR_NUMBER`]: the default.
    pub const UNBOUNDED: NumberRange = NumberRange { floor: 0, max: None };
}

/// The numbers an allocation will hand out and the counter value after it.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct NumberPlan {
    pub(super) numbers: Vec<u64>,
    pub(super) next: u64,
}

/// Reads `miner`'s counter and picks the next `count` numbers within `range` that have no record in either
/// state. `None` when the range cannot hold them (nothing is to be written then).
pub(super) fn plan_numbers(
    txn: &dyn Txn,
    miner: u64,
    count: u32,
    range: NumberRange,
) -> Result<Option<NumberPlan>, Abort> {
    let key = keys::next_key(miner);
    let stored_next = match txn.get(&key) {
        Ok(value) => Some(keys::parse_decimal(&value).ok_or_else(|| {
            SectorError::codec(&key, format!("{:?} is not a sector number", String::from_utf8_lossy(&value)))
        })?),
        Err(KvError::KeyNotFound) => None,
        Err(err) => return Err(err.into()),
    };
    let last = stored_next.map_or(0, |next| next.saturating_sub(1));
    // Filecoin's limit holds whatever the range says (the config refuses a larger `MaxNumber`).
    let limit = range.max.unwrap_or(MAX_SECTOR_NUMBER).min(MAX_SECTOR_NUMBER);
    // `None` when the first number would overflow: the numbers are exhausted, like a range that is full.
    let Some(mut candidate) = last.max(range.floor).checked_add(1) else {
        return Ok(None);
    };
    // Even without skipped numbers the last one would be past the limit (or past u64::MAX).
    let fits = candidate.checked_add(u64::from(count).saturating_sub(1)).is_some_and(|last| last <= limit);
    if !fits {
        return Ok(None);
    }
    // The capacity is capped: `count` comes from a request.
    let mut numbers = Vec::with_capacity((count as usize).min(1024));
    while numbers.len() < count as usize {
        if candidate > limit {
            return Ok(None);
        }
        let id = SectorId { miner, number: candidate };
        if sector_exists(txn, WorkerState::Online, id)? || sector_exists(txn, WorkerState::Offline, id)? {
            tracing::warn!(sector = %id, "skipping a sector number that already has a record (imported?)");
        } else {
            numbers.push(candidate);
        }
        // The counter stores the next number: `checked_add` keeps it from wrapping (unreachable below the limit).
        let Some(next) = candidate.checked_add(1) else {
            return Ok(None);
        };
        candidate = next;
    }
    Ok(Some(NumberPlan { numbers, next: candidate }))
}
