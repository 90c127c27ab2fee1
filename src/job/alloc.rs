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
//!   bounded (`DEPOT × MAGAZINE` blocks per class, plus one magazine per thread).
//!
//! There are two block classes: [`SMALLEST`] bytes, which a job whose closure captures
//! nothing fits (the common case, and what a million queued jobs are made of), and
//! [`LARGEST`] bytes (a C job, or a closure capturing up to about 56 bytes). Each is 8
//! bytes short of a multiple of 16, the size of the chunk glibc's `malloc` serves it
//! from (a chunk carries one 8-byte size word; a 128-byte request takes a 144-byte
//! chunk). Larger jobs use the global allocator.

use std::alloc::{self, Layout};
use std::cell::RefCell;
use std::ptr::NonNull;

use crate::sync::{lock, Mutex};

/// The block classes, smallest first.
const CLASSES: [usize; 2] = [SMALLEST, LARGEST];
/// The smaller block: a `HeapJob` whose closure and output take at most 24 bytes.
pub(crate) const SMALLEST: usize = 88;
/// The larger block.
const LARGEST: usize = 120;
const BLOCK_ALIGN: usize = 16;
/// Blocks per magazine.
const MAGAZINE: usize = 64;
/// Full magazines the depot of each class keeps.
const DEPOT: usize = 32;

/// The class of a block size (an index into [`CLASSES`]).
#[derive(Clone, Copy)]
struct Class(usize);

impl Class {
    /// The class of a job of `layout`, if it uses recycled blocks. Job layouts are
    /// constants, so this folds away where the job's type is known.
    #[inline]
    fn of(layout: Layout) -> Option<Class> {
        if layout.align() > BLOCK_ALIGN {
            return None;
        }
        CLASSES
            .iter()
            .position(|&size| layout.size() <= size)
            .map(Class)
    }

    fn layout(self) -> Layout {
        // A valid layout: non-zero size, power-of-two alignment.
        Layout::from_size_align(CLASSES[self.0], BLOCK_ALIGN).expect("block layout")
    }
}

/// A free block.
struct Block(NonNull<u8>);

// SAFETY: a free block is plain memory owned by whoever holds the `Block`.
unsafe impl Send for Block {}

/// A thread's free blocks of one class.
struct Magazine {
    class: Class,
    blocks: Vec<Block>,
}

impl Drop for Magazine {
    fn drop(&mut self) {
        let full = std::mem::take(&mut self.blocks);
        give_back(self.class, full);
    }
}

/// Hands a magazine to its class's depot, or frees its blocks when the depot is full.
fn give_back(class: Class, blocks: Vec<Block>) {
    if blocks.is_empty() {
        return;
    }
    let mut depot = lock(&DEPOTS[class.0]);
    if depot.len() < DEPOT {
        depot.push(blocks);
        return;
    }
    drop(depot);
    for block in blocks {
        // SAFETY: every block of the class was allocated with its layout and is free.
        unsafe { alloc::dealloc(block.0.as_ptr(), class.layout()) };
    }
}

/// The full magazines of each class.
static DEPOTS: [Mutex<Vec<Vec<Block>>>; CLASSES.len()] =
    [Mutex::new(Vec::new()), Mutex::new(Vec::new())];

/// Holds the depots across a `fork()` (see `process`).
#[cfg_attr(not(feature = "capi"), allow(dead_code))]
pub(crate) fn lock_depot_for_fork() -> Box<dyn std::any::Any> {
    Box::new(DEPOTS.each_ref().map(lock))
}

thread_local! {
    static CACHE: [RefCell<Magazine>; CLASSES.len()] = const {
        [
            RefCell::new(Magazine { class: Class(0), blocks: Vec::new() }),
            RefCell::new(Magazine { class: Class(1), blocks: Vec::new() }),
        ]
    };
}

/// Allocates memory for a job of `layout`.
#[inline]
pub(crate) fn allocate(layout: Layout) -> NonNull<u8> {
    let Some(class) = Class::of(layout) else {
        return allocate_global(layout);
    };
    let cached = CACHE
        .try_with(|cache| {
            let mut cache = cache[class.0].borrow_mut();
            if let Some(block) = cache.blocks.pop() {
                return Some(block.0);
            }
            let full = lock(&DEPOTS[class.0]).pop()?;
            cache.blocks = full;
            cache.blocks.pop().map(|block| block.0)
        })
        .ok()
        .flatten();
    match cached {
        Some(block) => block,
        None => allocate_global(class.layout()),
    }
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
    let Some(class) = Class::of(layout) else {
        // SAFETY: large jobs come from the global allocator with this layout.
        unsafe { alloc::dealloc(pointer.as_ptr(), layout) };
        return;
    };
    let kept = CACHE.try_with(|cache| {
        let mut cache = cache[class.0].borrow_mut();
        if cache.blocks.len() == MAGAZINE {
            let full = std::mem::replace(&mut cache.blocks, Vec::with_capacity(MAGAZINE));
            give_back(class, full);
        } else if cache.blocks.capacity() == 0 {
            cache.blocks.reserve_exact(MAGAZINE);
        }
        cache.blocks.push(Block(pointer));
    });
    if kept.is_err() {
        // The thread is exiting and its cache is gone.
        // SAFETY: the blocks of a class are allocated with its layout.
        unsafe { alloc::dealloc(pointer.as_ptr(), class.layout()) };
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
