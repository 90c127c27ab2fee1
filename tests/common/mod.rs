//! Scaffolding shared by the integration tests: how long a test waits, pools, jobs that
//! hold their worker until released, job bodies that count or flag their runs, a meeting
//! point for jobs on every worker, a seeded xorshift generator, runs of one test of the
//! binary in a child process, and the assertions the test files have in common.
//!
//! Every test binary declares `mod common;` and uses its own subset of it (hence the
//! `#[allow(dead_code)]` on each declaration). Nothing here sleeps: every wait is for an
//! event, bounded by [`PATIENCE`] so that a broken feature fails a test instead of hanging
//! it.

use std::fmt::Debug;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex, Once, OnceLock};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use jobrunner::{CancelReason, Context, Job, JobError, Pool};

// ----- time ------------------------------------------------------------------------------

/// How long any awaited event may take before a test gives up on it (so that a broken
/// feature fails the test instead of hanging it), at full speed: tests wait for
/// [`patience()`], which stretches it under a slow tool.
pub(crate) const PATIENCE: Duration = Duration::from_secs(10);

/// How many times longer an awaited event may take under [`slow()`]: valgrind runs the
/// tests 20 to 50 times slower, on one core.
const SLOW_PATIENCE_FACTOR: u32 = 30;

/// Whether the tests run under a slow tool (valgrind, a sanitizer): the environment
/// variable `JR_TEST_SLOW` is set to anything but empty or `0` (the C suite's knob,
/// `jr_test_scale` in tests/c/jr_test.h). Stress loops then take their small sizes
/// ([`by_profile`]), waits are stretched ([`patience()`]), and the few tests that measure
/// timing skip themselves ([`skip_if_slow`]).
pub(crate) fn slow() -> bool {
    static SLOW: OnceLock<bool> = OnceLock::new();
    *SLOW
        .get_or_init(|| std::env::var_os("JR_TEST_SLOW").is_some_and(|v| !v.is_empty() && v != "0"))
}

/// How long any awaited event may take before a test gives up on it: [`PATIENCE`],
/// stretched under a slow tool ([`slow()`]).
pub(crate) fn patience() -> Duration {
    PATIENCE * slow_factor()
}

/// How many times longer anything awaited may take: [`SLOW_PATIENCE_FACTOR`] under a
/// slow tool ([`slow()`]), else 1.
pub(crate) fn slow_factor() -> u32 {
    if slow() {
        SLOW_PATIENCE_FACTOR
    } else {
        1
    }
}

/// Skips the calling test (returns true, having said why on stderr) under a slow tool,
/// for a test that measures timing that a slow tool distorts: `if skip_if_slow("...")
/// { return; }`.
pub(crate) fn skip_if_slow(why: &str) -> bool {
    if slow() {
        eprintln!("skipped under JR_TEST_SLOW: {why}");
    }
    slow()
}

/// How long a test watches for an event that must not happen (yet).
pub(crate) const NOT_YET: Duration = Duration::from_millis(100);

/// `debug` in a debug build or under a slow tool ([`slow()`]), `release` in an optimized
/// one: the size of a stress test.
pub(crate) fn by_profile<T>(debug: T, release: T) -> T {
    if cfg!(debug_assertions) || slow() {
        debug
    } else {
        release
    }
}

/// Spins (yielding) until `done()`; panics if it takes longer than [`PATIENCE`].
#[track_caller]
pub(crate) fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + patience();
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        thread::yield_now();
    }
}

/// Receives `count` messages from `rx`, each within [`PATIENCE`]; panics with `what` if one
/// does not come.
#[track_caller]
pub(crate) fn recv_n<T>(rx: &Receiver<T>, count: usize, what: &str) -> Vec<T> {
    (0..count)
        .map(|i| {
            rx.recv_timeout(patience())
                .unwrap_or_else(|e| panic!("{what} ({i} of {count} came): {e}"))
        })
        .collect()
}

/// Asserts that nothing arrives on `rx` within `watch`: a bounded look for an event that
/// must not have happened (yet).
#[track_caller]
pub(crate) fn assert_not_yet<T: Debug>(rx: &Receiver<T>, watch: Duration, what: &str) {
    match rx.recv_timeout(watch) {
        Err(RecvTimeoutError::Timeout) => {}
        other => panic!("{what}: {other:?}"),
    }
}

/// Threads that each block in a wait and then report what it returned.
pub(crate) struct Waiters<T> {
    results: Receiver<T>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl<T: Debug + Send + 'static> Waiters<T> {
    /// Spawns a thread for each of `waits`, which sends what its wait returns.
    pub(crate) fn spawn<W>(waits: impl IntoIterator<Item = W>) -> Self
    where
        W: FnOnce() -> T + Send + 'static,
    {
        let (tx, results) = channel();
        let threads = waits
            .into_iter()
            .map(|wait| {
                let tx = tx.clone();
                thread::spawn(move || tx.send(wait()).unwrap())
            })
            .collect();
        Waiters { results, threads }
    }

    /// Asserts that no waiter returns within `watch`.
    #[track_caller]
    pub(crate) fn assert_blocked(&self, watch: Duration, what: &str) {
        assert_not_yet(&self.results, watch, what);
    }

    /// Waits for every waiter (each within [`PATIENCE`]) and returns what their waits
    /// returned, in the order they returned.
    #[track_caller]
    pub(crate) fn finish(self) -> Vec<T> {
        let results = recv_n(&self.results, self.threads.len(), "a waiter never returned");
        for thread in self.threads {
            thread.join().unwrap();
        }
        results
    }
}

// ----- panics ----------------------------------------------------------------------------

/// Put in the message of every panic a test causes on purpose; the hook stays quiet on them.
pub(crate) const EXPECTED: &str = "expected test panic";

/// Silences the default panic hook for the panics the tests cause on purpose (thousands of
/// them in a stress test), and only for those: any other panic is reported as usual.
pub(crate) fn quiet_expected_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
            if !message.is_some_and(|m| m.contains(EXPECTED)) {
                default(info);
            }
        }));
    });
}

// ----- pools and jobs --------------------------------------------------------------------

/// A pool of `threads` workers, otherwise the builder's defaults.
pub(crate) fn pool(threads: usize) -> Pool {
    Pool::builder().threads(threads).build().unwrap()
}

/// A pool of `threads` workers whose queue holds at most `capacity` jobs.
pub(crate) fn bounded_pool(threads: usize, capacity: usize) -> Pool {
    Pool::builder()
        .threads(threads)
        .queue_capacity(capacity)
        .build()
        .unwrap()
}

/// The name of the calling thread.
pub(crate) fn thread_name() -> Option<String> {
    thread::current().name().map(str::to_owned)
}

/// A job body that counts its runs in `ran`.
pub(crate) fn counting(
    ran: &Arc<AtomicUsize>,
) -> impl FnOnce(&Context<'_>) -> Result<(), ()> + Send + 'static {
    let ran = Arc::clone(ran);
    move |_| {
        ran.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// A job body that sets `ran` when it runs.
pub(crate) fn flagging(
    ran: &Arc<AtomicBool>,
) -> impl FnOnce(&Context<'_>) -> Result<(), ()> + Send + 'static {
    let ran = Arc::clone(ran);
    move |_| {
        ran.store(true, Ordering::SeqCst);
        Ok(())
    }
}

/// Submits, through `pool`, a detached job that sends `report(ctx)` on `tx`.
pub(crate) fn detach_reporting<T: Send + 'static>(
    pool: &Pool,
    tx: &Sender<T>,
    report: impl FnOnce(&Context<'_>) -> T + Send + 'static,
) {
    let tx = tx.clone();
    drop(
        pool.submit(move |ctx| {
            tx.send(report(ctx)).unwrap();
            Ok::<_, ()>(())
        })
        .unwrap(),
    );
}

/// Counts its drops, to see a value released exactly once.
pub(crate) struct DropCounter(pub(crate) Arc<AtomicUsize>);

impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Sets its flag when dropped: shows that a closure was dropped.
pub(crate) struct DropFlag(pub(crate) Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Submits a job that sends its thread on the returned receiver when it starts, then holds
/// its worker until the returned sender sends (or is dropped, or [`PATIENCE`] passes), and
/// ends with `then(ctx, released)`, where `released` says whether the sender sent.
pub(crate) fn submit_held<T, E>(
    pool: &Pool,
    then: impl FnOnce(&Context<'_>, bool) -> Result<T, E> + Send + 'static,
) -> (Job<T, E>, Receiver<ThreadId>, Sender<()>)
where
    T: Send + 'static,
    E: Send + 'static,
{
    let (started_tx, started) = channel();
    let (release, release_rx) = channel::<()>();
    let job = pool
        .submit(move |ctx| {
            started_tx.send(thread::current().id()).unwrap();
            let released = release_rx.recv_timeout(patience()).is_ok();
            then(ctx, released)
        })
        .unwrap();
    (job, started, release)
}

/// A running job that holds its worker until released (or until [`PATIENCE`] passes, so
/// that a failing test cannot hang the pool's drop).
pub(crate) struct Blocker {
    /// The job; it returns the thread it ran on.
    pub(crate) job: Job<ThreadId, ()>,
    /// Releases the job.
    pub(crate) release: Sender<()>,
    /// The thread the job runs on.
    pub(crate) thread: ThreadId,
}

impl Blocker {
    /// Submits the blocker and returns once it runs.
    pub(crate) fn start(pool: &Pool) -> Blocker {
        let (job, started, release) = submit_held(pool, |_, released| {
            assert!(released, "blocker never released");
            Ok(thread::current().id())
        });
        let thread = started
            .recv_timeout(patience())
            .expect("blocker never started");
        Blocker {
            job,
            release,
            thread,
        }
    }

    /// Releases the blocker and asserts that it ended well, on the thread it started on.
    #[track_caller]
    pub(crate) fn finish(self) {
        self.release.send(()).unwrap();
        assert_eq!(self.job.wait(), Ok(self.thread));
    }
}

/// `parties` threads wait here until all of them have arrived.
#[derive(Clone)]
pub(crate) struct Rendezvous(Arc<(Mutex<usize>, Condvar, usize)>);

impl Rendezvous {
    /// A meeting point for `parties` threads.
    pub(crate) fn new(parties: usize) -> Self {
        Rendezvous(Arc::new((Mutex::new(0), Condvar::new(), parties)))
    }

    /// Arrives and waits for the others; panics if they do not all come.
    pub(crate) fn arrive_and_wait(&self) {
        let (arrived, condvar, parties) = &*self.0;
        let mut guard = arrived.lock().unwrap();
        *guard += 1;
        condvar.notify_all();
        let (guard, _) = condvar
            .wait_timeout_while(guard, patience(), |arrived| *arrived < *parties)
            .unwrap();
        assert!(*guard >= *parties, "only {} of {parties} arrived", *guard);
    }
}

/// Runs, on `pool`, `n` jobs that all wait for each other (so they run at once, on `n`
/// different workers), and returns the worker index and thread name each one ran on, in
/// the order they were submitted.
pub(crate) fn meet_on_workers(pool: &Pool, n: usize) -> Vec<(usize, Option<String>)> {
    let meeting = Rendezvous::new(n);
    let jobs: Vec<_> = (0..n)
        .map(|_| {
            let meeting = meeting.clone();
            pool.submit(move |ctx| {
                meeting.arrive_and_wait();
                Ok::<_, ()>((ctx.worker_index(), thread_name()))
            })
            .unwrap()
        })
        .collect();
    jobs.into_iter().map(|job| job.wait().unwrap()).collect()
}

// ----- randomness ------------------------------------------------------------------------

/// A seeded xorshift64 generator: reproducible randomness for the stress tests.
pub(crate) struct XorShift(u64);

impl XorShift {
    /// Starts from any `seed` (a small counter too), mixed into a non-zero state.
    pub(crate) fn new(seed: u64) -> Self {
        XorShift(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    /// Starts from `state` itself, which must not be 0.
    pub(crate) fn from_state(state: u64) -> Self {
        assert_ne!(state, 0, "xorshift is stuck at 0");
        XorShift(state)
    }

    /// The next number.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// The next number, reduced to `0..n`.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// The next number, reduced to `low..=high`.
    pub(crate) fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high - low + 1)
    }

    /// A random permutation of `0..n`.
    pub(crate) fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut items: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
        items
    }
}

// ----- child processes -------------------------------------------------------------------

/// Printed by a child test once its checks passed (a filtered-out child prints nothing).
pub(crate) const CHILD_OK: &str = "CHILD-OK";

/// A command that runs one `#[ignore]`d test of this test binary, alone and showing its
/// output, in a child process; the caller adds the environment and runs it.
pub(crate) fn child_test(test: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.args([
        test,
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    command
}

/// In a child test: the value its parent test set in `var`, or `None` (after saying so)
/// when the test was run some other way.
pub(crate) fn from_parent(var: &str) -> Option<String> {
    let value = std::env::var(var).ok();
    if value.is_none() {
        println!("skipped: only meaningful when run by its parent test");
    }
    value
}

/// Asserts that a child test ran and passed: it exited well and printed [`CHILD_OK`].
#[track_caller]
pub(crate) fn assert_child_passed(output: &Output, what: &str) {
    assert!(
        output.status.success() && String::from_utf8_lossy(&output.stdout).contains(CHILD_OK),
        "{what}: {}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

// ----- outcomes --------------------------------------------------------------------------

/// Asserts that `job` ends cancelled, for `reason`.
#[track_caller]
pub(crate) fn assert_cancelled<T, E>(job: Job<T, E>, reason: CancelReason)
where
    T: Debug + PartialEq + Send + 'static,
    E: Debug + PartialEq + Send + 'static,
{
    assert_eq!(job.wait(), Err(JobError::Cancelled(reason)));
}
