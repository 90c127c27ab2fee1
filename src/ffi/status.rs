//! Status codes, their names, the detail of the last error, and the library version.

use std::cell::{Cell, RefCell};
use std::ffi::{c_char, c_int};
use std::fmt::{self, Write};

use super::boundary;
use crate::{BuildError, CancelReason, JobError, SemaphoreError, SubmitError};

/// What a call did. Every fallible function returns one; `JR_OK` is 0, every error is
/// positive, and the values are stable across versions (new ones are only added).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum jr_status {
    /// Success.
    JR_OK = 0,
    /// An argument is NULL where it may not be, a handle of the wrong type, an
    /// out-of-range enum value, an absurd size or count, or an options struct whose
    /// extra bytes (from a newer header) are not zero.
    JR_E_INVALID_ARG = 1,
    /// A resource could not be had: memory, a thread, a file descriptor.
    JR_E_NO_MEMORY = 2,
    /// The pool is shutting down or shut down: the job was not accepted.
    JR_E_SHUTDOWN = 3,
    /// A bounded queue is full (a nonblocking submit), or no permits are free (a try
    /// acquire).
    JR_E_FULL = 4,
    /// The wait ended before what it waited for: the job, the permits, the queue room,
    /// the token.
    JR_E_TIMEOUT = 5,
    /// The job ended cancelled, or a wait gave up because its token was cancelled.
    JR_E_CANCELLED = 6,
    /// The job returned a nonzero code (`jr_job_error_code`, `jr_job_error_message`).
    JR_E_JOB_FAILED = 7,
    /// The job panicked (`jr_ctx_panic`, or a panic of a Rust job); the message is in
    /// `jr_job_error_message`.
    JR_E_PANICKED = 8,
    /// Nothing more to come: a group closed and drained, a job or ticker past the point
    /// where cancelling prevents it, a closed group refusing a job.
    JR_E_CLOSED = 9,
    /// A bug in jobrunner (a panic caught at the C boundary). Please report it.
    JR_E_INTERNAL = 10,
    /// The handle was made in the parent before a `fork()`: it cannot be used in the
    /// child (make new ones there; `jr_pool_global()` gives the child its own pool).
    JR_E_FORKED = 11,
    /// Nothing to take now (`jr_chan_try_recv` on an empty channel).
    JR_E_EMPTY = 12,
}

impl jr_status {
    const ALL: [jr_status; 13] = [
        jr_status::JR_OK,
        jr_status::JR_E_INVALID_ARG,
        jr_status::JR_E_NO_MEMORY,
        jr_status::JR_E_SHUTDOWN,
        jr_status::JR_E_FULL,
        jr_status::JR_E_TIMEOUT,
        jr_status::JR_E_CANCELLED,
        jr_status::JR_E_JOB_FAILED,
        jr_status::JR_E_PANICKED,
        jr_status::JR_E_CLOSED,
        jr_status::JR_E_INTERNAL,
        jr_status::JR_E_FORKED,
        jr_status::JR_E_EMPTY,
    ];

    /// The status's name and meaning, NUL-terminated.
    pub(crate) fn text(self) -> &'static [u8] {
        match self {
            jr_status::JR_OK => b"JR_OK: success\0",
            jr_status::JR_E_INVALID_ARG => b"JR_E_INVALID_ARG: invalid argument\0",
            jr_status::JR_E_NO_MEMORY => b"JR_E_NO_MEMORY: out of memory or threads\0",
            jr_status::JR_E_SHUTDOWN => b"JR_E_SHUTDOWN: the pool is shut down\0",
            jr_status::JR_E_FULL => b"JR_E_FULL: full\0",
            jr_status::JR_E_TIMEOUT => b"JR_E_TIMEOUT: timed out\0",
            jr_status::JR_E_CANCELLED => b"JR_E_CANCELLED: cancelled\0",
            jr_status::JR_E_JOB_FAILED => b"JR_E_JOB_FAILED: the job failed\0",
            jr_status::JR_E_PANICKED => b"JR_E_PANICKED: the job panicked\0",
            jr_status::JR_E_CLOSED => b"JR_E_CLOSED: closed\0",
            jr_status::JR_E_INTERNAL => b"JR_E_INTERNAL: internal error in jobrunner\0",
            jr_status::JR_E_FORKED => {
                b"JR_E_FORKED: the handle was made before fork() in the parent\0"
            }
            jr_status::JR_E_EMPTY => b"JR_E_EMPTY: nothing to take now\0",
        }
    }

    pub(crate) fn from_submit(error: SubmitError) -> Self {
        match error {
            SubmitError::Shutdown => jr_status::JR_E_SHUTDOWN,
            SubmitError::Full => jr_status::JR_E_FULL,
            SubmitError::Timeout => jr_status::JR_E_TIMEOUT,
            SubmitError::Cancelled => jr_status::JR_E_CANCELLED,
            SubmitError::GroupClosed => jr_status::JR_E_CLOSED,
            error @ (SubmitError::TooManyPermits { .. } | SubmitError::ZeroPeriod) => {
                invalid(format_args!("{error}"))
            }
        }
    }

    pub(crate) fn from_build(error: &BuildError) -> Self {
        match error {
            BuildError::Spawn(_) => note(jr_status::JR_E_NO_MEMORY, format_args!("{error}")),
            _ => invalid(format_args!("{error}")),
        }
    }

    pub(crate) fn from_semaphore(error: SemaphoreError) -> Self {
        match error {
            SemaphoreError::WouldBlock => jr_status::JR_E_FULL,
            SemaphoreError::Timeout => jr_status::JR_E_TIMEOUT,
            SemaphoreError::Cancelled(_) => jr_status::JR_E_CANCELLED,
            _ => invalid(format_args!("{error}")),
        }
    }

    pub(crate) fn from_job_error<E>(error: &JobError<E>) -> Self {
        match error {
            JobError::Failed(_) => jr_status::JR_E_JOB_FAILED,
            JobError::Panicked(_) => jr_status::JR_E_PANICKED,
            JobError::Cancelled(_) => jr_status::JR_E_CANCELLED,
        }
    }
}

// ----- the detail of the last error ------------------------------------------------------

/// The longest detail kept, terminating NUL included; longer ones are cut at a character.
const DETAIL_CAP: usize = 256;

thread_local! {
    /// The detail of the last failed call on this thread, NUL-terminated. Fixed-size and
    /// without a destructor: recording it never allocates.
    static LAST_ERROR: RefCell<[u8; DETAIL_CAP]> = const { RefCell::new([0; DETAIL_CAP]) };
    /// Whether the call in progress on this thread recorded a detail of its own.
    static NOTED: Cell<bool> = const { Cell::new(false) };
}

/// Writes into a fixed buffer, dropping what does not fit (at a character boundary).
struct Bounded<'a> {
    buf: &'a mut [u8; DETAIL_CAP],
    len: usize,
}

impl Write for Bounded<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = DETAIL_CAP - 1 - self.len;
        let mut take = s.len().min(room);
        while !s.is_char_boundary(take) {
            take -= 1;
        }
        self.buf[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}

/// Records the detail of a failing call for `jr_last_error_message`, and returns
/// `status`: `return Err(note(JR_E_INVALID_ARG, format_args!("...")))`.
pub(crate) fn note(status: jr_status, detail: fmt::Arguments<'_>) -> jr_status {
    // `try_with`: a call made while the thread exits records nothing.
    let _ = LAST_ERROR.try_with(|last| {
        let Ok(mut buf) = last.try_borrow_mut() else {
            return;
        };
        let mut out = Bounded {
            buf: &mut buf,
            len: 0,
        };
        let _ = out.write_fmt(detail);
        let end = out.len;
        buf[end] = 0;
    });
    let _ = NOTED.try_with(|noted| noted.set(true));
    status
}

/// `JR_E_INVALID_ARG` with a detail saying which argument and why.
pub(crate) fn invalid(detail: fmt::Arguments<'_>) -> jr_status {
    note(jr_status::JR_E_INVALID_ARG, detail)
}

/// Starts a call that reports through a status (see `ffi::status`).
pub(crate) fn begin_call() {
    let _ = NOTED.try_with(|noted| noted.set(false));
}

/// Ends such a call: a failure without a detail of its own records the status's text.
pub(crate) fn end_call(status: jr_status) {
    if status != jr_status::JR_OK && !NOTED.try_with(Cell::get).unwrap_or(true) {
        let text = status.text();
        let text = std::str::from_utf8(&text[..text.len() - 1]).unwrap_or("");
        note(status, format_args!("{text}"));
    }
}

/// A short description of the last error on the calling thread: which argument of which
/// kind was wrong and why (`"not a live jr_pool handle: a jr_job handle"`, `"permits is
/// 0"`, ...), or for other failures the status's text. The string belongs to the library
/// and stays valid until the next failing call on this thread; `""` if no call has
/// failed on it.
///
/// Read it right after a call returned a status other than `JR_OK`: successful calls do
/// not clear it, so it says nothing about whether the last call failed. A job's own
/// error is not here (it happened on another thread): read it from its handle with
/// `jr_job_error_code` and `jr_job_error_message`. Thread-safe (each thread has its own);
/// never NULL. Not async-signal-safe; the async-signal-safe functions never set it.
#[no_mangle]
pub extern "C" fn jr_last_error_message() -> *const c_char {
    static EMPTY: &[u8] = b"\0";
    LAST_ERROR
        .try_with(|last| last.as_ptr().cast::<c_char>().cast_const())
        .unwrap_or(EMPTY.as_ptr().cast())
}

/// Why a token was cancelled.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum jr_cancel_reason {
    /// Not cancelled.
    JR_REASON_NONE = 0,
    /// `jr_token_cancel`, `jr_job_cancel`, `jr_group_cancel`, or the same on an ancestor.
    JR_REASON_CANCELLED = 1,
    /// The token's deadline (or an ancestor's) passed.
    JR_REASON_DEADLINE = 2,
    /// The pool shut down with `JR_SHUTDOWN_CANCEL`.
    JR_REASON_SHUTDOWN = 3,
    /// A job of the same fail-fast group failed.
    JR_REASON_SIBLING_FAILED = 4,
}

impl jr_cancel_reason {
    pub(crate) fn from_reason(reason: Option<CancelReason>) -> Self {
        match reason {
            None => jr_cancel_reason::JR_REASON_NONE,
            Some(CancelReason::DeadlineExceeded) => jr_cancel_reason::JR_REASON_DEADLINE,
            Some(CancelReason::Shutdown) => jr_cancel_reason::JR_REASON_SHUTDOWN,
            Some(CancelReason::SiblingFailed) => jr_cancel_reason::JR_REASON_SIBLING_FAILED,
            Some(_) => jr_cancel_reason::JR_REASON_CANCELLED,
        }
    }
}

/// The name and meaning of a status, e.g. `"JR_E_TIMEOUT: timed out"`: a static string,
/// never NULL (`"unknown status"` for a value that is not a `jr_status`). The parameter
/// is an `int` so that any value may be passed. Thread-safe, async-signal-safe.
#[no_mangle]
pub extern "C" fn jr_status_str(status: c_int) -> *const c_char {
    static UNKNOWN: &[u8] = b"unknown status\0";
    boundary(UNKNOWN.as_ptr().cast(), || {
        let text = jr_status::ALL
            .iter()
            .find(|s| **s as c_int == status)
            .map_or(UNKNOWN, |s| s.text());
        text.as_ptr().cast()
    })
}

/// The library's version, `"MAJOR.MINOR.PATCH"`: a static string. Compare its major
/// number with `JR_VERSION_MAJOR` to check that the library loaded matches the header.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn jr_version() -> *const c_char {
    static VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    VERSION.as_ptr().cast()
}
