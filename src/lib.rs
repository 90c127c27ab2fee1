//! An embeddable work-stealing job runner, shared by every language in the process.
//!
//! One [`Pool`] of worker threads runs jobs submitted from Rust (this crate), and through
//! the C ABI from C, Python and Go: one scheduler, one set of semaphores and one
//! cancellation tree for all of them.
//!
//! - [`Pool::submit`] returns a [`Job`] handle to wait on ([`Job::wait`]), cancel, or
//!   drop (detach). Jobs get a [`Context`] to see cancellation and submit more work.
//! - [`CancelToken`]s form a tree with deadlines and reasons; cancelling one ends the
//!   queued jobs under it at once and tells the running ones.
//! - Waiting inside a job never blocks its worker: a job not yet started is run inline,
//!   otherwise the worker helps under the pool's [`HelpPolicy`].
//! - [`join`] and [`Context::join`] fork-join with no allocation.
//! - [`Pipeline`]s chain stages with their own concurrency, ordered or not, under a
//!   bound on the items in flight; their stages run as short jobs on the pool.
//! - [`Pool::shutdown`] drains or cancels and reports what it found.
//! - [`Channel`]s are bounded MPMC queues; a job waiting on one lends its place to a
//!   spare worker, so jobs talking over channels cannot deadlock a small pool.
//! - [`Pool::stream`] runs a generator read lazily as a [`Stream`]; [`wait_any`] is
//!   Go's `select` over jobs, groups, channels, streams and tokens.
//!
//! # Examples
//!
//! ```
//! use jobrunner::{CancelToken, Pool, SubmitOptions};
//! use std::time::Duration;
//!
//! let pool = Pool::builder().threads(2).queue_capacity(64).build()?;
//! let token = CancelToken::with_timeout(Duration::from_secs(5));
//! let jobs: Vec<_> = (0..10u64)
//!     .map(|i| pool.submit_with(SubmitOptions::new().token(&token), move |ctx| {
//!         if ctx.is_cancelled() {
//!             return Err("stopped");
//!         }
//!         Ok(i * i)
//!     }))
//!     .collect::<Result<_, _>>()?;
//! let total: u64 = jobs.into_iter().map(|job| job.wait().unwrap()).sum();
//! assert_eq!(total, 285);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![cfg_attr(loom, allow(dead_code, unused_imports, unreachable_pub))]

mod sync;

mod cancel;
mod channel;
#[cfg(not(loom))]
mod context;
#[cfg(not(loom))]
mod error;
mod few;
#[cfg(all(feature = "capi", not(loom)))]
pub mod ffi;
mod group;
mod handoff;
mod job;
#[cfg(not(loom))]
mod join;
mod parking;
#[cfg(all(test, not(loom)))]
mod pause;
#[cfg(not(loom))]
mod pipeline;
mod pool;
#[cfg(not(loom))]
mod process;
#[cfg(not(loom))]
mod select;
mod semaphore;
mod slab;
#[cfg(not(loom))]
mod stats;
#[cfg(not(loom))]
mod stream;
#[cfg(not(loom))]
mod ticker;
#[cfg(not(loom))]
mod timer;
#[cfg(not(loom))]
mod unwind;

#[cfg(not(loom))]
pub use crate::cancel::{CallbackKey, CancelReason, CancelToken};

#[cfg(not(loom))]
pub use crate::channel::{
    Channel, IntoIter as ChannelIntoIter, Iter as ChannelIter, RecvError, SendError,
};
#[cfg(not(loom))]
pub use crate::context::Context;
#[cfg(not(loom))]
pub use crate::error::{BuildError, JobError, SubmitError};
#[cfg(not(loom))]
pub use crate::group::{Group, GroupOptions, Iter as GroupIter};
#[cfg(not(loom))]
pub use crate::job::{Job, JobHandle, JobState};
#[cfg(not(loom))]
pub use crate::join::join;
#[cfg(not(loom))]
pub use crate::pipeline::{NextError, Pipeline, PipelineBuilder, PushError, DEFAULT_MAX_IN_FLIGHT};
#[cfg(not(loom))]
pub use crate::pool::{
    global, try_global, HelpPolicy, PanicPolicy, Pool, PoolBuilder, ShutdownMode, ShutdownReport,
    SubmitOptions, ThreadHooksKey,
};
#[cfg(not(loom))]
pub use crate::select::{wait_any, Waitable};
#[cfg(not(loom))]
pub use crate::semaphore::{Permit, Semaphore, SemaphoreError};
#[cfg(not(loom))]
pub use crate::stats::Stats;
#[cfg(not(loom))]
pub use crate::stream::{Stream, StreamError, StreamSender};
#[cfg(not(loom))]
pub use crate::ticker::Ticker;

/// For leak tests: the first call starts counting jobs' memory blocks, and every call
/// returns how many of the blocks allocated since then are not yet freed. Once every
/// pool is shut down and every handle dropped, it is back to what it was. Counting costs
/// each job a relaxed load of a flag until the first call, and one atomic add after.
#[cfg(not(loom))]
#[doc(hidden)]
pub fn debug_live_jobs() -> isize {
    crate::job::live_jobs()
}

/// The README's code samples, compiled and run as doc tests so that the README stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
