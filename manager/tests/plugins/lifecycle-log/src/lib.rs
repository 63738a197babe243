//! Test fixture support: the panic fixtures record `init <name>` and `shutdown <name>` lines in
//! `<plugins dir>/lifecycle.log`, so tests can check the order of lifecycle calls. Each plugin `.so` links its own
//! copy of this crate, so the remembered directory is per plugin.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use manager_plugin::PluginContext;

static PLUGINS_DIR: OnceLock<PathBuf> = OnceLock::new();

fn record(dir: &Path, event: &str, plugin: &str) -> Result<(), String> {
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("lifecycle.log"))
        .map_err(|e| e.to_string())?;
    writeln!(log, "{event} {plugin}").map_err(|e| e.to_string())
}

/// Remembers the plugins dir and records `init <plugin>`.
pub fn init(ctx: &PluginContext, plugin: &str) -> Result<(), String> {
    let _ = PLUGINS_DIR.set(ctx.plugins_dir.clone());
    record(&ctx.plugins_dir, "init", plugin)
}

/// Records `shutdown <plugin>`.
pub fn shutdown(plugin: &str) -> Result<(), String> {
    match PLUGINS_DIR.get() {
        Some(dir) => record(dir, "shutdown", plugin),
        None => Err("shutdown before init".into()),
    }
}
