//! The operator's commands on a supervised process plugin (`util plugins restart|disable|enable`, RPC
//! `Plugins.Restart|Disable|Enable`): each holds the plugin's control lock, so it never races the watcher's
//! restart or another command.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{ControlError, FileChanged, NotServing, Phase, ProcessPlugin, STOP_GRACE, lock};
use crate::plugins::process::marker::{Marker, read_marker};

impl ProcessPlugin {
    /// `util plugins restart`: re-reads the marker of the file now at the plugin's path (it must be the same kind
    /// and name), stops the running process (if any) and starts the file. Clears the crash-loop count.
    pub fn restart(self: &Arc<Self>) -> Result<String, String> {
        let _control = lock(&self.control);
        self.refuse_when_shut_down()?;
        let marker = self.reread_marker()?;
        let old = self.set_phase(Phase::Restarting { why: "restarted by the operator".into(), after: 0 });
        if let Some(old) = old {
            old.stop(STOP_GRACE);
        }
        self.start_by_operator(marker, "restarted")
    }

    /// `util plugins disable`: stops the process; it stays stopped until `enable` (or `restart`).
    pub fn disable(&self) -> Result<String, String> {
        let _control = lock(&self.control);
        self.refuse_when_shut_down()?;
        if matches!(&*lock(&self.phase), Phase::Disabled) {
            return Ok(format!("plugin {} was already disabled", self.label));
        }
        let old = self.set_phase(Phase::Disabled);
        if let Some(old) = old {
            old.stop(STOP_GRACE);
        }
        tracing::warn!(plugin = %self.label, "process plugin disabled by the operator");
        Ok(format!("plugin {} disabled; its process is stopped", self.label))
    }

    /// `util plugins enable`: starts a plugin that is disabled or failed (re-reading its file's marker).
    pub fn enable(self: &Arc<Self>) -> Result<String, String> {
        let _control = lock(&self.control);
        self.refuse_when_shut_down()?;
        if let Phase::Running(generation) = &*lock(&self.phase)
            && generation.ended().is_none()
        {
            return Ok(format!("plugin {} is already running (pid {})", self.label, generation.pid));
        }
        let marker = self.reread_marker()?;
        // A process that ended before its watcher noticed: make sure it is gone before the new one starts.
        if let Some(dead) = self.set_phase(Phase::Restarting { why: "enabled by the operator".into(), after: 0 }) {
            dead.stop(STOP_GRACE);
        }
        self.start_by_operator(marker, "enabled")
    }

    /// The operator's commands are refused once the daemon is stopping its plugins (no process may start then).
    fn refuse_when_shut_down(&self) -> Result<(), String> {
        if matches!(&*lock(&self.phase), Phase::ShutDown) {
            let (name, kind) = (self.manifest.name.clone(), self.manifest.kind);
            return Err(NotServing::ShutDown { name, kind }.to_string());
        }
        Ok(())
    }

    /// Whether the file at the plugin's path still carries the marker its process was started from (an automatic
    /// restart must not run a replaced or removed file unasked).
    pub(super) fn same_file(&self) -> Result<(), FileChanged> {
        let now = read_marker(&self.file, &self.file_limits).ok();
        let started = lock(&self.marker);
        let same = now.is_some_and(|m| {
            (&m.manifest_text, &m.build_time, &m.protocol)
                == (&started.manifest_text, &started.build_time, &started.protocol)
        });
        if same {
            return Ok(());
        }
        Err(FileChanged { file: self.file.display().to_string(), name: self.manifest.name.clone() })
    }

    fn reread_marker(&self) -> Result<Marker, String> {
        let marker = read_marker(&self.file, &self.file_limits)
            .map_err(|e| ControlError::MarkerRefused { error: e.to_string() }.to_string())?;
        let (kind, name) = (marker.manifest.kind, &marker.manifest.name);
        if kind != self.manifest.kind || *name != self.manifest.name {
            return Err(ControlError::OtherPlugin {
                file: self.file.display().to_string(),
                kind,
                name: name.clone(),
                started_kind: self.manifest.kind,
                started_name: self.manifest.name.clone(),
                label: self.label.clone(),
            }
            .to_string());
        }
        Ok(marker)
    }

    fn start_by_operator(self: &Arc<Self>, marker: Marker, done: &str) -> Result<String, String> {
        *lock(&self.marker) = marker;
        lock(&self.recent_crashes).clear();
        match self.start_generation() {
            Ok(generation) => {
                let pid = generation.pid;
                self.restarts.fetch_add(1, Ordering::Relaxed);
                tracing::info!(plugin = %self.label, pid, "process plugin {done} by the operator");
                self.install(generation);
                Ok(format!("plugin {} {done}: pid {pid}, from {}", self.label, self.file.display()))
            }
            Err(e) => {
                let failed = ControlError::StartFailed { label: self.label.clone(), why: e };
                self.set_phase(Phase::Failed { why: failed.to_string() });
                Err(failed.to_string())
            }
        }
    }
}
