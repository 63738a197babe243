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
    // Against this test's manager: without `--manager` the tool picks the release build when one exists (after
    // `scripts/run.sh`), which a debug plugin rightly does not match (`cmd/plugin/tests/default_manager.rs`).
    let inspection = plugin::inspect::inspect(&good, Some(daemon), false).unwrap();
    assert!(inspection.compatible, "{}", inspection.report);
    assert!(inspection.report.contains("name: memdb\nkind: KVStore"), "{}", inspection.report);
    assert!(inspection.report.ends_with("compatible"), "{}", inspection.report);
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

#[test]
fn the_dynamic_table_is_read_up_to_dt_null_and_a_repeated_tag_is_refused() {
    let memdb = std::fs::read(common::plugins::built("memdb")).unwrap();
    // Issue 17 item 5: a second DT_SYMTAB (the checks would read one table, the loader the other).
    let mut second_symtab = memdb.clone();
    let symtab = plugin_image::elf::dynamic_table(
        &plugin_image::elf::Elf::parse(&*memdb).unwrap(),
        &plugin_image::limits::Budget::start(std::time::Duration::from_secs(10)),
    )
    .unwrap()
    .unwrap()
    .get(object::elf::DT_SYMTAB)
    .unwrap();
    common::hostile::retag_dynamic(&mut second_symtab, object::elf::DT_FINI, object::elf::DT_SYMTAB, symtab + 24);
    let err = plugin_image::Image::read_plugin(&second_symtab).err().expect("refused");
    assert!(err.to_string().contains("dynamic tag DT_SYMTAB appears twice"), "{err}");
    // Entries after DT_NULL are never read by the loader, and not by the checks either.
    let mut after_null = memdb.clone();
    common::hostile::write_after_dt_null(&mut after_null, object::elf::DT_GNU_HASH, 0x07ff_f000_0000);
    plugin_image::Image::read_plugin(&after_null).expect("an entry after DT_NULL is ignored");
    // DT_NEEDED may repeat (the gABI orders them); memdb has several.
    plugin_image::Image::read_plugin(&memdb).expect("the real plugin passes");
}

#[test]
fn sixty_five_thousand_segments_are_refused_at_once_and_a_million_relocations_cost_linear_time() {
    let memdb = std::fs::read(common::plugins::built("memdb")).unwrap();
    // Issue 17 item 6: 6 MB, 65,000 dummy PT_LOADs before the real ones, 100k relocations (66 s before).
    let crafted = common::hostile::many_segments(&memdb, 65_000, true, 100_000);
    let started = std::time::Instant::now();
    let err = plugin_image::Image::read_plugin(&crafted).err().expect("refused");
    let refused_in = started.elapsed();
    assert!(err.to_string().contains("program headers (at most 64)"), "{err}");
    assert!(refused_in < std::time::Duration::from_secs(1), "took {refused_in:?}");

    // Within the caps: 40 extra segments (ascending), 1,000,000 relocations (24 MB): every relocation target is
    // found by binary search.
    let heavy = common::hostile::many_segments(&memdb, 40, false, 1_000_000);
    let started = std::time::Instant::now();
    plugin_image::Image::read_plugin(&heavy).expect("a big but well-formed file passes");
    let heavy_in = started.elapsed();
    let started = std::time::Instant::now();
    plugin_image::Image::read_plugin(&memdb).expect("memdb passes");
    let memdb_in = started.elapsed();
    println!(
        "refused 65,000 segments in {refused_in:?}; checked {} MB with 1,000,000 relocations in {heavy_in:?} (memdb, {} MB: {memdb_in:?})",
        heavy.len() / 1_000_000,
        memdb.len() / 1_000_000
    );
    assert!(heavy_in < std::time::Duration::from_secs(8), "took {heavy_in:?}");
    // Out of ascending order (the gABI's rule, which the binary search relies on): refused.
    let unordered = common::hostile::many_segments(&memdb, 40, true, 10);
    let err = plugin_image::Image::read_plugin(&unordered).err().expect("refused");
    assert!(err.to_string().contains("overlap or are not in ascending address order"), "{err}");
}

#[test]
fn the_checks_stop_at_their_time_budget() {
    let memdb = std::fs::read(common::plugins::built("memdb")).unwrap();
    let spent = plugin_image::limits::Budget::start(std::time::Duration::ZERO);
    std::thread::sleep(std::time::Duration::from_millis(2));
    let err = plugin_image::Image::read_plugin_within(&memdb, &spent).err().expect("refused");
    assert!(err.to_string().contains("took longer than its time budget of 0 s"), "{err}");
    let ample = plugin_image::limits::Budget::start(std::time::Duration::from_secs(10));
    plugin_image::Image::read_plugin_within(&memdb, &ample).expect("within the budget");
}

/// A real plugin followed by a hole up to `size` bytes: a sparse file, nothing written past the plugin.
fn sparse_plugin(path: &std::path::Path, size: u64) {
    std::fs::copy(common::plugins::built("memdb"), path).unwrap();
    std::fs::File::options().write(true).open(path).unwrap().set_len(size).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sparse_gigabyte_plugin_is_refused_unread_and_the_daemon_stays_small() {
    // Issue 17 item 7: a real plugin padded to 1 GiB loaded, and the daemon's peak RSS was 1.07 GB.
    let home = TestHome::init();
    home.install_plugins(&["counter"]);
    let huge = home.plugins_dir().join("plugin-huge.so");
    sparse_plugin(&huge, 1 << 30);
    let daemon = home.start();
    let listed: Vec<manager::plugins::PluginInfo> =
        daemon.call("Plugins.List", jsonrpsee::rpc_params![]).await.expect("Plugins.List");
    let refused = listed.iter().find(|p| p.file.ends_with("plugin-huge.so")).expect("listed");
    let error = refused.last_error.clone().unwrap_or_default();
    assert!(
        error.contains(&format!(
            "{}: 1073741824 bytes, over the plugin file size cap of 268435456 bytes ([Common.Plugins] MaxFileSize)",
            huge.display()
        )),
        "{error}"
    );
    assert!(listed.iter().any(|p| p.name.as_deref() == Some("counter") && p.state == "Ready"), "{listed:#?}");
    let peak = daemon.peak_rss();
    println!("daemon peak RSS with a 1 GiB sparse plugin in its plugins dir: {} MiB", peak >> 20);
    assert!(peak < 256 << 20, "peak RSS {} MiB", peak >> 20);
    daemon.stop();

    let inspection = plugin::inspect::inspect(&huge, None, false).unwrap();
    assert!(!inspection.compatible);
    assert!(inspection.report.contains("over the plugin file size cap of 268435456 bytes"), "{}", inspection.report);
}

#[tokio::test(flavor = "multi_thread")]
async fn max_file_size_comes_from_the_config() {
    let home = TestHome::init();
    home.install_plugins(&["counter"]);
    let size = std::fs::metadata(home.plugins_dir().join("plugin-counter.so")).unwrap().len();
    home.set_config("Common.Plugins.MaxFileSize", (size - 1) as i64);
    let daemon = home.start();
    let listed: Vec<manager::plugins::PluginInfo> =
        daemon.call("Plugins.List", jsonrpsee::rpc_params![]).await.expect("Plugins.List");
    let error = listed[0].last_error.clone().unwrap_or_default();
    assert!(
        error.contains(&format!(
            "{size} bytes, over the plugin file size cap of {} bytes ([Common.Plugins] MaxFileSize)",
            size - 1
        )),
        "{listed:#?}"
    );
    daemon.stop();
    // Exactly at the cap: loaded (the probe child reads it under the same cap).
    home.set_config("Common.Plugins.MaxFileSize", size as i64);
    let daemon = home.start();
    let n: i64 = daemon.call("AtomicCounter.Incr", jsonrpsee::rpc_params!["k"]).await.expect("plugin RPC answers");
    assert_eq!(n, 1);
    daemon.stop();
}
