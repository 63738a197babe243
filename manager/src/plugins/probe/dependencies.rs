//! What a trial load depends on besides the plugin's own bytes, and the text of a pass record that binds them.
//!
//! A pass is only worth remembering while the load it stood for would go the same way: the same plugin bytes,
//! the same manager binary, the same dynamic loader, libc and every other shared object the load brought in
//! (the plugin's resolved `DT_NEEDED` libraries, as the probe child found them mapped), the same loader
//! configuration files and the same `LD_*` variables. [`record_text`] writes all of it; a record is trusted only
//! when [`record_text`] rebuilt from the record's own object list and today's files is byte for byte the record.

use std::ffi::CStr;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

/// The first line of every record (the format's version).
const HEADER: &str = "damocles-probe-record 1";
/// Loader configuration files whose change can change what a load resolves to.
const LOADER_FILES: &[&str] = &["/etc/ld.so.cache", "/etc/ld.so.preload"];

/// A file as it is on disk now: device, inode, size, modification and status-change times (a rebuild, a
/// replacement or any write changes it; the status-change time cannot be set back), or `absent`.
pub fn file_identity(path: &Path) -> String {
    match std::fs::metadata(path) {
        Ok(m) => format!(
            "{}:{}:{}:{}.{}:{}.{}",
            m.dev(),
            m.ino(),
            m.size(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec()
        ),
        Err(_) => "absent".into(),
    }
}

/// The shared objects mapped in this process, by absolute path (not the main program, the vDSO or memory
/// files under `/proc`), sorted and without repeats.
pub fn loaded_objects() -> Vec<PathBuf> {
    unsafe extern "C" fn each(info: *mut libc::dl_phdr_info, _: libc::size_t, data: *mut libc::c_void) -> i32 {
        // SAFETY: dl_iterate_phdr passes a valid info and our `data` (a `Vec<PathBuf>`), one call at a time.
        let (info, found) = unsafe { (&*info, &mut *(data as *mut Vec<PathBuf>)) };
        if !info.dlpi_name.is_null() {
            // SAFETY: dlpi_name is a NUL-terminated string owned by the loader for the duration of the call.
            let name = unsafe { CStr::from_ptr(info.dlpi_name) };
            use std::os::unix::ffi::OsStrExt as _;
            let path = Path::new(std::ffi::OsStr::from_bytes(name.to_bytes()));
            if path.is_absolute() && !path.starts_with("/proc") {
                found.push(path.to_path_buf());
            }
        }
        0
    }
    let mut found: Vec<PathBuf> = Vec::new();
    // SAFETY: the callback only reads the info it is given and appends to `found`, which outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(each), &mut found as *mut Vec<PathBuf> as *mut libc::c_void) };
    found.sort();
    found.dedup();
    found
}

/// The `LD_*` variables of this process, sorted (they steer the dynamic loader).
fn loader_variables() -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = std::env::vars_os()
        .filter(|(k, _)| k.to_string_lossy().starts_with("LD_"))
        .map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned()))
        .collect();
    vars.sort();
    vars
}

/// The record of a pass of the plugin with SHA-256 `digest`, loaded by `manager`, with `objects` mapped; `None`
/// when something cannot be written on one line (a path or variable with a line break), then nothing is
/// remembered.
pub fn record_text(digest: &str, manager: &Path, objects: &[PathBuf]) -> Option<String> {
    let mut text = format!("{HEADER}\nplugin {digest}\nmanager {} {}\n", file_identity(manager), manager.display());
    for object in objects {
        text.push_str(&format!("object {} {}\n", file_identity(object), object.display()));
    }
    for file in LOADER_FILES {
        text.push_str(&format!("file {} {file}\n", file_identity(Path::new(file))));
    }
    let variables = loader_variables();
    for (name, value) in &variables {
        text.push_str(&format!("env {name}={value}\n"));
    }
    text.push_str("end\n");
    let lines_ok = text.lines().count() == 4 + objects.len() + LOADER_FILES.len() + variables.len();
    lines_ok.then_some(text)
}

/// The object paths a record lists, or why it is malformed.
pub fn recorded_objects(record: &str) -> Result<Vec<PathBuf>, String> {
    let mut lines = record.lines();
    if lines.next() != Some(HEADER) {
        return Err("not a probe record of this format".into());
    }
    if !record.ends_with("\nend\n") {
        return Err("incomplete (no `end` line)".into());
    }
    let objects: Vec<PathBuf> = record
        .lines()
        .filter_map(|l| l.strip_prefix("object "))
        .map(|rest| rest.split_once(' ').map(|(_, path)| PathBuf::from(path)).ok_or("an object line without a path"))
        .collect::<Result<_, _>>()?;
    if objects.is_empty() {
        return Err("lists no shared object".into());
    }
    Ok(objects)
}
