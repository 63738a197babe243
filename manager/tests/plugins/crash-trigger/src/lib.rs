//! Test fixture support for the supervision tests (`manager/tests/process_supervision.rs`): a crashy process
//! plugin calls [`check`] at the start of each call. When `<plugins dir>/crash-<plugin>` exists, it is read and
//! deleted *before* acting (so the restarted process does not crash again) and the process then does what it
//! says: `segv` (a real invalid write: SIGSEGV), `abort` (SIGABRT), `exit` (exit status 3), `hang` (never returns
//! from the call). Anything else is kept for [`check_at`]'s named points (e.g. `segv-after-commit`).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use manager_plugin::PluginContext;

static PLUGINS_DIR: OnceLock<PathBuf> = OnceLock::new();

/// Remembers the plugins dir (from `onInit`).
pub fn init(ctx: &PluginContext) {
    let _ = PLUGINS_DIR.set(ctx.plugins_dir.clone());
}

fn trigger(plugin: &str) -> Option<PathBuf> {
    PLUGINS_DIR.get().map(|dir| dir.join(format!("crash-{plugin}")))
}

/// Takes the trigger of `plugin` when it asks for `point`'s actions (`<action>` at the start of a call,
/// `<action>-<point>` at a named point).
fn take(file: &Path, point: Option<&str>) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    let text = text.trim();
    // A trigger being written (by a writer that does not rename it into place) is not taken half-written.
    if text.is_empty() {
        return None;
    }
    let action = match point {
        None => text,
        Some(point) => text.strip_suffix(&format!("-{point}"))?,
    };
    if point.is_none() && text.contains('-') {
        return None;
    }
    let action = action.to_string();
    std::fs::remove_file(file).ok()?;
    Some(action)
}

/// Crashes as `<plugins dir>/crash-<plugin>` says (see the crate docs), at the start of a call.
pub fn check(plugin: &str) {
    if let Some(action) = trigger(plugin).and_then(|file| take(&file, None)) {
        act(&action);
    }
}

/// Crashes when the trigger says `<action>-<point>` (e.g. `segv-after-commit`).
pub fn check_at(plugin: &str, point: &str) {
    if let Some(action) = trigger(plugin).and_then(|file| take(&file, Some(point))) {
        act(&action);
    }
}

/// When the trigger says `<action>-<point>`, does `<action>` on a thread of its own after `delay` (e.g.
/// `exit-after-init`: the process ends just after `onInit` answered).
pub fn check_later(plugin: &str, point: &str, delay: std::time::Duration) {
    if let Some(action) = trigger(plugin).and_then(|file| take(&file, Some(point))) {
        std::thread::spawn(move || {
            std::thread::sleep(delay);
            act(&action);
        });
    }
}

fn act(action: &str) {
    match action {
        // SAFETY: none: this is the fault the test asks for, a write to the unmapped first page. (Not through a
        // null pointer: debug builds check that precondition and abort instead.)
        "segv" => unsafe { std::ptr::without_provenance_mut::<u8>(8).write_volatile(1) },
        "abort" => std::process::abort(),
        "exit" => std::process::exit(3),
        "hang" => loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        },
        _ => {}
    }
}
