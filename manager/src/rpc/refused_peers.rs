//! The log line for tokenless requests refused from outside `[API] TrustedNetworks`.
//!
//! damocles-worker cannot send a token (`damocles-worker/src/config.rs:176-180` parses `rpc_client.headers`,
//! `run.rs:63-65` never uses them), so a worker whose network is not trusted fails every call with 401 — and the
//! worker only logs a generic error. The manager names the peer and the key to change, once a minute per peer
//! at most (a worker retries every call), with the number of refusals since the last line.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often one peer's refusals are logged at most.
pub const LOG_EVERY: Duration = Duration::from_secs(60);
/// Peers remembered at most; when full, the table is cleared (the next refusal of each is logged again).
const MAX_PEERS: usize = 4096;

/// Per peer: when its refusal was last logged, and how many were refused since.
#[derive(Debug, Default)]
pub struct RefusedPeers {
    peers: Mutex<HashMap<IpAddr, (Instant, u64)>>,
}

impl RefusedPeers {
    /// Records a tokenless request from `peer` refused because the peer is not trusted, and logs it unless this
    /// peer was logged within [`LOG_EVERY`].
    pub fn record(&self, peer: IpAddr, method: &str, path: &str) {
        if let Some(suppressed) = self.due(peer, Instant::now()) {
            let also =
                if suppressed > 0 { format!(" ({suppressed} more since the last such line)") } else { String::new() };
            tracing::warn!(
                %peer,
                "refused a request without the API token from {peer} ({method} {path}){also}: {peer} is not in \
                 [API] TrustedNetworks. damocles-worker cannot send a token: add the workers' network to [API] \
                 TrustedNetworks in sector-manager.cfg (other clients send `Authorization: Bearer <token>`)"
            );
        }
    }

    /// `Some(refusals not logged since the last line)` when `peer`'s refusal at `now` is to be logged.
    fn due(&self, peer: IpAddr, now: Instant) -> Option<u64> {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        if peers.len() >= MAX_PEERS && !peers.contains_key(&peer) {
            peers.clear();
        }
        match peers.get_mut(&peer) {
            Some((logged, suppressed)) if now.duration_since(*logged) < LOG_EVERY => {
                *suppressed += 1;
                None
            }
            Some((logged, suppressed)) => {
                let count = std::mem::take(suppressed);
                *logged = now;
                Some(count)
            }
            None => {
                peers.insert(peer, (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_logged_once_a_minute_with_the_count_of_what_was_not_logged() {
        let log = RefusedPeers::default();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let start = Instant::now();
        assert_eq!(log.due(a, start), Some(0));
        assert_eq!(log.due(a, start + Duration::from_secs(1)), None);
        assert_eq!(log.due(a, start + Duration::from_secs(2)), None);
        assert_eq!(log.due(b, start + Duration::from_secs(2)), Some(0), "each peer on its own");
        assert_eq!(log.due(a, start + LOG_EVERY), Some(2));
        assert_eq!(log.due(a, start + LOG_EVERY + Duration::from_secs(1)), None);
    }

    #[test]
    fn the_table_stays_bounded() {
        let log = RefusedPeers::default();
        let now = Instant::now();
        for i in 0..(MAX_PEERS as u32 + 10) {
            assert_eq!(log.due(IpAddr::from(i.to_be_bytes()), now), Some(0));
        }
        assert!(log.peers.lock().unwrap().len() <= MAX_PEERS);
    }
}
