//! Errors that cross the plugin boundary. They carry only strings and std types, so the host can inspect them
//! whichever copy of std produced them.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Implemented by every boundary error so the guards can turn a caught panic into an error of the right type
/// and the registry can tell failures apart from ordinary answers (such as "key not found").
pub trait BoundaryError: Sized {
    /// The error reported for a panic caught inside plugin code.
    fn from_panic(message: String) -> Self;
    /// Whether this error is a caught panic.
    fn is_panic(&self) -> bool;
    /// Whether this error means the plugin failed (as opposed to an expected answer such as not-found).
    fn is_failure(&self) -> bool;
}

/// Error of a lifecycle call, constructor, hook or handler lookup.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum PluginError {
    /// The plugin reported a failure.
    #[error("{0}")]
    Failed(String),
    /// The plugin panicked; the panic was caught inside the plugin.
    #[error("plugin panicked: {0}")]
    Panicked(String),
}

impl PluginError {
    /// A failure with the given message.
    pub fn msg(message: impl fmt::Display) -> Self {
        PluginError::Failed(message.to_string())
    }
}

impl BoundaryError for PluginError {
    fn from_panic(message: String) -> Self {
        PluginError::Panicked(message)
    }
    fn is_panic(&self) -> bool {
        matches!(self, PluginError::Panicked(_))
    }
    fn is_failure(&self) -> bool {
        true
    }
}

/// Error of a key-value store operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum KvError {
    /// The key does not exist. Expected by callers; not a failure.
    #[error("key not found")]
    KeyNotFound,
    /// A transaction conflicted with a concurrent one; retry it if `need_retry_transactions()` says so.
    #[error("transaction conflict")]
    Conflict,
    /// The database was closed.
    #[error("database is closed")]
    Closed,
    /// An error raised by a caller's transaction closure, passed through unchanged.
    #[error("{0}")]
    Aborted(String),
    /// The backend failed (I/O, protocol, corruption...).
    #[error("{0}")]
    Backend(String),
    /// The plugin panicked; the panic was caught inside the plugin.
    #[error("plugin panicked: {0}")]
    Panicked(String),
}

impl BoundaryError for KvError {
    fn from_panic(message: String) -> Self {
        KvError::Panicked(message)
    }
    fn is_panic(&self) -> bool {
        matches!(self, KvError::Panicked(_))
    }
    fn is_failure(&self) -> bool {
        matches!(self, KvError::Backend(_) | KvError::Panicked(_) | KvError::Closed)
    }
}

/// Error of a file store operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum StoreError {
    /// No object at this path.
    #[error("object not found: {0}")]
    NotFound(String),
    /// The store is read-only; writes and deletes are refused.
    #[error("store {0} is read-only")]
    ReadOnly(String),
    /// The object path is not allowed (absolute, `..`, empty...).
    #[error("invalid object path {path:?}: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// Why it is refused.
        reason: String,
    },
    /// An I/O or backend failure.
    #[error("{0}")]
    Io(String),
    /// The plugin panicked; the panic was caught inside the plugin.
    #[error("plugin panicked: {0}")]
    Panicked(String),
}

impl StoreError {
    /// Wraps an I/O error with the operation and path it concerns.
    pub fn io(what: &str, path: &str, err: std::io::Error) -> Self {
        if matches!(err.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory) {
            StoreError::NotFound(path.to_string())
        } else {
            StoreError::Io(format!("{what} {path:?}: {err}"))
        }
    }
}

impl BoundaryError for StoreError {
    fn from_panic(message: String) -> Self {
        StoreError::Panicked(message)
    }
    fn is_panic(&self) -> bool {
        matches!(self, StoreError::Panicked(_))
    }
    fn is_failure(&self) -> bool {
        matches!(self, StoreError::Io(_) | StoreError::Panicked(_))
    }
}

/// A JSON-RPC error returned by a plugin handler.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{message} (code {code})")]
pub struct RpcError {
    /// JSON-RPC error code (e.g. -32601 method not found, -32602 invalid params).
    pub code: i32,
    /// Human-readable message.
    pub message: String,
}

impl RpcError {
    /// JSON-RPC "method not found".
    pub const METHOD_NOT_FOUND: i32 = -32601;
    /// JSON-RPC "invalid params".
    pub const INVALID_PARAMS: i32 = -32602;
    /// JSON-RPC "internal error".
    pub const INTERNAL: i32 = -32603;

    /// An error with the given code and message.
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        RpcError { code, message: message.into() }
    }
}

impl BoundaryError for RpcError {
    fn from_panic(message: String) -> Self {
        RpcError::new(RpcError::INTERNAL, format!("plugin panicked: {message}"))
    }
    fn is_panic(&self) -> bool {
        self.code == RpcError::INTERNAL && self.message.starts_with("plugin panicked: ")
    }
    fn is_failure(&self) -> bool {
        self.code == RpcError::INTERNAL
    }
}
