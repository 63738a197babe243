//! Resolves a package's [`CrateGraph`] with cargo: `cargo metadata` for package identities and sources,
//! `cargo tree` for the features cargo compiles each crate with when it builds that package alone.
//!
//! Why `cargo tree` and not `cargo metadata` for features: metadata unifies features over the whole workspace,
//! while `cargo tree -p X -e normal` runs cargo's feature resolver for exactly `X` and its normal edges (no dev
//! units), as `cargo build -p X` does; the `check_dep` integration tests compare it with the build's
//! `compiler-artifact` messages. It needs no compilation, so the manager's graph can be captured from `build.rs`.
//!
//! Also compiled into `build.rs` (see `graph.rs`): `std` and `cargo_metadata` only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use cargo_metadata::semver::Version;
use cargo_metadata::{Metadata, MetadataCommand, Package};

use super::graph::{CrateGraph, CrateKind, CrateNode, GraphError, split_features};

/// Which package of the manifest's workspace to resolve.
#[derive(Clone, Copy, Debug)]
pub enum PackageSelector<'a> {
    /// The package whose `Cargo.toml` was given.
    Root,
    /// The workspace member with this name (`build.rs` selects `manager`).
    #[allow(dead_code)] // Used by build.rs only.
    Member(&'a str),
}

/// Whether cargo may write `Cargo.lock` while resolving.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockMode {
    /// `--locked`: the lockfile must already be up to date (the manager's side, from a build script).
    Locked,
    /// Like `cargo build`: creates or updates `Cargo.lock` when the manifest asks for it.
    MayUpdate,
}

/// A resolved graph and the files it was resolved from.
#[derive(Debug)]
pub struct Resolved {
    /// The graph.
    pub graph: CrateGraph,
    /// The workspace's `Cargo.lock` (`build.rs` reruns when it changes).
    #[allow(dead_code)] // Used by build.rs only.
    pub lockfile: PathBuf,
    /// The given manifest, the selected package's, the workspace's and those of the path crates in the graph
    /// (`build.rs` reruns when one changes).
    #[allow(dead_code)] // Used by build.rs only.
    pub manifests: Vec<PathBuf>,
}

/// Resolves the graph of the selected package of `manifest` for `target` with the cargo binary `cargo`.
pub fn resolve(
    cargo: &Path,
    manifest: &Path,
    selector: PackageSelector<'_>,
    target: &str,
    lock: LockMode,
) -> Result<Resolved, GraphError> {
    let dir = manifest.parent().unwrap_or(Path::new("."));
    let mut options = vec!["--filter-platform".to_string(), target.to_string()];
    if lock == LockMode::Locked {
        options.push("--locked".into());
    }
    let metadata = MetadataCommand::new()
        .cargo_path(cargo)
        .manifest_path(manifest)
        .current_dir(dir)
        .other_options(options)
        .exec()
        .map_err(|e| GraphError::Metadata { manifest: manifest.to_path_buf(), message: e.to_string() })?;
    let package = select(&metadata, manifest, selector)?;

    let mut command = Command::new(cargo);
    command
        .current_dir(dir)
        .env("CARGO_TERM_COLOR", "never")
        .arg("tree")
        .arg("--manifest-path")
        .arg(manifest)
        .args(["-p", &package.id.repr, "-e", "normal", "--target", target, "--prefix", "depth"])
        .args(["--charset", "ascii", "--format", "{p}\t{f}"]);
    if lock == LockMode::Locked {
        command.arg("--locked");
    }
    let tree = run(&mut command, dir)?;

    let entries = parse_tree(&tree, manifest)?;
    let crates = join(&metadata, &entries, manifest)?;
    let mut graph = CrateGraph { root: format!("{} {}", package.name, package.version), target: target.into(), crates };
    graph.sort();

    let mut manifests = vec![
        manifest.to_path_buf(),
        package.manifest_path.clone().into_std_path_buf(),
        metadata.workspace_root.join("Cargo.toml").into_std_path_buf(),
    ];
    for node in &graph.crates {
        if let Some(dir) = node.source.strip_prefix("path+file://") {
            manifests.push(Path::new(dir).join("Cargo.toml"));
        }
    }
    manifests.sort();
    manifests.dedup();
    Ok(Resolved { graph, lockfile: metadata.workspace_root.join("Cargo.lock").into_std_path_buf(), manifests })
}

/// Runs a cargo command and returns its stdout, or its stderr as the error.
pub fn run(command: &mut Command, dir: &Path) -> Result<String, GraphError> {
    let shown = show(command);
    let output = command.output().map_err(|source| GraphError::Spawn { command: shown.clone(), source })?;
    if !output.status.success() {
        return Err(GraphError::Cargo {
            command: shown,
            dir: dir.to_path_buf(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A command line as a user could type it (program name without its directory).
pub fn show(command: &Command) -> String {
    let program = Path::new(command.get_program());
    let mut text = program.file_name().unwrap_or(program.as_os_str()).to_string_lossy().into_owned();
    for arg in command.get_args() {
        let arg = arg.to_string_lossy();
        if arg.contains([' ', '\t', '{']) {
            text.push_str(&format!(" {arg:?}"));
        } else {
            text.push(' ');
            text.push_str(&arg);
        }
    }
    text
}

fn select<'m>(
    metadata: &'m Metadata,
    manifest: &Path,
    selector: PackageSelector<'_>,
) -> Result<&'m Package, GraphError> {
    let no_package = |reason: String| GraphError::NoPackage { manifest: manifest.to_path_buf(), reason };
    match selector {
        PackageSelector::Root => metadata.root_package().ok_or_else(|| {
            no_package("is a virtual workspace manifest; give the Cargo.toml of the plugin crate itself".into())
        }),
        PackageSelector::Member(name) => metadata
            .workspace_packages()
            .into_iter()
            .find(|p| p.name == name)
            .ok_or_else(|| no_package(format!("the workspace has no member named `{name}`"))),
    }
}

/// One line of `cargo tree --prefix depth --format "{p}\t{f}"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeEntry {
    /// Distance from the root (0 = the root package).
    pub depth: usize,
    /// Package name.
    pub name: String,
    /// Package version.
    pub version: Version,
    /// The source as `cargo tree` shows it (`None` for crates.io): a path, a git URL, a registry name.
    pub shown_source: Option<String>,
    /// Whether cargo marked it `(proc-macro)`.
    pub proc_macro: bool,
    /// Whether it sits below a proc-macro: compiled for the host only, to run inside the compiler.
    pub below_proc_macro: bool,
    /// Enabled features.
    pub features: String,
}

/// Parses `cargo tree` output, marking the crates below a proc-macro.
pub fn parse_tree(text: &str, manifest: &Path) -> Result<Vec<TreeEntry>, GraphError> {
    let mut entries = Vec::new();
    // host[d] = whether the node currently open at depth d is compiled for the host.
    let mut host: Vec<bool> = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let bad = |reason: &str| GraphError::TreeLine {
            manifest: manifest.to_path_buf(),
            line: line.to_string(),
            reason: reason.to_string(),
        };
        let line_body = line.strip_suffix(" (*)").unwrap_or(line);
        let digits = line_body.bytes().take_while(u8::is_ascii_digit).count();
        let depth: usize = line_body[..digits].parse().map_err(|_| bad("no depth prefix"))?;
        let (package, features) = line_body[digits..].rsplit_once('\t').ok_or_else(|| bad("no tab before features"))?;
        let (name, rest) = package.split_once(' ').ok_or_else(|| bad("no version"))?;
        let rest = rest.strip_prefix('v').ok_or_else(|| bad("version does not start with `v`"))?;
        let (version, suffix) = rest.split_once(' ').unwrap_or((rest, ""));
        let version = Version::parse(version).map_err(|_| bad("unparsable version"))?;
        let (proc_macro, suffix) = match suffix.strip_prefix("(proc-macro)") {
            Some(after) => (true, after.trim_start()),
            None => (false, suffix),
        };
        let shown_source = match suffix {
            "" => None,
            s => Some(s.strip_prefix('(').and_then(|s| s.strip_suffix(')')).ok_or_else(|| bad("bad source"))?),
        };
        if depth > host.len() {
            return Err(bad("depth skips a level"));
        }
        host.truncate(depth);
        let below_proc_macro = host.last().copied().unwrap_or(false);
        host.push(below_proc_macro || proc_macro);
        entries.push(TreeEntry {
            depth,
            name: name.to_string(),
            version,
            shown_source: shown_source.map(str::to_string),
            proc_macro,
            below_proc_macro,
            features: features.to_string(),
        });
    }
    Ok(entries)
}

/// Turns tree entries into graph nodes: the linked crates and the proc-macros they use directly; the crates
/// only a proc-macro uses (syn, quote…) run in the compiler, not in the binary, and are left out.
fn join(metadata: &Metadata, entries: &[TreeEntry], manifest: &Path) -> Result<Vec<CrateNode>, GraphError> {
    let mut nodes: BTreeMap<String, CrateNode> = BTreeMap::new();
    for entry in entries {
        if entry.depth == 0 || entry.below_proc_macro {
            continue;
        }
        let package = find_package(metadata, entry).ok_or_else(|| GraphError::TreeLine {
            manifest: manifest.to_path_buf(),
            line: format!("{} v{}", entry.name, entry.version),
            reason: "not in `cargo metadata` (or ambiguous)".into(),
        })?;
        let node = CrateNode {
            name: entry.name.clone(),
            version: entry.version.clone(),
            source: source_of(package),
            kind: if entry.proc_macro { CrateKind::ProcMacro } else { CrateKind::Linked },
            features: split_features(&entry.features),
        };
        match nodes.get(&package.id.repr) {
            Some(seen) if seen.features != node.features => {
                return Err(GraphError::ConflictingFeatures {
                    manifest: manifest.to_path_buf(),
                    name: node.name,
                    version: node.version.to_string(),
                });
            }
            Some(_) => {}
            None => {
                nodes.insert(package.id.repr.clone(), node);
            }
        }
    }
    Ok(nodes.into_values().collect())
}

/// The metadata package a tree line shows: by name and version, and by the shown source when there are several.
fn find_package<'m>(metadata: &'m Metadata, entry: &TreeEntry) -> Option<&'m Package> {
    let mut candidates = metadata.packages.iter().filter(|p| p.name == entry.name && p.version == entry.version);
    let first = candidates.next()?;
    let rest: Vec<&Package> = candidates.collect();
    if rest.is_empty() {
        return Some(first);
    }
    let shows = |p: &Package| match (&entry.shown_source, &p.source) {
        (None, Some(source)) => source.is_crates_io(),
        (None, None) => false,
        (Some(shown), None) => p.manifest_path.parent().is_some_and(|dir| dir.as_str() == shown),
        (Some(shown), Some(source)) => source.repr.contains(shown.as_str()),
    };
    let mut matching = std::iter::once(first).chain(rest).filter(|p| shows(p));
    let found = matching.next()?;
    matching.next().is_none().then_some(found)
}

/// The source string check-dep compares: cargo's source id, or `path+file://<dir>` for path crates.
fn source_of(package: &Package) -> String {
    match &package.source {
        Some(source) => source.repr.clone(),
        None => match package.manifest_path.parent() {
            Some(dir) => format!("path+file://{dir}"),
            None => format!("path+file://{}", package.manifest_path),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TREE: &str = "0p v0.1.0 (/tmp/p)\t\n\
        1manager-plugin v0.1.0 (/work/main/manager-plugin)\tdefault\n\
        2serde v1.0.229\tdefault,derive,serde_derive,std\n\
        3serde_derive v1.0.229 (proc-macro)\tdefault\n\
        4proc-macro2 v1.0.107\tdefault,proc-macro\n\
        5unicode-ident v1.0.27\t\n\
        4quote v1.0.47\tdefault,proc-macro\n\
        5proc-macro2 v1.0.107\tdefault,proc-macro (*)\n\
        2toml v0.9.12+spec-1.1.0\tdefault,std\n\
        2forked v1.0.0 (proc-macro) (https://github.com/x/forked?branch=main#abc12345)\t\n";

    #[test]
    fn tree_lines_parse_with_sources_and_host_marks() {
        let entries = parse_tree(TREE, Path::new("/tmp/p/Cargo.toml")).unwrap();
        assert_eq!(entries.len(), 10);
        assert_eq!(entries[1].shown_source.as_deref(), Some("/work/main/manager-plugin"));
        assert_eq!(entries[2].features, "default,derive,serde_derive,std");
        assert!(!entries[2].below_proc_macro);
        assert!(entries[3].proc_macro && !entries[3].below_proc_macro);
        assert!(entries[4].below_proc_macro && entries[5].below_proc_macro && entries[7].below_proc_macro);
        assert_eq!(entries[7].features, "default,proc-macro", "the dedup mark is not a feature");
        assert_eq!(entries[8].version.to_string(), "0.9.12+spec-1.1.0");
        assert!(!entries[8].below_proc_macro, "back at depth 2 after the proc-macro subtree");
        assert!(entries[9].proc_macro);
        assert_eq!(entries[9].shown_source.as_deref(), Some("https://github.com/x/forked?branch=main#abc12345"));
    }

    #[test]
    fn malformed_tree_lines_are_errors_naming_the_manifest() {
        for line in ["serde v1.0.0\t", "1serde v1.0.0", "1serde 1.0.0\t", "0p v0.1.0\t\n2skipped v1.0.0\t"] {
            let err = parse_tree(line, Path::new("/tmp/p/Cargo.toml")).unwrap_err();
            assert!(err.to_string().contains("/tmp/p/Cargo.toml"), "{err}");
        }
    }

    #[test]
    fn commands_are_shown_as_typed() {
        let mut command = Command::new("/usr/bin/cargo");
        command.args(["tree", "--format", "{p}\t{f}"]);
        assert_eq!(show(&command), "cargo tree --format \"{p}\\t{f}\"");
    }
}
