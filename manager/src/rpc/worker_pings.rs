//! `Venus.WorkerPing` bookkeeping: the last ping of each worker, in memory and bounded.
//!
//! Worker names come from the network, so the table is capped: entries not refreshed for [`PING_EXPIRY`] are
//! dropped, and at [`MAX_WORKERS`] names the oldest ping makes room for a new one (logged).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// The most workers remembered at once.
pub const MAX_WORKERS: usize = 10_000;
/// A worker not heard from for this long is forgotten (workers ping every few seconds).
pub const PING_EXPIRY: Duration = Duration::from_secs(24 * 3600);
/// Longest worker name kept; longer names are cut (at a character boundary).
pub const MAX_NAME_BYTES: usize = 256;

/// Last ping of each worker, by name.
#[derive(Default)]
pub struct WorkerPings(Mutex<HashMap<String, SystemTime>>);

/// One entry of `Venus.WorkerPingInfoList`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WorkerPingInfo {
    /// Worker name.
    pub name: String,
    /// Last ping, Unix seconds.
    pub last_ping: u64,
}

impl WorkerPings {
    /// Records a ping of worker `name` now.
    pub fn record(&self, name: String) {
        self.record_at(name, SystemTime::now());
    }

    fn record_at(&self, mut name: String, now: SystemTime) {
        if name.len() > MAX_NAME_BYTES {
            let mut cut = MAX_NAME_BYTES;
            while !name.is_char_boundary(cut) {
                cut -= 1;
            }
            name.truncate(cut);
        }
        let mut pings = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if !pings.contains_key(&name) && pings.len() >= MAX_WORKERS {
            pings.retain(|_, at| now.duration_since(*at).map_or(true, |age| age < PING_EXPIRY));
            if pings.len() >= MAX_WORKERS
                && let Some(oldest) = pings.iter().min_by_key(|(_, at)| **at).map(|(name, _)| name.clone())
            {
                tracing::warn!(forgotten = %oldest, "{MAX_WORKERS} workers are pinging; forgot the longest silent one");
                pings.remove(&oldest);
            }
        }
        pings.insert(name, now);
    }

    /// Every worker that pinged within [`PING_EXPIRY`], by name.
    pub fn list(&self) -> Vec<WorkerPingInfo> {
        let now = SystemTime::now();
        let pings = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let mut list: Vec<WorkerPingInfo> = pings
            .iter()
            .filter(|(_, at)| now.duration_since(**at).map_or(true, |age| age < PING_EXPIRY))
            .map(|(name, at)| WorkerPingInfo {
                name: name.clone(),
                last_ping: at.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
            })
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    /// How many workers are remembered.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Whether no worker is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_never_grows_past_its_cap_and_forgets_the_oldest_first() {
        let pings = WorkerPings::default();
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for n in 0..MAX_WORKERS + 50 {
            pings.record_at(format!("w{n}"), start + Duration::from_secs(n as u64));
        }
        assert_eq!(pings.len(), MAX_WORKERS);
        let names: std::collections::HashSet<String> = pings.0.lock().unwrap().keys().cloned().collect();
        assert!(!names.contains("w0") && !names.contains("w49") && names.contains("w50"));
    }

    #[test]
    fn expired_workers_are_dropped_and_long_names_cut() {
        let pings = WorkerPings::default();
        let old = SystemTime::now() - PING_EXPIRY - Duration::from_secs(1);
        pings.record_at("old".into(), old);
        pings.record("new".into());
        pings.record("é".repeat(300));
        let listed: Vec<String> = pings.list().into_iter().map(|w| w.name).collect();
        assert!(listed.contains(&"new".to_string()) && !listed.contains(&"old".to_string()), "{listed:?}");
        assert!(listed.iter().all(|name| name.len() <= MAX_NAME_BYTES));
    }
}
