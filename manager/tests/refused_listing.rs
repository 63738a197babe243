//! How refusals are shown to an operator: a refused file's kind and name in `Plugins.List` / `util plugins list`
//! (read from its manifest when the section is readable) with the whole error, and a plugins dir that cannot be
//! read named once with its OS error.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::daemon::{TestHome, binary};
use common::plugins::build_other_profile;
use manager::plugins::PluginRegistry;

#[test]
fn a_file_refused_for_its_fingerprint_is_listed_with_its_manifests_kind_and_name_and_the_whole_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::copy(build_other_profile("memdb"), dir.path().join("plugin-memdb.so")).expect("copy");
    let registry = PluginRegistry::load(dir.path()).expect("load");
    let listed = registry.list();
    assert_eq!(listed.len(), 1, "{listed:#?}");
    let info = &listed[0];
    assert_eq!((info.kind.as_deref(), info.name.as_deref()), (Some("KVStore"), Some("memdb")), "{info:#?}");
    assert_eq!(info.state, "Disabled");
    let error = info.last_error.as_deref().expect("the refusal");
    assert!(error.contains("was built differently from this manager"), "{error}");
    assert!(error.lines().any(|l| l.trim_start().starts_with("- debug-assertions: plugin")), "every line: {error}");
    assert!(error.lines().any(|l| l.trim_start().starts_with("fix: ")), "the fix line too: {error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn util_plugins_list_prints_the_refused_files_kind_and_every_line_of_its_error() {
    let home = TestHome::init();
    std::fs::copy(build_other_profile("memdb"), home.plugins_dir().join("plugin-memdb.so")).expect("copy");
    let daemon = home.start();
    let out = Command::new(binary())
        .arg("--home")
        .arg(home.path())
        .args(["util", "plugins", "list"])
        .output()
        .expect("util plugins list");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let row = text.lines().find(|l| l.contains("plugin-memdb.so")).unwrap_or_else(|| panic!("no row:\n{text}"));
    assert!(row.starts_with("KVStore ") && row.contains(" memdb ") && row.contains("Disabled"), "{text}");
    assert!(text.lines().any(|l| l.trim_start().starts_with("- debug-assertions: plugin")), "{text}");
    assert!(text.lines().any(|l| l.trim_start().starts_with("fix: ")), "{text}");
    assert_eq!(daemon.stop(), Some(0));
}

#[test]
fn an_unreadable_plugins_dir_stops_the_daemon_naming_the_os_error_once() {
    let home = TestHome::init();
    let missing = home.path().join("no-such-plugins-dir");
    home.set_config("Common.Plugins.Dir", missing.display().to_string());
    let mut child = Command::new(binary())
        .arg("--home")
        .arg(home.path())
        .args(["daemon", "run"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn daemon");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the daemon did not stop on a missing plugins dir within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success());
    assert!(stderr.contains(&format!("plugins dir {}: ", missing.display())), "{stderr}");
    assert_eq!(stderr.matches("No such file or directory").count(), 1, "the OS error once:\n{stderr}");
}
