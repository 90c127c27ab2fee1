//! Cancellation with a deadline: Go's `context.WithTimeout` on the pool.
//!
//! A request has a token with a generous deadline (5 s); each step of the request gets a
//! child token with a deadline of its own (`CancelToken::child_with_timeout`). A job
//! submitted with a token (`SubmitOptions::token`) polls `ctx.is_cancelled()` between
//! slices of its work and stops when it turns true; a job that returns an error after its
//! cancel ends `JobError::Cancelled`, not `Failed`.
//!
//! 1. A quick step (3 slices of 1 ms) under a 2 s deadline succeeds, and its token is
//!    never cancelled.
//! 2. A slow step (up to 5000 slices of 1 ms) under a 50 ms deadline is stopped by it:
//!    `Cancelled(DeadlineExceeded)`, a reason the job sees too (`ctx.cancel_reason()`).
//!    The request token is untouched: a deadline cancels a token and its descendants,
//!    never its ancestors.
//! 3. A step submitted under a token whose deadline has already passed is accepted but
//!    never runs: it has ended `Cancelled` by the time `submit_with` returns.
//!
//! Every line printed is the same on every run; the example checks its own results and
//! exits non-zero if they are wrong. The C version is `examples/c/deadline.c`.
//!
//! Run it with `cargo run --release --example deadline` (or `make demo`).

use std::error::Error;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use jobrunner::{CancelReason, CancelToken, Context, JobError, JobState, Pool, SubmitOptions};

/// One slice of real work; a step checks for cancellation between slices.
const SLICE: Duration = Duration::from_millis(1);
/// How long any wait may take before the example calls it a hang.
const PATIENCE: Duration = Duration::from_secs(5);

/// What a step returns when it stops early because its token was cancelled.
#[derive(Debug)]
struct Stopped;

/// What a step's job reports back while it runs (an error after a cancel is replaced by
/// `JobError::Cancelled`, so what the job saw is kept here).
#[derive(Debug, Default)]
struct Progress {
    /// The job started.
    ran: AtomicBool,
    /// Slices done before it finished or stopped.
    done: AtomicU32,
    /// Why it stopped, as the job saw it.
    seen: OnceLock<CancelReason>,
}

/// The job of a step: `slices` slices of work, polling for cancellation between them.
/// Returns the slices done.
fn work(slices: u32, ctx: &Context<'_>, progress: &Progress) -> Result<u32, Stopped> {
    progress.ran.store(true, Ordering::SeqCst);
    for _ in 0..slices {
        if let Some(reason) = ctx.cancel_reason() {
            let _ = progress.seen.set(reason);
            return Err(Stopped);
        }
        thread::sleep(SLICE);
        progress.done.fetch_add(1, Ordering::SeqCst);
    }
    Ok(slices)
}

/// How a step ended.
struct Outcome {
    /// The job's result.
    result: Result<u32, JobError<Stopped>>,
    /// The job's state right after `submit_with` returned.
    state_at_submit: JobState,
    /// The step token's cancel reason once the job ended.
    token_reason: Option<CancelReason>,
    progress: Arc<Progress>,
}

/// Runs one step of `slices` slices under `token` (a child of the request's) and waits
/// for it.
fn run_step(pool: &Pool, token: &CancelToken, slices: u32) -> Result<Outcome, Box<dyn Error>> {
    let progress = Arc::new(Progress::default());
    let job = {
        let progress = Arc::clone(&progress);
        pool.submit_with(SubmitOptions::new().token(token), move |ctx| {
            work(slices, ctx, &progress)
        })?
    };
    let state_at_submit = job.state();
    let result = job
        .wait_timeout(PATIENCE)
        .map_err(|_| "a step did not end within 5 s")?;
    Ok(Outcome {
        result,
        state_at_submit,
        token_reason: token.reason(),
        progress,
    })
}

/// `Ok`, or the job's error, as printed.
fn describe(result: &Result<u32, JobError<Stopped>>) -> String {
    match result {
        Ok(_) => "Ok".to_owned(),
        Err(error) => format!("{error:?}"),
    }
}

/// A cancel reason as printed: `none` for a live token.
fn reason_name(reason: Option<CancelReason>) -> String {
    reason.map_or_else(|| "none".to_owned(), |reason| format!("{reason:?}"))
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
    let pool = Pool::builder().threads(2).build()?;
    let request = CancelToken::with_timeout(Duration::from_secs(5));
    println!("deadline: a request with a 5 s deadline, each step with a deadline of its own");

    // 1. Fits in its deadline.
    let quick = run_step(
        &pool,
        &request.child_with_timeout(Duration::from_secs(2)),
        3,
    )?;
    println!(
        "quick step (3 ms of work, 2 s deadline): {}, token reason {}",
        describe(&quick.result),
        reason_name(quick.token_reason)
    );
    ensure(
        matches!(quick.result, Ok(3))
            && quick.token_reason.is_none()
            && quick.progress.done.load(Ordering::SeqCst) == 3,
        "the quick step should have finished",
    )?;

    // 2. Does not fit: the deadline stops it.
    let slow = run_step(
        &pool,
        &request.child_with_timeout(Duration::from_millis(50)),
        5000,
    )?;
    println!(
        "slow step (up to 5 s of work, 50 ms deadline): {}, token reason {}",
        describe(&slow.result),
        reason_name(slow.token_reason)
    );
    ensure(
        matches!(
            slow.result,
            Err(JobError::Cancelled(CancelReason::DeadlineExceeded))
        ) && slow.token_reason == Some(CancelReason::DeadlineExceeded),
        "the slow step should have been stopped by its deadline",
    )?;
    ensure(
        slow.progress.done.load(Ordering::SeqCst) < 5000,
        "the slow step did all its work",
    )?;
    let seen = slow.progress.seen.get().copied();
    println!(
        "slow step: the job saw ctx.is_cancelled(), reason {}, and stopped early",
        reason_name(seen)
    );
    ensure(
        seen == Some(CancelReason::DeadlineExceeded),
        "the job saw the wrong reason through its context",
    )?;

    // The request itself is still live: cancellation flows down the tree, not up.
    println!(
        "request token: cancelled {}, reason {}",
        if request.is_cancelled() { "yes" } else { "no" },
        reason_name(request.reason())
    );
    ensure(!request.is_cancelled(), "the request token was cancelled")?;

    // 3. A deadline already passed: the job is accepted, ends at once, never runs.
    let late = run_step(&pool, &request.child_with_deadline(Instant::now()), 3)?;
    let ran = late.progress.ran.load(Ordering::SeqCst);
    println!(
        "step under a passed deadline: {}, token reason {}, ran: {}",
        describe(&late.result),
        reason_name(late.token_reason),
        if ran { "yes" } else { "no" }
    );
    ensure(
        matches!(
            late.result,
            Err(JobError::Cancelled(CancelReason::DeadlineExceeded))
        ) && late.token_reason == Some(CancelReason::DeadlineExceeded)
            && late.state_at_submit == JobState::Cancelled
            && !ran,
        format!(
            "a job under a passed deadline should end Cancelled at submit, without running \
             (state at submit: {:?})",
            late.state_at_submit
        ),
    )?;
    println!("step under a passed deadline: already Cancelled when submit_with returned");

    println!("deadline: ok");
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("deadline: FAILED: {error}");
            ExitCode::FAILURE
        }
    }
}
