//! Shutdown: the `Drain`, `Cancel` and `DrainThenCancel` modes, the report each returns,
//! timed-out shutdowns finished later, the drop of the last handle, shutdown from inside a
//! job, and shutdown racing concurrent submitters.
//!
//! Jobs that must still be running when a shutdown begins hold their worker until the
//! pool says it is shutting down (`ctx.pool().is_shut_down()`), an event the shutdown
//! publishes before it waits; tests never sleep to let things settle.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use jobrunner::{
    CancelReason, Context, Job, JobError, JobState, Pool, ShutdownMode, SubmitError, SubmitOptions,
};

#[allow(dead_code)]
mod common;

use common::{
    assert_cancelled, by_profile, counting, patience, pool, recv_n, submit_held, wait_until,
    DropFlag, XorShift,
};

/// Submits `count` jobs that each signal when they start and then hold their worker
/// until the pool begins to shut down; returns once all of them run.
fn hold_until_shutdown(pool: &Pool, count: usize) -> Vec<Job<(), ()>> {
    let (started_tx, started_rx) = mpsc::channel();
    let holders = (0..count)
        .map(|_| {
            let started = started_tx.clone();
            pool.submit(move |ctx| {
                started.send(()).unwrap();
                wait_until("the pool shuts down", || ctx.pool().is_shut_down());
                Ok(())
            })
            .unwrap()
        })
        .collect();
    recv_n(&started_rx, count, "a holder never started");
    holders
}

/// Submits a job that signals when it starts and then holds its worker until the returned
/// sender sends (or is dropped); it returns whether it had been asked to stop by then.
fn hold_until_released(pool: &Pool) -> (Job<bool, bool>, mpsc::Sender<()>) {
    let (job, started, release) = submit_held(pool, |ctx, _| {
        // An error after cancellation ends the job Cancelled; Ok stays Succeeded.
        if ctx.is_cancelled() {
            Err(true)
        } else {
            Ok(false)
        }
    });
    started
        .recv_timeout(patience())
        .expect("the holder never started");
    (job, release)
}

/// Submits `count` jobs that count their runs in `ran`.
fn submit_counting(pool: &Pool, count: usize, ran: &Arc<AtomicUsize>) -> Vec<Job<(), ()>> {
    (0..count)
        .map(|_| pool.submit(counting(ran)).unwrap())
        .collect()
}

/// Asserts that `job` ends cancelled by the shutdown.
fn shutdown_cancelled<T, E>(job: Job<T, E>)
where
    T: std::fmt::Debug + PartialEq + Send + 'static,
    E: std::fmt::Debug + PartialEq + Send + 'static,
{
    assert_cancelled(job, CancelReason::Shutdown);
}

// ----- the modes --------------------------------------------------------------------------

#[test]
fn drain_runs_everything_queued_then_refuses_submits() {
    let pool = pool(2);
    let holders = hold_until_shutdown(&pool, 2);
    let ran = Arc::new(AtomicUsize::new(0));
    let queued = submit_counting(&pool, 50, &ran);
    // A queued job may still submit while the pool drains: its subtree drains too.
    let children_ran = Arc::new(AtomicUsize::new(0));
    let parent = {
        let children_ran = Arc::clone(&children_ran);
        pool.submit(move |ctx| {
            for _ in 0..5 {
                drop(ctx.pool().submit(counting(&children_ran))?);
            }
            Ok::<_, SubmitError>(())
        })
        .unwrap()
    };
    assert_eq!(ran.load(Ordering::SeqCst), 0);

    let report = pool.shutdown(ShutdownMode::Drain, None);
    assert_eq!(ran.load(Ordering::SeqCst), 50);
    assert_eq!(children_ran.load(Ordering::SeqCst), 5);
    assert_eq!(report.completed, 2 + 50 + 1 + 5, "{report:?}");
    assert_eq!(report.cancelled, 0);
    assert!(report.is_complete(), "{report:?}");
    assert!(pool.is_shut_down());
    for job in holders.into_iter().chain(queued) {
        assert_eq!(job.state(), JobState::Succeeded);
    }
    assert_eq!(parent.wait(), Ok(()));

    assert_eq!(
        pool.submit(counting(&ran)).unwrap_err(),
        SubmitError::Shutdown
    );
    assert_eq!(
        pool.try_submit(counting(&ran)).unwrap_err(),
        SubmitError::Shutdown
    );
    let later = SubmitOptions::new().delay(Duration::from_millis(1));
    assert_eq!(
        pool.submit_with(later, counting(&ran)).unwrap_err(),
        SubmitError::Shutdown
    );
    assert_eq!(ran.load(Ordering::SeqCst), 50);
    let stats = pool.stats();
    assert_eq!(
        stats.submitted,
        2 + 50 + 1 + 5,
        "refused submits counted: {stats:?}"
    );
    assert_eq!((stats.queued, stats.running), (0, 0));
}

#[test]
fn cancel_ends_queued_jobs_and_waits_for_running_ones_to_stop() {
    let pool = pool(2);
    let stopped = Arc::new(AtomicUsize::new(0));
    let (started_tx, started_rx) = mpsc::channel();
    let running: Vec<_> = (0..2)
        .map(|i| {
            let (stopped, started) = (Arc::clone(&stopped), started_tx.clone());
            pool.submit(move |ctx| {
                started.send(()).unwrap();
                let reason = ctx.token().wait_timeout(patience());
                // Some cleanup after the request to stop: the shutdown must wait for it.
                thread::sleep(Duration::from_millis(30));
                stopped.fetch_add(1, Ordering::SeqCst);
                if i == 0 {
                    Ok(reason)
                } else {
                    Err(reason)
                }
            })
            .unwrap()
        })
        .collect();
    recv_n(&started_rx, 2, "a running job never started");
    let ran = Arc::new(AtomicUsize::new(0));
    let queued = submit_counting(&pool, 20, &ran);
    let delayed = pool
        .submit_with(
            SubmitOptions::new().delay(Duration::from_secs(60)),
            counting(&ran),
        )
        .unwrap();

    let start = Instant::now();
    let report = pool.shutdown(ShutdownMode::Cancel, None);
    assert!(
        start.elapsed() < patience(),
        "waited for the delayed job's time"
    );
    assert_eq!(
        stopped.load(Ordering::SeqCst),
        2,
        "returned before running jobs ended"
    );
    assert_eq!(ran.load(Ordering::SeqCst), 0, "a queued job ran");
    assert_eq!(report.completed, 2, "{report:?}");
    assert_eq!(report.cancelled, 21, "{report:?}");
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(pool.root_token().reason(), Some(CancelReason::Shutdown));
    assert_eq!(pool.delayed(), 0);

    let mut running = running.into_iter();
    let saw = Some(CancelReason::Shutdown);
    assert_eq!(running.next().unwrap().wait(), Ok(saw));
    shutdown_cancelled(running.next().unwrap());
    queued.into_iter().for_each(shutdown_cancelled);
    shutdown_cancelled(delayed);
    assert_eq!(
        pool.submit(counting(&ran)).unwrap_err(),
        SubmitError::Shutdown
    );
    let stats = pool.stats();
    assert_eq!(
        (
            stats.succeeded,
            stats.cancelled,
            stats.cancelled_before_start
        ),
        (1, 22, 21),
        "{stats:?}"
    );
}

#[test]
fn drain_then_cancel_drains_until_the_timeout_then_cancels_the_rest() {
    let pool = pool(1);
    let _first = hold_until_shutdown(&pool, 1);
    let ran = Arc::new(AtomicUsize::new(0));
    let drained = submit_counting(&pool, 5, &ran);
    // Holds the only worker past the timeout; it is still running when the shutdown
    // returns.
    let (stuck, _stuck_started, release_tx) =
        submit_held(&pool, |ctx, _| Ok::<_, ()>(ctx.is_cancelled()));
    let cancelled = submit_counting(&pool, 10, &ran);

    let timeout = Duration::from_millis(300);
    let start = Instant::now();
    let report = pool.shutdown(ShutdownMode::DrainThenCancel, Some(timeout));
    assert!(start.elapsed() >= timeout);
    assert_eq!(ran.load(Ordering::SeqCst), 5);
    assert_eq!(report.completed, 6, "{report:?}");
    assert_eq!(report.cancelled, 10, "{report:?}");
    assert_eq!(report.still_running, 1, "{report:?}");
    assert_eq!(report.still_queued, 0, "{report:?}");
    assert!(!report.is_complete());
    for job in drained {
        assert_eq!(job.state(), JobState::Succeeded);
    }
    cancelled.into_iter().for_each(shutdown_cancelled);

    release_tx.send(()).unwrap();
    assert_eq!(
        stuck.wait(),
        Ok(true),
        "the running job was not told to stop"
    );
    let report = pool.shutdown(ShutdownMode::Drain, None);
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(ran.load(Ordering::SeqCst), 5);
}

#[test]
fn delayed_jobs_run_when_due_under_drain() {
    let pool = pool(1);
    let ran = Arc::new(AtomicUsize::new(0));
    let delay = Duration::from_millis(50);
    let start = Instant::now();
    let delayed = pool
        .submit_with(SubmitOptions::new().delay(delay), counting(&ran))
        .unwrap();
    let report = pool.shutdown(ShutdownMode::Drain, None);
    assert_eq!(ran.load(Ordering::SeqCst), 1, "drain skipped a delayed job");
    assert!(start.elapsed() >= delay);
    assert_eq!(delayed.state(), JobState::Succeeded);
    assert_eq!(report.completed, 1, "{report:?}");
    assert!(report.is_complete());
}

// ----- timeouts and later shutdowns ---------------------------------------------------------

#[test]
fn timed_out_drain_reports_what_is_left_and_the_drop_finishes_it() {
    let stops = Arc::new(AtomicUsize::new(0));
    let pool = Pool::builder()
        .threads(1)
        .on_thread_stop({
            let stops = Arc::clone(&stops);
            move |_| {
                stops.fetch_add(1, Ordering::SeqCst);
            }
        })
        .build()
        .unwrap();
    let (holder, release) = hold_until_released(&pool);
    let ran = Arc::new(AtomicUsize::new(0));
    let queued = submit_counting(&pool, 3, &ran);
    let timeout = Duration::from_millis(50);
    let start = Instant::now();
    let report = pool.shutdown(ShutdownMode::Drain, Some(timeout));
    assert!(start.elapsed() >= timeout);
    assert_eq!(report.completed, 0, "{report:?}");
    assert_eq!(report.cancelled, 0, "{report:?}");
    assert_eq!(report.still_running, 1, "{report:?}");
    assert_eq!(report.still_queued, 3, "{report:?}");
    assert!(!report.is_complete());
    assert_eq!(
        pool.submit(counting(&ran)).unwrap_err(),
        SubmitError::Shutdown
    );
    assert_eq!(
        stops.load(Ordering::SeqCst),
        0,
        "workers stopped with jobs left"
    );

    release.send(()).unwrap();
    // Dropping the last handle drains with no timeout: it returns once all have run and
    // the workers have stopped.
    drop(pool);
    assert_eq!(ran.load(Ordering::SeqCst), 3);
    assert_eq!(stops.load(Ordering::SeqCst), 1);
    assert_eq!(holder.wait(), Ok(false));
    for job in queued {
        assert_eq!(job.state(), JobState::Succeeded);
    }
}

#[test]
fn timed_out_cancel_reports_still_running_and_a_later_shutdown_completes() {
    let pool = pool(1);
    let (holder, release) = hold_until_released(&pool);
    let ran = Arc::new(AtomicUsize::new(0));
    let queued = submit_counting(&pool, 3, &ran);
    let report = pool.shutdown(ShutdownMode::Cancel, Some(Duration::from_millis(50)));
    assert_eq!(report.completed, 0, "{report:?}");
    assert_eq!(report.cancelled, 3, "{report:?}");
    assert_eq!(report.still_running, 1, "{report:?}");
    assert_eq!(report.still_queued, 0, "{report:?}");
    queued.into_iter().for_each(shutdown_cancelled);
    assert_eq!(holder.state(), JobState::Running);

    release.send(()).unwrap();
    let report = pool.shutdown(ShutdownMode::Cancel, None);
    assert!(report.is_complete(), "{report:?}");
    // It returned an error after it was asked to stop: cancelled, not failed.
    shutdown_cancelled(holder);
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}

#[test]
fn dropping_the_last_clone_drains_and_stops_the_workers() {
    let stops = Arc::new(Mutex::new(Vec::new()));
    let pool = Pool::builder()
        .threads(2)
        .on_thread_stop({
            let stops = Arc::clone(&stops);
            move |index| stops.lock().unwrap().push(index)
        })
        .build()
        .unwrap();
    let clone = pool.clone();
    let holders = hold_until_shutdown(&pool, 2);
    let ran = Arc::new(AtomicUsize::new(0));
    for _ in 0..20 {
        drop(pool.submit(counting(&ran)).unwrap());
    }
    let watched = pool.submit(counting(&ran)).unwrap().handle();

    // Not the last handle: the drop returns at once and shuts nothing down.
    let (dropped_tx, dropped_rx) = mpsc::channel();
    thread::spawn(move || {
        drop(clone);
        dropped_tx.send(()).unwrap();
    });
    dropped_rx
        .recv_timeout(patience())
        .expect("dropping a clone that is not the last one blocked");
    assert!(!pool.is_shut_down());
    assert!(stops.lock().unwrap().is_empty());

    drop(pool);
    assert_eq!(ran.load(Ordering::SeqCst), 21, "the drop did not drain");
    assert_eq!(watched.state(), JobState::Succeeded);
    for job in holders {
        assert_eq!(job.wait(), Ok(()));
    }
    let mut stops = stops.lock().unwrap().clone();
    stops.sort_unstable();
    assert_eq!(stops, [0, 1], "the drop did not stop every worker");
}

// ----- shutdown from inside a job ---------------------------------------------------------

#[test]
fn drain_from_inside_a_job_returns_at_once() {
    let pool = pool(2);
    let (holder, release) = hold_until_released(&pool);
    let (report_tx, report_rx) = mpsc::channel();
    let inside = pool
        .submit(move |ctx| {
            let report = ctx.pool().shutdown(ShutdownMode::Drain, None);
            report_tx.send(report).unwrap();
            // The pool's own jobs may still submit while it drains.
            let child = ctx.pool().submit(|_| Ok::<_, ()>(3)).unwrap();
            Ok::<_, ()>((ctx.pool().is_shut_down(), child.wait()))
        })
        .unwrap();
    // The job cannot wait for itself: the call must return while it (and the holder) run.
    let report = report_rx
        .recv_timeout(patience())
        .expect("shutdown from inside a job did not return");
    assert!(!report.is_complete(), "{report:?}");
    assert!(report.still_running >= 1, "{report:?}");
    assert_eq!(inside.wait(), Ok((true, Ok(3))));
    assert_eq!(
        pool.submit(|_| Ok::<_, ()>(())).unwrap_err(),
        SubmitError::Shutdown
    );
    release.send(()).unwrap();
    let report = pool.shutdown(ShutdownMode::Drain, None);
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(holder.wait(), Ok(false));
}

#[test]
fn cancel_from_inside_a_job_cancels_the_queue_and_the_caller() {
    let pool = pool(1);
    let (inside, _started, go_tx) = submit_held(&pool, |ctx, _| {
        let report = ctx.pool().shutdown(ShutdownMode::Cancel, None);
        Ok::<_, ()>((report.cancelled, ctx.is_cancelled(), ctx.cancel_reason()))
    });
    let ran = Arc::new(AtomicUsize::new(0));
    let queued = submit_counting(&pool, 4, &ran);
    go_tx.send(()).unwrap();
    assert_eq!(inside.wait(), Ok((4, true, Some(CancelReason::Shutdown))));
    queued.into_iter().for_each(shutdown_cancelled);
    assert!(pool.shutdown(ShutdownMode::Cancel, None).is_complete());
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}

#[test]
fn drain_then_cancel_from_inside_a_job_drains_before_its_timeout() {
    let pool = pool(1);
    let (inside, _started, go_tx) = submit_held(&pool, |ctx, _| {
        ctx.pool()
            .shutdown(ShutdownMode::DrainThenCancel, Some(patience()));
        Ok::<_, ()>(ctx.is_cancelled())
    });
    let ran = Arc::new(AtomicUsize::new(0));
    let queued = submit_counting(&pool, 4, &ran);
    go_tx.send(()).unwrap();
    let caller_cancelled = inside.wait();
    let results: Vec<_> = queued.into_iter().map(Job::wait).collect();
    assert!(pool.shutdown(ShutdownMode::Drain, None).is_complete());
    // Its timeout (10 s) has not passed: the queued jobs drain, nobody is cancelled.
    assert_eq!(caller_cancelled, Ok(false));
    assert_eq!(results, vec![Ok(()); 4]);
    assert_eq!(ran.load(Ordering::SeqCst), 4);
}

// ----- shutdown racing submitters -----------------------------------------------------------

/// What happened to every job of one run, indexed by job id.
struct Table {
    /// 1 once a submit of this id returned `Ok`.
    accepted: Vec<AtomicU8>,
    /// Times the job's closure ran.
    ran: Vec<AtomicU8>,
    /// Times the job's end callback ran.
    ended: Vec<AtomicU8>,
    /// The terminal state the end callback saw (see [`state_code`]).
    end_state: Vec<AtomicU8>,
    /// Submits refused with something other than `Shutdown`, or accepted after a refusal.
    violations: AtomicUsize,
}

impl Table {
    fn new(ids: usize) -> Self {
        let column = || (0..ids).map(|_| AtomicU8::new(0)).collect();
        Table {
            accepted: column(),
            ran: column(),
            ended: column(),
            end_state: column(),
            violations: AtomicUsize::new(0),
        }
    }

    /// Records an accepted job and counts its end.
    fn accept<T: Send + 'static, E: Send + 'static>(self: &Arc<Self>, id: usize, job: &Job<T, E>) {
        self.accepted[id].store(1, Ordering::SeqCst);
        let table = Arc::clone(self);
        job.handle().on_end(move |state| {
            table.end_state[id].store(state_code(state), Ordering::SeqCst);
            table.ended[id].fetch_add(1, Ordering::SeqCst);
        });
    }
}

fn state_code(state: JobState) -> u8 {
    match state {
        JobState::Succeeded => 1,
        JobState::Cancelled => 2,
        JobState::Failed => 3,
        JobState::Panicked => 4,
        _ => 5,
    }
}

/// One job of the race: counts its run, maybe submits a child (id `child`), works a little,
/// and fails if it was asked to stop (which makes it `Cancelled`).
fn race_job(
    ctx: &Context<'_>,
    table: &Arc<Table>,
    id: usize,
    child: Option<usize>,
    spin: u64,
) -> Result<(), ()> {
    table.ran[id].fetch_add(1, Ordering::SeqCst);
    if let Some(child) = child {
        let inner = Arc::clone(table);
        match ctx
            .pool()
            .submit(move |ctx| race_job(ctx, &inner, child, None, spin))
        {
            Ok(job) => table.accept(child, &job),
            Err(SubmitError::Shutdown) => {}
            Err(_) => {
                table.violations.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
    for i in 0..spin {
        std::hint::black_box(i);
    }
    if ctx.is_cancelled() {
        Err(())
    } else {
        Ok(())
    }
}

/// A delay far beyond any test's patience.
const FAR: Duration = Duration::from_secs(60);

/// One seed of the race: `submitters` threads submit in a loop while another thread shuts
/// the pool down once `before` jobs were accepted.
fn race(seed: u64, per_submitter: usize) {
    let mut rng = XorShift::new(seed);
    let threads = 1 + rng.below(4) as usize;
    let submitters = 2 + rng.below(3) as usize;
    let mode = [
        ShutdownMode::Drain,
        ShutdownMode::Cancel,
        ShutdownMode::DrainThenCancel,
    ][rng.below(3) as usize];
    let timeout = match mode {
        // Without a timeout, DrainThenCancel is a Drain.
        ShutdownMode::DrainThenCancel => Some(Duration::from_millis(rng.below(5))),
        _ if rng.below(3) == 0 => Some(Duration::from_millis(rng.below(5))),
        _ => None,
    };
    let before = rng.below((submitters * per_submitter / 2) as u64) as usize;
    let context = format!(
        "seed {seed}: {threads} threads, {submitters} submitters, {mode:?} {timeout:?} after {before}"
    );

    let pool = pool(threads);
    let outside = submitters * per_submitter;
    let table = Arc::new(Table::new(2 * outside));
    let accepted = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));

    let handles: Vec<_> = (0..submitters)
        .map(|s| {
            let (pool, table) = (pool.clone(), Arc::clone(&table));
            let (accepted, finished) = (Arc::clone(&accepted), Arc::clone(&finished));
            let mut rng = XorShift::new(seed ^ ((s as u64 + 1) << 32));
            thread::spawn(move || {
                let mut jobs = Vec::new();
                let mut refusals = 0;
                for i in 0..per_submitter {
                    let id = s * per_submitter + i;
                    let kind = rng.below(16);
                    let options = match kind {
                        0 => SubmitOptions::new().delay(Duration::from_millis(1 + rng.below(3))),
                        _ => SubmitOptions::new(),
                    };
                    let child = (kind == 2 || kind == 3).then_some(outside + id);
                    let spin = rng.below(2000);
                    let inner = Arc::clone(&table);
                    let result = pool
                        .submit_with(options, move |ctx| race_job(ctx, &inner, id, child, spin));
                    match result {
                        Ok(job) if refusals == 0 => {
                            table.accept(id, &job);
                            accepted.fetch_add(1, Ordering::SeqCst);
                            jobs.push(job);
                        }
                        Err(SubmitError::Shutdown) => {
                            refusals += 1;
                            // A few more tries: every one must be refused too.
                            if refusals == 4 {
                                break;
                            }
                        }
                        Ok(job) => {
                            // Accepted after a refusal: the lifecycle went backwards.
                            table.accept(id, &job);
                            table.violations.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(_) => {
                            table.violations.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
                finished.fetch_add(1, Ordering::SeqCst);
                jobs
            })
        })
        .collect();

    let shutter = {
        let pool = pool.clone();
        let (accepted, finished) = (Arc::clone(&accepted), Arc::clone(&finished));
        thread::spawn(move || {
            wait_until("enough jobs were accepted", || {
                accepted.load(Ordering::SeqCst) >= before
                    || finished.load(Ordering::SeqCst) == submitters
            });
            let start = Instant::now();
            let report = pool.shutdown(mode, timeout);
            (report, start.elapsed())
        })
    };
    let (report, took) = shutter.join().unwrap();
    let jobs: Vec<_> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    // Once the racing shutdown returned, nothing is left that could take long (jobs
    // delayed far ahead are the business of the next test).
    let last = pool.shutdown(ShutdownMode::Drain, Some(patience()));
    if !last.is_complete() {
        // What is left would hold the pool's drop for a minute.
        std::mem::forget(pool);
        panic!("{context}: after {report:?}, the last drain found {last:?}");
    }
    assert!(
        took < timeout.unwrap_or_default() + patience(),
        "{context}: the shutdown took {took:?}"
    );
    if timeout.is_none() {
        assert!(report.is_complete(), "{context}: {report:?}");
    }
    assert_eq!(table.violations.load(Ordering::SeqCst), 0, "{context}");

    // Every job: accepted ones ended exactly once, refused ones never ran.
    let (mut total, mut succeeded, mut cancelled, mut unrun) = (0u64, 0u64, 0u64, 0u64);
    for id in 0..2 * outside {
        let ran = table.ran[id].load(Ordering::SeqCst);
        let ended = table.ended[id].load(Ordering::SeqCst);
        if table.accepted[id].load(Ordering::SeqCst) == 0 {
            assert_eq!(
                (ran, ended),
                (0, 0),
                "{context}: refused job {id} ran or ended"
            );
            continue;
        }
        total += 1;
        assert_eq!(ended, 1, "{context}: job {id} ended {ended} times");
        assert!(ran <= 1, "{context}: job {id} ran {ran} times");
        match table.end_state[id].load(Ordering::SeqCst) {
            1 => {
                assert_eq!(ran, 1, "{context}: job {id} succeeded without running");
                succeeded += 1;
            }
            2 => {
                cancelled += 1;
                unrun += u64::from(ran == 0);
            }
            other => panic!("{context}: job {id} ended in state code {other}"),
        }
        if mode == ShutdownMode::Drain {
            assert_eq!(ran, 1, "{context}: a drain did not run job {id}");
        }
    }
    for job in jobs {
        let result = job.wait();
        assert!(
            matches!(
                result,
                Ok(()) | Err(JobError::Cancelled(CancelReason::Shutdown))
            ),
            "{context}: {result:?}"
        );
    }
    if mode == ShutdownMode::Drain {
        assert_eq!(report.cancelled, 0, "{context}: {report:?}");
    }
    assert!(
        report.cancelled <= unrun,
        "{context}: {report:?}, {unrun} unrun"
    );
    assert!(
        report.completed + report.cancelled <= total,
        "{context}: {report:?}"
    );

    let stats = pool.stats();
    assert_eq!(stats.submitted, total, "{context}: {stats:?}");
    assert_eq!(
        stats.submitted,
        stats.succeeded + stats.failed + stats.panicked + stats.cancelled,
        "{context}: {stats:?}"
    );
    assert_eq!(
        (stats.queued, stats.running),
        (0, 0),
        "{context}: {stats:?}"
    );
    assert_eq!(
        (
            stats.succeeded,
            stats.cancelled,
            stats.cancelled_before_start
        ),
        (succeeded, cancelled, unrun),
        "{context}: {stats:?}"
    );
    assert_eq!(stats.started, total - unrun, "{context}: {stats:?}");
}

#[test]
fn shutdown_racing_submitters_ends_every_accepted_job_once() {
    let (seeds, per_submitter) = by_profile((6, 400), (24, 3000));
    for seed in 1..=seeds {
        race(seed, per_submitter);
    }
}

#[test]
fn cancel_racing_delayed_submits_leaves_no_delayed_job_behind() {
    let rounds = by_profile(20, 100);
    for round in 0..rounds {
        let pool = pool(1);
        let accepted = Arc::new(AtomicUsize::new(0));
        let submitters: Vec<_> = (0..3)
            .map(|_| {
                let (pool, accepted) = (pool.clone(), Arc::clone(&accepted));
                thread::spawn(move || {
                    let mut jobs = Vec::new();
                    let options = SubmitOptions::new().delay(FAR);
                    while let Ok(job) = pool.submit_with(options.clone(), |_| Ok::<_, ()>(())) {
                        accepted.fetch_add(1, Ordering::SeqCst);
                        jobs.push(job);
                    }
                    jobs
                })
            })
            .collect();
        wait_until("some delayed jobs were accepted", || {
            accepted.load(Ordering::SeqCst) >= 20
        });
        // Bounded, so that a delayed job left behind shows in the report instead of
        // holding the shutdown for a minute.
        let report = pool.shutdown(ShutdownMode::Cancel, Some(Duration::from_secs(1)));
        let jobs: Vec<_> = submitters
            .into_iter()
            .flat_map(|s| s.join().unwrap())
            .collect();
        let left = jobs.iter().filter(|j| !j.is_finished()).count();
        let delayed = pool.delayed();
        if !report.is_complete() || left > 0 {
            // The left-behind jobs would hold the pool's drop for a minute.
            std::mem::forget(pool);
            panic!(
                "round {round}: a Cancel shutdown left {left} of {} delayed jobs \
                 unfinished ({delayed} in the timer): {report:?}",
                jobs.len()
            );
        }
        jobs.into_iter().for_each(shutdown_cancelled);
    }
}

#[test]
fn refused_closures_are_dropped_without_running() {
    let pool = pool(1);
    pool.shutdown(ShutdownMode::Drain, None);
    let dropped = Arc::new(AtomicBool::new(false));
    let guard = DropFlag(Arc::clone(&dropped));
    let result = pool.submit(move |_| {
        let _guard = guard;
        Ok::<_, ()>(())
    });
    assert_eq!(result.unwrap_err(), SubmitError::Shutdown);
    assert!(dropped.load(Ordering::SeqCst));
}
