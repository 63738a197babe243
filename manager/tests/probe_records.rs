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
