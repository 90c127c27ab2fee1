//! The state machine every job goes through, and the waiting on its end.
//!
//! `[Delayed →] [WaitingForPermit →] Queued → Running → Succeeded | Failed | Panicked |
//! Cancelled`; every phase before `Running` can also go to `Cancelling → Cancelled`. Whoever wins the transition out
//! of `Queued` (a worker, a waiter running the job inline, or a canceller) owns the job's
//! closure and must end the job; whoever moves it to a terminal state wakes every waiter,
//! exactly once, after everything the job owned has been released.

use std::cell::UnsafeCell;
use std::ptr::NonNull;

use crate::parking::{self, Callback};
use crate::sync::atomic::{fence, AtomicU32, AtomicU64, AtomicU8, Ordering};

/// Waiting for a timer to make it runnable.
pub(crate) const DELAYED: u32 = 0;
/// Waiting in a semaphore's queue for its permits.
pub(crate) const WAITING_PERMIT: u32 = 1;
/// In a queue, runnable, not claimed.
pub(crate) const QUEUED: u32 = 2;
/// Claimed by the thread that runs it.
pub(crate) const RUNNING: u32 = 3;
/// Claimed by a canceller, which releases what the job owns before ending it.
pub(crate) const CANCELLING: u32 = 4;
/// Terminal: the closure returned `Ok`.
pub(crate) const SUCCEEDED: u32 = 5;
/// Terminal: the closure returned `Err`.
pub(crate) const FAILED: u32 = 6;
/// Terminal: the closure panicked.
pub(crate) const PANICKED: u32 = 7;
/// Terminal: cancelled before it ran, or it stopped because it was cancelled.
pub(crate) const CANCELLED: u32 = 8;

/// Bits of the state word holding the phase (one of the constants above).
const PHASE_MASK: u32 = 0xf;
/// Bits holding the cancellation reason code of a `CANCELLED` job.
const REASON_SHIFT: u32 = 4;
const REASON_MASK: u32 = 0xf << REASON_SHIFT;
/// Set (under the parking bucket's lock) when a thread blocks or a callback is registered,
/// so that the thread ending the job takes that lock only when someone waits.
const HAS_WAITERS: u32 = 1 << 8;
/// Set by `Job::cancel` on a running job: it should stop.
const CANCEL_REQUESTED: u32 = 1 << 9;
/// Set by the one registration that claims the job's [`EndHook`] cell.
const HOOK_CLAIMED: u32 = 1 << 10;
/// Set once the [`EndHook`] cell holds its callback: the thread that ends the job runs it.
const HAS_HOOK: u32 = 1 << 11;
/// Flags kept across phase transitions.
const FLAGS: u32 = HAS_WAITERS | CANCEL_REQUESTED | HOOK_CLAIMED | HAS_HOOK;

/// Whether `phase` is one of the four terminal phases.
pub(crate) fn is_terminal(phase: u32) -> bool {
    phase >= SUCCEEDED
}

/// The state of one job: a single word. Its waiters park in the shared table of
/// `crate::parking`, keyed by the word's address.
///
/// # Memory ordering
///
/// The word is only changed by read-modify-write operations, so every transition sees the
/// previous one: of two racing transitions out of `QUEUED` exactly one succeeds. The move
/// to a terminal state is an `AcqRel` swap made after the result was written, and readers
/// of the phase use `Acquire`, so a thread that sees a terminal phase sees the result. A
/// waiter sets `HAS_WAITERS` with a CAS while holding its parking bucket's lock, and
/// re-checks the phase under that lock; the finisher's swap either returns the bit (and
/// the finisher then takes the lock to wake) or makes the waiter's CAS fail (and the
/// waiter sees the end). The finisher touches only the word and the static table, so a
/// waiter may free the job as soon as it sees the end.
pub(crate) struct Lifecycle {
    word: AtomicU32,
}

impl Lifecycle {
    pub(crate) fn new(phase: u32) -> Self {
        Lifecycle {
            word: AtomicU32::new(phase),
        }
    }

    fn key(&self) -> usize {
        &self.word as *const AtomicU32 as usize
    }

    /// The current phase.
    #[inline]
    pub(crate) fn phase(&self) -> u32 {
        self.word.load(Ordering::Acquire) & PHASE_MASK
    }

    /// The reason code of a cancelled job (0 if it is not cancelled).
    pub(crate) fn reason_code(&self) -> u8 {
        let word = self.word.load(Ordering::Acquire);
        if word & PHASE_MASK == CANCELLED {
            ((word & REASON_MASK) >> REASON_SHIFT) as u8
        } else {
            0
        }
    }

    /// Marks a running job as asked to stop.
    pub(crate) fn request_cancel(&self) {
        self.word.fetch_or(CANCEL_REQUESTED, Ordering::SeqCst);
    }

    /// Whether `request_cancel` was called.
    #[inline]
    pub(crate) fn cancel_requested(&self) -> bool {
        self.word.load(Ordering::SeqCst) & CANCEL_REQUESTED != 0
    }

    /// Moves `from` to `to` if the job is in `from`, returning the word it replaced; the
    /// winner owns what the move gives.
    #[inline]
    fn transition(&self, from: u32, to: u32) -> Option<u32> {
        let mut current = self.word.load(Ordering::Relaxed);
        loop {
            if current & PHASE_MASK != from {
                return None;
            }
            let new = (current & FLAGS) | to;
            match self.word.compare_exchange_weak(
                current,
                new,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(current),
                Err(actual) => current = actual,
            }
        }
    }

    /// `QUEUED → RUNNING`: the caller now owns the closure and must end the job.
    #[inline]
    pub(crate) fn try_claim(&self) -> bool {
        self.transition(QUEUED, RUNNING).is_some()
    }

    /// `WAITING_PERMIT → QUEUED`: a semaphore granted the job's permits; the caller must
    /// queue it.
    pub(crate) fn try_grant(&self) -> bool {
        match self.transition(WAITING_PERMIT, QUEUED) {
            Some(previous) => {
                self.notify_parked(previous);
                true
            }
            None => false,
        }
    }

    /// Wakes threads parked on this job (they re-check its phase), if any are.
    fn notify_parked(&self, previous: u32) {
        if previous & HAS_WAITERS != 0 {
            let bucket = parking::bucket(self.key());
            bucket.wake_all(&bucket.lock());
        }
    }

    /// `DELAYED → to` (`QUEUED`, or `WAITING_PERMIT` for a job that needs permits): the
    /// caller (the timer) must now queue the job. Wakes threads blocked in
    /// [`Lifecycle::wait_while_delayed`] (a worker waiting to claim it).
    pub(crate) fn try_release_delayed(&self, to: u32) -> bool {
        match self.transition(DELAYED, to) {
            Some(previous) => {
                self.notify_parked(previous);
                true
            }
            None => false,
        }
    }

    /// `DELAYED | WAITING_PERMIT | QUEUED → CANCELLING`: returns the phase the job was
    /// taken from, or `None` if it had already started or ended. The winner owns the closure: it drops it, then
    /// calls [`Lifecycle::finish`] with `CANCELLED`.
    pub(crate) fn try_cancel(&self) -> Option<u32> {
        let mut current = self.word.load(Ordering::Relaxed);
        loop {
            let phase = current & PHASE_MASK;
            if !matches!(phase, DELAYED | WAITING_PERMIT | QUEUED) {
                return None;
            }
            let new = (current & FLAGS) | CANCELLING;
            match self.word.compare_exchange_weak(
                current,
                new,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(phase),
                Err(actual) => current = actual,
            }
        }
    }

    /// `RUNNING | CANCELLING → terminal`, by the thread that claimed the job, after
    /// writing its result and releasing what it owned. Returns whether the job has an
    /// [`EndHook`] callback, which the caller must then run ([`EndHook::run`]).
    #[inline]
    #[must_use = "a job with an end hook must have it run by whoever ended it"]
    pub(crate) fn finish(&self, phase: u32, reason: u8) -> bool {
        debug_assert!(is_terminal(phase));
        let new = phase | (u32::from(reason) << REASON_SHIFT);
        let key = self.key();
        let previous = self.word.swap(new, Ordering::AcqRel);
        debug_assert!(matches!(previous & PHASE_MASK, RUNNING | CANCELLING));
        if previous & HAS_WAITERS != 0 {
            // From here on `self` may be freed by a waiter: use only the key.
            wake_waiters(key);
        }
        previous & HAS_HOOK != 0
    }

    /// Sets `flag` unless the job has ended or the flag is set already.
    fn set_flag(&self, flag: u32) -> FlagSet {
        let seen = self.set_unless_ended(flag);
        if is_terminal(seen & PHASE_MASK) {
            FlagSet::Ended
        } else if seen & flag != 0 {
            FlagSet::AlreadySet
        } else {
            FlagSet::Set
        }
    }

    /// Sets `flag` in the word unless the job has ended or the flag is set already;
    /// returns the word as it was just before (a terminal one: not set).
    fn set_unless_ended(&self, flag: u32) -> u32 {
        let mut current = self.word.load(Ordering::Acquire);
        loop {
            if is_terminal(current & PHASE_MASK) || current & flag != 0 {
                return current;
            }
            match self.word.compare_exchange_weak(
                current,
                current | flag,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return current,
                Err(actual) => current = actual,
            }
        }
    }

    /// Sets `HAS_WAITERS` unless the job has ended; the caller holds the bucket lock.
    /// Returns the phase seen with the bit set (or the terminal phase).
    fn announce(&self) -> u32 {
        self.set_unless_ended(HAS_WAITERS) & PHASE_MASK
    }

    /// Sets `HAS_WAITERS` unless the job has ended; returns whether it is still going.
    fn announce_waiter(&self) -> bool {
        !is_terminal(self.announce())
    }

    /// Blocks the calling thread while `blocked(phase)` holds. Every change that can make
    /// it false (a terminal transition, the release of a delayed job) wakes the bucket.
    fn wait_while(&self, blocked: impl Fn(u32) -> bool) {
        if !blocked(self.phase()) || self.spin_while(None, &blocked) {
            return;
        }
        let bucket = parking::bucket(self.key());
        let mut guard = bucket.lock();
        while blocked(self.announce()) {
            guard = bucket.park(guard);
        }
    }

    /// Spins and yields a little (crossbeam's `Backoff`, to its end) while the job runs
    /// and `blocked(phase)` holds, before a wait parks; returns whether it stopped
    /// holding. A thread waiting on many short jobs in turn (a fan-in from outside the
    /// pool, a binding's `result()`) then mostly finds each one ended without a park,
    /// and the worker that ends it pays no futex wake: with a park per job, those wakes
    /// and context switches cost the 2-core fan-out bench a fifth of its time. Only a
    /// running job is worth it: one still queued (or delayed) waits for a worker first,
    /// longer than a spin, and spinning then takes the CPU a waking worker needs (it
    /// cost the wake-latency bench 3 µs at p50, 9 at p99). Stops early at `deadline`.
    /// (Not under loom: the models check the park and wake, and a bounded spin would
    /// only multiply their interleavings.)
    #[cfg(not(loom))]
    fn spin_while(
        &self,
        deadline: Option<std::time::Instant>,
        blocked: &impl Fn(u32) -> bool,
    ) -> bool {
        let backoff = crossbeam_utils::Backoff::new();
        while !backoff.is_completed() {
            let phase = self.phase();
            if !blocked(phase) {
                return true;
            }
            if phase != RUNNING {
                return false;
            }
            backoff.snooze();
            if deadline.is_some_and(|at| std::time::Instant::now() >= at) {
                return false;
            }
        }
        false
    }

    #[cfg(loom)]
    fn spin_while(
        &self,
        _deadline: Option<std::time::Instant>,
        _blocked: &impl Fn(u32) -> bool,
    ) -> bool {
        false
    }

    /// Blocks the calling thread until the job has ended.
    pub(crate) fn wait(&self) {
        self.wait_while(|phase| !is_terminal(phase));
    }

    /// Blocks the calling thread while the job is delayed or waits for permits (phases
    /// in which it cannot be claimed).
    pub(crate) fn wait_while_delayed(&self) {
        self.wait_while(|phase| phase == DELAYED || phase == WAITING_PERMIT);
    }

    /// Blocks until the job has ended or `deadline` passed; returns whether it ended.
    #[cfg(not(loom))]
    pub(crate) fn wait_deadline(&self, deadline: std::time::Instant) -> bool {
        let running = |phase| !is_terminal(phase);
        if !running(self.phase()) || self.spin_while(Some(deadline), &running) {
            return true;
        }
        let bucket = parking::bucket(self.key());
        let mut guard = bucket.lock();
        loop {
            if !self.announce_waiter() {
                return true;
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return false;
            }
            guard = bucket.park_timeout(guard, deadline - now);
        }
    }

    /// Runs `callback` once the job has ended: at once (on this thread) if it already has,
    /// otherwise on the thread that ends it.
    pub(crate) fn on_end(&self, callback: Callback) {
        {
            let mut guard = parking::bucket(self.key()).lock();
            if self.announce_waiter() {
                guard.push(self.key(), callback);
                return;
            }
        }
        callback();
    }
}

impl Lifecycle {
    /// Registers `callback` to run once the job has ended, under a nonzero `tag` that
    /// [`Lifecycle::remove_end_callback`] takes it back by; false (and `callback`
    /// dropped, not run) if the job has ended already.
    #[cfg(not(loom))]
    pub(crate) fn on_end_tagged(&self, tag: usize, callback: Callback) -> bool {
        let mut guard = parking::bucket(self.key()).lock();
        if self.announce_waiter() {
            guard.push_tagged(self.key(), tag, callback);
            return true;
        }
        false
    }

    /// End callbacks registered in the parking table now, for tests.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn end_callbacks(&self) -> usize {
        parking::bucket(self.key()).lock().count(self.key())
    }

    /// Takes back (and drops, unrun) the callback registered with `tag`, if the job's end
    /// has not taken it yet.
    #[cfg(not(loom))]
    pub(crate) fn remove_end_callback(&self, tag: usize) {
        let removed = parking::bucket(self.key()).lock().remove(self.key(), tag);
        drop(removed); // after the bucket's lock
    }
}

/// What [`Lifecycle::set_flag`] did.
enum FlagSet {
    Set,
    AlreadySet,
    Ended,
}

/// A job's end hook: one callback run by the thread that ends the job, right after its
/// terminal transition, as [`Lifecycle::on_end`] callbacks are, but kept in the job itself
/// rather than in the shared parking table (whose bucket lock and search each end would
/// otherwise pay). The first registration gets it; later ones use `Lifecycle::on_end`.
///
/// # Memory ordering
///
/// Two flags of the job's state word order the cell's accesses:
/// 1. A registration sets `HOOK_CLAIMED` with a CAS that fails once the job has ended or
///    another registration claimed the cell: the winner alone writes the cell.
/// 2. It writes the callback, then sets `HAS_HOOK` with a CAS (`AcqRel`, so the write is
///    released with it), which fails if the job has ended meanwhile.
/// 3. The finisher's terminal swap (`AcqRel`) returns the word it replaced. If that had
///    `HAS_HOOK`, the swap acquired the callback's write and the finisher runs it; the
///    registration's CAS succeeded, and it never touches the cell again.
/// 4. Otherwise a registration that claimed the cell sees the end in step 2 (its CAS
///    acquires the terminal swap, so the callback sees the job ended), takes the
///    callback back and runs it itself; the finisher never touches the cell.
///
/// So the callback runs exactly once, after the end, and the cell is never accessed by two
/// threads at once.
pub(crate) struct EndHook {
    cell: UnsafeCell<Option<ThinCallback>>,
}

// SAFETY: the cell is accessed only by the registration that claimed it, then by one of
// that registration and the finisher, as the protocol above orders; it holds a `Send`
// callback.
unsafe impl Sync for EndHook {}

impl EndHook {
    pub(crate) fn new() -> Self {
        EndHook {
            cell: UnsafeCell::new(None),
        }
    }

    /// Registers `callback` to run once the job of `lifecycle` has ended: on the thread
    /// that ends it, or here, now, if it has ended. `Err(callback)` if an earlier
    /// registration has the hook (register it with `Lifecycle::on_end` instead).
    pub(crate) fn register(
        &self,
        lifecycle: &Lifecycle,
        callback: ThinCallback,
    ) -> Result<(), ThinCallback> {
        match lifecycle.set_flag(HOOK_CLAIMED) {
            FlagSet::Set => {}
            FlagSet::AlreadySet => return Err(callback),
            FlagSet::Ended => {
                callback.call();
                return Ok(());
            }
        }
        // SAFETY: we claimed the cell (step 1); nobody else accesses it before our
        // `HAS_HOOK` is set.
        unsafe { *self.cell.get() = Some(callback) };
        match lifecycle.set_flag(HAS_HOOK) {
            FlagSet::Set => {}
            FlagSet::AlreadySet => unreachable!("HAS_HOOK is set only by the claimer"),
            FlagSet::Ended => {
                // SAFETY: the finisher saw no `HAS_HOOK` and leaves the cell to us (step 4).
                let callback = unsafe { (*self.cell.get()).take() };
                callback.expect("the callback we stored").call();
            }
        }
        Ok(())
    }

    /// Runs the callback, once `Lifecycle::finish` has returned true.
    ///
    /// # Safety
    ///
    /// Called only by the thread whose `finish` returned true, once, with the job still
    /// alive (the caller holds a reference to it).
    pub(crate) unsafe fn run(&self) {
        // SAFETY: the finisher owns the cell now (step 3).
        let callback = unsafe { (*self.cell.get()).take() };
        if let Some(callback) = callback {
            callback.call();
        }
    }
}

/// A boxed `FnOnce() + Send` behind one pointer: the function that calls (or drops) it
/// is stored in its allocation, not beside the pointer as a `Box<dyn FnOnce()>`'s vtable
/// is, so that the [`EndHook`] every job carries takes one word. One allocation, as a
/// `Box<dyn FnOnce()>`.
pub(crate) struct ThinCallback(NonNull<ThinHead>);

/// The start of every [`ThinCallback`]'s allocation (a `ThinNode`).
struct ThinHead {
    /// Takes the node back (the pointer given is its own) and calls its closure if the
    /// flag says so, else drops it.
    finish: unsafe fn(NonNull<ThinHead>, bool),
}

#[repr(C)]
struct ThinNode<F> {
    head: ThinHead,
    callback: F,
}

// SAFETY: the closure is `Send`, and the node is owned by the one `ThinCallback`.
unsafe impl Send for ThinCallback {}

impl ThinCallback {
    pub(crate) fn new<F: FnOnce() + Send + 'static>(callback: F) -> Self {
        let node = Box::new(ThinNode {
            head: ThinHead {
                finish: Self::finish::<F>,
            },
            callback,
        });
        ThinCallback(NonNull::from(Box::leak(node)).cast())
    }

    /// Calls the closure (and frees it).
    pub(crate) fn call(self) {
        let node = self.0;
        std::mem::forget(self);
        // SAFETY: the node is alive and ours (we were its one owner, now forgotten);
        // `finish` is the function `new` stored for its type.
        unsafe { ((*node.as_ptr()).finish)(node, true) };
    }

    /// # Safety
    ///
    /// `node` is the pointer of a `ThinCallback` made by `new::<F>`, given up by it.
    unsafe fn finish<F: FnOnce()>(node: NonNull<ThinHead>, call: bool) {
        // SAFETY: `new::<F>` leaked a `Box<ThinNode<F>>` whose address this is (a
        // `repr(C)` node starts with its head); the caller gives up the pointer.
        let node = unsafe { Box::from_raw(node.cast::<ThinNode<F>>().as_ptr()) };
        let ThinNode { callback, .. } = *node;
        if call {
            callback();
        }
    }
}

impl Drop for ThinCallback {
    fn drop(&mut self) {
        // SAFETY: as in `call`; `self` is not used again.
        unsafe { ((*self.0.as_ptr()).finish)(self.0, false) };
    }
}

/// Where a delayed job's timer entry is: its due time, recorded by the submitter right
/// after inserting the entry, read by the thread that cancels the job out of `DELAYED` to
/// take the entry out of the timer. One word: the entry's key is the due time and the
/// job's address (`Timer::schedule_as`), which the canceller knows.
///
/// A cancel can run between the insert and the record (through the job's token, which
/// it registered with first): it then finds no entry to take out, and the entry would hold
/// the job (and through it its token) until its due time, or for ever once the pool
/// stopped. So the recorder looks at the phase after recording, and the canceller reads
/// the slot after its transition, each behind a SeqCst fence: either the canceller sees
/// the entry or the recorder sees the cancel (or both; the timer's `cancel` then gives
/// the entry to one of them).
#[cfg_attr(loom, allow(dead_code))] // Only `HeapJob` (not built under loom) and the model use it.
pub(crate) struct TimerSlot {
    /// The due time (`TimerKey::to_parts`), `u64::MAX` until recorded: no due time is
    /// (they are capped a century from now, and counted in nanoseconds from a process
    /// epoch).
    at: AtomicU64,
}

#[cfg_attr(loom, allow(dead_code))]
impl TimerSlot {
    pub(crate) fn new() -> Self {
        TimerSlot {
            at: AtomicU64::new(u64::MAX),
        }
    }

    /// Records the due time `at` of the entry of the job whose state is `lifecycle`.
    /// Returns false if a cancel took the job out of `DELAYED` and may have missed the
    /// entry: the caller must then take it out of the timer itself.
    pub(crate) fn record(&self, at: u64, lifecycle: &Lifecycle) -> bool {
        self.at.store(at, Ordering::Release);
        fence(Ordering::SeqCst);
        !matches!(lifecycle.phase(), CANCELLING | CANCELLED)
    }

    /// The due time, read by the thread that won `try_cancel` from `DELAYED`; `None` if
    /// it is not recorded yet (the recorder then sees the cancel and takes the entry out).
    pub(crate) fn for_canceller(&self) -> Option<u64> {
        fence(Ordering::SeqCst);
        let at = self.at.load(Ordering::Acquire);
        (at != u64::MAX).then_some(at)
    }
}

/// The latch of a `join`'s second half: not done, nobody blocks.
const UNSET: u8 = 0;
/// Not done; the owner blocks (or is about to) and must be woken.
const SLEEPY: u8 = 1;
/// Done: the result is written.
const SET: u8 = 2;

/// How the owner of a `join` learns that the thief of its second half is done.
///
/// # Memory ordering
///
/// The thief writes the result, then [`JoinLatch::set`] swaps the latch to `SET`
/// (`AcqRel`); the owner reads it with `Acquire` before the result. An owner about to block
/// first moves the latch from `UNSET` to `SLEEPY` with a CAS: either the thief's swap sees
/// `SLEEPY` and wakes it (through the pool's `Sleep`, never through the job, whose memory
/// may be gone once the latch is set), or the CAS fails on `SET` and the owner does not
/// block. A thief whose owner never blocks takes no lock.
pub(crate) struct JoinLatch {
    state: AtomicU8,
}

impl JoinLatch {
    pub(crate) fn new() -> Self {
        JoinLatch {
            state: AtomicU8::new(UNSET),
        }
    }

    #[inline]
    pub(crate) fn is_set(&self) -> bool {
        self.state.load(Ordering::Acquire) == SET
    }

    /// The owner is about to block until `is_set()`: from now on the thief wakes it.
    /// Returns false if the latch is already set (do not block).
    pub(crate) fn prepare_to_block(&self) -> bool {
        match self
            .state
            .compare_exchange(UNSET, SLEEPY, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(current) => current == SLEEPY,
        }
    }

    /// Sets the latch; returns whether the owner must be woken. The latch may be freed as
    /// soon as this returns.
    #[inline]
    pub(crate) fn set(&self) -> bool {
        self.state.swap(SET, Ordering::AcqRel) == SLEEPY
    }
}

#[cold]
fn wake_waiters(key: usize) {
    let bucket = parking::bucket(key);
    let guard = bucket.lock();
    bucket.unpark(guard, key).run();
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::atomic::AtomicUsize;
    use loom::sync::Arc;

    /// A worker claiming the job races a canceller; a third thread waits. Exactly one of
    /// claim and cancel wins, the loser changes nothing, and the waiter always returns.
    #[test]
    fn claim_races_cancel_and_waiter_is_woken() {
        crate::pool::sleep::loom_tests::model(|| {
            let state = Arc::new(Lifecycle::new(QUEUED));
            let wins = Arc::new(AtomicUsize::new(0));

            let runner = {
                let (state, wins) = (state.clone(), wins.clone());
                loom::thread::spawn(move || {
                    if state.try_claim() {
                        wins.fetch_add(1, Ordering::SeqCst);
                        let _hook = state.finish(SUCCEEDED, 0);
                    }
                })
            };
            let canceller = {
                let (state, wins) = (state.clone(), wins.clone());
                loom::thread::spawn(move || {
                    if state.try_cancel().is_some() {
                        wins.fetch_add(1, Ordering::SeqCst);
                        let _hook = state.finish(CANCELLED, 1);
                    }
                })
            };
            state.wait();
            let phase = state.phase();
            assert!(phase == SUCCEEDED || phase == CANCELLED);
            runner.join().unwrap();
            canceller.join().unwrap();
            assert_eq!(wins.load(Ordering::SeqCst), 1);
            assert_eq!(state.phase(), phase, "a terminal state never changes");
        });
    }

    /// The thief of a join half sets the latch while the owner blocks on it in the
    /// worker sleep of the real protocol: the owner is always woken, and never blocks
    /// after the latch is set.
    #[test]
    fn join_latch_owner_is_always_woken() {
        use crate::pool::sleep::Sleep;
        crate::pool::sleep::loom_tests::model(|| {
            let shared = Arc::new((JoinLatch::new(), Sleep::new(1)));
            let thief = {
                let shared = shared.clone();
                loom::thread::spawn(move || {
                    if shared.0.set() {
                        shared.1.wake_latch(0);
                    }
                })
            };
            let (latch, sleep) = &*shared;
            if latch.prepare_to_block() {
                sleep.wait_latch(0, || latch.is_set());
            }
            assert!(latch.is_set());
            thief.join().unwrap();
        });
    }

    /// A delayed job's submitter records its timer entry while a canceller takes the job
    /// out of `DELAYED`: the entry leaves the timer exactly once, whoever takes it.
    #[test]
    fn a_cancel_racing_the_timer_record_never_strands_the_entry() {
        crate::pool::sleep::loom_tests::model(|| {
            let state = Arc::new(Lifecycle::new(DELAYED));
            let slot = Arc::new(TimerSlot::new());
            // The timer: whether the entry is in it (inserted before the record).
            let timer = Arc::new(loom::sync::Mutex::new(true));
            let takes = Arc::new(AtomicUsize::new(0));
            let take = |timer: &loom::sync::Mutex<bool>, takes: &AtomicUsize| {
                if std::mem::replace(&mut *timer.lock().unwrap(), false) {
                    takes.fetch_add(1, Ordering::SeqCst);
                }
            };
            let canceller = {
                let (state, slot, timer, takes) =
                    (state.clone(), slot.clone(), timer.clone(), takes.clone());
                loom::thread::spawn(move || {
                    assert_eq!(state.try_cancel(), Some(DELAYED));
                    if slot.for_canceller().is_some() {
                        take(&timer, &takes);
                    }
                    let _hook = state.finish(CANCELLED, 1);
                })
            };
            if !slot.record(1, &state) {
                take(&timer, &takes);
            }
            canceller.join().unwrap();
            assert!(
                !*timer.lock().unwrap(),
                "the entry was stranded in the timer"
            );
            assert_eq!(takes.load(Ordering::SeqCst), 1);
        });
    }

    /// Two end hooks race the job's end: the first registration takes the hook, the other
    /// falls back to the parking table; each callback runs exactly once, after the end.
    #[test]
    fn end_hook_runs_once_after_the_end() {
        crate::pool::sleep::loom_tests::model(|| {
            let shared = Arc::new((Lifecycle::new(QUEUED), EndHook::new()));
            let calls = Arc::new(AtomicUsize::new(0));
            let register = |shared: Arc<(Lifecycle, EndHook)>, calls: Arc<AtomicUsize>| {
                let seen = shared.clone();
                let callback = ThinCallback::new(move || {
                    assert_eq!(seen.0.phase(), SUCCEEDED, "ran before the end");
                    calls.fetch_add(1, Ordering::SeqCst);
                });
                if let Err(callback) = shared.1.register(&shared.0, callback) {
                    shared.0.on_end(Box::new(move || callback.call()));
                }
            };
            let other = {
                let (shared, calls) = (shared.clone(), calls.clone());
                loom::thread::spawn(move || register(shared, calls))
            };
            let runner = {
                let shared = shared.clone();
                loom::thread::spawn(move || {
                    assert!(shared.0.try_claim());
                    if shared.0.finish(SUCCEEDED, 0) {
                        // SAFETY: our finish returned true; `shared` keeps the job alive.
                        unsafe { shared.1.run() };
                    }
                })
            };
            register(shared.clone(), calls.clone());
            other.join().unwrap();
            runner.join().unwrap();
            assert_eq!(calls.load(Ordering::SeqCst), 2);
        });
    }

    /// A callback registered while the job ends runs exactly once.
    #[test]
    fn end_callback_runs_once() {
        crate::pool::sleep::loom_tests::model(|| {
            let state = Arc::new(Lifecycle::new(QUEUED));
            let calls = Arc::new(AtomicUsize::new(0));
            let runner = {
                let state = state.clone();
                loom::thread::spawn(move || {
                    assert!(state.try_claim());
                    let _hook = state.finish(FAILED, 0);
                })
            };
            let counted = calls.clone();
            state.on_end(Box::new(move || {
                counted.fetch_add(1, Ordering::SeqCst);
            }));
            runner.join().unwrap();
            assert_eq!(calls.load(Ordering::SeqCst), 1);
        });
    }
}
