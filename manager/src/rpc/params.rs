//! Positional JSON-RPC parameters, decoded one by one so an error names the method and the parameter.

use jsonrpsee::types::{ErrorObjectOwned, Params};
use serde::de::DeserializeOwned;

/// JSON-RPC "invalid params".
pub const INVALID_PARAMS: i32 = -32602;
/// A sector that does not exist (the code damocles-worker expects).
pub const SECTOR_NOT_FOUND: i32 = 11001;
/// Any other server-side failure.
pub const SERVER_ERROR: i32 = -32000;

/// The positional parameters of one call.
pub struct Args {
    method: &'static str,
    values: Vec<serde_json::Value>,
    next: usize,
}

impl Args {
    /// Reads the params of a call to `method`; absent params are an empty list.
    pub fn new(method: &'static str, params: &Params<'_>) -> Result<Args, ErrorObjectOwned> {
        let values = match params.as_str() {
            None => Vec::new(),
            Some(text) => serde_json::from_str::<Vec<serde_json::Value>>(text).map_err(|e| {
                error(INVALID_PARAMS, format!("{method}: params must be a JSON array of positional parameters: {e}"))
            })?,
        };
        Ok(Args { method, values, next: 0 })
    }

    /// Decodes the next parameter, called `name` in error messages. A missing parameter decodes from `null`
    /// (so `Option` parameters may be omitted).
    pub fn next<T: DeserializeOwned>(&mut self, name: &str) -> Result<T, ErrorObjectOwned> {
        let index = self.next;
        self.next += 1;
        let value = self.values.get(index).cloned().unwrap_or(serde_json::Value::Null);
        serde_json::from_value(value)
            .map_err(|e| error(INVALID_PARAMS, format!("{}: invalid parameter #{index} `{name}`: {e}", self.method)))
    }

    /// Refuses extra parameters.
    pub fn finish(self) -> Result<(), ErrorObjectOwned> {
        if self.values.len() > self.next {
            return Err(error(
                INVALID_PARAMS,
                format!("{}: expected {} parameter(s), got {}", self.method, self.next, self.values.len()),
            ));
        }
        Ok(())
    }
}

/// A JSON-RPC error object.
pub fn error(code: i32, message: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(code, message.into(), None::<()>)
}
