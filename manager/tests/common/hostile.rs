//! The hostile plugin corpus: bad files generated during the test run from real built plugins and small fixture
//! crates (no committed binaries). Each entry knows the refusal the manager must give it.

use std::path::{Path, PathBuf};

use object::LittleEndian;
use object::elf;
use object::read::elf::{ElfFile64, FileHeader as _, ProgramHeader, SectionHeader};

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

/// The file offsets of the dynamic table's entries, up to and including the first `DT_NULL`, then the padding
/// entries after it.
fn dynamic_entries(bytes: &[u8]) -> Vec<usize> {
    let file = ElfFile64::<LittleEndian>::parse(bytes).expect("ELF");
    let endian = file.endian();
    let dynamic = file.elf_program_headers().iter().find(|p| p.p_type(endian) == elf::PT_DYNAMIC).expect("PT_DYNAMIC");
    let (start, size) = (dynamic.p_offset(endian) as usize, dynamic.p_filesz(endian) as usize);
    (start..start + size).step_by(16).collect()
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

/// Turns the first dynamic entry with tag `from` into an entry `to = value` (issue 17 item 5: `DT_FINI` of a good
/// plugin turned into a second `DT_GNU_HASH`).
pub fn retag_dynamic(bytes: &mut [u8], from: u32, to: u32, value: u64) {
    let at = dynamic_entries(bytes)
        .into_iter()
        .find(|&at| read_u64(bytes, at) == u64::from(from))
        .unwrap_or_else(|| panic!("no dynamic tag {from}"));
    bytes[at..at + 8].copy_from_slice(&u64::from(to).to_le_bytes());
    bytes[at + 8..at + 16].copy_from_slice(&value.to_le_bytes());
}

/// Writes `tag = value` into the entry right after the dynamic table's first `DT_NULL`, which the loader never
/// reads. A table without padding after its `DT_NULL` gets one: its last entry (a count such as
/// `DT_VERNEEDNUM`) becomes the `DT_NULL`.
pub fn write_after_dt_null(bytes: &mut [u8], tag: u32, value: u64) {
    let entries = dynamic_entries(bytes);
    let mut null = entries.iter().position(|&at| read_u64(bytes, at) == 0).expect("a DT_NULL");
    if null + 1 == entries.len() {
        null -= 1;
        bytes[entries[null]..entries[null] + 16].fill(0);
    }
    let at = entries[null + 1];
    bytes[at..at + 8].copy_from_slice(&u64::from(tag).to_le_bytes());
    bytes[at + 8..at + 16].copy_from_slice(&value.to_le_bytes());
}

/// A real plugin with `extra_loads` empty `PT_LOAD` headers (before its own when `extra_first`, else after them,
/// at ascending addresses) and its `DT_RELA` table replaced by `relocations` copies of its first relocation, in
/// a new load segment at the end (issue 17 item 6: 65,000 dummy `PT_LOAD`s and 100k relocations, 6 MB).
pub fn many_segments(plugin: &[u8], extra_loads: usize, extra_first: bool, relocations: usize) -> Vec<u8> {
    let file = ElfFile64::<LittleEndian>::parse(plugin).expect("ELF");
    let endian = file.endian();
    let header = file.elf_header();
    let (phoff, phnum) = (header.e_phoff(endian) as usize, header.e_phnum(endian) as usize);
    let loads: Vec<(u64, u64, u64)> = file
        .elf_program_headers()
        .iter()
        .filter(|p| p.p_type(endian) == elf::PT_LOAD)
        .map(|p| (p.p_vaddr(endian), p.p_offset(endian), p.p_filesz(endian)))
        .collect();
    let to_offset = |addr: u64| {
        let (vaddr, offset, _) =
            loads.iter().find(|(v, _, size)| addr >= *v && addr < v + size).expect("address in a load segment");
        (offset + (addr - vaddr)) as usize
    };
    let entries = dynamic_entries(plugin);
    let find = |tag: u32| entries.iter().copied().find(|&at| read_u64(plugin, at) == u64::from(tag)).expect("tag");
    let (rela_at, relasz_at) = (find(elf::DT_RELA), find(elf::DT_RELASZ));
    let first = to_offset(read_u64(plugin, rela_at + 8));
    let relocation = plugin[first..first + 24].to_vec();

    let mut out = plugin.to_vec();
    out.resize(out.len().next_multiple_of(0x1000), 0);
    let table_offset = out.len() as u64;
    for _ in 0..relocations {
        out.extend_from_slice(&relocation);
    }
    let table_size = (relocations * 24) as u64;
    let table_vaddr = 0x6000_0000_0000 + table_offset;
    let segment = |vaddr: u64, offset: u64, size: u64| {
        let mut ph = Vec::with_capacity(56);
        ph.extend_from_slice(&elf::PT_LOAD.to_le_bytes());
        ph.extend_from_slice(&elf::PF_R.to_le_bytes());
        for word in [offset, vaddr, vaddr, size, size, 0x1000] {
            ph.extend_from_slice(&word.to_le_bytes());
        }
        ph
    };
    let dummies: Vec<u8> = (0..extra_loads as u64).flat_map(|i| segment(0x7000_0000_0000 + i * 0x1000, 0, 0)).collect();
    let mut table = Vec::new();
    if extra_first {
        table.extend_from_slice(&dummies);
    }
    table.extend_from_slice(&plugin[phoff..phoff + phnum * 56]);
    table.extend_from_slice(&segment(table_vaddr, table_offset, table_size));
    if !extra_first {
        table.extend_from_slice(&dummies);
    }
    out.resize(out.len().next_multiple_of(8), 0);
    let new_phoff = out.len() as u64;
    out.extend_from_slice(&table);
    let new_phnum = u16::try_from(table.len() / 56).expect("at most 65535 program headers");
    out[0x20..0x28].copy_from_slice(&new_phoff.to_le_bytes());
    out[0x38..0x3a].copy_from_slice(&new_phnum.to_le_bytes());
    out[rela_at + 8..rela_at + 16].copy_from_slice(&table_vaddr.to_le_bytes());
    out[relasz_at + 8..relasz_at + 16].copy_from_slice(&table_size.to_le_bytes());
    out
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
    // DT_FINI turned into a second DT_GNU_HASH pointing outside the file: a first-match check sees the good one.
    let mut second_gnu_hash = memdb.clone();
    retag_dynamic(&mut second_gnu_hash, elf::DT_FINI, elf::DT_GNU_HASH, 0x07ff_f000_0000);
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
            name: "plugin-second-gnu-hash.so",
            bytes: second_gnu_hash,
            reason: "dynamic tag DT_GNU_HASH appears twice",
        },
        HostileFile {
            name: "plugin-many-segments.so",
            bytes: many_segments(&memdb, 65_000, true, 100_000),
            reason: "program headers (at most 64)",
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
