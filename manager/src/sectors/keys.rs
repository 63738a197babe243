//! The layout of the `sectors` collection.
//!
//! Everything the state manager keeps lives in ONE collection, because the KV SPI's transactions span one
//! collection and every state change must commit together with its outbox event:
//!
//! | key                                    | value                                               |
//! |----------------------------------------|-----------------------------------------------------|
//! | `online/m-<miner>-n-<number>`          | [`SectorState`] JSON (PascalCase, as the Go manager) |
//! | `offline/m-<miner>-n-<number>`         | [`SectorState`] JSON                                |
//! | `next/<miner>`                         | next sector number to hand out, decimal text        |
//! | `outbox/<seq, 20-digit zero-padded>`   | `{"Seq":..,"Event":<SectorEvent>}`                   |
//! | `cursor/<target name>`                 | last seq delivered to that target, decimal text     |
//! | `index/<normal|upgrade>/m-<miner>-n-<number>` | `{"SealedFile":..,"CacheDir":..}` (`index.rs`) |
//!
//! The outbox seq is zero-padded to the 20 digits of `u64::MAX`, so byte order is numeric order.
//!
//! [`SectorState`]: manager_plugin::sector::SectorState

use manager_plugin::sector::{SectorId, WorkerState};

/// The collection holding sectors, counters, the outbox and delivery cursors.
pub const COLLECTION: &str = "sectors";

/// Prefix of the outbox entries.
pub(super) const OUTBOX_PREFIX: &str = "outbox/";

/// Prefix of the delivery cursors.
pub(super) const CURSOR_PREFIX: &str = "cursor/";

/// Digits of a zero-padded seq (`u64::MAX` has 20).
pub(super) const SEQ_DIGITS: usize = 20;

/// `online/` or `offline/`: the prefix of the sectors in `ws`.
pub(super) fn sector_prefix(ws: WorkerState) -> String {
    format!("{}/", ws.collection())
}

/// The key of sector `id` in state `ws`.
pub(super) fn sector_key(ws: WorkerState, id: SectorId) -> Vec<u8> {
    format!("{}/m-{}-n-{}", ws.collection(), id.miner, id.number).into_bytes()
}

/// The sector id of `key`, a key in state `ws` written by [`sector_key`]; `None` for any other key (also one
/// with leading zeros, which would not read back under the same key).
pub(super) fn parse_sector_key(ws: WorkerState, key: &[u8]) -> Option<SectorId> {
    let rest = key.strip_prefix(ws.collection().as_bytes())?.strip_prefix(b"/m-")?;
    let split = rest.windows(3).position(|w| w == b"-n-")?;
    let id = SectorId { miner: parse_decimal(&rest[..split])?, number: parse_decimal(&rest[split + 3..])? };
    (sector_key(ws, id) == key).then_some(id)
}

/// The key of `miner`'s next-number counter.
pub(super) fn next_key(miner: u64) -> Vec<u8> {
    format!("next/{miner}").into_bytes()
}

/// The key of sector `id`'s location of `kind` (`normal` or `upgrade`) in the sector indexer.
pub(super) fn index_key(kind: &str, id: SectorId) -> Vec<u8> {
    format!("index/{kind}/m-{}-n-{}", id.miner, id.number).into_bytes()
}

/// The key of outbox entry `seq`.
pub(super) fn outbox_key(seq: u64) -> Vec<u8> {
    format!("{OUTBOX_PREFIX}{seq:0SEQ_DIGITS$}").into_bytes()
}

/// The seq of an outbox key, or `None` for a key that is not one.
pub(super) fn parse_outbox_key(key: &[u8]) -> Option<u64> {
    let digits = key.strip_prefix(OUTBOX_PREFIX.as_bytes())?;
    if digits.len() != SEQ_DIGITS {
        return None;
    }
    parse_decimal(digits)
}

/// The key of target `name`'s delivery cursor.
pub(super) fn cursor_key(name: &str) -> Vec<u8> {
    format!("{CURSOR_PREFIX}{name}").into_bytes()
}

/// Parses an unsigned decimal made only of ASCII digits.
pub(super) fn parse_decimal(text: &[u8]) -> Option<u64> {
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// The other sector state.
pub(super) fn other_state(ws: WorkerState) -> WorkerState {
    match ws {
        WorkerState::Online => WorkerState::Offline,
        WorkerState::Offline => WorkerState::Online,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sector_keys_follow_the_go_layout_under_a_state_prefix() {
        let id = SectorId { miner: 1000, number: 7 };
        assert_eq!(sector_key(WorkerState::Online, id), b"online/m-1000-n-7");
        assert_eq!(sector_key(WorkerState::Offline, id), b"offline/m-1000-n-7");
    }

    #[test]
    fn sector_keys_parse_back_and_anything_else_is_refused() {
        let id = SectorId { miner: 1000, number: 7 };
        assert_eq!(parse_sector_key(WorkerState::Online, &sector_key(WorkerState::Online, id)), Some(id));
        let max = SectorId { miner: u64::MAX, number: u64::MAX };
        assert_eq!(parse_sector_key(WorkerState::Offline, &sector_key(WorkerState::Offline, max)), Some(max));
        for bad in
            [&b"online/m-1000-n-07"[..], b"online/m-1000-n-", b"online/m--n-7", b"online/m-1000-x-7", b"online/x"]
        {
            assert_eq!(parse_sector_key(WorkerState::Online, bad), None, "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(parse_sector_key(WorkerState::Offline, b"online/m-1000-n-7"), None);
    }

    #[test]
    fn outbox_keys_sort_numerically_and_parse_back() {
        assert!(outbox_key(9) < outbox_key(10));
        assert!(outbox_key(u64::MAX - 1) < outbox_key(u64::MAX));
        assert_eq!(parse_outbox_key(&outbox_key(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_outbox_key(&outbox_key(0)), Some(0));
        assert_eq!(parse_outbox_key(b"outbox/12"), None);
        assert_eq!(parse_outbox_key(b"outbox/0000000000000000000x"), None);
    }
}
