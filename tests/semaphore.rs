//! Semaphores (issue 3): counting and weighted permits, RAII `Permit`s, `forget` and
//! `release`, the errors (`TooMany`, `WouldBlock`, `Timeout`, `Cancelled`, `Overflow`),
//! FIFO fairness (a large request at the head is never overtaken by small ones), waiters
//! that give up on a timeout or a token and leave the queue; and the scheduler-aware side:
//! jobs submitted with `SubmitOptions::semaphore` wait in the semaphore's queue
//! (`JobState::WaitingForPermit`) without occupying a worker, never run more permits at
//! once than the semaphore has, give their permits back whatever their end, and end
//! `Cancelled` at once when cancelled, by their token, or by a `Cancel` shutdown. Blocking
//! `acquire`s inside jobs must not starve a small pool under any help policy.
//!
//! Tests wait on events (channels, `Job::wait`, joins) or poll a condition (`waiters()`,
//! `state()`) with a generous bound; they never sleep to let things settle. The stress
//! tests use seeded xorshift generators and are scaled down in debug builds.

use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

#[allow(dead_code)]
mod common;

use common::{by_profile, patience, XorShift};
use jobrunner::{
    CancelReason, CancelToken, HelpPolicy, Job, JobError, JobState, Permit, Pool, Semaphore,
    SemaphoreError, ShutdownMode, SubmitError, SubmitOptions,
};

/// Seeds of the stress tests.
const SEEDS: [u64; 3] = [0x9E37_79B9_7F4A_7C15, 0x0123_4567_89AB_CDEF, 42];

fn pool(threads: usize) -> Pool {
    Pool::builder().threads(threads).build().unwrap()
}

fn pool_with(threads: usize, policy: HelpPolicy) -> Pool {
    Pool::builder()
        .threads(threads)
        .help_policy(policy)
        .build()
        .unwrap()
}

/// Polls `condition` until it holds; fails the test after `LONG`.
fn poll_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + patience();
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::park_timeout(Duration::from_micros(100));
    }
}

/// Polls until `semaphore` has exactly `n` waiters.
fn wait_for_waiters(semaphore: &Semaphore, n: usize) {
    poll_until(&format!("{n} waiters"), || semaphore.waiters() == n);
}

/// Busy work of `iterations` spins, so that jobs overlap.
fn spin(iterations: u64) {
    for i in 0..iterations {
        std::hint::black_box(i);
        std::hint::spin_loop();
    }
}

/// What runs now (a count or a sum of weights) and the most it ever was.
#[derive(Default)]
struct Gauge {
    now: AtomicU64,
    peak: AtomicU64,
}

impl Gauge {
    fn enter(&self, weight: u64) {
        let now = self.now.fetch_add(weight, Ordering::SeqCst) + weight;
        self.peak.fetch_max(now, Ordering::SeqCst);
    }

    fn leave(&self, weight: u64) {
        self.now.fetch_sub(weight, Ordering::SeqCst);
    }

    fn peak(&self) -> u64 {
        self.peak.load(Ordering::SeqCst)
    }
}

/// Waits for every job, all together at most `timeout`. If some have not ended by then
/// the pools are leaked (dropping one would drain, i.e. hang on a deadlock) and the error
/// says how many jobs were stuck and in which states.
fn try_wait_all<T, E>(
    pools: Vec<Pool>,
    jobs: Vec<Job<T, E>>,
    timeout: Duration,
) -> Result<Vec<Result<T, JobError<E>>>, String>
where
    T: Send + 'static,
    E: Send + 'static,
{
    let deadline = Instant::now() + timeout;
    let total = jobs.len();
    let mut results = Vec::with_capacity(total);
    let mut stuck = Vec::new();
    for job in jobs {
        match job.wait_deadline(deadline) {
            Ok(result) => results.push(result),
            Err(job) => stuck.push(job.state()),
        }
    }
    if stuck.is_empty() {
        return Ok(results);
    }
    std::mem::forget(pools);
    Err(format!(
        "{} of {total} jobs had not ended after {timeout:?} (states {:?}); the pool is \
         leaked instead of drained",
        stuck.len(),
        &stuck[..stuck.len().min(8)]
    ))
}

/// [`try_wait_all`] with `LONG`, failing the test if a job is stuck.
fn wait_all_or_leak<T, E>(
    pools: Vec<Pool>,
    jobs: Vec<Job<T, E>>,
    what: &str,
) -> Vec<Result<T, JobError<E>>>
where
    T: Send + 'static,
    E: Send + 'static,
{
    try_wait_all(pools, jobs, patience()).unwrap_or_else(|error| panic!("{what}: {error}"))
}

/// The help policies, each with the outcome of `check` under it; fails the test naming
/// every policy under which `check` failed.
fn under_every_policy(check: impl Fn(HelpPolicy) -> Result<(), String>) {
    let failures: Vec<String> = [HelpPolicy::Any, HelpPolicy::Own, HelpPolicy::Block]
        .into_iter()
        .filter_map(|policy| check(policy).err().map(|e| format!("{policy:?}: {e}")))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A job running on a worker and holding it until released.
struct Blocker {
    job: Job<(), ()>,
    release: Sender<()>,
}

impl Blocker {
    fn start(pool: &Pool) -> Blocker {
        let (started_tx, started_rx) = channel();
        let (release, release_rx) = channel::<()>();
        let job = pool
            .submit(move |_| {
                started_tx.send(()).unwrap();
                release_rx
                    .recv_timeout(patience())
                    .expect("blocker never released");
                Ok(())
            })
            .unwrap();
        started_rx
            .recv_timeout(patience())
            .expect("blocker never started");
        Blocker { job, release }
    }

    fn finish(self) {
        self.release.send(()).unwrap();
        assert_eq!(self.job.wait(), Ok(()));
    }
}

/// Submits a job gated on `permits` of `semaphore` that records that it ran.
fn gated(
    pool: &Pool,
    semaphore: &Semaphore,
    permits: u64,
    options: SubmitOptions,
    ran: &Arc<AtomicUsize>,
) -> Job<(), ()> {
    let ran = Arc::clone(ran);
    pool.submit_with(options.semaphore(semaphore, permits), move |_| {
        ran.fetch_add(1, Ordering::SeqCst);
        Ok(())
    })
    .unwrap()
}

// ----- counting and weighted ---------------------------------------------------------

/// `try_acquire` takes what is free, in any weight, and fails with `WouldBlock` instead
/// of waiting; `available()` follows every take and every drop of a `Permit`.
#[test]
fn try_acquire_takes_free_permits_and_never_waits() {
    let semaphore = Semaphore::new(5);
    assert_eq!(semaphore.total(), 5);
    assert_eq!(semaphore.available(), 5);
    let two = semaphore.try_acquire(2).unwrap();
    assert_eq!(two.count(), 2);
    assert_eq!(semaphore.available(), 3);
    let three = semaphore.try_acquire(3).unwrap();
    assert_eq!(semaphore.available(), 0);
    assert_eq!(
        semaphore.try_acquire(1).unwrap_err(),
        SemaphoreError::WouldBlock
    );
    drop(two);
    assert_eq!(semaphore.available(), 2);
    assert_eq!(
        semaphore.try_acquire(3).unwrap_err(),
        SemaphoreError::WouldBlock
    );
    let again = semaphore.try_acquire(2).unwrap();
    assert_eq!(semaphore.available(), 0);
    drop((three, again));
    assert_eq!(semaphore.available(), 5);
    assert_eq!(semaphore.waiters(), 0);
}

/// A clone is the same semaphore; `acquire` of free permits returns at once; a `Permit`
/// releases exactly its count on drop.
#[test]
fn acquire_and_permit_drop_count_weights() {
    let semaphore = Semaphore::new(4);
    let other = semaphore.clone();
    assert!(other.same_as(&semaphore));
    assert!(!Semaphore::new(4).same_as(&semaphore));
    let permit = other.acquire(3).unwrap();
    assert_eq!(permit.count(), 3);
    assert_eq!(semaphore.available(), 1);
    let one = semaphore.acquire_timeout(1, patience()).unwrap();
    let token = CancelToken::new();
    assert_eq!(semaphore.available(), 0);
    drop(permit);
    assert_eq!(semaphore.available(), 3);
    let three = semaphore.acquire_with(3, &token, None).unwrap();
    assert_eq!(three.count(), 3);
    assert_eq!(semaphore.available(), 0);
    drop((one, three));
    assert_eq!(other.available(), 4);
}

/// `Permit::forget` keeps the permits taken until `release` gives them back; `release`
/// that would exceed the total fails with `Overflow` and releases nothing.
#[test]
fn forget_and_release_with_overflow_checks() {
    let semaphore = Semaphore::new(4);
    assert_eq!(semaphore.release(1), Err(SemaphoreError::Overflow));
    assert_eq!(semaphore.available(), 4);
    assert_eq!(semaphore.release(u64::MAX), Err(SemaphoreError::Overflow));
    assert_eq!(semaphore.available(), 4);

    let forgotten = semaphore.acquire(3).unwrap().forget();
    assert_eq!(forgotten, 3);
    assert_eq!(semaphore.available(), 1, "a forgotten permit stays taken");
    assert_eq!(semaphore.release(4), Err(SemaphoreError::Overflow));
    assert_eq!(
        semaphore.available(),
        1,
        "a failed release releases nothing"
    );
    semaphore.release(2).unwrap();
    assert_eq!(semaphore.available(), 3);
    semaphore.release(1).unwrap();
    assert_eq!(semaphore.available(), 4);
    assert_eq!(semaphore.release(1), Err(SemaphoreError::Overflow));

    // A release grants a waiter, as a Permit's drop does.
    let held = semaphore.acquire(4).unwrap().forget();
    let waiter = {
        let semaphore = semaphore.clone();
        thread::spawn(move || semaphore.acquire(2).map(Permit::forget))
    };
    wait_for_waiters(&semaphore, 1);
    semaphore.release(held).unwrap();
    assert_eq!(waiter.join().unwrap(), Ok(2));
    assert_eq!(semaphore.available(), 2);
    semaphore.release(2).unwrap();
    assert_eq!(semaphore.available(), 4);
}

/// A request above the total is an error at once from every way of asking (even when
/// it would otherwise wait), and a submit asking for it is refused without running.
#[test]
fn requests_above_the_total_are_errors_not_hangs() {
    let semaphore = Semaphore::new(2);
    let too_many = SemaphoreError::TooMany {
        requested: 3,
        total: 2,
    };
    let held = semaphore.acquire(2).unwrap();
    let token = CancelToken::new();
    let started = Instant::now();
    assert_eq!(semaphore.acquire(3).unwrap_err(), too_many);
    assert_eq!(semaphore.try_acquire(3).unwrap_err(), too_many);
    assert_eq!(
        semaphore.acquire_timeout(3, patience()).unwrap_err(),
        too_many
    );
    assert_eq!(
        semaphore.acquire_with(3, &token, None).unwrap_err(),
        too_many
    );
    assert_eq!(
        semaphore
            .acquire_with(3, &token, Some(patience()))
            .unwrap_err(),
        too_many
    );
    assert!(started.elapsed() < patience() / 2, "TooMany must not wait");
    assert_eq!(semaphore.waiters(), 0);
    drop(held);
    // With every permit free it is still an error.
    assert_eq!(semaphore.acquire(3).unwrap_err(), too_many);
    assert_eq!(
        Semaphore::new(0).acquire(1).unwrap_err(),
        SemaphoreError::TooMany {
            requested: 1,
            total: 0
        }
    );
    assert!(too_many
        .to_string()
        .contains("3 permits requested from a semaphore of 2"));

    let pool = pool(1);
    let captured = Arc::new(());
    let inside = Arc::clone(&captured);
    let refused = pool.submit_with(SubmitOptions::new().semaphore(&semaphore, 3), move |_| {
        drop(inside);
        Ok::<_, ()>(())
    });
    assert_eq!(
        refused.unwrap_err(),
        SubmitError::TooManyPermits {
            requested: 3,
            total: 2
        }
    );
    assert_eq!(
        Arc::strong_count(&captured),
        1,
        "the refused closure was dropped"
    );
    assert_eq!(semaphore.waiters(), 0);
    assert_eq!(semaphore.available(), 2);
    // Exactly the total is fine.
    let ran = Arc::new(AtomicUsize::new(0));
    assert_eq!(
        gated(&pool, &semaphore, 2, SubmitOptions::new(), &ran).wait(),
        Ok(())
    );
    assert_eq!(ran.load(Ordering::SeqCst), 1);
}

/// `acquire_timeout` gives up with `Timeout` after its timeout, not before, and leaves
/// the queue; one that is granted in time returns the permits.
#[test]
fn acquire_timeout_times_out_and_leaves_the_queue() {
    let semaphore = Semaphore::new(2);
    let held = semaphore.acquire(2).unwrap();
    let timeout = Duration::from_millis(50);
    let started = Instant::now();
    assert_eq!(
        semaphore.acquire_timeout(1, timeout).unwrap_err(),
        SemaphoreError::Timeout
    );
    assert!(
        started.elapsed() >= timeout,
        "gave up early: {:?}",
        started.elapsed()
    );
    assert_eq!(semaphore.waiters(), 0);
    assert_eq!(semaphore.available(), 0);
    assert_eq!(
        semaphore
            .acquire_with(1, &CancelToken::new(), Some(timeout))
            .unwrap_err(),
        SemaphoreError::Timeout
    );
    assert_eq!(semaphore.waiters(), 0);

    let waiter = {
        let semaphore = semaphore.clone();
        thread::spawn(move || semaphore.acquire_timeout(2, patience()).map(Permit::forget))
    };
    wait_for_waiters(&semaphore, 1);
    drop(held);
    assert_eq!(waiter.join().unwrap(), Ok(2));
    assert_eq!(semaphore.available(), 0);
    semaphore.release(2).unwrap();
}

/// `acquire_with` gives up when its token is cancelled, reporting the token's reason
/// (an explicit cancel, a deadline, a parent's cancel), and is granted normally otherwise.
#[test]
fn acquire_with_gives_up_on_cancel_and_reports_the_reason() {
    let semaphore = Semaphore::new(1);
    let held = semaphore.acquire(1).unwrap();

    // Cancelled by another thread while waiting.
    let token = CancelToken::new();
    let waiter = {
        let (semaphore, token) = (semaphore.clone(), token.clone());
        thread::spawn(move || semaphore.acquire_with(1, &token, None).map(Permit::forget))
    };
    wait_for_waiters(&semaphore, 1);
    token.cancel();
    assert_eq!(
        waiter.join().unwrap(),
        Err(SemaphoreError::Cancelled(CancelReason::Cancelled))
    );
    assert_eq!(semaphore.waiters(), 0);

    // A deadline token, with a longer timeout given too: the token wins.
    let deadline = CancelToken::with_timeout(Duration::from_millis(30));
    assert_eq!(
        semaphore
            .acquire_with(1, &deadline, Some(patience()))
            .unwrap_err(),
        SemaphoreError::Cancelled(CancelReason::DeadlineExceeded)
    );
    assert_eq!(semaphore.waiters(), 0);

    // A child token sees its parent's cancel, with the parent's reason.
    let parent = CancelToken::new();
    let child = parent.child();
    let waiter = {
        let semaphore = semaphore.clone();
        thread::spawn(move || semaphore.acquire_with(1, &child, None).map(Permit::forget))
    };
    wait_for_waiters(&semaphore, 1);
    parent.cancel_with(CancelReason::Shutdown);
    assert_eq!(
        waiter.join().unwrap(),
        Err(SemaphoreError::Cancelled(CancelReason::Shutdown))
    );

    // Already cancelled and no permits free: an error at once, not a wait.
    let cancelled = CancelToken::new();
    cancelled.cancel();
    assert_eq!(
        semaphore.acquire_with(1, &cancelled, None).unwrap_err(),
        SemaphoreError::Cancelled(CancelReason::Cancelled)
    );
    assert_eq!(semaphore.waiters(), 0);
    assert_eq!(semaphore.available(), 0);

    // Granted before any cancel: the permits are ours, and a later cancel changes nothing.
    let token = CancelToken::new();
    let waiter = {
        let (semaphore, token) = (semaphore.clone(), token.clone());
        thread::spawn(move || semaphore.acquire_with(1, &token, None).map(Permit::forget))
    };
    wait_for_waiters(&semaphore, 1);
    drop(held);
    assert_eq!(waiter.join().unwrap(), Ok(1));
    token.cancel();
    assert_eq!(semaphore.available(), 0);
    semaphore.release(1).unwrap();
    assert_eq!(semaphore.available(), 1);
}

/// How a waiter at the head of the queue gives up.
#[derive(Debug, Clone, Copy)]
enum GiveUp {
    Cancel,
    Timeout,
}

/// A large waiter at the head holds back a small one behind it; when the head gives up
/// (token or timeout) it leaves the queue and the one behind is granted.
#[test]
fn a_waiter_that_gives_up_lets_later_waiters_through() {
    for give_up in [GiveUp::Cancel, GiveUp::Timeout] {
        let semaphore = Semaphore::new(2);
        let first = semaphore.acquire(1).unwrap();
        let second = semaphore.acquire(1).unwrap();
        let token = CancelToken::new();
        let timeout = Duration::from_millis(100);
        let head = {
            let (semaphore, token) = (semaphore.clone(), token.clone());
            thread::spawn(move || {
                let started = Instant::now();
                let result = match give_up {
                    GiveUp::Cancel => semaphore.acquire_with(2, &token, None),
                    GiveUp::Timeout => semaphore.acquire_timeout(2, timeout),
                };
                (result.map(Permit::forget), started.elapsed())
            })
        };
        wait_for_waiters(&semaphore, 1);
        let (granted_tx, granted_rx) = channel();
        let behind = {
            let semaphore = semaphore.clone();
            thread::spawn(move || {
                let permit = semaphore.acquire(1).unwrap();
                granted_tx.send(()).unwrap();
                permit.forget()
            })
        };
        wait_for_waiters(&semaphore, 2);
        drop(first);
        // One permit is free, but the head wants two and the small one may not pass it.
        assert_eq!(semaphore.available(), 1, "{give_up:?}");
        assert_eq!(semaphore.waiters(), 2, "{give_up:?}");
        if let GiveUp::Cancel = give_up {
            token.cancel();
        }
        let (result, waited) = head.join().unwrap();
        match give_up {
            GiveUp::Cancel => assert_eq!(
                result,
                Err(SemaphoreError::Cancelled(CancelReason::Cancelled))
            ),
            GiveUp::Timeout => {
                assert_eq!(result, Err(SemaphoreError::Timeout));
                assert!(waited >= timeout, "timed out after {waited:?}");
            }
        }
        granted_rx
            .recv_timeout(patience())
            .unwrap_or_else(|_| panic!("{give_up:?}: the waiter behind was never granted"));
        assert_eq!(behind.join().unwrap(), 1);
        assert_eq!(semaphore.waiters(), 0, "{give_up:?}");
        assert_eq!(semaphore.available(), 0, "{give_up:?}");
        drop(second);
        semaphore.release(1).unwrap();
        assert_eq!(semaphore.available(), 2);
    }
}

// ----- FIFO fairness -----------------------------------------------------------------

/// Semaphore of 4, 3 held: A asks for 4, then B (and more) for 1 each. The free permit
/// is not given to the small requests behind A, and `try_acquire` may not take it either;
/// when the 3 return, A gets all 4 first, the small ones after A releases.
#[test]
fn a_large_request_at_the_head_is_not_starved_by_small_ones() {
    let semaphore = Semaphore::new(4);
    let held = semaphore.acquire(3).unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let (a_granted_tx, a_granted_rx) = channel();
    let (a_release_tx, a_release_rx) = channel::<()>();
    let a = {
        let (semaphore, order) = (semaphore.clone(), order.clone());
        thread::spawn(move || {
            let permit = semaphore.acquire(4).unwrap();
            order.lock().unwrap().push("A");
            a_granted_tx.send(()).unwrap();
            a_release_rx.recv_timeout(patience()).unwrap();
            drop(permit);
        })
    };
    wait_for_waiters(&semaphore, 1);
    let small: Vec<_> = (0..3)
        .map(|i| {
            let (shared, order) = (semaphore.clone(), order.clone());
            let waiter = thread::spawn(move || {
                let permit = shared.acquire(1).unwrap();
                order.lock().unwrap().push("B");
                permit.forget()
            });
            wait_for_waiters(&semaphore, 2 + i);
            waiter
        })
        .collect();
    assert_eq!(
        semaphore.available(),
        1,
        "a small request barged past the head"
    );
    assert_eq!(
        semaphore.try_acquire(1).unwrap_err(),
        SemaphoreError::WouldBlock,
        "try_acquire barged past waiters"
    );
    assert!(order.lock().unwrap().is_empty());

    drop(held);
    a_granted_rx
        .recv_timeout(patience())
        .expect("A never granted");
    assert_eq!(*order.lock().unwrap(), ["A"]);
    assert_eq!(semaphore.available(), 0);
    assert_eq!(semaphore.waiters(), 3);
    a_release_tx.send(()).unwrap();
    a.join().unwrap();
    for waiter in small {
        assert_eq!(waiter.join().unwrap(), 1);
    }
    assert_eq!(*order.lock().unwrap(), ["A", "B", "B", "B"]);
    assert_eq!(semaphore.available(), 1);
    semaphore.release(3).unwrap();
}

/// One release grants every waiter at the head that fits, in order, and stops at the
/// first that does not (even if one behind it would fit).
#[test]
fn a_release_grants_in_order_while_the_head_fits() {
    let semaphore = Semaphore::new(4);
    let held = semaphore.acquire(4).unwrap();
    let spawn = |n: u64| {
        let semaphore = semaphore.clone();
        thread::spawn(move || semaphore.acquire(n).unwrap().forget())
    };
    let x = spawn(2);
    wait_for_waiters(&semaphore, 1);
    let y = spawn(3);
    wait_for_waiters(&semaphore, 2);
    let z = spawn(1);
    wait_for_waiters(&semaphore, 3);
    drop(held);
    // X (2) fits; Y (3) does not fit the 2 left; Z (1) would, but is behind Y.
    assert_eq!(x.join().unwrap(), 2);
    assert_eq!(semaphore.available(), 2);
    assert_eq!(semaphore.waiters(), 2);
    semaphore.release(2).unwrap();
    // Y (3) and Z (1) both fit the 4 now: one release grants both.
    assert_eq!(y.join().unwrap(), 3);
    assert_eq!(z.join().unwrap(), 1);
    assert_eq!(semaphore.available(), 0);
    assert_eq!(semaphore.waiters(), 0);
    semaphore.release(4).unwrap();
}

/// Threads and jobs share one FIFO queue: a job queued first is granted before a thread
/// that asks after it, and the thread gets its permits when the job ends.
#[test]
fn threads_and_jobs_wait_in_one_fifo_queue() {
    let pool = pool(1);
    let semaphore = Semaphore::new(2);
    let held = semaphore.acquire(2).unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let (release_tx, release_rx) = channel::<()>();
    let job = {
        let (order, semaphore) = (order.clone(), semaphore.clone());
        pool.submit_with(SubmitOptions::new().semaphore(&semaphore, 2), move |_| {
            order.lock().unwrap().push("job");
            assert_eq!(semaphore.available(), 0);
            release_rx.recv_timeout(patience()).unwrap();
            Ok::<_, ()>(())
        })
        .unwrap()
    };
    assert_eq!(job.state(), JobState::WaitingForPermit);
    let thread_waiter = {
        let (order, semaphore) = (order.clone(), semaphore.clone());
        thread::spawn(move || {
            let permit = semaphore.acquire(1).unwrap();
            order.lock().unwrap().push("thread");
            permit.forget()
        })
    };
    wait_for_waiters(&semaphore, 2);
    drop(held);
    // The job at the head takes both permits; the thread keeps waiting.
    assert_eq!(semaphore.available(), 0);
    assert_eq!(semaphore.waiters(), 1);
    poll_until("the job to run", || job.state() == JobState::Running);
    release_tx.send(()).unwrap();
    assert_eq!(job.wait(), Ok(()));
    assert_eq!(thread_waiter.join().unwrap(), 1);
    assert_eq!(*order.lock().unwrap(), ["job", "thread"]);
    semaphore.release(1).unwrap();
    assert_eq!(semaphore.available(), 2);
}

/// Gated jobs are granted in submit order: a large job at the head runs (alone) before
/// the small ones submitted after it, though they would fit earlier.
#[test]
fn gated_jobs_are_granted_in_fifo_order() {
    let pool = pool(2);
    let semaphore = Semaphore::new(4);
    let held = semaphore.acquire(3).unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let submit = |name: &'static str, n: u64| {
        let (order, semaphore) = (order.clone(), semaphore.clone());
        pool.submit_with(SubmitOptions::new().semaphore(&semaphore, n), move |_| {
            order.lock().unwrap().push(name);
            if n == 4 {
                assert_eq!(semaphore.available(), 0, "the big job holds every permit");
            }
            Ok::<_, ()>(())
        })
        .unwrap()
    };
    let big = submit("big", 4);
    let small: Vec<_> = (0..3).map(|_| submit("small", 1)).collect();
    assert_eq!(semaphore.waiters(), 4);
    assert_eq!(
        semaphore.available(),
        1,
        "a small job barged past the big one"
    );
    for job in &small {
        assert_eq!(job.state(), JobState::WaitingForPermit);
    }
    drop(held);
    assert_eq!(big.wait(), Ok(()));
    for job in small {
        assert_eq!(job.wait(), Ok(()));
    }
    assert_eq!(*order.lock().unwrap(), ["big", "small", "small", "small"]);
    assert_eq!(semaphore.available(), 4);
}

// ----- scheduler-aware submit --------------------------------------------------------

/// 10,000 jobs through a semaphore of 3 on 8 threads: never more than 3 run at once
/// (atomic high-water mark inside the jobs, which spin so that they overlap), all finish,
/// and every permit comes back.
#[test]
fn gated_jobs_never_run_more_than_the_permits() {
    let jobs = by_profile(1_000, 10_000);
    for seed in SEEDS {
        let pool = pool(8);
        let semaphore = Semaphore::new(3);
        let gauge = Arc::new(Gauge::default());
        let mut rng = XorShift::new(seed);
        let handles: Vec<_> = (0..jobs)
            .map(|i| {
                let work = rng.range(50, 2_000);
                let gauge = Arc::clone(&gauge);
                pool.submit_with(SubmitOptions::new().semaphore(&semaphore, 1), move |_| {
                    gauge.enter(1);
                    spin(work);
                    gauge.leave(1);
                    Ok::<_, ()>(i)
                })
                .unwrap()
            })
            .collect();
        let results = wait_all_or_leak(vec![pool], handles, "semaphore of 3");
        for (i, result) in results.into_iter().enumerate() {
            assert_eq!(result, Ok(i));
        }
        let peak = gauge.peak();
        assert!(peak <= 3, "seed {seed:#x}: {peak} jobs ran at once");
        assert!(
            peak >= 2,
            "seed {seed:#x}: jobs never overlapped (peak {peak})"
        );
        assert_eq!(semaphore.available(), 3);
        assert_eq!(semaphore.waiters(), 0);
    }
}

/// Jobs of random weights 1..=3 on a semaphore of 5: the sum of the running weights never
/// exceeds 5, and all finish.
#[test]
fn weighted_gated_jobs_never_exceed_the_total() {
    let jobs = by_profile(1_000, 10_000);
    for seed in SEEDS {
        let pool = pool(8);
        let semaphore = Semaphore::new(5);
        let gauge = Arc::new(Gauge::default());
        let mut rng = XorShift::new(seed);
        let mut weights = 0;
        let handles: Vec<_> = (0..jobs)
            .map(|_| {
                let weight = rng.range(1, 3);
                weights += weight;
                let work = rng.range(50, 2_000);
                let gauge = Arc::clone(&gauge);
                pool.submit_with(
                    SubmitOptions::new().semaphore(&semaphore, weight),
                    move |_| {
                        gauge.enter(weight);
                        spin(work);
                        gauge.leave(weight);
                        Ok::<_, ()>(weight)
                    },
                )
                .unwrap()
            })
            .collect();
        let results = wait_all_or_leak(vec![pool], handles, "weighted semaphore of 5");
        let ran: u64 = results.into_iter().map(Result::unwrap).sum();
        assert_eq!(ran, weights);
        let peak = gauge.peak();
        assert!(peak <= 5, "seed {seed:#x}: running weights reached {peak}");
        assert!(
            peak >= 3,
            "seed {seed:#x}: jobs never overlapped (peak {peak})"
        );
        assert_eq!(semaphore.available(), 5);
        assert_eq!(semaphore.waiters(), 0);
    }
}

/// On a one-thread pool, jobs waiting for permits held elsewhere are `WaitingForPermit`
/// and leave the worker free: an ungated job submitted after them runs at once. When the
/// permits return the gated jobs run.
#[test]
fn a_job_waiting_for_permits_occupies_no_worker() {
    let pool = pool(1);
    let semaphore = Semaphore::new(2);
    let held = semaphore.acquire(2).unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let waiting: Vec<_> = (0..5)
        .map(|_| gated(&pool, &semaphore, 1, SubmitOptions::new(), &ran))
        .collect();
    for job in &waiting {
        assert_eq!(job.state(), JobState::WaitingForPermit);
    }
    assert_eq!(semaphore.waiters(), 5);
    let free = pool.submit(|ctx| Ok::<_, ()>(ctx.worker_index())).unwrap();
    assert_eq!(
        free.wait_timeout(patience())
            .expect("an ungated job was starved by waiting jobs"),
        Ok(0)
    );
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    for job in &waiting {
        assert_eq!(job.state(), JobState::WaitingForPermit);
    }
    drop(held);
    for job in waiting {
        assert_eq!(job.wait(), Ok(()));
    }
    assert_eq!(ran.load(Ordering::SeqCst), 5);
    assert_eq!(semaphore.available(), 2);
    assert_eq!(semaphore.waiters(), 0);
}

/// Cancelling a job that waits for permits ends it `Cancelled` at once (before the
/// permits come), takes it out of the queue, drops its closure, and it never runs; the
/// other waiters are unaffected.
#[test]
fn cancelling_a_waiting_job_removes_it_from_the_queue_at_once() {
    let pool = pool(2);
    let semaphore = Semaphore::new(2);
    let held = semaphore.acquire(2).unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let captured = Arc::new(());
    let first = gated(&pool, &semaphore, 2, SubmitOptions::new(), &ran);
    let victim = {
        let (captured, ran) = (Arc::clone(&captured), Arc::clone(&ran));
        pool.submit_with(SubmitOptions::new().semaphore(&semaphore, 2), move |_| {
            drop(captured);
            ran.fetch_add(100, Ordering::SeqCst);
            Ok::<_, ()>(())
        })
        .unwrap()
    };
    let last = gated(&pool, &semaphore, 1, SubmitOptions::new(), &ran);
    assert_eq!(semaphore.waiters(), 3);
    assert_eq!(victim.state(), JobState::WaitingForPermit);

    assert!(
        victim.cancel(),
        "a waiting job is cancelled without running"
    );
    assert_eq!(victim.state(), JobState::Cancelled);
    assert_eq!(semaphore.waiters(), 2, "the cancelled job is still queued");
    assert_eq!(
        Arc::strong_count(&captured),
        1,
        "its closure was not dropped"
    );
    assert!(!victim.cancel(), "a second cancel changes nothing");
    assert_eq!(
        victim.wait(),
        Err(JobError::Cancelled(CancelReason::Cancelled))
    );
    assert_eq!(first.state(), JobState::WaitingForPermit);
    assert_eq!(last.state(), JobState::WaitingForPermit);
    assert_eq!(semaphore.available(), 0);

    drop(held);
    assert_eq!(first.wait(), Ok(()));
    assert_eq!(last.wait(), Ok(()));
    assert_eq!(ran.load(Ordering::SeqCst), 2, "the cancelled job ran");
    assert_eq!(semaphore.available(), 2);
    assert_eq!(semaphore.waiters(), 0);
}

/// A gated job gives its permits back whatever its end: success, error, panic, cancel
/// while running, and cancel after the grant but before it ran. While it runs it holds
/// them.
#[test]
fn permits_return_whatever_the_job_s_end() {
    let pool = pool(2);
    let semaphore = Semaphore::new(3);

    let observed = |f: fn(&jobrunner::Context<'_>) -> Result<(), &'static str>| {
        let semaphore = semaphore.clone();
        let (tx, rx) = channel();
        let job = pool
            .submit_with(SubmitOptions::new().semaphore(&semaphore, 2), move |ctx| {
                tx.send(semaphore.available()).unwrap();
                f(ctx)
            })
            .unwrap();
        assert_eq!(
            rx.recv_timeout(patience()).unwrap(),
            1,
            "the running job holds 2 of 3"
        );
        job
    };

    let ok = observed(|_| Ok(()));
    assert_eq!(ok.wait(), Ok(()));
    assert_eq!(semaphore.available(), 3, "after success");

    let failed = observed(|_| Err("boom"));
    assert_eq!(failed.wait(), Err(JobError::Failed("boom")));
    assert_eq!(semaphore.available(), 3, "after an error");

    let panicked = observed(|_| panic!("gated job panics on purpose"));
    match panicked.wait() {
        Err(JobError::Panicked(message)) => {
            assert!(message.contains("gated job panics on purpose"), "{message}")
        }
        other => panic!("expected a panic, got {other:?}"),
    }
    assert_eq!(semaphore.available(), 3, "after a panic");

    // Cancelled while running: it sees the cancel and stops with an error.
    let (started_tx, started_rx) = channel();
    let running = pool
        .submit_with(SubmitOptions::new().semaphore(&semaphore, 2), move |ctx| {
            started_tx.send(()).unwrap();
            let deadline = Instant::now() + patience();
            while !ctx.is_cancelled() && Instant::now() < deadline {
                thread::yield_now();
            }
            Err::<(), _>("stopped")
        })
        .unwrap();
    started_rx.recv_timeout(patience()).unwrap();
    assert_eq!(semaphore.available(), 1);
    assert!(!running.cancel(), "a running job is asked to stop");
    assert_eq!(
        running.wait(),
        Err(JobError::Cancelled(CancelReason::Cancelled))
    );
    assert_eq!(semaphore.available(), 3, "after a cancel while running");

    // Cancelled after the grant, before a worker took it: both workers are busy.
    let blockers = [Blocker::start(&pool), Blocker::start(&pool)];
    let ran = Arc::new(AtomicUsize::new(0));
    let granted = gated(&pool, &semaphore, 2, SubmitOptions::new(), &ran);
    assert_eq!(
        granted.state(),
        JobState::Queued,
        "free permits are granted at once"
    );
    assert_eq!(semaphore.available(), 1);
    assert_eq!(semaphore.waiters(), 0);
    assert!(granted.cancel());
    assert_eq!(granted.state(), JobState::Cancelled);
    assert_eq!(
        semaphore.available(),
        3,
        "after a cancel between grant and run"
    );
    for blocker in blockers {
        blocker.finish();
    }
    assert_eq!(
        granted.wait(),
        Err(JobError::Cancelled(CancelReason::Cancelled))
    );
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    assert_eq!(semaphore.available(), 3);
}

/// Cancelling the submit token ends every job under it that waits for permits, at once
/// and with the token's reason (a deadline too); none of them runs.
#[test]
fn a_token_cancel_ends_waiting_gated_jobs() {
    let pool = pool(2);
    let semaphore = Semaphore::new(1);
    let held = semaphore.acquire(1).unwrap();
    let ran = Arc::new(AtomicUsize::new(0));

    let token = CancelToken::new();
    let under_token: Vec<_> = (0..4)
        .map(|_| {
            gated(
                &pool,
                &semaphore,
                1,
                SubmitOptions::new().token(&token),
                &ran,
            )
        })
        .collect();
    let other = gated(&pool, &semaphore, 1, SubmitOptions::new(), &ran);
    assert_eq!(semaphore.waiters(), 5);
    token.cancel();
    for job in &under_token {
        assert_eq!(job.state(), JobState::Cancelled, "not ended at once");
    }
    assert_eq!(semaphore.waiters(), 1);
    for job in under_token {
        assert_eq!(
            job.wait(),
            Err(JobError::Cancelled(CancelReason::Cancelled))
        );
    }

    // Long enough for the three submits below to queue before it passes: under valgrind
    // (JR_TEST_SLOW) they take longer than 30 ms.
    let deadline = CancelToken::with_timeout(Duration::from_millis(if common::slow() {
        2_000
    } else {
        30
    }));
    let timed: Vec<_> = (0..3)
        .map(|_| {
            gated(
                &pool,
                &semaphore,
                1,
                SubmitOptions::new().token(&deadline),
                &ran,
            )
        })
        .collect();
    assert_eq!(semaphore.waiters(), 4);
    for job in timed {
        let result = job
            .wait_timeout(patience())
            .expect("the deadline never ended the job");
        assert_eq!(
            result,
            Err(JobError::Cancelled(CancelReason::DeadlineExceeded))
        );
    }
    assert_eq!(semaphore.waiters(), 1);

    // Already cancelled at submit: accepted, ends Cancelled, never queued.
    let late = gated(
        &pool,
        &semaphore,
        1,
        SubmitOptions::new().token(&token),
        &ran,
    );
    assert_eq!(
        late.wait(),
        Err(JobError::Cancelled(CancelReason::Cancelled))
    );
    assert_eq!(semaphore.waiters(), 1);

    assert_eq!(ran.load(Ordering::SeqCst), 0);
    drop(held);
    assert_eq!(other.wait(), Ok(()));
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    assert_eq!(semaphore.available(), 1);
}

/// `shutdown(Cancel)` ends jobs waiting for permits as `Cancelled(Shutdown)` while the
/// permits are still held elsewhere, and returns; the permits held are not touched.
#[test]
fn a_cancel_shutdown_ends_waiting_gated_jobs() {
    let pool = pool(2);
    let semaphore = Semaphore::new(2);
    let held = semaphore.acquire(2).unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let waiting: Vec<_> = (0..6)
        .map(|i| gated(&pool, &semaphore, 1 + i % 2, SubmitOptions::new(), &ran))
        .collect();
    assert_eq!(semaphore.waiters(), 6);
    let started = Instant::now();
    let report = pool.shutdown(ShutdownMode::Cancel, Some(patience()));
    assert!(
        started.elapsed() < patience(),
        "the shutdown waited for its timeout"
    );
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(report.cancelled, 6, "{report:?}");
    for job in waiting {
        assert_eq!(job.wait(), Err(JobError::Cancelled(CancelReason::Shutdown)));
    }
    assert_eq!(semaphore.waiters(), 0);
    assert_eq!(semaphore.available(), 0);
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    drop(held);
    assert_eq!(semaphore.available(), 2);
    let refused = pool.submit_with(SubmitOptions::new().semaphore(&semaphore, 1), |_| {
        Ok::<_, ()>(())
    });
    assert_eq!(refused.unwrap_err(), SubmitError::Shutdown);
}

/// A delayed gated job is `Delayed` for its delay, then waits for its permits
/// (`WaitingForPermit`), and runs once they are released; with free permits it runs
/// right after its delay.
#[test]
fn a_delayed_gated_job_waits_for_its_delay_then_for_permits() {
    if common::skip_if_slow("measures a 50 ms delay, which a slow tool stretches") {
        return;
    }
    let pool = pool(2);
    let semaphore = Semaphore::new(1);
    let delay = Duration::from_millis(50);
    let held = semaphore.acquire(1).unwrap();
    let submitted = Instant::now();
    let job = pool
        .submit_with(
            SubmitOptions::new().delay(delay).semaphore(&semaphore, 1),
            |_| Ok::<_, ()>(Instant::now()),
        )
        .unwrap();
    assert_eq!(job.state(), JobState::Delayed);
    assert_eq!(
        semaphore.waiters(),
        0,
        "queued for permits before its delay"
    );
    poll_until("the delay to pass", || job.state() != JobState::Delayed);
    assert!(
        submitted.elapsed() >= delay,
        "released {:?} early",
        delay - submitted.elapsed()
    );
    assert_eq!(job.state(), JobState::WaitingForPermit);
    assert_eq!(semaphore.waiters(), 1);
    let released = Instant::now();
    drop(held);
    let ran_at = job.wait().unwrap();
    assert!(ran_at >= released);
    assert_eq!(semaphore.available(), 1);

    let submitted = Instant::now();
    let job = pool
        .submit_with(
            SubmitOptions::new().delay(delay).semaphore(&semaphore, 1),
            |_| Ok::<_, ()>(Instant::now()),
        )
        .unwrap();
    let ran_at = job.wait().unwrap();
    assert!(ran_at >= submitted + delay, "ran before its delay");
    assert_eq!(semaphore.available(), 1);
}

/// A job blocked on `acquire` never runs unrelated queued work meanwhile, whatever the
/// help policy (even `Any`): an unrelated job run on top of the waiter could itself wait
/// for the same semaphore behind it and never let it resume (see
/// `nested_acquire_waits_on_one_worker_do_not_deadlock`). On one thread, a job submitted
/// after the waiter does not run until the waiter has its permit.
#[test]
fn an_acquire_inside_a_job_never_runs_unrelated_jobs() {
    for policy in [HelpPolicy::Any, HelpPolicy::Own, HelpPolicy::Block] {
        let pool = pool_with(1, policy);
        let semaphore = Semaphore::new(1);
        let held = semaphore.acquire(1).unwrap();
        let waiter = {
            let semaphore = semaphore.clone();
            pool.submit(move |_| semaphore.acquire(1).map(Permit::forget))
                .unwrap()
        };
        wait_for_waiters(&semaphore, 1);
        let other = pool.submit(|_| Ok::<_, ()>(7)).unwrap();
        let other = match other.wait_timeout(Duration::from_millis(100)) {
            Ok(result) => panic!("{policy:?}: an unrelated job ran during the wait: {result:?}"),
            Err(other) => other,
        };
        assert_eq!(waiter.state(), JobState::Running);
        drop(held);
        assert_eq!(waiter.wait(), Ok(1));
        assert_eq!(other.wait(), Ok(7));
        semaphore.release(1).unwrap();
    }
}

/// `acquire_with` inside a job gives up when its token is cancelled, whatever the help
/// policy (the worker is woken from its wait).
#[test]
fn an_acquire_inside_a_job_gives_up_on_cancel() {
    for policy in [HelpPolicy::Any, HelpPolicy::Own, HelpPolicy::Block] {
        let pool = pool_with(1, policy);
        let semaphore = Semaphore::new(1);
        let held = semaphore.acquire(1).unwrap();
        let token = CancelToken::new();
        let job = {
            let (semaphore, token) = (semaphore.clone(), token.clone());
            pool.submit(move |_| match semaphore.acquire_with(1, &token, None) {
                Ok(permit) => Ok(permit.forget()),
                Err(error) => Err(error),
            })
            .unwrap()
        };
        wait_for_waiters(&semaphore, 1);
        token.cancel();
        let result = job
            .wait_timeout(patience())
            .unwrap_or_else(|_| panic!("{policy:?}: the cancel did not wake the waiting worker"));
        assert_eq!(
            result,
            Err(JobError::Failed(SemaphoreError::Cancelled(
                CancelReason::Cancelled
            ))),
            "{policy:?}"
        );
        assert_eq!(semaphore.waiters(), 0);
        drop(held);
        assert_eq!(semaphore.available(), 1);
    }
}

/// Jobs that each `acquire(1)` from a semaphore of 1 inside their body (not gated at
/// submit), 20 of them on a 2-thread pool: all finish under every help policy, and never
/// two hold the permit at once.
#[test]
fn blocking_acquires_inside_jobs_do_not_starve_a_small_pool() {
    under_every_policy(|policy| {
        for seed in SEEDS {
            let pool = pool_with(2, policy);
            let semaphore = Semaphore::new(1);
            let gauge = Arc::new(Gauge::default());
            let mut rng = XorShift::new(seed);
            let jobs: Vec<_> = (0..20)
                .map(|i| {
                    let (semaphore, gauge) = (semaphore.clone(), Arc::clone(&gauge));
                    let work = rng.range(1_000, 20_000);
                    pool.submit(move |_| {
                        let permit = semaphore.acquire(1)?;
                        gauge.enter(1);
                        spin(work);
                        gauge.leave(1);
                        drop(permit);
                        Ok::<_, SemaphoreError>(i)
                    })
                    .unwrap()
                })
                .collect();
            let results = try_wait_all(vec![pool], jobs, patience() / 2)
                .map_err(|error| format!("seed {seed:#x}: {error}"))?;
            for (i, result) in results.into_iter().enumerate() {
                assert_eq!(result, Ok(i));
            }
            assert_eq!(gauge.peak(), 1, "{policy:?}: two jobs held the only permit");
            assert_eq!(semaphore.available(), 1);
            assert_eq!(semaphore.waiters(), 0);
        }
        Ok(())
    });
}

/// The smallest case of the above, step by step on one thread: job A waits in `acquire`
/// for the permit the test holds, then job B (submitted after A) asks too. If A's worker
/// ran B while it waited (as `Any` does for job waits), B would wait *on top of* A,
/// behind A in the queue, forever. When the permit returns both must end.
#[test]
fn nested_acquire_waits_on_one_worker_do_not_deadlock() {
    under_every_policy(|policy| {
        let pool = pool_with(1, policy);
        let semaphore = Semaphore::new(1);
        let held = semaphore.acquire(1).unwrap();
        let submit = |name: &'static str| {
            let semaphore = semaphore.clone();
            pool.submit(move |_| {
                let permit = semaphore.acquire(1)?;
                drop(permit);
                Ok::<_, SemaphoreError>(name)
            })
            .unwrap()
        };
        let a = submit("A");
        wait_for_waiters(&semaphore, 1);
        // Under `Any` A's worker used to help by running B, which then queued behind A on
        // the same stack: A's grant could never be used. B must stay queued instead.
        let b = submit("B");
        drop(held);
        let results = try_wait_all(vec![pool], vec![a, b], Duration::from_secs(3))?;
        assert_eq!(results, [Ok("A"), Ok("B")]);
        assert_eq!(semaphore.available(), 1);
        Ok(())
    });
}

/// A gated job granted the permits that a job blocked in `acquire` waits behind must
/// still get a worker. One thread: the test holds the only permit; gated job G queues for
/// it, then job J takes the worker and blocks in `acquire(1)` behind G. The test releases:
/// G is granted (it is first) and must run, although the only worker is inside J.
#[test]
fn granted_gated_jobs_are_not_starved_by_blocking_acquires() {
    under_every_policy(|policy| {
        let pool = pool_with(1, policy);
        let semaphore = Semaphore::new(1);
        let held = semaphore.acquire(1).unwrap();
        let gated = pool
            .submit_with(SubmitOptions::new().semaphore(&semaphore, 1), |_| {
                Ok::<_, SemaphoreError>("gated")
            })
            .unwrap();
        let blocking = {
            let semaphore = semaphore.clone();
            pool.submit(move |_| {
                let permit = semaphore.acquire(1)?;
                drop(permit);
                Ok::<_, SemaphoreError>("acquire")
            })
            .unwrap()
        };
        wait_for_waiters(&semaphore, 2);
        drop(held);
        let results = try_wait_all(vec![pool], vec![gated, blocking], Duration::from_secs(3))?;
        assert_eq!(results, [Ok("gated"), Ok("acquire")]);
        assert_eq!(semaphore.available(), 1);
        Ok(())
    });
}

/// One semaphore limits jobs of two pools together: first jobs gated at submit, then jobs
/// that acquire inside their body, alternating between the pools. The permits held at
/// once never exceed the total, and all finish.
#[test]
fn a_semaphore_shared_by_two_pools() {
    let jobs = by_profile(200, 2_000);
    for seed in SEEDS {
        let pools = [pool(3), pool(3)];
        let semaphore = Semaphore::new(2);
        let gauge = Arc::new(Gauge::default());
        let mut rng = XorShift::new(seed);
        let gated_jobs: Vec<_> = (0..jobs)
            .map(|i| {
                let work = rng.range(50, 2_000);
                let gauge = Arc::clone(&gauge);
                pools[i % 2]
                    .submit_with(SubmitOptions::new().semaphore(&semaphore, 1), move |ctx| {
                        gauge.enter(1);
                        spin(work);
                        gauge.leave(1);
                        Ok::<_, ()>(ctx.pool().threads())
                    })
                    .unwrap()
            })
            .collect();
        for result in wait_all_or_leak(pools.to_vec(), gated_jobs, "gated jobs of two pools") {
            assert_eq!(result, Ok(3));
        }
        assert_eq!(semaphore.available(), 2);

        let acquiring_jobs: Vec<_> = (0..jobs)
            .map(|i| {
                let work = rng.range(50, 2_000);
                let (semaphore, gauge) = (semaphore.clone(), Arc::clone(&gauge));
                pools[i % 2]
                    .submit(move |_| {
                        let permit = semaphore.acquire(1)?;
                        gauge.enter(1);
                        spin(work);
                        gauge.leave(1);
                        drop(permit);
                        Ok::<_, SemaphoreError>(())
                    })
                    .unwrap()
            })
            .collect();
        let results = wait_all_or_leak(Vec::from(pools), acquiring_jobs, "acquiring jobs");
        assert!(results.iter().all(Result::is_ok));
        let peak = gauge.peak();
        assert!(
            peak <= 2,
            "seed {seed:#x}: {peak} held permits at once across two pools"
        );
        assert!(peak >= 1);
        assert_eq!(semaphore.available(), 2);
        assert_eq!(semaphore.waiters(), 0);
    }
}

// ----- stress: cancels racing grants -------------------------------------------------

/// Gated jobs of random weights are cancelled at random while they are being granted and
/// run: every job ends `Ok` or `Cancelled` (a cancelled one never ran), the running
/// weights never exceed the total, and every permit comes back.
#[test]
fn cancels_racing_grants_lose_no_permits() {
    let jobs = by_profile(500, 5_000);
    for seed in SEEDS {
        let pool = pool(4);
        let semaphore = Semaphore::new(4);
        let gauge = Arc::new(Gauge::default());
        let mut rng = XorShift::new(seed);
        let mut handles = Vec::with_capacity(jobs);
        let mut flags = Vec::with_capacity(jobs);
        let mut cancelled = 0;
        for _ in 0..jobs {
            let weight = rng.range(1, 4);
            let work = rng.range(50, 1_000);
            let ran = Arc::new(AtomicBool::new(false));
            let job = {
                let (gauge, ran) = (Arc::clone(&gauge), Arc::clone(&ran));
                pool.submit_with(
                    SubmitOptions::new().semaphore(&semaphore, weight),
                    move |_| {
                        ran.store(true, Ordering::SeqCst);
                        gauge.enter(weight);
                        spin(work);
                        gauge.leave(weight);
                        Ok::<_, ()>(())
                    },
                )
                .unwrap()
            };
            handles.push(job);
            flags.push(ran);
            // Cancel a random earlier job: waiting, granted, running or done.
            if rng.next_u64() % 3 == 0 {
                let victim = rng.next_u64() as usize % handles.len();
                if handles[victim].cancel() {
                    cancelled += 1;
                }
            }
        }
        let mut ended_cancelled = 0;
        for (result, ran) in wait_all_or_leak(vec![pool], handles, "cancel stress")
            .into_iter()
            .zip(flags)
        {
            match result {
                Ok(()) => assert!(ran.load(Ordering::SeqCst)),
                Err(JobError::Cancelled(CancelReason::Cancelled)) => {
                    assert!(!ran.load(Ordering::SeqCst), "a job cancelled unrun ran");
                    ended_cancelled += 1;
                }
                Err(other) => panic!("seed {seed:#x}: unexpected end {other:?}"),
            }
        }
        assert_eq!(ended_cancelled, cancelled, "seed {seed:#x}");
        let peak = gauge.peak();
        assert!(peak <= 4, "seed {seed:#x}: running weights reached {peak}");
        assert_eq!(semaphore.available(), 4, "seed {seed:#x}: permits lost");
        assert_eq!(semaphore.waiters(), 0, "seed {seed:#x}");
    }
}

/// A token cancelled (from another thread) while gated jobs under it are being submitted,
/// with every permit held elsewhere: every job ends `Cancelled`, and none is left in the
/// semaphore's queue. The canceller spins on a slot (no wake-up latency) and cancels after
/// a random short spin, so the cancel lands among the submits.
#[test]
fn a_token_cancel_racing_gated_submits_leaves_no_waiter() {
    // Rounds until a time budget per seed: a round takes a fraction of a millisecond.
    let budget = Duration::from_millis(if cfg!(debug_assertions) { 300 } else { 1_000 });
    let pool = pool(2);
    let semaphore = Semaphore::new(1);
    let held = semaphore.acquire(1).unwrap();
    let slot = Arc::new(Mutex::new(None::<(CancelToken, u64)>));
    let done = Arc::new(AtomicBool::new(false));
    let canceller = {
        let (slot, done) = (Arc::clone(&slot), Arc::clone(&done));
        thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                let next = slot.lock().unwrap().take();
                match next {
                    Some((token, spins)) => {
                        spin(spins);
                        token.cancel();
                    }
                    None => thread::yield_now(),
                }
            }
        })
    };
    let mut leftover = None;
    'seeds: for seed in SEEDS {
        let mut rng = XorShift::new(seed);
        let until = Instant::now() + budget;
        for round in 0.. {
            if Instant::now() >= until {
                break;
            }
            let token = CancelToken::new();
            *slot.lock().unwrap() = Some((token.clone(), rng.range(0, 400)));
            let jobs: Vec<_> = (0..50)
                .map(|_| {
                    pool.submit_with(
                        SubmitOptions::new().token(&token).semaphore(&semaphore, 1),
                        |_| Ok::<_, ()>(()),
                    )
                    .unwrap()
                })
                .collect();
            for job in jobs {
                assert_eq!(
                    job.wait_timeout(patience())
                        .expect("a job outlived its token"),
                    Err(JobError::Cancelled(CancelReason::Cancelled))
                );
            }
            if semaphore.waiters() != 0 {
                leftover = Some((seed, round, semaphore.waiters()));
                break 'seeds;
            }
        }
    }
    done.store(true, Ordering::SeqCst);
    canceller.join().unwrap();
    if let Some((seed, round, waiters)) = leftover {
        panic!(
            "seed {seed:#x}, round {round}: every job ended Cancelled, but {waiters} cancelled \
             job(s) stayed in the semaphore's queue"
        );
    }
    drop(held);
    assert_eq!(semaphore.available(), 1);
}
