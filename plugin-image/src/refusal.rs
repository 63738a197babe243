//! Why a file is refused. Messages say what is wrong and how to fix it; callers prefix the file.

use manager_plugin::abi::section::SectionError;
use manager_plugin::abi::{FingerprintDifference, SECTION_NAME};

/// Why a file cannot be loaded as a plugin (or read as a manager binary).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Not a complete, consistent ELF file for this machine.
    #[error("not a loadable library: {0}")]
    Elf(String),
    /// No embedded section: not built by `plugin build` (or by a `plugin` tool older than this format).
    #[error("not a damocles plugin (no `{SECTION_NAME}` section); build plugins with `cargo run -p plugin -- build`")]
    NoSection,
    /// The embedded section is malformed.
    #[error("bad plugin section: {0}")]
    Section(#[from] SectionError),
    /// The section belongs to another role (e.g. a manager binary given as a plugin).
    #[error("the embedded section says this is a {found:?} file, expected a {expected:?} file")]
    Role {
        /// The role found.
        found: String,
        /// The role expected.
        expected: &'static str,
    },
    /// The plugin was built by another compiler, profile, SDK or `plugin` tool than the host.
    #[error(
        "plugin '{name}' was built differently from this manager, loading it would be undefined behaviour:\n{}\n  fix: cargo run -p plugin -- check-dep --fix <plugin>/Cargo.toml, then rebuild it with `cargo run -p plugin -- build` using the manager's toolchain and profile{}",
        differences.iter().map(|d| format!("  - {d}")).collect::<Vec<_>>().join("\n"),
        profile_hint(differences)
    )]
    FingerprintMismatch {
        /// The plugin's name, as far as the manifest tells (`?` when it does not parse).
        name: String,
        /// Each differing item.
        differences: Vec<FingerprintDifference>,
    },
    /// The embedded manifest is invalid.
    #[error("invalid embedded manifest: {0}")]
    Manifest(String),
    /// An exported entry point is not a defined function in an executable segment.
    #[error(
        "unsafe exported symbol `{symbol}`: {reason}; the file is damaged or was not made by `plugin build`, rebuild it with `cargo run -p plugin -- build`"
    )]
    Symbol {
        /// The symbol.
        symbol: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The plugin defines its own `malloc`/`free`/...
    #[error(
        "the plugin defines its own allocator symbols ({}): memory crosses the plugin boundary and is freed by the other side, so plugin and manager must share the process's allocator; remove the dependency feature that overrides malloc (e.g. tikv-jemallocator/unprefixed_malloc_on_supported_platforms, mimalloc/override, librocksdb-sys/jemalloc) and rebuild",
        .0.join(", ")
    )]
    OwnAllocator(Vec<String>),
    /// The file's size is over the cap; nothing of it was read.
    #[error(
        "{size} bytes, over the plugin file size cap of {cap} bytes ([Common.Plugins] MaxFileSize); nothing of it was read: remove it from the plugins dir, or raise MaxFileSize if it really is a plugin"
    )]
    TooLarge {
        /// The file's size.
        size: u64,
        /// The cap.
        cap: u64,
    },
    /// Not a regular file (a FIFO, a device, a directory).
    #[error("not a regular file; remove it from the plugins dir")]
    NotRegular,
    /// Checking the file took longer than its time budget.
    #[error(
        "checking the file took longer than its time budget of {} s; the file is crafted or damaged: rebuild it with `cargo run -p plugin -- build`",
        budget.as_secs_f64()
    )]
    TimeBudget {
        /// The budget.
        budget: std::time::Duration,
    },
}

/// Says which `plugin build` flag matches this manager's profile when the profile is one of the differences.
fn profile_hint(differences: &[FingerprintDifference]) -> &'static str {
    match differences.iter().find(|d| d.item == "debug-assertions").map(|d| d.host.as_str()) {
        Some("true") => " (this manager is a debug build: add --debug to `plugin build`)",
        Some(_) => " (this manager is a release build: run `plugin build` without --debug)",
        None => "",
    }
}
