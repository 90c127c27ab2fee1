//! Pool statistics: the job counters in scenarios where jobs are held running or queued by
//! events, steals in a workload that can only progress by stealing, and the parks and
//! unparks of workers that sleep and are woken.
//!
//! A job's end is counted before it is published: whoever sees a job ended (its `wait`
//! returned, `is_finished()` turned true) finds it in `stats()`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use jobrunner::{
    CancelReason, Context, JobError, JobState, Pool, ShutdownMode, Stats, SubmitError,
    SubmitOptions,
};

#[allow(dead_code)]
mod common;

use common::{
    assert_cancelled, bounded_pool, by_profile, counting, detach_reporting, patience, pool, recv_n,
    submit_held, Blocker,
};

/// The job counters of a snapshot, in a comparable tuple: submitted, started, succeeded,
/// failed, panicked, cancelled, cancelled before start, queued, running.
fn counts(s: &Stats) -> [u64; 9] {
    [
        s.submitted,
        s.started,
        s.succeeded,
        s.failed,
        s.panicked,
        s.cancelled,
        s.cancelled_before_start,
        s.queued,
        s.running,
    ]
}

#[test]
fn counters_follow_jobs_through_every_outcome() {
    let pool = pool(2);
    assert_eq!(counts(&pool.stats()), [0; 9]);
    assert_eq!(pool.stats().threads, 2);

    // Two jobs hold both workers: one until it is cancelled, one until released.
    let (started_tx, started_rx) = mpsc::channel();
    let until_cancelled = pool
        .submit(move |ctx| {
            started_tx.send(()).unwrap();
            ctx.token().wait_timeout(patience());
            Err::<u32, _>("stopped")
        })
        .unwrap();
    let (until_released, released_started, release_tx) = submit_held(&pool, |_, released| {
        assert!(released, "never released");
        Ok::<u32, &str>(1)
    });
    started_rx.recv_timeout(patience()).unwrap();
    released_started.recv_timeout(patience()).unwrap();
    // [submitted, started, succeeded, failed, panicked, cancelled, unrun, queued, running]
    assert_eq!(counts(&pool.stats()), [2, 2, 0, 0, 0, 0, 0, 0, 2]);

    // Queued behind them: one of each outcome, and a delayed job.
    let succeeds = pool.submit(|_| Ok::<u32, &str>(2)).unwrap();
    let fails = pool.submit(|_| Err::<u32, _>("no")).unwrap();
    let panics = pool
        .submit(|_| -> Result<u32, &str> { panic!("on purpose") })
        .unwrap();
    let cancelled = pool.submit(|_| Ok::<u32, &str>(4)).unwrap();
    let delayed = pool
        .submit_with(SubmitOptions::new().delay(Duration::from_secs(60)), |_| {
            Ok::<u32, &str>(5)
        })
        .unwrap();
    assert_eq!(counts(&pool.stats()), [7, 2, 0, 0, 0, 0, 0, 5, 2]);

    // Cancelled before they start: counted at once, by the cancelling thread.
    assert!(cancelled.cancel());
    assert_eq!(counts(&pool.stats()), [7, 2, 0, 0, 0, 1, 1, 4, 2]);
    assert!(delayed.cancel());
    assert_eq!(counts(&pool.stats()), [7, 2, 0, 0, 0, 2, 2, 3, 2]);

    // Cancelled while running: it stops itself, a cancel but not before start.
    assert!(!until_cancelled.cancel());
    release_tx.send(()).unwrap();
    assert_cancelled(until_cancelled, CancelReason::Cancelled);
    assert_eq!(until_released.wait(), Ok(1));
    assert_eq!(succeeds.wait(), Ok(2));
    assert_eq!(fails.wait(), Err(JobError::Failed("no")));
    assert_eq!(
        panics.wait(),
        Err(JobError::Panicked("on purpose".to_owned()))
    );
    assert_cancelled(cancelled, CancelReason::Cancelled);
    assert_cancelled(delayed, CancelReason::Cancelled);

    // Quiescent now: the sums are exact.
    assert!(pool.shutdown(ShutdownMode::Drain, None).is_complete());
    let stats = pool.stats();
    assert_eq!(counts(&stats), [7, 5, 2, 1, 1, 3, 2, 0, 0], "{stats:?}");
    assert_eq!(stats.threads, 2);

    // Refused submits are not counted.
    assert_eq!(
        pool.submit(|_| Ok::<u32, &str>(0)).unwrap_err(),
        SubmitError::Shutdown
    );
    assert_eq!(counts(&pool.stats()), counts(&stats));
}

#[test]
fn a_job_is_counted_by_the_time_it_is_seen_ended() {
    let rounds = by_profile(2_000, 20_000);
    let pool = pool(2);
    for round in 0..rounds {
        let job = pool
            .submit(move |_| {
                if round % 3 == 0 {
                    Err(round)
                } else {
                    Ok(round)
                }
            })
            .unwrap();
        // Watch for the end as closely as possible, then look at the counters at once.
        while !job.is_finished() {
            std::hint::spin_loop();
        }
        let stats = pool.stats();
        assert_eq!(
            stats.succeeded + stats.failed,
            round + 1,
            "round {round}: ended but not counted: {stats:?}"
        );
        assert_eq!(
            (stats.queued, stats.running),
            (0, 0),
            "round {round}: {stats:?}"
        );
        assert_eq!(
            job.wait().map_err(|e| e.failed()),
            if round % 3 == 0 {
                Err(Some(round))
            } else {
                Ok(round)
            }
        );
    }
}

#[test]
fn one_thread_pool_counts_each_end_before_the_next_start() {
    let pool = pool(1);
    let position = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    // On one worker a job starts only after the previous one was counted: each job sees
    // the ends of all those that ran before it.
    let jobs: Vec<_> = (0..20)
        .map(|i| {
            let (position, failures) = (Arc::clone(&position), Arc::clone(&failures));
            pool.submit(move |ctx| {
                let ran_before = position.fetch_add(1, Ordering::SeqCst) as u64;
                let failed_before = failures.load(Ordering::SeqCst) as u64;
                // Boxed: `Stats` is large for a `Result`'s error.
                let seen = Box::new((ran_before, failed_before, ctx.pool().stats()));
                if i % 4 == 3 {
                    failures.fetch_add(1, Ordering::SeqCst);
                    Err(seen)
                } else {
                    Ok(seen)
                }
            })
            .unwrap()
        })
        .collect();
    for job in jobs {
        let (ran_before, failed_before, stats) = match job.wait() {
            Ok(seen) | Err(JobError::Failed(seen)) => *seen,
            Err(other) => panic!("{other:?}"),
        };
        assert_eq!(stats.started, ran_before + 1, "{stats:?}");
        assert_eq!(stats.running, 1, "{stats:?}");
        assert_eq!(stats.succeeded + stats.failed, ran_before, "{stats:?}");
        assert_eq!(stats.failed, failed_before, "{stats:?}");
        assert!(stats.submitted > ran_before, "{stats:?}");
    }
    assert!(pool.shutdown(ShutdownMode::Drain, None).is_complete());
    assert_eq!(counts(&pool.stats()), [20, 20, 15, 5, 0, 0, 0, 0, 0]);
}

#[test]
fn refused_submits_to_a_full_queue_are_not_counted() {
    let pool = bounded_pool(1, 1);
    let holder = Blocker::start(&pool);
    let queued = pool.submit(|_| Ok::<_, ()>(())).unwrap();
    assert_eq!(
        pool.try_submit(|_| Ok::<_, ()>(())).unwrap_err(),
        SubmitError::Full
    );
    let options = SubmitOptions::new().timeout(Duration::from_millis(20));
    assert_eq!(
        pool.submit_with(options, |_| Ok::<_, ()>(())).unwrap_err(),
        SubmitError::Timeout
    );
    let stats = pool.stats();
    assert_eq!((stats.submitted, stats.queued, stats.running), (2, 1, 1));
    holder.finish();
    assert_eq!(queued.wait(), Ok(()));
    assert!(pool.shutdown(ShutdownMode::Drain, None).is_complete());
    assert_eq!(counts(&pool.stats()), [2, 2, 2, 0, 0, 0, 0, 0, 0]);
}

#[test]
fn steals_are_counted_when_work_can_only_be_stolen() {
    const CHILDREN: usize = 32;
    let pool = pool(2);
    let before = pool.stats().steals;
    let (done_tx, done_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    // The parent pushes its children on its own worker's deque, then blocks that worker
    // outside the pool until they have all run: only the other worker can run them, and
    // it can only reach them by stealing.
    let parent = pool
        .submit(move |ctx| {
            let me = ctx.worker_index();
            for _ in 0..CHILDREN {
                detach_reporting(ctx.pool(), &done_tx, |ctx| ctx.worker_index());
            }
            release_rx.recv_timeout(patience()).unwrap();
            Ok::<_, ()>(me)
        })
        .unwrap();
    let ran_on = recv_n(&done_rx, CHILDREN, "a child never ran");
    let steals = pool.stats().steals - before;
    release_tx.send(()).unwrap();
    let parent_index = parent.wait().unwrap();
    assert!(
        ran_on.iter().all(|&index| index != parent_index),
        "a child ran on its blocked parent's worker: {ran_on:?}"
    );
    assert!(steals > 0, "children ran on another worker without a steal");
}

/// A job that waits until the other worker is asleep (`Stats::sleeping`), then pushes a
/// child and blocks outside the pool until the child ran: the sleeping worker must be
/// woken to run it. Returns the worker indices of the parent and the child.
fn wake_a_sleeper(pool: &Pool) -> (usize, usize) {
    pool.submit(|ctx: &Context<'_>| {
        let asleep = Instant::now();
        while ctx.pool().stats().sleeping == 0 {
            assert!(
                asleep.elapsed() < patience(),
                "the other worker never went to sleep"
            );
            thread::yield_now();
        }
        let (tx, rx) = mpsc::channel();
        let child = ctx
            .pool()
            .submit(move |ctx| {
                tx.send(ctx.worker_index()).unwrap();
                Ok::<_, ()>(())
            })
            .unwrap();
        let child_index = rx
            .recv_timeout(patience())
            .expect("the sleeper was not woken");
        drop(child);
        Ok::<_, ()>((ctx.worker_index(), child_index))
    })
    .unwrap()
    .wait()
    .unwrap()
}

#[test]
fn parks_and_unparks_count_workers_sleeping_and_woken() {
    let pool = pool(2);
    let (parent, child) = wake_a_sleeper(&pool);
    assert_ne!(parent, child);
    let first = pool.stats();
    assert!(first.parks > 0 && first.unparks > 0, "{first:?}");

    let (parent, child) = wake_a_sleeper(&pool);
    assert_ne!(parent, child);
    let second = pool.stats();
    assert!(second.parks > first.parks, "{first:?} then {second:?}");
    assert!(second.unparks > first.unparks, "{first:?} then {second:?}");
}

#[test]
fn counters_of_delayed_jobs_move_from_queued_to_started() {
    let pool = pool(1);
    let ran = Arc::new(AtomicUsize::new(0));
    let delayed = pool
        .submit_with(
            SubmitOptions::new().delay(Duration::from_millis(30)),
            counting(&ran),
        )
        .unwrap();
    assert_eq!(delayed.state(), JobState::Delayed);
    let stats = pool.stats();
    assert_eq!((stats.submitted, stats.queued, stats.started), (1, 1, 0));
    assert_eq!(delayed.wait(), Ok(()));
    assert!(pool.shutdown(ShutdownMode::Drain, None).is_complete());
    assert_eq!(counts(&pool.stats()), [1, 1, 1, 0, 0, 0, 0, 0, 0]);
    assert_eq!(ran.load(Ordering::SeqCst), 1);
}

#[test]
fn sleeping_counts_idle_workers_and_drops_when_they_run() {
    let pool = pool(2);
    let idle = Instant::now();
    while pool.stats().sleeping < 2 {
        assert!(idle.elapsed() < patience(), "{:?}", pool.stats());
        thread::yield_now();
    }
    let blocker = Blocker::start(&pool);
    // One worker runs the blocker; the other may be asleep or searching.
    assert!(pool.stats().sleeping <= 1, "{:?}", pool.stats());
    assert!(pool.stats().running == 1);
    blocker.release.send(()).unwrap();
    blocker.job.wait().unwrap();
}
