//! `plugin inspect FILE [--manager BIN] [--json]`: what a built plugin is and whether a manager would load it,
//! read from the file's bytes with the same checks the manager runs before mapping a plugin (the same size cap,
//! one parse, the same time budget). No code of the file (or of the manager binary) runs.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use manager_plugin::abi::{Fingerprint, FingerprintDifference};
use plugin_image::limits::{Budget, FileLimits, ReadError, read_capped};
use plugin_image::{Image, Refusal};
use serde_json::json;

/// What the plugin is compared with.
enum Reference {
    /// The fingerprint read from a manager binary's own section.
    Manager(PathBuf, Fingerprint),
    /// The fingerprint this tool was built with.
    Tool,
}

impl Reference {
    fn fingerprint(&self) -> Fingerprint {
        match self {
            Reference::Manager(_, fp) => fp.clone(),
            Reference::Tool => Fingerprint::current(),
        }
    }

    fn describe(&self) -> String {
        match self {
            Reference::Manager(bin, _) => format!("manager binary {}", bin.display()),
            Reference::Tool => "the fingerprint this `plugin` tool was built with".into(),
        }
    }
}

/// The outcome of inspecting one file.
pub struct Inspection {
    /// `true` when the manager would load it.
    pub compatible: bool,
    /// The text or JSON report.
    pub report: String,
}

/// Inspects `file`, comparing it with the manager binary `manager` (or with this tool's own fingerprint).
/// An unreadable `file` or `manager` is an error; an unloadable plugin is an `incompatible` report.
pub fn inspect(file: &Path, manager: Option<&Path>, json: bool) -> anyhow::Result<Inspection> {
    let reference = match manager {
        Some(bin) => {
            let bytes = std::fs::read(bin).with_context(|| format!("cannot read manager binary {}", bin.display()))?;
            let image = Image::read_manager(&bytes).map_err(|e| {
                anyhow::anyhow!(
                    "{}: cannot read the manager's fingerprint: {e} (is it a damocles-manager binary of this version?)",
                    bin.display()
                )
            })?;
            Reference::Manager(bin.to_path_buf(), image.fingerprint().clone())
        }
        None => Reference::Tool,
    };
    // The manager's own limits and its one parse: a file over the size cap is refused unread, the checks stop at
    // the time budget.
    let limits = FileLimits::default();
    let (bytes, unread) = match read_capped(file, &limits) {
        Ok(bytes) => (bytes, None),
        Err(ReadError::Refused(refusal)) => (Vec::new(), Some(refusal)),
        Err(ReadError::Io(e)) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
    };
    let label = file.display().to_string();
    let host = reference.fingerprint();
    let (image, verdict) =
        match unread.map_or_else(|| Image::read_plugin_within(&bytes, &Budget::start(limits.time_budget)), Err) {
            Ok(image) => {
                let verdict = image.check(&host, &label).map(|_| ());
                (Some(image), verdict)
            }
            Err(refusal) => (None, Err(refusal)),
        };
    let report = if json {
        json_report(&label, image.as_ref(), &reference, &verdict)
    } else {
        text_report(&label, image.as_ref(), &reference, &verdict)
    };
    Ok(Inspection { compatible: verdict.is_ok(), report })
}

/// Runs `plugin inspect` and prints its report; `Ok(true)` only when compatible.
pub fn run_cli(file: &Path, manager: Option<&Path>, json: bool) -> anyhow::Result<bool> {
    let inspection = inspect(file, manager, json)?;
    println!("{}", inspection.report);
    Ok(inspection.compatible)
}

fn differences(verdict: &Result<(), Refusal>) -> &[FingerprintDifference] {
    match verdict {
        Err(Refusal::FingerprintMismatch { differences, .. }) => differences,
        _ => &[],
    }
}

fn text_report(label: &str, image: Option<&Image<'_>>, reference: &Reference, verdict: &Result<(), Refusal>) -> String {
    let mut out = format!("file: {label}\n");
    if let Some(image) = image {
        match image.manifest(label) {
            Ok(m) => {
                out.push_str(&format!(
                    "name: {}\nkind: {}\ndescription: {}\nexports:\n",
                    m.name, m.kind, m.description
                ));
                for e in &m.export {
                    out.push_str(&format!("  - {} => {}\n", e.ext_point, e.impl_path));
                }
                if let Some(f) = &m.on_init {
                    out.push_str(&format!("  - onInit => {f}\n"));
                }
                if let Some(f) = &m.on_shutdown {
                    out.push_str(&format!("  - onShutdown => {f}\n"));
                }
            }
            Err(e) => out.push_str(&format!("manifest: {e}\n")),
        }
        out.push_str(&format!(
            "build time: {}\nsdk version: {}\nfingerprint:\n",
            image.build_time(),
            image.sdk_version()
        ));
        for (item, value) in image.fingerprint().items() {
            out.push_str(&format!("  {item} = {value}\n"));
        }
        let allocator = image.own_allocator_symbols();
        if !allocator.is_empty() {
            out.push_str(&format!("own allocator symbols: {}\n", allocator.join(", ")));
        }
    }
    out.push_str(&format!("compared with: {}\n", reference.describe()));
    match verdict {
        Ok(()) => out.push_str("compatible"),
        Err(refusal) => out.push_str(&format!("incompatible: {refusal}")),
    }
    out
}

fn json_report(label: &str, image: Option<&Image<'_>>, reference: &Reference, verdict: &Result<(), Refusal>) -> String {
    let manifest = image.and_then(|i| i.manifest(label).ok());
    let fingerprint: serde_json::Map<String, serde_json::Value> =
        image.map(|i| i.fingerprint().items().map(|(k, v)| (k.to_string(), json!(v))).collect()).unwrap_or_default();
    let value = json!({
        "file": label,
        "name": manifest.as_ref().map(|m| m.name.clone()),
        "kind": manifest.as_ref().map(|m| m.kind.to_string()),
        "description": manifest.as_ref().map(|m| m.description.clone()),
        "manifest": manifest,
        "buildTime": image.map(|i| i.build_time().to_string()),
        "sdkVersion": image.map(|i| i.sdk_version().to_string()),
        "fingerprint": fingerprint,
        "ownAllocatorSymbols": image.map(|i| i.own_allocator_symbols()).unwrap_or_default(),
        "comparedWith": reference.describe(),
        "compatible": verdict.is_ok(),
        "differences": differences(verdict).iter().map(|d| json!({
            "item": d.item, "plugin": d.plugin, "manager": d.host,
        })).collect::<Vec<_>>(),
        "reason": verdict.as_ref().err().map(|r| r.to_string()),
    });
    serde_json::to_string_pretty(&value).unwrap_or_default()
}
