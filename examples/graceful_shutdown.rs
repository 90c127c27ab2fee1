//! Graceful shutdown on a shutdown request (SIGINT/SIGTERM in a real program).
//!
//! A small "server" on a pool of 4 threads runs two kinds of work:
//!
//! - 4 connection handlers, long-running jobs that serve until told to stop: they are
//!   submitted with the shutdown token (`SubmitOptions::token`) and poll
//!   `ctx.is_cancelled()`;
//! - 8 requests already accepted, short jobs queued behind the handlers: they do not
//!   watch the token, because accepted work must be finished, not dropped.
//!
//! The shutdown request does one thing: it cancels the shutdown token. The main thread,
//! waiting on the token (`CancelToken::wait_timeout`), then shuts the pool down with
//! `ShutdownMode::Drain` and a timeout: new submits are refused, the handlers have
//! stopped, the queued requests still run. It prints the `ShutdownReport` and checks how
//! every job ended.
//!
//! # Where the signal comes in
//!
//! This example uses only the standard library, which cannot catch signals, so a watcher
//! thread stands in for the signal: started once the handlers are running and the
//! requests are queued (the main thread waits for that, not for a sleep), it "delivers" a
//! SIGTERM by calling `token.cancel()`. A real program hooks SIGINT and SIGTERM with the `signal-hook` crate
//! (a thread iterating `signal_hook::iterator::Signals`) or with `libc::sigaction`, and
//! calls `token.cancel()` from there, as `examples/c/graceful_shutdown.c` calls
//! `jr_token_cancel` from its `sigaction` handler. One difference: `jr_token_cancel` is
//! async-signal-safe, but `CancelToken::cancel` takes locks and runs callbacks, so Rust
//! code calls it from a thread that received the signal (signal-hook's `Signals`, or a
//! self-pipe that the raw handler writes to), never inside the raw handler itself.
//!
//! Every line printed is the same on every run, except the one that says how many jobs
//! ended during the drain rather than before it began (that depends on how fast the
//! handlers notice the cancel); the example checks its own results and exits non-zero if
//! they are wrong.
//!
//! Run it with `cargo run --release --example graceful_shutdown` (or `make demo`).

use std::error::Error;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::thread;
use std::time::Duration;

use jobrunner::{
    CancelReason, CancelToken, Context, Job, JobError, JobState, Pool, ShutdownMode, SubmitError,
    SubmitOptions,
};

/// Worker threads: as many as handlers, so the requests queue behind them.
const THREADS: usize = 4;
/// Long-running connection handlers.
const HANDLERS: usize = 4;
/// Accepted requests, queued when the shutdown is requested.
const REQUESTS: usize = 8;
/// A handler checks for the shutdown between slices of serving.
const SLICE: Duration = Duration::from_millis(1);
/// The work of one request.
const REQUEST_WORK: Duration = Duration::from_millis(5);
/// How long the drain may take.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long any other wait may take before the example calls it a hang.
const PATIENCE: Duration = Duration::from_secs(10);

/// What a handler returns when it stops because the shutdown token was cancelled.
#[derive(Debug)]
struct Stopped;

/// What the signal hook does (on a thread that received the signal, see the module
/// docs): note which signal came, and cancel the shutdown token.
fn on_signal(signal: &'static str, received: &OnceLock<&'static str>, shutdown: &CancelToken) {
    let _ = received.set(signal);
    shutdown.cancel();
}

/// A connection handler: serves until the shutdown token is cancelled.
fn connection_handler(
    id: usize,
    started: mpsc::Sender<usize>,
) -> impl FnOnce(&Context<'_>) -> Result<(), Stopped> + Send + 'static {
    move |ctx| {
        let _ = started.send(id);
        loop {
            if ctx.is_cancelled() {
                return Err(Stopped); // an error after the cancel: the job ends Cancelled
            }
            thread::sleep(SLICE); // serve a slice
        }
    }
}

/// An accepted request: a few milliseconds of work that must not be lost.
fn request(
    id: usize,
    done: &Arc<AtomicUsize>,
) -> impl FnOnce(&Context<'_>) -> Result<usize, Stopped> + Send + 'static {
    let done = Arc::clone(done);
    move |_ctx| {
        thread::sleep(REQUEST_WORK);
        done.fetch_add(1, Ordering::SeqCst);
        Ok(id)
    }
}

/// Fails the example with `message` unless `condition` holds.
fn ensure(condition: bool, message: impl Into<String>) -> Result<(), Box<dyn Error>> {
    if condition {
        Ok(())
    } else {
        Err(message.into().into())
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    let pool = Pool::builder().threads(THREADS).build()?;
    let shutdown = CancelToken::new();
    println!(
        "graceful_shutdown: {HANDLERS} connection handlers watch the shutdown token; \
         a shutdown request (SIGINT/SIGTERM) cancels it"
    );

    // The handlers, each under the shutdown token; wait until all are running.
    let (started_tx, started_rx) = mpsc::channel();
    let handlers: Vec<Job<(), Stopped>> = (0..HANDLERS)
        .map(|id| {
            let options = SubmitOptions::new()
                .token(&shutdown)
                .name(format!("conn-{id}"));
            pool.submit_with(options, connection_handler(id, started_tx.clone()))
        })
        .collect::<Result<_, _>>()?;
    for _ in 0..HANDLERS {
        started_rx.recv_timeout(PATIENCE)?;
    }

    // The accepted requests: queued, since the handlers hold every worker.
    let done = Arc::new(AtomicUsize::new(0));
    let requests: Vec<Job<usize, Stopped>> = (0..REQUESTS)
        .map(|id| pool.submit(request(id, &done)))
        .collect::<Result<_, _>>()?;
    ensure(
        requests.iter().all(|job| job.state() == JobState::Queued),
        "the requests should wait in the queue while the handlers hold the workers",
    )?;
    println!("{HANDLERS} handlers running, {REQUESTS} requests accepted and queued");

    // The watcher thread stands in for the signal (see the module docs).
    let received = Arc::new(OnceLock::new());
    let watcher = {
        let (received, shutdown) = (Arc::clone(&received), shutdown.clone());
        thread::spawn(move || on_signal("SIGTERM", &received, &shutdown))
    };

    // Wait for the shutdown request: cancelling the token wakes us.
    let reason = shutdown.wait_timeout(PATIENCE);
    ensure(
        reason == Some(CancelReason::Cancelled),
        format!("no shutdown request within 10 s (token reason {reason:?})"),
    )?;
    watcher.join().map_err(|_| "the watcher thread panicked")?;
    let signal = received
        .get()
        .ok_or("the token was cancelled without a signal")?;
    println!("main: got {signal}, the shutdown token is cancelled");

    // Drain: refuse new work, finish what was accepted, wait at most DRAIN_TIMEOUT.
    println!("main: pool.shutdown(Drain, {} s)", DRAIN_TIMEOUT.as_secs());
    let report = pool.shutdown(ShutdownMode::Drain, Some(DRAIN_TIMEOUT));
    println!(
        "shutdown(Drain): complete {}, cancelled {}, still running {}, still queued {}",
        report.is_complete(),
        report.cancelled,
        report.still_running,
        report.still_queued
    );
    println!(
        "  completed {}: the jobs of {} that ended after the drain began (varies with timing)",
        report.completed,
        HANDLERS + REQUESTS
    );
    ensure(
        report.is_complete()
            && report.cancelled == 0
            && report.completed <= (HANDLERS + REQUESTS) as u64,
        format!("the drain should have ended every job: {report:?}"),
    )?;
    match pool.submit(request(REQUESTS, &done)) {
        Err(SubmitError::Shutdown) => println!("submit after shutdown: refused (Shutdown)"),
        other => return Err(format!("submit after shutdown: got {other:?}").into()),
    }

    // Count how everything ended: requests completed, handlers cancelled.
    let mut completed = 0;
    for (id, job) in requests.into_iter().enumerate() {
        match job.wait() {
            Ok(returned) if returned == id => completed += 1,
            other => return Err(format!("request {id}: unexpected end {other:?}").into()),
        }
    }
    let mut cancelled = 0;
    for (id, job) in handlers.into_iter().enumerate() {
        match job.wait() {
            Err(JobError::Cancelled(CancelReason::Cancelled)) => cancelled += 1,
            other => return Err(format!("handler {id}: unexpected end {other:?}").into()),
        }
    }
    println!(
        "drained: {completed} of {REQUESTS} requests completed; \
         cancelled: {cancelled} of {HANDLERS} handlers stopped"
    );
    ensure(
        completed == REQUESTS && done.load(Ordering::SeqCst) == REQUESTS && cancelled == HANDLERS,
        "unexpected ends",
    )?;
    let stats = pool.stats();
    println!(
        "stats: succeeded {}, cancelled {}, queued {}, running {}",
        stats.succeeded, stats.cancelled, stats.queued, stats.running
    );
    ensure(
        stats.succeeded == REQUESTS as u64
            && stats.cancelled == HANDLERS as u64
            && stats.queued == 0
            && stats.running == 0,
        format!("the pool's counters disagree: {stats:?}"),
    )?;
    println!("graceful_shutdown: ok");
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("graceful_shutdown: FAILED: {error}");
            ExitCode::FAILURE
        }
    }
}
