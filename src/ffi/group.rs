//! `jr_group`: fan-out/fan-in groups (errgroup).

use std::sync::Mutex;

use super::job::{jr_job, CError, JobHandleC, Owned};
use super::jr_status;
use super::pool::{jr_pool, PoolHandle};
use super::status::invalid;
use super::token::{jr_token, TokenHandle};
use super::{read_versioned, status, timeout_of, versioned, write_out, Handle, Kind};
use crate::{Group, GroupOptions, JobError, Pool};

/// A group of jobs on one pool: jobs join it through `jr_submit_options.group`; it can
/// limit how many run at once, cancel them all, wait for them all (first error), and
/// yield them in completion order. Made by `jr_group_new`, freed by `jr_group_free`.
pub struct jr_group {
    _opaque: [u8; 0],
}

pub(crate) struct GroupHandle {
    pub(crate) group: Group<Owned, CError>,
    pub(crate) pool: Pool,
    /// The first failure, once a wait took it from the group: every later wait reports
    /// it too, and `jr_group_first_error` hands out a copy.
    first_error: Mutex<Option<FirstError>>,
}

/// What a group's first failure was.
struct FirstError {
    status: jr_status,
    code: i32,
    message: Option<std::ffi::CString>,
    reason: Option<crate::CancelReason>,
}

impl FirstError {
    fn to_job_error(&self) -> JobError<CError> {
        match self.status {
            jr_status::JR_E_JOB_FAILED => JobError::Failed(CError {
                code: self.code,
                message: self.message.clone(),
            }),
            jr_status::JR_E_PANICKED => JobError::Panicked(
                self.message
                    .as_ref()
                    .map(|m| m.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            ),
            _ => JobError::Cancelled(self.reason.unwrap_or(crate::CancelReason::Cancelled)),
        }
    }
}

impl Kind for GroupHandle {
    const MAGIC: u64 = 0x6a72_6772_6f75_7001; // "jrgroup\x01"
    const NAME: &'static str = "jr_group";
    type Opaque = jr_group;
}

impl GroupHandle {
    /// The group handle argument `ptr`.
    ///
    /// # Safety
    ///
    /// As [`Handle::from_ptr`].
    pub(crate) unsafe fn of<'a>(ptr: *const jr_group) -> Result<&'a GroupHandle, jr_status> {
        // SAFETY: the caller's contract.
        Ok(&unsafe { Handle::<GroupHandle>::from_ptr(ptr) }?.value)
    }
}

/// Options for `jr_group_new`. Get the defaults from `jr_group_options_default()`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct jr_group_options {
    /// `sizeof(jr_group_options)` as the caller was compiled.
    pub size: usize,
    /// At most this many of the group's jobs run at once; the others wait without
    /// holding a worker (errgroup's `SetLimit`). 0 (default): no limit.
    pub limit: u64,
    /// Nonzero: the first job to fail or panic cancels the group's token, so queued
    /// jobs end cancelled and running ones see `jr_ctx_is_cancelled` (errgroup's
    /// `WithContext`).
    pub fail_fast: i32,
    /// The group's token is a child of this one (NULL: a root).
    pub token: *mut jr_token,
    /// Nonzero: the group keeps no ended job for `jr_group_next` (which then fails with
    /// `JR_E_INVALID_ARG`); each is freed as it ends. For callers that only wait
    /// (`jr_group_wait`, `jr_group_first_error` work as usual), as Go's errgroup does.
    /// 0 (default): ended jobs are kept until `jr_group_next` gives them.
    pub wait_only: i32,
}

versioned!(jr_group_options {
    size,
    limit,
    fail_fast,
    token,
    wait_only,
});

/// The default group options, with `size` set. Thread-safe, never fails.
#[no_mangle]
pub extern "C" fn jr_group_options_default() -> jr_group_options {
    jr_group_options {
        size: std::mem::size_of::<jr_group_options>(),
        limit: 0,
        fail_fast: 0,
        token: std::ptr::null_mut(),
        wait_only: 0,
    }
}

/// Makes a group on `pool`. `options` may be NULL (defaults). The caller owns `*out` and
/// frees it with `jr_group_free`.
///
/// Returns `JR_OK`, `JR_E_INVALID_ARG` (not a pool, `out` NULL, bad options),
/// `JR_E_FORKED`. Thread-safe.
#[no_mangle]
pub extern "C" fn jr_group_new(
    pool: *mut jr_pool,
    options: *const jr_group_options,
    out: *mut *mut jr_group,
) -> jr_status {
    status(|| {
        // SAFETY: a pool handle by the contract above.
        let pool = unsafe { PoolHandle::pool_of(pool) }?;
        // SAFETY: NULL or an options struct of its declared size (the contract).
        let options = unsafe { read_versioned(options, jr_group_options_default()) }?;
        if out.is_null() {
            return Err(invalid(format_args!("out is NULL")));
        }
        let mut rust_options = GroupOptions::new();
        if options.limit > 0 {
            rust_options = rust_options.limit(options.limit);
        }
        if options.fail_fast != 0 {
            rust_options = rust_options.fail_fast();
        }
        if options.wait_only != 0 {
            rust_options = rust_options.wait_only();
        }
        // SAFETY: a token handle or NULL (the contract).
        if let Some(token) = unsafe { TokenHandle::opt_token_of(options.token) }? {
            rust_options = rust_options.token(&token);
        }
        let handle = Handle::into_raw(GroupHandle {
            group: Group::new_yielding_failures(pool, rust_options),
            pool: pool.clone(),
            first_error: Mutex::new(None),
        });
        // SAFETY: checked non-null; the caller provides a writable pointer.
        unsafe { write_out(out, handle) }
    })
}

/// Says no more jobs will join: `jr_group_next` returns `JR_E_CLOSED` once the group is
/// drained, and submits to the group fail with `JR_E_CLOSED`.
///
/// Returns `JR_OK`, `JR_E_INVALID_ARG` (not a group), `JR_E_FORKED`. Thread-safe.
#[no_mangle]
pub extern "C" fn jr_group_close(group: *mut jr_group) -> jr_status {
    status(|| {
        // SAFETY: a group handle by the contract above.
        unsafe { GroupHandle::of(group) }?.group.close();
        Ok(())
    })
}

/// Cancels the group's token: queued jobs end cancelled, running ones are told.
///
/// Returns `JR_OK`, `JR_E_INVALID_ARG` (not a group), `JR_E_FORKED`. Thread-safe.
#[no_mangle]
pub extern "C" fn jr_group_cancel(group: *mut jr_group) -> jr_status {
    status(|| {
        // SAFETY: a group handle by the contract above.
        unsafe { GroupHandle::of(group) }?.group.cancel();
        Ok(())
    })
}

/// Waits, at most `timeout_ns` nanoseconds (negative: forever), until every job
/// submitted to the group so far has ended, and reports the first failure in completion
/// order (a failure is preferred to the cancellations a fail-fast failure causes), as
/// errgroup's `Wait`. Every later call reports the same; `jr_group_first_error` gives
/// that job. Inside a job, the worker runs the group's unstarted jobs while it waits
/// (until the timeout, if any).
///
/// Returns `JR_OK` (every job succeeded), `JR_E_JOB_FAILED`, `JR_E_PANICKED`,
/// `JR_E_CANCELLED` (none failed, some were cancelled), `JR_E_TIMEOUT`,
/// `JR_E_INVALID_ARG` (not a group), `JR_E_FORKED`. Thread-safe.
#[no_mangle]
pub extern "C" fn jr_group_wait(group: *mut jr_group, timeout_ns: i64) -> jr_status {
    status(|| {
        // SAFETY: a group handle by the contract above.
        let handle = unsafe { GroupHandle::of(group) }?;
        let outcome = match timeout_of(timeout_ns) {
            None => handle.group.wait(),
            Some(timeout) => handle
                .group
                .wait_timeout(timeout)
                .map_err(|()| jr_status::JR_E_TIMEOUT)?,
        };
        let mut first = handle.first_error.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(error) = outcome {
            let status = jr_status::from_job_error(&error);
            // A real failure replaces a cancellation seen before it.
            if first.as_ref().is_none_or(|f| {
                f.status == jr_status::JR_E_CANCELLED && status != jr_status::JR_E_CANCELLED
            }) {
                *first = Some(match error {
                    JobError::Failed(CError { code, message }) => FirstError {
                        status,
                        code,
                        message,
                        reason: None,
                    },
                    JobError::Panicked(message) => FirstError {
                        status,
                        code: 0,
                        message: std::ffi::CString::new(message.replace('\0', "")).ok(),
                        reason: None,
                    },
                    JobError::Cancelled(reason) => FirstError {
                        status,
                        code: 0,
                        message: None,
                        reason: Some(reason),
                    },
                });
            }
        }
        match first.as_ref() {
            None => Ok(()),
            Some(first) => Err(first.status),
        }
    })
}

/// Gives a handle to the group's first failure, as a job that has ended (its status,
/// `jr_job_error_code`, `jr_job_error_message`); `*out` is NULL if no job failed or was
/// cancelled. Call after `jr_group_wait`. The caller frees the handle with
/// `jr_job_free`.
///
/// Returns `JR_OK`, `JR_E_INVALID_ARG` (not a group, `out` NULL), `JR_E_FORKED`.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn jr_group_first_error(group: *mut jr_group, out: *mut *mut jr_job) -> jr_status {
    status(|| {
        // SAFETY: a group handle by the contract above.
        let handle = unsafe { GroupHandle::of(group) }?;
        if out.is_null() {
            return Err(invalid(format_args!("out is NULL")));
        }
        let first = handle.first_error.lock().unwrap_or_else(|p| p.into_inner());
        let job = first.as_ref().map_or(std::ptr::null_mut(), |f| {
            Handle::into_raw(JobHandleC::settled(f.to_job_error()))
        });
        // SAFETY: checked non-null; the caller provides a writable pointer.
        unsafe { write_out(out, job) }
    })
}

/// Gives the group's next job to end, in completion order, waiting at most `timeout_ns`
/// nanoseconds (negative: forever). The caller owns `*out` (its result can be taken with
/// `jr_job_take_result`) and frees it with `jr_job_free`. Each job is given once, the
/// failed ones included (`jr_group_wait` and `jr_group_first_error` report a copy of the
/// first failure).
///
/// Returns `JR_OK`, `JR_E_CLOSED` (closed, and every job was given), `JR_E_TIMEOUT`,
/// `JR_E_INVALID_ARG` (not a group, `out` NULL, a `wait_only` group), `JR_E_FORKED`.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn jr_group_next(
    group: *mut jr_group,
    timeout_ns: i64,
    out: *mut *mut jr_job,
) -> jr_status {
    status(|| {
        // SAFETY: a group handle by the contract above.
        let handle = unsafe { GroupHandle::of(group) }?;
        if out.is_null() {
            return Err(invalid(format_args!("out is NULL")));
        }
        if handle.group.is_wait_only() {
            return Err(invalid(format_args!(
                "a wait_only group keeps no ended job for jr_group_next"
            )));
        }
        let next = match timeout_of(timeout_ns) {
            None => handle.group.next(),
            Some(timeout) => handle
                .group
                .next_timeout(timeout)
                .map_err(|()| jr_status::JR_E_TIMEOUT)?,
        };
        let job = next.ok_or(jr_status::JR_E_CLOSED)?;
        // SAFETY: checked non-null; the caller provides a writable pointer.
        unsafe { write_out(out, Handle::into_raw(JobHandleC::owning(job))) }
    })
}

/// Frees a group handle. Its jobs go on; the results nobody took are freed with their
/// `result_free` as the jobs end (or, for a job whose `jr_submit` handle is still held,
/// when that handle is freed). NULL is a no-op.
///
/// Returns `JR_OK`, `JR_E_INVALID_ARG` (not a group), `JR_E_FORKED` (made before
/// `fork()`: leaked). Not to be called while another thread uses the handle.
#[no_mangle]
pub extern "C" fn jr_group_free(group: *mut jr_group) -> jr_status {
    status(|| {
        // SAFETY: a group handle or NULL, used by no other thread (the contract).
        drop(unsafe { Handle::<GroupHandle>::free(group) }?);
        Ok(())
    })
}
