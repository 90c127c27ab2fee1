//! The sleep/wake protocol of the workers. See `README.md` in this folder for the states,
//! the transitions and the argument that no wakeup is lost.

use crossbeam_utils::CachePadded;

use crate::sync::atomic::{fence, AtomicU64, Ordering};
use crate::sync::{lock, wait, Condvar, Mutex};

/// One searching worker, in the high half of [`Sleep::counters`].
const ONE_SEARCHING: u64 = 1 << 32;
/// One sleeping worker, in the low half of [`Sleep::counters`].
const ONE_SLEEPING: u64 = 1;

fn searching(counters: u64) -> u64 {
    counters >> 32
}

fn sleeping(counters: u64) -> u64 {
    counters & 0xffff_ffff
}

/// Tracks which workers search for work and which sleep, and wakes them.
///
/// # Memory ordering
///
/// The protocol is a Dekker handshake between a thread that publishes work and a worker
/// that is about to sleep:
///
/// - a publisher makes the work visible, then (`SeqCst` fence) reads `counters`;
/// - a worker moves itself to "sleeping" with a `SeqCst` read-modify-write on `counters`,
///   then (`SeqCst` fence) looks at the queues one last time.
///
/// In the single total order of `SeqCst` operations one of the two comes first, so either
/// the publisher sees the sleeper (and wakes it) or the sleeper sees the work. All other
/// state (the sleeper list, the per-worker `notified` flags) is guarded by mutexes.
pub(crate) struct Sleep {
    /// At most this many workers search at once (half the pool's configured workers,
    /// at least one; idle spare slots do not count).
    search_limit: u64,
    /// Searching workers (high 32 bits) and sleeping workers (low 32 bits).
    counters: CachePadded<AtomicU64>,
    /// Wakes issued (statistics).
    unparks: AtomicU64,
    /// Indices of the sleeping workers, most recent last; always consistent with the
    /// sleeping half of `counters` while the lock is held.
    sleepers: Mutex<Vec<usize>>,
    workers: Box<[CachePadded<WorkerSleep>]>,
}

struct WorkerSleep {
    /// Set by a waker, under this lock, when it took the worker out of the sleeper list.
    notified: Mutex<bool>,
    condvar: Condvar,
    /// Where the worker blocks while it waits for a stolen `join` half (see
    /// [`Sleep::wait_latch`]); the thief wakes it through here, never through the job.
    latch: Mutex<()>,
    latch_condvar: Condvar,
}

impl Sleep {
    #[cfg(loom)]
    pub(crate) fn new(threads: usize) -> Self {
        Sleep::with_spares(threads, threads)
    }

    /// Sleep slots for `slots` workers, of which `base` run unless some are spares
    /// (`Registry::begin_blocking`): at most half of `base` search at once.
    pub(crate) fn with_spares(slots: usize, base: usize) -> Self {
        Sleep {
            search_limit: (base as u64 / 2).max(1),
            counters: CachePadded::new(AtomicU64::new(0)),
            unparks: AtomicU64::new(0),
            sleepers: Mutex::new(Vec::with_capacity(slots)),
            workers: (0..slots)
                .map(|_| {
                    CachePadded::new(WorkerSleep {
                        notified: Mutex::new(false),
                        condvar: Condvar::new(),
                        latch: Mutex::new(()),
                        latch_condvar: Condvar::new(),
                    })
                })
                .collect(),
        }
    }

    /// Work was pushed (on the injector, or on a worker's deque by a job that may go on
    /// to block) and some worker must be sure to find it.
    #[inline]
    pub(crate) fn notify_injected(&self) {
        // Order the push before the read of `counters` (the publisher's half of the
        // handshake described on `Sleep`).
        fence(Ordering::SeqCst);
        self.wake_if_nobody_searches();
    }

    /// The second half of a `join` was pushed on the calling worker's own deque. No
    /// fence: the pusher will pop it back itself if no other worker sees it, exactly as
    /// rayon does for internal jobs. A worker that is about to block calls
    /// [`Sleep::notify_injected`] first if its deque is not empty.
    #[inline]
    pub(crate) fn notify_local(&self) {
        self.wake_if_nobody_searches();
    }

    #[inline]
    fn wake_if_nobody_searches(&self) {
        let counters = self.counters.load(Ordering::SeqCst);
        if searching(counters) == 0 && sleeping(counters) > 0 {
            self.wake_one_cold();
        }
    }

    /// The calling worker found nothing in its fast path and starts searching.
    pub(crate) fn start_searching(&self) {
        self.counters.fetch_add(ONE_SEARCHING, Ordering::SeqCst);
    }

    /// The calling worker found nothing in its fast path and starts searching, unless
    /// half the workers (at least one) search already: then it returns false and the
    /// caller goes to sleep without spinning ([`Sleep::sleep`] with `searching` false).
    pub(crate) fn try_start_searching(&self) -> bool {
        let limit = self.search_limit;
        let mut counters = self.counters.load(Ordering::SeqCst);
        loop {
            if searching(counters) >= limit {
                return false;
            }
            match self.counters.compare_exchange_weak(
                counters,
                counters + ONE_SEARCHING,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return true,
                Err(actual) => counters = actual,
            }
        }
    }

    /// The calling worker, counted as searching, found work or stops for good. When it
    /// was the last searcher and work remains visible, it wakes a sleeper to take over the
    /// search: otherwise a second job published while it searched could wait, behind the
    /// first, for as long as the first runs.
    pub(crate) fn stop_searching(&self, work_remains: impl FnOnce() -> bool) -> bool {
        let old = self.counters.fetch_sub(ONE_SEARCHING, Ordering::SeqCst);
        debug_assert!(searching(old) > 0);
        // The RMW above is our half of the handshake with publishers that saw us searching.
        fence(Ordering::SeqCst);
        if searching(old) == 1 && sleeping(old) > 0 && work_remains() {
            self.wake_one_cold();
            return true;
        }
        false
    }

    /// Puts the calling worker to sleep unless `has_work` says there is something to do.
    /// `searching`: whether it is counted as searching now (false: it comes straight from
    /// busy, [`Sleep::try_start_searching`] having refused). Returns whether it actually
    /// blocked; either way the worker is counted as searching when this returns.
    pub(crate) fn sleep(
        &self,
        index: usize,
        searching: bool,
        has_work: impl FnOnce() -> bool,
    ) -> bool {
        {
            let mut sleepers = lock(&self.sleepers);
            sleepers.push(index);
            // Searching -> sleeping, in one RMW so that no publisher can see the worker as
            // neither searching nor sleeping. Wrapping add of (sleeping + 1, searching - 1).
            let delta = if searching {
                ONE_SLEEPING.wrapping_sub(ONE_SEARCHING)
            } else {
                ONE_SLEEPING
            };
            self.counters.fetch_add(delta, Ordering::SeqCst);
        }
        // Our half of the handshake: the registration above comes before the last look.
        fence(Ordering::SeqCst);
        let worker = &self.workers[index];
        if has_work() {
            let mut sleepers = lock(&self.sleepers);
            if let Some(position) = sleepers.iter().position(|&i| i == index) {
                sleepers.swap_remove(position);
                self.counters
                    .fetch_add(ONE_SEARCHING.wrapping_sub(ONE_SLEEPING), Ordering::SeqCst);
            } else {
                // A waker took us out of the list (and counted us as searching) between our
                // registration and our look; consume its notification.
                *lock(&worker.notified) = false;
            }
            return false;
        }
        let mut notified = lock(&worker.notified);
        while !*notified {
            notified = wait(&worker.condvar, notified);
        }
        *notified = false;
        true
    }

    /// Wakes the most recently slept worker, if any, counting it as searching.
    #[cold]
    fn wake_one_cold(&self) -> bool {
        let mut sleepers = lock(&self.sleepers);
        match sleepers.pop() {
            Some(index) => {
                self.counters
                    .fetch_add(ONE_SEARCHING.wrapping_sub(ONE_SLEEPING), Ordering::SeqCst);
                self.notify(index);
                true
            }
            None => false,
        }
    }

    /// Wakes worker `index` if it sleeps (a job it waits for has finished).
    pub(crate) fn wake_specific(&self, index: usize) {
        let mut sleepers = lock(&self.sleepers);
        if let Some(position) = sleepers.iter().position(|&i| i == index) {
            sleepers.swap_remove(position);
            self.counters
                .fetch_add(ONE_SEARCHING.wrapping_sub(ONE_SLEEPING), Ordering::SeqCst);
            self.notify(index);
        }
    }

    /// Wakes every sleeping worker of index `first` or above (the spares, which retire).
    pub(crate) fn wake_from(&self, first: usize) {
        fence(Ordering::SeqCst);
        let mut sleepers = lock(&self.sleepers);
        let mut i = 0;
        while i < sleepers.len() {
            if sleepers[i] >= first {
                let index = sleepers.swap_remove(i);
                self.counters
                    .fetch_add(ONE_SEARCHING.wrapping_sub(ONE_SLEEPING), Ordering::SeqCst);
                self.notify(index);
            } else {
                i += 1;
            }
        }
    }

    /// Wakes every sleeping worker (shutdown).
    pub(crate) fn wake_all(&self) {
        fence(Ordering::SeqCst);
        let mut sleepers = lock(&self.sleepers);
        while let Some(index) = sleepers.pop() {
            self.counters
                .fetch_add(ONE_SEARCHING.wrapping_sub(ONE_SLEEPING), Ordering::SeqCst);
            self.notify(index);
        }
    }

    fn notify(&self, index: usize) {
        self.unparks.fetch_add(1, Ordering::Relaxed);
        let worker = &self.workers[index];
        *lock(&worker.notified) = true;
        worker.condvar.notify_one();
    }

    /// Blocks worker `index`, outside the idle protocol (it is neither searching nor
    /// sleeping, so it is never picked for new work), until `is_set` holds. The thread
    /// that makes `is_set` true must then call [`Sleep::wake_latch`].
    pub(crate) fn wait_latch(&self, index: usize, is_set: impl Fn() -> bool) {
        let worker = &self.workers[index];
        let mut guard = lock(&worker.latch);
        // Checked under the lock that `wake_latch` takes: no wakeup between check and wait.
        while !is_set() {
            guard = wait(&worker.latch_condvar, guard);
        }
    }

    /// Wakes worker `index` after making its latch condition true, whether it waits in
    /// [`Sleep::wait_latch`] or sleeps in the idle protocol with the condition in its
    /// `has_work` check.
    pub(crate) fn wake_latch(&self, index: usize) {
        self.wake_specific(index);
        let worker = &self.workers[index];
        drop(lock(&worker.latch));
        worker.latch_condvar.notify_all();
    }

    /// Wakes issued so far (statistics).
    pub(crate) fn unparks(&self) -> u64 {
        self.unparks.load(Ordering::Relaxed)
    }

    /// The indices of the workers asleep now (`Pool::debug_dump`).
    #[cfg(not(loom))]
    pub(crate) fn sleepers(&self) -> Vec<usize> {
        lock(&self.sleepers).clone()
    }

    /// Workers asleep now, waiting for work (statistics).
    pub(crate) fn sleeping_now(&self) -> u64 {
        sleeping(self.counters.load(Ordering::SeqCst))
    }
}

#[cfg(all(test, loom))]
pub(crate) mod loom_tests;
