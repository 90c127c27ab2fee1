//! The shared state of a pool: queues, sleep, counters, timer, shutdown.
//!
//! # Registry liveness invariant
//!
//! A job's header holds its registry's address without a reference count (a shared count
//! touched by every submit would be the hottest cache line of the pool). This is sound
//! because a registry outlives every job it has accepted and not yet counted as ended:
//! worker threads hold a strong reference until they exit, and they exit only after a
//! shutdown found the pool quiescent (every accepted job counted as ended). So whoever
//! takes a job out of `Queued`/`Delayed` (before counting its end) may take a strong
//! reference from the address ([`Registry::retain`]).
//!
//! Whoever moves a job *into* `Queued` (the timer, a semaphore's grant) and then pushes
//! it must hold its reference before the move: from then on a waiter may claim the job,
//! run it and count its end, and the pool may terminate and go. The timer upgrades a weak
//! reference; a grant retains under the semaphore's lock, which the job's end waits for.
//! The push may then come after the pool terminated: `inject_claimable` drops such a
//! stale entry.

use std::ptr::NonNull;
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_deque::{Injector, Steal, Stealer};
use crossbeam_utils::CachePadded;
use once_cell::sync::OnceCell;

use super::activity::Activity;
use super::compensation::Compensation;
use super::lifecycle::{Lifecycle, CANCELLING, DRAINING, OPEN, TERMINATED};
use super::sleep::Sleep;
use super::worker::WorkerThread;
use super::{HelpPolicy, PanicPolicy, ShutdownMode, ShutdownReport, SubmitOptions};
use crate::cancel::{CancelReason, CancelToken};
use crate::context::Context;
use crate::error::SubmitError;
use crate::few::Few;
use crate::job::state;
use crate::job::{ErasedJob, Header, HeaderInit, HeapJob, Job, JobHandle, JobRef};
use crate::stats::{bump_own, Counters, Stats, Totals};
use crate::sync::atomic::{fence, AtomicUsize, Ordering};
use crate::sync::{lock, wait, wait_timeout, Condvar, Mutex};
use crate::timer::{Timer, TimerKey};

pub(crate) type ThreadHook = Arc<dyn Fn(usize) + Send + Sync>;

/// One `add_thread_hooks` (or `add_park_hook`) call's hooks. `tag` identifies the C
/// layer's entries (its function pointers and argument) so that it can remove them by
/// the same values.
pub(crate) struct HookEntry {
    start: Option<ThreadHook>,
    stop: Option<ThreadHook>,
    park: Option<ThreadHook>,
    #[cfg_attr(not(feature = "capi"), allow(dead_code))]
    tag: Option<HookTag>,
}

impl HookEntry {
    fn in_place(&self) -> bool {
        self.start.is_some() || self.stop.is_some() || self.park.is_some()
    }

    fn hook(&self, which: HookKind) -> &Option<ThreadHook> {
        match which {
            HookKind::Start => &self.start,
            HookKind::Stop => &self.stop,
            HookKind::Park => &self.park,
        }
    }
}

/// What identifies hooks the C layer added: the start, stop and park functions' addresses
/// (0 for none) and the argument.
pub(crate) type HookTag = [usize; 4];

/// The hooks to run of each entry.
#[derive(Clone, Copy)]
pub(crate) enum HookKind {
    Start,
    Stop,
    Park,
}

/// The hooks of one `add_thread_hooks` call, or of the builder.
#[derive(Clone, Default)]
pub(crate) struct ThreadHooks {
    pub(crate) start: Option<ThreadHook>,
    pub(crate) stop: Option<ThreadHook>,
    pub(crate) park: Option<ThreadHook>,
}

thread_local! {
    /// Whether this thread is running one of a pool's thread hooks.
    static IN_HOOK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// How many spare worker slots a pool of `threads` has (see `begin_blocking`): as many
/// as Java's ForkJoinPool lets its common pool add (256), or 4 per thread if more. A slot
/// costs a deque and a sleep slot up front; a thread only while a job blocks.
fn spares_for(threads: usize) -> usize {
    (4 * threads).max(256)
}

pub(crate) struct RegistryConfig {
    pub(crate) stack_size: Option<usize>,
    pub(crate) threads: usize,
    pub(crate) capacity: Option<usize>,
    pub(crate) name: String,
    pub(crate) help: HelpPolicy,
    pub(crate) panic: PanicPolicy,
    pub(crate) hooks: ThreadHooks,
}

pub(crate) struct Registry {
    injector: Injector<JobRef>,
    stealers: Box<[Stealer<JobRef>]>,
    /// How many of `stealers` belong to slots a thread ever ran on (the workers, then the
    /// spare slots up to the highest one started; only ever raised): the deques past it
    /// were never pushed to, so the searches skip them.
    slots_used: AtomicUsize,
    sleep: Sleep,
    /// One stripe per worker, then the stripe shared by every other thread.
    counters: Box<[CachePadded<Counters>]>,
    /// One per worker slot: what its worker is doing (`Pool::debug_dump`).
    activity: Box<[CachePadded<Activity>]>,
    lifecycle: Lifecycle,
    root: CancelToken,
    /// Cancelled when any shutdown begins: periodic jobs stop then.
    closing: CancelToken,
    timer: OnceCell<Timer<JobRef>>,
    weak_self: Weak<Registry>,
    capacity: Option<usize>,
    /// Outside submits accepted and not yet started or cancelled (bounded pools only).
    outside_queued: CachePadded<AtomicUsize>,
    room: Mutex<()>,
    room_condvar: Condvar,
    room_waiters: AtomicUsize,
    quiescence: Mutex<()>,
    quiescence_condvar: Condvar,
    help: HelpPolicy,
    panic: PanicPolicy,
    name: String,
    /// Thread hooks, in order: the builder's first, then those added to the running pool
    /// (`Pool::add_thread_hooks`, `Pool::add_park_hook`). A worker runs the start hooks
    /// it has not run yet when it starts and before each job it takes, at exit the stop
    /// hooks of those it ran, in reverse, and every park hook in place each time it is
    /// about to block. Only appended to; a removed entry stays, emptied, so that indices
    /// (what each worker has run) stay valid.
    hooks: Mutex<Vec<HookEntry>>,
    /// `hooks.len()`, read by the workers before each job without the lock.
    hook_count: AtomicUsize,
    /// How many park hooks are in place, read by the workers before each block without
    /// the lock.
    park_hooks: AtomicUsize,
    /// Held (shared) by a worker while it fetches and runs hooks, so that a removal,
    /// which empties an entry and then takes it exclusively, returns only once no call of
    /// the removed hooks is in progress.
    hook_gate: std::sync::RwLock<()>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// The configured number of workers; the slots past it are spares (see
    /// `begin_blocking`).
    base: usize,
    /// The spare slots no thread runs now, each with its deque (whose stealer is in
    /// `stealers`).
    spare_slots: Mutex<Vec<(usize, crossbeam_deque::Worker<JobRef>)>>,
    /// Worker threads running, and how many of them are blocked in a compensated wait.
    compensation: Compensation,
    /// The name and stack size of spare threads.
    stack_size: Option<usize>,
    /// Live `Pool` handles; the last one dropped drains the pool.
    pub(crate) handles: AtomicUsize,
}

impl Registry {
    /// A registry and the deques its workers will own.
    pub(crate) fn new(
        config: RegistryConfig,
    ) -> (Arc<Registry>, Vec<crossbeam_deque::Worker<JobRef>>) {
        let slots = config.threads + spares_for(config.threads);
        let mut deques: Vec<_> = (0..slots)
            .map(|_| crossbeam_deque::Worker::new_lifo())
            .collect();
        let stealers = deques.iter().map(|d| d.stealer()).collect();
        let spare_slots: Vec<_> = deques
            .drain(config.threads..)
            .enumerate()
            .map(|(i, deque)| (config.threads + i, deque))
            .rev()
            .collect();
        let ThreadHooks { start, stop, park } = config.hooks;
        let park_hooks = usize::from(park.is_some());
        let builder = HookEntry {
            start,
            stop,
            park,
            tag: None,
        };
        let builder_hooks = if builder.in_place() {
            vec![builder]
        } else {
            Vec::new()
        };
        let registry = Arc::new_cyclic(|weak_self| Registry {
            injector: Injector::new(),
            stealers,
            slots_used: AtomicUsize::new(config.threads),
            sleep: Sleep::with_spares(slots, config.threads),
            counters: (0..=slots)
                .map(|_| CachePadded::new(Counters::default()))
                .collect(),
            activity: (0..slots)
                .map(|_| CachePadded::new(Activity::default()))
                .collect(),
            lifecycle: Lifecycle::new(),
            root: CancelToken::new(),
            closing: CancelToken::new(),
            timer: OnceCell::new(),
            weak_self: weak_self.clone(),
            capacity: config.capacity,
            outside_queued: CachePadded::new(AtomicUsize::new(0)),
            room: Mutex::new(()),
            room_condvar: Condvar::new(),
            room_waiters: AtomicUsize::new(0),
            quiescence: Mutex::new(()),
            quiescence_condvar: Condvar::new(),
            help: config.help,
            panic: config.panic,
            name: config.name,
            hook_count: AtomicUsize::new(builder_hooks.len()),
            park_hooks: AtomicUsize::new(park_hooks),
            hooks: Mutex::new(builder_hooks),
            hook_gate: std::sync::RwLock::new(()),
            threads: Mutex::new(Vec::with_capacity(config.threads)),
            base: config.threads,
            spare_slots: Mutex::new(spare_slots),
            compensation: Compensation::new(config.threads),
            stack_size: config.stack_size,
            handles: AtomicUsize::new(1),
        });
        (registry, deques)
    }

    /// A strong reference from a job header's address.
    ///
    /// # Safety
    ///
    /// The caller took a job of this registry out of `Queued`/`Delayed` and has not yet
    /// counted its end (registry liveness invariant, module docs).
    pub(crate) unsafe fn retain(registry: NonNull<Registry>) -> Arc<Registry> {
        let pointer = registry.as_ptr() as *const Registry;
        // SAFETY: the registry is alive (caller's contract) and was allocated by an `Arc`;
        // we add the strong count that the returned `Arc` gives back on drop.
        unsafe {
            Arc::increment_strong_count(pointer);
            Arc::from_raw(pointer)
        }
    }

    pub(crate) fn add_thread(&self, handle: JoinHandle<()>) {
        lock(&self.threads).push(handle);
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn threads(&self) -> usize {
        self.base
    }

    /// Whether worker `index` is a spare.
    pub(crate) fn is_spare(&self, index: usize) -> bool {
        index >= self.base
    }

    /// A job on a worker is about to block (a channel wait): if fewer than `threads`
    /// workers would be left running, a spare takes its place until it is back
    /// (`end_blocking`). Compensation, as ForkJoinPool's `managedBlock` does: a job
    /// that blocks waiting for a queued job must not take the last worker.
    pub(crate) fn begin_blocking(&self) {
        if self.compensation.begin() && !self.start_spare() {
            self.compensation.spare_failed();
        }
    }

    /// The blocked job is back (see `begin_blocking`); a spare retires at its next idle
    /// moment.
    pub(crate) fn end_blocking(&self) {
        self.compensation.end();
        // A spare that went to sleep while this worker was blocked could not retire
        // then: wake the sleeping spares to retire now. (A spare about to sleep checks
        // the surplus after it registers as a sleeper: see `WorkerThread::run`.)
        if self.compensation.surplus() {
            self.sleep.wake_from(self.base);
        }
    }

    /// Whether an idle spare could retire now (more than `threads` workers run).
    pub(crate) fn spare_surplus(&self) -> bool {
        self.compensation.surplus()
    }

    /// Whether an idle spare should retire now: counted out if so.
    pub(crate) fn try_retire(&self) -> bool {
        self.compensation.try_retire()
    }

    /// A retired spare gives its slot back.
    pub(crate) fn return_spare(&self, index: usize, deque: crossbeam_deque::Worker<JobRef>) {
        lock(&self.spare_slots).push((index, deque));
    }

    /// Starts a spare worker on a free spare slot (counted as running by the caller);
    /// false if there is none, or the pool is terminated, or the thread did not start.
    fn start_spare(&self) -> bool {
        // Under the lock `terminate` takes the handles under, after it marked the pool
        // terminated: either this spare's handle is there for it to join, or this sees
        // the pool terminated and starts nothing. No thread is left behind.
        let mut threads = lock(&self.threads);
        if self.is_terminated() {
            return false;
        }
        let Some((index, deque)) = lock(&self.spare_slots).pop() else {
            return false; // every spare runs: the wait blocks without compensation
        };
        // Before the thread exists, so before anything is pushed on its deque: a search
        // that sees the push (through `Sleep`'s fences) sees the slot too.
        self.slots_used.fetch_max(index + 1, Ordering::SeqCst);
        let registry = self
            .weak_self
            .upgrade()
            .expect("a registry in use is alive");
        // Finished spares (retired) are joined here, not at `terminate`: their handles
        // would otherwise pile up in a pool whose jobs block again and again.
        let (done, running): (Vec<_>, Vec<_>) =
            threads.drain(..).partition(|handle| handle.is_finished());
        *threads = running;
        done.into_iter().for_each(|handle| drop(handle.join()));
        let mut builder = std::thread::Builder::new().name(format!("{}-{index}", self.name));
        if let Some(bytes) = self.stack_size {
            builder = builder.stack_size(bytes);
        }
        // The deque goes to the thread through a cell, so that it comes back to the
        // free slots if the thread cannot start (the closure is dropped with it then).
        let cell = Arc::new(Mutex::new(Some(deque)));
        let handoff = Arc::clone(&cell);
        let spawned = builder.spawn(move || {
            let deque = lock(&handoff)
                .take()
                .expect("a spare's deque is handed over once");
            WorkerThread::main(registry, index, deque)
        });
        match spawned {
            Ok(handle) => {
                threads.push(handle);
                true
            }
            Err(_) => {
                let deque = lock(&cell)
                    .take()
                    .expect("an unstarted spare left its deque");
                lock(&self.spare_slots).push((index, deque));
                false // the wait blocks without compensation
            }
        }
    }

    pub(crate) fn closing(&self) -> &CancelToken {
        &self.closing
    }

    pub(crate) fn root(&self) -> &CancelToken {
        &self.root
    }

    pub(crate) fn sleep(&self) -> &Sleep {
        &self.sleep
    }

    pub(crate) fn help_policy(&self) -> HelpPolicy {
        self.help
    }

    pub(crate) fn panic_policy(&self) -> &PanicPolicy {
        &self.panic
    }

    /// Adds hooks for the workers to run (see `Pool::add_thread_hooks`); returns their
    /// index, the key that removes them.
    pub(crate) fn add_thread_hooks(&self, added: ThreadHooks, tag: Option<HookTag>) -> usize {
        let ThreadHooks { start, stop, park } = added;
        let mut hooks = lock(&self.hooks);
        if park.is_some() {
            self.park_hooks.fetch_add(1, Ordering::Release);
        }
        hooks.push(HookEntry {
            start,
            stop,
            park,
            tag,
        });
        // Release: a worker that sees the count sees the hook (it also takes the lock).
        self.hook_count.store(hooks.len(), Ordering::Release);
        hooks.len() - 1
    }

    /// The index of the earliest hooks still in place that were added with `tag`.
    #[cfg_attr(not(feature = "capi"), allow(dead_code))]
    pub(crate) fn find_thread_hooks(&self, tag: HookTag) -> Option<usize> {
        lock(&self.hooks)
            .iter()
            .position(|entry| entry.tag == Some(tag) && entry.in_place())
    }

    /// Takes the hooks at `index` out (see `Pool::remove_thread_hooks`): false if there
    /// are none there (never added, or removed already).
    pub(crate) fn remove_thread_hooks(&self, index: usize) -> bool {
        let removed = {
            let mut hooks = lock(&self.hooks);
            let Some(entry) = hooks.get_mut(index) else {
                return false;
            };
            if !entry.in_place() {
                return false;
            }
            if entry.park.is_some() {
                self.park_hooks.fetch_sub(1, Ordering::Relaxed);
            }
            (entry.start.take(), entry.stop.take(), entry.park.take())
        };
        // Wait for the calls in progress (a worker holds the gate from fetching the hooks
        // to their end); one of them may be ours, when a hook removes hooks: then no wait.
        if !IN_HOOK.with(std::cell::Cell::get) {
            drop(self.hook_gate.write().unwrap_or_else(|p| p.into_inner()));
        }
        // Dropped last: the hooks (and what they hold) outlive their last call.
        drop(removed);
        true
    }

    /// How many hooks there are so far.
    #[inline]
    pub(crate) fn hook_count(&self) -> usize {
        self.hook_count.load(Ordering::Acquire)
    }

    /// Whether any park hook is in place (one load: a worker asks before it blocks).
    #[inline]
    pub(crate) fn has_park_hooks(&self) -> bool {
        self.park_hooks.load(Ordering::Acquire) > 0
    }

    /// Runs the `which` hooks of the entries `from..to` still in place (stop hooks in
    /// the reverse order), each through `run`; a removal waits for these calls to end.
    pub(crate) fn run_hooks(
        &self,
        from: usize,
        to: usize,
        which: HookKind,
        run: impl Fn(&ThreadHook),
    ) {
        let _gate = self.hook_gate.read().unwrap_or_else(|p| p.into_inner());
        let hooks: Few<ThreadHook> = {
            let entries = &lock(&self.hooks)[from..to];
            let pick = |entry: &HookEntry| entry.hook(which).clone();
            match which {
                HookKind::Stop => entries.iter().rev().filter_map(pick).collect(),
                HookKind::Start | HookKind::Park => entries.iter().filter_map(pick).collect(),
            }
        };
        IN_HOOK.with(|flag| flag.set(true));
        hooks.for_each(|hook| run(&hook));
        IN_HOOK.with(|flag| flag.set(false));
    }

    pub(crate) fn injector(&self) -> &Injector<JobRef> {
        &self.injector
    }

    /// The stealers of the slots a thread ever ran on (see `slots_used`).
    pub(crate) fn stealers(&self) -> &[Stealer<JobRef>] {
        &self.stealers[..self.slots_used.load(Ordering::SeqCst)]
    }

    /// What worker `index` is doing (written by that worker only).
    pub(crate) fn activity(&self, index: usize) -> &Activity {
        &self.activity[index]
    }

    pub(crate) fn worker_counters(&self, index: usize) -> &Counters {
        &self.counters[index]
    }

    pub(crate) fn shared_counters(&self) -> &Counters {
        &self.counters[self.counters.len() - 1]
    }

    fn stripes(&self) -> impl Iterator<Item = &Counters> + Clone {
        self.counters.iter().map(|c| &**c)
    }

    #[inline]
    pub(crate) fn is_cancelling(&self) -> bool {
        self.lifecycle.load(Ordering::Relaxed) == CANCELLING
    }

    #[inline]
    pub(crate) fn is_terminated(&self) -> bool {
        self.lifecycle.load(Ordering::Acquire) == TERMINATED
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.lifecycle.load(Ordering::Acquire) != OPEN
    }

    /// Whether any queue holds work another worker could take.
    pub(crate) fn has_visible_work(&self) -> bool {
        !self.injector.is_empty() || self.stealers().iter().any(|s| !s.is_empty())
    }

    // ----- submit -------------------------------------------------------------------

    pub(crate) fn submit<F, T, E>(
        &self,
        options: SubmitOptions,
        func: F,
    ) -> Result<Job<T, E>, SubmitError>
    where
        F: FnOnce(&Context<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        self.submit_kept(options, func, None)
    }

    /// `submit`, but with `keep`, the caller answers for the job's token instead of the
    /// token's registrations: `keep` gets a handle to the job before anything can start
    /// it, and must keep it where the token's cancel will find it and end it (an
    /// `on_cancel` callback of the caller's), or return false if the token is cancelled
    /// (the job then ends `Cancelled` without being queued). A group keeps its pending
    /// jobs anyway: registering each with the group's token too would cost every job a
    /// registration and a deregistration (`Group::submit_with`).
    pub(crate) fn submit_kept<F, T, E>(
        &self,
        options: SubmitOptions,
        func: F,
        keep: Option<&mut dyn FnMut(JobHandle) -> bool>,
    ) -> Result<Job<T, E>, SubmitError>
    where
        F: FnOnce(&Context<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        if let Some((semaphore, permits)) = &options.permits {
            if *permits > semaphore.total() {
                return Err(SubmitError::TooManyPermits {
                    requested: *permits,
                    total: semaphore.total(),
                });
            }
        }
        let worker = WorkerThread::current().filter(|w| std::ptr::eq(w.registry(), self));
        let bounded = self.capacity.is_some() && worker.is_none() && !options.unbounded;
        if bounded {
            self.acquire_room(&options)?;
        }
        match worker {
            // A submit from a running job: that job has not ended, so a shutdown cannot
            // find the pool quiescent before our count is visible (it is published with
            // the job's end, see `bump_own`). Refused only when cancelling; a racing
            // `Cancel` that misses our push cancels the job when a worker pops it.
            Some(worker) => {
                let stripe = self.worker_counters(worker.index());
                bump_own(&stripe.submitted);
                if self.lifecycle.load(Ordering::Acquire) >= CANCELLING {
                    self.refuse_cold(stripe, false);
                    return Err(SubmitError::Shutdown);
                }
            }
            // Admission, our half of the handshake with `shutdown`: count the submit, then
            // look at the lifecycle. Either shutdown sees the count (and waits for the job)
            // or we see the shutdown (and refuse).
            None => {
                let stripe = self.shared_counters();
                stripe.submitted.fetch_add(1, Ordering::SeqCst);
                if self.lifecycle.load(Ordering::SeqCst) != OPEN {
                    self.refuse_cold(stripe, bounded);
                    return Err(SubmitError::Shutdown);
                }
            }
        }
        let delay = options.delay.filter(|d| !d.is_zero());
        // The options' references move into the job: a clone would be one more atomic
        // add (and a drop one more sub) on a count the workers write as jobs end.
        let job = HeapJob::new(
            Header::new(HeaderInit {
                registry: NonNull::from(self),
                bounded,
                kind: options.kind,
                delayed: delay.is_some(),
                token: options.token,
                name: options.name,
                permits: options.permits,
                tick: options.tick,
                fail_fast: options.fail_fast,
            }),
            func,
        );
        // Others may end a kept job before we push it (a group's wait may run it inline),
        // or a job with a token (its cancel ends it): the push may then come after the
        // pool terminated.
        let claimable = keep.is_some() || job.header().token().is_some();
        let live = match keep {
            Some(keep) => keep(HeapJob::handle_of(&job)),
            None => match job.header().token() {
                Some(token) => match token.register(HeapJob::cancel_target(&job)) {
                    Some(key) => {
                        job.header().set_token_key(key);
                        true
                    }
                    None => false,
                },
                None => true,
            },
        };
        if !live {
            let token = job.header().token();
            let reason = token.and_then(CancelToken::reason);
            job.cancel_queued(reason.unwrap_or(CancelReason::Cancelled));
            return Ok(HeapJob::into_job(job));
        }
        let job_ref = HeapJob::job_ref(&job);
        match (delay, worker) {
            (Some(delay), _) => {
                self.schedule_delayed(&*job, job_ref, delay);
                // A `Cancel` shutdown that began after our admission may have emptied the
                // timer before we scheduled: nobody else would end the job before its time.
                if self.is_cancelling() {
                    job.cancel_queued(CancelReason::Shutdown);
                }
            }
            (None, _) if job.header().is_gated() => {
                job.header().enqueue_for_permits(job_ref, &self.root);
            }
            (None, Some(worker)) => worker.push(job_ref),
            (None, None) => {
                #[cfg(all(test, not(loom)))]
                crate::pause::point("job about to be pushed", job.header().name());
                if claimable {
                    self.inject_claimable(job_ref);
                } else {
                    self.inject(job_ref);
                }
            }
        }
        Ok(HeapJob::into_job(job))
    }

    #[cold]
    fn refuse_cold(&self, stripe: &Counters, bounded: bool) {
        stripe.refused.fetch_add(1, Ordering::SeqCst);
        if bounded {
            self.release_room();
        }
        self.notify_quiescence();
    }

    /// Pushes a job where any worker finds it, and makes sure one will. Nobody else may
    /// have been able to claim or end the job before: see [`Registry::inject_claimable`].
    pub(crate) fn inject(&self, job: JobRef) {
        self.injector.push(job);
        self.sleep.notify_injected();
    }

    /// Pushes a job that others could claim or end before this push: released by the
    /// timer, granted by a semaphore, kept by a group, or registered with a token.
    ///
    /// A waiter may have claimed and run it meanwhile (or a cancel ended it), letting the
    /// pool go quiescent and terminate: the entry is stale then, and no worker is left to
    /// drop it. Then we or `terminate` take it out (the handshake of `pool::lifecycle`,
    /// whose fence on our side is `notify_injected`'s). The caller holds a strong
    /// reference to the registry (see the module docs).
    ///
    /// Not folded into `inject`: for a job nobody else could reach, the check always
    /// reads "open", and the plain submit path stays free of it by construction. (Folded
    /// in, detached spawns measured 9-14% slower, but an A/A run of one binary against
    /// itself differed by up to 16%: the cost is below what the spawn bench resolves.)
    pub(crate) fn inject_claimable(&self, job: JobRef) {
        self.inject(job);
        if self.lifecycle.terminated_after_push() {
            self.discard_left_over();
        }
    }

    fn timer(&self) -> &Timer<JobRef> {
        self.timer.get_or_init(|| {
            let registry = self.weak_self.clone();
            Timer::new(format!("{}-timer", self.name), move |job: JobRef| {
                #[cfg(all(test, not(loom)))]
                // SAFETY: the timer only holds heap jobs.
                let name: Option<String> = unsafe { job.heap_header() }.name().map(Into::into);
                match registry.upgrade() {
                    Some(registry) => registry.fire_delayed(job),
                    None => drop(job.discard()),
                }
                #[cfg(all(test, not(loom)))]
                crate::pause::point("delayed job fired", name.as_deref());
            })
        })
    }

    fn schedule_delayed(&self, job: &dyn ErasedJob, job_ref: JobRef, delay: Duration) {
        let due = Instant::now()
            .checked_add(delay)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600));
        match self
            .timer()
            .schedule_as(due, job.header().timer_id(), job_ref)
        {
            Ok(key) => {
                if !job.header().set_timer_key(key) {
                    // Cancelled meanwhile, by a cancel that could not see the key. Our
                    // caller holds the job: dropping the entry's reference cannot free it.
                    if let Some(entry) = self.cancel_timer(key) {
                        let _ = entry.discard();
                    }
                }
            }
            // The timer is shut down (the pool is terminating) or its thread could not
            // start: the job cannot be delayed, so it ends cancelled.
            Err(job_ref) => drop(job_ref.discard()),
        }
    }

    fn fire_delayed(&self, job: JobRef) {
        // SAFETY: the timer only holds heap jobs.
        let _alive = unsafe { job.cancel_target() };
        // SAFETY: a heap job, and `_alive` is a reference of our own: the header outlives
        // this call even if the job is granted, runs and ends while we enqueue it.
        let header: &Header = unsafe { &*(job.heap_header() as *const Header) };
        let gated = header.is_gated();
        let to = if gated {
            state::WAITING_PERMIT
        } else {
            state::QUEUED
        };
        let released = header.lifecycle.try_release_delayed(to);
        if released && !self.is_cancelling() {
            #[cfg(all(test, not(loom)))]
            crate::pause::point("delayed job released", header.name());
            if gated {
                header.enqueue_for_permits(job, &self.root);
            } else {
                self.inject_claimable(job);
            }
        } else {
            // Cancelled while delayed (a stale timer entry), or the pool is cancelling.
            drop(job.discard());
        }
    }

    pub(crate) fn cancel_timer(&self, key: TimerKey) -> Option<JobRef> {
        self.timer.get().and_then(|timer| timer.cancel(key))
    }

    // ----- queue capacity -------------------------------------------------------------

    fn try_take_room(&self, capacity: usize) -> bool {
        let mut queued = self.outside_queued.load(Ordering::SeqCst);
        loop {
            if queued >= capacity {
                return false;
            }
            match self.outside_queued.compare_exchange_weak(
                queued,
                queued + 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return true,
                Err(actual) => queued = actual,
            }
        }
    }

    fn acquire_room(&self, options: &SubmitOptions) -> Result<(), SubmitError> {
        let capacity = self.capacity.unwrap_or(usize::MAX);
        if self.try_take_room(capacity) {
            return Ok(());
        }
        if self.is_shutting_down() {
            return Err(SubmitError::Shutdown);
        }
        if options.nonblocking || options.timeout == Some(Duration::ZERO) {
            return Err(SubmitError::Full);
        }
        self.acquire_room_cold(capacity, options)
    }

    #[cold]
    fn acquire_room_cold(
        &self,
        capacity: usize,
        options: &SubmitOptions,
    ) -> Result<(), SubmitError> {
        let deadline = options.timeout.and_then(|t| Instant::now().checked_add(t));
        let wake_on_cancel = options.token.as_ref().map(|token| {
            let registry = self.weak_self.clone();
            let key = token.on_cancel(move |_| {
                if let Some(registry) = registry.upgrade() {
                    registry.wake_room_waiters();
                }
            });
            (token, key)
        });
        let mut guard = lock(&self.room);
        self.room_waiters.fetch_add(1, Ordering::SeqCst);
        let result = loop {
            if self.lifecycle.load(Ordering::SeqCst) != OPEN {
                break Err(SubmitError::Shutdown);
            }
            if self.try_take_room(capacity) {
                break Ok(());
            }
            if options
                .token
                .as_ref()
                .is_some_and(CancelToken::is_cancelled)
            {
                break Err(SubmitError::Cancelled);
            }
            guard = match deadline {
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        break Err(SubmitError::Timeout);
                    }
                    wait_timeout(&self.room_condvar, guard, deadline - now)
                }
                None => wait(&self.room_condvar, guard),
            };
        };
        self.room_waiters.fetch_sub(1, Ordering::SeqCst);
        drop(guard);
        if let Some((token, key)) = wake_on_cancel {
            token.remove_callback(key);
        }
        result
    }

    /// A bounded job started or was cancelled: its slot is free.
    pub(crate) fn release_room(&self) {
        self.outside_queued.fetch_sub(1, Ordering::SeqCst);
        // Pairs with the waiter's increment of `room_waiters` and re-check under the lock.
        if self.room_waiters.load(Ordering::SeqCst) > 0 {
            self.wake_room_waiters();
        }
    }

    fn wake_room_waiters(&self) {
        let _guard = lock(&self.room);
        self.room_condvar.notify_all();
    }

    // ----- ends and shutdown -----------------------------------------------------------

    /// Counts the end of a job run by `worker`, in its own stripe. A shutdown waiting for
    /// quiescence is told by the worker when it next goes idle
    /// ([`Registry::notify_if_shutting_down`]), not here: the hot path stays free of
    /// fences.
    #[inline]
    pub(crate) fn count_end_on_worker(&self, worker: &WorkerThread, phase: u32) {
        bump_own(outcome_counter(worker.counters(), phase));
    }

    /// Counts the end of a job that never ran, in the shared stripe. The last access to
    /// the registry on behalf of that job (see the liveness invariant).
    pub(crate) fn count_cancelled_unrun(&self) {
        let stripe = self.shared_counters();
        stripe.unrun.fetch_add(1, Ordering::SeqCst);
        // Our half of the handshake with a shutdown waiting for quiescence: count, then
        // look at the lifecycle. Either it sees our count or we see it and wake it.
        stripe.cancelled.fetch_add(1, Ordering::SeqCst);
        if self.lifecycle.load(Ordering::SeqCst) != OPEN {
            self.notify_quiescence();
        }
    }

    /// Called by a worker about to sleep: the ends it counted with plain stores are
    /// published by the fence, and a shutdown that began meanwhile is woken to look at
    /// them. Either the shutdown's read of the counters comes after our fence (and sees
    /// them) or our read of the lifecycle comes after its store (and we wake it).
    pub(crate) fn notify_if_shutting_down(&self) {
        fence(Ordering::SeqCst);
        if self.lifecycle.load(Ordering::SeqCst) != OPEN {
            self.notify_quiescence();
        }
    }

    fn notify_quiescence(&self) {
        let _guard = lock(&self.quiescence);
        self.quiescence_condvar.notify_all();
    }

    fn totals(&self) -> Totals {
        fence(Ordering::SeqCst);
        Totals::read(self.stripes())
    }

    /// Every accepted job has ended. Reading ended, then refused, then submitted makes a
    /// `true` answer exact at the moment the ended counts were read: counts only grow, an
    /// end always follows its submit, and a refusal its submit (see `Totals::read`).
    fn is_quiescent(&self) -> bool {
        self.totals().outstanding() == 0
    }

    fn wait_quiescent(&self, deadline: Option<Instant>) -> bool {
        let mut guard = lock(&self.quiescence);
        loop {
            if self.is_quiescent() {
                return true;
            }
            guard = match deadline {
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return false;
                    }
                    wait_timeout(&self.quiescence_condvar, guard, deadline - now)
                }
                None => wait(&self.quiescence_condvar, guard),
            };
        }
    }

    /// Ends every queued and delayed job as `Cancelled(Shutdown)` and tells running jobs.
    fn cancel_queued(&self) {
        self.root.cancel_with(CancelReason::Shutdown);
        let mut stack_jobs = Vec::new();
        let mut discard = |job: JobRef| {
            if let Err(stack_job) = job.discard() {
                stack_jobs.push(stack_job);
            }
        };
        drain(|| self.injector.steal(), &mut discard);
        if let Some(timer) = self.timer.get() {
            timer.drain().into_iter().for_each(&mut discard);
        }
        for stealer in self.stealers.iter() {
            drain(|| stealer.steal(), &mut discard);
        }
        // The second halves of `join`s live on their owners' stacks and only a worker may
        // run them: hand them back to the workers.
        for job in stack_jobs {
            self.injector.push(job);
        }
        // Idle workers steal and cancel what is left on busy workers' deques.
        self.sleep.wake_all();
    }

    pub(crate) fn shutdown(&self, mode: ShutdownMode, timeout: Option<Duration>) -> ShutdownReport {
        let before = self.totals();
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        self.lifecycle.raise(match mode {
            ShutdownMode::Cancel => CANCELLING,
            ShutdownMode::Drain | ShutdownMode::DrainThenCancel => DRAINING,
        });
        self.wake_room_waiters();
        self.closing.cancel_with(CancelReason::Shutdown);
        if mode == ShutdownMode::Cancel {
            self.cancel_queued();
        }
        let in_worker = WorkerThread::current().is_some_and(|w| std::ptr::eq(w.registry(), self));
        if in_worker {
            // One of our own jobs cannot wait for the pool to empty: it would wait for
            // itself. A thread of its own drains, cancels at the deadline and stops the
            // workers instead.
            if let Some(registry) = self.weak_self.upgrade() {
                let spawned = std::thread::Builder::new()
                    .name(format!("{}-shutdown", self.name))
                    .spawn(move || registry.finish_shutdown(mode, deadline));
                if spawned.is_err() {
                    eprintln!("jobrunner: could not start a thread to finish a shutdown");
                }
            }
        } else {
            self.finish_shutdown(mode, deadline);
        }
        let after = self.totals();
        let ran = |t: &Totals| t.ended - t.unrun;
        let running = after.running();
        ShutdownReport {
            completed: ran(&after).saturating_sub(ran(&before)),
            cancelled: after.unrun.saturating_sub(before.unrun),
            still_running: running,
            still_queued: after.outstanding().saturating_sub(running),
        }
    }

    /// The waiting part of a shutdown: until the pool is quiescent or the deadline passes
    /// (then `DrainThenCancel` cancels what is left); a quiescent pool's workers stop.
    fn finish_shutdown(&self, mode: ShutdownMode, deadline: Option<Instant>) {
        let mut quiescent = self.wait_quiescent(deadline);
        if !quiescent && mode == ShutdownMode::DrainThenCancel {
            self.lifecycle.raise(CANCELLING);
            self.cancel_queued();
            quiescent = self.is_quiescent();
        }
        if quiescent {
            self.terminate();
        }
    }

    /// Stops the workers of a quiescent pool and waits for them to exit.
    fn terminate(&self) {
        // The handshake with late pushes (`inject_claimable`): we drain after the workers.
        self.lifecycle.terminate();
        #[cfg(all(test, not(loom)))]
        crate::pause::point("pool terminated", Some(&self.name));
        // Other shutdowns may wait for quiescence too (one called from inside a job and
        // the drop of the pool, say): the worker whose end made the pool quiescent may
        // exit now without ever going idle, so it would never tell them.
        self.notify_quiescence();
        self.sleep.wake_all();
        let handles = std::mem::take(&mut *lock(&self.threads));
        for handle in handles {
            // A worker never unwinds (user code runs under `halt_unwinding`, internals
            // abort), so `join` cannot report a panic worth propagating.
            let _ = handle.join();
        }
        if let Some(timer) = self.timer.get() {
            timer.shutdown();
            // A quiescent pool has no delayed job: an entry left now would be a stale one
            // (a bug), whose reference nobody else would ever give back.
            let stale = timer.drain();
            debug_assert!(stale.is_empty(), "{} stale timer entries", stale.len());
            stale.into_iter().for_each(|job| drop(job.discard()));
        }
        self.discard_left_over();
    }

    /// Drops the injector's entries after termination (`pool::lifecycle`): called by
    /// `terminate` once its workers are gone, and by a late pusher that saw `TERMINATED`
    /// (perhaps while `terminate` still joins them; a steal hands each entry to one of
    /// us). They are stale entries of jobs that ended, claimed or cancelled before their
    /// pusher pushed them; each holds a reference to its job that nobody else would give
    /// back.
    #[cold]
    #[inline(never)]
    fn discard_left_over(&self) {
        drain(
            || self.injector.steal(),
            |job| {
                // A quiescent pool has no live job, nor a `join`'s second half (on its
                // owner's deque, or moved to the injector by a cancelling shutdown, and
                // run before the pool could be quiescent).
                let discarded = job.discard();
                debug_assert!(discarded.is_ok(), "a stack job left in a terminated pool");
            },
        );
    }

    pub(crate) fn stats(&self) -> Stats {
        Stats::collect(
            self.stripes(),
            self.sleep.unparks(),
            self.sleep.sleeping_now() as usize,
            self.threads(),
            self.compensation.spares() as usize,
        )
    }

    /// Delayed jobs waiting in the timer.
    pub(crate) fn delayed_now(&self) -> usize {
        self.timer.get().map_or(0, Timer::len)
    }

    /// `Pool::debug_dump`: the lifecycle, the queues, each worker slot's activity, and
    /// the waits the registry knows of. Reads what is there, stopping nothing.
    #[cfg(not(loom))]
    pub(crate) fn debug_dump(&self) -> String {
        use std::fmt::Write;
        let lifecycle = match self.lifecycle.load(Ordering::Acquire) {
            OPEN => "open",
            DRAINING => "draining (shutdown: Drain)",
            CANCELLING => "cancelling (shutdown: Cancel)",
            _ => "terminated",
        };
        let stats = self.stats();
        let sleepers = self.sleep.sleepers();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "pool {:?}: {} workers, {} spares running, {} workers blocked in channel waits; {lifecycle}; help policy {:?}",
            self.name,
            self.base,
            self.compensation.spares(),
            self.compensation.blocked(),
            self.help,
        );
        let _ = writeln!(
            out,
            "  jobs: {} submitted, {} queued (injector {}, delayed {}), {} running; ended: {} ok, {} failed, {} panicked, {} cancelled ({} before starting)",
            stats.submitted,
            stats.queued,
            self.injector.len(),
            self.delayed_now(),
            stats.running,
            stats.succeeded,
            stats.failed,
            stats.panicked,
            stats.cancelled,
            stats.cancelled_before_start,
        );
        if let Some(capacity) = self.capacity {
            let _ = writeln!(
                out,
                "  bounded queue: {} of {capacity} taken; {} submitters wait for room",
                self.outside_queued.load(Ordering::Relaxed),
                self.room_waiters.load(Ordering::Relaxed),
            );
        }
        for (index, activity) in self.activity.iter().enumerate() {
            let queued = self.stealers[index].len();
            if self.is_spare(index) && queued == 0 && activity.is_stopped() {
                continue;
            }
            let described = activity.describe(sleepers.contains(&index));
            let kind = if self.is_spare(index) {
                "spare"
            } else {
                "worker"
            };
            let _ = writeln!(
                out,
                "  {kind} {index}: {described}; its deque holds {queued}"
            );
        }
        out
    }
}

/// Takes every job `steal` gives until it says the queue is empty, and hands each to
/// `each`.
fn drain(steal: impl Fn() -> Steal<JobRef>, mut each: impl FnMut(JobRef)) {
    loop {
        match steal() {
            Steal::Success(job) => each(job),
            Steal::Empty => return,
            Steal::Retry => {}
        }
    }
}

fn outcome_counter(stripe: &Counters, phase: u32) -> &crate::sync::atomic::AtomicU64 {
    match phase {
        state::SUCCEEDED => &stripe.succeeded,
        state::FAILED => &stripe.failed,
        state::PANICKED => &stripe.panicked,
        _ => &stripe.cancelled,
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::mpsc::channel;
    use std::time::Duration;

    use crate::pause;
    use crate::{CancelToken, HelpPolicy, Pool, ShutdownMode, SubmitOptions};

    const PATIENCE: Duration = Duration::from_secs(30);

    /// The timer makes a delayed job claimable, then pushes it. A job waiting for it may
    /// claim and run it in between, the pool may then go quiescent and terminate, and the
    /// push lands in a pool without workers: its entry must still be dropped (it holds a
    /// reference to the job, which was never freed before the fix).
    #[test]
    fn a_delayed_job_pushed_after_its_pool_terminated_is_not_kept() {
        const NAME: &str = "registry::tests::delayed-after-terminate";
        let released = pause::arm("delayed job released", NAME);
        let fired = pause::arm("delayed job fired", NAME);
        // `Block`: the waiting job waits for the release and then claims the job itself.
        let pool = Pool::builder()
            .threads(1)
            .help_policy(HelpPolicy::Block)
            .build()
            .unwrap();
        let (handle_tx, handle_rx) = channel();
        let waiting = pool
            .submit(move |ctx| {
                let options = SubmitOptions::new()
                    .delay(Duration::from_millis(1))
                    .name(NAME);
                let delayed = ctx.pool().submit_with(options, |_| Ok::<_, ()>(9)).unwrap();
                handle_tx.send(delayed.handle()).unwrap();
                delayed.wait()
            })
            .unwrap();
        let delayed = handle_rx.recv_timeout(PATIENCE).unwrap();
        // The timer thread stops between the release and the push ...
        assert!(released.wait_reached(PATIENCE), "the timer never fired");
        // ... while the waiting job runs the delayed one, and the pool terminates.
        assert_eq!(waiting.wait(), Ok(9));
        let report = pool.shutdown(ShutdownMode::Drain, Some(PATIENCE));
        assert_eq!((report.still_running, report.still_queued), (0, 0));
        released.resume();
        assert!(
            fired.wait_reached(PATIENCE),
            "the timer never pushed the job"
        );
        fired.resume();
        assert_eq!(
            delayed.references(),
            1,
            "something besides our handle still holds the job (the late push's entry)"
        );
    }

    /// A submit from outside registers its job with its token and then pushes it. The
    /// token's cancel may end the job in between, the pool may terminate, and the push
    /// lands in a pool without workers: its entry must still be dropped.
    #[test]
    fn a_job_its_token_ended_before_its_push_is_not_kept() {
        const NAME: &str = "registry::tests::cancelled-before-push";
        let about_to_push = pause::arm("job about to be pushed", NAME);
        let pool = Pool::builder().threads(1).build().unwrap();
        let token = CancelToken::new();
        let submitter = {
            let (pool, token) = (pool.clone(), token.clone());
            std::thread::spawn(move || {
                let options = SubmitOptions::new().token(&token).name(NAME);
                pool.submit_with(options, |_| Ok::<_, ()>(9))
                    .unwrap()
                    .handle()
            })
        };
        // The submitter stops between the token's registration and the push ...
        assert!(
            about_to_push.wait_reached(PATIENCE),
            "the submit never got there"
        );
        // ... while the cancel ends the job, and the pool terminates.
        token.cancel();
        let report = pool.shutdown(ShutdownMode::Drain, Some(PATIENCE));
        assert_eq!((report.still_running, report.still_queued), (0, 0));
        about_to_push.resume();
        let job = submitter.join().unwrap();
        assert!(job.is_finished());
        assert_eq!(
            job.references(),
            1,
            "something besides our handle still holds the job (the late push's entry)"
        );
    }

    /// The other half of the handshake: a late push that does not see the pool terminated
    /// (it pushes just before), and that the pool's last worker misses (it looked just
    /// before, and then sees the pool terminated), is dropped by `terminate` itself.
    #[test]
    fn termination_drops_a_late_push_its_workers_missed() {
        const NAME: &str = "registry::tests::late-push-missed";
        const POOL: &str = "registry-tests-late-push-missed";
        let released = pause::arm("delayed job released", NAME);
        let fired = pause::arm("delayed job fired", NAME);
        let pool = Pool::builder()
            .threads(1)
            .thread_name(POOL)
            .help_policy(HelpPolicy::Block)
            .build()
            .unwrap();
        let (handle_tx, handle_rx) = channel();
        let (go_tx, go_rx) = channel::<()>();
        let waiting = pool
            .submit(move |ctx| {
                let options = SubmitOptions::new()
                    .delay(Duration::from_millis(1))
                    .name(NAME);
                let delayed = ctx
                    .pool()
                    .submit_with(options, move |_| {
                        go_rx.recv().unwrap();
                        Ok::<_, ()>(9)
                    })
                    .unwrap();
                handle_tx.send(delayed.handle()).unwrap();
                delayed.wait()
            })
            .unwrap();
        let delayed = handle_rx.recv_timeout(PATIENCE).unwrap();
        // The timer stops between the release and the push; the waiting job runs the
        // delayed one, which holds the only worker until `go`.
        assert!(released.wait_reached(PATIENCE), "the timer never fired");
        let idle = pause::arm("worker found nothing", POOL);
        go_tx.send(()).unwrap();
        assert_eq!(waiting.wait(), Ok(9));
        // The worker has looked for work, found none, and stops before it looks at the
        // lifecycle ...
        assert!(idle.wait_reached(PATIENCE), "the worker never went idle");
        // ... the timer pushes and sees the pool open ...
        released.resume();
        assert!(
            fired.wait_reached(PATIENCE),
            "the timer never pushed the job"
        );
        fired.resume();
        // ... the pool terminates: its worker, once resumed, sees that and exits.
        let terminated = pause::arm("pool terminated", POOL);
        let shutdown =
            std::thread::spawn(move || pool.shutdown(ShutdownMode::Drain, Some(PATIENCE)));
        assert!(
            terminated.wait_reached(PATIENCE),
            "the pool never terminated"
        );
        terminated.resume();
        idle.resume();
        let report = shutdown.join().unwrap();
        assert_eq!((report.still_running, report.still_queued), (0, 0));
        assert_eq!(
            delayed.references(),
            1,
            "something besides our handle still holds the job (the late push's entry)"
        );
    }
}
