//! The store manager end to end on built-in local stores: pieces streamed in and out through the public API,
//! persist-store reservations, and the `StoreList` wire shape surviving a JSON round trip.

use std::io::{self, Read};

use manager::filestore::{FileStoreError, StoreDetailedInfo, StoreKind, StoreManager, StoreSpec};
use manager::plugins::PluginRegistry;
use manager_plugin::filestore::StoreConfig;
use manager_plugin::sector::SectorId;

fn spec(root: &std::path::Path, name: &str) -> StoreSpec {
    StoreSpec {
        config: StoreConfig { name: name.into(), path: root.join(name).display().to_string(), ..Default::default() },
        ..Default::default()
    }
}

/// `len` bytes of a repeating, position-dependent pattern, produced on the fly.
struct Pattern {
    pos: u64,
    len: u64,
}

impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = usize::try_from((self.len - self.pos).min(buf.len() as u64)).unwrap_or(buf.len());
        for (i, byte) in buf[..n].iter_mut().enumerate() {
            *byte = pattern_byte(self.pos + i as u64);
        }
        self.pos += n as u64;
        Ok(n)
    }
}

fn pattern_byte(pos: u64) -> u8 {
    (pos.wrapping_mul(31) ^ (pos >> 11)) as u8
}

#[test]
fn pieces_stream_through_local_piece_stores() {
    let root = tempfile::tempdir().unwrap();
    let mut archive = spec(root.path(), "archive");
    std::fs::create_dir_all(&archive.config.path).unwrap();
    std::fs::write(root.path().join("archive/legacy.car"), b"old deal").unwrap();
    archive.config.read_only = true;
    let stores =
        StoreManager::open(vec![archive, spec(root.path(), "pieces")], Vec::new(), &PluginRegistry::empty()).unwrap();

    let len = 5 * (1 << 20) + 123;
    let (store, written) = stores.put_piece("baga6ea4seaq/piece", &mut Pattern { pos: 0, len }).unwrap();
    assert_eq!((store.as_str(), written), ("pieces", len));
    assert!(root.path().join("pieces/baga6ea4seaq/piece").is_file());

    let (mut reader, size) = stores.open_piece_with_size("baga6ea4seaq/piece").unwrap();
    assert_eq!(size, len);
    let mut buf = vec![0u8; 64 * 1024];
    let mut pos = 0u64;
    loop {
        let n = reader.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        assert!(buf[..n].iter().enumerate().all(|(i, b)| *b == pattern_byte(pos + i as u64)), "at {pos}");
        pos += n as u64;
    }
    assert_eq!(pos, len);

    let mut legacy = String::new();
    stores.open_piece("legacy").unwrap().read_to_string(&mut legacy).unwrap();
    assert_eq!(legacy, "old deal");
    let missing = stores.open_piece("absent").err().unwrap();
    assert!(missing.is_not_found(), "{missing}");
    assert!(matches!(missing, FileStoreError::PieceNotFound { .. }));
}

#[test]
fn persist_stores_reserve_list_and_release() {
    let root = tempfile::tempdir().unwrap();
    let mut fast = spec(root.path(), "fast");
    fast.deny_miners = vec![1001];
    let stores =
        StoreManager::open(Vec::new(), vec![fast, spec(root.path(), "bulk")], &PluginRegistry::empty()).unwrap();

    let denied = SectorId { miner: 1001, number: 1 };
    let allowed = SectorId { miner: 1000, number: 1 };
    for _ in 0..10 {
        assert_eq!(stores.reserve(denied, 1 << 20, &[]).unwrap().unwrap().name, "bulk");
    }
    let picked = stores.reserve(allowed, 2 << 20, &[]).unwrap().unwrap();
    assert_eq!(stores.reserve(allowed, 2 << 20, &[]).unwrap().unwrap(), picked, "same sector, same store");
    assert_eq!(stores.basic_info(&picked.name), Some(picked.clone()));

    let json = serde_json::to_string(&stores.list()).unwrap();
    let listed: Vec<StoreDetailedInfo> = serde_json::from_str(&json).unwrap();
    assert_eq!(listed.iter().map(|s| s.kind).collect::<Vec<_>>(), [StoreKind::Persist, StoreKind::Persist]);
    assert_eq!(listed.iter().map(|s| s.reserved).sum::<u64>(), 3 << 20);
    assert_eq!(listed.iter().flat_map(|s| &s.reserved_by).count(), 2);

    assert!(stores.release(allowed));
    assert!(stores.release(denied));
    assert!(!stores.release(denied));
    assert!(stores.list().iter().all(|s| s.reserved == 0 && s.reserved_by.is_empty()));
}
