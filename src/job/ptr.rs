//! A reference-counted pointer to a job: the count lives in the job's header (one word,
//! no separate weak count) and the memory comes from the recycler of `job::alloc`.

use std::alloc::Layout;
use std::ops::Deref;
use std::ptr::{self, NonNull};

use super::alloc;
use crate::sync::atomic::{AtomicU32, Ordering};

/// Leak accounting for tests (`crate::debug_live_jobs`): off until a test asks, and then
/// only a relaxed load of a flag nobody writes per allocation and per free.
static COUNTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// Jobs allocated since counting began and not yet freed.
static LIVE: std::sync::atomic::AtomicIsize = std::sync::atomic::AtomicIsize::new(0);

/// Turns the counting on (it stays on) and returns the jobs alive since then.
pub(crate) fn live_jobs() -> isize {
    COUNTING.store(true, std::sync::atomic::Ordering::SeqCst);
    LIVE.load(std::sync::atomic::Ordering::SeqCst)
}

#[inline]
fn count(delta: isize) {
    if COUNTING.load(std::sync::atomic::Ordering::Relaxed) {
        LIVE.fetch_add(delta, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A job that carries its own reference count.
pub(crate) trait RefCounted {
    /// The count of `JobPtr`s (and raw references made with `into_raw`) to this job.
    fn ref_count(&self) -> &AtomicU32;
}

/// A shared reference to a job, like `Arc` but with the count in the job.
///
/// # Memory ordering
///
/// As `Arc`: increments are `Relaxed` (a new reference is made from an existing one), the
/// decrement is `Release`, and the thread that takes the count to zero issues an `Acquire`
/// fence before destroying the job, so every use through other references happens before.
pub(crate) struct JobPtr<J: ?Sized + RefCounted> {
    pointer: NonNull<J>,
}

// SAFETY: a `JobPtr` gives shared access to `J` from any thread and may drop it on any
// thread, exactly like `Arc<J>`, which is `Send + Sync` when `J: Send + Sync`.
unsafe impl<J: ?Sized + RefCounted + Send + Sync> Send for JobPtr<J> {}
// SAFETY: as above.
unsafe impl<J: ?Sized + RefCounted + Send + Sync> Sync for JobPtr<J> {}

impl<J: RefCounted> JobPtr<J> {
    /// Moves `job` into recycled memory. Its count must start at 1: this reference.
    pub(crate) fn new(job: J) -> Self {
        debug_assert_eq!(job.ref_count().load(Ordering::Relaxed), 1);
        let pointer = alloc::allocate(Layout::new::<J>()).cast::<J>();
        // SAFETY: the block is fresh, large and aligned enough for `J`.
        unsafe { pointer.as_ptr().write(job) };
        count(1);
        JobPtr { pointer }
    }
}

impl<J: ?Sized + RefCounted> JobPtr<J> {
    /// Gives up this reference without decrementing: `from_raw` takes it back.
    pub(crate) fn into_raw(self) -> NonNull<J> {
        let pointer = self.pointer;
        std::mem::forget(self);
        pointer
    }

    /// # Safety
    ///
    /// `pointer` comes from `into_raw` (possibly converted by `map`), and that reference
    /// is taken back once.
    pub(crate) unsafe fn from_raw(pointer: NonNull<J>) -> Self {
        JobPtr { pointer }
    }

    /// Converts the pointer (an unsizing coercion to a trait object), keeping the
    /// reference.
    ///
    /// # Safety
    ///
    /// `convert` returns a pointer to the same object.
    pub(crate) unsafe fn map<U: ?Sized + RefCounted>(
        self,
        convert: impl FnOnce(NonNull<J>) -> NonNull<U>,
    ) -> JobPtr<U> {
        JobPtr {
            pointer: convert(self.into_raw()),
        }
    }
}

impl<J: ?Sized + RefCounted> Deref for JobPtr<J> {
    type Target = J;

    #[inline]
    fn deref(&self) -> &J {
        // SAFETY: the job lives while a reference (this one) exists.
        unsafe { self.pointer.as_ref() }
    }
}

impl<J: ?Sized + RefCounted> Clone for JobPtr<J> {
    #[inline]
    fn clone(&self) -> Self {
        let old = self.ref_count().fetch_add(1, Ordering::Relaxed);
        // As `Arc`: a count this high means leaked references; wrapping would free the job
        // under live references.
        if old > u32::MAX / 2 {
            std::process::abort();
        }
        JobPtr {
            pointer: self.pointer,
        }
    }
}

impl<J: ?Sized + RefCounted> Drop for JobPtr<J> {
    #[inline]
    fn drop(&mut self) {
        if self.ref_count().fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        // ThreadSanitizer ignores standalone fences: under it, an acquire load of the count
        // (as std's `Arc` does) makes the same edge visible (`make sanitize` sets the cfg).
        #[cfg(not(jobrunner_sanitize_thread))]
        crate::sync::atomic::fence(Ordering::Acquire);
        #[cfg(jobrunner_sanitize_thread)]
        self.ref_count().load(Ordering::Acquire);
        // SAFETY: we held the last reference: nobody else can reach the job. Its layout is
        // read before it is dropped; the memory came from `alloc::allocate` with it.
        unsafe {
            let layout = Layout::for_value(self.pointer.as_ref());
            ptr::drop_in_place(self.pointer.as_ptr());
            alloc::deallocate(self.pointer.cast(), layout);
        }
        count(-1);
    }
}
