//! Rate-limited fan-out: 200 "API calls" through a semaphore of 8, under a deadline.
//!
//! The service being called allows at most 8 requests in flight, so every call is
//! submitted with `SubmitOptions::semaphore(&limit, 1)`: calls beyond the 8 running wait
//! in the semaphore's FIFO queue without occupying a worker (the pool has 16 threads, so
//! it is the semaphore, not the pool, that limits them). All calls share one
//! `CancelToken::with_timeout` deadline, too short for all of them: when it passes, the
//! calls still waiting for a permit end `Cancelled` at once, without running, and the
//! ones in flight see `ctx.is_cancelled()` between their I/O steps and stop.
//!
//! The main thread fans in by waiting on the calls in submit order, printing progress,
//! then the final count of ok and cancelled calls. It checks its own accounting and exits
//! non-zero if it is wrong: every call is either ok or cancelled by the deadline, the
//! pool's statistics agree, and never more than 8 calls were in flight at once (an atomic
//! high-water mark kept by the calls themselves).
//!
//! Run it with `cargo run --release --example rate_limited_fanout` (or `make demo`).

use std::error::Error;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use jobrunner::{
    CancelReason, CancelToken, Context, Job, JobError, Pool, Semaphore, SubmitOptions,
};

/// API calls fanned out.
const CALLS: usize = 200;
/// Calls the service allows in flight at once.
const LIMIT: u64 = 8;
/// Worker threads: more than `LIMIT`, so that only the semaphore limits the calls.
const THREADS: usize = 16;
/// One simulated I/O step of a call; a call checks for cancellation between steps.
const STEP: Duration = Duration::from_millis(2);
/// Steps per call: a call takes about 10 ms, so all 200 would need about 250 ms.
const STEPS: u32 = 5;
/// The deadline for the whole fan-out: about 40% of the calls fit in it.
const DEADLINE: Duration = Duration::from_millis(100);
/// Progress is printed after every this many calls have ended.
const PROGRESS_EVERY: usize = 50;

/// What a call returns when it stops early because the deadline passed.
#[derive(Debug)]
struct Stopped;

/// What the calls share: how many are in flight, the most ever in flight, and which
/// calls started.
struct Shared {
    in_flight: AtomicU64,
    peak: AtomicU64,
    started: Vec<AtomicBool>,
}

/// One "API call": a few sleeps standing for network I/O, stopping early when the
/// deadline passes. Returns the call's id.
fn api_call(id: usize, ctx: &Context<'_>, shared: &Shared) -> Result<usize, Stopped> {
    shared.started[id].store(true, Ordering::SeqCst);
    let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    shared.peak.fetch_max(now, Ordering::SeqCst);
    let mut result = Ok(id);
    for _ in 0..STEPS {
        if ctx.is_cancelled() {
            result = Err(Stopped);
            break;
        }
        thread::sleep(STEP);
    }
    shared.in_flight.fetch_sub(1, Ordering::SeqCst);
    result
}

/// How the calls ended.
#[derive(Debug, Default)]
struct Tally {
    ok: usize,
    /// Cancelled by the deadline before they started (they waited for a permit).
    cancelled_waiting: usize,
    /// Cancelled by the deadline while in flight.
    cancelled_in_flight: usize,
    /// Anything else: a bug.
    unexpected: Vec<String>,
}

impl Tally {
    fn cancelled(&self) -> usize {
        self.cancelled_waiting + self.cancelled_in_flight
    }

    fn ended(&self) -> usize {
        self.ok + self.cancelled() + self.unexpected.len()
    }
}

fn run() -> Result<Vec<String>, Box<dyn Error>> {
    let pool = Pool::builder().threads(THREADS).build()?;
    let limit = Semaphore::new(LIMIT);
    let shared = Arc::new(Shared {
        in_flight: AtomicU64::new(0),
        peak: AtomicU64::new(0),
        started: (0..CALLS).map(|_| AtomicBool::new(false)).collect(),
    });
    println!(
        "rate_limited_fanout: {CALLS} calls through a semaphore of {LIMIT} on a pool of \
         {THREADS} threads, deadline {} ms",
        DEADLINE.as_millis()
    );

    // Fan out: every call waits for one permit; all share the deadline.
    let started = Instant::now();
    let deadline = CancelToken::with_timeout(DEADLINE);
    let calls: Vec<Job<usize, Stopped>> = (0..CALLS)
        .map(|id| {
            let shared = Arc::clone(&shared);
            let options = SubmitOptions::new()
                .token(&deadline)
                .semaphore(&limit, 1)
                .name(format!("call-{id}"));
            pool.submit_with(options, move |ctx| api_call(id, ctx, &shared))
        })
        .collect::<Result<_, _>>()?;

    // Fan in, in submit order (the semaphore grants in that order too).
    let mut tally = Tally::default();
    for (id, call) in calls.into_iter().enumerate() {
        match call.wait() {
            Ok(returned) if returned == id => tally.ok += 1,
            Err(JobError::Cancelled(CancelReason::DeadlineExceeded)) => {
                if shared.started[id].load(Ordering::SeqCst) {
                    tally.cancelled_in_flight += 1;
                } else {
                    tally.cancelled_waiting += 1;
                }
            }
            other => tally.unexpected.push(format!("call {id}: {other:?}")),
        }
        if tally.ended() % PROGRESS_EVERY == 0 {
            println!(
                "progress: {}/{CALLS} calls ended ({} ok, {} cancelled so far)",
                tally.ended(),
                tally.ok,
                tally.cancelled()
            );
        }
    }
    let elapsed = started.elapsed();
    let peak = shared.peak.load(Ordering::SeqCst);
    let concurrency = if peak <= LIMIT {
        format!("at most {LIMIT} at once")
    } else {
        format!("{peak} at once, over the limit of {LIMIT}")
    };
    println!(
        "{CALLS} calls: {} ok, {} cancelled, {concurrency}",
        tally.ok,
        tally.cancelled()
    );
    println!(
        "  cancelled by the deadline: {} while waiting for a permit (never ran), {} in flight",
        tally.cancelled_waiting, tally.cancelled_in_flight
    );
    println!(
        "  most calls in flight at once: {peak}; all ended after {} ms",
        elapsed.as_millis()
    );

    // Check the accounting.
    let mut errors = tally.unexpected.clone();
    if tally.ok + tally.cancelled() != CALLS {
        errors.push(format!(
            "{} ok + {} cancelled != {CALLS} calls",
            tally.ok,
            tally.cancelled()
        ));
    }
    if peak > LIMIT {
        errors.push(format!(
            "{peak} calls were in flight at once (limit {LIMIT})"
        ));
    }
    if tally.ok == 0 || tally.cancelled() == 0 {
        errors.push(format!(
            "the {} ms deadline should let some calls finish and cancel the rest",
            DEADLINE.as_millis()
        ));
    }
    let stats = pool.stats();
    if stats.succeeded != tally.ok as u64
        || stats.cancelled != tally.cancelled() as u64
        || stats.cancelled_before_start != tally.cancelled_waiting as u64
    {
        errors.push(format!("the pool's statistics disagree: {stats:?}"));
    }
    if limit.available() != LIMIT || limit.waiters() != 0 {
        errors.push(format!("permits not all returned: {limit:?}"));
    }
    if errors.is_empty() {
        println!(
            "accounting checked: ok + cancelled = {CALLS}, never more than {LIMIT} at once, \
             every permit returned"
        );
    }
    Ok(errors)
}

fn main() -> ExitCode {
    match run() {
        Ok(errors) if errors.is_empty() => ExitCode::SUCCESS,
        Ok(errors) => {
            for error in errors {
                eprintln!("error: {error}");
            }
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
