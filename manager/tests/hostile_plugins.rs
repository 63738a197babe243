//! The hostile corpus (see `common::hostile`): every bad file is refused from its bytes, naming the file and the
//! reason, without any of its code running; the good plugins beside them load; the daemon answers RPC.

mod common;

use common::daemon::TestHome;
use common::hostile::{corpus, fixture_crate, fixture_crate_with, patch_dynamic, probe_only_corpus};
use common::plugins::{build_plugin, captured_logs, log_text, plugins_dir};
use manager::plugins::PluginRegistry;
use manager_plugin::Kind;
use manager_plugin::kv::Meta;

#[test]
fn every_hostile_file_is_refused_with_its_reason_and_none_of_its_code_runs() {
    captured_logs();
    let marker_dir = tempfile::tempdir().unwrap();
    let marker = marker_dir.path().join("constructor-ran");
    let dir = plugins_dir(&["memdb", "counter"]);
    let hostile = corpus(&marker);
    for file in &hostile {
        std::fs::write(dir.path().join(file.name), &file.bytes).unwrap();
    }

    let registry = PluginRegistry::load(dir.path()).expect("plugins dir loads");
    let refused: Vec<String> = registry.refused().map(|(_, e)| e.to_string()).collect();
    assert_eq!(refused.len(), hostile.len(), "{refused:#?}");
    for file in &hostile {
        let message =
            refused.iter().find(|m| m.contains(file.name)).unwrap_or_else(|| panic!("{} not refused", file.name));
        assert!(message.contains(file.reason), "{}: expected {:?} in {message}", file.name, file.reason);
        assert!(log_text().contains(&format!("refused plugin: {}", dir.path().join(file.name).display())));
    }
    assert!(!marker.exists(), "the refused canary's .init_array constructor ran");

    let db = registry.get(Kind::KvStore, "memdb").expect("memdb ready").open_db(&Meta::new()).unwrap();
    db.open_collection("c").unwrap().put(b"k", b"v").unwrap();
    assert!(registry.get(Kind::RegisterJsonRpc, "counter").is_some());
}

#[test]
fn plugin_inspect_gives_each_file_its_verdict_without_running_it() {
    let marker_dir = tempfile::tempdir().unwrap();
    let marker = marker_dir.path().join("constructor-ran");
    let dir = plugins_dir(&["memdb"]);
    let daemon = std::path::Path::new(common::daemon::binary());
    let good = dir.path().join("plugin-memdb.so");
    for manager in [None, Some(daemon)] {
        let inspection = plugin::inspect::inspect(&good, manager, false).unwrap();
        assert!(inspection.compatible, "{}", inspection.report);
        assert!(inspection.report.contains("name: memdb\nkind: KVStore"), "{}", inspection.report);
        assert!(inspection.report.ends_with("compatible"), "{}", inspection.report);
    }
    for file in corpus(&marker).into_iter().filter(|f| !f.name.contains("duplicate")) {
        let path = dir.path().join(file.name);
        std::fs::write(&path, &file.bytes).unwrap();
        let inspection = plugin::inspect::inspect(&path, Some(daemon), true).unwrap();
        assert!(!inspection.compatible, "{}: {}", file.name, inspection.report);
        let report: serde_json::Value = serde_json::from_str(&inspection.report).unwrap();
        assert_eq!(report["compatible"], false);
        let reason = report["reason"].as_str().unwrap();
        assert!(reason.contains(file.reason), "{}: expected {:?} in {reason}", file.name, file.reason);
    }
    assert!(!marker.exists(), "plugin inspect ran the canary's constructor");
}

#[test]
fn the_manager_binary_carries_its_own_fingerprint() {
    let bytes = std::fs::read(common::daemon::binary()).unwrap();
    let image = plugin_image::Image::read_manager(&bytes).expect("manager section");
    assert_eq!(image.fingerprint(), &manager_plugin::abi::Fingerprint::current());
    assert!(plugin_image::Image::read_plugin(&bytes).is_err(), "a manager binary is not a plugin");
}

#[test]
fn a_fixture_with_a_constructor_and_a_matching_fingerprint_is_mapped_so_the_marker_test_can_fail() {
    // Control for the corpus test: the same constructor in a plugin that passes every check does run when the
    // plugin is mapped, so "the marker does not exist" above really means "never mapped".
    let marker_dir = tempfile::tempdir().unwrap();
    let marker = marker_dir.path().join("constructor-ran");
    let src = fixture_crate("ctor-ok", &[], &common::hostile::constructor_writing(&marker));
    let so = build_plugin(src.path(), "ctor-ok", false).expect("build ctor-ok");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(&so, dir.path().join("plugin-ctor-ok.so")).unwrap();
    captured_logs();
    let registry = PluginRegistry::load(dir.path()).unwrap();
    assert!(registry.get(Kind::SyncSectorState, "ctor-ok").is_some());
    assert!(marker.exists());
}

#[test]
fn a_dynamic_table_pointing_outside_the_file_is_refused_for_every_table_tag() {
    let memdb = std::fs::read(common::plugins::built("memdb")).unwrap();
    for tag in [object::elf::DT_STRTAB, object::elf::DT_SYMTAB, object::elf::DT_RELA, object::elf::DT_INIT_ARRAY] {
        let mut bytes = memdb.clone();
        patch_dynamic(&mut bytes, tag, 0x07ff_f000_0000);
        let err = plugin_image::Image::read_plugin(&bytes).err().expect("refused");
        assert!(err.to_string().contains("points outside the file's loaded segments"), "tag {tag}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_starts_with_the_whole_corpus_refuses_each_bad_file_once_and_answers_rpc() {
    let home = TestHome::init();
    home.install_plugins(&["memdb", "counter"]);
    let marker_dir = tempfile::tempdir().unwrap();
    let marker = marker_dir.path().join("constructor-ran");
    let mut hostile = corpus(&marker);
    hostile.extend(probe_only_corpus());
    for file in &hostile {
        std::fs::write(home.plugins_dir().join(file.name), &file.bytes).unwrap();
    }
    let daemon = home.start();
    let n: i64 = daemon.call("AtomicCounter.Incr", jsonrpsee::rpc_params!["k"]).await.expect("plugin RPC answers");
    assert_eq!(n, 1);
    let listed: Vec<manager::plugins::PluginInfo> =
        daemon.call("Plugins.List", jsonrpsee::rpc_params![]).await.expect("Plugins.List");
    assert_eq!(listed.iter().filter(|p| p.state == "Ready").count(), 2, "{listed:#?}");
    let log = daemon.log();
    let lines: Vec<&str> = log.lines().collect();
    for file in &hostile {
        let starts: Vec<usize> = (0..lines.len())
            .filter(|&i| lines[i].contains("refused plugin:") && lines[i].contains(file.name))
            .collect();
        assert_eq!(starts.len(), 1, "{}: refused {} times\n{log}", file.name, starts.len());
        // A refusal may span lines (a fingerprint mismatch lists each item): up to the next log event.
        let end = (starts[0] + 1..lines.len()).find(|&i| lines[i].contains("refused plugin:")).unwrap_or(lines.len());
        let message = lines[starts[0]..end].join("\n");
        assert!(message.contains(file.reason), "{}: expected {:?} in {message}", file.name, file.reason);
    }
    assert!(!marker.exists(), "the daemon ran the refused canary's constructor");
    daemon.stop();
}

#[test]
fn a_plugin_with_its_own_global_allocator_is_refused_at_build_saying_why() {
    let src = fixture_crate(
        "own-allocator",
        &[],
        "#[global_allocator]\nstatic OWN: std::alloc::System = std::alloc::System;\n",
    );
    let err = build_plugin(src.path(), "own-allocator", false).expect_err("refused").to_string();
    assert!(err.contains("sets its own #[global_allocator]"), "{err}");
    assert!(err.contains("plugins must allocate with the process's allocator"), "{err}");
}

#[test]
fn a_log_field_whose_debug_fails_or_panics_does_not_fail_the_call() {
    let src = fixture_crate_with(
        "bad-debug",
        &[],
        "tracing = \"0.1\"\n",
        "pub struct FailingDebug;\n\
         impl std::fmt::Debug for FailingDebug {\n\
             fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { Err(std::fmt::Error) }\n\
         }\n\
         pub struct PanickingDebug;\n\
         impl std::fmt::Debug for PanickingDebug {\n\
             fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { panic!(\"debug broke\") }\n\
         }\n",
        "tracing::info!(field = ?FailingDebug, \"bad-debug: failing field\");\n\
         tracing::info!(field = ?PanickingDebug, \"bad-debug: panicking field\");\n\
         Ok(())",
    );
    let so = build_plugin(src.path(), "bad-debug", false).expect("build bad-debug");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(&so, dir.path().join("plugin-bad-debug.so")).unwrap();
    captured_logs();
    let registry = PluginRegistry::load(dir.path()).unwrap();
    let record = registry.get(Kind::SyncSectorState, "bad-debug").expect("ready");
    let event = manager_plugin::sync::SectorEvent::Init(manager_plugin::sync::InitEvent {
        sectors: Vec::new(),
        worker_state: manager_plugin::sector::WorkerState::Online,
    });
    record.sync_delivery().unwrap().deliver(&event).expect("the hook succeeds although its log fields fail");
    assert_eq!(record.counts().panics, 0);
    let logs = log_text();
    assert!(logs.contains("bad-debug: failing field field=<field formatting failed>"), "{logs}");
    assert!(logs.contains("bad-debug: panicking field field=<field formatting panicked>"), "{logs}");
}
