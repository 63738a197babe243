//! `[API]`: the JSON-RPC listener and the limits that keep it answering.

use serde::{Deserialize, Serialize};

/// `[API]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "PascalCase")]
pub struct ApiConfig {
    /// `Listen`: the JSON-RPC socket address; default `127.0.0.1:1789`.
    pub listen: String,
    /// `HeaderReadTimeoutSecs`: a client must send a request's whole header within this many seconds, or its
    /// connection is closed (also an idle kept-alive connection); default 20.
    pub header_read_timeout_secs: u64,
    /// `MaxConnections`: open connections at most; one more is answered `503` with `Retry-After` and closed;
    /// default 1000.
    pub max_connections: u32,
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
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: "127.0.0.1:1789".to_owned(),
            header_read_timeout_secs: 20,
            max_connections: 1000,
            max_request_body_bytes: 10 << 20,
            max_response_body_bytes: 1 << 30,
            max_batch_requests: 100,
            max_piece_transfers: 64,
            piece_transfer_idle_secs: 60,
        }
    }
}
