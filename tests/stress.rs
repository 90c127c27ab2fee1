//! The stress suite with fault injection: seeded random workloads that mix every kind of
//! work the runtime offers with cancels, deadlines, submit timeouts, failures, panics and
//! a racing shutdown, then check the runtime's promises at the end of every seed.
//!
//! # What one seed does
//!
//! A pool of 1 to 3 workers (bounded queue or not, a random help policy) is driven by
//! 2 or 3 *submitter* threads, each with its own generator derived from the seed, that
//! submit plain jobs (Rust, and C jobs through `jr_submit` with `arg`/`arg_free` and a
//! `result_free`), group members (limits, fail-fast), periodic jobs, streams, pipelines,
//! with random tokens (some with deadlines), delays (some an hour long), semaphores with
//! random weights and submit timeouts; and that cancel, wait for, fan in and take results
//! at random. Job bodies succeed, fail, panic, sleep, poll cancellation, submit and wait
//! for children, `join`, acquire semaphores and talk over a channel. Meanwhile a *chaos*
//! thread cancels tokens and jobs and sets deadlines at random moments, and for some
//! seeds a *shutdown* thread shuts the pool down (random mode, random timeout) while the
//! submitters are still going. The seed ends with a `Cancel` shutdown.
//!
//! # What is checked at the end of every seed
//!
//! - Each accepted job reached exactly one terminal state: a table of one `AtomicU8` per
//!   job id, moved from "accepted" to its terminal state by a compare-and-swap where the
//!   runtime reports the end (`JobHandle::on_end` for Rust jobs, group members, nested
//!   children and stream producers; `jr_job_on_done` for C jobs). A second report, or an
//!   id left non-terminal, fails the seed. The terminal state agrees with what the body
//!   did (a second table: not run, returned `Ok`/`Err`, panicked) and with what every
//!   wait on the job's handle returned (a third).
//! - Every destructor ran exactly once: each Rust closure's captures, each C `arg_free`
//!   (or, for a refused submit, the caller's own free), each C result (`result_free` or
//!   taken), each channel, stream and pipeline item.
//! - `stats()`: submitted = succeeded + failed + panicked + cancelled, nothing queued or
//!   running, and the counts agree with the table's where they are comparable.
//! - Every semaphore (Rust and C) has all its permits back; each periodic job's runs as
//!   counted by its body equal `Ticker::runs`; every job's memory is freed.
//! - No thread is left behind: `/proc/self/task` comes back to its count before the seed.
//! - A watchdog turns a hang into a failure: past its deadline it prints the pool's
//!   `debug_dump` (every worker's state, the queues, the blocked waiters) and the ids not
//!   yet ended, then aborts the process (a hang never becomes a CI timeout).
//!
//! # Reproducing
//!
//! The *operation sequence* of every thread (which operation, with which parameters) is
//! a pure function of the seed; the interleaving of the threads, and so which jobs a
//! cancel finds still queued, is not. A failing seed is printed with the command that
//! replays it alone: `make stress SEED=N` (`STRESS_SEED=N cargo test --release --test
//! stress -- --nocapture`).
//! `STRESS_SEEDS` (default 20) and `STRESS_OPS` (default 20,000) size a campaign
//! (`make stress SEEDS=N OPS=M`); `STRESS_FIRST_SEED` starts it elsewhere.
//!
//! This is its own test binary with a single test: it counts the process's threads and
//! live jobs, which another test running alongside would disturb.

#![cfg(feature = "capi")]

use std::ffi::c_void;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use jobrunner::ffi::job::{
    jr_job, jr_job_cancel, jr_job_free, jr_job_on_done, jr_job_take_result, jr_job_wait, jr_state,
    jr_submit, jr_submit_options_default,
};
use jobrunner::ffi::pool::{jr_pool, jr_pool_free};
use jobrunner::ffi::sem::{jr_sem, jr_sem_available, jr_sem_free, jr_sem_new};
use jobrunner::ffi::token::{
    jr_token, jr_token_cancel, jr_token_cancel_sync, jr_token_free, jr_token_new,
    jr_token_set_deadline, jr_token_wait,
};
use jobrunner::ffi::{
    self, jr_ctx, jr_ctx_fail, jr_ctx_is_cancelled, jr_ctx_panic, jr_ctx_pool, jr_ctx_token,
    jr_status,
};
use jobrunner::{
    debug_live_jobs, CancelToken, Channel, Context, Group, GroupOptions, HelpPolicy, Job, JobError,
    JobHandle, JobState, PanicPolicy, Pipeline, Pool, Semaphore, ShutdownMode, Stream, SubmitError,
    SubmitOptions, Ticker,
};

#[allow(dead_code)]
mod common;

use common::{patience, quiet_expected_panics, XorShift, EXPECTED};

// ----- the tables --------------------------------------------------------------------------

/// `Table::end`: the id was never used for a submit that returned.
const UNUSED: u8 = 0;
/// The submit refused the job (it must never run).
const REFUSED: u8 = 1;
/// The submit accepted the job; no end reported yet.
const ACCEPTED: u8 = 2;
/// Terminal: `JobState::Succeeded`.
const SUCCEEDED: u8 = 3;
/// Terminal: `JobState::Failed`.
const FAILED: u8 = 4;
/// Terminal: `JobState::Panicked`.
const PANICKED: u8 = 5;
/// Terminal: `JobState::Cancelled`.
const CANCELLED: u8 = 6;
/// Not a job (a periodic job's closure): only its release is checked.
const NOT_A_JOB: u8 = 7;

/// `Table::body`: the body has not started.
const NOT_RUN: u8 = 0;
/// The body is running.
const RUNNING: u8 = 1;
/// The body returned `Ok` (C: 0).
const RETURNED_OK: u8 = 2;
/// The body returned `Err` (C: nonzero).
const RETURNED_ERR: u8 = 3;
/// The body is panicking (C: `jr_ctx_panic`).
const PANICKING: u8 = 4;

fn end_name(state: u8) -> &'static str {
    match state {
        UNUSED => "unused",
        REFUSED => "refused",
        ACCEPTED => "accepted (not ended)",
        SUCCEEDED => "Succeeded",
        FAILED => "Failed",
        PANICKED => "Panicked",
        CANCELLED => "Cancelled",
        NOT_A_JOB => "not a job",
        _ => "?",
    }
}

fn body_name(state: u8) -> &'static str {
    match state {
        NOT_RUN => "not run",
        RUNNING => "running",
        RETURNED_OK => "returned Ok",
        RETURNED_ERR => "returned Err",
        PANICKING => "panicked",
        _ => "?",
    }
}

fn end_of_state(state: JobState) -> u8 {
    match state {
        JobState::Succeeded => SUCCEEDED,
        JobState::Failed => FAILED,
        JobState::Panicked => PANICKED,
        JobState::Cancelled => CANCELLED,
        _ => ACCEPTED,
    }
}

fn end_of_c_state(state: jr_state) -> u8 {
    match state {
        jr_state::JR_JOB_SUCCEEDED => SUCCEEDED,
        jr_state::JR_JOB_FAILED => FAILED,
        jr_state::JR_JOB_PANICKED => PANICKED,
        jr_state::JR_JOB_CANCELLED => CANCELLED,
        _ => ACCEPTED,
    }
}

fn end_of_result<T, E>(result: &Result<T, JobError<E>>) -> u8 {
    match result {
        Ok(_) => SUCCEEDED,
        Err(JobError::Failed(_)) => FAILED,
        Err(JobError::Panicked(_)) => PANICKED,
        Err(JobError::Cancelled(_)) => CANCELLED,
    }
}

fn end_of_status(status: jr_status) -> u8 {
    match status {
        jr_status::JR_OK => SUCCEEDED,
        jr_status::JR_E_JOB_FAILED => FAILED,
        jr_status::JR_E_PANICKED => PANICKED,
        jr_status::JR_E_CANCELLED => CANCELLED,
        _ => ACCEPTED,
    }
}

/// What submitted a job id.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
enum Via {
    Rust = 1,
    C = 2,
    Member = 3,
    Child = 4,
    CChild = 5,
    Producer = 6,
    Ticker = 7,
}

/// One seed's truth, written by the runtime's end reports, the bodies and the destructors.
struct Table {
    /// Per job id: `UNUSED`, `REFUSED`, `ACCEPTED`, then one terminal state.
    end: Box<[AtomicU8]>,
    /// Per job id: what its body did.
    body: Box<[AtomicU8]>,
    /// Per job id: what waits on its handle reported (0: none waited), the same each time.
    seen: Box<[AtomicU8]>,
    /// Per job id: its destructors run (Rust closure captures, C `arg_free` or the
    /// caller's free of a refused argument): exactly 1 at the end.
    released: Box<[AtomicU8]>,
    /// Per job id: C results made (0 or 1) and released (`result_free`, or taken and freed).
    results_made: Box<[AtomicU8]>,
    results_released: Box<[AtomicU8]>,
    /// Per job id: the `Via` that submitted it.
    via: Box<[AtomicU8]>,
    next_id: AtomicUsize,
    /// Per item id (channel, stream, pipeline items): drops, exactly 1 at the end.
    items: Box<[AtomicU8]>,
    next_item: AtomicUsize,
    /// What went wrong where no panic may be raised (an end hook on a worker): reported
    /// at the end of the seed, and by the watchdog.
    errors: Mutex<Vec<String>>,
    faults: Faults,
}

/// Faults injected, for the per-seed line.
#[derive(Default)]
struct Faults {
    cancels: AtomicU64,
    deadlines: AtomicU64,
    failures: AtomicU64,
    panics: AtomicU64,
    submit_timeouts: AtomicU64,
    refused: AtomicU64,
}

fn atomics(n: usize) -> Box<[AtomicU8]> {
    (0..n).map(|_| AtomicU8::new(0)).collect()
}

impl Table {
    fn new(jobs: usize, items: usize) -> Self {
        Table {
            end: atomics(jobs),
            body: atomics(jobs),
            seen: atomics(jobs),
            released: atomics(jobs),
            results_made: atomics(jobs),
            results_released: atomics(jobs),
            via: atomics(jobs),
            next_id: AtomicUsize::new(0),
            items: atomics(items),
            next_item: AtomicUsize::new(0),
            errors: Mutex::new(Vec::new()),
            faults: Faults::default(),
        }
    }

    fn fail(&self, message: String) {
        let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        if errors.len() < 100 {
            errors.push(message);
        }
    }

    /// A new job id.
    fn id(&self, via: Via) -> usize {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        assert!(id < self.end.len(), "the job table is full ({id} ids)");
        self.via[id].store(via as u8, Ordering::Relaxed);
        if via == Via::Ticker {
            self.end[id].store(NOT_A_JOB, Ordering::Relaxed);
        }
        id
    }

    fn accepted(&self, id: usize) {
        if let Err(was) =
            self.end[id].compare_exchange(UNUSED, ACCEPTED, Ordering::AcqRel, Ordering::Acquire)
        {
            self.fail(format!(
                "job {id}: accepted, but it was already {}",
                end_name(was)
            ));
        }
    }

    fn refused(&self, id: usize) {
        self.faults.refused.fetch_add(1, Ordering::Relaxed);
        if let Err(was) =
            self.end[id].compare_exchange(UNUSED, REFUSED, Ordering::AcqRel, Ordering::Acquire)
        {
            self.fail(format!(
                "job {id}: refused, but it was already {}",
                end_name(was)
            ));
        }
    }

    /// The runtime reported the job's end (`via`: who reported it).
    fn ended(&self, id: usize, state: u8, via: &str) {
        if !(SUCCEEDED..=CANCELLED).contains(&state) {
            self.fail(format!(
                "job {id}: {via} reported a non-terminal state {}",
                end_name(state)
            ));
            return;
        }
        if let Err(was) =
            self.end[id].compare_exchange(ACCEPTED, state, Ordering::AcqRel, Ordering::Acquire)
        {
            self.fail(format!(
                "job {id}: {via} reported {}, but it was already {}: a second end",
                end_name(state),
                end_name(was)
            ));
        }
    }

    /// A wait on the job's handle reported `state`.
    fn seen(&self, id: usize, state: u8, via: &str) {
        if !(SUCCEEDED..=CANCELLED).contains(&state) {
            self.fail(format!(
                "job {id}: a wait ({via}) returned a non-terminal {}",
                end_name(state)
            ));
            return;
        }
        if let Err(was) =
            self.seen[id].compare_exchange(0, state, Ordering::AcqRel, Ordering::Acquire)
        {
            if was != state {
                self.fail(format!(
                    "job {id}: a wait ({via}) returned {}, an earlier one {}",
                    end_name(state),
                    end_name(was)
                ));
            }
        }
    }

    fn body_starts(&self, id: usize) {
        if let Err(was) =
            self.body[id].compare_exchange(NOT_RUN, RUNNING, Ordering::AcqRel, Ordering::Acquire)
        {
            self.fail(format!(
                "job {id}: its body started again (it had {})",
                body_name(was)
            ));
        }
    }

    fn body_ends(&self, id: usize, how: u8) {
        if let Err(was) =
            self.body[id].compare_exchange(RUNNING, how, Ordering::AcqRel, Ordering::Acquire)
        {
            self.fail(format!(
                "job {id}: its body {} while it was {}",
                body_name(how),
                body_name(was)
            ));
        }
    }

    fn released(&self, id: usize) {
        self.released[id].fetch_add(1, Ordering::AcqRel);
    }

    fn item(self: &Arc<Self>) -> Item {
        let id = self.next_item.fetch_add(1, Ordering::Relaxed);
        assert!(id < self.items.len(), "the item table is full ({id} items)");
        Item {
            id,
            table: Arc::clone(self),
        }
    }

    /// Ids used so far.
    fn ids(&self) -> usize {
        self.next_id.load(Ordering::Acquire)
    }
}

/// A channel, stream or pipeline item: counts its drop.
struct Item {
    id: usize,
    table: Arc<Table>,
}

impl Drop for Item {
    fn drop(&mut self) {
        self.table.items[self.id].fetch_add(1, Ordering::AcqRel);
    }
}

/// Captured by every Rust job closure: reports the body's start and end, and its drop.
struct Tracked {
    id: usize,
    table: Arc<Table>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.table.released(self.id);
    }
}

impl Tracked {
    fn new(table: &Arc<Table>, via: Via) -> Self {
        Tracked {
            id: table.id(via),
            table: Arc::clone(table),
        }
    }

    fn start(&self) {
        self.table.body_starts(self.id);
    }

    fn finish<T>(&self, result: Result<T, u64>) -> Result<T, u64> {
        let how = if result.is_ok() {
            RETURNED_OK
        } else {
            RETURNED_ERR
        };
        self.table.body_ends(self.id, how);
        result
    }

    fn panic(&self) -> ! {
        self.table.faults.panics.fetch_add(1, Ordering::Relaxed);
        self.table.body_ends(self.id, PANICKING);
        panic!("{EXPECTED}: job {} panics", self.id);
    }

    /// Records the submit's outcome and, if accepted, watches the job's end.
    fn submitted<T>(table: &Arc<Table>, id: usize, result: &Result<T, SubmitError>)
    where
        T: HasHandle,
    {
        match result {
            Ok(job) => {
                table.accepted(id);
                let table = Arc::clone(table);
                job.job_handle()
                    .on_end(move |state| table.ended(id, end_of_state(state), "on_end"));
            }
            Err(error) => {
                if matches!(error, SubmitError::Timeout | SubmitError::Full) {
                    table.faults.submit_timeouts.fetch_add(1, Ordering::Relaxed);
                }
                table.refused(id);
            }
        }
    }
}

/// What `Tracked::submitted` watches.
trait HasHandle {
    fn job_handle(&self) -> JobHandle;
}

impl<T, E> HasHandle for Job<T, E> {
    fn job_handle(&self) -> JobHandle {
        self.handle()
    }
}

impl HasHandle for JobHandle {
    fn job_handle(&self) -> JobHandle {
        self.clone()
    }
}

/// A stream's end is its producer job's.
impl<T: Send + 'static, E: Send + 'static> HasHandle for Stream<T, E> {
    fn job_handle(&self) -> JobHandle {
        self.producer().clone()
    }
}

// ----- the shared state of a seed ----------------------------------------------------------

/// A raw C handle shared between threads.
struct Raw<T>(*mut T);

// SAFETY: the C handles used here (`jr_pool`, `jr_sem`, `jr_token`) are thread-safe for
// every call made on them from several threads; each is freed once, by the main thread,
// after every other thread using it has been joined.
unsafe impl<T> Send for Raw<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for Raw<T> {}

impl<T> Clone for Raw<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Raw<T> {}

/// What every thread of a seed shares.
struct Shared {
    pool: Pool,
    c_pool: Raw<jr_pool>,
    table: Arc<Table>,
    sems: Vec<Semaphore>,
    c_sems: Vec<(Raw<jr_sem>, u64)>,
    /// Rust tokens jobs are submitted with; the chaos thread cancels them.
    tokens: Mutex<Vec<CancelToken>>,
    /// C tokens, likewise. Freed at the end of the seed.
    c_tokens: Mutex<Vec<Raw<jr_token>>>,
    /// Handles of some jobs, for the chaos thread to cancel.
    targets: Mutex<Vec<JobHandle>>,
    channel: Channel<Item>,
    /// Operations done by all submitters: the shutdown thread waits for a share of them.
    progress: AtomicUsize,
    shutdown_at: usize,
    shutdown_signal: Mutex<Option<mpsc::Sender<()>>>,
    /// Whether the pool's queue is bounded (see [`BOUNDED_WAIT`]).
    bounded: bool,
}

/// On a bounded pool, how long a submit that names no timeout of its own waits for room:
/// hour-long delayed jobs hold their places in the queue, and a queue full of them would
/// hold an untimed submit until the end of the seed's shutdown (as it would in real life:
/// the test's own deadlock, not the runtime's).
const BOUNDED_WAIT: Duration = Duration::from_millis(20);

impl Shared {
    /// One of the shared tokens; a cancelled one is replaced by a fresh one half the
    /// time (else every job given a token would soon be cancelled before it starts).
    fn token(&self, rng: &mut XorShift) -> CancelToken {
        let mut tokens = self.tokens.lock().unwrap();
        let i = rng.below(tokens.len() as u64) as usize;
        if rng.below(2) == 0 && tokens[i].is_cancelled() {
            tokens[i] = CancelToken::new();
        }
        tokens[i].clone()
    }

    fn c_token(&self, rng: &mut XorShift) -> *mut jr_token {
        let tokens = self.c_tokens.lock().unwrap();
        tokens[rng.below(tokens.len() as u64) as usize].0
    }

    fn target(&self, handle: JobHandle, rng: &mut XorShift) {
        let mut targets = self.targets.lock().unwrap();
        if targets.len() < 64 {
            targets.push(handle);
        } else {
            let i = rng.below(64) as usize;
            targets[i] = handle;
        }
    }

    /// `options` with [`BOUNDED_WAIT`] on a bounded pool.
    fn bounded(&self, options: SubmitOptions) -> SubmitOptions {
        if self.bounded {
            options.timeout(BOUNDED_WAIT)
        } else {
            options
        }
    }

    fn step_done(&self) {
        let done = self.progress.fetch_add(1, Ordering::Relaxed) + 1;
        if done == self.shutdown_at {
            if let Some(signal) = self.shutdown_signal.lock().unwrap().take() {
                let _ = signal.send(());
            }
        }
    }
}

// ----- Rust job bodies ---------------------------------------------------------------------

/// A job body of kind `kind`: succeeds, fails, panics, sleeps, polls cancellation, submits
/// and waits for children, joins, takes a semaphore, or talks over the channel.
fn body(
    shared: &Arc<Shared>,
    tracked: Tracked,
    kind: u64,
) -> impl FnOnce(&Context<'_>) -> Result<u64, u64> + Send + 'static {
    let shared = Arc::clone(shared);
    move |ctx| {
        tracked.start();
        let table = &tracked.table;
        let result = match kind % 12 {
            0 | 1 => Ok(kind),
            2 => {
                table.faults.failures.fetch_add(1, Ordering::Relaxed);
                Err(7)
            }
            3 => tracked.panic(),
            4 => {
                // Work that takes a while (not a wait for anything).
                thread::sleep(Duration::from_micros(kind % 300));
                Ok(4)
            }
            5 => {
                // Cooperative: stops early when cancelled.
                let token = ctx.token();
                match token.wait_timeout(Duration::from_micros(kind % 2_000)) {
                    Some(_) => Err(5),
                    None => Ok(5),
                }
            }
            6 => {
                // Nested: children submitted and waited for from inside the job.
                let mut sum = 0;
                for i in 0..(1 + kind % 2) {
                    let child = Tracked::new(table, Via::Child);
                    let id = child.id;
                    let submit = ctx.pool().submit(body(&shared, child, (kind >> 8) + i));
                    Tracked::submitted(table, id, &submit);
                    if let Ok(child) = submit {
                        let result = child.wait();
                        table.seen(id, end_of_result(&result), "child wait");
                        sum += result.unwrap_or(0);
                    }
                }
                Ok(sum)
            }
            7 if kind % 5 == 0 => {
                // A panic in the second half of a `join` (perhaps stolen by another
                // worker) comes back through the join and panics the job.
                table.faults.panics.fetch_add(1, Ordering::Relaxed);
                table.body_ends(tracked.id, PANICKING);
                let (a, b) = ctx.join(
                    || kind.wrapping_mul(3),
                    || -> u64 { panic!("{EXPECTED}: a join half of job {}", tracked.id) },
                );
                Ok(a ^ b)
            }
            7 => {
                let (a, b) = ctx.join(|| kind.wrapping_mul(3), || kind.wrapping_add(1));
                Ok(a ^ b)
            }
            8 => {
                // A semaphore taken inside the job (a scheduler-aware wait).
                let sem = &shared.sems[(kind % shared.sems.len() as u64) as usize];
                let n = 1 + (kind >> 4) % sem.total();
                match sem.acquire_timeout(n, Duration::from_micros(kind % 1_000)) {
                    Ok(permit) => {
                        std::hint::black_box(&permit);
                        Ok(8)
                    }
                    Err(_) => Ok(0),
                }
            }
            9 => {
                let item = table.item();
                match shared
                    .channel
                    .send_timeout(item, Duration::from_micros(kind % 1_000))
                {
                    Ok(()) => Ok(9),
                    Err(_) => Ok(0),
                }
            }
            10 => match shared
                .channel
                .recv_timeout(Duration::from_micros(kind % 1_000))
            {
                Ok(item) => Ok(item.id as u64),
                Err(_) => Ok(0),
            },
            _ => {
                if ctx.is_cancelled() {
                    Err(11)
                } else {
                    Ok(11)
                }
            }
        };
        tracked.finish(result)
    }
}

// ----- C jobs ------------------------------------------------------------------------------

/// A C job's argument (boxed; `c_arg_free` releases it).
struct CArg {
    id: usize,
    kind: u64,
    table: Arc<Table>,
}

/// A C job's result (boxed; `c_result_free` releases it, or whoever takes it).
struct CResult {
    id: usize,
    table: Arc<Table>,
}

fn c_arg(table: &Arc<Table>, via: Via, kind: u64) -> (usize, *mut c_void) {
    let id = table.id(via);
    let arg = Box::new(CArg {
        id,
        kind,
        table: Arc::clone(table),
    });
    (id, Box::into_raw(arg).cast())
}

/// # Safety
///
/// `arg` is a `CArg` made by `c_arg`, freed once.
unsafe extern "C" fn c_arg_free(arg: *mut c_void) {
    // SAFETY: the caller's contract.
    let arg = unsafe { Box::from_raw(arg.cast::<CArg>()) };
    arg.table.released(arg.id);
}

/// # Safety
///
/// `result` is a `CResult` made by `c_job`, freed once.
unsafe extern "C" fn c_result_free(result: *mut c_void) {
    // SAFETY: the caller's contract.
    let result = unsafe { Box::from_raw(result.cast::<CResult>()) };
    result.table.results_released[result.id].fetch_add(1, Ordering::AcqRel);
}

/// # Safety
///
/// `arg` is a `CArg` (of `jr_job_on_done`'s registration: the job's id and table, boxed).
unsafe extern "C" fn c_done(arg: *mut c_void, state: jr_state) {
    // SAFETY: the caller's contract; `jr_job_on_done` calls it exactly once.
    let arg = unsafe { Box::from_raw(arg.cast::<CArg>()) };
    arg.table
        .ended(arg.id, end_of_c_state(state), "jr_job_on_done");
}

/// Registers `c_done` for the job behind `job` (id `id`).
fn watch_c_end(table: &Arc<Table>, id: usize, job: *mut jr_job) {
    let arg = Box::into_raw(Box::new(CArg {
        id,
        kind: 0,
        table: Arc::clone(table),
    }));
    let status = jr_job_on_done(job, Some(c_done), arg.cast());
    if status != jr_status::JR_OK {
        // SAFETY: not registered: still ours.
        drop(unsafe { Box::from_raw(arg) });
        table.fail(format!("job {id}: jr_job_on_done returned {status:?}"));
    }
}

/// Submits a C job through `jr_submit`: the job owns `arg` on `JR_OK`, the caller
/// otherwise. Returns the handle (if accepted).
fn c_submit(
    table: &Arc<Table>,
    pool: *mut jr_pool,
    via: Via,
    kind: u64,
    options: &mut ffi::job::jr_submit_options,
) -> Option<(usize, *mut jr_job)> {
    let (id, arg) = c_arg(table, via, kind);
    options.arg_free = Some(c_arg_free);
    options.result_free = Some(c_result_free);
    let mut job: *mut jr_job = std::ptr::null_mut();
    let status = jr_submit(pool, Some(c_job), arg, options, &mut job);
    if status == jr_status::JR_OK {
        table.accepted(id);
        watch_c_end(table, id, job);
        Some((id, job))
    } else {
        if matches!(status, jr_status::JR_E_TIMEOUT | jr_status::JR_E_FULL) {
            table.faults.submit_timeouts.fetch_add(1, Ordering::Relaxed);
        } else if !matches!(status, jr_status::JR_E_SHUTDOWN | jr_status::JR_E_CANCELLED) {
            table.fail(format!("job {id}: jr_submit returned {status:?}"));
        }
        table.refused(id);
        // SAFETY: a refused submit leaves `arg` the caller's: freed here, once.
        unsafe { c_arg_free(arg) };
        None
    }
}

/// Takes the result of an ended C job, checks it against the table, and frees it.
fn c_take(table: &Table, id: usize, job: *mut jr_job) {
    let mut out: *mut c_void = std::ptr::null_mut();
    let status = jr_job_take_result(job, &mut out);
    if status == jr_status::JR_E_TIMEOUT {
        return;
    }
    table.seen(id, end_of_status(status), "jr_job_take_result");
    if !out.is_null() {
        // SAFETY: a result of `c_job`, now ours.
        unsafe { c_result_free(out) };
    }
}

/// A C job function: by the argument's kind, succeeds with a result, fails, panics,
/// polls cancellation, or submits a C child and waits for it.
///
/// # Safety
///
/// As `jr_job_fn`; `arg` is a `CArg`.
unsafe extern "C" fn c_job(ctx: *mut jr_ctx, arg: *mut c_void, result: *mut *mut c_void) -> i32 {
    // SAFETY: our argument, alive until `arg_free` (after the job ends).
    let arg = unsafe { &*arg.cast::<CArg>() };
    let (id, table) = (arg.id, &arg.table);
    table.body_starts(id);
    let make_result = || {
        table.results_made[id].fetch_add(1, Ordering::AcqRel);
        let made = Box::new(CResult {
            id,
            table: Arc::clone(table),
        });
        // SAFETY: `result` is the job's result slot (the `jr_job_fn` contract).
        unsafe { result.write(Box::into_raw(made).cast()) };
    };
    let code = match arg.kind % 6 {
        0 | 1 => {
            make_result();
            0
        }
        2 => {
            table.faults.failures.fetch_add(1, Ordering::Relaxed);
            jr_ctx_fail(ctx, c"a failing C job".as_ptr());
            // A result made before a failure is freed by the runtime.
            make_result();
            7
        }
        3 => {
            table.faults.panics.fetch_add(1, Ordering::Relaxed);
            table.body_ends(id, PANICKING);
            jr_ctx_panic(ctx, c"expected test panic: a C job".as_ptr());
            make_result();
            return 0;
        }
        4 => {
            let timeout = (arg.kind % 2_000) as i64 * 1_000;
            if jr_token_wait(jr_ctx_token(ctx), timeout) == jr_status::JR_OK
                || jr_ctx_is_cancelled(ctx)
            {
                1
            } else {
                make_result();
                0
            }
        }
        _ => {
            let mut options = jr_submit_options_default();
            if let Some((child, job)) = c_submit(
                table,
                jr_ctx_pool(ctx),
                Via::CChild,
                arg.kind >> 8,
                &mut options,
            ) {
                let status = jr_job_wait(job, -1);
                table.seen(child, end_of_status(status), "child jr_job_wait");
                c_take(table, child, job);
                jr_job_free(job);
            }
            make_result();
            0
        }
    };
    table.body_ends(id, if code == 0 { RETURNED_OK } else { RETURNED_ERR });
    code
}

// ----- a submitter -------------------------------------------------------------------------

/// A submitter's handles, some of which outlive its operations (dropped after the
/// shutdown).
#[derive(Default)]
struct Held {
    /// Rust jobs, by slot (a slot per submit op, `None` once taken or refused), so that
    /// picking a slot draws the same numbers whatever the interleaving.
    jobs: Vec<Option<(usize, Job<u64, u64>)>>,
    c_jobs: Vec<Option<(usize, Raw<jr_job>)>>,
    groups: Vec<Group<u64, u64>>,
    tickers: Vec<(Ticker, Arc<AtomicU64>)>,
    streams: Vec<Stream<Item, u64>>,
    pipelines: Vec<Pipeline<Item, Item, u64>>,
}

fn slot<'a, T>(slots: &'a mut [Option<T>], rng: &mut XorShift) -> Option<&'a mut Option<T>> {
    if slots.is_empty() {
        rng.next_u64();
        return None;
    }
    let i = rng.below(slots.len() as u64) as usize;
    Some(&mut slots[i])
}

struct Submitter {
    shared: Arc<Shared>,
    rng: XorShift,
    held: Held,
}

impl Submitter {
    fn table(&self) -> &Arc<Table> {
        &self.shared.table
    }

    fn options(&mut self, gated: bool) -> SubmitOptions {
        let rng = &mut self.rng;
        let mut options = SubmitOptions::new();
        match rng.below(6) {
            0 | 1 => options = options.token(&self.shared.token(rng)),
            2 => {
                // A deadline of its own, under a shared token.
                let parent = self.shared.token(rng);
                let token = parent.child_with_timeout(Duration::from_micros(rng.below(3_000)));
                self.shared
                    .table
                    .faults
                    .deadlines
                    .fetch_add(1, Ordering::Relaxed);
                options = options.token(&token);
            }
            _ => {}
        }
        match rng.below(12) {
            0 | 1 => options = options.delay(Duration::from_micros(rng.below(3_000))),
            // An hour: it ends by a cancel (of its token, or the pool's). Not on a bounded
            // pool, where such jobs would soon fill the queue and refuse everything else.
            2 if !self.shared.bounded => options = options.delay(Duration::from_secs(3_600)),
            _ => {}
        }
        let sem = rng.below(self.shared.sems.len() as u64) as usize;
        let sem = &self.shared.sems[sem];
        let weight = rng.range(1, sem.total());
        if gated && rng.below(4) == 0 {
            options = options.semaphore(sem, weight);
        }
        match rng.below(8) {
            0 => options = options.nonblocking(),
            1 | 2 => options = options.timeout(Duration::from_micros(rng.below(500))),
            _ => options = self.shared.bounded(options),
        }
        options
    }

    fn c_options(&mut self) -> ffi::job::jr_submit_options {
        let rng = &mut self.rng;
        let mut options = jr_submit_options_default();
        if rng.below(3) == 0 {
            options.token = self.shared.c_token(rng);
        }
        match rng.below(12) {
            0 | 1 => options.delay_ns = rng.below(3_000_000) as i64,
            2 if !self.shared.bounded => options.delay_ns = 3_600_000_000_000,
            _ => {}
        }
        let (sem, total) = self.shared.c_sems[rng.below(self.shared.c_sems.len() as u64) as usize];
        let weight = rng.range(1, total);
        if rng.below(4) == 0 {
            options.sem = sem.0;
            options.permits = weight;
        }
        match rng.below(8) {
            0 => options.nonblocking = 1,
            1 | 2 => options.timeout_ns = rng.below(500_000) as i64,
            _ if self.shared.bounded => options.timeout_ns = BOUNDED_WAIT.as_nanos() as i64,
            _ => {}
        }
        options
    }

    fn step(&mut self) {
        let op = self.rng.below(100);
        let table = Arc::clone(self.table());
        match op {
            0..=24 => {
                let options = self.options(true);
                let kind = self.rng.next_u64();
                let tracked = Tracked::new(&table, Via::Rust);
                let id = tracked.id;
                let submit = self
                    .shared
                    .pool
                    .submit_with(options, body(&self.shared, tracked, kind));
                Tracked::submitted(&table, id, &submit);
                let keep = self.rng.below(4);
                let job = submit.ok();
                if let Some(job) = &job {
                    if keep == 0 {
                        self.shared.target(job.handle(), &mut self.rng);
                    }
                }
                // Kept in its slot, or dropped at once (detached).
                self.held
                    .jobs
                    .push(job.filter(|_| keep != 3).map(|job| (id, job)));
            }
            25..=39 => {
                let mut options = self.c_options();
                let kind = self.rng.next_u64();
                let detach = self.rng.below(4) == 0;
                let submitted = c_submit(&table, self.shared.c_pool.0, Via::C, kind, &mut options);
                let slot = submitted.and_then(|(id, job)| {
                    if detach {
                        jr_job_free(job);
                        None
                    } else {
                        Some((id, Raw(job)))
                    }
                });
                self.held.c_jobs.push(slot);
            }
            40..=51 => {
                if self.held.groups.is_empty() || self.rng.below(6) == 0 {
                    let mut options = GroupOptions::new();
                    if self.rng.below(2) == 0 {
                        options = options.limit(self.rng.range(1, 3));
                    }
                    if self.rng.below(2) == 0 {
                        options = options.fail_fast();
                    }
                    if self.rng.below(3) == 0 {
                        options = options.token(&self.shared.token(&mut self.rng));
                    }
                    let group = Group::new(&self.shared.pool, options);
                    self.shared
                        .tokens
                        .lock()
                        .unwrap()
                        .push(group.token().clone());
                    if self.held.groups.len() >= 4 {
                        let i = self.rng.below(4) as usize;
                        self.held.groups.swap_remove(i);
                    }
                    self.held.groups.push(group);
                }
                let mut options = self.shared.bounded(SubmitOptions::new());
                if self.rng.below(5) == 0 {
                    options = options.delay(Duration::from_micros(self.rng.below(2_000)));
                }
                let kind = self.rng.next_u64();
                let tracked = Tracked::new(&table, Via::Member);
                let id = tracked.id;
                let group = self.held.groups.last().expect("a group");
                let submit = group.submit_with(options, body(&self.shared, tracked, kind));
                Tracked::submitted(&table, id, &submit);
            }
            52..=54 => {
                let period = Duration::from_micros(self.rng.range(200, 2_000));
                let fails = self.rng.below(3) == 0;
                if self.held.tickers.len() < 3 {
                    let tracked = Tracked::new(&table, Via::Ticker);
                    let runs = Arc::new(AtomicU64::new(0));
                    let counted = Arc::clone(&runs);
                    let mut options = self.shared.bounded(SubmitOptions::new());
                    if self.rng.below(2) == 0 {
                        options = options.token(&self.shared.token(&mut self.rng));
                    }
                    let ticker = self
                        .shared
                        .pool
                        .submit_every_with(options, period, move |ctx| {
                            let _ = &tracked;
                            counted.fetch_add(1, Ordering::AcqRel);
                            match ctx.tick() {
                                Some(tick) if fails && tick % 3 == 2 => Err(()),
                                _ => Ok(()),
                            }
                        });
                    if let Ok(ticker) = ticker {
                        self.shared
                            .tokens
                            .lock()
                            .unwrap()
                            .push(ticker.token().clone());
                        self.held.tickers.push((ticker, runs));
                    }
                } else {
                    let i = self.rng.below(3) as usize;
                    let (ticker, _) = &self.held.tickers[i];
                    ticker.cancel();
                }
            }
            55..=58 => self.stream(),
            59..=62 => self.pipeline(),
            63..=72 => self.cancel(),
            73..=86 => self.wait(),
            87..=91 => {
                // A new token: a root, a child, or one with a deadline.
                let rng = &mut self.rng;
                let how = rng.below(3);
                let parent = self.shared.token(rng);
                let micros = rng.below(5_000);
                let token = match how {
                    0 => CancelToken::new(),
                    1 => parent.child(),
                    _ => {
                        table.faults.deadlines.fetch_add(1, Ordering::Relaxed);
                        parent.child_with_timeout(Duration::from_micros(micros))
                    }
                };
                let i = rng.below(8) as usize;
                let mut tokens = self.shared.tokens.lock().unwrap();
                if i < tokens.len() {
                    tokens[i] = token;
                }
                drop(tokens);
                if rng.below(4) == 0 {
                    let mut token: *mut jr_token = std::ptr::null_mut();
                    if jr_token_new(std::ptr::null(), &mut token) == jr_status::JR_OK {
                        if rng.below(2) == 0 {
                            jr_token_set_deadline(token, micros as i64 * 1_000);
                        }
                        self.shared.c_tokens.lock().unwrap().push(Raw(token));
                    }
                }
            }
            93..=95 => {
                // Fan in what a group has finished, or wait for it briefly.
                let timeout = Duration::from_micros(self.rng.below(1_000));
                let wait = self.rng.below(2) == 0;
                if let Some(group) = self.held.groups.last() {
                    if wait {
                        drop(group.wait_timeout(timeout));
                    } else {
                        while let Ok(Some(job)) = group.next_timeout(Duration::ZERO) {
                            drop(job.wait());
                        }
                    }
                }
            }
            _ => {
                // A C job's result, or its handle freed.
                let take = self.rng.below(2) == 0;
                if let Some(slot) = slot(&mut self.held.c_jobs, &mut self.rng) {
                    if let Some((id, job)) = slot {
                        if take {
                            c_take(&table, *id, job.0);
                        } else {
                            jr_job_free(job.0);
                            *slot = None;
                        }
                    }
                }
            }
        }
        self.shared.step_done();
    }

    fn cancel(&mut self) {
        let table = Arc::clone(self.table());
        let which = self.rng.below(5);
        table.faults.cancels.fetch_add(1, Ordering::Relaxed);
        match which {
            0 => {
                if let Some(Some((_, job))) = slot(&mut self.held.jobs, &mut self.rng) {
                    job.cancel();
                }
            }
            1 => {
                if let Some(Some((_, job))) = slot(&mut self.held.c_jobs, &mut self.rng) {
                    let status = jr_job_cancel(job.0);
                    if !matches!(status, jr_status::JR_OK | jr_status::JR_E_CLOSED) {
                        table.fail(format!("jr_job_cancel returned {status:?}"));
                    }
                }
            }
            2 => {
                self.shared.token(&mut self.rng).cancel();
            }
            3 => {
                let i = self.rng.next_u64();
                if !self.held.groups.is_empty() {
                    self.held.groups[i as usize % self.held.groups.len()].cancel();
                }
            }
            _ => {
                let token = self.shared.c_token(&mut self.rng);
                jr_token_cancel_sync(token);
            }
        }
    }

    fn wait(&mut self) {
        let table = Arc::clone(self.table());
        let micros = self.rng.below(2_000);
        let c = self.rng.below(3) == 0;
        if c {
            if let Some(Some((id, job))) = slot(&mut self.held.c_jobs, &mut self.rng) {
                let status = jr_job_wait(job.0, micros as i64 * 1_000);
                if status != jr_status::JR_E_TIMEOUT {
                    table.seen(*id, end_of_status(status), "jr_job_wait");
                }
            }
        } else if let Some(slot) = slot(&mut self.held.jobs, &mut self.rng) {
            if let Some((id, job)) = slot.take() {
                match job.wait_timeout(Duration::from_micros(micros)) {
                    Ok(result) => table.seen(id, end_of_result(&result), "wait_timeout"),
                    Err(job) => *slot = Some((id, job)),
                }
            }
        }
    }

    fn stream(&mut self) {
        let table = Arc::clone(self.table());
        let capacity = self.rng.range(1, 4) as usize;
        let count = self.rng.below(8);
        let fails = self.rng.below(4) == 0;
        let read = self.rng.below(10);
        let token = (self.rng.below(3) == 0).then(|| self.shared.token(&mut self.rng));
        let tracked = Tracked::new(&table, Via::Producer);
        let id = tracked.id;
        let items = Arc::clone(&table);
        let mut options = self.shared.bounded(SubmitOptions::new());
        if let Some(token) = &token {
            options = options.token(token);
        }
        let stream = self
            .shared
            .pool
            .stream_with(options, capacity, move |ctx, sender| {
                tracked.start();
                for _ in 0..count {
                    if ctx.is_cancelled() || sender.send(items.item()).is_err() {
                        return tracked.finish(Err(1));
                    }
                }
                tracked.finish(if fails { Err(2) } else { Ok(()) })
            });
        Tracked::submitted(&table, id, &stream);
        if let Ok(mut stream) = stream {
            for _ in 0..read {
                match stream.next_timeout(Duration::from_micros(500)) {
                    Ok(Some(item)) => drop(item),
                    Ok(None) | Err(_) => break,
                }
            }
            if self.rng.below(2) == 0 && self.held.streams.len() < 4 {
                self.held.streams.push(stream);
            }
        }
    }

    fn pipeline(&mut self) {
        let table = Arc::clone(self.table());
        let rng = &mut self.rng;
        let in_flight = rng.range(1, 8) as usize;
        let concurrency = rng.range(1, 3) as usize;
        let ordered = rng.below(2) == 0;
        let fail_at = rng.below(40);
        let count = rng.below(16) as usize;
        let pushed = rng.below(3) == 0;
        let read = rng.below(20);
        let token = (rng.below(3) == 0).then(|| self.shared.token(rng));
        let mut builder =
            Pipeline::<Item, Item, u64>::builder(&self.shared.pool).max_in_flight(in_flight);
        if let Some(token) = &token {
            builder = builder.token(token);
        }
        let pipeline = builder
            .stage(concurrency, ordered, move |ctx, item: Item| {
                if item.id as u64 % 40 == fail_at {
                    return Err(1);
                }
                if item.id % 5 == 0 || ctx.is_cancelled() {
                    return Ok(None);
                }
                Ok(Some(item))
            })
            .stage(1, ordered, |_, item: Item| Ok(Some(item)));
        let items: Vec<Item> = (0..count).map(|_| table.item()).collect();
        let pipeline = if pushed {
            let pipeline = pipeline.build();
            for item in items {
                drop(pipeline.push_timeout(item, Duration::from_micros(300)));
            }
            pipeline.close_input();
            pipeline
        } else {
            pipeline.run(items)
        };
        for _ in 0..read {
            match pipeline.next_timeout(Duration::from_micros(500)) {
                Ok(item) => drop(item),
                Err(_) => break,
            }
        }
        if self.rng.below(2) == 0 && self.held.pipelines.len() < 4 {
            self.held.pipelines.push(pipeline);
        }
    }
}

// ----- the watchdog ------------------------------------------------------------------------

/// What the watchdog watches: the seed in progress, its deadline, and how to describe it.
struct Watched {
    seed: u64,
    deadline: Instant,
    pool: Option<Pool>,
    table: Arc<Table>,
    /// The seed's semaphores: their waiters are blocked waiters too.
    sems: Vec<Semaphore>,
}

#[derive(Default)]
struct Watchdog {
    current: Mutex<Option<Watched>>,
    changed: Condvar,
    /// Where the main thread is in the seed.
    phase: Mutex<&'static str>,
}

impl Watchdog {
    fn start() -> Arc<Watchdog> {
        let watchdog = Arc::new(Watchdog::default());
        let watching = Arc::clone(&watchdog);
        thread::Builder::new()
            .name("stress-watchdog".into())
            .spawn(move || watching.run())
            .expect("the watchdog thread");
        watchdog
    }

    fn phase(&self, phase: &'static str) {
        *self.phase.lock().unwrap() = phase;
    }

    fn arm(&self, watched: Watched) {
        *self.current.lock().unwrap() = Some(watched);
        self.changed.notify_all();
    }

    /// Drops the watched pool handle (so that the seed's last handle is its own).
    fn forget_pool(&self) {
        let pool = self
            .current
            .lock()
            .unwrap()
            .as_mut()
            .and_then(|w| w.pool.take());
        drop(pool);
    }

    fn disarm(&self) {
        let watched = self.current.lock().unwrap().take();
        drop(watched);
        self.changed.notify_all();
    }

    fn run(&self) {
        let mut current = self.current.lock().unwrap();
        loop {
            let Some(watched) = current.as_ref() else {
                current = self.changed.wait(current).unwrap();
                continue;
            };
            let now = Instant::now();
            if now < watched.deadline {
                let wait = watched.deadline - now;
                current = self.changed.wait_timeout(current, wait).unwrap().0;
                continue;
            }
            eprintln!("{}", report_hang(watched, *self.phase.lock().unwrap()));
            std::process::abort();
        }
    }
}

fn report_hang(watched: &Watched, phase: &str) -> String {
    let mut out = String::new();
    let seed = watched.seed;
    let _ = writeln!(
        out,
        "\n==== stress watchdog: seed {seed} did not finish in time: a hang ===="
    );
    let _ = writeln!(out, "replay: {}", replay(seed));
    let _ = writeln!(out, "the seed's main thread: {phase}");
    match &watched.pool {
        Some(pool) => {
            let _ = writeln!(out, "{}", pool.debug_dump());
        }
        None => {
            let _ = writeln!(out, "(the pool was already shut down and dropped)");
        }
    }
    for (i, sem) in watched.sems.iter().enumerate() {
        let _ = writeln!(
            out,
            "semaphore {i}: {} of {} permits available, {} waiters",
            sem.available(),
            sem.total(),
            sem.waiters()
        );
    }
    let table = &watched.table;
    let mut open = 0;
    for id in 0..table.ids() {
        if table.end[id].load(Ordering::Acquire) == ACCEPTED {
            open += 1;
            if open <= 40 {
                let _ = writeln!(
                    out,
                    "job {id} ({:?}) not ended; its body: {}",
                    via_of(table, id),
                    body_name(table.body[id].load(Ordering::Acquire))
                );
            }
        }
    }
    let _ = writeln!(out, "{open} accepted jobs not ended");
    for error in table
        .errors
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
    {
        let _ = writeln!(out, "error: {error}");
    }
    out
}

fn via_of(table: &Table, id: usize) -> Option<Via> {
    match table.via[id].load(Ordering::Acquire) {
        1 => Some(Via::Rust),
        2 => Some(Via::C),
        3 => Some(Via::Member),
        4 => Some(Via::Child),
        5 => Some(Via::CChild),
        6 => Some(Via::Producer),
        7 => Some(Via::Ticker),
        _ => None,
    }
}

fn replay(seed: u64) -> String {
    let ops = ops();
    format!(
        "make stress SEED={seed} OPS={ops}  (or: STRESS_SEED={seed} STRESS_OPS={ops} cargo test --release --test stress -- --nocapture)"
    )
}

// ----- one seed ----------------------------------------------------------------------------

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(value) => value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a number")),
        Err(_) => default,
    }
}

/// Under `JR_TEST_SLOW` (valgrind, the sanitizers: `tests/common`) the defaults shrink to
/// 2 seeds of 2,000 operations, and the watchdog waits 30 times longer.
fn ops() -> u64 {
    env_u64("STRESS_OPS", if common::slow() { 2_000 } else { 20_000 })
}

/// The threads of this process now.
fn threads_now() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|dir| dir.count())
        .unwrap_or(0)
}

/// The names of the threads of this process now.
fn thread_names() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    dir.flatten()
        .map(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .map_or_else(|_| "?".into(), |name| name.trim().to_owned())
        })
        .collect()
}

/// Per-seed totals, for the summary.
#[derive(Default, Debug, Clone, Copy)]
struct Totals {
    seeds: u64,
    ops: u64,
    accepted: u64,
    refused: u64,
    ends: [u64; 4],
    submitted: u64,
    items: u64,
    cancels: u64,
    deadlines: u64,
    failures: u64,
    panics: u64,
    submit_timeouts: u64,
    shutdowns: u64,
}

/// Prints the seed and its replay command if the seed's checks panic.
struct OnFailure(u64);

impl Drop for OnFailure {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "\n==== stress: seed {} FAILED; replay it with:\n    {}\n",
                self.0,
                replay(self.0)
            );
        }
    }
}

fn one_seed(seed: u64, ops: u64, watchdog: &Watchdog, baseline: usize) -> Totals {
    let guard = OnFailure(seed);
    let started = Instant::now();
    let mut rng = XorShift::new(seed);
    let threads = rng.range(1, 3) as usize;
    let capacity = (rng.below(2) == 0).then(|| rng.range(1, 16) as usize);
    let help = match rng.below(3) {
        0 => HelpPolicy::Any,
        1 => HelpPolicy::Own,
        _ => HelpPolicy::Block,
    };
    let mut builder = Pool::builder()
        .threads(threads)
        .thread_name(format!("stress{seed}"))
        .help_policy(help)
        .panic_policy(PanicPolicy::Capture);
    if let Some(capacity) = capacity {
        builder = builder.queue_capacity(capacity);
    }
    let pool = builder.build().expect("a pool");
    let submitters = rng.range(2, 3);
    let per_thread = ops / submitters;
    let racing = rng.below(2) == 0;
    // In the second half: the first half runs on an open pool.
    let shutdown_at = rng.range(ops / 2, ops.max(1)) as usize;
    let mode = match rng.below(3) {
        0 => ShutdownMode::Drain,
        1 => ShutdownMode::Cancel,
        _ => ShutdownMode::DrainThenCancel,
    };
    let shutdown_timeout = Duration::from_micros(rng.below(30_000));
    let table = Arc::new(Table::new(
        (ops as usize) * 3 + 1_024,
        (ops as usize) * 24 + 1_024,
    ));
    let scale = (ops as f64 / 20_000.0).max(1.0) * f64::from(common::slow_factor());

    let sems: Vec<Semaphore> = (0..2).map(|_| Semaphore::new(rng.range(1, 3))).collect();
    watchdog.phase("starting");
    watchdog.arm(Watched {
        seed,
        deadline: Instant::now() + Duration::from_secs_f64(60.0 * scale),
        pool: Some(pool.clone()),
        table: Arc::clone(&table),
        sems: sems.clone(),
    });
    let c_sems: Vec<(Raw<jr_sem>, u64)> = (0..2)
        .map(|_| {
            let total = rng.range(1, 3);
            let mut sem: *mut jr_sem = std::ptr::null_mut();
            assert_eq!(jr_sem_new(total, &mut sem), jr_status::JR_OK);
            (Raw(sem), total)
        })
        .collect();
    let c_tokens: Vec<Raw<jr_token>> = (0..4)
        .map(|_| {
            let mut token: *mut jr_token = std::ptr::null_mut();
            assert_eq!(jr_token_new(std::ptr::null(), &mut token), jr_status::JR_OK);
            Raw(token)
        })
        .collect();
    let (signal, signalled) = mpsc::channel();
    let shared = Arc::new(Shared {
        c_pool: Raw(ffi::pool::pool_handle_of(&pool)),
        pool,
        table: Arc::clone(&table),
        sems,
        c_sems,
        tokens: Mutex::new((0..6).map(|_| CancelToken::new()).collect()),
        c_tokens: Mutex::new(c_tokens),
        targets: Mutex::new(Vec::new()),
        channel: Channel::new(rng.range(1, 4) as usize),
        progress: AtomicUsize::new(0),
        shutdown_at,
        shutdown_signal: Mutex::new(Some(signal)),
        bounded: capacity.is_some(),
    });

    // The chaos thread: cancels tokens and jobs, sets deadlines, at random moments.
    let stop = Arc::new(AtomicBool::new(false));
    let chaos = {
        let (shared, stop) = (Arc::clone(&shared), Arc::clone(&stop));
        let mut rng = XorShift::new(seed ^ 0xc4a0_5c4a_05c4_a05d);
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..rng.below(20_000) {
                    std::hint::spin_loop();
                }
                let faults = &shared.table.faults;
                match rng.below(6) {
                    0 | 1 => {
                        faults.cancels.fetch_add(1, Ordering::Relaxed);
                        shared.token(&mut rng).cancel();
                    }
                    2 => {
                        let i = rng.next_u64() as usize;
                        let target = {
                            let targets = shared.targets.lock().unwrap();
                            (!targets.is_empty()).then(|| targets[i % targets.len()].clone())
                        };
                        if let Some(target) = target {
                            faults.cancels.fetch_add(1, Ordering::Relaxed);
                            target.cancel();
                        }
                    }
                    3 => {
                        faults.deadlines.fetch_add(1, Ordering::Relaxed);
                        let micros = rng.below(2_000);
                        shared
                            .token(&mut rng)
                            .set_timeout(Duration::from_micros(micros));
                    }
                    4 => {
                        faults.cancels.fetch_add(1, Ordering::Relaxed);
                        let token = shared.c_token(&mut rng);
                        if rng.below(2) == 0 {
                            jr_token_cancel(token);
                        } else {
                            jr_token_cancel_sync(token);
                        }
                    }
                    _ => {
                        // The pool's root token, rarely: cancels every job running.
                        if rng.below(50) == 0 {
                            faults.cancels.fetch_add(1, Ordering::Relaxed);
                            shared.pool.root_token().cancel();
                        }
                    }
                }
            }
        })
    };
    // The shutdown thread, racing with the submitters.
    let shutdown = racing.then(|| {
        let shared = Arc::clone(&shared);
        thread::spawn(move || {
            if signalled.recv().is_ok() {
                shared.pool.shutdown(mode, Some(shutdown_timeout));
            }
        })
    });
    let workers: Vec<_> = (0..submitters)
        .map(|i| {
            let shared = Arc::clone(&shared);
            let rng = XorShift::new(seed.wrapping_mul(31).wrapping_add(i + 1));
            thread::spawn(move || {
                let mut submitter = Submitter {
                    shared,
                    rng,
                    held: Held::default(),
                };
                for _ in 0..per_thread {
                    submitter.step();
                }
                submitter.held
            })
        })
        .collect();
    watchdog.phase("waiting for the submitters");
    let held: Vec<Held> = workers
        .into_iter()
        .map(|w| w.join().expect("a submitter panicked"))
        .collect();
    watchdog.phase("stopping the chaos and shutdown threads");
    stop.store(true, Ordering::Relaxed);
    chaos.join().expect("the chaos thread panicked");
    // The shutdown thread waits for a signal that may not have come (a short seed).
    shared.shutdown_signal.lock().unwrap().take();
    if let Some(shutdown) = shutdown {
        shutdown.join().expect("the shutdown thread panicked");
    }

    // The end: hour-long delays, tickers and everything else end with a Cancel shutdown.
    watchdog.phase("in the final shutdown (Cancel)");
    let report = shared.pool.shutdown(ShutdownMode::Cancel, Some(patience()));
    assert!(
        report.is_complete(),
        "seed {seed}: the final shutdown left {report:?}"
    );

    watchdog.phase("waiting on and dropping the handles");
    // Every handle, now that every job has ended: waits report what the table says.
    let mut ticker_runs = 0;
    for held in held {
        for (id, job) in held.jobs.into_iter().flatten() {
            let result = job.wait();
            table.seen(id, end_of_result(&result), "wait after shutdown");
        }
        for (id, job) in held.c_jobs.into_iter().flatten() {
            let status = jr_job_wait(job.0, 0);
            assert_ne!(
                status,
                jr_status::JR_E_TIMEOUT,
                "seed {seed}: C job {id} not ended after the shutdown"
            );
            table.seen(id, end_of_status(status), "jr_job_wait after shutdown");
            if id % 2 == 0 {
                c_take(&table, id, job.0);
            }
            assert_eq!(jr_job_free(job.0), jr_status::JR_OK);
        }
        for group in &held.groups {
            group.close();
            while let Some(job) = group.next() {
                drop(job.wait());
            }
        }
        for (ticker, runs) in &held.tickers {
            assert!(
                ticker.wait_timeout(patience()),
                "seed {seed}: a periodic job did not stop with the pool"
            );
            assert_eq!(
                ticker.runs(),
                runs.load(Ordering::Acquire),
                "seed {seed}: Ticker::runs disagrees with the runs its body counted"
            );
            ticker_runs += ticker.runs();
        }
        drop(held.streams);
        drop(held.pipelines);
        drop(held.groups);
        drop(held.tickers);
    }
    let stats = shared.pool.stats();

    watchdog.phase("checking semaphores, freeing C handles");
    // Semaphores: every permit back.
    for sem in &shared.sems {
        assert_eq!(
            sem.available(),
            sem.total(),
            "seed {seed}: permits not returned"
        );
        assert_eq!(
            sem.waiters(),
            0,
            "seed {seed}: a semaphore still has waiters"
        );
    }
    for (sem, total) in &shared.c_sems {
        let mut available = 0;
        assert_eq!(jr_sem_available(sem.0, &mut available), jr_status::JR_OK);
        assert_eq!(available, *total, "seed {seed}: C permits not returned");
        assert_eq!(jr_sem_free(sem.0), jr_status::JR_OK);
    }
    for token in shared.c_tokens.lock().unwrap().drain(..) {
        assert_eq!(jr_token_free(token.0), jr_status::JR_OK);
    }
    assert_eq!(jr_pool_free(shared.c_pool.0), jr_status::JR_OK);
    watchdog.forget_pool();
    // Held by nothing else now, unless a job closure was never dropped.
    let mut problems = Vec::new();
    if Arc::strong_count(&shared) != 1 {
        problems.push(format!(
            "the seed's state is still held {} times (a job's closure not dropped?)",
            Arc::strong_count(&shared) - 1
        ));
    }
    drop(shared);

    watchdog.phase("waiting for destructors");
    // Every destructor ran: wait for them (a job's memory goes with its last reference),
    // then check that none ran twice.
    let deadline = Instant::now() + patience();
    let ids = table.ids();
    let items = table.next_item.load(Ordering::Acquire);
    loop {
        let done = (0..ids).all(|id| {
            table.released[id].load(Ordering::Acquire) >= 1
                && table.results_released[id].load(Ordering::Acquire)
                    >= table.results_made[id].load(Ordering::Acquire)
        }) && (0..items).all(|i| table.items[i].load(Ordering::Acquire) >= 1)
            && debug_live_jobs() == 0;
        if done || Instant::now() > deadline {
            break;
        }
        thread::yield_now();
    }
    problems.extend(table.errors.lock().unwrap().iter().cloned());
    let mut ends = [0u64; 4];
    let (mut accepted, mut refused) = (0u64, 0u64);
    for id in 0..ids {
        let end = table.end[id].load(Ordering::Acquire);
        let body = table.body[id].load(Ordering::Acquire);
        let seen = table.seen[id].load(Ordering::Acquire);
        let released = table.released[id].load(Ordering::Acquire);
        let via = via_of(&table, id);
        if released != 1 {
            problems.push(format!(
                "job {id} ({via:?}): its destructor ran {released} times"
            ));
        }
        let made = table.results_made[id].load(Ordering::Acquire);
        let freed = table.results_released[id].load(Ordering::Acquire);
        if made != freed {
            problems.push(format!(
                "job {id} ({via:?}): {made} results made, {freed} released"
            ));
        }
        if end == NOT_A_JOB {
            continue;
        }
        if (SUCCEEDED..=CANCELLED).contains(&end) {
            accepted += 1;
            ends[usize::from(end - SUCCEEDED)] += 1;
        } else if end == REFUSED {
            refused += 1;
        }
        let consistent = match end {
            SUCCEEDED => body == RETURNED_OK,
            FAILED => body == RETURNED_ERR,
            PANICKED => body == PANICKING,
            CANCELLED => body == NOT_RUN || body == RETURNED_ERR,
            REFUSED => body == NOT_RUN,
            _ => false,
        };
        if !consistent {
            problems.push(format!(
                "job {id} ({via:?}): ended {}, its body {}",
                end_name(end),
                body_name(body)
            ));
        }
        if seen != 0 && seen != end {
            problems.push(format!(
                "job {id} ({via:?}): a wait returned {}, its end was {}",
                end_name(seen),
                end_name(end)
            ));
        }
    }
    for item in 0..items {
        let drops = table.items[item].load(Ordering::Acquire);
        if drops != 1 {
            problems.push(format!("item {item}: dropped {drops} times"));
        }
    }
    let live = debug_live_jobs();
    if live != 0 {
        problems.push(format!("{live} jobs' memory not freed"));
    }
    // Stats: the pool's counts add up, and agree with the table's.
    let ended = stats.succeeded + stats.failed + stats.panicked + stats.cancelled;
    if stats.submitted != ended || stats.queued != 0 || stats.running != 0 {
        problems.push(format!("stats do not add up: {stats:?}"));
    }
    // Of the pool's jobs, the table's are all that panic (pipeline stages, periodic runs
    // and the runtime's own jobs never do); the others it counts at least as often.
    if stats.panicked != ends[2] {
        problems.push(format!(
            "stats say {} panicked, the table {}",
            stats.panicked, ends[2]
        ));
    }
    if stats.succeeded < ends[0] || stats.cancelled < ends[3] || stats.failed < ends[1] {
        problems.push(format!(
            "stats {stats:?} count fewer ends than the table: {ends:?}"
        ));
    }
    if stats.submitted < accepted + ticker_runs {
        problems.push(format!(
            "stats say {} submitted, the table {accepted} accepted and {ticker_runs} periodic runs",
            stats.submitted
        ));
    }
    assert!(
        problems.is_empty(),
        "seed {seed}: {} problems:\n{}",
        problems.len(),
        problems[..problems.len().min(40)].join("\n")
    );

    watchdog.phase("waiting for the threads to exit");
    // No thread left behind.
    let deadline = Instant::now() + patience();
    while threads_now() > baseline {
        assert!(
            Instant::now() < deadline,
            "seed {seed}: {} threads, {baseline} before the seed: {:?}",
            threads_now(),
            thread_names()
        );
        thread::yield_now();
    }
    watchdog.disarm();
    drop(guard);

    let f = &table.faults;
    let totals = Totals {
        seeds: 1,
        ops,
        accepted,
        refused,
        ends,
        submitted: stats.submitted,
        items: items as u64,
        cancels: f.cancels.load(Ordering::Relaxed),
        deadlines: f.deadlines.load(Ordering::Relaxed),
        failures: f.failures.load(Ordering::Relaxed),
        panics: f.panics.load(Ordering::Relaxed),
        submit_timeouts: f.submit_timeouts.load(Ordering::Relaxed),
        shutdowns: u64::from(racing),
    };
    println!(
        "seed {seed}: {ops} ops, {threads} workers{}, {submitters} submitters; {accepted} jobs accepted \
         ({} ok, {} failed, {} panicked, {} cancelled), {refused} refused, {} pool jobs in all, \
         {items} items; faults: {} cancels, {} deadlines, {} failures, {} panics, {} submit \
         timeouts, shutdown {}; {:.2} s",
        capacity.map_or(String::new(), |c| format!(" (queue {c})")),
        ends[0],
        ends[1],
        ends[2],
        ends[3],
        stats.submitted,
        totals.cancels,
        totals.deadlines,
        totals.failures,
        totals.panics,
        totals.submit_timeouts,
        if racing {
            format!("{mode:?} racing ({} µs)", shutdown_timeout.as_micros())
        } else {
            "at the end".into()
        },
        started.elapsed().as_secs_f64()
    );
    totals
}

#[test]
fn random_workloads_keep_every_promise() {
    quiet_expected_panics();
    let ops = ops();
    let (first, count) = match std::env::var("STRESS_SEED") {
        Ok(_) => (env_u64("STRESS_SEED", 1), 1),
        Err(_) => (
            env_u64("STRESS_FIRST_SEED", 1),
            env_u64("STRESS_SEEDS", if common::slow() { 2 } else { 20 }),
        ),
    };
    // What lives for the whole process, started before the thread count is taken: the
    // job counter, the token deadline timer, the C signal helper, the watchdog.
    assert_eq!(debug_live_jobs(), 0, "no job before the test");
    // A deadline far enough ahead to be scheduled (a past one cancels at once, starting
    // no timer): the deadline thread starts, and stays.
    drop(CancelToken::with_timeout(Duration::from_secs(3_600)));
    let mut token: *mut jr_token = std::ptr::null_mut();
    assert_eq!(jr_token_new(std::ptr::null(), &mut token), jr_status::JR_OK);
    jr_token_cancel(token);
    assert_eq!(jr_token_wait(token, -1), jr_status::JR_OK);
    jr_token_free(token);
    let watchdog = Watchdog::start();
    let deadline = Instant::now() + patience();
    while !["stress-watchdog", "jobrunner-deadl", "jobrunner-signa"]
        .iter()
        .all(|name| thread_names().iter().any(|t| t == name))
    {
        assert!(Instant::now() < deadline, "threads: {:?}", thread_names());
        thread::yield_now();
    }
    let baseline = threads_now();

    let started = Instant::now();
    let mut sum = Totals::default();
    for seed in first..first + count {
        let t = one_seed(seed, ops, &watchdog, baseline);
        sum.seeds += t.seeds;
        sum.ops += t.ops;
        sum.accepted += t.accepted;
        sum.refused += t.refused;
        for (s, e) in sum.ends.iter_mut().zip(t.ends) {
            *s += e;
        }
        sum.submitted += t.submitted;
        sum.items += t.items;
        sum.cancels += t.cancels;
        sum.deadlines += t.deadlines;
        sum.failures += t.failures;
        sum.panics += t.panics;
        sum.submit_timeouts += t.submit_timeouts;
        sum.shutdowns += t.shutdowns;
    }
    println!(
        "stress: {} seeds ({first}..={}), {} ops: {} jobs accepted ({} ok, {} failed, {} panicked, \
         {} cancelled), {} refused, {} pool jobs in all, {} items; faults: {} cancels, {} \
         deadlines, {} failures, {} panics, {} submit timeouts, {} racing shutdowns; {:.1} s",
        sum.seeds,
        first + count - 1,
        sum.ops,
        sum.accepted,
        sum.ends[0],
        sum.ends[1],
        sum.ends[2],
        sum.ends[3],
        sum.refused,
        sum.submitted,
        sum.items,
        sum.cancels,
        sum.deadlines,
        sum.failures,
        sum.panics,
        sum.submit_timeouts,
        sum.shutdowns,
        started.elapsed().as_secs_f64()
    );
}
