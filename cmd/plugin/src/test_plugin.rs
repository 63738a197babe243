//! `plugin test FILE [--manager BIN] [--json]`: loads a built plugin exactly as a manager does and runs its
//! kind's conformance suite. Loading "exactly as the daemon does" needs the daemon's own loader and fingerprint,
//! so the work is done by the manager binary that will load the plugin (its hidden `__test-plugin` subcommand,
//! `manager::plugins::selftest`); this command finds that binary and runs it.
//!
//! Output: a header naming the file and the scratch directory, then one line per behaviour, `pass <behaviour>` or
//! `FAIL <behaviour>: <reason>` (the first behaviour, `load`, carries the loader's refusal), then a count. With
//! `--json`, one JSON document: `{file, kind, name, scratch, passed, results: [{behaviour, passed, reason}]}`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::manager_bin::{self, ManagerBinary};

/// The manager's hidden subcommand (`manager::plugins::selftest::SUBCOMMAND`).
const SUBCOMMAND: &str = "__test-plugin";

/// Why `plugin test` could not run the suite (a failing plugin is not an error: it is a report).
#[derive(Debug, thiserror::Error)]
pub enum TestError {
    /// No `--manager` and no manager in any default place ([`crate::manager_bin`]).
    #[error(
        "no damocles-manager binary found (looked at {searched}); build the manager that will load the plugin \
         (`cargo build --release -p manager`) or name it with `--manager BIN`"
    )]
    ManagerNotFound {
        /// Where the tool looked, in order.
        searched: String,
    },
    /// `--manager BIN` is not a file.
    #[error("manager binary {0} does not exist; pass the path of a built damocles-manager to `--manager`")]
    ManagerMissing(PathBuf),
    /// The plugin file is not there.
    #[error("plugin file {0} does not exist; build it with `plugin build` first")]
    PluginMissing(PathBuf),
    /// The manager could not be started.
    #[error("cannot run {manager} __test-plugin: {source}")]
    Spawn {
        /// The manager binary.
        manager: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The manager died before it could report (killed, or too old to know `__test-plugin`).
    #[error(
        "{manager} __test-plugin ended without a report ({status}); is it a damocles-manager of this checkout? \
         rebuild it, or pass the right one with `--manager BIN`"
    )]
    NoReport {
        /// The manager binary.
        manager: PathBuf,
        /// How it ended.
        status: std::process::ExitStatus,
    },
}

/// The manager binary `plugin test` runs: `explicit`, else the default of [`crate::manager_bin`] (the release
/// build `scripts/run.sh` runs first).
pub fn find_manager(explicit: Option<&Path>) -> Result<ManagerBinary, TestError> {
    manager_bin::find(explicit)
        .map_err(TestError::ManagerMissing)?
        .ok_or_else(|| TestError::ManagerNotFound { searched: manager_bin::searched() })
}

/// The manager command line that runs the suite on `file` (see [`find_manager`] for `manager`), `meta`
/// (`KEY=VALUE`) for a KVStore plugin's constructor, `timeout_secs` the limit per behaviour (default 60 s). Exit status: 0 all passed, 1 a behaviour failed or the file
/// was refused, anything else: no report.
pub fn command(
    file: &Path,
    manager: Option<&Path>,
    json: bool,
    meta: &[String],
    timeout_secs: Option<u64>,
) -> Result<Command, TestError> {
    if !file.is_file() {
        return Err(TestError::PluginMissing(file.to_path_buf()));
    }
    let manager = find_manager(manager)?;
    let mut command = Command::new(&manager.path);
    command.arg(SUBCOMMAND).arg(file);
    if json {
        command.arg("--json");
    }
    for entry in meta {
        command.arg("--meta").arg(entry);
    }
    if let Some(secs) = timeout_secs {
        command.arg("--timeout-secs").arg(secs.to_string());
    }
    Ok(command)
}

/// Runs [`command`] with the report on this process's stdout, after naming the manager binary used on stderr
/// (stdout stays the report, one JSON document with `--json`). `Ok(true)` when every behaviour passed, `Ok(false)`
/// when one failed or the file was refused.
pub fn run_cli(
    file: &Path,
    manager: Option<&Path>,
    json: bool,
    meta: &[String],
    timeout_secs: Option<u64>,
) -> Result<bool, TestError> {
    let chosen = find_manager(manager)?;
    eprintln!("manager: {chosen}");
    let mut command = command(file, Some(&chosen.path), json, meta, timeout_secs)?;
    let manager = chosen.path;
    let status = command.status().map_err(|source| TestError::Spawn { manager: manager.clone(), source })?;
    match status.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => Err(TestError::NoReport { manager, status }),
    }
}
