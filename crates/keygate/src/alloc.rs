//! The global allocator: mimalloc, whose per-thread free lists serve every size class, where
//! glibc's fast path stops at 1 KiB and the per-request read buffers (8 KiB) would take its slow
//! path with consolidation (`bench/RESULTS.md`).
//!
//! Called directly rather than through the `mimalloc` crate, which routes every allocation
//! through `mi_malloc_aligned`: for blocks over 1 KiB that takes mimalloc's generic
//! over-allocating path, several times per request, even when the alignment asked for is one
//! every block already has. So only larger alignments use the `_aligned` functions.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys::{
    mi_free, mi_malloc, mi_malloc_aligned, mi_realloc, mi_realloc_aligned, mi_zalloc,
    mi_zalloc_aligned,
};

/// Every mimalloc block is aligned to at least a machine word.
const GUARANTEED_ALIGN: usize = std::mem::size_of::<usize>();

/// mimalloc as a Rust [`GlobalAlloc`].
pub struct MiMalloc;

// SAFETY: each method forwards to the mimalloc function with the same contract (a null result
// on failure, blocks at least `layout.align()`-aligned: word alignment is guaranteed for every
// block, larger alignments go through the `_aligned` variants); `mi_free` accepts blocks from
// any of them.
unsafe impl GlobalAlloc for MiMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= GUARANTEED_ALIGN {
            mi_malloc(layout.size()).cast()
        } else {
            mi_malloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= GUARANTEED_ALIGN {
            mi_zalloc(layout.size()).cast()
        } else {
            mi_zalloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        mi_free(ptr.cast::<c_void>());
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= GUARANTEED_ALIGN {
            mi_realloc(ptr.cast::<c_void>(), new_size).cast()
        } else {
            mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks honour every alignment asked for, across sizes that take mimalloc's small and
    /// large paths, and keep their contents through a reallocation.
    #[test]
    fn alignment_and_contents() {
        for align in [1, 2, 8, 16, 64, 128, 4096] {
            for size in [1, 7, 24, 100, 1025, 8192, 70_000] {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: non-zero size; each block is freed once with its own layout.
                unsafe {
                    let p = MiMalloc.alloc(layout);
                    assert!(
                        !p.is_null() && (p as usize).is_multiple_of(align),
                        "{size}/{align}"
                    );
                    p.write_bytes(0xab, size);
                    let q = MiMalloc.realloc(p, layout, size * 3);
                    assert!(
                        !q.is_null() && (q as usize).is_multiple_of(align),
                        "{size}/{align}"
                    );
                    assert!((0..size).all(|i| *q.add(i) == 0xab));
                    MiMalloc.dealloc(q, Layout::from_size_align(size * 3, align).unwrap());
                    let z = MiMalloc.alloc_zeroed(layout);
                    assert!(
                        (z as usize).is_multiple_of(align) && (0..size).all(|i| *z.add(i) == 0)
                    );
                    MiMalloc.dealloc(z, layout);
                }
            }
        }
    }
}
