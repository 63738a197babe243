//! The ABI fingerprint and the embedded section that carries it.
//!
//! Every plugin (and the manager binary itself) carries a [`section`] named [`SECTION_NAME`] with the fingerprint
//! items, the manifest text, the build time and the SDK version. The host reads it from the file's bytes, before
//! anything of the file is mapped or run, and compares the fingerprint with its own: Rust-ABI calls are sound only
//! between builds made by the same compiler from the same SDK sources, features and cfgs (see
//! `docs/plugin-abi.md`). Only then is the Rust-ABI [`MODULE_SYMBOL`] resolved.

use std::collections::BTreeMap;
use std::fmt;

pub mod section;

#[cfg(not(panic = "unwind"))]
compile_error!(
    "manager-plugin requires `panic = \"unwind\"`: plugin panics are caught by the plugin's own std, which needs \
     unwinding; remove `panic = \"abort\"` from [profile.*], CARGO_PROFILE_*_PANIC and `-C panic=abort` in RUSTFLAGS"
);

mod build_items {
    include!(concat!(env!("OUT_DIR"), "/fingerprint_items.rs"));
}

/// Fingerprint items computed by `build.rs`: rustc release, commit and LLVM, target, SDK version, features and
/// source digest.
pub use build_items::BUILD_ITEMS;

/// Fingerprint items read from `cfg!()` in this library, which sees the profile's real settings (a build script
/// does not: `CARGO_CFG_PANIC` ignores `profile.panic`).
pub const CFG_ITEMS: &[(&str, &str)] = &[
    ("debug-assertions", if cfg!(debug_assertions) { "true" } else { "false" }),
    ("panic", if cfg!(panic = "unwind") { "unwind" } else { "abort" }),
];

/// Version of the code `plugin build` generates against this SDK (the wrapper's shape). The `plugin` tool
/// embeds its own value; [`plugin_section!`](crate::plugin_section) refuses to compile when the two differ, and
/// the host compares it as the fingerprint item [`CODEGEN_ITEM`].
pub const CODEGEN_VERSION: &str = "2";
/// Name of the fingerprint item that holds the codegen version.
pub const CODEGEN_ITEM: &str = "codegen-version";
/// This SDK's version (also a fingerprint item, `sdk-version`).
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");
/// The Rust-ABI `fn() -> PluginModule` every plugin exports; resolved only after the fingerprint matched.
pub const MODULE_SYMBOL: &str = "damocles_plugin_module";
/// The ELF section holding the embedded [`section`].
pub const SECTION_NAME: &str = ".damocles_plugin";

/// `true` when `a == b` (usable in constants).
pub const fn const_str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// A parsed fingerprint: item name → value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    items: BTreeMap<String, String>,
}

/// One item on which two fingerprints differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FingerprintDifference {
    /// The item (e.g. `rustc-release`, `sdk-features`).
    pub item: String,
    /// The plugin's value (empty if missing).
    pub plugin: String,
    /// The host's value (empty if missing).
    pub host: String,
}

impl fmt::Display for FingerprintDifference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: plugin {:?} => manager {:?}", self.item, self.plugin, self.host)
    }
}

impl Fingerprint {
    /// This build's fingerprint: [`BUILD_ITEMS`], [`CFG_ITEMS`] and the [`CODEGEN_VERSION`].
    pub fn current() -> Fingerprint {
        let items = BUILD_ITEMS.iter().chain(CFG_ITEMS).chain(&[(CODEGEN_ITEM, CODEGEN_VERSION)]);
        Fingerprint::from_items(items.map(|(k, v)| (k.to_string(), v.to_string())))
    }

    /// A fingerprint made of these items (a later duplicate replaces an earlier one).
    pub fn from_items(items: impl IntoIterator<Item = (String, String)>) -> Fingerprint {
        Fingerprint { items: items.into_iter().collect() }
    }

    /// Parses `key=value` lines; other lines are ignored.
    pub fn parse(text: &str) -> Fingerprint {
        Fingerprint::from_items(
            text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    /// The value of one item.
    pub fn get(&self, item: &str) -> Option<&str> {
        self.items.get(item).map(String::as_str)
    }

    /// Every item, in item order.
    pub fn items(&self) -> impl Iterator<Item = (&str, &str)> {
        self.items.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// `key=value` lines, in item order.
    pub fn to_text(&self) -> String {
        self.items().map(|(k, v)| format!("{k}={v}\n")).collect()
    }

    /// Every item where `plugin` differs from `self` (the host), in item order. An empty or missing value never
    /// compares equal, not even to another empty value: it means a build that could not tell.
    pub fn differences(&self, plugin: &Fingerprint) -> Vec<FingerprintDifference> {
        let mut keys: Vec<&String> = self.items.keys().chain(plugin.items.keys()).collect();
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .filter(|k| {
                let host = self.items.get(*k).filter(|v| !v.trim().is_empty());
                let theirs = plugin.items.get(*k).filter(|v| !v.trim().is_empty());
                host.is_none() || host != theirs
            })
            .map(|k| FingerprintDifference {
                item: k.clone(),
                plugin: plugin.items.get(k).cloned().unwrap_or_default(),
                host: self.items.get(k).cloned().unwrap_or_default(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_fingerprint_names_compiler_target_and_sdk() {
        let fp = Fingerprint::current();
        for item in [
            "rustc-release",
            "rustc-commit",
            "target",
            "debug-assertions",
            "panic",
            "sdk-version",
            "sdk-source",
            CODEGEN_ITEM,
        ] {
            assert!(fp.get(item).is_some_and(|v| !v.is_empty()), "missing {item} in {fp:?}");
        }
    }

    #[test]
    fn differences_list_each_differing_item() {
        let host = Fingerprint::parse("a=1\nb=2\nc=3\n");
        let plugin = Fingerprint::parse("a=1\nb=9\nd=4\n");
        let diffs: Vec<String> = host.differences(&plugin).iter().map(|d| d.to_string()).collect();
        assert_eq!(
            diffs,
            ["b: plugin \"9\" => manager \"2\"", "c: plugin \"\" => manager \"3\"", "d: plugin \"4\" => manager \"\""]
        );
    }

    #[test]
    fn an_empty_item_never_compares_equal() {
        let host = Fingerprint::parse("a=1\nb=\n");
        let diffs: Vec<String> = host.differences(&host.clone()).iter().map(|d| d.item.clone()).collect();
        assert_eq!(diffs, ["b"]);
        assert_eq!(Fingerprint::current().differences(&Fingerprint::current()), []);
    }

    #[test]
    fn the_panic_item_comes_from_cfg_not_from_the_build_script() {
        assert_eq!(Fingerprint::current().get("panic"), Some(if cfg!(panic = "unwind") { "unwind" } else { "abort" }));
    }
}
