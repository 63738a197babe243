use std::collections::HashMap;
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use manager_plugin::StoreError;
use manager_plugin::filestore::{InstanceInfo, ObjectReader, ObjectStat, Store, StoreConfig};
use manager_plugin::sector::SectorId;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tempfile::TempDir;

use super::info::MinerPolicy;
use super::manager::ManagedStore;
use super::reserve::{Candidate, pick_weighted};
use super::*;
use crate::plugins::PluginRegistry;

fn sector(miner: u64, number: u64) -> SectorId {
    SectorId { miner, number }
}

/// A built-in store named `name` in its own directory under `dir`.
fn local(dir: &Path, name: &str) -> StoreSpec {
    let path = dir.join(name);
    std::fs::create_dir_all(&path).unwrap();
    StoreSpec {
        config: StoreConfig { name: name.into(), path: path.display().to_string(), ..Default::default() },
        ..Default::default()
    }
}

fn read_only(mut spec: StoreSpec) -> StoreSpec {
    spec.config.read_only = true;
    spec
}

fn weighted(mut spec: StoreSpec, weight: u32) -> StoreSpec {
    spec.config.weight = weight;
    spec
}

fn open(piece: Vec<StoreSpec>, persist: Vec<StoreSpec>) -> StoreManager {
    StoreManager::open(piece, persist, &PluginRegistry::empty()).unwrap()
}

fn persist_stores(specs: impl IntoIterator<Item = StoreSpec>) -> StoreManager {
    open(Vec::new(), specs.into_iter().collect())
}

fn reserved_on(mgr: &StoreManager, sector: SectorId, size: u64) -> Option<String> {
    mgr.reserve(sector, size, &[]).unwrap().map(|info| info.name)
}

fn read_all(mut reader: impl Read) -> Vec<u8> {
    let mut data = Vec::new();
    reader.read_to_end(&mut data).unwrap();
    data
}

/// An in-memory store whose free space the test sets.
struct FakeStore {
    name: String,
    free: u64,
    objects: Mutex<HashMap<String, Vec<u8>>>,
    fail_puts: bool,
}

impl FakeStore {
    fn managed(kind: StoreKind, name: &str, free: u64) -> ManagedStore {
        FakeStore::build(kind, name, free, false)
    }

    fn build(kind: StoreKind, name: &str, free: u64, fail_puts: bool) -> ManagedStore {
        let store = FakeStore { name: name.into(), free, objects: Mutex::default(), fail_puts };
        let config = store.instance_config();
        ManagedStore::new(kind, config, String::new(), MinerPolicy::default(), Arc::new(store), Default::default())
    }
}

impl Store for FakeStore {
    fn type_name(&self) -> String {
        "fake".into()
    }
    fn version(&self) -> String {
        "0".into()
    }
    fn instance(&self) -> String {
        self.name.clone()
    }
    fn instance_config(&self) -> StoreConfig {
        StoreConfig { name: self.name.clone(), path: format!("/fake/{}", self.name), ..Default::default() }
    }
    fn instance_info(&self) -> Result<InstanceInfo, StoreError> {
        Ok(InstanceInfo { config: self.instance_config(), total: self.free * 2, free: self.free, used: self.free })
    }
    fn get(&self, path: &str) -> Result<ObjectReader, StoreError> {
        let objects = self.objects.lock().unwrap();
        let data = objects.get(path).ok_or_else(|| StoreError::NotFound(path.into()))?;
        Ok(Box::new(Cursor::new(data.clone())))
    }
    fn del(&self, path: &str) -> Result<(), StoreError> {
        self.objects.lock().unwrap().remove(path).map(|_| ()).ok_or_else(|| StoreError::NotFound(path.into()))
    }
    fn stat(&self, path: &str) -> Result<ObjectStat, StoreError> {
        let objects = self.objects.lock().unwrap();
        let data = objects.get(path).ok_or_else(|| StoreError::NotFound(path.into()))?;
        Ok(ObjectStat { size: data.len() as u64 })
    }
    fn put(&self, path: &str, reader: &mut dyn Read) -> Result<u64, StoreError> {
        if self.fail_puts {
            return Err(StoreError::Io("disk on fire".into()));
        }
        let data = read_all(reader);
        let len = data.len() as u64;
        self.objects.lock().unwrap().insert(path.into(), data);
        Ok(len)
    }
    fn full_path(&self, path: &str) -> Result<PathBuf, StoreError> {
        Ok(PathBuf::from(path))
    }
}

// ---- persist-store selection ----

#[test]
fn deny_list_wins_over_allow_list() {
    let dir = TempDir::new().unwrap();
    let mut both = local(dir.path(), "both");
    both.allow_miners = vec![1000];
    both.deny_miners = vec![1000];
    let mgr = persist_stores([both, local(dir.path(), "open")]);
    for number in 0..50 {
        assert_eq!(reserved_on(&mgr, sector(1000, number), 1).as_deref(), Some("open"));
    }
}

#[test]
fn an_allow_list_admits_only_its_miners() {
    let dir = TempDir::new().unwrap();
    let mut only_1001 = local(dir.path(), "only-1001");
    only_1001.allow_miners = vec![1001];
    let mgr = persist_stores([only_1001]);
    assert_eq!(reserved_on(&mgr, sector(1000, 1), 1), None);
    assert_eq!(reserved_on(&mgr, sector(1001, 1), 1).as_deref(), Some("only-1001"));
}

#[test]
fn read_only_persist_stores_are_never_picked() {
    let dir = TempDir::new().unwrap();
    let mgr = persist_stores([read_only(local(dir.path(), "ro")), local(dir.path(), "rw")]);
    for number in 0..50 {
        assert_eq!(reserved_on(&mgr, sector(1000, number), 1).as_deref(), Some("rw"));
    }
    let only_ro = persist_stores([read_only(local(dir.path(), "ro"))]);
    assert_eq!(reserved_on(&only_ro, sector(1000, 1), 1), None);
}

#[test]
fn a_store_without_enough_free_space_is_passed_over() {
    let dir = TempDir::new().unwrap();
    let mgr = persist_stores([local(dir.path(), "a")]);
    let free = mgr.list()[0].free;
    // Far more than the volume has, whatever else writes to it meanwhile.
    let too_big = free.saturating_mul(2).clamp(1 << 45, MAX_RESERVATION);
    assert_eq!(reserved_on(&mgr, sector(1000, 1), too_big), None);
    assert_eq!(reserved_on(&mgr, sector(1000, 2), 1).as_deref(), Some("a"));
}

#[test]
fn reservations_count_against_free_space() {
    let mgr = StoreManager::from_opened(
        Vec::new(),
        vec![FakeStore::managed(StoreKind::Persist, "a", 100), FakeStore::managed(StoreKind::Persist, "b", 100)],
    );
    let first = reserved_on(&mgr, sector(1000, 1), 60).unwrap();
    let second = reserved_on(&mgr, sector(1000, 2), 60).unwrap();
    assert_ne!(first, second, "60 + 60 bytes do not fit in one 100-byte store");
    assert_eq!(reserved_on(&mgr, sector(1000, 3), 60), None);
    assert!(reserved_on(&mgr, sector(1000, 4), 40).is_some());
}

#[test]
fn candidates_restrict_the_choice_and_unknown_names_are_ignored() {
    let dir = TempDir::new().unwrap();
    let mgr = persist_stores([local(dir.path(), "a"), local(dir.path(), "b")]);
    for number in 0..20 {
        let picked = mgr.reserve(sector(1000, number), 1, &["b".into(), "nope".into()]).unwrap();
        assert_eq!(picked.unwrap().name, "b");
    }
    assert_eq!(mgr.reserve(sector(1000, 99), 1, &["nope".into()]).unwrap(), None);
}

#[test]
fn weighted_pick_favours_the_heavier_store() {
    let dir = TempDir::new().unwrap();
    let mgr = persist_stores([weighted(local(dir.path(), "light"), 1), weighted(local(dir.path(), "heavy"), 9)]);
    let mut rng = StdRng::seed_from_u64(7);
    let heavy = (0..2000)
        .filter(|&n| mgr.reserve_with_rng(&mut rng, sector(1000, n), 1, &[]).unwrap().unwrap().name == "heavy")
        .count();
    assert!((1600..=1940).contains(&heavy), "heavy store won {heavy} of 2000");
}

#[test]
fn weight_zero_counts_as_one() {
    let candidates = [Candidate { store: 0, weight: 1 }, Candidate { store: 1, weight: 1 }];
    let mut rng = StdRng::seed_from_u64(1);
    let firsts = (0..2000).filter(|_| pick_weighted(&candidates, &mut rng) == Some(0)).count();
    assert!((800..=1200).contains(&firsts), "{firsts}");
    assert_eq!(pick_weighted(&[], &mut rng), None);

    let dir = TempDir::new().unwrap();
    let mgr = persist_stores([weighted(local(dir.path(), "zero"), 0), weighted(local(dir.path(), "one"), 1)]);
    let zeros = (0..200).filter(|&n| reserved_on(&mgr, sector(1000, n), 1).as_deref() == Some("zero")).count();
    assert!((40..=160).contains(&zeros), "{zeros}");
}

#[test]
fn reserving_twice_for_a_sector_returns_the_same_store_and_counts_once() {
    let mgr = StoreManager::from_opened(
        Vec::new(),
        vec![FakeStore::managed(StoreKind::Persist, "a", 100), FakeStore::managed(StoreKind::Persist, "b", 100)],
    );
    let first = reserved_on(&mgr, sector(1000, 1), 70).unwrap();
    for _ in 0..20 {
        assert_eq!(reserved_on(&mgr, sector(1000, 1), 70).as_deref(), Some(first.as_str()));
    }
    let listed = mgr.list();
    let total_reserved: u64 = listed.iter().map(|s| s.reserved).sum();
    assert_eq!(total_reserved, 70);
}

#[test]
fn concurrent_reservations_for_one_sector_agree() {
    let dir = TempDir::new().unwrap();
    let mgr = Arc::new(persist_stores((0..4).map(|i| local(dir.path(), &format!("s{i}")))));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let mgr = Arc::clone(&mgr);
            std::thread::spawn(move || reserved_on(&mgr, sector(1000, 7), 10).unwrap())
        })
        .collect();
    let picked: Vec<String> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(picked.iter().all(|p| *p == picked[0]), "{picked:?}");
    assert_eq!(mgr.list().iter().map(|s| s.reserved).sum::<u64>(), 10);
}

#[test]
fn a_reservation_moves_when_its_store_is_no_longer_a_candidate() {
    let mgr = StoreManager::from_opened(
        Vec::new(),
        vec![FakeStore::managed(StoreKind::Persist, "a", 100), FakeStore::managed(StoreKind::Persist, "b", 100)],
    );
    let s = sector(1000, 1);
    assert_eq!(mgr.reserve(s, 80, &["a".into()]).unwrap().unwrap().name, "a");
    assert_eq!(mgr.reserve(s, 80, &["b".into()]).unwrap().unwrap().name, "b");
    let listed = mgr.list();
    assert_eq!(listed.iter().map(|i| (i.name.as_str(), i.reserved)).collect::<Vec<_>>(), [("a", 0), ("b", 80)]);
}

#[test]
fn release_frees_the_reservation() {
    let mgr = StoreManager::from_opened(Vec::new(), vec![FakeStore::managed(StoreKind::Persist, "a", 100)]);
    assert!(reserved_on(&mgr, sector(1000, 1), 80).is_some());
    assert_eq!(reserved_on(&mgr, sector(1000, 2), 80), None);
    assert!(mgr.release(sector(1000, 1)));
    assert!(!mgr.release(sector(1000, 1)), "a second release finds nothing");
    assert_eq!(mgr.list()[0].reserved, 0);
    assert_eq!(reserved_on(&mgr, sector(1000, 2), 80).as_deref(), Some("a"));
}

// ---- pieces ----

#[test]
fn pieces_round_trip_and_fall_back_to_car() {
    let dir = TempDir::new().unwrap();
    let mgr = open(vec![local(dir.path(), "pieces")], Vec::new());
    assert_eq!(mgr.put_piece("p1", &mut &b"hello"[..]).unwrap(), ("pieces".to_string(), 5));
    assert_eq!(read_all(mgr.open_piece("p1").unwrap()), b"hello");
    assert_eq!(mgr.piece_size("p1").unwrap(), 5);

    std::fs::write(dir.path().join("pieces/p2.car"), b"car data").unwrap();
    assert_eq!(read_all(mgr.open_piece("p2").unwrap()), b"car data");
    assert_eq!(mgr.piece_size("p2").unwrap(), 8);
    let (reader, size) = mgr.open_piece_with_size("p2").unwrap();
    assert_eq!((read_all(reader), size), (b"car data".to_vec(), 8));

    assert!(matches!(mgr.open_piece("missing"), Err(FileStoreError::PieceNotFound { name }) if name == "missing"));
    assert!(matches!(mgr.piece_size("missing"), Err(FileStoreError::PieceNotFound { .. })));
}

#[test]
fn pieces_are_looked_up_in_every_piece_store_in_order() {
    let dir = TempDir::new().unwrap();
    let ro = read_only(local(dir.path(), "ro"));
    std::fs::write(dir.path().join("ro/old.car"), b"archived").unwrap();
    let mgr = open(vec![local(dir.path(), "rw"), ro], Vec::new());
    assert_eq!(read_all(mgr.open_piece("old").unwrap()), b"archived");
    // The plain name in the first store wins over `.car` in a later one, and within a store over `.car`.
    std::fs::write(dir.path().join("rw/old"), b"new").unwrap();
    assert_eq!(read_all(mgr.open_piece("old").unwrap()), b"new");
}

#[test]
fn read_only_piece_stores_are_skipped_for_put() {
    let dir = TempDir::new().unwrap();
    let mgr = open(vec![read_only(local(dir.path(), "ro")), local(dir.path(), "rw")], Vec::new());
    assert_eq!(mgr.put_piece("p", &mut &b"x"[..]).unwrap().0, "rw");
    assert!(dir.path().join("rw/p").is_file());
    assert!(!dir.path().join("ro/p").exists());
}

#[test]
fn put_fails_naming_why_each_piece_store_was_passed_over() {
    let dir = TempDir::new().unwrap();
    let mgr = open(vec![read_only(local(dir.path(), "ro")), local(dir.path(), "small")], Vec::new());
    let err = mgr.put_piece_sized("p", Some(u64::MAX), &mut &b"x"[..]).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, FileStoreError::NoWritablePieceStore { .. }), "{msg}");
    assert!(msg.contains("\"ro\" is read-only") && msg.contains("\"small\" has"), "{msg}");

    let none = open(Vec::new(), Vec::new());
    let msg = none.put_piece("p", &mut &b"x"[..]).unwrap_err().to_string();
    assert!(msg.contains("no piece stores are configured"), "{msg}");
}

#[test]
fn a_failing_put_names_the_store_and_the_piece() {
    let mgr = StoreManager::from_opened(vec![FakeStore::build(StoreKind::Piece, "broken", 100, true)], Vec::new());
    let err = mgr.put_piece("p1", &mut &b"x"[..]).unwrap_err();
    assert!(matches!(err, FileStoreError::Store { op: "put", .. }), "{err}");
    assert_eq!(err.to_string(), "store \"broken\": put \"p1\": disk on fire");
}

#[test]
fn invalid_piece_names_are_refused() {
    let dir = TempDir::new().unwrap();
    let mgr = open(vec![local(dir.path(), "pieces")], Vec::new());
    for bad in ["", "../escape", "/etc/passwd", "a//b"] {
        assert!(matches!(mgr.put_piece(bad, &mut &b"x"[..]), Err(FileStoreError::InvalidPieceName { .. })), "{bad}");
        assert!(matches!(mgr.open_piece(bad), Err(FileStoreError::InvalidPieceName { .. })), "{bad}");
    }
}

// ---- opening and listing ----

#[test]
fn a_store_backed_by_a_plugin_that_is_not_loaded_names_the_plugin() {
    let dir = TempDir::new().unwrap();
    let mut spec = local(dir.path(), "cold");
    spec.plugin_name = "s3store".into();
    let err = StoreManager::open(Vec::new(), vec![spec], &PluginRegistry::empty()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, FileStoreError::PluginNotReady { .. }), "{msg}");
    assert!(msg.contains("persist store \"cold\"") && msg.contains("\"s3store\""), "{msg}");
    assert!(msg.contains("no FileStore plugin named 's3store' was loaded"), "{msg}");
}

#[test]
fn store_names_must_be_present_and_unique_per_kind() {
    let dir = TempDir::new().unwrap();
    let registry = PluginRegistry::empty();
    let mut unnamed = local(dir.path(), "x");
    unnamed.config.name.clear();
    let err = StoreManager::open(vec![local(dir.path(), "a"), unnamed], Vec::new(), &registry).unwrap_err();
    assert_eq!(
        err.to_string(),
        "piece store #2 has an empty Name; give every [[Common.PieceStores]] entry a unique Name"
    );

    let dup = StoreManager::open(Vec::new(), vec![local(dir.path(), "a"), local(dir.path(), "a")], &registry);
    assert!(matches!(dup, Err(FileStoreError::DuplicateStore { kind: StoreKind::Persist, .. })));

    // A piece store and a persist store may share a name: every API is specific to one kind.
    assert!(StoreManager::open(vec![local(dir.path(), "a")], vec![local(dir.path(), "a")], &registry).is_ok());
}

#[test]
fn a_read_only_local_store_with_a_missing_directory_is_refused() {
    let dir = TempDir::new().unwrap();
    let spec = StoreSpec {
        config: StoreConfig {
            name: "gone".into(),
            path: dir.path().join("not-mounted").display().to_string(),
            read_only: true,
            ..Default::default()
        },
        ..Default::default()
    };
    let err = StoreManager::open(vec![spec], Vec::new(), &PluginRegistry::empty()).unwrap_err();
    assert!(matches!(err, FileStoreError::OpenLocal { .. }));
    assert!(err.to_string().starts_with("piece store \"gone\": cannot open the built-in local store"), "{err}");
}

#[test]
fn basic_info_describes_persist_stores_only() {
    let dir = TempDir::new().unwrap();
    let mut spec = local(dir.path(), "persist");
    spec.config.meta.insert("Rack".into(), "7".into());
    let mgr = open(vec![local(dir.path(), "pieces")], vec![spec.clone()]);
    let info = mgr.basic_info("persist").unwrap();
    assert_eq!(
        serde_json::to_value(&info).unwrap(),
        serde_json::json!({
            "Name": "persist", "Path": spec.config.path, "Strict": false, "ReadOnly": false,
            "Weight": spec.config.weight, "Meta": {"Rack": "7"}
        })
    );
    assert_eq!(mgr.basic_info("pieces"), None);
    assert_eq!(mgr.basic_info("nope"), None);
}

#[test]
fn list_shows_both_kinds_with_capacity_and_reservations() {
    let dir = TempDir::new().unwrap();
    let mut persist = weighted(local(dir.path(), "persist"), 3);
    persist.allow_miners = vec![1000];
    persist.deny_miners = vec![1002];
    let mgr = open(vec![local(dir.path(), "pieces")], vec![persist]);
    mgr.reserve(sector(1000, 2), 64, &[]).unwrap().unwrap();
    mgr.reserve(sector(1000, 1), 32, &[]).unwrap().unwrap();

    let listed = mgr.list();
    assert_eq!(listed.len(), 2);
    let (pieces, persist) = (&listed[0], &listed[1]);
    assert_eq!((pieces.kind, pieces.reserved, pieces.r#type.as_str()), (StoreKind::Piece, 0, "fsstore"));
    assert!(pieces.total > 0 && pieces.free > 0 && pieces.error.is_none(), "{pieces:?}");
    assert_eq!((persist.kind, persist.reserved, persist.weight), (StoreKind::Persist, 96, 3));

    let json = serde_json::to_value(persist).unwrap();
    assert_eq!(json["Kind"], "persist");
    assert_eq!(json["AllowMiners"], serde_json::json!([1000]));
    assert_eq!(json["DenyMiners"], serde_json::json!([1002]));
    assert_eq!(json["ReadOnly"], false);
    let by: Vec<_> =
        json["ReservedBy"].as_array().unwrap().iter().map(|r| (r["By"].clone(), r["Size"].clone())).collect();
    assert_eq!(by, [("s-t01000-1".into(), 32.into()), ("s-t01000-2".into(), 64.into())]);
    for key in ["Name", "Path", "Meta", "Type", "Total", "Free", "Used", "UsedPercent", "Reserved", "Weight"] {
        assert!(json.get(key).is_some(), "missing {key} in {json}");
    }
}

// ---- capacity cache, hung stores, reservation arithmetic ----

/// A store whose `instance_info` blocks until the test opens the gate.
struct GatedStore {
    name: String,
    gate: Arc<(Mutex<bool>, std::sync::Condvar)>,
}

impl Store for GatedStore {
    fn type_name(&self) -> String {
        "gated".into()
    }
    fn version(&self) -> String {
        "0".into()
    }
    fn instance(&self) -> String {
        self.name.clone()
    }
    fn instance_config(&self) -> StoreConfig {
        StoreConfig { name: self.name.clone(), path: format!("/gated/{}", self.name), ..Default::default() }
    }
    fn instance_info(&self) -> Result<InstanceInfo, StoreError> {
        let (open, changed) = &*self.gate;
        let mut open = open.lock().unwrap();
        while !*open {
            open = changed.wait(open).unwrap();
        }
        Ok(InstanceInfo { config: self.instance_config(), total: 1 << 40, free: 1 << 40, used: 0 })
    }
    fn get(&self, path: &str) -> Result<ObjectReader, StoreError> {
        Err(StoreError::NotFound(path.into()))
    }
    fn del(&self, path: &str) -> Result<(), StoreError> {
        Err(StoreError::NotFound(path.into()))
    }
    fn stat(&self, path: &str) -> Result<ObjectStat, StoreError> {
        Err(StoreError::NotFound(path.into()))
    }
    fn put(&self, _path: &str, _reader: &mut dyn Read) -> Result<u64, StoreError> {
        Err(StoreError::Io("gated store takes no writes".into()))
    }
    fn full_path(&self, path: &str) -> Result<PathBuf, StoreError> {
        Ok(PathBuf::from(path))
    }
}

#[test]
fn a_hung_store_is_skipped_and_listed_unavailable_until_it_answers() {
    let options = CapacityOptions {
        timeout: std::time::Duration::from_millis(300),
        refresh: std::time::Duration::from_millis(50),
    };
    let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
    let hung = GatedStore { name: "hung".into(), gate: Arc::clone(&gate) };
    let hung = ManagedStore::new(
        StoreKind::Persist,
        hung.instance_config(),
        "gated".into(),
        MinerPolicy::default(),
        Arc::new(hung),
        options,
    );
    let good = FakeStore::managed(StoreKind::Persist, "good", 1000);
    let mgr = Arc::new(StoreManager::from_opened(Vec::new(), vec![hung, good]));

    // Parallel reservations all answer, from the good store, within about the timeout.
    let started = std::time::Instant::now();
    let callers: Vec<_> = (0..4)
        .map(|n| {
            let mgr = Arc::clone(&mgr);
            std::thread::spawn(move || mgr.reserve(sector(1000, n), 10, &[]).unwrap().map(|info| info.name))
        })
        .collect();
    for caller in callers {
        assert_eq!(caller.join().unwrap().as_deref(), Some("good"));
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(3), "{:?}", started.elapsed());

    let listed = mgr.list();
    let hung = listed.iter().find(|s| s.name == "hung").unwrap();
    assert!(!hung.available, "{hung:?}");
    let error = hung.error.as_deref().unwrap();
    assert!(error.contains("instance_info has not answered"), "{error}");
    assert!(listed.iter().find(|s| s.name == "good").unwrap().available);
    assert_eq!(mgr.reserve(sector(1000, 9), 10, &["hung".into()]).unwrap(), None);

    // Once the store answers again, it is available and reservations may land on it.
    *gate.0.lock().unwrap() = true;
    gate.1.notify_all();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !mgr.list().iter().find(|s| s.name == "hung").unwrap().available {
        assert!(std::time::Instant::now() < deadline, "the store never came back");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(reserved_on(&mgr, sector(1000, 9), 10).as_deref().map(|_| ()), Some(()));
    assert_eq!(mgr.reserve(sector(1000, 10), 10, &["hung".into()]).unwrap().unwrap().name, "hung");
}

#[test]
fn a_growing_reservation_is_rechecked_against_free_space() {
    let mgr = StoreManager::from_opened(Vec::new(), vec![FakeStore::managed(StoreKind::Persist, "a", 100)]);
    assert_eq!(reserved_on(&mgr, sector(1000, 1), 50).as_deref(), Some("a"));
    assert_eq!(reserved_on(&mgr, sector(1000, 2), 40).as_deref(), Some("a"));
    // 100 free, 40 reserved by sector 2: sector 1 cannot grow to 70 there, and no other store has room.
    assert_eq!(reserved_on(&mgr, sector(1000, 1), 70), None);
    // It keeps its old reservation, and may still grow into what is really free.
    let listed = mgr.list();
    assert_eq!(listed[0].reserved, 90);
    assert_eq!(reserved_on(&mgr, sector(1000, 1), 60).as_deref(), Some("a"));
    assert_eq!(mgr.list()[0].reserved, 100);
}

#[test]
fn a_growing_reservation_moves_to_a_store_with_room() {
    let mgr = StoreManager::from_opened(
        Vec::new(),
        vec![FakeStore::managed(StoreKind::Persist, "a", 100), FakeStore::managed(StoreKind::Persist, "b", 1000)],
    );
    assert_eq!(mgr.reserve(sector(1000, 1), 80, &["a".into()]).unwrap().unwrap().name, "a");
    assert_eq!(reserved_on(&mgr, sector(1000, 1), 500).as_deref(), Some("b"));
    let listed = mgr.list();
    assert_eq!((listed[0].reserved, listed[1].reserved), (0, 500));
}

#[test]
fn absurd_reservation_sizes_are_refused_with_an_error() {
    let mgr = StoreManager::from_opened(Vec::new(), vec![FakeStore::managed(StoreKind::Persist, "a", 1 << 62)]);
    for size in [u64::MAX, MAX_RESERVATION + 1] {
        let err = mgr.reserve(sector(1000, 1), size, &[]).unwrap_err();
        assert!(err.is_invalid_input(), "{err}");
        assert!(err.to_string().contains("exceeds the limit"), "{err}");
    }
    // The largest allowed sizes add up without wrapping: the listed total saturates instead.
    for number in 0..3 {
        assert!(mgr.reserve(sector(1000, number), MAX_RESERVATION, &[]).unwrap().is_some());
    }
    assert_eq!(mgr.list()[0].reserved, 3 * MAX_RESERVATION);
}
