//! Registered seal proofs and sector sizes: what `[[Miners]] SealProof` may be, and the `SectorSize` shorthand.
//! The Go manager asks the chain for a miner's seal proof; damocles-rs has no chain, so the config says it.

/// Every registered seal proof damocles-worker knows (`damocles-worker/src/types.rs:23`, `SealProof` as
/// `repr(i64)` from 0): `(value, sector size, proof version)`.
pub const SEAL_PROOFS: [(i64, &str, &str); 20] = [
    (0, "2KiB", "V1"),
    (1, "8MiB", "V1"),
    (2, "512MiB", "V1"),
    (3, "32GiB", "V1"),
    (4, "64GiB", "V1"),
    (5, "2KiB", "V1_1"),
    (6, "8MiB", "V1_1"),
    (7, "512MiB", "V1_1"),
    (8, "32GiB", "V1_1"),
    (9, "64GiB", "V1_1"),
    (10, "2KiB", "V1_1 SyntheticPoRep"),
    (11, "8MiB", "V1_1 SyntheticPoRep"),
    (12, "512MiB", "V1_1 SyntheticPoRep"),
    (13, "32GiB", "V1_1 SyntheticPoRep"),
    (14, "64GiB", "V1_1 SyntheticPoRep"),
    (15, "2KiB", "V1_2 NonInteractivePoRep"),
    (16, "8MiB", "V1_2 NonInteractivePoRep"),
    (17, "512MiB", "V1_2 NonInteractivePoRep"),
    (18, "32GiB", "V1_2 NonInteractivePoRep"),
    (19, "64GiB", "V1_2 NonInteractivePoRep"),
];

/// The seal proof `SectorSize` stands for: the V1_1 proof of that size (what the Go manager picks on current
/// networks), or `None` for a size there is no proof for. Case is ignored (`"32gib"`).
pub fn seal_proof_for_size(size: &str) -> Option<i64> {
    SEAL_PROOFS
        .iter()
        .find(|(_, proof_size, version)| *version == "V1_1" && proof_size.eq_ignore_ascii_case(size.trim()))
        .map(|(value, _, _)| *value)
}

/// The sector size of seal proof `value`, or `None` when it is not a registered seal proof.
pub fn sector_size_of(value: i64) -> Option<&'static str> {
    SEAL_PROOFS.iter().find(|(v, _, _)| *v == value).map(|(_, size, _)| *size)
}

/// Whether seal proof `value` is a NonInteractivePoRep proof (Go `abi.RegisteredSealProof.IsNonInteractive`):
/// its seed needs no pre-commit on chain.
pub fn is_non_interactive(value: i64) -> bool {
    SEAL_PROOFS.iter().any(|(v, _, version)| *v == value && version.ends_with("NonInteractivePoRep"))
}

/// The hint every seal-proof error ends with: which value matches which sector size.
pub fn seal_proof_hint() -> String {
    let v1_1: Vec<String> = SEAL_PROOFS
        .iter()
        .filter(|(_, _, version)| *version == "V1_1")
        .map(|(value, size, _)| format!("{value} = {size}"))
        .collect();
    format!(
        "set SealProof to the miner's registered seal proof ({}; V1_1, what current networks use; 0-4 V1, \
         10-14 SyntheticPoRep, 15-19 NonInteractivePoRep in the same size order), or SectorSize = \"32GiB\" \
         (2KiB, 8MiB, 512MiB, 32GiB, 64GiB) for the V1_1 proof of that size",
        v1_1.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_map_to_the_v1_1_proofs_and_back() {
        assert_eq!(seal_proof_for_size("32GiB"), Some(8));
        assert_eq!(seal_proof_for_size("64gib"), Some(9));
        assert_eq!(seal_proof_for_size("2KiB"), Some(5));
        assert_eq!(seal_proof_for_size("1TiB"), None);
        assert_eq!(sector_size_of(8), Some("32GiB"));
        assert_eq!(sector_size_of(17), Some("512MiB"));
        assert_eq!(sector_size_of(20), None);
        assert!(seal_proof_hint().contains("8 = 32GiB") && seal_proof_hint().contains("5 = 2KiB"));
    }
}
