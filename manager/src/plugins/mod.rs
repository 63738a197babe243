//! Plugin loading: [`library`] opens and checks one `.so`, [`process`] starts a process plugin and speaks to it,
//! [`backend`] is where a plugin's code runs (either), [`registry`] manages all of them, [`log_sink`]
//! receives their forwarded logs, [`host_callback`] keeps host panics out of plugin frames and [`host_adapter`]
//! applies it to every closure the host passes into a plugin object; [`selftest`] is `plugin test`'s conformance run.

pub mod backend;
pub mod host_adapter;
pub mod host_callback;
pub mod library;
pub mod log_sink;
pub mod probe;
pub mod process;
pub mod registry;
pub mod selftest;

pub use library::LoadError;
pub use registry::{Control, LoadOptions, PluginInfo, PluginRecord, PluginRegistry, PluginsDirError, SyncLag};

// The manager binary's own fingerprint, in the same kind of section plugins carry, so `plugin inspect --manager`
// can compare a plugin with a manager binary without running it.
manager_plugin::manager_section!();
