//! `[[Miners]]`: the miner actors this manager allocates sectors for.

use serde::{Deserialize, Serialize};

use super::ignored::{Ignored, Warnings};
use super::seal_proof::{seal_proof_for_size, seal_proof_hint, sector_size_of};
use crate::sectors::{MAX_SECTOR_NUMBER, NumberRange};

/// One configured miner, validated: its actor and the seal proof `AllocateSector` hands out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MinerConfig {
    /// `Actor`: the miner actor ID (1000 for `t01000`); unique.
    pub actor: u64,
    /// `SealProof` (or the one `SectorSize` stands for): the registered seal proof `AllocateSector` hands out
    /// (8 = 32 GiB V1_1).
    pub seal_proof: i64,
    /// `[Miners.Sector]`: which sector numbers the miner gets, and whether it gets any.
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
            ("[Miners.SnapUp]", &self.snap_up),
            ("[Miners.Commitment]", &self.commitment),
            ("[Miners.PoSt]", &self.post),
            ("[Miners.Proof]", &self.proof),
            ("[Miners.Sealing]", &self.sealing),
            ("[Miners.Sector] EnableDeals", &self.sector.enable_deals),
            ("[Miners.Sector] LifetimeDays", &self.sector.lifetime_days),
        ] {
            warnings.ignored(name, section);
        }
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
        self.sector.check_range().map_err(|(name, reason)| (key(&format!("Sector.{name}")), reason))?;
        Ok(Some(MinerConfig { actor, seal_proof, sector: self.sector }))
    }
}

/// `[Miners.Sector]`, with the Go manager's keys and defaults (`damocles-manager/modules/config.go:349-374`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "PascalCase")]
pub struct MinerSectorConfig {
    /// `InitNumber`: numbers handed out are greater than this, unless `MinNumber` is set; default 0.
    pub init_number: u64,
    /// `MinNumber`: numbers handed out are greater than this; replaces `InitNumber` when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_number: Option<u64>,
    /// `MaxNumber`: no number handed out is greater than this; a miner whose range is full is skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_number: Option<u64>,
    /// `Enabled`: whether `AllocateSector` may pick this miner at all; default true.
    pub enabled: bool,
    /// `EnableDeals` (Go only: deal matching): accepted and named in the ignored-warning.
    pub enable_deals: Ignored,
    /// `LifetimeDays` (Go only: the sector lifetime of pre-commits): accepted and named in the ignored-warning.
    pub lifetime_days: Ignored,
    /// `Verbose`: log at warn level when the miner is skipped because its range is full.
    pub verbose: bool,
}

impl Default for MinerSectorConfig {
    fn default() -> Self {
        MinerSectorConfig {
            init_number: 0,
            min_number: None,
            max_number: None,
            enabled: true,
            enable_deals: Ignored::default(),
            lifetime_days: Ignored::default(),
            verbose: false,
        }
    }
}

impl MinerSectorConfig {
    /// The numbers this miner may be given: above `MinNumber` (or `InitNumber`), at most `MaxNumber`
    /// (`damocles-manager/modules/impl/sectors/mgr.go:64-80`).
    pub fn number_range(&self) -> NumberRange {
        NumberRange {
            floor: self.min_number.unwrap_or(self.init_number),
            max: Some(self.max_number.unwrap_or(MAX_SECTOR_NUMBER)),
        }
    }

    /// Refuses a range that cannot hold a single number: `MaxNumber` above [`MAX_SECTOR_NUMBER`], or a floor
    /// (`MinNumber`, else `InitNumber`) at or above the limit. `(key, reason)` otherwise.
    fn check_range(&self) -> Result<(), (&'static str, String)> {
        if let Some(max) = self.max_number.filter(|&max| max > MAX_SECTOR_NUMBER) {
            return Err((
                "MaxNumber",
                format!("{max} is above Filecoin's largest sector number {MAX_SECTOR_NUMBER} (2^63-1)"),
            ));
        }
        let limit = self.max_number.unwrap_or(MAX_SECTOR_NUMBER);
        let (name, floor) = match self.min_number {
            Some(min) => ("MinNumber", min),
            None => ("InitNumber", self.init_number),
        };
        if floor >= limit {
            let bound = match self.max_number {
                Some(max) => format!("MaxNumber = {max}"),
                None => format!("Filecoin's largest sector number {MAX_SECTOR_NUMBER} (2^63-1)"),
            };
            return Err((
                name,
                format!("numbers are handed out above {floor} and at most up to {bound}: no number fits; lower {name}"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("/etc/damocles/sector-manager.cfg")).map_err(|err| err.to_string())
    }

    #[test]
    fn go_sector_keys_parse_with_go_defaults() {
        let config = parse(
            "[[Miners]]\nActor = 1000\nSealProof = 8\n[Miners.Sector]\nInitNumber = 5\nMinNumber = 10\n\
             MaxNumber = 1000000\nEnabled = false\nEnableDeals = true\nLifetimeDays = 180\nVerbose = true\n\
             [[Miners]]\nActor = 1001\nSealProof = 8\n",
        )
        .unwrap();
        let sector = &config.miners[0].sector;
        assert!(!sector.enabled && sector.verbose);
        assert!(sector.enable_deals.is_present() && sector.lifetime_days.is_present());
        let warnings = config.warnings.join("\n");
        for ignored in ["[Miners.Sector] EnableDeals", "[Miners.Sector] LifetimeDays"] {
            assert!(warnings.contains(&crate::config::ignored_warning(ignored)), "{warnings}");
        }
        assert!(!warnings.contains("MinNumber") && !warnings.contains("MaxNumber"), "honoured keys: {warnings}");
        assert_eq!(sector.number_range(), NumberRange { floor: 10, max: Some(1_000_000) }, "MinNumber wins");
        let default = &config.miners[1].sector;
        assert_eq!(default, &MinerSectorConfig::default());
        assert!(default.enabled);
        assert_eq!(default.number_range(), NumberRange { floor: 0, max: Some(MAX_SECTOR_NUMBER) });
        let init_only = parse("[[Miners]]\nActor = 1\nSealProof = 8\n[Miners.Sector]\nInitNumber = 7\n").unwrap();
        assert_eq!(init_only.miners[0].sector.number_range(), NumberRange { floor: 7, max: Some(MAX_SECTOR_NUMBER) });
    }

    #[test]
    fn a_number_range_that_cannot_hold_a_number_is_refused_naming_the_key() {
        let sector = |keys: &str| parse(&format!("[[Miners]]\nActor = 1\nSealProof = 8\n[Miners.Sector]\n{keys}\n"));
        let err = sector("MinNumber = 9223372036854775807").unwrap_err();
        assert!(err.contains("Miners[0].Sector.MinNumber") && err.contains("2^63-1"), "{err}");
        let err = sector("InitNumber = 9223372036854775807").unwrap_err();
        assert!(err.contains("Miners[0].Sector.InitNumber"), "{err}");
        let err = sector("MinNumber = 10\nMaxNumber = 10").unwrap_err();
        assert!(err.contains("MinNumber") && err.contains("MaxNumber = 10"), "{err}");
        assert!(sector("MinNumber = 9223372036854775806").is_ok(), "one number left fits");
        assert!(sector("MinNumber = 9\nMaxNumber = 10").is_ok());
    }

    #[test]
    fn a_misspelt_or_negative_sector_key_is_an_error_naming_it() {
        let err = parse("[[Miners]]\nActor = 1\nSealProof = 8\n[Miners.Sector]\nMaxNumbr = 3\n").unwrap_err();
        assert!(err.contains("MaxNumbr"), "{err}");
        let err = parse("[[Miners]]\nActor = 1\nSealProof = 8\n[Miners.Sector]\nMinNumber = -1\n").unwrap_err();
        assert!(err.contains("MinNumber") || err.contains("-1"), "{err}");
    }
}
