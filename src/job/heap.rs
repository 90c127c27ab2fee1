//! Heap jobs, the queue references to them and to `join` halves, and the handles.

use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::{Duration, Instant};

use once_cell::race::OnceBox;
use once_cell::sync::OnceCell;

use super::state::{self, is_terminal, EndHook, JoinLatch, Lifecycle, ThinCallback, TimerSlot};
use super::{JobPtr, RefCounted};
use crate::cancel::{CallbackKey, CancelReason, CancelTarget, CancelToken};
use crate::context::Context;
use crate::error::JobError;
use crate::pool::registry::Registry;
use crate::pool::worker::WorkerThread;
use crate::semaphore::Semaphore;
use crate::stats::bump_own;
use crate::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use crate::timer::TimerKey;
use crate::unwind;

/// Where a job is in its life. `Delayed` and `Queued` jobs can still be cancelled without
/// running; the last four are terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JobState {
    /// Waiting for its delay to pass.
    Delayed,
    /// Waiting in a semaphore's queue for its permits, without occupying a worker.
    WaitingForPermit,
    /// In a queue, not started.
    Queued,
    /// Running on a worker.
    Running,
    /// Returned `Ok`.
    Succeeded,
    /// Returned `Err`.
    Failed,
    /// Panicked.
    Panicked,
    /// Cancelled before it ran, or stopped after it was asked to.
    Cancelled,
}

impl JobState {
    fn from_phase(phase: u32) -> Self {
        match phase {
            state::DELAYED => JobState::Delayed,
            state::WAITING_PERMIT => JobState::WaitingForPermit,
            state::QUEUED => JobState::Queued,
            state::RUNNING => JobState::Running,
            state::SUCCEEDED => JobState::Succeeded,
            state::FAILED => JobState::Failed,
            state::PANICKED => JobState::Panicked,
            // CANCELLING is decided: the job will never run.
            _ => JobState::Cancelled,
        }
    }

    /// Whether this state is terminal (the job will never change again).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Panicked | JobState::Cancelled
        )
    }
}

/// A type-erased reference to a job in a queue: heap jobs (one `Arc` turned into a raw
/// pointer) and the stack jobs of `join`. Two words: every queued job pays for one in
/// the injector (plus the injector slot's state word), so what a queue entry needs
/// besides (its [`PushSeq`]) lives in the job.
pub(crate) struct JobRef {
    pointer: NonNull<()>,
    vtable: &'static JobVTable,
}

/// The pushing worker's push counter when the job was last pushed on a worker's deque
/// (0: never; see `HelpPolicy::Own` and `WorkerThread::pop_own_subtree`). The first field
/// of both kinds of job a `JobRef` points at (`Header` and `StackJob` are `repr(C)`), so
/// a queue entry reads it without knowing the kind.
///
/// # Memory ordering
///
/// `Relaxed`: it is written by a worker just before it pushes the job on its own deque,
/// and read only by the worker that pops that entry from its own deque: the same thread,
/// or one that got the entry through the deque or the injector, whose push and steal
/// synchronise. A job has at most one queue entry at a time, so no two pushes race. It is
/// atomic only because other threads hold shared references to the job meanwhile.
pub(crate) struct PushSeq(AtomicU64);

impl PushSeq {
    fn new() -> Self {
        PushSeq(AtomicU64::new(0))
    }
}

/// Makes a handle from a heap job's queue reference.
type MakeHandle = unsafe fn(NonNull<()>) -> JobHandle;

pub(crate) struct JobVTable {
    /// Runs the job (or drops a stale entry) on a worker; consumes the reference. Returns
    /// whether the job ran (false: a stale entry, or ended `Cancelled` without running).
    pub(crate) execute: unsafe fn(NonNull<()>, &WorkerThread) -> bool,
    /// A new handle to a heap job (`None` for stack jobs).
    pub(crate) handle: Option<MakeHandle>,
    /// Ends a heap job without running it (shutdown); consumes the reference. `None` for
    /// stack jobs, which only a worker may run.
    pub(crate) discard: Option<unsafe fn(NonNull<()>)>,
}

// SAFETY: a `JobRef` points at a `HeapJob` (whose closure and result are `Send`, and whose
// shared parts are `Sync`) or at a `StackJob` whose owner waits for it; both may be run
// from any worker thread.
unsafe impl Send for JobRef {}

impl JobRef {
    /// # Safety
    ///
    /// `pointer` must stay valid until the reference is consumed by `execute` or
    /// `discard` exactly once, and `vtable` must be the one of the pointee's type.
    pub(crate) unsafe fn new(pointer: NonNull<()>, vtable: &'static JobVTable) -> Self {
        JobRef { pointer, vtable }
    }

    fn push_seq_cell(&self) -> &PushSeq {
        // SAFETY: the pointee (alive while this reference is: `new`'s contract) is a
        // `HeapJob`, `repr(C)` with its `repr(C)` `Header` first, or a `repr(C)`
        // `StackJob`; both start with their `PushSeq`.
        unsafe { self.pointer.cast::<PushSeq>().as_ref() }
    }

    /// The push counter recorded by the last [`JobRef::set_push_seq`] (0: none).
    #[inline]
    pub(crate) fn push_seq(&self) -> u64 {
        self.push_seq_cell().0.load(Ordering::Relaxed)
    }

    /// Records the pushing worker's push counter, just before the push.
    #[inline]
    pub(crate) fn set_push_seq(&self, seq: u64) {
        self.push_seq_cell().0.store(seq, Ordering::Relaxed);
    }

    pub(crate) fn pointer(&self) -> NonNull<()> {
        self.pointer
    }

    /// Runs (or discards a stale) job on `worker`; returns whether it ran.
    pub(crate) fn execute(self, worker: &WorkerThread) -> bool {
        // SAFETY: `new`'s contract: the pointer is valid and consumed exactly once, here.
        unsafe { (self.vtable.execute)(self.pointer, worker) }
    }

    /// The kind the job was submitted with (`SubmitOptions::kind`): 0 for none, and for
    /// the stack jobs of `join`.
    #[inline]
    pub(crate) fn kind(&self) -> u16 {
        if self.vtable.handle.is_none() {
            return 0; // a stack job: no header
        }
        // SAFETY: only heap jobs have a `handle` entry; the reference keeps the job alive,
        // and `kind` is written once, before the job is queued.
        unsafe { self.heap_header() }.kind
    }

    /// Ends a heap job without running it. Gives back a stack job, which must be run.
    pub(crate) fn discard(self) -> Result<(), JobRef> {
        match self.vtable.discard {
            // SAFETY: as in `execute`.
            Some(discard) => unsafe {
                discard(self.pointer);
                Ok(())
            },
            None => Err(self),
        }
    }

    /// A token registration for a heap job.
    ///
    /// # Safety
    ///
    /// The reference must point at a `HeapJob`.
    pub(crate) unsafe fn cancel_target(&self) -> JobPtr<dyn CancelTarget> {
        // SAFETY: forwarded.
        unsafe { self.handle() }.into_target()
    }

    /// A new handle to a heap job.
    ///
    /// # Safety
    ///
    /// The reference must point at a `HeapJob`.
    pub(crate) unsafe fn handle(&self) -> JobHandle {
        let make = self.vtable.handle.expect("a heap job");
        // SAFETY: the caller promises a heap job, whose vtable entry takes its pointer.
        unsafe { make(self.pointer) }
    }

    /// The header of a heap job (delayed jobs in the timer are always heap jobs).
    ///
    /// # Safety
    ///
    /// The reference must point at a `HeapJob`.
    pub(crate) unsafe fn heap_header(&self) -> &Header {
        // SAFETY: `HeapJob` is `repr(C)` with the header first, and the caller promises the
        // pointee is one.
        unsafe { self.pointer.cast::<Header>().as_ref() }
    }
}

/// The part of a job that does not depend on its closure and result types.
///
/// Every queued job pays for it, so what only some jobs use (a name, permits, a tick,
/// the running job's own token) is boxed in [`Extras`]: 56 bytes, so that a job whose
/// closure captures nothing fits the smallest block class of `job::alloc` (see the
/// tests). `repr(C)` with the [`PushSeq`] first (see `JobRef`).
#[repr(C)]
pub(crate) struct Header {
    push_seq: PushSeq,
    /// The pool the job was submitted to. Only dereferenced under the registry liveness
    /// invariant (see `pool::registry`): a registry outlives every job it has not yet
    /// counted as ended.
    registry: NonNull<Registry>,
    token: Option<CancelToken>,
    /// What few jobs have: made at submit for a named, semaphore-gated or periodic job,
    /// or on first use of the running job's own token (`ctx.token()`).
    extras: OnceBox<Extras>,
    /// A delayed job's timer entry. Inline, so that a delayed job needs no `Extras`.
    timer: TimerSlot,
    pub(crate) lifecycle: Lifecycle,
    /// References to the job: its `Job`, its `JobHandle`s, its queue entry, its token
    /// registration (see `JobPtr`).
    refs: AtomicU32,
    /// Our key in `token`'s registrations, written right after registering.
    token_key: AtomicU32,
    /// Its kind (`SubmitOptions::kind`, 0: none), for `Context::run_queued`.
    kind: u16,
    /// Whether the job counts toward the pool's queue capacity until it starts.
    bounded: bool,
    /// A fail-fast group's job: if it fails or panics, it cancels its token (the
    /// group's) with `SiblingFailed`.
    fail_fast: bool,
}

/// The parts of a job header that only some jobs use.
#[derive(Default)]
pub(crate) struct Extras {
    name: Option<Arc<str>>,
    /// The run number of a periodic job's run.
    tick: Option<u64>,
    permits: Option<Permits>,
    /// The token given to the running closure (`ctx.token()`), made on first use, and its
    /// callback on the pool's root token. Inline: a plain job whose closure asks for its
    /// token makes one allocation for both. Only the thread running the job makes it,
    /// and the initialiser (a fresh token, a root callback that cancels it) never comes
    /// back to this job, so the cell's lock is neither contended nor re-entered.
    own_token: OnceCell<(CancelToken, CallbackKey)>,
}

/// A semaphore-gated job's permits: held from its grant to its end.
pub(crate) struct Permits {
    semaphore: Semaphore,
    count: u64,
    /// Its key in the semaphore's queue, set (under the semaphore's lock) when queued.
    key: AtomicU64,
    /// Its registration with the pool's root token while it waits for permits, so that a
    /// `Cancel` shutdown ends it at once.
    root_key: AtomicU32,
}

// SAFETY: `registry` is only an address used under the liveness invariant; every other
// field is `Send + Sync`.
unsafe impl Send for Header {}
// SAFETY: as above.
unsafe impl Sync for Header {}

const NO_KEY: u32 = u32::MAX;

pub(crate) struct HeaderInit {
    pub(crate) registry: NonNull<Registry>,
    pub(crate) bounded: bool,
    pub(crate) kind: u16,
    pub(crate) delayed: bool,
    pub(crate) token: Option<CancelToken>,
    pub(crate) name: Option<Arc<str>>,
    pub(crate) permits: Option<(Semaphore, u64)>,
    pub(crate) tick: Option<u64>,
    pub(crate) fail_fast: bool,
}

impl Header {
    pub(crate) fn new(init: HeaderInit) -> Self {
        Header {
            lifecycle: Lifecycle::new(if init.delayed {
                state::DELAYED
            } else if init.permits.is_some() {
                state::WAITING_PERMIT
            } else {
                state::QUEUED
            }),
            push_seq: PushSeq::new(),
            refs: AtomicU32::new(1),
            registry: init.registry,
            bounded: init.bounded,
            fail_fast: init.fail_fast,
            kind: init.kind,
            token: init.token,
            token_key: AtomicU32::new(NO_KEY),
            timer: TimerSlot::new(),
            extras: if init.name.is_some() || init.permits.is_some() || init.tick.is_some() {
                OnceBox::with_value(Box::new(Extras {
                    name: init.name,
                    tick: init.tick,
                    permits: init.permits.map(|(semaphore, count)| Permits {
                        semaphore,
                        count,
                        key: AtomicU64::new(u64::MAX),
                        root_key: AtomicU32::new(NO_KEY),
                    }),
                    ..Extras::default()
                }))
            } else {
                OnceBox::new()
            },
        }
    }

    pub(crate) fn registry_ptr(&self) -> NonNull<Registry> {
        self.registry
    }

    fn permits(&self) -> Option<&Permits> {
        self.extras.get().and_then(|e| e.permits.as_ref())
    }

    /// The running job's own token and its callback on the root token, once made.
    fn own_token_made(&self) -> Option<&(CancelToken, CallbackKey)> {
        self.extras.get().and_then(|e| e.own_token.get())
    }

    /// The token the job was submitted with, if any.
    pub(crate) fn token(&self) -> Option<&CancelToken> {
        self.token.as_ref()
    }

    /// Whether the job must be granted permits before it runs.
    pub(crate) fn is_gated(&self) -> bool {
        self.permits().is_some()
    }

    /// Queues a gated job (`job`, its queue reference) in its semaphore; it is injected
    /// into the pool when granted. While it waits, the pool's root token can cancel it.
    pub(crate) fn enqueue_for_permits(&self, job: JobRef, root: &CancelToken) {
        let permits = self.permits().expect("a gated job has permits");
        // SAFETY: only heap jobs have headers.
        let target = unsafe { job.cancel_target() };
        match root.register(target) {
            Some(key) => permits.root_key.store(key as u32, Ordering::Release),
            None => {
                // The pool is cancelling: never queue it.
                drop(job.discard());
                return;
            }
        }
        if self.lifecycle.phase() != state::WAITING_PERMIT {
            // Cancelled meanwhile (its token): whichever of us takes the key deregisters.
            let key = permits.root_key.swap(NO_KEY, Ordering::AcqRel);
            if key != NO_KEY {
                root.deregister(key as usize);
            }
        }
        permits
            .semaphore
            .enqueue_job(permits.count, job, &permits.key);
    }

    /// Whether the job belongs to `registry` (an address comparison, no dereference).
    pub(crate) fn belongs_to(&self, registry: &Registry) -> bool {
        std::ptr::eq(self.registry.as_ptr(), registry)
    }

    pub(crate) fn set_token_key(&self, key: usize) {
        // Keys index a slab of live registrations: far below 2^32.
        self.token_key.store(key as u32, Ordering::Release);
    }

    /// Records the job's timer entry; false if a cancel may have missed it (the caller
    /// then takes the entry out of the timer, see [`TimerSlot`]).
    pub(crate) fn set_timer_key(&self, key: TimerKey) -> bool {
        let (at, id) = key.to_parts();
        debug_assert_eq!(id, self.timer_id(), "scheduled with `timer_id`");
        self.timer.record(at, &self.lifecycle)
    }

    /// The id the job's timer entry is scheduled under (`Timer::schedule_as`): its
    /// address, unique among live jobs.
    pub(crate) fn timer_id(&self) -> u64 {
        self as *const Header as usize as u64
    }

    fn timer_key(&self) -> Option<TimerKey> {
        let at = self.timer.for_canceller()?;
        Some(TimerKey::from_parts(at, self.timer_id()))
    }

    pub(crate) fn name(&self) -> Option<&str> {
        self.extras.get().and_then(|e| e.name.as_deref())
    }

    pub(crate) fn tick(&self) -> Option<u64> {
        self.extras.get().and_then(|e| e.tick)
    }

    /// Why the running job should stop, if it should.
    pub(crate) fn cancel_reason(&self, registry: &Registry) -> Option<CancelReason> {
        if self.lifecycle.cancel_requested() {
            return Some(CancelReason::Cancelled);
        }
        if let Some(reason) = self.token.as_ref().and_then(CancelToken::reason) {
            return Some(reason);
        }
        registry.root().reason()
    }

    /// The token of the running job: a child of its submit token (or a fresh token), also
    /// cancelled by `Job::cancel` and by the pool's root token.
    pub(crate) fn own_token(&self, registry: &Registry) -> CancelToken {
        let extras = self.extras.get_or_init(Box::default);
        let (token, _) = extras.own_token.get_or_init(|| {
            let token = match &self.token {
                Some(parent) => parent.child(),
                None => CancelToken::new(),
            };
            let on_root = token.clone();
            let key = registry.root().on_cancel(move |reason| {
                on_root.cancel_with(reason);
            });
            (token, key)
        });
        // Pairs with `request_cancel`: either it sees our token or we see its flag.
        if self.lifecycle.cancel_requested() {
            token.cancel();
        }
        token.clone()
    }

    /// Asks a running job to stop.
    fn request_cancel(&self) {
        self.lifecycle.request_cancel();
        if let Some((token, _)) = self.own_token_made() {
            token.cancel();
        }
    }

    /// Releases what a job holds before it runs, by the thread that took it out of phase
    /// `from` (to run it if `claimed`, else to cancel it): its token registration, its
    /// timer entry, its place in a semaphore's queue (or, if cancelled after its grant,
    /// its permits), its queue slot.
    fn release_queued(&self, registry: &Registry, from: u32, claimed: bool) {
        if let Some(token) = &self.token {
            let key = self.token_key.load(Ordering::Acquire);
            if key != NO_KEY {
                token.deregister(key as usize);
            }
        }
        if let Some(permits) = self.permits() {
            let root_key = permits.root_key.swap(NO_KEY, Ordering::AcqRel);
            if root_key != NO_KEY {
                registry.root().deregister(root_key as usize);
            }
            match from {
                state::WAITING_PERMIT => permits.semaphore.remove_job(&permits.key),
                state::QUEUED if !claimed => permits.semaphore.release_held(permits.count),
                _ => {}
            }
        }
        if from == state::DELAYED {
            if let Some(entry) = self.timer_key().and_then(|key| registry.cancel_timer(key)) {
                // The timer's reference to this job: dropping it cannot free the job, our
                // caller holds another.
                let _ = entry.discard();
            }
        }
        if self.bounded {
            registry.release_room();
        }
    }

    /// Releases what the running job held once it has ended: its permits, its callback
    /// on the pool's root token.
    fn release_running(&self, registry: &Registry) {
        if let Some(permits) = self.permits() {
            permits.semaphore.release_held(permits.count);
        }
        if let Some((_, key)) = self.own_token_made() {
            registry.root().remove_callback(*key);
        }
    }
}

/// What a finished job produced, besides cancellation (which the state word records).
type Output<T, E> = Result<T, JobError<E>>;

/// A heap job: one allocation per submit, shared by the queue, the handle and the token.
#[repr(C)]
pub(crate) struct HeapJob<F, T, E> {
    /// First, so that a `JobRef` to a heap job can be read as a `Header` (`repr(C)`).
    header: Header,
    /// The closure until the job runs, then its output: owned by whoever wins the
    /// transition out of `Queued`, then (after the terminal transition, which publishes
    /// the output) by the `Job` handle.
    slot: UnsafeCell<Slot<F, Output<T, E>>>,
    /// The first end callback (`JobHandle::on_end`: a group's bookkeeping), kept here
    /// rather than in the parking table. One word (a `ThinCallback`).
    end_hook: EndHook,
}

/// A job's closure and its output never live at the same time.
enum Slot<F, O> {
    Func(F),
    Output(O),
    Empty,
}

impl<F, O> Slot<F, O> {
    fn take_func(&mut self) -> Option<F> {
        match std::mem::replace(self, Slot::Empty) {
            Slot::Func(func) => Some(func),
            _ => None,
        }
    }

    fn take_output(&mut self) -> Option<O> {
        match std::mem::replace(self, Slot::Empty) {
            Slot::Output(output) => Some(output),
            _ => None,
        }
    }
}

// SAFETY: `slot` is only accessed by the thread that owns it by the state machine (the
// claim winner, then the handle after the terminal transition), and holds `Send` values.
unsafe impl<F: Send, T: Send, E: Send> Sync for HeapJob<F, T, E> {}

/// Everything a queued or running heap job offers without its types.
pub(crate) trait ErasedJob: CancelTarget {
    fn header(&self) -> &Header;
    fn end_hook(&self) -> &EndHook;
    /// `Queued → Running`, unless the job's token is already cancelled: then the job
    /// ends `Cancelled` without running (a token cancel that is still ending its queued
    /// jobs one by one must not let one of them start), and this returns false.
    fn try_claim(&self) -> bool {
        let header = self.header();
        if let Some(reason) = header.token.as_ref().and_then(CancelToken::reason) {
            self.cancel_queued(reason);
            return false;
        }
        header.lifecycle.try_claim()
    }

    /// Runs the job, which the caller has claimed (`try_claim` succeeded).
    fn run_claimed(&self, worker: &WorkerThread);
    /// Ends the job `Cancelled(reason)` if it has not started; returns whether it did. A
    /// running job is left alone: it sees the reason through its token or the pool.
    fn cancel_queued(&self, reason: CancelReason) -> bool;
}

/// `Job::cancel`: a job that has not started is cancelled; a running one is asked to stop
/// (its own request, reported as `Cancelled`).
fn cancel_by_user(job: &dyn ErasedJob) -> bool {
    if job.cancel_queued(CancelReason::Cancelled) {
        return true;
    }
    let header = job.header();
    if header.lifecycle.phase() == state::RUNNING {
        header.request_cancel();
    }
    false
}

/// A heap job seen from its handle.
pub(crate) trait TypedJob<T, E>: ErasedJob {
    /// Takes the output of a job that ended by running.
    ///
    /// # Safety
    ///
    /// The job is terminal, not cancelled, and the caller is the unique `Job` handle.
    unsafe fn take_output(&self) -> Option<Output<T, E>>;

    /// The output of a job that ended by running, borrowed.
    ///
    /// # Safety
    ///
    /// The job is terminal and not cancelled, and the caller holds the unique `Job`
    /// handle by reference (so nobody takes the output meanwhile).
    unsafe fn output_ref(&self) -> Option<&Output<T, E>>;
}

impl<F, T, E> HeapJob<F, T, E>
where
    F: FnOnce(&Context<'_>) -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    const VTABLE: JobVTable = JobVTable {
        execute: Self::execute,
        handle: Some(Self::handle_raw),
        discard: Some(Self::discard),
    };

    /// # Safety
    ///
    /// `pointer` points at a live `Self` (a `JobRef` still holding its reference).
    unsafe fn handle_raw(pointer: NonNull<()>) -> JobHandle {
        // SAFETY: the `JobRef` keeps the job alive; we add a reference for the result and
        // give the borrowed one back with `into_raw`.
        let job = unsafe { JobPtr::from_raw(pointer.cast::<Self>()) };
        // SAFETY: an unsizing coercion of the same pointer.
        let handle = unsafe { job.clone().map(|p| p as NonNull<dyn ErasedJob>) };
        let _ = job.into_raw();
        JobHandle { job: handle }
    }

    pub(crate) fn new(header: Header, func: F) -> JobPtr<Self> {
        JobPtr::new(HeapJob {
            header,
            slot: UnsafeCell::new(Slot::Func(func)),
            end_hook: EndHook::new(),
        })
    }

    /// A queue reference owning one strong count of `job`.
    pub(crate) fn job_ref(job: &JobPtr<Self>) -> JobRef {
        let pointer = job.clone().into_raw().cast::<()>();
        // SAFETY: the reference owns the count taken above, released by `execute` or
        // `discard`; the vtable is `Self`'s.
        unsafe { JobRef::new(pointer, &Self::VTABLE) }
    }

    /// A handle to a new job (for its owner's bookkeeping: see `Registry::submit_kept`).
    pub(crate) fn handle_of(job: &JobPtr<Self>) -> JobHandle {
        // SAFETY: an unsizing coercion of the same pointer.
        let job = unsafe { job.clone().map(|p| p as NonNull<dyn ErasedJob>) };
        JobHandle { job }
    }

    /// The handle of a new job.
    pub(crate) fn into_job(job: JobPtr<Self>) -> Job<T, E> {
        // SAFETY: an unsizing coercion of the same pointer.
        Job::new(unsafe { job.map(|p| p as NonNull<dyn TypedJob<T, E>>) })
    }

    /// The token registration of a new job.
    pub(crate) fn cancel_target(job: &JobPtr<Self>) -> JobPtr<dyn CancelTarget> {
        // SAFETY: an unsizing coercion of the same pointer.
        unsafe { job.clone().map(|p| p as NonNull<dyn CancelTarget>) }
    }

    /// # Safety
    ///
    /// `pointer` comes from `job_ref` and is consumed here.
    unsafe fn execute(pointer: NonNull<()>, worker: &WorkerThread) -> bool {
        // SAFETY: the caller gives us the strong count `job_ref` took.
        let job = unsafe { JobPtr::from_raw(pointer.cast::<Self>()) };
        if worker.registry().is_cancelling() {
            job.cancel_queued(CancelReason::Shutdown);
        } else if job.try_claim() {
            job.run_claimed(worker);
            return true;
        }
        // Otherwise a stale entry: the job was cancelled or run inline by a waiter.
        false
    }

    /// # Safety
    ///
    /// As for `execute`.
    unsafe fn discard(pointer: NonNull<()>) {
        // SAFETY: the caller gives us the strong count `job_ref` took.
        let job = unsafe { JobPtr::from_raw(pointer.cast::<Self>()) };
        job.cancel_queued(CancelReason::Shutdown);
    }
}

impl<F, T, E> RefCounted for HeapJob<F, T, E> {
    #[inline]
    fn ref_count(&self) -> &AtomicU32 {
        &self.header.refs
    }
}

impl<F, T, E> CancelTarget for HeapJob<F, T, E>
where
    F: FnOnce(&Context<'_>) -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    fn cancel_from_token(&self, reason: CancelReason) {
        self.cancel_queued(reason);
    }
}

impl<F, T, E> ErasedJob for HeapJob<F, T, E>
where
    F: FnOnce(&Context<'_>) -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    fn header(&self) -> &Header {
        &self.header
    }

    fn end_hook(&self) -> &EndHook {
        &self.end_hook
    }

    fn run_claimed(&self, worker: &WorkerThread) {
        let registry = worker.registry();
        let header = &self.header;
        header.release_queued(registry, state::QUEUED, true);
        bump_own(&worker.counters().started);
        // SAFETY: we won the claim, so the closure is ours.
        let func = unsafe { (*self.slot.get()).take_func() };
        let func = func.expect("a claimed job has its closure");
        let ctx = Context::new(header, worker);
        let address = header as *const Header as usize;
        let result = worker.run_nested(address, || unwind::halt_unwinding(|| func(&ctx)));
        let (phase, reason, output) = match result {
            Ok(Ok(value)) => (state::SUCCEEDED, 0, Some(Ok(value))),
            Ok(Err(error)) => match header.cancel_reason(registry) {
                Some(reason) => (state::CANCELLED, reason.code(), None),
                None => (state::FAILED, 0, Some(Err(JobError::Failed(error)))),
            },
            Err(payload) => {
                let message = unwind::panic_message(&*payload);
                registry.panic_policy().handle(&message, header.name());
                (state::PANICKED, 0, Some(Err(JobError::Panicked(message))))
            }
        };
        if phase == state::FAILED || phase == state::PANICKED {
            // Before the end is published: no sibling starts after the failure is seen.
            if let Some(group) = header.token.as_ref().filter(|_| header.fail_fast) {
                group.cancel_with(CancelReason::SiblingFailed);
            }
        }
        if let Some(output) = output {
            // SAFETY: we own the slot until the terminal transition below publishes it.
            unsafe { *self.slot.get() = Slot::Output(output) };
        }
        header.release_running(registry);
        // Counted before the end is published, so that a thread woken by it finds the job
        // in `stats()`. A shutdown that sees the count joins this worker before it returns,
        // so it cannot report an end that is not yet visible.
        registry.count_end_on_worker(worker, phase);
        if header.lifecycle.finish(phase, reason) {
            // SAFETY: our finish returned true, and whoever called us holds a reference
            // to the job (a queue entry, a handle, a waiting `Job`).
            unsafe { self.end_hook.run() };
        }
    }

    fn cancel_queued(&self, reason: CancelReason) -> bool {
        let header = &self.header;
        let Some(from) = header.lifecycle.try_cancel() else {
            return false;
        };
        // SAFETY: the job was queued or delayed until our transition, so its registry has
        // not counted it as ended and is alive (registry liveness invariant); we hold a
        // strong count until we are done with it.
        let registry = unsafe { Registry::retain(header.registry) };
        // SAFETY: winning the transition out of Queued/Delayed gives us the closure; drop it
        // (and what it captured) before the waiters are woken.
        drop(unsafe { (*self.slot.get()).take_func() });
        header.release_queued(&registry, from, false);
        // Counted first, as in `run_claimed`; our strong reference keeps the registry alive.
        registry.count_cancelled_unrun();
        if header.lifecycle.finish(state::CANCELLED, reason.code()) {
            // SAFETY: as in `run_claimed`: our caller holds a reference to the job.
            unsafe { self.end_hook.run() };
        }
        true
    }
}

impl<F, T, E> TypedJob<T, E> for HeapJob<F, T, E>
where
    F: FnOnce(&Context<'_>) -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    unsafe fn take_output(&self) -> Option<Output<T, E>> {
        // SAFETY: the caller promises the job is terminal and that it is the only reader.
        unsafe { (*self.slot.get()).take_output() }
    }

    unsafe fn output_ref(&self) -> Option<&Output<T, E>> {
        // SAFETY: the caller promises the job is terminal (no writer any more) and that
        // nobody takes the output while the reference lives.
        match unsafe { &*self.slot.get() } {
            Slot::Output(output) => Some(output),
            _ => None,
        }
    }
}

/// The handle of a submitted job, owning its result.
///
/// `Job` is the one owner of the result, so it is not `Clone`; [`Job::handle`] gives
/// cloneable handles that can wait and cancel but not take the result. Dropping a `Job`
/// detaches the job: it still runs, and its result is dropped when it ends.
///
/// Waiting from inside a job of the same pool never blocks the worker: a job that has not
/// started is run inline, otherwise the worker helps with other work as the pool's
/// [`HelpPolicy`](crate::HelpPolicy) allows.
#[must_use = "dropping a Job detaches it; call wait() to get its result"]
pub struct Job<T, E> {
    job: JobPtr<dyn TypedJob<T, E>>,
}

impl<T, E> fmt::Debug for Job<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Job")
            .field("name", &self.name())
            .field("state", &self.state())
            .finish()
    }
}

impl<T: Send + 'static, E: Send + 'static> Job<T, E> {
    pub(crate) fn new(job: JobPtr<dyn TypedJob<T, E>>) -> Self {
        Job { job }
    }

    /// Waits for the job to end and returns its result.
    ///
    /// # Errors
    ///
    /// [`JobError::Failed`] with the closure's error, [`JobError::Panicked`] with the
    /// panic message, or [`JobError::Cancelled`] with the reason.
    pub fn wait(self) -> Result<T, JobError<E>> {
        let header = self.job.header();
        if !is_terminal(header.lifecycle.phase()) {
            match WorkerThread::current() {
                Some(worker) if header.belongs_to(worker.registry()) => {
                    worker.wait_for_job(&*self.job)
                }
                _ => header.lifecycle.wait(),
            }
        }
        self.into_output()
    }

    /// Waits at most `timeout`. Gives the result, or the handle back if the job has not
    /// ended. Inside a job of the same pool, a job that has not started is run inline
    /// (as by [`Job::wait`]: a timed wait on a one-thread pool cannot starve its own
    /// child), which may take longer than `timeout`; otherwise a timed wait blocks the
    /// calling thread (it does not help).
    ///
    /// # Errors
    ///
    /// `Err(self)` on timeout; the inner result as for [`Job::wait`].
    pub fn wait_timeout(self, timeout: Duration) -> Result<Result<T, JobError<E>>, Self> {
        self.wait_deadline(crate::timer::deadline_after(timeout))
    }

    /// Waits until `deadline` at most (see [`Job::wait_timeout`]).
    ///
    /// # Errors
    ///
    /// `Err(self)` when the deadline passes first.
    pub fn wait_deadline(self, deadline: Instant) -> Result<Result<T, JobError<E>>, Self> {
        if let Some(worker) = WorkerThread::current() {
            self.handle().run_inline(worker);
        }
        if self.job.header().lifecycle.wait_deadline(deadline) {
            Ok(self.into_output())
        } else {
            Err(self)
        }
    }

    fn into_output(self) -> Result<T, JobError<E>> {
        let lifecycle = &self.job.header().lifecycle;
        if lifecycle.phase() == state::CANCELLED {
            let reason = CancelReason::from_code(lifecycle.reason_code());
            return Err(JobError::Cancelled(
                reason.unwrap_or(CancelReason::Cancelled),
            ));
        }
        // SAFETY: the phase is terminal and not cancelled, and `self` (consumed) is the one
        // `Job` of this job.
        let output = unsafe { self.job.take_output() };
        output.expect("a job that ran has an output")
    }
}

impl<T, E> Job<T, E> {
    /// The error of a job that failed or panicked, cloned with `clone` (the job keeps
    /// its own); `None` for any other job.
    pub(crate) fn clone_error(&self, clone: fn(&E) -> E) -> Option<JobError<E>> {
        let phase = self.job.header().lifecycle.phase();
        if !matches!(phase, state::FAILED | state::PANICKED) {
            return None;
        }
        // SAFETY: terminal and not cancelled (checked), and `&self` borrows the one `Job`
        // of this job, so nobody takes the output while we read it.
        match unsafe { self.job.output_ref() }? {
            Err(JobError::Failed(error)) => Some(JobError::Failed(clone(error))),
            Err(JobError::Panicked(message)) => Some(JobError::Panicked(message.clone())),
            _ => None,
        }
    }

    /// Cancels the job. A job that has not started ends `Cancelled` at once (its waiters
    /// wake now) and never runs: returns true. A running job is asked to stop (its
    /// `ctx.is_cancelled()` turns true): returns false, as for an ended job.
    pub fn cancel(&self) -> bool {
        cancel_by_user(&*self.job)
    }

    /// Where the job is in its life.
    pub fn state(&self) -> JobState {
        JobState::from_phase(self.job.header().lifecycle.phase())
    }

    /// Whether the job has ended (so `wait` returns at once).
    pub fn is_finished(&self) -> bool {
        is_terminal(self.job.header().lifecycle.phase())
    }

    /// The name given at submit, if any.
    pub fn name(&self) -> Option<&str> {
        self.job.header().name()
    }

    /// Why the job was cancelled, once it has ended `Cancelled`.
    pub fn cancel_reason(&self) -> Option<CancelReason> {
        CancelReason::from_code(self.job.header().lifecycle.reason_code())
    }

    /// A cloneable handle to the same job, without its result.
    pub fn handle(&self) -> JobHandle {
        // SAFETY: an upcast of the same pointer.
        let job = unsafe { self.job.clone().map(|p| p as NonNull<dyn ErasedJob>) };
        JobHandle { job }
    }
}

/// A cloneable handle to a job, for observers: wait for its end, cancel it, read its
/// state. The result stays with the [`Job`].
#[derive(Clone)]
pub struct JobHandle {
    job: JobPtr<dyn ErasedJob>,
}

impl fmt::Debug for JobHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobHandle")
            .field("name", &self.job.header().name())
            .field("state", &self.state())
            .finish()
    }
}

impl JobHandle {
    /// Ends the job `Cancelled` with `reason` if it has not started, as its token's
    /// cancel would (for a job kept by its group instead of registered with the token:
    /// see `Registry::submit_kept`); false if it had started or ended.
    pub(crate) fn cancel_for_token(&self, reason: CancelReason) -> bool {
        self.job.cancel_queued(reason)
    }

    /// Waits for the job to end (helping inside a worker, as [`Job::wait`]) and returns
    /// its terminal state.
    pub fn wait(&self) -> JobState {
        let header = self.job.header();
        if !is_terminal(header.lifecycle.phase()) {
            match WorkerThread::current() {
                Some(worker) if header.belongs_to(worker.registry()) => {
                    worker.wait_for_job(&*self.job)
                }
                _ => header.lifecycle.wait(),
            }
        }
        self.state()
    }

    /// Waits at most `timeout`; returns whether the job has ended. Inside a job of the
    /// same pool, a job that has not started is run inline first (see
    /// [`Job::wait_timeout`]).
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        if let Some(worker) = WorkerThread::current() {
            self.run_inline(worker);
        }
        match Instant::now().checked_add(timeout) {
            Some(deadline) => self.job.header().lifecycle.wait_deadline(deadline),
            None => {
                self.wait();
                true
            }
        }
    }

    /// The handle as a token registration.
    pub(crate) fn into_target(self) -> JobPtr<dyn CancelTarget> {
        // SAFETY: an upcast of the same pointer.
        unsafe { self.job.map(|p| p as NonNull<dyn CancelTarget>) }
    }

    /// The references to the job (handles, queue entries, timer entries), for tests that
    /// check that nothing is left holding it.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn references(&self) -> u32 {
        self.job.ref_count().load(Ordering::SeqCst)
    }

    /// Runs the job here, on `worker`, if it has not started (and belongs to the
    /// worker's pool); returns whether it did.
    pub(crate) fn run_inline(&self, worker: &WorkerThread) -> bool {
        if !self.job.header().belongs_to(worker.registry()) || !self.job.try_claim() {
            return false;
        }
        self.job.run_claimed(worker);
        true
    }

    /// As [`Job::cancel`].
    pub fn cancel(&self) -> bool {
        cancel_by_user(&*self.job)
    }

    /// As [`Job::state`].
    pub fn state(&self) -> JobState {
        JobState::from_phase(self.job.header().lifecycle.phase())
    }

    /// As [`Job::is_finished`].
    pub fn is_finished(&self) -> bool {
        is_terminal(self.job.header().lifecycle.phase())
    }

    /// Runs `wake` once the job has ended, unless taken back first with the same nonzero
    /// `tag` ([`JobHandle::unwatch_end`]); false (`wake` dropped, not run) if the job has
    /// ended already. For `wait_any`, which watches a job for one wait only.
    pub(crate) fn watch_end(&self, tag: usize, wake: impl FnOnce() + Send + 'static) -> bool {
        self.job
            .header()
            .lifecycle
            .on_end_tagged(tag, Box::new(wake))
    }

    /// End callbacks registered in the parking table now, for tests.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn end_callbacks(&self) -> usize {
        self.job.header().lifecycle.end_callbacks()
    }

    /// Takes back the callback `watch_end` registered with `tag`, if it has not run.
    pub(crate) fn unwatch_end(&self, tag: usize) {
        self.job.header().lifecycle.remove_end_callback(tag);
    }

    /// Runs `callback` once the job has ended: at once if it has, otherwise on the thread
    /// that ends it (keep it short).
    pub fn on_end(&self, callback: impl FnOnce(JobState) + Send + 'static) {
        let job = self.job.clone();
        let callback = ThinCallback::new(move || {
            callback(JobState::from_phase(job.header().lifecycle.phase()));
        });
        let lifecycle = &self.job.header().lifecycle;
        // The job's own hook if it is free (the common case: one callback), else the
        // parking table.
        if let Err(callback) = self.job.end_hook().register(lifecycle, callback) {
            lifecycle.on_end(Box::new(move || callback.call()));
        }
    }
}

/// The second closure of a `join`, living on the joining worker's stack. Its thief
/// writes the result, then sets the latch (see `JoinLatch` for the handshake).
#[repr(C)]
pub(crate) struct StackJob<B, R> {
    /// First: see `JobRef`.
    push_seq: PushSeq,
    func: UnsafeCell<Option<B>>,
    result: UnsafeCell<Option<std::thread::Result<R>>>,
    latch: JoinLatch,
    /// The worker that pushed the job and waits for it.
    owner: usize,
    _marker: PhantomData<R>,
}

impl<B, R> StackJob<B, R>
where
    B: FnOnce() -> R + Send,
    R: Send,
{
    const VTABLE: JobVTable = JobVTable {
        execute: Self::execute,
        handle: None,
        discard: None,
    };

    pub(crate) fn new(func: B, owner: usize) -> Self {
        StackJob {
            push_seq: PushSeq::new(),
            func: UnsafeCell::new(Some(func)),
            result: UnsafeCell::new(None),
            latch: JoinLatch::new(),
            owner,
            _marker: PhantomData,
        }
    }

    /// # Safety
    ///
    /// The job must stay where it is until it has been popped back by its owner or `done`
    /// is set (the owner of a `join` waits for one or the other before returning).
    pub(crate) unsafe fn job_ref(&self) -> JobRef {
        let pointer = NonNull::from(self).cast::<()>();
        // SAFETY: forwarded to our caller.
        unsafe { JobRef::new(pointer, &Self::VTABLE) }
    }

    /// Runs the closure on the owner, which popped the job back (nobody else has it).
    pub(crate) fn run_inline(self) -> R {
        let func = self.func.into_inner().expect("a stack job runs once");
        func()
    }

    pub(crate) fn is_done(&self) -> bool {
        self.latch.is_set()
    }

    /// See [`JoinLatch::prepare_to_block`].
    pub(crate) fn prepare_to_block(&self) -> bool {
        self.latch.prepare_to_block()
    }

    /// The result once `is_done()`.
    pub(crate) fn into_result(self) -> std::thread::Result<R> {
        self.result
            .into_inner()
            .expect("a done stack job has a result")
    }

    /// # Safety
    ///
    /// `pointer` comes from `job_ref` on a `Self`; a thief stole it, so it is the one
    /// runner.
    unsafe fn execute(pointer: NonNull<()>, worker: &WorkerThread) -> bool {
        // SAFETY: the owner keeps the job alive until `done` is set (`job_ref` contract).
        let job = unsafe { pointer.cast::<Self>().as_ref() };
        // SAFETY: stolen jobs have exactly one runner, us.
        let func = unsafe { (*job.func.get()).take() }.expect("a stack job runs once");
        let result = worker.run_nested(pointer.as_ptr() as usize, || unwind::halt_unwinding(func));
        // SAFETY: as above; the owner reads it only after `done`.
        unsafe { *job.result.get() = Some(result) };
        let owner = job.owner;
        // The last access to `job`, which may be gone right after it.
        if job.latch.set() {
            worker.registry().sleep().wake_latch(owner);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    /// Handles may be shared and moved between threads.
    #[test]
    fn handles_are_send_and_sync() {
        assert_send_sync::<Job<Vec<u8>, String>>();
        assert_send_sync::<JobHandle>();
        assert_send_sync::<crate::Pool>();
        assert_send_sync::<CancelToken>();
    }

    /// The layout of the heap job `submit(func)` makes.
    fn job_layout<F, T, E>(_: &F) -> std::alloc::Layout
    where
        F: FnOnce(&Context<'_>) -> Result<T, E>,
    {
        std::alloc::Layout::new::<HeapJob<F, T, E>>()
    }

    /// Every queued job pays for its header and its queue entry: a job whose closure
    /// captures nothing (and returns nothing) fits the smallest block class, and a
    /// queue entry is two words (issue 8: at most 128 bytes per queued job).
    #[test]
    fn a_plain_job_fits_the_smallest_block() {
        assert_eq!(std::mem::size_of::<Header>(), 56);
        assert_eq!(std::mem::size_of::<EndHook>(), 8);
        assert_eq!(std::mem::size_of::<JobRef>(), 16);
        let plain = |_: &Context<'_>| Ok::<(), std::convert::Infallible>(());
        let layout = job_layout(&plain);
        assert!(
            layout.size() <= super::super::alloc::SMALLEST && layout.align() <= 16,
            "a plain job is {layout:?}"
        );
    }
}
