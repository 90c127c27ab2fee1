//! Counting, weighted, FIFO-fair semaphores that the scheduler understands.
//!
//! Waiters queue in arrival order, threads and jobs alike: a request at the head is
//! granted first even when a smaller one behind it would fit (no barging), so large
//! requests are never starved. A job submitted with `SubmitOptions::semaphore` waits in
//! this queue without occupying a worker and becomes runnable when its permits are
//! granted; its permits return when it ends, whatever its end.

use std::collections::BTreeMap;
#[cfg(not(loom))]
use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
#[cfg(not(loom))]
use std::time::{Duration, Instant};

#[cfg(not(loom))]
use crate::cancel::{CancelReason, CancelToken};
#[cfg(not(loom))]
use crate::job::{JobHandle, JobRef};
#[cfg(not(loom))]
use crate::pool::registry::Registry;
#[cfg(not(loom))]
use crate::pool::worker::WorkerThread;
#[cfg(not(loom))]
use crate::sync::atomic::AtomicU64;
use crate::sync::atomic::{AtomicBool, Ordering};
use crate::sync::thread::{self, Thread};
use crate::sync::{lock, Mutex};

/// Why a semaphore operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SemaphoreError {
    /// More permits were asked for than the semaphore has in all: it could never be
    /// granted.
    #[error("{requested} permits requested from a semaphore of {total}")]
    TooMany {
        /// The permits asked for.
        requested: u64,
        /// The semaphore's total.
        total: u64,
    },
    /// `try_acquire` found too few permits, or waiters ahead.
    #[error("no permits available without waiting")]
    WouldBlock,
    /// The timeout passed before the permits were granted.
    #[error("timed out waiting for permits")]
    Timeout,
    /// The token was cancelled before the permits were granted.
    #[cfg(not(loom))]
    #[error("cancelled while waiting for permits: {0}")]
    Cancelled(CancelReason),
    /// `release` would raise the available permits above the total.
    #[error("released more permits than were acquired")]
    Overflow,
}

/// Who to wake when a blocked thread's wait is over (a semaphore grant, a group's job
/// ending): a parked thread, or a worker waiting in its pool's way.
pub(crate) enum Waker {
    /// A thread outside any pool: it parks.
    Thread(Thread),
    /// A worker waiting inside a job: it waits in the pool's sleep protocol.
    #[cfg(not(loom))]
    Worker(Arc<Registry>, usize),
    /// Not a thread: a callback that starts work (a pipeline's channel source). Never
    /// waited on; waking calls it.
    #[cfg(not(loom))]
    Call(Arc<dyn Fn() + Send + Sync>),
}

impl Waker {
    /// The calling thread: as a worker of its pool if it is one and may wait that way.
    pub(crate) fn current(worker_wait: bool) -> Self {
        #[cfg(not(loom))]
        if worker_wait {
            if let Some(worker) = WorkerThread::current() {
                return Waker::Worker(Arc::clone(worker.registry_arc()), worker.index());
            }
        }
        let _ = worker_wait;
        Waker::Thread(thread::current())
    }

    fn is_worker(&self) -> bool {
        #[cfg(not(loom))]
        if matches!(self, Waker::Worker(..)) {
            return true;
        }
        false
    }

    pub(crate) fn wake(&self) {
        match self {
            Waker::Thread(thread) => thread.unpark(),
            #[cfg(not(loom))]
            Waker::Worker(registry, index) => registry.sleep().wake_latch(*index),
            #[cfg(not(loom))]
            Waker::Call(call) => call(),
        }
    }
}

/// A thread blocked in `acquire`.
struct ThreadWaiter {
    needed: u64,
    /// Set under the semaphore's lock when the permits are handed over.
    granted: AtomicBool,
    waker: Waker,
}

enum Waiter {
    Thread(Arc<ThreadWaiter>),
    /// A job waiting to become runnable (`SubmitOptions::semaphore`).
    #[cfg(not(loom))]
    Job {
        needed: u64,
        job: JobRef,
    },
}

impl Waiter {
    fn needed(&self) -> u64 {
        match self {
            Waiter::Thread(waiter) => waiter.needed,
            #[cfg(not(loom))]
            Waiter::Job { needed, .. } => *needed,
        }
    }
}

struct State {
    available: u64,
    /// Waiters by arrival: FIFO, and O(log n) removal of one that gives up.
    queue: BTreeMap<u64, Waiter>,
    next_seq: u64,
    /// Jobs granted while workers waited here: those workers may run them inline (they
    /// hold the permits the workers wait for). Entries that started meanwhile are stale.
    #[cfg(not(loom))]
    granted_jobs: VecDeque<JobHandle>,
    /// Queued thread waiters that are workers (so a job grant scans the queue for them
    /// only when there are some).
    worker_waiters: usize,
}

struct Inner {
    total: u64,
    state: Mutex<State>,
}

/// What a grant hands over, acted on after the lock is released.
enum Granted {
    Thread(Arc<ThreadWaiter>),
    /// A worker still waiting, told that a granted job it may run is available.
    #[cfg(not(loom))]
    Nudge(Arc<ThreadWaiter>),
    /// A job granted its permits, with a strong reference to its pool taken under the
    /// lock (see `grant`).
    #[cfg(not(loom))]
    Job(Arc<Registry>, JobRef),
    /// A job cancelled while the grant reached it: only its queue reference to drop.
    #[cfg(not(loom))]
    Stale(JobRef),
}

impl Granted {
    fn deliver(self) {
        match self {
            Granted::Thread(waiter) => waiter.waker.wake(),
            #[cfg(not(loom))]
            Granted::Nudge(waiter) => waiter.waker.wake(),
            #[cfg(not(loom))]
            // By now a waiter may have claimed and run the job, and its pool may have
            // terminated: `inject_claimable` then drops the stale entry.
            Granted::Job(registry, job) => {
                // SAFETY: the semaphore queue holds heap jobs only.
                #[cfg(test)]
                crate::pause::point("granted job delivered", unsafe { job.heap_header() }.name());
                registry.inject_claimable(job);
            }
            #[cfg(not(loom))]
            Granted::Stale(job) => drop(job.discard()),
        }
    }
}

/// A counting, weighted, FIFO-fair semaphore, shared by cloning.
///
/// # Examples
///
/// ```
/// use jobrunner::Semaphore;
///
/// let connections = Semaphore::new(2);
/// let a = connections.acquire(1)?;
/// let b = connections.try_acquire(1)?;
/// assert!(connections.try_acquire(1).is_err());
/// drop(a); // RAII: the permit returns
/// assert_eq!(connections.available(), 1);
/// # drop(b);
/// # Ok::<(), jobrunner::SemaphoreError>(())
/// ```
#[derive(Clone)]
pub struct Semaphore {
    inner: Arc<Inner>,
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = lock(&self.inner.state);
        f.debug_struct("Semaphore")
            .field("total", &self.inner.total)
            .field("available", &state.available)
            .field("waiters", &state.queue.len())
            .finish()
    }
}

/// Permits held; they return to the semaphore when this is dropped.
#[must_use = "dropping a Permit releases it at once"]
pub struct Permit {
    semaphore: Semaphore,
    count: u64,
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("count", &self.count)
            .finish()
    }
}

impl Permit {
    /// The permits held.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Keeps the permits acquired: give them back later with `Semaphore::release`.
    pub fn forget(mut self) -> u64 {
        // Dropped holding nothing: the permits stay taken, the semaphore reference goes.
        std::mem::take(&mut self.count)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.count > 0 {
            self.semaphore.release_held(self.count);
        }
    }
}

impl Semaphore {
    /// A semaphore with `permits` permits in all, all available.
    pub fn new(permits: u64) -> Self {
        Semaphore {
            inner: Arc::new(Inner {
                total: permits,
                state: Mutex::new(State {
                    available: permits,
                    queue: BTreeMap::new(),
                    next_seq: 0,
                    #[cfg(not(loom))]
                    granted_jobs: VecDeque::new(),
                    worker_waiters: 0,
                }),
            }),
        }
    }

    /// The permits this semaphore has in all.
    pub fn total(&self) -> u64 {
        self.inner.total
    }

    /// The permits available now.
    pub fn available(&self) -> u64 {
        lock(&self.inner.state).available
    }

    /// Waiters (threads and jobs) queued now.
    pub fn waiters(&self) -> usize {
        lock(&self.inner.state).queue.len()
    }

    /// Whether two handles are the same semaphore.
    pub fn same_as(&self, other: &Semaphore) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    fn check(&self, n: u64) -> Result<(), SemaphoreError> {
        if n > self.inner.total {
            return Err(SemaphoreError::TooMany {
                requested: n,
                total: self.inner.total,
            });
        }
        Ok(())
    }

    fn permit(&self, count: u64) -> Permit {
        Permit {
            semaphore: self.clone(),
            count,
        }
    }

    /// Takes `n` permits if they are available and nobody waits ahead.
    ///
    /// # Errors
    ///
    /// [`SemaphoreError::WouldBlock`], or [`SemaphoreError::TooMany`] when `n` exceeds
    /// the total.
    pub fn try_acquire(&self, n: u64) -> Result<Permit, SemaphoreError> {
        self.check(n)?;
        let mut state = lock(&self.inner.state);
        if state.queue.is_empty() && state.available >= n {
            state.available -= n;
            return Ok(self.permit(n));
        }
        Err(SemaphoreError::WouldBlock)
    }

    /// Waits for `n` permits. Inside a job of a pool the worker waits as it does for a
    /// running job, under the pool's help policy (`Any` runs other queued work meanwhile).
    ///
    /// # Errors
    ///
    /// [`SemaphoreError::TooMany`] when `n` exceeds the total.
    pub fn acquire(&self, n: u64) -> Result<Permit, SemaphoreError> {
        self.acquire_queued(n, true, |waiter| {
            wait_for_grant(self, waiter, None, None);
            SemaphoreError::Timeout
        })
    }

    /// Waits at most `timeout` for `n` permits (blocking the thread, also in a job).
    ///
    /// # Errors
    ///
    /// [`SemaphoreError::Timeout`], [`SemaphoreError::TooMany`].
    #[cfg(not(loom))]
    pub fn acquire_timeout(&self, n: u64, timeout: Duration) -> Result<Permit, SemaphoreError> {
        let at = Instant::now().checked_add(timeout);
        self.acquire_queued(n, at.is_none(), |waiter| {
            wait_for_grant(self, waiter, at, None)
        })
    }

    /// Waits for `n` permits until `token` is cancelled (and at most `timeout`, if given).
    ///
    /// # Errors
    ///
    /// [`SemaphoreError::Cancelled`] with the token's reason, [`SemaphoreError::Timeout`],
    /// [`SemaphoreError::TooMany`].
    #[cfg(not(loom))]
    pub fn acquire_with(
        &self,
        n: u64,
        token: &CancelToken,
        timeout: Option<Duration>,
    ) -> Result<Permit, SemaphoreError> {
        let at = timeout.and_then(|t| Instant::now().checked_add(t));
        self.acquire_queued(n, at.is_none(), |waiter| {
            wait_for_grant(self, waiter, at, Some(token))
        })
    }

    /// Takes `n` permits at once if possible; otherwise queues the calling thread, lets
    /// `wait` wait (it returns when granted, or with the error for giving up), and leaves
    /// the queue unless a grant raced the give-up (then the permits are ours).
    /// `worker_wait` says whether a worker thread may wait in its pool's way (untimed).
    fn acquire_queued(
        &self,
        n: u64,
        worker_wait: bool,
        wait: impl FnOnce(&Arc<ThreadWaiter>) -> SemaphoreError,
    ) -> Result<Permit, SemaphoreError> {
        self.check(n)?;
        let (seq, waiter) = {
            let mut state = lock(&self.inner.state);
            if state.queue.is_empty() && state.available >= n {
                state.available -= n;
                return Ok(self.permit(n));
            }
            let waiter = Arc::new(ThreadWaiter {
                needed: n,
                granted: AtomicBool::new(false),
                waker: Waker::current(worker_wait),
            });
            let seq = state.next_seq;
            state.next_seq += 1;
            if waiter.waker.is_worker() {
                state.worker_waiters += 1;
            }
            state.queue.insert(seq, Waiter::Thread(Arc::clone(&waiter)));
            (seq, waiter)
        };
        let error = wait(&waiter);
        if waiter.granted.load(Ordering::Acquire) {
            return Ok(self.permit(n));
        }
        let mut granted = Vec::new();
        {
            let mut state = lock(&self.inner.state);
            if state.queue.remove(&seq).is_none() {
                // A grant took us out of the queue after `wait` gave up: the permits are
                // ours (it set `granted` under this lock).
                return Ok(self.permit(n));
            }
            if waiter.waker.is_worker() {
                state.worker_waiters -= 1;
            }
            // We may have been the head that held others back.
            grant(&mut state, &mut granted);
        }
        granted.into_iter().for_each(Granted::deliver);
        Err(error)
    }

    /// Returns `n` permits obtained with [`Permit::forget`].
    ///
    /// # Errors
    ///
    /// [`SemaphoreError::Overflow`] if that would make more permits available than the
    /// total (nothing is released then).
    pub fn release(&self, n: u64) -> Result<(), SemaphoreError> {
        let mut granted = Vec::new();
        {
            let mut state = lock(&self.inner.state);
            if state
                .available
                .checked_add(n)
                .is_none_or(|a| a > self.inner.total)
            {
                return Err(SemaphoreError::Overflow);
            }
            state.available += n;
            grant(&mut state, &mut granted);
        }
        granted.into_iter().for_each(Granted::deliver);
        Ok(())
    }

    /// Returns permits that are known to be held (a `Permit`, an ending job).
    pub(crate) fn release_held(&self, n: u64) {
        let released = self.release(n);
        debug_assert!(released.is_ok(), "held permits always fit");
    }

    /// Queues a job in phase `WaitingForPermit` for `n` permits; it is injected into its
    /// pool when granted, perhaps before this returns. Its queue key is stored in `key`
    /// (under the lock, where [`Semaphore::remove_job`] reads it). A job cancelled before
    /// it got here is not queued.
    #[cfg(not(loom))]
    pub(crate) fn enqueue_job(&self, n: u64, job: JobRef, key: &AtomicU64) {
        let mut granted = Vec::new();
        let stale = {
            let mut state = lock(&self.inner.state);
            // SAFETY: jobs queued here are heap jobs.
            let header = unsafe { job.heap_header() };
            // Under the lock: a canceller that took the job out of `WaitingForPermit`
            // before this point finds no key and relies on us not to queue it.
            if header.lifecycle.phase() != crate::job::state::WAITING_PERMIT {
                Some(job)
            } else {
                let seq = state.next_seq;
                state.next_seq += 1;
                key.store(seq, Ordering::Release);
                state.queue.insert(seq, Waiter::Job { needed: n, job });
                grant(&mut state, &mut granted);
                None
            }
        };
        granted.into_iter().for_each(Granted::deliver);
        if let Some(job) = stale {
            drop(job.discard());
        }
    }

    /// Takes a cancelled job out of the queue (if a grant did not get to it first).
    #[cfg(not(loom))]
    pub(crate) fn remove_job(&self, key: &AtomicU64) {
        let mut granted = Vec::new();
        let removed = {
            let mut state = lock(&self.inner.state);
            let removed = state.queue.remove(&key.load(Ordering::Acquire));
            if removed.is_some() {
                grant(&mut state, &mut granted);
            }
            removed
        };
        granted.into_iter().for_each(Granted::deliver);
        if let Some(Waiter::Job { job, .. }) = removed {
            // The queue's reference to the job, dropped outside the lock.
            drop(job.discard());
        }
    }
}

impl Semaphore {
    /// A job granted while workers waited, that has not started: ours to run inline.
    #[cfg(not(loom))]
    fn take_granted_job(&self) -> Option<JobHandle> {
        let mut state = lock(&self.inner.state);
        while let Some(job) = state.granted_jobs.pop_front() {
            if job.state() == crate::job::JobState::Queued {
                return Some(job);
            }
        }
        None
    }

    #[cfg(not(loom))]
    fn has_granted_job(&self) -> bool {
        !lock(&self.inner.state).granted_jobs.is_empty()
    }
}

/// Grants permits to waiters from the head of the queue while they fit.
fn grant(state: &mut State, granted: &mut Vec<Granted>) {
    while let Some(entry) = state.queue.first_entry() {
        let needed = entry.get().needed();
        if needed > state.available {
            break;
        }
        match entry.remove() {
            Waiter::Thread(waiter) => {
                state.available -= needed;
                if waiter.waker.is_worker() {
                    state.worker_waiters -= 1;
                }
                waiter.granted.store(true, Ordering::Release);
                granted.push(Granted::Thread(waiter));
            }
            #[cfg(not(loom))]
            Waiter::Job { job, .. } => {
                // SAFETY: the queue holds heap jobs only.
                let header = unsafe { job.heap_header() };
                if header.lifecycle.try_grant() {
                    // SAFETY: the job is now `Queued` and any thread may claim it, but its
                    // end is counted only after its permits come back through this lock
                    // (`Header::release_running`, or `release_queued` if it is cancelled
                    // unrun): until we release the lock its registry has not counted its end
                    // and is alive (registry liveness invariant). After the lock it may not
                    // be, so the reference that `deliver` injects with is taken here.
                    let registry = unsafe { Registry::retain(header.registry_ptr()) };
                    state.available -= needed;
                    // Workers blocked here may run it: it holds what they wait for.
                    let workers: Vec<_> = if state.worker_waiters == 0 {
                        Vec::new()
                    } else {
                        state
                            .queue
                            .values()
                            .filter_map(|waiter| match waiter {
                                Waiter::Thread(w) if matches!(w.waker, Waker::Worker(..)) => {
                                    Some(Arc::clone(w))
                                }
                                _ => None,
                            })
                            .collect()
                    };
                    if !workers.is_empty() {
                        // SAFETY: the queue holds heap jobs only.
                        state.granted_jobs.push_back(unsafe { job.handle() });
                        granted.extend(workers.into_iter().map(Granted::Nudge));
                    }
                    granted.push(Granted::Job(registry, job));
                } else {
                    // Cancelled just now: its canceller finds the entry gone.
                    granted.push(Granted::Stale(job));
                }
            }
        }
    }
}

/// Waits until the waiter is granted, or `token` is cancelled, or `at` passes; returns the
/// error for giving up (meaningless when granted). A worker waiter (untimed) waits in its
/// pool's way; anything else parks.
#[cfg(not(loom))]
fn wait_for_grant(
    semaphore: &Semaphore,
    waiter: &Arc<ThreadWaiter>,
    at: Option<Instant>,
    token: Option<&CancelToken>,
) -> SemaphoreError {
    let granted = || waiter.granted.load(Ordering::Acquire);
    let cancelled = || token.is_some_and(CancelToken::is_cancelled);
    // A token cancel must wake us wherever we wait.
    let callback = token.map(|token| {
        let target = Arc::clone(waiter);
        (token, token.on_cancel(move |_| target.waker.wake()))
    });
    let mut error = SemaphoreError::Timeout;
    match &waiter.waker {
        // A worker runs the granted jobs it is waiting behind (they hold the permits),
        // then its own subtree, never unrelated work, whatever the help policy: an
        // unrelated job run on top of this wait could itself wait here, behind us, for
        // permits our buried frame would never use.
        Waker::Worker(..) => {
            let worker = WorkerThread::current().expect("a worker waker waits on its worker");
            while !(granted() || cancelled()) {
                match semaphore.take_granted_job() {
                    Some(job) => {
                        job.run_inline(worker);
                    }
                    None => worker
                        .wait_own_until(|| granted() || cancelled() || semaphore.has_granted_job()),
                }
            }
        }
        Waker::Thread(_) | Waker::Call(_) => {
            block_on(&waiter.waker, || granted() || cancelled(), at);
        }
    }
    if let Some((token, key)) = callback {
        token.remove_callback(key);
        if let Some(reason) = token.reason() {
            error = SemaphoreError::Cancelled(reason);
        }
    }
    error
}

/// Waits until `ready()` or `at` passes; returns whether `ready()`. The thread that makes
/// `ready()` true must then call `waker.wake()`. A worker waker (untimed) waits in its
/// pool's way (under the help policy); anything else parks.
#[cfg(not(loom))]
pub(crate) fn block_on(waker: &Waker, ready: impl Fn() -> bool, at: Option<Instant>) -> bool {
    match waker {
        Waker::Worker(..) => {
            let worker = WorkerThread::current().expect("a worker waker waits on its worker");
            worker.wait_until(&ready);
            true
        }
        Waker::Call(_) => unreachable!("a callback waker is never waited on"),
        Waker::Thread(_) => loop {
            if ready() {
                return true;
            }
            match at {
                Some(at) => {
                    let now = Instant::now();
                    if now >= at {
                        return false;
                    }
                    std::thread::park_timeout(at - now);
                }
                None => thread::park(),
            }
        },
    }
}

/// Waits as a channel, a pipeline or `wait_any` does, until `ready()` or `at` passes;
/// returns whether `ready()`. A hand-off between running threads usually comes within
/// microseconds, so it spins and yields a little first (as crossbeam-channel does) before
/// paying for a park and an unpark; then it parks on `waker` (a thread waker), a worker
/// first making sure a spare runs in its place if too few would be left running
/// (`Registry::begin_blocking`): the job it waits for may be queued behind it.
#[cfg(not(loom))]
pub(crate) fn block_compensated(
    waker: &Waker,
    ready: impl Fn() -> bool,
    at: Option<Instant>,
) -> bool {
    let backoff = crossbeam_utils::Backoff::new();
    while !backoff.is_completed() {
        if ready() {
            return true;
        }
        if at.is_some_and(|at| Instant::now() >= at) {
            return false;
        }
        backoff.snooze();
    }
    let blocking = WorkerThread::current().map(|worker| {
        worker.publish_deque();
        worker.registry().begin_blocking();
        let doing = worker
            .activity()
            .wait(crate::pool::activity::WAIT_BLOCKED, 0);
        (worker, doing)
    });
    let done = block_on(waker, ready, at);
    if let Some((worker, doing)) = blocking {
        worker.activity().restore(doing);
        worker.registry().end_blocking();
    }
    done
}

/// [`block_on`] under loom: the models wait without a deadline, on a parked thread.
#[cfg(loom)]
pub(crate) fn block_on(
    waker: &Waker,
    ready: impl Fn() -> bool,
    at: Option<std::convert::Infallible>,
) -> bool {
    debug_assert!(matches!(waker, Waker::Thread(_)) && at.is_none());
    while !ready() {
        thread::park();
    }
    true
}

#[cfg(loom)]
fn wait_for_grant(
    _semaphore: &Semaphore,
    waiter: &Arc<ThreadWaiter>,
    _at: Option<()>,
    _token: Option<()>,
) {
    while !waiter.granted.load(Ordering::Acquire) {
        thread::park();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_forgotten_permit_keeps_its_permits_but_not_the_semaphore() {
        let semaphore = Semaphore::new(2);
        assert_eq!(semaphore.acquire(2).unwrap().forget(), 2);
        assert_eq!(semaphore.available(), 0);
        assert_eq!(
            Arc::strong_count(&semaphore.inner),
            1,
            "forget leaked the permit's reference to the semaphore"
        );
        semaphore.release(2).unwrap();
        assert_eq!(semaphore.available(), 2);
    }

    /// A grant makes a gated job claimable under the semaphore's lock and pushes it into
    /// its pool after the lock. A job waiting for it may claim and run it in between, and
    /// the pool may terminate and be dropped: the grant must hold the pool until it has
    /// pushed (it took its reference after the lock before the fix, from a pool that may
    /// be gone), and the late entry must then be dropped.
    #[test]
    fn a_grant_holds_the_pool_until_its_late_push_is_dropped() {
        use crate::pause;
        use crate::{HelpPolicy, Pool, SubmitOptions};
        use std::sync::mpsc::channel;
        use std::time::Duration;

        const NAME: &str = "semaphore::tests::grant-after-terminate";
        const PATIENCE: Duration = Duration::from_secs(30);
        let delivered = pause::arm("granted job delivered", NAME);
        let semaphore = Semaphore::new(1);
        let held = semaphore.acquire(1).unwrap();
        // `Block`: the waiting job waits for the grant and then claims the job itself.
        let pool = Pool::builder()
            .threads(1)
            .help_policy(HelpPolicy::Block)
            .build()
            .unwrap();
        let registry = pool.downgrade();
        let (handle_tx, handle_rx) = channel();
        let gate = semaphore.clone();
        let waiting = pool
            .submit(move |ctx| {
                let options = SubmitOptions::new().semaphore(&gate, 1).name(NAME);
                let gated = ctx.pool().submit_with(options, |_| Ok::<_, ()>(9)).unwrap();
                handle_tx.send(gated.handle()).unwrap();
                gated.wait()
            })
            .unwrap();
        let gated = handle_rx.recv_timeout(PATIENCE).unwrap();
        // The permit's release grants the job, then stops before pushing it ...
        let releaser = thread::spawn(move || drop(held));
        assert!(
            delivered.wait_reached(PATIENCE),
            "the job was never granted"
        );
        // ... while the waiting job runs it, and the pool terminates and is dropped.
        assert_eq!(waiting.wait(), Ok(9));
        drop(pool);
        assert_eq!(
            registry.strong_count(),
            1,
            "the grant does not hold the pool it is about to push into"
        );
        delivered.resume();
        releaser.join().unwrap();
        assert_eq!(registry.strong_count(), 0, "the pool outlived the grant");
        assert_eq!(
            gated.references(),
            1,
            "the late push's entry still holds the job"
        );
        assert_eq!(semaphore.available(), 1);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::atomic::AtomicUsize;

    /// Two threads acquire from a semaphore of one and release: never two holders at
    /// once, and neither waits forever.
    #[test]
    fn acquire_release_excludes_and_never_hangs() {
        crate::pool::sleep::loom_tests::model(|| {
            let semaphore = Semaphore::new(1);
            let holders = Arc::new(AtomicUsize::new(0));
            let spawn = |semaphore: Semaphore, holders: Arc<AtomicUsize>| {
                loom::thread::spawn(move || {
                    let permit = semaphore.acquire(1).unwrap();
                    assert_eq!(holders.fetch_add(1, Ordering::SeqCst), 0);
                    holders.fetch_sub(1, Ordering::SeqCst);
                    drop(permit);
                })
            };
            let a = spawn(semaphore.clone(), holders.clone());
            let b = spawn(semaphore.clone(), holders.clone());
            a.join().unwrap();
            b.join().unwrap();
            assert_eq!(semaphore.available(), 1);
        });
    }

    /// A waiter gives up (as on a cancel) while a release races to grant it: either it
    /// leaves the queue and the permit stays available, or the grant wins and the waiter
    /// owns the permit; never both, never neither.
    #[test]
    fn give_up_races_grant() {
        crate::pool::sleep::loom_tests::model(|| {
            let semaphore = Semaphore::new(1);
            let held = semaphore.acquire(1).unwrap();
            let give_up = Arc::new(AtomicBool::new(false));
            let waiter = {
                let (semaphore, give_up) = (semaphore.clone(), give_up.clone());
                loom::thread::spawn(move || {
                    semaphore
                        .acquire_queued(1, false, |waiter| {
                            while !waiter.granted.load(Ordering::Acquire)
                                && !give_up.load(Ordering::Acquire)
                            {
                                thread::park();
                            }
                            SemaphoreError::Timeout
                        })
                        .map(Permit::forget)
                })
            };
            give_up.store(true, Ordering::Release);
            waiter.thread().unpark();
            drop(held);
            match waiter.join().unwrap() {
                Ok(count) => {
                    assert_eq!(count, 1);
                    assert_eq!(semaphore.available(), 0);
                }
                Err(_) => assert_eq!(semaphore.available(), 1),
            }
            assert_eq!(semaphore.waiters(), 0);
        });
    }

    /// A weighted request at the head is granted before a smaller one behind it, and a
    /// release wakes both in order.
    #[test]
    fn weighted_fifo_grant_wakes_waiters() {
        crate::pool::sleep::loom_tests::model(|| {
            let semaphore = Semaphore::new(2);
            let held = semaphore.acquire(2).unwrap();
            let big = {
                let semaphore = semaphore.clone();
                loom::thread::spawn(move || drop(semaphore.acquire(2).unwrap()))
            };
            let small = {
                let semaphore = semaphore.clone();
                loom::thread::spawn(move || drop(semaphore.acquire(1).unwrap()))
            };
            drop(held);
            big.join().unwrap();
            small.join().unwrap();
            assert_eq!(semaphore.available(), 2);
        });
    }
}
