//! Recycled memory for jobs.
//!
//! A job's block is allocated by the submitting thread and usually freed by a worker, the
//! worst pattern for general-purpose allocators (glibc's frees land in the freeing
//! thread's cache while the submitter keeps missing in its own; the spawn benchmark spent
//! a third of its time in `malloc`/`free`). Small job blocks are recycled instead through
//! per-thread magazines and a small shared depot, the scheme of Bonwick's slab allocator:
//!
//! - each thread keeps up to [`MAGAZINE`] free blocks; allocating pops one, freeing
//!   pushes one, with no synchronisation;
//! - a thread whose magazine is full hands it to the depot, and a thread whose magazine is
//!   empty takes a full one from it: one lock per [`MAGAZINE`] jobs;
//! - the depot keeps at most [`DEPOT`] magazines and frees the rest, so idle memory stays
//!   bounded (`DEPOT × MAGAZINE × BLOCK` bytes, plus one magazine per thread).
//!
//! Larger jobs (closures capturing more than about 40 bytes) use the global allocator.

use std::alloc::{self, Layout};
use std::cell::RefCell;
use std::ptr::NonNull;

use crate::sync::{lock, Mutex};

/// The size of a recycled block; jobs whose layout fits use one.
pub(crate) const BLOCK: usize = 128;
const BLOCK_ALIGN: usize = 16;
/// Blocks per magazine.
const MAGAZINE: usize = 64;
/// Full magazines the depot keeps.
const DEPOT: usize = 32;

fn block_layout() -> Layout {
    // A valid layout: non-zero size, power-of-two alignment.
    Layout::from_size_align(BLOCK, BLOCK_ALIGN).expect("block layout")
}

/// Whether a job of `layout` uses a recycled block.
#[inline]
fn fits(layout: Layout) -> bool {
    layout.size() <= BLOCK && layout.align() <= BLOCK_ALIGN
}

/// A free block.
struct Block(NonNull<u8>);

// SAFETY: a free block is plain memory owned by whoever holds the `Block`.
unsafe impl Send for Block {}

struct Magazine {
    blocks: Vec<Block>,
}

impl Drop for Magazine {
    fn drop(&mut self) {
        let full = std::mem::take(&mut self.blocks);
        give_back(full);
    }
}

/// Hands a magazine to the depot, or frees its blocks when the depot is full.
fn give_back(blocks: Vec<Block>) {
    if blocks.is_empty() {
        return;
    }
    let mut depot = lock(&DEPOT_MAGAZINES);
    if depot.len() < DEPOT {
        depot.push(blocks);
        return;
    }
    drop(depot);
    for block in blocks {
        // SAFETY: every block was allocated with `block_layout()` and is free.
        unsafe { alloc::dealloc(block.0.as_ptr(), block_layout()) };
    }
}

static DEPOT_MAGAZINES: Mutex<Vec<Vec<Block>>> = Mutex::new(Vec::new());

/// Holds the depot across a `fork()` (see `process`).
#[cfg_attr(not(feature = "capi"), allow(dead_code))]
pub(crate) fn lock_depot_for_fork() -> Box<dyn std::any::Any> {
    Box::new(lock(&DEPOT_MAGAZINES))
}

thread_local! {
    static CACHE: RefCell<Magazine> = const {
        RefCell::new(Magazine { blocks: Vec::new() })
    };
}

/// Allocates memory for a job of `layout`.
#[inline]
pub(crate) fn allocate(layout: Layout) -> NonNull<u8> {
    if fits(layout) {
        let cached = CACHE
            .try_with(|cache| {
                let mut cache = cache.borrow_mut();
                if let Some(block) = cache.blocks.pop() {
                    return Some(block.0);
                }
                let full = lock(&DEPOT_MAGAZINES).pop()?;
                cache.blocks = full;
                cache.blocks.pop().map(|block| block.0)
            })
            .ok()
            .flatten();
        if let Some(block) = cached {
            return block;
        }
        return allocate_global(block_layout());
    }
    allocate_global(layout)
}

fn allocate_global(layout: Layout) -> NonNull<u8> {
    // SAFETY: job layouts have a non-zero size (a job has a header).
    let pointer = unsafe { alloc::alloc(layout) };
    NonNull::new(pointer).unwrap_or_else(|| alloc::handle_alloc_error(layout))
}

/// Frees memory obtained from [`allocate`] with the same `layout`.
///
/// # Safety
///
/// `pointer` came from `allocate(layout)` and is not used again.
#[inline]
pub(crate) unsafe fn deallocate(pointer: NonNull<u8>, layout: Layout) {
    if !fits(layout) {
        // SAFETY: large jobs come from the global allocator with this layout.
        unsafe { alloc::dealloc(pointer.as_ptr(), layout) };
        return;
    }
    let kept = CACHE.try_with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.blocks.len() == MAGAZINE {
            let full = std::mem::replace(&mut cache.blocks, Vec::with_capacity(MAGAZINE));
            give_back(full);
        } else if cache.blocks.capacity() == 0 {
            cache.blocks.reserve_exact(MAGAZINE);
        }
        cache.blocks.push(Block(pointer));
    });
    if kept.is_err() {
        // The thread is exiting and its cache is gone.
        // SAFETY: small jobs live in blocks of `block_layout()`.
        unsafe { alloc::dealloc(pointer.as_ptr(), block_layout()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_reused_and_large_layouts_bypass() {
        let small = Layout::from_size_align(100, 8).unwrap();
        let a = allocate(small);
        // SAFETY: allocated just above with the same layout.
        unsafe { deallocate(a, small) };
        let b = allocate(small);
        assert_eq!(a, b, "a freed block is the next one handed out");
        // SAFETY: as above.
        unsafe { deallocate(b, small) };

        let large = Layout::from_size_align(4096, 64).unwrap();
        let c = allocate(large);
        assert_eq!(c.as_ptr() as usize % 64, 0);
        // SAFETY: as above.
        unsafe { deallocate(c, large) };
    }

    #[test]
    fn magazines_move_between_threads() {
        let small = Layout::from_size_align(64, 16).unwrap();
        let freed: Vec<usize> = std::thread::spawn(move || {
            (0..MAGAZINE * 3)
                .map(|_| allocate(small).as_ptr() as usize)
                .collect()
        })
        .join()
        .unwrap();
        let freeing = freed.clone();
        std::thread::spawn(move || {
            for block in freeing {
                // SAFETY: allocated above with `small`, freed once here.
                unsafe { deallocate(NonNull::new(block as *mut u8).unwrap(), small) };
            }
        })
        .join()
        .unwrap();
        // A third thread, whose cache starts empty, gets the blocks the second one freed
        // (its full magazines went to the depot).
        let reused = std::thread::spawn(move || {
            let block = allocate(small);
            let address = block.as_ptr() as usize;
            // SAFETY: allocated just above.
            unsafe { deallocate(block, small) };
            address
        })
        .join()
        .unwrap();
        assert!(freed.contains(&reused));
    }
}
