//! A worker thread: its deque, its main loop, and how it waits without blocking.

use std::cell::Cell;
use std::ptr;
use std::sync::Arc;

use crossbeam_deque::{Steal, Worker};
use crossbeam_utils::Backoff;

use super::activity::{self, Activity};
use super::registry::{HookKind, Registry, ThreadHook};
use super::HelpPolicy;
use crate::job::state::{self, is_terminal};
use crate::job::{ErasedJob, JobRef, StackJob};
use crate::stats::{bump_own, Counters};
use crate::unwind::{self, AbortIfPanic};

thread_local! {
    /// The worker running on this thread, if any; set for the thread's whole life.
    static CURRENT: Cell<*const WorkerThread> = const { Cell::new(ptr::null()) };
}

pub(crate) struct WorkerThread {
    registry: Arc<Registry>,
    index: usize,
    /// Whether this is a spare (started while a job blocks): it looks for work in the
    /// other workers' deques before the injector (`find_spare`).
    spare: bool,
    deque: Worker<JobRef>,
    rng: Cell<u64>,
    /// Pushes made so far; each pushed job records the count (`JobRef::set_push_seq`).
    push_seq: Cell<u64>,
    /// `push_seq` when the innermost job running on this thread started: jobs above it on
    /// the deque were pushed by that job's subtree (`HelpPolicy::Own`).
    watermark: Cell<u64>,
    /// How many of the pool's thread hooks (`Registry::hooks`) this worker has started.
    hooks_run: Cell<usize>,
    /// Set while `run_queued` runs jobs: a job it runs cannot start another batch.
    batching: Cell<bool>,
}

/// Clears a flag when dropped.
struct ResetOnDrop<'a>(&'a Cell<bool>);

impl Drop for ResetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

/// Runs a thread hook on worker `index`; a panic in it is reported, not propagated (the
/// worker lives on).
fn run_hook(hook: &ThreadHook, index: usize, which: &str) {
    if let Err(payload) = unwind::halt_unwinding(|| hook(index)) {
        eprintln!(
            "jobrunner: a thread {which} hook panicked on worker {index}: {}",
            unwind::panic_message(&*payload)
        );
    }
}

impl WorkerThread {
    /// The worker of the calling thread.
    ///
    /// The reference is valid while the worker's main loop runs, which covers every job
    /// and every call made from one; it must not be sent to another thread (it isn't
    /// `Send`) nor kept past the call it was obtained in.
    #[inline]
    pub(crate) fn current() -> Option<&'static WorkerThread> {
        let pointer = CURRENT.with(Cell::get);
        // SAFETY: the pointer is set by `main` to a `WorkerThread` on its stack and cleared
        // before it goes out of scope; only this thread reads it, during that window.
        unsafe { pointer.as_ref() }
    }

    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    pub(crate) fn registry_arc(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub(crate) fn index(&self) -> usize {
        self.index
    }

    /// What this worker is doing, for `Pool::debug_dump` (only this worker writes it).
    #[inline]
    pub(crate) fn activity(&self) -> &Activity {
        self.registry.activity(self.index)
    }

    pub(crate) fn counters(&self) -> &Counters {
        self.registry.worker_counters(self.index)
    }

    /// The thread body of worker `index`.
    pub(crate) fn main(registry: Arc<Registry>, index: usize, deque: Worker<JobRef>) {
        let worker = WorkerThread {
            spare: registry.is_spare(index),
            registry,
            index,
            deque,
            rng: Cell::new(0x9e37_79b9_7f4a_7c15 ^ ((index as u64 + 1) << 17)),
            push_seq: Cell::new(0),
            watermark: Cell::new(0),
            hooks_run: Cell::new(0),
            batching: Cell::new(false),
        };
        CURRENT.with(|current| current.set(&worker));
        worker.activity().enter(activity::IDLE, 0, 0);
        worker.run_new_start_hooks();
        let guard = AbortIfPanic;
        worker.run();
        std::mem::forget(guard);
        worker
            .registry
            .run_hooks(0, worker.hooks_run.get(), HookKind::Stop, |hook| {
                run_hook(hook, index, "stop");
            });
        CURRENT.with(|current| current.set(ptr::null()));
        worker.activity().enter(activity::STOPPED, 0, 0);
        if worker.spare && !worker.registry.is_terminated() {
            // Retired: the slot, with its deque (whose stealer the others keep), waits
            // for the next spare.
            let WorkerThread {
                registry, deque, ..
            } = worker;
            registry.return_spare(index, deque);
        }
    }

    fn run(&self) {
        let registry = &*self.registry;
        let sleep = registry.sleep();
        loop {
            if let Some(job) = self.find_first() {
                self.run_new_start_hooks();
                self.execute(job);
                continue;
            }
            let mut searching = sleep.try_start_searching();
            let backoff = Backoff::new();
            loop {
                if searching {
                    if let Some(job) = self.find_work() {
                        sleep.stop_searching(|| registry.has_visible_work());
                        self.run_new_start_hooks();
                        self.execute(job);
                        break;
                    }
                    #[cfg(test)]
                    crate::pause::point("worker found nothing", Some(registry.name()));
                    if registry.is_terminated() {
                        sleep.stop_searching(|| false);
                        return;
                    }
                    if !backoff.is_completed() {
                        backoff.snooze();
                        continue;
                    }
                }
                registry.notify_if_shutting_down();
                if registry.is_spare(self.index) && registry.try_retire() {
                    if searching {
                        sleep.stop_searching(|| registry.has_visible_work());
                    }
                    return;
                }
                searching = self.before_sleep(searching);
                let spare = registry.is_spare(self.index);
                let parked = sleep.sleep(self.index, searching, || {
                    registry.has_visible_work()
                        || registry.is_terminated()
                        || (spare && registry.spare_surplus())
                });
                if parked {
                    bump_own(&self.counters().parks);
                }
                searching = true;
                backoff.reset();
            }
        }
    }

    /// Runs the park hooks, if there are any, as this worker is about to sleep in the
    /// idle protocol; it stops searching first, so that work published while they run
    /// wakes another worker rather than wait for them. Returns whether the worker is
    /// still counted as searching.
    #[inline]
    fn before_sleep(&self, searching: bool) -> bool {
        let registry = &*self.registry;
        if !registry.has_park_hooks() {
            return searching;
        }
        if searching {
            registry
                .sleep()
                .stop_searching(|| registry.has_visible_work());
        }
        self.run_park_hooks();
        false
    }

    #[cold]
    fn run_park_hooks(&self) {
        let registry = &*self.registry;
        registry.run_hooks(0, registry.hook_count(), HookKind::Park, |hook| {
            run_hook(hook, self.index, "park");
        });
    }

    /// Runs the start hooks this worker has not run yet: the builder's when the thread
    /// starts, and those added to the running pool since (one atomic load when none were).
    #[inline]
    fn run_new_start_hooks(&self) {
        let count = self.registry.hook_count();
        if count > self.hooks_run.get() {
            self.run_new_start_hooks_cold(count);
        }
    }

    #[cold]
    fn run_new_start_hooks_cold(&self, count: usize) {
        self.registry
            .run_hooks(self.hooks_run.get(), count, HookKind::Start, |hook| {
                run_hook(hook, self.index, "start");
            });
        self.hooks_run.set(count);
    }

    #[inline]
    pub(crate) fn execute(&self, job: JobRef) {
        job.execute(self);
    }

    /// `Context::run_queued`: runs here, one after another, up to `max` jobs of `kind`
    /// (nonzero) that are ready now on our deque or in the injector, and stops at the
    /// first job of another kind, which goes back on top of our deque (where it was, or
    /// where a batch from the injector put it) with its push count, for us or a thief. Each
    /// job goes through `JobRef::execute`, as in the main loop: a cancelled one ends
    /// `Cancelled` without running and is not counted. Returns how many ran; 0 when
    /// called from a job that a `run_queued` is running (no recursion).
    pub(crate) fn run_queued(&self, kind: u16, max: usize) -> usize {
        if self.batching.replace(true) {
            return 0;
        }
        // Jobs run inside their own unwind guard, so nothing unwinds through here; the
        // guard keeps the flag right even so.
        let _reset = ResetOnDrop(&self.batching);
        let mut ran = 0;
        while ran < max {
            let Some(job) = self.find_local() else {
                break;
            };
            if job.kind() != kind {
                // Put it back where it was: the top (as `pop_own_subtree` does).
                self.deque.push(job);
                break;
            }
            if job.execute(self) {
                ran += 1;
            }
        }
        // A batch taken from the injector (or the job put back) now waits on our deque,
        // behind the job that called us: make sure an idle worker can come for it.
        self.publish_deque();
        ran
    }

    /// Pushes a job submitted from a running job on this worker's deque (LIFO for us,
    /// FIFO for thieves), and makes sure some worker will see it: the submitting job may
    /// go on to block on anything (a channel, a lock, I/O) instead of returning to us.
    #[inline]
    pub(crate) fn push(&self, job: JobRef) {
        self.push_local(job);
        self.registry.sleep().notify_injected();
    }

    /// Pushes the second half of a `join`: no fence (see `Sleep::notify_local`). `join`
    /// takes it back itself if nobody stole it, and publishes its deque before it ever
    /// blocks; like rayon's, it promises a chance of parallelism, not parallelism.
    #[inline]
    pub(crate) fn push_join(&self, job: JobRef) {
        self.push_local(job);
        self.registry.sleep().notify_local();
    }

    #[inline]
    fn push_local(&self, job: JobRef) {
        let seq = self.push_seq.get() + 1;
        self.push_seq.set(seq);
        job.set_push_seq(seq);
        self.deque.push(job);
    }

    #[inline]
    pub(crate) fn pop(&self) -> Option<JobRef> {
        self.deque.pop()
    }

    /// Runs `f` (the body of the job at `job`) as the innermost job of this thread, for
    /// `HelpPolicy::Own` (and `Pool::debug_dump`).
    #[inline]
    pub(crate) fn run_nested<R>(&self, job: usize, f: impl FnOnce() -> R) -> R {
        let saved = self.watermark.replace(self.push_seq.get());
        let result = self.recording(activity::RUNNING, Some(job), 0, f);
        self.watermark.set(saved);
        result
    }

    /// Runs `f` with this worker's activity (`Pool::debug_dump`) set to `state`: running
    /// `job`, or, with `None`, the running job waiting (for `target`); then puts back what
    /// it replaced.
    #[inline]
    fn recording<R>(
        &self,
        state: u8,
        job: Option<usize>,
        target: usize,
        f: impl FnOnce() -> R,
    ) -> R {
        let activity = self.activity();
        let doing = match job {
            Some(job) => activity.enter(state, job, target),
            None => activity.wait(state, target),
        };
        let result = f();
        activity.restore(doing);
        result
    }

    /// Our deque, then a batch from the injector.
    #[inline]
    fn find_local(&self) -> Option<JobRef> {
        if let Some(job) = self.deque.pop() {
            return Some(job);
        }
        loop {
            match self.registry.injector().steal_batch_and_pop(&self.deque) {
                Steal::Success(job) => return Some(job),
                Steal::Empty => return None,
                Steal::Retry => {}
            }
        }
    }

    /// What the main loop looks for before it searches: `find_local` (`find_spare` on a
    /// spare).
    #[inline]
    fn find_first(&self) -> Option<JobRef> {
        if self.spare {
            return self.find_spare();
        }
        self.find_local()
    }

    /// `find_local`, then a steal from the other workers, starting at a random one
    /// (`find_spare` on a spare).
    fn find_work(&self) -> Option<JobRef> {
        if self.spare {
            return self.find_spare();
        }
        self.find_local().or_else(|| self.steal())
    }

    /// A spare's order: our deque, then a steal from the other workers, and only then one
    /// job (not a batch) from the injector. A spare runs because a job blocked, often
    /// waiting for a job it pushed on its worker's deque (a producer): new work from the
    /// injector would be one more job that may block the same way (a consumer), started
    /// before the queued ones that unblock the others, until the spares run out. Taking
    /// one job at a time keeps the injector's jobs off the spare's deque, where the next
    /// spare would steal them before the children the taken job pushes.
    fn find_spare(&self) -> Option<JobRef> {
        if let Some(job) = self.deque.pop() {
            return Some(job);
        }
        if let Some(job) = self.steal() {
            return Some(job);
        }
        loop {
            match self.registry.injector().steal() {
                Steal::Success(job) => return Some(job),
                Steal::Empty => return None,
                Steal::Retry => {}
            }
        }
    }

    fn steal(&self) -> Option<JobRef> {
        let stealers = self.registry.stealers();
        let n = stealers.len();
        if n <= 1 {
            return None;
        }
        let start = self.next_random() as usize % n;
        loop {
            let mut retry = false;
            for offset in 0..n {
                let victim = (start + offset) % n;
                if victim == self.index {
                    continue;
                }
                match stealers[victim].steal() {
                    Steal::Success(job) => {
                        bump_own(&self.counters().steals);
                        return Some(job);
                    }
                    Steal::Retry => retry = true,
                    Steal::Empty => {}
                }
            }
            if !retry {
                return None;
            }
        }
    }

    fn next_random(&self) -> u64 {
        // xorshift64*
        let mut x = self.rng.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Under `HelpPolicy::Own`: the top of our deque if the running job's subtree pushed
    /// it. Everything below the first older job is older too, so we stop there.
    fn pop_own_subtree(&self) -> Option<JobRef> {
        let job = self.deque.pop()?;
        if job.push_seq() > self.watermark.get() {
            Some(job)
        } else {
            // Put it back where it was: the top.
            self.deque.push(job);
            None
        }
    }

    /// Makes sure what waits on our deque is not stuck behind us while we block outside
    /// the idle protocol or run a batch (local pushes do not always wake a sleeper, see
    /// `Sleep::notify_local`).
    pub(crate) fn publish_deque(&self) {
        if !self.deque.is_empty() {
            self.registry.sleep().notify_injected();
        }
    }

    /// Waits, inside a job, for a job of this pool to end, without idling the worker.
    pub(crate) fn wait_for_job(&self, job: &dyn ErasedJob) {
        let target = job.header() as *const crate::job::Header as usize;
        self.recording(activity::WAIT_JOB, None, target, || {
            let lifecycle = &job.header().lifecycle;
            loop {
                if is_terminal(lifecycle.phase()) {
                    return;
                }
                // Not started: run it here (nested submit-and-wait never deadlocks).
                if job.try_claim() {
                    job.run_claimed(self);
                    return;
                }
                if is_terminal(lifecycle.phase()) {
                    return;
                }
                // Delayed: it can be claimed once its timer releases it (under `Any` a worker
                // takes it from the injector; the others wait for the release).
                let phase = lifecycle.phase();
                let delayed = phase == state::DELAYED || phase == state::WAITING_PERMIT;
                match self.registry.help_policy() {
                    HelpPolicy::Own | HelpPolicy::Block if delayed => {
                        self.block_until(
                            || !matches!(lifecycle.phase(), state::DELAYED | state::WAITING_PERMIT),
                            || lifecycle.wait_while_delayed(),
                        );
                        continue;
                    }
                    HelpPolicy::Any => {
                        let registry = Arc::clone(&self.registry);
                        let index = self.index;
                        lifecycle.on_end(Box::new(move || registry.sleep().wake_latch(index)));
                        self.idle_until(|| is_terminal(lifecycle.phase()), || true);
                        return;
                    }
                    HelpPolicy::Own => {
                        if let Some(queued) = self.pop_own_subtree() {
                            self.execute(queued);
                            continue;
                        }
                        self.block_until(|| is_terminal(lifecycle.phase()), || lifecycle.wait());
                        return;
                    }
                    HelpPolicy::Block => {
                        self.block_until(|| is_terminal(lifecycle.phase()), || lifecycle.wait());
                        return;
                    }
                }
            }
        });
    }

    /// Waits for the stolen second half of a `join`; its thief calls `wake_latch` on us.
    pub(crate) fn wait_for_stack_job<B, R>(&self, job: &StackJob<B, R>)
    where
        B: FnOnce() -> R + Send,
        R: Send,
    {
        let target = job as *const StackJob<B, R> as usize;
        self.recording(activity::WAIT_JOIN, None, target, || {
            match self.registry.help_policy() {
                HelpPolicy::Any => self.idle_until(|| job.is_done(), || job.prepare_to_block()),
                // Under `Own`, everything the first half pushed has been popped back by
                // `join` already: nothing of our subtree is left to help with.
                HelpPolicy::Own | HelpPolicy::Block => self.block_until(
                    || job.is_done(),
                    || {
                        if job.prepare_to_block() {
                            self.registry
                                .sleep()
                                .wait_latch(self.index, || job.is_done());
                        }
                    },
                ),
            }
        });
    }

    /// Waits, inside a job, until `done()` (a group's `next` or `wait`: `block_on` with
    /// a worker waker): as a wait for a running job does, under the help policy. Whoever
    /// makes `done()` true calls `Sleep::wake_latch` on this worker.
    pub(crate) fn wait_until(&self, done: impl Fn() -> bool) {
        self.recording(activity::WAIT_WAKE, None, 0, || {
            match self.registry.help_policy() {
                HelpPolicy::Any => self.idle_until(&done, || true),
                HelpPolicy::Own => self.own_until(&done),
                HelpPolicy::Block => self.block_until(&done, || {
                    self.registry.sleep().wait_latch(self.index, &done);
                }),
            }
        });
    }

    /// Waits, inside a job, until `done()` (a semaphore grant), running only jobs of the
    /// waiting job's own subtree meanwhile, whatever the policy: an unrelated job run on
    /// top of it could wait for the same semaphore behind it and never let it resume.
    /// Whoever makes `done()` true calls `Sleep::wake_latch` on this worker.
    pub(crate) fn wait_own_until(&self, done: impl Fn() -> bool) {
        self.recording(activity::WAIT_GRANT, None, 0, || self.own_until(&done));
    }

    /// `wait_own_until` without recording the wait (its callers have).
    fn own_until(&self, done: &impl Fn() -> bool) {
        while !done() {
            match self.pop_own_subtree() {
                Some(job) => self.execute(job),
                None => break,
            }
        }
        self.block_until(done, || {
            self.registry.sleep().wait_latch(self.index, done);
        });
    }

    /// Blocks this worker until `done()`: spins briefly first (the awaited job is often
    /// about to end: a stolen half of a `join` near the leaves takes microseconds, less
    /// than a futex round trip), then publishes its deque and calls `block`.
    fn block_until(&self, done: impl Fn() -> bool, block: impl FnOnce()) {
        let backoff = Backoff::new();
        while !backoff.is_completed() {
            if done() {
                return;
            }
            backoff.snooze();
        }
        self.publish_deque();
        if self.registry.has_park_hooks() {
            self.run_park_hooks();
        }
        block();
    }

    /// `HelpPolicy::Any`: run any work until `done()`, sleeping in the idle protocol (and
    /// so still available for new work) when there is none. `prepare_to_sleep` runs just
    /// before each sleep (false: done, do not sleep); after it, whoever makes `done()`
    /// true must wake us with `Sleep::wake_latch`.
    fn idle_until(&self, done: impl Fn() -> bool, prepare_to_sleep: impl Fn() -> bool) {
        let registry = &*self.registry;
        let sleep = registry.sleep();
        sleep.start_searching();
        let backoff = Backoff::new();
        loop {
            if done() {
                sleep.stop_searching(|| registry.has_visible_work());
                return;
            }
            if let Some(job) = self.find_work() {
                sleep.stop_searching(|| registry.has_visible_work());
                self.execute(job);
                sleep.start_searching();
                backoff.reset();
                continue;
            }
            if !backoff.is_completed() {
                backoff.snooze();
                continue;
            }
            let searching = self.before_sleep(true);
            if !prepare_to_sleep() {
                if !searching {
                    sleep.start_searching();
                }
                continue;
            }
            if sleep.sleep(self.index, searching, || {
                done() || registry.has_visible_work()
            }) {
                bump_own(&self.counters().parks);
            }
            backoff.reset();
        }
    }
}
