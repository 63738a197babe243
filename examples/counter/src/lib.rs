//! # counter: a RegisterJsonRpc plugin
//!
//! Mounts the JSON-RPC namespace `AtomicCounter` on the manager's server with three methods over named
//! in-memory counters (lost on restart):
//!
//! | method | params | result |
//! | --- | --- | --- |
//! | `AtomicCounter.Incr` | `["name"]` or `{"name": "..."}` | the new value (`i64`) |
//! | `AtomicCounter.Get` | same | the value, `0` if never incremented |
//! | `AtomicCounter.Reset` | same | `null`; the counter is back to `0` |
//!
//! Params and results cross the plugin boundary as JSON text and are parsed with the plugin's own `serde_json`:
//!
//! ```
//! use manager_plugin::jsonrpc::JsonRpcHandler;
//!
//! let (namespace, counters) = counter::handler().unwrap();
//! assert_eq!(namespace, "AtomicCounter");
//! assert_eq!(counters.call("Incr", r#"["jobs"]"#).unwrap(), "1");
//! assert_eq!(counters.call("Incr", r#"{"name": "jobs"}"#).unwrap(), "2");
//! assert_eq!(counters.call("Get", r#"["jobs"]"#).unwrap(), "2");
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Mutex, MutexGuard, PoisonError};

use manager_plugin::RpcError;
use manager_plugin::jsonrpc::JsonRpcHandler;
use serde_json::Value;

/// The namespace the methods are mounted under.
pub const NAMESPACE: &str = "AtomicCounter";

/// The methods answered, without namespace.
pub const METHODS: [&str; 3] = ["Incr", "Get", "Reset"];

/// Error code (JSON-RPC implementation-defined server error) of an `Incr` that would pass `i64::MAX`.
pub const OVERFLOW: i32 = -32000;

/// The Handler named in `manifest.toml`: returns [`NAMESPACE`] and a fresh set of counters.
pub fn handler() -> Result<(String, AtomicCounter), Infallible> {
    Ok((NAMESPACE.to_string(), AtomicCounter::new()))
}

/// Named counters, safe to share between threads. A counter never incremented (or reset) is `0`.
#[derive(Debug, Default)]
pub struct AtomicCounter {
    counters: Mutex<HashMap<String, i64>>,
}

impl AtomicCounter {
    /// An empty set of counters.
    pub fn new() -> AtomicCounter {
        AtomicCounter::default()
    }

    /// Adds one to `name` and returns the new value; fails with code [`OVERFLOW`] at `i64::MAX`.
    pub fn incr(&self, name: &str) -> Result<i64, RpcError> {
        let mut counters = self.lock();
        let value = counters.entry(name.to_string()).or_insert(0);
        *value = value
            .checked_add(1)
            .ok_or_else(|| RpcError::new(OVERFLOW, format!("counter {name:?} is at i64::MAX; Reset it")))?;
        Ok(*value)
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> i64 {
        self.lock().get(name).copied().unwrap_or(0)
    }

    /// Sets `name` back to `0`.
    pub fn reset(&self, name: &str) {
        self.lock().remove(name);
    }

    /// Locks the map, ignoring poisoning: no critical section can leave it half-updated.
    fn lock(&self) -> MutexGuard<'_, HashMap<String, i64>> {
        self.counters.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl JsonRpcHandler for AtomicCounter {
    fn methods(&self) -> Vec<String> {
        METHODS.iter().map(ToString::to_string).collect()
    }

    /// Unknown methods fail with [`RpcError::METHOD_NOT_FOUND`], bad params with [`RpcError::INVALID_PARAMS`];
    /// both messages name the method (and the parameter).
    fn call(&self, method: &str, params: &str) -> Result<String, RpcError> {
        if !METHODS.contains(&method) {
            return Err(RpcError::new(
                RpcError::METHOD_NOT_FOUND,
                format!("method {NAMESPACE}.{method} not found; available: {}", METHODS.join(", ")),
            ));
        }
        let name = name_param(method, params)?;
        let result = match method {
            "Incr" => Value::from(self.incr(&name)?),
            "Get" => Value::from(self.get(&name)),
            _ => {
                self.reset(&name);
                Value::Null
            }
        };
        Ok(result.to_string())
    }
}

/// Extracts the one parameter, `name`, from `["name"]` or `{"name": "name"}`.
fn name_param(method: &str, params: &str) -> Result<String, RpcError> {
    let invalid = |what: String| {
        RpcError::new(
            RpcError::INVALID_PARAMS,
            format!("{NAMESPACE}.{method}: {what}; expected [\"<name>\"] or {{\"name\": \"<name>\"}}"),
        )
    };
    let missing = || invalid("missing parameter `name`".to_string());
    let value = if params.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(params).map_err(|e| invalid(format!("params are not valid JSON ({e})")))?
    };
    let name = match value {
        Value::Null => return Err(missing()),
        Value::Array(mut items) => match items.len() {
            0 => return Err(missing()),
            1 => items.swap_remove(0),
            n => return Err(invalid(format!("takes 1 parameter (`name`), got {n}"))),
        },
        Value::Object(mut fields) => {
            if let Some(unknown) = fields.keys().find(|k| *k != "name") {
                return Err(invalid(format!("unknown parameter `{unknown}`")));
            }
            fields.remove("name").ok_or_else(missing)?
        }
        other => {
            return Err(invalid(format!("params must be an array or an object, got {other}")));
        }
    };
    match name {
        Value::String(name) => Ok(name),
        other => Err(invalid(format!("parameter `name` must be a string, got {other}"))),
    }
}

#[cfg(test)]
mod tests;
