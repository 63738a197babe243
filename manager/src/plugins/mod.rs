//! Plugin loading: [`library`] opens and checks one `.so`, [`registry`] manages all of them, [`log_sink`]
//! receives their forwarded logs, [`host_callback`] keeps host panics out of plugin frames.

pub mod host_callback;
pub mod library;
pub mod log_sink;
pub mod registry;

pub use library::LoadError;
pub use registry::{PluginInfo, PluginRecord, PluginRegistry, PluginsDirError, SyncLag};
