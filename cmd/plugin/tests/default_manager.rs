//! Without `--manager`, `plugin test` and `plugin inspect` use the manager that will load the plugin: the release
//! build `scripts/run.sh` runs, also when the tool itself is a debug build (`cargo run -p plugin`), and say which
//! binary they used. The tool is copied into a fake cargo target dir whose `release/` and `debug/` hold stand-in
//! manager programs that report how they were called.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A target dir with this `plugin` binary at `debug/plugin`.
fn target_with_tool() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let debug = dir.path().join("target/debug");
    std::fs::create_dir_all(&debug).expect("mkdir");
    std::fs::create_dir_all(dir.path().join("target/release")).expect("mkdir");
    let tool = debug.join("plugin");
    std::fs::copy(env!("CARGO_BIN_EXE_plugin"), &tool).expect("copy the tool");
    (dir, tool)
}

/// A stand-in manager at `path` that prints `<label>: <args>` and exits with `code`.
fn stand_in(path: &Path, label: &str, code: i32) {
    std::fs::write(path, format!("#!/bin/sh\necho \"{label}: $*\"\nexit {code}\n")).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// Runs the copied tool. A file just written can be briefly "busy" (ETXTBSY): a child forked by another test
/// thread while it was open for writing still holds that descriptor until it execs, so retry for a moment.
fn run(tool: &Path, args: &[&str]) -> Output {
    for _ in 0..100 {
        match Command::new(tool).args(args).env("PATH", "/usr/bin:/bin").output() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            result => return result.expect("run the tool"),
        }
    }
    panic!("{} stayed busy (ETXTBSY) for 2 s", tool.display())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_debug_tool_tests_with_the_release_manager_and_says_so() {
    let (dir, tool) = target_with_tool();
    let release = dir.path().join("target/release/damocles-manager");
    let debug = dir.path().join("target/debug/damocles-manager");
    stand_in(&release, "release manager", 0);
    stand_in(&debug, "debug manager", 0);
    let plugin_file = dir.path().join("plugin-x.so");
    std::fs::write(&plugin_file, b"not really a plugin").expect("write");
    let file = plugin_file.display().to_string();

    let output = run(&tool, &["test", &file]);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stdout}{stderr}");
    assert_eq!(stdout.trim(), format!("release manager: __test-plugin {file}"), "the release build ran");
    assert!(
        stderr.contains(&format!(
            "manager: {} (default: the release build scripts/run.sh runs; pass --manager BIN for another)",
            release.display()
        )),
        "{stderr}"
    );

    // `--manager` still decides.
    let output = run(&tool, &["test", &file, "--manager", &debug.display().to_string()]);
    assert_eq!(text(&output.stdout).trim(), format!("debug manager: __test-plugin {file}"));
    assert!(text(&output.stderr).contains(&format!("manager: {} (--manager)", debug.display())));
}

#[test]
fn inspect_compares_with_the_release_manager_by_default() {
    let (dir, tool) = target_with_tool();
    let release = dir.path().join("target/release/damocles-manager");
    stand_in(&release, "release manager", 0);
    let plugin_file = dir.path().join("plugin-x.so");
    std::fs::write(&plugin_file, b"not really a plugin").expect("write");
    // The stand-in is a script, not a manager binary: the error names the binary inspect chose (and ran nothing).
    let output = run(&tool, &["inspect", &plugin_file.display().to_string()]);
    let stderr = text(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains(&format!("{}: cannot read the manager's fingerprint", release.display())), "{stderr}");
    assert!(!text(&output.stdout).contains("release manager:"), "inspect runs no manager");
}

#[test]
fn without_a_release_build_the_tool_falls_back_in_the_documented_order() {
    let (dir, tool) = target_with_tool();
    let debug = dir.path().join("target/debug/damocles-manager");
    stand_in(&debug, "debug manager", 0);
    let plugin_file = dir.path().join("plugin-x.so");
    std::fs::write(&plugin_file, b"x").expect("write");
    let output = run(&tool, &["test", &plugin_file.display().to_string()]);
    let stderr = text(&output.stderr);
    // Next in order: the release build of the checkout the tool was compiled from, when there is one, else the
    // manager next to the tool.
    let checkout_release = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/release/damocles-manager");
    if checkout_release.is_file() {
        assert!(stderr.contains("(default: the release build scripts/run.sh runs;"), "{stderr}");
    } else {
        assert!(
            stderr.contains(&format!("manager: {} (default: no release build found, the one next to", debug.display())),
            "{stderr}"
        );
        assert!(text(&output.stdout).starts_with("debug manager: __test-plugin"));
    }
}
