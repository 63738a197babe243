//! RocksDB's own write statistics of a running daemon, from the periodic stats dump in its `LOG` (the daemon is
//! started with `DAMOCLES_ROCKSDB_STATS_DUMP_SEC=1`, see `manager/src/kvstore/rocksdb.rs`): commit groups, WAL
//! writes and WAL syncs, as RocksDB counted them.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// The environment variable that makes the daemon's RocksDB dump its statistics every N seconds.
pub const DUMP_ENV: &str = "DAMOCLES_ROCKSDB_STATS_DUMP_SEC";

/// Cumulative counters of one stats dump. RocksDB prints counts of 10,000 and more rounded down to thousands
/// (`29K`), so a difference over a run is good to about ±1,000.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct WriteCounts {
    /// Writes (each a write batch: a committed transaction).
    pub writes: u64,
    /// Write groups (one leader writes the WAL for all of them).
    pub groups: u64,
    /// Writes that went to the WAL.
    pub wal_writes: u64,
    /// WAL syncs.
    pub wal_syncs: u64,
}

impl WriteCounts {
    /// What happened from `self` to `later`.
    pub fn until(&self, later: &WriteCounts) -> WriteCounts {
        WriteCounts {
            writes: later.writes.saturating_sub(self.writes),
            groups: later.groups.saturating_sub(self.groups),
            wal_writes: later.wal_writes.saturating_sub(self.wal_writes),
            wal_syncs: later.wal_syncs.saturating_sub(self.wal_syncs),
        }
    }

    /// Both added.
    pub fn add(self, other: WriteCounts) -> WriteCounts {
        WriteCounts {
            writes: self.writes + other.writes,
            groups: self.groups + other.groups,
            wal_writes: self.wal_writes + other.wal_writes,
            wal_syncs: self.wal_syncs + other.wal_syncs,
        }
    }

    /// `0.98 WAL syncs per call, 1.02 writes per sync, 1.01 writes per commit group` for `calls` calls.
    pub fn per_call(&self, calls: usize) -> String {
        format!(
            "{:.2} WAL syncs per call, {:.2} writes per sync, {:.2} writes per commit group (RocksDB statistics)",
            self.wal_syncs as f64 / calls.max(1) as f64,
            self.wal_writes as f64 / self.wal_syncs.max(1) as f64,
            self.writes as f64 / self.groups.max(1) as f64
        )
    }
}

/// The last complete stats dump in `log` (text of a RocksDB `LOG` file), if any.
pub fn last_dump(log: &str) -> Option<WriteCounts> {
    let mut found = None;
    let mut writes: Option<(u64, u64)> = None;
    for line in log.lines() {
        if let Some(rest) = after(line, "Cumulative writes: ") {
            // `<n> writes, <n> keys, <n> commit groups, ...`
            let fields: Vec<&str> = rest.split(", ").collect();
            writes = (|| Some((count(fields.first()?, "writes")?, count(fields.get(2)?, "commit groups")?)))();
        } else if let Some(rest) = after(line, "Cumulative WAL: ") {
            // `<n> writes, <n> syncs, <x> writes per sync, ...`
            let fields: Vec<&str> = rest.split(", ").collect();
            let wal = (|| Some((count(fields.first()?, "writes")?, count(fields.get(1)?, "syncs")?)))();
            if let (Some((writes, groups)), Some((wal_writes, wal_syncs))) = (writes.take(), wal) {
                found = Some(WriteCounts { writes, groups, wal_writes, wal_syncs });
            }
        }
    }
    found
}

fn after<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    line.find(marker).map(|at| &line[at + marker.len()..])
}

/// `29K writes` → 29000 (RocksDB's `NumberToHumanString`: plain below 10,000, then K, M, G).
fn count(field: &str, unit: &str) -> Option<u64> {
    let number = field.trim().strip_suffix(unit)?.trim();
    let (digits, scale) = match number.as_bytes().last()? {
        b'K' => (&number[..number.len() - 1], 1_000),
        b'M' => (&number[..number.len() - 1], 1_000_000),
        b'G' => (&number[..number.len() - 1], 1_000_000_000),
        _ => (number, 1),
    };
    digits.parse::<u64>().ok().map(|n| n * scale)
}

/// The `LOG` of the RocksDB in a daemon home (`[Common.DB.RocksDB]`'s default directory `db`).
pub fn log_of_home(home: &Path) -> PathBuf {
    home.join("db").join("LOG")
}

/// Waits for the next stats dump written to `log` after this call, and returns it (so everything done before
/// the call is in it).
pub fn next_dump(log: &Path) -> anyhow::Result<WriteCounts> {
    let start = std::fs::metadata(log).with_context(|| format!("cannot read {}", log.display()))?.len();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read(log).with_context(|| format!("cannot read {}", log.display()))?;
        let fresh = String::from_utf8_lossy(text.get(start as usize..).unwrap_or_default());
        // A dump is complete once the WAL line follows the writes line.
        if let Some(counts) = last_dump(&fresh) {
            return Ok(counts);
        }
        if Instant::now() > deadline {
            bail!("no RocksDB stats dump in {} within 10 s (is the daemon started with {DUMP_ENV}=1?)", log.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines as RocksDB 11 writes them (`db/internal_stats.cc`, `DumpDBStats`).
    const DUMP: &str = "\
2026/12/07-04:20:01.123456 7f00 [db/db_impl/db_impl.cc:1112] ------- DUMPING STATS -------
2026/12/07-04:20:01.123460 7f00 [db/db_impl/db_impl.cc:1113] \n** DB Stats **
Uptime(secs): 12.0 total, 1.0 interval
Cumulative writes: 29K writes, 58K keys, 9876 commit groups, 3.0 writes per commit group, ingest: 0.01 GB, 1.10 MB/s
Cumulative WAL: 29K writes, 9876 syncs, 2.94 writes per sync, written: 0.01 GB, 1.10 MB/s
Cumulative stall: 00:00:0.000 H:M:S, 0.0 percent
Interval writes: 1234 writes, 2468 keys, 400 commit groups, 3.1 writes per commit group, ingest: 0.61 MB, 0.61 MB/s
Interval WAL: 1234 writes, 400 syncs, 3.08 writes per sync, written: 0.00 GB, 0.61 MB/s
";

    #[test]
    fn the_last_dump_reads_cumulative_counts_and_ignores_interval_lines() {
        let counts = last_dump(DUMP).unwrap();
        assert_eq!(counts, WriteCounts { writes: 29_000, groups: 9_876, wal_writes: 29_000, wal_syncs: 9_876 });
        let later = DUMP.replace("29K writes", "41K writes").replace("9876 syncs", "12M syncs");
        let both = format!("{DUMP}{later}");
        assert_eq!(last_dump(&both).unwrap().wal_syncs, 12_000_000);
        assert_eq!(counts.until(&last_dump(&both).unwrap()).wal_writes, 12_000);
        // A dump cut after its writes line is not complete yet.
        assert_eq!(last_dump(DUMP.split("Cumulative WAL").next().unwrap()), None);
        assert_eq!(last_dump("no stats here"), None);
    }

    #[test]
    fn per_call_figures_divide_by_calls_syncs_and_groups() {
        let counts = WriteCounts { writes: 3000, groups: 1000, wal_writes: 3000, wal_syncs: 1500 };
        assert_eq!(
            counts.per_call(3000),
            "0.50 WAL syncs per call, 2.00 writes per sync, 3.00 writes per commit group (RocksDB statistics)"
        );
    }
}
