//! A plugin or manager file read from its bytes: its structure checked, its embedded section decoded.

use manager_plugin::abi::section::{
    self, FIELD_BUILD_TIME, FIELD_MANIFEST, FIELD_ROLE, FIELD_SDK_VERSION, ROLE_MANAGER, ROLE_PLUGIN, Section,
};
use manager_plugin::abi::{Fingerprint, MODULE_SYMBOL, SECTION_NAME};
use manager_plugin::manifest::Manifest;

use crate::elf::{self, Elf, Expect};
use crate::limits::{Budget, DEFAULT_TIME_BUDGET};
use crate::refusal::Refusal;
use crate::symbols;

/// Which kind of file the embedded section describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A plugin built by `plugin build`.
    Plugin,
    /// The `damocles-manager` binary.
    Manager,
    /// An executable built by `plugin build --process`, run as a child process of the manager.
    ProcessPlugin,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Plugin => ROLE_PLUGIN,
            Role::Manager => ROLE_MANAGER,
            Role::ProcessPlugin => manager_plugin::process::ROLE_PROCESS_PLUGIN,
        }
    }
}

/// A file whose structure passed [`elf::parse`] and whose embedded section decoded.
pub struct Image<'a> {
    elf: Elf<'a>,
    section: Section,
}

/// What [`Image::check`] established about a plugin that may be loaded.
#[derive(Debug, Clone)]
pub struct CheckedPlugin {
    /// The validated manifest.
    pub manifest: Manifest,
    /// When `plugin build` built it.
    pub build_time: String,
}

impl<'a> Image<'a> {
    /// Reads a plugin file's bytes within the default time budget.
    pub fn read_plugin(bytes: &'a [u8]) -> Result<Image<'a>, Refusal> {
        Image::read_plugin_within(bytes, &Budget::start(DEFAULT_TIME_BUDGET))
    }

    /// Reads a plugin file's bytes: one parse, all structural checks, within `budget`.
    pub fn read_plugin_within(bytes: &'a [u8], budget: &Budget) -> Result<Image<'a>, Refusal> {
        Image::read(bytes, Role::Plugin, budget)
    }

    /// Reads a manager binary's bytes.
    pub fn read_manager(bytes: &'a [u8]) -> Result<Image<'a>, Refusal> {
        Image::read(bytes, Role::Manager, &Budget::start(DEFAULT_TIME_BUDGET))
    }

    /// Reads a process plugin's bytes (an executable; nothing of it runs), within `budget`.
    pub fn read_process_plugin_within(bytes: &'a [u8], budget: &Budget) -> Result<Image<'a>, Refusal> {
        Image::read(bytes, Role::ProcessPlugin, budget)
    }

    /// [`read_process_plugin_within`](Self::read_process_plugin_within) with the default time budget.
    pub fn read_process_plugin(bytes: &'a [u8]) -> Result<Image<'a>, Refusal> {
        Image::read(bytes, Role::ProcessPlugin, &Budget::start(DEFAULT_TIME_BUDGET))
    }

    fn read(bytes: &'a [u8], role: Role, budget: &Budget) -> Result<Image<'a>, Refusal> {
        let expect = match role {
            Role::Plugin => Expect::SharedObject,
            Role::Manager | Role::ProcessPlugin => Expect::Executable,
        };
        let elf = elf::parse(bytes, expect, budget)?;
        let data = elf::section_data(&elf, SECTION_NAME)?.ok_or(Refusal::NoSection)?;
        let section = section::decode(data)?;
        let found = section.field(FIELD_ROLE).unwrap_or_default();
        if found != role.as_str() {
            return Err(Refusal::Role { found: found.to_string(), expected: role.as_str() });
        }
        Ok(Image { elf, section })
    }

    /// The fingerprint the file carries.
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.section.fingerprint
    }

    /// The embedded manifest text (empty for a manager binary).
    pub fn manifest_text(&self) -> &str {
        self.section.field(FIELD_MANIFEST).unwrap_or_default()
    }

    /// The embedded build time (empty for a manager binary).
    pub fn build_time(&self) -> &str {
        self.section.field(FIELD_BUILD_TIME).unwrap_or_default()
    }

    /// An info field of the section (e.g. a process plugin's `protocol`), if present.
    pub fn info_field(&self, name: &str) -> Option<&str> {
        self.section.field(name)
    }

    /// The SDK version it was built with.
    pub fn sdk_version(&self) -> &str {
        self.section.field(FIELD_SDK_VERSION).unwrap_or_default()
    }

    /// The manifest, parsed and validated; `file` names it in errors.
    pub fn manifest(&self, file: &str) -> Result<Manifest, Refusal> {
        Manifest::parse(self.manifest_text(), &format!("{file}:manifest.toml"))
            .map_err(|e| Refusal::Manifest(e.to_string()))
    }

    /// The fingerprint items where this file differs from `host`.
    pub fn differences(&self, host: &Fingerprint) -> Vec<manager_plugin::abi::FingerprintDifference> {
        host.differences(self.fingerprint())
    }

    /// The allocator symbols the file defines (should be none).
    pub fn own_allocator_symbols(&self) -> Vec<String> {
        symbols::own_allocator_symbols(&self.elf)
    }

    /// Whether the Rust-ABI entry point is a defined function in an executable segment.
    pub fn check_entry_point(&self) -> Result<(), Refusal> {
        symbols::check_entry_point(&self.elf, MODULE_SYMBOL)
    }

    /// Everything the host checks before mapping a plugin, in order: fingerprint, manifest, entry point,
    /// allocator. `file` names the file in manifest errors. A refusal here leaves the image readable, so a caller
    /// names the plugin from [`manifest`](Self::manifest) without parsing the file again.
    pub fn check(&self, host: &Fingerprint, file: &str) -> Result<CheckedPlugin, Refusal> {
        let manifest = self.manifest(file);
        let differences = self.differences(host);
        if !differences.is_empty() {
            let name = manifest.as_ref().map(|m| m.name.clone()).unwrap_or_else(|_| "?".into());
            return Err(Refusal::FingerprintMismatch { name, differences });
        }
        let manifest = manifest?;
        self.check_entry_point()?;
        let allocator = self.own_allocator_symbols();
        if !allocator.is_empty() {
            return Err(Refusal::OwnAllocator(allocator));
        }
        Ok(CheckedPlugin { manifest, build_time: self.build_time().to_string() })
    }
}
