//! What a server process paid for a run, read from `/proc`: CPU time (`/proc/<pid>/stat` utime + stime, which
//! the kernel sums over every thread, living or exited) and context switches (`voluntary_ctxt_switches` and
//! `nonvoluntary_ctxt_switches` of `/proc/<pid>/task/<tid>/status`, summed over the threads).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;

/// One reading of a process.
#[derive(Clone, Debug, Default)]
pub struct ProcSample {
    /// User + system CPU time of the whole process.
    pub cpu: Duration,
    /// Context switches (voluntary + involuntary) per thread id.
    switches: BTreeMap<u32, u64>,
}

/// What a process paid between two samples.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcCost {
    /// CPU time.
    pub cpu: Duration,
    /// Context switches (a lower bound: a thread that exited between the samples takes its switches with it).
    pub switches: u64,
}

impl ProcCost {
    /// Both costs added (a run in several parts, or a server of several processes).
    pub fn add(self, other: ProcCost) -> ProcCost {
        ProcCost { cpu: self.cpu + other.cpu, switches: self.switches + other.switches }
    }

    /// `41.2 µs CPU and 3.1 context switches per call` for `calls` calls.
    pub fn per_call(&self, calls: usize) -> String {
        let calls = calls.max(1) as f64;
        format!(
            "{:.1} µs CPU and {:.2} context switches per call",
            self.cpu.as_secs_f64() * 1e6 / calls,
            self.switches as f64 / calls
        )
    }
}

impl ProcSample {
    /// Reads process `pid`.
    pub fn read(pid: u32) -> anyhow::Result<ProcSample> {
        let path = format!("/proc/{pid}/stat");
        let stat = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        let cpu = cpu_of_stat(&stat).with_context(|| format!("no utime/stime in {path}: {stat}"))?;
        let mut switches = BTreeMap::new();
        let tasks = format!("/proc/{pid}/task");
        for entry in std::fs::read_dir(&tasks).with_context(|| format!("cannot list {tasks}"))? {
            let entry = entry?;
            let Some(tid) = entry.file_name().to_str().and_then(|t| t.parse::<u32>().ok()) else { continue };
            // A thread may exit between the listing and the read: it simply does not count.
            if let Ok(status) = std::fs::read_to_string(entry.path().join("status")) {
                switches.insert(tid, switches_of_status(&status));
            }
        }
        Ok(ProcSample { cpu, switches })
    }

    /// The children of `pid` (a daemon's process plugins) as one: their CPU time summed, their threads' switches.
    /// A child that exits while being read does not count.
    pub fn read_children(pid: u32) -> ProcSample {
        let mut total = ProcSample::default();
        for child in children_of(pid) {
            if let Ok(sample) = ProcSample::read(child) {
                total.cpu += sample.cpu;
                total.switches.extend(sample.switches);
            }
        }
        total
    }

    /// What the process paid from `self` to `later` (per thread, so threads that started in between count whole).
    pub fn cost_until(&self, later: &ProcSample) -> ProcCost {
        let switches =
            later.switches.iter().map(|(tid, &n)| n.saturating_sub(self.switches.get(tid).copied().unwrap_or(0))).sum();
        ProcCost { cpu: later.cpu.saturating_sub(self.cpu), switches }
    }
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line; the command name (field 2) may hold spaces and
/// parentheses, so fields are counted after its closing parenthesis.
pub fn cpu_of_stat(stat: &str) -> Option<Duration> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // After the name: field 3 (state) is the first; utime is field 14, stime field 15.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(ticks(utime + stime))
}

/// voluntary + nonvoluntary context switches of a `/proc/.../status` text.
pub fn switches_of_status(status: &str) -> u64 {
    status
        .lines()
        .filter_map(|l| {
            l.strip_prefix("voluntary_ctxt_switches:").or_else(|| l.strip_prefix("nonvoluntary_ctxt_switches:"))
        })
        .filter_map(|v| v.trim().parse::<u64>().ok())
        .sum()
}

/// Clock ticks as a duration.
fn ticks(n: u64) -> Duration {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as u64 } else { 100 };
    Duration::from_nanos(n.saturating_mul(1_000_000_000 / hz))
}

/// The children of `pid` (e.g. nginx's workers), from each process's parent pid.
pub fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&child| {
            std::fs::read_to_string(format!("/proc/{child}/stat")).ok().and_then(|s| parent_of_stat(&s)) == Some(pid)
        })
        .collect()
}

/// The parent pid (field 4) of a `/proc/<pid>/stat` line.
fn parent_of_stat(stat: &str) -> Option<u32> {
    stat[stat.rfind(')')? + 1..].split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_name_even_when_it_holds_spaces_and_parentheses() {
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime ...
        let stat = "4242 (tokio (x) 1) S 17 4242 4242 0 -1 4194560 98 0 0 0 250 50 7 8 20 0 9 0 1013858";
        assert_eq!(cpu_of_stat(stat), Some(Duration::from_nanos(300 * (1_000_000_000 / hz))));
        assert_eq!(parent_of_stat(stat), Some(17));
        assert_eq!(cpu_of_stat("4242 (cut) S 17"), None);
    }

    #[test]
    fn switches_add_both_kinds_and_a_cost_counts_threads_that_started_in_between() {
        let status = "Name:\tx\nvoluntary_ctxt_switches:\t120\nnonvoluntary_ctxt_switches:\t3\n";
        assert_eq!(switches_of_status(status), 123);
        let before = ProcSample { cpu: Duration::from_millis(10), switches: [(1, 100), (2, 50)].into() };
        // Thread 2 exited, thread 3 started.
        let after = ProcSample { cpu: Duration::from_millis(40), switches: [(1, 130), (3, 5)].into() };
        let cost = before.cost_until(&after);
        assert_eq!(cost, ProcCost { cpu: Duration::from_millis(30), switches: 35 });
        assert_eq!(cost.per_call(10), "3000.0 µs CPU and 3.50 context switches per call");
    }

    #[test]
    fn this_process_reads_with_its_own_threads() {
        let pid = std::process::id();
        let before = ProcSample::read(pid).unwrap();
        let spin = std::time::Instant::now();
        while spin.elapsed() < Duration::from_millis(30) {
            std::hint::black_box(0);
        }
        std::thread::spawn(|| std::thread::sleep(Duration::from_millis(5))).join().unwrap();
        let after = ProcSample::read(pid).unwrap();
        let cost = before.cost_until(&after);
        assert!(cost.cpu >= Duration::from_millis(10), "{cost:?}");
        assert!(cost.switches >= 1, "{cost:?}");
    }
}
