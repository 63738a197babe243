//! The C-ABI header every plugin exports, and the ABI fingerprint it carries.
//!
//! The host reads the header through one `extern "C"` symbol ([`HEADER_SYMBOL`]) and compares the fingerprint
//! with its own before it resolves any Rust-ABI symbol: Rust-ABI calls are sound only between builds made by the
//! same compiler from the same SDK sources and features (see `docs/plugin-abi.md`).

use std::collections::BTreeMap;
use std::fmt;

/// The ABI fingerprint of this build: `key=value` lines.
pub const FINGERPRINT: &str = include_str!(concat!(env!("OUT_DIR"), "/fingerprint.txt"));
/// Identifies a damocles plugin header.
pub const MAGIC: [u8; 8] = *b"DMCLSPLG";
/// Layout version of [`PluginHeader`]; bumped whenever the header changes.
pub const HEADER_VERSION: u32 = 1;
/// The `extern "C" fn() -> *const PluginHeader` every plugin exports.
pub const HEADER_SYMBOL: &str = "damocles_plugin_header";
/// The Rust-ABI `fn() -> PluginModule` every plugin exports; resolved only after the fingerprint matched.
pub const MODULE_SYMBOL: &str = "damocles_plugin_module";

/// Signature of [`HEADER_SYMBOL`].
pub type HeaderFn = unsafe extern "C" fn() -> *const PluginHeader;

/// A borrowed UTF-8 string in C layout.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RawStr {
    /// First byte.
    pub ptr: *const u8,
    /// Length in bytes.
    pub len: usize,
}

impl RawStr {
    /// Borrows a static string.
    pub const fn new(s: &'static str) -> Self {
        RawStr { ptr: s.as_ptr(), len: s.len() }
    }

    /// The string, or `None` if it is not UTF-8.
    ///
    /// # Safety
    /// `ptr` must point to `len` readable bytes that live as long as `'a`.
    pub unsafe fn as_str<'a>(&self) -> Option<&'a str> {
        if self.ptr.is_null() {
            return None;
        }
        // SAFETY: the caller guarantees `ptr..ptr+len` is readable for 'a.
        let bytes = unsafe { std::slice::from_raw_parts(self.ptr, self.len) };
        std::str::from_utf8(bytes).ok()
    }
}

/// The header a plugin exports in C layout: readable whatever compiler built the plugin.
#[repr(C)]
#[derive(Debug)]
pub struct PluginHeader {
    /// Must equal [`MAGIC`].
    pub magic: [u8; 8],
    /// Must equal [`HEADER_VERSION`].
    pub header_version: u32,
    /// The plugin's [`FINGERPRINT`].
    pub fingerprint: RawStr,
    /// The plugin's `manifest.toml` text.
    pub manifest: RawStr,
    /// When `plugin build` built it (RFC 3339).
    pub build_time: RawStr,
}

// SAFETY: the header only points to immutable 'static data.
unsafe impl Sync for PluginHeader {}

impl PluginHeader {
    /// The header for a plugin with this manifest text and build time (used by generated glue).
    pub const fn new(manifest: &'static str, build_time: &'static str) -> Self {
        PluginHeader {
            magic: MAGIC,
            header_version: HEADER_VERSION,
            fingerprint: RawStr::new(FINGERPRINT),
            manifest: RawStr::new(manifest),
            build_time: RawStr::new(build_time),
        }
    }
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
    /// This build's fingerprint.
    pub fn current() -> Fingerprint {
        Fingerprint::parse(FINGERPRINT)
    }

    /// Parses `key=value` lines; other lines are ignored.
    pub fn parse(text: &str) -> Fingerprint {
        let items =
            text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Fingerprint { items }
    }

    /// The value of one item.
    pub fn get(&self, item: &str) -> Option<&str> {
        self.items.get(item).map(String::as_str)
    }

    /// Every item where `plugin` differs from `self` (the host), in item order.
    pub fn differences(&self, plugin: &Fingerprint) -> Vec<FingerprintDifference> {
        let mut keys: Vec<&String> = self.items.keys().chain(plugin.items.keys()).collect();
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .filter(|k| self.items.get(*k) != plugin.items.get(*k))
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
        for item in
            ["rustc-release", "rustc-commit", "target", "debug-assertions", "panic", "sdk-version", "sdk-source"]
        {
            assert!(fp.get(item).is_some_and(|v| !v.is_empty()), "missing {item} in {FINGERPRINT}");
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
}
