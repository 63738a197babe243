//! `[API]`: the JSON-RPC listener, the limits that keep it answering, and who may reach the worker methods
//! without the token.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// `[API]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "PascalCase")]
pub struct ApiConfig {
    /// `Listen`: the JSON-RPC socket address; default `127.0.0.1:1789`.
    pub listen: String,
    /// `TrustedNetworks`: CIDR networks (`"10.0.0.0/8"`, `"fd00::/8"`, or a single address) whose clients may
    /// call the worker methods and `GET` pieces without the token; default empty (the token is always needed);
    /// `daemon init` writes [`ApiConfig::loopback`].
    pub trusted_networks: Vec<IpNetwork>,
    /// `HeaderReadTimeoutSecs`: a client must send a request's whole header within this many seconds, or its
    /// connection is closed (also an idle kept-alive connection); default 20.
    pub header_read_timeout_secs: u64,
    /// `MaxConnections`: open connections at most; one more is answered `503` with `Retry-After` and closed;
    /// default 1000.
    pub max_connections: u32,
    /// `MaxConnectionsPerPeer`: open connections from one address outside `TrustedNetworks` at most; one more is
    /// answered `503`; default 256.
    pub max_connections_per_peer: u32,
    /// `TrustedReservedPercent`: the percentage of `MaxConnections` kept for addresses in `TrustedNetworks`
    /// (0 to 100; default 20; nothing is kept when `TrustedNetworks` is empty).
    pub trusted_reserved_percent: u32,
    /// `MaxRequestBodyBytes`: the largest JSON-RPC request body; default 10 MiB (10485760).
    pub max_request_body_bytes: u32,
    /// `MaxResponseBodyBytes`: the largest JSON-RPC response (e.g. `ListSectors`); default 1 GiB (1073741824).
    pub max_response_body_bytes: u32,
    /// `MaxBatchRequests`: the most calls in one JSON-RPC batch; a larger batch is refused whole with one
    /// error; default 100.
    pub max_batch_requests: u32,
    /// `MaxPieceTransfers`: piece uploads and downloads running at once; one more is answered `503` with
    /// `Retry-After`; default 64.
    pub max_piece_transfers: u32,
    /// `PieceTransferIdleSecs`: a piece transfer whose client sends or takes no data for this many seconds is
    /// aborted, freeing its slot; default 60.
    pub piece_transfer_idle_secs: u64,
    /// `MetricsListen`: a second socket address serving only `GET /metrics`, without the token (for a private
    /// scrape network); default empty (off: `/metrics` is served on `Listen`, behind the token).
    pub metrics_listen: String,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: "127.0.0.1:1789".to_owned(),
            trusted_networks: Vec::new(),
            header_read_timeout_secs: 20,
            max_connections: 1000,
            max_connections_per_peer: 256,
            trusted_reserved_percent: 20,
            max_request_body_bytes: 10 << 20,
            max_response_body_bytes: 1 << 30,
            max_batch_requests: 100,
            max_piece_transfers: 64,
            piece_transfer_idle_secs: 60,
            metrics_listen: String::new(),
        }
    }
}

impl ApiConfig {
    /// `127.0.0.0/8` and `::1/128`: what `daemon init` writes into `TrustedNetworks`.
    pub fn loopback() -> Vec<IpNetwork> {
        vec![
            IpNetwork { addr: IpAddr::from([127, 0, 0, 0]), prefix: 8 },
            IpNetwork { addr: IpAddr::from(std::net::Ipv6Addr::LOCALHOST), prefix: 128 },
        ]
    }
}

/// An IP network in CIDR notation (`10.0.0.0/8`); an address without `/len` is a network of that address only.
/// An IPv4 network also contains the IPv4-mapped IPv6 form of its addresses (`::ffff:10.1.2.3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IpNetwork {
    /// The network address, with the host bits cleared.
    addr: IpAddr,
    /// The prefix length.
    prefix: u8,
}

/// A `TrustedNetworks` entry that is not an IP network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid network {value:?} in [API] TrustedNetworks: {reason}; write CIDR, e.g. \"10.0.0.0/8\" or \"fd00::/8\""
)]
pub struct InvalidNetwork {
    /// The value found in the config.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

impl IpNetwork {
    /// Whether `ip` lies in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V6(v6)) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            _ => ip,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => mask_v4(u32::from(ip), self.prefix) == u32::from(net),
            (IpAddr::V6(net), IpAddr::V6(ip)) => mask_v6(u128::from(ip), self.prefix) == u128::from(net),
            _ => false,
        }
    }
}

fn mask_v4(bits: u32, prefix: u8) -> u32 {
    if prefix == 0 { 0 } else { bits & (u32::MAX << (32 - u32::from(prefix))) }
}

fn mask_v6(bits: u128, prefix: u8) -> u128 {
    if prefix == 0 { 0 } else { bits & (u128::MAX << (128 - u32::from(prefix))) }
}

impl FromStr for IpNetwork {
    type Err = InvalidNetwork;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: String| InvalidNetwork { value: value.to_owned(), reason };
        let (addr_text, prefix_text) = match value.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (value, None),
        };
        let addr: IpAddr =
            addr_text.trim().parse().map_err(|_| invalid(format!("{addr_text:?} is not an IP address")))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix_text {
            None => max,
            Some(text) => match text.trim().parse::<u8>() {
                Ok(prefix) if prefix <= max => prefix,
                _ => return Err(invalid(format!("prefix length {text:?} is not 0 to {max}"))),
            },
        };
        let addr = match addr {
            IpAddr::V4(v4) => IpAddr::V4(mask_v4(u32::from(v4), prefix).into()),
            IpAddr::V6(v6) => IpAddr::V6(mask_v6(u128::from(v6), prefix).into()),
        };
        Ok(IpNetwork { addr, prefix })
    }
}

impl TryFrom<String> for IpNetwork {
    type Error = InvalidNetwork;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<IpNetwork> for String {
    fn from(network: IpNetwork) -> String {
        network.to_string()
    }
}

impl fmt::Display for IpNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> IpNetwork {
        text.parse().unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_network_contains_exactly_its_addresses() {
        let ten = net("10.0.0.0/8");
        assert!(ten.contains(ip("10.255.1.2")));
        assert!(!ten.contains(ip("11.0.0.1")));
        assert!(ten.contains(ip("::ffff:10.1.2.3")), "IPv4-mapped IPv6 peers count as IPv4");
        assert!(!ten.contains(ip("fd00::1")));
        assert!(net("127.0.0.1").contains(ip("127.0.0.1")));
        assert!(!net("127.0.0.1").contains(ip("127.0.0.2")));
        assert!(net("fd00::/8").contains(ip("fd12::7")));
        assert!(!net("fd00::/8").contains(ip("fe80::1")));
        assert!(net("0.0.0.0/0").contains(ip("8.8.8.8")));
    }

    #[test]
    fn host_bits_are_cleared_and_shown_canonically() {
        assert_eq!(net("10.1.2.3/8").to_string(), "10.0.0.0/8");
        assert_eq!(net(" 192.168.1.7 ").to_string(), "192.168.1.7/32");
    }

    #[test]
    fn invalid_networks_are_refused_with_the_value_and_an_example() {
        for bad in ["10.0.0.0/33", "fd00::/129", "10.0.0/8", "example.com/8", "10.0.0.0/x", ""] {
            let message = bad.parse::<IpNetwork>().unwrap_err().to_string();
            assert!(message.contains("TrustedNetworks") && message.contains("10.0.0.0/8"), "{message}");
        }
    }
}
