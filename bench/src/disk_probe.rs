//! The disk's price of durability in the same run: microseconds per `fdatasync(2)` of a small write, in a scratch
//! dir on the disk the daemons write to.

use std::io::Write as _;
use std::os::fd::AsRawFd as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// Writes 512 bytes and `fdatasync`s them, `rounds` times, in a new file of `dir`; the median time per round.
pub fn fdatasync_micros(dir: &Path, rounds: usize) -> anyhow::Result<f64> {
    let path = dir.join("fdatasync-probe");
    let mut file = std::fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
    let block = [0x5au8; 512];
    let mut times: Vec<Duration> = Vec::with_capacity(rounds);
    for _ in 0..rounds.max(1) {
        let started = Instant::now();
        file.write_all(&block)?;
        // SAFETY: fdatasync on a descriptor we own.
        if unsafe { libc::fdatasync(file.as_raw_fd()) } != 0 {
            return Err(std::io::Error::last_os_error()).with_context(|| format!("fdatasync {}", path.display()));
        }
        times.push(started.elapsed());
    }
    drop(file);
    std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
    Ok(median(&mut times).as_secs_f64() * 1e6)
}

/// The median of `values` (the upper one of an even count); zero when empty.
pub fn median<T: Ord + Copy + Default>(values: &mut [T]) -> T {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_is_the_middle_value_whatever_the_order() {
        assert_eq!(median(&mut [5, 1, 3]), 3);
        assert_eq!(median(&mut [4, 1, 3, 2]), 3);
        assert_eq!(median::<u32>(&mut []), 0);
    }

    #[test]
    fn a_probe_takes_time_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let micros = fdatasync_micros(dir.path(), 5).unwrap();
        assert!(micros > 0.0 && micros.is_finite(), "{micros}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
