//! What a running job sees of itself and its pool.

use std::fmt;
use std::num::NonZeroU16;

use crate::cancel::{CancelReason, CancelToken};
use crate::job::Header;
use crate::pool::worker::WorkerThread;
use crate::pool::Pool;

/// The view a running job has of itself: cancellation, its pool, its worker.
///
/// A job decides itself how to stop when cancelled: poll [`Context::is_cancelled`] or
/// hand [`Context::token`] to whatever it blocks on. A job that returns an error after it
/// was cancelled ends `Cancelled`, not `Failed`.
pub struct Context<'a> {
    header: &'a Header,
    worker: &'a WorkerThread,
}

impl fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("name", &self.name())
            .field("worker_index", &self.worker_index())
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

impl<'a> Context<'a> {
    pub(crate) fn new(header: &'a Header, worker: &'a WorkerThread) -> Self {
        Context { header, worker }
    }

    /// Whether the job should stop: it was cancelled (`Job::cancel`), its token (or an
    /// ancestor) was cancelled or passed its deadline, or the pool is shutting down in
    /// `Cancel` mode.
    #[inline]
    pub fn is_cancelled(&self) -> bool {
        self.header.cancel_reason(self.worker.registry()).is_some()
    }

    /// Why the job should stop, if it should.
    pub fn cancel_reason(&self) -> Option<CancelReason> {
        self.header.cancel_reason(self.worker.registry())
    }

    /// A token cancelled whenever [`Context::is_cancelled`] turns true: a child of the
    /// submit token, also cancelled by `Job::cancel` and by a `Cancel` shutdown. Made on
    /// first use; cheap to clone and hand to blocking calls.
    pub fn token(&self) -> CancelToken {
        self.header.own_token(self.worker.registry())
    }

    /// The pool running the job, to submit more work to it.
    pub fn pool(&self) -> &Pool {
        Pool::from_registry(self.worker.registry_arc())
    }

    /// The index of the worker running the job: `0..threads` for the configured workers,
    /// higher for a spare (one that runs while a job blocks in a channel wait).
    pub fn worker_index(&self) -> usize {
        self.worker.index()
    }

    /// The job's name, if it was given one at submit.
    pub fn name(&self) -> Option<&str> {
        self.header.name()
    }

    /// The number of this run (0, 1, 2, ...) in a periodic job (`Pool::submit_every`);
    /// `None` in any other job.
    pub fn tick(&self) -> Option<u64> {
        self.header.tick()
    }

    /// Runs on this thread, one after another and each to its end, up to `max` jobs of
    /// `kind` (see [`SubmitOptions::kind`](crate::SubmitOptions::kind)) that are ready
    /// now in this worker's own queue or the pool's shared queue, and returns how many
    /// ran. It stops at the first job of another kind (left queued, for this worker or
    /// any other) and when nothing is ready; it never waits. Each job goes through its
    /// whole life as when a worker picks it up: a job cancelled meanwhile ends
    /// `Cancelled` without running (not counted).
    ///
    /// For many small jobs whose start costs more than their work (a job that enters an
    /// interpreter, say): the thread pays that cost once per batch. Call it last, when
    /// the job's own work is done and it holds nothing another job may need: this job
    /// ends only when the call returns, and the jobs it runs run on its stack. Called
    /// from a job that a `run_queued` is running, it runs nothing and returns 0.
    pub fn run_queued(&self, kind: NonZeroU16, max: usize) -> usize {
        self.worker.run_queued(kind.get(), max)
    }

    /// Whether the calling thread is the one running this job. Always true in Rust (a
    /// `Context` is not `Send`); for the C API, whose job context may be used from any
    /// thread while the job runs.
    pub fn is_current_thread(&self) -> bool {
        WorkerThread::current().is_some_and(|worker| std::ptr::eq(worker, self.worker))
    }

    /// Runs `a` and `b`, potentially in parallel, and returns both results: `b` is offered
    /// to other workers while this one runs `a`, and taken back if nobody stole it. The
    /// second closure lives on this stack frame: no allocation. Panics as in
    /// [`crate::join`].
    pub fn join<A, B, RA, RB>(&self, a: A, b: B) -> (RA, RB)
    where
        A: FnOnce() -> RA + Send,
        B: FnOnce() -> RB + Send,
        RA: Send,
        RB: Send,
    {
        crate::join::join_on(self.worker, a, b)
    }
}
