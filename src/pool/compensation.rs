//! How many workers run, and how many of them are blocked in a compensated wait: the
//! count that decides when a spare worker starts (a job is about to block and too few
//! workers would be left running) and when one retires (enough run again).
//!
//! Both numbers live in one atomic word and change together by compare-and-swap. Kept in
//! two words, a retirement could read `blocked` before a blocker's increment and take
//! `active` down after the blocker's look at it: the blocker would have seen enough
//! workers and started no spare, and fewer than `base` would run while it waits. The
//! loom model below runs that race.

use crate::sync::atomic::{AtomicU64, Ordering};

/// `active` in the high half, `blocked` in the low half.
pub(crate) struct Compensation {
    state: AtomicU64,
    base: u64,
}

const BLOCKED: u64 = 1;
const ACTIVE: u64 = 1 << 32;

fn split(state: u64) -> (u64, u64) {
    (state >> 32, state & (ACTIVE - 1))
}

impl Compensation {
    /// `base` workers, all running.
    pub(crate) fn new(base: usize) -> Self {
        Compensation {
            state: AtomicU64::new(base as u64 * ACTIVE),
            base: base as u64,
        }
    }

    /// A worker is about to block. Returns true if the caller must start a spare, which
    /// is counted as running already (`spare_failed` takes it back).
    pub(crate) fn begin(&self) -> bool {
        let mut state = self.state.load(Ordering::SeqCst);
        loop {
            let (active, blocked) = split(state);
            let start = active - (blocked + 1) < self.base;
            let next = state + BLOCKED + if start { ACTIVE } else { 0 };
            match self
                .state
                .compare_exchange(state, next, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return start,
                Err(now) => state = now,
            }
        }
    }

    /// The spare `begin` asked for could not start.
    pub(crate) fn spare_failed(&self) {
        self.state.fetch_sub(ACTIVE, Ordering::SeqCst);
    }

    /// The blocked worker runs again.
    pub(crate) fn end(&self) {
        self.state.fetch_sub(BLOCKED, Ordering::SeqCst);
    }

    /// An idle spare asks whether to retire: true (and counted out) if more than `base`
    /// workers would still run without it.
    pub(crate) fn try_retire(&self) -> bool {
        let mut state = self.state.load(Ordering::SeqCst);
        loop {
            let (active, blocked) = split(state);
            if active - blocked <= self.base {
                return false;
            }
            match self.state.compare_exchange(
                state,
                state - ACTIVE,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return true,
                Err(now) => state = now,
            }
        }
    }

    /// Whether more than `base` workers run unblocked: a spare may retire.
    pub(crate) fn surplus(&self) -> bool {
        let (active, blocked) = split(self.state.load(Ordering::SeqCst));
        active - blocked > self.base
    }

    /// Spare workers counted as running now (started, or about to be).
    #[cfg(not(loom))]
    pub(crate) fn spares(&self) -> u64 {
        let (active, _) = split(self.state.load(Ordering::Relaxed));
        active.saturating_sub(self.base)
    }

    /// Workers blocked in a compensated wait now (`Pool::debug_dump`).
    #[cfg(not(loom))]
    pub(crate) fn blocked(&self) -> u64 {
        split(self.state.load(Ordering::Relaxed)).1
    }

    /// Workers running and not blocked.
    #[cfg(loom)]
    pub(crate) fn running(&self) -> u64 {
        let (active, blocked) = split(self.state.load(Ordering::SeqCst));
        active - blocked
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    /// Two workers of a pool of one block and unblock while a spare, started by one of
    /// them, tries to retire: whenever a blocked worker waits, at least one worker runs
    /// (each blocker checks it right after `begin`, before any end), and at the end the
    /// spares that started have all retired or are needed by nobody.
    #[test]
    fn a_retiring_spare_never_leaves_a_blocker_without_a_running_worker() {
        crate::pool::sleep::loom_tests::model(|| {
            let c = Arc::new(Compensation::new(1));
            // A spare running already (as if started earlier), trying to retire once.
            c.state.fetch_add(ACTIVE, Ordering::SeqCst);
            let spare = {
                let c = c.clone();
                loom::thread::spawn(move || c.try_retire())
            };
            let blocker = {
                let c = c.clone();
                loom::thread::spawn(move || {
                    let started = c.begin();
                    assert!(
                        c.running() >= 1,
                        "a blocked worker waits with nobody running"
                    );
                    c.end();
                    started
                })
            };
            let retired = spare.join().unwrap();
            let started = blocker.join().unwrap();
            let (active, blocked) = split(c.state.load(Ordering::SeqCst));
            assert_eq!(blocked, 0);
            // base 1 + the pre-started spare, minus a retirement, plus a started spare.
            assert_eq!(active, 2 - u64::from(retired) + u64::from(started));
        });
    }
}
