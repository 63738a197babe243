//! # plugin: the damocles-rs plugin author's tool
//!
//! - [`cli`]: the command line (`plugin new | build | check-dep | inspect | test`).
//! - [`new`]: creates a plugin crate of a given kind that builds and loads unchanged.
//! - [`build`]: turns a plain library crate with a `manifest.toml` into `plugin-<name>.so`.
//! - [`check_dep`]: compares a plugin's dependency graph with the manager's, offline, and can pin it.
//! - [`inspect`]: reads a built plugin without running it and says whether a manager would load it.
//! - [`manager_bin`]: which `damocles-manager` binary `inspect` and `test` compare with by default.
//! - [`test_plugin`]: loads a built plugin as a manager does and runs its kind's conformance suite.

pub mod build;
pub mod check_dep;
pub mod cli;
pub mod inspect;
pub mod manager_bin;
pub mod new;
pub mod test_plugin;
