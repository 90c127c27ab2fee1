//! The pool: its public handle, its options, shutdown; the registry, workers and sleep
//! protocol live in the submodules.

#[cfg(not(loom))]
pub(crate) mod activity;
#[cfg(not(loom))]
mod builder;
mod compensation;
#[cfg(not(loom))]
mod global;
pub(crate) mod lifecycle;
#[cfg(not(loom))]
pub(crate) mod registry;
pub(crate) mod sleep;
#[cfg(not(loom))]
pub(crate) mod worker;

#[cfg(not(loom))]
pub use self::builder::PoolBuilder;
#[cfg(all(feature = "capi", not(loom)))]
pub(crate) use self::global::build_global;
#[cfg(not(loom))]
pub use self::global::{global, try_global};
#[cfg(not(loom))]
pub use self::handle::*;

#[cfg(not(loom))]
mod handle {
    use std::fmt;
    use std::num::NonZeroU16;
    use std::sync::Arc;
    use std::time::Duration;

    #[cfg(feature = "capi")]
    use super::registry::HookTag;
    use super::registry::{Registry, ThreadHooks};
    use super::worker::WorkerThread;
    use super::PoolBuilder;
    use crate::cancel::CancelToken;
    use crate::context::Context;
    use crate::error::SubmitError;
    use crate::group::{Group, GroupOptions};
    use crate::job::{Job, JobHandle};
    use crate::semaphore::Semaphore;
    use crate::stats::Stats;
    use crate::stream::{Stream, StreamSender};
    use crate::sync::atomic::Ordering;
    use crate::ticker::Ticker;
    use crate::unwind;

    /// What a job waiting for another job does while it waits (see the README's
    /// "Help policy" section for the measurements behind the default).
    ///
    /// Whatever the policy, a waited-for job that has not started is run inline by its
    /// waiter, so nested submit-and-wait never deadlocks, even on one thread.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    #[non_exhaustive]
    pub enum HelpPolicy {
        /// Run any queued job (as rayon and oneTBB do). Keeps every worker busy, but a job
        /// that waits while holding a lock may run an unrelated job that takes the same
        /// lock (rayon#592), or sit behind a long unrelated job.
        Any,
        /// Run only jobs pushed by the waiting job's own subtree (like oneTBB's
        /// `isolate`): no lock re-entry or priority inversion through unrelated work. When
        /// none is left the worker blocks until the awaited job ends.
        #[default]
        Own,
        /// Never help: block the worker until the awaited job ends.
        Block,
    }

    /// What happens when a job panics. The job always ends `Panicked` with the message;
    /// the worker always survives, except under `Abort`.
    #[derive(Clone, Default)]
    #[non_exhaustive]
    pub enum PanicPolicy {
        /// Keep the panic in the job's outcome only.
        #[default]
        Capture,
        /// Also call this handler with the panic message (on the worker, just before the
        /// job ends `Panicked`; a panic in the handler itself is ignored).
        Handler(Arc<dyn Fn(&str) + Send + Sync>),
        /// Print the message and abort the process: Go's crash-early semantics.
        Abort,
    }

    impl fmt::Debug for PanicPolicy {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(match self {
                PanicPolicy::Capture => "Capture",
                PanicPolicy::Handler(_) => "Handler",
                PanicPolicy::Abort => "Abort",
            })
        }
    }

    impl PanicPolicy {
        pub(crate) fn handle(&self, message: &str, job_name: Option<&str>) {
            match self {
                PanicPolicy::Capture => {}
                PanicPolicy::Handler(handler) => {
                    let _ = unwind::halt_unwinding(|| handler(message));
                }
                PanicPolicy::Abort => {
                    eprintln!(
                        "jobrunner: job {} panicked: {message}; aborting (PanicPolicy::Abort)",
                        job_name.unwrap_or("<unnamed>")
                    );
                    std::process::abort();
                }
            }
        }
    }

    /// Says which thread hooks [`Pool::remove_thread_hooks`] removes: what
    /// [`Pool::add_thread_hooks`] or [`Pool::add_park_hook`] returned.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct ThreadHooksKey(usize);

    /// How [`Pool::shutdown`] treats the jobs it finds.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    #[non_exhaustive]
    pub enum ShutdownMode {
        /// Refuse new submits, run everything accepted (delayed jobs when they come due),
        /// then stop the workers. Jobs of the pool may still submit (their subtrees are
        /// part of what drains).
        Drain,
        /// Refuse all submits, end every queued and delayed job as `Cancelled(Shutdown)`,
        /// cancel the pool's root token (running jobs see `ctx.is_cancelled()`), and wait
        /// for the running jobs.
        Cancel,
        /// `Drain` until the timeout, then `Cancel` what is left.
        DrainThenCancel,
    }

    /// What a shutdown found, counted from when it started.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    #[non_exhaustive]
    pub struct ShutdownReport {
        /// Jobs that ran to an end during the shutdown.
        pub completed: u64,
        /// Jobs that ended `Cancelled` without running during the shutdown.
        pub cancelled: u64,
        /// Jobs still running when the shutdown returned (its timeout passed).
        pub still_running: u64,
        /// Jobs still queued or delayed when the shutdown returned (a `Drain` whose
        /// timeout passed: they will still run).
        pub still_queued: u64,
    }

    impl ShutdownReport {
        /// Whether every job had ended when the shutdown returned (the workers stopped).
        pub fn is_complete(&self) -> bool {
            self.still_running == 0 && self.still_queued == 0
        }
    }

    /// Options of [`Pool::submit_with`].
    #[derive(Clone, Default)]
    pub struct SubmitOptions {
        pub(crate) token: Option<CancelToken>,
        pub(crate) delay: Option<Duration>,
        pub(crate) name: Option<Arc<str>>,
        pub(crate) timeout: Option<Duration>,
        pub(crate) nonblocking: bool,
        pub(crate) permits: Option<(Semaphore, u64)>,
        /// The run number of a periodic job's run (set by `ticker`).
        pub(crate) tick: Option<u64>,
        /// The job's token is cancelled with `SiblingFailed` if the job fails or
        /// panics (set by `group`, whose token it is).
        pub(crate) fail_fast: bool,
        /// The job's kind for [`Context::run_queued`](crate::Context::run_queued) (0: none).
        pub(crate) kind: u16,
        /// The job continues work already accepted (a pipeline's stage step): it takes no
        /// room in a bounded queue, so that a push or read of no wait never waits for it.
        pub(crate) unbounded: bool,
    }

    impl fmt::Debug for SubmitOptions {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("SubmitOptions")
                .field("token", &self.token)
                .field("delay", &self.delay)
                .field("name", &self.name)
                .field("timeout", &self.timeout)
                .field("nonblocking", &self.nonblocking)
                .field("permits", &self.permits.as_ref().map(|(_, n)| n))
                .field("kind", &self.kind)
                .finish()
        }
    }

    impl SubmitOptions {
        /// Default options: no token, no delay, no name, block while the queue is full.
        pub fn new() -> Self {
            Self::default()
        }

        /// Cancelling `token` (or an ancestor) cancels the job: at once if it is still
        /// queued, through `ctx.is_cancelled()` if it runs. Also ends a submit blocked on a
        /// full queue with [`SubmitError::Cancelled`].
        pub fn token(mut self, token: &CancelToken) -> Self {
            self.token = Some(token.clone());
            self
        }

        /// Runs the job no sooner than `delay` from now. A delayed job is `Delayed` until
        /// then and can be cancelled at no cost.
        pub fn delay(mut self, delay: Duration) -> Self {
            self.delay = Some(delay);
            self
        }

        /// Names the job (seen in `Job::name`, `ctx.name()` and panic reports).
        pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
            self.name = Some(name.into());
            self
        }

        /// Waits at most `timeout` for room in a full queue ([`SubmitError::Timeout`]).
        pub fn timeout(mut self, timeout: Duration) -> Self {
            self.timeout = Some(timeout);
            self
        }

        /// Fails with [`SubmitError::Full`] instead of waiting for room.
        pub fn nonblocking(mut self) -> Self {
            self.nonblocking = true;
            self
        }

        /// Runs the job only with `permits` permits of `semaphore`, which it holds while it
        /// runs and gives back when it ends, whatever its end. Until they are granted the
        /// job waits in the semaphore's FIFO queue (`JobState::WaitingForPermit`) without
        /// occupying a worker; cancelling it then takes it out of the queue at once.
        pub fn semaphore(mut self, semaphore: &Semaphore, permits: u64) -> Self {
            self.permits = Some((semaphore.clone(), permits));
            self
        }

        /// Labels the job with `kind`, a number of the caller's choosing: a running job
        /// can then run the queued jobs of its kind in a batch, on its own thread
        /// ([`Context::run_queued`](crate::Context::run_queued)). It changes nothing else.
        pub fn kind(mut self, kind: NonZeroU16) -> Self {
            self.kind = kind.get();
            self
        }
    }

    /// A work-stealing pool of worker threads.
    ///
    /// `Pool` is a cheap handle: clones share the pool, and dropping the last one drains
    /// it (`shutdown(Drain, None)`) and joins its threads.
    ///
    /// # Examples
    ///
    /// ```
    /// use jobrunner::Pool;
    ///
    /// let pool = Pool::builder().threads(2).build()?;
    /// let job = pool.submit(|_ctx| Ok::<_, std::io::Error>(6 * 7))?;
    /// assert_eq!(job.wait().unwrap(), 42);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[repr(transparent)]
    pub struct Pool {
        registry: Arc<Registry>,
    }

    impl fmt::Debug for Pool {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("Pool")
                .field("name", &self.registry.name())
                .field("threads", &self.registry.threads())
                .finish()
        }
    }

    impl Clone for Pool {
        fn clone(&self) -> Self {
            self.registry.handles.fetch_add(1, Ordering::Relaxed);
            Pool {
                registry: Arc::clone(&self.registry),
            }
        }
    }

    impl Drop for Pool {
        fn drop(&mut self) {
            if self.registry.handles.fetch_sub(1, Ordering::AcqRel) != 1 {
                return;
            }
            // From inside one of the pool's jobs this returns at once and a thread of its
            // own finishes the drain (see `Pool::shutdown`).
            self.registry.shutdown(ShutdownMode::Drain, None);
        }
    }

    impl Pool {
        /// A builder for a new pool.
        pub fn builder() -> PoolBuilder {
            PoolBuilder::new()
        }

        pub(crate) fn from_new_registry(registry: Arc<Registry>) -> Self {
            Pool { registry }
        }

        /// A weak reference to the registry, for tests that watch it go away.
        #[cfg(all(test, not(loom)))]
        pub(crate) fn downgrade(&self) -> std::sync::Weak<Registry> {
            Arc::downgrade(&self.registry)
        }

        /// The pool of a worker, borrowed (no handle count taken).
        pub(crate) fn from_registry(registry: &Arc<Registry>) -> &Pool {
            // SAFETY: `Pool` is `repr(transparent)` over `Arc<Registry>`, and the borrowed
            // `Pool` is never dropped (it is a reference).
            unsafe { &*(registry as *const Arc<Registry>).cast::<Pool>() }
        }

        /// Submits a job, waiting for room while a bounded queue is full (a submit from
        /// inside one of the pool's jobs never waits: the bound is for outside submits).
        ///
        /// # Errors
        ///
        /// [`SubmitError::Shutdown`] once a shutdown began.
        pub fn submit<F, T, E>(&self, f: F) -> Result<Job<T, E>, SubmitError>
        where
            F: FnOnce(&Context<'_>) -> Result<T, E> + Send + 'static,
            T: Send + 'static,
            E: Send + 'static,
        {
            self.registry.submit(SubmitOptions::default(), f)
        }

        /// Submits a job, failing instead of waiting when the queue is full.
        ///
        /// # Errors
        ///
        /// [`SubmitError::Full`] or [`SubmitError::Shutdown`].
        pub fn try_submit<F, T, E>(&self, f: F) -> Result<Job<T, E>, SubmitError>
        where
            F: FnOnce(&Context<'_>) -> Result<T, E> + Send + 'static,
            T: Send + 'static,
            E: Send + 'static,
        {
            self.registry
                .submit(SubmitOptions::default().nonblocking(), f)
        }

        /// Starts a generator: `producer` runs as a job that sends items into a channel
        /// of `capacity` (at least 1), and the returned [`Stream`] reads them lazily.
        /// See [`Stream`] for how the producer's end, its failure and the reader's drop
        /// show on each side.
        ///
        /// # Errors
        ///
        /// As [`submit`](Self::submit).
        ///
        /// # Panics
        ///
        /// If `capacity` is 0.
        pub fn stream<T, E, F>(
            &self,
            capacity: usize,
            producer: F,
        ) -> Result<Stream<T, E>, SubmitError>
        where
            F: FnOnce(&Context<'_>, &StreamSender<'_, T>) -> Result<(), E> + Send + 'static,
            T: Send + 'static,
            E: Send + 'static,
        {
            self.stream_with(SubmitOptions::default(), capacity, producer)
        }

        /// [`stream`](Self::stream) with submit options for the producer job (a token,
        /// a delay, a name, a semaphore...).
        ///
        /// # Errors
        ///
        /// As [`submit_with`](Self::submit_with).
        ///
        /// # Panics
        ///
        /// If `capacity` is 0.
        pub fn stream_with<T, E, F>(
            &self,
            options: SubmitOptions,
            capacity: usize,
            producer: F,
        ) -> Result<Stream<T, E>, SubmitError>
        where
            F: FnOnce(&Context<'_>, &StreamSender<'_, T>) -> Result<(), E> + Send + 'static,
            T: Send + 'static,
            E: Send + 'static,
        {
            Stream::start(capacity, producer, |job| self.submit_with(options, job))
        }

        /// Submits a job with a token, a delay, a name, a submit timeout.
        ///
        /// # Errors
        ///
        /// [`SubmitError::Shutdown`]; [`SubmitError::Full`] (nonblocking),
        /// [`SubmitError::Timeout`] or [`SubmitError::Cancelled`] while the queue is full.
        /// A submit whose token is already cancelled is accepted and ends `Cancelled`.
        pub fn submit_with<F, T, E>(
            &self,
            options: SubmitOptions,
            f: F,
        ) -> Result<Job<T, E>, SubmitError>
        where
            F: FnOnce(&Context<'_>) -> Result<T, E> + Send + 'static,
            T: Send + 'static,
            E: Send + 'static,
        {
            self.registry.submit(options, f)
        }

        /// `submit_with` for a group, which keeps its pending jobs where its token's
        /// cancel finds them, instead of registering each with the token: see
        /// `Registry::submit_kept`.
        pub(crate) fn submit_kept<F, T, E>(
            &self,
            options: SubmitOptions,
            f: F,
            keep: &mut dyn FnMut(JobHandle) -> bool,
        ) -> Result<Job<T, E>, SubmitError>
        where
            F: FnOnce(&Context<'_>) -> Result<T, E> + Send + 'static,
            T: Send + 'static,
            E: Send + 'static,
        {
            self.registry.submit_kept(options, f, Some(keep))
        }

        /// Runs `f` every `period` (the first run one period from now, or after
        /// `SubmitOptions::delay`) until the returned [`Ticker`] is cancelled, or the
        /// ticker's token, or the pool begins to shut down.
        ///
        /// A periodic job never overlaps itself: each run is a delayed job scheduled when
        /// the previous one ends. A run that overruns its period makes the next one start
        /// as soon as it ends, and the schedule goes on from there: missed ticks are
        /// skipped, not queued up. `ctx.tick()` gives the run number. A run that returns
        /// `Err` or panics is counted (`Ticker::failures`) and the chain goes on.
        ///
        /// # Errors
        ///
        /// [`SubmitError::ZeroPeriod`], or what a submit of the first run returns.
        pub fn submit_every<F, E>(&self, period: Duration, f: F) -> Result<Ticker, SubmitError>
        where
            F: Fn(&Context<'_>) -> Result<(), E> + Send + Sync + 'static,
            E: Send + 'static,
        {
            crate::ticker::start(self, SubmitOptions::default(), period, f)
        }

        /// [`Pool::submit_every`] with options: a token (the ticker's token is a child of
        /// it), a first delay, a name, a semaphore (each run takes its permits).
        ///
        /// # Errors
        ///
        /// As [`Pool::submit_every`].
        pub fn submit_every_with<F, E>(
            &self,
            options: SubmitOptions,
            period: Duration,
            f: F,
        ) -> Result<Ticker, SubmitError>
        where
            F: Fn(&Context<'_>) -> Result<(), E> + Send + Sync + 'static,
            E: Send + 'static,
        {
            crate::ticker::start(self, options, period, f)
        }

        /// A new group of jobs on this pool (see [`Group`]).
        pub fn group<T: Send + 'static, E: Send + 'static>(&self) -> Group<T, E> {
            Group::new(self, GroupOptions::default())
        }

        /// A new group with options: a limit, fail-fast, a parent token.
        pub fn group_with<T: Send + 'static, E: Send + 'static>(
            &self,
            options: GroupOptions,
        ) -> Group<T, E> {
            Group::new(self, options)
        }

        /// Cancelled when a shutdown begins (any mode).
        pub(crate) fn closing_token(&self) -> &CancelToken {
            self.registry.closing()
        }

        pub(crate) fn panic_policy(&self) -> &PanicPolicy {
            self.registry.panic_policy()
        }

        /// Stops the pool (see [`ShutdownMode`]) and reports what it found. With a
        /// timeout, returns when it passes even if jobs are still running (they are
        /// reported; a later shutdown or the drop of the pool waits for them). Once every
        /// job has ended the workers are stopped and joined.
        ///
        /// Called from one of the pool's own jobs it starts the shutdown and returns at
        /// once with the counts so far (it cannot wait for the job that called it); a
        /// thread of its own then waits, cancels at the deadline (`DrainThenCancel`) and
        /// stops the workers.
        pub fn shutdown(&self, mode: ShutdownMode, timeout: Option<Duration>) -> ShutdownReport {
            self.registry.shutdown(mode, timeout)
        }

        /// Adds thread hooks to a running pool (the builder's `on_thread_start` and
        /// `on_thread_stop`, for code that shares a pool it did not build, such as the
        /// global one): each worker runs `start` on its own thread, with its index, before
        /// the next job it takes from a queue (a job it runs inline meanwhile may come
        /// first), and `stop` as it exits if it ran `start`. Hooks run in the order they
        /// were added; stop hooks in the reverse order, before the builder's.
        ///
        /// Returns the key that removes them ([`Pool::remove_thread_hooks`]).
        pub fn add_thread_hooks(
            &self,
            start: impl Fn(usize) + Send + Sync + 'static,
            stop: impl Fn(usize) + Send + Sync + 'static,
        ) -> ThreadHooksKey {
            ThreadHooksKey(self.registry.add_thread_hooks(
                ThreadHooks {
                    start: Some(Arc::new(start)),
                    stop: Some(Arc::new(stop)),
                    park: None,
                },
                None,
            ))
        }

        /// Adds a park hook to a running pool (the builder's `on_thread_park`): every
        /// worker runs it on its own thread, with its index, each time it is about to
        /// block (to sleep for want of work, or while a job it runs waits for another;
        /// see the builder's `on_thread_park`), from its next time on. Park hooks run in
        /// the order they were added.
        ///
        /// Returns the key that removes it ([`Pool::remove_thread_hooks`]).
        pub fn add_park_hook(
            &self,
            park: impl Fn(usize) + Send + Sync + 'static,
        ) -> ThreadHooksKey {
            ThreadHooksKey(self.registry.add_thread_hooks(
                ThreadHooks {
                    park: Some(Arc::new(park)),
                    ..ThreadHooks::default()
                },
                None,
            ))
        }

        /// Removes hooks added by [`Pool::add_thread_hooks`] or [`Pool::add_park_hook`]:
        /// when it returns, no worker
        /// calls them again (not the stop hook either, as it exits) and the calls in
        /// progress have ended, so that code about to go away (a language runtime
        /// shutting down, a library being unloaded) is never called after. Called from
        /// one of the pool's hooks, it does not wait (for its own call, among others).
        /// Returns false if they were removed already.
        pub fn remove_thread_hooks(&self, key: ThreadHooksKey) -> bool {
            self.registry.remove_thread_hooks(key.0)
        }

        /// [`Pool::add_thread_hooks`] with any of the hooks optional and a tag to find
        /// them by (for the C layer).
        #[cfg(feature = "capi")]
        pub(crate) fn add_raw_thread_hooks(&self, hooks: ThreadHooks, tag: HookTag) {
            self.registry.add_thread_hooks(hooks, Some(tag));
        }

        /// Removes the earliest hooks still in place added with `tag` (for the C layer);
        /// false if there are none.
        #[cfg(feature = "capi")]
        pub(crate) fn remove_raw_thread_hooks(&self, tag: HookTag) -> bool {
            self.registry
                .find_thread_hooks(tag)
                .is_some_and(|index| self.registry.remove_thread_hooks(index))
        }

        /// Whether two handles are the same pool.
        pub fn same_as(&self, other: &Pool) -> bool {
            Arc::ptr_eq(&self.registry, &other.registry)
        }

        /// Whether a shutdown has begun.
        pub fn is_shut_down(&self) -> bool {
            self.registry.is_shutting_down()
        }

        /// A snapshot of the pool's counters.
        pub fn stats(&self) -> Stats {
            self.registry.stats()
        }

        /// Worker threads.
        pub fn threads(&self) -> usize {
            self.registry.threads()
        }

        /// The pool's root token: cancelled by a `Cancel` shutdown. Tokens made from it
        /// with `child()` end with the pool.
        pub fn root_token(&self) -> &CancelToken {
            self.registry.root()
        }

        /// A report for debugging a hang: the pool's lifecycle, its queues (the injector,
        /// each worker's deque, the delayed jobs, the bounded queue and the submitters
        /// waiting for room), and what each worker does: idle or parked, running which
        /// job (by address), or which wait that job is in (for another job, a `join`
        /// half, a semaphore grant, a channel). Reads what the pool keeps anyway, plus
        /// one word per worker that only the worker writes: taking it disturbs nothing.
        /// The format is for people and may change.
        #[doc(hidden)]
        pub fn debug_dump(&self) -> String {
            self.registry.debug_dump()
        }

        /// Delayed jobs waiting for their time.
        pub fn delayed(&self) -> usize {
            self.registry.delayed_now()
        }

        /// Whether the calling thread is one of this pool's workers.
        pub fn is_worker_thread(&self) -> bool {
            WorkerThread::current().is_some_and(|w| std::ptr::eq(w.registry(), &*self.registry))
        }
    }
}
