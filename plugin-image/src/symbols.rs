//! Checks of a plugin's dynamic symbols, from its bytes: the entry point the host will call must be a defined
//! function inside an executable segment (`dlsym` returns NULL without an error for an `SHN_ABS` symbol of
//! value 0, and any other value would be a jump into data), and the plugin must not define its own allocator
//! (its `malloc`/`free` would bind to its own heap while the host frees plugin memory on the process heap).

use object::elf;
use object::read::elf::Sym;

use crate::elf::{Elf, Loads};
use crate::refusal::Refusal;

/// Allocator entry points a plugin must not define: memory crosses the boundary and is freed by the other side,
/// which is sound only with one process-wide allocator.
pub const ALLOCATOR_SYMBOLS: &[&str] = &[
    "malloc",
    "free",
    "calloc",
    "realloc",
    "posix_memalign",
    "aligned_alloc",
    "memalign",
    "valloc",
    "pvalloc",
    "malloc_usable_size",
];

/// Checks that `name` is a defined, global function symbol inside an executable load segment.
pub fn check_entry_point(file: &Elf<'_>, name: &str) -> Result<(), Refusal> {
    let endian = file.endian();
    let table = file.elf_dynamic_symbol_table();
    let refuse = |reason: String| Refusal::Symbol { symbol: name.to_string(), reason };
    let mut named = table.iter().filter(|s| table.symbol_name(endian, s).is_ok_and(|n| n == name.as_bytes()));
    let symbol = named.next().ok_or_else(|| refuse("not exported".into()))?;
    // `dlsym` finds a name through the hash table, these checks through the symbol table: with one entry of that
    // name both find the same.
    if named.next().is_some() {
        return Err(refuse("the dynamic symbol table names it more than once".into()));
    }
    let shndx = symbol.st_shndx(endian);
    if shndx == elf::SHN_UNDEF || shndx >= elf::SHN_LORESERVE {
        return Err(refuse(format!("not defined in the file (section index {shndx:#x})")));
    }
    if symbol.st_type() != elf::STT_FUNC {
        return Err(refuse(format!("not a function (symbol type {})", symbol.st_type())));
    }
    if !matches!(symbol.st_bind(), elf::STB_GLOBAL | elf::STB_WEAK) {
        return Err(refuse("not a global symbol".into()));
    }
    let (value, size) = (symbol.st_value(endian), symbol.st_size(endian).max(1));
    if !Loads::of(file)?.in_file(value, size).is_some_and(|l| l.executable) {
        return Err(refuse(format!("address {value:#x} is not inside an executable segment of the file")));
    }
    Ok(())
}

/// The allocator symbols ([`ALLOCATOR_SYMBOLS`]) the file defines and exports, in that list's order.
pub fn own_allocator_symbols(file: &Elf<'_>) -> Vec<String> {
    let endian = file.endian();
    let table = file.elf_dynamic_symbol_table();
    let defined: Vec<&[u8]> = table
        .iter()
        .filter(|s| s.st_shndx(endian) != elf::SHN_UNDEF && matches!(s.st_bind(), elf::STB_GLOBAL | elf::STB_WEAK))
        .filter_map(|s| table.symbol_name(endian, s).ok())
        .collect();
    ALLOCATOR_SYMBOLS.iter().filter(|name| defined.contains(&name.as_bytes())).map(|s| s.to_string()).collect()
}
