//! Plugin authoring as an author does it: `plugin new` for each kind, `cargo test` of the new crate, `plugin build`
//! with the command line's own defaults, then the real daemon loads the plugin and is made to call it. The
//! examples, copied out of the repository with their one documented edit, build the same way.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::daemon::{RunningDaemon, TestHome, raw_http};
use common::plugins::workspace_root;
use jsonrpsee::rpc_params;
use serde_json::{Value, json};

/// Runs the `plugin` command line in-process (the same parser and code as the binary).
fn plugin(args: &[&str]) {
    let mut all = vec!["plugin"];
    all.extend_from_slice(args);
    match plugin::cli::run_args(all.clone()) {
        Ok(true) => {}
        Ok(false) => panic!("`{}` reported a failure (see its output above)", all.join(" ")),
        Err(e) => panic!("`{}` failed: {e:#}", all.join(" ")),
    }
}

/// `--debug` when the daemon under test is a debug build: `plugin build` defaults to the release profile.
fn profile_flag() -> &'static [&'static str] {
    if cfg!(debug_assertions) { &["--debug"] } else { &[] }
}

/// Where plugin crates and wrappers compile: the target dir the manager's own tests build plugins in.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("target"))
}

/// `plugin build` of the crate at `src` into `home`'s plugins dir, as the guide shows it (plus the profile flag
/// and the shared target dir).
fn build_into(home: &TestHome, src: &Path) {
    let (src, out, target) =
        (src.display().to_string(), home.plugins_dir().display().to_string(), target_dir().display().to_string());
    let mut args = vec!["build", "--src-dir", &src, "--out-dir", &out, "--target-dir", &target];
    args.extend_from_slice(profile_flag());
    plugin(&args);
}

/// `cargo test` in a generated crate: its unit tests pass as generated.
fn cargo_test(dir: &Path) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(dir)
        .args(["test", "--quiet"])
        .env("CARGO_TARGET_DIR", target_dir().join("plugin-authoring"))
        .output()
        .expect("run cargo test");
    assert!(
        out.status.success(),
        "cargo test of the generated crate failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `plugin new --kind KIND NAME DIR`, its tests, its build into a fresh home. Returns the home and the crate dir.
fn new_plugin(kind: &str, name: &str) -> (TestHome, tempfile::TempDir) {
    let crates = tempfile::tempdir().expect("temp dir");
    let dir = crates.path().join(name);
    plugin(&["new", "--kind", kind, name, &dir.display().to_string()]);
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).expect("Cargo.toml");
    assert!(!manifest.contains("workspace = true"), "{manifest}");
    cargo_test(&dir);
    let home = TestHome::init();
    build_into(&home, &dir);
    (home, crates)
}

fn assert_loaded(daemon: &RunningDaemon, kind: &str, name: &str) {
    let line = format!("loaded plugin '{kind}/{name}', build time: '");
    assert!(daemon.log().contains(&line), "no `{line}` in the daemon log:\n{}", daemon.log());
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn report(next: &str) -> Value {
    json!({"Worker": {"Instance": "w1", "Location": "/s"}, "StateChange": {"Prev": "", "Next": next, "Event": "Go"}})
}

/// Allocates a sector and reports a state for it; returns its number.
async fn allocate_and_report(daemon: &RunningDaemon, next: &str) -> u64 {
    let spec = json!({"AllowedMiners": [], "AllowedProofTypes": []});
    let allocated: Value = daemon.call("Venus.AllocateSector", rpc_params![spec]).await.expect("allocate");
    let number = allocated["ID"]["Number"].as_u64().expect("sector number");
    let miner = allocated["ID"]["Miner"].clone();
    let sid = json!({"Miner": miner, "Number": number});
    let _: Value = daemon.call("Venus.ReportState", rpc_params![sid, report(next)]).await.expect("report");
    number
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_kvstore_plugin_builds_loads_and_holds_the_managers_sectors() {
    let (home, _crates) = new_plugin("KVStore", "my-kv");
    home.set_config("Common.DB.Driver", "plugin");
    home.set_config("Common.DB.Plugin.PluginName", "my-kv");
    let daemon = home.start();
    assert_loaded(&daemon, "KVStore", "my-kv");
    let number = allocate_and_report(&daemon, "PC1Done").await;
    let online: Vec<Value> = daemon.call("Venus.ListSectors", rpc_params!["online", 0]).await.expect("list");
    let sector = online.iter().find(|s| s["ID"]["Number"] == number).expect("the sector is stored in the plugin");
    assert_eq!(sector["LatestState"]["StateChange"]["Next"], "PC1Done");
    assert_eq!(daemon.stop(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_filestore_plugin_builds_loads_and_stores_pieces() {
    let (home, _crates) = new_plugin("FileStore", "my-store");
    let root = tempfile::tempdir().expect("store dir");
    let mut store = toml::Table::new();
    store.insert("Name".into(), "pieces-1".into());
    store.insert("PluginName".into(), "my-store".into());
    store.insert("Path".into(), root.path().display().to_string().into());
    home.edit_config(|doc| {
        let common = doc.get_mut("Common").and_then(toml::Value::as_table_mut).expect("[Common]");
        common.insert("PieceStores".into(), toml::Value::Array(vec![toml::Value::Table(store.clone())]));
    });
    let daemon = home.start();
    assert_loaded(&daemon, "FileStore", "my-store");
    let put = raw_http(daemon.port, "PUT", "/piecestore/p1.car", Some(&daemon.token), b"piece bytes").expect("put");
    assert!((200..300).contains(&put.status), "PUT answered {}: {}", put.status, String::from_utf8_lossy(&put.body));
    assert_eq!(std::fs::read(root.path().join("p1.car")).expect("the plugin wrote the object"), b"piece bytes");
    let get = raw_http(daemon.port, "GET", "/piecestore/p1.car", Some(&daemon.token), b"").expect("get");
    assert_eq!((get.status, get.body.as_slice()), (200, &b"piece bytes"[..]));
    assert_eq!(daemon.stop(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_syncsectorstate_plugin_builds_loads_and_receives_state_changes() {
    let (home, _crates) = new_plugin("SyncSectorState", "my-sync");
    let daemon = home.start();
    assert_loaded(&daemon, "SyncSectorState", "my-sync");
    let number = allocate_and_report(&daemon, "PC1Done").await;
    let csv = home.plugins_dir().join("my-sync.csv");
    let expected = format!(",{number},PC1Done");
    wait_for("the OnUpdate line", || {
        std::fs::read_to_string(&csv)
            .is_ok_and(|t| t.lines().any(|l| l.starts_with("OnUpdate,") && l.ends_with(&expected)))
    });
    let text = std::fs::read_to_string(&csv).expect("csv");
    assert!(text.lines().next().is_some_and(|l| l.starts_with("OnInit,")), "{text}");
    assert_eq!(daemon.stop(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_registerjsonrpc_plugin_builds_loads_and_answers_in_its_namespace() {
    let (home, _crates) = new_plugin("RegisterJsonRpc", "hello-rpc");
    let daemon = home.start();
    assert_loaded(&daemon, "RegisterJsonRpc", "hello-rpc");
    let sum: i64 = daemon.call("HelloRpc.Add", rpc_params![2, 40]).await.expect("HelloRpc.Add");
    assert_eq!(sum, 42);
    let echo: Value = daemon.call("HelloRpc.Echo", rpc_params!["x"]).await.expect("HelloRpc.Echo");
    assert_eq!(echo, json!(["x"]));
    assert_eq!(daemon.stop(), Some(0));
}

/// The example READMEs used to show `Dir = "~/.damocles-manager/plugins"`, which was taken as a directory named
/// `~` next to the config file. A leading `~/` now means the home directory, as in a shell.
#[test]
fn a_tilde_in_a_config_path_is_the_home_directory() {
    let home = std::env::var("HOME").expect("HOME is set");
    let text = "[Common.Plugins]\nDir = \"~/.damocles-manager/plugins\"\n[Common.DB.RocksDB]\nDir = \"~/db\"\n";
    let config = manager::config::Config::parse(text, Path::new("/etc/damocles/sector-manager.cfg")).expect("parse");
    assert_eq!(config.common.plugins.dir, Path::new(&home).join(".damocles-manager/plugins"));
    assert_eq!(config.common.db.rocksdb.dir, Path::new(&home).join("db"));
    let relative =
        manager::config::Config::parse("[Common.Plugins]\nDir = \"p\"\n", Path::new("/etc/d/m.cfg")).expect("parse");
    assert_eq!(relative.common.plugins.dir, Path::new("/etc/d/p"));
}

/// Copies `src` (a directory tree) to `dest`.
fn copy_tree(src: &Path, dest: &Path) {
    std::fs::create_dir_all(dest).expect("create dir");
    for entry in std::fs::read_dir(src).expect("read dir") {
        let entry = entry.expect("dir entry");
        let target = dest.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

/// Each example, copied out of the repository with the one edit its `Cargo.toml` and the guide ask for (the SDK
/// path), builds with `plugin build` as it is: no workspace inheritance, no lockfile needed.
#[test]
fn every_example_copied_out_of_the_repository_builds_after_its_one_documented_edit() {
    let sdk = workspace_root().join("manager-plugin");
    let guide = std::fs::read_to_string(workspace_root().join("docs/plugin-guide.md")).expect("guide");
    assert!(guide.contains(r#"s|path = \"../../manager-plugin\"|path = \"$PWD/manager-plugin\"|"#), "the guide's edit");
    for example in ["memdb", "fsstore", "counter", "statelog"] {
        let copies = tempfile::tempdir().expect("temp dir");
        let dir = copies.path().join(example);
        copy_tree(&workspace_root().join("examples").join(example), &dir);
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).expect("Cargo.toml");
        assert!(!manifest.contains("workspace"), "{example}: no workspace inheritance:\n{manifest}");
        let edited =
            manifest.replace(r#"path = "../../manager-plugin""#, &format!("path = {:?}", sdk.display().to_string()));
        assert_ne!(edited, manifest, "{example}: the documented edit applies");
        std::fs::write(dir.join("Cargo.toml"), edited).expect("write Cargo.toml");
        let out = copies.path().join("out");
        let (src, out_text, target) =
            (dir.display().to_string(), out.display().to_string(), target_dir().display().to_string());
        let mut args = vec!["build", "--src-dir", &src, "--out-dir", &out_text, "--target-dir", &target];
        args.extend_from_slice(profile_flag());
        plugin(&args);
        assert!(out.join(format!("plugin-{example}.so")).is_file(), "{example} built");
    }
}

/// The fenced blocks of `docs/plugin-guide.md` marked `<!-- guide: FLOW -->`, in order: (language, text).
fn guide_blocks(flow: &str) -> Vec<(String, String)> {
    let guide = std::fs::read_to_string(workspace_root().join("docs/plugin-guide.md")).expect("guide");
    let marker = format!("<!-- guide: {flow} -->");
    let mut blocks = Vec::new();
    let mut lines = guide.lines();
    while let Some(line) = lines.next() {
        if line.trim() != marker {
            continue;
        }
        let fence = lines.next().expect("a fenced block after the marker");
        let lang = fence.strip_prefix("```").expect("the marker is followed by a ``` block").to_string();
        let body: Vec<&str> = lines.by_ref().take_while(|l| !l.starts_with("```")).collect();
        blocks.push((lang, body.join("\n")));
    }
    assert!(!blocks.is_empty(), "no `{marker}` blocks in docs/plugin-guide.md");
    blocks
}

/// Merges `patch` into `doc` table by table.
fn merge_toml(doc: &mut toml::Value, patch: toml::Value) {
    match (doc, patch) {
        (toml::Value::Table(doc), toml::Value::Table(patch)) => {
            for (key, value) in patch {
                match doc.get_mut(&key) {
                    Some(existing) if existing.is_table() && value.is_table() => merge_toml(existing, value),
                    _ => {
                        doc.insert(key, value);
                    }
                }
            }
        }
        (doc, patch) => *doc = patch,
    }
}

/// The manager binary the guide tests plugins with: the one `scripts/run.sh` runs.
const RELEASE_MANAGER: &str = "target/release/damocles-manager";

/// Runs the guide's commands for one flow, in a scratch `~` (crates) and a test home (`~/.damocles-manager`).
struct GuideRun {
    tilde: tempfile::TempDir,
    home: TestHome,
    daemon: Option<RunningDaemon>,
    /// Output of the last `curl` (the JSON-RPC response) and `cat`.
    outputs: Vec<String>,
}

impl GuideRun {
    fn new() -> GuideRun {
        GuideRun {
            tilde: tempfile::tempdir().expect("temp dir"),
            home: TestHome::init(),
            daemon: None,
            outputs: Vec::new(),
        }
    }

    fn expand(&self, text: &str) -> String {
        text.replace("~/.damocles-manager", &self.home.path().display().to_string())
            .replace("~/", &format!("{}/", self.tilde.path().display()))
            .replace("127.0.0.1:1789", &format!("127.0.0.1:{}", self.home.port))
    }

    fn run_flow(&mut self, flow: &str) {
        for (lang, text) in guide_blocks(flow) {
            match lang.as_str() {
                "sh" => text.lines().filter(|l| !l.trim().is_empty()).for_each(|l| self.run_command(l.trim())),
                "toml" => {
                    let patch: toml::Value = toml::from_str(&text).expect("the guide's config block is TOML");
                    self.home.edit_config(|doc| merge_toml(doc, patch));
                }
                "text" => {
                    let daemon = self.daemon.as_ref().expect("the log block comes after scripts/run.sh");
                    for line in text.lines().filter(|l| !l.trim().is_empty()) {
                        assert!(daemon.log().contains(line.trim()), "the log lacks `{line}`:\n{}", daemon.log());
                    }
                }
                other => panic!("the guide test does not know ```{other} blocks"),
            }
        }
    }

    fn run_command(&mut self, command: &str) {
        let command = self.expand(command);
        if let Some(args) = command.strip_prefix("cargo run -p plugin -- ") {
            let mut args: Vec<String> = args.split_whitespace().map(str::to_string).collect();
            if args.first().is_some_and(|a| a == "build") {
                args.extend(profile_flag().iter().map(|s| s.to_string()));
                args.extend(["--target-dir".to_string(), target_dir().display().to_string()]);
            }
            if args.first().is_some_and(|a| a == "test") {
                // The guide tests with the release manager scripts/run.sh runs; here, with the manager under test.
                let at = args.iter().position(|a| a == "--manager").expect("the guide's `test` names --manager");
                assert_eq!(args[at + 1], RELEASE_MANAGER, "{command}");
                args[at + 1] = env!("CARGO_BIN_EXE_damocles-manager").to_string();
            }
            plugin(&args.iter().map(String::as_str).collect::<Vec<_>>());
        } else if command == "cargo build --release -p manager" {
            // What scripts/run.sh would build; the manager under test is already built.
            assert!(Path::new(env!("CARGO_BIN_EXE_damocles-manager")).is_file());
        } else if let Some(dir) = command.strip_prefix("(cd ").and_then(|c| c.strip_suffix(" && cargo test)")) {
            cargo_test(Path::new(dir));
        } else if command == "scripts/run.sh" {
            self.daemon = Some(self.home.start());
        } else if command.starts_with("curl ") {
            self.curl(&command);
        } else if let Some(file) = command.strip_prefix("cat ") {
            // A whole line: the plugin may still be writing when the file first has bytes.
            wait_for(file, || std::fs::read_to_string(file).is_ok_and(|t| t.ends_with('\n')));
            self.outputs.push(std::fs::read_to_string(file).expect("read"));
        } else {
            panic!("the guide test does not know how to run `{command}`: teach it, or change the guide");
        }
    }

    /// `curl -s URL -H "Authorization: Bearer $(cat TOKEN)" -H 'content-type: application/json' -d 'JSON'`.
    fn curl(&mut self, command: &str) {
        let daemon = self.daemon.as_ref().expect("curl comes after scripts/run.sh");
        let token_file = format!("{}/token", self.home.path().display());
        assert!(command.contains(&format!("-H \"Authorization: Bearer $(cat {token_file})\"")), "{command}");
        let body = command.split("-d '").nth(1).and_then(|b| b.strip_suffix('\'')).expect("a -d '<json>' body");
        let response =
            raw_http(daemon.port, "POST", "/rpc/v0", Some(&self.home.token()), body.as_bytes()).expect("POST");
        let text = String::from_utf8_lossy(&response.body).into_owned();
        assert_eq!(response.status, 200, "{command}: {text}");
        let json: Value = serde_json::from_str(&text).expect("a JSON-RPC response");
        assert!(json.get("result").is_some(), "{command}: {text}\n{}", daemon.log());
        self.outputs.push(text);
    }
}

/// docs/plugin-guide.md's KVStore walk-through, run as written: the plugin is created, tested, checked, built,
/// passes `plugin test`, is selected in the config, loaded, and holds the sector `Venus.AllocateSector` creates.
#[test]
fn the_guides_kvstore_walk_through_works_as_written() {
    let mut run = GuideRun::new();
    run.run_flow("kvstore");
    let allocated: Value = serde_json::from_str(&run.outputs[0]).expect("json");
    assert_eq!(allocated["result"]["ID"]["Miner"], 1000, "{allocated}");
    assert_eq!(run.daemon.take().expect("daemon").stop(), Some(0));
}

/// docs/plugin-guide.md's SyncSectorState walk-through, run as written: the plugin passes `plugin test` and
/// receives the `OnInit` event of the sector the guide allocates.
#[test]
fn the_guides_syncsectorstate_walk_through_works_as_written() {
    let mut run = GuideRun::new();
    run.run_flow("syncsectorstate");
    let allocated: Value = serde_json::from_str(&run.outputs[0]).expect("json");
    let number = allocated["result"]["ID"]["Number"].as_u64().expect("number");
    let csv = run.outputs.last().expect("cat output");
    assert!(csv.lines().any(|l| l == format!("OnInit,1000,{number},")), "{csv}");
    assert_eq!(run.daemon.take().expect("daemon").stop(), Some(0));
}
