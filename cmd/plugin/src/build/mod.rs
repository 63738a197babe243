//! `plugin build`: turns a plain library crate with a `manifest.toml` into `<out-dir>/plugin-<name>.so`, or with
//! `--process` into the executable `<out-dir>/plugin-<name>` that the manager runs as a child process.
//!
//! 1. Read and validate `manifest.toml`.
//! 2. Resolve the author's crate with `cargo metadata` (its library name, its `manager-plugin` dependency).
//! 3. Generate a cdylib wrapper crate (see [`codegen`]) with the manager's profiles and the author's lockfile.
//! 4. Unless skipped, align the wrapper to the manager's dependency versions and compiled features with the same
//!    machinery as `plugin check-dep --fix` (the wrapper is generated, so editing it is safe), and refuse to build
//!    when that is impossible (e.g. the author's `Cargo.toml` excludes the manager's version of a shared crate).
//! 5. Build it, mapping compile errors in generated code back to the manifest entry that produced them.
//! 6. Copy the library to the output directory atomically (a running daemon may have the old one mapped).

pub mod codegen;
mod wrapper;

use std::path::{Path, PathBuf};

use manager_plugin::manifest::{Manifest, ManifestError};

pub use wrapper::BuildFailure;

/// What to build and how.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The plugin crate: holds `Cargo.toml` and `manifest.toml`.
    pub src_dir: PathBuf,
    /// Where `plugin-<name>.so` goes (created if missing).
    pub out_dir: PathBuf,
    /// Build with the release profile (must match how the manager was built).
    pub release: bool,
    /// Cargo target directory; defaults to the plugin crate's (shared with its workspace).
    pub target_dir: Option<PathBuf>,
    /// Skip the `check-dep` comparison with the manager's dependency graph.
    pub skip_check_dep: bool,
    /// Build an executable `plugin-<name>` the manager runs as a child process (`--process`) instead of a `.so`.
    /// Its dependencies need not match the manager's (only the protocol's major version must), so they are not
    /// aligned.
    pub process: bool,
}

/// A successful build.
#[derive(Debug, Clone)]
pub struct BuildOutput {
    /// The validated manifest.
    pub manifest: Manifest,
    /// The written library (or executable, for a process plugin).
    pub library: PathBuf,
    /// When it was built (RFC 3339, UTC), as embedded in the library.
    pub build_time: String,
}

/// Why a build failed. Messages name the file or manifest entry concerned.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// `manifest.toml` is missing or invalid.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// `cargo metadata` failed on the plugin crate.
    #[error("cannot resolve the plugin crate {path}: {message}")]
    Metadata {
        /// The plugin's Cargo.toml.
        path: PathBuf,
        /// Cargo's message.
        message: String,
    },
    /// The crate is not usable as a plugin source.
    #[error("{path}: {message}")]
    Crate {
        /// The plugin's Cargo.toml.
        path: PathBuf,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The plugin's dependencies differ from the manager's.
    #[error(
        "plugin {path} does not match the manager's dependencies:\n{report}\nfix: cargo run -p plugin -- check-dep --fix {path} (or pass --skip-check-dep at your own risk)"
    )]
    Mismatch {
        /// The plugin's Cargo.toml.
        path: PathBuf,
        /// The check-dep report.
        report: String,
    },
    /// The dependency check itself failed.
    #[error("dependency check of {path} failed: {message}")]
    CheckDep {
        /// The plugin's Cargo.toml.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A file could not be written or copied.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The wrapper failed to build.
    #[error(transparent)]
    Compile(#[from] BuildFailure),
}

/// Builds the plugin described by `options`.
pub fn build(options: &BuildOptions) -> Result<BuildOutput, BuildError> {
    let src_dir = std::path::absolute(&options.src_dir).map_err(|source| BuildError::Io {
        action: "resolve",
        path: options.src_dir.clone(),
        source,
    })?;
    let manifest_path = src_dir.join("manifest.toml");
    let manifest_text = std::fs::read_to_string(&manifest_path).map_err(|source| {
        BuildError::Manifest(ManifestError::Read { file: manifest_path.display().to_string(), source })
    })?;
    let manifest = Manifest::parse(&manifest_text, &manifest_path.display().to_string())?;
    let cargo_toml = src_dir.join("Cargo.toml");
    let source = wrapper::PluginSource::resolve(&cargo_toml)?;
    let build_time = now_rfc3339();
    let target_dir = options.target_dir.clone().unwrap_or_else(|| source.target_dir.clone());
    // Absolute: cargo runs on the wrapper from the wrapper's own directory.
    let target_dir = std::path::absolute(&target_dir).map_err(|source| BuildError::Io {
        action: "resolve",
        path: target_dir.clone(),
        source,
    })?;
    let built = wrapper::build_wrapper(&wrapper::WrapperSpec {
        manifest: &manifest,
        manifest_text: &manifest_text,
        manifest_path: &manifest_path,
        source: &source,
        build_time: &build_time,
        target_dir: &target_dir,
        release: options.release,
        align_with_manager: !options.skip_check_dep && !options.process,
        mode: if options.process { codegen::Mode::Process } else { codegen::Mode::Library },
    })?;
    let file_name = if options.process { format!("plugin-{}", manifest.name) } else { manifest.library_file_name() };
    let library = install(&built.path, &options.out_dir, &file_name)?;
    drop(built);
    Ok(BuildOutput { manifest, library, build_time })
}

/// Copies `built` to `out_dir/file_name` through a temporary file (synced) and a rename (the directory synced
/// after it), so a crash leaves either the old or the new complete file, and a daemon that has the old library
/// mapped keeps a consistent file.
fn install(built: &Path, out_dir: &Path, file_name: &str) -> Result<PathBuf, BuildError> {
    let io = |action, path: PathBuf| move |source| BuildError::Io { action, path, source };
    std::fs::create_dir_all(out_dir).map_err(io("create", out_dir.to_path_buf()))?;
    let dest = out_dir.join(file_name);
    let tmp = out_dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let copied = std::fs::copy(built, &tmp)
        .and_then(|_| std::fs::File::open(&tmp))
        .and_then(|f| f.sync_all())
        .map_err(io("copy to", tmp.clone()));
    let renamed = copied.and_then(|()| std::fs::rename(&tmp, &dest).map_err(io("rename to", dest.clone())));
    if let Err(err) = renamed {
        let _ = std::fs::remove_file(&tmp);
        return Err(err);
    }
    std::fs::File::open(out_dir).and_then(|d| d.sync_all()).map_err(io("sync directory", out_dir.to_path_buf()))?;
    Ok(dest)
}

fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc().replace_nanosecond(0).unwrap_or_else(|_| time::OffsetDateTime::now_utc());
    now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}
