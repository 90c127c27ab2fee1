//! `jr_stream`: generators. A C producer job sends `void *` items on a channel it is
//! lent; the caller reads them lazily with `jr_stream_next`.

use std::ffi::{c_char, c_void, CString};
use std::sync::Mutex;

use super::chan::{jr_chan, ChanHandle, Item};
use super::ctx::jr_ctx;
use super::job::{
    call_c, guarded, jr_free_fn, jr_submit_options, jr_submit_options_default, CError,
};
use super::pool::{jr_pool, PoolHandle};
use super::status::invalid;
use super::{boundary, jr_status, read_versioned, status, timeout_of, write_out, Handle, Kind};
use crate::{JobError, Stream, StreamError};

/// A stream's producer: runs as a job with its context and argument, and sends items on
/// `out` with `jr_chan_send` (lent for the call: never freed, not used after it
/// returns). A send fails with `JR_E_CLOSED` once the reader has freed the stream or the
/// job is asked to stop (`jr_ctx_is_cancelled` is then true); the item is still the
/// producer's. Returns 0 for success (the stream ends after the items sent), any other
/// value as its error code (`jr_ctx_fail` for a message): the reader gets the items
/// sent, then `JR_E_JOB_FAILED`.
pub type jr_stream_fn =
    Option<unsafe extern "C" fn(ctx: *mut jr_ctx, arg: *mut c_void, out: *mut jr_chan) -> i32>;

/// A generator: a producer job and the bounded channel it sends on, read lazily with
/// `jr_stream_next`. Made by `jr_stream_new`, freed by `jr_stream_free` (which stops the
/// producer and destroys the items still buffered).
pub struct jr_stream {
    _opaque: [u8; 0],
}

pub(crate) struct StreamHandle {
    pub(crate) stream: Stream<Item, CError>,
    /// How the producer ended badly, once a read found out: the code and message.
    failure: Mutex<Option<(i32, Option<CString>)>>,
}

impl Kind for StreamHandle {
    const MAGIC: u64 = 0x6a72_7374_726d_0001; // "jrstrm\0\x01"
    const NAME: &'static str = "jr_stream";
    type Opaque = jr_stream;
}

/// The stream of a handle argument.
///
/// # Safety
///
/// As [`Handle::from_ptr`].
pub(crate) unsafe fn stream_of<'a>(ptr: *const jr_stream) -> Result<&'a StreamHandle, jr_status> {
    // SAFETY: the caller's contract.
    Ok(&unsafe { Handle::<StreamHandle>::from_ptr(ptr) }?.value)
}

/// Starts `producer(ctx, arg, chan)` as a job on `pool`, sending into a channel of
/// `capacity` items (at least 1), and makes `*out`, the stream that reads them.
/// `item_free` (nullable) destroys the items nobody reads: those still buffered when
/// the stream is freed. `options` (nullable: defaults) are the producer job's, as for
/// `jr_submit` (token, semaphore, delay, name, queue timeout, `arg_free`,
/// `fn_owns_arg`); it takes no group and no `result_free`. `arg` is the job's: freed
/// with `arg_free` once it ends; on any error it is still the caller's.
///
/// Returns `JR_OK`, `JR_E_INVALID_ARG` (`pool` not a pool, `producer` NULL, `capacity`
/// 0, `out` NULL, a group or `result_free` in `options`, bad options as for
/// `jr_submit`), the submit errors of `jr_submit`, `JR_E_FORKED`. Thread-safe.
#[no_mangle]
pub extern "C" fn jr_stream_new(
    pool: *mut jr_pool,
    producer: jr_stream_fn,
    arg: *mut c_void,
    capacity: usize,
    item_free: jr_free_fn,
    options: *const jr_submit_options,
    out: *mut *mut jr_stream,
) -> jr_status {
    status(|| {
        // SAFETY: NULL or an options struct of its declared size (the contract).
        let options = unsafe { read_versioned(options, jr_submit_options_default()) }?;
        let handle = guarded(arg, options.arg_free, |arg| {
            // SAFETY: a pool handle by the contract above.
            let pool = unsafe { PoolHandle::pool_of(pool) }?;
            let producer = producer.ok_or_else(|| invalid(format_args!("producer is NULL")))?;
            if capacity == 0 || out.is_null() {
                return Err(invalid(format_args!("capacity is 0 or out is NULL")));
            }
            if !options.group.is_null() || options.result_free.is_some() {
                return Err(invalid(format_args!(
                    "a stream's producer takes no group and makes no result (result_free)"
                )));
            }
            // SAFETY: the handles in `options` are valid for the call (the contract).
            let rust_options = unsafe { super::job::submit_options(&options) }?;
            let fn_owns_arg = options.fn_owns_arg != 0;
            let stream = pool
                .stream_with(rust_options, capacity, move |ctx, tx| {
                    let mut arg = arg;
                    let arg = if fn_owns_arg { arg.take() } else { arg.ptr() };
                    call_c(ctx, |ctx_ptr| {
                        let mut chan = Handle::with_magic(
                            ChanHandle::MAGIC,
                            ChanHandle::borrowed(tx.channel().clone(), item_free),
                        );
                        let chan_ptr = (&mut chan as *mut Handle<ChanHandle>).cast::<jr_chan>();
                        // SAFETY: the caller's function, called as `jr_stream_fn` says.
                        let code = unsafe { producer(ctx_ptr, arg, chan_ptr) };
                        chan.retire();
                        (code, ())
                    })
                })
                .map_err(jr_status::from_submit)?;
            Ok(StreamHandle {
                stream,
                failure: Mutex::new(None),
            })
        })?;
        // SAFETY: checked non-null; the caller provides a writable pointer.
        unsafe { write_out(out, Handle::into_raw(handle)) }
    })
}

/// Reads the next item into `*item`, waiting at most `timeout_ns` nanoseconds
/// (negative: forever; 0: not at all). The timeout bounds the whole read, including the
/// wait for a producer asked to stop to return. The caller owns the item it reads. Items come in
/// the order the producer sent them; after the last one, the producer's outcome.
///
/// Returns `JR_OK`; `JR_E_CLOSED` at the end (the producer succeeded, and every item has
/// been read; again on every later call); the producer's end once it ended badly, after
/// its items: `JR_E_JOB_FAILED` (`jr_stream_error_code`, `jr_stream_error_message`),
/// `JR_E_PANICKED`, `JR_E_CANCELLED` (it was cancelled: `jr_stream_cancel`, its token,
/// a shutdown), then `JR_E_CLOSED`; `JR_E_TIMEOUT` (nothing within the timeout; the
/// stream goes on); `JR_E_INVALID_ARG` (not a stream, `item` NULL), `JR_E_FORKED`.
/// Thread-safe: several threads may read one stream (each item goes to one of them).
#[no_mangle]
pub extern "C" fn jr_stream_next(
    stream: *mut jr_stream,
    item: *mut *mut c_void,
    timeout_ns: i64,
) -> jr_status {
    status(|| {
        // SAFETY: a stream handle by the contract above.
        let handle = unsafe { stream_of(stream) }?;
        if item.is_null() {
            return Err(invalid(format_args!("item is NULL")));
        }
        match handle.stream.read(timeout_of(timeout_ns)) {
            // SAFETY: checked non-null; the caller provides a writable pointer.
            Ok(Some(got)) => unsafe { write_out(item, got.take()) },
            Ok(None) => Err(jr_status::JR_E_CLOSED),
            Err(StreamError::Timeout) => Err(jr_status::JR_E_TIMEOUT),
            Err(StreamError::Producer(error)) => {
                let status = jr_status::from_job_error(&error);
                let failure = match error {
                    JobError::Failed(CError { code, message }) => (code, message),
                    JobError::Panicked(message) => {
                        (0, CString::new(message.replace('\0', "")).ok())
                    }
                    JobError::Cancelled(_) => (0, None),
                };
                *handle.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(failure);
                Err(status)
            }
        }
    })
}

/// Asks the producer to stop, as its token's cancel would: a producer not started yet
/// never runs; a running one's sends fail with `JR_E_CLOSED` and it sees
/// `jr_ctx_is_cancelled`. The reader then gets the items buffered, then
/// `JR_E_CANCELLED` (unless the producer had already ended). For a reader that wants to
/// stop without freeing the stream yet (another thread may be in `jr_stream_next`).
///
/// Returns `JR_OK`, `JR_E_INVALID_ARG` (not a stream), `JR_E_FORKED`. Thread-safe.
#[no_mangle]
pub extern "C" fn jr_stream_cancel(stream: *mut jr_stream) -> jr_status {
    status(|| {
        // SAFETY: a stream handle by the contract above.
        let handle = unsafe { stream_of(stream) }?;
        handle.stream.producer().cancel();
        Ok(())
    })
}

/// Writes the code the producer failed with to `*out`, once `jr_stream_next` has
/// returned `JR_E_JOB_FAILED` (0 before that, and for any other end).
///
/// Returns `JR_OK`, `JR_E_INVALID_ARG` (not a stream, `out` NULL), `JR_E_FORKED`.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn jr_stream_error_code(stream: *const jr_stream, out: *mut i32) -> jr_status {
    status(|| {
        // SAFETY: a stream handle by the contract above.
        let handle = unsafe { stream_of(stream) }?;
        if out.is_null() {
            return Err(invalid(format_args!("out is NULL")));
        }
        let failure = handle.failure.lock().unwrap_or_else(|p| p.into_inner());
        let code = failure.as_ref().map_or(0, |(code, _)| *code);
        // SAFETY: checked non-null; the caller provides a writable pointer.
        unsafe { write_out(out, code) }
    })
}

/// The message of the producer's failure (its `jr_ctx_fail` text) or panic, once
/// `jr_stream_next` has returned `JR_E_JOB_FAILED` or `JR_E_PANICKED`; valid until the
/// stream is freed. NULL if there is none, or `stream` is not a stream. Thread-safe.
#[no_mangle]
pub extern "C" fn jr_stream_error_message(stream: *const jr_stream) -> *const c_char {
    boundary(std::ptr::null(), || {
        // SAFETY: a stream handle by the contract above.
        let Ok(handle) = (unsafe { stream_of(stream) }) else {
            return std::ptr::null();
        };
        // Set once by the read that saw the end and never changed: the buffer stays where
        // it is until the stream is freed.
        let failure = handle.failure.lock().unwrap_or_else(|p| p.into_inner());
        failure
            .as_ref()
            .and_then(|(_, message)| message.as_ref())
            .map_or(std::ptr::null(), |m| m.as_ptr())
    })
}

/// Frees the stream: stops the producer if it still runs (as `jr_stream_cancel`; the
/// job goes on until it returns, but its sends fail) and destroys the items still
/// buffered with `item_free`. NULL is a no-op.
///
/// Returns `JR_OK`, `JR_E_INVALID_ARG` (not a stream), `JR_E_FORKED` (made before
/// `fork()`: leaked). Not to be called while another thread uses the handle.
#[no_mangle]
pub extern "C" fn jr_stream_free(stream: *mut jr_stream) -> jr_status {
    status(|| {
        // SAFETY: a stream handle or NULL, used by no other thread (the contract).
        drop(unsafe { Handle::<StreamHandle>::free(stream) }?);
        Ok(())
    })
}
