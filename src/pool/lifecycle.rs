//! A pool's lifecycle word, and the handshake that keeps a late push from being lost when
//! the pool terminates.
//!
//! The word only rises: `OPEN`, then `DRAINING` or `CANCELLING` when a shutdown begins,
//! then `TERMINATED` once the pool is quiescent (every accepted job counted as ended) and
//! its workers are told to exit.
//!
//! # Late pushes
//!
//! Most pushes put a job in the pool's injector before anything else can claim or end it.
//! A few make the job reachable first and push it after: the timer releases a delayed job
//! (`Delayed → Queued`), a semaphore grants a gated one (`WaitingPermit → Queued`), a group
//! keeps a member before it is queued, a submit registers the job with its token. In
//! between, a waiter may claim and run the job (or a cancel end it), the pool may go
//! quiescent and terminate, and the push then lands in an injector no worker will look at
//! again: its entry, a reference to the job, would never be released.
//!
//! So both sides drain the injector, and the fences make sure at least one of them sees
//! the entry:
//!
//! - the late pusher pushes, issues a `SeqCst` fence (`Sleep::notify_injected`'s), then asks
//!   [`Lifecycle::terminated_after_push`], and drains if it says so;
//! - termination calls [`Lifecycle::terminate`] (the raise, then a `SeqCst` fence), waits
//!   for its workers to exit, then drains.
//!
//! If the pusher's load misses `TERMINATED`, its fence precedes termination's in the
//! fences' single total order, so termination's drain sees the push. Both may drain at
//! once: the injector hands each entry to one of them. Every entry left is stale (the pool
//! was quiescent), so draining only drops references. The loom model below checks this.

use crate::sync::atomic::{fence, AtomicU8, Ordering};

/// Accepting submits.
pub(crate) const OPEN: u8 = 0;
/// Refusing outside submits; jobs of the pool may still submit (they are being drained).
pub(crate) const DRAINING: u8 = 1;
/// Refusing all submits; queued jobs end `Cancelled`.
pub(crate) const CANCELLING: u8 = 2;
/// Quiescent; workers exit.
pub(crate) const TERMINATED: u8 = 3;

/// `OPEN`, `DRAINING`, `CANCELLING` or `TERMINATED`; only ever raised.
pub(crate) struct Lifecycle(AtomicU8);

impl Lifecycle {
    pub(crate) fn new() -> Self {
        Lifecycle(AtomicU8::new(OPEN))
    }

    #[inline]
    pub(crate) fn load(&self, order: Ordering) -> u8 {
        self.0.load(order)
    }

    /// Raises the word to `to` (a lower value than the current one changes nothing).
    pub(crate) fn raise(&self, to: u8) {
        self.0.fetch_max(to, Ordering::SeqCst);
    }

    /// Termination's half of the handshake: raises the word to `TERMINATED`. The caller
    /// drains the injector after this (once its workers have exited).
    pub(crate) fn terminate(&self) {
        self.raise(TERMINATED);
        // A late push this fence does not order before the caller's drain sees
        // `TERMINATED` in `terminated_after_push` and drains its entry itself.
        fence(Ordering::SeqCst);
    }

    /// The late pusher's half, called after its push and a `SeqCst` fence: whether the
    /// pool has terminated, so that the pusher must drain the injector itself.
    #[inline]
    pub(crate) fn terminated_after_push(&self) -> bool {
        self.0.load(Ordering::Relaxed) == TERMINATED
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::pool::sleep::Sleep;
    use loom::sync::atomic::AtomicBool;
    use loom::sync::Arc;

    /// A pool reduced to the handshake. The injector holds at most the one late entry,
    /// pushed with a release store (crossbeam's `Injector::push` publishes its slot so)
    /// and looked for with an acquire load. The model checks that at least one side sees
    /// the entry; that only one of them takes it is the injector's business (a steal), and
    /// loom, whose modification order is partial, cannot model two read-modify-writes
    /// racing for one value without reporting executions that cannot happen.
    struct Model {
        lifecycle: Lifecycle,
        sleep: Sleep,
        queued: AtomicBool,
    }

    /// A late push racing with termination: the pusher's check or termination's drain
    /// finds its entry.
    #[test]
    fn a_late_push_racing_termination_is_found_by_one_side() {
        crate::pool::sleep::loom_tests::model(|| {
            let model = Arc::new(Model {
                lifecycle: Lifecycle::new(),
                sleep: Sleep::new(1),
                queued: AtomicBool::new(false),
            });
            let pusher = {
                let model = Arc::clone(&model);
                loom::thread::spawn(move || {
                    model.queued.store(true, Ordering::Release);
                    model.sleep.notify_injected();
                    model.lifecycle.terminated_after_push()
                })
            };
            model.lifecycle.raise(DRAINING);
            model.lifecycle.terminate();
            let found_by_termination = model.queued.load(Ordering::Acquire);
            let found_by_pusher = pusher.join().unwrap();
            assert!(
                found_by_termination || found_by_pusher,
                "the late push's entry was left in the injector"
            );
        });
    }
}
