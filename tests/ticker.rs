//! Delayed and periodic jobs (issue 3): `Pool::submit_every`, `submit_every_with`,
//! `SubmitOptions::delay`, `Context::tick` and the `Ticker` handle.
//!
//! - Schedule: a ticker runs every period, its runs numbered 0, 1, 2, ... by `ctx.tick()`,
//!   the first one period after the call (or after `SubmitOptions::delay`), each run no
//!   earlier than its due time and at most [`LATE`] after it.
//! - A ticker never overlaps itself, and a run that overruns makes the ticks it missed be
//!   skipped, not queued up.
//! - It stops on `Ticker::cancel` (also from inside its own run), on its options token,
//!   and on any pool shutdown (which returns: it does not wait for the chain forever); a
//!   running run sees the cancellation. No run starts once `Ticker::wait` returned.
//! - A run that fails or panics is counted and the chain goes on; a zero period is refused.
//! - Delayed jobs at scale: 100,000 jobs with random delays all fire once, none early, in
//!   due order; a cancelled delayed job frees its timer slot (and its closure) at once;
//!   pending delayed jobs neither slow submits of normal jobs nor cost much memory.
//!
//! Every wait is for an event, bounded by [`PATIENCE`]. To show that something does *not*
//! happen (a run after a cancel), a test watches for a few periods with a bounded wait on a
//! token nobody cancels ([`watch`]). Tests that measure time take a shared lock, and the
//! heavy ones (100,000 jobs, speed and memory measurements) an exclusive one, so that the
//! two kinds never share the machine's cores (see [`LOAD`]).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread;
use std::time::{Duration, Instant};

#[allow(dead_code)]
mod common;

use common::{patience, wait_until, XorShift};
use jobrunner::{
    CancelReason, CancelToken, Context, JobError, JobHandle, JobState, PanicPolicy, Pool,
    ShutdownMode, SubmitError, SubmitOptions, Ticker,
};

// ----- time and scheduling of the tests themselves ---------------------------------------

/// How late a run or a delayed job may start after its due time (the issue asks for 5 ms
/// on an idle machine; the bound is generous so that a busy machine does not fail it).
const LATE: Duration = Duration::from_millis(50);

/// Timing tests share it (read); heavy tests hold it alone (write), so that 100,000 jobs
/// on every core do not make a timing test late.
static LOAD: RwLock<()> = RwLock::new(());

/// For a test that measures lateness: may run beside other such tests.
fn timing() -> RwLockReadGuard<'static, ()> {
    LOAD.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// For a test that loads every core: runs alone.
fn heavy() -> RwLockWriteGuard<'static, ()> {
    LOAD.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `debug` in a debug build, `release` in an optimized one: the size of a stress test.
fn by_profile<T>(debug: T, release: T) -> T {
    if cfg!(debug_assertions) {
        debug
    } else {
        release
    }
}

/// Blocks for `how_long` on a token nobody cancels: a bounded watch for something that
/// must not happen meanwhile (a run of a stopped ticker).
fn watch(how_long: Duration) {
    assert_eq!(CancelToken::new().wait_timeout(how_long), None);
}

/// The next message of `rx`, within [`PATIENCE`].
#[track_caller]
fn recv<T>(rx: &Receiver<T>, what: &str) -> T {
    rx.recv_timeout(patience())
        .unwrap_or_else(|error| panic!("no {what} within {:?}: {error}", patience()))
}

/// Cancels a ticker when dropped. Declared after the pool, it is dropped before it when a
/// test fails, so that the drop of the pool (a drain) does not wait for a chain that a
/// broken ticker never ends: the test fails instead of hanging.
struct StopOnDrop(Ticker);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Cancels a token when dropped, for the same reason as [`StopOnDrop`]: the delayed jobs
/// under it would otherwise keep the drop of a failed test's pool waiting for an hour.
struct CancelOnDrop(CancelToken);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Waits for `ticker` to stop, within [`PATIENCE`].
#[track_caller]
fn assert_stops(ticker: &Ticker) {
    assert!(
        ticker.wait_timeout(patience()),
        "the ticker did not stop: {ticker:?}"
    );
    assert!(ticker.is_stopped());
}

fn pool(threads: usize) -> Pool {
    Pool::builder()
        .threads(threads)
        .thread_name("ticker-test")
        .build()
        .expect("a pool")
}

// ----- what a periodic job's runs report --------------------------------------------------

/// One run of a periodic job, as the run itself saw it.
#[derive(Debug, Clone, Copy)]
struct Run {
    tick: Option<u64>,
    start: Instant,
    end: Instant,
}

/// Receives the first `count` runs of a ticker, in the order they ended.
#[track_caller]
fn recv_runs(rx: &Receiver<Run>, count: usize) -> Vec<Run> {
    (0..count).map(|_| recv(rx, "run of the ticker")).collect()
}

/// The ticks of `runs`.
fn ticks(runs: &[Run]) -> Vec<Option<u64>> {
    runs.iter().map(|run| run.tick).collect()
}

/// Ticks `0..count`, as `ctx.tick()` reports them.
fn expected_ticks(count: usize) -> Vec<Option<u64>> {
    (0..count as u64).map(Some).collect()
}

/// Starts a ticker (`submit_every`, or `submit_every_with` given options) whose runs
/// report themselves on the returned channel after doing `work`.
fn reporting_ticker(
    pool: &Pool,
    options: Option<SubmitOptions>,
    period: Duration,
    work: impl Fn(&Context<'_>) + Send + Sync + 'static,
) -> (Ticker, Receiver<Run>) {
    let (tx, rx) = mpsc::channel();
    let body = move |ctx: &Context<'_>| {
        let start = Instant::now();
        work(ctx);
        let end = Instant::now();
        // The receiver may be gone once a test has seen enough runs.
        let _ = tx.send(Run {
            tick: ctx.tick(),
            start,
            end,
        });
        Ok::<(), Infallible>(())
    };
    let ticker = match options {
        Some(options) => pool.submit_every_with(options, period, body),
        None => pool.submit_every(period, body),
    };
    (ticker.expect("submit_every"), rx)
}

/// Asserts that run `k` of `runs` started no earlier than `first + k * period` (its due
/// time, for a ticker whose runs never overrun) and at most [`LATE`] after it.
#[track_caller]
fn assert_on_schedule(runs: &[Run], first: Instant, period: Duration) {
    for (k, run) in runs.iter().enumerate() {
        let due = first + period * k as u32;
        assert!(
            run.start >= due,
            "run {k} started {:?} before its due time",
            due - run.start
        );
        let late = run.start - due;
        // Under a slow tool (JR_TEST_SLOW) only "never early" is checked: valgrind delays
        // every thread by tens of milliseconds, so a lateness bound would measure valgrind.
        assert!(
            common::slow() || late <= LATE,
            "run {k} started {late:?} after its due time (allowed: {LATE:?})"
        );
    }
}

// ----- schedule ----------------------------------------------------------------------------

#[test]
fn runs_every_period_with_ticks_in_order_the_first_one_period_after_the_call() {
    let _load = timing();
    let pool = pool(2);
    let period = Duration::from_millis(20);
    let start = Instant::now();
    let (ticker, rx) = reporting_ticker(&pool, None, period, |_| {});
    let _stop_ticker = StopOnDrop(ticker.clone());
    let runs = recv_runs(&rx, 8);
    ticker.cancel();
    assert_stops(&ticker);

    assert_eq!(
        ticks(&runs),
        expected_ticks(8),
        "ctx.tick() counts the runs"
    );
    // Due times: start + (k + 1) * period (measured from before the call, so a little
    // early: a correct ticker can only look later than that, never earlier).
    assert_on_schedule(&runs, start + period, period);
    assert!(ticker.runs() >= 8);
    assert_eq!(ticker.failures(), 0);
}

#[test]
fn the_first_run_comes_after_the_options_delay_then_every_period() {
    let _load = timing();
    let pool = pool(2);
    let period = Duration::from_millis(20);
    // A first delay of three and a half periods: a ticker that ignored it would run at
    // one period, and one that added it to the period at four and a half.
    let delay = Duration::from_millis(70);
    let start = Instant::now();
    let (ticker, rx) = reporting_ticker(
        &pool,
        Some(SubmitOptions::new().delay(delay)),
        period,
        |_| {},
    );
    let _stop_ticker = StopOnDrop(ticker.clone());
    let runs = recv_runs(&rx, 6);
    ticker.cancel();
    assert_stops(&ticker);
    assert_eq!(ticks(&runs), expected_ticks(6));
    assert_on_schedule(&runs, start + delay, period);
}

#[test]
fn a_zero_options_delay_runs_the_first_tick_at_once() {
    let _load = timing();
    let pool = pool(2);
    let period = Duration::from_millis(30);
    let start = Instant::now();
    let (ticker, rx) = reporting_ticker(
        &pool,
        Some(SubmitOptions::new().delay(Duration::ZERO)),
        period,
        |_| {},
    );
    let _stop_ticker = StopOnDrop(ticker.clone());
    let runs = recv_runs(&rx, 3);
    ticker.cancel();
    assert_stops(&ticker);
    assert_eq!(ticks(&runs), expected_ticks(3));
    assert_on_schedule(&runs, start, period);
}

#[test]
fn a_job_that_is_not_periodic_has_no_tick() {
    let pool = pool(1);
    let plain = pool.submit(|ctx| Ok::<_, Infallible>(ctx.tick())).unwrap();
    assert_eq!(plain.wait().unwrap(), None);
    let delayed = pool
        .submit_with(
            SubmitOptions::new().delay(Duration::from_millis(1)),
            |ctx| Ok::<_, Infallible>(ctx.tick()),
        )
        .unwrap();
    assert_eq!(delayed.wait().unwrap(), None);
}

#[test]
fn a_ticker_never_overlaps_itself_when_its_runs_outlast_the_period() {
    let _load = timing();
    // Four workers: a ticker that scheduled its next run before this one ended would have
    // free workers to run the two at once.
    let pool = pool(4);
    let period = Duration::from_millis(5);
    let running = Arc::new(AtomicBool::new(false));
    let overlaps = Arc::new(AtomicUsize::new(0));
    let (ticker, rx) = reporting_ticker(&pool, None, period, {
        let running = Arc::clone(&running);
        let overlaps = Arc::clone(&overlaps);
        move |_| {
            if running.swap(true, Ordering::SeqCst) {
                overlaps.fetch_add(1, Ordering::SeqCst);
            }
            // The run's own work, two and a half periods long (not a wait for an event).
            thread::sleep(period * 5 / 2);
            running.store(false, Ordering::SeqCst);
        }
    });
    let _stop_ticker = StopOnDrop(ticker.clone());
    let runs = recv_runs(&rx, 8);
    ticker.cancel();
    assert_stops(&ticker);
    assert_eq!(overlaps.load(Ordering::SeqCst), 0, "two runs overlapped");
    assert_eq!(ticks(&runs), expected_ticks(8));
    for pair in runs.windows(2) {
        assert!(
            pair[1].start >= pair[0].end,
            "run {:?} started before run {:?} ended",
            pair[1].tick,
            pair[0].tick
        );
    }
}

#[test]
fn ticks_missed_by_an_overrunning_run_are_skipped_not_queued_up() {
    let _load = timing();
    let pool = pool(4);
    let period = Duration::from_millis(10);
    let overrun = period * 10;
    let (ticker, rx) = reporting_ticker(&pool, None, period, move |ctx| {
        if ctx.tick() == Some(0) {
            // The first run's work takes ten periods.
            thread::sleep(overrun);
        }
    });
    let _stop_ticker = StopOnDrop(ticker.clone());
    let runs = recv_runs(&rx, 8);
    ticker.cancel();
    assert_stops(&ticker);
    assert_eq!(
        ticks(&runs),
        expected_ticks(8),
        "ticks number the runs made"
    );
    let end_of_overrun = runs[0].end;
    // The run after the overrun is due at once; from there the schedule goes on a period
    // at a time. A ticker that queued up the missed ticks would run nine of them
    // back-to-back as soon as the overrun ended.
    for (k, run) in runs.iter().enumerate().skip(1) {
        let due = end_of_overrun + period * (k as u32 - 1);
        assert!(
            run.start >= due,
            "run {k} started {:?} after the overrun ended; skipping missed ticks, it is due \
             {:?} after it",
            run.start - end_of_overrun,
            due - end_of_overrun
        );
    }
    // Counted in a window: two and a half periods after the overrun hold the runs due at
    // +0, +1 and +2 periods, not the nine missed ticks.
    let window = period * 5 / 2;
    let in_window = runs
        .iter()
        .skip(1)
        .filter(|run| run.start < end_of_overrun + window)
        .count();
    assert!(
        in_window <= 3,
        "{in_window} runs started within {window:?} after the overrun: missed ticks were \
         queued up"
    );
    assert!(
        runs[1].start - end_of_overrun <= LATE,
        "the run after the overrun should start as soon as it ends"
    );
}

// ----- stopping -----------------------------------------------------------------------------

/// A ticker (on `pool`, every `period`) whose runs count their starts in the returned
/// counter and report each start on the channel.
fn counting_ticker(
    pool: &Pool,
    options: SubmitOptions,
    period: Duration,
) -> (Ticker, Arc<AtomicU64>, Receiver<u64>) {
    let started = Arc::new(AtomicU64::new(0));
    let (tx, rx) = mpsc::channel();
    let ticker = pool
        .submit_every_with(options, period, {
            let started = Arc::clone(&started);
            move |ctx| {
                started.fetch_add(1, Ordering::SeqCst);
                let _ = tx.send(ctx.tick().expect("a periodic run has a tick"));
                Ok::<(), Infallible>(())
            }
        })
        .expect("submit_every");
    (ticker, started, rx)
}

/// Asserts that `ticker` has stopped and that no run starts during the next ten periods.
#[track_caller]
fn assert_no_more_runs(ticker: &Ticker, started: &AtomicU64, period: Duration) {
    assert!(ticker.is_stopped());
    let before = started.load(Ordering::SeqCst);
    assert_eq!(
        ticker.runs(),
        before,
        "every run that started had ended when the ticker stopped"
    );
    watch(period * 10);
    assert_eq!(
        started.load(Ordering::SeqCst),
        before,
        "a run started after the ticker stopped"
    );
    assert_eq!(ticker.runs(), before);
}

#[test]
fn cancel_stops_the_ticker() {
    let pool = pool(2);
    let period = Duration::from_millis(5);
    let (ticker, started, rx) = counting_ticker(&pool, SubmitOptions::new(), period);
    let _stop_ticker = StopOnDrop(ticker.clone());
    for tick in 0..3 {
        assert_eq!(recv(&rx, "tick"), tick);
    }
    assert!(!ticker.is_stopped());
    assert!(ticker.cancel(), "the first cancel stops the ticker");
    ticker.wait();
    assert_no_more_runs(&ticker, &started, period);
    assert!(
        !ticker.cancel(),
        "a second cancel finds it stopping already"
    );
    assert_eq!(ticker.token().reason(), Some(CancelReason::Cancelled));
    // A clone shares the ticker.
    let clone = ticker.clone();
    assert!(clone.is_stopped());
    assert_eq!(clone.runs(), ticker.runs());
    // The pool is unaffected.
    assert_eq!(
        pool.submit(|_| Ok::<_, Infallible>(7)).unwrap().wait(),
        Ok(7)
    );
}

#[test]
fn cancel_before_the_first_run_means_no_run_at_all() {
    let pool = pool(2);
    let period = Duration::from_millis(20);
    let (ticker, started, _rx) = counting_ticker(&pool, SubmitOptions::new(), period);
    let _stop_ticker = StopOnDrop(ticker.clone());
    assert!(ticker.cancel());
    // The pending first run is cancelled at once: the ticker stops without waiting a
    // period.
    assert_stops(&ticker);
    assert_eq!(pool.delayed(), 0, "the cancelled first run left the timer");
    assert_no_more_runs(&ticker, &started, period);
    assert_eq!(started.load(Ordering::SeqCst), 0);
}

#[test]
fn a_ticker_cancelled_from_inside_its_own_run_stops() {
    let pool = pool(2);
    let period = Duration::from_millis(5);
    let cell: Arc<OnceLock<Ticker>> = Arc::new(OnceLock::new());
    let started = Arc::new(AtomicU64::new(0));
    // (tick that cancelled, whether the run saw itself cancelled right after)
    let (tx, rx) = mpsc::channel();
    let ticker = pool
        .submit_every(period, {
            let cell = Arc::clone(&cell);
            let started = Arc::clone(&started);
            move |ctx| {
                started.fetch_add(1, Ordering::SeqCst);
                let tick = ctx.tick().unwrap();
                if tick >= 2 {
                    // Set by the test right after `submit_every` returned, long before.
                    if let Some(me) = cell.get() {
                        assert!(me.cancel(), "already stopping at tick {tick}");
                        assert!(!me.is_stopped(), "stopped while its run still runs");
                        let _ = tx.send((tick, ctx.is_cancelled()));
                    }
                }
                Ok::<(), Infallible>(())
            }
        })
        .unwrap();
    let _stop_ticker = StopOnDrop(ticker.clone());
    assert!(cell.set(ticker.clone()).is_ok());
    let (tick, saw_cancel) = recv(&rx, "cancel from inside a run");
    assert!(
        saw_cancel,
        "the run that cancelled its ticker sees ctx.is_cancelled()"
    );
    assert_stops(&ticker);
    assert_eq!(
        ticker.runs(),
        tick + 1,
        "no run after the one that cancelled"
    );
    assert_eq!(ticker.failures(), 0);
    assert_no_more_runs(&ticker, &started, period);
    assert!(
        rx.try_recv().is_err(),
        "a second run cancelled the ticker again"
    );
}

#[test]
fn cancelling_the_options_token_stops_the_ticker() {
    let pool = pool(2);
    let period = Duration::from_millis(5);
    let parent = CancelToken::new();
    let (ticker, started, rx) = counting_ticker(&pool, SubmitOptions::new().token(&parent), period);
    let _stop_ticker = StopOnDrop(ticker.clone());
    assert!(
        !ticker.token().same_as(&parent),
        "the ticker's token is a child of the options token"
    );
    for tick in 0..2 {
        assert_eq!(recv(&rx, "tick"), tick);
    }
    assert!(parent.cancel_with(CancelReason::DeadlineExceeded));
    assert_stops(&ticker);
    assert_eq!(
        ticker.token().reason(),
        Some(CancelReason::DeadlineExceeded)
    );
    assert_no_more_runs(&ticker, &started, period);
}

#[test]
fn cancelling_the_tickers_own_token_stops_it_and_spares_the_options_token() {
    let pool = pool(2);
    let period = Duration::from_millis(5);
    let parent = CancelToken::new();
    let (ticker, started, rx) = counting_ticker(&pool, SubmitOptions::new().token(&parent), period);
    let _stop_ticker = StopOnDrop(ticker.clone());
    assert_eq!(recv(&rx, "tick"), 0);
    assert!(ticker.token().cancel());
    assert_stops(&ticker);
    assert!(
        !parent.is_cancelled(),
        "cancellation does not go up the tree"
    );
    assert_no_more_runs(&ticker, &started, period);
}

#[test]
fn a_ticker_with_an_already_cancelled_token_never_runs_and_stops_at_once() {
    let pool = pool(2);
    let period = Duration::from_millis(5);
    let parent = CancelToken::new();
    parent.cancel();
    let (ticker, started, _rx) =
        counting_ticker(&pool, SubmitOptions::new().token(&parent), period);
    let _stop_ticker = StopOnDrop(ticker.clone());
    assert_stops(&ticker);
    assert_no_more_runs(&ticker, &started, period);
    assert_eq!(started.load(Ordering::SeqCst), 0);
}

#[test]
fn a_running_run_sees_the_cancellation_of_its_ticker() {
    let pool = pool(2);
    let period = Duration::from_millis(5);
    let (started_tx, started_rx) = mpsc::channel();
    let (seen_tx, seen_rx) = mpsc::channel();
    let ticker = pool
        .submit_every(period, move |ctx| {
            let _ = started_tx.send(ctx.tick());
            // Blocks until the run's token is cancelled (bounded, in case it never is).
            let reason = ctx.token().wait_timeout(patience());
            let _ = seen_tx.send((reason, ctx.is_cancelled(), ctx.cancel_reason()));
            Ok::<(), Infallible>(())
        })
        .unwrap();
    let _stop_ticker = StopOnDrop(ticker.clone());
    assert_eq!(recv(&started_rx, "first run"), Some(0));
    assert!(!ticker.is_stopped(), "stopped while a run runs");
    ticker.cancel();
    let (reason, cancelled, why) = recv(&seen_rx, "the run's report");
    assert_eq!(reason, Some(CancelReason::Cancelled));
    assert!(cancelled, "ctx.is_cancelled() after Ticker::cancel");
    assert_eq!(why, Some(CancelReason::Cancelled));
    assert_stops(&ticker);
    assert_eq!(ticker.runs(), 1);
    watch(period * 10);
    assert!(started_rx.try_recv().is_err(), "a run after the cancel");
}

// ----- pool shutdown ----------------------------------------------------------------------

/// Shuts `pool` down on another thread and waits (at most [`PATIENCE`]) for it to return:
/// a shutdown that waited for a ticker's chain forever fails the test instead of hanging.
#[track_caller]
fn shutdown_returns(pool: Pool, mode: ShutdownMode) -> jobrunner::ShutdownReport {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let report = pool.shutdown(mode, None);
        let _ = tx.send(report);
    });
    recv(&rx, "return of the shutdown")
}

/// Two tickers on one pool, one idle between runs and one holding its worker in a run
/// until the pool shuts down; the pool then shuts down in `mode` and must stop both.
fn shutdown_stops_tickers(mode: ShutdownMode) {
    let pool = pool(2);
    let period = Duration::from_millis(5);
    let (idle, idle_started, idle_rx) = counting_ticker(&pool, SubmitOptions::new(), period);
    let _stop_idle = StopOnDrop(idle.clone());
    let busy_started = Arc::new(AtomicU64::new(0));
    let (busy_tx, busy_rx) = mpsc::channel();
    let busy = pool
        .submit_every(period, {
            let busy_started = Arc::clone(&busy_started);
            move |ctx| {
                busy_started.fetch_add(1, Ordering::SeqCst);
                if ctx.tick() == Some(1) {
                    let _ = busy_tx.send(());
                    wait_until("the pool shuts down", || ctx.pool().is_shut_down());
                    // Any shutdown stops the ticker, which this run sees. (Returning as
                    // soon as the pool says it is shutting down would race with the
                    // shutdown's cancel of the tickers: the next run, due at once, could
                    // start in between.)
                    wait_until("the run sees the ticker stop", || ctx.is_cancelled());
                }
                Ok::<(), Infallible>(())
            }
        })
        .unwrap();
    let _stop_busy = StopOnDrop(busy.clone());
    for tick in 0..2 {
        assert_eq!(recv(&idle_rx, "tick of the idle ticker"), tick);
    }
    recv(&busy_rx, "the busy ticker's second run");

    let report = shutdown_returns(pool.clone(), mode);
    assert!(report.is_complete(), "{report:?}");
    assert_stops(&idle);
    assert_stops(&busy);
    assert_eq!(
        busy.runs(),
        2,
        "the busy ticker stopped after its run in progress"
    );
    assert_no_more_runs(&idle, &idle_started, period);
    assert_no_more_runs(&busy, &busy_started, period);
    assert!(matches!(
        pool.submit_every(period, |_| Ok::<(), Infallible>(())),
        Err(SubmitError::Shutdown)
    ));
}

#[test]
fn a_drain_shutdown_stops_tickers_and_returns() {
    shutdown_stops_tickers(ShutdownMode::Drain);
}

#[test]
fn a_cancel_shutdown_stops_tickers_and_returns() {
    shutdown_stops_tickers(ShutdownMode::Cancel);
}

#[test]
fn a_drain_then_cancel_shutdown_stops_tickers_and_returns() {
    shutdown_stops_tickers(ShutdownMode::DrainThenCancel);
}

#[test]
fn dropping_the_last_pool_handle_stops_its_tickers() {
    let pool = pool(2);
    let period = Duration::from_millis(5);
    let (ticker, started, rx) = counting_ticker(&pool, SubmitOptions::new(), period);
    let _stop_ticker = StopOnDrop(ticker.clone());
    assert_eq!(recv(&rx, "tick"), 0);
    // The drop of the last handle drains the pool: it must not wait for the chain.
    let (tx, dropped) = mpsc::channel();
    thread::spawn(move || {
        drop(pool);
        let _ = tx.send(());
    });
    recv(&dropped, "return of the pool's drop");
    assert_stops(&ticker);
    assert_no_more_runs(&ticker, &started, period);
}

#[test]
fn a_shutdown_from_inside_a_run_stops_its_ticker() {
    let pool = pool(2);
    let period = Duration::from_millis(5);
    let started = Arc::new(AtomicU64::new(0));
    let ticker = pool
        .submit_every(period, {
            let started = Arc::clone(&started);
            move |ctx| {
                if started.fetch_add(1, Ordering::SeqCst) == 1 {
                    ctx.pool().shutdown(ShutdownMode::Drain, None);
                }
                Ok::<(), Infallible>(())
            }
        })
        .unwrap();
    let _stop_ticker = StopOnDrop(ticker.clone());
    assert_stops(&ticker);
    assert_eq!(ticker.runs(), 2);
    assert_no_more_runs(&ticker, &started, period);
}

// ----- failures -----------------------------------------------------------------------------

#[test]
fn failing_and_panicking_runs_are_counted_and_the_chain_goes_on() {
    let panics = Arc::new(AtomicUsize::new(0));
    let pool = Pool::builder()
        .threads(2)
        .panic_policy(PanicPolicy::Handler(Arc::new({
            let panics = Arc::clone(&panics);
            move |message: &str| {
                assert!(message.contains("run 3 panics"), "{message}");
                panics.fetch_add(1, Ordering::SeqCst);
            }
        })))
        .build()
        .unwrap();
    let period = Duration::from_millis(5);
    let cell: Arc<OnceLock<Ticker>> = Arc::new(OnceLock::new());
    let (tx, rx) = mpsc::channel();
    let ticker = pool
        .submit_every(period, {
            let cell = Arc::clone(&cell);
            move |ctx| {
                let tick = ctx.tick().unwrap();
                let _ = tx.send(tick);
                match tick {
                    1 | 4 => Err(format!("run {tick} fails")),
                    3 => panic!("run 3 panics"),
                    6 => {
                        // Waits for the handle (set right after submit_every returned).
                        wait_until("the test hands the ticker over", || cell.get().is_some());
                        cell.get().unwrap().cancel();
                        Ok(())
                    }
                    _ => Ok(()),
                }
            }
        })
        .unwrap();
    let _stop_ticker = StopOnDrop(ticker.clone());
    assert!(cell.set(ticker.clone()).is_ok());
    assert_stops(&ticker);
    let seen: Vec<u64> = rx.try_iter().collect();
    assert_eq!(
        seen,
        (0..=6).collect::<Vec<_>>(),
        "runs after failures went on"
    );
    assert_eq!(ticker.runs(), 7);
    assert_eq!(ticker.failures(), 3, "two errors and a panic");
    assert_eq!(
        panics.load(Ordering::SeqCst),
        1,
        "the panic policy saw the panic"
    );
}

#[test]
fn a_zero_period_is_refused() {
    let pool = pool(1);
    let called = Arc::new(AtomicBool::new(false));
    let body = {
        let called = Arc::clone(&called);
        move |_: &Context<'_>| {
            called.store(true, Ordering::SeqCst);
            Ok::<(), Infallible>(())
        }
    };
    assert!(matches!(
        pool.submit_every(Duration::ZERO, body.clone()),
        Err(SubmitError::ZeroPeriod)
    ));
    assert!(matches!(
        pool.submit_every_with(
            SubmitOptions::new().delay(Duration::from_millis(1)),
            Duration::ZERO,
            body,
        ),
        Err(SubmitError::ZeroPeriod)
    ));
    assert_eq!(pool.delayed(), 0);
    assert_eq!(pool.stats().submitted, 0, "nothing was submitted");
    // The smallest period above zero is accepted.
    let ticker = pool
        .submit_every(Duration::from_nanos(1), |_| Ok::<(), Infallible>(()))
        .unwrap();
    let _stop_ticker = StopOnDrop(ticker.clone());
    wait_until("a few runs", || ticker.runs() >= 3);
    ticker.cancel();
    assert_stops(&ticker);
    assert!(!called.load(Ordering::SeqCst));
}

// ----- delayed jobs -------------------------------------------------------------------------

#[test]
fn delayed_jobs_fire_no_earlier_than_due_and_soon_after() {
    let _load = timing();
    let pool = pool(2);
    let jobs: Vec<_> = (1..=20u64)
        .rev()
        .map(|i| {
            let delay = Duration::from_millis(5 * i);
            let due = Instant::now() + delay;
            let job = pool
                .submit_with(SubmitOptions::new().delay(delay), |_| {
                    Ok::<_, Infallible>(Instant::now())
                })
                .unwrap();
            assert_eq!(job.state(), JobState::Delayed);
            (due, job)
        })
        .collect();
    for (due, job) in jobs {
        let started = job.wait().unwrap();
        assert!(started >= due, "fired {:?} early", due - started);
        assert!(
            started - due <= LATE,
            "fired {:?} late (allowed: {LATE:?})",
            started - due
        );
    }
}

#[test]
fn a_cancelled_delayed_job_frees_its_slot_at_once() {
    let pool = pool(2);
    let count = 1_000;
    let token = CancelToken::new();
    let _cancel = CancelOnDrop(token.clone());
    // What the closures hold: gone as soon as their job is cancelled.
    let captured = Arc::new(());
    let jobs: Vec<_> = (0..count)
        .map(|_| {
            let captured = Arc::clone(&captured);
            pool.submit_with(
                SubmitOptions::new()
                    .delay(Duration::from_secs(3600))
                    .token(&token),
                move |_| {
                    let _ = &captured;
                    Ok::<(), Infallible>(())
                },
            )
            .unwrap()
        })
        .collect();
    assert_eq!(pool.delayed(), count);
    assert_eq!(Arc::strong_count(&captured), count + 1);

    let mut jobs = jobs.into_iter();
    let first = jobs.next().unwrap();
    assert_eq!(first.state(), JobState::Delayed);
    assert!(first.cancel());
    // At once: no wait for the timer thread or for the due time.
    assert_eq!(
        pool.delayed(),
        count - 1,
        "the cancelled job left the timer"
    );
    assert_eq!(
        Arc::strong_count(&captured),
        count,
        "its closure was dropped"
    );
    assert_eq!(first.state(), JobState::Cancelled);
    assert_eq!(
        first.wait(),
        Err(JobError::Cancelled(CancelReason::Cancelled))
    );

    // The rest through their token.
    assert!(token.cancel());
    assert_eq!(pool.delayed(), 0);
    assert_eq!(Arc::strong_count(&captured), 1);
    for job in jobs {
        assert_eq!(job.state(), JobState::Cancelled);
    }
    // Nothing left for the drain to wait for.
    assert!(shutdown_returns(pool, ShutdownMode::Drain).is_complete());
}

/// What became of `count` delayed jobs with random delays (see
/// [`fire_random_delayed_jobs`]), per job.
struct Fired {
    /// The job's delay.
    delay: Vec<Duration>,
    /// The clock just before its submit: its due time is at least `before + delay`.
    before: Vec<Instant>,
    /// The clock just after its submit: its due time is at most `after + delay`.
    after: Vec<Instant>,
    /// Its rank among the starts (0 for the first job that started).
    order: Vec<u32>,
    /// When it started.
    start: Vec<Instant>,
    /// Scans of the jobs' states made while some were still delayed.
    scans: usize,
}

impl Fired {
    /// The earliest due time job `i` may have.
    fn earliest(&self, i: usize) -> Instant {
        self.before[i] + self.delay[i]
    }

    /// The latest due time job `i` may have.
    fn latest(&self, i: usize) -> Instant {
        self.after[i] + self.delay[i]
    }
}

/// Submits `count` delayed jobs with seeded random delays in `1..=200` ms to `pool`, each
/// recording once it runs its start rank and time, and checks that all run exactly once.
///
/// Meanwhile a thread watches the order the timer releases them in (a job leaves
/// `Delayed` when released), from the first submit to the last release: it scans the
/// states of the jobs submitted so far from the latest due time to the earliest, and a job
/// found still delayed *after* a job due strictly later was found released is proof that
/// the later one was released first. States never return to `Delayed`, so a correct timer
/// cannot be caught that way, whatever the timing.
fn fire_random_delayed_jobs(pool: &Pool, count: usize, seed: u64) -> Fired {
    let mut rng = XorShift::new(seed);
    let runs: Arc<Vec<AtomicU32>> = Arc::new((0..count).map(|_| AtomicU32::new(0)).collect());
    let order: Arc<Vec<AtomicU32>> = Arc::new((0..count).map(|_| AtomicU32::new(0)).collect());
    let starts: Arc<Vec<OnceLock<Instant>>> =
        Arc::new((0..count).map(|_| OnceLock::new()).collect());
    // Per submitted job, for the watcher: its earliest and latest due time, its handle.
    let published: Arc<Vec<OnceLock<(Instant, Instant, JobHandle)>>> =
        Arc::new((0..count).map(|_| OnceLock::new()).collect());
    let submitted = Arc::new(AtomicUsize::new(0));
    let watcher = thread::spawn({
        let published = Arc::clone(&published);
        let submitted = Arc::clone(&submitted);
        move || watch_releases(&published, &submitted)
    });
    let next = Arc::new(AtomicU32::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let mut delay = Vec::with_capacity(count);
    let mut before = Vec::with_capacity(count);
    let mut after = Vec::with_capacity(count);
    let mut jobs = Vec::with_capacity(count);
    for i in 0..count {
        let d = Duration::from_millis(rng.range(1, 200));
        let (runs, order, starts, next, done) = (
            Arc::clone(&runs),
            Arc::clone(&order),
            Arc::clone(&starts),
            Arc::clone(&next),
            Arc::clone(&done),
        );
        let submit_start = Instant::now();
        let job = pool
            .submit_with(SubmitOptions::new().delay(d), move |_| {
                let _ = starts[i].set(Instant::now());
                order[i].store(next.fetch_add(1, Ordering::SeqCst), Ordering::SeqCst);
                runs[i].fetch_add(1, Ordering::SeqCst);
                done.fetch_add(1, Ordering::SeqCst);
                Ok::<(), Infallible>(())
            })
            .expect("submit of a delayed job");
        let submit_end = Instant::now();
        let _ = published[i].set((submit_start + d, submit_end + d, job.handle()));
        submitted.store(i + 1, Ordering::Release);
        before.push(submit_start);
        after.push(submit_end);
        delay.push(d);
        jobs.push(job);
    }
    let scans = match watcher.join() {
        Ok(scans) => scans,
        Err(panic) => std::panic::resume_unwind(panic),
    };
    for job in jobs {
        assert_eq!(job.wait(), Ok(()));
    }
    assert_eq!(done.load(Ordering::SeqCst), count);
    assert_eq!(pool.delayed(), 0);
    let once = runs
        .iter()
        .filter(|r| r.load(Ordering::SeqCst) == 1)
        .count();
    assert_eq!(once, count, "every delayed job runs exactly once");
    Fired {
        delay,
        before,
        after,
        order: order.iter().map(|o| o.load(Ordering::SeqCst)).collect(),
        start: starts.iter().map(|s| *s.get().unwrap()).collect(),
        scans,
    }
}

/// The watcher of [`fire_random_delayed_jobs`]: scans the jobs submitted so far until all
/// are submitted and released; panics on a release out of due order. Returns the scans
/// made.
fn watch_releases(
    published: &[OnceLock<(Instant, Instant, JobHandle)>],
    submitted: &AtomicUsize,
) -> usize {
    let deadline = Instant::now() + patience();
    let mut scans = 0;
    loop {
        let count = submitted.load(Ordering::Acquire);
        let mut jobs: Vec<(usize, &(Instant, Instant, JobHandle))> = published[..count]
            .iter()
            .map(|job| job.get().expect("published before counted"))
            .enumerate()
            .collect();
        jobs.sort_unstable_by_key(|(_, (earliest, _, _))| std::cmp::Reverse(*earliest));
        // The latest earliest-due-time among the jobs found released so far in this scan.
        let mut released: Option<(usize, Instant)> = None;
        let mut still_delayed = 0;
        for &(i, (earliest, latest, handle)) in &jobs {
            if handle.state() == JobState::Delayed {
                still_delayed += 1;
                if let Some((later, due)) = released {
                    assert!(
                        *latest >= due,
                        "job {later} was released while job {i}, due {:?} earlier, was \
                         still delayed",
                        due - *latest
                    );
                }
            } else if released.is_none_or(|(_, due)| *earliest > due) {
                released = Some((i, *earliest));
            }
        }
        scans += 1;
        if still_delayed == 0 && count == published.len() {
            return scans;
        }
        assert!(
            Instant::now() < deadline,
            "{still_delayed} jobs still delayed after {:?}",
            patience()
        );
    }
}

/// Each job started no earlier than its due time.
fn assert_none_early(fired: &Fired) {
    for i in 0..fired.delay.len() {
        let due = fired.earliest(i);
        assert!(
            fired.start[i] >= due,
            "job {i} ({:?}) started {:?} before its due time",
            fired.delay[i],
            due - fired.start[i]
        );
    }
}

/// The latest start after the latest possible due time.
fn max_lateness(fired: &Fired) -> Duration {
    (0..fired.delay.len())
        .map(|i| fired.start[i].saturating_duration_since(fired.latest(i)))
        .max()
        .unwrap_or_default()
}

#[test]
fn many_delayed_jobs_with_random_delays_fire_once_none_early_in_due_order() {
    let _load = heavy();
    // One worker: it takes the released jobs from the pool's FIFO injector one by one, so
    // the order they start in is the order the timer released them in, and the order can
    // be checked for every job (the scans only see the releases after the submits).
    let pool = pool(1);
    let count = by_profile(10_000, 100_000);
    let fired = fire_random_delayed_jobs(&pool, count, 0x5eed_0003);
    assert_none_early(&fired);
    // Job j started after job i: j must not be due strictly earlier than i. Due times are
    // known within [earliest, latest], so only a real inversion can fail this: j's latest
    // possible due time before the earliest possible one of a job started before it.
    let mut by_start: Vec<usize> = (0..count).collect();
    by_start.sort_by_key(|&i| fired.order[i]);
    let mut started_due: Option<(usize, Instant)> = None;
    for &j in &by_start {
        if let Some((i, due)) = started_due {
            assert!(
                fired.latest(j) >= due,
                "job {j} ({:?}) started after job {i} ({:?}), due {:?} later",
                fired.delay[j],
                fired.delay[i],
                due - fired.latest(j)
            );
        }
        if started_due.is_none_or(|(_, due)| fired.earliest(j) > due) {
            started_due = Some((j, fired.earliest(j)));
        }
    }
    eprintln!(
        "{count} delayed jobs on 1 worker: latest start {:?} after due, {} release scans",
        max_lateness(&fired),
        fired.scans
    );
}

#[test]
fn many_delayed_jobs_on_several_workers_fire_once_none_early_in_due_order() {
    let _load = heavy();
    // Four workers: the start order is the release order blurred by the workers running
    // in parallel, so the order is checked on the releases themselves (the scans).
    let pool = pool(4);
    let count = by_profile(10_000, 100_000);
    let fired = fire_random_delayed_jobs(&pool, count, 0x5eed_0004);
    assert_none_early(&fired);
    assert!(
        fired.scans > 0,
        "no job was still delayed after the submits"
    );
    eprintln!(
        "{count} delayed jobs on 4 workers: latest start {:?} after due, {} release scans",
        max_lateness(&fired),
        fired.scans
    );
}

/// Submits `count` no-op jobs and returns how long the submits took (not the runs: it
/// waits for them afterwards, outside the measurement).
fn time_plain_submits(pool: &Pool, count: usize) -> Duration {
    let done = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    for _ in 0..count {
        let done = Arc::clone(&done);
        drop(
            pool.submit(move |_| {
                done.fetch_add(1, Ordering::Relaxed);
                Ok::<(), Infallible>(())
            })
            .unwrap(),
        );
    }
    let took = start.elapsed();
    wait_until("the plain jobs ran", || {
        done.load(Ordering::Relaxed) == count
    });
    took
}

#[test]
fn pending_delayed_jobs_do_not_slow_submits_of_normal_jobs() {
    let _load = heavy();
    let pool = pool(2);
    let delayed = by_profile(10_000, 100_000);
    let plain = by_profile(10_000, 100_000);
    // Warm up (threads, allocator), then the best of three rounds each way, interleaved.
    time_plain_submits(&pool, plain);
    let mut without = Duration::MAX;
    let mut with = Duration::MAX;
    for _ in 0..3 {
        without = without.min(time_plain_submits(&pool, plain));
        let token = CancelToken::new();
        let _cancel = CancelOnDrop(token.clone());
        for _ in 0..delayed {
            drop(
                pool.submit_with(
                    SubmitOptions::new()
                        .delay(Duration::from_secs(3600))
                        .token(&token),
                    |_| Ok::<(), Infallible>(()),
                )
                .unwrap(),
            );
        }
        assert_eq!(pool.delayed(), delayed);
        with = with.min(time_plain_submits(&pool, plain));
        assert_eq!(
            pool.delayed(),
            delayed,
            "the delayed jobs are still pending"
        );
        assert!(token.cancel());
        assert_eq!(pool.delayed(), 0);
    }
    eprintln!("{plain} submits: {without:?} alone, {with:?} with {delayed} delayed jobs pending");
    assert!(
        with <= without * 3,
        "{plain} submits took {with:?} with {delayed} delayed jobs pending, {without:?} \
         without"
    );
}

// ----- memory of pending delayed jobs -----------------------------------------------------

/// The system allocator, counting per thread the bytes allocated minus the bytes freed by
/// that thread: a measure of what a thread's work left allocated, insensitive to the
/// other tests running meanwhile.
struct CountingAlloc;

thread_local! {
    static NET_BYTES: Cell<isize> = const { Cell::new(0) };
}

fn count_bytes(delta: isize) {
    // `try_with`: the thread-local may be gone while a thread exits.
    let _ = NET_BYTES.try_with(|net| net.set(net.get() + delta));
}

// SAFETY: forwards every call to `System` unchanged; the bookkeeping does not allocate.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_bytes(layout.size() as isize);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_bytes(layout.size() as isize);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count_bytes(-(layout.size() as isize));
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_bytes(new_size as isize - layout.size() as isize);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc;

fn net_bytes() -> isize {
    NET_BYTES.with(Cell::get)
}

/// Net bytes this thread allocates submitting `count` jobs with `options` and `token`
/// (the jobs stay pending: queued behind a blocked worker, or delayed for an hour). The
/// jobs are cancelled through `token` afterwards.
fn bytes_held_by_pending_jobs(pool: &Pool, count: usize, options: &SubmitOptions) -> isize {
    let token = CancelToken::new();
    let _cancel = CancelOnDrop(token.clone());
    let before = net_bytes();
    for _ in 0..count {
        // Submitted from this thread, which allocates everything the jobs hold while they
        // wait (the job, its timer entry, its token registration).
        drop(
            pool.submit_with(options.clone().token(&token), |_| Ok::<(), Infallible>(()))
                .unwrap(),
        );
    }
    net_bytes() - before
}

#[test]
fn pending_delayed_jobs_cost_little_memory() {
    let _load = heavy();
    let pool = pool(1);
    let count = 100_000;
    // The timer thread starts on the first delayed job: not part of the measurement.
    pool.submit_with(SubmitOptions::new().delay(Duration::from_millis(1)), |_| {
        Ok::<(), Infallible>(())
    })
    .unwrap()
    .wait()
    .unwrap();

    // The baseline: as many plain jobs queued behind a worker held by a job.
    let (started_tx, started_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let blocker = pool
        .submit(move |_| {
            started_tx.send(()).unwrap();
            release_rx.recv().unwrap();
            Ok::<(), Infallible>(())
        })
        .unwrap();
    started_rx.recv().unwrap();
    let queued = bytes_held_by_pending_jobs(&pool, count, &SubmitOptions::new());
    release_tx.send(()).unwrap();
    blocker.wait().unwrap();

    let hour = SubmitOptions::new().delay(Duration::from_secs(3600));
    let delayed = bytes_held_by_pending_jobs(&pool, count, &hour);
    assert_eq!(
        pool.delayed(),
        0,
        "cancelling the token freed every timer entry"
    );

    let per_queued = queued / count as isize;
    let per_delayed = delayed / count as isize;
    eprintln!(
        "{count} pending jobs: queued {:.1} MB ({per_queued} bytes each), delayed {:.1} MB \
         ({per_delayed} bytes each)",
        queued as f64 / 1e6,
        delayed as f64 / 1e6,
    );
    // Measured: about 131 bytes a queued job and 170 a delayed one (the recycled blocks
    // and the attribution of frees to threads make it vary run to run). Both hold the
    // job's 88-byte block (a 96-byte malloc chunk) and a token registration (about 31
    // bytes in the token's slab); a queued job adds its slot in the injector's segments
    // (24 bytes), a delayed one its timer entry: 32 bytes (a two-word key and the job
    // reference) in a B-tree whose leaves sequential due times leave a little over half
    // full, about 55 bytes in all, 5.5 MB per 100,000 jobs. The bound fails on a timer that allocates per entry,
    // keeps a thread or a buffer per job, or leaks cancelled entries.
    let timer_excess = delayed - queued;
    assert!(
        timer_excess <= 80 * count as isize,
        "{count} delayed jobs hold {delayed} bytes, {timer_excess} more than as many queued \
         ones (limit: 80 bytes a job)"
    );
}
