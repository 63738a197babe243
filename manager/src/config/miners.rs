//! `[[Miners]]`: the miner actors this manager allocates sectors for.

use serde::{Deserialize, Serialize};

/// One `[[Miners]]` entry; both keys are required.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct MinerConfig {
    /// `Actor`: the miner actor ID (1000 for `t01000`); unique.
    pub actor: u64,
    /// `SealProof`: the registered seal proof `AllocateSector` hands out (8 = 32 GiB V1_1).
    pub seal_proof: i64,
}
