//! The two edits `--fix` may make to a plugin's `Cargo.toml`, keeping its formatting and comments
//! (`toml_edit`): widen a dependency requirement that excludes the manager's version, and add the features the
//! manager compiles a shared crate with.

use std::fs;
use std::path::{Path, PathBuf};

use cargo_metadata::semver::{Op, Version, VersionReq};
use toml_edit::{Array, DocumentMut, InlineTable, Item, TableLike, Value};

use super::error::CheckDepError;

/// A plugin's `Cargo.toml`, parsed for editing.
#[derive(Debug)]
pub struct PluginManifest {
    path: PathBuf,
    doc: DocumentMut,
}

impl PluginManifest {
    /// Reads and parses `path`.
    pub fn read(path: &Path) -> Result<Self, CheckDepError> {
        let text = fs::read_to_string(path).map_err(|source| CheckDepError::Io { path: path.into(), source })?;
        let doc = text
            .parse::<DocumentMut>()
            .map_err(|source| CheckDepError::ManifestSyntax { manifest: path.into(), source })?;
        Ok(PluginManifest { path: path.into(), doc })
    }

    /// Writes the (edited) manifest back in place.
    pub fn write(&self) -> Result<(), CheckDepError> {
        fs::write(&self.path, self.doc.to_string())
            .map_err(|source| CheckDepError::Io { path: self.path.clone(), source })
    }

    /// Makes every normal-dependency requirement on package `name` (in `[dependencies]` and
    /// `[target.*.dependencies]`) accept `version`, changing only those that exclude it. Returns one line per
    /// change; `Err` says why a requirement cannot be changed here.
    pub fn accept_version(&mut self, name: &str, version: &Version) -> Result<Vec<String>, String> {
        let mut changes = Vec::new();
        for (section, table) in dependency_tables(&mut self.doc) {
            for (key, item) in table.iter_mut() {
                if package_of(key.get(), item) != name {
                    continue;
                }
                let key = key.get().to_string();
                if item.as_table_like().and_then(|t| t.get("workspace")).and_then(Item::as_bool) == Some(true) {
                    continue; // Inherited from [workspace.dependencies]: `cargo update` says if it excludes.
                }
                let Some(value) = requirement_mut(item) else { continue };
                let Some(old) = value.as_str().map(str::to_string) else {
                    return Err(format!("[{section}] {key}: the version is not a string"));
                };
                let req = VersionReq::parse(&old)
                    .map_err(|e| format!("[{section}] {key}: cannot read requirement {old:?}: {e}"))?;
                if req.matches(version) {
                    continue;
                }
                let new = rewritten_requirement(&old, version);
                set_string(value, &new);
                changes.push(format!("Cargo.toml: [{section}] {key} = \"{old}\" => \"{new}\""));
            }
        }
        Ok(changes)
    }

    /// Adds `missing` features to the `[dependencies]` line of package `name` (at `version`); when the plugin has
    /// no such line, adds `name = { version, default-features = false, features = [missing] }` with a comment.
    /// Returns the change; `Err` says why it cannot be done here.
    pub fn add_features(&mut self, name: &str, version: &Version, missing: &[String]) -> Result<String, String> {
        let dependencies = self
            .doc
            .as_table_mut()
            .entry("dependencies")
            .or_insert_with(toml_edit::table)
            .as_table_like_mut()
            .ok_or("[dependencies] is not a table")?;
        let existing = dependencies.iter().find(|(key, item)| package_of(key, item) == name).map(|(key, item)| {
            let req =
                item.as_str().or_else(|| item.as_table_like().and_then(|t| t.get("version")).and_then(Item::as_str));
            (key.to_string(), req.map(str::to_string))
        });
        match existing {
            Some((key, req)) => {
                if let Some(req) = &req
                    && !VersionReq::parse(req).is_ok_and(|r| r.matches(version))
                {
                    return Err(format!(
                        "[dependencies] {key} = \"{req}\" is another version of {name} than the shared {version}"
                    ));
                }
                let item = dependencies.get_mut(&key).ok_or("dependency vanished")?;
                if let Some(req) = item.as_str().map(str::to_string) {
                    let decor = item.as_value().map(|v| v.decor().clone()).unwrap_or_default();
                    let mut table = InlineTable::new();
                    table.insert("version", Value::from(req));
                    let mut value = Value::InlineTable(table);
                    *value.decor_mut() = decor;
                    *item = Item::Value(value);
                }
                let table = item.as_table_like_mut().ok_or_else(|| format!("[dependencies] {key} is not a table"))?;
                let features = table
                    .entry("features")
                    .or_insert(Item::Value(Value::Array(Array::new())))
                    .as_array_mut()
                    .ok_or_else(|| format!("[dependencies] {key}: `features` is not an array"))?;
                for feature in missing {
                    if !features.iter().any(|f| f.as_str() == Some(feature)) {
                        features.push(feature.as_str());
                    }
                }
                Ok(format!("Cargo.toml: [dependencies] {key}: features += {}", missing.join(",")))
            }
            None => {
                if dependencies.contains_key(name) {
                    return Err(format!("[dependencies] {name} names another package"));
                }
                let value = new_dependency(version, missing);
                let line = format!("{name} = {value}");
                dependencies.insert(name, Item::Value(value));
                if let Some(mut key) = dependencies.key_mut(name) {
                    key.leaf_decor_mut().set_prefix(format!(
                        "# Added by `plugin check-dep --fix`: the manager compiles {name} with these features.\n"
                    ));
                }
                Ok(format!("Cargo.toml: [dependencies] added {line}"))
            }
        }
    }
}

/// A dependency on `version` that enables exactly `features` beyond what the plugin already has: `"x.y.z"` when
/// that is just the default features, else `{ version, default-features = false, features = [...] }`.
fn new_dependency(version: &Version, features: &[String]) -> Value {
    let default = features.iter().any(|f| f == "default");
    let others: Vec<&str> = features.iter().map(String::as_str).filter(|f| *f != "default").collect();
    if default && others.is_empty() {
        return Value::from(requirement_version(version));
    }
    let mut table = InlineTable::new();
    table.insert("version", Value::from(requirement_version(version)));
    if !default {
        table.insert("default-features", Value::from(false));
    }
    table.insert("features", Value::Array(others.into_iter().collect()));
    Value::InlineTable(table)
}

/// The normal-dependency tables: `[dependencies]` and every `[target.<cfg>.dependencies]`, with their names.
fn dependency_tables(doc: &mut DocumentMut) -> Vec<(String, &mut dyn TableLike)> {
    let mut tables = Vec::new();
    let root = doc.as_table_mut();
    let mut dependencies = None;
    let mut targets = None;
    for (key, item) in root.iter_mut() {
        match key.get() {
            "dependencies" => dependencies = item.as_table_like_mut(),
            "target" => targets = item.as_table_like_mut(),
            _ => {}
        }
    }
    if let Some(table) = dependencies {
        tables.push(("dependencies".to_string(), table));
    }
    if let Some(targets) = targets {
        for (cfg, item) in targets.iter_mut() {
            let cfg = cfg.get().to_string();
            if let Some(table) =
                item.as_table_like_mut().and_then(|t| t.get_mut("dependencies")).and_then(Item::as_table_like_mut)
            {
                tables.push((format!("target.{cfg}.dependencies"), table));
            }
        }
    }
    tables
}

/// The package a dependency entry refers to: its `package` key, or the entry's own key.
fn package_of<'a>(key: &'a str, item: &'a Item) -> &'a str {
    item.as_table_like().and_then(|t| t.get("package")).and_then(Item::as_str).unwrap_or(key)
}

/// The requirement value of a dependency entry: the string itself, or its `version` key.
fn requirement_mut(item: &mut Item) -> Option<&mut Value> {
    if item.is_str() {
        return item.as_value_mut();
    }
    item.as_table_like_mut()?.get_mut("version")?.as_value_mut()
}

/// Replaces a string value, keeping its surrounding whitespace and comments.
fn set_string(value: &mut Value, new: &str) {
    let decor = value.decor().clone();
    *value = Value::from(new);
    *value.decor_mut() = decor;
}

/// `version` without build metadata, as a requirement may spell it.
fn requirement_version(version: &Version) -> String {
    let mut plain = version.clone();
    plain.build = cargo_metadata::semver::BuildMetadata::EMPTY;
    plain.to_string()
}

/// A requirement that accepts `version`, in the style of `old`: `=x` stays exact, `~x` tilde, `^x`/`x` caret;
/// anything else (ranges, several comparators) becomes the exact `=version`.
fn rewritten_requirement(old: &str, version: &Version) -> String {
    let version = requirement_version(version);
    let trimmed = old.trim();
    match VersionReq::parse(trimmed) {
        Ok(req) if req.comparators.len() == 1 => match req.comparators[0].op {
            Op::Exact => format!("={version}"),
            Op::Tilde => format!("~{version}"),
            Op::Caret if trimmed.starts_with('^') => format!("^{version}"),
            Op::Caret => version,
            _ => format!("={version}"),
        },
        _ => format!("={version}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(text: &str) -> (tempfile::TempDir, PluginManifest) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Cargo.toml");
        fs::write(&path, text).unwrap();
        let manifest = PluginManifest::read(&path).unwrap();
        (dir, manifest)
    }

    fn v(text: &str) -> Version {
        Version::parse(text).unwrap()
    }

    #[test]
    fn requirements_keep_their_style() {
        assert_eq!(rewritten_requirement("=1.0.219", &v("1.0.229")), "=1.0.229");
        assert_eq!(rewritten_requirement("~1.0.100", &v("1.1.0")), "~1.1.0");
        assert_eq!(rewritten_requirement("^1.0.300", &v("1.0.229")), "^1.0.229");
        assert_eq!(rewritten_requirement("1.0.300", &v("1.0.229")), "1.0.229");
        assert_eq!(rewritten_requirement(">=1.0, <1.0.220", &v("1.0.229")), "=1.0.229");
        assert_eq!(rewritten_requirement("0.9.99", &v("0.9.12+spec-1.1.0")), "0.9.12");
    }

    #[test]
    fn only_excluding_requirements_change_and_formatting_stays() {
        let (_dir, mut m) = manifest(
            "[package]\nname = \"p\"\n\n[dependencies]\n# why\nserde = { version = \"=1.0.219\", features = [\"derive\"] }  # pinned\n\
             json = { package = \"serde_json\", version = \"1\" }\n\n[target.'cfg(unix)'.dependencies]\nserde = \"=1.0.219\"\n",
        );
        let changes = m.accept_version("serde", &v("1.0.229")).unwrap();
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert!(m.accept_version("serde_json", &v("1.0.154")).unwrap().is_empty());
        assert_eq!(
            m.doc.to_string(),
            "[package]\nname = \"p\"\n\n[dependencies]\n# why\nserde = { version = \"=1.0.229\", features = [\"derive\"] }  # pinned\n\
             json = { package = \"serde_json\", version = \"1\" }\n\n[target.'cfg(unix)'.dependencies]\nserde = \"=1.0.229\"\n"
        );
    }

    #[test]
    fn features_extend_a_direct_line_or_add_a_commented_one() {
        let (_dir, mut m) =
            manifest("[dependencies]\nserde = \"1.0\" # keep\ntoml = { version = \"0.9\", features = [\"parse\"] }\n");
        m.add_features("serde", &v("1.0.229"), &["alloc".into()]).unwrap();
        m.add_features("toml", &v("0.9.12+spec-1.1.0"), &["parse".into(), "serde".into()]).unwrap();
        let change = m.add_features("tracing-core", &v("0.1.36"), &["default".into()]).unwrap();
        assert!(change.ends_with("added tracing-core = \"0.1.36\""), "{change}");
        m.add_features("memchr", &v("2.8.3"), &["alloc".into(), "default".into()]).unwrap();
        m.add_features("smallvec", &v("1.16.5"), &["const_new".into()]).unwrap();
        assert_eq!(
            m.doc.to_string(),
            "[dependencies]\nserde = { version = \"1.0\", features = [\"alloc\"] } # keep\n\
             toml = { version = \"0.9\", features = [\"parse\", \"serde\"] }\n\
             # Added by `plugin check-dep --fix`: the manager compiles tracing-core with these features.\n\
             tracing-core = \"0.1.36\"\n\
             # Added by `plugin check-dep --fix`: the manager compiles memchr with these features.\n\
             memchr = { version = \"2.8.3\", features = [\"alloc\"] }\n\
             # Added by `plugin check-dep --fix`: the manager compiles smallvec with these features.\n\
             smallvec = { version = \"1.16.5\", default-features = false, features = [\"const_new\"] }\n"
        );
    }

    #[test]
    fn features_are_not_added_to_another_version_of_the_crate() {
        let (_dir, mut m) = manifest("[dependencies]\ntoml = \"0.8\"\n");
        let err = m.add_features("toml", &v("0.9.12"), &["serde".into()]).unwrap_err();
        assert!(err.contains("another version of toml"), "{err}");
    }
}
