//! `jr_pool`: pools, their options, shutdown and statistics.

use std::ffi::{c_char, c_void};
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Arc, Mutex};

use super::jr_status;
use super::status::invalid;
use super::{
    fork, opt_str, read_versioned, status, timeout_of, versioned, write_out, Handle, Kind,
};
use crate::pool::registry::{HookTag, ThreadHook, ThreadHooks};
use crate::{Pool, ShutdownMode};

/// A pool of worker threads. Made by `jr_pool_new` (owned: free it with `jr_pool_free`),
/// or borrowed: `jr_pool_global()`, `jr_ctx_pool()`.
pub struct jr_pool {
    _opaque: [u8; 0],
}

pub(crate) struct PoolHandle {
    pub(crate) pool: Pool,
    /// The global pool or a job's context's: not the caller's to free.
    borrowed: bool,
}

impl Kind for PoolHandle {
    const MAGIC: u64 = 0x6a72_706f_6f6c_0001; // "jrpool\0\x01"
    const NAME: &'static str = "jr_pool";
    type Opaque = jr_pool;
}

impl PoolHandle {
    pub(crate) fn borrowed(pool: Pool) -> Self {
        PoolHandle {
            pool,
            borrowed: true,
        }
    }

    /// The pool of a handle argument.
    ///
    /// # Safety
    ///
    /// As [`Handle::from_ptr`].
    pub(crate) unsafe fn pool_of<'a>(ptr: *const jr_pool) -> Result<&'a Pool, jr_status> {
        // SAFETY: the caller's contract.
        Ok(&unsafe { Handle::<PoolHandle>::from_ptr(ptr) }?.value.pool)
    }
}

/// The most worker threads a pool may have.
pub const JR_MAX_THREADS: usize = 4096;

/// Options for `jr_pool_new`. Get the defaults from `jr_pool_options_default()` (which
/// sets `size`), then change fields.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct jr_pool_options {
    /// `sizeof(jr_pool_options)` as the caller was compiled: fields past it take their
    /// defaults, so older callers keep working.
    pub size: usize,
    /// Worker threads, 1 to `JR_MAX_THREADS`; 0 (default): one per CPU.
    pub threads: usize,
    /// The most jobs submitted from outside the pool and not yet started; a blocking
    /// submit waits for room, a nonblocking one fails with `JR_E_FULL`. 0 (default):
    /// unbounded.
    pub queue_capacity: usize,
    /// Prefix of the worker threads' names (copied; NULL: `"jobrunner"`).
    pub thread_name: *const c_char,
    /// Called on each worker thread when it starts, before it runs any job, with
    /// `hook_arg` and the worker's index (NULL: none). For per-thread setup, e.g. a
    /// language runtime's thread state that the jobs of that thread will reuse.
    pub on_thread_start: jr_thread_hook,
    /// Called on each worker thread as it exits, after its last job (NULL: none).
    pub on_thread_stop: jr_thread_hook,
    /// Passed to the hooks; must stay valid until the pool's threads have exited: until
    /// `jr_pool_free`, or a `jr_pool_shutdown` that returned `JR_OK`, called from
    /// outside the pool, has returned.
    pub hook_arg: *mut c_void,
}

versioned!(jr_pool_options {
    size,
    threads,
    queue_capacity,
    thread_name,
    on_thread_start,
    on_thread_stop,
    hook_arg,
});

/// A worker thread hook: `arg` is `jr_pool_options.hook_arg`, `index` the worker's
/// index (0 to threads - 1; higher for a spare worker, started while a job blocks in a
/// channel wait). Runs on the worker thread itself.
pub type jr_thread_hook = Option<unsafe extern "C" fn(arg: *mut c_void, index: usize)>;

/// A hook with its argument, callable from any worker thread.
#[derive(Clone, Copy)]
struct Hook {
    hook: unsafe extern "C" fn(*mut c_void, usize),
    arg: *mut c_void,
}

// SAFETY: the header tells callers that hooks run on the worker threads with `hook_arg`;
// we only pass the pointer along.
unsafe impl Send for Hook {}
// SAFETY: as above.
unsafe impl Sync for Hook {}

impl Hook {
    fn new(hook: jr_thread_hook, arg: *mut c_void) -> Option<Hook> {
        hook.map(|hook| Hook { hook, arg })
    }

    /// The hook as the pool keeps it (None for NULL).
    fn boxed(hook: jr_thread_hook, arg: *mut c_void) -> Option<ThreadHook> {
        Hook::new(hook, arg).map(|hook| Arc::new(move |index| hook.call(index)) as ThreadHook)
    }

    fn call(&self, index: usize) {
        // SAFETY: the caller's hook, called as `jr_thread_hook` documents.
        unsafe { (self.hook)(self.arg, index) };
    }
}

/// The default pool options, with `size` set. Thread-safe, never fails.
#[no_mangle]
pub extern "C" fn jr_pool_options_default() -> jr_pool_options {
    jr_pool_options {
        size: std::mem::size_of::<jr_pool_options>(),
        threads: 0,
        queue_capacity: 0,
        thread_name: std::ptr::null(),
        on_thread_start: None,
        on_thread_stop: None,
        hook_arg: std::ptr::null_mut(),
    }
}

/// Makes a pool. `options` may be NULL (defaults). The caller owns `*out` and frees it
/// with `jr_pool_free`.
///
/// Returns `JR_OK`, `JR_E_INVALID_ARG` (`out` NULL, bad options: `threads` over
/// `JR_MAX_THREADS`, a `size` below a word, nonzero bytes past the known fields),
/// `JR_E_NO_MEMORY` (the threads could not start). Thread-safe.
#[no_mangle]
pub extern "C" fn jr_pool_new(
    options: *const jr_pool_options,
    out: *mut *mut jr_pool,
) -> jr_status {
    status(|| {
        if out.is_null() {
            return Err(invalid(format_args!("out is NULL")));
        }
        // SAFETY: NULL or an options struct of its declared size (the contract).
        let options = unsafe { read_versioned(options, jr_pool_options_default()) }?;
        if options.threads > JR_MAX_THREADS {
            return Err(invalid(format_args!(
                "threads is {}: at most JR_MAX_THREADS ({JR_MAX_THREADS})",
                options.threads
            )));
        }
        fork::install();
        let mut builder = Pool::builder();
        if options.threads > 0 {
            builder = builder.threads(options.threads);
        }
        if options.queue_capacity > 0 {
            builder = builder.queue_capacity(options.queue_capacity);
        }
        // SAFETY: NULL or a NUL-terminated string (the contract).
        if let Some(name) = unsafe { opt_str(options.thread_name) } {
            builder = builder.thread_name(name);
        }
        let hook = |hook| Hook::new(hook, options.hook_arg);
        if let Some(hook) = hook(options.on_thread_start) {
            builder = builder.on_thread_start(move |index| hook.call(index));
        }
        if let Some(hook) = hook(options.on_thread_stop) {
            builder = builder.on_thread_stop(move |index| hook.call(index));
        }
        let pool = builder.build().map_err(|e| jr_status::from_build(&e))?;
        let handle = Handle::into_raw(PoolHandle {
            pool,
            borrowed: false,
        });
        // SAFETY: checked non-null; the caller provides a writable pointer.
        unsafe { write_out(out, handle) }
    })
}

/// A `jr_pool` handle on a Rust [`Pool`], for Rust code that drives one pool through
/// both APIs (the stress tests submit a share of their jobs through `jr_submit`). The
/// handle holds a [`Pool`] clone: free it with `jr_pool_free`, which drops that clone
/// only (the pool drains when its last handle, Rust or C, is dropped).
#[doc(hidden)]
pub fn pool_handle_of(pool: &Pool) -> *mut jr_pool {
    Handle::into_raw(PoolHandle {
        pool: pool.clone(),
        borrowed: false,
    })
}

/// The C global pool of this process, with its fork generation's handle.
static GLOBAL: AtomicPtr<jr_pool> = AtomicPtr::new(std::ptr::null_mut());
/// Serialises making a forked child's global pool.
static CHILD_GLOBAL: Mutex<()> = Mutex::new(());

/// The process-wide pool, shared with Rust's `jobrunner::global()` (and so with every
/// language in the process), made on first use, sized by `JOBRUNNER_THREADS`. Borrowed:
/// never free it. In a child made by `fork()`, the child's own global pool. NULL only if
/// no worker thread could be started, or `JOBRUNNER_THREADS` is not a positive integer.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn jr_pool_global() -> *mut jr_pool {
    super::boundary(std::ptr::null_mut(), || {
        let current = GLOBAL.load(Ordering::Acquire);
        if !current.is_null() {
            return current;
        }
        fork::install();
        let pool = if fork::generation() == 0 {
            match crate::try_global() {
                Ok(pool) => pool.clone(),
                Err(_) => return std::ptr::null_mut(),
            }
        } else {
            let _one = CHILD_GLOBAL.lock().unwrap_or_else(|p| p.into_inner());
            let current = GLOBAL.load(Ordering::Acquire);
            if !current.is_null() {
                return current;
            }
            match crate::pool::build_global() {
                Ok(pool) => pool,
                Err(_) => return std::ptr::null_mut(),
            }
        };
        let handle = Handle::into_raw(PoolHandle::borrowed(pool));
        match GLOBAL.compare_exchange(
            std::ptr::null_mut(),
            handle,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => handle,
            Err(winner) => {
                // SAFETY: a live handle of ours, never published.
                drop(unsafe { Handle::<PoolHandle>::free(handle) });
                winner
            }
        }
    })
}

/// In a forked child: forget the parent's global handle (leaked) so that the child's
/// first `jr_pool_global()` makes its own.
pub(crate) fn after_fork() {
    GLOBAL.store(std::ptr::null_mut(), Ordering::Release);
}

/// Adds worker thread hooks to a running pool, such as the global one, whose options
/// the caller did not choose: each worker calls `on_thread_start(arg, index)` on its own
/// thread before the next job it takes from a queue, and `on_thread_stop(arg, index)` as
/// it exits if it called the start hook. Either may be NULL, not both. Hooks added by
/// several callers (one per language runtime in the process, say) run in the order they
/// were added; stop hooks in the reverse order. `arg` must stay valid until the pool's
/// threads have exited (for the global pool: for good), or until
/// `jr_pool_remove_thread_hooks` has removed the hooks.
///
/// Returns `JR_OK`, `JR_E_INVALID_ARG` (not a pool, both hooks NULL), `JR_E_FORKED`.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn jr_pool_add_thread_hooks(
    pool: *mut jr_pool,
    on_thread_start: jr_thread_hook,
    on_thread_stop: jr_thread_hook,
    arg: *mut c_void,
) -> jr_status {
    add_hooks(pool, [on_thread_start, on_thread_stop, None], arg)
}

/// Adds a park hook to a pool: each worker calls `on_thread_park(arg, index)` on its own
/// thread each time it is about to block, from its next time on: to sleep for want of
/// work (it may still find some at its last look, and not sleep), or while a job it
/// runs waits for another. For a language runtime whose threads hold something while
/// they run its code, to give it back while the worker idles (the Go binding gives the
/// Go scheduler back its processor). It runs at every park: keep it short, and never
/// let it wait for the pool's work. Park hooks added by several callers run in the
/// order they were added. `arg` must stay valid as for `jr_pool_add_thread_hooks`, or
/// until `jr_pool_remove_park_hook` has removed the hook.
///
/// Returns `JR_OK`, `JR_E_INVALID_ARG` (not a pool, a NULL hook), `JR_E_FORKED`.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn jr_pool_add_park_hook(
    pool: *mut jr_pool,
    on_thread_park: jr_thread_hook,
    arg: *mut c_void,
) -> jr_status {
    add_hooks(pool, [None, None, on_thread_park], arg)
}

/// `jr_pool_add_thread_hooks` and `jr_pool_add_park_hook`: the start, stop and park
/// hooks (NULL: none).
fn add_hooks(pool: *mut jr_pool, hooks: [jr_thread_hook; 3], arg: *mut c_void) -> jr_status {
    status(|| {
        // SAFETY: a pool handle by the callers' contracts.
        let (pool, tag) = unsafe { hooks_call(pool, hooks, arg) }?;
        let [start, stop, park] = hooks.map(|hook| Hook::boxed(hook, arg));
        pool.add_raw_thread_hooks(ThreadHooks { start, stop, park }, tag);
        Ok(())
    })
}

/// `jr_pool_remove_thread_hooks` and `jr_pool_remove_park_hook`.
fn remove_hooks(pool: *mut jr_pool, hooks: [jr_thread_hook; 3], arg: *mut c_void) -> jr_status {
    status(|| {
        // SAFETY: a pool handle by the callers' contracts.
        let (pool, tag) = unsafe { hooks_call(pool, hooks, arg) }?;
        if !pool.remove_raw_thread_hooks(tag) {
            return Err(invalid(format_args!(
                "no such hooks on this pool: never added with these arguments, or removed already"
            )));
        }
        Ok(())
    })
}

/// The checked arguments of the calls that add and remove hooks: the pool, and what
/// identifies the hooks, their functions (start, stop, park; not all NULL) and argument.
///
/// # Safety
///
/// As [`PoolHandle::pool_of`].
unsafe fn hooks_call<'a>(
    pool: *mut jr_pool,
    hooks: [jr_thread_hook; 3],
    arg: *mut c_void,
) -> Result<(&'a Pool, HookTag), jr_status> {
    // SAFETY: the caller's contract.
    let pool = unsafe { PoolHandle::pool_of(pool) }?;
    if hooks.iter().all(Option::is_none) {
        return Err(invalid(format_args!("no hook given: every hook is NULL")));
    }
    let [start, stop, park] = hooks.map(|hook| hook.map_or(0, |f| f as usize));
    Ok((pool, [start, stop, park, arg as usize]))
}

/// Removes the hooks that `jr_pool_add_thread_hooks` added with the same three arguments
/// (the earliest such, if added more than once). When it returns, no worker calls them
/// again: not the start hook, and not the stop hook as it exits (workers that ran the
/// start hook do not get the stop hook); calls in progress have returned, except, when
/// called from one of the pool's own hooks, that very call. For code about to go away: a
/// language runtime shutting down (Python's binding removes its hooks from the global
/// pool at interpreter exit), a library being unloaded. Blocks while a hook call is in
/// progress; `arg` may be freed once it returns.
///
/// Returns `JR_OK`, `JR_E_INVALID_ARG` (not a pool, both hooks NULL, no such hooks:
/// never added, or removed already), `JR_E_FORKED`. Thread-safe.
#[no_mangle]
pub extern "C" fn jr_pool_remove_thread_hooks(
    pool: *mut jr_pool,
    on_thread_start: jr_thread_hook,
    on_thread_stop: jr_thread_hook,
    arg: *mut c_void,
) -> jr_status {
    remove_hooks(pool, [on_thread_start, on_thread_stop, None], arg)
}

/// Removes the park hook that `jr_pool_add_park_hook` added with the same arguments (the
/// earliest such, if added more than once). When it returns, no worker calls it again,
/// and calls in progress have returned, except, when called from one of the pool's own
/// hooks, that very call. Blocks while a hook call is in progress; `arg` may be freed
/// once it returns.
///
/// Returns `JR_OK`, `JR_E_INVALID_ARG` (not a pool, a NULL hook, no such hook: never
/// added, or removed already), `JR_E_FORKED`. Thread-safe.
#[no_mangle]
pub extern "C" fn jr_pool_remove_park_hook(
    pool: *mut jr_pool,
    on_thread_park: jr_thread_hook,
    arg: *mut c_void,
) -> jr_status {
    remove_hooks(pool, [None, None, on_thread_park], arg)
}

/// Drain: run everything already accepted, delayed jobs when they come due.
pub const JR_SHUTDOWN_DRAIN: u32 = 1;
/// Cancel: end every queued and delayed job as cancelled, tell running jobs.
/// `JR_SHUTDOWN_DRAIN | JR_SHUTDOWN_CANCEL` drains until the timeout, then cancels.
pub const JR_SHUTDOWN_CANCEL: u32 = 2;

/// Shuts the pool down: from now on every submit fails with `JR_E_SHUTDOWN`.
/// `mode` is `JR_SHUTDOWN_DRAIN`, `JR_SHUTDOWN_CANCEL`, or both (drain until the
/// timeout, then cancel). Waits at most `timeout_ns` nanoseconds (negative: forever) for
/// the jobs to end; called from one of the pool's own jobs, it does not wait (the pool
/// finishes on its own). Calling it again is allowed (e.g. a cancel after a drain that
/// timed out).
///
/// Returns `JR_OK` (every job ended), `JR_E_TIMEOUT` (jobs still running or queued at
/// the timeout), `JR_E_INVALID_ARG` (not a pool, bad `mode`), `JR_E_FORKED`.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn jr_pool_shutdown(pool: *mut jr_pool, mode: u32, timeout_ns: i64) -> jr_status {
    status(|| {
        // SAFETY: a pool handle by the contract above.
        let pool = unsafe { PoolHandle::pool_of(pool) }?;
        let mode = match mode {
            JR_SHUTDOWN_DRAIN => ShutdownMode::Drain,
            JR_SHUTDOWN_CANCEL => ShutdownMode::Cancel,
            m if m == JR_SHUTDOWN_DRAIN | JR_SHUTDOWN_CANCEL => ShutdownMode::DrainThenCancel,
            _ => {
                return Err(invalid(format_args!(
                    "mode {mode} is not JR_SHUTDOWN_DRAIN, JR_SHUTDOWN_CANCEL or both"
                )))
            }
        };
        if pool.shutdown(mode, timeout_of(timeout_ns)).is_complete() {
            Ok(())
        } else {
            Err(jr_status::JR_E_TIMEOUT)
        }
    })
}

/// A snapshot of a pool's counters, filled by `jr_pool_stats` (the function has the name,
/// so the struct is `jr_stats`: C cannot have both). Once the pool is idle,
/// `submitted = succeeded + failed + panicked + cancelled + queued + running`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct jr_stats {
    /// Set by the caller to `sizeof(jr_stats)`: only the fields that fit are
    /// written.
    pub size: usize,
    /// Jobs accepted by a submit.
    pub submitted: u64,
    /// Jobs that started running.
    pub started: u64,
    /// Jobs that succeeded.
    pub succeeded: u64,
    /// Jobs that failed (nonzero code).
    pub failed: u64,
    /// Jobs that panicked.
    pub panicked: u64,
    /// Jobs that ended cancelled, before or while running.
    pub cancelled: u64,
    /// Of `cancelled`, the jobs that never ran.
    pub cancelled_before_start: u64,
    /// Jobs accepted and not yet started or cancelled (delayed ones included).
    pub queued: u64,
    /// Jobs running now.
    pub running: u64,
    /// Jobs taken from another worker's queue.
    pub steals: u64,
    /// Times a worker went to sleep.
    pub parks: u64,
    /// Times a sleeping worker was woken.
    pub unparks: u64,
    /// Worker threads.
    pub threads: u64,
    /// Workers asleep now, waiting for work.
    pub sleeping: u64,
    /// Spare workers running now, in place of workers whose jobs block in a channel
    /// wait (they retire once the blocked jobs are back).
    pub spare_threads: u64,
}

versioned!(jr_stats {
    size,
    submitted,
    started,
    succeeded,
    failed,
    panicked,
    cancelled,
    cancelled_before_start,
    queued,
    running,
    steals,
    parks,
    unparks,
    threads,
    sleeping,
    spare_threads,
});

/// Writes the pool's counters to `*out`, whose `size` the caller set to
/// `sizeof(jr_stats)` (fields past it are not written).
///
/// Returns `JR_OK`, `JR_E_INVALID_ARG` (not a pool, `out` NULL, `out->size` below a
/// word), `JR_E_FORKED`. Thread-safe.
#[no_mangle]
pub extern "C" fn jr_pool_stats(pool: *const jr_pool, out: *mut jr_stats) -> jr_status {
    status(|| {
        // SAFETY: a pool handle by the contract above.
        let pool = unsafe { PoolHandle::pool_of(pool) }?;
        if out.is_null() {
            return Err(invalid(format_args!("out is NULL")));
        }
        // SAFETY: the caller's struct starts with its size.
        let size = unsafe { out.cast::<usize>().read_unaligned() };
        if size < std::mem::size_of::<usize>() {
            return Err(invalid(format_args!(
                "out->size is {size}: set it to sizeof(jr_stats)"
            )));
        }
        let s = pool.stats();
        let stats = jr_stats {
            size: std::mem::size_of::<jr_stats>().min(size),
            submitted: s.submitted,
            started: s.started,
            succeeded: s.succeeded,
            failed: s.failed,
            panicked: s.panicked,
            cancelled: s.cancelled,
            cancelled_before_start: s.cancelled_before_start,
            queued: s.queued,
            running: s.running,
            steals: s.steals,
            parks: s.parks,
            unparks: s.unparks,
            threads: s.threads as u64,
            sleeping: s.sleeping as u64,
            spare_threads: s.spare_threads as u64,
        };
        let ends = <jr_stats as super::Versioned>::field_ends();
        let n = ends
            .iter()
            .copied()
            .filter(|&e| e <= size)
            .max()
            .unwrap_or(0);
        // SAFETY: the caller's struct holds `size` writable bytes and `n <= size`; `n`
        // bytes of ours are initialised fields (whole fields only).
        unsafe {
            std::ptr::copy_nonoverlapping(
                (&stats as *const jr_stats).cast::<u8>(),
                out.cast::<u8>(),
                n,
            );
        }
        Ok(())
    })
}

/// Frees a pool made by `jr_pool_new`: like `jr_pool_shutdown(pool, JR_SHUTDOWN_DRAIN,
/// -1)` once no job holds the pool any more, so queued jobs still run (from one of the
/// pool's own jobs, the drain finishes on a thread of its own). NULL is a no-op.
///
/// Returns `JR_OK`, `JR_E_INVALID_ARG` (not a pool, or borrowed: the global pool, a
/// context's), `JR_E_FORKED` (made before `fork()`: leaked). Not to be called while
/// another thread uses the handle.
#[no_mangle]
pub extern "C" fn jr_pool_free(pool: *mut jr_pool) -> jr_status {
    status(|| {
        // SAFETY: a pool handle or NULL by the contract above; checked before freeing.
        if let Ok(handle) = unsafe { Handle::<PoolHandle>::from_ptr(pool) } {
            if handle.value.borrowed {
                return Err(invalid(format_args!(
                    "a borrowed jr_pool handle (the global pool, a context's pool) is not freed"
                )));
            }
        }
        // SAFETY: as above; no other thread uses it (the contract).
        drop(unsafe { Handle::<PoolHandle>::free(pool) }?);
        Ok(())
    })
}
