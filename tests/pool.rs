//! The pool as a whole: the builder's options, what a job sees of its pool and worker,
//! submits from inside jobs, the bounded queue and its backpressure, and delayed jobs.
//!
//! Tests wait for events (channels, gates, `Job::wait`); a `recv_timeout` is only used to
//! show that something has not happened *yet*, and the opposite is asserted right after.

use std::collections::BTreeSet;
use std::process::Output;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use jobrunner::{
    BuildError, CancelReason, CancelToken, Context, HelpPolicy, Job, JobError, JobState, Pool,
    ShutdownMode, SubmitError, SubmitOptions,
};

#[allow(dead_code)]
mod common;

use common::{
    assert_cancelled, assert_child_passed, assert_not_yet, bounded_pool, by_profile, child_test,
    counting, from_parent, meet_on_workers, patience, pool, recv_n, thread_name, DropFlag,
    Rendezvous, XorShift, CHILD_OK, NOT_YET,
};

/// A gate that jobs wait on until the test opens it, once and for good.
#[derive(Clone, Default)]
struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    fn open(&self) {
        let (open, condvar) = &*self.0;
        *open.lock().unwrap() = true;
        condvar.notify_all();
    }

    /// Waits for the gate; panics (so the waiting job fails) if it stays shut too long.
    fn wait(&self) {
        let (open, condvar) = &*self.0;
        let guard = open.lock().unwrap();
        let (guard, _) = condvar
            .wait_timeout_while(guard, patience(), |open| !*open)
            .unwrap();
        assert!(*guard, "the gate never opened");
    }

    /// A guard that opens the gate when dropped, so that a failing test does not leave
    /// jobs held while its pool drains on drop.
    fn open_on_drop(&self) -> OpenOnDrop {
        OpenOnDrop(self.clone())
    }
}

/// Opens its gate when dropped.
struct OpenOnDrop(Gate);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open();
    }
}

/// Submits a job that signals on `started` when it starts and then waits for `gate`.
fn gated(pool: &Pool, gate: &Gate, started: &mpsc::Sender<()>) -> Job<(), ()> {
    let (gate, started) = (gate.clone(), started.clone());
    pool.submit(move |_| {
        started.send(()).unwrap();
        gate.wait();
        Ok(())
    })
    .unwrap()
}

/// A pool with a queue bound of `capacity` whose `threads` workers are all held, by jobs
/// that have started, until the gate opens.
fn held_pool(threads: usize, capacity: usize) -> (Pool, Gate, Vec<Job<(), ()>>) {
    let pool = bounded_pool(threads, capacity);
    let gate = Gate::default();
    let (started_tx, started_rx) = mpsc::channel();
    let holders = (0..threads)
        .map(|_| gated(&pool, &gate, &started_tx))
        .collect();
    recv_n(&started_rx, threads, "a holding job never started");
    (pool, gate, holders)
}

/// A one-thread pool with room for one queued job, and full: its worker held until the
/// gate opens, and a job queued that counts its run in `ran`.
struct Full {
    /// Opens the gate when dropped; declared first, so dropped first, so that a failing
    /// test does not leave the worker held while the pool drains on drop.
    _open: OpenOnDrop,
    pool: Pool,
    gate: Gate,
    holders: Vec<Job<(), ()>>,
    ran: Arc<AtomicUsize>,
    queued: Job<(), ()>,
}

impl Full {
    /// Opens the gate, asserts that the queued job then succeeds, and returns how many
    /// jobs counted their run in `ran`.
    #[track_caller]
    fn open_gate(self) -> usize {
        self.gate.open();
        assert_eq!(self.queued.wait(), Ok(()));
        self.ran.load(Ordering::SeqCst)
    }
}

fn full_pool() -> Full {
    let (pool, gate, holders) = held_pool(1, 1);
    let open = gate.open_on_drop();
    let ran = Arc::new(AtomicUsize::new(0));
    let queued = pool.try_submit(counting(&ran)).unwrap();
    Full {
        _open: open,
        pool,
        gate,
        holders,
        ran,
        queued,
    }
}

// ----- builder options ------------------------------------------------------------------

#[test]
fn threads_n_gives_n_workers_named_prefix_index() {
    for n in [1, 3] {
        let pool = Pool::builder()
            .threads(n)
            .thread_name("tp")
            .build()
            .unwrap();
        assert_eq!(pool.threads(), n);
        assert_eq!(pool.stats().threads, n);
        // n jobs that all wait for each other run at once, so on n different workers.
        let mut seen = BTreeSet::new();
        for (index, name) in meet_on_workers(&pool, n) {
            assert_eq!(name, Some(format!("tp-{index}")));
            assert!(seen.insert(index), "two concurrent jobs on worker {index}");
        }
        assert_eq!(seen, (0..n).collect::<BTreeSet<_>>());
    }
}

#[test]
fn default_threads_is_available_parallelism_named_jobrunner() {
    let expected = thread::available_parallelism().map_or(1, |n| n.get());
    let pool = Pool::builder().build().unwrap();
    assert_eq!(pool.threads(), expected);
    let mut seen = BTreeSet::new();
    for (index, name) in meet_on_workers(&pool, expected) {
        assert_eq!(name, Some(format!("jobrunner-{index}")));
        seen.insert(index);
    }
    assert_eq!(seen.len(), expected, "{expected} workers ran at once");
}

#[test]
fn zero_threads_and_zero_capacity_are_build_errors() {
    assert_eq!(
        Pool::builder().threads(0).build().unwrap_err(),
        BuildError::ZeroThreads
    );
    assert_eq!(
        Pool::builder()
            .threads(1)
            .queue_capacity(0)
            .build()
            .unwrap_err(),
        BuildError::ZeroCapacity
    );
    let pool = Pool::builder()
        .threads(1)
        .queue_capacity(1)
        .build()
        .unwrap();
    assert_eq!(pool.submit(|_| Ok::<_, ()>(7)).unwrap().wait(), Ok(7));
}

/// Names the stack size the child test builds its pool with (`default`: none given).
const STACK_VAR: &str = "JOBRUNNER_TEST_STACK_SIZE";
/// Frames of [`recurse`]: about 4 KiB each, 8 MiB in all, four times Rust's default.
const DEPTH: u64 = 2048;

/// Recursion whose every frame keeps a 4 KiB buffer alive across the call below it.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let mut frame = [0u8; 4096];
    frame[(depth % 4096) as usize] = 1;
    std::hint::black_box(&mut frame);
    let below = if depth == 0 { 0 } else { recurse(depth - 1) };
    std::hint::black_box(&frame);
    below + u64::from(frame[(depth % 4096) as usize])
}

/// Runs [`child_deep_recursion_on_a_worker`] in a child process, with a worker stack of
/// `stack` bytes (`default`: none given).
fn run_recursion_child(stack: &str) -> Output {
    child_test("child_deep_recursion_on_a_worker")
        .env_remove("RUST_MIN_STACK")
        .env(STACK_VAR, stack)
        .output()
        .unwrap()
}

/// Run by [`stack_size_lets_workers_recurse_past_the_default_stack`] in a child process:
/// the recursion overflows a default worker stack and aborts the process.
#[test]
#[ignore = "run in a child process by stack_size_lets_workers_recurse_past_the_default_stack"]
fn child_deep_recursion_on_a_worker() {
    let Some(stack) = from_parent(STACK_VAR) else {
        return;
    };
    let mut builder = Pool::builder().threads(1);
    if stack != "default" {
        builder = builder.stack_size(stack.parse().unwrap());
    }
    let pool = builder.build().unwrap();
    let depth = pool.submit(|_| Ok::<_, ()>(recurse(DEPTH))).unwrap().wait();
    assert_eq!(depth, Ok(DEPTH + 1));
    println!("{CHILD_OK}");
}

#[test]
fn stack_size_lets_workers_recurse_past_the_default_stack() {
    let big = run_recursion_child(&(64 << 20).to_string());
    assert_child_passed(
        &big,
        "a 64 MiB worker stack could not run an 8 MiB recursion",
    );
    // The control: the same recursion on a default-sized stack overflows, so the success
    // above is the builder's doing. Rust's guard page reports it; under the sanitizers
    // (`make sanitize`) ASan catches the overflow first and reports it as its own, and
    // under ThreadSanitizer (whose signal handling replaces std's report) the child dies
    // of the SIGSEGV itself.
    let default = run_recursion_child("default");
    let stderr = String::from_utf8_lossy(&default.stderr);
    let overflowed = stderr.contains("overflowed its stack")
        || stderr.contains("AddressSanitizer: stack-overflow")
        || (cfg!(jobrunner_sanitize_thread)
            && std::os::unix::process::ExitStatusExt::signal(&default.status)
                == Some(libc::SIGSEGV));
    assert!(
        !default.status.success() && overflowed,
        "the recursion should overflow a default worker stack: {default:?}"
    );
}

#[test]
fn thread_hooks_run_once_per_worker_and_stop_hooks_by_shutdown() {
    let n = 3;
    let starts = Arc::new(Mutex::new(Vec::new()));
    let stops = Arc::new(Mutex::new(Vec::new()));
    let pool = Pool::builder()
        .threads(n)
        .thread_name("hook")
        .on_thread_start({
            let starts = Arc::clone(&starts);
            move |index| starts.lock().unwrap().push((index, thread_name()))
        })
        .on_thread_stop({
            let stops = Arc::clone(&stops);
            move |index| stops.lock().unwrap().push((index, thread_name()))
        })
        .build()
        .unwrap();
    // A job on every worker: its worker's start hook ran before it, on that thread.
    let meeting = Rendezvous::new(n);
    let jobs: Vec<_> = (0..n)
        .map(|_| {
            let (meeting, starts) = (meeting.clone(), Arc::clone(&starts));
            pool.submit(move |ctx| {
                meeting.arrive_and_wait();
                let me = (ctx.worker_index(), thread_name());
                Ok::<_, ()>(starts.lock().unwrap().contains(&me))
            })
            .unwrap()
        })
        .collect();
    for job in jobs {
        assert_eq!(
            job.wait(),
            Ok(true),
            "a job ran before its worker's start hook"
        );
    }
    assert!(
        stops.lock().unwrap().is_empty(),
        "a stop hook ran before shutdown"
    );
    let report = pool.shutdown(ShutdownMode::Drain, None);
    assert!(report.is_complete(), "{report:?}");
    let expected: Vec<_> = (0..n).map(|i| (i, Some(format!("hook-{i}")))).collect();
    let mut starts = starts.lock().unwrap().clone();
    starts.sort();
    assert_eq!(starts, expected);
    // Shutdown returned: every worker has stopped and run its stop hook, once.
    let mut stops = stops.lock().unwrap().clone();
    stops.sort();
    assert_eq!(stops, expected);
}

// ----- what a job sees --------------------------------------------------------------------

#[test]
fn context_gives_the_pool_and_worker_of_the_job() {
    let pool = Pool::builder()
        .threads(2)
        .thread_name("ctx")
        .build()
        .unwrap();
    let other = Pool::builder().threads(1).build().unwrap();
    assert!(!pool.is_worker_thread());
    let outer = pool.clone();
    let job = pool
        .submit(move |ctx| {
            let index = ctx.worker_index();
            // A child submitted through ctx.pool() runs on the same pool.
            let child = ctx
                .pool()
                .submit(|ctx| {
                    Ok::<_, ()>((
                        ctx.pool().is_worker_thread(),
                        ctx.worker_index(),
                        thread_name(),
                    ))
                })
                .unwrap();
            Ok::<_, ()>((
                index,
                thread_name(),
                ctx.pool().is_worker_thread(),
                outer.is_worker_thread(),
                other.is_worker_thread(),
                ctx.pool().threads(),
                child.wait().unwrap(),
            ))
        })
        .unwrap();
    let (index, name, ctx_pool, outer_pool, other_pool, threads, child) = job.wait().unwrap();
    assert!(index < 2);
    assert_eq!(name, Some(format!("ctx-{index}")));
    assert!(ctx_pool, "ctx.pool() does not know its own worker");
    assert!(outer_pool, "the pool does not know its own worker");
    assert!(!other_pool, "another pool claims this worker");
    assert_eq!(threads, 2);
    let (child_on_worker, child_index, child_name) = child;
    assert!(child_on_worker);
    assert_eq!(child_name, Some(format!("ctx-{child_index}")));
    assert!(!pool.is_worker_thread());
}

/// A binary tree of jobs, each submitting its two children and waiting for them.
fn tree(ctx: &Context<'_>, depth: u32) -> u64 {
    if depth == 0 {
        return 1;
    }
    let children: Vec<_> = (0..2)
        .map(|_| {
            ctx.pool()
                .submit(move |ctx| Ok::<_, ()>(tree(ctx, depth - 1)))
                .unwrap()
        })
        .collect();
    1 + children.into_iter().map(|c| c.wait().unwrap()).sum::<u64>()
}

#[test]
fn nested_submit_and_wait_runs_on_any_number_of_threads() {
    for threads in [1, 2, 4] {
        let pool = pool(threads);
        let job = pool.submit(|ctx| Ok::<_, ()>(tree(ctx, 7))).unwrap();
        assert_eq!(job.wait(), Ok(255), "{threads} threads");
        assert!(pool.shutdown(ShutdownMode::Drain, None).is_complete());
        assert_eq!(pool.stats().succeeded, 255);
    }
}

// ----- the bounded queue ----------------------------------------------------------------

#[test]
fn full_queue_accepts_exactly_capacity_more_then_refuses() {
    for capacity in [1, 4] {
        let (pool, gate, holders) = held_pool(2, capacity);
        let _open = gate.open_on_drop();
        let ran = Arc::new(AtomicUsize::new(0));
        let queued: Vec<_> = (0..capacity)
            .map(|i| {
                pool.try_submit(counting(&ran))
                    .unwrap_or_else(|e| panic!("submit {i} of {capacity} refused: {e}"))
            })
            .collect();
        assert!(queued.iter().all(|job| job.state() == JobState::Queued));
        assert_eq!(pool.stats().queued, capacity as u64);
        assert_eq!(
            pool.try_submit(counting(&ran)).unwrap_err(),
            SubmitError::Full
        );
        let options = SubmitOptions::new();
        assert_eq!(
            pool.submit_with(options.clone().nonblocking(), counting(&ran))
                .unwrap_err(),
            SubmitError::Full
        );
        assert_eq!(
            pool.submit_with(options.timeout(Duration::ZERO), counting(&ran))
                .unwrap_err(),
            SubmitError::Full
        );
        gate.open();
        for job in holders.into_iter().chain(queued) {
            assert_eq!(job.wait(), Ok(()));
        }
        assert_eq!(ran.load(Ordering::SeqCst), capacity, "a refused job ran");
        // Room again once the queue emptied.
        assert_eq!(pool.try_submit(counting(&ran)).unwrap().wait(), Ok(()));
    }
}

/// Submits `value` on another thread with `options`, which reports the outcome.
fn submit_in_thread(
    pool: &Pool,
    options: SubmitOptions,
    value: u32,
) -> mpsc::Receiver<Result<Job<u32, ()>, SubmitError>> {
    let (tx, rx) = mpsc::channel();
    let pool = pool.clone();
    thread::spawn(move || {
        let result = pool.submit_with(options, move |_| Ok(value));
        tx.send(result).unwrap();
    });
    rx
}

/// [`submit_in_thread`], asserting that the submit (`what`) blocks while the queue is full.
#[track_caller]
fn submit_blocked(
    pool: &Pool,
    options: SubmitOptions,
    value: u32,
    what: &str,
) -> mpsc::Receiver<Result<Job<u32, ()>, SubmitError>> {
    let outcome = submit_in_thread(pool, options, value);
    let what = format!("{what} returned while the queue was full");
    assert_not_yet(&outcome, NOT_YET, &what);
    outcome
}

#[test]
fn blocking_submit_waits_until_a_worker_frees_room() {
    let (pool, gate, _holders) = held_pool(1, 2);
    let _open = gate.open_on_drop();
    let ran = Arc::new(AtomicUsize::new(0));
    let queued: Vec<_> = (0..2)
        .map(|_| pool.try_submit(counting(&ran)).unwrap())
        .collect();
    let outcome = submit_blocked(&pool, SubmitOptions::new(), 42, "a blocking submit");
    gate.open();
    let job = outcome
        .recv_timeout(patience())
        .expect("the submit stayed blocked after room was freed")
        .expect("the submit was refused");
    assert_eq!(job.wait(), Ok(42));
    for job in queued {
        assert_eq!(job.wait(), Ok(()));
    }
    assert_eq!(ran.load(Ordering::SeqCst), 2);
}

#[test]
fn blocking_submit_takes_the_room_of_a_cancelled_queued_job() {
    let full = full_pool();
    let outcome = submit_blocked(&full.pool, SubmitOptions::new(), 7, "a blocking submit");
    assert!(full.queued.cancel());
    // The worker is still held: only the cancel can have made room.
    let job = outcome
        .recv_timeout(patience())
        .expect("cancelling a queued job did not free its room")
        .unwrap();
    assert_eq!(job.state(), JobState::Queued);
    full.gate.open();
    assert_eq!(job.wait(), Ok(7));
    assert_cancelled(full.queued, CancelReason::Cancelled);
    assert_eq!(full.ran.load(Ordering::SeqCst), 0);
}

#[test]
fn submit_timeout_while_full_is_a_timeout_error() {
    let full = full_pool();
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = DropFlag(Arc::clone(&dropped));
    let counted = Arc::clone(&full.ran);
    let timeout = Duration::from_millis(100);
    let start = Instant::now();
    let result = full
        .pool
        .submit_with(SubmitOptions::new().timeout(timeout), move |_| {
            let _flag = flag;
            counted.fetch_add(1, Ordering::SeqCst);
            Ok::<_, ()>(())
        });
    let waited = start.elapsed();
    assert_eq!(result.unwrap_err(), SubmitError::Timeout);
    assert!(waited >= timeout, "gave up after {waited:?}");
    assert!(
        dropped.load(Ordering::SeqCst),
        "the refused closure was kept"
    );
    assert_eq!(full.open_gate(), 1);
}

#[test]
fn cancelling_the_token_of_a_waiting_submit_refuses_it() {
    let full = full_pool();
    let token = CancelToken::new();
    let options = SubmitOptions::new().token(&token);
    let outcome = submit_blocked(&full.pool, options, 1, "a submit with a live token");
    token.cancel();
    assert_eq!(
        outcome.recv_timeout(patience()).unwrap().unwrap_err(),
        SubmitError::Cancelled
    );
    // The refused submit took no room.
    assert_eq!(
        full.pool.try_submit(counting(&full.ran)).unwrap_err(),
        SubmitError::Full
    );
    // A token already cancelled does not wait for room at all.
    assert_eq!(
        full.pool
            .submit_with(SubmitOptions::new().token(&token), counting(&full.ran))
            .unwrap_err(),
        SubmitError::Cancelled
    );
    // A token's deadline ends the wait too.
    let deadline = CancelToken::with_timeout(Duration::from_millis(50));
    let outcome = submit_in_thread(&full.pool, SubmitOptions::new().token(&deadline), 2);
    assert_eq!(
        outcome.recv_timeout(patience()).unwrap().unwrap_err(),
        SubmitError::Cancelled
    );
    assert_eq!(full.open_gate(), 1);
}

#[test]
fn shutdown_refuses_a_waiting_submit() {
    let full = full_pool();
    let outcome = submit_blocked(&full.pool, SubmitOptions::new(), 3, "a blocking submit");
    let shutdown = {
        let pool = full.pool.clone();
        thread::spawn(move || pool.shutdown(ShutdownMode::Drain, None))
    };
    // The worker is still held, so no room was made: the shutdown itself refused it.
    assert_eq!(
        outcome.recv_timeout(patience()).unwrap().unwrap_err(),
        SubmitError::Shutdown
    );
    full.gate.open();
    let report = shutdown.join().unwrap();
    assert_eq!((report.completed, report.cancelled), (2, 0), "{report:?}");
    assert!(report.is_complete());
    assert_eq!(full.queued.wait(), Ok(()));
    for job in full.holders {
        assert_eq!(job.wait(), Ok(()));
    }
}

#[test]
fn try_submit_to_a_shut_down_full_pool_says_shutdown() {
    let full = full_pool();
    let report = full
        .pool
        .shutdown(ShutdownMode::Drain, Some(Duration::from_millis(10)));
    assert_eq!((report.still_running, report.still_queued), (1, 1));
    let blocking = full.pool.submit(counting(&full.ran)).map(drop);
    let nonblocking = full.pool.try_submit(counting(&full.ran)).map(drop);
    full.open_gate();
    assert_eq!(blocking, Err(SubmitError::Shutdown));
    // Retrying a `Full` can never succeed on a pool that is shutting down: the pool must
    // say why it refuses.
    assert_eq!(nonblocking, Err(SubmitError::Shutdown));
}

#[test]
fn submits_from_inside_jobs_ignore_the_bound() {
    let pool = bounded_pool(2, 2);
    let hold = Gate::default();
    let _open_hold = hold.open_on_drop();
    let full = Gate::default();
    let _open_full = full.open_on_drop();
    let (started_tx, started_rx) = mpsc::channel();
    let holder = gated(&pool, &hold, &started_tx);
    let inner = {
        let full = full.clone();
        pool.submit(move |ctx| {
            started_tx.send(()).unwrap();
            full.wait();
            // The outside queue is full now; our own submits must not care.
            let mut children = Vec::new();
            for i in 0..40u32 {
                children.push(ctx.pool().try_submit(move |_| Ok::<_, ()>(i))?);
                let options = SubmitOptions::new().timeout(Duration::from_millis(100));
                children.push(ctx.pool().submit_with(options, move |_| Ok(i))?);
            }
            Ok::<_, SubmitError>(children)
        })
        .unwrap()
    };
    recv_n(&started_rx, 2, "a job never started");
    let ran = Arc::new(AtomicUsize::new(0));
    let queued: Vec<_> = (0..2)
        .map(|_| pool.try_submit(counting(&ran)).unwrap())
        .collect();
    assert_eq!(
        pool.try_submit(counting(&ran)).unwrap_err(),
        SubmitError::Full
    );
    full.open();
    let children = inner
        .wait()
        .expect("a submit from inside a job was refused");
    hold.open();
    assert_eq!(holder.wait(), Ok(()));
    let sum: u32 = children.into_iter().map(|c| c.wait().unwrap()).sum();
    assert_eq!(sum, 2 * (0..40).sum::<u32>());
    for job in queued {
        assert_eq!(job.wait(), Ok(()));
    }
}

// ----- delayed jobs ---------------------------------------------------------------------

#[test]
fn delayed_jobs_run_after_their_delay_and_soon_after() {
    let pool = pool(2);
    let slack = Duration::from_millis(50);
    let jobs: Vec<_> = [150u64, 50, 100, 120]
        .into_iter()
        .map(|ms| {
            let delay = Duration::from_millis(ms);
            let before = Instant::now();
            let job = pool
                .submit_with(SubmitOptions::new().delay(delay), |_| {
                    Ok::<_, ()>(Instant::now())
                })
                .unwrap();
            let after = Instant::now();
            (delay, before, after, job)
        })
        .collect();
    for (delay, before, after, job) in jobs {
        let ran_at = job.wait().unwrap();
        assert!(
            ran_at >= before + delay,
            "a {delay:?} delay ran after {:?}",
            ran_at - before
        );
        assert!(
            ran_at <= after + delay + slack,
            "a {delay:?} delay ran after {:?}",
            ran_at - after
        );
    }
    assert_eq!(pool.delayed(), 0);
}

#[test]
fn delayed_jobs_are_counted_and_cancelling_one_ends_it_at_once() {
    let pool = pool(1);
    let ran = Arc::new(AtomicUsize::new(0));
    let in_a_while = SubmitOptions::new().delay(Duration::from_millis(200));
    let by_handle = pool
        .submit_with(in_a_while.clone(), counting(&ran))
        .unwrap();
    let token = CancelToken::new();
    let by_token = pool
        .submit_with(in_a_while.token(&token), counting(&ran))
        .unwrap();
    let later = pool
        .submit_with(
            SubmitOptions::new().delay(Duration::from_secs(60)),
            counting(&ran),
        )
        .unwrap();
    let sentinel = pool
        .submit_with(
            SubmitOptions::new().delay(Duration::from_millis(300)),
            |_| Ok::<_, ()>(()),
        )
        .unwrap();
    assert_eq!(by_handle.state(), JobState::Delayed);
    assert_eq!(later.state(), JobState::Delayed);
    assert_eq!(pool.delayed(), 4);

    assert!(by_handle.cancel(), "a delayed job could not be cancelled");
    assert_eq!(by_handle.state(), JobState::Cancelled, "not ended at once");
    assert_eq!(pool.delayed(), 3);
    token.cancel();
    assert_eq!(by_token.state(), JobState::Cancelled, "not ended at once");
    assert_eq!(pool.delayed(), 2);
    assert_cancelled(by_handle, CancelReason::Cancelled);
    assert_cancelled(by_token, CancelReason::Cancelled);

    // The sentinel is due after the cancelled jobs were: had they been left to run, they
    // would have run by the time it does.
    assert_eq!(sentinel.wait(), Ok(()));
    assert_eq!(ran.load(Ordering::SeqCst), 0, "a cancelled delayed job ran");
    assert_eq!(pool.delayed(), 1);
    assert!(later.cancel());
    assert_eq!(pool.delayed(), 0);
    assert_cancelled(later, CancelReason::Cancelled);
}

#[test]
fn waiting_inside_a_job_for_a_delayed_job_does_not_deadlock_one_thread() {
    let pool = pool(1);
    let outer = pool
        .submit(|ctx| {
            let delay = SubmitOptions::new().delay(Duration::from_millis(20));
            let child = ctx.pool().submit_with(delay, |_| Ok::<_, ()>(5)).unwrap();
            // Waiting on a worker must not block it while the job it waits for has not
            // started: the only worker is the one that must run the child.
            child.wait().map_err(drop)
        })
        .unwrap();
    match outer.wait_timeout(Duration::from_secs(3)) {
        Ok(result) => assert_eq!(result, Ok(5)),
        Err(_) => {
            // The worker is stuck for good: dropping the pool would drain forever.
            std::mem::forget(pool);
            panic!("a job waiting for its delayed child deadlocked its one-thread pool");
        }
    }
}

// ----- sleep and wake ---------------------------------------------------------------------

#[cfg(target_os = "linux")]
extern "C" {
    fn sched_getaffinity(pid: i32, size: usize, mask: *mut u64) -> i32;
    fn sched_setaffinity(pid: i32, size: usize, mask: *const u64) -> i32;
}

/// The CPUs the calling thread may run on (empty if unknown).
#[cfg(target_os = "linux")]
fn allowed_cpus() -> Vec<usize> {
    let mut mask = [0u64; 16];
    // SAFETY: `mask` is a writable `cpu_set_t`-sized buffer (1024 bits) whose size we pass.
    let status = unsafe { sched_getaffinity(0, std::mem::size_of_val(&mask), mask.as_mut_ptr()) };
    if status != 0 {
        return Vec::new();
    }
    (0..1024)
        .filter(|cpu| mask[cpu / 64] & (1 << (cpu % 64)) != 0)
        .collect()
}

/// Pins the calling thread to `cpu`, if the system lets it (best effort).
#[cfg(target_os = "linux")]
fn pin_to_cpu(cpu: usize) {
    let mut mask = [0u64; 16];
    mask[cpu / 64] |= 1 << (cpu % 64);
    // SAFETY: `mask` is a readable `cpu_set_t`-sized buffer (1024 bits) whose size we pass.
    let _ = unsafe { sched_setaffinity(0, std::mem::size_of_val(&mask), mask.as_ptr()) };
}

#[cfg(not(target_os = "linux"))]
fn allowed_cpus() -> Vec<usize> {
    Vec::new()
}

#[cfg(not(target_os = "linux"))]
fn pin_to_cpu(_cpu: usize) {}

#[test]
fn a_child_pushed_by_a_job_that_then_blocks_wakes_the_idle_worker() {
    let iterations = by_profile(10_000, 40_000);
    // The two workers on two different CPUs, so that they truly run at the same time: a
    // push and a worker going to sleep then race as they do on a busy machine.
    let cpus = allowed_cpus();
    let pool = Pool::builder()
        .threads(2)
        .on_thread_start(move |index| {
            if cpus.len() >= 2 {
                pin_to_cpu(cpus[index]);
            }
        })
        .build()
        .unwrap();
    // xorshift64: how long each parent works before it pushes, so that the push meets the
    // other worker in every phase of going idle (searching, about to sleep, asleep).
    let mut rng = XorShift::from_state(0x2545_f491_4f6c_dd1d);
    for iteration in 0..iterations {
        let spin = rng.below(20_000);
        let job = pool
            .submit(move |ctx| {
                for i in 0..spin {
                    std::hint::black_box(i);
                }
                let (tx, rx) = mpsc::channel();
                let child = ctx
                    .pool()
                    .submit(move |_| {
                        tx.send(()).unwrap();
                        Ok::<_, ()>(())
                    })
                    .unwrap();
                // The parent blocks outside the pool: only the other worker can run the
                // child, and only if the push woke it (or it saw the push).
                let ran = rx.recv_timeout(Duration::from_secs(2)).is_ok();
                drop(child);
                Ok::<_, ()>(ran)
            })
            .unwrap();
        assert_eq!(
            job.wait(),
            Ok(true),
            "iteration {iteration}: the child sat on its blocked parent's deque while the \
             other worker slept (lost wakeup)"
        );
    }
}

/// Hooks added to a running pool: each worker runs the start hook on its own thread
/// before the next job it takes, and the stop hook as it exits; hooks added later run
/// after earlier ones, stop hooks in reverse.
#[test]
fn thread_hooks_added_to_a_running_pool_run_on_each_worker() {
    thread_local! {
        static LOG: std::cell::RefCell<Vec<&'static str>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let pool = Pool::builder().threads(2).build().unwrap();
    // Both workers run a job before any hook exists.
    let before = Arc::new(std::sync::Barrier::new(2));
    let jobs: Vec<_> = (0..2)
        .map(|_| {
            let before = Arc::clone(&before);
            pool.submit(move |_| {
                before.wait();
                Ok::<_, ()>(LOG.with(|log| log.borrow().len()))
            })
            .unwrap()
        })
        .collect();
    for job in jobs {
        assert_eq!(job.wait(), Ok(0));
    }
    let stops = Arc::new(Mutex::new(Vec::new()));
    for name in ["first", "removed", "second"] {
        let stops = Arc::clone(&stops);
        let key = pool.add_thread_hooks(
            move |_| LOG.with(|log| log.borrow_mut().push(name)),
            move |index| stops.lock().unwrap().push((index, name)),
        );
        // Removed before any worker ran them: never called, start or stop.
        if name == "removed" {
            assert!(pool.remove_thread_hooks(key));
            assert!(!pool.remove_thread_hooks(key), "removed twice");
        }
    }
    // Both workers again: each has run both start hooks, in order, before this job.
    let after = Arc::new(std::sync::Barrier::new(2));
    let jobs: Vec<_> = (0..2)
        .map(|_| {
            let after = Arc::clone(&after);
            pool.submit(move |ctx| {
                after.wait();
                Ok::<_, ()>((ctx.worker_index(), LOG.with(|log| log.borrow().clone())))
            })
            .unwrap()
        })
        .collect();
    let mut workers = BTreeSet::new();
    for job in jobs {
        let (index, log) = job.wait().unwrap();
        assert_eq!(log, ["first", "second"], "worker {index}");
        workers.insert(index);
    }
    assert_eq!(workers.len(), 2);
    drop(pool);
    // Each worker's stop hooks in reverse order (a stable sort keeps it).
    let mut stops = stops.lock().unwrap().clone();
    stops.sort_by_key(|&(index, _)| index);
    assert_eq!(
        stops,
        [(0, "second"), (0, "first"), (1, "second"), (1, "first")]
    );
}

/// Park hooks: each worker runs them on its own thread as it is about to sleep for want
/// of work, the builder's and those added to the running pool, until they are removed.
#[test]
fn park_hooks_run_on_each_worker_as_it_goes_to_sleep_until_removed() {
    let (tx, rx) = mpsc::channel();
    let pool = Pool::builder()
        .threads(2)
        .thread_name("park")
        .on_thread_park({
            let tx = Mutex::new(tx);
            move |index| {
                let _ = tx.lock().unwrap().send((index, thread_name()));
            }
        })
        .build()
        .unwrap();
    // A new pool has nothing to do: both workers go to sleep, each running the hook.
    let mut parked = BTreeSet::new();
    while parked.len() < 2 {
        let (index, name) = rx
            .recv_timeout(patience())
            .expect("a worker of an idle pool never ran its park hook");
        assert_eq!(name, Some(format!("park-{index}")), "not on its worker");
        parked.insert(index);
    }
    // Added to the running pool: the worker that runs a job runs it as it goes back to
    // sleep.
    let added = Arc::new(AtomicUsize::new(0));
    let key = pool.add_park_hook({
        let added = Arc::clone(&added);
        move |_| {
            added.fetch_add(1, Ordering::SeqCst);
        }
    });
    pool.submit(|_| Ok::<_, ()>(())).unwrap().wait().unwrap();
    common::wait_until("the added park hook ran", || {
        added.load(Ordering::SeqCst) > 0
    });
    // Removed: no call after the removal returns, though a worker runs a job and goes
    // back to sleep (it counts as sleeping only once past its park hooks).
    assert!(pool.remove_thread_hooks(key));
    let calls = added.load(Ordering::SeqCst);
    pool.submit(|_| Ok::<_, ()>(())).unwrap().wait().unwrap();
    common::wait_until("both workers sleep", || pool.stats().sleeping == 2);
    assert_eq!(
        added.load(Ordering::SeqCst),
        calls,
        "a removed park hook ran"
    );
    assert!(!pool.remove_thread_hooks(key), "removed twice");
}

/// A worker whose job waits for a job that runs on another worker runs its park hooks
/// before it blocks, under every help policy: a runtime whose threads hold something
/// while they run its code (Go's processors) gets it back while the job waits.
#[test]
fn park_hooks_run_while_a_job_waits_for_another() {
    for policy in [HelpPolicy::Any, HelpPolicy::Own, HelpPolicy::Block] {
        let waiting = Arc::new(AtomicBool::new(false));
        let (parked_tx, parked_rx) = mpsc::channel();
        let pool = Pool::builder()
            .threads(2)
            .help_policy(policy)
            .on_thread_park({
                let (waiting, parked_tx) = (Arc::clone(&waiting), Mutex::new(parked_tx));
                move |index| {
                    if waiting.load(Ordering::SeqCst) {
                        let _ = parked_tx.lock().unwrap().send(index);
                    }
                }
            })
            .build()
            .unwrap();
        // The awaited job runs on one worker until a park hook runs while the other's
        // job waits for it; it returns that hook's worker.
        let (started_tx, started_rx) = mpsc::channel();
        let awaited = pool
            .submit(move |_| {
                started_tx.send(()).unwrap();
                parked_rx.recv_timeout(patience()).map_err(drop)
            })
            .unwrap();
        let job = pool
            .submit(move |ctx| {
                started_rx.recv_timeout(patience()).map_err(drop)?;
                waiting.store(true, Ordering::SeqCst);
                let parked = awaited.wait().map_err(drop)?;
                Ok::<_, ()>((ctx.worker_index(), parked))
            })
            .unwrap();
        let (waiter, parked) = job
            .wait()
            .unwrap_or_else(|e| panic!("{policy:?}: no park hook while a job waits: {e:?}"));
        assert_eq!(
            parked, waiter,
            "{policy:?}: the hook ran on the other worker"
        );
    }
}

/// A park hook that panics is reported and the worker lives on, still running jobs.
#[test]
fn a_panicking_park_hook_leaves_the_worker_running() {
    common::quiet_expected_panics();
    let calls = Arc::new(AtomicUsize::new(0));
    let pool = Pool::builder()
        .threads(1)
        .on_thread_park({
            let calls = Arc::clone(&calls);
            move |_| {
                calls.fetch_add(1, Ordering::SeqCst);
                panic!("expected: a park hook panics");
            }
        })
        .build()
        .unwrap();
    for round in 1..=3 {
        common::wait_until("the park hook ran", || {
            calls.load(Ordering::SeqCst) >= round
        });
        // Bounded: a worker the panic killed would never run it.
        let job = pool.submit(move |_| Ok::<_, ()>(round)).unwrap();
        match job.wait_timeout(patience()) {
            Ok(result) => assert_eq!(result, Ok(round)),
            Err(_) => panic!("round {round}: the worker no longer runs jobs"),
        }
    }
}

// ----- debug_dump ------------------------------------------------------------------------

/// `Pool::debug_dump` names what each worker does: a job blocked on a semaphore, a job
/// waiting for a delayed child, a delayed job, a submitter waiting for room in a full
/// queue, and idle workers once it is all over.
#[test]
fn debug_dump_shows_each_worker_and_the_blocked_waiters() {
    let pool = Pool::builder()
        .threads(2)
        .queue_capacity(1)
        .help_policy(HelpPolicy::Block)
        .thread_name("dumped")
        .build()
        .unwrap();
    let dump_shows = |what: &str| {
        let deadline = Instant::now() + patience();
        loop {
            let dump = pool.debug_dump();
            if dump.contains(what) {
                return dump;
            }
            assert!(
                Instant::now() < deadline,
                "the dump never showed {what:?}:\n{dump}"
            );
            thread::yield_now();
        }
    };
    let idle = dump_shows("worker 1: idle");
    assert!(idle.contains("pool \"dumped\": 2 workers"), "{idle}");
    assert!(idle.contains("open"), "{idle}");

    // A job blocked on a semaphore whose permit the test holds.
    let semaphore = jobrunner::Semaphore::new(1);
    let permit = semaphore.acquire(1).unwrap();
    let blocked = {
        let semaphore = semaphore.clone();
        pool.submit(move |_| semaphore.acquire(1).map(drop))
            .unwrap()
    };
    dump_shows("waits for a semaphore grant");
    // A job waiting for a child delayed for an hour: the child is in the timer.
    let (child_tx, child_rx) = mpsc::channel();
    let waiting = pool
        .submit(move |ctx| {
            let child = ctx
                .pool()
                .submit_with(
                    SubmitOptions::new().delay(Duration::from_secs(3_600)),
                    |_| Ok::<_, ()>(()),
                )
                .unwrap();
            child_tx.send(child.handle()).unwrap();
            child.wait()
        })
        .unwrap();
    let child = child_rx.recv_timeout(patience()).unwrap();
    // One dump, both waits in it at once.
    let dump = dump_shows(" waits for job ");
    assert!(dump.contains("waits for a semaphore grant"), "{dump}");
    assert!(dump.contains("delayed 1"), "{dump}");
    assert!(
        dump.contains("worker 0: job") && dump.contains("worker 1: job"),
        "both workers hold a waiting job:\n{dump}"
    );
    // A submitter waiting for room: the queue (of 1) is full, both workers taken.
    let queued = pool.submit(|_| Ok::<_, ()>(())).unwrap();
    let submitter = {
        let pool = pool.clone();
        thread::spawn(move || pool.submit(|_| Ok::<_, ()>(())).map(drop))
    };
    let dump = dump_shows("1 submitters wait for room");
    assert!(dump.contains("bounded queue: 1 of 1 taken"), "{dump}");

    // Released, everything ends and the dump says so.
    drop(permit);
    assert_eq!(blocked.wait(), Ok(()));
    assert!(child.cancel());
    // The waiting job passes its child's end on as its own failure.
    assert_eq!(
        waiting.wait(),
        Err(JobError::Failed(JobError::Cancelled(
            CancelReason::Cancelled
        )))
    );
    assert_eq!(queued.wait(), Ok(()));
    submitter.join().unwrap().unwrap();
    dump_shows("worker 0: idle");
    dump_shows("worker 1: idle");
    pool.shutdown(ShutdownMode::Drain, Some(patience()));
    let dump = pool.debug_dump();
    assert!(dump.contains("terminated"), "{dump}");
    assert!(dump.contains("worker 0: stopped"), "{dump}");
}
