//! `plugin new --kind KIND NAME [DIR]`: creates a plugin crate that builds with `plugin build` and loads into the
//! manager unchanged: `Cargo.toml`, `manifest.toml`, a small working implementation of the kind, unit tests,
//! a README, and the manager's `Cargo.lock` (so the crate starts on the manager's dependency versions and
//! `plugin check-dep` passes with nothing to fix).
//!
//! The SDK dependency is a path: this repository's `manager-plugin`, recorded when the tool was compiled.

use std::fmt;
use std::path::{Path, PathBuf};

use manager_plugin::Kind;

/// The SDK directory of the repository this tool was built from (absolute; what generated crates depend on).
pub const SDK_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../manager-plugin");

/// Why a crate could not be created. Every message names the path or the argument and the fix.
#[derive(Debug, thiserror::Error)]
pub enum NewError {
    /// The name cannot be a plugin (manifest) name or a cargo package name.
    #[error(
        "plugin name {name:?} is not allowed: {reason}; use 1-64 characters from [A-Za-z0-9_-] starting with a letter"
    )]
    BadName {
        /// The name given.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The target directory exists and is not empty.
    #[error("{dir} already exists and is not empty; choose another DIR (plugin new never overwrites files)")]
    DirNotEmpty {
        /// The directory.
        dir: PathBuf,
    },
    /// The SDK this tool was built from is gone.
    #[error(
        "the SDK this plugin tool was built from is not at {sdk} any more; rebuild the tool from your damocles-rs checkout (`cargo run -p plugin -- new …`)"
    )]
    SdkMissing {
        /// The recorded SDK directory.
        sdk: PathBuf,
    },
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A created crate.
#[derive(Debug, Clone)]
pub struct Created {
    /// The crate's directory.
    pub dir: PathBuf,
    /// Its kind.
    pub kind: Kind,
    /// The plugin's name.
    pub name: String,
    /// The files written, relative to `dir`.
    pub files: Vec<&'static str>,
    /// The SDK directory its `Cargo.toml` depends on.
    pub sdk: PathBuf,
}

impl fmt::Display for Created {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Created {} plugin {:?} in {}:", self.kind, self.name, self.dir.display())?;
        for file in &self.files {
            writeln!(f, "  {file}")?;
        }
        writeln!(f, "It depends on the SDK at {} (path dependency).", self.sdk.display())?;
        write!(
            f,
            "Next: `cargo test` in it, then `plugin build --src-dir {} --out-dir <plugins dir>`.",
            self.dir.display()
        )
    }
}

/// One generated file: its path in the crate and its text with placeholders.
struct Template {
    path: &'static str,
    text: &'static str,
}

fn kind_sources(kind: Kind) -> [Template; 2] {
    let (lib, tests) = match kind {
        Kind::KvStore => {
            (include_str!("templates/kvstore/lib.rs.tmpl"), include_str!("templates/kvstore/tests.rs.tmpl"))
        }
        Kind::FileStore => {
            (include_str!("templates/filestore/lib.rs.tmpl"), include_str!("templates/filestore/tests.rs.tmpl"))
        }
        Kind::SyncSectorState => (
            include_str!("templates/syncsectorstate/lib.rs.tmpl"),
            include_str!("templates/syncsectorstate/tests.rs.tmpl"),
        ),
        Kind::RegisterJsonRpc => (
            include_str!("templates/registerjsonrpc/lib.rs.tmpl"),
            include_str!("templates/registerjsonrpc/tests.rs.tmpl"),
        ),
    };
    [Template { path: "src/lib.rs", text: lib }, Template { path: "src/tests.rs", text: tests }]
}

/// Dependencies beyond the SDK each kind's template uses (versions come from the manager's lockfile).
fn extra_dependencies(kind: Kind) -> &'static str {
    match kind {
        Kind::KvStore | Kind::FileStore => "",
        Kind::SyncSectorState => "tracing = \"0.1\"\n",
        Kind::RegisterJsonRpc => "serde_json = \"1\"\n",
    }
}

fn manifest_toml(kind: Kind, name: &str) -> String {
    let (description, rest) = match kind {
        Kind::KvStore => (
            "In-memory KVStore (created by plugin new)",
            "export = [{ extPoint = \"Constructor\", impl = \"open\" }]\n",
        ),
        Kind::FileStore => (
            "FileStore on a local directory (created by plugin new)",
            "export = [{ extPoint = \"Constructor\", impl = \"open\" }]\n",
        ),
        Kind::SyncSectorState => (
            "Appends every sector state change to <plugins dir>/<name>.csv (created by plugin new)",
            "# onInit: the lifecycle function run once at load (not the OnInit hook below, which is an event).\n\
             onInit = \"init\"\n\
             export = [\n\
             \x20   { extPoint = \"OnImport\", impl = \"on_import\" },\n\
             \x20   { extPoint = \"OnInit\", impl = \"on_init\" },\n\
             \x20   { extPoint = \"OnUpdate\", impl = \"on_update\" },\n\
             \x20   { extPoint = \"OnFinalize\", impl = \"on_finalize\" },\n\
             \x20   { extPoint = \"OnRestore\", impl = \"on_restore\" },\n\
             ]\n",
        ),
        Kind::RegisterJsonRpc => (
            "JSON-RPC namespace with Echo and Add (created by plugin new)",
            "export = [{ extPoint = \"Handler\", impl = \"handler\" }]\n",
        ),
    };
    let description = description.replace("<name>", name);
    format!("name = \"{name}\"\ndescription = \"{description}\"\nkind = \"{kind}\"\n{rest}")
}

fn cargo_toml(kind: Kind, name: &str, sdk: &Path) -> String {
    let sdk = toml::Value::String(sdk.display().to_string());
    format!(
        "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n\n\
         [dependencies]\n\
         # The damocles-rs SDK. This path is the checkout the `plugin` tool was built from; point it at yours.\n\
         manager-plugin = {{ path = {sdk} }}\n{}\n\
         # A crate of its own, even when created inside another workspace.\n[workspace]\n",
        extra_dependencies(kind)
    )
}

/// The namespace a RegisterJsonRpc plugin called `name` mounts: its name in CamelCase (`hello-rpc` → `HelloRpc`).
pub fn namespace_of(name: &str) -> String {
    name.split(['-', '_'])
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect()
}

fn check_name(name: &str) -> Result<(), NewError> {
    let bad = |reason| Err(NewError::BadName { name: name.to_string(), reason });
    if name.is_empty() || name.len() > 64 {
        return bad("it must have 1 to 64 characters");
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return bad("it has characters outside [A-Za-z0-9_-]");
    }
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return bad("cargo package names must start with a letter");
    }
    let crate_name = name.replace('-', "_");
    if ["std", "core", "alloc", "proc_macro", "test", "manager_plugin"].contains(&crate_name.as_str()) {
        return bad("it is the name of a crate every plugin links");
    }
    Ok(())
}

fn readme(kind: Kind, name: &str, sdk: &Path) -> String {
    let lib_doc: String = kind_sources(kind)[0]
        .text
        .lines()
        .take_while(|l| l.starts_with("//!"))
        .map(|l| l.trim_start_matches("//!").strip_prefix(' ').unwrap_or(l.trim_start_matches("//!")))
        .collect::<Vec<_>>()
        .join("\n");
    let config = match kind {
        Kind::KvStore => format!(
            "Select it as the manager's database:\n\n```toml\n[Common.DB]\nDriver = \"plugin\"\n\n\
             [Common.DB.Plugin]\nPluginName = \"{name}\"\n```\n"
        ),
        Kind::FileStore => format!(
            "Name it in a store:\n\n```toml\n[[Common.PieceStores]]\nName = \"pieces-1\"\nPath = \"/mnt/pieces-1\"\n\
             PluginName = \"{name}\"\n```\n"
        ),
        Kind::SyncSectorState | Kind::RegisterJsonRpc => {
            "Every plugin in `[Common.Plugins] Dir` is loaded; no other setting is needed.\n".to_string()
        }
    };
    let call = match kind {
        Kind::RegisterJsonRpc => format!(
            "\nCall it with the token from `<home>/token`:\n\n    curl -s http://127.0.0.1:1789/rpc/v0 \
             -H \"Authorization: Bearer $(cat ~/.damocles-manager/token)\" \\\n      -H 'content-type: application/json' \
             -d '{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"{}.Add\",\"params\":[2,40]}}'\n",
            namespace_of(name)
        ),
        _ => String::new(),
    };
    format!(
        "{}\n\n## Build and load\n\n\
         The SDK dependency in `Cargo.toml` is a path, `{}`: the damocles-rs checkout the `plugin` tool was built \
         from. If you move this crate to another machine, point it at that machine's checkout.\n\n\
         ```sh\ncargo test\n\
         cargo run --manifest-path <damocles-rs>/Cargo.toml -p plugin -- build --src-dir . --out-dir ~/.damocles-manager/plugins\n```\n\n\
         Builds use the release profile, like `scripts/run.sh`; add `--debug` for a debug manager. Restart the \
         manager; its log shows `loaded plugin '{kind}/{name}'`.\n\n{config}{call}\n\
         See `docs/plugin-guide.md` in the damocles-rs repository.\n",
        lib_doc.replace("__NAME__", name).replace("__NAMESPACE__", &namespace_of(name)),
        sdk.display()
    )
}

/// Creates a `kind` plugin crate called `name` in `dir` (which must not exist, or be empty).
pub fn create(kind: Kind, name: &str, dir: &Path) -> Result<Created, NewError> {
    check_name(name)?;
    let sdk = Path::new(SDK_DIR)
        .canonicalize()
        .ok()
        .filter(|p| p.join("Cargo.toml").is_file())
        .ok_or_else(|| NewError::SdkMissing { sdk: PathBuf::from(SDK_DIR) })?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| NewError::Io { path, source }
    };
    if dir.exists() && std::fs::read_dir(dir).map_err(io(dir))?.next().is_some() {
        return Err(NewError::DirNotEmpty { dir: dir.to_path_buf() });
    }
    let namespace = namespace_of(name);
    let fill = |text: &str| text.replace("__NAME__", name).replace("__NAMESPACE__", &namespace);
    let mut files: Vec<(&'static str, String)> = vec![
        ("Cargo.toml", cargo_toml(kind, name, &sdk)),
        ("Cargo.lock", crate::check_dep::MANAGER_LOCKFILE.to_string()),
        ("manifest.toml", manifest_toml(kind, name)),
        ("README.md", readme(kind, name, &sdk)),
        (".gitignore", "/target\n".to_string()),
    ];
    files.extend(kind_sources(kind).iter().map(|t| (t.path, fill(t.text))));
    std::fs::create_dir_all(dir.join("src")).map_err(io(dir))?;
    for (path, text) in &files {
        let file = dir.join(path);
        std::fs::write(&file, text).map_err(io(&file))?;
    }
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    Ok(Created { dir, kind, name: name.to_string(), files: files.iter().map(|(p, _)| *p).collect(), sdk })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cargo_or_the_manifest_would_refuse_are_refused_up_front() {
        for bad in ["", "9lives", "a b", "std", "manager-plugin", &"x".repeat(65)] {
            assert!(matches!(check_name(bad), Err(NewError::BadName { .. })), "{bad:?}");
        }
        check_name("my-plugin_2").unwrap();
    }

    #[test]
    fn namespaces_are_the_name_in_camel_case() {
        assert_eq!(namespace_of("hello-rpc"), "HelloRpc");
        assert_eq!(namespace_of("my_ns"), "MyNs");
        assert_eq!(namespace_of("Ping"), "Ping");
    }

    #[test]
    fn every_generated_manifest_is_valid_for_its_kind() {
        for kind in Kind::ALL {
            let text = manifest_toml(kind, "x-1");
            let manifest = manager_plugin::Manifest::parse(&text, "manifest.toml").unwrap();
            assert_eq!(manifest.kind, kind);
            assert!(!manifest.export.is_empty(), "{text}");
        }
    }

    #[test]
    fn an_existing_non_empty_directory_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("keep.txt"), "mine").unwrap();
        let err = create(Kind::KvStore, "kv", dir.path()).unwrap_err();
        assert!(matches!(err, NewError::DirNotEmpty { .. }), "{err}");
        assert_eq!(std::fs::read_to_string(dir.path().join("keep.txt")).unwrap(), "mine");
    }
}
