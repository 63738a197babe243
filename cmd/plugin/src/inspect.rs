//! `plugin inspect FILE [--manager BIN] [--json]`: what a built plugin is and whether a manager would load it,
//! read from the file's bytes with the same checks the manager runs before mapping a plugin (the same size cap,
//! one parse, the same time budget). No code of the file (or of the manager binary) runs. Without `--manager`,
//! the manager that will load the plugin is found as `plugin test` finds it ([`crate::manager_bin`]), and the
//! report names it (`compared with:`).

use std::path::Path;

use anyhow::Context as _;
use manager_plugin::abi::{Fingerprint, FingerprintDifference};
use manager_plugin::process::FIELD_PROTOCOL;
use manager_plugin::process::wire::PROTOCOL_MAJOR;
use plugin_image::limits::{Budget, FileLimits, ReadError, read_capped};
use plugin_image::{Image, Refusal};
use serde_json::json;

use crate::manager_bin::{self, ManagerBinary};

/// What the plugin is compared with.
enum Reference {
    /// The fingerprint read from a manager binary's own section.
    Manager(ManagerBinary, Fingerprint),
    /// The fingerprint this tool was built with (no manager binary found).
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
            Reference::Manager(bin, _) => format!("manager binary {bin}"),
            Reference::Tool => format!(
                "the fingerprint this `plugin` tool was built with (no damocles-manager binary found at {}; build \
                 the manager that will load the plugin or pass --manager BIN)",
                manager_bin::searched()
            ),
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

/// Inspects `file`, comparing it with the manager binary `manager`, by default the one that will load it
/// ([`manager_bin`]: the release build `scripts/run.sh` runs first), or with this tool's own fingerprint when there
/// is none. An unreadable `file` or `manager` is an error; an unloadable plugin is an `incompatible` report.
pub fn inspect(file: &Path, manager: Option<&Path>, json: bool) -> anyhow::Result<Inspection> {
    // An explicit `--manager` that is not a file fails below, where it is read, with the I/O error.
    let chosen = manager_bin::find(manager)
        .unwrap_or_else(|path| Some(ManagerBinary { path, choice: manager_bin::Choice::Explicit }));
    let reference = match chosen {
        Some(bin) => {
            let bytes = std::fs::read(&bin.path)
                .with_context(|| format!("cannot read manager binary {}", bin.path.display()))?;
            let image = Image::read_manager(&bytes).map_err(|e| {
                anyhow::anyhow!(
                    "{}: cannot read the manager's fingerprint: {e} (is it a damocles-manager binary of this version?)",
                    bin.path.display()
                )
            })?;
            let fingerprint = image.fingerprint().clone();
            Reference::Manager(bin, fingerprint)
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
    let budget = Budget::start(limits.time_budget);
    if let Ok(image) = Image::read_process_plugin_within(&bytes, &budget) {
        return Ok(process_inspection(&label, &image, json));
    }
    let host = reference.fingerprint();
    let (image, verdict) = match unread.map_or_else(|| Image::read_plugin_within(&bytes, &budget), Err) {
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

/// The manifest part of a text report.
fn manifest_lines(out: &mut String, image: &Image<'_>, label: &str) {
    match image.manifest(label) {
        Ok(m) => {
            out.push_str(&format!("name: {}\nkind: {}\ndescription: {}\nexports:\n", m.name, m.kind, m.description));
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
}

/// A process plugin (`plugin build --process`): only the protocol's major version decides whether a manager runs
/// it; its fingerprint is shown, not compared.
fn process_inspection(label: &str, image: &Image<'_>, json: bool) -> Inspection {
    let protocol = image.info_field(FIELD_PROTOCOL).unwrap_or_default().to_string();
    let major = protocol.split('.').next().and_then(|m| m.parse::<u32>().ok());
    let refusal = (major != Some(PROTOCOL_MAJOR))
        .then(|| Refusal::Protocol { found: protocol.clone(), expected: PROTOCOL_MAJOR });
    let compared =
        format!("protocol {PROTOCOL_MAJOR}.x of this tool's SDK (a process plugin's fingerprint is not compared)");
    let report = if json {
        let manifest = image.manifest(label).ok();
        let value = json!({
            "file": label,
            "mode": "process",
            "name": manifest.as_ref().map(|m| m.name.clone()),
            "kind": manifest.as_ref().map(|m| m.kind.to_string()),
            "description": manifest.as_ref().map(|m| m.description.clone()),
            "manifest": manifest,
            "protocol": protocol,
            "buildTime": image.build_time(),
            "sdkVersion": image.sdk_version(),
            "comparedWith": compared,
            "compatible": refusal.is_none(),
            "reason": refusal.as_ref().map(|r| r.to_string()),
        });
        serde_json::to_string_pretty(&value).unwrap_or_default()
    } else {
        let mut out = format!("file: {label}\nmode: process plugin (runs as a child process of the manager)\n");
        manifest_lines(&mut out, image, label);
        out.push_str(&format!(
            "build time: {}\nsdk version: {}\nprotocol: {protocol}\ncompared with: {compared}\n",
            image.build_time(),
            image.sdk_version()
        ));
        match &refusal {
            None => out.push_str("compatible"),
            Some(r) => out.push_str(&format!("incompatible: {r}")),
        }
        out
    };
    Inspection { compatible: refusal.is_none(), report }
}

fn text_report(label: &str, image: Option<&Image<'_>>, reference: &Reference, verdict: &Result<(), Refusal>) -> String {
    let mut out = format!("file: {label}\n");
    if let Some(image) = image {
        manifest_lines(&mut out, image, label);
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
