//! The RegisterJsonRpc suite: the handler is built, lists its methods, and each method answers (valid JSON) or
//! errors, without panicking, for the parameter shapes a client may send.

use manager_plugin::error::BoundaryError as _;
use manager_plugin::jsonrpc::RpcError;

use super::{Outcome, check, ensure};
use crate::plugins::registry::PluginRecord;

/// Parameter shapes every method is called with: none, empty positional, empty named, and a wrong type.
const PARAMS: [&str; 4] = ["null", "[]", "{}", "[\"plugin test\", -1, 1.5, null, {\"k\": [true]}]"];

/// `plugin test` of a RegisterJsonRpc plugin: `methods-listed`, then one check per method (`call <Ns>.<method>`).
pub(super) fn run(record: &PluginRecord) -> Vec<Outcome> {
    let mut built = None;
    let mut outcomes = vec![check("methods-listed", || {
        let (namespace, handler) = record.rpc_handler().map_err(|e| format!("the handler constructor: {e}"))?;
        ensure!(!namespace.is_empty(), "the handler's namespace is empty");
        let methods = handler.methods();
        ensure!(!methods.is_empty(), "the handler lists no methods");
        ensure!(
            methods.iter().all(|m| !m.is_empty() && !m.contains('.')),
            "a method name is empty or has a `.`: {methods:?}"
        );
        built = Some((namespace, handler, methods));
        Ok(())
    })];
    let Some((namespace, handler, methods)) = built else { return outcomes };
    for method in methods {
        outcomes.push(check(&format!("call {namespace}.{method}"), || {
            for params in PARAMS {
                match handler.call(&method, params) {
                    Ok(answer) => {
                        serde_json::from_str::<serde_json::Value>(&answer)
                            .map_err(|e| format!("params {params}: the answer is not JSON ({e}): {answer:?}"))?;
                    }
                    Err(e) if e.is_panic() => return Err(format!("params {params}: {}", e.message)),
                    Err(RpcError { .. }) => {}
                }
            }
            Ok(())
        }));
    }
    outcomes
}
