//! Bounds on judging one plugin file, whatever its form (a `.so` the manager maps, an executable it starts):
//! a size cap read from the file's metadata before a byte is read ([`read_capped`]), and a total time budget for
//! the checks ([`Budget`]), on top of checks whose work grows linearly with the file (see [`crate::elf`]).
//!
//! ```no_run
//! use plugin_image::limits::{Budget, FileLimits, read_capped};
//! let limits = FileLimits::default();
//! let bytes = read_capped("plugins/plugin-memdb.so".as_ref(), &limits)?; // one read, at most the cap
//! let budget = Budget::start(limits.time_budget);
//! let image = plugin_image::Image::read_plugin_within(&bytes, &budget)?; // one parse
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io::Read as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::refusal::Refusal;

/// The default of `[Common.Plugins] MaxFileSize`: 256 MiB (a release plugin is a few MiB, a debug one tens).
pub const DEFAULT_MAX_FILE_SIZE: u64 = 256 * 1024 * 1024;
/// How long the checks of one file may take in total (a few milliseconds for a real plugin).
pub const DEFAULT_TIME_BUDGET: Duration = Duration::from_secs(10);
/// The most program headers a file may have (real plugins have about ten).
pub const MAX_PROGRAM_HEADERS: usize = 64;
/// The most section headers a file may have (real plugins have about forty).
pub const MAX_SECTIONS: usize = 4096;

/// How much reading and checking one file may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileLimits {
    /// Files larger than this (from their metadata) are refused unread (`[Common.Plugins] MaxFileSize`).
    pub max_file_size: u64,
    /// The time all checks of one file may take together.
    pub time_budget: Duration,
}

impl Default for FileLimits {
    fn default() -> Self {
        FileLimits { max_file_size: DEFAULT_MAX_FILE_SIZE, time_budget: DEFAULT_TIME_BUDGET }
    }
}

/// A deadline for the checks of one file; checks call [`Budget::check`] between bounded steps.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    started: Instant,
    total: Duration,
}

impl Budget {
    /// A budget of `total`, starting now.
    pub fn start(total: Duration) -> Budget {
        Budget { started: Instant::now(), total }
    }

    /// A refusal once the budget is spent.
    pub fn check(&self) -> Result<(), Refusal> {
        if self.started.elapsed() > self.total {
            return Err(Refusal::TimeBudget { budget: self.total });
        }
        Ok(())
    }
}

/// Why [`read_capped`] returned no bytes.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file could not be opened or read.
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
    /// The file is refused without being read (too large, not a regular file).
    #[error("{0}")]
    Refused(Refusal),
}

/// Reads `path` once, refusing it before reading when it is not a regular file or its size (from the metadata
/// of the opened file) is over `limits.max_file_size`; a file that grows while it is read is refused too, so
/// at most `max_file_size + 1` bytes are ever held. A sparse file costs nothing to refuse.
pub fn read_capped(path: &Path, limits: &FileLimits) -> Result<Vec<u8>, ReadError> {
    // O_NONBLOCK: opening a FIFO placed in the plugins dir must not wait for a writer.
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)?;
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(ReadError::Refused(Refusal::NotRegular));
    }
    let cap = limits.max_file_size;
    if metadata.len() > cap {
        return Err(ReadError::Refused(Refusal::TooLarge { size: metadata.len(), cap }));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0));
    file.take(cap.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(ReadError::Refused(Refusal::TooLarge { size: bytes.len() as u64, cap }));
    }
    Ok(bytes)
}
