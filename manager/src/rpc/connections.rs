//! Who may open one more connection: `[API] MaxConnections` in all; outside `[API] TrustedNetworks`, at most
//! `MaxConnectionsPerPeer` from one address and, all such addresses together, at most what
//! `TrustedReservedPercent` leaves. So a peer that can merely reach the port cannot make the workers get 503,
//! nor take every untrusted slot from the operators. Trusted addresses are not limited per address: many
//! workers may sit behind one (NAT), and they are trusted anyway.
//!
//! A connection is judged when it is accepted, before any request: by its address only (the token is not known
//! yet; an operator with the token from an untrusted address shares the untrusted part). IPv4-mapped IPv6
//! addresses count as their IPv4 address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The three limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Open connections at most (`MaxConnections`).
    pub total: u32,
    /// From one untrusted address at most (`MaxConnectionsPerPeer`).
    pub per_peer: u32,
    /// Kept for addresses in `TrustedNetworks` (`TrustedReservedPercent` of `total`; 0 without trusted networks).
    pub reserved_for_trusted: u32,
}

/// Why a connection was refused; its [`Display`](std::fmt::Display) is the 503's text, naming the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// `MaxConnections` are open.
    #[error("too many open connections (the limit is {0}, [API] MaxConnections); retry shortly")]
    Total(u32),
    /// The address has `MaxConnectionsPerPeer` open.
    #[error(
        "too many open connections from {peer} (the limit is {limit} per address, [API] MaxConnectionsPerPeer); \
         retry shortly"
    )]
    PerPeer {
        /// The address.
        peer: IpAddr,
        /// The limit.
        limit: u32,
    },
    /// The untrusted addresses hold all they may.
    #[error(
        "too many open connections from addresses outside [API] TrustedNetworks ({shared} of [API] MaxConnections; \
         the other {reserved} are kept for TrustedNetworks by [API] TrustedReservedPercent); retry shortly"
    )]
    Shared {
        /// What untrusted addresses may hold together.
        shared: u32,
        /// What is kept for trusted ones.
        reserved: u32,
    },
}

/// The open connections, counted per address and by trust.
#[derive(Debug)]
pub struct ConnectionTable {
    limits: ConnectionLimits,
    state: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: u32,
    untrusted: u32,
    per_peer: HashMap<IpAddr, u32>,
}

/// One admitted connection: its slot is given back when this is dropped.
#[derive(Debug)]
pub struct Admitted {
    table: Arc<ConnectionTable>,
    peer: IpAddr,
    trusted: bool,
}

impl ConnectionTable {
    /// An empty table enforcing `limits`.
    pub fn new(limits: ConnectionLimits) -> Arc<ConnectionTable> {
        Arc::new(ConnectionTable { limits, state: Mutex::default() })
    }

    /// Admits one more connection from `peer` (`trusted`: in `TrustedNetworks`), or says which limit refuses it.
    pub fn admit(self: &Arc<Self>, peer: IpAddr, trusted: bool) -> Result<Admitted, Refused> {
        let peer = peer.to_canonical();
        let limits = self.limits;
        let mut counts = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if counts.total >= limits.total {
            return Err(Refused::Total(limits.total));
        }
        if !trusted && counts.per_peer.get(&peer).copied().unwrap_or(0) >= limits.per_peer {
            return Err(Refused::PerPeer { peer, limit: limits.per_peer });
        }
        let shared = limits.total.saturating_sub(limits.reserved_for_trusted).max(1);
        if !trusted && counts.untrusted >= shared {
            return Err(Refused::Shared { shared, reserved: limits.total - shared });
        }
        counts.total += 1;
        counts.untrusted += u32::from(!trusted);
        *counts.per_peer.entry(peer).or_default() += 1;
        Ok(Admitted { table: Arc::clone(self), peer, trusted })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut counts = self.table.state.lock().unwrap_or_else(|p| p.into_inner());
        counts.total = counts.total.saturating_sub(1);
        counts.untrusted = counts.untrusted.saturating_sub(u32::from(!self.trusted));
        if let Some(open) = counts.per_peer.get_mut(&self.peer) {
            *open -= 1;
            if *open == 0 {
                counts.per_peer.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn each_limit_refuses_with_its_key_and_a_closed_connection_gives_its_slot_back() {
        let table = ConnectionTable::new(ConnectionLimits { total: 6, per_peer: 2, reserved_for_trusted: 3 });
        let a1 = table.admit(ip("10.0.0.1"), false).unwrap();
        let _a2 = table.admit(ip("10.0.0.1"), false).unwrap();
        let refused = table.admit(ip("::ffff:10.0.0.1"), false).unwrap_err();
        assert_eq!(refused, Refused::PerPeer { peer: ip("10.0.0.1"), limit: 2 }, "mapped IPv6 is the same peer");
        let _b = table.admit(ip("10.0.0.2"), false).unwrap();
        let refused = table.admit(ip("10.0.0.3"), false).unwrap_err();
        assert_eq!(refused, Refused::Shared { shared: 3, reserved: 3 });
        assert!(refused.to_string().contains("[API] TrustedReservedPercent"));
        // The reserved half is the trusted addresses', which are not limited per address.
        let _t1 = table.admit(ip("10.9.0.1"), true).unwrap();
        let _t2 = table.admit(ip("10.9.0.1"), true).unwrap();
        let _t3 = table.admit(ip("10.9.0.1"), true).unwrap();
        assert_eq!(table.admit(ip("10.9.0.3"), true).unwrap_err(), Refused::Total(6));
        drop(a1);
        assert!(table.admit(ip("10.0.0.3"), false).is_ok(), "a slot of the untrusted share came back");
    }
}
