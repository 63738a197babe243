//! Reading a process plugin's marker: the `.damocles_plugin` section of the executable (role `process-plugin`),
//! read from the file's bytes without running anything, under the same bounds as a `.so` (the size cap from the
//! file's metadata before reading, one parse within the time budget).

use std::path::Path;

use manager_plugin::manifest::Manifest;
use manager_plugin::process::FIELD_PROTOCOL;
use manager_plugin::process::wire::PROTOCOL_MAJOR;
use plugin_image::limits::{Budget, FileLimits};
use plugin_image::{Image, Refusal};

use crate::plugins::LoadError;
use crate::plugins::library::read_capped;

/// What a process plugin's marker says.
#[derive(Debug, Clone)]
pub struct Marker {
    /// The embedded manifest, validated.
    pub manifest: Manifest,
    /// The embedded manifest's text (the handshake must repeat it).
    pub manifest_text: String,
    /// When `plugin build --process` built it.
    pub build_time: String,
    /// The protocol version it speaks, `<major>.<minor>`.
    pub protocol: String,
}

/// Reads `file`'s marker within `limits`; refuses a file that is not a process plugin or speaks another protocol major version.
/// The rustc/SDK fingerprint items are not compared: nothing of the plugin's code runs in the manager.
pub fn read_marker(file: &Path, limits: &FileLimits) -> Result<Marker, LoadError> {
    let bytes = read_capped(file, limits)?;
    let refused = |refusal: Refusal, identity| LoadError::Refused { file: file.to_path_buf(), refusal, identity };
    let budget = Budget::start(limits.time_budget);
    let image = Image::read_process_plugin_within(&bytes, &budget).map_err(|r| refused(r, None))?;
    let label = file.display().to_string();
    let manifest = image.manifest(&label).map_err(|r| refused(r, None))?;
    let identity = Some((manifest.kind, manifest.name.clone()));
    let protocol = image.info_field(FIELD_PROTOCOL).unwrap_or_default().to_string();
    let major = protocol.split('.').next().and_then(|m| m.parse::<u32>().ok());
    if major != Some(PROTOCOL_MAJOR) {
        return Err(refused(Refusal::Protocol { found: protocol, expected: PROTOCOL_MAJOR }, identity));
    }
    Ok(Marker {
        manifest,
        manifest_text: image.manifest_text().to_string(),
        build_time: image.build_time().to_string(),
        protocol,
    })
}
