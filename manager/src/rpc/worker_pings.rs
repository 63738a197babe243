//! `Venus.WorkerPing` bookkeeping: the last ping of each worker, in memory and bounded.
//!
//! Worker names come from the network, so the table is capped: entries not refreshed for [`PING_EXPIRY`] are
//! dropped, and at [`MAX_WORKERS`] names the oldest ping makes room for a new one (logged).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use super::venus::{WorkerInfo, WorkerPingInfo};

/// The most workers remembered at once.
pub const MAX_WORKERS: usize = 10_000;
/// A worker not heard from for this long is forgotten (workers ping every few seconds).
pub const PING_EXPIRY: Duration = Duration::from_secs(24 * 3600);
/// Longest worker name kept; longer names are cut (at a character boundary).
pub const MAX_NAME_BYTES: usize = 256;

/// Last ping of each worker, by name, with what it sent.
#[derive(Default)]
pub struct WorkerPings(Mutex<HashMap<String, (SystemTime, WorkerInfo)>>);

impl WorkerPings {
    /// Records a ping of the worker `info` describes, now.
    pub fn record(&self, info: WorkerInfo) {
        self.record_at(info, SystemTime::now());
    }

    fn record_at(&self, mut info: WorkerInfo, now: SystemTime) {
        if info.name.len() > MAX_NAME_BYTES {
            let mut cut = MAX_NAME_BYTES;
            while !info.name.is_char_boundary(cut) {
                cut -= 1;
            }
            info.name.truncate(cut);
        }
        let mut pings = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if !pings.contains_key(&info.name) && pings.len() >= MAX_WORKERS {
            pings.retain(|_, (at, _)| now.duration_since(*at).map_or(true, |age| age < PING_EXPIRY));
            if pings.len() >= MAX_WORKERS
                && let Some(oldest) = pings.iter().min_by_key(|(_, (at, _))| *at).map(|(name, _)| name.clone())
            {
                tracing::warn!(forgotten = %oldest, "{MAX_WORKERS} workers are pinging; forgot the longest silent one");
                pings.remove(&oldest);
            }
        }
        pings.insert(info.name.clone(), (now, info));
    }

    /// Every worker that pinged within [`PING_EXPIRY`], ordered by name, in Go's `{Info, LastPing}` shape.
    pub fn list(&self) -> Vec<WorkerPingInfo> {
        let now = SystemTime::now();
        let pings = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let mut list: Vec<WorkerPingInfo> = pings
            .values()
            .filter(|(at, _)| now.duration_since(*at).map_or(true, |age| age < PING_EXPIRY))
            .map(|(at, info)| WorkerPingInfo {
                info: info.clone(),
                last_ping: at.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64),
            })
            .collect();
        list.sort_by(|a, b| a.info.name.cmp(&b.info.name));
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

    fn worker(name: String) -> WorkerInfo {
        WorkerInfo { name, dest: "127.0.0.1:17890".into(), ..WorkerInfo::default() }
    }

    #[test]
    fn the_table_never_grows_past_its_cap_and_forgets_the_oldest_first() {
        let pings = WorkerPings::default();
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for n in 0..MAX_WORKERS + 50 {
            pings.record_at(worker(format!("w{n}")), start + Duration::from_secs(n as u64));
        }
        assert_eq!(pings.len(), MAX_WORKERS);
        let names: std::collections::HashSet<String> = pings.0.lock().unwrap().keys().cloned().collect();
        assert!(!names.contains("w0") && !names.contains("w49") && names.contains("w50"));
    }

    #[test]
    fn expired_workers_are_dropped_and_long_names_cut() {
        let pings = WorkerPings::default();
        let old = SystemTime::now() - PING_EXPIRY - Duration::from_secs(1);
        pings.record_at(worker("old".into()), old);
        pings.record(worker("new".into()));
        pings.record(worker("é".repeat(300)));
        let listed: Vec<String> = pings.list().into_iter().map(|w| w.info.name).collect();
        assert!(listed.contains(&"new".to_string()) && !listed.contains(&"old".to_string()), "{listed:?}");
        assert!(listed.iter().all(|name| name.len() <= MAX_NAME_BYTES));
    }
}
