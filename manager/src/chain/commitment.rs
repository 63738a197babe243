//! Sector commitments as CIDs, as Go's `go-fil-commcid` makes them (`ReplicaCommitmentV1ToCID`,
//! `DataCommitmentV1ToCID`, used by `core.PreCommitOnChainInfo.IntoPreCommitInfo`, `core/types.go:263`): CIDv1,
//! codec `fil-commitment-sealed` (0xf102) with multihash `poseidon-bls12_381-a2-fc1` (0xb401) for CommR,
//! `fil-commitment-unsealed` (0xf101) with `sha2-256-trunc254-padded` (0x1012) for CommD, as base32 text.

use manager_plugin::sector::Cid;

/// Which commitment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commitment {
    /// CommR, the replica (sealed) commitment.
    Replica,
    /// CommD, the data (unsealed) commitment.
    Data,
}

impl Commitment {
    fn codes(self) -> (u64, u64) {
        match self {
            Commitment::Replica => (0xf102, 0xb401),
            Commitment::Data => (0xf101, 0x1012),
        }
    }
}

fn varint(mut n: u64, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// RFC 4648 base32, lower case, no padding, with the multibase prefix `b`.
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut text = String::from("b");
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            text.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        text.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    text
}

/// The CID of commitment `comm` of kind `kind`.
pub fn to_cid(kind: Commitment, comm: &[u8; 32]) -> Cid {
    let (codec, hash) = kind.codes();
    let mut bytes = Vec::with_capacity(40);
    varint(1, &mut bytes);
    varint(codec, &mut bytes);
    varint(hash, &mut bytes);
    varint(32, &mut bytes);
    bytes.extend_from_slice(comm);
    Cid { value: base32(&bytes) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The all-zero commitments, encoded independently (Python `base64.b32encode` over the varint bytes); every
    /// CommR CID Go writes starts `bagboea4b5abc`, every CommD CID `baga6ea4seaq`.
    #[test]
    fn commitments_encode_as_go_does() {
        let zeros = "a".repeat(52);
        assert_eq!(to_cid(Commitment::Replica, &[0; 32]).value, format!("bagboea4b5abc{zeros}"));
        assert_eq!(to_cid(Commitment::Data, &[0; 32]).value, format!("baga6ea4seaq{zeros}"));
    }
}
