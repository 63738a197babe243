//! Sections and keys of the Go manager's `sector-manager.cfg` that damocles-rs accepts but does not implement
//! (chain, messager, PoSt, snap-up, ...). A Go config loads; each such section present in the file is named once
//! in a warning, so nobody believes a setting there takes effect.

use serde::{Deserialize, Serialize};

/// Whatever a Go-only section or key holds; never read.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Ignored(pub Option<toml::Value>);

impl Eq for Ignored {}

impl Ignored {
    /// Whether the file had it.
    pub fn is_present(&self) -> bool {
        self.0.is_some()
    }
}

/// Every Go-only section or key damocles-rs accepts and ignores, as its warning names it. `docs/config.md` lists
/// exactly these (`config::tests::the_ignored_keys_of_the_docs_are_exactly_the_ones_the_code_ignores`).
pub const IGNORED: [&str; 13] = [
    "[Common.API]",
    "[Common.Proving]",
    "[Common] ScanPersistStores",
    "[Common.MongoKVStore]",
    "[Common.DB.Badger]",
    "[Common.DB.Mongo]",
    "[Miners.SnapUp]",
    "[Miners.Commitment]",
    "[Miners.PoSt]",
    "[Miners.Proof]",
    "[Miners.Sealing]",
    "[Miners.Sector] EnableDeals",
    "[Miners.Sector] LifetimeDays",
];

/// The warning for a Go-only section or key, e.g. `ignored: [Common.Proving] — not supported by damocles-rs`.
pub fn ignored_warning(name: &str) -> String {
    format!("ignored: {name} — not supported by damocles-rs")
}

/// Collects warnings, each text once, in the order first seen.
#[derive(Debug, Default)]
pub struct Warnings(Vec<String>);

impl Warnings {
    /// Adds `warning` unless it is already there.
    pub fn add(&mut self, warning: String) {
        if !self.0.contains(&warning) {
            self.0.push(warning);
        }
    }

    /// Adds the ignored-warning for `name` (one of [`IGNORED`]) when `value` is present.
    pub fn ignored(&mut self, name: &str, value: &Ignored) {
        debug_assert!(IGNORED.contains(&name), "{name} is not listed in config::ignored::IGNORED");
        if value.is_present() {
            self.add(ignored_warning(name));
        }
    }

    /// The warnings.
    pub fn into_vec(self) -> Vec<String> {
        self.0
    }
}
