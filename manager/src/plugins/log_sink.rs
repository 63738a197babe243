//! The host side of plugin log forwarding: plugin events become daemon log lines tagged with the plugin.

use manager_plugin::lifecycle::{LogLevel, LogRecord, LogSink};
use tracing::level_filters::LevelFilter;

/// Writes a plugin's forwarded events to the daemon's log with `plugin = "<Kind>/<name>"`.
pub struct PluginLogSink {
    plugin: String,
}

impl PluginLogSink {
    /// A sink for the plugin called `plugin` (e.g. `KVStore/memdb`).
    pub fn new(plugin: String) -> Self {
        PluginLogSink { plugin }
    }
}

impl LogSink for PluginLogSink {
    fn max_level(&self) -> LogLevel {
        match LevelFilter::current() {
            LevelFilter::TRACE => LogLevel::Trace,
            LevelFilter::DEBUG => LogLevel::Debug,
            LevelFilter::INFO => LogLevel::Info,
            LevelFilter::WARN => LogLevel::Warn,
            _ => LogLevel::Error,
        }
    }

    fn log(&self, record: &LogRecord) {
        // Called from plugin code (inside its guards): never let a panic escape into it.
        let _ = super::host_callback::catch("the plugin log sink", || self.emit(record));
    }
}

impl PluginLogSink {
    fn emit(&self, record: &LogRecord) {
        let fields: String = record.fields.iter().map(|(k, v)| format!(" {k}={v}")).collect();
        let (plugin, target, message) = (&self.plugin, &record.target, &record.message);
        match record.level {
            LogLevel::Trace => tracing::trace!(plugin = %plugin, module = %target, "{message}{fields}"),
            LogLevel::Debug => tracing::debug!(plugin = %plugin, module = %target, "{message}{fields}"),
            LogLevel::Info => tracing::info!(plugin = %plugin, module = %target, "{message}{fields}"),
            LogLevel::Warn => tracing::warn!(plugin = %plugin, module = %target, "{message}{fields}"),
            LogLevel::Error => tracing::error!(plugin = %plugin, module = %target, "{message}{fields}"),
        }
    }
}
