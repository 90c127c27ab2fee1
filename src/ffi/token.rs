//! `jr_token`: cancellation tokens.

use std::sync::Arc;

use super::jr_status;
use super::signal::{ensure_helper, TokenShared};
use super::status::invalid;
use super::status::jr_cancel_reason;
use super::{fork, status, timeout_of, write_out, Handle, Kind};
use crate::CancelToken;

/// A cancellation token: a node of a cancellation tree shared by every language in the
/// process. Made by `jr_token_new` (owned: free it with `jr_token_free`) or borrowed
/// from `jr_ctx_token` (valid during the job's call; never freed).
pub struct jr_token {
    _opaque: [u8; 0],
}

pub(crate) struct TokenHandle {
    pub(crate) shared: Arc<TokenShared>,
    /// Lent by a job's context: not the caller's to free.
    borrowed: bool,
}

impl Kind for TokenHandle {
    const MAGIC: u64 = 0x6a72_746f_6b65_6e01; // "jrtoken\x01"
    const NAME: &'static str = "jr_token";
    type Opaque = jr_token;
}

impl TokenHandle {
    pub(crate) fn new(token: CancelToken, borrowed: bool) -> Self {
        fork::install();
        ensure_helper();
        TokenHandle {
            shared: TokenShared::new(token),
            borrowed,
        }
    }

    /// The Rust token of a handle argument, with any signal-requested cancel completed.
    ///
    /// # Safety
    ///
    /// As [`Handle::from_ptr`].
    pub(crate) unsafe fn token_of(ptr: *const jr_token) -> Result<CancelToken, jr_status> {
        // SAFETY: the caller's contract.
        let handle = unsafe { Handle::<TokenHandle>::from_ptr(ptr) }?;
        Ok(handle.value.shared.settle().clone())
    }

    /// As `token_of`, for a nullable argument.
    ///
    /// # Safety
    ///
    /// As [`Handle::from_ptr`].
    pub(crate) unsafe fn opt_token_of(
        ptr: *const jr_token,
    ) -> Result<Option<CancelToken>, jr_status> {
        if ptr.is_null() {
            return Ok(None);
        }
        // SAFETY: the caller's contract.
        unsafe { Self::token_of(ptr) }.map(Some)
    }
}

/// Makes a token: a child of `parent` (cancelled when it is), or a root when `parent` is
/// NULL. The caller owns `*out` and frees it with `jr_token_free`; jobs submitted with it
/// keep what they need, so it may be freed before they end.
///
/// Returns `JR_OK`, or `JR_E_INVALID_ARG` (`out` NULL, `parent` not a token),
/// `JR_E_FORKED`. Thread-safe.
#[no_mangle]
pub extern "C" fn jr_token_new(parent: *const jr_token, out: *mut *mut jr_token) -> jr_status {
    status(|| {
        if out.is_null() {
            return Err(invalid(format_args!("out is NULL")));
        }
        // SAFETY: a token handle or NULL, by the contract above.
        let parent = unsafe { TokenHandle::opt_token_of(parent) }?;
        let token = match parent {
            Some(parent) => parent.child(),
            None => CancelToken::new(),
        };
        let handle = Handle::into_raw(TokenHandle::new(token, false));
        // SAFETY: checked non-null; the caller provides a writable pointer.
        unsafe { write_out(out, handle) }
    })
}

/// Sets the token's deadline to `timeout_ns` nanoseconds from now, replacing any earlier
/// one: the token is then cancelled with `JR_REASON_DEADLINE` (at once if `timeout_ns`
/// is 0).
///
/// Returns `JR_OK`, `JR_E_CANCELLED` (already cancelled: nothing changes),
/// `JR_E_INVALID_ARG` (not a token, `timeout_ns` negative), `JR_E_FORKED`. Thread-safe.
#[no_mangle]
pub extern "C" fn jr_token_set_deadline(token: *mut jr_token, timeout_ns: i64) -> jr_status {
    status(|| {
        // SAFETY: a token handle by the contract above.
        let token = unsafe { TokenHandle::token_of(token) }?;
        let timeout = timeout_of(timeout_ns)
            .ok_or_else(|| invalid(format_args!("timeout_ns is negative")))?;
        if token.set_timeout(timeout) {
            Ok(())
        } else {
            Err(jr_status::JR_E_CANCELLED)
        }
    })
}

/// Cancels the token and its descendants (reason `JR_REASON_CANCELLED`, unless it was
/// already cancelled for another reason): jobs still queued under it end
/// `JR_E_CANCELLED` without running, running ones see `jr_ctx_is_cancelled`.
///
/// **Async-signal-safe**: it neither locks nor allocates, so a signal handler may call it.
/// `jr_token_is_cancelled` on this token is true when it returns; the rest (ending
/// queued jobs, cancelling descendants, waking waiters) is done within microseconds by a
/// helper thread, or at once by the next call that uses this token from normal context
/// (a submit with it, a wait on it, a child made from it).
///
/// Returns `JR_OK` (also if already cancelled), `JR_E_INVALID_ARG` (not a token),
/// `JR_E_FORKED`. Thread-safe.
#[no_mangle]
pub extern "C" fn jr_token_cancel(token: *mut jr_token) -> jr_status {
    // No `boundary`: nothing here can panic, and `catch_unwind` is not known to be
    // async-signal-safe.
    // SAFETY: a token handle by the contract above; `from_ptr` only reads.
    match unsafe { Handle::<TokenHandle>::from_ptr(token) } {
        Ok(handle) => {
            handle.value.shared.cancel_from_anywhere();
            jr_status::JR_OK
        }
        Err(bad) => bad.status(),
    }
}

/// Cancels the token and its descendants as `jr_token_cancel` does, but completely
/// before it returns: jobs still queued under it have ended `JR_E_CANCELLED`, waiters
/// are woken and `on_cancel` work has run. For normal code (bindings cancelling from a
/// Go or Python thread); **not** async-signal-safe: it locks and may free memory.
///
/// Returns `JR_OK` (also if already cancelled), `JR_E_INVALID_ARG` (not a token),
/// `JR_E_FORKED`. Thread-safe.
#[no_mangle]
pub extern "C" fn jr_token_cancel_sync(token: *mut jr_token) -> jr_status {
    status(|| {
        // SAFETY: a token handle by the contract above.
        let handle = unsafe { Handle::<TokenHandle>::from_ptr(token) }?;
        let shared = &handle.value.shared;
        shared.mark();
        shared.settle();
        Ok(())
    })
}

/// Whether the token (or an ancestor) is cancelled. False for NULL or a handle that is
/// not a token. Thread-safe, async-signal-safe.
#[no_mangle]
pub extern "C" fn jr_token_is_cancelled(token: *const jr_token) -> bool {
    // SAFETY: a token handle by the contract above; `from_ptr` only reads.
    match unsafe { Handle::<TokenHandle>::from_ptr(token) } {
        Ok(handle) => handle.value.shared.is_cancelled(),
        Err(_) => false,
    }
}

/// Writes why the token was cancelled to `*out` (`JR_REASON_NONE` while it is live).
///
/// Returns `JR_OK`, `JR_E_INVALID_ARG` (not a token, `out` NULL), `JR_E_FORKED`.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn jr_token_reason(token: *const jr_token, out: *mut jr_cancel_reason) -> jr_status {
    status(|| {
        // SAFETY: a token handle by the contract above.
        let token = unsafe { TokenHandle::token_of(token) }?;
        // SAFETY: checked non-null; the caller provides a writable pointer.
        unsafe { write_out(out, jr_cancel_reason::from_reason(token.reason())) }
    })
}

/// Blocks until the token is cancelled, at most `timeout_ns` nanoseconds (negative:
/// forever). Inside a job this blocks the worker: prefer polling `jr_ctx_is_cancelled`.
///
/// Returns `JR_OK` (cancelled), `JR_E_TIMEOUT`, `JR_E_INVALID_ARG` (not a token),
/// `JR_E_FORKED`. Thread-safe.
#[no_mangle]
pub extern "C" fn jr_token_wait(token: *const jr_token, timeout_ns: i64) -> jr_status {
    status(|| {
        // SAFETY: a token handle by the contract above.
        let token = unsafe { TokenHandle::token_of(token) }?;
        match timeout_of(timeout_ns) {
            None => {
                token.wait();
                Ok(())
            }
            Some(timeout) => token
                .wait_timeout(timeout)
                .map(|_| ())
                .ok_or(jr_status::JR_E_TIMEOUT),
        }
    })
}

/// Frees a token handle made by `jr_token_new`. The token itself lives on while jobs,
/// children or other handles use it (it is not cancelled by this). NULL is a no-op.
///
/// Returns `JR_OK`, `JR_E_INVALID_ARG` (not a token, or borrowed from `jr_ctx_token`),
/// `JR_E_FORKED` (made before `fork()`: leaked). Not to be called while another thread
/// uses the handle.
#[no_mangle]
pub extern "C" fn jr_token_free(token: *mut jr_token) -> jr_status {
    status(|| {
        // SAFETY: a token handle or NULL by the contract above; checked before freeing.
        if let Ok(handle) = unsafe { Handle::<TokenHandle>::from_ptr(token) } {
            if handle.value.borrowed {
                return Err(invalid(format_args!(
                    "a borrowed jr_token handle (a context's token) is not freed"
                )));
            }
        }
        // SAFETY: as above; no other thread uses it (the contract).
        drop(unsafe { Handle::<TokenHandle>::free(token) }?);
        Ok(())
    })
}
