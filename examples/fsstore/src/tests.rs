//! Unit tests of the local-directory store.

use super::*;

fn config(root: &Path) -> StoreConfig {
    StoreConfig { name: "pieces".into(), path: root.display().to_string(), ..Default::default() }
}

fn store() -> (tempfile::TempDir, FsStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(config(dir.path())).unwrap();
    (dir, store)
}

fn read(store: &FsStore, path: &str) -> Vec<u8> {
    let mut out = Vec::new();
    store.get(path).unwrap().read_to_end(&mut out).unwrap();
    out
}

fn dir_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// Yields `data`, then fails.
struct FailingReader<'a> {
    data: &'a [u8],
}

impl Read for FailingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.data.is_empty() {
            return Err(io::Error::other("upload connection reset"));
        }
        let n = self.data.read(buf)?;
        Ok(n)
    }
}

#[test]
fn open_creates_a_missing_root_with_its_parents() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("a/b/store");
    let store = open(config(&root)).unwrap();
    assert!(root.is_dir());
    assert_eq!(store.root(), root);
}

#[test]
fn open_refuses_a_root_that_is_a_file_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    fs::write(&file, b"x").unwrap();
    let err = open(config(&file)).unwrap_err().to_string();
    assert!(err.contains("not-a-dir exists and is not a directory"), "{err}");
    assert!(err.contains("\"pieces\""), "{err}");
}

#[test]
fn open_refuses_an_empty_path() {
    let err = open(StoreConfig { name: "p".into(), ..Default::default() }).unwrap_err().to_string();
    assert!(err.contains("Path is empty"), "{err}");
}

#[test]
fn a_read_only_store_does_not_create_its_missing_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("unmounted");
    let err = open(StoreConfig { read_only: true, ..config(&root) }).unwrap_err().to_string();
    assert!(err.contains("does not exist"), "{err}");
    assert!(!root.exists());
}

#[test]
fn put_creates_parents_and_get_stat_and_full_path_find_the_object() {
    let (dir, store) = store();
    assert_eq!(store.put("a/b/c.car", &mut &b"hello world"[..]).unwrap(), 11);
    assert_eq!(read(&store, "a/b/c.car"), b"hello world");
    assert_eq!(store.stat("a/b/c.car").unwrap(), ObjectStat { size: 11 });
    assert_eq!(store.full_path("a/b/c.car").unwrap(), dir.path().join("a/b/c.car"));
    assert_eq!(fs::read(dir.path().join("a/b/c.car")).unwrap(), b"hello world");
}

#[test]
fn put_replaces_an_object_while_an_open_reader_keeps_the_old_content() {
    let (_dir, store) = store();
    store.put("obj", &mut &b"old"[..]).unwrap();
    let mut before = store.get("obj").unwrap();
    store.put("obj", &mut &b"brand new"[..]).unwrap();
    let mut seen = String::new();
    before.read_to_string(&mut seen).unwrap();
    assert_eq!(seen, "old");
    assert_eq!(read(&store, "obj"), b"brand new");
}

#[test]
fn a_failed_put_keeps_the_old_object_and_leaves_no_temporary_file() {
    let (dir, store) = store();
    store.put("d/obj", &mut &b"old"[..]).unwrap();
    let err = store.put("d/obj", &mut FailingReader { data: b"partial new data" }).unwrap_err();
    assert!(matches!(&err, StoreError::Io(m) if m.contains("upload connection reset") && m.contains("d/obj")));
    assert_eq!(read(&store, "d/obj"), b"old");
    assert_eq!(dir_entries(&dir.path().join("d")), ["obj"]);
}

#[test]
fn a_put_over_a_directory_fails_and_leaves_no_temporary_file() {
    let (dir, store) = store();
    fs::create_dir_all(dir.path().join("x/sub")).unwrap();
    assert!(matches!(store.put("x/sub", &mut &b"data"[..]), Err(StoreError::Io(_))));
    assert_eq!(dir_entries(&dir.path().join("x")), ["sub"]);
}

#[test]
fn paths_escaping_the_root_are_refused_by_every_operation() {
    let (dir, store) = store();
    fs::write(dir.path().join("fsstore-escape-probe"), b"x").unwrap();
    for bad in ["../fsstore-escape-probe", "/etc/passwd", "a/../../fsstore-escape-probe", "a//b", "./x", ""] {
        let invalid = |r: Result<(), StoreError>| matches!(r, Err(StoreError::InvalidPath { .. }));
        assert!(invalid(store.put(bad, &mut &b"x"[..]).map(drop)), "put {bad:?}");
        assert!(invalid(store.get(bad).map(drop)), "get {bad:?}");
        assert!(invalid(store.stat(bad).map(drop)), "stat {bad:?}");
        assert!(invalid(store.del(bad)), "del {bad:?}");
    }
    assert!(!dir.path().parent().unwrap().join("fsstore-escape-probe").exists());
}

#[test]
fn full_path_refuses_paths_that_would_leave_the_root() {
    let (_dir, store) = store();
    for bad in ["/etc/passwd", "../x", "a/../../b"] {
        assert!(matches!(store.full_path(bad), Err(StoreError::InvalidPath { .. })), "{bad}");
    }
}

#[test]
fn a_read_only_store_refuses_put_and_del_but_serves_reads() {
    let (dir, store) = store();
    store.put("obj", &mut &b"data"[..]).unwrap();
    let ro = open(StoreConfig { read_only: true, ..config(dir.path()) }).unwrap();
    assert_eq!(ro.put("obj", &mut &b"new"[..]), Err(StoreError::ReadOnly("pieces".into())));
    assert_eq!(ro.put("other", &mut &b"new"[..]), Err(StoreError::ReadOnly("pieces".into())));
    assert_eq!(ro.del("obj"), Err(StoreError::ReadOnly("pieces".into())));
    assert_eq!(read(&ro, "obj"), b"data");
    assert_eq!(ro.stat("obj").unwrap().size, 4);
    assert!(!dir.path().join("other").exists());
}

#[test]
fn del_removes_the_object_and_a_second_del_is_not_found() {
    let (_dir, store) = store();
    store.put("a/obj", &mut &b"data"[..]).unwrap();
    store.del("a/obj").unwrap();
    assert_eq!(store.stat("a/obj"), Err(StoreError::NotFound("a/obj".into())));
    assert_eq!(store.del("a/obj"), Err(StoreError::NotFound("a/obj".into())));
}

#[test]
fn missing_objects_and_directories_are_not_found() {
    let (_dir, store) = store();
    store.put("dir/obj", &mut &b"data"[..]).unwrap();
    for missing in ["nope", "dir/nope", "nope/deeper", "dir", "dir/obj/deeper"] {
        let not_found = StoreError::NotFound(missing.into());
        assert_eq!(store.get(missing).err(), Some(not_found.clone()), "get {missing}");
        assert_eq!(store.stat(missing), Err(not_found.clone()), "stat {missing}");
        assert_eq!(store.del(missing), Err(not_found), "del {missing}");
    }
}

#[test]
fn instance_info_reports_the_volume_and_the_configuration() {
    let (dir, store) = store();
    let info = store.instance_info().unwrap();
    assert_eq!(info.config, config(dir.path()));
    assert!(info.total > 0 && info.free <= info.total && info.used <= info.total, "{info:?}");
    assert_eq!(store.instance(), "pieces");
    assert_eq!(store.type_name(), "fsstore");
    assert_eq!(store.version(), env!("CARGO_PKG_VERSION"));
}

#[test]
fn the_manifest_names_open_as_the_filestore_constructor() {
    let m = manager_plugin::Manifest::parse(include_str!("../manifest.toml"), "manifest.toml").unwrap();
    assert_eq!((m.name.as_str(), m.kind), ("fsstore", manager_plugin::Kind::FileStore));
    let constructor = m.export_for(manager_plugin::manifest::ExtPoint::Constructor).unwrap();
    assert_eq!(constructor.impl_path, "open");
}

#[test]
fn open_fits_the_generated_constructor_glue() {
    let dir = tempfile::tempdir().unwrap();
    let store = manager_plugin::glue::file_store_constructor(|| open(config(dir.path()))).unwrap();
    assert_eq!(store.put("obj", &mut &b"data"[..]).unwrap(), 4);
    assert_eq!(store.stat("obj").unwrap().size, 4);
    let err = manager_plugin::glue::file_store_constructor(|| open(StoreConfig::default())).err().unwrap();
    assert!(err.to_string().contains("Path is empty"), "{err}");
}

#[test]
fn an_object_larger_than_the_copy_buffer_is_stored_whole() {
    let (_dir, store) = store();
    let data: Vec<u8> = (0..COPY_BUFFER_BYTES * 2 + 12345).map(|i| (i % 251) as u8).collect();
    assert_eq!(store.put("big", &mut data.as_slice()).unwrap(), data.len() as u64);
    assert_eq!(read(&store, "big"), data);
}

#[test]
fn an_empty_object_can_be_stored() {
    let (_dir, store) = store();
    assert_eq!(store.put("empty", &mut io::empty()).unwrap(), 0);
    assert_eq!(store.stat("empty").unwrap().size, 0);
    assert!(read(&store, "empty").is_empty());
}

#[test]
fn dot_files_are_reserved_for_temporary_files_and_never_served() {
    let (dir, store) = store();
    std::fs::write(dir.path().join(".piece.car.123.0.tmp"), b"half an upload").unwrap();
    for path in [".piece.car.123.0.tmp", "a/.hidden"] {
        assert!(matches!(store.stat(path), Err(StoreError::InvalidPath { .. })), "{path}");
        assert!(matches!(store.get(path), Err(StoreError::InvalidPath { .. })), "{path}");
        assert!(matches!(store.put(path, &mut &b"x"[..]), Err(StoreError::InvalidPath { .. })), "{path}");
    }
}

#[test]
fn a_name_that_fits_the_file_system_can_be_stored() {
    let (_dir, store) = store();
    let name = format!("deals/{}", "p".repeat(250));
    assert_eq!(store.put(&name, &mut &b"long"[..]).unwrap(), 4);
    assert_eq!(read(&store, &name), b"long");
}

#[test]
fn the_temporary_files_of_an_interrupted_upload_are_swept_at_the_next_open() {
    let (dir, store) = store();
    store.put("a/kept.car", &mut &b"whole"[..]).unwrap();
    let sub = dir.path().join("a");
    // A process killed mid-put: the temporary file and its journal entry stay behind (no drop runs).
    let crashed = crate::durable::TempFile::create(store.root(), &sub, "piece.car").unwrap();
    let temp = crashed.path.clone();
    std::mem::forget(crashed);
    assert!(temp.exists());
    // An unrelated dot file of the operator's is not touched.
    std::fs::write(sub.join(".operator-notes"), b"mine").unwrap();
    let reopened = FsStore::open(config(dir.path())).unwrap();
    assert!(!temp.exists(), "the interrupted upload's temporary file was not swept");
    assert_eq!(dir_entries(&sub), vec![".operator-notes".to_string(), "kept.car".to_string()]);
    assert!(dir_entries(&dir.path().join(crate::durable::UPLOADS_DIR)).is_empty(), "journal entries remain");
    assert_eq!(read(&reopened, "a/kept.car"), b"whole");
}

#[test]
fn a_read_only_store_sweeps_nothing() {
    let (dir, store) = store();
    let crashed = crate::durable::TempFile::create(store.root(), dir.path(), "piece.car").unwrap();
    let temp = crashed.path.clone();
    std::mem::forget(crashed);
    let mut cfg = config(dir.path());
    cfg.read_only = true;
    FsStore::open(cfg).unwrap();
    assert!(temp.exists(), "a read-only store must not write");
}
