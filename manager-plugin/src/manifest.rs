//! The plugin manifest (`manifest.toml`): what a plugin is and which functions it exports.
//!
//! ```
//! use manager_plugin::manifest::{Manifest, Kind};
//! let m = Manifest::parse(r#"
//! name = "memdb"
//! kind = "KVStore"
//! export = [{ extPoint = "Constructor", impl = "open" }]
//! "#, "manifest.toml").unwrap();
//! assert_eq!(m.kind, Kind::KvStore);
//! ```

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The four kinds of plugin the manager understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Kind {
    /// Backs sector metadata (`[Common.DB] Driver = "plugin"`).
    #[serde(rename = "KVStore")]
    KvStore,
    /// Backs piece and persist stores (`PluginName` in `[[Common.PieceStores]]`/`[[Common.PersistStores]]`).
    #[serde(rename = "FileStore", alias = "ObjStore")]
    FileStore,
    /// Receives every sector state change.
    #[serde(rename = "SyncSectorState")]
    SyncSectorState,
    /// Mounts a JSON-RPC namespace on the manager's server.
    #[serde(rename = "RegisterJsonRpc")]
    RegisterJsonRpc,
}

impl Kind {
    /// Every kind, in a fixed order.
    pub const ALL: [Kind; 4] = [Kind::KvStore, Kind::FileStore, Kind::SyncSectorState, Kind::RegisterJsonRpc];

    /// The name used in `manifest.toml` and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::KvStore => "KVStore",
            Kind::FileStore => "FileStore",
            Kind::SyncSectorState => "SyncSectorState",
            Kind::RegisterJsonRpc => "RegisterJsonRpc",
        }
    }

    /// The extension points a plugin of this kind may export.
    pub fn ext_points(self) -> &'static [ExtPoint] {
        match self {
            Kind::KvStore | Kind::FileStore => &[ExtPoint::Constructor],
            Kind::RegisterJsonRpc => &[ExtPoint::Handler],
            Kind::SyncSectorState => {
                &[ExtPoint::OnImport, ExtPoint::OnInit, ExtPoint::OnUpdate, ExtPoint::OnFinalize, ExtPoint::OnRestore]
            }
        }
    }

    /// Parses a kind name as written in a manifest (`ObjStore` is accepted for `FileStore`).
    pub fn from_name(name: &str) -> Option<Kind> {
        match name {
            "KVStore" => Some(Kind::KvStore),
            "FileStore" | "ObjStore" => Some(Kind::FileStore),
            "SyncSectorState" => Some(Kind::SyncSectorState),
            "RegisterJsonRpc" => Some(Kind::RegisterJsonRpc),
            _ => None,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A function slot a plugin fills (`export = [{ extPoint = "...", impl = "..." }]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExtPoint {
    /// `fn(&Meta) -> Result<impl Db, E>` (KVStore) or `fn(StoreConfig) -> Result<impl Store, E>` (FileStore).
    Constructor,
    /// `fn() -> Result<(String, impl JsonRpcHandler), E>` (RegisterJsonRpc).
    Handler,
    /// `fn(&ImportEvent) -> Result<(), E>`.
    OnImport,
    /// `fn(&InitEvent) -> Result<(), E>`.
    OnInit,
    /// `fn(&UpdateEvent) -> Result<(), E>`.
    OnUpdate,
    /// `fn(&FinalizeEvent) -> Result<(), E>`.
    OnFinalize,
    /// `fn(&RestoreEvent) -> Result<(), E>`.
    OnRestore,
}

impl ExtPoint {
    /// The name used in `manifest.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            ExtPoint::Constructor => "Constructor",
            ExtPoint::Handler => "Handler",
            ExtPoint::OnImport => "OnImport",
            ExtPoint::OnInit => "OnInit",
            ExtPoint::OnUpdate => "OnUpdate",
            ExtPoint::OnFinalize => "OnFinalize",
            ExtPoint::OnRestore => "OnRestore",
        }
    }

    fn from_name(name: &str) -> Option<ExtPoint> {
        Kind::ALL.iter().flat_map(|k| k.ext_points()).copied().find(|p| p.as_str() == name)
    }
}

impl fmt::Display for ExtPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `export` entry: the extension point and the path of the author's function (relative to the crate root).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Export {
    /// The slot being filled.
    #[serde(rename = "extPoint")]
    pub ext_point: ExtPoint,
    /// The author's function, e.g. `open` or `db::open`.
    #[serde(rename = "impl")]
    pub impl_path: String,
}

/// A validated plugin manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Manifest {
    /// Unique (per kind) plugin name; also names the built file `plugin-<name>.so`.
    pub name: String,
    /// Free text shown by `util plugins list`.
    pub description: String,
    /// What the plugin provides.
    pub kind: Kind,
    /// Optional author function run once after load: `fn(&PluginContext) -> Result<(), E>`.
    #[serde(rename = "onInit", skip_serializing_if = "Option::is_none")]
    pub on_init: Option<String>,
    /// Optional author function run once at daemon shutdown: `fn() -> Result<(), E>`.
    #[serde(rename = "onShutdown", skip_serializing_if = "Option::is_none")]
    pub on_shutdown: Option<String>,
    /// The exported extension points.
    pub export: Vec<Export>,
}

/// Why a manifest was rejected. Every variant names the file and the offending key.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("cannot read {file}: {source}")]
    Read {
        /// The manifest path.
        file: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has keys of the wrong type or unknown keys.
    #[error("{file}: {message}")]
    Syntax {
        /// The manifest path.
        file: String,
        /// The TOML parser's message (names line and key).
        message: String,
    },
    /// A key has a value that is not allowed.
    #[error("{file}: key `{key}`: {message}")]
    Invalid {
        /// The manifest path.
        file: String,
        /// The offending key, e.g. `export[1].extPoint`.
        key: String,
        /// What is wrong and what is allowed.
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    name: Option<String>,
    #[serde(default)]
    description: String,
    kind: Option<String>,
    #[serde(rename = "onInit")]
    on_init: Option<String>,
    #[serde(rename = "onShutdown")]
    on_shutdown: Option<String>,
    #[serde(default)]
    export: Vec<RawExport>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExport {
    #[serde(rename = "extPoint")]
    ext_point: Option<String>,
    #[serde(rename = "impl")]
    impl_path: Option<String>,
}

impl Manifest {
    /// Reads and validates a manifest file.
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let file = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|source| ManifestError::Read { file: file.clone(), source })?;
        Manifest::parse(&text, &file)
    }

    /// Parses and validates manifest text; `file` is used in error messages.
    pub fn parse(text: &str, file: &str) -> Result<Manifest, ManifestError> {
        let raw: RawManifest = toml::from_str(text).map_err(|e| ManifestError::Syntax {
            file: file.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let invalid = |key: &str, message: String| ManifestError::Invalid {
            file: file.to_string(),
            key: key.to_string(),
            message,
        };
        let name = raw.name.ok_or_else(|| invalid("name", "is required".into()))?;
        if !is_valid_name(&name) {
            return Err(invalid("name", format!("{name:?} is not allowed: use 1-64 characters from [A-Za-z0-9_-]")));
        }
        let kind_name = raw.kind.ok_or_else(|| invalid("kind", format!("is required; allowed: {}", kind_names())))?;
        let kind = Kind::from_name(&kind_name)
            .ok_or_else(|| invalid("kind", format!("unknown kind {kind_name:?}; allowed: {}", kind_names())))?;
        let on_init = optional_path(raw.on_init, "onInit", &invalid)?;
        let on_shutdown = optional_path(raw.on_shutdown, "onShutdown", &invalid)?;
        let export = validate_exports(kind, raw.export, &invalid)?;
        Ok(Manifest { name, description: raw.description, kind, on_init, on_shutdown, export })
    }

    /// The function exported for `point`, if any.
    pub fn export_for(&self, point: ExtPoint) -> Option<&Export> {
        self.export.iter().find(|e| e.ext_point == point)
    }

    /// The file name `plugin build` gives this plugin: `plugin-<name>.so`.
    pub fn library_file_name(&self) -> String {
        format!("plugin-{}.so", self.name)
    }
}

fn kind_names() -> String {
    Kind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ") + " (ObjStore = FileStore)"
}

fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A Rust path such as `open` or `db::open` (no generics, no leading `::`).
fn is_valid_fn_path(path: &str) -> bool {
    !path.is_empty()
        && path.split("::").all(|seg| {
            let mut chars = seg.chars();
            matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

fn optional_path(
    value: Option<String>,
    key: &str,
    invalid: &impl Fn(&str, String) -> ManifestError,
) -> Result<Option<String>, ManifestError> {
    match value {
        Some(p) if p.is_empty() => Ok(None),
        Some(p) if !is_valid_fn_path(&p) => {
            Err(invalid(key, format!("{p:?} is not a function path (e.g. `init` or `module::init`)")))
        }
        other => Ok(other),
    }
}

fn validate_exports(
    kind: Kind,
    raw: Vec<RawExport>,
    invalid: &impl Fn(&str, String) -> ManifestError,
) -> Result<Vec<Export>, ManifestError> {
    let allowed = kind.ext_points();
    let allowed_names = || allowed.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", ");
    let mut exports: Vec<Export> = Vec::with_capacity(raw.len());
    for (i, entry) in raw.into_iter().enumerate() {
        let key = |field: &str| format!("export[{i}].{field}");
        let point_name = entry.ext_point.ok_or_else(|| invalid(&key("extPoint"), "is required".into()))?;
        let ext_point = ExtPoint::from_name(&point_name).filter(|p| allowed.contains(p)).ok_or_else(|| {
            invalid(
                &key("extPoint"),
                format!("{point_name:?} is not an extension point of kind {kind}; allowed: {}", allowed_names()),
            )
        })?;
        if exports.iter().any(|e| e.ext_point == ext_point) {
            return Err(invalid(&key("extPoint"), format!("{ext_point} is exported twice")));
        }
        let impl_path = entry.impl_path.ok_or_else(|| invalid(&key("impl"), "is required".into()))?;
        if !is_valid_fn_path(&impl_path) {
            return Err(invalid(
                &key("impl"),
                format!("{impl_path:?} is not a function path (e.g. `open` or `module::open`)"),
            ));
        }
        exports.push(Export { ext_point, impl_path });
    }
    if exports.is_empty() {
        let what = match kind {
            Kind::SyncSectorState => format!("at least one of {}", allowed_names()),
            _ => allowed_names(),
        };
        return Err(invalid("export", format!("kind {kind} must export {what}")));
    }
    Ok(exports)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest, ManifestError> {
        Manifest::parse(text, "m.toml")
    }

    #[test]
    fn every_kind_displays_its_name() {
        let names: Vec<String> = Kind::ALL.iter().map(|k| k.to_string()).collect();
        assert_eq!(names, ["KVStore", "FileStore", "SyncSectorState", "RegisterJsonRpc"]);
    }

    #[test]
    fn objstore_is_an_alias_of_filestore() {
        let m = parse("name='s'\nkind='ObjStore'\nexport=[{extPoint='Constructor', impl='open'}]").unwrap();
        assert_eq!(m.kind, Kind::FileStore);
    }

    #[test]
    fn missing_name_is_named() {
        let e = parse("kind='KVStore'\nexport=[{extPoint='Constructor', impl='open'}]").unwrap_err();
        assert_eq!(e.to_string(), "m.toml: key `name`: is required");
    }

    #[test]
    fn unknown_kind_lists_the_allowed_ones() {
        let e = parse("name='x'\nkind='Blob'\nexport=[]").unwrap_err().to_string();
        assert!(e.contains("key `kind`: unknown kind \"Blob\"; allowed: KVStore, FileStore"), "{e}");
    }

    #[test]
    fn ext_point_of_another_kind_is_refused() {
        let e = parse("name='x'\nkind='KVStore'\nexport=[{extPoint='Handler', impl='h'}]").unwrap_err().to_string();
        assert!(e.contains("key `export[0].extPoint`: \"Handler\" is not an extension point of kind KVStore"), "{e}");
    }

    #[test]
    fn missing_required_ext_point_is_refused() {
        let e = parse("name='x'\nkind='SyncSectorState'").unwrap_err().to_string();
        assert!(e.contains("kind SyncSectorState must export at least one of OnImport"), "{e}");
    }

    #[test]
    fn unknown_keys_are_errors() {
        let e = parse("name='x'\nkind='KVStore'\nnmae='y'\nexport=[{extPoint='Constructor', impl='o'}]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `nmae`"), "{e}");
    }

    #[test]
    fn impl_must_be_a_path() {
        let e = parse("name='x'\nkind='KVStore'\nexport=[{extPoint='Constructor', impl='open()'}]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("export[0].impl"), "{e}");
    }

    #[test]
    fn duplicate_ext_point_is_refused() {
        let e = parse(
            "name='x'\nkind='SyncSectorState'\nexport=[{extPoint='OnInit', impl='a'},{extPoint='OnInit', impl='b'}]",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("OnInit is exported twice"), "{e}");
    }

    #[test]
    fn serializes_with_manifest_key_names() {
        let m =
            parse("name='c'\nkind='RegisterJsonRpc'\nonInit='init'\nexport=[{extPoint='Handler', impl='h'}]").unwrap();
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["kind"], "RegisterJsonRpc");
        assert_eq!(json["onInit"], "init");
        assert_eq!(json["export"][0]["extPoint"], "Handler");
        assert_eq!(json["export"][0]["impl"], "h");
    }
}
