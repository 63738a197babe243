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
        "plugin '{name}' was built differently from this manager, loading it would be undefined behaviour:\n{}\n{}",
        differences.iter().map(|d| format!("  - {d}")).collect::<Vec<_>>().join("\n"),
        fixes(differences).iter().map(|f| format!("  fix: {f}")).collect::<Vec<_>>().join("\n")
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
    /// A process plugin speaks another major version of the process protocol.
    #[error(
        "the process plugin speaks protocol {found:?}, this manager speaks {expected}.x; rebuild it with this manager's `plugin build --process`"
    )]
    Protocol {
        /// The version in the plugin's section (empty when missing).
        found: String,
        /// The manager's major version.
        expected: u32,
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

/// The fixes that apply to `differences`, the one for the most common cause first: a profile mismatch is fixed by
/// the matching `plugin build` flag (`check-dep --fix` cannot change it), another compiler by the manager's
/// toolchain, another SDK by pointing the plugin at the manager's SDK.
fn fixes(differences: &[FingerprintDifference]) -> Vec<String> {
    let differs = |items: &[&str]| differences.iter().any(|d| items.contains(&d.item.as_str()));
    let mut fixes = Vec::new();
    match differences.iter().find(|d| d.item == "debug-assertions").map(|d| d.host.as_str()) {
        Some("true") => fixes.push(
            "this manager is a debug build: rebuild the plugin with `cargo run -p plugin -- build --debug …`".into(),
        ),
        Some(_) => fixes.push(
            "this manager is a release build: rebuild the plugin with `cargo run -p plugin -- build …` (without --debug)"
                .into(),
        ),
        None => {}
    }
    if differs(&["rustc-release", "rustc-commit", "rustc-llvm", "target", "panic"]) {
        let rustc = differences.iter().find(|d| d.item == "rustc-release").map(|d| d.host.as_str());
        fixes.push(format!(
            "rebuild the plugin with the manager's toolchain{} and target, with the default panic = \"unwind\"",
            rustc.map(|r| format!(" (rustc {r})")).unwrap_or_default()
        ));
    }
    if differs(&["sdk-source", "sdk-version", "sdk-features", manager_plugin::abi::CODEGEN_ITEM]) || fixes.is_empty() {
        fixes.push(
            "cargo run -p plugin -- check-dep --fix <plugin>/Cargo.toml (the manager's SDK and features), then \
             rebuild it with `cargo run -p plugin -- build`"
                .into(),
        );
    }
    fixes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diff(item: &str, plugin: &str, host: &str) -> FingerprintDifference {
        FingerprintDifference { item: item.into(), plugin: plugin.into(), host: host.into() }
    }

    #[test]
    fn a_profile_mismatch_leads_with_the_matching_build_flag_not_check_dep() {
        let refusal = Refusal::FingerprintMismatch {
            name: "memdb".into(),
            differences: vec![diff("debug-assertions", "false", "true")],
        };
        let text = refusal.to_string();
        let fix_lines: Vec<&str> = text.lines().filter(|l| l.starts_with("  fix: ")).collect();
        assert_eq!(
            fix_lines,
            ["  fix: this manager is a debug build: rebuild the plugin with `cargo run -p plugin -- build --debug …`"],
            "{text}"
        );
        let release = fixes(&[diff("debug-assertions", "true", "false")]);
        assert!(release[0].contains("release build") && release[0].contains("without --debug"), "{release:?}");
    }

    #[test]
    fn each_kind_of_difference_gets_its_own_fix_in_order() {
        let all = fixes(&[
            diff("sdk-features", "a", "b"),
            diff("rustc-release", "1.94.0", "1.95.0"),
            diff("debug-assertions", "true", "false"),
        ]);
        assert_eq!(all.len(), 3, "{all:?}");
        assert!(all[0].starts_with("this manager is a release build"), "{all:?}");
        assert!(all[1].contains("(rustc 1.95.0)"), "{all:?}");
        assert!(all[2].starts_with("cargo run -p plugin -- check-dep --fix"), "{all:?}");
        assert_eq!(fixes(&[diff("sdk-source", "x", "y")]).len(), 1);
    }
}
