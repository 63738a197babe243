//! Which `damocles-manager` binary `plugin inspect` and `plugin test` compare a plugin with when no `--manager` is
//! given: the one that will load the plugin. The README runs the release build (`scripts/run.sh`,
//! `target/release/damocles-manager`), and `plugin build` builds for it by default, so that build comes first,
//! whatever profile the tool itself was built with (`cargo run -p plugin` is a debug build).
//!
//! Order, first existing file wins:
//! 1. `--manager BIN`;
//! 2. `release/damocles-manager` in the cargo target dir this tool runs from (`<target>/debug/plugin` →
//!    `<target>/release/damocles-manager`);
//! 3. `target/release/damocles-manager` of the checkout this tool was compiled from (an installed tool);
//! 4. `damocles-manager` next to this tool;
//! 5. the first `damocles-manager` on `PATH`.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

/// The manager binary's file name.
pub const MANAGER: &str = "damocles-manager";

/// The checkout this tool was compiled from (the workspace root).
const CHECKOUT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// Why a manager binary was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// Named with `--manager`.
    Explicit,
    /// The release build in the cargo target dir the tool runs from.
    ReleaseBesideTool,
    /// The release build of the checkout the tool was compiled from.
    ReleaseOfCheckout,
    /// Next to the tool's executable.
    BesideTool,
    /// Found on `PATH`.
    OnPath,
}

impl fmt::Display for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Choice::Explicit => "--manager",
            Choice::ReleaseBesideTool | Choice::ReleaseOfCheckout => {
                "default: the release build scripts/run.sh runs; pass --manager BIN for another"
            }
            Choice::BesideTool => {
                "default: no release build found, the one next to this tool; pass --manager BIN for another"
            }
            Choice::OnPath => "default: no release build found, the first on PATH; pass --manager BIN for another",
        })
    }
}

/// A chosen manager binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerBinary {
    /// Its path.
    pub path: PathBuf,
    /// Why it was chosen.
    pub choice: Choice,
}

impl fmt::Display for ManagerBinary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.path.display(), self.choice)
    }
}

/// The default candidates in order (see the module docs), for a tool at `tool_exe`, compiled from `checkout`,
/// with `path_env` as `PATH`.
pub fn candidates(tool_exe: Option<&Path>, checkout: &Path, path_env: Option<OsString>) -> Vec<ManagerBinary> {
    let tool_dir = tool_exe.and_then(Path::parent);
    let mut out = Vec::new();
    let mut push = |path: PathBuf, choice| out.push(ManagerBinary { path, choice });
    // `<target>/<profile>/plugin`: the release build of the same target dir.
    if let Some(profile_dir) = tool_dir.filter(|d| d.file_name().is_some_and(|n| n == "debug" || n == "release"))
        && let Some(target) = profile_dir.parent()
    {
        push(target.join("release").join(MANAGER), Choice::ReleaseBesideTool);
    }
    push(checkout.join("target").join("release").join(MANAGER), Choice::ReleaseOfCheckout);
    if let Some(dir) = tool_dir {
        push(dir.join(MANAGER), Choice::BesideTool);
    }
    for dir in path_env.iter().flat_map(std::env::split_paths) {
        push(dir.join(MANAGER), Choice::OnPath);
    }
    out
}

/// The manager binary to use: `explicit` when given (an error when it is not a file), else the first default
/// candidate that is a file; `Ok(None)` when there is none. `Err` carries the explicit path that is missing.
pub fn find(explicit: Option<&Path>) -> Result<Option<ManagerBinary>, PathBuf> {
    if let Some(bin) = explicit {
        return if bin.is_file() {
            Ok(Some(ManagerBinary { path: bin.to_path_buf(), choice: Choice::Explicit }))
        } else {
            Err(bin.to_path_buf())
        };
    }
    let exe = std::env::current_exe().ok();
    let checkout = std::path::absolute(CHECKOUT).unwrap_or_else(|_| PathBuf::from(CHECKOUT));
    Ok(candidates(exe.as_deref(), &checkout, std::env::var_os("PATH")).into_iter().find(|c| c.path.is_file()))
}

/// Where [`find`] looked, for a "not found" message.
pub fn searched() -> String {
    let exe = std::env::current_exe().ok();
    candidates(exe.as_deref(), Path::new(CHECKOUT), None)
        .iter()
        .map(|c| c.path.display().to_string())
        .chain(std::iter::once("PATH".to_string()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_release_build_comes_before_the_debug_manager_next_to_a_debug_tool() {
        let paths = std::env::join_paths(["/usr/local/bin", "/usr/bin"]).unwrap();
        let found = candidates(Some(Path::new("/src/dm/target/debug/plugin")), Path::new("/checkout"), Some(paths));
        let shown: Vec<(String, Choice)> = found.iter().map(|c| (c.path.display().to_string(), c.choice)).collect();
        assert_eq!(
            shown,
            [
                ("/src/dm/target/release/damocles-manager".to_string(), Choice::ReleaseBesideTool),
                ("/checkout/target/release/damocles-manager".to_string(), Choice::ReleaseOfCheckout),
                ("/src/dm/target/debug/damocles-manager".to_string(), Choice::BesideTool),
                ("/usr/local/bin/damocles-manager".to_string(), Choice::OnPath),
                ("/usr/bin/damocles-manager".to_string(), Choice::OnPath),
            ]
        );
    }

    #[test]
    fn an_installed_tool_looks_in_its_checkout_then_beside_itself() {
        let found = candidates(Some(Path::new("/home/u/.cargo/bin/plugin")), Path::new("/checkout"), None);
        let paths: Vec<String> = found.iter().map(|c| c.path.display().to_string()).collect();
        assert_eq!(paths, ["/checkout/target/release/damocles-manager", "/home/u/.cargo/bin/damocles-manager"]);
    }
}
