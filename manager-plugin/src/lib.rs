//! # manager-plugin: the damocles-rs plugin SDK
//!
//! Everything a plugin and the manager share: the [`manifest`], the SPI traits of the four plugin kinds
//! ([`kv`], [`filestore`], [`sync`], [`jsonrpc`]), the [sector data model](sector), the [ABI header and
//! fingerprint](abi), and the plugin-side [guards](guard) and [`glue`] that `plugin build` wires up.
//!
//! A plugin is a plain library crate with a `manifest.toml`; the functions it names there use only this crate's
//! types and std's. `plugin new --kind <Kind> NAME` creates one that builds and loads as it is, and
//! `plugin build --src-dir my-plugin --out-dir <plugins dir>` turns it into `<plugins dir>/plugin-<name>.so`.
//! The walk-through, the manifest reference and troubleshooting are in `docs/plugin-guide.md`.
//!
//! # One example per kind
//!
//! **KVStore** (`export = [{ extPoint = "Constructor", impl = "open" }]`): a [`kv::Db`] of [`kv::KvStore`]
//! collections, configured by `[Common.DB.Plugin.Meta]`.
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
//! pub fn open(_meta: &Meta) -> Result<MyDb, String> { Ok(MyDb) }
//! # assert!(open(&Meta::new()).unwrap().open_collection("online").is_err());
//! ```
//!
//! **FileStore** (`export = [{ extPoint = "Constructor", impl = "open" }]`): one [`filestore::Store`] per
//! `[[Common.PieceStores]]` / `[[Common.PersistStores]]` entry naming the plugin.
//!
//! ```
//! use std::io::Read;
//! use std::path::PathBuf;
//! use manager_plugin::filestore::{InstanceInfo, ObjectReader, ObjectStat, Store, StoreConfig, StoreError};
//!
//! /// A store that holds nothing (each method shows the error the manager expects).
//! pub struct Empty(StoreConfig);
//! impl Store for Empty {
//!     fn type_name(&self) -> String { "empty".into() }
//!     fn version(&self) -> String { "1".into() }
//!     fn instance(&self) -> String { self.0.name.clone() }
//!     fn instance_config(&self) -> StoreConfig { self.0.clone() }
//!     fn instance_info(&self) -> Result<InstanceInfo, StoreError> {
//!         Ok(InstanceInfo { config: self.0.clone(), total: 0, free: 0, used: 0 })
//!     }
//!     fn get(&self, path: &str) -> Result<ObjectReader, StoreError> { Err(StoreError::NotFound(path.into())) }
//!     fn del(&self, path: &str) -> Result<(), StoreError> { Err(StoreError::NotFound(path.into())) }
//!     fn stat(&self, path: &str) -> Result<ObjectStat, StoreError> { Err(StoreError::NotFound(path.into())) }
//!     fn put(&self, _path: &str, _reader: &mut dyn Read) -> Result<u64, StoreError> {
//!         Err(StoreError::ReadOnly(self.0.name.clone()))
//!     }
//!     fn full_path(&self, path: &str) -> Result<PathBuf, StoreError> {
//!         manager_plugin::filestore::validate_object_path(path)?;
//!         Err(StoreError::NotFound(path.into()))
//!     }
//! }
//!
//! pub fn open(config: StoreConfig) -> Result<Empty, String> { Ok(Empty(config)) }
//! # assert!(open(StoreConfig::default()).unwrap().stat("x").is_err());
//! ```
//!
//! **SyncSectorState** (`export = [{ extPoint = "OnUpdate", impl = "on_update" }]`, any of the five hooks): each
//! hook takes its own event from [`sync`]; `OnUpdate` gets an [`sync::UpdateEvent`]. Delivery is at least once, in
//! order per sector.
//!
//! ```
//! use manager_plugin::sync::UpdateEvent;
//!
//! pub fn on_update(event: &UpdateEvent) -> Result<(), String> {
//!     let latest = event.state.latest_state.as_ref().map_or("", |r| r.state_change.next.as_str());
//!     println!("sector {} is now {latest}", event.sector_id);
//!     Ok(())
//! }
//! ```
//!
//! **RegisterJsonRpc** (`export = [{ extPoint = "Handler", impl = "handler" }]`): a namespace and a
//! [`jsonrpc::JsonRpcHandler`]; params and results are JSON text.
//!
//! ```
//! use manager_plugin::RpcError;
//! use manager_plugin::jsonrpc::JsonRpcHandler;
//!
//! pub struct Ping;
//! impl JsonRpcHandler for Ping {
//!     fn methods(&self) -> Vec<String> { vec!["Ping".into()] }
//!     fn call(&self, method: &str, _params: &str) -> Result<String, RpcError> {
//!         match method {
//!             "Ping" => Ok("\"pong\"".into()),
//!             other => Err(RpcError::new(RpcError::METHOD_NOT_FOUND, format!("no method {other}"))),
//!         }
//!     }
//! }
//!
//! /// Mounted as `Pinger.Ping`.
//! pub fn handler() -> Result<(String, Ping), String> { Ok(("Pinger".into(), Ping)) }
//! # assert_eq!(handler().unwrap().1.call("Ping", "[]").unwrap(), "\"pong\"");
//! ```
//!
//! Any kind may also name lifecycle functions: `onInit = "init"`, `fn(&PluginContext) -> Result<(), E>`, run once
//! after loading (not the SyncSectorState `OnInit` hook, which is an event), and `onShutdown`.

#![deny(missing_docs)]

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
pub mod process;
pub mod process_alloc;
pub mod sector;
pub mod sync;

pub use error::{KvError, PluginError, RpcError, StoreError};
pub use lifecycle::{PluginContext, PluginState};
pub use manifest::{Kind, Manifest};
