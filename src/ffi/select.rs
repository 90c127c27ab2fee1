//! `jr_wait_any`: Go's `select` over jobs, groups, channels, streams, pipelines and tokens.

use std::ffi::c_void;
use std::sync::Arc;

use once_cell::sync::Lazy;

use super::chan::{chan_of, ChanHandle};
use super::group::{jr_group, GroupHandle};
use super::job::{jr_job, JobHandleC};
use super::pipeline::{CPipeline, PipelineHandle};
use super::status::invalid;
use super::stream::{stream_of, StreamHandle};
use super::token::{jr_token, TokenHandle};
use super::{jr_status, status, timeout_of, write_out};
use crate::{wait_any, CancelToken, JobHandle, Waitable};

/// What a `jr_waitable` waits for.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum jr_wait_kind {
    /// `handle` is a `jr_job *`: ready once the job has ended (not a periodic job's).
    JR_WAIT_JOB = 0,
    /// `handle` is a `jr_group *`: ready when `jr_group_next` would not wait (a job has
    /// ended, or the group is closed and drained). A `wait_only` group keeps no ended job:
    /// it is ready only once closed and drained (when `jr_group_wait` would not wait).
    JR_WAIT_GROUP = 1,
    /// `handle` is a `jr_chan *`: ready when a receive would not wait (an item is
    /// buffered, or the channel is closed).
    JR_WAIT_CHAN_RECV = 2,
    /// `handle` is a `jr_chan *`: ready when a send would not wait (there is room, or
    /// the channel is closed).
    JR_WAIT_CHAN_SEND = 3,
    /// `handle` is a `jr_token *`: ready once the token is cancelled.
    JR_WAIT_TOKEN = 4,
    /// `handle` is a `jr_stream *`: ready when `jr_stream_next` would not wait (an item
    /// is buffered, or the producer has ended).
    JR_WAIT_STREAM = 5,
    /// `handle` is a `jr_pipeline *`: ready when `jr_pipeline_next` would not wait (an
    /// item has come out, the pipeline failed, or it drained after `close_input`). A
    /// pipeline still being built starts (no more stages), as with `jr_pipeline_next`.
    JR_WAIT_PIPELINE = 6,
}

/// One thing `jr_wait_any` waits for: a kind (a `jr_wait_kind`, as an integer so that a
/// bad value is refused, not undefined) and the handle it names, borrowed for the call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct jr_waitable {
    /// A `jr_wait_kind`.
    pub kind: u32,
    /// The handle of that kind.
    pub handle: *const c_void,
}

/// The most items one call takes.
pub const JR_WAIT_MAX: usize = 65_536;

/// A handle as `jr_wait_any` holds it for the call.
enum Source<'a> {
    Job(JobHandle),
    Ended,
    Group(&'a GroupHandle),
    Chan(&'a ChanHandle, bool),
    Token(CancelToken),
    Stream(&'a StreamHandle),
    Pipeline(Arc<CPipeline>),
}

/// Always cancelled: what a handle that has ended already waits for.
static ENDED: Lazy<CancelToken> = Lazy::new(|| {
    let token = CancelToken::new();
    token.cancel();
    token
});

/// Waits until one of the `n` waitables of `items` is ready, or `timeout_ns` nanoseconds
/// pass (negative: no limit; 0: only look), and writes the index of a ready one (the
/// first in order) to `*ready`. Level-triggered, as `poll(2)`: "ready" says the
/// operation would not wait now; when several threads consume the same thing another may
/// act first, so follow with the non-blocking operation (`jr_chan_try_recv`,
/// `jr_group_next` with timeout 0, ...) and call again if it finds nothing. Inside a job,
/// a spare worker runs in the waiting worker's place (as for a channel wait). The
/// handles are borrowed for the call: none may be freed meanwhile.
///
/// Returns `JR_OK`, `JR_E_TIMEOUT` (nothing ready in time), `JR_E_INVALID_ARG` (`items`
/// NULL with `n` above 0, `n` above `JR_WAIT_MAX`, `ready` NULL, a kind out of range, a
/// handle not of its kind, a periodic job's handle, `n` 0 with no timeout: nothing could
/// ever be ready), `JR_E_FORKED`. Thread-safe.
#[no_mangle]
pub extern "C" fn jr_wait_any(
    items: *const jr_waitable,
    n: usize,
    timeout_ns: i64,
    ready: *mut usize,
) -> jr_status {
    status(|| {
        if ready.is_null() || (items.is_null() && n > 0) || n > JR_WAIT_MAX {
            return Err(invalid(format_args!(
                "ready is NULL, items is NULL, or n ({n}) is above JR_WAIT_MAX"
            )));
        }
        let timeout = timeout_of(timeout_ns);
        if n == 0 && timeout.is_none() {
            return Err(invalid(format_args!(
                "no items and no timeout: the wait would never end"
            )));
        }
        let items = if n == 0 {
            &[][..]
        } else {
            // SAFETY: the caller gives `n` readable items at `items` (checked non-null).
            unsafe { std::slice::from_raw_parts(items, n) }
        };
        let sources = items
            .iter()
            // SAFETY: a handle of the item's kind, by the contract above; each check
            // reads its tag before anything else.
            .map(|item| unsafe { source_of(item) })
            .collect::<Result<Vec<_>, _>>()?;
        let waitables: Vec<Waitable<'_>> = sources
            .iter()
            .map(|source| match source {
                Source::Job(job) => Waitable::handle(job),
                Source::Ended => Waitable::token(&ENDED),
                Source::Group(group) => Waitable::group(&group.group),
                Source::Chan(chan, false) => Waitable::recv(chan.channel()),
                Source::Chan(chan, true) => Waitable::send(chan.channel()),
                Source::Token(token) => Waitable::token(token),
                Source::Stream(stream) => Waitable::stream(&stream.stream),
                Source::Pipeline(pipeline) => Waitable::pipeline(pipeline),
            })
            .collect();
        match wait_any(&waitables, timeout) {
            // SAFETY: checked non-null; the caller provides a writable pointer.
            Some(index) => unsafe { write_out(ready, index) },
            None => Err(jr_status::JR_E_TIMEOUT),
        }
    })
}

/// The handle of `item`, checked against its kind.
///
/// # Safety
///
/// `item.handle` is NULL or points at readable memory of at least two words.
unsafe fn source_of<'a>(item: &jr_waitable) -> Result<Source<'a>, jr_status> {
    let ptr = item.handle;
    Ok(match item.kind {
        0 => {
            // SAFETY: the caller's contract; `of` checks the tag first.
            let job = unsafe { JobHandleC::of(ptr.cast::<jr_job>()) }?;
            match job.for_wait()? {
                Some(job) => Source::Job(job),
                None => Source::Ended,
            }
        }
        // SAFETY: the caller's contract; `of` checks the tag first.
        1 => Source::Group(unsafe { GroupHandle::of(ptr.cast::<jr_group>()) }?),
        // SAFETY: as above.
        2 => Source::Chan(unsafe { chan_of(ptr.cast()) }?, false),
        // SAFETY: as above.
        3 => Source::Chan(unsafe { chan_of(ptr.cast()) }?, true),
        // SAFETY: as above.
        4 => Source::Token(unsafe { TokenHandle::token_of(ptr.cast::<jr_token>()) }?),
        // SAFETY: as above.
        5 => Source::Stream(unsafe { stream_of(ptr.cast()) }?),
        // SAFETY: as above.
        6 => Source::Pipeline(unsafe { PipelineHandle::of(ptr.cast()) }?.running()?),
        other => {
            return Err(invalid(format_args!(
                "kind {other} is not a jr_wait_kind (0 to 6)"
            )))
        }
    })
}
