//! `plugin build` as an author runs it: the real binary, real cargo, fixture crates in temp dirs.

use std::path::Path;
use std::process::Command;

fn sdk_dir() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../manager-plugin").display().to_string()
}

/// A plugin crate in a temp dir with the given manifest and source, using the manager's lockfile.
fn plugin_crate(manifest: &str, lib_rs: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Cargo.toml"),
        format!(
            "[package]\nname = \"fixture\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[dependencies]\nmanager-plugin = {{ path = {:?} }}\n\n[workspace]\n",
            sdk_dir()
        ),
    )
    .unwrap();
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.lock"), dir.path().join("Cargo.lock"))
        .unwrap();
    std::fs::write(dir.path().join("manifest.toml"), manifest).unwrap();
    std::fs::create_dir(dir.path().join("src")).unwrap();
    std::fs::write(dir.path().join("src/lib.rs"), lib_rs).unwrap();
    dir
}

/// The target dir shared by these tests (so dependencies compile once).
fn target_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin-build-tests")
}

/// Runs `plugin build --debug` (the quicker profile; the release default has its own test).
fn build(src: &Path, out: &Path) -> (bool, String, String) {
    build_with_env(src, out, &[])
}

/// [`build`] with extra environment variables, as an author's shell or CI would set them.
fn build_with_env(src: &Path, out: &Path, env: &[(&str, &str)]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_plugin"))
        .envs(env.iter().copied())
        .args(["build", "--debug", "--src-dir"])
        .arg(src)
        .arg("--out-dir")
        .arg(out)
        .arg("--target-dir")
        .arg(target_dir())
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (output.status.success(), text(&output.stdout), text(&output.stderr))
}

const COUNTER_LIB: &str = r#"
use manager_plugin::jsonrpc::{JsonRpcHandler, RpcError};
pub struct H;
impl JsonRpcHandler for H {
    fn methods(&self) -> Vec<String> { vec!["Ping".into()] }
    fn call(&self, _: &str, _: &str) -> Result<String, RpcError> { Ok("\"pong\"".into()) }
}
pub fn handler() -> Result<(String, H), String> { Ok(("Ping".into(), H)) }
"#;

#[test]
fn a_successful_build_prints_the_file_and_one_summary_line_not_the_manifest() {
    let src = plugin_crate(
        "name = \"pinger\"\nkind = \"RegisterJsonRpc\"\nexport = [{ extPoint = \"Handler\", impl = \"handler\" }]\n",
        COUNTER_LIB,
    );
    let out = tempfile::tempdir().unwrap();
    let (ok, stdout, stderr) = build(src.path(), out.path());
    assert!(ok, "{stderr}");
    let file = out.path().join("plugin-pinger.so");
    assert!(file.is_file());
    let first = stdout.lines().next().unwrap();
    assert_eq!(
        first,
        format!("Package {:?} as plugin {:?} success.", src.path().display().to_string(), file.display().to_string())
    );
    let rest: Vec<&str> = stdout.lines().skip(1).collect();
    assert_eq!(rest.len(), 1, "one summary line after the file, no manifest JSON:\n{stdout}");
    assert!(rest[0].starts_with("RegisterJsonRpc/pinger built 20"), "{stdout}");
    assert!(rest[0].contains("Z, debug profile: a debug manager loads it"), "{stdout}");
    assert!(!stdout.contains('{'), "no JSON: {stdout}");
}

#[test]
fn an_unknown_kind_is_refused_naming_the_key() {
    let src = plugin_crate("name = \"x\"\nkind = \"Blob\"\nexport = []\n", COUNTER_LIB);
    let (ok, _, stderr) = build(src.path(), src.path());
    assert!(!ok);
    assert!(stderr.contains("manifest.toml: key `kind`: unknown kind \"Blob\"; allowed: KVStore"), "{stderr}");
}

#[test]
fn an_ext_point_of_another_kind_is_refused_naming_the_entry() {
    let src = plugin_crate(
        "name = \"x\"\nkind = \"RegisterJsonRpc\"\nexport = [{ extPoint = \"Constructor\", impl = \"handler\" }]\n",
        COUNTER_LIB,
    );
    let (ok, _, stderr) = build(src.path(), src.path());
    assert!(!ok);
    assert!(
        stderr.contains("key `export[0].extPoint`: \"Constructor\" is not an extension point of kind RegisterJsonRpc"),
        "{stderr}"
    );
}

#[test]
fn a_missing_impl_function_is_reported_against_its_manifest_entry() {
    let src = plugin_crate(
        "name = \"x\"\nkind = \"RegisterJsonRpc\"\nexport = [{ extPoint = \"Handler\", impl = \"hnadler\" }]\n",
        COUNTER_LIB,
    );
    let (ok, _, stderr) = build(src.path(), src.path());
    assert!(!ok);
    assert!(
        stderr.contains("export[0] (extPoint = \"Handler\", impl = \"hnadler\"): cannot find function `hnadler`"),
        "{stderr}"
    );
    // No line numbers of the generated glue (they collide with the author's src/lib.rs), no edits suggested to it,
    // but rustc's hint itself is kept.
    // A `src/lib.rs:` reference is only ever the author's own file, named with its full path.
    let authors_file = format!("{}/src/lib.rs:", src.path().display());
    assert_eq!(stderr.matches("src/lib.rs:").count(), stderr.matches(authors_file.as_str()).count(), "{stderr}");
    assert!(stderr.contains("help: a function with a similar name exists"), "{stderr}");
}

#[test]
fn an_impl_with_the_wrong_signature_is_reported_against_its_manifest_entry() {
    let src = plugin_crate(
        "name = \"x\"\nkind = \"RegisterJsonRpc\"\nexport = [{ extPoint = \"Handler\", impl = \"wrong\" }]\n",
        &format!("{COUNTER_LIB}\npub fn wrong(x: u32) -> u32 {{ x }}\n"),
    );
    let (ok, _, stderr) = build(src.path(), src.path());
    assert!(!ok);
    assert!(stderr.contains("export[0] (extPoint = \"Handler\", impl = \"wrong\")"), "{stderr}");
    assert!(
        stderr.contains(
            "Handler needs fn() -> Result<(String, H), E: Display> where H: manager_plugin::jsonrpc::JsonRpcHandler"
        ),
        "{stderr}"
    );
}

/// A hook whose event type is another hook's: the message says what the hook needs, not only rustc's "expected
/// `&UpdateEvent`, found `&FinalizeEvent`".
#[test]
fn a_hook_with_the_wrong_signature_says_what_the_hook_needs() {
    let src = plugin_crate(
        "name = \"x\"\nkind = \"SyncSectorState\"\nexport = [{ extPoint = \"OnFinalize\", impl = \"on_finalize\" }]\n",
        "pub fn on_finalize(_: &manager_plugin::sync::UpdateEvent) -> Result<(), String> { Ok(()) }\n",
    );
    let (ok, _, stderr) = build(src.path(), src.path());
    assert!(!ok);
    assert!(
        stderr.contains(
            "export[0] (extPoint = \"OnFinalize\", impl = \"on_finalize\"): OnFinalize needs \
             fn(&manager_plugin::sync::FinalizeEvent) -> Result<(), E: Display>"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("rustc: mismatched types"), "rustc's own words follow: {stderr}");
}

#[test]
fn a_missing_manifest_is_an_error_naming_the_file() {
    let src = plugin_crate("", COUNTER_LIB);
    std::fs::remove_file(src.path().join("manifest.toml")).unwrap();
    let (ok, _, stderr) = build(src.path(), src.path());
    assert!(!ok);
    assert!(stderr.contains(&format!("cannot read {}", src.path().join("manifest.toml").display())), "{stderr}");
}

/// The ABI fingerprint embedded in a built plugin, read from the file's `.damocles_plugin` section without
/// loading it.
fn embedded_fingerprint(library: &Path) -> manager_plugin::abi::Fingerprint {
    let bytes = std::fs::read(library).unwrap();
    plugin_image::Image::read_plugin(&bytes).expect("a readable plugin section").fingerprint().clone()
}

/// The README's plugin command, run as written (from the repository root, `cargo run -p plugin --` being this
/// binary, `~/.damocles-manager/plugins` a temp dir) builds with the release profile of `scripts/run.sh`'s
/// manager: its fingerprint is this build's with `debug-assertions=false`, so a release manager loads it.
#[test]
fn the_readmes_build_command_makes_a_plugin_a_release_manager_accepts() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let command = readme
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("cargo run -p plugin -- build "))
        .expect("README.md shows a `cargo run -p plugin -- build` command");
    assert!(!command.contains("--debug"), "the README's command must build for the release manager: {command}");
    let out = tempfile::tempdir().unwrap();
    let args: Vec<String> = command["cargo run -p plugin -- ".len()..]
        .split_whitespace()
        .map(|a| a.replace("~/.damocles-manager/plugins", &out.path().display().to_string()))
        .collect();
    let output = Command::new(env!("CARGO_BIN_EXE_plugin"))
        .current_dir(&root)
        .args(&args)
        .arg("--target-dir")
        .arg(target_dir())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let library = std::fs::read_dir(out.path()).unwrap().next().expect("a built plugin").unwrap().path();

    let plugin = embedded_fingerprint(&library);
    let this_build = manager_plugin::abi::Fingerprint::current();
    assert_eq!(plugin.get("debug-assertions"), Some("false"), "built with the release profile");
    let release_manager = manager_plugin::abi::Fingerprint::parse(
        &this_build.to_text().replace("debug-assertions=true", "debug-assertions=false"),
    );
    assert_eq!(release_manager.differences(&plugin), [], "a release manager accepts it (this build: {this_build:?})");
}

/// A plugin whose panics abort would take the daemon down with its first panic. Whatever asks for `abort` (the
/// profile through the environment, or `-C panic=abort` in RUSTFLAGS), the result either is refused at build time
/// naming the setting, or really unwinds: the `panic` item the host compares is read from `cfg!()` in the built
/// SDK, so a plugin that aborts cannot carry `unwind`.
#[test]
fn a_panic_abort_build_is_refused_or_forced_back_to_unwind() {
    let manifest =
        "name = \"x\"\nkind = \"RegisterJsonRpc\"\nexport = [{ extPoint = \"Handler\", impl = \"handler\" }]\n";
    for env in [
        &[("CARGO_PROFILE_DEV_PANIC", "abort"), ("CARGO_PROFILE_RELEASE_PANIC", "abort")][..],
        &[("RUSTFLAGS", "-C panic=abort")][..],
    ] {
        let src = plugin_crate(manifest, COUNTER_LIB);
        let out = tempfile::tempdir().unwrap();
        let (ok, _, stderr) = build_with_env(src.path(), out.path(), env);
        if !ok {
            assert!(stderr.contains("panic = \"unwind\""), "{env:?}: refused without naming the setting:\n{stderr}");
            continue;
        }
        let library = std::fs::read_dir(out.path()).unwrap().next().expect("a built plugin").unwrap().path();
        assert_eq!(embedded_fingerprint(&library).get("panic"), Some("unwind"), "{env:?}: {stderr}");
    }
}
