//! The errors of the public API.

use crate::cancel::CancelReason;

/// Why a submit was refused. A refused closure is dropped without running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// The pool is shutting down or shut down.
    #[error("the pool is shut down")]
    Shutdown,
    /// The pool's queue is full (`try_submit`, or a submit with a zero timeout).
    #[error("the pool's queue is full")]
    Full,
    /// The queue stayed full for the whole submit timeout.
    #[error("timed out waiting for room in the pool's queue")]
    Timeout,
    /// The submit's token was cancelled while it waited for room in the queue.
    #[error("cancelled while waiting for room in the pool's queue")]
    Cancelled,
    /// The job asks a semaphore for more permits than it has in all: it could never run.
    #[error("{requested} permits requested from a semaphore of {total}")]
    TooManyPermits {
        /// The permits asked for.
        requested: u64,
        /// The semaphore's total.
        total: u64,
    },
    /// A submit to a group after `Group::close`.
    #[error("the group is closed")]
    GroupClosed,
    /// `submit_every` with a zero period.
    #[error("a periodic job needs a period above zero")]
    ZeroPeriod,
}

/// How a job that did not succeed ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError<E> {
    /// The closure returned `Err`; this is its error value.
    #[error("job failed: {0}")]
    Failed(E),
    /// The closure panicked; this is the panic message.
    #[error("job panicked: {0}")]
    Panicked(String),
    /// The job was cancelled: before it ran, or it returned an error after it had been
    /// asked to stop.
    #[error("job cancelled: {0}")]
    Cancelled(CancelReason),
}

impl<E> JobError<E> {
    /// The job's own error value, if it failed.
    pub fn failed(self) -> Option<E> {
        match self {
            JobError::Failed(error) => Some(error),
            _ => None,
        }
    }

    /// Whether the job was cancelled.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, JobError::Cancelled(_))
    }
}

/// Why a pool could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// `threads(0)`.
    #[error("a pool needs at least one thread")]
    ZeroThreads,
    /// `queue_capacity(0)`.
    #[error("queue_capacity must be at least 1 (leave it unset for an unbounded queue)")]
    ZeroCapacity,
    /// `JOBRUNNER_THREADS` is set to something other than a positive integer.
    #[error("JOBRUNNER_THREADS={value:?} is not a positive integer (unset it, or set it to the number of worker threads, e.g. JOBRUNNER_THREADS=4)")]
    InvalidThreadsVar {
        /// The value found in the environment.
        value: String,
    },
    /// The operating system refused to start a worker thread.
    #[error("could not start a worker thread: {0}")]
    Spawn(String),
}
