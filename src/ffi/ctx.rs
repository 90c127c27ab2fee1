//! `jr_ctx`: what a C job function is given.

use std::ffi::{c_char, CString};
use std::sync::{Mutex, OnceLock};

use super::jr_status;
use super::pool::{jr_pool, PoolHandle};
use super::status::invalid;
use super::token::{jr_token, TokenHandle};
use super::{opt_str, status, write_out, Handle, Kind};
use crate::Context;

/// A running job's context, passed to its `jr_job_fn`. Valid only during that call;
/// its functions may be called from the job's thread or any other while the call lasts.
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
