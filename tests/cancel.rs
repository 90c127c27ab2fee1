//! Cancellation tokens: the tree (down, never up; the first reason stays), deadlines and
//! `child_with_timeout`, `on_cancel`/`remove_callback`, `wait`/`wait_timeout`; and what a
//! token does to jobs: queued jobs under it (or under a descendant) end `Cancelled` without
//! running, running jobs see `ctx.is_cancelled()` and a cancelled `ctx.token()`, which
//! `Job::cancel` and a `Cancel` shutdown cancel too.
//!
//! Tests wait on events (channels, `token.wait`, `Job::wait`); the only timed waits are
//! bounded waits for an event that must (or must not) happen.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use jobrunner::{CancelReason, CancelToken, JobError, JobState, ShutdownMode, SubmitOptions};

#[allow(dead_code)]
mod common;

use common::{
    assert_cancelled, by_profile, counting, flagging, patience, pool, recv_n, wait_until, Blocker,
    DropCounter, Waiters, XorShift,
};

/// How late a deadline may fire.
const LATENESS: Duration = Duration::from_millis(50);

/// Held by the tests that measure deadlines and by the busy stress test, so that the
/// measurements do not compete with two spinning workers of the same test binary.
fn timing_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Asserts that `what` happened `at` no sooner than `deadline` and at most `LATENESS`
/// after it.
#[track_caller]
fn assert_on_time(what: &str, at: Instant, deadline: Instant) {
    assert!(at >= deadline, "{what} {:?} early", deadline - at);
    // Under a slow tool (JR_TEST_SLOW) only "never early" is checked: valgrind delays
    // every thread by tens of milliseconds, so a lateness bound would measure valgrind.
    assert!(
        common::slow() || at < deadline + LATENESS,
        "{what} {:?} late",
        at - deadline
    );
}

/// Asserts `token` fires with `DeadlineExceeded` no sooner than `deadline` and at most
/// `LATENESS` after it.
#[track_caller]
fn assert_fires_at(token: &CancelToken, deadline: Instant) {
    let reason = token.wait_timeout(patience());
    let fired = Instant::now();
    assert_eq!(reason, Some(CancelReason::DeadlineExceeded));
    assert_on_time("fired", fired, deadline);
}

/// Waits until a deadline 30 ms away has fired (an event, not a sleep), then asserts that
/// `token`, cancelled with a shorter deadline still ahead, kept `Cancelled`.
#[track_caller]
fn assert_keeps_cancelled_past_its_deadline(token: &CancelToken) {
    let later = CancelToken::with_timeout(Duration::from_millis(30));
    assert_eq!(later.wait(), CancelReason::DeadlineExceeded);
    assert_eq!(token.reason(), Some(CancelReason::Cancelled));
}

// ----- the tree --------------------------------------------------------------------------

#[test]
fn cancel_propagates_to_descendants_not_up() {
    let root = CancelToken::new();
    let a = root.child();
    let a1 = a.child();
    let a2 = a.child();
    let a1x = a1.child();
    let b = root.child();
    let b1 = b.child();

    assert!(a.cancel());
    for token in [&a, &a1, &a2, &a1x] {
        assert_eq!(token.reason(), Some(CancelReason::Cancelled));
        assert!(token.is_cancelled());
    }
    for token in [&root, &b, &b1] {
        assert!(!token.is_cancelled(), "{token:?}");
        assert_eq!(token.reason(), None);
    }
    // A child of a cancelled token starts cancelled, with its parent's reason.
    let late = a1.child();
    assert_eq!(late.reason(), Some(CancelReason::Cancelled));

    assert!(root.cancel_with(CancelReason::Shutdown));
    assert_eq!(b.reason(), Some(CancelReason::Shutdown));
    assert_eq!(b1.reason(), Some(CancelReason::Shutdown));
    assert_eq!(
        a.reason(),
        Some(CancelReason::Cancelled),
        "a descendant cancelled earlier keeps its first reason"
    );
    assert_eq!(a1x.reason(), Some(CancelReason::Cancelled));
}

/// A cancel reaches the descendants one by one, but it is visible to the whole subtree
/// at once: a queued job under a grandchild must not start just because the cancel has
/// not reached its token yet (a worker freed by the cancel would otherwise take it).
#[test]
fn a_cancel_is_seen_by_every_descendant_before_it_reaches_them() {
    let pool = pool(1);
    let root = CancelToken::new();
    let (job_tx, job_rx) = channel::<(jobrunner::Job<(), ()>, Blocker, CancelToken)>();
    let (seen_tx, seen) = channel();
    // Registered before the descendants exist, so it runs (on the cancelling thread)
    // before the cancel reaches them. It frees the worker, then waits for the queued
    // job under the grandchild: the worker must not run it.
    root.on_cancel(move |_| {
        let (job, blocker, grandchild) = job_rx.recv().expect("the job");
        // Not reached yet, and already cancelled: a later reason does not replace it.
        let late = grandchild.cancel_with(CancelReason::DeadlineExceeded);
        blocker.finish();
        let ended = job.wait_timeout(patience()).map(|outcome| outcome.err());
        seen_tx.send((late, ended.ok())).unwrap();
    });
    let child = root.child();
    let grandchild = child.child();
    let blocker = Blocker::start(&pool);
    let ran = Arc::new(AtomicBool::new(false));
    let job = pool
        .submit_with(SubmitOptions::new().token(&grandchild), flagging(&ran))
        .expect("accepted");
    job_tx.send((job, blocker, grandchild.clone())).unwrap();
    root.cancel_with(CancelReason::SiblingFailed);
    let (late, ended) = seen.recv_timeout(patience()).expect("the callback ran");
    assert!(
        !ran.load(Ordering::SeqCst),
        "a job under a cancelled subtree started"
    );
    assert_eq!(
        ended,
        Some(Some(JobError::Cancelled(CancelReason::SiblingFailed)))
    );
    assert!(
        !late,
        "a cancel of a token whose ancestor's cancel is under way"
    );
    assert_eq!(grandchild.reason(), Some(CancelReason::SiblingFailed));
    assert!(pool
        .shutdown(ShutdownMode::Drain, Some(patience()))
        .is_complete());
}

#[test]
fn the_first_reason_stays() {
    let token = CancelToken::new();
    let child = token.child();
    assert!(token.cancel_with(CancelReason::SiblingFailed));
    assert!(!token.cancel());
    assert!(!token.cancel_with(CancelReason::Shutdown));
    assert!(!child.cancel_with(CancelReason::Shutdown));
    assert_eq!(token.reason(), Some(CancelReason::SiblingFailed));
    assert_eq!(child.reason(), Some(CancelReason::SiblingFailed));
    assert_eq!(token.wait(), CancelReason::SiblingFailed);

    // A deadline that passes after a cancel changes nothing.
    let _timing = timing_lock();
    let with_deadline = CancelToken::with_timeout(Duration::from_millis(10));
    assert!(with_deadline.cancel());
    assert_keeps_cancelled_past_its_deadline(&with_deadline);
}

#[test]
fn clones_are_the_same_token() {
    let token = CancelToken::default();
    let clone = token.clone();
    assert!(token.same_as(&clone));
    assert!(!token.same_as(&token.child()));
    assert!(!token.same_as(&CancelToken::new()));
    clone.cancel();
    assert!(token.is_cancelled());
}

// ----- deadlines -------------------------------------------------------------------------

#[test]
fn deadlines_fire_on_time() {
    if common::skip_if_slow("asserts deadlines 20-80 ms away fire within a few ms") {
        return;
    }
    let _timing = timing_lock();
    let start = Instant::now();
    // Scheduled latest first, so that every new one is the earliest the timer knows of.
    let waits: Vec<_> = [80u64, 60, 40, 20]
        .into_iter()
        .map(|ms| {
            let deadline = start + Duration::from_millis(ms);
            let token = if ms % 40 == 0 {
                CancelToken::with_deadline(deadline)
            } else {
                CancelToken::with_timeout(deadline - Instant::now())
            };
            let own = token.deadline().expect("a token with a deadline");
            assert!(own >= deadline && own < deadline + Duration::from_millis(5));
            assert!(!token.is_cancelled());
            // A descendant without a deadline of its own fires with it.
            let descendant = token.child().child();
            thread::spawn(move || {
                assert_fires_at(&token, own);
                // The firing thread wakes the token's waiters before it cancels the
                // descendants: wait for the descendant too.
                assert_eq!(
                    descendant.wait_timeout(patience()),
                    Some(CancelReason::DeadlineExceeded)
                );
            })
        })
        .collect();
    for wait in waits {
        wait.join().unwrap();
    }
}

#[test]
fn a_deadline_in_the_past_has_already_fired() {
    let token = CancelToken::with_deadline(Instant::now());
    assert_eq!(token.reason(), Some(CancelReason::DeadlineExceeded));
    let child = CancelToken::new().child_with_timeout(Duration::ZERO);
    assert_eq!(child.reason(), Some(CancelReason::DeadlineExceeded));
}

#[test]
fn child_with_timeout_cancels_the_child_only() {
    let _timing = timing_lock();
    let parent = CancelToken::new();
    let sibling = parent.child();
    let timeout = Duration::from_millis(30);
    let deadline = Instant::now() + timeout;
    let child = parent.child_with_timeout(timeout);
    let grandchild = child.child();
    let deadline_of_child = child.deadline().expect("the child has a deadline");
    assert!(deadline_of_child >= deadline && deadline_of_child < deadline + LATENESS);
    assert_eq!(parent.deadline(), None);
    assert_fires_at(&child, deadline_of_child);
    assert_eq!(
        grandchild.wait_timeout(patience()),
        Some(CancelReason::DeadlineExceeded)
    );
    assert!(!parent.is_cancelled(), "a deadline goes down, never up");
    assert!(!sibling.is_cancelled());

    let deadline = Instant::now() + Duration::from_millis(25);
    let child = parent.child_with_deadline(deadline);
    assert_eq!(child.deadline(), Some(deadline));
    assert_fires_at(&child, deadline);
}

#[test]
fn an_ancestor_cancel_or_deadline_comes_first() {
    let _timing = timing_lock();
    // The parent's earlier deadline cancels the child before its own.
    let parent_deadline = Instant::now() + Duration::from_millis(20);
    let parent = CancelToken::with_deadline(parent_deadline);
    let child = parent.child_with_timeout(patience());
    assert_fires_at(&child, parent_deadline);

    // A parent cancelled before the child's deadline: the child keeps `Cancelled`.
    let parent = CancelToken::new();
    let child = parent.child_with_timeout(Duration::from_millis(10));
    parent.cancel();
    assert_eq!(child.reason(), Some(CancelReason::Cancelled));
    assert_keeps_cancelled_past_its_deadline(&child);
}

// ----- callbacks -------------------------------------------------------------------------

#[test]
fn on_cancel_runs_once_with_the_reason_on_the_cancelling_thread() {
    let parent = CancelToken::new();
    let token = parent.child();
    let seen: Arc<Mutex<Vec<(usize, CancelReason, ThreadId)>>> = Arc::default();
    for i in 0..3 {
        let seen = Arc::clone(&seen);
        token.on_cancel(move |reason| {
            seen.lock()
                .unwrap()
                .push((i, reason, thread::current().id()));
        });
    }
    assert!(seen.lock().unwrap().is_empty());
    let canceller = thread::spawn(move || {
        parent.cancel_with(CancelReason::SiblingFailed);
        parent.cancel();
        thread::current().id()
    })
    .join()
    .unwrap();
    token.cancel();
    let mut seen = seen.lock().unwrap().clone();
    seen.sort_by_key(|&(i, _, _)| i);
    assert_eq!(
        seen,
        [0, 1, 2].map(|i| (i, CancelReason::SiblingFailed, canceller)),
        "each callback ran once, with the reason, inside the first cancel"
    );
}

#[test]
fn on_cancel_runs_at_once_when_already_cancelled() {
    let token = CancelToken::new();
    token.cancel_with(CancelReason::Shutdown);
    let seen = Arc::new(Mutex::new(None));
    let record = Arc::clone(&seen);
    let key = token.on_cancel(move |reason| {
        *record.lock().unwrap() = Some((reason, thread::current().id()));
    });
    assert_eq!(
        *seen.lock().unwrap(),
        Some((CancelReason::Shutdown, thread::current().id()))
    );
    assert!(
        !token.remove_callback(key),
        "a callback that ran is not registered"
    );
}

#[test]
fn remove_callback_unregisters_it() {
    let token = CancelToken::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let drops = Arc::new(AtomicUsize::new(0));
    let removed_calls = Arc::clone(&calls);
    let owned = DropCounter(Arc::clone(&drops));
    let removed = token.on_cancel(move |_| {
        let _owned = owned;
        removed_calls.fetch_add(100, Ordering::SeqCst);
    });
    let kept_calls = Arc::clone(&calls);
    let kept = token.on_cancel(move |_| {
        kept_calls.fetch_add(1, Ordering::SeqCst);
    });
    assert_ne!(removed, kept);
    assert!(token.remove_callback(removed));
    assert_eq!(
        drops.load(Ordering::SeqCst),
        1,
        "a removed callback is dropped"
    );
    assert!(!token.remove_callback(removed), "removed only once");
    token.cancel();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "only the kept callback ran"
    );
    assert!(!token.remove_callback(kept), "a callback that ran is gone");
}

// ----- waiting ---------------------------------------------------------------------------

#[test]
fn wait_and_wait_timeout_return_when_cancelled() {
    let token = CancelToken::new();
    let waiters = Waiters::spawn((0..4).map(|i| {
        let token = token.child();
        move || {
            if i % 2 == 0 {
                Some(token.wait())
            } else {
                token.wait_timeout(patience())
            }
        }
    }));
    // Nothing cancelled the token: a bounded look shows every waiter still blocked.
    waiters.assert_blocked(
        Duration::from_millis(30),
        "a waiter returned before the token was cancelled",
    );
    token.cancel_with(CancelReason::Shutdown);
    assert_eq!(waiters.finish(), [Some(CancelReason::Shutdown); 4]);
    // Once cancelled, both return at once.
    assert_eq!(token.wait(), CancelReason::Shutdown);
    assert_eq!(token.wait_timeout(patience()), Some(CancelReason::Shutdown));
}

#[test]
fn wait_timeout_gives_up_on_a_live_token() {
    let token = CancelToken::new();
    let start = Instant::now();
    assert_eq!(token.wait_timeout(Duration::from_millis(20)), None);
    assert!(start.elapsed() >= Duration::from_millis(20));
    assert!(!token.is_cancelled());
}

// ----- tokens and jobs -------------------------------------------------------------------

#[test]
fn cancelling_a_token_ends_its_queued_jobs_and_its_descendants_without_running_them() {
    let pool = pool(1);
    let blocker = Blocker::start(&pool);
    let token = CancelToken::new();
    let child = token.child();
    let unrelated = CancelToken::new();
    let cancelled_runs = Arc::new(AtomicUsize::new(0));
    let other_runs = Arc::new(AtomicUsize::new(0));
    let per_group = 50;

    let submit = |options: SubmitOptions, runs: &Arc<AtomicUsize>| {
        pool.submit_with(options, counting(runs)).unwrap()
    };
    let mut under_token = Vec::new();
    let mut others = Vec::new();
    for _ in 0..per_group {
        under_token.push(submit(SubmitOptions::new().token(&token), &cancelled_runs));
        under_token.push(submit(SubmitOptions::new().token(&child), &cancelled_runs));
        // A grandchild held only by its job.
        under_token.push(submit(
            SubmitOptions::new().token(&child.child()),
            &cancelled_runs,
        ));
        others.push(submit(SubmitOptions::new().token(&unrelated), &other_runs));
        others.push(submit(SubmitOptions::new(), &other_runs));
    }

    assert!(token.cancel());
    // Ended by the cancel itself, while the only worker is still held by the blocker.
    for job in &under_token {
        assert_eq!(job.state(), JobState::Cancelled);
    }
    assert_eq!(blocker.job.state(), JobState::Running);
    for job in &others {
        assert_eq!(job.state(), JobState::Queued);
    }

    blocker.finish();
    for job in under_token {
        assert_cancelled(job, CancelReason::Cancelled);
    }
    for job in others {
        assert_eq!(job.wait(), Ok(()));
    }
    assert!(pool.shutdown(ShutdownMode::Drain, None).is_complete());
    assert_eq!(cancelled_runs.load(Ordering::SeqCst), 0);
    assert_eq!(other_runs.load(Ordering::SeqCst), 2 * per_group);
    let stats = pool.stats();
    assert_eq!(stats.cancelled_before_start, 3 * per_group as u64);
    assert_eq!(stats.started, 2 * per_group as u64 + 1);
}

#[test]
fn running_jobs_see_the_token_cancel() {
    let pool = pool(2);
    let token = CancelToken::new();
    let (started_tx, started_rx) = channel();

    // Takes its token before the cancel and blocks on it.
    let tx = started_tx.clone();
    let blocks_on_token = pool
        .submit_with(SubmitOptions::new().token(&token.child()), move |ctx| {
            let own = ctx.token();
            assert!(!own.is_cancelled());
            tx.send(()).unwrap();
            let reason = own
                .wait_timeout(patience())
                .expect("ctx.token() never cancelled");
            assert!(ctx.is_cancelled());
            assert_eq!(ctx.cancel_reason(), Some(reason));
            Err::<(), _>(reason)
        })
        .unwrap();
    // Polls `is_cancelled`, and takes its token only after the cancel.
    let polls = pool
        .submit_with(SubmitOptions::new().token(&token), move |ctx| {
            started_tx.send(()).unwrap();
            wait_until("the job sees the cancel", || ctx.is_cancelled());
            Ok::<_, ()>((ctx.cancel_reason(), ctx.token().reason()))
        })
        .unwrap();
    recv_n(&started_rx, 2, "a job never started");

    assert!(token.cancel_with(CancelReason::SiblingFailed));
    assert_eq!(
        blocks_on_token.wait(),
        Err(JobError::Cancelled(CancelReason::SiblingFailed)),
        "an error after the cancel ends the job Cancelled, with the token's reason"
    );
    let reason = Some(CancelReason::SiblingFailed);
    assert_eq!(polls.wait(), Ok((reason, reason)));
}

#[test]
fn a_job_submitted_with_a_cancelled_token_is_accepted_and_ends_cancelled() {
    let pool = pool(2);
    let ran = Arc::new(AtomicBool::new(false));
    let submit = |token: &CancelToken| {
        pool.submit_with(SubmitOptions::new().token(token), flagging(&ran))
            .expect("accepted")
    };
    let cancelled = CancelToken::new();
    cancelled.cancel_with(CancelReason::SiblingFailed);
    let expired = CancelToken::with_deadline(Instant::now());
    let jobs = [
        (submit(&cancelled), CancelReason::SiblingFailed),
        (submit(&cancelled.child()), CancelReason::SiblingFailed),
        (submit(&expired), CancelReason::DeadlineExceeded),
    ];
    for (job, reason) in jobs {
        assert!(job.is_finished(), "ended by the submit itself");
        assert!(!job.cancel());
        assert_cancelled(job, reason);
    }
    assert!(pool.shutdown(ShutdownMode::Drain, None).is_complete());
    assert!(!ran.load(Ordering::SeqCst));
    let stats = pool.stats();
    assert_eq!((stats.submitted, stats.started), (3, 0));
    assert_eq!(stats.cancelled_before_start, 3);
}

/// A token cancelled while a delayed job under it is being submitted: the job ends
/// cancelled and leaves no entry in the timer. (A canceller that ran before the submit
/// had recorded the timer key could not take the entry out; it then held the job, and
/// through it the token, until its due time, and for ever once the pool stopped.)
#[test]
fn a_token_cancelled_during_a_delayed_submit_leaves_nothing_in_the_timer() {
    let pool = pool(1);
    let rounds = by_profile(5_000, 50_000);
    // Each round, the canceller and the submitter start together from a spin and wait a
    // random few steps each, so that the cancel sweeps the whole submit.
    let round = Arc::new(AtomicUsize::new(0));
    let slot: Arc<Mutex<Option<CancelToken>>> = Arc::default();
    let canceller = {
        let (round, slot) = (Arc::clone(&round), Arc::clone(&slot));
        thread::spawn(move || {
            let mut rng = XorShift::new(7);
            for r in 1..=rounds {
                while round.load(Ordering::Acquire) < r {
                    std::hint::spin_loop();
                }
                let token = slot.lock().unwrap().take().expect("a token per round");
                for _ in 0..rng.below(400) {
                    std::hint::spin_loop();
                }
                token.cancel();
            }
        })
    };
    let ran = Arc::new(AtomicBool::new(false));
    let mut rng = XorShift::new(11);
    for r in 1..=rounds {
        let token = CancelToken::new();
        *slot.lock().unwrap() = Some(token.clone());
        round.store(r, Ordering::Release);
        for _ in 0..rng.below(100) {
            std::hint::spin_loop();
        }
        let options = SubmitOptions::new()
            .token(&token)
            .delay(Duration::from_secs(3600));
        let job = pool.submit_with(options, flagging(&ran)).expect("accepted");
        token.wait();
        assert!(
            job.wait_timeout(patience()).is_ok(),
            "round {r}: the job ended"
        );
        assert_eq!(
            pool.delayed(),
            0,
            "round {r}: a cancelled job left the timer"
        );
    }
    canceller.join().expect("the canceller");
    assert!(!ran.load(Ordering::SeqCst));
    assert!(pool
        .shutdown(ShutdownMode::Drain, Some(patience()))
        .is_complete());
}

#[test]
fn a_deadline_on_the_submit_token_ends_a_queued_job_on_time() {
    let _timing = timing_lock();
    let pool = pool(1);
    let blocker = Blocker::start(&pool);
    let ran = Arc::new(AtomicBool::new(false));
    let timeout = Duration::from_millis(30);
    let deadline = Instant::now() + timeout;
    // The job holds the only handle to its token.
    let job = pool
        .submit_with(
            SubmitOptions::new().token(&CancelToken::with_timeout(timeout)),
            flagging(&ran),
        )
        .unwrap();
    assert_cancelled(job, CancelReason::DeadlineExceeded);
    assert_on_time("ended", Instant::now(), deadline);
    assert_eq!(
        blocker.job.state(),
        JobState::Running,
        "the queue did not move"
    );
    blocker.finish();
    pool.shutdown(ShutdownMode::Drain, None);
    assert!(!ran.load(Ordering::SeqCst));
}

#[test]
fn ctx_token_is_cancelled_by_job_cancel() {
    let pool = pool(2);
    let (started_tx, started_rx) = channel();
    let submit_token = CancelToken::new();
    let job = pool
        .submit_with(SubmitOptions::new().token(&submit_token), move |ctx| {
            let own = ctx.token();
            started_tx.send(()).unwrap();
            let reason = own
                .wait_timeout(patience())
                .expect("ctx.token() never cancelled");
            // Taken again after the cancel: the same, cancelled token.
            assert!(ctx.token().same_as(&own));
            Err::<(), _>(reason)
        })
        .unwrap();
    started_rx.recv_timeout(patience()).unwrap();
    assert!(!job.cancel(), "the job is running");
    assert_cancelled(job, CancelReason::Cancelled);
    assert!(
        !submit_token.is_cancelled(),
        "Job::cancel cancels the job's own token, not the one it was submitted with"
    );

    // Taken only after the cancel, it is cancelled already.
    let (started_tx, started_rx) = channel();
    let job = pool
        .submit(move |ctx| {
            started_tx.send(()).unwrap();
            wait_until("the job sees the cancel", || ctx.is_cancelled());
            Ok::<_, ()>(ctx.token().reason())
        })
        .unwrap();
    started_rx.recv_timeout(patience()).unwrap();
    assert!(!job.cancel());
    assert_eq!(job.wait(), Ok(Some(CancelReason::Cancelled)));
}

#[test]
fn ctx_token_is_cancelled_by_a_cancel_shutdown() {
    let pool = pool(2);
    let (started_tx, started_rx) = channel();
    let job_body = move |started_tx: Sender<()>| {
        move |ctx: &jobrunner::Context<'_>| {
            let own = ctx.token();
            started_tx.send(()).unwrap();
            let reason = own
                .wait_timeout(patience())
                .expect("ctx.token() never cancelled");
            assert_eq!(ctx.cancel_reason(), Some(reason));
            Err::<(), _>(reason)
        }
    };
    let submit_token = CancelToken::new();
    let without_token = pool.submit(job_body(started_tx.clone())).unwrap();
    let with_token = pool
        .submit_with(
            SubmitOptions::new().token(&submit_token),
            job_body(started_tx),
        )
        .unwrap();
    recv_n(&started_rx, 2, "a job never started");
    // Both workers are busy: this one stays queued.
    let ran = Arc::new(AtomicBool::new(false));
    let queued = pool.submit(flagging(&ran)).unwrap();

    let report = pool.shutdown(ShutdownMode::Cancel, Some(patience()));
    assert!(report.is_complete(), "{report:?}");
    assert_eq!((report.completed, report.cancelled), (2, 1), "{report:?}");
    assert_eq!(pool.root_token().reason(), Some(CancelReason::Shutdown));
    assert_cancelled(without_token, CancelReason::Shutdown);
    assert_cancelled(with_token, CancelReason::Shutdown);
    assert_cancelled(queued, CancelReason::Shutdown);
    assert!(!ran.load(Ordering::SeqCst));
    assert!(!submit_token.is_cancelled(), "the shutdown does not go up");
}

/// A token cancel takes the token's registrations out, then ends its queued jobs one by one.
/// A job that a worker claims in between is already running when its turn comes: it must
/// still see the token's reason, not a plain `Cancelled`.
///
/// Made deterministic with a callback registered before the job, which runs first in the
/// cancel and lets the job start.
#[test]
fn a_job_claimed_during_its_tokens_cancel_sees_the_tokens_reason() {
    let pool = pool(1);
    let blocker = Blocker::start(&pool);
    let token = CancelToken::new();
    let (started_tx, started_rx) = channel();
    let (go_tx, go_rx) = channel::<()>();
    let (seen_tx, seen_rx) = channel();
    let release = blocker.release.clone();
    token.on_cancel(move |_| {
        release.send(()).unwrap();
        // Wait (bounded) until the worker has claimed the job.
        let _ = started_rx.recv_timeout(Duration::from_secs(2));
    });
    let job = pool
        .submit_with(SubmitOptions::new().token(&token), move |ctx| {
            started_tx.send(()).unwrap();
            go_rx.recv_timeout(patience()).unwrap();
            seen_tx
                .send((ctx.cancel_reason(), ctx.token().reason()))
                .unwrap();
            Err::<(), _>("stopped")
        })
        .unwrap();
    assert!(token.cancel_with(CancelReason::SiblingFailed));
    go_tx.send(()).ok();
    assert_eq!(blocker.job.wait(), Ok(blocker.thread));
    let reason = Some(CancelReason::SiblingFailed);
    let result = job.wait();
    match seen_rx.try_recv() {
        // The job did not run (the cancel reached it while queued): nothing to race.
        Err(_) => assert_eq!(
            result,
            Err(JobError::Cancelled(CancelReason::SiblingFailed))
        ),
        Ok((ctx_reason, ctx_token_reason)) => {
            assert_eq!(
                (result, ctx_reason, ctx_token_reason),
                (
                    Err(JobError::Cancelled(CancelReason::SiblingFailed)),
                    reason,
                    reason
                ),
                "a job claimed while its token was being cancelled must see the token's \
                 reason (job result, ctx.cancel_reason(), ctx.token().reason())"
            );
        }
    }
}

// ----- a stress test of cancels racing with the workers ----------------------------------

/// Jobs spread over a tree of tokens; subtrees cancelled, with different reasons, while
/// the workers claim jobs. Every job ends once; a job that did not run ended cancelled; a
/// cancelled job's reason is its token's.
fn token_stress_one_seed(seed: u64, jobs: usize) {
    let pool = pool(2);
    let mut rng = XorShift::from_state(seed);
    // A root, 4 children, 16 grandchildren.
    let root = CancelToken::new();
    let mut tokens = vec![root.clone()];
    for i in 0..4 {
        tokens.push(tokens[0].child());
        for _ in 0..4 {
            let child = tokens[1 + i * 5].child();
            tokens.push(child);
        }
    }
    let reasons = [
        CancelReason::Cancelled,
        CancelReason::DeadlineExceeded,
        CancelReason::SiblingFailed,
        CancelReason::Shutdown,
    ];
    let runs: Arc<Vec<AtomicU8>> = Arc::new((0..jobs).map(|_| AtomicU8::new(0)).collect());
    let mut submitted = Vec::with_capacity(jobs);
    for i in 0..jobs {
        let token = tokens[rng.below(tokens.len() as u64) as usize].clone();
        let runs = Arc::clone(&runs);
        let job = pool
            .submit_with(SubmitOptions::new().token(&token), move |ctx| {
                runs[i].fetch_add(1, Ordering::SeqCst);
                for _ in 0..20 {
                    if ctx.is_cancelled() {
                        return Err(ctx.cancel_reason());
                    }
                    std::hint::spin_loop();
                }
                Ok(())
            })
            .unwrap();
        submitted.push((job, token));
        if rng.below(jobs as u64 / 8) == 0 {
            let victim = &tokens[rng.below(tokens.len() as u64) as usize];
            victim.cancel_with(reasons[rng.below(4) as usize]);
        }
    }
    root.cancel_with(CancelReason::Shutdown);

    let mut unrun = 0;
    let mut wrong_reasons = Vec::new();
    for (i, (job, token)) in submitted.into_iter().enumerate() {
        let result = job.wait();
        let ran = runs[i].load(Ordering::SeqCst);
        assert!(ran <= 1, "job {i} ran {ran} times");
        let expected = token.reason().expect("every token ends cancelled");
        match result {
            Ok(()) => assert_eq!(ran, 1),
            Err(JobError::Cancelled(reason)) => {
                if ran == 0 {
                    unrun += 1;
                }
                if reason != expected {
                    wrong_reasons.push((i, ran, reason, expected));
                }
            }
            Err(other) => panic!("job {i}: {other:?}"),
        }
    }
    assert!(pool.shutdown(ShutdownMode::Drain, None).is_complete());
    let stats = pool.stats();
    assert_eq!(stats.submitted, jobs as u64);
    assert_eq!(stats.cancelled_before_start, unrun, "{stats:?}");
    assert_eq!(stats.started, jobs as u64 - unrun, "{stats:?}");
    assert_eq!(stats.succeeded + stats.cancelled, jobs as u64, "{stats:?}");
    assert!(
        wrong_reasons.is_empty(),
        "seed {seed:#x}: {} cancelled jobs ended with another reason than their token's \
         (job, runs, reason, token's reason): {:?}",
        wrong_reasons.len(),
        &wrong_reasons[..wrong_reasons.len().min(5)]
    );
}

#[test]
fn token_cancels_racing_with_workers_end_every_job_once() {
    let _timing = timing_lock();
    let jobs = by_profile(10_000, 100_000);
    for seed in [
        0x9e37_79b9_7f4a_7c15,
        0x2545_f491_4f6c_dd1d,
        0xdead_beef_cafe_f00d,
    ] {
        token_stress_one_seed(seed, jobs);
    }
}

/// Threads submitting to one token (their jobs' registrations spread over its shards and
/// race each other), two workers claiming (deregistering), and a cancel at a random moment.
/// When the cancel returns, no job submitted before it began is still queued; every job
/// ends once, a job that did not run ended with the token's reason, each closure is
/// dropped once, and once every job has ended no registration holds a job (the detached
/// jobs' outputs, freed with their jobs, release the marker).
fn submits_claims_and_a_cancel_race_one_seed(seed: u64, per_thread: usize) {
    const SUBMITTERS: usize = 3;
    let pool = pool(2);
    let token = CancelToken::new();
    let mut rng = XorShift::from_state(seed);
    let cancel_at = rng.below((SUBMITTERS * per_thread) as u64) as usize;
    let marker = Arc::new(());
    let dropped = Arc::new(AtomicUsize::new(0));
    let runs: Arc<Vec<AtomicU8>> = Arc::new(
        (0..SUBMITTERS * per_thread)
            .map(|_| AtomicU8::new(0))
            .collect(),
    );
    // Every job's handle, pushed right after its submit returned; the condvar wakes the
    // canceller at each push.
    let handles = Arc::new((Mutex::new(Vec::new()), Condvar::new()));

    let canceller = {
        let (token, handles) = (token.clone(), Arc::clone(&handles));
        thread::spawn(move || {
            let (list, pushed) = &*handles;
            let before: Vec<(usize, jobrunner::JobHandle)> = pushed
                .wait_while(list.lock().unwrap(), |h| h.len() < cancel_at)
                .unwrap()
                .clone();
            assert!(token.cancel_with(CancelReason::DeadlineExceeded));
            for (i, handle) in before {
                assert_ne!(
                    handle.state(),
                    JobState::Queued,
                    "seed {seed:#x}: job {i}, queued before the cancel, still queued after it"
                );
            }
        })
    };
    let submitters: Vec<_> = (0..SUBMITTERS)
        .map(|t| {
            let (pool, token, marker) = (pool.clone(), token.clone(), Arc::clone(&marker));
            let (dropped, runs, handles) = (
                Arc::clone(&dropped),
                Arc::clone(&runs),
                Arc::clone(&handles),
            );
            thread::spawn(move || {
                let mut kept = Vec::new();
                for n in 0..per_thread {
                    let i = t * per_thread + n;
                    let (counter, marker, runs) = (
                        DropCounter(Arc::clone(&dropped)),
                        Arc::clone(&marker),
                        Arc::clone(&runs),
                    );
                    let job = pool
                        .submit_with(SubmitOptions::new().token(&token), move |_| {
                            let _counter = counter;
                            runs[i].fetch_add(1, Ordering::SeqCst);
                            Ok::<_, ()>(marker)
                        })
                        .unwrap();
                    handles.0.lock().unwrap().push((i, job.handle()));
                    handles.1.notify_all();
                    // Every other job is detached: its output lives until the job is freed.
                    if n % 2 == 0 {
                        kept.push((i, job));
                    }
                }
                kept
            })
        })
        .collect();
    let kept: Vec<_> = submitters
        .into_iter()
        .flat_map(|s| s.join().unwrap())
        .collect();
    canceller.join().unwrap();

    for (i, job) in kept {
        match job.wait() {
            Ok(_) => assert_eq!(runs[i].load(Ordering::SeqCst), 1),
            Err(JobError::Cancelled(reason)) => assert_eq!(
                reason,
                CancelReason::DeadlineExceeded,
                "seed {seed:#x}: job {i}"
            ),
            Err(other) => panic!("seed {seed:#x}: job {i}: {other:?}"),
        }
    }
    let handles = std::mem::take(&mut *handles.0.lock().unwrap());
    assert_eq!(handles.len(), SUBMITTERS * per_thread);
    for (i, handle) in handles {
        let state = handle.wait();
        let ran = runs[i].load(Ordering::SeqCst);
        assert!(ran <= 1, "seed {seed:#x}: job {i} ran {ran} times");
        match state {
            JobState::Succeeded => assert_eq!(ran, 1, "seed {seed:#x}: job {i}"),
            JobState::Cancelled => {}
            other => panic!("seed {seed:#x}: job {i} ended {other:?}"),
        }
    }
    assert!(pool.shutdown(ShutdownMode::Drain, None).is_complete());
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        SUBMITTERS * per_thread,
        "seed {seed:#x}: every closure dropped once"
    );
    // The workers drop their last references to ended jobs after the end is published.
    wait_until("every job is freed", || Arc::strong_count(&marker) == 1);
}

#[test]
fn submits_claims_and_a_cancel_race_on_one_token() {
    let _timing = timing_lock();
    let per_thread = by_profile(2_000, 20_000);
    let mut rng = XorShift::from_state(0x51ab_5eed_0f70_c3a9);
    for _ in 0..by_profile(4, 12) {
        submits_claims_and_a_cancel_race_one_seed(rng.below(u64::MAX), per_thread);
    }
}
