//! Comparing a plugin's graph with the manager's: the differences and the report `check-dep` prints.

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;

use cargo_metadata::semver::Version;

use super::graph::{CrateGraph, CrateNode};

/// The SDK crate every plugin must share with the manager.
pub const SDK: &str = "manager-plugin";

/// The crates a plugin must share with the manager exactly (version, source and compiled features), because
/// their types or code cross the plugin boundary: only the SDK. Every SPI signature uses SDK and std types only
/// (std is pinned by the rustc items of the ABI fingerprint), and no SDK type that crosses embeds a type of
/// another crate, so every other crate is a separate copy on each side.
///
/// Every other shared crate is matched as policy: same version and source as the manager (one set of versions
/// to audit and debug), but its features are not compared: a different feature set of a private copy changes
/// nothing at the boundary, and asking for the manager's would add dependencies the plugin never uses.
pub const MUST_MATCH_EXACTLY: &[&str] = &[SDK];

/// Whether `name` must match the manager exactly (see [`MUST_MATCH_EXACTLY`]).
pub fn must_match_exactly(name: &str) -> bool {
    MUST_MATCH_EXACTLY.contains(&name)
}

/// One way a plugin's build would differ from the manager's. Displayed as one line, `name local => manager`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Difference {
    /// The plugin does not depend on `manager-plugin` at all.
    MissingSdk {
        /// The manager's `manager-plugin`.
        manager: CrateNode,
    },
    /// A shared crate is locked at another version.
    Version {
        /// Crate name.
        name: String,
        /// The plugin's version.
        local: Version,
        /// The manager's version.
        manager: Version,
    },
    /// A shared crate comes from another source (a git fork, a path, another registry).
    Source {
        /// Crate name.
        name: String,
        /// The plugin's version of it.
        version: Version,
        /// The plugin's source.
        local: String,
        /// The manager's source.
        manager: String,
    },
    /// A shared crate is compiled with other features.
    Features {
        /// Crate name.
        name: String,
        /// The plugin's version of it.
        version: Version,
        /// The plugin's compiled features.
        local: BTreeSet<String>,
        /// The manager's compiled features.
        manager: BTreeSet<String>,
        /// Whether the plugin has several versions of the crate, so the line must name the version.
        show_version: bool,
    },
}

impl Difference {
    /// The crate the difference is about.
    pub fn name(&self) -> &str {
        match self {
            Difference::MissingSdk { .. } => SDK,
            Difference::Version { name, .. } | Difference::Source { name, .. } | Difference::Features { name, .. } => {
                name
            }
        }
    }

    /// Whether it is about the SDK itself; these are reported first.
    pub fn is_sdk(&self) -> bool {
        self.name() == SDK
    }

    /// What the plugin's author can do about it by hand.
    pub fn hand_fix(&self) -> String {
        match self {
            Difference::MissingSdk { manager } => {
                format!("add `{}` to [dependencies]", dependency_line(manager))
            }
            Difference::Version { name, local, manager } => format!(
                "make every requirement on {name} accept {manager} (`cargo tree -e normal -i {name}@{local}` shows \
                 who requires {local}), then run `cargo update -p {name}@{local} --precise {manager}`"
            ),
            Difference::Source { name, local, manager, .. } => format!(
                "take {name} from {manager} instead of {local} (its dependency line, or a [patch] that redirects it)"
            ),
            Difference::Features { name, version, local, manager, .. } => {
                let missing: Vec<&str> = manager.difference(local).map(String::as_str).collect();
                let extra: Vec<&str> = local.difference(manager).map(String::as_str).collect();
                let mut advice = Vec::new();
                if !missing.is_empty() {
                    advice.push(format!(
                        "enable {} with `{name} = {{ version = \"{version}\", default-features = false, features = \
                         [{}] }}` in [dependencies]",
                        missing.join(","),
                        quoted(&missing)
                    ));
                }
                if !extra.is_empty() {
                    advice.push(format!(
                        "stop enabling {} (`cargo tree -e features -i {name}@{version}` shows who does): the manager is \
                         built without them",
                        extra.join(",")
                    ));
                }
                format!("{name}: {}", advice.join("; "))
            }
        }
    }
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sdk_note = if self.is_sdk() { ": the plugin is built against another SDK than the manager" } else { "" };
        match self {
            Difference::MissingSdk { manager } => write!(
                f,
                "{SDK} (none) => {}: the plugin does not depend on the SDK, so the manager cannot load it; add `{}` \
                 to [dependencies]",
                manager.version,
                dependency_line(manager)
            ),
            Difference::Version { name, local, manager } => write!(f, "{name} {local} => {manager}{sdk_note}"),
            Difference::Source { name, version, local, manager } => {
                write!(f, "{name} {version} ({local}) => ({manager}){sdk_note}")
            }
            Difference::Features { name, version, local, manager, show_version } => {
                let shown = if *show_version { format!("{name}@{version}") } else { name.clone() };
                let missing: Vec<&str> = manager.difference(local).map(String::as_str).collect();
                let extra: Vec<&str> = local.difference(manager).map(String::as_str).collect();
                let mut delta = Vec::new();
                if !missing.is_empty() {
                    delta.push(format!("missing {}", missing.join(",")));
                }
                if !extra.is_empty() {
                    delta.push(format!("extra {}", extra.join(",")));
                }
                write!(f, "{shown}[{}] => [{}] ({}){sdk_note}", join(local), join(manager), delta.join("; "))
            }
        }
    }
}

fn is_path(source: &str) -> bool {
    source.starts_with("path+")
}

fn join(features: &BTreeSet<String>) -> String {
    features.iter().map(String::as_str).collect::<Vec<_>>().join(",")
}

fn quoted(features: &[&str]) -> String {
    features.iter().map(|f| format!("\"{f}\"")).collect::<Vec<_>>().join(", ")
}

/// The `[dependencies]` line that gives a crate the way the manager has it.
pub fn dependency_line(node: &CrateNode) -> String {
    let name = &node.name;
    if let Some(dir) = node.source.strip_prefix("path+file://") {
        format!("{name} = {{ path = \"{dir}\" }}")
    } else if let Some(git) = node.source.strip_prefix("git+") {
        let (url, commit) = git.split_once('#').unwrap_or((git, ""));
        let url = url.split_once('?').map_or(url, |(u, _)| u);
        format!("{name} = {{ git = \"{url}\", rev = \"{commit}\" }}")
    } else if node.source == CRATES_IO || node.source == CRATES_IO_SPARSE {
        format!("{name} = \"={}\"", node.version)
    } else {
        format!("{name} = \"={}\" (from {})", node.version, node.source)
    }
}

const CRATES_IO: &str = "registry+https://github.com/rust-lang/crates.io-index";
const CRATES_IO_SPARSE: &str = "sparse+https://index.crates.io/";

/// What `check-dep` found: every difference between a plugin's graph and the manager's. [`fmt::Display`] gives
/// the lines `check-dep` prints: one per difference (SDK ones first), then a one-line summary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckReport {
    /// The plugin's `Cargo.toml`.
    pub manifest: PathBuf,
    /// The plugin package, `name version`.
    pub plugin: String,
    /// The manager package the graph was captured from, `name version`.
    pub manager: String,
    /// The target triple both graphs were resolved for.
    pub target: String,
    /// How many of the plugin's crates the manager also has (same name, semver-compatible version).
    pub shared: usize,
    /// The differences, SDK first, then by crate name.
    pub differences: Vec<Difference>,
}

impl CheckReport {
    /// Whether every shared crate matches: the plugin may be built and loaded.
    pub fn is_clean(&self) -> bool {
        self.differences.is_empty()
    }

    /// The one-line summary ending the report.
    pub fn summary(&self) -> String {
        if self.is_clean() {
            format!(
                "check-dep: ok: {} matches {} on all {} shared crates (versions and sources; {SDK} also its \
                 compiled features; target {})",
                self.plugin, self.manager, self.shared, self.target
            )
        } else {
            format!(
                "check-dep: {} difference(s) between {} and {} in {} shared crates (target {}); `plugin check-dep \
                 --fix {}` pins versions and aligns features",
                self.differences.len(),
                self.plugin,
                self.manager,
                self.shared,
                self.target,
                self.manifest.display()
            )
        }
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for difference in &self.differences {
            writeln!(f, "{difference}")?;
        }
        write!(f, "{}", self.summary())
    }
}

/// Compares every crate the plugin shares with the manager: version and source, and for the crates that must
/// match exactly ([`MUST_MATCH_EXACTLY`]) the compiled features too.
pub fn compare(manifest: PathBuf, plugin: &CrateGraph, manager: &CrateGraph) -> CheckReport {
    let mut sdk_differences = Vec::new();
    let mut differences = Vec::new();
    let mut shared = 0;
    let manager_sdk = manager.named(SDK).next();
    if let Some(manager_sdk) = manager_sdk
        && plugin.named(SDK).next().is_none()
    {
        sdk_differences.push(Difference::MissingSdk { manager: manager_sdk.clone() });
    }
    for local in &plugin.crates {
        // The SDK is compared whatever its version; other crates only with a semver-compatible one.
        let counterpart = if local.name == SDK { manager_sdk } else { manager.counterpart(local) };
        let Some(theirs) = counterpart else { continue };
        // A local (path) crate other than the SDK is nobody's published version: the plugin's own crate, or one
        // the manager links from this repository (e.g. an example copied out of it). Nothing to align.
        if local.name != SDK && (is_path(&local.source) || is_path(&theirs.source)) {
            continue;
        }
        shared += 1;
        let out = if local.name == SDK { &mut sdk_differences } else { &mut differences };
        if local.version != theirs.version {
            out.push(Difference::Version {
                name: local.name.clone(),
                local: local.version.clone(),
                manager: theirs.version.clone(),
            });
        }
        if local.source != theirs.source {
            out.push(Difference::Source {
                name: local.name.clone(),
                version: local.version.clone(),
                local: local.source.clone(),
                manager: theirs.source.clone(),
            });
        }
        if must_match_exactly(&local.name) && local.features != theirs.features {
            out.push(Difference::Features {
                name: local.name.clone(),
                version: local.version.clone(),
                local: local.features.clone(),
                manager: theirs.features.clone(),
                show_version: plugin.named(&local.name).count() > 1,
            });
        }
    }
    sdk_differences.extend(differences);
    CheckReport {
        manifest,
        plugin: plugin.root.clone(),
        manager: manager.root.clone(),
        target: manager.target.clone(),
        shared,
        differences: sdk_differences,
    }
}

#[cfg(test)]
mod tests {
    use super::super::graph::test_node as node;
    use super::*;

    fn sdk(version: &str) -> CrateNode {
        CrateNode { source: "path+file:///work/main/manager-plugin".into(), ..node(SDK, version, &["default"]) }
    }

    fn graph(root: &str, crates: Vec<CrateNode>) -> CrateGraph {
        let mut g = CrateGraph { root: root.into(), target: "x86_64-unknown-linux-gnu".into(), crates };
        g.sort();
        g
    }

    fn lines(report: &CheckReport) -> Vec<String> {
        report.to_string().lines().map(str::to_string).collect()
    }

    #[test]
    fn identical_shared_crates_are_clean_and_unshared_ones_ignored() {
        let manager = graph("manager 0.1.0", vec![sdk("0.1.0"), node("serde", "1.0.229", &["std"])]);
        let plugin = graph(
            "p 0.1.0",
            vec![
                sdk("0.1.0"),
                node("serde", "1.0.229", &["std"]),
                node("itoa", "1.0.0", &[]),
                node("serde", "2.0.0", &[]),
            ],
        );
        let report = compare("/p/Cargo.toml".into(), &plugin, &manager);
        assert!(report.is_clean(), "{report}");
        assert_eq!(report.shared, 2);
        assert_eq!(lines(&report).len(), 1);
        assert!(report.to_string().starts_with("check-dep: ok: p 0.1.0 matches manager 0.1.0 on all 2 shared crates"));
    }

    #[test]
    fn version_and_source_differences_are_one_line_each_and_policy_crate_features_are_not_compared() {
        let manager = graph("manager 0.1.0", vec![sdk("0.1.0"), node("serde", "1.0.229", &["alloc", "std"])]);
        let fork = CrateNode {
            source: "git+https://github.com/x/serde?branch=b#abc".into(),
            ..node("serde", "1.0.200", &["std"])
        };
        let plugin = graph("p 0.1.0", vec![sdk("0.1.0"), fork]);
        let report = compare("/p/Cargo.toml".into(), &plugin, &manager);
        assert_eq!(
            lines(&report)[..2],
            [
                "serde 1.0.200 => 1.0.229",
                "serde 1.0.200 (git+https://github.com/x/serde?branch=b#abc) => (registry+https://github.com/rust-lang/crates.io-index)",
            ]
        );
        assert!(
            lines(&report)[2].starts_with("check-dep: 2 difference(s) between p 0.1.0 and manager 0.1.0 in 2 shared")
        );
        assert!(!report.is_clean());

        let same_version = graph("p 0.1.0", vec![sdk("0.1.0"), node("serde", "1.0.229", &["std"])]);
        assert!(compare("/p/Cargo.toml".into(), &same_version, &manager).is_clean());
    }

    #[test]
    fn local_path_crates_other_than_the_sdk_are_not_compared() {
        let local = |dir: &str| CrateNode { source: format!("path+file://{dir}"), ..node("fsstore", "0.1.0", &[]) };
        let manager = graph("manager 0.1.0", vec![sdk("0.1.0"), local("/repo/examples/fsstore")]);
        let plugin = graph("p 0.1.0", vec![sdk("0.1.0"), local("/home/me/fsstore")]);
        let report = compare("/p/Cargo.toml".into(), &plugin, &manager);
        assert!(report.is_clean(), "{report}");
        assert_eq!(report.shared, 1, "only the SDK is shared");
    }

    #[test]
    fn the_sdks_features_must_match_exactly() {
        let manager = graph("manager 0.1.0", vec![sdk("0.1.0")]);
        let canary = CrateNode { features: ["default".into(), "fingerprint-canary".into()].into(), ..sdk("0.1.0") };
        let report = compare("/p/Cargo.toml".into(), &graph("p 0.1.0", vec![canary]), &manager);
        assert_eq!(
            lines(&report)[0],
            "manager-plugin[default,fingerprint-canary] => [default] (extra fingerprint-canary): the plugin is built \
             against another SDK than the manager"
        );
    }

    #[test]
    fn sdk_problems_come_first() {
        let manager = graph("manager 0.1.0", vec![sdk("0.1.0"), node("anyhow", "1.0.0", &[])]);
        let plugin = graph("p 0.1.0", vec![node("anyhow", "1.0.1", &[])]);
        let report = compare("/p/Cargo.toml".into(), &plugin, &manager);
        let first = &lines(&report)[0];
        assert!(first.starts_with("manager-plugin (none) => 0.1.0: the plugin does not depend on the SDK"), "{first}");
        assert!(first.contains("manager-plugin = { path = \"/work/main/manager-plugin\" }"), "{first}");

        let plugin = graph("p 0.1.0", vec![node("anyhow", "1.0.1", &[]), sdk("0.2.0")]);
        let report = compare("/p/Cargo.toml".into(), &plugin, &manager);
        assert_eq!(
            lines(&report)[0],
            "manager-plugin 0.2.0 => 0.1.0: the plugin is built against another SDK than the manager"
        );
        assert_eq!(lines(&report)[1], "anyhow 1.0.1 => 1.0.0");
    }

    #[test]
    fn feature_lines_name_the_version_when_the_plugin_has_several() {
        let sdk_at = |v: &str, f: &[&str]| CrateNode { features: f.iter().map(|s| s.to_string()).collect(), ..sdk(v) };
        let manager = graph("manager 0.1.0", vec![sdk_at("0.1.0", &[])]);
        let plugin = graph("p 0.1.0", vec![sdk_at("0.1.0", &["x"]), sdk_at("0.2.0", &[])]);
        let report = compare("/p/Cargo.toml".into(), &plugin, &manager);
        assert!(lines(&report).iter().any(|l| l.starts_with("manager-plugin@0.1.0[x] => [] (extra x)")), "{report}");
    }

    #[test]
    fn hand_fixes_say_what_to_change() {
        let missing = Difference::Features {
            name: "serde".into(),
            version: Version::parse("1.0.229").unwrap(),
            local: ["std".to_string()].into(),
            manager: ["alloc".to_string(), "std".to_string()].into(),
            show_version: false,
        };
        assert!(missing.hand_fix().contains("features = [\"alloc\"]"), "{}", missing.hand_fix());
        let version = Difference::Version {
            name: "serde".into(),
            local: Version::parse("1.0.225").unwrap(),
            manager: Version::parse("1.0.229").unwrap(),
        };
        assert!(version.hand_fix().contains("cargo update -p serde@1.0.225 --precise 1.0.229"));
        let git = CrateNode { source: "git+https://github.com/x/y?branch=main#0123abc".into(), ..sdk("0.1.0") };
        assert_eq!(dependency_line(&git), "manager-plugin = { git = \"https://github.com/x/y\", rev = \"0123abc\" }");
        assert_eq!(dependency_line(&node("serde", "1.0.229", &[])), "serde = \"=1.0.229\"");
    }
}
