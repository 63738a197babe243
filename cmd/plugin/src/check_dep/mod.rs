//! `plugin check-dep [--fix]`: compares a plugin crate's dependency graph with the manager's, offline.
//!
//! A plugin `.so` shares Rust-ABI types with the manager: the SDK's. That is sound only when both were compiled
//! from the same SDK sources and features (see `docs/check-dep.md`). `check-dep` resolves the plugin's graph for
//! the manager's target and compares every crate it shares with the manager: the SDK exactly (version, source
//! and the features cargo *compiles* it with), every other shared crate by version and source, as policy
//! ([`MUST_MATCH_EXACTLY`]). The manager's graph is captured by
//! `build.rs` when this tool is compiled and carried inside it, so no network and no manager checkout is needed.
//!
//! ```no_run
//! let report = plugin::check_dep::check(std::path::Path::new("my-plugin/Cargo.toml"))?;
//! if !report.is_clean() {
//!     println!("{report}"); // `serde 1.0.225 => 1.0.229`, `serde[std] => [alloc,std] (missing alloc)`, summary
//! }
//! # Ok::<(), plugin::check_dep::CheckDepError>(())
//! ```
//!
//! [`fix`] pins the plugin to the manager (requirements, `cargo update --precise`, features) and restores its
//! `Cargo.toml` and `Cargo.lock` byte for byte when it cannot. See `docs/check-dep.md`.

mod backup;
mod cargo_graph;
mod error;
mod fix;
mod graph;
mod manager;
mod manifest_edit;
mod report;

use std::path::{Path, PathBuf};

pub use error::CheckDepError;
pub use fix::{FixFailure, FixOutcome, fix};
pub use graph::{CrateGraph, CrateKind, CrateNode, GraphError};
pub use manager::{MANAGER_TARGET, manager_graph};
pub use report::{CheckReport, Difference, MUST_MATCH_EXACTLY, SDK, must_match_exactly};

/// Checks the plugin crate at `path` (its `Cargo.toml` or its directory) against the manager.
///
/// Resolves like `cargo build` would, so it creates or updates the plugin's `Cargo.lock` when the manifest asks
/// for it, and fetches crates missing from the local cache unless cargo is offline (`CARGO_NET_OFFLINE=true`).
pub fn check(path: &Path) -> Result<CheckReport, CheckDepError> {
    seed_manager_lockfile(path)?;
    check_manifest(&manifest_path(path)?)
}

/// Gives the workspace of the plugin at `path` (its `Cargo.toml` or directory) the manager's `Cargo.lock` when it
/// has none (see [`seed_lockfile`]); `plugin build` and [`check`] do this first.
pub fn seed_manager_lockfile(path: &Path) -> Result<(), CheckDepError> {
    let manifest = manifest_path(path)?;
    seed_lockfile(&fix::workspace_lockfile(&cargo_binary(), &manifest)?)
}

/// The manager's `Cargo.lock`, as this tool was built with it.
pub const MANAGER_LOCKFILE: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.lock"));

/// Gives a plugin workspace without a `Cargo.lock` the manager's, so cargo resolves the crates both use to the
/// manager's versions instead of the newest ones (cargo drops the entries the plugin does not use). A plugin
/// that depends on the SDK alone then matches with nothing to fix. An existing lockfile is left alone.
fn seed_lockfile(lockfile: &Path) -> Result<(), CheckDepError> {
    if lockfile.exists() {
        return Ok(());
    }
    std::fs::write(lockfile, MANAGER_LOCKFILE).map_err(|source| CheckDepError::Io { path: lockfile.into(), source })
}

/// The command-line entry: `check-dep [--fix] <path>`. Prints the report (one line per difference, then a
/// one-line summary) to stdout. `Ok(true)`: the plugin matches the manager (exit 0); `Ok(false)`: differences
/// remain, or `--fix` rolled back (exit 1).
pub fn run_cli(path: &Path, fix: bool) -> anyhow::Result<bool> {
    if fix {
        let outcome = self::fix(path)?;
        println!("{outcome}");
        Ok(outcome.is_fixed())
    } else {
        let report = check(path)?;
        println!("{report}");
        Ok(report.is_clean())
    }
}

/// The plugin's side of the comparison: every crate the plugin at `path` links, and the proc-macros those use,
/// with the version, source and features `cargo build` of the plugin alone compiles for the manager's target.
/// Resolves like [`check`] does.
pub fn plugin_graph(path: &Path) -> Result<CrateGraph, CheckDepError> {
    resolve_manifest(&manifest_path(path)?, &manager_graph()?.target)
}

/// [`check`] on an already located manifest.
fn check_manifest(manifest: &Path) -> Result<CheckReport, CheckDepError> {
    let manager = manager_graph()?;
    let plugin = resolve_manifest(manifest, &manager.target)?;
    Ok(report::compare(manifest.to_path_buf(), &plugin, manager))
}

fn resolve_manifest(manifest: &Path, target: &str) -> Result<CrateGraph, CheckDepError> {
    let selector = cargo_graph::PackageSelector::Root;
    cargo_graph::resolve(&cargo_binary(), manifest, selector, target, cargo_graph::LockMode::MayUpdate)
        .map(|resolved| resolved.graph)
        .map_err(|source| CheckDepError::Resolve { manifest: manifest.to_path_buf(), source })
}

/// The absolute path of the plugin's `Cargo.toml`, given the file or its directory.
fn manifest_path(path: &Path) -> Result<PathBuf, CheckDepError> {
    let manifest = if path.is_dir() { path.join("Cargo.toml") } else { path.to_path_buf() };
    if !manifest.is_file() {
        return Err(CheckDepError::ManifestNotFound { path: path.to_path_buf() });
    }
    manifest.canonicalize().map_err(|source| CheckDepError::Io { path: manifest, source })
}

/// The cargo to run: the one running us (`$CARGO`, set by `cargo run`), else `cargo` from `PATH`.
fn cargo_binary() -> PathBuf {
    std::env::var_os("CARGO").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("cargo"))
}
