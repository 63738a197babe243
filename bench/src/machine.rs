//! The machine line quoted with every set of figures.

use std::process::Command;

use crate::toolchain::Toolchain;

/// `cpu <model>, <n> cores, <mem> GiB, Linux <release>, <rustc>, <profile>, <date>`.
pub fn describe(tools: &Toolchain) -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|rest| rest.split_once(':')).map(|(_, m)| m.trim()))
        .unwrap_or("unknown cpu")
        .to_string();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    let output = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let rustc = output("rustc", &["-V"]);
    let date = output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let profile = if tools.release { "release" } else { "debug (figures not comparable)" };
    // A RocksDB linked from a prebuilt library (e.g. the test build's, compiled at -O1) is not the release one.
    let rocksdb = match std::env::var("ROCKSDB_LIB_DIR") {
        Ok(dir) => format!(", RocksDB prebuilt from {dir}"),
        Err(_) => String::new(),
    };
    format!("{model}, {cores} cores, {mem_gib:.1} GiB, Linux {kernel}, {rustc}, {profile}{rocksdb}, {date}")
}
