//! The RegisterJsonRpc SPI: a plugin answers JSON-RPC calls in its own namespace.
//!
//! JSON crosses the boundary as text (never as a `serde_json::Value`, whose layout belongs to one build), so the
//! plugin parses `params` with its own serde_json and returns its result serialized.

pub use crate::error::RpcError;

/// Answers the methods of one namespace; mounted by the manager as `<namespace>.<Method>`.
pub trait JsonRpcHandler: Send + Sync {
    /// The method names (without namespace) this handler answers.
    fn methods(&self) -> Vec<String>;
    /// Calls `method` with `params` (a JSON array or object, as text) and returns the result as JSON text.
    fn call(&self, method: &str, params: &str) -> Result<String, RpcError>;
}
