//! The embedded section ([`SECTION_NAME`](super::SECTION_NAME)): what the host checks, stored as plain bytes in
//! the file so it can be read without mapping or running anything.
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! magic "DMCLSPLG" (8 bytes) | format version u32 | record count u32 |
//! record*: tag u8 | key length u16 | key (UTF-8) | value length u32 | value (UTF-8)
//! ```
//!
//! Tag [`TAG_FINGERPRINT`] records are fingerprint items; tag [`TAG_INFO`] records are the fields named by the
//! `FIELD_*` constants. Generated wrappers emit it with [`plugin_section!`](crate::plugin_section), the manager
//! binary with [`manager_section!`](crate::manager_section); [`decode`] reads it back, checking every length.

use std::collections::BTreeMap;

use super::Fingerprint;

/// First bytes of the section.
pub const MAGIC: [u8; 8] = *b"DMCLSPLG";
/// Layout version of the section; bumped whenever the layout changes.
pub const FORMAT_VERSION: u32 = 2;
/// Record tag of a fingerprint item.
pub const TAG_FINGERPRINT: u8 = 1;
/// Record tag of an info field.
pub const TAG_INFO: u8 = 2;
/// Info field: `plugin` or `manager`.
pub const FIELD_ROLE: &str = "role";
/// Info field: the plugin's `manifest.toml` text.
pub const FIELD_MANIFEST: &str = "manifest";
/// Info field: when `plugin build` built it (RFC 3339).
pub const FIELD_BUILD_TIME: &str = "build-time";
/// Info field: the SDK version it was built with.
pub const FIELD_SDK_VERSION: &str = "sdk-version";
/// Role of a plugin's section.
pub const ROLE_PLUGIN: &str = "plugin";
/// Role of the manager binary's section.
pub const ROLE_MANAGER: &str = "manager";
/// Largest section the reader accepts (a manifest is a few KiB).
pub const MAX_SECTION_LEN: usize = 1 << 20;
/// Largest number of records the reader accepts.
pub const MAX_RECORDS: u32 = 256;

/// A group of records with the same tag (usable in constants).
#[derive(Debug, Clone, Copy)]
pub struct Group<'a> {
    /// [`TAG_FINGERPRINT`] or [`TAG_INFO`].
    pub tag: u8,
    /// `(key, value)` pairs.
    pub items: &'a [(&'a str, &'a str)],
}

/// The encoded length of `groups`.
pub const fn encoded_len(groups: &[Group<'_>]) -> usize {
    let mut len = 16;
    let mut g = 0;
    while g < groups.len() {
        let mut i = 0;
        while i < groups[g].items.len() {
            len += 1 + 2 + groups[g].items[i].0.len() + 4 + groups[g].items[i].1.len();
            i += 1;
        }
        g += 1;
    }
    len
}

const fn put(out: &mut [u8], at: usize, bytes: &[u8]) -> usize {
    let mut i = 0;
    while i < bytes.len() {
        out[at + i] = bytes[i];
        i += 1;
    }
    at + bytes.len()
}

/// Encodes `groups`; `N` must be [`encoded_len`]`(groups)` (a compile error otherwise, in a constant).
pub const fn encode<const N: usize>(groups: &[Group<'_>]) -> [u8; N] {
    assert!(N == encoded_len(groups), "section length differs from encoded_len");
    let mut out = [0u8; N];
    let mut count: u32 = 0;
    let mut g = 0;
    while g < groups.len() {
        count += groups[g].items.len() as u32;
        g += 1;
    }
    let mut at = put(&mut out, 0, &MAGIC);
    at = put(&mut out, at, &FORMAT_VERSION.to_le_bytes());
    at = put(&mut out, at, &count.to_le_bytes());
    g = 0;
    while g < groups.len() {
        let mut i = 0;
        while i < groups[g].items.len() {
            let (key, value) = groups[g].items[i];
            assert!(key.len() <= u16::MAX as usize, "section key too long");
            at = put(&mut out, at, &[groups[g].tag]);
            at = put(&mut out, at, &(key.len() as u16).to_le_bytes());
            at = put(&mut out, at, key.as_bytes());
            at = put(&mut out, at, &(value.len() as u32).to_le_bytes());
            at = put(&mut out, at, value.as_bytes());
            i += 1;
        }
        g += 1;
    }
    out
}

/// Why section bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SectionError {
    /// Shorter than its own lengths say, or longer than [`MAX_SECTION_LEN`].
    #[error("section is truncated or oversized ({0})")]
    Bounds(String),
    /// Not our magic.
    #[error("wrong magic: not a damocles section")]
    Magic,
    /// Another layout version.
    #[error(
        "section format version {found} (this build reads version {FORMAT_VERSION}); rebuild the plugin with this manager's `plugin build`"
    )]
    Version {
        /// The version found.
        found: u32,
    },
    /// A record is malformed.
    #[error("record {index}: {reason}")]
    Record {
        /// Which record (0-based).
        index: u32,
        /// What is wrong.
        reason: String,
    },
}

/// A decoded section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// The fingerprint items.
    pub fingerprint: Fingerprint,
    /// The info fields (`role`, `manifest`, `build-time`, `sdk-version`).
    pub info: BTreeMap<String, String>,
}

impl Section {
    /// One info field.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.info.get(name).map(String::as_str)
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&end| end <= self.bytes.len());
        let end = end.ok_or_else(|| format!("{what} of {n} bytes at offset {} runs past the end", self.at))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        let bytes = self.take(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn text(&mut self, n: usize, what: &str) -> Result<&'a str, String> {
        std::str::from_utf8(self.take(n, what)?).map_err(|e| format!("{what} is not UTF-8: {e}"))
    }
}

/// Decodes section bytes, checking every length against the bytes actually present.
pub fn decode(bytes: &[u8]) -> Result<Section, SectionError> {
    if bytes.len() > MAX_SECTION_LEN {
        return Err(SectionError::Bounds(format!("{} bytes, at most {MAX_SECTION_LEN}", bytes.len())));
    }
    let mut cursor = Cursor { bytes, at: 0 };
    let magic: [u8; 8] = cursor.array("magic").map_err(SectionError::Bounds)?;
    if magic != MAGIC {
        return Err(SectionError::Magic);
    }
    let version = u32::from_le_bytes(cursor.array("format version").map_err(SectionError::Bounds)?);
    if version != FORMAT_VERSION {
        return Err(SectionError::Version { found: version });
    }
    let count = u32::from_le_bytes(cursor.array("record count").map_err(SectionError::Bounds)?);
    if count > MAX_RECORDS {
        return Err(SectionError::Bounds(format!("{count} records, at most {MAX_RECORDS}")));
    }
    let mut fingerprint = BTreeMap::new();
    let mut info = BTreeMap::new();
    for index in 0..count {
        let record = |reason: String| SectionError::Record { index, reason };
        let [tag] = cursor.array::<1>("tag").map_err(record)?;
        let key_len = u16::from_le_bytes(cursor.array("key length").map_err(record)?);
        let key = cursor.text(usize::from(key_len), "key").map_err(record)?;
        let value_len = u32::from_le_bytes(cursor.array("value length").map_err(record)?);
        let value_len = usize::try_from(value_len).map_err(|e| record(e.to_string()))?;
        let value = cursor.text(value_len, "value").map_err(record)?;
        let map = match tag {
            TAG_FINGERPRINT => &mut fingerprint,
            TAG_INFO => &mut info,
            other => return Err(record(format!("unknown tag {other}"))),
        };
        if map.insert(key.to_string(), value.to_string()).is_some() {
            return Err(record(format!("duplicate key {key:?}")));
        }
    }
    if cursor.at != bytes.len() {
        return Err(SectionError::Bounds(format!("{} bytes after the last record", bytes.len() - cursor.at)));
    }
    Ok(Section { fingerprint: Fingerprint::from_items(fingerprint), info })
}

/// Emits a `.damocles_plugin` section: this SDK's fingerprint items, then `extra` groups. Refuses to compile when
/// `codegen` (the `plugin` tool's codegen version) is not this SDK's. The one body behind [`plugin_section!`],
/// [`process_plugin_section!`](crate::process_plugin_section) and [`manager_section!`]; not for direct use.
#[doc(hidden)]
#[macro_export]
macro_rules! __damocles_section {
    (codegen_version: $codegen:expr, extra: [$($group:expr),* $(,)?]) => {
        const _: () = assert!(
            $crate::abi::const_str_eq($codegen, $crate::abi::CODEGEN_VERSION),
            "this `plugin` tool generates code for another version of manager-plugin: build the plugin with the \
             `plugin` tool of the manager's workspace (`cargo run -p plugin -- build`)"
        );
        const __DAMOCLES_SECTION_GROUPS: &[$crate::abi::section::Group<'static>] = &[
            $crate::abi::section::Group { tag: $crate::abi::section::TAG_FINGERPRINT, items: $crate::abi::BUILD_ITEMS },
            $crate::abi::section::Group { tag: $crate::abi::section::TAG_FINGERPRINT, items: $crate::abi::CFG_ITEMS },
            $($group),*
        ];
        #[used]
        #[unsafe(link_section = ".damocles_plugin")]
        static __DAMOCLES_SECTION: [u8; $crate::abi::section::encoded_len(__DAMOCLES_SECTION_GROUPS)] =
            $crate::abi::section::encode(__DAMOCLES_SECTION_GROUPS);
    };
}

/// Emits a generated plugin's section: this SDK's fingerprint items plus the `plugin` tool's codegen version,
/// the manifest text, the build time and the SDK version. Used by the code `plugin build` generates; refuses to
/// compile when the tool's codegen version is not this SDK's.
#[macro_export]
macro_rules! plugin_section {
    (manifest: $manifest:expr, build_time: $build_time:expr, codegen_version: $codegen:expr $(,)?) => {
        $crate::__damocles_section!(
            codegen_version: $codegen,
            extra: [
                $crate::abi::section::Group {
                    tag: $crate::abi::section::TAG_FINGERPRINT,
                    items: &[($crate::abi::CODEGEN_ITEM, $codegen)],
                },
                $crate::abi::section::Group {
                    tag: $crate::abi::section::TAG_INFO,
                    items: &[
                        ($crate::abi::section::FIELD_ROLE, $crate::abi::section::ROLE_PLUGIN),
                        ($crate::abi::section::FIELD_MANIFEST, $manifest),
                        ($crate::abi::section::FIELD_BUILD_TIME, $build_time),
                        ($crate::abi::section::FIELD_SDK_VERSION, $crate::abi::SDK_VERSION),
                    ],
                },
            ]
        );
    };
}

/// Emits the manager binary's own section (its fingerprint), so tools can read it without running the binary.
#[macro_export]
macro_rules! manager_section {
    () => {
        $crate::__damocles_section!(
            codegen_version: $crate::abi::CODEGEN_VERSION,
            extra: [
                $crate::abi::section::Group {
                    tag: $crate::abi::section::TAG_FINGERPRINT,
                    items: &[($crate::abi::CODEGEN_ITEM, $crate::abi::CODEGEN_VERSION)],
                },
                $crate::abi::section::Group {
                    tag: $crate::abi::section::TAG_INFO,
                    items: &[
                        ($crate::abi::section::FIELD_ROLE, $crate::abi::section::ROLE_MANAGER),
                        ($crate::abi::section::FIELD_SDK_VERSION, $crate::abi::SDK_VERSION),
                    ],
                },
            ]
        );
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    const GROUPS: &[Group<'static>] = &[
        Group { tag: TAG_FINGERPRINT, items: &[("rustc-release", "1.95.0"), ("panic", "unwind")] },
        Group { tag: TAG_INFO, items: &[(FIELD_ROLE, ROLE_PLUGIN), (FIELD_MANIFEST, "name = \"x\"")] },
    ];
    const BYTES: [u8; encoded_len(GROUPS)] = encode(GROUPS);

    #[test]
    fn encoded_constants_decode_to_the_same_records() {
        let section = decode(&BYTES).unwrap();
        assert_eq!(section.fingerprint.get("rustc-release"), Some("1.95.0"));
        assert_eq!(section.fingerprint.get("panic"), Some("unwind"));
        assert_eq!(section.field(FIELD_MANIFEST), Some("name = \"x\""));
        assert_eq!(section.field(FIELD_ROLE), Some(ROLE_PLUGIN));
    }

    #[test]
    fn every_truncation_and_every_oversized_length_is_an_error_not_a_panic() {
        for len in 0..BYTES.len() {
            assert!(decode(&BYTES[..len]).is_err(), "prefix of {len} bytes accepted");
        }
        // Each 4-byte window set to u32::MAX: lengths beyond the bytes are refused.
        for at in 0..BYTES.len() - 4 {
            let mut bytes = BYTES;
            bytes[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
            let _ = decode(&bytes);
        }
        let mut longer = BYTES.to_vec();
        longer.push(0);
        assert!(matches!(decode(&longer), Err(SectionError::Bounds(_))));
    }

    #[test]
    fn invalid_utf8_wrong_magic_and_other_versions_are_refused() {
        let mut bytes = BYTES;
        let last = bytes.len() - 1;
        bytes[last] = 0xff;
        assert!(matches!(decode(&bytes), Err(SectionError::Record { reason, .. }) if reason.contains("UTF-8")));
        let mut bytes = BYTES;
        bytes[0] = b'X';
        assert_eq!(decode(&bytes), Err(SectionError::Magic));
        let mut bytes = BYTES;
        bytes[8] = 9;
        assert_eq!(decode(&bytes), Err(SectionError::Version { found: 9 }));
    }
}
