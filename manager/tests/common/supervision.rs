//! Helpers of the process supervision tests: crashy process plugins (`manager/tests/plugins/crashy-*`, built
//! once per test binary with `plugin build --process`) installed into a home, their crash triggers, and their
//! state in `Plugins.List`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use jsonrpsee::rpc_params;
use serde_json::Value;

use super::daemon::{RunningDaemon, TestHome};
use super::plugins::built_process;

/// The suite's profile: fixtures are built with the manager's own (no second profile of the dependencies).
const RELEASE: bool = !cfg!(debug_assertions);

/// The built executable of the crashy fixture `name` (e.g. `crashy-kv`).
pub fn crashy(name: &str) -> PathBuf {
    built_process(name, RELEASE)
}

/// Copies the crashy fixtures `names` into `home`'s plugins dir as `plugin-<name>`.
pub fn install(home: &TestHome, names: &[&str]) {
    for name in names {
        std::fs::copy(crashy(name), home.plugins_dir().join(format!("plugin-{name}"))).expect("install");
    }
}

/// Tells `plugin` to do `action` (`segv`, `abort`, `exit`, `hang`, `segv-after-commit`) on its next call.
pub fn trigger(home: &TestHome, plugin: &str, action: &str) {
    // Written aside and renamed: a plugin checking the trigger while it is written must never read it empty (it
    // would take it as no action, and the crash would never come).
    let file = home.plugins_dir().join(format!("crash-{plugin}"));
    let aside = home.plugins_dir().join(format!(".crash-{plugin}.tmp"));
    std::fs::write(&aside, action).expect("write trigger");
    std::fs::rename(&aside, &file).expect("place trigger");
}

/// Whether `plugin`'s trigger file is still there (its process has not taken it yet).
pub fn trigger_pending(home: &TestHome, plugin: &str) -> bool {
    home.plugins_dir().join(format!("crash-{plugin}")).exists()
}

/// `Plugins.List`'s entry of `name`.
pub async fn info(daemon: &RunningDaemon, name: &str) -> Value {
    let plugins: Vec<Value> = daemon.call("Plugins.List", rpc_params![]).await.expect("Plugins.List");
    plugins.into_iter().find(|p| p["Name"] == name).unwrap_or_else(|| panic!("{name} is not listed"))
}

/// Polls `Plugins.List` (every 20 ms, at most `limit`) until `name`'s entry satisfies `ok`; returns it.
pub async fn wait_info(
    daemon: &RunningDaemon,
    name: &str,
    what: &str,
    limit: Duration,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let entry = info(daemon, name).await;
        if ok(&entry) {
            return entry;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: timed out waiting for {what}; last entry {entry}\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `util plugins <args>` against the daemon of `home`; (success, stdout + stderr).
pub fn util_plugins(home: &TestHome, args: &[&str]) -> (bool, String) {
    util_plugins_at(home.path(), args)
}

/// [`util_plugins`] on a blocking thread (for a command that may wait on the daemon).
pub fn util_plugins_in_background(home: &TestHome, args: &[&str]) -> tokio::task::JoinHandle<(bool, String)> {
    let (home, args) = (home.path().to_path_buf(), args.iter().map(|a| a.to_string()).collect::<Vec<_>>());
    tokio::task::spawn_blocking(move || util_plugins_at(&home, &args.iter().map(String::as_str).collect::<Vec<_>>()))
}

fn util_plugins_at(home: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(super::daemon::binary())
        .arg("--home")
        .arg(home)
        .args(["util", "plugins"])
        .args(args)
        .output()
        .expect("run util plugins");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Short supervision settings for tests: restart after `backoff_ms` (doubling up to 4x), a crash loop at
/// `loop_limit` crashes within a minute, calls killed after `call_timeout_secs`.
pub fn short_supervision(home: &TestHome, backoff_ms: i64, loop_limit: i64, call_timeout_secs: i64) {
    home.set_config("Common.Plugins.ProcessRestartBackoffMs", backoff_ms);
    home.set_config("Common.Plugins.ProcessRestartBackoffMaxMs", backoff_ms * 4);
    home.set_config("Common.Plugins.ProcessCrashLoopLimit", loop_limit);
    home.set_config("Common.Plugins.ProcessCrashLoopWindowSecs", 60);
    home.set_config("Common.Plugins.ProcessCallTimeoutSecs", call_timeout_secs);
}
