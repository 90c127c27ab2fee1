//! `jr_sem`: scheduler-aware counting semaphores.

use super::jr_status;
use super::status::invalid;
use super::token::{jr_token, TokenHandle};
use super::{fork, status, timeout_of, write_out, Handle, Kind};
use crate::Semaphore;

/// A counting, weighted, FIFO-fair semaphore, shared by every language in the process.
/// Jobs can wait for its permits without holding a worker (`jr_submit_options.sem`).
/// Made by `jr_sem_new`, freed by `jr_sem_free`.
pub struct jr_sem {
    _opaque: [u8; 0],
}

pub(crate) struct SemHandle {
    sem: Semaphore,
}

impl Kind for SemHandle {
    const MAGIC: u64 = 0x6a72_7365_6d00_0001; // "jrsem\0\0\x01"
    const NAME: &'static str = "jr_sem";
    type Opaque = jr_sem;
}

impl SemHandle {
    /// The semaphore of a handle argument.
    ///
    /// # Safety
    ///
    /// As [`Handle::from_ptr`].
    pub(crate) unsafe fn sem_of<'a>(ptr: *const jr_sem) -> Result<&'a Semaphore, jr_status> {
        // SAFETY: the caller's contract.
        Ok(&unsafe { Handle::<SemHandle>::from_ptr(ptr) }?.value.sem)
    }
}

/// Makes a semaphore with `permits` permits (its total, at least 1). The caller owns
/// `*out` and frees it with `jr_sem_free`.
///
/// Returns `JR_OK`, `JR_E_INVALID_ARG` (`permits` 0, `out` NULL). Thread-safe.
#[no_mangle]
pub extern "C" fn jr_sem_new(permits: u64, out: *mut *mut jr_sem) -> jr_status {
    status(|| {
        if permits == 0 || out.is_null() {
            return Err(invalid(format_args!("permits is 0 or out is NULL")));
        }
        fork::install();
        let handle = Handle::into_raw(SemHandle {
            sem: Semaphore::new(permits),
        });
        // SAFETY: checked non-null; the caller provides a writable pointer.
        unsafe { write_out(out, handle) }
    })
}

/// Takes `n` permits, waiting at most `timeout_ns` nanoseconds (negative: forever) and
/// giving up if `token` (nullable) is cancelled. Requests are served in order: a large
/// one at the head is not overtaken by small ones behind it. Inside a job, the worker
/// runs other work while it waits. Give the permits back with `jr_sem_release`.
///
/// Returns `JR_OK`, `JR_E_TIMEOUT`, `JR_E_CANCELLED`, `JR_E_INVALID_ARG` (not a
/// semaphore or token, `n` 0 or over the total), `JR_E_FORKED`. Thread-safe.
#[no_mangle]
pub extern "C" fn jr_sem_acquire(
    sem: *mut jr_sem,
    n: u64,
    timeout_ns: i64,
    token: *mut jr_token,
) -> jr_status {
    status(|| {
        // SAFETY: a semaphore handle by the contract above.
        let sem = unsafe { SemHandle::sem_of(sem) }?;
        // SAFETY: a token handle or NULL by the contract above.
        let token = unsafe { TokenHandle::opt_token_of(token) }?;
        if n == 0 {
            return Err(invalid(format_args!("n is 0")));
        }
        let timeout = timeout_of(timeout_ns);
        let permit = match (token, timeout) {
            (Some(token), timeout) => sem.acquire_with(n, &token, timeout),
            (None, Some(timeout)) => sem.acquire_timeout(n, timeout),
            (None, None) => sem.acquire(n),
        }
        .map_err(jr_status::from_semaphore)?;
        permit.forget();
        Ok(())
    })
}

/// Takes `n` permits if they are free now (and nobody queues before us).
///
/// Returns `JR_OK`, `JR_E_FULL` (not now), `JR_E_INVALID_ARG` (not a semaphore, `n` 0 or
/// over the total), `JR_E_FORKED`. Thread-safe, never blocks.
#[no_mangle]
pub extern "C" fn jr_sem_try_acquire(sem: *mut jr_sem, n: u64) -> jr_status {
    status(|| {
        // SAFETY: a semaphore handle by the contract above.
        let sem = unsafe { SemHandle::sem_of(sem) }?;
        if n == 0 {
            return Err(invalid(format_args!("n is 0")));
        }
        sem.try_acquire(n)
            .map_err(jr_status::from_semaphore)?
            .forget();
        Ok(())
    })
}

/// Gives back `n` permits taken with `jr_sem_acquire`/`jr_sem_try_acquire`, waking
/// waiters (threads and jobs) in order.
///
/// Returns `JR_OK`, `JR_E_INVALID_ARG` (not a semaphore, `n` 0, or more than were taken:
/// nothing is released then), `JR_E_FORKED`. Thread-safe.
#[no_mangle]
pub extern "C" fn jr_sem_release(sem: *mut jr_sem, n: u64) -> jr_status {
    status(|| {
        // SAFETY: a semaphore handle by the contract above.
        let sem = unsafe { SemHandle::sem_of(sem) }?;
        if n == 0 {
            return Err(invalid(format_args!("n is 0")));
        }
        sem.release(n).map_err(jr_status::from_semaphore)
    })
}

/// Writes the permits free now to `*out`.
///
/// Returns `JR_OK`, `JR_E_INVALID_ARG` (not a semaphore, `out` NULL), `JR_E_FORKED`.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn jr_sem_available(sem: *const jr_sem, out: *mut u64) -> jr_status {
    status(|| {
        // SAFETY: a semaphore handle by the contract above.
        let sem = unsafe { SemHandle::sem_of(sem) }?;
        // SAFETY: checked in `write_out`; the caller provides a writable pointer.
        unsafe { write_out(out, sem.available()) }
    })
}

/// Frees a semaphore handle. The free is deferred: jobs already submitted with it (and
/// waiting for, or holding, its permits) keep the semaphore alive and still get and
/// return their permits. NULL is a no-op.
///
/// Returns `JR_OK`, `JR_E_INVALID_ARG` (not a semaphore), `JR_E_FORKED` (made before
/// `fork()`: leaked). Not to be called while another thread uses the handle (a
/// `jr_sem_acquire` in progress, for one).
#[no_mangle]
pub extern "C" fn jr_sem_free(sem: *mut jr_sem) -> jr_status {
    status(|| {
        // SAFETY: a semaphore handle or NULL, used by no other thread (the contract).
        drop(unsafe { Handle::<SemHandle>::free(sem) }?);
        Ok(())
    })
}
