//! # manager: the damocles-rs storage manager daemon
//!
//! The daemon's building blocks: the [plugin loader and registry](plugins), the [KV drivers](kvstore).
//! The `damocles-manager` binary (`src/main.rs`) wires them together.

pub mod kvstore;
pub mod plugins;
