//! `[[Miners]]`: the miner actors this manager allocates sectors for.

use serde::{Deserialize, Serialize};

use super::ignored::{Ignored, Warnings};
use super::seal_proof::{seal_proof_for_size, seal_proof_hint, sector_size_of};

/// One configured miner, validated: its actor and the seal proof `AllocateSector` hands out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MinerConfig {
    /// `Actor`: the miner actor ID (1000 for `t01000`); unique.
    pub actor: u64,
    /// `SealProof` (or the one `SectorSize` stands for): the registered seal proof `AllocateSector` hands out
    /// (8 = 32 GiB V1_1).
    pub seal_proof: i64,
    /// `[Miners.Sector]`.
    pub sector: MinerSectorConfig,
}

/// One `[[Miners]]` entry as written. The Go manager's per-miner sections that damocles-rs does not implement are
/// accepted and named in a warning.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "PascalCase")]
pub struct MinerEntry {
    /// `Actor`: required (an entry without Actor, SealProof and SectorSize is the Go default config's empty
    /// example block and is skipped with a warning).
    pub actor: Option<u64>,
    /// `SealProof`: the registered seal proof (0-19); this or `SectorSize` is required, since there is no chain to
    /// ask.
    pub seal_proof: Option<i64>,
    /// `SectorSize`: `"2KiB"`, `"8MiB"`, `"512MiB"`, `"32GiB"` or `"64GiB"`, standing for the V1_1 seal proof of
    /// that size.
    pub sector_size: Option<String>,
    /// `[Miners.Sector]`.
    pub sector: MinerSectorConfig,
    /// `[Miners.SnapUp]` (Go only).
    pub snap_up: Ignored,
    /// `[Miners.Commitment]` (Go only).
    pub commitment: Ignored,
    /// `[Miners.PoSt]` (Go only).
    #[serde(rename = "PoSt")]
    pub post: Ignored,
    /// `[Miners.Proof]` (Go only).
    pub proof: Ignored,
    /// `[Miners.Sealing]` (Go only).
    pub sealing: Ignored,
}

impl MinerEntry {
    /// The validated miner, `Ok(None)` for an empty example block, or `(key, reason)`; `index` counts from 0.
    pub fn resolve(self, index: usize, warnings: &mut Warnings) -> Result<Option<MinerConfig>, (String, String)> {
        let key = |name: &str| format!("Miners[{index}].{name}");
        for (name, section) in [
            ("SnapUp", &self.snap_up),
            ("Commitment", &self.commitment),
            ("PoSt", &self.post),
            ("Proof", &self.proof),
            ("Sealing", &self.sealing),
        ] {
            warnings.ignored(&format!("[Miners.{name}]"), section);
        }
        self.sector.warn_ignored(warnings);
        let Some(actor) = self.actor else {
            if self.seal_proof.is_none() && self.sector_size.is_none() {
                warnings.add(format!(
                    "ignored: [[Miners]] entry #{index} has no Actor (like the Go default config's example); \
                     set Actor and SealProof to allocate sectors for a miner"
                ));
                return Ok(None);
            }
            return Err((key("Actor"), "missing: set the miner actor ID (1000 for t01000)".to_owned()));
        };
        let from_size =
            match &self.sector_size {
                None => None,
                Some(size) => Some(seal_proof_for_size(size).ok_or_else(|| {
                    (key("SectorSize"), format!("{size:?} is not a sector size; {}", seal_proof_hint()))
                })?),
            };
        let seal_proof = match (self.seal_proof, from_size) {
            (Some(proof), size_proof) => {
                let Some(size) = sector_size_of(proof) else {
                    return Err((
                        key("SealProof"),
                        format!("{proof} is not a registered seal proof; {}", seal_proof_hint()),
                    ));
                };
                if let (Some(size_proof), Some(given)) = (size_proof, &self.sector_size)
                    && sector_size_of(size_proof) != Some(size)
                {
                    return Err((
                        key("SectorSize"),
                        format!(
                            "SectorSize = {given:?} contradicts SealProof = {proof} ({size} sectors); keep one of them"
                        ),
                    ));
                }
                proof
            }
            (None, Some(proof)) => proof,
            (None, None) => {
                return Err((
                    key("SealProof"),
                    format!(
                        "missing for miner t0{actor}: damocles-rs has no chain to ask for the miner's seal proof; {}",
                        seal_proof_hint()
                    ),
                ));
            }
        };
        Ok(Some(MinerConfig { actor, seal_proof, sector: self.sector }))
    }
}

// ---------------------------------------------------------------------------------------------------------------
// `[Miners.Sector]`: the sector-number range and allocation switch belong to the durability work, which gives them
// Go's semantics. Until that lands here, the Go keys are accepted (typos are still errors) and the section is named
// in the ignored-warning when present.
// ---------------------------------------------------------------------------------------------------------------

/// `[Miners.Sector]` as the Go manager writes it (Go `modules/config.go:349`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "PascalCase")]
pub struct MinerSectorConfig {
    /// `InitNumber`.
    pub init_number: Option<u64>,
    /// `MinNumber`.
    pub min_number: Option<u64>,
    /// `MaxNumber`.
    pub max_number: Option<u64>,
    /// `Enabled`.
    pub enabled: Option<bool>,
    /// `EnableDeals`.
    pub enable_deals: Option<bool>,
    /// `LifetimeDays`.
    pub lifetime_days: Option<u64>,
    /// `Verbose`.
    pub verbose: Option<bool>,
}

impl MinerSectorConfig {
    fn warn_ignored(&self, warnings: &mut Warnings) {
        if *self != MinerSectorConfig::default() {
            warnings.add(super::ignored::ignored_warning("[Miners.Sector]"));
        }
    }
}
