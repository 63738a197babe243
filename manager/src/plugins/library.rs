//! Opening one plugin file safely: map it, read its C-ABI header, compare fingerprints, parse its manifest,
//! and only then resolve the Rust-ABI module symbol.
//!
//! Libraries are never unloaded (see ARCHITECTURE.md, invariant `never-unload`): every handle is leaked, also for
//! refused files, because static initializers may already have run.

use std::path::{Path, PathBuf};

use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
use manager_plugin::abi::{self, Fingerprint, FingerprintDifference, HeaderFn, PluginHeader};
use manager_plugin::glue::{Exports, ModuleFn, PluginModule};
use manager_plugin::manifest::{Kind, Manifest};

/// Why a file was refused. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The dynamic loader refused the file (not ELF, truncated, missing symbols...).
    #[error("{file}: not a loadable library: {message}")]
    NotALibrary {
        /// The file.
        file: PathBuf,
        /// dlopen's message.
        message: String,
    },
    /// The library does not export a damocles plugin header.
    #[error(
        "{file}: not a damocles plugin (no `{}` symbol); build plugins with `cargo run -p plugin -- build`",
        abi::HEADER_SYMBOL
    )]
    NotAPlugin {
        /// The file.
        file: PathBuf,
    },
    /// The header is malformed or of another version.
    #[error("{file}: bad plugin header: {reason}")]
    BadHeader {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The plugin was built by another compiler, profile or SDK than the manager.
    #[error(
        "{file}: plugin '{name}' was built differently from this manager, loading it would be undefined behaviour:\n{}\n  fix: cargo run -p plugin -- check-dep --fix <plugin>/Cargo.toml, then rebuild it with `cargo run -p plugin -- build` using the manager's toolchain and profile{}",
        differences.iter().map(|d| format!("  - {d}")).collect::<Vec<_>>().join("\n"),
        profile_hint(differences)
    )]
    FingerprintMismatch {
        /// The file.
        file: PathBuf,
        /// The plugin's name, as far as the manifest tells.
        name: String,
        /// Each differing item.
        differences: Vec<FingerprintDifference>,
    },
    /// The embedded manifest is invalid.
    #[error("{file}: invalid embedded manifest: {message}")]
    Manifest {
        /// The file.
        file: PathBuf,
        /// The manifest error.
        message: String,
    },
    /// The exports do not match the manifest's kind.
    #[error("{file}: manifest says kind {kind} but the library exports {exported}; rebuild it with `plugin build`")]
    KindMismatch {
        /// The file.
        file: PathBuf,
        /// Kind in the manifest.
        kind: Kind,
        /// Kind of the exports.
        exported: Kind,
    },
    /// Another plugin with the same kind and name was loaded first.
    #[error("{file}: duplicate plugin '{kind}/{name}', already loaded from {first}; remove one of the two files")]
    Duplicate {
        /// The refused file.
        file: PathBuf,
        /// Kind.
        kind: Kind,
        /// Name.
        name: String,
        /// The file loaded first.
        first: PathBuf,
    },
}

/// Says which `plugin build` flag matches this manager's profile when the profile is one of the differences.
fn profile_hint(differences: &[FingerprintDifference]) -> &'static str {
    match differences.iter().find(|d| d.item == "debug-assertions").map(|d| d.host.as_str()) {
        Some("true") => " (this manager is a debug build: add --debug to `plugin build`)",
        Some(_) => " (this manager is a release build: run `plugin build` without --debug)",
        None => "",
    }
}

/// A plugin library that passed every check.
pub struct OpenedPlugin {
    /// The file it came from.
    pub file: PathBuf,
    /// Its validated manifest.
    pub manifest: Manifest,
    /// When `plugin build` built it.
    pub build_time: String,
    /// Its guarded entry points.
    pub module: PluginModule,
}

/// Opens `file` and checks it; the library stays mapped for the life of the process, refused or not.
pub fn open(file: &Path) -> Result<OpenedPlugin, LoadError> {
    let library = map_library(file)?;
    let header = read_header(file, library)?;
    let manifest = Manifest::parse(&header.manifest, &format!("{}:manifest.toml", file.display()))
        .map_err(|e| LoadError::Manifest { file: file.to_path_buf(), message: e.to_string() })?;
    let differences = Fingerprint::current().differences(&Fingerprint::parse(&header.fingerprint));
    if !differences.is_empty() {
        return Err(LoadError::FingerprintMismatch { file: file.to_path_buf(), name: manifest.name, differences });
    }
    // SAFETY: the fingerprint matched, so the plugin was built by this compiler from these SDK sources and
    // features: the Rust-ABI signature `ModuleFn` is the one it exports.
    let module_fn: ModuleFn = unsafe {
        let symbol = library.get::<ModuleFn>(abi::MODULE_SYMBOL.as_bytes()).map_err(|_| LoadError::BadHeader {
            file: file.to_path_buf(),
            reason: format!("no `{}` symbol", abi::MODULE_SYMBOL),
        })?;
        *symbol
    };
    let module = module_fn();
    let exported = exports_kind(&module.exports);
    if exported != manifest.kind {
        return Err(LoadError::KindMismatch { file: file.to_path_buf(), kind: manifest.kind, exported });
    }
    Ok(OpenedPlugin { file: file.to_path_buf(), manifest, build_time: header.build_time, module })
}

/// Checks that `file` is a complete ELF shared object before handing it to the dynamic loader: `dlopen` maps a
/// truncated file without complaint and the process dies of SIGBUS when code touches the missing part.
fn check_elf(file: &Path) -> Result<(), LoadError> {
    use object::{Object, ObjectSection, ObjectSegment};
    let refuse = |message: String| LoadError::NotALibrary { file: file.to_path_buf(), message };
    let data = std::fs::read(file).map_err(|e| refuse(format!("cannot read: {e}")))?;
    if !data.starts_with(b"\x7fELF") {
        return Err(refuse("not an ELF file".into()));
    }
    let elf = object::File::parse(&*data).map_err(|e| refuse(format!("truncated or corrupt ELF file: {e}")))?;
    if elf.kind() != object::ObjectKind::Dynamic {
        return Err(refuse(format!("not a shared library (ELF kind {:?})", elf.kind())));
    }
    let truncated =
        |what: String| refuse(format!("truncated or corrupt ELF file: {what} lies beyond the end of the file"));
    for (i, segment) in elf.segments().enumerate() {
        segment.data().map_err(|_| truncated(format!("segment {i}")))?;
    }
    for section in elf.sections() {
        if section.kind() != object::SectionKind::UninitializedData {
            section.data().map_err(|_| truncated(format!("section {}", section.name().unwrap_or("?"))))?;
        }
    }
    Ok(())
}

fn map_library(file: &Path) -> Result<&'static Library, LoadError> {
    check_elf(file)?;
    // SAFETY: mapping a library runs its initializers. Plugin files come from the operator's plugins dir,
    // which is as trusted as the manager binary itself; RTLD_NOW surfaces missing symbols here, not mid-call.
    let library = unsafe { Library::open(Some(file), RTLD_NOW | RTLD_LOCAL) }
        .map_err(|e| LoadError::NotALibrary { file: file.to_path_buf(), message: e.to_string() })?;
    Ok(Box::leak(Box::new(library)))
}

struct HeaderText {
    fingerprint: String,
    manifest: String,
    build_time: String,
}

fn read_header(file: &Path, library: &'static Library) -> Result<HeaderText, LoadError> {
    let bad = |reason: String| LoadError::BadHeader { file: file.to_path_buf(), reason };
    // SAFETY: `HeaderFn` is a C-ABI signature, stable across compilers; the symbol name is ours.
    let header_fn: HeaderFn = unsafe {
        *library
            .get::<HeaderFn>(abi::HEADER_SYMBOL.as_bytes())
            .map_err(|_| LoadError::NotAPlugin { file: file.to_path_buf() })?
    };
    // SAFETY: a C-ABI function with no arguments returning a pointer to a static.
    let ptr: *const PluginHeader = unsafe { header_fn() };
    // SAFETY: non-null pointers returned by the header function point to a 'static `#[repr(C)]` header.
    let header = unsafe { ptr.as_ref() }.ok_or_else(|| bad("null header".into()))?;
    if header.magic != abi::MAGIC {
        return Err(bad("wrong magic: not a damocles plugin header".into()));
    }
    if header.header_version != abi::HEADER_VERSION {
        return Err(bad(format!(
            "header version {} (this manager reads version {}); rebuild the plugin with this manager's `plugin build`",
            header.header_version,
            abi::HEADER_VERSION
        )));
    }
    // SAFETY: the header's strings point into the library's static data, which is never unmapped.
    let text = |raw: &abi::RawStr, what: &str| {
        unsafe { raw.as_str() }.map(str::to_string).ok_or_else(|| bad(format!("{what} is not valid UTF-8")))
    };
    Ok(HeaderText {
        fingerprint: text(&header.fingerprint, "fingerprint")?,
        manifest: text(&header.manifest, "manifest")?,
        build_time: text(&header.build_time, "build time")?,
    })
}

fn exports_kind(exports: &Exports) -> Kind {
    match exports {
        Exports::KvStore { .. } => Kind::KvStore,
        Exports::FileStore { .. } => Kind::FileStore,
        Exports::SyncSectorState(_) => Kind::SyncSectorState,
        Exports::RegisterJsonRpc { .. } => Kind::RegisterJsonRpc,
    }
}
