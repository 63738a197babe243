//! # manager-plugin: the damocles-rs plugin SDK
//!
//! Everything a plugin and the manager share: the [manifest](manifest), the SPI traits of the four plugin kinds
//! ([`kv`], [`filestore`], [`sync`], [`jsonrpc`]), the [sector data model](sector), the [ABI header and
//! fingerprint](abi), and the plugin-side [guards](guard) and [glue](glue) that `plugin build` wires up.
//!
//! A plugin is a plain library crate with a `manifest.toml`; its functions use only this crate's types and std's:
//!
//! ```
//! use manager_plugin::kv::{Db, KvError, KvStore, Meta};
//!
//! pub struct MyDb;
//! impl Db for MyDb {
//!     fn run(&self) -> Result<(), KvError> { Ok(()) }
//!     fn close(&self) -> Result<(), KvError> { Ok(()) }
//!     fn open_collection(&self, _name: &str) -> Result<Box<dyn KvStore>, KvError> {
//!         Err(KvError::Backend("no collections here".into()))
//!     }
//! }
//!
//! // manifest.toml: export = [{ extPoint = "Constructor", impl = "open" }]
//! pub fn open(_meta: &Meta) -> Result<MyDb, String> { Ok(MyDb) }
//! ```
//!
//! `cargo run -p plugin -- build --src-dir my-plugin --out-dir plugins` turns it into `plugins/plugin-<name>.so`.
//! See `docs/writing-plugins.md` for each kind's signatures.

#![warn(missing_docs)]

pub mod abi;
pub mod error;
pub mod filestore;
pub mod glue;
pub mod guard;
pub mod jsonrpc;
pub mod kv;
pub mod lifecycle;
mod logging;
pub mod manifest;
pub mod process_alloc;
pub mod sector;
pub mod sync;

pub use error::{KvError, PluginError, RpcError, StoreError};
pub use lifecycle::{PluginContext, PluginState};
pub use manifest::{Kind, Manifest};
