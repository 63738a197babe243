//! Remembered trial loads (`<home>/plugin-probes/`): a restart with the same file and the same manager binary
//! skips the child-process trial load; any other bytes under the same name, a record of another manager binary,
//! or a record in a directory others can write, is probed again, so a crashing file is still refused.

mod common;

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use common::daemon::TestHome;
use common::hostile::probe_only_corpus;
use serde_json::Value;
use sha2::Digest as _;

fn records(home: &TestHome) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(home.path().join("plugin-probes"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    found.sort();
    found
}

fn digest_hex(file: &Path) -> String {
    sha2::Sha256::digest(std::fs::read(file).unwrap()).iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_passed_trial_load_is_reused_only_for_the_same_bytes_and_the_same_manager() {
    let home = TestHome::init();
    home.install_plugins(&["statelog"]);
    let installed = home.plugins_dir().join("plugin-statelog.so");

    // First start: the file is probed and the pass remembered under its SHA-256.
    let daemon = home.start();
    assert_eq!(daemon.stop(), Some(0));
    let first = records(&home);
    assert_eq!(first.len(), 1, "{first:?}");
    let name = first[0].file_name().unwrap().to_str().unwrap().to_string();
    let (digest, manager_id) = name.split_once('.').unwrap();
    assert_eq!(digest, digest_hex(&installed));
    assert_eq!(manager_id.len(), 16, "{name}");
    let inode = std::fs::metadata(&first[0]).unwrap().ino();

    // Second start: loaded without a new trial load (a probe would rewrite the record: a new inode).
    let daemon = home.start();
    let plugins: Vec<Value> = daemon.call("Plugins.List", jsonrpsee::rpc_params![]).await.unwrap();
    assert_eq!(plugins[0]["State"], "Ready", "{plugins:?}");
    assert_eq!(daemon.stop(), Some(0));
    assert_eq!(records(&home), first);
    assert_eq!(std::fs::metadata(&first[0]).unwrap().ino(), inode, "the remembered pass was not reused");

    // Adversary 1: other bytes under the same name, with the old file's times: probed, and refused.
    let crash = probe_only_corpus().into_iter().find(|f| f.name == "plugin-ctor-crash.so").unwrap();
    let times = std::fs::metadata(&installed).unwrap();
    std::fs::write(&installed, &crash.bytes).unwrap();
    let file = std::fs::File::options().write(true).open(&installed).unwrap();
    file.set_times(std::fs::FileTimes::new().set_modified(times.modified().unwrap())).unwrap();
    drop(file);
    let daemon = home.start();
    let plugins: Vec<Value> = daemon.call("Plugins.List", jsonrpsee::rpc_params![]).await.unwrap();
    let error = plugins[0]["LastError"].as_str().unwrap_or_default().to_string();
    assert!(error.contains(crash.reason), "{plugins:?}");
    assert_eq!(daemon.stop(), Some(0));

    // Adversary 2: a record claiming the crashing bytes passed, but made by another manager binary: removed at
    // start, and the file probed (and refused) again.
    let forged = home.path().join("plugin-probes").join(format!("{}.0123456789abcdef", digest_hex(&installed)));
    std::fs::write(&forged, "forged\n").unwrap();
    let daemon = home.start();
    let plugins: Vec<Value> = daemon.call("Plugins.List", jsonrpsee::rpc_params![]).await.unwrap();
    let error = plugins[0]["LastError"].as_str().unwrap_or_default().to_string();
    assert!(error.contains(crash.reason), "{plugins:?}");
    assert_eq!(daemon.stop(), Some(0));
    assert!(!forged.exists(), "a record of another manager binary was kept");
    // Only the statelog pass remains: a refusal is never remembered.
    assert_eq!(records(&home), first);

    // Adversary 3: the records dir is writable by others, and holds a record for the crashing bytes with this
    // manager's identity: not trusted, the file is probed and refused.
    use std::os::unix::fs::PermissionsExt as _;
    let dir = home.path().join("plugin-probes");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let forged = dir.join(format!("{}.{manager_id}", digest_hex(&installed)));
    std::fs::write(&forged, "forged\n").unwrap();
    let daemon = home.start();
    let plugins: Vec<Value> = daemon.call("Plugins.List", jsonrpsee::rpc_params![]).await.unwrap();
    let error = plugins[0]["LastError"].as_str().unwrap_or_default().to_string();
    assert!(error.contains(crash.reason), "a record in a world-writable dir was trusted: {plugins:?}");
    assert_eq!(daemon.stop(), Some(0));
}

/// Starts the daemon once with statelog installed and returns this manager binary's record suffix.
fn manager_id(home: &TestHome) -> String {
    let daemon = home.start();
    assert_eq!(daemon.stop(), Some(0));
    let name = records(home)
        .into_iter()
        .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_string))
        .find(|n| n.len() == 64 + 1 + 16)
        .expect("a record");
    name[65..].to_string()
}

fn record_of(home: &TestHome, plugin: &Path, manager_id: &str) -> PathBuf {
    home.path().join("plugin-probes").join(format!("{}.{manager_id}", digest_hex(plugin)))
}

async fn last_error(daemon: &common::daemon::RunningDaemon, file: &str) -> String {
    let plugins: Vec<Value> = daemon.call("Plugins.List", jsonrpsee::rpc_params![]).await.unwrap();
    let plugin = plugins.iter().find(|p| p["File"].as_str().is_some_and(|f| f.ends_with(file))).expect("listed");
    plugin["LastError"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_symlinked_records_dir_is_refused_and_nothing_in_its_target_is_touched() {
    // Issue 17 item 3: a symlink to any directory of the daemon's user was emptied at start, silently.
    let home = TestHome::init();
    home.install_plugins(&["statelog"]);
    let target = tempfile::tempdir().unwrap();
    let files = [
        ("precious.txt", "keep me\n"),
        (&*format!("{}.0123456789abcdef", "ab".repeat(32)), "record-shaped\n"),
        (&*format!("{}.partial", "cd".repeat(32)), "leftover-shaped\n"),
    ]
    .map(|(n, c)| (n.to_string(), c));
    for (name, content) in &files {
        std::fs::write(target.path().join(name), content).unwrap();
    }
    let link = home.path().join("plugin-probes");
    let _ = std::fs::remove_dir_all(&link);
    std::os::unix::fs::symlink(target.path(), &link).unwrap();

    let daemon = home.start();
    let plugins: Vec<Value> = daemon.call("Plugins.List", jsonrpsee::rpc_params![]).await.unwrap();
    assert_eq!(plugins[0]["State"], "Ready", "{plugins:?}");
    let log = daemon.log();
    assert_eq!(daemon.stop(), Some(0));
    assert!(
        log.contains(&format!("{}: is a symbolic link, refused", link.display())),
        "no clear message about the link:\n{log}"
    );
    let mut left: Vec<String> =
        std::fs::read_dir(target.path()).unwrap().flatten().map(|e| e.file_name().into_string().unwrap()).collect();
    left.sort();
    let mut expected: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
    expected.sort();
    assert_eq!(left, expected, "the link's target was changed");
    for (name, content) in &files {
        assert_eq!(std::fs::read_to_string(target.path().join(name)).unwrap(), *content);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn only_names_of_the_record_format_are_removed_and_each_removal_is_logged() {
    let home = TestHome::init();
    home.install_plugins(&["statelog"]);
    let id = manager_id(&home);
    let dir = home.path().join("plugin-probes");
    let kept = ["notes.txt", "README", &format!("{}.{id}.bak", "ef".repeat(32)), "0123.0123456789abcdef"];
    let removed = [
        (format!("{}.0123456789abcdef", "ab".repeat(32)), "made by another manager binary"),
        (format!("{}.{id}.tmp", "ab".repeat(32)), "left by an interrupted write or load"),
        (format!("{}.{id}.loading", "ab".repeat(32)), "left by an interrupted write or load"),
        (format!("{}.partial", "cd".repeat(32)), "left by an interrupted write or load"),
    ];
    for name in kept.iter().map(|s| s.to_string()).chain(removed.iter().map(|(n, _)| n.clone())) {
        std::fs::write(dir.join(name), "x\n").unwrap();
    }
    let daemon = home.start();
    let log = daemon.log();
    assert_eq!(daemon.stop(), Some(0));
    for name in kept {
        assert!(dir.join(name).exists(), "{name} was removed");
    }
    for (name, why) in &removed {
        assert!(!dir.join(name).exists(), "{name} was kept");
        let line = format!("removed plugin probe record {}: {why}", dir.join(name).display());
        assert_eq!(log.matches(&line).count(), 1, "expected `{line}` once:\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_that_is_empty_forged_or_loose_does_not_skip_the_trial_load() {
    // Issue 17 item 4: `touch <home>/plugin-probes/<sha256>.<identity>` made the next start skip the trial load of
    // a plugin whose constructor crashes, and the daemon died in dlopen (exit 139).
    let home = TestHome::init();
    home.install_plugins(&["statelog"]);
    let id = manager_id(&home);
    let statelog = home.plugins_dir().join("plugin-statelog.so");
    let valid = std::fs::read_to_string(record_of(&home, &statelog, &id)).unwrap();
    let crash = probe_only_corpus().into_iter().find(|f| f.name == "plugin-ctor-crash.so").unwrap();
    let installed = home.plugins_dir().join(crash.name);
    std::fs::write(&installed, &crash.bytes).unwrap();
    let forged = record_of(&home, &installed, &id);
    // The statelog record with only its digest line changed: right format, wrong dependencies' owner.
    let retargeted = valid.replace(&digest_hex(&statelog), &digest_hex(&installed));
    for (content, why) in [
        ("", "empty"),
        ("forged\n", "malformed: not a probe record of this format"),
        (valid.as_str(), "stale: it says `plugin "),
        (retargeted.trim_end_matches("end\n"), "malformed: incomplete"),
    ] {
        std::fs::write(&forged, content).unwrap();
        let daemon = home.start();
        let error = last_error(&daemon, crash.name).await;
        assert!(error.contains(crash.reason), "{why}: {error}");
        let log = daemon.log();
        assert_eq!(daemon.stop(), Some(0));
        assert!(!forged.exists(), "{why}: the bad record was kept");
        let line = format!("removed plugin probe record {}: {why}", forged.display());
        assert!(log.contains(&line), "expected `{line}`:\n{log}");
    }
    // A valid record writable by others is not trusted either: removed, and the plugin probed again.
    use std::os::unix::fs::PermissionsExt as _;
    let record = record_of(&home, &statelog, &id);
    std::fs::set_permissions(&record, std::fs::Permissions::from_mode(0o666)).unwrap();
    let daemon = home.start();
    let log = daemon.log();
    assert_eq!(daemon.stop(), Some(0));
    assert!(log.contains(&format!("removed plugin probe record {}: not a regular file", record.display())), "{log}");
    assert_eq!(std::fs::metadata(&record).unwrap().permissions().mode() & 0o777, 0o600, "rewritten after the probe");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_is_bound_to_ld_so_libc_the_loaded_libraries_and_the_ld_variables() {
    let home = TestHome::init();
    home.install_plugins(&["statelog"]);
    let id = manager_id(&home);
    let record = record_of(&home, &home.plugins_dir().join("plugin-statelog.so"), &id);
    let text = std::fs::read_to_string(&record).unwrap();
    assert!(text.starts_with("damocles-probe-record 1\nplugin "), "{text}");
    assert!(text.contains("\nmanager "), "{text}");
    for needle in ["/libc.so.6\n", "/ld-linux-", " /etc/ld.so.cache\n", " /etc/ld.so.preload\n"] {
        assert!(text.contains(needle), "no {needle:?} in\n{text}");
    }

    // Another LD_* environment: the record is stale, removed, the file probed and a new record written.
    let daemon = home.start_with_env(&[], &[("LD_BIND_NOW", "1")]);
    let log = daemon.log();
    assert_eq!(daemon.stop(), Some(0));
    assert!(log.contains(&format!("removed plugin probe record {}: stale", record.display())), "{log}");
    // A record naming the new variable is only written after a new trial load passed (the removed record's
    // inode may be reused at once, so the inode proves nothing).
    let text = std::fs::read_to_string(&record).unwrap();
    assert!(text.contains("\nenv LD_BIND_NOW=1\n"), "probed again: {text}");

    // A library the load depends on changed (its identity in the record differs from the file's).
    let libc_line = text.lines().find(|l| l.ends_with("/libc.so.6")).unwrap().to_string();
    let (_, identity_and_path) = libc_line.split_once(' ').unwrap();
    let (identity, path) = identity_and_path.split_once(' ').unwrap();
    std::fs::write(&record, text.replace(&libc_line, &format!("object 1:{identity} {path}"))).unwrap();
    let daemon = home.start_with_env(&[], &[("LD_BIND_NOW", "1")]);
    let log = daemon.log();
    assert_eq!(daemon.stop(), Some(0));
    let stale =
        format!("removed plugin probe record {}: stale: it says `object 1:{identity} {path}`", record.display());
    assert!(log.contains(&stale), "expected `{stale}`:\n{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_probe_child_cannot_write_under_the_home() {
    // A constructor that writes `forged-<pid>` into the records dir: it runs twice, in the sandboxed probe child
    // and in the daemon. Only the daemon's write may succeed (which also shows the constructor does write).
    let home = TestHome::init();
    let dir = home.path().join("plugin-probes");
    let ctor = format!(
        "#[used]\n#[unsafe(link_section = \".init_array\")]\nstatic CTOR: extern \"C\" fn() = ctor;\n\
         extern \"C\" fn ctor() {{ let _ = std::fs::write(format!(\"{{}}/forged-{{}}\", {:?}, std::process::id()), b\"pass\"); }}\n",
        dir.display().to_string()
    );
    let src = common::hostile::fixture_crate("forger", &[], &ctor);
    let so = common::plugins::build_plugin(src.path(), "forger", false).expect("build forger");
    std::fs::copy(&so, home.plugins_dir().join("plugin-forger.so")).unwrap();
    let daemon = home.start();
    let plugins: Vec<Value> = daemon.call("Plugins.List", jsonrpsee::rpc_params![]).await.unwrap();
    assert_eq!(plugins[0]["State"], "Ready", "{plugins:?}");
    let pid = daemon.child.id();
    assert_eq!(daemon.stop(), Some(0));
    let forged: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("forged-"))
        .collect();
    assert_eq!(forged, vec![format!("forged-{pid}")], "the probe child wrote under the home");
    assert_eq!(records(&home).iter().filter(|p| p.extension().is_some_and(|e| e.len() == 16)).count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pass_that_crashes_the_daemon_is_spent_so_the_next_start_probes_again() {
    // A constructor that crashes only sometimes (here: while a marker file exists) passed once; without spending,
    // that pass would be remembered forever and every start would die in dlopen.
    let home = TestHome::init();
    let marker = home.path().join("crash-now");
    let ctor = format!(
        "#[used]\n#[unsafe(link_section = \".init_array\")]\nstatic CTOR: extern \"C\" fn() = ctor;\n\
         extern \"C\" fn ctor() {{ if std::path::Path::new({:?}).exists() {{ unsafe {{ std::ptr::null_mut::<u8>().write_volatile(1) }} }} }}\n",
        marker.display().to_string()
    );
    let src = common::hostile::fixture_crate("flaky-ctor", &[], &ctor);
    let so = common::plugins::build_plugin(src.path(), "flaky-ctor", false).expect("build flaky-ctor");
    let installed = home.plugins_dir().join("plugin-flaky-ctor.so");
    std::fs::copy(&so, &installed).unwrap();
    let daemon = home.start();
    assert_eq!(daemon.stop(), Some(0));
    assert_eq!(records(&home).len(), 1, "{:?}", records(&home));
    let record = records(&home).remove(0);

    std::fs::write(&marker, "").unwrap();
    let mut crashed = std::process::Command::new(common::daemon::binary())
        .arg("--home")
        .arg(home.path())
        .args(["daemon", "run"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = crashed.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "the daemon did not die in dlopen");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    use std::os::unix::process::ExitStatusExt as _;
    assert_eq!(status.signal(), Some(libc::SIGSEGV), "{status}");
    assert!(!record.exists(), "the pass survived the crash it allowed");

    let daemon = home.start();
    let error = last_error(&daemon, "plugin-flaky-ctor.so").await;
    assert!(error.contains("it was killed by signal 11 (SIGSEGV)"), "{error}");
    let log = daemon.log();
    assert_eq!(daemon.stop(), Some(0));
    assert!(log.contains("left by an interrupted write or load"), "{log}");
    assert!(records(&home).is_empty(), "{:?}", records(&home));
}
