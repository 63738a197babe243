//! Space reservations on persist stores (`StoreReserveSpace` / `StoreReleaseReserved`).
//!
//! A worker reserves room for a sector's sealed file and cache before it writes them, so two sectors never count
//! on the same free bytes. Reservations live in memory only: after a manager restart they are gone, and workers
//! reserve again when they next ask (the Go manager persisted them; here a restart simply forgets, which at worst
//! lets a store be slightly over-committed until the sectors in flight finish).

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use manager_plugin::sector::SectorId;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::capacity::Capacity;
use super::error::FileStoreError;
use super::info::{ReservedItem, StoreBasicInfo};
use super::manager::StoreManager;

/// The mutable part of the store manager, behind its mutex.
pub(super) struct ReserveState {
    pub(super) reservations: Reservations,
    rng: StdRng,
}

impl ReserveState {
    pub(super) fn new() -> Self {
        ReserveState { reservations: Reservations::default(), rng: StdRng::from_os_rng() }
    }
}

/// One sector's reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Reservation {
    /// Index into the manager's persist stores.
    pub(super) store: usize,
    pub(super) size: u64,
    /// Unix seconds.
    pub(super) at: i64,
}

/// At most one reservation per sector.
#[derive(Debug, Default)]
pub(super) struct Reservations {
    by_sector: BTreeMap<SectorId, Reservation>,
}

impl Reservations {
    /// Bytes reserved on `store` by sectors other than `except`.
    /// Saturates instead of wrapping: every size is at most [`MAX_RESERVATION`], so saturation would need
    /// 16,384 maximal reservations, and then the store counts as full, which is the safe side.
    fn reserved_on(&self, store: usize, except: SectorId) -> u64 {
        self.by_sector
            .iter()
            .filter(|(sector, r)| r.store == store && **sector != except)
            .fold(0u64, |sum, (_, r)| sum.saturating_add(r.size))
    }

    /// The reservations on `store`, ordered by sector.
    pub(super) fn items_on(&self, store: usize) -> Vec<ReservedItem> {
        self.by_sector
            .iter()
            .filter(|(_, r)| r.store == store)
            .map(|(sector, r)| ReservedItem { by: sector.to_string(), sector: *sector, size: r.size, at: r.at })
            .collect()
    }
}

/// A store that may take the reservation, with its effective weight (at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Candidate {
    pub(super) store: usize,
    pub(super) weight: u64,
}

/// Picks a candidate at random with probability proportional to its weight; `None` when there are none.
pub(super) fn pick_weighted<R: Rng + ?Sized>(candidates: &[Candidate], rng: &mut R) -> Option<usize> {
    let total: u64 = candidates.iter().map(|c| c.weight).sum();
    if total == 0 {
        return None;
    }
    let mut ticket = rng.random_range(0..total);
    for candidate in candidates {
        if ticket < candidate.weight {
            return Some(candidate.store);
        }
        ticket -= candidate.weight;
    }
    None
}

/// The largest reservation one sector may ask for: 1 PiB. A sealed 64 GiB sector with its cache needs well
/// under 1 TiB; anything near `u64::MAX` is a bug or an attack, refused before any arithmetic.
pub const MAX_RESERVATION: u64 = 1 << 50;

/// A persist store's standing for one reservation request, read before the state lock is taken.
enum Standing {
    /// Not among the candidates: not considered at all.
    NotWanted,
    /// Considered, but cannot take any reservation (read-only, miner refused, capacity unknown or hung).
    Refused(String),
    /// Considered, with this many bytes free.
    Free(u64),
}

impl StoreManager {
    /// Reserves `size` bytes for `sector` on a persist store and returns that store, or `None` when no store
    /// qualifies.
    ///
    /// A store qualifies when it is among `candidates` (empty = every store; unknown names are ignored with a
    /// warning), is not read-only, lets the sector's miner in (a denied miner never, an allow list admits only
    /// its miners, no allow list admits all), its cached capacity is known (a store whose `instance_info` hangs
    /// is skipped), and its free space minus what other sectors reserved there is at least `size`. Among those,
    /// one is picked at random, weighted by `Weight` (0 counts as 1).
    ///
    /// Idempotent per sector: while `sector` holds a reservation on a store among `candidates`, that store is
    /// returned again and the reservation's size set to `size` (never counted twice); a reservation that grows
    /// is re-checked against the store's free space and moves to another store when it no longer fits there. If
    /// its store is no longer a candidate, a new store is picked and the reservation moves (it stays put when
    /// none qualifies). A `size` above [`MAX_RESERVATION`] is refused with an error.
    ///
    /// No store is called: capacity comes from the cache, read before the reservation lock is taken, so a hung
    /// store delays a call at most by the capacity timeout and never blocks other calls.
    pub fn reserve(
        &self,
        sector: SectorId,
        size: u64,
        candidates: &[String],
    ) -> Result<Option<StoreBasicInfo>, FileStoreError> {
        let standings = self.standings(sector, size, candidates)?;
        let mut state = self.lock_state();
        let ReserveState { reservations, rng } = &mut *state;
        Ok(self.reserve_in(reservations, rng, sector, size, &standings))
    }

    /// [`reserve`](Self::reserve) with the caller's random source, for deterministic tests.
    #[cfg(test)]
    pub(super) fn reserve_with_rng<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        sector: SectorId,
        size: u64,
        candidates: &[String],
    ) -> Result<Option<StoreBasicInfo>, FileStoreError> {
        let standings = self.standings(sector, size, candidates)?;
        let mut state = self.lock_state();
        Ok(self.reserve_in(&mut state.reservations, rng, sector, size, &standings))
    }

    /// Drops the reservation of `sector`; `false` when it held none.
    pub fn release(&self, sector: SectorId) -> bool {
        let released = self.lock_state().reservations.by_sector.remove(&sector);
        match released {
            Some(r) => {
                let store = self.persist.get(r.store).map_or("?", |s| s.name());
                tracing::info!(sector = %sector, store, size = r.size, "released reserved space");
                true
            }
            None => false,
        }
    }

    /// Checks the request and reads every candidate's cached capacity, outside the reservation lock.
    fn standings(&self, sector: SectorId, size: u64, candidates: &[String]) -> Result<Vec<Standing>, FileStoreError> {
        if size > MAX_RESERVATION {
            return Err(FileStoreError::ReservationTooLarge { sector, size, max: MAX_RESERVATION });
        }
        for name in candidates {
            if !self.persist.iter().any(|store| store.name() == name) {
                tracing::warn!(sector = %sector, "reservation candidate {name:?} is not a persist store; ignored");
            }
        }
        let wanted = |name: &str| candidates.is_empty() || candidates.iter().any(|c| c == name);
        Ok(self
            .persist
            .iter()
            .map(|store| {
                if !wanted(store.name()) {
                    return Standing::NotWanted;
                }
                if store.config.read_only {
                    return Standing::Refused("is read-only".into());
                }
                if !store.policy.allows(sector.miner) {
                    return Standing::Refused(format!("does not allow miner {}", sector.miner));
                }
                match store.capacity.current() {
                    Capacity::Known { free, .. } => Standing::Free(free),
                    other => Standing::Refused(other.problem(store.capacity.timeout()).unwrap_or_default()),
                }
            })
            .collect())
    }

    /// The selection, under the state lock so that two sectors never count on the same free bytes.
    fn reserve_in<R: Rng + ?Sized>(
        &self,
        reservations: &mut Reservations,
        rng: &mut R,
        sector: SectorId,
        size: u64,
        standings: &[Standing],
    ) -> Option<StoreBasicInfo> {
        let available_on = |reservations: &Reservations, index: usize| match standings.get(index) {
            Some(Standing::Free(free)) => Ok(free.saturating_sub(reservations.reserved_on(index, sector))),
            Some(Standing::Refused(why)) => Err(why.clone()),
            Some(Standing::NotWanted) | None => Err("is not a candidate".into()),
        };

        if let Some(held) = reservations.by_sector.get(&sector).copied()
            && let Some(store) = self.persist.get(held.store)
            && !matches!(standings.get(held.store), Some(Standing::NotWanted) | None)
        {
            // Shrinking or keeping the size needs no room; growing is checked like a new reservation.
            let fits = size <= held.size || available_on(&*reservations, held.store).is_ok_and(|room| room >= size);
            if fits {
                if held.size != size {
                    tracing::debug!(sector = %sector, store = store.name(), from = held.size, to = size, "resized");
                }
                reservations.by_sector.insert(sector, Reservation { store: held.store, size, at: unix_now() });
                return Some(StoreBasicInfo::from(&store.config));
            }
            tracing::info!(
                sector = %sector, store = store.name(), from = held.size, to = size,
                "the grown reservation does not fit its store any more; looking for another"
            );
        }

        let mut eligible = Vec::new();
        let mut passed_over = Vec::new();
        for (index, store) in self.persist.iter().enumerate() {
            let name = store.name();
            if matches!(standings.get(index), Some(Standing::NotWanted) | None) {
                continue;
            }
            match available_on(&*reservations, index) {
                Ok(available) if available >= size => {
                    eligible.push(Candidate { store: index, weight: u64::from(store.config.weight.max(1)) });
                }
                Ok(available) => {
                    let reserved = reservations.reserved_on(index, sector);
                    passed_over.push(format!("{name:?} has {available} bytes available ({reserved} reserved)"));
                }
                Err(why) => passed_over.push(format!("{name:?} {why}")),
            }
        }

        let Some(index) = pick_weighted(&eligible, rng) else {
            let why = if passed_over.is_empty() {
                "no persist store to consider".to_string()
            } else {
                passed_over.join("; ")
            };
            tracing::info!(sector = %sector, size, "no persist store can take the sector: {why}");
            return None;
        };
        let store = self.persist.get(index)?;
        reservations.by_sector.insert(sector, Reservation { store: index, size, at: unix_now() });
        tracing::info!(sector = %sector, store = store.name(), size, "reserved space");
        Some(StoreBasicInfo::from(&store.config))
    }
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
