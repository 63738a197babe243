//! Starting the process plugins of a plugins dir: the registry's hook (step 4 of its loading, after the `.so`
//! files). Each executable's marker is read without running it; a refused file is listed like a refused `.so`; a
//! file whose process does not start or complete the handshake is listed `Disabled` with the reason.

use std::path::PathBuf;
use std::sync::Arc;

use manager_plugin::lifecycle::CallStats;

use super::ProcessPlugin;
use super::marker::read_marker;
use crate::plugins::LoadError;
use crate::plugins::backend::Backend;
use crate::plugins::registry::{PluginRecord, PluginRegistry};

/// Starts every process plugin of `files` (filename order) into `registry`, refusing duplicates of plugins it
/// already holds.
pub fn start_all(registry: &mut PluginRegistry, files: Vec<PathBuf>) {
    for file in files {
        let marker = match read_marker(&file, &registry.options().file_limits) {
            Ok(marker) => marker,
            Err(err) => {
                registry.refuse(file, err);
                continue;
            }
        };
        let (kind, name) = (marker.manifest.kind, marker.manifest.name.clone());
        if let Some(first) = registry.find_any(kind, &name) {
            let first = first.file().to_path_buf();
            registry.refuse(file.clone(), LoadError::Duplicate { file, kind, name, first });
            continue;
        }
        let label = format!("{kind}/{name}");
        let stats = Arc::new(CallStats::default());
        let (options, limits) = (registry.options().process, registry.options().file_limits);
        let started = ProcessPlugin::start(&file, &marker, &options, &limits, &label, Arc::clone(&stats));
        let (backend, failure) = match started {
            Ok(process) => (Backend::Process(process), None),
            Err(why) => (Backend::NotStarted, Some(why)),
        };
        let record = PluginRecord::new(marker.manifest, file.clone(), marker.build_time, backend, stats);
        if let Some(why) = failure {
            record.disable(format!("process plugin {} did not start: {why}", file.display()));
        }
        registry.push(record);
    }
}
