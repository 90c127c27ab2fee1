//! Jobs: submit and wait (every outcome), timed waits, the state machine seen from the
//! handles, names, `JobHandle` (wait, cancel, state, `on_end`), detaching, cancellation of
//! queued and running jobs, exactly-once ends under stress, and the panic policies.
//!
//! Every test waits on events (channels, `Job::wait`, `JobHandle::wait`); the only timed
//! waits are bounded waits for an event that must (or must not) happen.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use jobrunner::{
    CancelReason, CancelToken, Context, Job, JobError, JobHandle, JobState, PanicPolicy, Pool,
    ShutdownMode, SubmitOptions,
};

#[allow(dead_code)]
mod common;

use common::{
    assert_cancelled, by_profile, child_test, counting, flagging, from_parent, patience, pool,
    quiet_expected_panics, recv_n, submit_held, wait_until, Blocker, DropCounter, Waiters,
    XorShift, EXPECTED,
};

/// A job that signals when it starts and then blocks until released.
fn gated_job(pool: &Pool) -> (Job<u32, ()>, Receiver<ThreadId>, Sender<()>) {
    submit_held(pool, |_, released| {
        assert!(released, "job never released");
        Ok(7)
    })
}

/// A gated job that has started.
fn started_gated_job(pool: &Pool) -> (Job<u32, ()>, Sender<()>) {
    let (job, started, release) = gated_job(pool);
    started.recv_timeout(patience()).unwrap();
    (job, release)
}

// ----- results ---------------------------------------------------------------------------

#[test]
fn wait_returns_the_value() {
    let pool = pool(2);
    let job = pool.submit(|_| Ok::<_, ()>(6 * 7)).unwrap();
    assert_eq!(job.wait(), Ok(42));
    let owned = pool
        .submit(|_| Ok::<_, ()>(vec!["a".to_owned(), "b".to_owned()]))
        .unwrap();
    assert_eq!(owned.wait().unwrap(), ["a", "b"]);
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct MyError {
    code: i32,
    what: String,
}

#[test]
fn wait_returns_the_jobs_own_error_value() {
    let pool = pool(2);
    let job = pool
        .submit(|_| {
            Err::<u32, _>(MyError {
                code: 7,
                what: "no such file".into(),
            })
        })
        .unwrap();
    let error = job.wait().unwrap_err();
    assert!(!error.is_cancelled());
    assert_eq!(
        error.failed(),
        Some(MyError {
            code: 7,
            what: "no such file".into()
        })
    );
}

#[test]
fn wait_returns_the_panic_message() {
    quiet_expected_panics();
    let pool = pool(2);
    let formatted = pool
        .submit(|_| -> Result<(), ()> { panic!("{EXPECTED}: formatted {}", 42) })
        .unwrap();
    assert_eq!(
        formatted.wait(),
        Err(JobError::Panicked(format!("{EXPECTED}: formatted 42")))
    );
    let literal = pool
        .submit(|_| -> Result<(), ()> { panic!("expected test panic: literal") })
        .unwrap();
    assert_eq!(
        literal.wait(),
        Err(JobError::Panicked("expected test panic: literal".into()))
    );
    let other = pool
        .submit(|_| -> Result<(), ()> { std::panic::panic_any(EXPECTED.len()) })
        .unwrap();
    assert!(
        matches!(other.wait(), Err(JobError::Panicked(message)) if !message.is_empty()),
        "a panic with a non-string payload is still Panicked"
    );
}

#[test]
fn wait_returns_cancelled_with_the_reason() {
    let pool = pool(1);
    let blocker = Blocker::start(&pool);
    let plain = pool.submit(|_| Ok::<_, ()>(1)).unwrap();
    let token = CancelToken::new();
    let by_token = pool
        .submit_with(SubmitOptions::new().token(&token), |_| Ok::<_, ()>(2))
        .unwrap();
    assert!(plain.cancel());
    assert!(token.cancel_with(CancelReason::SiblingFailed));
    assert_cancelled(plain, CancelReason::Cancelled);
    assert_cancelled(by_token, CancelReason::SiblingFailed);
    blocker.finish();
}

// ----- timed waits -----------------------------------------------------------------------

#[test]
fn wait_timeout_gives_the_job_back_then_the_result() {
    let pool = pool(2);
    let (job, release) = started_gated_job(&pool);
    let timeout = Duration::from_millis(30);
    let start = Instant::now();
    let job = job.wait_timeout(timeout).expect_err("the job is blocked");
    assert!(start.elapsed() >= timeout, "{:?}", start.elapsed());
    assert_eq!(job.state(), JobState::Running);
    let job = job
        .wait_deadline(Instant::now() + Duration::from_millis(5))
        .expect_err("the job is still blocked");
    release.send(()).unwrap();
    assert_eq!(
        job.wait_timeout(patience()).expect("the job was released"),
        Ok(7)
    );
}

// ----- states ----------------------------------------------------------------------------

#[test]
fn state_goes_queued_running_then_terminal() {
    let pool = pool(1);
    let blocker = Blocker::start(&pool);
    let (job, started, release) = gated_job(&pool);
    let handle = job.handle();
    assert_eq!(job.state(), JobState::Queued);
    assert_eq!(handle.state(), JobState::Queued);
    assert!(!job.is_finished() && !handle.is_finished());

    blocker.finish();
    started.recv_timeout(patience()).unwrap();
    assert_eq!(job.state(), JobState::Running);
    assert_eq!(handle.state(), JobState::Running);
    assert!(!job.is_finished() && !handle.is_finished());

    release.send(()).unwrap();
    assert_eq!(handle.wait(), JobState::Succeeded);
    assert!(job.is_finished() && handle.is_finished());
    assert_eq!(job.state(), JobState::Succeeded);
    assert_eq!(job.wait(), Ok(7));
    assert_eq!(handle.state(), JobState::Succeeded);
}

#[test]
fn each_outcome_has_its_terminal_state() {
    quiet_expected_panics();
    let pool = pool(1);
    let ok = pool.submit(|_| Ok::<_, ()>(())).unwrap().handle();
    let failed = pool.submit(|_| Err::<(), _>(())).unwrap().handle();
    let panicked = pool
        .submit(|_| -> Result<(), ()> { panic!("{EXPECTED}") })
        .unwrap()
        .handle();
    let blocker = Blocker::start(&pool);
    let queued = pool.submit(|_| Ok::<_, ()>(())).unwrap();
    assert!(queued.cancel());
    assert_eq!(queued.state(), JobState::Cancelled);
    assert!(queued.is_finished());
    blocker.finish();
    assert_eq!(ok.wait(), JobState::Succeeded);
    assert_eq!(failed.wait(), JobState::Failed);
    assert_eq!(panicked.wait(), JobState::Panicked);
    for state in [
        JobState::Succeeded,
        JobState::Failed,
        JobState::Panicked,
        JobState::Cancelled,
    ] {
        assert!(state.is_terminal());
    }
    for state in [JobState::Delayed, JobState::Queued, JobState::Running] {
        assert!(!state.is_terminal());
    }
}

#[test]
fn names_are_seen_by_the_handle_and_the_context() {
    let pool = pool(2);
    let named = pool
        .submit_with(SubmitOptions::new().name("fetch-1"), |ctx| {
            Ok::<_, ()>(ctx.name().map(str::to_owned))
        })
        .unwrap();
    assert_eq!(named.name(), Some("fetch-1"));
    assert!(format!("{named:?}").contains("fetch-1"));
    assert_eq!(named.wait(), Ok(Some("fetch-1".to_owned())));

    let unnamed = pool
        .submit(|ctx| Ok::<_, ()>(ctx.name().map(str::to_owned)))
        .unwrap();
    assert_eq!(unnamed.name(), None);
    assert_eq!(unnamed.wait(), Ok(None));
}

// ----- JobHandle -------------------------------------------------------------------------

#[test]
fn handle_clones_wait_from_other_threads() {
    let pool = pool(2);
    let (job, release) = started_gated_job(&pool);
    let handle = job.handle();
    let waiters = Waiters::spawn((0..4).map(|_| {
        let handle = handle.clone();
        move || handle.wait()
    }));
    // The job is blocked, so no waiter can have returned; a bounded look proves they block.
    waiters.assert_blocked(
        Duration::from_millis(30),
        "a waiter returned while the job was blocked",
    );
    let start = Instant::now();
    assert!(!handle.wait_timeout(Duration::from_millis(20)));
    assert!(start.elapsed() >= Duration::from_millis(20));
    release.send(()).unwrap();
    assert_eq!(waiters.finish(), [JobState::Succeeded; 4]);
    assert!(handle.wait_timeout(Duration::ZERO));
    assert!(handle.clone().is_finished());
    assert_eq!(handle.state(), JobState::Succeeded);
    // The result stays with the Job.
    assert_eq!(job.wait(), Ok(7));
}

#[test]
fn handle_cancel_ends_a_queued_job_that_never_runs() {
    let pool = pool(1);
    let blocker = Blocker::start(&pool);
    let ran = Arc::new(AtomicBool::new(false));
    let job = pool.submit(flagging(&ran)).unwrap();
    let handle = job.handle().clone();
    assert!(handle.cancel());
    assert!(!handle.cancel(), "a second cancel finds the job ended");
    assert_eq!(handle.state(), JobState::Cancelled);
    assert_eq!(handle.wait(), JobState::Cancelled);
    assert_cancelled(job, CancelReason::Cancelled);
    blocker.finish();
    pool.shutdown(ShutdownMode::Drain, None);
    assert!(!ran.load(Ordering::SeqCst), "a cancelled job never runs");
    assert_eq!(pool.stats().cancelled_before_start, 1);
}

#[test]
fn on_end_runs_once_per_callback_with_the_terminal_state() {
    let pool = pool(2);
    let (job, release) = started_gated_job(&pool);
    let handle = job.handle();
    let calls = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = channel();
    for clone in [handle.clone(), handle.clone(), handle] {
        let calls = Arc::clone(&calls);
        let tx = tx.clone();
        clone.on_end(move |state| {
            calls.fetch_add(1, Ordering::SeqCst);
            tx.send(state).unwrap();
        });
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0, "the job is still running");
    release.send(()).unwrap();
    assert_eq!(
        recv_n(&rx, 3, "an end callback never ran"),
        [JobState::Succeeded; 3]
    );
    assert_eq!(job.wait(), Ok(7));
    // A drained pool has ended every job and run every callback.
    assert!(pool.shutdown(ShutdownMode::Drain, None).is_complete());
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    // A cancelled job's callbacks run on the cancelling thread, before `cancel` returns.
    let pool2 = self::pool(1);
    let blocker = Blocker::start(&pool2);
    let queued = pool2.submit(|_| Ok::<_, ()>(())).unwrap();
    let seen = Arc::new(Mutex::new(None));
    let record = Arc::clone(&seen);
    queued.handle().on_end(move |state| {
        *record.lock().unwrap() = Some((state, thread::current().id()));
    });
    assert!(queued.cancel());
    assert_eq!(
        *seen.lock().unwrap(),
        Some((JobState::Cancelled, thread::current().id()))
    );
    blocker.finish();
}

#[test]
fn on_end_runs_at_once_when_the_job_has_ended() {
    let pool = pool(2);
    let job = pool.submit(|_| Err::<(), _>("no")).unwrap();
    let handle = job.handle();
    assert_eq!(handle.wait(), JobState::Failed);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    handle.on_end(move |state| {
        record.lock().unwrap().push((state, thread::current().id()));
    });
    assert_eq!(
        *seen.lock().unwrap(),
        [(JobState::Failed, thread::current().id())],
        "ran once, at once, on the calling thread"
    );
    assert_eq!(job.wait(), Err(JobError::Failed("no")));
}

// ----- detaching -------------------------------------------------------------------------

#[test]
fn dropping_a_job_detaches_it() {
    let pool = pool(1);
    let drops = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = channel();

    // Submits a job that reports `name` and returns a drop counter, and drops it at once.
    let detach = |name: &'static str| {
        let (tx, drops) = (tx.clone(), Arc::clone(&drops));
        drop(
            pool.submit(move |_| {
                tx.send(name).unwrap();
                Ok::<_, ()>(DropCounter(drops))
            })
            .unwrap(),
        );
    };

    // Dropped while queued behind a blocker: it still runs once the blocker is done.
    let blocker = Blocker::start(&pool);
    detach("queued");
    assert_eq!(
        rx.try_recv().err(),
        Some(std::sync::mpsc::TryRecvError::Empty)
    );
    blocker.finish();
    assert_eq!(rx.recv_timeout(patience()).unwrap(), "queued");

    // Dropped at once: it runs.
    detach("dropped");
    assert_eq!(rx.recv_timeout(patience()).unwrap(), "dropped");

    // Their results are released exactly once, with the last reference.
    assert!(pool.shutdown(ShutdownMode::Drain, None).is_complete());
    drop(pool);
    assert_eq!(drops.load(Ordering::SeqCst), 2);
}

// ----- cancelling ------------------------------------------------------------------------

#[test]
fn cancel_ends_a_queued_job_at_once_behind_a_long_queue() {
    let queued = by_profile(2_000, 10_000);
    let pool = pool(1);
    let blocker = Blocker::start(&pool);
    let runs = Arc::new(AtomicUsize::new(0));
    let last_ran = Arc::new(AtomicBool::new(false));
    let mut jobs: Vec<_> = (0..queued)
        .map(|_| pool.submit(counting(&runs)).unwrap())
        .collect();
    let last = pool.submit(flagging(&last_ran)).unwrap();
    assert_eq!(last.state(), JobState::Queued);

    let start = Instant::now();
    assert!(last.cancel(), "a queued job is cancelled before it runs");
    assert_cancelled(last, CancelReason::Cancelled);
    let elapsed = start.elapsed();
    // The wait did not depend on the queue: the only worker is still held by the blocker.
    assert_eq!(blocker.job.state(), JobState::Running);
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    // A sanity bound only: the proof is the blocker, still running.
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");

    blocker.finish();
    for job in jobs.drain(..) {
        assert_eq!(job.wait(), Ok(()));
    }
    assert!(pool.shutdown(ShutdownMode::Drain, None).is_complete());
    assert_eq!(runs.load(Ordering::SeqCst), queued);
    assert!(
        !last_ran.load(Ordering::SeqCst),
        "the cancelled job never ran"
    );
    let stats = pool.stats();
    assert_eq!(stats.cancelled, 1);
    assert_eq!(stats.cancelled_before_start, 1);
    assert_eq!(stats.succeeded, queued as u64 + 1);
}

/// A job that reports it started, waits until it is told to stop, and reports what its
/// context said.
fn stoppable(
    pool: &Pool,
    fail_when_stopped: bool,
) -> (Job<&'static str, &'static str>, Receiver<()>) {
    let (started_tx, started) = channel();
    let job = pool
        .submit(move |ctx: &Context<'_>| {
            assert!(!ctx.is_cancelled());
            assert_eq!(ctx.cancel_reason(), None);
            started_tx.send(()).unwrap();
            wait_until("the job sees the cancel", || ctx.is_cancelled());
            assert_eq!(ctx.cancel_reason(), Some(CancelReason::Cancelled));
            if fail_when_stopped {
                Err("stopped")
            } else {
                Ok("finished anyway")
            }
        })
        .unwrap();
    (job, started)
}

#[test]
fn cancel_of_a_running_job_asks_it_to_stop() {
    let pool = pool(2);
    let (job, started) = stoppable(&pool, true);
    started.recv_timeout(patience()).unwrap();
    assert!(
        !job.cancel(),
        "a running job cannot be cancelled before it runs"
    );
    assert_eq!(
        job.wait(),
        Err(JobError::Cancelled(CancelReason::Cancelled)),
        "an error after the cancel is a cancellation, not a failure"
    );

    // Cancellation is a request: a job that still returns Ok succeeds.
    let (job, started) = stoppable(&pool, false);
    started.recv_timeout(patience()).unwrap();
    assert!(!job.handle().cancel());
    assert_eq!(job.wait(), Ok("finished anyway"));
}

#[test]
fn cancel_of_an_ended_job_changes_nothing() {
    let pool = pool(2);
    let job = pool.submit(|_| Ok::<_, ()>(5)).unwrap();
    assert_eq!(job.handle().wait(), JobState::Succeeded);
    assert!(!job.cancel());
    assert_eq!(job.state(), JobState::Succeeded);
    assert_eq!(job.wait(), Ok(5));
}

// ----- exactly one end, under stress -----------------------------------------------------

/// What the closures themselves did, counted as they did it.
#[derive(Default)]
struct Outcomes {
    ran: AtomicU64,
    ran_twice: AtomicU64,
    returned_ok: AtomicU64,
    returned_err: AtomicU64,
    panicked: AtomicU64,
    on_end_calls: AtomicU64,
}

fn stress_one_seed(seed: u64, jobs: usize) {
    let pool = pool(2);
    let outcomes = Arc::new(Outcomes::default());
    let runs: Arc<Vec<AtomicU8>> = Arc::new((0..jobs).map(|_| AtomicU8::new(0)).collect());
    // The highest index of a job that started.
    let progress = Arc::new(AtomicUsize::new(0));
    let mut cancelled_unrun = vec![false; jobs];
    let mut on_ends = 0u64;
    let mut rng = XorShift::from_state(seed);
    let mut handles: Vec<Job<u64, u64>> = Vec::with_capacity(jobs);

    for i in 0..jobs {
        let kind = rng.below(64);
        let outcomes_in_job = Arc::clone(&outcomes);
        let runs_in_job = Arc::clone(&runs);
        let progress_in_job = Arc::clone(&progress);
        let job = pool
            .submit(move |ctx| {
                progress_in_job.fetch_max(i, Ordering::Relaxed);
                let outcomes = &*outcomes_in_job;
                if runs_in_job[i].fetch_add(1, Ordering::SeqCst) != 0 {
                    outcomes.ran_twice.fetch_add(1, Ordering::SeqCst);
                }
                outcomes.ran.fetch_add(1, Ordering::SeqCst);
                match kind {
                    0 => {
                        outcomes.panicked.fetch_add(1, Ordering::SeqCst);
                        panic!("{EXPECTED} {i}");
                    }
                    1..=4 => {
                        outcomes.returned_err.fetch_add(1, Ordering::SeqCst);
                        Err(i as u64)
                    }
                    5..=8 => {
                        // A longer job, so that cancels also reach running jobs.
                        for _ in 0..100 {
                            if ctx.is_cancelled() {
                                outcomes.returned_err.fetch_add(1, Ordering::SeqCst);
                                return Err(i as u64);
                            }
                            std::hint::spin_loop();
                        }
                        outcomes.returned_ok.fetch_add(1, Ordering::SeqCst);
                        Ok(i as u64)
                    }
                    _ => {
                        outcomes.returned_ok.fetch_add(1, Ordering::SeqCst);
                        Ok(i as u64)
                    }
                }
            })
            .unwrap();
        let action = rng.below(32);
        match action {
            0 | 1 => cancelled_unrun[i] = job.cancel(),
            2 | 3 => {
                // Near the job a worker started last: often running, or just ended.
                let near = progress.load(Ordering::Relaxed) + rng.below(4) as usize;
                if near >= 1 && near - 1 < handles.len() {
                    let target = near - 1;
                    if handles[target].cancel() {
                        assert!(!cancelled_unrun[target], "two cancels won job {target}");
                        cancelled_unrun[target] = true;
                    }
                }
            }
            4 => {
                on_ends += 1;
                let outcomes = Arc::clone(&outcomes);
                job.handle().on_end(move |state| {
                    assert!(state.is_terminal());
                    outcomes.on_end_calls.fetch_add(1, Ordering::SeqCst);
                });
            }
            _ => {}
        }
        handles.push(job);
    }

    let (mut ok, mut failed, mut panicked, mut cancelled, mut cancelled_after_run) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    for (i, job) in handles.into_iter().enumerate() {
        let result = job.wait();
        let ran = runs[i].load(Ordering::SeqCst) > 0;
        match result {
            Ok(value) => {
                assert_eq!(value, i as u64);
                assert!(ran && !cancelled_unrun[i]);
                ok += 1;
            }
            Err(JobError::Failed(value)) => {
                assert_eq!(value, i as u64);
                assert!(ran && !cancelled_unrun[i]);
                failed += 1;
            }
            Err(JobError::Panicked(message)) => {
                assert_eq!(message, format!("{EXPECTED} {i}"));
                assert!(ran && !cancelled_unrun[i]);
                panicked += 1;
            }
            Err(JobError::Cancelled(reason)) => {
                assert_eq!(reason, CancelReason::Cancelled);
                // Only the test cancels: a job ends cancelled without running exactly when
                // one of its cancels returned true.
                assert_eq!(!ran, cancelled_unrun[i], "seed {seed:#x}, job {i}");
                cancelled += 1;
                if ran {
                    cancelled_after_run += 1;
                }
            }
        }
    }
    let report = pool.shutdown(ShutdownMode::Drain, None);
    assert!(report.is_complete(), "{report:?}");

    let jobs = jobs as u64;
    let unrun = cancelled_unrun.iter().filter(|&&c| c).count() as u64;
    assert_eq!(ok + failed + panicked + cancelled, jobs);
    assert_eq!(outcomes.ran_twice.load(Ordering::SeqCst), 0);
    assert_eq!(outcomes.ran.load(Ordering::SeqCst), jobs - unrun);
    assert_eq!(outcomes.returned_ok.load(Ordering::SeqCst), ok);
    assert_eq!(outcomes.panicked.load(Ordering::SeqCst), panicked);
    assert_eq!(
        outcomes.returned_err.load(Ordering::SeqCst),
        failed + cancelled_after_run
    );
    assert_eq!(outcomes.on_end_calls.load(Ordering::SeqCst), on_ends);

    let stats = pool.stats();
    assert_eq!(stats.submitted, jobs, "{stats:?}");
    assert_eq!(stats.started, jobs - unrun, "{stats:?}");
    assert_eq!(stats.succeeded, ok, "{stats:?}");
    assert_eq!(stats.failed, failed, "{stats:?}");
    assert_eq!(stats.panicked, panicked, "{stats:?}");
    assert_eq!(stats.cancelled, cancelled, "{stats:?}");
    assert_eq!(stats.cancelled_before_start, unrun, "{stats:?}");
    assert_eq!((stats.queued, stats.running), (0, 0), "{stats:?}");
    // The seed must have exercised every path.
    assert!(
        ok > 0 && failed > 0 && panicked > 0 && unrun > 0,
        "{stats:?}"
    );
}

#[test]
fn every_job_ends_exactly_once_under_random_cancels_and_panics() {
    quiet_expected_panics();
    let total = by_profile(40_000, 1_000_000);
    let seeds = [
        0x9e37_79b9_7f4a_7c15,
        0x2545_f491_4f6c_dd1d,
        0xdead_beef_cafe_f00d,
        0x0123_4567_89ab_cdef,
    ];
    for seed in seeds {
        stress_one_seed(seed, total / seeds.len());
    }
}

// ----- panic policies --------------------------------------------------------------------

#[test]
fn panic_policy_capture_keeps_the_worker() {
    quiet_expected_panics();
    // Capture is the default; one thread, so every job below runs on the same worker.
    let pool = pool(1);
    let first = pool
        .submit(|_| Ok::<_, ()>(thread::current().id()))
        .unwrap()
        .wait()
        .unwrap();
    let panics: Vec<_> = (0..100)
        .map(|i| {
            pool.submit(move |_| -> Result<(), ()> { panic!("{EXPECTED} {i}") })
                .unwrap()
        })
        .collect();
    for (i, job) in panics.into_iter().enumerate() {
        assert_eq!(
            job.wait(),
            Err(JobError::Panicked(format!("{EXPECTED} {i}")))
        );
    }
    let after = pool
        .submit(|_| Ok::<_, ()>(thread::current().id()))
        .unwrap()
        .wait_timeout(patience())
        .expect("the worker survived the panics");
    assert_eq!(
        after,
        Ok(first),
        "the same worker thread is still running jobs"
    );
    pool.shutdown(ShutdownMode::Drain, None);
    assert_eq!(pool.stats().panicked, 100);
}

#[test]
fn panic_policy_handler_is_called_with_the_message() {
    quiet_expected_panics();
    let (tx, rx) = channel();
    let tx = Mutex::new(tx);
    let pool = Pool::builder()
        .threads(1)
        .panic_policy(PanicPolicy::Handler(Arc::new(move |message: &str| {
            tx.lock()
                .unwrap()
                .send((message.to_owned(), thread::current().id()))
                .unwrap();
            if message.contains("and the handler panics too") {
                panic!("{EXPECTED}: in the handler");
            }
        })))
        .build()
        .unwrap();
    let job = pool
        .submit(|_| -> Result<(), ()> { panic!("{EXPECTED}: kaput {}", 3) })
        .unwrap();
    assert_eq!(
        job.wait(),
        Err(JobError::Panicked(format!("{EXPECTED}: kaput 3"))),
        "the job still ends Panicked"
    );
    let (message, handler_thread) = rx.recv_timeout(patience()).unwrap();
    assert_eq!(message, format!("{EXPECTED}: kaput 3"));

    // A handler that panics itself is contained too.
    let job = pool
        .submit(|_| -> Result<(), ()> { panic!("{EXPECTED}: and the handler panics too") })
        .unwrap();
    assert!(matches!(job.wait(), Err(JobError::Panicked(_))));
    assert!(rx.recv_timeout(patience()).is_ok());

    // The worker survived both: the only thread still runs jobs.
    let after = pool
        .submit(|_| Ok::<_, ()>(thread::current().id()))
        .unwrap()
        .wait_timeout(patience())
        .expect("the worker survived");
    assert_eq!(after, Ok(handler_thread));
    // The handler is for panics only.
    assert_eq!(
        pool.submit(|_| Err::<(), _>(1)).unwrap().wait(),
        Err(JobError::Failed(1))
    );
    assert!(rx.try_recv().is_err());
}

/// Set in the environment of the child process that runs `panic_policy_abort_child`.
const ABORT_CHILD_VAR: &str = "JOBRUNNER_TEST_ABORT_CHILD";

#[test]
fn panic_policy_abort_aborts_the_process() {
    let output = child_test("panic_policy_abort_child")
        .env(ABORT_CHILD_VAR, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "the child survived a panic under PanicPolicy::Abort\nstdout: {stdout}\nstderr: {stderr}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        const SIGABRT: i32 = 6;
        assert_eq!(output.status.signal(), Some(SIGABRT), "stderr: {stderr}");
    }
    assert!(
        stderr.contains("doomed") && stderr.contains("abort-marker"),
        "the abort names the job and its message; stderr: {stderr}"
    );
    assert!(!stdout.contains("child survived"), "stdout: {stdout}");
}

#[test]
#[ignore = "run in a child process by panic_policy_abort_aborts_the_process"]
fn panic_policy_abort_child() {
    if from_parent(ABORT_CHILD_VAR).is_none() {
        return;
    }
    let pool = Pool::builder()
        .threads(1)
        .panic_policy(PanicPolicy::Abort)
        .build()
        .unwrap();
    let job = pool
        .submit_with(SubmitOptions::new().name("doomed"), |_| -> Result<(), ()> {
            panic!("abort-marker")
        })
        .unwrap();
    let result = job.wait_timeout(patience());
    println!("child survived: {result:?}");
}

/// End callbacks registered from other threads while jobs end (the first one a job gets
/// is kept in the job itself, later ones in the shared parking table): every callback
/// runs exactly once, after the end, whichever registration wins the race with the end.
#[test]
fn on_end_callbacks_racing_the_end_run_once_each() {
    let pool = pool(2);
    let jobs = by_profile(2_000, 20_000);
    let calls = Arc::new(AtomicUsize::new(0));
    let early = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = channel::<JobHandle>();
    let registrar = {
        let (calls, early) = (Arc::clone(&calls), Arc::clone(&early));
        thread::spawn(move || {
            for handle in rx {
                for _ in 0..2 {
                    let (calls, early, seen) =
                        (Arc::clone(&calls), Arc::clone(&early), handle.clone());
                    handle.on_end(move |state| {
                        if !state.is_terminal() || !seen.is_finished() {
                            early.fetch_add(1, Ordering::SeqCst);
                        }
                        calls.fetch_add(1, Ordering::SeqCst);
                    });
                }
            }
        })
    };
    let mut rng = XorShift::new(7);
    let mut kept = Vec::new();
    for i in 0..jobs {
        let work = rng.below(300);
        let job = pool
            .submit(move |_| {
                let mut x = work;
                for _ in 0..work {
                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(1));
                }
                Ok::<_, ()>(x)
            })
            .unwrap();
        tx.send(job.handle()).unwrap();
        if i % 3 == 0 {
            job.cancel();
        }
        kept.push(job);
    }
    drop(tx);
    registrar.join().unwrap();
    for job in kept {
        let _ = job.wait();
    }
    assert!(pool.shutdown(ShutdownMode::Drain, None).is_complete());
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2 * jobs,
        "a callback ran twice or never"
    );
    assert_eq!(
        early.load(Ordering::SeqCst),
        0,
        "a callback ran before its job ended"
    );
}
