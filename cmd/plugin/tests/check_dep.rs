//! `plugin check-dep [--fix]` on fixture plugin crates written to temp dirs (standalone: each has a `[workspace]`
//! table), compared with the manager graph built into the tool.
//!
//! The first run may fetch crates (`serde 1.0.225`, `indexmap`…); afterwards they pass with
//! `CARGO_NET_OFFLINE=true`. Builds of fixtures share `$CARGO_TARGET_TMPDIR/check-dep-fixtures`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use cargo_metadata::{DependencyKind, Message, MetadataCommand};
use plugin::check_dep::{self, CrateKind};

/// An exact serde older than any the manager locks (it must still satisfy manager-plugin's `serde = "1.0.220"`).
const OLD_SERDE: &str = "1.0.225";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root")
}

fn sdk_dir() -> PathBuf {
    workspace_root().join("manager-plugin")
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn manager_version(name: &str) -> String {
    let graph = check_dep::manager_graph().expect("manager graph");
    graph.named(name).next().unwrap_or_else(|| panic!("the manager has no {name}")).version.to_string()
}

/// A plugin crate in a temp dir.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    /// A plugin named `name` depending on manager-plugin plus `dependencies` (TOML lines for `[dependencies]`).
    fn new(name: &str, dependencies: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let manifest = format!(
            "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n\n\
             # Standalone: not part of any enclosing workspace.\n[workspace]\n\n\
             [dependencies]\nmanager-plugin = {{ path = \"{}\" }}\n{dependencies}\n",
            sdk_dir().display()
        );
        fs::write(dir.path().join("Cargo.toml"), manifest).expect("write Cargo.toml");
        fs::create_dir(dir.path().join("src")).expect("src");
        fs::write(dir.path().join("src/lib.rs"), "//! A check-dep fixture.\npub fn plugin() {}\n").expect("lib.rs");
        Fixture { dir }
    }

    /// Starts from the manager's `Cargo.lock`, so crates the plugin does not pin get the manager's versions.
    fn with_manager_lock(self) -> Self {
        fs::copy(workspace_root().join("Cargo.lock"), self.path("Cargo.lock")).expect("copy Cargo.lock");
        self
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    fn manifest(&self) -> PathBuf {
        self.path("Cargo.toml")
    }

    fn read(&self, file: &str) -> Option<Vec<u8>> {
        fs::read(self.path(file)).ok()
    }

    fn entries(&self) -> BTreeSet<String> {
        fs::read_dir(self.dir.path())
            .expect("read fixture dir")
            .map(|e| e.expect("dir entry").file_name().to_string_lossy().into_owned())
            .collect()
    }

    /// Runs cargo in the fixture with the shared fixture target dir.
    fn cargo(&self, args: &[&str]) -> std::process::Output {
        Command::new(cargo())
            .current_dir(self.dir.path())
            .args(args)
            .env("CARGO_TARGET_DIR", Path::new(env!("CARGO_TARGET_TMPDIR")).join("check-dep-fixtures"))
            .output()
            .expect("run cargo")
    }
}

fn lines(report: &impl ToString) -> Vec<String> {
    report.to_string().lines().map(str::to_string).collect()
}

/// The `[dependencies]` lines of the manager package itself, as its manifest declares them (resolved
/// `workspace = true`), minus manager-plugin which every fixture already has.
fn manager_dependency_lines() -> String {
    let metadata = MetadataCommand::new()
        .manifest_path(workspace_root().join("Cargo.toml"))
        .no_deps()
        .exec()
        .expect("cargo metadata of the workspace");
    let manager = metadata.packages.iter().find(|p| p.name == "manager").expect("manager package");
    let mut lines = String::new();
    for dep in manager.dependencies.iter().filter(|d| d.kind == DependencyKind::Normal && d.name != "manager-plugin") {
        assert!(dep.target.is_none(), "extend this fixture for {dep:?}");
        let features: Vec<String> = dep.features.iter().map(|f| format!("\"{f}\"")).collect();
        let source = match &dep.path {
            Some(path) => format!("path = {:?}", path.as_str()),
            None => format!("version = \"{}\"", dep.req),
        };
        lines.push_str(&format!(
            "{} = {{ package = \"{}\", {source}, default-features = {}, features = [{}], optional = {} }}\n",
            dep.rename.as_deref().unwrap_or(&dep.name),
            dep.name,
            dep.uses_default_features,
            features.join(", "),
            dep.optional
        ));
    }
    lines
}

#[test]
fn a_plugin_with_the_managers_dependencies_and_lockfile_is_clean() {
    let fixture = Fixture::new("same-as-manager", &manager_dependency_lines()).with_manager_lock();
    let started = Instant::now();
    let report = check_dep::check(&fixture.manifest()).expect("check");
    eprintln!("check of a manager-sized graph took {:?}", started.elapsed());
    assert!(report.is_clean(), "{report}");
    assert!(report.shared > 50, "{report}");
    assert_eq!(lines(&report).len(), 1);
    assert!(lines(&report)[0].starts_with("check-dep: ok: same-as-manager 0.1.0 matches manager "), "{report}");
    assert!(check_dep::run_cli(fixture.dir.path(), false).expect("run_cli"), "the directory is accepted too");
}

#[test]
fn an_older_serde_pin_is_reported_then_fixed_and_the_fixed_plugin_builds() {
    let fixture =
        Fixture::new("old-serde", &format!("serde = {{ version = \"={OLD_SERDE}\", features = [\"derive\"] }}"))
            .with_manager_lock();
    let report = check_dep::check(&fixture.manifest()).expect("check");
    assert!(!report.is_clean());
    let expected = format!("serde {OLD_SERDE} => {}", manager_version("serde"));
    assert!(lines(&report).contains(&expected), "{report}");
    assert!(lines(&report).last().expect("summary").starts_with("check-dep: "), "{report}");
    assert!(!check_dep::run_cli(&fixture.manifest(), false).expect("run_cli"));

    let started = Instant::now();
    let outcome = check_dep::fix(&fixture.manifest()).expect("fix");
    eprintln!("fix took {:?}:\n{outcome}", started.elapsed());
    assert!(outcome.is_fixed(), "{outcome}");
    let manifest = String::from_utf8(fixture.read("Cargo.toml").expect("Cargo.toml")).expect("utf-8");
    assert!(manifest.contains(&format!("version = \"={}\"", manager_version("serde"))), "{manifest}");
    assert!(check_dep::check(&fixture.manifest()).expect("re-check").is_clean());
    assert!(check_dep::run_cli(&fixture.manifest(), true).expect("run_cli --fix"), "a clean plugin stays clean");
    assert_eq!(fixture.entries(), BTreeSet::from(["Cargo.lock".into(), "Cargo.toml".into(), "src".into()]));

    let build = fixture.cargo(&["build", "--lib"]);
    assert!(build.status.success(), "the fixed plugin builds: {}", String::from_utf8_lossy(&build.stderr));
}

#[test]
fn a_plugin_on_the_sdk_alone_passes_with_nothing_added_even_without_a_lockfile() {
    let fixture = Fixture::new("bare", "");
    let toml_before = fixture.read("Cargo.toml");
    let report = check_dep::check(&fixture.manifest()).expect("check");
    assert!(report.is_clean(), "{report}");
    let outcome = check_dep::fix(&fixture.manifest()).expect("fix");
    assert!(outcome.is_fixed() && outcome.changes.is_empty(), "{outcome}");
    assert_eq!(fixture.read("Cargo.toml"), toml_before, "nothing added to Cargo.toml");
}

/// The case: a fresh crate (no lockfile) on the SDK and `itoa` one patch behind the manager. `--fix`
/// changes the itoa requirement and nothing else: no crate added, none of the SDK's dependencies moved.
#[test]
fn fix_of_a_fresh_plugin_one_patch_behind_pins_that_crate_and_adds_nothing() {
    let manager_itoa = check_dep::manager_graph().expect("graph").named("itoa").next().expect("itoa").version.clone();
    assert!(manager_itoa.patch > 0, "pick another crate: the manager's itoa is {manager_itoa}");
    let behind = format!("{}.{}.{}", manager_itoa.major, manager_itoa.minor, manager_itoa.patch - 1);
    let fixture = Fixture::new("fresh", &format!("itoa = \"={behind}\""));
    let toml_before = String::from_utf8(fixture.read("Cargo.toml").expect("Cargo.toml")).expect("utf-8");

    let report = check_dep::check(&fixture.manifest()).expect("check");
    assert_eq!(lines(&report)[..1], [format!("itoa {behind} => {manager_itoa}")], "{report}");
    assert_eq!(report.differences.len(), 1, "{report}");

    let outcome = check_dep::fix(&fixture.manifest()).expect("fix");
    assert!(outcome.is_fixed(), "{outcome}");
    assert_eq!(outcome.changes.len(), 1, "one change, the pin: {outcome}");
    let toml_after = String::from_utf8(fixture.read("Cargo.toml").expect("Cargo.toml")).expect("utf-8");
    assert_eq!(toml_after, toml_before.replace(&format!("={behind}"), &format!("={manager_itoa}")));
}

/// `pinned-helper` requires `serde = "=OLD_SERDE"`: no edit of the plugin's own manifest can reach the
/// manager's serde.
fn plugin_behind_a_pinning_dependency() -> (tempfile::TempDir, Fixture) {
    let helper = tempfile::tempdir().expect("temp dir");
    fs::write(
        helper.path().join("Cargo.toml"),
        format!(
            "[package]\nname = \"pinned-helper\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[dependencies]\n\
             serde = \"={OLD_SERDE}\"\n"
        ),
    )
    .expect("helper Cargo.toml");
    fs::create_dir(helper.path().join("src")).expect("src");
    fs::write(helper.path().join("src/lib.rs"), "").expect("lib.rs");
    let plugin = Fixture::new(
        "pinned",
        &format!("pinned-helper = {{ path = \"{}\" }}\n# keep this comment\n", helper.path().display()),
    );
    (helper, plugin)
}

#[test]
fn fix_that_a_dependency_blocks_restores_both_files_byte_for_byte() {
    let (_helper, fixture) = plugin_behind_a_pinning_dependency();
    let fixture = fixture.with_manager_lock();
    let toml_before = fixture.read("Cargo.toml");
    let lock_before = fixture.read("Cargo.lock");
    let entries_before = fixture.entries();

    let outcome = check_dep::fix(&fixture.manifest()).expect("fix runs");
    assert!(!outcome.is_fixed(), "{outcome}");
    let text = outcome.to_string();
    assert!(text.contains(&format!("serde {OLD_SERDE} => {}", manager_version("serde"))), "{text}");
    assert!(
        text.contains("to change by hand:") && text.contains(&format!("cargo tree -e normal -i serde@{OLD_SERDE}")),
        "{text}"
    );
    assert!(lines(&outcome).last().expect("summary").starts_with("check-dep --fix: failed"), "{text}");
    assert_eq!(fixture.read("Cargo.toml"), toml_before, "Cargo.toml restored");
    assert_eq!(fixture.read("Cargo.lock"), lock_before, "Cargo.lock restored");
    assert_eq!(fixture.entries(), entries_before, "no backup left behind");
    assert!(!check_dep::run_cli(&fixture.manifest(), true).expect("run_cli --fix"));
    assert_eq!(fixture.read("Cargo.lock"), lock_before);
}

#[test]
fn fix_that_fails_deletes_a_lockfile_that_did_not_exist() {
    let (_helper, fixture) = plugin_behind_a_pinning_dependency();
    let toml_before = fixture.read("Cargo.toml");
    assert!(fixture.read("Cargo.lock").is_none());
    let outcome = check_dep::fix(&fixture.manifest()).expect("fix runs");
    assert!(!outcome.is_fixed(), "{outcome}");
    assert_eq!(fixture.read("Cargo.toml"), toml_before);
    assert!(fixture.read("Cargo.lock").is_none(), "the lockfile --fix's check created is gone again");
    assert_eq!(fixture.entries(), BTreeSet::from(["Cargo.toml".into(), "src".into()]));
}

#[test]
fn an_sdk_feature_the_manager_does_not_enable_is_reported_and_not_fixable() {
    let fixture = Fixture::new("canary", "").with_manager_lock();
    let manifest = fs::read_to_string(fixture.manifest())
        .expect("read")
        .replace("manager-plugin = { path = ", "manager-plugin = { features = [\"fingerprint-canary\"], path = ");
    fs::write(fixture.manifest(), manifest).expect("write");
    let report = check_dep::check(&fixture.manifest()).expect("check");
    let line = &lines(&report)[0];
    assert!(line.starts_with("manager-plugin[") && line.contains("extra fingerprint-canary"), "{report}");

    let toml_before = fixture.read("Cargo.toml");
    let lock_before = fixture.read("Cargo.lock");
    let outcome = check_dep::fix(&fixture.manifest()).expect("fix runs");
    assert!(!outcome.is_fixed(), "{outcome}");
    assert!(outcome.to_string().contains("stop enabling"), "{outcome}");
    assert_eq!((fixture.read("Cargo.toml"), fixture.read("Cargo.lock")), (toml_before, lock_before));
}

#[test]
fn a_policy_crates_features_are_not_compared() {
    let fixture = Fixture::new("ordered-json", "serde_json = { version = \"1\", features = [\"preserve_order\"] }")
        .with_manager_lock();
    let report = check_dep::check(&fixture.manifest()).expect("check");
    assert!(report.is_clean(), "serde_json is a private copy: its features do not cross the boundary: {report}");
}

#[test]
fn a_plugin_without_the_sdk_is_reported_first() {
    let fixture = Fixture::new("no-sdk", "");
    let manifest =
        fs::read_to_string(fixture.manifest()).expect("read").replace("manager-plugin = ", "# manager-plugin = ");
    fs::write(fixture.manifest(), manifest).expect("write");
    let report = check_dep::check(&fixture.manifest()).expect("check");
    assert!(lines(&report)[0].starts_with("manager-plugin (none) => "), "{report}");
    assert!(lines(&report)[0].contains(&format!("manager-plugin = {{ path = \"{}\" }}", sdk_dir().display())));
    assert!(!check_dep::fix(&fixture.manifest()).expect("fix runs").is_fixed());
}

#[test]
fn a_missing_manifest_is_an_error_naming_the_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let err = check_dep::check(dir.path()).unwrap_err();
    assert!(err.to_string().contains(&dir.path().display().to_string()), "{err}");
}

/// The tool's claim: `cargo tree -e normal` gives the features the build compiles. Proven against the
/// `compiler-artifact` messages of `cargo check --target <manager target>` of a fixture.
#[test]
fn graph_features_equal_the_builds_compiler_artifact_features() {
    let fixture = Fixture::new("artifacts", "serde_json = \"1\"\ntoml = \"0.9\"").with_manager_lock();
    let graph = check_dep::plugin_graph(&fixture.manifest()).expect("plugin graph");
    let target = graph.target.clone();
    let output = fixture.cargo(&["check", "--lib", "--message-format=json", "--target", &target]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    let metadata = MetadataCommand::new().manifest_path(fixture.manifest()).exec().expect("metadata");
    let names: BTreeMap<String, (String, String)> =
        metadata.packages.iter().map(|p| (p.id.repr.clone(), (p.name.to_string(), p.version.to_string()))).collect();
    // (name, version, proc-macro?) -> features, for artifacts compiled for the target or proc-macros.
    let mut compiled: BTreeMap<(String, String, bool), BTreeSet<String>> = BTreeMap::new();
    for message in Message::parse_stream(output.stdout.as_slice()) {
        let Message::CompilerArtifact(artifact) = message.expect("cargo message") else { continue };
        let proc_macro = artifact.target.is_proc_macro();
        let for_target = artifact.filenames.iter().any(|f| f.as_str().contains(&format!("/{target}/")));
        if artifact.target.is_custom_build() || !(for_target || proc_macro) {
            continue;
        }
        let (name, version) = names[&artifact.package_id.repr].clone();
        if name == "artifacts" {
            continue;
        }
        compiled.insert((name, version, proc_macro), artifact.features.iter().cloned().collect());
    }
    let resolved: BTreeMap<(String, String, bool), BTreeSet<String>> = graph
        .crates
        .iter()
        .map(|c| ((c.name.clone(), c.version.to_string(), c.kind == CrateKind::ProcMacro), c.features.clone()))
        .collect();
    // Proc-macros used only by other proc-macros are compiled but not part of the graph (they are never linked).
    compiled.retain(|key, _| !key.2 || resolved.contains_key(key));
    assert!(resolved.len() > 15 && resolved.keys().any(|key| key.2), "a real graph with proc-macros: {resolved:?}");
    assert_eq!(resolved, compiled);
}

/// `build.rs` captured what check-dep computes for the `manager` package alone, from the current workspace.
#[test]
fn the_built_in_manager_graph_equals_a_fresh_resolve_of_the_manager_package() {
    let fresh = check_dep::plugin_graph(&workspace_root().join("manager")).expect("resolve manager");
    let built_in = check_dep::manager_graph().expect("manager graph");
    assert_eq!(&fresh, built_in, "rebuild the plugin tool: the workspace changed since build.rs ran");
}
