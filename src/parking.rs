//! A table of waiter lists keyed by address, so that an object waited on rarely (a job)
//! keeps a single word of state: its waiters live here, as with Linux futexes and
//! parking_lot's hash table.
//!
//! A waiter locks the bucket of the address, announces itself in the object's own state
//! word, re-checks that word, and waits on the bucket's condvar. The object's owner, after
//! changing the word, takes the bucket lock (only when the word says someone waits),
//! collects the callbacks registered for the address and wakes every blocked thread of the
//! bucket; threads waiting for other addresses of the same bucket re-check and wait again.

use crate::sync::{lock, Condvar, Mutex, MutexGuard};

type Callback = Box<dyn FnOnce() + Send>;

pub(crate) struct Bucket {
    callbacks: Mutex<Vec<(usize, Callback)>>,
    condvar: Condvar,
}

impl Bucket {
    #[cfg(not(loom))]
    const fn new() -> Self {
        Bucket {
            callbacks: Mutex::new(Vec::new()),
            condvar: Condvar::new(),
        }
    }

    #[cfg(loom)]
    fn new() -> Self {
        Bucket {
            callbacks: Mutex::new(Vec::new()),
            condvar: Condvar::new(),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Vec<(usize, Callback)>> {
        lock(&self.callbacks)
    }

    pub(crate) fn condvar(&self) -> &Condvar {
        &self.condvar
    }

    /// Wakes every thread blocked on this bucket and returns the callbacks of `key`; the
    /// caller runs them after dropping the guard.
    pub(crate) fn unpark(
        &self,
        mut guard: MutexGuard<'_, Vec<(usize, Callback)>>,
        key: usize,
    ) -> Vec<Callback> {
        self.condvar.notify_all();
        if guard.is_empty() {
            return Vec::new();
        }
        let mut taken = Vec::new();
        let mut i = 0;
        while i < guard.len() {
            if guard[i].0 == key {
                taken.push(guard.swap_remove(i).1);
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
