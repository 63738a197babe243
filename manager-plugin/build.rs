//! Computes the build-environment part of the ABI fingerprint compiled into the SDK (and so into the host and
//! every plugin): the exact compiler, target, SDK version, SDK features and a digest of the SDK's own sources.
//! Items that a build script cannot see truthfully (panic strategy, debug assertions) come from `cfg!()` in
//! `src/abi/mod.rs` instead: `CARGO_CFG_PANIC` ignores `profile.panic`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::{env, fs};

use sha2::{Digest, Sha256};

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let mut items: Vec<(String, String)> = rustc_items();
    items.push(("target".into(), env::var("TARGET").unwrap_or_default()));
    items.push(("sdk-version".into(), env::var("CARGO_PKG_VERSION").unwrap_or_default()));
    let features = enabled_features();
    items.push(("sdk-features".into(), if features.is_empty() { "(none)".into() } else { features.join(",") }));
    items.push(("sdk-source".into(), source_digest(&manifest_dir)));
    let empty: Vec<&str> = items.iter().filter(|(_, v)| v.trim().is_empty()).map(|(k, _)| k.as_str()).collect();
    if !empty.is_empty() {
        // An empty item would compare equal between two builds that know nothing: refuse to build instead.
        panic!(
            "manager-plugin: ABI fingerprint item(s) {} came out empty (is `$RUSTC -vV` working, and is TARGET set?); \
             the SDK cannot be built without a complete fingerprint",
            empty.join(", ")
        );
    }
    let rust: String = items.iter().map(|(k, v)| format!("    ({k:?}, {v:?}),\n")).collect();
    let rust = format!(
        "/// Fingerprint items computed by `build.rs`.\npub const BUILD_ITEMS: &[(&str, &str)] = &[\n{rust}];\n"
    );
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("fingerprint_items.rs");
    fs::write(&out, rust).expect("write fingerprint_items.rs");
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=Cargo.toml");
    println!("cargo:rerun-if-env-changed=RUSTC");
}

/// `rustc -vV`: release, commit hash, host and LLVM version of the compiler building this crate.
fn rustc_items() -> Vec<(String, String)> {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let output = Command::new(&rustc).arg("-vV").output().expect("run rustc -vV");
    let text = String::from_utf8_lossy(&output.stdout);
    let field =
        |name: &str| text.lines().find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string())).unwrap_or_default();
    vec![
        ("rustc-release".into(), field("release:")),
        ("rustc-commit".into(), field("commit-hash:")),
        ("rustc-llvm".into(), field("LLVM version:")),
    ]
}

fn enabled_features() -> Vec<String> {
    let mut features: Vec<String> = env::vars()
        .filter_map(|(k, _)| k.strip_prefix("CARGO_FEATURE_").map(|f| f.to_lowercase().replace('_', "-")))
        .collect();
    features.sort();
    features
}

fn source_digest(root: &Path) -> String {
    let mut files = vec![root.join("build.rs"), root.join("Cargo.toml")];
    collect_rs(&root.join("src"), &mut files);
    files.sort();
    let mut hasher = Sha256::new();
    for file in files {
        let rel = file.strip_prefix(root).unwrap_or(&file);
        hasher.update(rel.to_string_lossy().as_bytes());
        hasher.update([0]);
        hasher.update(fs::read(&file).unwrap_or_default());
        hasher.update([0]);
    }
    hasher.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect()
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_rs(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}
