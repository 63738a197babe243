//! `[MockChain]`: seal against the mock chain (`crate::chain::mock`) instead of none. For test clusters only:
//! nothing sealed against it can ever go on a real chain (`docs/sealing.md`).

use serde::{Deserialize, Serialize};

use super::ConfigDuration;

/// `[MockChain]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "PascalCase")]
pub struct MockChainConfig {
    /// `Enabled`: answer the chain-facing sealing methods with the mock chain; default false (they answer an
    /// error). `daemon run --mock-chain` sets it for one run.
    pub enabled: bool,
    /// `SeedDelay`: how long after a pre-commit landed its seed is ready (`WaitSeed` answers "wait" until then);
    /// a Go duration, default `"0s"`.
    pub seed_delay: ConfigDuration,
}

impl Default for MockChainConfig {
    fn default() -> Self {
        MockChainConfig { enabled: false, seed_delay: ConfigDuration::from_secs(0) }
    }
}
