//! A group's completion protocol: the count of its live jobs with its closed flag, and
//! the threads waiting for a job to end (`next`) or for the last one to end (`wait`).
//!
//! # Protocol
//!
//! A group's state (its ended jobs, first error, waiters) sits under one lock; the count
//! sits beside it, in one atomic word ([`Count`]). Every waiter's condition reads the
//! count under the state's lock, and every change that can make a condition true (a job's
//! end, a submit taken back, the closed flag) is made under that lock, which then hands
//! out the waiters registered at that moment to be woken once it is released ([`Wake`]).
//! A waiter checks its condition and registers under the lock, then parks until its
//! condition holds: a change made before it registered is seen by its check, a change
//! made after is followed by its wake. No wakeup is lost.
//!
//! Only a submit's increment is made without the lock, first thing in the submit, so
//! that `wait` never sees the group empty while a submit is under way; an increment
//! never makes a condition true, so it wakes nobody. Of a `close` and a submit's
//! increment, `SeqCst` read-modify-writes on the one word order one before the other:
//! either the submit sees [`CLOSED`] (and takes its increment back under the lock,
//! waking the waiters), or the close comes after the job is counted, and `next` keeps
//! waiting for it.
//!
//! `next` waiters are woken by every job end and by the close; `wait` waiters only by the
//! end of the last live job and by the close (the only changes that can make "no live
//! job" true), so a group of many jobs does not wake its `wait`er once per job.
//!
//! The models at the bottom race members' ends (a fail-fast cancel among them), a submit
//! and a close with `wait` and `next`. They fail if the last end wakes no `wait` waiter,
//! or if the count changes after the lock that hands out the waiters is released.

use std::sync::Arc;
#[cfg(not(loom))]
use std::time::Instant;

use crate::few::Few;
use crate::semaphore::{block_on, Waker};
use crate::sync::atomic::{AtomicUsize, Ordering};
use crate::sync::{lock, Mutex};

/// The count's low bit: the group is closed (no more submits) ...
const CLOSED: usize = 1;
/// ... and above it, the live jobs (submitted, or being submitted, and not yet ended).
const ONE_LIVE: usize = 2;

/// What a wait waits for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum WaitFor {
    /// An ended job kept for `next`, or the group closed and drained (`next`).
    Next,
    /// No live job (`wait`).
    Drained,
}

/// The part of a group's state (under its lock) that the protocol needs.
pub(crate) trait Completion {
    /// The threads waiting for the group.
    fn waiters(&mut self) -> &mut Waiters;

    /// Whether an ended job is kept for `next`.
    fn has_finished(&self) -> bool;
}

/// The threads (and `wait_any` calls) waiting for a group, by what they wait for. Lives
/// under the group's state lock: a `&Waiters` is the proof that the lock is held.
#[derive(Default)]
pub(crate) struct Waiters {
    /// Waiting in `next` (and `wait_any`): woken by every job end and by the close.
    next: Vec<Arc<Waker>>,
    /// Waiting in `wait` or `wait_timeout`: woken only when the last live job ends (and
    /// by the close), the one change that can make their condition true.
    drained: Vec<Arc<Waker>>,
}

impl Waiters {
    fn list(&mut self, what: WaitFor) -> &mut Vec<Arc<Waker>> {
        match what {
            WaitFor::Next => &mut self.next,
            WaitFor::Drained => &mut self.drained,
        }
    }

    /// Registers `waker` to be woken as a `next` waiter is (`wait_any`).
    pub(crate) fn watch(&mut self, waker: &Arc<Waker>) {
        self.next.push(Arc::clone(waker));
    }

    /// Removes a `waker` registered by `watch` (or by a wait for `what`).
    pub(crate) fn unwatch(&mut self, waker: &Arc<Waker>, what: WaitFor) {
        self.list(what).retain(|w| !Arc::ptr_eq(w, waker));
    }

    /// How many `next` waiters are registered (for tests).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn next_len(&self) -> usize {
        self.next.len()
    }

    /// Every waiter, or only the `next` ones, to wake once the lock is released.
    fn to_wake(&self, drained_too: bool) -> Wake {
        let drained: &[Arc<Waker>] = if drained_too { &self.drained } else { &[] };
        Wake(self.next.iter().chain(drained).cloned().collect())
    }
}

/// The waiters to wake once the state's lock is released (never under it: a worker
/// waiter checks its condition, which takes the state's lock, under its own latch lock
/// that a wake takes).
#[must_use = "the waiters must be woken once the lock is released"]
pub(crate) struct Wake(Few<Arc<Waker>>);

impl Wake {
    /// Wakes them.
    pub(crate) fn wake(self) {
        self.0.for_each(|waker| waker.wake());
    }
}

/// A group's closed flag and count of live jobs.
///
/// # Memory ordering
///
/// `SeqCst` throughout: a submit's increment and a close are read-modify-writes on the
/// one word, so one of the two sees the other (see the module's protocol); every other
/// change and every read of a waiter's condition is made under the state's lock, which
/// orders them.
pub(crate) struct Count(AtomicUsize);

impl Count {
    /// An open group without jobs.
    pub(crate) fn new() -> Self {
        Count(AtomicUsize::new(0))
    }

    /// A submit's first step, without the lock: counts its job. False if the group is
    /// closed: the submit must then [`uncount`](Count::uncount).
    pub(crate) fn enter(&self) -> bool {
        self.0.fetch_add(ONE_LIVE, Ordering::SeqCst) & CLOSED == 0
    }

    /// Takes back the count of a submit that did not submit (the group was closed, or the
    /// pool refused the job), under the state's lock (`waiters` proves it); returns the
    /// waiters to wake, whose condition it may make true.
    pub(crate) fn uncount(&self, waiters: &Waiters) -> Wake {
        self.0.fetch_sub(ONE_LIVE, Ordering::SeqCst);
        waiters.to_wake(true)
    }

    /// Closes the group, under the state's lock; returns every waiter to wake.
    pub(crate) fn close(&self, waiters: &Waiters) -> Wake {
        self.0.fetch_or(CLOSED, Ordering::SeqCst);
        waiters.to_wake(true)
    }

    /// A job has ended (its outcome recorded under the same lock): counts one job less
    /// and returns who to wake: every `next` waiter, and the `wait` waiters if it was the
    /// last live job.
    #[inline]
    pub(crate) fn leave(&self, waiters: &Waiters) -> Wake {
        let before = self.0.fetch_sub(ONE_LIVE, Ordering::SeqCst);
        waiters.to_wake(before / ONE_LIVE == 1)
    }

    /// The live jobs now.
    pub(crate) fn live(&self) -> usize {
        self.0.load(Ordering::SeqCst) / ONE_LIVE
    }

    /// Whether the group is closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.0.load(Ordering::SeqCst) & CLOSED != 0
    }

    /// Whether the group is closed and has no live job: `next` returns `None` when no
    /// ended job is left for it either.
    pub(crate) fn is_closed_and_drained(&self) -> bool {
        self.0.load(Ordering::SeqCst) == CLOSED
    }

    /// Whether the condition of a wait for `what` holds; called under the state's lock
    /// (`state` proves it).
    pub(crate) fn ready(&self, state: &impl Completion, what: WaitFor) -> bool {
        match what {
            WaitFor::Next => state.has_finished() || self.is_closed_and_drained(),
            WaitFor::Drained => self.live() == 0,
        }
    }

    /// Blocks the calling thread (a worker in its pool's way when `at` is `None`) until
    /// the condition of a wait for `what` holds or `at` passes; returns whether it holds.
    /// Registers as a waiter under the lock, unless the condition already holds, and
    /// takes the registration back before it returns.
    pub(crate) fn block<S: Completion>(
        &self,
        state: &Mutex<S>,
        what: WaitFor,
        #[cfg(not(loom))] at: Option<Instant>,
    ) -> bool {
        #[cfg(loom)]
        let at = None;
        let waker = {
            let mut state = lock(state);
            if self.ready(&*state, what) {
                return true;
            }
            let waker = Arc::new(Waker::current(at.is_none()));
            state.waiters().list(what).push(Arc::clone(&waker));
            waker
        };
        let done = block_on(&waker, || self.ready(&*lock(state), what), at);
        lock(state).waiters().unwatch(&waker, what);
        done
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::job::state::{Lifecycle, CANCELLED, FAILED, QUEUED, SUCCEEDED};
    use loom::sync::Arc;

    /// A group reduced to its protocol: each ended member records its id and outcome in
    /// completion order, the first failure's id is kept as the error `wait` reports.
    #[derive(Default)]
    struct State {
        /// Ended members not yet taken by `next`.
        finished: Vec<usize>,
        /// Every end, in order: (member, phase).
        ends: Vec<(usize, u32)>,
        first_error: Option<usize>,
        failed: bool,
        waiters: Waiters,
    }

    impl Completion for State {
        fn waiters(&mut self) -> &mut Waiters {
            &mut self.waiters
        }

        fn has_finished(&self) -> bool {
            !self.finished.is_empty()
        }
    }

    struct Group {
        count: Count,
        state: Mutex<State>,
        members: Vec<Lifecycle>,
    }

    impl Group {
        /// A group with `n` members submitted (counted), queued.
        fn new(n: usize) -> Arc<Self> {
            let group = Group {
                count: Count::new(),
                state: Mutex::new(State::default()),
                members: (0..n).map(|_| Lifecycle::new(QUEUED)).collect(),
            };
            for _ in 0..n {
                assert!(group.count.enter());
            }
            Arc::new(group)
        }

        /// `job_ended`: under one lock, records the end and stops counting the member;
        /// wakes outside it.
        fn ended(&self, member: usize, phase: u32) {
            let wake = {
                let mut state = lock(&self.state);
                state.ends.push((member, phase));
                if phase == FAILED && !state.failed {
                    state.failed = true;
                    state.first_error = Some(member);
                } else {
                    state.finished.push(member);
                }
                self.count.leave(&state.waiters)
            };
            wake.wake();
        }

        /// A worker runs `member` unless it was cancelled first: ends it `phase`.
        fn run(&self, member: usize, phase: u32) -> bool {
            if !self.members[member].try_claim() {
                return false;
            }
            let _hook = self.members[member].finish(phase, 0);
            self.ended(member, phase);
            true
        }

        /// The token's cancel reaching a queued member (`cancel_pending`).
        fn cancel(&self, member: usize) {
            if self.members[member].try_cancel().is_some() {
                let _hook = self.members[member].finish(CANCELLED, 1);
                self.ended(member, CANCELLED);
            }
        }

        /// `Group::wait`: blocks until no member is live, then takes the first error.
        fn wait(&self) -> Option<usize> {
            assert!(self.count.block(&self.state, WaitFor::Drained));
            lock(&self.state).first_error.take()
        }

        /// `Group::next`: the next ended member, or `None` once closed and drained.
        fn next(&self) -> Option<usize> {
            loop {
                assert!(self.count.block(&self.state, WaitFor::Next));
                let mut state = lock(&self.state);
                if !state.finished.is_empty() {
                    return Some(state.finished.remove(0));
                }
                if self.count.is_closed_and_drained() {
                    return None;
                }
            }
        }

        fn close(&self) {
            let wake = self.count.close(&lock(&self.state).waiters);
            wake.wake();
        }
    }

    /// Two members end on two workers while the caller waits; the first fails and,
    /// fail-fast, cancels the group: the other ends either by running or cancelled, once.
    /// `wait` returns exactly when the last end is recorded (never before: it would see
    /// an end missing; never not at all: loom reports the deadlock), with the first
    /// failure's error, taken once.
    #[test]
    fn wait_wakes_when_the_last_member_ends_and_the_first_error_wins_once() {
        crate::pool::sleep::loom_tests::model(|| {
            let group = Group::new(2);
            let failing = {
                let group = Arc::clone(&group);
                loom::thread::spawn(move || {
                    assert!(group.run(0, FAILED));
                    group.cancel(1); // fail-fast: the token's cancel reaches member 1
                })
            };
            let other = {
                let group = Arc::clone(&group);
                loom::thread::spawn(move || {
                    group.run(1, SUCCEEDED);
                })
            };
            assert_eq!(
                group.wait(),
                Some(0),
                "the first failure is what wait reports"
            );
            {
                let state = lock(&group.state);
                assert_eq!(state.ends.len(), 2, "wait returned before the last end");
                assert!(
                    state.ends.iter().any(|&(m, _)| m == 1),
                    "member 1 never ended"
                );
                assert_eq!(group.count.live(), 0);
            }
            assert_eq!(group.wait(), None, "the first error is taken once");
            failing.join().unwrap();
            other.join().unwrap();
            let state = lock(&group.state);
            assert_eq!(state.ends.len(), 2, "a member ended twice");
            assert!(state.waiters.next.is_empty() && state.waiters.drained.is_empty());
        });
    }

    /// A member ends and then its worker closes the group, while a submit races the
    /// close and the caller waits in `next`: `next` yields every ended member (the late
    /// submit's too, when it got in) and then `None`, never waiting forever (a close or
    /// an end that wakes nobody: loom reports the deadlock) and never returning `None`
    /// while a member is live.
    #[test]
    fn next_yields_every_end_then_none_while_a_submit_races_the_close() {
        crate::pool::sleep::loom_tests::model(|| {
            let group = Group::new(1);
            let member = {
                let group = Arc::clone(&group);
                loom::thread::spawn(move || {
                    assert!(group.run(0, SUCCEEDED));
                    group.close();
                })
            };
            let submitter = {
                let group = Arc::clone(&group);
                loom::thread::spawn(move || {
                    if group.count.enter() {
                        // Submitted: the job runs (here, at once) and ends.
                        group.ended(1, SUCCEEDED);
                        true
                    } else {
                        let wake = group.count.uncount(&lock(&group.state).waiters);
                        wake.wake();
                        false
                    }
                })
            };
            let mut yielded = Vec::new();
            while let Some(member) = group.next() {
                yielded.push(member);
            }
            let submitted = submitter.join().unwrap();
            member.join().unwrap();
            yielded.sort_unstable();
            let expected: &[usize] = if submitted { &[0, 1] } else { &[0] };
            assert_eq!(yielded, expected);
            assert_eq!(group.count.live(), 0);
            assert!(group.count.is_closed());
        });
    }
}
