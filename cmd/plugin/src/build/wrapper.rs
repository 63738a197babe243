//! The generated wrapper crate: where it lives, what it depends on, and running cargo on it.

use std::fmt;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cargo_metadata::diagnostic::DiagnosticLevel;
use cargo_metadata::{Message, MetadataCommand, Package, TargetKind};
use manager_plugin::manifest::Manifest;

use super::BuildError;
use super::codegen::{GeneratedLib, Mode, generate};

/// The manager workspace's `Cargo.toml`, for its `[profile.*]` tables (the wrapper must compile with the same
/// profile settings as the manager, and sharing them lets it reuse already compiled dependencies).
const MANAGER_WORKSPACE_TOML: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml"));
/// The manager's lockfile: the pinned versions a plugin crate without its own lockfile starts from.
pub(crate) const MANAGER_LOCKFILE: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.lock"));

/// The author's crate, as cargo resolved it.
#[derive(Debug, Clone)]
pub(crate) struct PluginSource {
    pub package_name: String,
    /// The library's crate name (what generated code writes as `::name`).
    pub lib_name: String,
    pub src_dir: PathBuf,
    pub sdk_dir: PathBuf,
    pub target_dir: PathBuf,
    /// The lockfile of the author's workspace, if it has one.
    pub lockfile: Option<PathBuf>,
}

impl PluginSource {
    pub fn resolve(cargo_toml: &Path) -> Result<PluginSource, BuildError> {
        let crate_err = |message: String| BuildError::Crate { path: cargo_toml.to_path_buf(), message };
        if !cargo_toml.is_file() {
            return Err(crate_err("no such file: the plugin directory must hold a Cargo.toml".into()));
        }
        let metadata = MetadataCommand::new()
            .manifest_path(cargo_toml)
            .exec()
            .map_err(|e| BuildError::Metadata { path: cargo_toml.to_path_buf(), message: e.to_string() })?;
        let package =
            metadata.packages.iter().find(|p| p.manifest_path.as_std_path() == cargo_toml).ok_or_else(|| {
                crate_err("cargo metadata does not list this package (is it a virtual workspace?)".into())
            })?;
        let lib_name = library_name(package).ok_or_else(|| {
            crate_err(format!("package {} has no library target: a plugin is a plain `lib` crate", package.name))
        })?;
        let sdk = sdk_dependency(&metadata, package).ok_or_else(|| {
            crate_err(format!(
                "package {} does not depend on manager-plugin: add `manager-plugin = {{ path = \"…/manager-plugin\" }}`",
                package.name
            ))
        })?;
        let lockfile = metadata.workspace_root.as_std_path().join("Cargo.lock");
        Ok(PluginSource {
            package_name: package.name.to_string(),
            lib_name,
            src_dir: cargo_toml.parent().map(Path::to_path_buf).unwrap_or_default(),
            sdk_dir: sdk.manifest_path.as_std_path().parent().map(Path::to_path_buf).unwrap_or_default(),
            target_dir: metadata.target_directory.into_std_path_buf(),
            lockfile: lockfile.is_file().then_some(lockfile),
        })
    }
}

fn library_name(package: &Package) -> Option<String> {
    package
        .targets
        .iter()
        .find(|t| t.kind.iter().any(|k| matches!(k, TargetKind::Lib | TargetKind::RLib)))
        .map(|t| t.name.replace('-', "_"))
}

fn sdk_dependency<'a>(metadata: &'a cargo_metadata::Metadata, package: &Package) -> Option<&'a Package> {
    let resolve = metadata.resolve.as_ref()?;
    let node = resolve.nodes.iter().find(|n| n.id == package.id)?;
    node.deps
        .iter()
        .filter_map(|d| metadata.packages.iter().find(|p| p.id == d.pkg))
        .find(|p| p.name.as_str() == "manager-plugin")
}

/// Everything needed to generate and build one wrapper.
pub(crate) struct WrapperSpec<'a> {
    pub manifest: &'a Manifest,
    pub manifest_text: &'a str,
    pub manifest_path: &'a Path,
    pub source: &'a PluginSource,
    pub build_time: &'a str,
    pub target_dir: &'a Path,
    pub release: bool,
    /// Pin the wrapper to the manager's versions and compiled features before building.
    pub align_with_manager: bool,
    /// A `.so` (loaded in process) or an executable (run as a child process).
    pub mode: Mode,
}

impl WrapperSpec<'_> {
    /// The wrapper crate's directory name: the plugin's name, `-process` for an executable (the two kinds of
    /// wrapper of one plugin never share a directory or a build lock).
    fn dir_name(&self) -> String {
        match self.mode {
            Mode::Library => self.manifest.name.clone(),
            Mode::Process => format!("{}-process", self.manifest.name),
        }
    }

    /// The generated source file.
    fn source_file(&self) -> &'static str {
        match self.mode {
            Mode::Library => "lib.rs",
            Mode::Process => "main.rs",
        }
    }

    /// The cargo target the wrapper builds.
    fn target_name(&self) -> String {
        match self.mode {
            Mode::Library => wrapper_lib_name(self.manifest),
            Mode::Process => format!("plugin-{}", self.manifest.name),
        }
    }
}

/// The wrapper failed to compile. Errors in generated code name the manifest entry that produced them.
#[derive(Debug)]
pub struct BuildFailure {
    /// The plugin's manifest.
    pub manifest_path: PathBuf,
    /// One message per compile error (or cargo's own failure).
    pub errors: Vec<String>,
}

impl fmt::Display for BuildFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "building the plugin described by {} failed:", self.manifest_path.display())?;
        for e in &self.errors {
            write!(f, "\n{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for BuildFailure {}

/// A built library, with the lock that keeps other builds of the same plugin name from overwriting it (they
/// share the wrapper directory and cargo's uplifted artifact) until it has been copied out.
pub(crate) struct BuiltLibrary {
    pub path: PathBuf,
    _lock: std::fs::File,
}

/// Generates the wrapper crate under the target directory, builds it, and returns the built library.
pub(crate) fn build_wrapper(spec: &WrapperSpec<'_>) -> Result<BuiltLibrary, BuildError> {
    let wrappers = spec.target_dir.join("damocles-plugin-wrappers");
    let build_lock = lock_wrapper(&wrappers, &spec.dir_name())?;
    let dir = wrappers.join(spec.dir_name());
    let lib = generate(spec.manifest, spec.manifest_text, &spec.source.lib_name, spec.build_time, spec.mode);
    write_file(&dir.join("Cargo.toml"), &wrapper_cargo_toml(spec))?;
    write_file(&dir.join("src").join(spec.source_file()), &lib.source)?;
    let lock = match &spec.source.lockfile {
        Some(path) => std::fs::read_to_string(path).map_err(|source| BuildError::Io {
            action: "read",
            path: path.clone(),
            source,
        })?,
        None => MANAGER_LOCKFILE.to_string(),
    };
    write_file(&dir.join("Cargo.lock"), &lock)?;
    if spec.align_with_manager {
        align_with_manager(spec, &dir.join("Cargo.toml"))?;
    }
    let path = run_cargo(spec, &dir, &lib)?;
    Ok(BuiltLibrary { path, _lock: build_lock })
}

/// Takes the exclusive build lock of plugin `name` (released when the returned file is dropped).
fn lock_wrapper(wrappers: &Path, name: &str) -> Result<std::fs::File, BuildError> {
    let path = wrappers.join(format!("{name}.lock"));
    let io = |action, path: &Path| {
        let path = path.to_path_buf();
        move |source| BuildError::Io { action, path, source }
    };
    std::fs::create_dir_all(wrappers).map_err(io("create", wrappers))?;
    let file = std::fs::File::create(&path).map_err(io("create", &path))?;
    file.lock().map_err(io("lock", &path))?;
    Ok(file)
}

/// Makes the wrapper's resolved graph match the manager's (versions, sources, compiled features) by editing the
/// generated wrapper only; refuses when the author's own crate prevents it.
fn align_with_manager(spec: &WrapperSpec<'_>, wrapper_toml: &Path) -> Result<(), BuildError> {
    let author_toml = spec.source.src_dir.join("Cargo.toml");
    let outcome = crate::check_dep::fix(wrapper_toml)
        .map_err(|e| BuildError::CheckDep { path: author_toml.clone(), message: e.to_string() })?;
    if outcome.is_fixed() {
        Ok(())
    } else {
        Err(BuildError::Mismatch { path: author_toml, report: outcome.to_string() })
    }
}

fn write_file(path: &Path, text: &str) -> Result<(), BuildError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| BuildError::Io {
            action: "create",
            path: parent.to_path_buf(),
            source,
        })?;
    }
    std::fs::write(path, text).map_err(|source| BuildError::Io { action: "write", path: path.to_path_buf(), source })
}

fn wrapper_lib_name(manifest: &Manifest) -> String {
    format!("plugin_{}", manifest.name.replace('-', "_"))
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn wrapper_cargo_toml(spec: &WrapperSpec<'_>) -> String {
    let src = &spec.source;
    let target = match spec.mode {
        Mode::Library => {
            format!("[lib]\nname = {}\ncrate-type = [\"cdylib\"]\npath = \"src/lib.rs\"", toml_str(&spec.target_name()))
        }
        Mode::Process => format!("[[bin]]\nname = {}\npath = \"src/main.rs\"", toml_str(&spec.target_name())),
    };
    let mut text = format!(
        "# Generated by `plugin build` from {}. Do not edit.\n\
         [package]\nname = {}\nversion = \"0.0.0\"\nedition = \"2024\"\npublish = false\n\n\
         {target}\n\n\
         [dependencies]\n{} = {{ package = {}, path = {} }}\nmanager-plugin = {{ path = {} }}\n\n\
         [workspace]\n\n",
        spec.manifest_path.display(),
        toml_str(&format!("damocles-plugin-{}", spec.dir_name())),
        src.lib_name,
        toml_str(&src.package_name),
        toml_str(&src.src_dir.to_string_lossy()),
        toml_str(&src.sdk_dir.to_string_lossy()),
    );
    text.push_str(&manager_profiles());
    text
}

/// The `[profile.*]` tables of the manager's workspace, re-serialized. Overrides for one named package (e.g.
/// the manager's RocksDB) are left out: cargo warns about a spec matching no package, and they never change how
/// code shared with a plugin is compiled; `package."*"` stays.
fn manager_profiles() -> String {
    let Ok(doc) = MANAGER_WORKSPACE_TOML.parse::<toml::Table>() else { return String::new() };
    match doc.get("profile") {
        Some(profile) => {
            let mut profile = profile.clone();
            for settings in profile.as_table_mut().into_iter().flat_map(|t| t.iter_mut().map(|(_, v)| v)) {
                if let Some(packages) = settings.get_mut("package").and_then(|p| p.as_table_mut()) {
                    packages.retain(|spec, _| spec == "*");
                }
            }
            let mut table = toml::Table::new();
            table.insert("profile".into(), profile);
            toml::to_string(&table).unwrap_or_default()
        }
        None => String::new(),
    }
}

fn run_cargo(spec: &WrapperSpec<'_>, dir: &Path, lib: &GeneratedLib) -> Result<PathBuf, BuildError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build");
    match spec.mode {
        Mode::Library => cmd.arg("--lib"),
        Mode::Process => cmd.arg("--bin").arg(spec.target_name()),
    };
    cmd.arg("--message-format=json-diagnostic-rendered-ansi")
        .arg("--manifest-path")
        .arg(dir.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", spec.target_dir)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        // The wrapper's own directory: no `.cargo/config.toml` on the caller's path changes how it is built.
        .current_dir(dir)
        // Plugin panics are caught by the plugin's own std: unwinding is required whatever the environment says
        // (a `panic = "abort"` that still gets through, e.g. from RUSTFLAGS, is a compile error in the SDK).
        .env("CARGO_PROFILE_DEV_PANIC", "unwind")
        .env("CARGO_PROFILE_RELEASE_PANIC", "unwind")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if spec.release {
        cmd.arg("--release");
    }
    let failure = |errors: Vec<String>| BuildFailure { manifest_path: spec.manifest_path.to_path_buf(), errors };
    let mut child = cmd.spawn().map_err(|e| failure(vec![format!("cannot run cargo: {e}")]))?;
    let wrapper_lib = spec.target_name();
    let mut errors = Vec::new();
    let mut library = None;
    if let Some(stdout) = child.stdout.take() {
        for message in Message::parse_stream(BufReader::new(stdout)).flatten() {
            match message {
                Message::CompilerMessage(msg) if msg.message.level == DiagnosticLevel::Error => {
                    errors.push(describe_error(&msg, &wrapper_lib, lib, spec));
                }
                Message::CompilerArtifact(art) if art.target.name == wrapper_lib => {
                    library = match spec.mode {
                        Mode::Library => art
                            .filenames
                            .iter()
                            .find(|f| f.extension() == Some("so"))
                            .map(|f| f.clone().into_std_path_buf()),
                        Mode::Process => art.executable.map(|f| f.into_std_path_buf()),
                    };
                }
                _ => {}
            }
        }
    }
    let status = child.wait().map_err(|e| failure(vec![format!("waiting for cargo: {e}")]))?;
    match library {
        Some(path) if status.success() => Ok(path),
        _ => {
            if errors.is_empty() {
                errors.push(format!("cargo build exited with {status} (see its output above)"));
            }
            Err(failure(errors).into())
        }
    }
}

fn describe_error(
    msg: &cargo_metadata::CompilerMessage,
    wrapper_lib: &str,
    lib: &GeneratedLib,
    spec: &WrapperSpec<'_>,
) -> String {
    let rendered = strip_ansi(msg.message.rendered.as_deref().unwrap_or(&msg.message.message));
    if msg.message.message.contains("global_allocator") {
        return format!(
            "plugin crate {} sets its own #[global_allocator] (or depends on a crate that does): plugins must allocate \
             with the process's allocator, because memory crosses the plugin boundary and is freed by the manager; \
             the generated wrapper installs it. Remove the #[global_allocator] (and allocator features such as \
             mimalloc/override).\n{rendered}",
            spec.source.package_name
        );
    }
    if msg.target.name != wrapper_lib {
        return format!("error in plugin crate {}:\n{rendered}", spec.source.package_name);
    }
    let entry = msg
        .message
        .spans
        .iter()
        .filter(|s| s.is_primary && s.file_name.ends_with(spec.source_file()))
        .find_map(|s| lib.entry_at(s.line_start));
    match entry {
        // A missing function: rustc's words say it best ("cannot find function `hnadler`"), with what it needs.
        Some(region) if msg.message.message.starts_with("cannot find") => format!(
            "{} {}: {}\n  (the function must exist in crate {}: {}){}",
            spec.manifest_path.display(),
            region.entry,
            msg.message.message,
            spec.source.lib_name,
            region.needs,
            details_outside_glue(&msg.message)
        ),
        // Anything else (a wrong signature): what the entry needs first, then rustc's words about the mismatch.
        Some(region) => format!(
            "{} {}: {}\n  rustc: {}\n  (fix the function in crate {}, or the manifest entry; see \
             docs/plugin-guide.md, \"The manifest\"){}",
            spec.manifest_path.display(),
            region.entry,
            region.needs,
            msg.message.message,
            spec.source.lib_name,
            details_outside_glue(&msg.message)
        ),
        None => format!("error in generated glue for {}:\n{rendered}", spec.manifest_path.display()),
    }
}

/// rustc's labels, notes and help for an error in generated code, without the generated file's line numbers
/// (they would collide with the author's own `src/lib.rs`) and without suggested edits to generated code. Spans in
/// the author's files keep their location.
fn details_outside_glue(diagnostic: &cargo_metadata::diagnostic::Diagnostic) -> String {
    // rustc names the files of the crate it compiles (the wrapper) relative to it; the author's crate by full path.
    let in_glue = |file: &str| Path::new(file).is_relative() || file.contains("damocles-plugin-wrappers");
    let mut out = String::new();
    for span in &diagnostic.spans {
        match (&span.label, in_glue(&span.file_name)) {
            (Some(label), true) => out.push_str(&format!("\n  {label}")),
            (Some(label), false) => out.push_str(&format!("\n  {}:{}: {label}", span.file_name, span.line_start)),
            (None, _) => {}
        }
    }
    for child in &diagnostic.children {
        let level = match child.level {
            DiagnosticLevel::Help => "help",
            DiagnosticLevel::Note => "note",
            _ => "",
        };
        let outside: Vec<String> = child
            .spans
            .iter()
            .filter(|s| !in_glue(&s.file_name))
            .map(|s| format!(" ({}:{})", s.file_name, s.line_start))
            .collect();
        let prefix = if level.is_empty() { String::new() } else { format!("{level}: ") };
        out.push_str(&format!("\n  {prefix}{}{}", child.message, outside.join("")));
    }
    out
}

/// Removes ANSI colour sequences from rustc's rendered diagnostics.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ansi_colours_are_stripped() {
        assert_eq!(strip_ansi("\u{1b}[0m\u{1b}[1m\u{1b}[38;5;9merror\u{1b}[0m: x"), "error: x");
    }

    #[test]
    fn the_wrapper_inherits_the_manager_profiles() {
        let profiles = manager_profiles();
        assert!(profiles.contains("[profile.dev]"), "{profiles}");
        assert!(profiles.contains("[profile.dev.package.\"*\"]"), "{profiles}");
        assert!(!profiles.contains("librocksdb-sys"), "{profiles}");
    }
}
