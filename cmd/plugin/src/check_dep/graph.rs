//! The resolved dependency graph of one package, as check-dep compares it, and its snapshot text format.
//!
//! This file is also compiled into `cmd/plugin/build.rs` (via `#[path]`), which captures the manager's graph at
//! compile time with the very same code the tool later uses on a plugin. So it may use only `std` and
//! `cargo_metadata` (a build-dependency too), and has its own error type instead of `CheckDepError`.

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;

use cargo_metadata::semver::Version;

/// How a crate of the graph takes part in the compiled binary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CrateKind {
    /// Compiled for the target and linked into the binary (a normal dependency, not below a proc-macro).
    Linked,
    /// A procedural macro used by a linked crate: it runs at compile time, but the code it generates is linked.
    ProcMacro,
}

impl CrateKind {
    fn as_str(self) -> &'static str {
        match self {
            CrateKind::Linked => "lib",
            CrateKind::ProcMacro => "proc-macro",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "lib" => Some(CrateKind::Linked),
            "proc-macro" => Some(CrateKind::ProcMacro),
            _ => None,
        }
    }
}

/// One crate of a resolved graph: what cargo would compile for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrateNode {
    /// Package name (`serde`, `manager-plugin`).
    pub name: String,
    /// The locked version.
    pub version: Version,
    /// Where it comes from: `registry+https://…`, `git+https://…#<commit>`, or `path+file:///<dir>`.
    pub source: String,
    /// Linked into the binary, or a proc-macro used by a linked crate.
    pub kind: CrateKind,
    /// The features cargo compiles it with, for this package alone (not unified across a workspace).
    pub features: BTreeSet<String>,
}

impl CrateNode {
    /// Whether `self` and `other` are "the same crate" to cargo: same name and semver-compatible versions.
    /// Cargo links semver-incompatible versions (`toml 0.8` and `toml 0.9`) side by side as different crates.
    pub fn same_crate_as(&self, other: &CrateNode) -> bool {
        self.name == other.name && semver_compatible(&self.version, &other.version)
    }
}

/// Cargo's compatibility rule: the left-most non-zero component must be equal.
pub fn semver_compatible(a: &Version, b: &Version) -> bool {
    if a.major != b.major {
        false
    } else if a.major > 0 {
        true
    } else if a.minor != b.minor {
        false
    } else if a.minor > 0 {
        true
    } else {
        a.patch == b.patch
    }
}

/// The crates one package compiles for one target, without the package itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrateGraph {
    /// The package the graph belongs to, as `name version`.
    pub root: String,
    /// The target triple the graph was resolved for.
    pub target: String,
    /// Every linked crate and every proc-macro a linked crate uses, sorted by name, version and source.
    pub crates: Vec<CrateNode>,
}

impl CrateGraph {
    /// The nodes named `name`, in version order.
    pub fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a CrateNode> + 'a {
        self.crates.iter().filter(move |c| c.name == name)
    }

    /// The node of this graph that is the same crate as `node` (see [`CrateNode::same_crate_as`]), preferring
    /// one from the same source.
    pub fn counterpart(&self, node: &CrateNode) -> Option<&CrateNode> {
        let mut candidates = self.crates.iter().filter(|c| c.same_crate_as(node));
        let first = candidates.next()?;
        if first.source == node.source {
            return Some(first);
        }
        Some(candidates.find(|c| c.source == node.source).unwrap_or(first))
    }

    /// The graph as text: a `#` comment, `root` and `target` lines, then one tab-separated line per crate:
    /// `crate <name> <version> <lib|proc-macro> <source> <feature,feature,…>`.
    pub fn to_snapshot(&self) -> String {
        let mut text = String::from("# check-dep dependency graph (generated; one crate per line)\n");
        text.push_str(&format!("root\t{}\ntarget\t{}\n", self.root, self.target));
        for c in &self.crates {
            let features: Vec<&str> = c.features.iter().map(String::as_str).collect();
            text.push_str(&format!(
                "crate\t{}\t{}\t{}\t{}\t{}\n",
                c.name,
                c.version,
                c.kind.as_str(),
                c.source,
                features.join(",")
            ));
        }
        text
    }

    /// Parses the text [`CrateGraph::to_snapshot`] writes.
    pub fn from_snapshot(text: &str) -> Result<Self, GraphError> {
        let mut root = None;
        let mut target = None;
        let mut crates = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let bad = |reason: &str| GraphError::Snapshot { line: index + 1, reason: reason.to_string() };
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split('\t').collect();
            match fields.as_slice() {
                ["root", value] => root = Some(value.to_string()),
                ["target", value] => target = Some(value.to_string()),
                ["crate", name, version, kind, source, features] => {
                    let version = Version::parse(version).map_err(|e| bad(&format!("version {version:?}: {e}")))?;
                    let kind = CrateKind::parse(kind).ok_or_else(|| bad(&format!("unknown kind {kind:?}")))?;
                    crates.push(CrateNode {
                        name: name.to_string(),
                        version,
                        source: source.to_string(),
                        kind,
                        features: split_features(features),
                    });
                }
                _ => return Err(bad("expected `root`, `target` or a 6-field `crate` line")),
            }
        }
        let missing = |what: &str| GraphError::Snapshot { line: 0, reason: format!("no `{what}` line") };
        let mut graph = CrateGraph {
            root: root.ok_or_else(|| missing("root"))?,
            target: target.ok_or_else(|| missing("target"))?,
            crates,
        };
        graph.sort();
        Ok(graph)
    }

    /// Puts the crates in the canonical order (name, version, source, kind).
    pub fn sort(&mut self) {
        self.crates
            .sort_by(|a, b| (&a.name, &a.version, &a.source, a.kind).cmp(&(&b.name, &b.version, &b.source, b.kind)));
    }
}

/// Splits cargo's comma-separated feature list (`{f}` of `cargo tree`); empty means no features.
pub fn split_features(text: &str) -> BTreeSet<String> {
    text.split(',').map(str::trim).filter(|f| !f.is_empty()).map(str::to_string).collect()
}

/// Why a dependency graph could not be resolved or read.
#[derive(Debug)]
pub enum GraphError {
    /// A cargo command could not be started.
    Spawn { command: String, source: std::io::Error },
    /// A cargo command ran and failed.
    Cargo { command: String, dir: PathBuf, stderr: String },
    /// `cargo metadata` failed or printed something unusable.
    Metadata { manifest: PathBuf, message: String },
    /// The manifest does not name the package to check.
    NoPackage { manifest: PathBuf, reason: String },
    /// A line of `cargo tree` output that check-dep does not understand.
    TreeLine { manifest: PathBuf, line: String, reason: String },
    /// A crate of one build with two different feature sets: check-dep cannot tell which one is linked.
    ConflictingFeatures { manifest: PathBuf, name: String, version: String },
    /// A snapshot line that does not parse (line 0: the snapshot as a whole).
    Snapshot { line: usize, reason: String },
}

impl fmt::Display for GraphError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GraphError::Spawn { command, source } => write!(f, "could not run `{command}`: {source}"),
            GraphError::Cargo { command, dir, stderr } => {
                // Skip cargo's progress lines (`Updating crates.io index`, `Locking …`) before the error.
                let start = stderr.lines().position(|l| l.starts_with("error")).unwrap_or(0);
                let shown: Vec<&str> = stderr.lines().skip(start).collect();
                write!(f, "`{command}` failed in {}: {}", dir.display(), shown.join("\n").trim())
            }
            GraphError::Metadata { manifest, message } => {
                write!(f, "`cargo metadata` failed for {}: {}", manifest.display(), message.trim())
            }
            GraphError::NoPackage { manifest, reason } => write!(f, "{}: {reason}", manifest.display()),
            GraphError::TreeLine { manifest, line, reason } => {
                write!(f, "unexpected `cargo tree` line for {}: {reason}: {line:?}", manifest.display())
            }
            GraphError::ConflictingFeatures { manifest, name, version } => write!(
                f,
                "{}: {name} {version} is compiled twice for the target with different features",
                manifest.display()
            ),
            GraphError::Snapshot { line, reason } => write!(f, "dependency graph snapshot, line {line}: {reason}"),
        }
    }
}

impl std::error::Error for GraphError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            GraphError::Spawn { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A linked crates.io node, for tests.
#[cfg(test)]
pub(crate) fn test_node(name: &str, version: &str, features: &[&str]) -> CrateNode {
    CrateNode {
        name: name.into(),
        version: Version::parse(version).expect("test version"),
        source: "registry+https://github.com/rust-lang/crates.io-index".into(),
        kind: CrateKind::Linked,
        features: features.iter().map(|f| f.to_string()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::test_node as node;
    use super::*;

    #[test]
    fn snapshot_round_trips() {
        let mut graph = CrateGraph {
            root: "manager 0.1.0".into(),
            target: "x86_64-unknown-linux-gnu".into(),
            crates: vec![node("serde", "1.0.229", &["std", "derive"]), node("base64", "0.22.1", &[])],
        };
        graph.crates[1].kind = CrateKind::ProcMacro;
        graph.sort();
        let text = graph.to_snapshot();
        assert!(text.contains(
            "crate\tserde\t1.0.229\tlib\tregistry+https://github.com/rust-lang/crates.io-index\tderive,std\n"
        ));
        assert_eq!(CrateGraph::from_snapshot(&text).unwrap(), graph);
    }

    #[test]
    fn snapshot_errors_name_the_line() {
        let err =
            CrateGraph::from_snapshot("root\tm 0.1.0\ntarget\tt\ncrate\tserde\tnot-a-version\tlib\ts\t\n").unwrap_err();
        assert!(err.to_string().contains("line 3"), "{err}");
        let err = CrateGraph::from_snapshot("target\tt\n").unwrap_err();
        assert!(err.to_string().contains("no `root` line"), "{err}");
    }

    #[test]
    fn semver_compatibility_follows_cargo() {
        let v = |s: &str| Version::parse(s).unwrap();
        assert!(semver_compatible(&v("1.0.200"), &v("1.9.0")));
        assert!(!semver_compatible(&v("1.0.0"), &v("2.0.0")));
        assert!(semver_compatible(&v("0.9.1"), &v("0.9.5")));
        assert!(!semver_compatible(&v("0.8.1"), &v("0.9.1")));
        assert!(!semver_compatible(&v("0.0.1"), &v("0.0.2")));
    }

    #[test]
    fn counterpart_is_the_semver_compatible_version() {
        let graph = CrateGraph {
            root: "m 0.1.0".into(),
            target: "t".into(),
            crates: vec![node("thiserror", "1.0.69", &[]), node("thiserror", "2.0.17", &["std"])],
        };
        let found = graph.counterpart(&node("thiserror", "2.0.12", &[])).unwrap();
        assert_eq!(found.version, Version::parse("2.0.17").unwrap());
        assert!(graph.counterpart(&node("thiserror", "3.0.0", &[])).is_none());
        assert!(graph.counterpart(&node("serde", "1.0.0", &[])).is_none());
    }

    #[test]
    fn features_split_on_commas() {
        assert!(split_features("").is_empty());
        assert_eq!(split_features("std,alloc").into_iter().collect::<Vec<_>>(), ["alloc", "std"]);
    }
}
