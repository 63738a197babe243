//! `[API]`: the JSON-RPC listener.

use serde::{Deserialize, Serialize};

/// `[API]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "PascalCase")]
pub struct ApiConfig {
    /// `Listen`: the JSON-RPC socket address; default `127.0.0.1:1789`.
    pub listen: String,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig { listen: "127.0.0.1:1789".to_owned() }
    }
}
