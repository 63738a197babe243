//! The `plugin` command line: `new`, `build`, `check-dep`, `inspect` and `test`. The binary is a thin `main` over [`run`], so tests
//! can run exactly the command lines the documentation shows.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use manager_plugin::Kind;

use crate::build::{BuildOptions, BuildOutput, build};

/// `plugin`: create, build and check damocles-rs manager plugins.
#[derive(Parser, Debug)]
#[command(name = "plugin", version, about = "Create, build and check damocles-rs manager plugins")]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a plugin crate of the given kind that builds and loads as it is (manifest, code, tests, README).
    New {
        /// What the plugin provides: KVStore, FileStore, SyncSectorState or RegisterJsonRpc.
        #[arg(long, value_parser = parse_kind)]
        kind: Kind,
        /// The plugin's name ([A-Za-z0-9_-], at most 64 characters); the built file is plugin-<NAME>.so.
        name: String,
        /// Where to create the crate (must not exist or be empty; default: ./<NAME>).
        dir: Option<PathBuf>,
    },
    /// Build a plugin crate (a lib crate with manifest.toml) into <out-dir>/plugin-<name>.so.
    Build {
        /// The plugin crate's directory (holds Cargo.toml and manifest.toml).
        #[arg(long)]
        src_dir: PathBuf,
        /// Where to write plugin-<name>.so (e.g. the manager's [Common.Plugins] Dir).
        #[arg(long)]
        out_dir: PathBuf,
        /// Build with the dev profile, for a debug manager (`cargo run -p manager`, the test suite). The default
        /// is the release profile, which is what `scripts/run.sh` and `cargo build --release` run.
        #[arg(long, conflicts_with = "release")]
        debug: bool,
        /// Build with the release profile (the default; kept for older scripts).
        #[arg(long, hide = true)]
        release: bool,
        /// Cargo target directory (default: $CARGO_TARGET_DIR, else one shared by all plugin builds,
        /// ~/.cache/damocles-plugin/target, so dependencies compile once for all your plugins).
        #[arg(long)]
        target_dir: Option<PathBuf>,
        /// Build even if the dependencies differ from the manager's (the manager will likely refuse it).
        #[arg(long)]
        skip_check_dep: bool,
        /// Build an executable <out-dir>/plugin-<name> that the manager runs as a child process: a crash cannot
        /// take the manager down, and any profile, toolchain or dependency versions load as long as the protocol's
        /// major version matches (docs/plugin-protocol.md). The crate is the same.
        #[arg(long)]
        process: bool,
    },
    /// Compare a plugin's dependency versions (and the SDK's features) with the manager's (offline).
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
        /// Compare with this damocles-manager binary (read, not run). Default: the manager that will load the
        /// plugin, the release build scripts/run.sh runs (target/release/damocles-manager), else one next to this
        /// tool, else on PATH; the report names the one used.
        #[arg(long)]
        manager: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Load a built plugin exactly as the manager does and run its kind's conformance suite against a scratch
    /// directory (never production data): one `pass`/`FAIL` line per behaviour; exit 0 only when all pass.
    Test {
        /// The plugin file (plugin-<name>.so).
        file: PathBuf,
        /// The damocles-manager binary that will load the plugin. Default: the release build scripts/run.sh runs
        /// (target/release/damocles-manager), else one next to this tool, else on PATH; the one used is printed
        /// on stderr. Its loader and fingerprint decide, so a plugin built for another profile is refused here too.
        #[arg(long)]
        manager: Option<PathBuf>,
        /// Print one JSON document: {file, kind, name, scratch, passed, results: [{behaviour, passed, reason}]}.
        #[arg(long)]
        json: bool,
        /// KEY=VALUE given to a KVStore plugin's constructor as Meta (repeatable; default: none). `$SCRATCH` in a
        /// value is replaced by a directory inside the scratch directory, e.g. --meta 'Path=$SCRATCH/db'.
        #[arg(long = "meta", value_name = "KEY=VALUE")]
        meta: Vec<String>,
        /// How long one behaviour may run before the plugin is reported hung (default 60).
        #[arg(long, value_name = "SECS")]
        timeout_secs: Option<u64>,
    },
}

fn parse_kind(text: &str) -> Result<Kind, String> {
    Kind::from_name(text)
        .ok_or_else(|| format!("unknown kind {text:?}; allowed: KVStore, FileStore, SyncSectorState, RegisterJsonRpc"))
}

/// Parses `args` (the first one is the program name) and runs the command. `Ok(true)`: success (exit 0);
/// `Ok(false)`: the command ran and reported a failure (exit 1); `Err`: it could not run (printed as `error: …`).
pub fn run_args<I, T>(args: I) -> anyhow::Result<bool>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    run(Cli::try_parse_from(args)?)
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<bool> {
    match cli.command {
        Command::New { kind, name, dir } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
            let created = crate::new::create(kind, &name, &dir)?;
            println!("{created}");
            Ok(true)
        }
        Command::Build { src_dir, out_dir, debug, release: _, target_dir, skip_check_dep, process } => {
            let options = BuildOptions {
                src_dir: src_dir.clone(),
                out_dir,
                release: !debug,
                target_dir: target_dir.or_else(default_target_dir),
                skip_check_dep,
                process,
            };
            // A crate without a lockfile starts on the manager's versions (an example copied out, a fresh crate).
            crate::check_dep::seed_manager_lockfile(&src_dir)
                .with_context(|| format!("plugin build --src-dir {}", src_dir.display()))?;
            let output = build(&options).with_context(|| format!("plugin build --src-dir {}", src_dir.display()))?;
            println!(
                "Package {:?} as plugin {:?} success.",
                src_dir.display().to_string(),
                output.library.display().to_string()
            );
            println!("{}", summary(&output, !debug, process));
            Ok(true)
        }
        Command::CheckDep { fix, path } => crate::check_dep::run_cli(&path, fix),
        Command::Inspect { file, manager, json } => crate::inspect::run_cli(&file, manager.as_deref(), json),
        Command::Test { file, manager, json, meta, timeout_secs } => {
            Ok(crate::test_plugin::run_cli(&file, manager.as_deref(), json, &meta, timeout_secs)?)
        }
    }
}

/// The line `plugin build` prints after the file: what was built and which manager loads it (the manifest itself
/// is shown by `plugin inspect FILE`).
fn summary(output: &BuildOutput, release: bool, process: bool) -> String {
    let profile = match (process, release) {
        (true, _) => format!(
            "process plugin (protocol {}.x): any manager speaking it runs it, release or debug; put it in the plugins dir",
            manager_plugin::process::wire::PROTOCOL_MAJOR
        ),
        (false, true) => {
            "release profile: a release manager loads it (scripts/run.sh, target/release/damocles-manager)".into()
        }
        (false, false) => {
            "debug profile: a debug manager loads it (cargo run -p manager, target/debug/damocles-manager)".into()
        }
    };
    format!(
        "{}/{} built {}, {profile}; `plugin inspect` shows its manifest",
        output.manifest.kind, output.manifest.name, output.build_time
    )
}

/// The target directory plugin builds share when neither `--target-dir` nor `$CARGO_TARGET_DIR` names one:
/// `$XDG_CACHE_HOME/damocles-plugin/target`, else `~/.cache/damocles-plugin/target`. `None` lets cargo decide
/// (`$CARGO_TARGET_DIR`, or the crate's own `target/` when there is no home directory).
pub fn default_target_dir() -> Option<PathBuf> {
    if std::env::var_os("CARGO_TARGET_DIR").is_some_and(|v| !v.is_empty()) {
        return None;
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| Path::new(&h).join(".cache")))?;
    Some(cache.join("damocles-plugin").join("target"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build_flags(args: &[&str]) -> (bool, bool) {
        let mut all = vec!["plugin", "build", "--src-dir", "p", "--out-dir", "o"];
        all.extend_from_slice(args);
        match Cli::try_parse_from(all).unwrap().command {
            Command::Build { debug, release, .. } => (debug, release),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn build_defaults_to_the_release_profile_and_debug_opts_out() {
        assert_eq!(build_flags(&[]), (false, false));
        assert_eq!(build_flags(&["--debug"]), (true, false));
        assert_eq!(build_flags(&["--release"]), (false, true));
        assert!(
            Cli::try_parse_from(["plugin", "build", "--src-dir", "p", "--out-dir", "o", "--debug", "--release"])
                .is_err()
        );
    }

    #[test]
    fn new_takes_every_kind_by_its_manifest_name() {
        for (name, kind) in [
            ("KVStore", Kind::KvStore),
            ("FileStore", Kind::FileStore),
            ("SyncSectorState", Kind::SyncSectorState),
            ("RegisterJsonRpc", Kind::RegisterJsonRpc),
        ] {
            match Cli::try_parse_from(["plugin", "new", "--kind", name, "x"]).unwrap().command {
                Command::New { kind: parsed, .. } => assert_eq!(parsed, kind),
                other => panic!("{other:?}"),
            }
        }
        let err = Cli::try_parse_from(["plugin", "new", "--kind", "Blob", "x"]).unwrap_err().to_string();
        assert!(err.contains("unknown kind \"Blob\"; allowed: KVStore"), "{err}");
    }
}
