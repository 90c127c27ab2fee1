//! Batches of one kind: `SubmitOptions::kind` and `Context::run_queued`, which runs the
//! ready jobs of a kind on the calling job's thread. It runs only that kind, at most
//! `max`, stops at a job of another kind (which still runs, later or elsewhere), ends
//! cancelled jobs without running them, never recurses, and counts what it ran.
//!
//! Each test holds a pool's workers with a gate job until everything is queued, so that
//! the queue's order is known; they wait on events, never on time.

use std::num::NonZeroU16;
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, ThreadId};

use jobrunner::{Context, Job, JobState, Pool, SubmitOptions};

#[allow(dead_code)]
mod common;

use common::{patience, recv_n};

const K: NonZeroU16 = match NonZeroU16::new(7) {
    Some(kind) => kind,
    None => unreachable!(),
};
const OTHER: NonZeroU16 = match NonZeroU16::new(8) {
    Some(kind) => kind,
    None => unreachable!(),
};

/// What a job did, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    /// A job that calls `run_queued` starts; then says how many it ran.
    Batch(&'static str),
    Ran(&'static str, usize),
    /// A plain job ran, on this thread.
    Job(&'static str, ThreadId),
}

type Log = Arc<Mutex<Vec<Event>>>;

fn pool(threads: usize) -> Pool {
    Pool::builder().threads(threads).build().unwrap()
}

/// Holds one worker of `pool` until the returned sender is dropped (or sent to).
fn hold(pool: &Pool) -> (Sender<()>, Job<(), ()>) {
    let (started_tx, started_rx) = channel();
    let (release_tx, release_rx) = channel::<()>();
    let job = pool
        .submit(move |_ctx| {
            started_tx.send(()).unwrap();
            let _ = release_rx.recv_timeout(patience());
            Ok(())
        })
        .unwrap();
    recv_n(&started_rx, 1, "the gate job starts");
    (release_tx, job)
}

fn options(kind: Option<NonZeroU16>) -> SubmitOptions {
    match kind {
        Some(kind) => SubmitOptions::new().kind(kind),
        None => SubmitOptions::new(),
    }
}

/// A job of `kind` that logs that it ran.
fn job(pool: &Pool, log: &Log, kind: Option<NonZeroU16>, name: &'static str) -> Job<(), ()> {
    let log = Arc::clone(log);
    pool.submit_with(options(kind), move |_ctx| {
        log.lock()
            .unwrap()
            .push(Event::Job(name, thread::current().id()));
        Ok(())
    })
    .unwrap()
}

/// A job of `kind` that calls `run_queued(run_kind, max)` and logs the count.
fn batch(
    pool: &Pool,
    log: &Log,
    kind: Option<NonZeroU16>,
    run_kind: NonZeroU16,
    max: usize,
    name: &'static str,
) -> Job<ThreadId, ()> {
    let log = Arc::clone(log);
    pool.submit_with(options(kind), move |ctx: &Context<'_>| {
        log.lock().unwrap().push(Event::Batch(name));
        let ran = ctx.run_queued(run_kind, max);
        log.lock().unwrap().push(Event::Ran(name, ran));
        Ok(thread::current().id())
    })
    .unwrap()
}

fn wait_all(jobs: Vec<Job<(), ()>>) {
    for job in jobs {
        job.wait().unwrap();
    }
}

fn events(log: &Log) -> Vec<Event> {
    log.lock().unwrap().clone()
}

/// The names of the plain jobs in the log, in order.
fn names(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e {
            Event::Batch(name) => format!("<{name}"),
            Event::Ran(name, n) => format!("{name}:{n}>"),
            Event::Job(name, _) => name.to_string(),
        })
        .collect()
}

#[test]
fn runs_up_to_max_jobs_of_its_kind_on_its_thread() {
    let pool = pool(1);
    let log = Log::default();
    let (release, gate) = hold(&pool);
    let runner = batch(&pool, &log, Some(K), K, 3, "r");
    let jobs: Vec<_> = ["a", "b", "c", "d", "e"]
        .into_iter()
        .map(|name| job(&pool, &log, Some(K), name))
        .collect();
    drop(release);
    let runner_thread = runner.wait().unwrap();
    wait_all(jobs);
    gate.wait().unwrap();
    let events = events(&log);
    assert_eq!(
        names(&events),
        ["<r", "a", "b", "c", "r:3>", "d", "e"],
        "three ran inside r, in queue order, the rest after it"
    );
    for event in &events {
        if let Event::Job(name, thread) = event {
            assert_eq!(*thread, runner_thread, "{name} ran on r's thread");
        }
    }
}

#[test]
fn stops_at_a_job_of_another_kind_which_still_runs() {
    for other in [Some(OTHER), None] {
        let pool = pool(1);
        let log = Log::default();
        let (release, gate) = hold(&pool);
        let runner = batch(&pool, &log, Some(K), K, 100, "r");
        let jobs = vec![
            job(&pool, &log, Some(K), "a"),
            job(&pool, &log, Some(K), "b"),
            job(&pool, &log, other, "x"),
            job(&pool, &log, Some(K), "c"),
        ];
        drop(release);
        runner.wait().unwrap();
        wait_all(jobs);
        gate.wait().unwrap();
        assert_eq!(
            names(&events(&log)),
            ["<r", "a", "b", "r:2>", "x", "c"],
            "other kind {other:?}: the batch stops at x, which runs next"
        );
    }
}

#[test]
fn the_job_it_stops_at_can_be_taken_by_another_worker() {
    // Two workers: the second is held until r has stopped, then runs x (or the first
    // worker does, once r ends): either way x runs, exactly once.
    let pool = pool(2);
    let log = Log::default();
    let (release, gate) = hold(&pool);
    let (release2, gate2) = hold(&pool);
    let runner = batch(&pool, &log, None, K, 100, "r");
    let a = job(&pool, &log, Some(K), "a");
    let x = job(&pool, &log, Some(OTHER), "x");
    drop(release);
    runner.wait().unwrap();
    drop(release2);
    wait_all(vec![a, x]);
    gate.wait().unwrap();
    gate2.wait().unwrap();
    let names = names(&events(&log));
    assert_eq!(&names[..3], ["<r", "a", "r:1>"], "{names:?}");
    assert_eq!(names.iter().filter(|n| *n == "x").count(), 1, "{names:?}");
}

#[test]
fn runs_the_jobs_its_own_job_submitted() {
    // Jobs submitted from inside a job go on its worker's deque (LIFO for it).
    let pool = pool(1);
    let log = Log::default();
    let inner_log = Arc::clone(&log);
    let runner = pool
        .submit(move |ctx: &Context<'_>| {
            let pool = ctx.pool().clone();
            let jobs: Vec<_> = ["a", "b", "c"]
                .into_iter()
                .map(|name| job(&pool, &inner_log, Some(K), name))
                .collect();
            let ran = ctx.run_queued(K, 100);
            let done: Vec<bool> = jobs.iter().map(|j| j.state().is_terminal()).collect();
            Ok::<_, ()>((ran, done))
        })
        .unwrap();
    let (ran, done) = runner.wait().unwrap();
    assert_eq!(ran, 3);
    assert_eq!(done, [true, true, true]);
    assert_eq!(
        names(&events(&log)),
        ["c", "b", "a"],
        "newest first, as a worker would"
    );
}

#[test]
fn cancelled_jobs_end_cancelled_without_running_and_are_not_counted() {
    let pool = pool(1);
    let log = Log::default();
    let (release, gate) = hold(&pool);
    let runner = batch(&pool, &log, Some(K), K, 100, "r");
    let a = job(&pool, &log, Some(K), "a");
    let b = job(&pool, &log, Some(K), "b");
    let c = job(&pool, &log, Some(K), "c");
    assert!(b.cancel(), "b is queued: cancelled at once");
    drop(release);
    runner.wait().unwrap();
    assert_eq!(b.state(), JobState::Cancelled);
    wait_all(vec![a, c]);
    gate.wait().unwrap();
    assert_eq!(names(&events(&log)), ["<r", "a", "c", "r:2>"]);
}

#[test]
fn a_job_run_by_a_batch_cannot_start_another() {
    let pool = pool(1);
    let log = Log::default();
    let (release, gate) = hold(&pool);
    let jobs: Vec<_> = ["r", "s", "t", "u"]
        .into_iter()
        .map(|name| batch(&pool, &log, Some(K), K, 100, name))
        .collect();
    drop(release);
    for job in jobs {
        job.wait().unwrap();
    }
    gate.wait().unwrap();
    assert_eq!(
        names(&events(&log)),
        ["<r", "<s", "s:0>", "<t", "t:0>", "<u", "u:0>", "r:3>"]
    );
}

#[test]
fn max_zero_or_nothing_queued_runs_nothing() {
    let pool = pool(1);
    let log = Log::default();
    let (release, gate) = hold(&pool);
    let zero = batch(&pool, &log, Some(K), K, 0, "z");
    let a = job(&pool, &log, Some(K), "a");
    drop(release);
    zero.wait().unwrap();
    a.wait().unwrap();
    let alone = batch(&pool, &log, Some(K), K, 100, "n");
    alone.wait().unwrap();
    gate.wait().unwrap();
    assert_eq!(names(&events(&log)), ["<z", "z:0>", "a", "<n", "n:0>"]);
}

#[test]
fn many_jobs_each_end_once_whoever_runs_them() {
    // Every job of a stress mix (batchers, plain jobs of the kind, others) ends once.
    let pool = pool(2);
    let count = common::by_profile(2_000, 20_000);
    let ran = Arc::new(Mutex::new(vec![0u32; count]));
    let jobs: Vec<Job<usize, ()>> = (0..count)
        .map(|i| {
            let ran = Arc::clone(&ran);
            let kind = if i % 97 == 0 { OTHER } else { K };
            pool.submit_with(SubmitOptions::new().kind(kind), move |ctx: &Context<'_>| {
                ran.lock().unwrap()[i] += 1;
                Ok(if i % 5 == 0 { ctx.run_queued(K, 16) } else { 0 })
            })
            .unwrap()
        })
        .collect();
    let batched: usize = jobs.into_iter().map(|j| j.wait().unwrap()).sum();
    assert!(ran.lock().unwrap().iter().all(|&n| n == 1));
    assert!(batched < count);
}
