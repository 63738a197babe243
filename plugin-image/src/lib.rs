//! # plugin-image: a plugin file judged from its bytes
//!
//! Everything the manager decides before it maps a plugin, and everything `plugin inspect` shows, comes from
//! here: [`elf`] checks that the file is a complete, self-consistent ELF shared object for this machine (every
//! segment, section and dynamic-table address inside the file), [`symbols`] that the exported entry point is a
//! defined function in an executable segment and that the file does not bring its own allocator, and [`Image`]
//! reads the embedded section (fingerprint, manifest, build time, SDK version) and [`Image::check`] compares it
//! with the host. Nothing of the file is mapped, relocated or run. [`limits`] bounds the cost of all of it: a size
//! cap read from metadata before reading, and a time budget for the checks.

#![warn(missing_docs)]

pub mod elf;
mod image;
pub mod limits;
mod refusal;
pub mod symbols;

pub use image::{CheckedPlugin, Image, Role};
pub use refusal::Refusal;
