//! `check-dep --fix`: pin a plugin to the manager's versions and features, or leave it exactly as it was.
//!
//! Rounds of (1) widening `Cargo.toml` requirements that exclude the manager's version, else (2) `cargo update
//! -p name@current --precise version` for each differing version, else (3) adding missing features; each round
//! ends with a fresh check. A difference no round can fix (another source, features the manager lacks, a missing
//! SDK), a failing step, or a round without progress rolls everything back from the [`Backup`].

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::backup::Backup;
use super::cargo_graph;
use super::error::CheckDepError;
use super::manifest_edit::PluginManifest;
use super::report::{CheckReport, Difference};
use super::{cargo_binary, check_manifest, manifest_path};

/// More rounds than any real fix needs (requirements, pins, features, pins of crates the features pulled in).
const MAX_ROUNDS: usize = 8;

/// What `--fix` did. [`fmt::Display`] gives what `check-dep --fix` prints.
#[derive(Debug)]
pub struct FixOutcome {
    /// The changes made, one line each (kept on success, rolled back on failure).
    pub changes: Vec<String>,
    /// On success the final, clean report; on failure the report of the restored, original plugin.
    pub report: CheckReport,
    /// Why the fix was rolled back, if it was.
    pub failure: Option<FixFailure>,
}

/// Why `--fix` rolled back, and what is left for the author.
#[derive(Debug)]
pub struct FixFailure {
    /// The step that failed or the differences no step can fix.
    pub reason: String,
    /// The files restored byte for byte (a lockfile that did not exist before is deleted again).
    pub restored: Vec<PathBuf>,
    /// What to change by hand, one line per blocking difference.
    pub hand_fixes: Vec<String>,
}

impl FixOutcome {
    /// Whether the plugin now matches the manager.
    pub fn is_fixed(&self) -> bool {
        self.failure.is_none() && self.report.is_clean()
    }
}

impl fmt::Display for FixOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(failure) = &self.failure else {
            for change in &self.changes {
                writeln!(f, "fixed: {change}")?;
            }
            return write!(f, "{}", self.report);
        };
        writeln!(f, "check-dep --fix: cannot make {} match the manager: {}", self.report.plugin, failure.reason)?;
        for difference in &self.report.differences {
            writeln!(f, "{difference}")?;
        }
        writeln!(f, "to change by hand:")?;
        for fix in &failure.hand_fixes {
            writeln!(f, "  - {fix}")?;
        }
        let files: Vec<String> = failure.restored.iter().map(|p| p.display().to_string()).collect();
        write!(
            f,
            "check-dep --fix: failed; rolled back {} change(s) and restored {} byte for byte; {} difference(s) remain \
             in {} shared crates",
            self.changes.len(),
            files.join(" and "),
            self.report.differences.len(),
            self.report.shared
        )
    }
}

/// Runs `check-dep --fix` on the plugin at `path` (its `Cargo.toml` or directory). `Ok` whether it fixed the
/// plugin or rolled back (see [`FixOutcome::is_fixed`]); `Err` when it could not start, or could not restore a
/// file (the error names the kept copy).
pub fn fix(path: &Path) -> Result<FixOutcome, CheckDepError> {
    let manifest = manifest_path(path)?;
    let cargo = cargo_binary();
    let lockfile = workspace_lockfile(&cargo, &manifest)?;
    let backup = Backup::take(&[&manifest, &lockfile])?;
    if let Err(e) = super::seed_lockfile(&lockfile) {
        backup.restore()?;
        return Err(e);
    }
    let original = match check_manifest(&manifest) {
        Ok(report) => report,
        Err(e) => {
            backup.restore()?;
            return Err(e);
        }
    };
    if original.is_clean() {
        return Ok(FixOutcome { changes: Vec::new(), report: original, failure: None });
    }
    let mut changes = Vec::new();
    let fixer = Fixer { manifest: &manifest, lockfile: &lockfile, cargo: &cargo };
    match fixer.run(original.clone(), &mut changes) {
        Ok(report) => Ok(FixOutcome { changes, report, failure: None }),
        Err(stuck) => {
            backup.restore()?;
            let restored = vec![manifest.clone(), lockfile.clone()];
            let mut hand_fixes: Vec<String> = stuck.blocking.iter().map(Difference::hand_fix).collect();
            if original.differences.iter().any(|d| !stuck.blocking.contains(d)) {
                hand_fixes.push(format!(
                    "then run `plugin check-dep --fix {}` again for the other differences",
                    manifest.display()
                ));
            }
            Ok(FixOutcome {
                changes,
                report: original,
                failure: Some(FixFailure { reason: stuck.reason, restored, hand_fixes }),
            })
        }
    }
}

/// The workspace `Cargo.lock` the plugin resolves with (its own, unless it is a member of a larger workspace).
pub(super) fn workspace_lockfile(cargo: &Path, manifest: &Path) -> Result<PathBuf, CheckDepError> {
    let dir = manifest.parent().unwrap_or(Path::new("."));
    let mut command = Command::new(cargo);
    command.current_dir(dir).arg("locate-project").arg("--workspace").arg("--message-format").arg("plain");
    command.arg("--manifest-path").arg(manifest);
    let out = cargo_graph::run(&mut command, dir)
        .map_err(|source| CheckDepError::Resolve { manifest: manifest.into(), source })?;
    let workspace_manifest = PathBuf::from(out.trim());
    Ok(workspace_manifest.parent().unwrap_or(dir).join("Cargo.lock"))
}

/// Why a fix cannot go on.
struct Stuck {
    reason: String,
    blocking: Vec<Difference>,
}

impl Stuck {
    fn new(reason: impl Into<String>, blocking: &[Difference]) -> Self {
        Stuck { reason: reason.into(), blocking: blocking.to_vec() }
    }
}

struct Fixer<'a> {
    manifest: &'a Path,
    lockfile: &'a Path,
    cargo: &'a Path,
}

impl Fixer<'_> {
    fn run(&self, mut report: CheckReport, changes: &mut Vec<String>) -> Result<CheckReport, Stuck> {
        for _ in 0..MAX_ROUNDS {
            if report.is_clean() {
                return Ok(report);
            }
            let unfixable: Vec<Difference> =
                report.differences.iter().filter(|d| !fixable(d, &report.differences)).cloned().collect();
            if !unfixable.is_empty() {
                let reason = "these differences need a change only the author can make (another source, features \
                              the manager does not enable, or no SDK dependency)";
                return Err(Stuck::new(reason, &unfixable));
            }
            let versions: Vec<&Difference> =
                report.differences.iter().filter(|d| matches!(d, Difference::Version { .. })).collect();
            if !versions.is_empty() {
                if !self.widen_requirements(&versions, changes)? {
                    self.pin_versions(&versions, changes)?;
                }
            } else {
                self.add_features(&report.differences, changes)?;
            }
            let next = check_manifest(self.manifest)
                .map_err(|e| Stuck::new(format!("the re-check failed: {e}"), &report.differences))?;
            if next.differences == report.differences {
                return Err(Stuck::new("a fix round changed nothing", &next.differences));
            }
            report = next;
        }
        if report.is_clean() {
            return Ok(report);
        }
        Err(Stuck::new(format!("differences remain after {MAX_ROUNDS} rounds"), &report.differences))
    }

    /// Widens the requirements in `Cargo.toml` that exclude the manager's versions. Returns whether it did.
    fn widen_requirements(&self, versions: &[&Difference], changes: &mut Vec<String>) -> Result<bool, Stuck> {
        let mut manifest =
            PluginManifest::read(self.manifest).map_err(|e| stuck_on(e.to_string(), versions.iter().copied()))?;
        let mut changed = false;
        for difference in versions {
            if let Difference::Version { name, manager, .. } = difference {
                let lines = manifest.accept_version(name, manager).map_err(|why| stuck_on(why, [*difference]))?;
                changed |= !lines.is_empty();
                changes.extend(lines);
            }
        }
        if changed {
            manifest.write().map_err(|e| stuck_on(e.to_string(), versions.iter().copied()))?;
        }
        Ok(changed)
    }

    /// `cargo update -p name@current --precise version` for each differing crate still locked at `current`
    /// (pinning one crate can move another, e.g. serde moves serde_core).
    fn pin_versions(&self, versions: &[&Difference], changes: &mut Vec<String>) -> Result<(), Stuck> {
        for difference in versions {
            let Difference::Version { name, local, manager } = difference else { continue };
            let locked =
                locked_packages(self.lockfile).map_err(|e| stuck_on(e.to_string(), versions.iter().copied()))?;
            if !locked.contains(&(name.clone(), local.to_string())) {
                continue;
            }
            let dir = self.manifest.parent().unwrap_or(Path::new("."));
            let mut command = Command::new(self.cargo);
            command.current_dir(dir).arg("update").arg("--manifest-path").arg(self.manifest);
            command.args(["-p", &format!("{name}@{local}"), "--precise", &manager.to_string()]);
            let shown = cargo_graph::show(&command);
            cargo_graph::run(&mut command, dir).map_err(|e| stuck_on(e.to_string(), [*difference]))?;
            changes.push(format!("Cargo.lock: {shown}"));
        }
        Ok(())
    }

    /// Adds the features the manager has and the plugin lacks (versions already agree).
    fn add_features(&self, differences: &[Difference], changes: &mut Vec<String>) -> Result<(), Stuck> {
        let mut manifest = PluginManifest::read(self.manifest).map_err(|e| stuck_on(e.to_string(), differences))?;
        for difference in differences {
            if let Difference::Features { name, version, local, manager, .. } = difference {
                let missing: Vec<String> = manager.difference(local).cloned().collect();
                let line = manifest.add_features(name, version, &missing).map_err(|why| stuck_on(why, [difference]))?;
                changes.push(line);
            }
        }
        manifest.write().map_err(|e| stuck_on(e.to_string(), differences))
    }
}

fn stuck_on<'a>(reason: String, blocking: impl IntoIterator<Item = &'a Difference>) -> Stuck {
    Stuck { reason, blocking: blocking.into_iter().cloned().collect() }
}

/// Whether a fix round can remove `difference`. A feature difference on a crate whose version also differs is
/// judged again once the version is pinned.
fn fixable(difference: &Difference, all: &[Difference]) -> bool {
    match difference {
        Difference::MissingSdk { .. } | Difference::Source { .. } => false,
        Difference::Version { .. } => true,
        Difference::Features { name, version, local, manager, .. } => {
            let version_pending = all
                .iter()
                .any(|d| matches!(d, Difference::Version { name: n, local: l, .. } if n == name && l == version));
            version_pending || local.is_subset(manager)
        }
    }
}

/// The `(name, version)` pairs of a `Cargo.lock` (empty when it does not exist).
fn locked_packages(lockfile: &Path) -> Result<BTreeSet<(String, String)>, CheckDepError> {
    let text = match std::fs::read_to_string(lockfile) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(source) => return Err(CheckDepError::Io { path: lockfile.into(), source }),
    };
    let bad = |reason: String| CheckDepError::Lockfile { lockfile: lockfile.into(), reason };
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| bad(e.to_string()))?;
    let packages = table.get("package").and_then(toml::Value::as_array).map(Vec::as_slice).unwrap_or_default();
    packages
        .iter()
        .map(|p| {
            let field = |key: &str| p.get(key).and_then(toml::Value::as_str).map(str::to_string);
            field("name").zip(field("version")).ok_or_else(|| bad("a [[package]] without name or version".into()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use cargo_metadata::semver::Version;

    use super::*;

    fn features(name: &str, version: &str, local: &[&str], manager: &[&str]) -> Difference {
        Difference::Features {
            name: name.into(),
            version: Version::parse(version).unwrap(),
            local: local.iter().map(|s| s.to_string()).collect(),
            manager: manager.iter().map(|s| s.to_string()).collect(),
            show_version: false,
        }
    }

    #[test]
    fn extra_features_are_unfixable_unless_the_version_moves_first() {
        let extra = features("serde_json", "1.0.160", &["preserve_order", "std"], &["std"]);
        assert!(!fixable(&extra, std::slice::from_ref(&extra)));
        let version = Difference::Version {
            name: "serde_json".into(),
            local: Version::parse("1.0.160").unwrap(),
            manager: Version::parse("1.0.154").unwrap(),
        };
        assert!(fixable(&extra, &[version, extra.clone()]));
        let missing = features("serde", "1.0.229", &["std"], &["alloc", "std"]);
        assert!(fixable(&missing, std::slice::from_ref(&missing)));
    }

    #[test]
    fn lockfile_packages_are_read_and_a_missing_lockfile_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("Cargo.lock");
        assert!(locked_packages(&lock).unwrap().is_empty());
        std::fs::write(&lock, "version = 4\n\n[[package]]\nname = \"serde\"\nversion = \"1.0.225\"\n").unwrap();
        assert!(locked_packages(&lock).unwrap().contains(&("serde".to_string(), "1.0.225".to_string())));
        std::fs::write(&lock, "[[package]]\nname = \"serde\"\n").unwrap();
        assert!(locked_packages(&lock).unwrap_err().to_string().contains("Cargo.lock"));
    }
}
