//! Opening one plugin file safely, in two steps.
//!
//! 1. [`check`] reads the file once, refusing it unread over the size cap ([`read_capped`]), and judges those
//!    bytes with one parse within a time budget, without mapping them (`plugin_image`): ELF structure, embedded
//!    section, fingerprint, manifest, entry point, allocator. A refused file is never mapped, relocated or run.
//! 2. [`seal`] writes exactly the checked bytes into a sealed memfd, which the [probe](super::probe) and then
//!    [`map`] `dlopen` (`/proc/…/fd/N`), so a file replaced or truncated on disk afterwards cannot change or
//!    crash what runs. [`map`] then resolves the Rust-ABI module symbol (NULL is a refusal, never a call).
//!
//! Libraries are never unloaded (see ARCHITECTURE.md, invariant `never-unload`): every handle is leaked.

use std::ffi::CString;
use std::fs::File;
use std::io::Write as _;
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};

use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
use manager_plugin::abi::{self, Fingerprint};
use manager_plugin::glue::{Exports, ModuleFn, PluginModule};
use manager_plugin::manifest::{Kind, Manifest};
use plugin_image::limits::{Budget, FileLimits, ReadError};
use plugin_image::{Image, Refusal};
use sha2::Digest as _;

/// Why a file was refused. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file's bytes were judged unfit before anything of it was mapped.
    #[error("{file}: {refusal}")]
    Refused {
        /// The file.
        file: PathBuf,
        /// Why.
        refusal: Refusal,
        /// Kind and name from the embedded manifest, when it parses (e.g. a fingerprint mismatch), for listings.
        identity: Option<(Kind, String)>,
    },
    /// The checked bytes could not be placed in a sealed memory file.
    #[error("{file}: cannot prepare the checked bytes for loading: {message}")]
    Map {
        /// The file.
        file: PathBuf,
        /// What failed.
        message: String,
    },
    /// The dynamic loader refused the checked bytes (e.g. a missing shared library dependency).
    #[error("{file}: not a loadable library: {message}")]
    NotALibrary {
        /// The file.
        file: PathBuf,
        /// dlopen's message.
        message: String,
    },
    /// The trial load in a child process died or hung.
    #[error("{file}: refused after a trial load in a child process: {reason}")]
    Probe {
        /// The file.
        file: PathBuf,
        /// How the trial load ended.
        reason: String,
    },
    /// The module symbol resolved to nothing.
    #[error(
        "{file}: bad plugin entry point: `{}` resolves to NULL; rebuild the plugin with `cargo run -p plugin -- build`",
        abi::MODULE_SYMBOL
    )]
    NullEntryPoint {
        /// The file.
        file: PathBuf,
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

impl LoadError {
    /// The plugin's name, when the refusal or the file's manifest tells it.
    pub fn plugin_name(&self) -> Option<&str> {
        match self {
            LoadError::Duplicate { name, .. } => Some(name),
            LoadError::Refused { identity: Some((_, name)), .. } => Some(name),
            LoadError::Refused { refusal: Refusal::FingerprintMismatch { name, .. }, .. } => Some(name),
            _ => None,
        }
    }

    /// The plugin's kind, when the refusal or the file's manifest tells it.
    pub fn plugin_kind(&self) -> Option<Kind> {
        match self {
            LoadError::Duplicate { kind, .. } | LoadError::KindMismatch { kind, .. } => Some(*kind),
            LoadError::Refused { identity, .. } => identity.as_ref().map(|(kind, _)| *kind),
            _ => None,
        }
    }
}

/// A plugin file whose bytes passed every check that needs no mapping.
pub struct CheckedFile {
    /// The file it came from.
    pub file: PathBuf,
    /// Its validated manifest.
    pub manifest: Manifest,
    /// When `plugin build` built it.
    pub build_time: String,
    /// The size cap it was read under (the probe child reads the sealed bytes under the same cap).
    pub max_file_size: u64,
    /// The checked bytes: what [`seal`] keeps.
    bytes: Vec<u8>,
}

/// A plugin library that passed every check and is mapped.
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

/// Reads `file` once, refusing it unread when it is not a regular file or larger than `limits.max_file_size`
/// (from its metadata): the size cap every plugin file the manager loads or starts goes through.
pub fn read_capped(file: &Path, limits: &FileLimits) -> Result<Vec<u8>, LoadError> {
    plugin_image::limits::read_capped(file, limits).map_err(|e| match e {
        ReadError::Io(source) => LoadError::Read { file: file.to_path_buf(), source },
        ReadError::Refused(refusal) => LoadError::Refused { file: file.to_path_buf(), refusal, identity: None },
    })
}

/// Reads `file` once ([`read_capped`]) and checks its bytes against this manager's fingerprint with one parse,
/// within `limits.time_budget`; nothing of it is mapped.
pub fn check(file: &Path, limits: &FileLimits) -> Result<CheckedFile, LoadError> {
    let bytes = read_capped(file, limits)?;
    let label = file.display().to_string();
    let budget = Budget::start(limits.time_budget);
    let refused = |refusal, identity| LoadError::Refused { file: file.to_path_buf(), refusal, identity };
    let image = Image::read_plugin_within(&bytes, &budget).map_err(|r| refused(r, None))?;
    let checked = match image.check(&Fingerprint::current(), &label) {
        Ok(checked) => checked,
        // The manifest of a refused file (read from the same parse) names the plugin in listings.
        Err(refusal) => return Err(refused(refusal, image.manifest(&label).ok().map(|m| (m.kind, m.name)))),
    };
    drop(image);
    Ok(CheckedFile {
        file: file.to_path_buf(),
        manifest: checked.manifest,
        build_time: checked.build_time,
        max_file_size: limits.max_file_size,
        bytes,
    })
}

/// The checked bytes of one plugin, in a memory file sealed against any change: what the probe and [`map`] load.
pub struct SealedFile {
    /// The file it came from.
    pub file: PathBuf,
    /// Its validated manifest.
    pub manifest: Manifest,
    /// When `plugin build` built it.
    pub build_time: String,
    /// SHA-256 of the sealed bytes.
    pub digest: [u8; 32],
    /// The size cap it was read under.
    pub max_file_size: u64,
    memfd: File,
}

impl SealedFile {
    /// The path through which this process opens the sealed bytes.
    pub fn own_path(&self) -> String {
        format!("/proc/self/fd/{}", self.memfd.as_raw_fd())
    }

    /// The path through which a child process opens the sealed bytes.
    pub fn path_for_child(&self) -> String {
        format!("/proc/{}/fd/{}", std::process::id(), self.memfd.as_raw_fd())
    }
}

/// Writes the checked bytes into a memfd sealed against writes, growth and shrinking.
pub fn seal(checked: CheckedFile) -> Result<SealedFile, LoadError> {
    let CheckedFile { file, manifest, build_time, max_file_size, bytes } = checked;
    let fail = |what: &str, e: std::io::Error| LoadError::Map { file: file.clone(), message: format!("{what}: {e}") };
    let label = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let name = CString::new(format!("damocles-plugin:{label}").replace('\0', "_"))
        .map_err(|e| fail("memfd name", std::io::Error::other(e)))?;
    // SAFETY: a valid C string and flags; the returned descriptor is owned by the `File` below.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(fail("memfd_create", std::io::Error::last_os_error()));
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let mut memfd = unsafe { File::from_raw_fd(fd) };
    memfd.write_all(&bytes).map_err(|e| fail("write", e))?;
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl on a descriptor we own.
    if unsafe { libc::fcntl(memfd.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(fail("seal", std::io::Error::last_os_error()));
    }
    let digest = sha2::Sha256::digest(&bytes).into();
    Ok(SealedFile { file, manifest, build_time, digest, max_file_size, memfd })
}

/// Maps the sealed bytes and resolves the module; the library stays mapped for the life of the process.
pub fn map(sealed: SealedFile) -> Result<OpenedPlugin, LoadError> {
    let library = dlopen(&sealed.file, &sealed.own_path())?;
    let SealedFile { file, manifest, build_time, memfd, .. } = sealed;
    // Keep the descriptor open for the life of the process, like the library: the dynamic loader knows this
    // library by the name `/proc/self/fd/N`, and a later memfd reusing the number N would be taken for it.
    std::mem::forget(memfd);
    let module = resolve_module(&file, library)?;
    let exported = exports_kind(&module.exports);
    if exported != manifest.kind {
        return Err(LoadError::KindMismatch { file, kind: manifest.kind, exported });
    }
    Ok(OpenedPlugin { file, manifest, build_time, module })
}

/// `dlopen(path, RTLD_NOW | RTLD_LOCAL)`, never closed.
pub(crate) fn dlopen(file: &Path, path: &str) -> Result<&'static Library, LoadError> {
    // SAFETY: mapping a library runs its initializers. These bytes passed every static check (structure,
    // fingerprint, manifest, entry point, allocator); RTLD_NOW surfaces missing symbols here, not mid-call.
    let library = unsafe { Library::open(Some(path), RTLD_NOW | RTLD_LOCAL) }
        .map_err(|e| LoadError::NotALibrary { file: file.to_path_buf(), message: e.to_string() })?;
    Ok(Box::leak(Box::new(library)))
}

/// Resolves the module symbol as an `Option` (NULL is a refusal, never a call) and calls it.
pub(crate) fn resolve_module(file: &Path, library: &'static Library) -> Result<PluginModule, LoadError> {
    // SAFETY: the fingerprint matched, so the plugin was built by this compiler from these SDK sources and
    // features: the Rust-ABI signature `ModuleFn` is the one it exports (emitted by the SDK's `plugin_module!`,
    // and checked to be a defined function in an executable segment). `Option<fn>` makes a NULL symbol `None`.
    let module_fn: Option<ModuleFn> = unsafe {
        *library
            .get::<Option<ModuleFn>>(abi::MODULE_SYMBOL.as_bytes())
            .map_err(|e| LoadError::NotALibrary { file: file.to_path_buf(), message: e.to_string() })?
    };
    let module_fn = module_fn.ok_or_else(|| LoadError::NullEntryPoint { file: file.to_path_buf() })?;
    Ok(module_fn())
}

fn exports_kind(exports: &Exports) -> Kind {
    match exports {
        Exports::KvStore { .. } => Kind::KvStore,
        Exports::FileStore { .. } => Kind::FileStore,
        Exports::SyncSectorState(_) => Kind::SyncSectorState,
        Exports::RegisterJsonRpc { .. } => Kind::RegisterJsonRpc,
    }
}
