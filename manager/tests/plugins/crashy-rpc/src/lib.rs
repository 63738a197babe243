//! Test fixture: the counter example's handler mounted as namespace `Crashy`, plus `Crashy.Exe` (the size of the
//! executable this process runs, to tell a replaced binary from the old one); every call first checks the crash
//! trigger (`crash-trigger`), and so does `onInit`.

use std::convert::Infallible;

use manager_plugin::jsonrpc::JsonRpcHandler;
use manager_plugin::{PluginContext, RpcError};

const NAME: &str = "crashy-rpc";

/// Remembers the plugins dir for the trigger.
pub fn init(ctx: &PluginContext) -> Result<(), Infallible> {
    crash_trigger::init(ctx);
    // A trigger present when the daemon loads it crashes onInit, or (`<action>-after-init`) the process just after.
    crash_trigger::check(NAME);
    crash_trigger::check_later(NAME, "after-init", std::time::Duration::from_millis(20));
    Ok(())
}

/// The handler: namespace `Crashy`. A trigger `<action>-in-handler` crashes the process inside this call (the
/// daemon asks for the handler while it wires its plugins).
pub fn handler() -> Result<(String, Crashy), Infallible> {
    crash_trigger::check_at(NAME, "in-handler");
    Ok(("Crashy".to_string(), Crashy(counter::AtomicCounter::new())))
}

/// The counter, behind the trigger.
pub struct Crashy(counter::AtomicCounter);

impl JsonRpcHandler for Crashy {
    fn methods(&self) -> Vec<String> {
        let mut methods = self.0.methods();
        methods.push("Exe".to_string());
        methods
    }

    fn call(&self, method: &str, params: &str) -> Result<String, RpcError> {
        crash_trigger::check(NAME);
        if method == "Exe" {
            let exe = std::fs::metadata("/proc/self/exe").map_err(|e| RpcError::new(-32000, e.to_string()))?;
            return Ok(exe.len().to_string());
        }
        self.0.call(method, params)
    }
}
