//! The C ABI: the `jr_*` functions and types of `include/jobrunner.h`.
//!
//! A thin layer over the Rust API, one file per concept. Every exported function
//! validates its arguments, runs inside a panic boundary (`boundary`), and reports
//! through a [`jr_status`]. Handles are boxes whose first word is a type tag, checked on
//! entry: NULL or a handle of another type gives `JR_E_INVALID_ARG`, never a crash (a
//! freed or forged pointer is still undefined behaviour, as in any C library). A handle
//! made before a `fork()` carries the parent's generation and gives `JR_E_FORKED` in the
//! child (see [`fork`]).
//!
//! Compiled only with the default-on `capi` feature; a Rust dependent that does not need
//! the C layer turns it off (`default-features = false`).

#![allow(non_camel_case_types)]
// Each `extern "C"` function documents its pointer contract in its doc comment (the
// header's); the raw pointers are checked for NULL and for their type tag on entry.
#![allow(clippy::missing_safety_doc, clippy::not_unsafe_ptr_arg_deref)]

// The header lists the modules' items in this order (cbindgen follows the source):
// statuses, then each handle type from the pool down.
pub mod status;

pub mod pool;

pub mod job;

mod ctx;

pub mod token;

pub mod sem;

pub mod chan;

pub mod stream;

pub mod select;

pub mod group;

pub mod pipeline;

pub mod fork;
mod signal;

pub use ctx::*;

use std::alloc::Layout;
use std::ffi::{c_char, CStr};
use std::mem::size_of;
use std::ptr::NonNull;

use crate::job::alloc;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

pub use self::status::jr_status;

/// The first words of every handle: a tag saying which type it is, and the fork
/// generation it was made in.
#[repr(C)]
pub(crate) struct Handle<T> {
    magic: u64,
    generation: u64,
    pub(crate) value: T,
}

/// A type that lives behind a C handle, with its tag.
pub(crate) trait Kind: Sized {
    /// Distinct for each handle type, unlikely in other memory.
    const MAGIC: u64;
    /// The name C knows the handle by (`"jr_pool"`).
    const NAME: &'static str;
    /// The public opaque type C sees.
    type Opaque;
}

/// The name of the handle type tagged `magic`, if it is one of ours.
fn kind_name(magic: u64) -> Option<&'static str> {
    fn entry<T: Kind>() -> (u64, &'static str) {
        (T::MAGIC, T::NAME)
    }
    [
        entry::<pool::PoolHandle>(),
        entry::<job::JobHandleC>(),
        entry::<ctx::CtxHandle>(),
        entry::<token::TokenHandle>(),
        entry::<sem::SemHandle>(),
        entry::<group::GroupHandle>(),
        entry::<chan::ChanHandle>(),
        entry::<pipeline::PipelineHandle>(),
    ]
    .into_iter()
    .find(|(m, _)| *m == magic)
    .map(|(_, name)| name)
}

/// A handle argument that did not pass the checks: what was expected, what was found.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BadHandle {
    expected: &'static str,
    found: Found,
}

#[derive(Debug, Clone, Copy)]
enum Found {
    Null,
    /// Not a handle of the expected type: this tag.
    Tag(u64),
    /// A handle from the parent of a `fork()`.
    Forked,
}

impl BadHandle {
    /// The status, without recording a detail (for the async-signal-safe functions).
    pub(crate) fn status(self) -> jr_status {
        match self.found {
            Found::Forked => jr_status::JR_E_FORKED,
            Found::Null | Found::Tag(_) => jr_status::JR_E_INVALID_ARG,
        }
    }
}

/// `?` on a handle check: the status, with its detail recorded.
impl From<BadHandle> for jr_status {
    fn from(bad: BadHandle) -> Self {
        let expected = bad.expected;
        let status = bad.status();
        match bad.found {
            Found::Null => status::note(status, format_args!("a NULL {expected} handle")),
            Found::Tag(DEAD) => status::note(
                status,
                format_args!("not a live {expected} handle: a freed handle"),
            ),
            Found::Tag(tag) => match kind_name(tag) {
                Some(other) => status::note(
                    status,
                    format_args!("not a live {expected} handle: a {other} handle"),
                ),
                None => status::note(
                    status,
                    format_args!("not a {expected} handle (not a jobrunner handle at all)"),
                ),
            },
            Found::Forked => status::note(
                status,
                format_args!(
                    "a {expected} handle made before fork() in the parent process: \
                     make a new one in the child"
                ),
            ),
        }
    }
}

/// The tag a handle gets when it is freed, so that a use after free is more often caught.
const DEAD: u64 = 0xdead_dead_dead_dead;

impl<T> Handle<T> {
    /// A handle with the given tag, wherever the caller keeps it (a job's context lives
    /// on the stack of the call it is valid for).
    pub(crate) fn with_magic(magic: u64, value: T) -> Self {
        Handle {
            magic,
            generation: fork::generation(),
            value,
        }
    }

    /// Ends a handle kept outside a box: a pointer still held to it no longer passes the
    /// tag check (as long as its memory is not reused).
    pub(crate) fn retire(mut self) {
        self.magic = DEAD;
        // Written before the value is dropped, where a racing reader could still look.
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
        drop(self);
    }
}

impl<T: Kind> Handle<T> {
    /// A new handle, boxed.
    pub(crate) fn boxed(value: T) -> Box<Self> {
        Box::new(Handle::with_magic(T::MAGIC, value))
    }

    /// A new handle, as the opaque pointer C holds. Its memory comes from the job
    /// allocator (`job::alloc`), whose per-thread magazines serve a job's handle too: a
    /// handle made by a submitting thread and freed by another (a binding frees job
    /// handles where it sees them end, often on a worker) made glibc's `free` take the
    /// submitting thread's arena lock, which its `malloc` then waited for.
    pub(crate) fn into_raw(value: T) -> *mut T::Opaque {
        let handle = alloc::allocate(Layout::new::<Self>()).cast::<Self>();
        // SAFETY: fresh memory of `Self`'s layout.
        unsafe { handle.as_ptr().write(Handle::with_magic(T::MAGIC, value)) };
        handle.as_ptr().cast()
    }

    /// The handle behind `ptr`, if it is a live handle of this type from this process.
    ///
    /// # Safety
    ///
    /// `ptr` is NULL or points at readable memory of at least two words (a handle of any
    /// type qualifies).
    pub(crate) unsafe fn from_ptr<'a>(ptr: *const T::Opaque) -> Result<&'a Handle<T>, BadHandle> {
        let bad = |found| BadHandle {
            expected: T::NAME,
            found,
        };
        if ptr.is_null() {
            return Err(bad(Found::Null));
        }
        let handle = ptr.cast::<Handle<T>>();
        // SAFETY: the caller promises two readable words; the tag is read before anything
        // else, and only a matching tag lets us treat the memory as a `Handle<T>`.
        let magic = unsafe { std::ptr::addr_of!((*handle).magic).read() };
        if magic != T::MAGIC {
            return Err(bad(Found::Tag(magic)));
        }
        // SAFETY: the tag says it is a `Handle<T>`, live (freeing retags it).
        let handle = unsafe { &*handle };
        if handle.generation != fork::generation() {
            return Err(bad(Found::Forked));
        }
        Ok(handle)
    }

    /// Takes back the handle behind `ptr` (made by [`Handle::into_raw`]), frees its
    /// memory and returns its value, for the caller to drop: `Ok(None)` for NULL.
    ///
    /// # Safety
    ///
    /// As [`Handle::from_ptr`], and no other thread uses the handle any more.
    pub(crate) unsafe fn free(ptr: *mut T::Opaque) -> Result<Option<T>, BadHandle> {
        if ptr.is_null() {
            return Ok(None);
        }
        // SAFETY: the caller's contract.
        unsafe { Self::from_ptr(ptr) }?;
        let handle = ptr.cast::<Handle<T>>();
        // SAFETY: a live `Handle<T>` made by `into_raw`, now ours alone: its value moves
        // out, the tag says it is dead (until the memory is reused), and the memory goes
        // back to the allocator it came from, with its layout.
        unsafe {
            let value = std::ptr::addr_of!((*handle).value).read();
            std::ptr::addr_of_mut!((*handle).magic).write(DEAD);
            alloc::deallocate(NonNull::new_unchecked(handle.cast()), Layout::new::<Self>());
            Ok(Some(value))
        }
    }
}

/// Runs an exported function's body, turning a panic into `fallback` (a bug of ours:
/// panics never cross the C boundary).
pub(crate) fn boundary<R>(fallback: R, body: impl FnOnce() -> R) -> R {
    std::panic::catch_unwind(AssertUnwindSafe(body)).unwrap_or(fallback)
}

/// [`boundary`] for a function returning a status: `Err(status)` and panics both become
/// the status returned.
/// A failure records its detail for `jr_last_error_message` (the status's text when the
/// body gave none).
pub(crate) fn status(body: impl FnOnce() -> Result<(), jr_status>) -> jr_status {
    status::begin_call();
    let result =
        boundary(Err(jr_status::JR_E_INTERNAL), body).map_or_else(|s| s, |()| jr_status::JR_OK);
    status::end_call(result);
    result
}

/// Writes `value` through an out-pointer checked for NULL.
///
/// # Safety
///
/// `out` is NULL or valid for a write of `T`.
pub(crate) unsafe fn write_out<T>(out: *mut T, value: T) -> Result<(), jr_status> {
    if out.is_null() {
        return Err(status::invalid(format_args!("an out-parameter is NULL")));
    }
    // SAFETY: non-null, and the caller promises it is writable.
    unsafe { out.write(value) };
    Ok(())
}

/// A C string argument, or `None` for NULL.
///
/// # Safety
///
/// `s` is NULL or a NUL-terminated string.
pub(crate) unsafe fn opt_str(s: *const c_char) -> Option<String> {
    if s.is_null() {
        return None;
    }
    // SAFETY: the caller promises a NUL-terminated string.
    Some(unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned())
}

/// A timeout argument in nanoseconds: `None` (wait forever) when negative.
pub(crate) fn timeout_of(timeout_ns: i64) -> Option<Duration> {
    u64::try_from(timeout_ns).ok().map(Duration::from_nanos)
}

/// An options struct led by a `size` field, as written by a caller built against this or
/// another version of the header.
///
/// # Safety
///
/// The implementing type is `repr(C)`, starts with a `usize` size, and every bit
/// pattern of its fields is valid (pointers, integers, nullable function pointers).
pub(crate) unsafe trait Versioned: Copy {
    /// Where each field ends, in order: a caller's `size` is rounded down to one of
    /// these, so a field is taken whole from the caller or kept at its default.
    fn field_ends() -> &'static [usize];
}

/// Reads a caller's options struct over `default`: the fields within the caller's
/// `size` come from the caller (an older caller has fewer); bytes beyond the fields this
/// version knows (a newer caller's) must be zero, asking for nothing we cannot give.
///
/// # Safety
///
/// `ptr` points at `size` readable bytes, where `size` is the struct's first word.
pub(crate) unsafe fn read_versioned<T: Versioned>(
    ptr: *const T,
    default: T,
) -> Result<T, jr_status> {
    if ptr.is_null() {
        return Ok(default);
    }
    // SAFETY: every options struct starts with its size, readable by the caller's promise.
    let size = unsafe { ptr.cast::<usize>().read_unaligned() };
    if size < size_of::<usize>() {
        return Err(status::invalid(format_args!(
            "the options struct's size field is {size}: set it with the *_default() function"
        )));
    }
    let bytes = ptr.cast::<u8>();
    if size > size_of::<T>() {
        // SAFETY: the caller promises `size` readable bytes.
        let extra =
            unsafe { std::slice::from_raw_parts(bytes.add(size_of::<T>()), size - size_of::<T>()) };
        if extra.iter().any(|&b| b != 0) {
            return Err(status::invalid(format_args!(
                "the options struct is {size} bytes and those past the {} this library knows are not zero: a newer header asks for an option this library does not have",
                size_of::<T>()
            )));
        }
    }
    let taken = T::field_ends()
        .iter()
        .copied()
        .filter(|&end| end <= size)
        .max()
        .unwrap_or(size_of::<usize>());
    let mut value = default;
    // SAFETY: `taken` bytes are readable (≤ size) and fit in `T` (≤ its last field's
    // end); every bit pattern of the fields is valid (`Versioned`), and whole fields
    // only are copied.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes, (&mut value as *mut T).cast::<u8>(), taken);
    }
    // The caller's size said how much to read; ours is what the struct now holds.
    // SAFETY: `T` starts with its `usize` size field.
    unsafe { (&mut value as *mut T).cast::<usize>().write(size_of::<T>()) };
    Ok(value)
}

/// Implements [`Versioned`] for an options struct from its field names, in order: a
/// field ends where the next begins (its padding is its own), the last at the struct's
/// size.
macro_rules! versioned {
    ($t:ty { $first:ident $(, $rest:ident)* $(,)? }) => {
        // SAFETY: the struct is `repr(C)`, starts with `size: usize`, and its fields are
        // pointers, integers and nullable function pointers (checked where declared).
        unsafe impl $crate::ffi::Versioned for $t {
            fn field_ends() -> &'static [usize] {
                const ENDS: &[usize] = &[
                    $(::std::mem::offset_of!($t, $rest),)*
                    ::std::mem::size_of::<$t>()
                ];
                ENDS
            }
        }
    };
}
pub(crate) use versioned;

#[cfg(test)]
mod tests {
    use super::pool::{jr_pool_options, jr_pool_options_default};
    use super::*;

    /// A caller's options struct with room for a newer version's fields.
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Newer {
        options: jr_pool_options,
        extra: [u64; 2],
    }

    #[test]
    fn options_are_read_by_size_whole_fields_only() {
        let default = jr_pool_options_default();
        let mut caller = jr_pool_options {
            threads: 3,
            queue_capacity: 9,
            ..default
        };
        // SAFETY: `caller` is readable for its size.
        let read = |c: &jr_pool_options| unsafe { read_versioned(c, default) };
        assert_eq!(read(&caller).unwrap().threads, 3);
        // An older caller that knew only `size` and `threads`.
        caller.size = std::mem::offset_of!(jr_pool_options, queue_capacity);
        let older = read(&caller).unwrap();
        assert_eq!((older.threads, older.queue_capacity), (3, 0));
        // A size in the middle of a field takes the field whole or not at all.
        caller.size = std::mem::offset_of!(jr_pool_options, queue_capacity) + 3;
        assert_eq!(read(&caller).unwrap().queue_capacity, 0);
        caller.size = 0;
        assert_eq!(read(&caller).err(), Some(jr_status::JR_E_INVALID_ARG));

        // A newer caller: zero extra bytes are fine, others ask for what we cannot do.
        let mut newer = Newer {
            options: jr_pool_options {
                size: std::mem::size_of::<Newer>(),
                threads: 2,
                ..default
            },
            extra: [0; 2],
        };
        // SAFETY: `newer` is readable for the size it declares.
        let read_newer = |n: &Newer| unsafe {
            read_versioned((n as *const Newer).cast::<jr_pool_options>(), default)
        };
        assert_eq!(read_newer(&newer).unwrap().threads, 2);
        newer.extra[1] = 1;
        assert_eq!(read_newer(&newer).err(), Some(jr_status::JR_E_INVALID_ARG));
    }
}
