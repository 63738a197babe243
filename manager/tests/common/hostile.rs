//! The hostile plugin corpus: bad files generated during the test run from real built plugins and small fixture
//! crates (no committed binaries). Each entry knows the refusal the manager must give it.

use std::path::{Path, PathBuf};

use object::LittleEndian;
use object::elf;
use object::read::elf::{ElfFile64, ProgramHeader, SectionHeader};

use super::plugins::{build_plugin, built, workspace_root};

/// One bad file and the words its refusal must contain.
pub struct HostileFile {
    /// File name in the plugins dir.
    pub name: &'static str,
    /// The bytes.
    pub bytes: Vec<u8>,
    /// A fragment the refusal message must contain.
    pub reason: &'static str,
}

/// Overwrites the value of the first dynamic entry with tag `tag`.
pub fn patch_dynamic(bytes: &mut [u8], tag: u32, value: u64) {
    let file = ElfFile64::<LittleEndian>::parse(&*bytes).expect("ELF");
    let endian = file.endian();
    let dynamic = file.elf_program_headers().iter().find(|p| p.p_type(endian) == elf::PT_DYNAMIC).expect("PT_DYNAMIC");
    let (start, size) = (dynamic.p_offset(endian) as usize, dynamic.p_filesz(endian) as usize);
    let at = (start..start + size)
        .step_by(16)
        .find(|&at| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) == u64::from(tag))
        .unwrap_or_else(|| panic!("no dynamic tag {tag}"));
    bytes[at + 8..at + 16].copy_from_slice(&value.to_le_bytes());
}

/// Makes dynamic symbol `name` an absolute symbol of value 0 (`dlsym` then returns NULL without an error).
pub fn patch_symbol_to_abs_zero(bytes: &mut [u8], name: &str) {
    let file = ElfFile64::<LittleEndian>::parse(&*bytes).expect("ELF");
    let endian = file.endian();
    let sections = file.elf_section_table();
    let (_, dynsym) = sections.section_by_name(endian, b".dynsym").expect(".dynsym");
    let (_, dynstr) = sections.section_by_name(endian, b".dynstr").expect(".dynstr");
    let (sym_off, sym_size) = (dynsym.sh_offset(endian) as usize, dynsym.sh_size(endian) as usize);
    let str_off = dynstr.sh_offset(endian) as usize;
    let at = (sym_off..sym_off + sym_size)
        .step_by(24)
        .find(|&at| {
            let st_name = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            let start = str_off + st_name;
            bytes[start..].split(|&b| b == 0).next() == Some(name.as_bytes())
        })
        .unwrap_or_else(|| panic!("no dynamic symbol {name}"));
    bytes[at + 6..at + 8].copy_from_slice(&elf::SHN_ABS.to_le_bytes());
    bytes[at + 8..at + 16].copy_from_slice(&0u64.to_le_bytes());
}

/// A plugin crate in a temp dir (SyncSectorState, one `OnInit` hook) whose `lib.rs` starts with `extra`.
pub fn fixture_crate(name: &str, sdk_features: &[&str], extra: &str) -> tempfile::TempDir {
    fixture_crate_with(name, sdk_features, "", extra, "Ok(())")
}

/// Like [`fixture_crate`], with extra `[dependencies]` lines and the body of the `OnInit` hook.
pub fn fixture_crate_with(
    name: &str,
    sdk_features: &[&str],
    dependencies: &str,
    extra: &str,
    hook_body: &str,
) -> tempfile::TempDir {
    let src = tempfile::tempdir().expect("temp dir");
    let sdk = workspace_root().join("manager-plugin");
    let features = sdk_features.iter().map(|f| format!("{f:?}")).collect::<Vec<_>>().join(", ");
    std::fs::write(
        src.path().join("Cargo.toml"),
        format!(
            "[package]\nname = {name:?}\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[dependencies]\n\
             manager-plugin = {{ path = {:?}, features = [{features}] }}\n{dependencies}\n[workspace]\n",
            sdk.display().to_string()
        ),
    )
    .expect("write Cargo.toml");
    std::fs::copy(workspace_root().join("Cargo.lock"), src.path().join("Cargo.lock")).expect("copy lockfile");
    std::fs::write(
        src.path().join("manifest.toml"),
        format!(
            "name = {name:?}\nkind = \"SyncSectorState\"\nexport = [{{ extPoint = \"OnInit\", impl = \"on_init\" }}]\n"
        ),
    )
    .expect("write manifest");
    std::fs::create_dir(src.path().join("src")).expect("src dir");
    std::fs::write(
        src.path().join("src/lib.rs"),
        format!(
            "{extra}\npub fn on_init(_: &manager_plugin::sync::InitEvent) -> Result<(), String> {{ {hook_body} }}\n"
        ),
    )
    .expect("write lib.rs");
    src
}

/// Source of an `.init_array` constructor that writes `marker` when the library is mapped.
pub fn constructor_writing(marker: &Path) -> String {
    format!(
        "#[used]\n#[unsafe(link_section = \".init_array\")]\nstatic WRITE_MARKER: extern \"C\" fn() = write_marker;\n\
         extern \"C\" fn write_marker() {{ let _ = std::fs::write({:?}, b\"constructor ran\"); }}\n",
        marker.display().to_string()
    )
}

/// A plugin built with another SDK feature (so its fingerprint differs) whose constructor writes `marker`.
pub fn canary_with_constructor(marker: &Path) -> PathBuf {
    let src = fixture_crate("canary", &["fingerprint-canary"], &constructor_writing(marker));
    let so = build_plugin(src.path(), "canary-ctor", true).expect("build the canary with --skip-check-dep");
    let _ = src.keep();
    so
}

/// A plugin that exports its own `malloc` (built with a matching fingerprint).
pub fn own_malloc_plugin() -> PathBuf {
    let src = fixture_crate(
        "own-malloc",
        &[],
        "unsafe extern \"C\" { fn calloc(n: usize, size: usize) -> *mut u8; }\n\
         /// # Safety\n/// Same contract as C's malloc.\n\
         #[unsafe(no_mangle)]\npub unsafe extern \"C\" fn malloc(size: usize) -> *mut u8 { unsafe { calloc(1, size) } }\n",
    );
    let so = build_plugin(src.path(), "own-malloc", false).expect("build own-malloc");
    let _ = src.keep();
    so
}

/// Every hostile file of the corpus. `marker` is the file the canary's constructor would write.
pub fn corpus(marker: &Path) -> Vec<HostileFile> {
    let memdb = std::fs::read(built("memdb")).expect("read memdb");
    let mut dyn_outside = memdb.clone();
    patch_dynamic(&mut dyn_outside, elf::DT_GNU_HASH, 0x07ff_f000_0000);
    let mut null_entry = memdb.clone();
    patch_symbol_to_abs_zero(&mut null_entry, "damocles_plugin_module");
    let libm = ["/lib/x86_64-linux-gnu/libm.so.6", "/usr/lib/x86_64-linux-gnu/libm.so.6"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("libm present");
    vec![
        HostileFile {
            name: "plugin-truncated.so",
            bytes: memdb[..memdb.len() / 3].to_vec(),
            reason: "not a loadable library: truncated or corrupt ELF file",
        },
        HostileFile {
            name: "plugin-dyn-outside.so",
            bytes: dyn_outside,
            reason: "DT_GNU_HASH = 0x7fff0000000 points outside the file's loaded segments",
        },
        HostileFile {
            name: "plugin-null-entry.so",
            bytes: null_entry,
            reason: "unsafe exported symbol `damocles_plugin_module`: not defined in the file",
        },
        HostileFile {
            name: "plugin-libm.so",
            bytes: std::fs::read(libm).expect("read libm"),
            reason: "not a damocles plugin (no `.damocles_plugin` section)",
        },
        HostileFile {
            name: "plugin-canary.so",
            bytes: std::fs::read(canary_with_constructor(marker)).expect("read canary"),
            reason: "- sdk-features: plugin \"default,fingerprint-canary\" => manager \"default\"",
        },
        HostileFile {
            name: "plugin-own-malloc.so",
            bytes: std::fs::read(own_malloc_plugin()).expect("read own-malloc"),
            reason: "the plugin defines its own allocator symbols (malloc)",
        },
        HostileFile {
            name: "plugin-zz-duplicate-memdb.so",
            bytes: memdb,
            reason: "duplicate plugin 'KVStore/memdb', already loaded from",
        },
    ]
}

/// Files that pass every static check but crash or hang while mapped: only the trial load in a child process
/// (the daemon's probe) can refuse them. Never map these in a test process.
pub fn probe_only_corpus() -> Vec<HostileFile> {
    let build = |name: &'static str, body: &str| {
        let ctor = format!(
            "#[used]\n#[unsafe(link_section = \".init_array\")]\nstatic CTOR: extern \"C\" fn() = ctor;\n\
             extern \"C\" fn ctor() {{ {body} }}\n"
        );
        let src = fixture_crate(name, &[], &ctor);
        let so = build_plugin(src.path(), name, false).unwrap_or_else(|e| panic!("build {name}: {e}"));
        let _ = src.keep();
        std::fs::read(so).expect("read fixture")
    };
    vec![
        HostileFile {
            name: "plugin-ctor-crash.so",
            bytes: build("ctor-crash", "unsafe { std::ptr::null_mut::<u8>().write_volatile(1) }"),
            reason: "refused after a trial load in a child process: it was killed by signal 11 (SIGSEGV)",
        },
        HostileFile {
            name: "plugin-ctor-hang.so",
            bytes: build("ctor-hang", "loop { std::thread::sleep(std::time::Duration::from_secs(1)) }"),
            reason: "refused after a trial load in a child process: it did not finish within 10 s (killed)",
        },
    ]
}
