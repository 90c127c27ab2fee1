//! `jr_ctx`: what a C job function is given.

use std::ffi::{c_char, CString};
use std::num::NonZeroU16;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use super::job::jr_job_fn;
use super::jr_status;
use super::pool::{jr_pool, PoolHandle};
use super::status::invalid;
use super::token::{jr_token, TokenHandle};
use super::{opt_str, status, write_out, Handle, Kind};
use crate::{Context, SubmitOptions};

/// A running job's context, passed to its `jr_job_fn`. Valid only during that call;
/// its functions may be called from the job's thread or any other while the call lasts,
/// except `jr_ctx_run_queued` (the job's thread only).
pub struct jr_ctx {
    _opaque: [u8; 0],
}

/// The state behind a `jr_ctx`: the Rust context, and what the job reports through it.
pub(crate) struct CtxState<'a> {
    ctx: &'a Context<'a>,
    /// Set by `jr_ctx_fail`: the message of the job's failure.
    pub(crate) message: Mutex<Option<CString>>,
    /// Set by `jr_ctx_panic`: the job ends panicked with this message.
    pub(crate) panic: Mutex<Option<String>>,
    token: OnceLock<Box<Handle<TokenHandle>>>,
    pool: OnceLock<Box<Handle<PoolHandle>>>,
}

/// `CtxState` with its lifetime erased, for the handle tag (the handle never outlives
/// the job function's call: it lives on the runner's stack).
pub(crate) type CtxHandle = CtxState<'static>;

impl Kind for CtxHandle {
    const MAGIC: u64 = 0x6a72_6374_7800_0001; // "jrctx\0\0\x01"
    const NAME: &'static str = "jr_ctx";
    type Opaque = jr_ctx;
}

impl<'a> CtxState<'a> {
    pub(crate) fn new(ctx: &'a Context<'a>) -> Self {
        CtxState {
            ctx,
            message: Mutex::new(None),
            panic: Mutex::new(None),
            token: OnceLock::new(),
            pool: OnceLock::new(),
        }
    }

    /// The state of a `jr_ctx` argument.
    ///
    /// # Safety
    ///
    /// As [`Handle::from_ptr`].
    unsafe fn of<'b>(ptr: *const jr_ctx) -> Result<&'b CtxHandle, jr_status> {
        // SAFETY: the caller's contract.
        Ok(&unsafe { Handle::<CtxHandle>::from_ptr(ptr) }?.value)
    }
}

/// Calls `f` with a `jr_ctx` for `ctx`, valid for the call.
pub(crate) fn with_ctx<R>(ctx: &Context<'_>, f: impl FnOnce(*mut jr_ctx, &CtxState<'_>) -> R) -> R {
    let state = CtxState::new(ctx);
    let mut handle = Handle::with_magic(CtxHandle::MAGIC, state);
    let ptr = (&mut handle as *mut Handle<CtxState<'_>>).cast::<jr_ctx>();
    let result = f(ptr, &handle.value);
    handle.retire();
    result
}

/// Whether the job has been asked to stop: its token (or an ancestor), its group, the
/// pool's shutdown, a `jr_job_cancel`. False for NULL or a handle that is not a context.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn jr_ctx_is_cancelled(ctx: *const jr_ctx) -> bool {
    super::boundary(false, || {
        // SAFETY: a context by the contract above.
        unsafe { CtxState::of(ctx) }.is_ok_and(|state| state.ctx.is_cancelled())
    })
}

/// The job's token (cancelled when the job is asked to stop), borrowed: valid during the
/// job's call, never freed. Make a child (`jr_token_new`) to keep one longer. NULL for
/// NULL or a handle that is not a context. Thread-safe.
#[no_mangle]
pub extern "C" fn jr_ctx_token(ctx: *const jr_ctx) -> *mut jr_token {
    super::boundary(std::ptr::null_mut(), || {
        // SAFETY: a context by the contract above.
        let Ok(state) = (unsafe { CtxState::of(ctx) }) else {
            return std::ptr::null_mut();
        };
        let handle = state
            .token
            .get_or_init(|| Handle::boxed(TokenHandle::new(state.ctx.token(), true)));
        (&**handle as *const Handle<TokenHandle>).cast_mut().cast()
    })
}

/// The pool running the job, borrowed: valid during the job's call, never freed (jobs
/// submitted to it from the job run on it). NULL for NULL or a handle that is not a
/// context. Thread-safe.
#[no_mangle]
pub extern "C" fn jr_ctx_pool(ctx: *const jr_ctx) -> *mut jr_pool {
    super::boundary(std::ptr::null_mut(), || {
        // SAFETY: a context by the contract above.
        let Ok(state) = (unsafe { CtxState::of(ctx) }) else {
            return std::ptr::null_mut();
        };
        let handle = state
            .pool
            .get_or_init(|| Handle::boxed(PoolHandle::borrowed(state.ctx.pool().clone())));
        (&**handle as *const Handle<PoolHandle>).cast_mut().cast()
    })
}

/// Sets the message of the job's failure (copied), reported by `jr_job_error_message`
/// when the job function returns a nonzero code. A job that returns 0 succeeds and the
/// message is dropped. A later call replaces the message.
///
/// Returns `JR_OK`, `JR_E_INVALID_ARG` (not a context, `message` NULL). Thread-safe.
#[no_mangle]
pub extern "C" fn jr_ctx_fail(ctx: *mut jr_ctx, message: *const c_char) -> jr_status {
    status(|| {
        // SAFETY: a context by the contract above.
        let state = unsafe { CtxState::of(ctx) }?;
        // SAFETY: NULL or a NUL-terminated string (the contract).
        let message =
            unsafe { opt_str(message) }.ok_or_else(|| invalid(format_args!("message is NULL")))?;
        let message = CString::new(message.replace('\0', "")).unwrap_or_default();
        *state.message.lock().unwrap_or_else(|p| p.into_inner()) = Some(message);
        Ok(())
    })
}

/// Makes the job end panicked (`JR_E_PANICKED`, with `message` from
/// `jr_job_error_message`) when its function returns, whatever it returns: for bindings
/// whose language has panics or uncaught exceptions, so that every language reports
/// them alike. The worker lives on.
///
/// Returns `JR_OK`, `JR_E_INVALID_ARG` (not a context, `message` NULL). Thread-safe.
#[no_mangle]
pub extern "C" fn jr_ctx_panic(ctx: *mut jr_ctx, message: *const c_char) -> jr_status {
    status(|| {
        // SAFETY: a context by the contract above.
        let state = unsafe { CtxState::of(ctx) }?;
        // SAFETY: NULL or a NUL-terminated string (the contract).
        let message =
            unsafe { opt_str(message) }.ok_or_else(|| invalid(format_args!("message is NULL")))?;
        *state.panic.lock().unwrap_or_else(|p| p.into_inner()) = Some(message);
        Ok(())
    })
}

/// Writes the run number of a periodic job (0 for the first run) to `*out`.
///
/// Returns `JR_OK`, `JR_E_INVALID_ARG` (not a context, `out` NULL, not a periodic job).
/// Thread-safe.
#[no_mangle]
pub extern "C" fn jr_ctx_tick(ctx: *const jr_ctx, out: *mut u64) -> jr_status {
    status(|| {
        // SAFETY: a context by the contract above.
        let state = unsafe { CtxState::of(ctx) }?;
        let tick = state.ctx.tick().ok_or_else(|| {
            invalid(format_args!(
                "not a periodic job: only a run of jr_submit_every has a tick"
            ))
        })?;
        // SAFETY: checked non-null; the caller provides a writable pointer.
        unsafe { write_out(out, tick) }
    })
}

// ----- batches of one job function (jr_ctx_run_queued) -----------------------------------------

/// Slots of the table of job functions; a function's kind is its slot's index + 1.
const KIND_SLOTS: usize = 1024;
/// How many slots a look-up probes from a function's hash before it gives up.
const KIND_PROBES: usize = 8;

/// Job functions by the kind of their jobs (`SubmitOptions::kind`), for
/// `jr_ctx_run_queued`: an open-addressing table of addresses, filled on first use and
/// never emptied (a slot, once claimed with a compare-and-swap from 0, keeps its
/// function for the life of the process). A function that finds its probes taken by
/// others gets no kind: its jobs are never batched.
static KINDS: [AtomicUsize; KIND_SLOTS] = [const { AtomicUsize::new(0) }; KIND_SLOTS];

/// The kind of the jobs of `func` (an address, not 0), given it a slot if it has none:
/// a hash and usually one atomic load (`jr_submit`, `jr_ctx_run_queued`).
#[inline]
fn kind_of(func: usize) -> Option<NonZeroU16> {
    // Fibonacci hashing of the address; the top bits pick the first slot.
    let hash = (func as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let first = (hash >> (64 - KIND_SLOTS.trailing_zeros())) as usize;
    for probe in 0..KIND_PROBES {
        let index = (first + probe) % KIND_SLOTS;
        let slot = &KINDS[index];
        let mut held = slot.load(Ordering::Acquire);
        if held == 0 {
            held = match slot.compare_exchange(0, func, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => func,
                Err(other) => other,
            };
        }
        if held == func {
            // `index < KIND_SLOTS`, far below `u16::MAX`.
            return NonZeroU16::new(index as u16 + 1);
        }
    }
    None
}

/// `options` with the kind of `func`'s jobs (`jr_submit`).
#[inline]
pub(crate) fn with_batch_kind(options: SubmitOptions, func: usize) -> SubmitOptions {
    match kind_of(func) {
        Some(kind) => options.kind(kind),
        None => options,
    }
}

/// Called from a running job's function, on its thread: runs there, one after another
/// and each to its end, up to `max` jobs of `fn` (submitted with `jr_submit`) that are
/// ready now in this worker's own queue or the pool's shared queue, and writes how many
/// ran to `*ran` (`ran` may be NULL). Each goes through its whole life as when a worker
/// picks it up (its start, its token, its end state, its argument and result freed); a
/// job cancelled meanwhile ends `JR_E_CANCELLED` without running and is not counted.
/// It stops at the first queued job of another function (left queued, for any worker)
/// and when none is ready: it never waits.
///
/// For many small jobs whose start costs more than their work (a binding whose job
/// function enters an interpreter): the thread pays that cost once per batch. Call it
/// last, once the job's own work is done and it holds nothing another job may need:
/// the calling job ends only when the call returns, and the jobs it runs run on its
/// stack. Called from a job that `jr_ctx_run_queued` is running, it runs nothing (no
/// recursion). Up to about a thousand distinct job functions per process can be batched;
/// past that, the jobs of a new function are not (and this runs nothing for it).
///
/// Returns `JR_OK`, `JR_E_INVALID_ARG` (not a context, `fn` NULL, not called on the
/// thread running the job).
#[no_mangle]
pub extern "C" fn jr_ctx_run_queued(
    ctx: *mut jr_ctx,
    func: jr_job_fn,
    max: u32,
    ran: *mut u32,
) -> jr_status {
    status(|| {
        // SAFETY: a context by the contract above.
        let state = unsafe { CtxState::of(ctx) }?;
        let func = func.ok_or_else(|| invalid(format_args!("fn is NULL")))?;
        if !state.ctx.is_current_thread() {
            return Err(invalid(format_args!(
                "jr_ctx_run_queued must be called on the thread running the job"
            )));
        }
        let count = match kind_of(func as usize) {
            // At most `max` (a u32) jobs ran.
            Some(kind) => state.ctx.run_queued(kind, max as usize) as u32,
            None => 0,
        };
        if !ran.is_null() {
            // SAFETY: non-null; the caller provides a writable pointer.
            unsafe { ran.write(count) };
        }
        Ok(())
    })
}
