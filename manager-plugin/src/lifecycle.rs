//! What the host hands a plugin when it initializes it, and the plugin states the registry tracks.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::manifest::Manifest;

/// Severity of a forwarded log record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum LogLevel {
    /// Very verbose.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected but handled.
    Warn,
    /// A failure.
    Error,
}

/// One log event raised by plugin code.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogRecord {
    /// Severity.
    pub level: LogLevel,
    /// The module that logged it (tracing target).
    pub target: String,
    /// The message.
    pub message: String,
    /// Structured fields, rendered as text.
    pub fields: Vec<(String, String)>,
}

/// Where a plugin's log events go. The host implements it; the SDK forwards the plugin's `tracing` events to it.
pub trait LogSink: Send + Sync {
    /// The most verbose level the host will keep (events below it are not forwarded).
    fn max_level(&self) -> LogLevel;
    /// Records one event. Must not panic.
    fn log(&self, record: &LogRecord);
}

/// Call counters for one plugin, shared by the host and the plugin's guards.
#[derive(Debug, Default)]
pub struct CallStats {
    calls: AtomicU64,
    errors: AtomicU64,
    panics: AtomicU64,
    last_failure: Mutex<Option<String>>,
}

/// A point-in-time copy of [`CallStats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallCounts {
    /// Calls into the plugin.
    pub calls: u64,
    /// Calls that failed (panics included).
    pub errors: u64,
    /// Calls that panicked.
    pub panics: u64,
    /// The message of the last failure.
    pub last_failure: Option<String>,
}

impl CallStats {
    /// Counts one call.
    pub fn record_call(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one failed call (and a panic, if it was one) and keeps its message.
    pub fn record_failure(&self, message: String, panicked: bool) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if panicked {
            self.panics.fetch_add(1, Ordering::Relaxed);
        }
        if let Ok(mut last) = self.last_failure.lock() {
            *last = Some(message);
        }
    }

    /// Current counts.
    pub fn snapshot(&self) -> CallCounts {
        CallCounts {
            calls: self.calls.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            panics: self.panics.load(Ordering::Relaxed),
            last_failure: self.last_failure.lock().ok().and_then(|l| l.clone()),
        }
    }
}

/// Handed to a plugin's `onInit` (and to the SDK's glue before it, which installs log forwarding).
#[derive(Clone)]
pub struct PluginContext {
    /// `[Common.Plugins] Dir`: where the plugin may keep its own files.
    pub plugins_dir: PathBuf,
    /// The plugin's own manifest.
    pub manifest: Manifest,
    /// Receives the plugin's log events.
    pub log_sink: Arc<dyn LogSink>,
    /// Counters the plugin's guards update.
    pub stats: Arc<CallStats>,
}

impl fmt::Debug for PluginContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginContext")
            .field("plugins_dir", &self.plugins_dir)
            .field("manifest", &self.manifest.name)
            .finish_non_exhaustive()
    }
}

/// Where a plugin is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PluginState {
    /// Loaded, `onInit` not yet run.
    Uninitialized,
    /// Initialized and serving.
    Ready,
    /// `onShutdown` has run or is running.
    Dying,
    /// Refused or failed; see the recorded error.
    Disabled,
}

impl PluginState {
    /// The state's name.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginState::Uninitialized => "Uninitialized",
            PluginState::Ready => "Ready",
            PluginState::Dying => "Dying",
            PluginState::Disabled => "Disabled",
        }
    }
}

impl fmt::Display for PluginState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_displays_its_name() {
        let all = [PluginState::Uninitialized, PluginState::Ready, PluginState::Dying, PluginState::Disabled];
        let names: Vec<String> = all.iter().map(|s| s.to_string()).collect();
        assert_eq!(names, ["Uninitialized", "Ready", "Dying", "Disabled"]);
    }

    #[test]
    fn stats_count_failures_and_panics_separately() {
        let s = CallStats::default();
        s.record_call();
        s.record_call();
        s.record_failure("boom".into(), true);
        s.record_failure("io".into(), false);
        let c = s.snapshot();
        assert_eq!((c.calls, c.errors, c.panics), (2, 2, 1));
        assert_eq!(c.last_failure.as_deref(), Some("io"));
    }
}
