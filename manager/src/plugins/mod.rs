//! Plugin loading: [`library`] opens and checks one `.so`, [`registry`] manages all of them, [`log_sink`]
//! receives their forwarded logs.

pub mod library;
pub mod log_sink;
pub mod registry;

pub use library::LoadError;
pub use registry::{PluginInfo, PluginRecord, PluginRegistry, PluginsDirError, SyncLag};
