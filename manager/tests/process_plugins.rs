//! Process plugins (`plugin build --process`): the same example crates, built into executables, run as child
//! processes of the real manager binary. `plugin test` runs the same conformance suites against the child; a
//! process plugin built with the other profile and other versions of the SDK's dependencies (whose `.so` the
//! manager refuses) loads; in the daemon a process plugin is started beside the `.so` files, serves, forwards its
//! logs, and its crash fails only its own calls.

mod common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::daemon::TestHome;
use common::plugins::{
    OTHER_DEPENDENCIES_LOCK, build_memdb_with_other_dependencies, build_other_profile, built_process, locked_version,
};
use jsonrpsee::rpc_params;
use serde_json::Value;

fn manager_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_damocles-manager"))
}

fn plugin_test(file: &Path) -> Output {
    let mut command = plugin::test_plugin::command(file, Some(manager_bin()), false, &[], None).expect("command");
    command.output().expect("run damocles-manager __test-plugin")
}

/// This test run's profile: what the suite's manager is built with.
const DEBUG: bool = cfg!(debug_assertions);

#[test]
fn every_example_passes_its_conformance_suite_as_a_process_plugin() {
    for (example, behaviours) in [
        (
            "memdb",
            &[
                "load",
                "open-and-run",
                "put-get-peek-round-trip",
                "atomic-update-rolls-back",
                "concurrent-updates-lose-nothing",
                "close",
            ][..],
        ),
        ("fsstore", &["load", "open", "put-stat-get-round-trip", "atomic-put", "invalid-paths", "read-only"][..]),
        ("statelog", &["load", "OnInit", "OnUpdate", "OnFinalize", "OnRestore", "OnImport"][..]),
        ("counter", &["load", "methods-listed", "call AtomicCounter.Incr", "call AtomicCounter.Reset"][..]),
    ] {
        let file = built_process(example, !DEBUG);
        assert_eq!(file.file_name().and_then(|n| n.to_str()), Some(format!("plugin-{example}").as_str()));
        let output = plugin_test(&file);
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{example}:\n{text}\n{}", String::from_utf8_lossy(&output.stderr));
        for behaviour in behaviours {
            assert!(
                text.lines().any(|l| l == format!("pass {behaviour}")),
                "{example}: no `pass {behaviour}`:\n{text}"
            );
        }
        assert!(!text.contains("FAIL") && text.ends_with(" passed, 0 failed\n"), "{text}");
    }
}

/// The process path ignores the rustc/SDK-source fingerprint items: memdb built out of tree with other patch
/// versions of the SDK's own dependencies (serde, serde_json, tracing: the wire format's crates) and with the
/// profile this manager was not built with (release under the debug test manager) — refused as a `.so` — loads
/// and passes as a process.
#[test]
fn a_process_plugin_with_another_profile_and_other_dependency_versions_loads_where_its_so_is_refused() {
    let so = build_other_profile("memdb");
    let refused = plugin_test(&so);
    assert_eq!(refused.status.code(), Some(1), "the .so of the other profile is refused");
    assert!(String::from_utf8_lossy(&refused.stdout).contains("FAIL load: "));

    let (process, used_lockfile) = build_memdb_with_other_dependencies();
    let manager_lockfile = common::plugins::workspace_root().join("Cargo.lock");
    for package in ["serde", "serde_json", "tracing"] {
        let theirs = locked_version(&used_lockfile, package);
        let ours = locked_version(&manager_lockfile, package);
        assert!(theirs.is_some() && ours.is_some(), "{package}: {theirs:?} / {ours:?}");
        assert_ne!(
            theirs, ours,
            "{package}: the plugin must be built with another version than the manager's \
             (move {OTHER_DEPENDENCIES_LOCK} to another patch version)"
        );
    }
    let bytes = std::fs::read(&process).expect("read");
    let image = plugin_image::Image::read_process_plugin(&bytes).expect("the marker reads without running the file");
    let other = if DEBUG { "false" } else { "true" };
    assert_eq!(image.fingerprint().get("debug-assertions"), Some(other), "built with the other profile");
    assert_eq!(image.info_field("protocol"), Some(manager_plugin::process::PROTOCOL_TEXT));
    let inspection = plugin::inspect::inspect(&process, Some(manager_bin()), false).expect("inspect");
    assert!(inspection.compatible, "{}", inspection.report);
    for line in [
        "mode: process plugin",
        "name: memdb",
        "kind: KVStore",
        &format!("protocol: {}", manager_plugin::process::PROTOCOL_TEXT),
    ] {
        assert!(inspection.report.contains(line), "{}", inspection.report);
    }
    let output = plugin_test(&process);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(text.ends_with(" passed, 0 failed\n"), "{text}");
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// In the daemon: `plugin-counter` and `plugin-statelog` executables in the plugins dir are started as child
/// processes beside a `.so` (memdb), serve JSON-RPC and sector events, their logs arrive tagged with the plugin;
/// killing the counter's process with SIGSEGV fails only its calls — the daemon and the other plugins answer on.
#[tokio::test(flavor = "multi_thread")]
async fn process_plugins_serve_the_daemon_beside_so_files_and_a_crash_fails_only_their_calls() {
    let home = TestHome::init();
    home.install_plugins(&["memdb"]);
    for name in ["counter", "statelog"] {
        let file = built_process(name, !DEBUG);
        std::fs::copy(&file, home.plugins_dir().join(format!("plugin-{name}"))).expect("install");
    }
    let daemon = home.start();
    let one: i64 = daemon.call("AtomicCounter.Incr", rpc_params!["jobs"]).await.expect("the process plugin answers");
    let two: i64 = daemon.call("AtomicCounter.Incr", rpc_params!["jobs"]).await.expect("again");
    assert_eq!((one, two), (1, 2));

    let spec = serde_json::json!({"AllowedMiners": [1000], "AllowedProofTypes": []});
    let _: Value = daemon.call("Venus.AllocateSector", rpc_params![spec.clone()]).await.expect("allocate");
    let journal = home.plugins_dir().join("statelog.jsonl");
    wait_for("statelog's journal line", || std::fs::read_to_string(&journal).is_ok_and(|t| t.contains("OnInit")));
    wait_for("statelog's forwarded log line", || daemon.log().contains("statelog journals sector events"));
    let log = daemon.log();
    let line = log.lines().find(|l| l.contains("statelog journals sector events")).expect("line");
    assert!(line.contains("SyncSectorState/statelog"), "tagged with the plugin: {line}");

    let plugins: Vec<Value> = daemon.call("Plugins.List", rpc_params![]).await.expect("list");
    let names: Vec<&str> = plugins.iter().filter_map(|p| p["Name"].as_str()).collect();
    for name in ["memdb", "counter", "statelog"] {
        assert!(names.contains(&name), "{name} listed: {plugins:?}");
    }

    // A SIGSEGV of the counter's process: its calls fail with how it ended; everything else answers.
    let pid = process_pid(&home, "plugin-counter").expect("the counter runs as its own process");
    // std's own SIGSEGV handler (stack-overflow detection) lets the first signal of a fault-free process pass
    // after restoring the default action: the signal is sent until the process is gone.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // SAFETY: kill(2) of the plugin's process, a child of the daemon under test.
        unsafe { libc::kill(pid, libc::SIGSEGV) };
        tokio::time::sleep(Duration::from_millis(50)).await;
        if daemon.call::<i64>("AtomicCounter.Incr", rpc_params!["jobs"]).await.is_err() {
            break;
        }
        assert!(Instant::now() < deadline, "the counter still answers after SIGSEGV");
    }
    let err = daemon.call::<i64>("AtomicCounter.Incr", rpc_params!["jobs"]).await.expect_err("the counter is down");
    assert!(err.to_string().contains("signal 11 (SIGSEGV)"), "{err}");
    let _: Value = daemon.call("Venus.AllocateSector", rpc_params![spec]).await.expect("the daemon answers on");
    wait_for("the second allocation in the journal", || {
        std::fs::read_to_string(&journal).is_ok_and(|t| t.matches("OnInit").count() >= 2)
    });
    assert_eq!(daemon.stop(), Some(0));
}

/// The pid of the process whose executable is named `name` (a child of the daemon of `home`).
fn process_pid(home: &TestHome, name: &str) -> Option<i32> {
    let wanted = home.plugins_dir().join(name);
    std::fs::read_dir("/proc").ok()?.filter_map(Result::ok).find_map(|entry| {
        let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
        let exe = std::fs::read_link(entry.path().join("exe")).ok()?;
        (exe == wanted).then_some(pid)
    })
}
