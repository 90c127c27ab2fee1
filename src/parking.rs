//! A table of waiter lists keyed by address, so that an object waited on rarely (a job)
//! keeps a single word of state: its waiters live here, as with Linux futexes and
//! parking_lot's hash table.
//!
//! A waiter locks the bucket of the address, announces itself in the object's own state
//! word, re-checks that word, and waits on the bucket's condvar. The object's owner, after
//! changing the word, takes the bucket lock (only when the word says someone waits),
//! collects the callbacks registered for the address and wakes every blocked thread of the
//! bucket; threads waiting for other addresses of the same bucket re-check and wait again.
//!
//! A job's first end callback is not kept here but in the job itself
//! (`job::state::EndHook`): a group registers one for each of its jobs, and this table
//! would search a bucket's whole list for it at every end.

use crate::few::Few;
use crate::sync::{lock, wait, Condvar, Mutex, MutexGuard};

/// An end callback (run once, by the thread that ends the job, or at once if it has).
pub(crate) type Callback = Box<dyn FnOnce() + Send>;

/// The end callbacks of one address, as `unpark` takes them.
pub(crate) type Callbacks = Few<Callback>;

impl Callbacks {
    /// Runs them.
    pub(crate) fn run(self) {
        self.for_each(|callback| callback());
    }
}

/// What a bucket's lock guards.
pub(crate) struct Waiters {
    /// End callbacks registered for the bucket's addresses, each with its tag (0: none;
    /// a tagged one can be taken back, see [`Waiters::remove`]).
    callbacks: Vec<(usize, usize, Callback)>,
    /// Threads blocked on the condvar: a wake with none skips the condvar (whose
    /// `notify_all` is a system call even when nobody waits), so that a job with only
    /// an end callback ends without one.
    parked: usize,
}

impl Waiters {
    /// Registers `callback` for `key`.
    pub(crate) fn push(&mut self, key: usize, callback: Callback) {
        self.callbacks.push((key, 0, callback));
    }

    /// Registers `callback` for `key` with a nonzero `tag` that [`Waiters::remove`]
    /// finds it by (a `wait_any` watching a job, which takes its callback back when it
    /// returns).
    #[cfg(not(loom))]
    pub(crate) fn push_tagged(&mut self, key: usize, tag: usize, callback: Callback) {
        debug_assert_ne!(tag, 0);
        self.callbacks.push((key, tag, callback));
    }

    /// End callbacks registered now for `key`, for tests.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn count(&self, key: usize) -> usize {
        self.callbacks.iter().filter(|&&(k, _, _)| k == key).count()
    }

    /// Takes back the callback of `key` registered with `tag`, if it is still there.
    #[cfg(not(loom))]
    pub(crate) fn remove(&mut self, key: usize, tag: usize) -> Option<Callback> {
        let at = self
            .callbacks
            .iter()
            .position(|&(k, t, _)| k == key && t == tag)?;
        Some(self.callbacks.swap_remove(at).2)
    }
}

pub(crate) struct Bucket {
    waiters: Mutex<Waiters>,
    condvar: Condvar,
}

impl Bucket {
    #[cfg(not(loom))]
    const fn new() -> Self {
        Bucket {
            waiters: Mutex::new(Waiters {
                callbacks: Vec::new(),
                parked: 0,
            }),
            condvar: Condvar::new(),
        }
    }

    #[cfg(loom)]
    fn new() -> Self {
        Bucket {
            waiters: Mutex::new(Waiters {
                callbacks: Vec::new(),
                parked: 0,
            }),
            condvar: Condvar::new(),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Waiters> {
        lock(&self.waiters)
    }

    /// Blocks on the bucket (the guard's lock is released meanwhile) until a wake.
    pub(crate) fn park<'a>(&self, mut guard: MutexGuard<'a, Waiters>) -> MutexGuard<'a, Waiters> {
        guard.parked += 1;
        let mut guard = wait(&self.condvar, guard);
        guard.parked -= 1;
        guard
    }

    /// As [`Bucket::park`], for at most `timeout`.
    #[cfg(not(loom))]
    pub(crate) fn park_timeout<'a>(
        &self,
        mut guard: MutexGuard<'a, Waiters>,
        timeout: std::time::Duration,
    ) -> MutexGuard<'a, Waiters> {
        guard.parked += 1;
        let mut guard = crate::sync::wait_timeout(&self.condvar, guard, timeout);
        guard.parked -= 1;
        guard
    }

    /// Wakes every thread blocked on this bucket (they re-check what they wait for).
    pub(crate) fn wake_all(&self, guard: &MutexGuard<'_, Waiters>) {
        if guard.parked > 0 {
            self.condvar.notify_all();
        }
    }

    /// Wakes every thread blocked on this bucket and returns the callbacks of `key`; the
    /// caller runs them after dropping the guard.
    pub(crate) fn unpark(&self, mut guard: MutexGuard<'_, Waiters>, key: usize) -> Callbacks {
        self.wake_all(&guard);
        let mut taken = Few::None;
        let mut i = 0;
        while i < guard.callbacks.len() {
            if guard.callbacks[i].0 == key {
                taken.push(guard.callbacks.swap_remove(i).2);
            } else {
                i += 1;
            }
        }
        taken
    }
}

#[cfg(not(loom))]
const BUCKETS: usize = 64;

#[cfg(not(loom))]
static TABLE: [Bucket; BUCKETS] = [const { Bucket::new() }; BUCKETS];

/// Holds every bucket across a `fork()` (see `process`), in table order.
#[cfg(not(loom))]
#[cfg_attr(not(feature = "capi"), allow(dead_code))]
pub(crate) fn lock_all_for_fork() -> Vec<Box<dyn std::any::Any>> {
    TABLE
        .iter()
        .map(|bucket| Box::new(bucket.lock()) as Box<dyn std::any::Any>)
        .collect()
}

/// The bucket of an address.
#[cfg(not(loom))]
pub(crate) fn bucket(key: usize) -> &'static Bucket {
    // Fibonacci hashing of the address; the low bits of heap addresses carry no entropy.
    let hash = (key as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - 6);
    &TABLE[hash as usize % BUCKETS]
}

#[cfg(loom)]
loom::lazy_static! {
    static ref TABLE: Bucket = Bucket::new();
}

/// Under loom, one bucket: the model explores the sharing anyway.
#[cfg(loom)]
pub(crate) fn bucket(_key: usize) -> &'static Bucket {
    &TABLE
}
