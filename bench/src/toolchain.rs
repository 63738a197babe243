//! What the scenarios need built: the `damocles-manager` binary (same profile as this benchmark) and plugin
//! `.so` files, built with `plugin build` into one target dir shared by every benchmark plugin.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};
use plugin::build::{BuildOptions, build};

/// The repository this benchmark was built from.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}

/// Built binaries and where benchmark files go.
pub struct Toolchain {
    /// The `damocles-manager` binary under test.
    pub manager: PathBuf,
    /// Whether the manager and plugins are release builds.
    pub release: bool,
    /// Which RocksDB the benchmark links ([`crate::machine::rocksdb_origin`]), for the machine line.
    pub rocksdb: String,
    /// The cargo target dir this benchmark runs from; benchmark plugins and scratch files live under it (a real
    /// disk, never a tmpfs).
    pub target_dir: PathBuf,
}

impl Toolchain {
    /// Builds the manager binary in this benchmark's profile (a no-op when it is up to date), or takes `manager`.
    pub fn prepare(manager: Option<PathBuf>) -> anyhow::Result<Toolchain> {
        let release = !cfg!(debug_assertions);
        let lib_dir = std::env::var("ROCKSDB_LIB_DIR").ok();
        let rocksdb = crate::machine::rocksdb_origin(release, lib_dir.as_deref()).map_err(anyhow::Error::msg)?;
        let exe = std::env::current_exe().context("where is damocles-bench")?;
        // <target>/<profile>/damocles-bench
        let profile_dir = exe.parent().context("damocles-bench has no directory")?.to_path_buf();
        let target_dir = profile_dir.parent().context("damocles-bench is not in a cargo target dir")?.to_path_buf();
        if let Some(manager) = manager {
            if !manager.is_file() {
                bail!("--manager {}: no such file", manager.display());
            }
            let rocksdb = format!("RocksDB of the given --manager (this benchmark: {rocksdb})");
            return Ok(Toolchain { manager, release, rocksdb, target_dir });
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(&cargo);
        build.current_dir(workspace_root()).env("CARGO_TARGET_DIR", &target_dir).args([
            "build",
            "--locked",
            "-p",
            "manager",
            "--bin",
            "damocles-manager",
        ]);
        if release {
            build.arg("--release");
        }
        eprintln!("building damocles-manager ({})", if release { "release" } else { "debug" });
        let status = build.status().with_context(|| format!("cannot run {}", Path::new(&cargo).display()))?;
        if !status.success() {
            bail!("cargo build of damocles-manager failed ({status})");
        }
        let manager = profile_dir.join("damocles-manager");
        if !manager.is_file() {
            bail!("{} is missing after its build", manager.display());
        }
        Ok(Toolchain { manager, release, rocksdb, target_dir })
    }

    /// A scratch dir on the target dir's disk, removed when dropped.
    pub fn scratch(&self) -> anyhow::Result<tempfile::TempDir> {
        let parent = self.target_dir.join("bench-work");
        std::fs::create_dir_all(&parent).with_context(|| format!("cannot create {}", parent.display()))?;
        tempfile::tempdir_in(&parent).with_context(|| format!("cannot create a temp dir in {}", parent.display()))
    }

    /// An example plugin of the repository (`memdb`, `statelog`, ...), built with `plugin build`.
    pub fn example_plugin(&self, name: &str) -> anyhow::Result<PathBuf> {
        self.build_plugin(&workspace_root().join("examples").join(name), name, false)
    }

    /// An example plugin built with `plugin build --process`: the executable `plugin-<name>`.
    pub fn example_process_plugin(&self, name: &str) -> anyhow::Result<PathBuf> {
        self.build_plugin(&workspace_root().join("examples").join(name), name, true)
    }

    /// The `bench-sync` fixture (`bench/plugins/bench-sync`) built under the plugin name `name`: a copy of the
    /// crate whose package and manifest carry that name.
    pub fn bench_sync_plugin(&self, name: &str) -> anyhow::Result<PathBuf> {
        self.bench_sync(name, false)
    }

    /// The `bench-sync` fixture under the plugin name `name`, built with `plugin build --process`.
    pub fn bench_sync_process_plugin(&self, name: &str) -> anyhow::Result<PathBuf> {
        self.bench_sync(name, true)
    }

    fn bench_sync(&self, name: &str, process: bool) -> anyhow::Result<PathBuf> {
        let template = workspace_root().join("bench/plugins/bench-sync");
        // A stable place (not a temp dir), so repeated runs rebuild incrementally.
        let crate_dir = self.target_dir.join("bench-plugin-src").join(name);
        std::fs::create_dir_all(crate_dir.join("src"))
            .with_context(|| format!("cannot create {}", crate_dir.display()))?;
        let sdk = workspace_root().join("manager-plugin");
        let read = |file: &str| {
            std::fs::read_to_string(template.join(file))
                .with_context(|| format!("cannot read {}/{file}", template.display()))
        };
        let cargo_toml = read("Cargo.toml")?
            .replace("name = \"bench-sync\"", &format!("name = \"{name}\""))
            .replace("path = \"../../../manager-plugin\"", &format!("path = {:?}", sdk.display().to_string()))
            // Its own workspace: the copy may sit inside this repository (a `target/` in the checkout).
            + "\n[workspace]\n";
        let manifest = read("manifest.toml")?.replace("name = \"bench-sync\"", &format!("name = \"{name}\""));
        write_if_changed(&crate_dir.join("Cargo.toml"), &cargo_toml)?;
        write_if_changed(&crate_dir.join("manifest.toml"), &manifest)?;
        write_if_changed(&crate_dir.join("src/lib.rs"), &read("src/lib.rs")?)?;
        self.build_plugin(&crate_dir, name, process)
    }

    fn build_plugin(&self, src: &Path, name: &str, process: bool) -> anyhow::Result<PathBuf> {
        let profile = if self.release { "release" } else { "debug" };
        let options = BuildOptions {
            src_dir: src.to_path_buf(),
            // Per profile: a debug and a release benchmark may build the same plugin at once.
            out_dir: self
                .target_dir
                .join("bench-plugin-out")
                .join(if process { format!("{profile}-process") } else { profile.to_string() })
                .join(name),
            release: self.release,
            target_dir: Some(self.target_dir.join("bench-plugins")),
            skip_check_dep: false,
            process,
        };
        let built = build(&options).with_context(|| format!("plugin build of {} failed", src.display()))?;
        Ok(built.library)
    }
}

/// Writes `text` unless the file already holds it (keeps mtimes, so cargo does not rebuild).
fn write_if_changed(path: &Path, text: &str) -> anyhow::Result<()> {
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(());
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}
