//! The errors of `check-dep`. A difference between plugin and manager is not an error: it is a line of the
//! [`CheckReport`](super::CheckReport); these are the cases where check-dep could not find out or could not
//! put things back.

use std::path::PathBuf;

use super::graph::GraphError;

/// Why `check-dep` could not check or fix a plugin. Every variant names the file or crate involved.
#[derive(Debug, thiserror::Error)]
pub enum CheckDepError {
    /// The given path is neither a `Cargo.toml` nor a directory holding one.
    #[error("{path}: no Cargo.toml there; give the plugin crate's Cargo.toml or its directory")]
    ManifestNotFound {
        /// The path as given.
        path: PathBuf,
    },

    /// Cargo could not resolve the plugin's dependency graph.
    #[error("cannot resolve the dependency graph of {manifest}: {source}")]
    Resolve {
        /// The plugin manifest.
        manifest: PathBuf,
        /// What cargo (or the output parser) said.
        #[source]
        source: GraphError,
    },

    /// The manager's graph compiled into this tool does not parse (a bug in the tool's build).
    #[error("the manager's dependency graph built into this plugin tool is unreadable ({reason}); rebuild the tool")]
    ManagerGraph {
        /// The parse error.
        reason: String,
    },

    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The plugin's `Cargo.toml` is not valid TOML.
    #[error("{manifest}: {source}")]
    ManifestSyntax {
        /// The plugin manifest.
        manifest: PathBuf,
        /// The TOML error.
        #[source]
        source: toml_edit::TomlError,
    },

    /// The plugin's `Cargo.lock` is not what cargo writes.
    #[error("{lockfile}: {reason}")]
    Lockfile {
        /// The lockfile.
        lockfile: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// `--fix` could not put a file back the way it was. The original content is kept at `kept`.
    #[error(
        "could not restore {file} after a failed --fix ({source}); its original content is kept in {kept}: copy it back by hand"
    )]
    RestoreFailed {
        /// The file that could not be restored.
        file: PathBuf,
        /// Where its original content is.
        kept: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}
