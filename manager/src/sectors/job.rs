//! Which sectors a worker job concerns (the Go manager's `SectorWorkerJob`).

use manager_plugin::sector::SectorState;

/// Filters [`StateManager::list`](super::StateManager::list) by the kind of job a sector is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JobFilter {
    /// Every sector (code 0).
    #[default]
    All,
    /// Plain sealing: neither upgraded, nor needing a rebuild, nor being unsealed (code 1).
    Sealing,
    /// Snap-upgraded sectors (code 2).
    SnapUp,
    /// Sectors that need a rebuild (code 3).
    Rebuild,
    /// Sectors being unsealed (code 4).
    Unseal,
}

impl JobFilter {
    /// The filter for a Go `SectorWorkerJob` code (0 ..= 4), or `None` for an unknown code.
    pub fn from_code(code: u8) -> Option<JobFilter> {
        Some(match code {
            0 => JobFilter::All,
            1 => JobFilter::Sealing,
            2 => JobFilter::SnapUp,
            3 => JobFilter::Rebuild,
            4 => JobFilter::Unseal,
            _ => return None,
        })
    }

    /// The Go `SectorWorkerJob` code of this filter.
    pub fn code(self) -> u8 {
        match self {
            JobFilter::All => 0,
            JobFilter::Sealing => 1,
            JobFilter::SnapUp => 2,
            JobFilter::Rebuild => 3,
            JobFilter::Unseal => 4,
        }
    }

    /// Whether `state` belongs to this job.
    pub fn matches(self, state: &SectorState) -> bool {
        match self {
            JobFilter::All => true,
            JobFilter::Sealing => !state.upgraded && !state.need_rebuild && !state.unsealing,
            JobFilter::SnapUp => state.upgraded,
            JobFilter::Rebuild => state.need_rebuild,
            JobFilter::Unseal => state.unsealing,
        }
    }
}

#[cfg(test)]
mod tests {
    use manager_plugin::sector::{SectorId, SectorState};

    use super::JobFilter;

    #[test]
    fn codes_round_trip_and_unknown_codes_are_refused() {
        for code in 0..=4 {
            assert_eq!(JobFilter::from_code(code).map(JobFilter::code), Some(code));
        }
        assert_eq!(JobFilter::from_code(5), None);
    }

    #[test]
    fn sealing_excludes_sectors_in_other_jobs() {
        let plain = SectorState::new(SectorId { miner: 1, number: 1 }, 8);
        let mut upgraded = plain.clone();
        upgraded.upgraded = true;
        let mut rebuild = plain.clone();
        rebuild.need_rebuild = true;
        let mut unsealing = plain.clone();
        unsealing.unsealing = true;
        assert!(JobFilter::Sealing.matches(&plain));
        for other in [&upgraded, &rebuild, &unsealing] {
            assert!(!JobFilter::Sealing.matches(other));
            assert!(JobFilter::All.matches(other));
        }
        assert!(JobFilter::SnapUp.matches(&upgraded) && !JobFilter::SnapUp.matches(&plain));
        assert!(JobFilter::Rebuild.matches(&rebuild) && !JobFilter::Rebuild.matches(&plain));
        assert!(JobFilter::Unseal.matches(&unsealing) && !JobFilter::Unseal.matches(&plain));
    }
}
