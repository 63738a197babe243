//! Structural checks of an ELF file, from its bytes: the dynamic loader trusts every offset and address in a file
//! it maps, so a complete file whose dynamic section points outside it (e.g. `DT_GNU_HASH`) kills the process
//! inside `dlopen`, and a truncated file maps fine and dies of SIGBUS later. Everything the loader will read
//! before any code runs is checked here to lie inside the file.

use object::LittleEndian;
use object::elf;
use object::read::elf::{Dyn, ElfFile64, FileHeader, ProgramHeader, SectionHeader};

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

/// Parses `data` as an ELF file of this machine and checks its structure (see the module docs).
pub fn parse(data: &[u8], expect: Expect) -> Result<Elf<'_>, Refusal> {
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
    for (i, segment) in file.elf_program_headers().iter().enumerate() {
        segment.data(endian, data).map_err(|()| corrupt(format!("segment {i} lies beyond the end of the file")))?;
    }
    let sections = file.elf_section_table();
    for section in sections.iter() {
        if section.sh_type(endian) != elf::SHT_NOBITS {
            section.data(endian, data).map_err(|_| {
                let name = sections.section_name(endian, section).map(String::from_utf8_lossy).unwrap_or_default();
                corrupt(format!("section {name} lies beyond the end of the file"))
            })?;
        }
    }
    if expect == Expect::SharedObject {
        check_dynamic(&file)?;
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

/// The file's `PT_LOAD` segments.
pub(crate) fn loads(file: &Elf<'_>) -> Vec<Load> {
    let endian = file.endian();
    file.elf_program_headers()
        .iter()
        .filter(|p| p.p_type(endian) == elf::PT_LOAD)
        .map(|p| Load {
            offset: p.p_offset(endian),
            vaddr: p.p_vaddr(endian),
            filesz: p.p_filesz(endian),
            memsz: p.p_memsz(endian),
            executable: p.p_flags(endian) & elf::PF_X != 0,
        })
        .collect()
}

/// Checks every address the dynamic loader reads from the dynamic section (hash tables, symbol and string
/// tables, relocation tables and their targets, init/fini arrays) against the file's load segments.
fn check_dynamic(file: &Elf<'_>) -> Result<(), Refusal> {
    let endian = file.endian();
    let data = file.data();
    let mut dynamic = None;
    for segment in file.elf_program_headers() {
        if let Some(entries) = segment.dynamic(endian, data).map_err(corrupt)? {
            if dynamic.is_some() {
                return Err(corrupt("two dynamic segments"));
            }
            dynamic = Some(entries);
        }
    }
    let dynamic = dynamic.ok_or_else(|| Refusal::Elf("not a shared library (no dynamic section)".into()))?;
    let loads = loads(file);
    let value = |tag: u32| dynamic.iter().find(|d| d.d_tag(endian) == u64::from(tag)).map(|d| d.d_val(endian));
    let tag_name = |tag: u32| match tag {
        elf::DT_HASH => "DT_HASH",
        elf::DT_GNU_HASH => "DT_GNU_HASH",
        elf::DT_STRTAB => "DT_STRTAB",
        elf::DT_SYMTAB => "DT_SYMTAB",
        elf::DT_RELA => "DT_RELA",
        elf::DT_REL => "DT_REL",
        elf::DT_JMPREL => "DT_JMPREL",
        DT_RELR => "DT_RELR",
        elf::DT_VERSYM => "DT_VERSYM",
        elf::DT_VERDEF => "DT_VERDEF",
        elf::DT_VERNEED => "DT_VERNEED",
        elf::DT_INIT_ARRAY => "DT_INIT_ARRAY",
        elf::DT_FINI_ARRAY => "DT_FINI_ARRAY",
        elf::DT_PREINIT_ARRAY => "DT_PREINIT_ARRAY",
        elf::DT_INIT => "DT_INIT",
        elf::DT_FINI => "DT_FINI",
        elf::DT_PLTGOT => "DT_PLTGOT",
        _ => "a dynamic entry",
    };
    let outside = |tag: u32, addr: u64| {
        corrupt(format!("{} = {addr:#x} points outside the file's loaded segments", tag_name(tag)))
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
            if !loads.iter().any(|l| l.in_file(addr, size)) {
                return Err(outside(tag, addr));
            }
        }
    }
    for (tag, size_tag) in [(elf::DT_INIT_ARRAY, elf::DT_INIT_ARRAYSZ), (elf::DT_FINI_ARRAY, elf::DT_FINI_ARRAYSZ)] {
        if let Some(addr) = value(tag)
            && !loads.iter().any(|l| l.in_file(addr, value(size_tag).unwrap_or(0)))
        {
            return Err(outside(tag, addr));
        }
    }
    for tag in [elf::DT_INIT, elf::DT_FINI] {
        if let Some(addr) = value(tag)
            && !loads.iter().any(|l| l.executable && l.in_file(addr, 1))
        {
            return Err(outside(tag, addr));
        }
    }
    if let Some(addr) = value(elf::DT_PLTGOT)
        && !loads.iter().any(|l| l.in_memory(addr, 8))
    {
        return Err(outside(elf::DT_PLTGOT, addr));
    }
    if let Some(strsz) = value(elf::DT_STRSZ) {
        for entry in dynamic {
            let tag = entry.d_tag(endian);
            let is_name = tag == u64::from(elf::DT_NEEDED) || tag == u64::from(elf::DT_SONAME);
            if is_name && entry.d_val(endian) >= strsz {
                return Err(corrupt("a DT_NEEDED or DT_SONAME name lies outside the string table"));
            }
        }
    }
    check_same_tables(file, value(elf::DT_SYMTAB), value(elf::DT_STRTAB))?;
    check_relocation_targets(file, &loads, value)
}

/// The symbol checks read `.dynsym`/`.dynstr` through the section headers; the dynamic loader reads
/// `DT_SYMTAB`/`DT_STRTAB`. They must be the same tables, or the checks would look at one and `dlopen` use another.
fn check_same_tables(file: &Elf<'_>, symtab: Option<u64>, strtab: Option<u64>) -> Result<(), Refusal> {
    let endian = file.endian();
    let sections = file.elf_section_table();
    let addr_of = |name: &[u8]| sections.section_by_name(endian, name).map(|(_, s)| s.sh_addr(endian));
    if symtab.is_some() && symtab != addr_of(b".dynsym") {
        return Err(corrupt("DT_SYMTAB is not the .dynsym section"));
    }
    if strtab.is_some() && strtab != addr_of(b".dynstr") {
        return Err(corrupt("DT_STRTAB is not the .dynstr section"));
    }
    Ok(())
}

/// Every relocation the dynamic loader applies (`DT_RELA`/`DT_RELASZ` and `DT_JMPREL`/`DT_PLTRELSZ`, read where
/// the loader reads them) writes inside the file's loaded memory and names an existing dynamic symbol.
fn check_relocation_targets(file: &Elf<'_>, loads: &[Load], value: impl Fn(u32) -> Option<u64>) -> Result<(), Refusal> {
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
        for entry in bytes.chunks(24) {
            let [offset, info] = [0, 8].map(|at| {
                let mut word = [0u8; 8];
                word.copy_from_slice(entry.get(at..at + 8).unwrap_or(&[0; 8]));
                u64::from_le_bytes(word)
            });
            if entry.len() != 24 {
                return Err(corrupt("a relocation table's size is not a multiple of its entry size"));
            }
            if !loads.iter().any(|l| l.in_memory(offset, 8)) {
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

/// The file bytes backing `addr..addr+size` of the loaded image.
fn file_bytes<'a>(file: &Elf<'a>, loads: &[Load], addr: u64, size: u64) -> Option<&'a [u8]> {
    let load = loads.iter().find(|l| l.in_file(addr, size))?;
    let start = usize::try_from(load.offset.checked_add(addr - load.vaddr)?).ok()?;
    let end = start.checked_add(usize::try_from(size).ok()?)?;
    file.data().get(start..end)
}
