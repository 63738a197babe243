//! The benchmark command itself, run for real on a quick scale against the workspace's `damocles-manager`: every
//! chosen scenario prints its `ratio` lines in the documented shape with a measured (finite) value, and the
//! document is written with one row per figure.

use std::path::PathBuf;
use std::process::Command;

/// The manager binary the workspace build put beside this package's binary.
fn manager() -> PathBuf {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_damocles-bench"));
    let manager = bench.with_file_name("damocles-manager");
    if !manager.is_file() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "manager", "--bin", "damocles-manager"])
            .status()
            .expect("run cargo build");
        assert!(status.success());
    }
    manager
}

#[test]
fn quick_run_prints_a_ratio_line_per_figure_and_writes_the_document() {
    let doc = tempfile::NamedTempFile::new().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_damocles-bench"))
        .args(["--quick", "--manager"])
        .arg(manager())
        .arg("--doc")
        .arg(doc.path())
        .args(["plugin_kv_overhead", "catchup_linear", "rpc_state_vs_durable_redis"])
        .output()
        .expect("run damocles-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // 0: every target met; 1: a target missed (a debug build may); 2 would be a failed benchmark.
    assert!(matches!(out.status.code(), Some(0 | 1)), "{}\n{stdout}\n{stderr}", out.status);
    let lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with("ratio ")).collect();
    let names: Vec<&str> = lines.iter().map(|l| l.split(' ').nth(1).unwrap()).collect();
    assert_eq!(names, ["plugin_kv_overhead", "catchup_linear", "rpc_state_vs_durable_redis"], "{stdout}\n{stderr}");
    for line in &lines {
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(fields.len(), 5, "{line}");
        let value: f64 = fields[2].parse().unwrap_or_else(|_| panic!("{line}"));
        assert!(value.is_finite() && value > 0.0, "{line}\n{stderr}");
        assert_eq!(fields[3], "target", "{line}");
        if fields[4] != "info" {
            assert!(fields[4].starts_with("<=") || fields[4].starts_with(">="), "{line}");
            fields[4][2..].parse::<f64>().unwrap_or_else(|_| panic!("{line}"));
        }
    }
    let text = std::fs::read_to_string(doc.path()).unwrap();
    assert!(text.starts_with("# Performance"), "{text}");
    assert!(text.contains("| `plugin_kv_overhead` |") && text.contains("| `catchup_linear` |"), "{text}");
    assert!(text.contains("Machine: `"), "{text}");
    assert!(text.contains("RocksDB "), "the machine line names the RocksDB linked: {text}");
    // The durable peer's figure is explained by what a call cost each server, measured in the same run.
    let notes = text.split("## Notes per figure").nth(1).expect("a notes section");
    let note = notes.lines().find(|l| l.starts_with("- `rpc_state_vs_durable_redis`: ")).expect("its note");
    for part in [
        "appendfsync always",
        "µs CPU and",
        "context switches per call",
        "WAL syncs per call",
        "writes per sync",
        "µs per fdatasync",
        "Redis per call",
    ] {
        assert!(note.contains(part), "{part}: {note}");
    }
}

#[test]
fn list_names_every_scenario_with_the_new_peers() {
    let out = Command::new(env!("CARGO_BIN_EXE_damocles-bench")).arg("list").output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let names: Vec<&str> = stdout.lines().filter_map(|l| l.split_whitespace().next()).collect();
    for name in
        ["rpc_state_vs_durable_redis", "piece_get_vs_nginx", "plugin_kv_process_vs_socket", "sync_fanout_process"]
    {
        assert!(names.contains(&name), "{name}: {stdout}");
    }
    assert!(!names.contains(&"rpc_state_vs_redis"), "the SET-only Redis peer is gone: {stdout}");
}

#[test]
fn an_unknown_scenario_is_refused_naming_the_known_ones() {
    let out = Command::new(env!("CARGO_BIN_EXE_damocles-bench")).arg("no_such").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown scenario \"no_such\"") && stderr.contains("rpc_state_vs_noop"), "{stderr}");
}
