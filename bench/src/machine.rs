//! The machine line quoted with every set of figures.

use std::path::Path;
use std::process::Command;

use crate::toolchain::Toolchain;

/// `<cpu model>, <n> cores, <mem> GiB, Linux <release>, <rustc>, <profile>, <RocksDB origin>, <date>`.
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
    format!("{model}, {cores} cores, {mem_gib:.1} GiB, Linux {kernel}, {rustc}, {profile}, {}, {date}", tools.rocksdb)
}

/// Which RocksDB a benchmark build links, for the machine line; an error when a release benchmark would link the
/// dev profile's RocksDB (compiled at opt-level 1 by `[profile.dev.package."*"]`), whose figures say nothing
/// about a release daemon.
pub fn rocksdb_origin(release: bool, lib_dir: Option<&str>) -> Result<String, String> {
    let Some(dir) = lib_dir.filter(|d| !d.trim().is_empty()) else {
        let profile = if release { "release profile, opt-level 3" } else { "dev profile, opt-level 1" };
        return Ok(format!("RocksDB compiled by cargo ({profile})"));
    };
    let dev_build = Path::new(dir).components().any(|c| c.as_os_str() == "debug");
    match (release, dev_build) {
        (true, true) => Err(format!(
            "ROCKSDB_LIB_DIR={dir} is the dev profile's RocksDB (a target/debug build, compiled at opt-level 1): a \
             release benchmark must link the release one. Point ROCKSDB_LIB_DIR at a release build \
             (<target>/release/build/rust-librocksdb-sys-*/out, with ROCKSDB_STATIC=1 and ROCKSDB_INCLUDE_DIR set to the \
             `cargo::metadata=include=` line of that build's `output` file), or unset it and let cargo \
             compile RocksDB once in the release profile (cached in the target dir)"
        )),
        (true, false) => Ok(format!("RocksDB prebuilt in the release profile from {dir}")),
        (false, _) => Ok(format!("RocksDB prebuilt from {dir}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_release_benchmark_refuses_the_dev_profiles_rocksdb_and_names_the_release_one() {
        let debug_dir = "/work/main/target/debug/build/rust-librocksdb-sys-2c84/out";
        let refused = rocksdb_origin(true, Some(debug_dir)).unwrap_err();
        assert!(refused.contains(debug_dir) && refused.contains("opt-level 1"), "{refused}");
        assert!(refused.contains("release/build/rust-librocksdb-sys-*/out"), "{refused}");
        let release_dir = "/work/main/target/release/build/rust-librocksdb-sys-9a1f/out";
        assert_eq!(
            rocksdb_origin(true, Some(release_dir)).unwrap(),
            format!("RocksDB prebuilt in the release profile from {release_dir}")
        );
        // A directory merely named like it (`debugging`) is not the dev profile's.
        assert!(rocksdb_origin(true, Some("/opt/debugging/rocksdb")).is_ok());
        assert_eq!(rocksdb_origin(true, None).unwrap(), "RocksDB compiled by cargo (release profile, opt-level 3)");
        assert_eq!(rocksdb_origin(true, Some("")).unwrap(), "RocksDB compiled by cargo (release profile, opt-level 3)");
        // A debug benchmark may link anything (its figures are not comparable anyway).
        assert!(rocksdb_origin(false, Some(debug_dir)).is_ok());
    }
}
