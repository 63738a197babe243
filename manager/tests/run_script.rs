//! `scripts/run.sh` as the README shows it: the built binary run directly (no cargo, so a restart never waits on
//! cargo's build lock) and a non-default home, created with `--init`. `$DAMOCLES_MANAGER_BIN` points the script at
//! the manager under test instead of `target/release/damocles-manager`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::daemon::RunningDaemon;

fn script() -> PathBuf {
    common::plugins::workspace_root().join("scripts/run.sh")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

#[test]
fn run_sh_runs_the_built_binary_in_a_non_default_home_it_initializes_with_init() {
    let home = tempfile::tempdir().expect("temp dir");
    let home_dir = home.path().join("manager-home");
    let port = free_port();
    let log_path = home.path().join("run.log");
    let log = std::fs::File::create(&log_path).expect("log");
    let child = Command::new(script())
        .args(["--home", &home_dir.display().to_string(), "--init", "--listen", &format!("127.0.0.1:{port}")])
        .env("DAMOCLES_MANAGER_BIN", common::daemon::binary())
        .env_remove("DAMOCLES_HOME")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone"))
        .stderr(log)
        .spawn()
        .expect("run scripts/run.sh");
    // The token exists once `daemon init` ran; the script then execs the daemon (same pid).
    let token_path = home_dir.join("token");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !token_path.is_file() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let token =
        std::fs::read_to_string(&token_path).expect("run.sh --init created the home's token").trim().to_string();
    let daemon = RunningDaemon { child, port, token, log_path: log_path.clone() };
    daemon.wait_ready();
    assert!(home_dir.join("sector-manager.cfg").is_file(), "the home was initialized");
    let log = daemon.log();
    let shown = format!("run.sh: running {} --home {} daemon run", common::daemon::binary(), home_dir.display());
    assert!(log.contains(&shown), "the script names the binary and the home it runs:\n{log}");
    assert!(log.contains("run.sh: to restart without cargo: scripts/run.sh --no-build --home"), "{log}");
    assert!(!log.contains("Compiling") && !log.contains("Finished"), "no cargo ran:\n{log}");
    assert_eq!(daemon.stop(), Some(0));
}

#[test]
fn run_sh_refuses_a_home_without_config_and_a_missing_binary_naming_the_fix() {
    let home = tempfile::tempdir().expect("temp dir");
    let output = Command::new(script())
        .args(["--home", &home.path().display().to_string()])
        .env("DAMOCLES_MANAGER_BIN", common::daemon::binary())
        .output()
        .expect("run scripts/run.sh");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("create it once with: scripts/run.sh --home {} --init", home.path().display())),
        "{stderr}"
    );
    assert!(!Path::new(&home.path().join("sector-manager.cfg")).exists(), "nothing created without --init");

    let output = Command::new(script())
        .arg("--no-build")
        .env_remove("DAMOCLES_MANAGER_BIN")
        .env("CARGO_TARGET_DIR", home.path().join("no-target"))
        .output()
        .expect("run scripts/run.sh");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is not built; run scripts/run.sh once without --no-build"), "{stderr}");
}
