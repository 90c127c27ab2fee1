//! Periodic jobs: `Pool::submit_every`, Go's `time.Ticker` as a chain of delayed jobs.
//!
//! Each run is a delayed job of the pool; when a run ends, it schedules the next one, so a
//! periodic job never overlaps itself. If a run overruns its period, the next run starts
//! as soon as it ends and the schedule goes on from there: the ticks missed meanwhile are
//! skipped, not queued up. The chain stops when the ticker is cancelled (its token, or an
//! ancestor of it), and when the pool begins any shutdown.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cancel::{CallbackKey, CancelToken};
use crate::context::Context;
use crate::error::SubmitError;
use crate::pool::{Pool, SubmitOptions};
use crate::sync::atomic::{AtomicU64, Ordering};
use crate::sync::{lock, wait, wait_timeout, Condvar, Mutex};
use crate::unwind;

/// The handle of a periodic job: stop it, wait for it to stop, count its runs. Clones
/// share the same periodic job; dropping them does not stop it.
#[derive(Clone)]
pub struct Ticker {
    shared: Arc<Shared>,
}

impl fmt::Debug for Ticker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticker")
            .field("runs", &self.runs())
            .field("failures", &self.failures())
            .field("stopped", &self.is_stopped())
            .finish()
    }
}

struct Shared {
    /// Cancelled to stop the chain; the runs are submitted with it.
    token: CancelToken,
    /// Runs submitted and not yet ended: the chain has stopped when this reaches zero.
    live: AtomicU64,
    runs: AtomicU64,
    failures: AtomicU64,
    stopped: Mutex<bool>,
    condvar: Condvar,
    /// The callback that stops the chain when the pool begins to shut down.
    on_closing: Mutex<Option<(CancelToken, CallbackKey)>>,
}

impl Shared {
    /// A run ended (or was refused): the chain stops when none is left.
    fn run_ended(&self) {
        if self.live.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        if let Some((closing, key)) = lock(&self.on_closing).take() {
            closing.remove_callback(key);
        }
        *lock(&self.stopped) = true;
        self.condvar.notify_all();
    }
}

struct Chain<F> {
    f: F,
    period: Duration,
    options: SubmitOptions,
    shared: Arc<Shared>,
}

impl Ticker {
    /// Stops the periodic job: a run waiting for its time never runs, a running one sees
    /// `ctx.is_cancelled()`, and no run is scheduled after it. Returns false if it was
    /// already stopping.
    pub fn cancel(&self) -> bool {
        self.shared.token.cancel()
    }

    /// Whether the chain has stopped: cancelled (or the pool shut down) and no run left.
    pub fn is_stopped(&self) -> bool {
        *lock(&self.shared.stopped)
    }

    /// Blocks until the chain has stopped.
    pub fn wait(&self) {
        let mut stopped = lock(&self.shared.stopped);
        while !*stopped {
            stopped = wait(&self.shared.condvar, stopped);
        }
    }

    /// Blocks at most `timeout` for the chain to stop; returns whether it has.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let deadline = Instant::now().checked_add(timeout);
        let mut stopped = lock(&self.shared.stopped);
        while !*stopped {
            let now = Instant::now();
            match deadline {
                Some(deadline) if now < deadline => {
                    stopped = wait_timeout(&self.shared.condvar, stopped, deadline - now);
                }
                Some(_) => return false,
                None => stopped = wait(&self.shared.condvar, stopped),
            }
        }
        true
    }

    /// Runs that have ended so far.
    pub fn runs(&self) -> u64 {
        self.shared.runs.load(Ordering::Acquire)
    }

    /// Of `runs`, those that returned `Err` or panicked (the chain goes on after them).
    pub fn failures(&self) -> u64 {
        self.shared.failures.load(Ordering::Acquire)
    }

    /// The token of the periodic job (cancelling it stops the chain).
    pub fn token(&self) -> &CancelToken {
        &self.shared.token
    }
}

/// `Pool::submit_every_with`.
pub(crate) fn start<F, E>(
    pool: &Pool,
    options: SubmitOptions,
    period: Duration,
    f: F,
) -> Result<Ticker, SubmitError>
where
    F: Fn(&Context<'_>) -> Result<(), E> + Send + Sync + 'static,
    E: Send + 'static,
{
    if period.is_zero() {
        return Err(SubmitError::ZeroPeriod);
    }
    let token = match &options.token {
        Some(parent) => parent.child(),
        None => CancelToken::new(),
    };
    let shared = Arc::new(Shared {
        token,
        live: AtomicU64::new(0),
        runs: AtomicU64::new(0),
        failures: AtomicU64::new(0),
        stopped: Mutex::new(false),
        condvar: Condvar::new(),
        on_closing: Mutex::new(None),
    });
    // Any shutdown of the pool stops the chain.
    let closing = pool.closing_token().clone();
    let stop = shared.token.clone();
    let key = closing.on_cancel(move |reason| {
        stop.cancel_with(reason);
    });
    *lock(&shared.on_closing) = Some((closing, key));
    let first = Instant::now() + options.delay.unwrap_or(period);
    let chain = Arc::new(Chain {
        f,
        period,
        options,
        shared: Arc::clone(&shared),
    });
    schedule(pool, &chain, 0, first)?;
    Ok(Ticker { shared })
}

/// Submits run `tick`, due at `due`.
fn schedule<F, E>(
    pool: &Pool,
    chain: &Arc<Chain<F>>,
    tick: u64,
    due: Instant,
) -> Result<(), SubmitError>
where
    F: Fn(&Context<'_>) -> Result<(), E> + Send + Sync + 'static,
    E: Send + 'static,
{
    let mut options = chain
        .options
        .clone()
        .token(&chain.shared.token)
        .delay(due.saturating_duration_since(Instant::now()));
    options.tick = Some(tick);
    chain.shared.live.fetch_add(1, Ordering::AcqRel);
    let run = Arc::clone(chain);
    match pool.submit_with(options, move |ctx| {
        run.run(ctx, tick, due);
        Ok::<(), std::convert::Infallible>(())
    }) {
        Ok(job) => {
            let shared = Arc::clone(&chain.shared);
            job.handle().on_end(move |_| shared.run_ended());
            Ok(())
        }
        Err(error) => {
            chain.shared.run_ended();
            Err(error)
        }
    }
}

impl<F, E> Chain<F>
where
    F: Fn(&Context<'_>) -> Result<(), E> + Send + Sync + 'static,
    E: Send + 'static,
{
    fn run(self: &Arc<Self>, ctx: &Context<'_>, tick: u64, due: Instant) {
        // A run that fails or panics is counted and the chain goes on; the pool's panic
        // policy still applies to the panic.
        let failed = match unwind::halt_unwinding(|| (self.f)(ctx)) {
            Ok(Ok(())) => false,
            Ok(Err(_)) => true,
            Err(payload) => {
                let message = unwind::panic_message(&*payload);
                ctx.pool().panic_policy().handle(&message, ctx.name());
                true
            }
        };
        if failed {
            self.shared.failures.fetch_add(1, Ordering::AcqRel);
        }
        self.shared.runs.fetch_add(1, Ordering::AcqRel);
        // The pool's shutdown cancels our token just after it starts refusing outside
        // submits; a run ending in between must not schedule the next (due at once, it
        // would skip the timer and run after the shutdown began).
        if self.shared.token.is_cancelled() || ctx.pool().is_shut_down() {
            return;
        }
        // The next tick on the schedule, or now if this run overran it.
        let next = (due + self.period).max(Instant::now());
        // A refused submit (the pool is shutting down) ends the chain.
        let _ = schedule(ctx.pool(), self, tick + 1, next);
    }
}
