//! The operator's runtime control of plugins (`Plugins.Restart|Disable|Enable`, `util plugins
//! restart|disable|enable NAME`): process plugins only; a `.so` is never unloaded, so it is refused with why.

use std::sync::Arc;

use super::{Backend, PluginRecord, PluginRegistry, PluginState};

/// Why an operator's command on a plugin was refused before reaching it.
#[derive(Debug, thiserror::Error)]
pub enum ControlRefused {
    /// No plugin of that name.
    #[error("no plugin named {name:?} is loaded (`util plugins list` shows them)")]
    NotLoaded {
        /// The name given.
        name: String,
    },
    /// Plugins of several kinds have that name.
    #[error("{name:?} names several plugins ({labels}); give one as Kind/name")]
    Ambiguous {
        /// The name given.
        name: String,
        /// The plugins it names.
        labels: String,
    },
    /// A `.so`: never unloaded.
    #[error(
        "plugin {label} is a .so loaded into the manager's process: a .so is never unloaded (its code may still be \
         referenced), so it cannot be {command}d at runtime; replace the file and restart the daemon, or build it \
         with `plugin build --process` to run it as a process plugin"
    )]
    InProcess {
        /// The plugin.
        label: String,
        /// `restart`, `disable` or `enable`.
        command: &'static str,
    },
    /// A process plugin that did not start at load.
    #[error("plugin {label} did not start when the daemon loaded it ({why}); fix the file and restart the daemon")]
    NotStarted {
        /// The plugin.
        label: String,
        /// Why it did not start.
        why: String,
    },
}

/// An operator's command on a running plugin (`util plugins restart|disable|enable`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Restart the process from the file now at the plugin's path.
    Restart,
    /// Stop the process until `Enable`.
    Disable,
    /// Start a disabled or failed process plugin.
    Enable,
}

impl Control {
    /// The command's name.
    pub fn name(self) -> &'static str {
        match self {
            Control::Restart => "restart",
            Control::Disable => "disable",
            Control::Enable => "enable",
        }
    }
}

impl PluginRegistry {
    /// Runs the operator's `command` on the plugin `name` (or `Kind/name` when names repeat across kinds). Only
    /// process plugins can be restarted, disabled or enabled: a `.so` is never unloaded (its code stays mapped
    /// for the manager's lifetime), so for one the command is refused, saying so.
    pub fn control(&self, name: &str, command: Control) -> Result<String, String> {
        let matching: Vec<&Arc<PluginRecord>> =
            self.plugins.iter().filter(|p| p.manifest.name == name || p.label() == name).collect();
        let record = match matching.as_slice() {
            [] => return Err(ControlRefused::NotLoaded { name: name.to_string() }.to_string()),
            [one] => *one,
            many => {
                let labels = many.iter().map(|p| p.label()).collect::<Vec<_>>().join(", ");
                return Err(ControlRefused::Ambiguous { name: name.to_string(), labels }.to_string());
            }
        };
        let label = record.label();
        let not_started = || {
            let why = record.status().last_error.clone();
            ControlRefused::NotStarted {
                label: label.clone(),
                why: why.unwrap_or_else(|| "its process did not start".into()),
            }
        };
        let process = match record.backend.process() {
            None if matches!(record.backend, Backend::Library(_)) => {
                return Err(ControlRefused::InProcess { label, command: command.name() }.to_string());
            }
            None => return Err(not_started().to_string()),
            // Disabled by the registry at load (its onInit failed, its namespace collided): never wired, so a
            // process of it would serve nothing.
            Some(_) if record.status().state == PluginState::Disabled => return Err(not_started().to_string()),
            Some(process) => process,
        };
        tracing::info!(plugin = %label, "operator command: {}", command.name());
        match command {
            Control::Restart => process.restart(),
            Control::Disable => process.disable(),
            Control::Enable => process.enable(),
        }
    }
}
