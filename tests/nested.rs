//! Nested work: jobs that submit and wait for jobs, under each `HelpPolicy`; `join` and
//! `Context::join`, including panics in either half; what a waiting job may run meanwhile
//! (`Own` runs only its own subtree, `Any` runs anything, `Block` nothing); and waits
//! inside a job that must never deadlock a one-thread pool.
//!
//! Tests wait on events (channels, `Job::wait`); the only timed waits are bounded waits
//! for an event that must (or must not) happen.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, ThreadId};
use std::time::Duration;

use jobrunner::{
    CancelReason, Context, HelpPolicy, Job, JobError, JobHandle, JobState, Pool, SubmitOptions,
};

#[allow(dead_code)]
mod common;

use common::{
    assert_cancelled, assert_not_yet, by_profile, detach_reporting, patience,
    quiet_expected_panics, recv_n, EXPECTED, NOT_YET,
};

const POLICIES: [HelpPolicy; 3] = [HelpPolicy::Any, HelpPolicy::Own, HelpPolicy::Block];

/// A pool of `threads` workers whose waiting jobs help under `policy`.
fn pool(threads: usize, policy: HelpPolicy) -> Pool {
    Pool::builder()
        .threads(threads)
        .help_policy(policy)
        .build()
        .unwrap()
}

/// Waits for `job` from the test thread, failing (instead of hanging) if it does not end.
fn finish<T: Send + 'static, E: Send + 'static>(
    job: Job<T, E>,
    what: &str,
) -> Result<T, JobError<E>> {
    match job.wait_timeout(patience()) {
        Ok(result) => result,
        Err(job) => panic!("{what}: still {:?} after {:?}", job.state(), patience()),
    }
}

// ----- nested submit and wait ------------------------------------------------------------

fn fib_by_submit(ctx: &Context<'_>, n: u64) -> u64 {
    if n < 2 {
        return n;
    }
    let first = ctx
        .pool()
        .submit(move |ctx| Ok::<_, ()>(fib_by_submit(ctx, n - 1)))
        .unwrap();
    let second = fib_by_submit(ctx, n - 2);
    first.wait().unwrap() + second
}

/// Under every policy, on a pool of `threads`, runs `jobs` jobs that each compute a
/// Fibonacci number by nested submits and waits, and checks their results.
fn assert_nested_fib_completes(threads: usize, jobs: usize) {
    let n = by_profile(16, 20);
    let expected = fib(n);
    for policy in POLICIES {
        let pool = pool(threads, policy);
        let jobs: Vec<_> = (0..jobs)
            .map(|_| {
                pool.submit(move |ctx| Ok::<_, ()>(fib_by_submit(ctx, n)))
                    .unwrap()
            })
            .collect();
        for job in jobs {
            assert_eq!(
                finish(job, &format!("{policy:?}")),
                Ok(expected),
                "{policy:?}"
            );
        }
    }
}

#[test]
fn nested_submit_and_wait_completes_on_one_thread_under_every_policy() {
    assert_nested_fib_completes(1, 1);
}

#[test]
fn nested_submit_and_wait_completes_on_two_threads_under_every_policy() {
    assert_nested_fib_completes(2, 4);
}

// ----- join ------------------------------------------------------------------------------

fn fib(n: u64) -> u64 {
    if n < 2 {
        n
    } else {
        fib(n - 1) + fib(n - 2)
    }
}

fn fib_by_join(n: u64) -> u64 {
    if n < 2 {
        return n;
    }
    let (a, b) = jobrunner::join(|| fib_by_join(n - 1), || fib_by_join(n - 2));
    a + b
}

#[test]
fn join_computes_fib_on_one_and_two_threads() {
    let n = by_profile(20, 25);
    let expected = fib(n);
    assert_eq!(expected, if n == 25 { 75_025 } else { 6_765 });
    for threads in [1, 2] {
        for policy in POLICIES {
            let pool = pool(threads, policy);
            let free = pool.submit(move |_| Ok::<_, ()>(fib_by_join(n))).unwrap();
            let on_ctx = pool
                .submit(move |ctx| {
                    let (a, b) = ctx.join(|| fib_by_join(n - 1), || fib_by_join(n - 2));
                    Ok::<_, ()>(a + b)
                })
                .unwrap();
            let what = format!("{threads} threads, {policy:?}");
            assert_eq!(finish(free, &what), Ok(expected), "{what}");
            assert_eq!(finish(on_ctx, &what), Ok(expected), "{what}");
        }
    }
}

#[test]
fn join_outside_a_pool_runs_both_closures_here() {
    let here = thread::current().id();
    let (a, b) = jobrunner::join(|| thread::current().id(), || thread::current().id());
    assert_eq!((a, b), (here, here));
    assert_eq!(fib_by_join(15), fib(15));
}

#[test]
fn join_runs_in_parallel_on_two_threads() {
    // Each half waits for the other to have started: only a parallel join can finish.
    let pool = pool(2, HelpPolicy::default());
    let job = pool
        .submit(|ctx| {
            let (a_tx, a_rx) = channel::<()>();
            let (b_tx, b_rx) = channel::<()>();
            let (a, b) = ctx.join(
                move || {
                    a_tx.send(()).unwrap();
                    (
                        b_rx.recv_timeout(patience()).is_ok(),
                        thread::current().id(),
                    )
                },
                move || {
                    b_tx.send(()).unwrap();
                    (
                        a_rx.recv_timeout(patience()).is_ok(),
                        thread::current().id(),
                    )
                },
            );
            Ok::<_, ()>((a, b))
        })
        .unwrap();
    let ((a_saw_b, a_thread), (b_saw_a, b_thread)) = finish(job, "join").unwrap();
    assert!(a_saw_b && b_saw_a, "both halves ran at the same time");
    assert_ne!(a_thread, b_thread);
}

#[test]
fn a_panic_in_either_half_of_a_join_ends_the_job_panicked() {
    quiet_expected_panics();
    for threads in [1, 2] {
        let pool = pool(threads, HelpPolicy::default());
        let first = pool
            .submit(|_| {
                let (a, b) = jobrunner::join(
                    || -> u64 { panic!("{EXPECTED}: first half") },
                    || fib_by_join(10),
                );
                Ok::<_, ()>(a + b)
            })
            .unwrap();
        let second = pool
            .submit(|ctx| {
                let (a, b) = ctx.join(
                    || fib_by_join(10),
                    || -> u64 { panic!("{EXPECTED}: second half") },
                );
                Ok::<_, ()>(a + b)
            })
            .unwrap();
        // Deep in a recursion, with the other half stolen or not.
        let deep = pool
            .submit(|_| {
                fn boom(n: u64) -> u64 {
                    if n == 0 {
                        panic!("{EXPECTED}: deep");
                    }
                    let (a, b) = jobrunner::join(|| fib_by_join(12), || boom(n - 1));
                    a + b
                }
                Ok::<_, ()>(boom(8))
            })
            .unwrap();
        assert_eq!(
            finish(first, "first"),
            Err(JobError::Panicked(format!("{EXPECTED}: first half")))
        );
        assert_eq!(
            finish(second, "second"),
            Err(JobError::Panicked(format!("{EXPECTED}: second half")))
        );
        assert_eq!(
            finish(deep, "deep"),
            Err(JobError::Panicked(format!("{EXPECTED}: deep")))
        );
        // The workers survived.
        let after = pool.submit(|_| Ok::<_, ()>(fib_by_join(15))).unwrap();
        assert_eq!(finish(after, "after"), Ok(fib(15)));
    }
}

// ----- what a waiting job runs -----------------------------------------------------------

/// Where the waiting job X is, seen by the unrelated jobs.
#[derive(Default)]
struct Watch {
    x_thread: Mutex<Option<ThreadId>>,
    x_waiting: AtomicBool,
}

impl Watch {
    /// Whether the calling job runs on X's thread while X waits.
    fn inside_x_wait(&self) -> bool {
        self.x_waiting.load(Ordering::SeqCst)
            && *self.x_thread.lock().unwrap() == Some(thread::current().id())
    }
}

/// The scene: 2 threads; job X submits child C and lets the other worker start it (C
/// blocks until released); X then submits `own` jobs of its own subtree, and waits for C.
/// Returns once X waits, with what the test needs to go on.
struct Scene {
    pool: Pool,
    watch: Arc<Watch>,
    x: Job<usize, ()>,
    release_c: Sender<()>,
    /// A message per own-subtree job that ran, saying whether it ran inside X's wait.
    own_ran: Receiver<bool>,
}

fn scene(policy: HelpPolicy, own: usize) -> Scene {
    let pool = pool(2, policy);
    let watch = Arc::new(Watch::default());
    let (c_started_tx, c_started_rx) = channel();
    let (release_c, release_c_rx) = channel::<()>();
    let (x_waiting_tx, x_waiting_rx) = channel();
    let (own_tx, own_ran) = channel();
    let x_watch = Arc::clone(&watch);
    let x = pool
        .submit(move |ctx| {
            let c = ctx
                .pool()
                .submit(move |_| {
                    c_started_tx.send(()).unwrap();
                    release_c_rx
                        .recv_timeout(patience())
                        .expect("C never released");
                    Ok::<_, ()>(())
                })
                .unwrap();
            // C must run on the other worker (not inline in X's wait): let it start there.
            c_started_rx
                .recv_timeout(patience())
                .expect("the other worker never started C");
            for _ in 0..own {
                let watch = Arc::clone(&x_watch);
                // Detached: X waits only for C.
                detach_reporting(ctx.pool(), &own_tx, move |_| watch.inside_x_wait());
            }
            *x_watch.x_thread.lock().unwrap() = Some(thread::current().id());
            x_watch.x_waiting.store(true, Ordering::SeqCst);
            x_waiting_tx.send(()).unwrap();
            let waited = c.wait();
            x_watch.x_waiting.store(false, Ordering::SeqCst);
            assert_eq!(waited, Ok(()));
            Ok(own)
        })
        .unwrap();
    x_waiting_rx
        .recv_timeout(patience())
        .expect("X never waited");
    Scene {
        pool,
        watch,
        x,
        release_c,
        own_ran,
    }
}

/// Submits `count` unrelated jobs from outside; each reports whether it ran inside X's wait.
fn unrelated(scene: &Scene, count: usize) -> (Vec<Job<(), ()>>, Receiver<bool>) {
    let (tx, rx) = channel();
    let jobs = (0..count)
        .map(|_| {
            let watch = Arc::clone(&scene.watch);
            let tx = tx.clone();
            scene
                .pool
                .submit(move |_| {
                    tx.send(watch.inside_x_wait()).unwrap();
                    Ok(())
                })
                .unwrap()
        })
        .collect();
    (jobs, rx)
}

#[test]
fn under_own_a_waiting_job_never_runs_unrelated_jobs() {
    let scene = scene(HelpPolicy::Own, 0);
    let (jobs, ran) = unrelated(&scene, 16);
    // The other worker is held by C and X's worker waits: no unrelated job may run.
    assert_not_yet(
        &ran,
        NOT_YET,
        "an unrelated job ran while X waited under HelpPolicy::Own",
    );
    scene.release_c.send(()).unwrap();
    assert_eq!(finish(scene.x, "X"), Ok(0));
    for job in jobs {
        assert_eq!(finish(job, "U"), Ok(()));
    }
    let inside = ran.try_iter().filter(|&inside| inside).count();
    assert_eq!(inside, 0, "unrelated jobs ran inside X's wait");
}

#[test]
fn under_own_a_waiting_job_runs_its_own_subtree() {
    let scene = scene(HelpPolicy::Own, 8);
    let (jobs, unrelated_ran) = unrelated(&scene, 8);
    // C holds the other worker: only X's wait can run X's children, and must.
    assert_eq!(
        recv_n(
            &scene.own_ran,
            8,
            "X's own children did not run while X waited"
        ),
        [true; 8]
    );
    assert_eq!(
        unrelated_ran.try_recv().err(),
        Some(std::sync::mpsc::TryRecvError::Empty)
    );
    scene.release_c.send(()).unwrap();
    assert_eq!(finish(scene.x, "X"), Ok(8));
    for job in jobs {
        assert_eq!(finish(job, "U"), Ok(()));
    }
    assert_eq!(unrelated_ran.try_iter().filter(|&inside| inside).count(), 0);
}

#[test]
fn under_any_a_waiting_job_runs_unrelated_jobs() {
    let scene = scene(HelpPolicy::Any, 0);
    let (jobs, ran) = unrelated(&scene, 4);
    // C holds the other worker until an unrelated job has run: only X's wait can run it.
    let inside = ran
        .recv_timeout(patience())
        .expect("no unrelated job ran while X waited under HelpPolicy::Any");
    assert!(inside, "the unrelated job ran inside X's wait");
    scene.release_c.send(()).unwrap();
    assert_eq!(finish(scene.x, "X"), Ok(0));
    for job in jobs {
        assert_eq!(finish(job, "U"), Ok(()));
    }
}

#[test]
fn under_block_a_waiting_job_runs_nothing() {
    let scene = scene(HelpPolicy::Block, 4);
    let (jobs, unrelated_ran) = unrelated(&scene, 4);
    assert_not_yet(
        &scene.own_ran,
        NOT_YET,
        "X's wait ran its own child under HelpPolicy::Block",
    );
    assert_eq!(
        unrelated_ran.try_recv().err(),
        Some(std::sync::mpsc::TryRecvError::Empty),
        "X's wait ran an unrelated job under HelpPolicy::Block"
    );
    scene.release_c.send(()).unwrap();
    assert_eq!(finish(scene.x, "X"), Ok(4));
    for job in jobs {
        assert_eq!(finish(job, "U"), Ok(()));
    }
    assert_eq!(
        recv_n(&scene.own_ran, 4, "X's own children never ran"),
        [false; 4]
    );
}

// ----- waits inside a job never deadlock a one-thread pool -------------------------------

#[test]
fn waiting_for_a_job_submitted_later_from_outside_does_not_deadlock() {
    for policy in POLICIES {
        let pool = pool(1, policy);
        let (handle_tx, handle_rx) = channel::<(JobHandle, Job<u32, ()>)>();
        let x = pool
            .submit(move |_| {
                let (handle, job) = handle_rx
                    .recv_timeout(patience())
                    .expect("no job to wait for");
                let state = handle.wait();
                assert_eq!(state, JobState::Succeeded);
                job.wait()
            })
            .unwrap();
        // Queued behind X, which holds the only worker.
        let y = pool.submit(|_| Ok::<_, ()>(5)).unwrap();
        handle_tx.send((y.handle(), y)).unwrap();
        assert_eq!(finish(x, &format!("{policy:?}")), Ok(5), "{policy:?}");
    }
}

#[test]
fn a_chain_of_waits_does_not_deadlock() {
    fn chain(ctx: &Context<'_>, depth: u32) -> u32 {
        if depth == 0 {
            return 0;
        }
        let next = ctx
            .pool()
            .submit(move |ctx| Ok::<_, ()>(chain(ctx, depth - 1)))
            .unwrap();
        next.wait().unwrap() + 1
    }
    for policy in POLICIES {
        let pool = pool(1, policy);
        let job = pool.submit(|ctx| Ok::<_, ()>(chain(ctx, 100))).unwrap();
        assert_eq!(finish(job, &format!("{policy:?}")), Ok(100), "{policy:?}");
    }
}

#[test]
fn waiting_for_children_in_any_order_does_not_deadlock() {
    for policy in POLICIES {
        let pool = pool(1, policy);
        let job = pool
            .submit(|ctx| {
                let children: Vec<_> = (0..50u32)
                    .map(|i| ctx.pool().submit(move |_| Ok::<_, ()>(i)).unwrap())
                    .collect();
                // Oldest first: the last child pushed is on top of the deque, not these.
                let mut sum = 0;
                for child in children {
                    sum += child.wait().unwrap();
                }
                // A child that already ended, and a cancelled one.
                let done = ctx.pool().submit(|_| Ok::<_, ()>(1)).unwrap();
                let done_handle = done.handle();
                assert_eq!(done_handle.wait(), JobState::Succeeded);
                sum += done.wait().unwrap();
                let cancelled = ctx.pool().submit(|_| Ok::<_, ()>(1000)).unwrap();
                assert!(cancelled.cancel());
                assert_cancelled(cancelled, CancelReason::Cancelled);
                Ok::<_, ()>(sum)
            })
            .unwrap();
        assert_eq!(finish(job, &format!("{policy:?}")), Ok(1226), "{policy:?}");
    }
}

/// A delayed job has not started, but cannot be claimed before its time: the waiter must
/// not block the only worker that could run it once the timer queues it.
#[test]
fn waiting_for_a_delayed_job_does_not_deadlock() {
    let delay = Duration::from_millis(20);
    let mut deadlocked = Vec::new();
    for policy in POLICIES {
        let pool = pool(1, policy);
        let (handle_tx, handle_rx) = channel();
        let x = pool
            .submit(move |ctx| {
                let delayed = ctx
                    .pool()
                    .submit_with(SubmitOptions::new().delay(delay), |_| Ok::<_, ()>(9))
                    .unwrap();
                handle_tx.send(delayed.handle()).unwrap();
                delayed.wait()
            })
            .unwrap();
        let delayed = handle_rx.recv_timeout(patience()).unwrap();
        match x.wait_timeout(delay + Duration::from_secs(1)) {
            Ok(result) => assert_eq!(result, Ok(9), "{policy:?}"),
            Err(x) => {
                // Unstick the pool so that it can be dropped: the delayed job is queued
                // behind X, which blocks the only worker.
                let state = delayed.state();
                let cancelled = delayed.cancel();
                assert!(
                    x.wait_timeout(patience()).is_ok(),
                    "{policy:?}: X still stuck"
                );
                deadlocked.push((policy, state, cancelled));
            }
        }
    }
    assert!(
        deadlocked.is_empty(),
        "a job waiting for its delayed child deadlocks a one-thread pool under \
         (policy, child's state, cancelled to unstick): {deadlocked:?}"
    );
}

// ----- timed waits inside a job ----------------------------------------------------------

/// A timed wait inside a job runs the awaited job inline when it has not started, as an
/// untimed one does: on a one-thread pool nothing else could run it, so without this the
/// wait could only time out.
#[test]
fn timed_waits_inside_a_job_run_an_unstarted_job_inline() {
    for policy in POLICIES {
        let pool = pool(1, policy);
        let outer = pool
            .submit(|ctx| {
                let pool = ctx.pool();
                let child = pool.submit(|_| Ok::<_, ()>(7)).unwrap();
                let by_job = child.wait_timeout(patience()).expect("ran inline").unwrap();
                let child = pool.submit(|_| Ok::<_, ()>(8)).unwrap();
                let handle_ended = child.handle().wait_timeout(patience());
                let by_handle = child.wait().unwrap();
                let group = pool.group::<u32, ()>();
                for i in 0..3 {
                    group.submit(move |_| Ok(i)).unwrap();
                }
                let group_ended = group.wait_timeout(patience()).is_ok();
                Ok::<_, ()>((by_job, handle_ended, by_handle, group_ended))
            })
            .unwrap();
        assert_eq!(
            finish(outer, "the outer job").unwrap(),
            (7, true, 8, true),
            "{policy:?}"
        );
    }
}
