//! A token's registrations of queued jobs, split into shards.
//!
//! Every job submitted with a token is registered with it while it is queued, so that
//! cancelling the token ends it at once, and deregistered by whoever takes it out of its
//! queue (the worker that claims it, or the cancel that ends it). The submitting thread
//! registers and a worker deregisters, on every job: under one lock they contend. Here
//! each job goes to one of [`SHARDS`] slabs, each under its own lock on its own cache
//! line, chosen by the job's address, so that the registration of one job and the
//! deregistration of another usually take different locks. Shard 0 is inline; the others
//! are allocated the first time a registration finds shard 0 locked, so that a token
//! whose registrations never meet (a token per job) stays small.
//!
//! # Protocol
//!
//! The token's reason is set once, by its cancel, under the token's outer lock
//! (`registrations`), before the cancel drains the shards one after the other. A
//! registration looks at the reason under its shard's lock and inserts only while it is
//! 0. So for each shard, either the registration's critical section comes first, and the
//! drain of that shard (which follows it) takes the job out; or the drain's comes first,
//! and the registration, ordered after the reason's store by the lock, sees the reason
//! and refuses (its caller then ends the job itself). Nothing is registered in a shard
//! after its drain: a cancel never misses a queued job, and never leaves a registration
//! (which holds a reference to its job) behind.
//!
//! The drain must see every shard a registration can use. The other shards are published
//! under the outer lock, and the cancel reads the pointer after its own critical section
//! there: either the publication came first, and the cancel sees (and drains) them, or
//! the cancel's came first, and the registration that publishes sees the reason and
//! publishes nothing.
//!
//! A registration leaves its shard exactly once, under the shard's lock: by `deregister`
//! (the claim, or the end of a job cancelled otherwise) or by the drain. A key is not
//! reused while its owner may still deregister it: only `deregister` frees a slot, each
//! job deregisters its own key once, and a drained shard stays empty (a late `deregister`
//! finds nothing).
//!
//! The models at the bottom race a registration, a claim and a cancel, and a growth and
//! a cancel. They fail if the protocol is broken: the reason read before taking the
//! shard's lock, the drain before the reason's store, a shard skipped by the drain, the
//! other shards published without the outer lock.

use std::marker::PhantomData;
use std::ptr;

use crate::slab::Slab;
use crate::sync::atomic::{AtomicPtr, AtomicU8, Ordering};
use crate::sync::{lock, try_lock, Mutex, MutexGuard};

/// The number of shards. Under loom, two: enough for the model to put two jobs in one
/// shard or in two.
#[cfg(not(loom))]
pub(crate) const SHARDS: usize = 4;
#[cfg(loom)]
pub(crate) const SHARDS: usize = 2;

/// The queued-job registrations of one token.
///
/// Shard 0 is inline: a token whose registrations never meet (a token per job, as when
/// each Go job has a cancellable context of its own) has only it, and stays one small
/// plain allocation.
/// The others are allocated once, the first time a registration finds shard 0 locked.
pub(crate) struct JobRegistrations<T> {
    first: Mutex<Slab<T>>,
    /// Null until the other shards are needed; then set once, under the token's outer
    /// lock (see `grow_cold`), and freed with `self`.
    more: AtomicPtr<More<T>>,
    _owns: PhantomData<Box<More<T>>>,
}

/// Shards 1 to `SHARDS - 1`.
struct More<T> {
    shards: [Shard<T>; SHARDS - 1],
}

/// One shard: its lock and its slab's header fill one cache line, not shared with another
/// shard's (`More` is a rare allocation: its alignment costs nothing on the common path).
#[repr(align(64))]
struct Shard<T> {
    slab: Mutex<Slab<T>>,
}

/// The shard hint of a job at `address`: a Fibonacci hash of the address without its
/// alignment bits, so that jobs allocated one after the other spread over the shards.
#[inline]
pub(crate) fn address_hint(address: usize) -> usize {
    (address >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15_u64 as usize) >> (usize::BITS - 8)
}

impl<T> JobRegistrations<T> {
    pub(crate) fn new() -> Self {
        JobRegistrations {
            first: Mutex::new(Slab::EMPTY),
            more: AtomicPtr::new(ptr::null_mut()),
            _owns: PhantomData,
        }
    }

    /// The other shards, if allocated.
    fn more(&self) -> Option<&More<T>> {
        let more = self.more.load(Ordering::Acquire);
        // SAFETY: a non-null `more` points at the `More` published by `grow_cold` (the
        // acquire pairs with its release), which lives until `self` is dropped.
        unsafe { more.as_ref() }
    }

    /// The slab of shard `shard`, which exists (shard 0, or a key or hint given after the
    /// other shards were allocated).
    fn slab(&self, shard: usize) -> &Mutex<Slab<T>> {
        match shard {
            0 => &self.first,
            _ => &self.more().expect("the shards of a key exist").shards[shard - 1].slab,
        }
    }

    /// Registers `entry` unless `reason` (the token's own reason code) is set: then gives
    /// it back. Returns the key to `deregister` it with. `hint` picks the shard once there
    /// are several; `outer` is the lock under which the token's cancel sets `reason`.
    pub(crate) fn register<R>(
        &self,
        hint: usize,
        reason: &AtomicU8,
        outer: &Mutex<R>,
        entry: T,
    ) -> Result<usize, T> {
        let shard = match self.more() {
            Some(_) => hint % SHARDS,
            None => match try_lock(&self.first) {
                // One shard, and nobody on it: the common path of a token per job.
                Some(slab) => return Self::insert(slab, 0, reason, entry),
                None => match self.grow_cold(reason, outer) {
                    true => hint % SHARDS,
                    // Cancelled: shard 0 refuses below.
                    false => 0,
                },
            },
        };
        Self::insert(lock(self.slab(shard)), shard, reason, entry)
    }

    fn insert(
        mut slab: MutexGuard<'_, Slab<T>>,
        shard: usize,
        reason: &AtomicU8,
        entry: T,
    ) -> Result<usize, T> {
        // Under the shard's lock (see the protocol): a cancel either sees our entry when
        // it drains this shard, or set the reason before we locked.
        if reason.load(Ordering::Acquire) != 0 {
            return Err(entry);
        }
        Ok(slab.insert(entry) * SHARDS + shard)
    }

    /// Allocates the other shards (shard 0 was found locked); false if the token is
    /// cancelled. Under `outer`, the lock of the reason's store: either the cancel's
    /// critical section comes first, and we see the reason and publish nothing, or ours
    /// does, and the cancel, which reads `more` after its own, sees the shards it drains.
    #[cold]
    fn grow_cold<R>(&self, reason: &AtomicU8, outer: &Mutex<R>) -> bool {
        let _outer = lock(outer);
        if self.more().is_some() {
            return true;
        }
        if reason.load(Ordering::Acquire) != 0 {
            return false;
        }
        let more = Box::new(More {
            shards: std::array::from_fn(|_| Shard {
                slab: Mutex::new(Slab::EMPTY),
            }),
        });
        self.more.store(Box::into_raw(more), Ordering::Release);
        true
    }

    /// Takes out the registration `key`, if a cancel has not taken it. The caller drops
    /// it, outside the lock.
    pub(crate) fn deregister(&self, key: usize) -> Option<T> {
        lock(self.slab(key % SHARDS)).remove(key / SHARDS)
    }

    /// Takes every registration out, shard after shard, and gives each to `each` outside
    /// the shard's lock. The caller has set the token's reason before, under the `outer`
    /// lock given to `register`: nothing can be registered after this.
    pub(crate) fn drain(&self, mut each: impl FnMut(T)) {
        for slab in self.slabs() {
            let drained = std::mem::take(&mut *lock(slab));
            drained.into_entries().for_each(&mut each);
        }
    }

    /// The slab of every shard that exists, shard 0 first.
    fn slabs(&self) -> impl Iterator<Item = &Mutex<Slab<T>>> {
        let more = self.more().into_iter();
        std::iter::once(&self.first)
            .chain(more.flat_map(|more| more.shards.iter().map(|s| &s.slab)))
    }

    /// Registrations currently held.
    #[cfg(any(test, loom))]
    pub(crate) fn len(&self) -> usize {
        self.slabs().map(|slab| lock(slab).len()).sum()
    }
}

impl<T> Drop for JobRegistrations<T> {
    fn drop(&mut self) {
        let more = self.more.load(Ordering::Acquire);
        if !more.is_null() {
            // SAFETY: published by `grow_cold` from `Box::into_raw`, freed only here, and
            // `&mut self` means nobody else uses it.
            drop(unsafe { Box::from_raw(more) });
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn keys_find_their_shard_and_slots_are_reused() {
        let jobs = JobRegistrations::new();
        let (reason, outer) = (AtomicU8::new(0), Mutex::new(()));
        let mut keys: Vec<usize> = (0..8)
            .map(|i| {
                jobs.register(address_hint(i * 96), &reason, &outer, i)
                    .unwrap()
            })
            .collect();
        assert!(
            keys.iter().all(|k| k % SHARDS == 0),
            "one shard until contended"
        );
        assert!(jobs.grow_cold(&reason, &outer));
        keys.extend((8..64).map(|i| {
            jobs.register(address_hint(i * 96), &reason, &outer, i)
                .unwrap()
        }));
        assert_eq!(jobs.len(), 64);
        let used: std::collections::HashSet<_> = keys.iter().map(|k| k % SHARDS).collect();
        assert_eq!(
            used.len(),
            SHARDS,
            "consecutive jobs spread over every shard"
        );
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(jobs.deregister(*key), Some(i));
            assert_eq!(jobs.deregister(*key), None, "a key leaves once");
        }
        assert_eq!(jobs.len(), 0);
        let again = jobs.register(address_hint(0), &reason, &outer, 7).unwrap();
        assert!(keys.contains(&again), "a freed slot is reused");
        reason.store(1, Ordering::Release);
        let mut drained = Vec::new();
        jobs.drain(|entry| drained.push(entry));
        assert_eq!(drained, [7]);
        assert_eq!(
            jobs.register(0, &reason, &outer, 8),
            Err(8),
            "refused once cancelled"
        );
        assert_eq!(jobs.deregister(again), None, "drained: nothing left");
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::cancel::model::Job;
    use crate::job::state::{CANCELLED, SUCCEEDED};
    use loom::sync::atomic::{AtomicBool, AtomicUsize};
    use loom::sync::Arc;

    /// A token reduced to its reason and its job registrations, cancelled as
    /// `Inner::cancel` does: reason first, then the drain.
    struct Token {
        reason: AtomicU8,
        /// `Inner::registrations`: the reason is set under it.
        outer: loom::sync::Mutex<()>,
        jobs: JobRegistrations<Arc<Job>>,
    }

    const NO_KEY: usize = usize::MAX;

    impl Token {
        fn deregister(&self, key: &AtomicUsize) {
            let key = key.load(Ordering::Acquire);
            if key != NO_KEY {
                drop(self.jobs.deregister(key));
            }
        }

        fn cancel(&self) {
            {
                let _outer = self.outer.lock().unwrap();
                self.reason.store(1, Ordering::Release);
            }
            self.jobs.drain(|job| job.cancel_queued(|| {}));
        }
    }

    /// `submit` then a worker: the submitter registers the job (or, refused, cancels it
    /// itself) and queues it; the worker pops it if it is queued by then (a job further
    /// back in a queue is never popped in the model) and claims it as `try_claim` does,
    /// deregistering on the claim. A third thread cancels the token. Whatever the
    /// interleaving: each job ends at most once, a job ends if the cancel happened and
    /// it was not claimed (the cancel never misses a queued job), and no registration
    /// (a reference to a job) outlives the race.
    fn race(hints: &'static [usize]) {
        crate::pool::sleep::loom_tests::model(move || {
            let token = Arc::new(Token {
                reason: AtomicU8::new(0),
                outer: loom::sync::Mutex::new(()),
                jobs: JobRegistrations::new(),
            });
            let jobs: Vec<_> = hints
                .iter()
                .map(|_| (Arc::new(Job::new()), Arc::new(AtomicUsize::new(NO_KEY))))
                .collect();
            let queued: Arc<Vec<AtomicBool>> =
                Arc::new(hints.iter().map(|_| AtomicBool::new(false)).collect());
            let claimed = Arc::new(AtomicUsize::new(0));

            let canceller = {
                let token = token.clone();
                loom::thread::spawn(move || token.cancel())
            };
            let worker = {
                let (token, jobs, queued, claimed) =
                    (token.clone(), jobs.clone(), queued.clone(), claimed.clone());
                loom::thread::spawn(move || {
                    for (i, (job, key)) in jobs.iter().enumerate().rev() {
                        if !queued[i].load(Ordering::Acquire) {
                            continue;
                        }
                        if token.reason.load(Ordering::Acquire) != 0 {
                            job.cancel_queued(|| token.deregister(key));
                        } else if job.state.try_claim() {
                            token.deregister(key);
                            claimed.fetch_add(1, Ordering::SeqCst);
                            job.end(SUCCEEDED);
                        }
                    }
                })
            };
            // The submitter.
            for (i, (job, key)) in jobs.iter().enumerate() {
                match token
                    .jobs
                    .register(hints[i], &token.reason, &token.outer, job.clone())
                {
                    Ok(k) => key.store(k, Ordering::Release),
                    Err(job) => {
                        job.cancel_queued(|| token.deregister(key));
                        continue;
                    }
                }
                queued[i].store(true, Ordering::Release);
            }
            canceller.join().unwrap();
            worker.join().unwrap();

            let mut ended = 0;
            for (job, _) in &jobs {
                let ends = job.ends();
                assert!(ends <= 1, "a job ended twice");
                assert_eq!(
                    ends, 1,
                    "a job neither claimed nor ended by the cancel: the cancel missed it"
                );
                ended += ends;
                assert_eq!(Arc::strong_count(job), 1, "a registration kept its job");
            }
            assert_eq!(ended, jobs.len());
            assert_eq!(token.jobs.len(), 0, "a registration outlived the cancel");
            assert!(claimed.load(Ordering::SeqCst) <= jobs.len());
        });
    }

    /// The other shards are allocated (as when shard 0 is found locked) and a job
    /// registered in one of them while the token is cancelled: the cancel drains the new
    /// shard, or the registration is refused. Nothing is left registered.
    #[test]
    fn growth_races_cancel() {
        crate::pool::sleep::loom_tests::model(|| {
            let token = Arc::new(Token {
                reason: AtomicU8::new(0),
                outer: loom::sync::Mutex::new(()),
                jobs: JobRegistrations::new(),
            });
            let entry = Arc::new(Job::new());
            let canceller = {
                let token = token.clone();
                loom::thread::spawn(move || token.cancel())
            };
            let registered = token.jobs.grow_cold(&token.reason, &token.outer)
                && token
                    .jobs
                    .register(1, &token.reason, &token.outer, entry.clone())
                    .is_ok();
            canceller.join().unwrap();
            assert_eq!(token.jobs.len(), 0, "a registration outlived the cancel");
            assert_eq!(Arc::strong_count(&entry), 1, "a registration kept its job");
            if registered {
                assert_eq!(entry.ends(), 1, "the cancel missed it");
            }
        });
    }

    /// One job: its registration, its claim and the cancel all race on one shard.
    #[test]
    fn register_claim_cancel_one_job() {
        race(&[0]);
    }

    /// Two jobs in two shards: the cancel drains one shard while the second job is
    /// registered in the other, or deregistered from it.
    #[test]
    fn register_claim_cancel_two_shards() {
        race(&[0, 1]);
    }
}
