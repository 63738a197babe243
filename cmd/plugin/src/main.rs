//! `plugin`: build and check damocles-rs manager plugins.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use plugin::build::{BuildOptions, build, manifest_json};

#[derive(Parser)]
#[command(name = "plugin", version, about = "Build and check damocles-rs manager plugins")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build a plugin crate (a lib crate with manifest.toml) into <out-dir>/plugin-<name>.so.
    Build {
        /// The plugin crate's directory (holds Cargo.toml and manifest.toml).
        #[arg(long)]
        src_dir: PathBuf,
        /// Where to write plugin-<name>.so.
        #[arg(long)]
        out_dir: PathBuf,
        /// Build with the release profile (use this when the manager is a release build).
        #[arg(long)]
        release: bool,
        /// Cargo target directory (default: the plugin crate's).
        #[arg(long)]
        target_dir: Option<PathBuf>,
        /// Build even if the dependencies differ from the manager's (the manager will likely refuse it).
        #[arg(long)]
        skip_check_dep: bool,
    },
    /// Compare a plugin's dependency versions and features with the manager's (offline).
    CheckDep {
        /// Pin differing dependencies to the manager's versions; restores the original files on failure.
        #[arg(long)]
        fix: bool,
        /// The plugin's Cargo.toml (or its directory).
        path: PathBuf,
    },
    /// Show what a built plugin is and whether a manager would load it, without running any of its code
    /// (exit 0 only when compatible).
    Inspect {
        /// The plugin file (plugin-<name>.so).
        file: PathBuf,
        /// Compare with this damocles-manager binary (read, not run) instead of this tool's own build.
        #[arg(long)]
        manager: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<bool> {
    match cli.command {
        Command::Build { src_dir, out_dir, release, target_dir, skip_check_dep } => {
            let options = BuildOptions { src_dir: src_dir.clone(), out_dir, release, target_dir, skip_check_dep };
            let output = build(&options).with_context(|| format!("plugin build --src-dir {}", src_dir.display()))?;
            println!(
                "Package {:?} as plugin {:?} success.",
                src_dir.display().to_string(),
                output.library.display().to_string()
            );
            println!("{}", serde_json::to_string_pretty(&manifest_json(&output))?);
            Ok(true)
        }
        Command::CheckDep { fix, path } => plugin::check_dep::run_cli(&path, fix),
        Command::Inspect { file, manager, json } => plugin::inspect::run_cli(&file, manager.as_deref(), json),
    }
}
