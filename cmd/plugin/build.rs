//! Captures the manager's dependency graph at compile time, so `plugin check-dep` carries it (no network, no
//! manager checkout at run time).
//!
//! It resolves the `manager` package of this workspace exactly as `cargo build -p manager` compiles it (versions
//! from the workspace `Cargo.lock`, features of the manager alone, not unified with other members) with the same
//! code `check-dep` uses on a plugin (`src/check_dep/{graph,cargo_graph}.rs`), and writes it to
//! `$OUT_DIR/manager-graph.tsv`. See `docs/check-dep.md`.

#[allow(dead_code)]
#[path = "src/check_dep/graph.rs"]
mod graph;

#[allow(dead_code)]
#[path = "src/check_dep/cargo_graph.rs"]
mod cargo_graph;

use std::env;
use std::path::PathBuf;
use std::process::ExitCode;

use cargo_graph::{LockMode, PackageSelector};

/// The package whose graph plugins must match.
const MANAGER_PACKAGE: &str = "manager";

fn main() -> ExitCode {
    match capture() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: plugin/build.rs: cannot capture the manager's dependency graph for check-dep: {message}");
            ExitCode::FAILURE
        }
    }
}

fn capture() -> Result<(), String> {
    let var = |name: &str| env::var(name).map_err(|_| format!("cargo did not set {name}"));
    let manifest_dir = PathBuf::from(var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(var("OUT_DIR")?);
    let target = var("TARGET")?;
    let cargo = PathBuf::from(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));

    // `--locked`: the cargo running this script has already brought Cargo.lock up to date, and a build script
    // must not write into the source tree. `cargo metadata` and `cargo tree` take no build-directory lock, so
    // they do not wait on the cargo that runs us.
    let resolved = cargo_graph::resolve(
        &cargo,
        &manifest_dir.join("Cargo.toml"),
        PackageSelector::Member(MANAGER_PACKAGE),
        &target,
        LockMode::Locked,
    )
    .map_err(|e| {
        let message = e.to_string();
        if message.contains("--locked") {
            // A manifest changed after the outer cargo wrote Cargo.lock (someone edited it during the build).
            format!("{message}\nhint: a manifest changed after cargo wrote Cargo.lock; build again")
        } else {
            message
        }
    })?;
    if resolved.graph.named("manager-plugin").next().is_none() {
        return Err(format!("`{MANAGER_PACKAGE}` does not depend on manager-plugin"));
    }

    let out = out_dir.join("manager-graph.tsv");
    std::fs::write(&out, resolved.graph.to_snapshot()).map_err(|e| format!("write {}: {e}", out.display()))?;

    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/check_dep/graph.rs");
    println!("cargo:rerun-if-changed=src/check_dep/cargo_graph.rs");
    println!("cargo:rerun-if-changed={}", resolved.lockfile.display());
    for manifest in &resolved.manifests {
        println!("cargo:rerun-if-changed={}", manifest.display());
    }
    if let Some(root) = resolved.lockfile.parent() {
        for config in [root.join(".cargo/config.toml"), root.join(".cargo/config")] {
            if config.exists() {
                println!("cargo:rerun-if-changed={}", config.display());
            }
        }
    }
    println!("cargo:rustc-env=CHECK_DEP_MANAGER_TARGET={target}");
    Ok(())
}
