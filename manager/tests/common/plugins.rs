//! Builds real plugin `.so` files with `plugin build` (once per test process) and lays out plugins dirs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use plugin::build::{BuildOptions, build};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("manager/ has a parent").to_path_buf()
}

/// The crate dir of a known plugin: an example or a test fixture.
pub fn plugin_src(name: &str) -> PathBuf {
    let root = workspace_root();
    match name {
        "panicky-kv" | "panicky-store" | "hung-store" | "stuck-sync" | "sloppy-kv" | "crashy-kv" | "crashy-store"
        | "crashy-sync" | "crashy-rpc" => root.join("manager/tests/plugins").join(name),
        _ => root.join("examples").join(name),
    }
}

fn build_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("temp dir")).path()
}

/// The cargo target dir this test binary runs from (`<target>/<profile>/deps/<test>`): it outlives the run, so
/// what is built under it is reused by the next run (CI keeps it between runs).
pub fn test_target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    exe.ancestors().nth(3).expect("the test runs from a cargo target dir").to_path_buf()
}

/// Builds the plugin crate at `src` with `plugin build` (not cached). A crate outside the workspace (a fixture
/// written to a temp dir) builds in one target dir shared by all such fixtures, so the SDK's dependencies are
/// compiled once, not once per fixture.
pub fn build_plugin(src: &Path, out_name: &str, skip_check_dep: bool) -> Result<PathBuf, plugin::build::BuildError> {
    let outside_workspace = !src.starts_with(workspace_root());
    let options = BuildOptions {
        src_dir: src.to_path_buf(),
        out_dir: build_dir().join(out_name),
        release: !cfg!(debug_assertions),
        target_dir: outside_workspace.then(|| test_target_dir().join("fixture-plugins")),
        skip_check_dep,
        process: false,
    };
    build(&options).map(|output| output.library)
}

/// Builds the plugin crate at `src` (once per process) and returns the built `.so`.
pub fn build_plugin_at(src: &Path, out_name: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<PathBuf, Arc<OnceLock<PathBuf>>>>> = OnceLock::new();
    let slot = {
        let mut built = BUILT.get_or_init(Default::default).lock().expect("lock");
        Arc::clone(built.entry(src.to_path_buf()).or_default())
    };
    slot.get_or_init(|| match build_plugin(src, out_name, false) {
        Ok(library) => library,
        Err(e) => panic!("plugin build of {} failed: {e}", src.display()),
    })
    .clone()
}

/// Builds a known plugin (see [`plugin_src`]) with the profile this test's manager was NOT built with (release in
/// a debug test run), once per process: a file the manager refuses for its fingerprint alone.
pub fn build_other_profile(name: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let mut built = BUILT.get_or_init(Default::default).lock().expect("lock");
    built
        .entry(name.to_string())
        .or_insert_with(|| {
            let options = BuildOptions {
                src_dir: plugin_src(name),
                out_dir: build_dir().join(format!("{name}-other-profile")),
                release: cfg!(debug_assertions),
                target_dir: None,
                skip_check_dep: false,
                process: false,
            };
            build(&options).unwrap_or_else(|e| panic!("build {name} for the other profile: {e}")).library
        })
        .clone()
}

/// Builds a known plugin (see [`plugin_src`]) as a process plugin (`plugin build --process`) with `release`,
/// once per process and profile: the executable `plugin-<name>`.
pub fn built_process(name: &str, release: bool) -> PathBuf {
    type Slots = HashMap<(String, bool), Arc<OnceLock<PathBuf>>>;
    static BUILT: OnceLock<Mutex<Slots>> = OnceLock::new();
    let slot = {
        let mut built = BUILT.get_or_init(Default::default).lock().expect("lock");
        Arc::clone(built.entry((name.to_string(), release)).or_default())
    };
    slot.get_or_init(|| {
        let profile = if release { "release" } else { "debug" };
        let options = BuildOptions {
            src_dir: plugin_src(name),
            out_dir: build_dir().join(format!("{name}-process-{profile}")),
            release,
            target_dir: None,
            skip_check_dep: false,
            process: true,
        };
        build(&options).unwrap_or_else(|e| panic!("plugin build --process of {name} ({profile}): {e}")).library
    })
    .clone()
}

/// The lockfile of [`build_memdb_with_other_dependencies`]: the manager's own lockfile with `serde`, `serde_json`
/// and `tracing` moved to other patch versions (made with `cargo update -p serde --precise 1.0.228`,
/// `-p serde_json --precise 1.0.145`, `-p tracing --precise 0.1.41` on a copy of examples/memdb).
pub const OTHER_DEPENDENCIES_LOCK: &str = "manager/tests/data/memdb-other-dependencies.Cargo.lock";

/// Builds examples/memdb as a process plugin the way an author outside this repository would: a copy of the crate
/// in a workspace of its own, with its own lockfile ([`OTHER_DEPENDENCIES_LOCK`]) pinning other versions of the
/// SDK's dependencies than the manager's, in the profile this test's manager was NOT built with. Returns the
/// executable and the lockfile its build used. Built once per process, in a target dir under this test run's own
/// (kept between runs, so only the first run compiles the other versions).
pub fn build_memdb_with_other_dependencies() -> (PathBuf, PathBuf) {
    static BUILT: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = workspace_root();
            let crate_dir = build_dir().join("memdb-other-dependencies");
            std::fs::create_dir_all(crate_dir.join("src")).expect("crate dir");
            let memdb = root.join("examples/memdb");
            let sources = std::fs::read_dir(memdb.join("src")).expect("memdb's src").map(|e| e.expect("entry").path());
            for file in sources.chain([memdb.join("manifest.toml")]) {
                let relative = file.strip_prefix(&memdb).expect("inside memdb");
                std::fs::copy(&file, crate_dir.join(relative)).expect("copy memdb");
            }
            let sdk = root.join("manager-plugin");
            let cargo_toml = std::fs::read_to_string(root.join("examples/memdb/Cargo.toml"))
                .expect("memdb's Cargo.toml")
                .replace("\"../../manager-plugin\"", &format!("{:?}", sdk.display().to_string()));
            assert!(cargo_toml.contains(&sdk.display().to_string()), "memdb's SDK path line moved: update this helper");
            std::fs::write(crate_dir.join("Cargo.toml"), format!("{cargo_toml}\n[workspace]\n")).expect("write");
            std::fs::copy(root.join(OTHER_DEPENDENCIES_LOCK), crate_dir.join("Cargo.lock")).expect("copy lockfile");
            let target = test_target_dir().join("other-deps");
            let options = BuildOptions {
                src_dir: crate_dir,
                out_dir: build_dir().join("memdb-other-dependencies-out"),
                release: cfg!(debug_assertions),
                target_dir: Some(target.clone()),
                skip_check_dep: false,
                process: true,
            };
            let built = build(&options).unwrap_or_else(|e| panic!("plugin build --process of the memdb copy: {e}"));
            (built.library, target.join("damocles-plugin-wrappers/memdb-process/Cargo.lock"))
        })
        .clone()
}

/// The version `lockfile` pins for `package`.
pub fn locked_version(lockfile: &Path, package: &str) -> Option<String> {
    let text = std::fs::read_to_string(lockfile).ok()?;
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line == format!("name = \"{package}\"") {
            return lines.next()?.strip_prefix("version = \"")?.strip_suffix('"').map(str::to_string);
        }
    }
    None
}

/// Builds a known plugin (see [`plugin_src`]) once per process.
pub fn built(name: &str) -> PathBuf {
    build_plugin_at(&plugin_src(name), name)
}

/// A fresh plugins dir holding copies of the named plugins. Copies (new inodes) make each test's libraries
/// distinct from other tests' in this process, so plugin statics are not shared between tests.
pub fn plugins_dir(names: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for name in names {
        let so = built(name);
        let file_name = so.file_name().expect("file name");
        std::fs::copy(&so, dir.path().join(file_name)).expect("copy plugin");
    }
    dir
}

/// A log capture installed as the global tracing subscriber of this test process.
pub fn captured_logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = Arc::clone(&buffer);
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || LogWriter(Arc::clone(&writer)))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("install subscriber");
        buffer
    })
}

/// The captured log text so far.
pub fn log_text() -> String {
    String::from_utf8_lossy(&captured_logs().lock().expect("lock")).into_owned()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().map_err(|_| std::io::Error::other("poisoned"))?.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
