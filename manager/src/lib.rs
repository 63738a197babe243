//! # manager: the damocles-rs storage manager daemon
//!
//! The daemon's building blocks; the `damocles-manager` binary (`src/main.rs`) wires them together.
//!
//! - [`config`]: `sector-manager.cfg` (TOML, the Go manager's shape) and [`home`]: the home directory and token.
//! - [`db_identity`]: the check that the database is the one the home used before.
//! - [`plugins`]: loading and registry of `.so` plugins.
//! - [`kvstore`]: built-in KV drivers (RocksDB, Redis) behind the SDK's KV traits.
//! - [`sectors`]: the sector state manager and the durable event outbox for SyncSectorState plugins.
//! - [`filestore`]: piece and persist stores (built-in local or plugin) and space reservations.
//! - [`rpc`]: the JSON-RPC server (`Venus`, `Plugins`, plugin namespaces) and piece HTTP.
//! - [`metrics`]: Prometheus metrics at `/metrics`.
//! - [`daemon`]: start-up and shutdown.

pub mod chain;
pub mod config;
pub mod daemon;
pub mod db_identity;
pub mod filestore;
pub mod home;
pub mod kvstore;
pub mod metrics;
pub mod plugins;
pub mod rpc;
pub mod sectors;
