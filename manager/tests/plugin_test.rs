//! `plugin test FILE`: the command line `plugin test` builds runs the real `damocles-manager` binary, which loads
//! real `.so` files exactly as the daemon does and runs their kind's conformance suite.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::plugins::{build_other_profile, built};
use serde_json::Value;

fn manager_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_damocles-manager"))
}

/// `plugin test FILE --manager <this build's manager> [--json] [--meta …]`, as `plugin test` runs it.
fn plugin_test(file: &Path, json: bool, meta: &[&str]) -> Output {
    let meta: Vec<String> = meta.iter().map(|m| m.to_string()).collect();
    let mut command = plugin::test_plugin::command(file, Some(manager_bin()), json, &meta, None).expect("command");
    command.output().expect("run damocles-manager __test-plugin")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A copy of `so` in a fresh directory (so truncating or patching it leaves the shared build alone).
fn copy_of(so: &Path) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let copy = dir.path().join(so.file_name().expect("file name"));
    std::fs::copy(so, &copy).expect("copy");
    (dir, copy)
}

#[test]
fn every_example_passes_with_one_pass_line_per_behaviour() {
    for (example, behaviours) in [
        (
            "memdb",
            &[
                "load",
                "open-and-run",
                "missing-key",
                "delete-missing",
                "ordered-scans-with-prefixes",
                "iterator-pages-through-many-keys",
                "atomic-update-rolls-back",
                "conflict-reporting",
                "close",
            ][..],
        ),
        (
            "fsstore",
            &["load", "open", "put-stat-get-round-trip", "not-found", "atomic-put", "invalid-paths", "read-only"][..],
        ),
        ("statelog", &["load", "OnInit", "OnUpdate", "OnFinalize", "OnRestore", "OnImport"][..]),
        (
            "counter",
            &[
                "load",
                "methods-listed",
                "call AtomicCounter.Incr",
                "call AtomicCounter.Get",
                "call AtomicCounter.Reset",
            ][..],
        ),
    ] {
        let output = plugin_test(&built(example), false, &[]);
        let text = stdout(&output);
        assert!(output.status.success(), "{example}:\n{text}\n{}", String::from_utf8_lossy(&output.stderr));
        assert!(text.contains("no production data is touched"), "{example}: the header says so:\n{text}");
        for behaviour in behaviours {
            assert!(
                text.lines().any(|l| l == format!("pass {behaviour}")),
                "{example}: no `pass {behaviour}`:\n{text}"
            );
        }
        assert!(!text.contains("FAIL"), "{text}");
        assert!(text.ends_with(" passed, 0 failed\n"), "{text}");
    }
}

#[test]
fn a_panicking_kv_plugin_fails_the_named_behaviours_with_the_panic_message_and_the_tool_exits_non_zero() {
    let output = plugin_test(&built("panicky-kv"), false, &["panic_in=get"]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.contains(&"pass load"), "{text}");
    assert!(
        lines.contains(
            &"FAIL missing-key: get of a missing key: got Err(Panicked(\"panicky-kv: told to panic in get\")), \
              expected Err(KeyNotFound)"
        ),
        "{text}"
    );
    // panicky-kv has no transactions: deleting a missing key inside one fails.
    assert!(
        lines.contains(&"FAIL delete-missing: Txn::del of a missing key: panicky-kv has no transactions"),
        "{text}"
    );
    assert!(lines.contains(&"pass close"), "every behaviour ran although the plugin panicked: {text}");
    let in_process = plugin::test_plugin::run_cli(
        &built("panicky-kv"),
        Some(manager_bin()),
        false,
        &["panic_in=get".to_string()],
        None,
    );
    assert!(matches!(in_process, Ok(false)), "`plugin test` reports the failure: {in_process:?}");
}

/// A panic with a long message (an `unwrap` of an I/O error) keeps its whole text in the round-trip failure, as
/// in every other failure line.
#[test]
fn the_round_trip_failure_keeps_the_whole_panic_text() {
    let output = plugin_test(&built("panicky-kv"), false, &["panic_in=get-unwrap"]);
    let text = stdout(&output);
    let line = text.lines().find(|l| l.starts_with("FAIL put-get-peek-round-trip: ")).expect("a round-trip failure");
    assert_eq!(
        line,
        "FAIL put-get-peek-round-trip: get b\"plain\": plugin panicked: called `Result::unwrap()` on an `Err` value: \
         Custom { kind: PermissionDenied, error: \"cannot open /var/lib/panicky-kv/segment-000042.log\" }",
        "{text}"
    );
}

#[test]
fn a_kv_plugin_with_unordered_scans_and_a_failing_delete_fails_exactly_those_behaviours() {
    let output = plugin_test(&built("sloppy-kv"), false, &[]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    for line in [
        "FAIL delete-missing: del of a missing key: sloppy-kv: cannot delete a missing key",
        // What sloppy-kv leaves to memdb is still right: transactions, their own scans, conflicts.
        "pass missing-key",
        "pass atomic-update-rolls-back",
        "pass txn-reads-own-writes",
        "pass conflict-reporting",
    ] {
        assert!(lines.contains(&line), "no `{line}`:\n{text}");
    }
    let order =
        r#"FAIL ordered-scans-with-prefixes: keys of a scan of prefix b"": got [b"\xff\xff", b"\xff\x00", b"\xff","#;
    assert!(lines.iter().any(|l| l.starts_with(order)), "no `{order}…`:\n{text}");
}

#[test]
fn a_store_whose_instance_info_never_returns_is_reported_hung_naming_the_behaviour_within_the_limit() {
    let started = std::time::Instant::now();
    let mut command =
        plugin::test_plugin::command(&built("hung-store"), Some(manager_bin()), false, &[], Some(2)).expect("command");
    let output = command.output().expect("run");
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "bounded: {:?}", started.elapsed());
    let last = text.lines().rev().nth(1).unwrap_or_default();
    assert!(
        last.starts_with("FAIL instance-info: did not return within 2 s: a plugin call hangs"),
        "the hung behaviour is the last one reported:\n{text}"
    );
    assert!(text.lines().any(|l| l == "pass open"), "{text}");
}

#[test]
fn a_store_whose_put_panics_fails_each_behaviour_that_writes() {
    let output = plugin_test(&built("panicky-store"), false, &[]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    for line in [
        "pass not-found",
        "FAIL atomic-put: put: plugin panicked: panicky-store: told to panic in put",
        "FAIL put-stat-get-round-trip: put \"round-trip/a.car\": plugin panicked: panicky-store: told to panic in put",
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}`:\n{text}");
    }
}

/// The first line of `load`'s failure is the loader's own message, as the daemon logs it.
fn assert_refused_like_the_daemon(file: &Path) -> String {
    let loader = match manager::plugins::library::check(file, &Default::default()) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("{} passes the loader's checks", file.display()),
    };
    let output = plugin_test(file, false, &[]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains(&format!("\nFAIL load: {loader}\n")), "expected the loader's `{loader}`:\n{text}");
    assert!(text.ends_with("0 passed, 1 failed\n"), "nothing runs after a refusal: {text}");
    loader
}

#[test]
fn a_truncated_file_is_refused_with_the_loaders_message() {
    let (_dir, copy) = copy_of(&built("memdb"));
    let bytes = std::fs::read(&copy).expect("read");
    std::fs::write(&copy, &bytes[..bytes.len() / 3]).expect("truncate");
    let message = assert_refused_like_the_daemon(&copy);
    assert!(message.contains("truncated or corrupt ELF file"), "{message}");
}

#[test]
fn a_plugin_built_for_the_other_profile_is_refused_with_the_loaders_message() {
    let other_profile = build_other_profile("memdb");
    let message = assert_refused_like_the_daemon(&other_profile);
    assert!(message.contains("debug-assertions"), "names the differing profile setting: {message}");
    // The fix that applies comes first: the build flag of this manager's profile (check-dep cannot change it).
    let first_fix = message.lines().find(|l| l.starts_with("  fix: ")).expect("a fix line");
    let flag = if cfg!(debug_assertions) { "build --debug" } else { "(without --debug)" };
    assert!(first_fix.contains(flag) && !first_fix.contains("check-dep"), "{message}");
}

#[test]
fn json_output_is_one_document_with_a_result_per_behaviour() {
    for (file, meta, passed) in [(built("memdb"), &[][..], true), (built("panicky-kv"), &["panic_in=get"][..], false)] {
        let output = plugin_test(&file, true, meta);
        let report: Value = serde_json::from_slice(&output.stdout).expect("one JSON document");
        assert_eq!(report["passed"], passed, "{report:#}");
        assert_eq!(report["kind"], "KVStore");
        assert_eq!(report["file"], file.display().to_string());
        let results = report["results"].as_array().expect("results");
        assert_eq!(results[0]["behaviour"], "load");
        let missing = results.iter().find(|r| r["behaviour"] == "missing-key").expect("missing-key");
        assert_eq!(missing["passed"], passed, "{missing}");
        assert_eq!(missing["reason"].is_null(), passed, "{missing}");
        assert!(!Path::new(report["scratch"].as_str().expect("scratch")).exists(), "the scratch dir is removed");
    }
}

#[test]
fn a_missing_manager_or_plugin_file_is_an_error_naming_the_fix() {
    let err = plugin::test_plugin::command(
        &built("memdb"),
        Some(Path::new("/nonexistent/damocles-manager")),
        false,
        &[],
        None,
    )
    .expect_err("error");
    assert!(err.to_string().contains("pass the path of a built damocles-manager to `--manager`"), "{err}");
    let err =
        plugin::test_plugin::command(Path::new("/nonexistent/plugin-x.so"), Some(manager_bin()), false, &[], None)
            .expect_err("error");
    assert!(err.to_string().contains("build it with `plugin build` first"), "{err}");
}
