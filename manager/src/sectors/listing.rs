//! [`SectorListing`]: the sectors of one state, read in (miner, number) order with memory bounded by the count of
//! sectors, not by their size.
//!
//! Keys sort as bytes (`m-1000-n-10` before `m-1000-n-2`), while a listing is in numeric order. So a listing
//! reads in two passes, each made of short reads and never of one long transaction:
//! 1. a plain paged scan of the state's keys collects the sector ids (16 bytes each: 16 MB for a million
//!    sectors), which are then sorted;
//! 2. each sector is read with a point read when the caller asks for it, and filtered by job.
//!
//! A sector deleted between the passes (moved online ↔ offline) is skipped; one added after the first pass is
//! not listed. Each sector listed is some committed state of it.

use manager_plugin::sector::{SectorId, SectorState, WorkerState};

use super::error::SectorError;
use super::job::JobFilter;
use super::keys;
use super::manager::{StateManager, decode};
use manager_plugin::kv::KvError;

/// The sectors of one state, in (miner, number) order; an iterator of their states (see the module docs).
pub struct SectorListing<'a> {
    sectors: &'a StateManager,
    ws: WorkerState,
    job: JobFilter,
    ids: std::vec::IntoIter<SectorId>,
}

impl StateManager {
    /// Starts listing the sectors in state `ws` that belong to `job`: reads their ids now, their states as the
    /// listing is iterated. Memory: 16 bytes per sector in the state, plus one state at a time.
    pub fn listing(&self, ws: WorkerState, job: JobFilter) -> Result<SectorListing<'_>, SectorError> {
        let prefix = keys::sector_prefix(ws);
        let op = || format!("list {} sectors", ws.collection());
        let mut ids = Vec::new();
        let mut iter = self.store.scan(prefix.as_bytes()).map_err(|source| SectorError::kv(op(), source))?;
        while let Some((key, _)) = iter.next_entry().map_err(|source| SectorError::kv(op(), source))? {
            let id = keys::parse_sector_key(ws, &key)
                .ok_or_else(|| SectorError::codec(&key, "not a sector key (expected <state>/m-<miner>-n-<number>)"))?;
            ids.push(id);
        }
        ids.sort_unstable();
        ids.dedup();
        Ok(SectorListing { sectors: self, ws, job, ids: ids.into_iter() })
    }

    /// The sectors in state `ws` that belong to `job`, sorted by (miner, number), all in memory (see
    /// [`StateManager::listing`] to read them one at a time).
    ///
    /// Read with plain scans and point reads, not a transaction: on Redis a transactional scan watches the whole
    /// index and never validates under a steady trickle of writes. Each sector is some committed state of it; a
    /// sector moving between online and offline during the listing may be missing from both lists.
    pub fn list(&self, ws: WorkerState, job: JobFilter) -> Result<Vec<SectorState>, SectorError> {
        self.listing(ws, job)?.collect()
    }
}

impl SectorListing<'_> {
    /// Sectors not yet read (some of which the job filter or a concurrent move may still drop).
    pub fn remaining(&self) -> usize {
        self.ids.len()
    }

    /// Reads sector `id`; `None` when it is gone or not in the job.
    fn read(&self, id: SectorId) -> Result<Option<SectorState>, SectorError> {
        let key = keys::sector_key(self.ws, id);
        let value = match self.sectors.store.get(&key) {
            Ok(value) => value,
            Err(KvError::KeyNotFound) => return Ok(None),
            Err(source) => {
                return Err(SectorError::kv(
                    format!("list {} sectors: read sector {id}", self.ws.collection()),
                    source,
                ));
            }
        };
        let state = decode(&key, &value)?;
        if state.id != id {
            return Err(SectorError::codec(&key, format!("holds sector {} instead", state.id)));
        }
        Ok(self.job.matches(&state).then_some(state))
    }
}

impl Iterator for SectorListing<'_> {
    type Item = Result<SectorState, SectorError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let id = self.ids.next()?;
            match self.read(id) {
                Ok(Some(state)) => return Some(Ok(state)),
                Ok(None) => continue,
                Err(err) => {
                    // An error ends the listing: a caller must not mistake what follows for the whole list.
                    self.ids = Vec::new().into_iter();
                    return Some(Err(err));
                }
            }
        }
    }
}
