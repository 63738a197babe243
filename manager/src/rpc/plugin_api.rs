//! `Plugins.List`, and the namespaces of RegisterJsonRpc plugins mounted as `<namespace>.<Method>`.

use std::collections::HashSet;
use std::sync::Arc;

use jsonrpsee::RpcModule;
use jsonrpsee::core::RegisterMethodError;
use manager_plugin::Kind;
use manager_plugin::jsonrpc::JsonRpcHandler;
use serde_json::value::RawValue;

use super::AppState;
use super::params::{SERVER_ERROR, error};
use super::venus::add;
use crate::metrics::PluginCallTimer;
use crate::plugins::{Control, PluginRegistry};

/// Namespaces plugins may not take.
pub const RESERVED_NAMESPACES: [&str; 2] = ["Venus", "Plugins"];

/// How long `Plugins.SkipSyncEvent` waits for the delivery thread to save and skip the event.
const SKIP_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Registers `Plugins.List`, `Plugins.RetireSyncCursor`, `Plugins.SkipSyncEvent` and the operator's
/// `Plugins.Restart`, `Plugins.Disable` and `Plugins.Enable` (process plugins only; a `.so` is refused).
pub fn register(module: &mut RpcModule<AppState>) -> Result<(), RegisterMethodError> {
    add(module, "Plugins.List", |state, args| {
        args.finish()?;
        Ok(state.registry.list())
    })?;
    add(module, "Plugins.RetireSyncCursor", |state, mut args| {
        let name: String = args.next("name")?;
        args.finish()?;
        // A process plugin that is restarting, failed or disabled by the operator is still a delivery target.
        let loaded = state.registry.get(Kind::SyncSectorState, &name).is_some()
            || state.registry.find_any(Kind::SyncSectorState, &name).is_some_and(|r| r.process().is_some());
        if loaded {
            return Err(error(
                super::params::INVALID_PARAMS,
                format!(
                    "SyncSectorState plugin {name:?} is loaded (ready, or a supervised process plugin); remove it and \
                     restart before retiring its cursor"
                ),
            ));
        }
        state.sectors.retire_sync_cursor(&name).map_err(|e| error(SERVER_ERROR, e.to_string()))
    })?;
    add(module, "Plugins.SkipSyncEvent", |state, mut args| {
        let name: String = args.next("name")?;
        let seq: u64 = args.next("seq")?;
        args.finish()?;
        let saved = state.delivery.skip(&name, seq, SKIP_WAIT).map_err(|e| error(SERVER_ERROR, e.to_string()))?;
        Ok(saved.display().to_string())
    })?;
    for (method, command) in [
        ("Plugins.Restart", Control::Restart),
        ("Plugins.Disable", Control::Disable),
        ("Plugins.Enable", Control::Enable),
    ] {
        add(module, method, move |state, mut args| {
            let name: String = args.next("name")?;
            args.finish()?;
            state.registry.control(&name, command).map_err(|e| error(SERVER_ERROR, e))
        })?;
    }
    Ok(())
}

/// Mounts every ready RegisterJsonRpc plugin. A plugin whose handler fails, whose namespace is reserved or taken,
/// or whose method names are invalid, is marked Disabled with the reason; the others are mounted.
pub fn mount_plugins(module: &mut RpcModule<AppState>, registry: &PluginRegistry) {
    let mut taken: HashSet<String> = RESERVED_NAMESPACES.iter().map(|s| s.to_string()).collect();
    let ready: Vec<_> = registry.ready(Kind::RegisterJsonRpc).cloned().collect();
    for record in ready {
        let (namespace, handler) = match record.rpc_handler() {
            Ok(pair) => pair,
            Err(e) => {
                record.disable(format!("Handler failed: {e}"));
                continue;
            }
        };
        if let Err(reason) = check_namespace(&namespace, &taken) {
            record.disable(reason);
            continue;
        }
        let methods = handler.methods();
        let handler: Arc<dyn JsonRpcHandler> = Arc::from(handler);
        let timer = PluginCallTimer::new(&record.manifest().name, Kind::RegisterJsonRpc, "Handler");
        match mount(module, &namespace, &methods, &handler, &timer) {
            Ok(()) => {
                tracing::info!(plugin = %record.label(), "mounted JSON-RPC namespace {namespace} ({})", methods.join(", "));
                taken.insert(namespace);
            }
            Err(reason) => record.disable(reason),
        }
    }
}

fn check_namespace(namespace: &str, taken: &HashSet<String>) -> Result<(), String> {
    let valid = !namespace.is_empty() && namespace.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!("namespace {namespace:?} is not a valid name ([A-Za-z0-9_]+)"));
    }
    if taken.contains(namespace) {
        return Err(format!("namespace {namespace:?} is reserved or already mounted by another plugin"));
    }
    Ok(())
}

/// Registers each method, or none: a plugin is mounted whole.
fn mount(
    module: &mut RpcModule<AppState>,
    namespace: &str,
    methods: &[String],
    handler: &Arc<dyn JsonRpcHandler>,
    timer: &PluginCallTimer,
) -> Result<(), String> {
    let mut plugin_module = RpcModule::new(());
    for method in methods {
        if method.is_empty() || method.contains('.') {
            return Err(format!("method name {method:?} is not valid"));
        }
        // jsonrpsee wants 'static names; mounting happens once per process, so the leak is bounded.
        let full: &'static str = Box::leak(format!("{namespace}.{method}").into_boxed_str());
        let (handler, method, timer) = (Arc::clone(handler), method.clone(), timer.clone());
        plugin_module
            .register_blocking_method(full, move |params, _, _| {
                let result = timer.time(|| handler.call(&method, params.as_str().unwrap_or("[]")));
                result.map_err(|e| error(e.code, e.message)).and_then(|json| {
                    RawValue::from_string(json)
                        .map_err(|e| error(SERVER_ERROR, format!("{full}: the plugin returned invalid JSON: {e}")))
                })
            })
            .map_err(|e| format!("cannot register {full}: {e}"))?;
    }
    module.merge(plugin_module).map_err(|e| format!("cannot mount namespace {namespace}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taken() -> HashSet<String> {
        RESERVED_NAMESPACES.iter().map(|s| s.to_string()).chain(["AtomicCounter".to_string()]).collect()
    }

    #[test]
    fn reserved_and_mounted_namespaces_are_refused() {
        for ns in ["Venus", "Plugins", "AtomicCounter"] {
            let err = check_namespace(ns, &taken()).unwrap_err();
            assert!(err.contains("reserved or already mounted"), "{err}");
        }
    }

    #[test]
    fn namespaces_must_be_plain_names() {
        for ns in ["", "Bad.Name", "sp ace"] {
            assert!(check_namespace(ns, &taken()).unwrap_err().contains("not a valid name"), "{ns:?}");
        }
        assert!(check_namespace("Metrics", &taken()).is_ok());
    }
}
