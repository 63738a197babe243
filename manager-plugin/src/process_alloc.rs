//! The allocator every generated plugin installs as its `#[global_allocator]`: it forwards to the process-wide
//! `malloc`/`free` family, looked up at run time in the process's global scope (`dlsym(RTLD_DEFAULT, …)`), never
//! to a copy a dependency may have linked into the plugin (e.g. `tikv-jemallocator` with
//! `unprefixed_malloc_on_supported_platforms`). Boxes and vectors cross the plugin boundary and are freed by the
//! other side, which is sound only when both sides use the same heap; the manager uses the system allocator.
//!
//! An author's own `#[global_allocator]` conflicts with this one at build time, with a message that says why.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicPtr, Ordering};

unsafe extern "C" {
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
}

type MallocFn = unsafe extern "C" fn(usize) -> *mut c_void;
type FreeFn = unsafe extern "C" fn(*mut c_void);
type ReallocFn = unsafe extern "C" fn(*mut c_void, usize) -> *mut c_void;
type MemalignFn = unsafe extern "C" fn(*mut *mut c_void, usize, usize) -> c_int;

static MALLOC: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
static FREE: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
static REALLOC: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
static POSIX_MEMALIGN: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());

/// The alignment `malloc` guarantees on this platform.
const MIN_ALIGN: usize = 16;

/// The process-wide function `name` (NUL-terminated), cached in `slot`; null if the process has none.
fn resolve(slot: &AtomicPtr<c_void>, name: &[u8]) -> *mut c_void {
    let cached = slot.load(Ordering::Acquire);
    if !cached.is_null() {
        return cached;
    }
    // SAFETY: RTLD_DEFAULT (null) searches the process's global scope; `name` is NUL-terminated.
    let found = unsafe { dlsym(std::ptr::null_mut(), name.as_ptr().cast()) };
    slot.store(found, Ordering::Release);
    found
}

/// Forwards every allocation to the process-wide `malloc`/`free`/`realloc`/`posix_memalign`.
pub struct ProcessAllocator;

unsafe impl GlobalAlloc for ProcessAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= MIN_ALIGN && layout.align() <= layout.size() {
            let f = resolve(&MALLOC, b"malloc\0");
            if f.is_null() {
                return std::ptr::null_mut();
            }
            // SAFETY: `f` is the process's `malloc`.
            unsafe { std::mem::transmute::<*mut c_void, MallocFn>(f)(layout.size()).cast() }
        } else {
            let f = resolve(&POSIX_MEMALIGN, b"posix_memalign\0");
            if f.is_null() {
                return std::ptr::null_mut();
            }
            let mut out = std::ptr::null_mut();
            let align = layout.align().max(std::mem::size_of::<usize>());
            // SAFETY: `f` is the process's `posix_memalign`; `align` is a power of two multiple of the pointer size.
            let rc = unsafe { std::mem::transmute::<*mut c_void, MemalignFn>(f)(&mut out, align, layout.size()) };
            if rc == 0 { out.cast() } else { std::ptr::null_mut() }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        let f = resolve(&FREE, b"free\0");
        if !f.is_null() {
            // SAFETY: `ptr` came from this allocator, i.e. from the process's malloc family.
            unsafe { std::mem::transmute::<*mut c_void, FreeFn>(f)(ptr.cast()) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= MIN_ALIGN && layout.align() <= new_size {
            let f = resolve(&REALLOC, b"realloc\0");
            if f.is_null() {
                return std::ptr::null_mut();
            }
            // SAFETY: `ptr` came from the process's malloc family; `f` is its `realloc`.
            unsafe { std::mem::transmute::<*mut c_void, ReallocFn>(f)(ptr.cast(), new_size).cast() }
        } else {
            // SAFETY: the layout is valid (same alignment, non-zero size asked by the caller).
            let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
            // SAFETY: forwarding GlobalAlloc's own contract.
            let new = unsafe { self.alloc(new_layout) };
            if !new.is_null() {
                // SAFETY: both blocks are valid for the smaller size and do not overlap.
                unsafe {
                    std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                    self.dealloc(ptr, layout);
                }
            }
            new
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_from_the_process_allocator_is_freed_by_the_system_allocator_and_back() {
        let a = ProcessAllocator;
        for (size, align) in [(1, 1), (24, 8), (100, 64), (4096, 4096)] {
            let layout = Layout::from_size_align(size, align).unwrap();
            // SAFETY: non-zero sizes, valid layouts; each block freed once.
            unsafe {
                let p = a.alloc(layout);
                assert!(!p.is_null() && (p as usize).is_multiple_of(align));
                let p = a.realloc(p, layout, size * 3);
                assert!(!p.is_null() && (p as usize).is_multiple_of(align));
                std::alloc::System.dealloc(p, Layout::from_size_align(size * 3, align).unwrap());
                let q = std::alloc::System.alloc(layout);
                a.dealloc(q, layout);
            }
        }
    }
}
