//! The group: fan-out / fan-in, Go's `WaitGroup` and `errgroup` on the pool. Its count
//! of live jobs and its waiters follow the protocol of `super::completion`.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::completion::{Completion, Count, WaitFor, Waiters};
use crate::cancel::kept::{keep_unless, take_kept};
use crate::cancel::{CancelReason, CancelToken};
use crate::context::Context;
use crate::error::{JobError, SubmitError};
use crate::job::{Job, JobHandle, JobState};
use crate::pool::worker::WorkerThread;
use crate::pool::{Pool, SubmitOptions};
use crate::select::Watch;
use crate::semaphore::{Semaphore, Waker};
use crate::slab::Slab;
use crate::sync::atomic::{AtomicBool, Ordering};
use crate::sync::{lock, Mutex};

/// Options of [`Group::new`].
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct GroupOptions {
    limit: Option<u64>,
    fail_fast: bool,
    token: Option<CancelToken>,
    wait_only: bool,
}

impl GroupOptions {
    /// Default options: no limit, not fail-fast, no parent token.
    pub fn new() -> Self {
        Self::default()
    }

    /// At most `n` of the group's jobs run at once (`errgroup.SetLimit`); the others wait
    /// in a semaphore's queue without occupying a worker.
    pub fn limit(mut self, n: u64) -> Self {
        self.limit = Some(n);
        self
    }

    /// The first job that fails (or panics) cancels the group's token with
    /// `CancelReason::SiblingFailed`: queued siblings end `Cancelled` without running and
    /// running ones see `ctx.is_cancelled()` (`errgroup.WithContext`).
    pub fn fail_fast(mut self) -> Self {
        self.fail_fast = true;
        self
    }

    /// The group's token is a child of `token`: cancelling it cancels the group.
    pub fn token(mut self, token: &CancelToken) -> Self {
        self.token = Some(token.clone());
        self
    }

    /// The group keeps no ended job for [`Group::next`] (which then returns `None` at
    /// once): each job's result is dropped as it ends, before `wait` can see the job
    /// ended, and [`Group::wait`] reports the first error as usual. For callers that only wait, as with Go's `errgroup`; a group
    /// otherwise keeps every ended job until `next` takes it.
    pub fn wait_only(mut self) -> Self {
        self.wait_only = true;
        self
    }
}

struct State<T, E> {
    /// Jobs submitted and not yet ended, by slot (for a waiting worker to run the queued
    /// ones inline, and for the token's cancel). The `Job` itself travels with the job's
    /// end callback.
    pending: Slab<JobHandle>,
    /// Ended jobs not yet taken by `next`, in completion order.
    finished: VecDeque<Job<T, E>>,
    /// The error of the first job that failed or panicked, kept for `wait`.
    first_error: Option<JobError<E>>,
    /// Whether a job has failed or panicked yet (`first_error` may have been taken).
    failed: bool,
    /// The reason of the first job that ended cancelled, for `wait` when none failed.
    first_cancel: Option<CancelReason>,
    /// Threads waiting in `next` or `wait` (and `wait_any` calls).
    waiters: Waiters,
    /// Where a waiting worker resumes its search of `pending` for a job to run inline.
    scan: usize,
}

impl<T, E> State<T, E> {
    /// Frees the pending slot of an ended job (none: it ended at its submit) and returns
    /// its handle, to be dropped once the lock is released.
    fn release_slot(&mut self, slot: Option<usize>) -> Option<JobHandle> {
        self.pending.remove(slot?)
    }

    /// Notes a job that ended cancelled: the first reason is the one `wait` reports.
    fn note_cancel(&mut self, reason: CancelReason) {
        self.first_cancel.get_or_insert(reason);
    }
}

impl<T, E> Completion for State<T, E> {
    fn waiters(&mut self) -> &mut Waiters {
        &mut self.waiters
    }

    fn has_finished(&self) -> bool {
        !self.finished.is_empty()
    }
}

struct Shared<T, E> {
    token: CancelToken,
    semaphore: Option<Semaphore>,
    fail_fast: bool,
    /// Ended jobs are dropped, not kept for `next` ([`GroupOptions::wait_only`]).
    wait_only: bool,
    /// Set by [`Group::new_yielding_failures`]: how to copy the first failure's error
    /// for `wait`, so that `next` can yield its job too.
    clone_error: Option<fn(&E) -> E>,
    /// The closed flag and the count of live jobs (see `super::completion` for the
    /// protocol).
    count: Count,
    /// Set when the `Group` is dropped: its jobs go on, and each one's result is dropped
    /// as it ends (as in a `wait_only` group), nobody being left to take it.
    detached: AtomicBool,
    state: Mutex<State<T, E>>,
}

/// A group of jobs: fan them out with [`Group::submit`], then fan in with
/// [`Group::next`] (completion order) or wait for all with [`Group::wait`] (the first
/// error, as `errgroup.Wait`). The first job that fails or panics is not yielded by
/// `next`: its error is kept for `wait` (unless the group was made by
/// [`Group::new_yielding_failures`], whose errors clone).
///
/// # Examples
///
/// ```
/// use jobrunner::{GroupOptions, Pool};
///
/// let pool = Pool::builder().threads(2).build()?;
/// let group = pool.group_with(GroupOptions::new().limit(4));
/// for i in 0..10u64 {
///     group.submit(move |_ctx| Ok::<_, String>(i * i))?;
/// }
/// group.close();
/// let sum: u64 = group.iter().map(|job| job.wait().unwrap()).sum();
/// assert_eq!(sum, 285);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Group<T, E> {
    pool: Pool,
    shared: Arc<Shared<T, E>>,
}

/// A group as `wait_any` watches it, whatever its types: ready when `next` would not
/// wait (a job has ended and is kept for it, or the group is closed and drained); woken
/// at every job end and at the close.
impl<T: Send, E: Send> Watch for Shared<T, E> {
    fn is_ready(&self) -> bool {
        self.ready_once_recorded(WaitFor::Next)
    }

    fn watch(&self, waker: &Arc<Waker>) {
        lock(&self.state).waiters.watch(waker);
    }

    fn unwatch(&self, waker: &Arc<Waker>) {
        lock(&self.state).waiters.unwatch(waker, WaitFor::Next);
    }
}

impl<T: Send + 'static, E: Send + 'static> Group<T, E> {
    /// Threads and `wait_any` calls registered now to be woken by a job's end, for tests.
    #[cfg(test)]
    pub(crate) fn next_waiter_count(&self) -> usize {
        lock(&self.shared.state).waiters.next_len()
    }

    /// The group as `wait_any` watches it.
    pub(crate) fn watcher(&self) -> &dyn Watch {
        &*self.shared
    }
}

impl<T, E> Drop for Group<T, E> {
    fn drop(&mut self) {
        // Its jobs go on; nobody is left to take their results (`Shared::detached`).
        self.shared.detached.store(true, Ordering::Release);
    }
}

impl<T, E> fmt::Debug for Group<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = lock(&self.shared.state);
        let count = &self.shared.count;
        f.debug_struct("Group")
            .field("running_or_queued", &count.live())
            .field("finished", &state.finished.len())
            .field("closed", &count.is_closed())
            .finish()
    }
}

impl<T: Send + 'static, E: Send + 'static> Group<T, E> {
    /// A new group on `pool`.
    pub fn new(pool: &Pool, options: GroupOptions) -> Self {
        Self::build(pool, options, None)
    }

    fn build(pool: &Pool, options: GroupOptions, clone_error: Option<fn(&E) -> E>) -> Self {
        let token = match &options.token {
            Some(parent) => parent.child(),
            None => CancelToken::new(),
        };
        let shared = Arc::new(Shared {
            token,
            semaphore: options.limit.map(Semaphore::new),
            fail_fast: options.fail_fast,
            wait_only: options.wait_only,
            clone_error,
            count: Count::new(),
            detached: AtomicBool::new(false),
            state: Mutex::new(State {
                pending: Slab::EMPTY,
                finished: VecDeque::new(),
                first_error: None,
                failed: false,
                first_cancel: None,
                waiters: Waiters::default(),
                scan: 0,
            }),
        });
        // The group's jobs are kept in `pending`, not registered with its token: this
        // callback ends the queued ones when the token is cancelled (see `submit_with`
        // and `crate::cancel::kept`). A pending job's end callback holds `shared`, so it
        // lives as long as a job may need cancelling, even once the `Group` is dropped.
        let weak = Arc::downgrade(&shared);
        shared.token.on_cancel(move |reason| {
            if let Some(shared) = weak.upgrade() {
                shared.cancel_pending(reason);
            }
        });
        Group {
            pool: pool.clone(),
            shared,
        }
    }

    /// The group's token: cancelled by [`Group::cancel`], by a fail-fast failure, and by
    /// the parent token. Every job of the group is submitted with it.
    pub fn token(&self) -> &CancelToken {
        &self.shared.token
    }

    /// Whether the group was made with a limit (its jobs take its semaphore).
    #[cfg_attr(not(feature = "capi"), allow(dead_code))]
    pub(crate) fn is_limited(&self) -> bool {
        self.shared.semaphore.is_some()
    }

    /// Whether the group was made `wait_only` (`next` yields nothing).
    #[cfg_attr(not(feature = "capi"), allow(dead_code))]
    pub(crate) fn is_wait_only(&self) -> bool {
        self.shared.wait_only
    }

    /// Submits a job to the group (with the group's token, and its limit).
    ///
    /// # Errors
    ///
    /// [`SubmitError::GroupClosed`] after [`Group::close`], or the pool's submit errors.
    pub fn submit<F>(&self, f: F) -> Result<JobHandle, SubmitError>
    where
        F: FnOnce(&Context<'_>) -> Result<T, E> + Send + 'static,
    {
        self.submit_with(SubmitOptions::new(), f)
    }

    /// [`Group::submit`] with options (a delay, a name, a submit timeout; the token and
    /// the semaphore are the group's).
    ///
    /// # Errors
    ///
    /// As [`Group::submit`].
    pub fn submit_with<F>(&self, options: SubmitOptions, f: F) -> Result<JobHandle, SubmitError>
    where
        F: FnOnce(&Context<'_>) -> Result<T, E> + Send + 'static,
    {
        // Counted first, so that `wait` cannot see the group empty while we submit (see
        // `super::completion` for why this needs no lock).
        if !self.shared.count.enter() {
            self.shared.uncount();
            return Err(SubmitError::GroupClosed);
        }
        let mut options = options.token(&self.shared.token);
        if let Some(semaphore) = &self.shared.semaphore {
            options = options.semaphore(semaphore, 1);
        }
        // With fail-fast, the runner cancels the job's token (the group's) when the job
        // fails or panics, before its end is published: no queued sibling starts after
        // the failure is seen.
        options.fail_fast = self.shared.fail_fast;
        // The job goes into `pending` before it can start, unless the token is already
        // cancelled (then it ends `Cancelled`, never queued, and has no slot): kept
        // there, it is where the token's cancel finds it (`Shared::cancel_pending`), so
        // it is not registered with the token (`crate::cancel::kept`).
        let shared = &self.shared;
        let mut slot = None;
        let submitted = self.pool.submit_kept(options, f, &mut |handle| {
            let cancelled = || shared.token.is_cancelled();
            keep_unless(&shared.state, cancelled, |state| {
                slot = Some(state.pending.insert(handle))
            })
        });
        let job = match submitted {
            Ok(job) => job,
            Err(error) => {
                self.shared.uncount();
                return Err(error);
            }
        };
        let handle = job.handle();
        // Registered once the job is in `pending`: the callback clears its slot even if
        // the job has already ended (it then runs here, now). The callback owns the `Job`,
        // and keeps the group's state alive until the job ends (see `Group::build`).
        let shared = Arc::clone(&self.shared);
        handle.on_end(move |end| shared.job_ended(slot, job, end));
        Ok(handle)
    }

    /// Says no more jobs will be added: `next` returns `None` once the group is drained.
    pub fn close(&self) {
        let wake = self.shared.count.close(&lock(&self.shared.state).waiters);
        wake.wake();
    }

    /// Cancels the group's token: queued jobs end `Cancelled`, running ones are told.
    pub fn cancel(&self) {
        self.shared.token.cancel();
    }

    /// The next job to end, in completion order (its result is ready), or `None` once the
    /// group is closed and every job was taken. Inside a job of the pool the worker
    /// waits as it does for a job (under the help policy).
    pub fn next(&self) -> Option<Job<T, E>> {
        self.next_until(None).unwrap_or(None)
    }

    /// [`Group::next`] waiting at most `timeout`. `Err(())` on timeout. Inside a job of
    /// the pool it runs the group's unstarted jobs inline until the timeout, then blocks
    /// the thread.
    #[allow(clippy::result_unit_err)]
    pub fn next_timeout(&self, timeout: Duration) -> Result<Option<Job<T, E>>, ()> {
        let at = Instant::now().checked_add(timeout);
        self.next_until(Some(
            at.unwrap_or_else(|| Instant::now() + Duration::from_secs(3_153_600_000)),
        ))
    }

    fn next_until(&self, at: Option<Instant>) -> Result<Option<Job<T, E>>, ()> {
        if self.shared.wait_only {
            return Ok(None);
        }
        loop {
            let ready_now = self.wait_for(at, WaitFor::Next);
            let mut state = lock(&self.shared.state);
            if let Some(job) = state.finished.pop_front() {
                return Ok(Some(job));
            }
            if self.shared.count.is_closed_and_drained() {
                return Ok(None);
            }
            if !ready_now {
                return Err(());
            }
            // Another consumer took the job that made us ready: wait again.
        }
    }

    /// Waits until every job submitted so far has ended, and returns the error of the
    /// first one (in completion order) that failed or panicked, as `errgroup.Wait` (the
    /// siblings a fail-fast failure cancels may be recorded before it, but a failure is
    /// always preferred to a cancellation); if none did but some job ended cancelled,
    /// `Cancelled` with the first such reason. The first call after a failure
    /// takes its error; later calls report the cancellations only.
    ///
    /// # Errors
    ///
    /// The first failure's [`JobError`], or [`JobError::Cancelled`].
    pub fn wait(&self) -> Result<(), JobError<E>> {
        self.wait_for(None, WaitFor::Drained);
        self.take_outcome()
    }

    /// What `wait` reports once the jobs have ended (taking the first error).
    fn take_outcome(&self) -> Result<(), JobError<E>> {
        let mut state = lock(&self.shared.state);
        match (state.first_error.take(), state.first_cancel) {
            (Some(error), _) => Err(error),
            (None, Some(reason)) => Err(JobError::Cancelled(reason)),
            (None, None) => Ok(()),
        }
    }

    /// [`Group::wait`] waiting at most `timeout`: `Err(())` if jobs are still running
    /// then (nothing is taken: a later wait reports the first error).
    #[allow(clippy::result_unit_err)]
    pub fn wait_timeout(&self, timeout: Duration) -> Result<Result<(), JobError<E>>, ()> {
        let at = Instant::now()
            .checked_add(timeout)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3_153_600_000));
        if !self.wait_for(Some(at), WaitFor::Drained) {
            return Err(());
        }
        Ok(self.take_outcome())
    }

    /// Whether a job of the group has failed or panicked.
    pub fn has_failed(&self) -> bool {
        lock(&self.shared.state).failed
    }

    /// Whether the condition of a wait for `what` holds; called under `state`'s lock.
    fn ready(&self, state: &State<T, E>, what: WaitFor) -> bool {
        self.shared.count.ready(state, what)
    }

    /// Waits (helping inside a worker) until the condition of `what` holds, or `at`
    /// passes; returns whether it holds. A wait that times out still holds for the jobs
    /// whose end is published but not yet recorded ([`Shared::ready_once_recorded`]).
    fn wait_for(&self, at: Option<Instant>, what: WaitFor) -> bool {
        self.wait_for_inner(at, what) || self.shared.ready_once_recorded(what)
    }

    fn wait_for_inner(&self, at: Option<Instant>, what: WaitFor) -> bool {
        // Inside a job of the pool: first run the group's jobs that have not started, as
        // a wait for a job runs it inline, whatever the help policy (a timed wait too,
        // until its deadline: on a one-thread pool nothing else would run them).
        if let Some(worker) = WorkerThread::current() {
            while !self.ready(&lock(&self.shared.state), what)
                && at.is_none_or(|at| Instant::now() < at)
            {
                match self.queued_job() {
                    Some(job) => {
                        job.run_inline(worker);
                    }
                    None => break,
                }
            }
        }
        // A thread that would park (not a worker in an untimed wait, which waits in the
        // pool's way) spins briefly first, as a channel does (`block_compensated`): with
        // the jobs running, the next one usually ends within microseconds, and a parked
        // consumer costs each job's end a futex wake and itself a context switch.
        if (at.is_some() || WorkerThread::current().is_none()) && self.spin_until(at, what) {
            return true;
        }
        self.shared.count.block(&self.shared.state, what, at)
    }

    /// Spins and yields a little (crossbeam's `Backoff`, to its end) until the condition
    /// of `what` holds or `at` passes; returns whether it holds. It looks only when the
    /// state's lock is free: a held lock is a job ending (or a submit), and queueing
    /// behind it would only delay that end.
    fn spin_until(&self, at: Option<Instant>, what: WaitFor) -> bool {
        let backoff = crossbeam_utils::Backoff::new();
        while !backoff.is_completed() {
            if let Ok(state) = self.shared.state.try_lock() {
                if self.ready(&state, what) {
                    return true;
                }
            }
            if at.is_some_and(|at| Instant::now() >= at) {
                return false;
            }
            backoff.snooze();
        }
        false
    }

    /// A pending job of the group that has not started, if any.
    fn queued_job(&self) -> Option<JobHandle> {
        let mut state = lock(&self.shared.state);
        let n = state.pending.key_bound();
        for step in 0..n {
            let slot = (state.scan + step) % n;
            let found = match state.pending.get(slot) {
                Some(job) if job.state() == JobState::Queued => Some(job.clone()),
                _ => None,
            };
            if found.is_some() {
                state.scan = (slot + 1) % n;
                return found;
            }
        }
        None
    }

    /// An iterator over the jobs as they end ([`Group::next`] until `None`).
    pub fn iter(&self) -> Iter<'_, T, E> {
        Iter { group: self }
    }
}

impl<T: Send + 'static, E: Clone + Send + 'static> Group<T, E> {
    /// A new group on `pool` whose [`Group::next`] yields every job, the first failure
    /// included, while [`Group::wait`] reports a clone of that failure's error: for fan-in
    /// that must see every job and an errgroup-style first error at once.
    pub fn new_yielding_failures(pool: &Pool, options: GroupOptions) -> Self {
        Self::build(pool, options, Some(E::clone))
    }
}

impl<T, E> Shared<T, E> {
    /// Whether the condition of a wait for `what` holds, once the ends already published
    /// are recorded. A job's end is published (its handle shows it, its waiters wake)
    /// just before its end callback records it here (`job_ended`, on the thread that
    /// ended it); so that a caller who has seen a job end through its handle never gets
    /// a timeout (or "not ready") from the group for it, this waits (yielding) while a
    /// job still in `pending` has a terminal state: its end callback is running.
    fn ready_once_recorded(&self, what: WaitFor) -> bool {
        loop {
            {
                let state = lock(&self.state);
                if self.count.ready(&*state, what) {
                    return true;
                }
                if !state.pending.iter().any(JobHandle::is_finished) {
                    return false;
                }
            }
            std::thread::yield_now();
        }
    }
}

impl<T: Send + 'static, E: Send + 'static> Shared<T, E> {
    /// Takes back the count of a submit that did not submit (the group was closed, or
    /// the pool refused the job), waking the waiters whose condition it may make true.
    #[cold]
    fn uncount(&self) {
        let wake = self.count.uncount(&lock(&self.state).waiters);
        wake.wake();
    }

    /// The token was cancelled (`reason`): ends the pending jobs that have not started,
    /// as the token would have ended them had they been registered with it.
    fn cancel_pending(&self, reason: CancelReason) {
        // Taken under the lock, ended outside it: their end callbacks take it.
        let pending: Vec<JobHandle> =
            take_kept(&self.state, |state| state.pending.iter().cloned().collect());
        for job in pending {
            job.cancel_for_token(reason);
        }
    }

    /// The job of `slot` (none: it ended at its submit) has ended (`end`): under one
    /// lock, frees its slot, stops counting it, records its outcome and takes the waiters
    /// to wake.
    fn job_ended(&self, slot: Option<usize>, job: Job<T, E>, end: JobState) {
        if self.wait_only || self.detached.load(Ordering::Acquire) {
            self.wait_only_job_ended(slot, job, end);
            return;
        }
        let kept;
        let wake = {
            let mut state = lock(&self.state);
            kept = state.release_slot(slot);
            match end {
                JobState::Failed | JobState::Panicked if !state.failed => {
                    state.failed = true;
                    match self.clone_error {
                        // A group whose errors clone: `wait` gets a clone of the first
                        // failure, `next` yields the job as any other.
                        Some(clone) => {
                            state.first_error = job.clone_error(clone);
                            state.finished.push_back(job);
                        }
                        // Otherwise the first failure is kept for `wait` (the job has
                        // ended: this does not block); `next` does not yield it.
                        None => state.first_error = job.wait().err(),
                    }
                }
                JobState::Cancelled => {
                    state.note_cancel(job.cancel_reason().unwrap_or(CancelReason::Cancelled));
                    state.finished.push_back(job);
                }
                _ => state.finished.push_back(job),
            }
            self.count.leave(&state.waiters)
        };
        drop(kept); // after the lock: the job's count, maybe its memory
        wake.wake();
    }

    /// `job_ended` for a `wait_only` group: the job's outcome is taken and its result
    /// dropped (outside the lock) before the job stops counting as live, so that a
    /// result is gone by the time `wait` returns.
    fn wait_only_job_ended(&self, slot: Option<usize>, job: Job<T, E>, end: JobState) {
        // Ended: this does not block. A success's value is dropped here.
        let mut error = job.wait().err();
        let mut state = lock(&self.state);
        if matches!(end, JobState::Failed | JobState::Panicked) && state.failed {
            // Not the first failure: its error is dropped too, outside the lock (it may
            // run user code) and before the job stops counting. Rare: a second lock.
            drop(state);
            drop(error.take());
            state = lock(&self.state);
        }
        let kept = state.release_slot(slot);
        match (end, error) {
            (JobState::Failed | JobState::Panicked, error) if !state.failed => {
                state.failed = true;
                state.first_error = error;
            }
            (JobState::Cancelled, error) => state.note_cancel(match error {
                Some(JobError::Cancelled(reason)) => reason,
                _ => CancelReason::Cancelled,
            }),
            (_, error) => debug_assert!(error.is_none(), "an unused error is dropped above"),
        }
        let wake = self.count.leave(&state.waiters);
        drop(state);
        drop(kept); // after the lock: the job's count, maybe its memory
        wake.wake();
    }
}

/// The jobs of a group as they end; see [`Group::iter`].
#[derive(Debug)]
pub struct Iter<'a, T, E> {
    group: &'a Group<T, E>,
}

impl<T: Send + 'static, E: Send + 'static> Iterator for Iter<'_, T, E> {
    type Item = Job<T, E>;

    fn next(&mut self) -> Option<Job<T, E>> {
        self.group.next()
    }
}

impl<'a, T: Send + 'static, E: Send + 'static> IntoIterator for &'a Group<T, E> {
    type Item = Job<T, E>;
    type IntoIter = Iter<'a, T, E>;

    fn into_iter(self) -> Iter<'a, T, E> {
        self.iter()
    }
}
