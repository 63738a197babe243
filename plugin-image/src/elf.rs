//! Structural checks of an ELF file, from its bytes: the dynamic loader trusts every offset and address in a file
//! it maps, so a complete file whose dynamic section points outside it (e.g. `DT_GNU_HASH`) kills the process
//! inside `dlopen`, and a truncated file maps fine and dies of SIGBUS later. Everything the loader will read
//! before any code runs is checked here to lie inside the file, read the way the loader reads it: the dynamic
//! table through the load segments at `PT_DYNAMIC`'s address, up to its first `DT_NULL`, with no tag but
//! `DT_NEEDED` repeated (glibc keeps the last entry of a tag, a first-match lookup would check another one).
//! The work is linear in the file's size and stays within a [`Budget`].

use object::LittleEndian;
use object::elf;
use object::read::elf::{ElfFile64, FileHeader, ProgramHeader, SectionHeader};

use crate::limits::{Budget, MAX_PROGRAM_HEADERS, MAX_SECTIONS};
use crate::refusal::Refusal;

/// `DT_RELRSZ` and `DT_RELR` (packed relative relocations; not named by `object`).
const DT_RELRSZ: u32 = 35;
const DT_RELR: u32 = 36;

/// A parsed ELF file of this machine.
pub type Elf<'a> = ElfFile64<'a, LittleEndian>;

/// The `e_machine` of the host, the only machine whose files can be loaded.
pub const HOST_MACHINE: u16 = if cfg!(target_arch = "aarch64") { elf::EM_AARCH64 } else { elf::EM_X86_64 };

/// What kind of ELF file is expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// A shared object (`ET_DYN` with a dynamic section): a plugin.
    SharedObject,
    /// An executable (`ET_EXEC` or a PIE): the manager binary.
    Executable,
}

fn corrupt(what: impl std::fmt::Display) -> Refusal {
    Refusal::Elf(format!("truncated or corrupt ELF file: {what}"))
}

/// Parses `data` as an ELF file of this machine and checks its structure (see the module docs) within `budget`.
/// The work is linear in the file's size: at most [`MAX_PROGRAM_HEADERS`] program headers and [`MAX_SECTIONS`]
/// sections, and one binary search of the load segments per address checked.
pub fn parse<'a>(data: &'a [u8], expect: Expect, budget: &Budget) -> Result<Elf<'a>, Refusal> {
    if !data.starts_with(b"\x7fELF") {
        return Err(Refusal::Elf("not an ELF file".into()));
    }
    let file = Elf::parse(data).map_err(corrupt)?;
    let endian = file.endian();
    let header = file.elf_header();
    let machine = header.e_machine(endian);
    if machine != HOST_MACHINE {
        return Err(Refusal::Elf(format!("built for ELF machine {machine}, this host is machine {HOST_MACHINE}")));
    }
    let e_type = header.e_type(endian);
    let kind_ok = match expect {
        Expect::SharedObject => e_type == elf::ET_DYN,
        Expect::Executable => e_type == elf::ET_EXEC || e_type == elf::ET_DYN,
    };
    if !kind_ok {
        return Err(Refusal::Elf(format!("not a shared library (ELF type {e_type})")));
    }
    let segments = file.elf_program_headers();
    if segments.len() > MAX_PROGRAM_HEADERS {
        return Err(corrupt(format!("{} program headers (at most {MAX_PROGRAM_HEADERS})", segments.len())));
    }
    for (i, segment) in segments.iter().enumerate() {
        segment.data(endian, data).map_err(|()| corrupt(format!("segment {i} lies beyond the end of the file")))?;
    }
    let sections = file.elf_section_table();
    if sections.len() > MAX_SECTIONS {
        return Err(corrupt(format!("{} sections (at most {MAX_SECTIONS})", sections.len())));
    }
    for section in sections.iter() {
        if section.sh_type(endian) != elf::SHT_NOBITS {
            section.data(endian, data).map_err(|_| {
                let name = sections.section_name(endian, section).map(String::from_utf8_lossy).unwrap_or_default();
                corrupt(format!("section {name} lies beyond the end of the file"))
            })?;
        }
    }
    budget.check()?;
    if expect == Expect::SharedObject {
        check_dynamic(&file, budget)?;
    }
    Ok(file)
}

/// The bytes of the section called `name`, if the file has one.
pub fn section_data<'a>(file: &Elf<'a>, name: &str) -> Result<Option<&'a [u8]>, Refusal> {
    let endian = file.endian();
    let Some((_, section)) = file.elf_section_table().section_by_name(endian, name.as_bytes()) else {
        return Ok(None);
    };
    if section.sh_type(endian) == elf::SHT_NOBITS {
        return Err(Refusal::Elf(format!("section {name} has no bytes in the file")));
    }
    section.data(endian, file.data()).map(Some).map_err(|_| corrupt(format!("section {name} lies beyond the file")))
}

/// A `PT_LOAD` segment's address ranges.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Load {
    pub offset: u64,
    pub vaddr: u64,
    pub filesz: u64,
    pub memsz: u64,
    pub executable: bool,
}

impl Load {
    fn contains(&self, addr: u64, size: u64, len: u64) -> bool {
        addr >= self.vaddr && addr.checked_add(size).is_some_and(|end| end <= self.vaddr.saturating_add(len))
    }

    /// `addr..addr+size` is backed by bytes of the file.
    pub fn in_file(&self, addr: u64, size: u64) -> bool {
        self.contains(addr, size, self.filesz)
    }

    /// `addr..addr+size` is inside the mapped memory (file bytes or zero fill).
    pub fn in_memory(&self, addr: u64, size: u64) -> bool {
        self.contains(addr, size, self.memsz)
    }
}

/// The file's `PT_LOAD` segments, in ascending address order without overlap (the gABI requires the order; the
/// checks refuse a file that breaks it), so the one segment that may hold an address is found by binary search.
#[derive(Debug, Clone)]
pub(crate) struct Loads(Vec<Load>);

impl Loads {
    /// The `PT_LOAD` segments of `file`, refused when out of order or overlapping.
    pub fn of(file: &Elf<'_>) -> Result<Loads, Refusal> {
        let endian = file.endian();
        let loads: Vec<Load> = file
            .elf_program_headers()
            .iter()
            .filter(|p| p.p_type(endian) == elf::PT_LOAD)
            .map(|p| Load {
                offset: p.p_offset(endian),
                vaddr: p.p_vaddr(endian),
                filesz: p.p_filesz(endian),
                memsz: p.p_memsz(endian),
                executable: p.p_flags(endian) & elf::PF_X != 0,
            })
            .collect();
        for pair in loads.windows(2) {
            if pair[0].vaddr.saturating_add(pair[0].memsz.max(pair[0].filesz)) > pair[1].vaddr {
                return Err(corrupt(format!(
                    "load segments at {:#x} and {:#x} overlap or are not in ascending address order",
                    pair[0].vaddr, pair[1].vaddr
                )));
            }
        }
        Ok(Loads(loads))
    }

    /// The only segment that can contain `addr`: the last one starting at or below it.
    fn candidate(&self, addr: u64) -> Option<&Load> {
        let after = self.0.partition_point(|l| l.vaddr <= addr);
        after.checked_sub(1).and_then(|i| self.0.get(i))
    }

    /// The segment whose file bytes back `addr..addr+size`.
    pub fn in_file(&self, addr: u64, size: u64) -> Option<&Load> {
        self.candidate(addr).filter(|l| l.in_file(addr, size))
    }

    /// Whether `addr..addr+size` is inside the mapped memory of one segment.
    pub fn in_memory(&self, addr: u64, size: u64) -> bool {
        self.candidate(addr).is_some_and(|l| l.in_memory(addr, size))
    }

    /// The file offset of the byte the loader maps at `addr`.
    pub fn file_offset(&self, addr: u64) -> Option<u64> {
        self.in_file(addr, 1).and_then(|l| l.offset.checked_add(addr - l.vaddr))
    }
}

/// The dynamic table as the loader reads it: through the load segments at `PT_DYNAMIC`'s address, entry by
/// entry up to the first `DT_NULL`. Every tag but [`REPEATABLE_TAGS`] appears at most once, so the value these
/// checks read is the one glibc uses (it keeps the last entry of a tag).
pub struct DynamicTable {
    entries: Vec<(u64, u64)>,
}

/// The tags that may appear more than once in a dynamic table (gABI: the order of `DT_NEEDED` entries is
/// significant; every other tag has one meaning per object).
pub const REPEATABLE_TAGS: &[u32] = &[elf::DT_NEEDED];

impl DynamicTable {
    /// The value of `tag`, if present.
    pub fn get(&self, tag: u32) -> Option<u64> {
        self.entries.iter().find(|(t, _)| *t == u64::from(tag)).map(|(_, v)| *v)
    }

    /// Every entry up to `DT_NULL`, in order.
    pub fn entries(&self) -> &[(u64, u64)] {
        &self.entries
    }
}

/// Reads the dynamic table of `file` (see [`DynamicTable`]); `Ok(None)` when the file has no `PT_DYNAMIC`.
pub fn dynamic_table(file: &Elf<'_>, budget: &Budget) -> Result<Option<DynamicTable>, Refusal> {
    let endian = file.endian();
    let mut dynamic = None;
    for segment in file.elf_program_headers() {
        if segment.p_type(endian) == elf::PT_DYNAMIC {
            if dynamic.is_some() {
                return Err(corrupt("two dynamic segments"));
            }
            dynamic = Some((segment.p_vaddr(endian), segment.p_offset(endian), segment.p_filesz(endian)));
        }
    }
    let Some((vaddr, offset, size)) = dynamic else { return Ok(None) };
    let loads = Loads::of(file)?;
    if loads.file_offset(vaddr) != Some(offset) {
        return Err(corrupt("PT_DYNAMIC's address and file offset name different bytes"));
    }
    let bytes =
        file_bytes(file, &loads, vaddr, size).ok_or_else(|| corrupt("the dynamic table lies outside the file"))?;
    let mut entries: Vec<(u64, u64)> = Vec::new();
    let mut seen = std::collections::BTreeMap::new();
    let mut terminated = false;
    for (i, entry) in bytes.chunks_exact(16).enumerate() {
        if i % 4096 == 0 {
            budget.check()?;
        }
        let [tag, value] = [0, 8].map(|at| le_u64(&entry[at..at + 8]));
        if tag == u64::from(elf::DT_NULL) {
            terminated = true;
            break;
        }
        let repeatable = REPEATABLE_TAGS.iter().any(|t| u64::from(*t) == tag);
        if let Some(first) = seen.insert(tag, i)
            && !repeatable
        {
            return Err(corrupt(format!(
                "dynamic tag {} appears twice (entries {first} and {i}); the loader would use the last, so only {} may repeat",
                tag_name(tag),
                REPEATABLE_TAGS.iter().map(|t| tag_name(u64::from(*t))).collect::<Vec<_>>().join(", ")
            )));
        }
        entries.push((tag, value));
    }
    if !terminated {
        return Err(corrupt("the dynamic table has no DT_NULL entry"));
    }
    Ok(Some(DynamicTable { entries }))
}

fn le_u64(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(bytes);
    u64::from_le_bytes(word)
}

/// The name of a dynamic tag, for messages.
fn tag_name(tag: u64) -> String {
    let name = match u32::try_from(tag).unwrap_or(u32::MAX) {
        elf::DT_NEEDED => "DT_NEEDED",
        elf::DT_HASH => "DT_HASH",
        elf::DT_GNU_HASH => "DT_GNU_HASH",
        elf::DT_STRTAB => "DT_STRTAB",
        elf::DT_STRSZ => "DT_STRSZ",
        elf::DT_SYMTAB => "DT_SYMTAB",
        elf::DT_RELA => "DT_RELA",
        elf::DT_RELASZ => "DT_RELASZ",
        elf::DT_REL => "DT_REL",
        elf::DT_JMPREL => "DT_JMPREL",
        elf::DT_PLTRELSZ => "DT_PLTRELSZ",
        elf::DT_PLTREL => "DT_PLTREL",
        DT_RELR => "DT_RELR",
        DT_RELRSZ => "DT_RELRSZ",
        elf::DT_VERSYM => "DT_VERSYM",
        elf::DT_VERDEF => "DT_VERDEF",
        elf::DT_VERNEED => "DT_VERNEED",
        elf::DT_INIT_ARRAY => "DT_INIT_ARRAY",
        elf::DT_INIT_ARRAYSZ => "DT_INIT_ARRAYSZ",
        elf::DT_FINI_ARRAY => "DT_FINI_ARRAY",
        elf::DT_FINI_ARRAYSZ => "DT_FINI_ARRAYSZ",
        elf::DT_PREINIT_ARRAY => "DT_PREINIT_ARRAY",
        elf::DT_INIT => "DT_INIT",
        elf::DT_FINI => "DT_FINI",
        elf::DT_PLTGOT => "DT_PLTGOT",
        elf::DT_SONAME => "DT_SONAME",
        elf::DT_RPATH => "DT_RPATH",
        elf::DT_RUNPATH => "DT_RUNPATH",
        _ => return format!("{tag:#x}"),
    };
    name.to_string()
}

/// Checks every address the dynamic loader reads from the dynamic section (hash tables, symbol and string
/// tables, relocation tables and their targets, init/fini arrays) against the file's load segments.
fn check_dynamic(file: &Elf<'_>, budget: &Budget) -> Result<(), Refusal> {
    let dynamic =
        dynamic_table(file, budget)?.ok_or_else(|| Refusal::Elf("not a shared library (no dynamic section)".into()))?;
    let loads = Loads::of(file)?;
    let value = |tag: u32| dynamic.get(tag);
    let outside = |tag: u32, addr: u64| {
        corrupt(format!("{} = {addr:#x} points outside the file's loaded segments", tag_name(u64::from(tag))))
    };
    // Tables read from file bytes: (tag, size tag or minimum size).
    let tables: [(u32, Option<u32>, u64); 12] = [
        (elf::DT_HASH, None, 8),
        (elf::DT_GNU_HASH, None, 16),
        (elf::DT_STRTAB, Some(elf::DT_STRSZ), 1),
        (elf::DT_SYMTAB, None, 24),
        (elf::DT_RELA, Some(elf::DT_RELASZ), 0),
        (elf::DT_REL, Some(elf::DT_RELSZ), 0),
        (elf::DT_JMPREL, Some(elf::DT_PLTRELSZ), 0),
        (DT_RELR, Some(DT_RELRSZ), 0),
        (elf::DT_VERSYM, None, 2),
        (elf::DT_VERDEF, None, 20),
        (elf::DT_VERNEED, None, 16),
        (elf::DT_PREINIT_ARRAY, Some(elf::DT_PREINIT_ARRAYSZ), 0),
    ];
    for (tag, size_tag, min) in tables {
        if let Some(addr) = value(tag) {
            let size = size_tag.and_then(value).unwrap_or(min);
            if loads.in_file(addr, size).is_none() {
                return Err(outside(tag, addr));
            }
        }
    }
    for (tag, size_tag) in [(elf::DT_INIT_ARRAY, elf::DT_INIT_ARRAYSZ), (elf::DT_FINI_ARRAY, elf::DT_FINI_ARRAYSZ)] {
        if let Some(addr) = value(tag)
            && loads.in_file(addr, value(size_tag).unwrap_or(0)).is_none()
        {
            return Err(outside(tag, addr));
        }
    }
    for tag in [elf::DT_INIT, elf::DT_FINI] {
        if let Some(addr) = value(tag)
            && !loads.in_file(addr, 1).is_some_and(|l| l.executable)
        {
            return Err(outside(tag, addr));
        }
    }
    if let Some(addr) = value(elf::DT_PLTGOT)
        && !loads.in_memory(addr, 8)
    {
        return Err(outside(elf::DT_PLTGOT, addr));
    }
    if let Some(strsz) = value(elf::DT_STRSZ) {
        for &(tag, name) in dynamic.entries() {
            let is_name = tag == u64::from(elf::DT_NEEDED) || tag == u64::from(elf::DT_SONAME);
            if is_name && name >= strsz {
                return Err(corrupt("a DT_NEEDED or DT_SONAME name lies outside the string table"));
            }
        }
    }
    check_same_tables(file, &loads, value(elf::DT_SYMTAB), value(elf::DT_STRTAB))?;
    check_relocation_targets(file, &loads, &value, budget)?;
    check_relr_targets(file, &loads, &value, budget)
}

/// The symbol checks read `.dynsym`/`.dynstr` through the section headers; the dynamic loader reads
/// `DT_SYMTAB`/`DT_STRTAB` through the load segments. They must be the same bytes, or the checks would look at
/// one table and `dlopen` use another.
fn check_same_tables(file: &Elf<'_>, loads: &Loads, symtab: Option<u64>, strtab: Option<u64>) -> Result<(), Refusal> {
    let endian = file.endian();
    let sections = file.elf_section_table();
    let section = |name: &[u8]| sections.section_by_name(endian, name).map(|(_, s)| s);
    for (tag, name, addr) in [("DT_SYMTAB", ".dynsym", symtab), ("DT_STRTAB", ".dynstr", strtab)] {
        let Some(addr) = addr else { continue };
        let same = section(name.as_bytes())
            .is_some_and(|s| s.sh_addr(endian) == addr && loads.file_offset(addr) == Some(s.sh_offset(endian)));
        if !same {
            return Err(corrupt(format!("{tag} is not the {name} section")));
        }
    }
    Ok(())
}

/// Every relocation the dynamic loader applies (`DT_RELA`/`DT_RELASZ` and `DT_JMPREL`/`DT_PLTRELSZ`, read where
/// the loader reads them) writes inside the file's loaded memory and names an existing dynamic symbol.
fn check_relocation_targets(
    file: &Elf<'_>,
    loads: &Loads,
    value: &impl Fn(u32) -> Option<u64>,
    budget: &Budget,
) -> Result<(), Refusal> {
    if value(elf::DT_REL).is_some() {
        return Err(corrupt("DT_REL relocations (this machine uses DT_RELA)"));
    }
    if value(elf::DT_JMPREL).is_some() && value(elf::DT_PLTREL) != Some(u64::from(elf::DT_RELA)) {
        return Err(corrupt("DT_PLTREL is not DT_RELA"));
    }
    let symbols = file.elf_dynamic_symbol_table().len() as u64;
    for (table, size) in [(elf::DT_RELA, elf::DT_RELASZ), (elf::DT_JMPREL, elf::DT_PLTRELSZ)] {
        let (Some(addr), Some(size)) = (value(table), value(size)) else { continue };
        let bytes =
            file_bytes(file, loads, addr, size).ok_or_else(|| corrupt("a relocation table lies outside the file"))?;
        if bytes.len() % 24 != 0 {
            return Err(corrupt("a relocation table's size is not a multiple of its entry size"));
        }
        for (i, entry) in bytes.chunks_exact(24).enumerate() {
            if i % 4096 == 0 {
                budget.check()?;
            }
            let (offset, info) = (le_u64(&entry[0..8]), le_u64(&entry[8..16]));
            if !loads.in_memory(offset, 8) {
                return Err(corrupt(format!("a relocation writes at {offset:#x}, outside the file's loaded segments")));
            }
            let sym = info >> 32;
            if sym >= symbols.max(1) {
                return Err(corrupt(format!("a relocation names dynamic symbol {sym}, which does not exist")));
            }
        }
    }
    Ok(())
}

/// Every packed relative relocation (`DT_RELR`: an address word, then bitmap words each covering the next 63
/// words) writes inside the file's loaded memory.
fn check_relr_targets(
    file: &Elf<'_>,
    loads: &Loads,
    value: &impl Fn(u32) -> Option<u64>,
    budget: &Budget,
) -> Result<(), Refusal> {
    let (Some(addr), Some(size)) = (value(DT_RELR), value(DT_RELRSZ)) else { return Ok(()) };
    let bytes = file_bytes(file, loads, addr, size).ok_or_else(|| corrupt("DT_RELR lies outside the file"))?;
    if bytes.len() % 8 != 0 {
        return Err(corrupt("DT_RELRSZ is not a multiple of 8"));
    }
    let outside = |at: u64| corrupt(format!("a relocation writes at {at:#x}, outside the file's loaded segments"));
    let mut next = 0u64;
    for (i, word) in bytes.chunks_exact(8).map(le_u64).enumerate() {
        if i % 4096 == 0 {
            budget.check()?;
        }
        if word & 1 == 0 {
            if !loads.in_memory(word, 8) {
                return Err(outside(word));
            }
            next = word.wrapping_add(8);
        } else {
            for bit in (1..64u64).filter(|b| (word >> b) & 1 == 1) {
                let at = next.wrapping_add((bit - 1) * 8);
                if !loads.in_memory(at, 8) {
                    return Err(outside(at));
                }
            }
            next = next.wrapping_add(63 * 8);
        }
    }
    Ok(())
}

/// The file bytes backing `addr..addr+size` of the loaded image.
fn file_bytes<'a>(file: &Elf<'a>, loads: &Loads, addr: u64, size: u64) -> Option<&'a [u8]> {
    let load = loads.in_file(addr, size)?;
    let start = usize::try_from(load.offset.checked_add(addr - load.vaddr)?).ok()?;
    let end = start.checked_add(usize::try_from(size).ok()?)?;
    file.data().get(start..end)
}
