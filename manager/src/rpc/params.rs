//! Positional JSON-RPC parameters, decoded one by one so an error names the method and the parameter.
//!
//! The params array is split once into borrowed raw values (no `Value` tree, no copy), and each parameter is
//! decoded straight into its type from its own text.

use jsonrpsee::types::{ErrorObjectOwned, Params};
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

/// JSON-RPC "invalid params".
pub const INVALID_PARAMS: i32 = -32602;
/// A sector that does not exist (the code damocles-worker expects).
pub const SECTOR_NOT_FOUND: i32 = 11001;
/// Any other server-side failure.
pub const SERVER_ERROR: i32 = -32000;

/// The positional parameters of one call, borrowed from its request.
pub struct Args<'a> {
    method: &'static str,
    values: Vec<&'a RawValue>,
    next: usize,
}

impl<'a> Args<'a> {
    /// Reads the params of a call to `method`; absent params are an empty list.
    pub fn new(method: &'static str, params: &'a Params<'_>) -> Result<Args<'a>, ErrorObjectOwned> {
        Args::from_json(method, params.as_str())
    }

    /// Reads the params of a call to `method` from their JSON text (`None`: absent, an empty list).
    pub fn from_json(method: &'static str, params: Option<&'a str>) -> Result<Args<'a>, ErrorObjectOwned> {
        let values = match params {
            None => Vec::new(),
            Some(text) => serde_json::from_str::<Vec<&RawValue>>(text).map_err(|e| {
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
        let text = self.values.get(index).map_or("null", |raw| raw.get());
        serde_json::from_str(text)
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
