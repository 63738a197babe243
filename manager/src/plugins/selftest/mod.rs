//! `plugin test`'s manager side (hidden subcommand [`SUBCOMMAND`]): loads one plugin file exactly as the daemon
//! does ([`PluginRegistry::load_file`]: the byte checks, the sealed memfd, the trial load in a child, `dlopen`,
//! `onInit`, and the host-side guards around every object) and runs the conformance suite of its kind against a
//! scratch directory and throw-away KV collections, one [`Outcome`] per behaviour.
//!
//! The suites ([`kv`], [`filestore`], [`sync`], [`jsonrpc`]) return errors instead of panicking, and each check
//! runs under `catch_unwind` as well, so neither a failing check nor a plugin panic (which the plugin's own guard
//! already turns into an error) ends the run.

pub mod deadline;
pub mod filestore;
pub mod jsonrpc;
pub mod kv;
pub mod sync;

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use manager_plugin::PluginState;
use manager_plugin::kv::Meta;
use manager_plugin::manifest::Kind;
use serde::Serialize;

use super::registry::{PluginRecord, PluginRegistry};

/// The hidden subcommand of `damocles-manager` that `plugin test` runs.
pub const SUBCOMMAND: &str = "__test-plugin";

/// The first behaviour of every run: the file loads as the daemon loads it (refusals carry the loader's message).
pub const LOAD: &str = "load";

/// One checked behaviour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// What was checked (e.g. `ordered-scans-with-prefixes`).
    pub behaviour: String,
    /// `true` when the plugin behaved as the manager relies on.
    pub passed: bool,
    /// Why it failed.
    pub reason: Option<String>,
}

impl Outcome {
    fn new(behaviour: impl Into<String>, result: Result<(), String>) -> Self {
        let behaviour = behaviour.into();
        match result {
            Ok(()) => Outcome { behaviour, passed: true, reason: None },
            Err(reason) => Outcome { behaviour, passed: false, reason: Some(reason) },
        }
    }

    /// `pass <behaviour>` or `FAIL <behaviour>: <reason>`.
    pub fn line(&self) -> String {
        match &self.reason {
            None => format!("pass {}", self.behaviour),
            Some(reason) => format!("FAIL {}: {reason}", self.behaviour),
        }
    }
}

/// A whole run: the `--json` document.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The plugin file.
    pub file: PathBuf,
    /// Its kind, once loaded.
    pub kind: Option<String>,
    /// Its name, once loaded.
    pub name: Option<String>,
    /// The scratch directory the plugin was given (removed afterwards).
    pub scratch: PathBuf,
    /// `true` when every behaviour passed.
    pub passed: bool,
    /// One entry per behaviour, `load` first.
    pub results: Vec<Outcome>,
}

impl Report {
    /// The text form: a header saying what runs against what, one line per behaviour, a summary.
    pub fn text(&self) -> String {
        let what = match (&self.kind, &self.name) {
            (Some(kind), Some(name)) => format!(" ({kind}/{name})"),
            _ => String::new(),
        };
        let mut out = format!(
            "testing {}{what}, loaded as damocles-manager loads it\nscratch: {} (a throw-away directory, Meta and KV \
             collections; no production data is touched)\n",
            self.file.display(),
            self.scratch.display()
        );
        for outcome in &self.results {
            out.push_str(&outcome.line());
            out.push('\n');
        }
        let failed = self.results.iter().filter(|o| !o.passed).count();
        out.push_str(&format!("{} passed, {failed} failed", self.results.len() - failed));
        out
    }
}

/// Loads `file` as the daemon does and runs its kind's suite in a fresh scratch directory (removed afterwards).
/// `meta` is what a KVStore plugin's constructor gets (`[Common.DB.Plugin.Meta]` in the daemon).
pub fn run(file: &Path, meta: &Meta) -> Report {
    let scratch = scratch_dir();
    let mut report =
        Report { file: file.to_path_buf(), kind: None, name: None, scratch, passed: false, results: vec![] };
    if let Err(e) = std::fs::create_dir_all(report.scratch.join("plugins")) {
        let reason = format!(
            "cannot create the scratch directory {}: {e} (set TMPDIR to a writable directory)",
            report.scratch.display()
        );
        report.results.push(Outcome::new(LOAD, Err(reason)));
        return report;
    }
    deadline::identified(&report);
    run_in(file, meta, &mut report);
    if let Err(e) = std::fs::remove_dir_all(&report.scratch) {
        tracing::warn!("cannot remove the scratch directory {}: {e}", report.scratch.display());
    }
    report.passed = report.results.iter().all(|o| o.passed);
    report
}

fn run_in(file: &Path, meta: &Meta, report: &mut Report) {
    deadline::started(LOAD);
    let registry = PluginRegistry::load_file(file, &report.scratch.join("plugins"));
    let loaded = loaded_record(&registry, report);
    deadline::identified(report);
    let outcome = Outcome::new(LOAD, loaded.as_ref().map(drop).map_err(Clone::clone));
    deadline::finished(&outcome);
    report.results.push(outcome);
    let Ok(record) = loaded else { return };
    let scratch = report.scratch.clone();
    report.results.extend(run_suite(&record, &scratch, meta));
    registry.shutdown();
}

/// The one plugin `registry` loaded and initialized, or why not (the loader's refusal, `onInit`'s error); sets the
/// report's kind and name as far as they are known.
fn loaded_record(registry: &PluginRegistry, report: &mut Report) -> Result<Arc<PluginRecord>, String> {
    if let Some((_, err)) = registry.refused().next() {
        report.kind = err.plugin_kind().map(|k| k.to_string());
        report.name = err.plugin_name().map(str::to_string);
        return Err(err.to_string());
    }
    let info = registry.list().into_iter().next().ok_or("the registry loaded nothing")?;
    report.kind = info.kind.clone();
    report.name = info.name.clone();
    let record = info
        .kind
        .as_deref()
        .and_then(Kind::from_name)
        .zip(info.name.as_deref())
        .and_then(|(kind, name)| registry.find_any(kind, name))
        .ok_or("the loaded plugin is not in the registry")?;
    if record.state() != PluginState::Ready {
        return Err(info.last_error.unwrap_or_else(|| format!("the plugin is {}", info.state)));
    }
    Ok(record)
}

fn run_suite(record: &PluginRecord, scratch: &Path, meta: &Meta) -> Vec<Outcome> {
    match record.manifest().kind {
        Kind::KvStore => kv::run(record, scratch, meta),
        Kind::FileStore => filestore::run(record, scratch),
        Kind::SyncSectorState => sync::run(record),
        Kind::RegisterJsonRpc => jsonrpc::run(record),
    }
}

/// Runs one check; a panic of the check itself (host code) becomes its failure instead of ending the run.
pub(crate) fn check(behaviour: &str, f: impl FnOnce() -> Result<(), String>) -> Outcome {
    deadline::started(behaviour);
    let result = std::panic::catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|payload| Err(format!("the check panicked: {}", panic_message(payload.as_ref()))));
    let outcome = Outcome::new(behaviour, result);
    deadline::finished(&outcome);
    outcome
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    match (payload.downcast_ref::<&str>(), payload.downcast_ref::<String>()) {
        (Some(s), _) => (*s).to_string(),
        (_, Some(s)) => s.clone(),
        _ => "(no message)".into(),
    }
}

pub(super) fn scratch_dir() -> PathBuf {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    std::env::temp_dir().join(format!("damocles-plugin-test-{}-{nanos:x}", std::process::id()))
}

/// `what`'s value, shortened for a failure message (a 70 kB value is not printed whole).
pub(crate) fn show(value: &impl std::fmt::Debug) -> String {
    let text = format!("{value:?}");
    match text.char_indices().nth(120) {
        Some((at, _)) => format!("{}… ({} chars)", &text[..at], text.chars().count()),
        None => text,
    }
}

/// Fails the enclosing check (`return Err`) unless `got == want`, naming what was compared.
macro_rules! ensure_eq {
    ($got:expr, $want:expr, $($what:tt)+) => {
        match (&$got, &$want) {
            (got, want) => {
                if got != want {
                    return Err(format!(
                        "{}: got {}, expected {}",
                        format_args!($($what)+),
                        $crate::plugins::selftest::show(got),
                        $crate::plugins::selftest::show(want)
                    ));
                }
            }
        }
    };
}

/// Fails the enclosing check (`return Err`) unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($what:tt)+) => {
        if !$cond {
            return Err(format!($($what)+));
        }
    };
}

pub(crate) use {ensure, ensure_eq};

/// `.ctx("put k")?`: a plugin error as the failure of the enclosing check, naming the call.
pub(crate) trait Context<T> {
    /// Maps the error to `"<what>: <error>"`.
    fn ctx(self, what: &str) -> Result<T, String>;
}

impl<T, E: std::fmt::Display> Context<T> for Result<T, E> {
    fn ctx(self, what: &str) -> Result<T, String> {
        self.map_err(|e| format!("{what}: {e}"))
    }
}
