//! Issue 9's soak benchmark: a steady mixed load at a fraction (`SOAK_LOAD`, 0.8) of the
//! measured capacity for `SOAK_DURATION` seconds, reporting throughput, latency and RSS
//! over time. `make soak DURATION=...` runs it and `bench/soak.py` draws and summarises
//! what it prints. Not a test: it asserts no timing, but it checks every job's outcome
//! and every destructor, and exits non-zero when the accounting does not add up.
//!
//! # What runs
//!
//! Everything runs on the process's global pool (`jobrunner::global()`, sized by
//! `BENCH_THREADS`, default 2), which the C ABI shares (`jr_pool_global()`), so the jobs
//! submitted through `jobrunner::ffi::jr_submit` run on the same workers as the Rust ones.
//! A *request* is one top-level submit of one kind of the mix ([`Kind`]): short CPU jobs,
//! jobs that `join` and submit-and-wait a child, semaphore-gated jobs, group fan-outs,
//! delayed jobs, a channel producer/consumer pair, a two-stage pipeline, jobs cancelled
//! (by `Job::cancel`, by their token before and while they run, by a deadline), jobs
//! that fail or panic, and C jobs with an argument and a result destructor. A periodic
//! ticker runs beside them for the whole run.
//!
//! Each request's end is seen by `JobHandle::on_end` (`jr_job_on_done` for C): its
//! terminal state is checked against what the kind must end in, and its latency is taken
//! from the request's *intended* submit time (plus its delay, for delayed jobs) to its
//! end. Every closure captures a [`Tracked`] value, every result and error is one, and
//! the C arguments and results count their destructors: at the end every one must have
//! been dropped exactly once.
//!
//! # Phases
//!
//! 1. Capacity: a closed loop (at most [`CLOSED_LOOP_IN_FLIGHT`] requests in flight, a
//!    new one submitted as one ends) for `SOAK_CAPACITY_SECS` (5) seconds after a
//!    one-second warm-up: the requests ended per second is the mix's capacity.
//! 2. Soak: an open loop at `SOAK_LOAD` × capacity. The submitter paces requests by a
//!    schedule (request `i` is due at `start + i / rate`), never by completions, so a
//!    stall shows in the latency of every request that was due meanwhile (no coordinated
//!    omission). Every interval (`SOAK_INTERVAL` seconds; default 1 s, or a 120th of a
//!    run longer than two minutes) it prints a JSON line.
//! 3. Drain and check: stop submitting, wait for every request to end, stop the ticker,
//!    wait for the pool to be idle, and check the accounting.
//!
//! # Output
//!
//! stdout: JSON lines, each an object with a `type`: one `config`, one `capacity`, one
//! `interval` per interval (`t` in seconds from the soak's start, `throughput` requests
//! ended per second, `jobs_per_s` pool jobs ended per second, `p50_us`, `p99_us`,
//! `max_us`, `rss_bytes`, `live_jobs`, `queued`, `running`, `outstanding` requests
//! submitted and not ended, `backlog` requests due and not yet submitted), one `summary`.
//! Latency percentiles are the upper bounds of 1/16-octave histogram buckets (at most
//! 6.25% above the true value). stderr: the same for humans.
//!
//! Without `--bench` (as under `cargo test --benches`) it is a smoke run: one second of
//! capacity, two of soak.

mod common;

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Condvar, Mutex};
use std::time::{Duration, Instant};

use common::{calibrate, json_string, load_average, spin, status_kb, Config};
use jobrunner::ffi::job::{
    jr_job, jr_job_free, jr_job_on_done, jr_state, jr_submit, jr_submit_options_default,
};
use jobrunner::ffi::pool::{jr_pool, jr_pool_global};
use jobrunner::ffi::{jr_ctx, jr_ctx_fail, jr_status};
use jobrunner::{
    CancelToken, Channel, JobHandle, JobState, NextError, Pipeline, Pool, Semaphore, SubmitOptions,
};

// ---------------------------------------------------------------------------------------
// The mix.

/// The kinds of request, in the order of [`Kind::ALL`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// One short CPU job.
    Cpu,
    /// `ctx.join` of two CPU closures, then a child submitted and waited for.
    Nested,
    /// A CPU job holding 1 or 2 permits of a semaphore of [`SEM_PERMITS`].
    Sem,
    /// A job fanning out [`GROUP_FAN_OUT`] CPU jobs in a group and summing them.
    Group,
    /// A CPU job delayed by [`DELAY`].
    Delayed,
    /// A job receiving from a channel what a child job sends into it.
    Channel,
    /// A job running [`PIPELINE_ITEMS`] items through a two-stage pipeline.
    Pipeline,
    /// A CPU job cancelled with `Job::cancel` right after its submit: `Cancelled` if the
    /// cancel prevented it, else `Succeeded`.
    CancelJob,
    /// A job under a token cancelled by the submitter while it is delayed (even
    /// requests), or by the job itself while it runs (odd): `Cancelled` either way.
    CancelToken,
    /// A job under a token with a [`DEADLINE`], spinning until it sees it pass.
    Deadline,
    /// A job returning `Err`.
    Fail,
    /// A job panicking (quietly: see [`quiet_panics`]).
    Panic,
    /// A C job through `jr_submit` with an argument and a result destructor: it
    /// succeeds, fails (`jr_ctx_fail`), or takes its argument over (`fn_owns_arg`).
    CAbi,
}

impl Kind {
    const ALL: [Kind; 13] = [
        Kind::Cpu,
        Kind::Nested,
        Kind::Sem,
        Kind::Group,
        Kind::Delayed,
        Kind::Channel,
        Kind::Pipeline,
        Kind::CancelJob,
        Kind::CancelToken,
        Kind::Deadline,
        Kind::Fail,
        Kind::Panic,
        Kind::CAbi,
    ];

    /// Requests of this kind in every 100. The kinds whose job blocks its worker waiting
    /// for a child it queued ([`Kind::is_blocking`]) unless `SOAK_BLOCKING=0`; then
    /// their share goes to [`Kind::Cpu`].
    fn weight(self, blocking: bool) -> usize {
        match self {
            k if k.is_blocking() && !blocking => 0,
            Kind::Cpu if !blocking => 45,
            Kind::Cpu => 40,
            Kind::Nested => 8,
            Kind::Sem => 10,
            Kind::Group => 5,
            Kind::Delayed => 8,
            Kind::Channel => 3,
            Kind::Pipeline => 2,
            Kind::CancelJob => 5,
            Kind::CancelToken => 4,
            Kind::Deadline => 2,
            Kind::Fail => 4,
            Kind::Panic => 2,
            Kind::CAbi => 7,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Cpu => "cpu",
            Kind::Nested => "nested",
            Kind::Sem => "semaphore",
            Kind::Group => "group",
            Kind::Delayed => "delayed",
            Kind::Channel => "channel",
            Kind::Pipeline => "pipeline",
            Kind::CancelJob => "cancel-job",
            Kind::CancelToken => "cancel-token",
            Kind::Deadline => "deadline",
            Kind::Fail => "fail",
            Kind::Panic => "panic",
            Kind::CAbi => "c-abi",
        }
    }

    /// A job of this kind blocks its worker in a channel (or pipeline) wait for a child
    /// job it queued behind itself. Under a sustained load these deadlocked the pool
    /// when spares took new jobs from the injector before they stole the children queued
    /// on the blocked workers' deques: more consumers blocked, until the pool's spares
    /// (then `max(4, 4 × threads)`) were all blocked too. Spares steal first now; see
    /// `more_blocked_consumers_than_spares_never_deadlock` in `tests/channel.rs`.
    fn is_blocking(self) -> bool {
        matches!(self, Kind::Channel | Kind::Pipeline)
    }

    fn index(self) -> usize {
        Kind::ALL
            .iter()
            .position(|&k| k == self)
            .expect("every kind is in ALL")
    }
}

/// The kinds in a fixed shuffled order, each as often as its weight: request `i` is of
/// kind `deck[i % 100]`, so every 100 requests have the mix exactly.
fn deck(blocking: bool) -> Vec<Kind> {
    let mut deck: Vec<Kind> = Kind::ALL
        .iter()
        .flat_map(|&k| std::iter::repeat_n(k, k.weight(blocking)))
        .collect();
    assert_eq!(deck.len(), 100, "the weights add up to 100");
    // Fisher-Yates with a fixed xorshift: the same order every run.
    let mut x = 0x2545_F491_4F6C_DD1D_u64;
    for i in (1..deck.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        deck.swap(i, (x % (i as u64 + 1)) as usize);
    }
    deck
}

/// The CPU work of one short job.
const SPIN: Duration = Duration::from_micros(5);
/// The permits of the semaphore of [`Kind::Sem`].
const SEM_PERMITS: u64 = 2;
/// The members of a [`Kind::Group`] request.
const GROUP_FAN_OUT: u64 = 4;
/// The delay of a [`Kind::Delayed`] request.
const DELAY: Duration = Duration::from_millis(2);
/// The delay of an even [`Kind::CancelToken`] request (cancelled long before it).
const CANCEL_DELAY: Duration = Duration::from_millis(50);
/// The deadline of a [`Kind::Deadline`] request.
const DEADLINE: Duration = Duration::from_micros(100);
/// How long a [`Kind::Deadline`] job spins waiting for its deadline before it gives up
/// and ends `Succeeded` (a mismatch: the deadline never fired).
const DEADLINE_GIVE_UP: Duration = Duration::from_millis(500);
/// Items sent through a [`Kind::Channel`] request's channel, and its capacity.
const CHANNEL_ITEMS: u64 = 16;
const CHANNEL_CAPACITY: usize = 4;
/// Items through a [`Kind::Pipeline`] request's pipeline.
const PIPELINE_ITEMS: u64 = 8;
/// The ticker's period.
const TICK: Duration = Duration::from_millis(10);
/// No request ended for this long while some were outstanding: the pool is deadlocked
/// (the soak reports it and exits 2 rather than hang).
const STALL: Duration = Duration::from_secs(30);
/// Requests in flight in the capacity phase's closed loop.
const CLOSED_LOOP_IN_FLIGHT: u64 = 32;

// ---------------------------------------------------------------------------------------
// The accounting.

/// A value whose drops are counted: captured by every Rust request's closure, and the
/// result or error of every request that has one.
struct Tracked;

static TRACKED_MADE: AtomicU64 = AtomicU64::new(0);
static TRACKED_DROPPED: AtomicU64 = AtomicU64::new(0);

impl Tracked {
    fn new() -> Tracked {
        TRACKED_MADE.fetch_add(1, Ordering::Relaxed);
        Tracked
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        TRACKED_DROPPED.fetch_add(1, Ordering::Relaxed);
    }
}

/// Per-kind counters, indexed by [`Kind::index`].
struct PerKind([AtomicU64; Kind::ALL.len()]);

impl PerKind {
    const fn new() -> PerKind {
        PerKind([const { AtomicU64::new(0) }; Kind::ALL.len()])
    }

    fn add(&self, kind: Kind) {
        self.0[kind.index()].fetch_add(1, Ordering::Relaxed);
    }

    fn get(&self, kind: Kind) -> u64 {
        self.0[kind.index()].load(Ordering::SeqCst)
    }

    fn total(&self) -> u64 {
        Kind::ALL.iter().map(|&k| self.get(k)).sum()
    }
}

static SUBMITTED: PerKind = PerKind::new();
static ENDED: PerKind = PerKind::new();
/// Requests that ended in another state than their kind must.
static MISMATCHED: PerKind = PerKind::new();
/// Requests ended, all kinds (the closed loop and the reporter read it).
static ENDED_ALL: AtomicU64 = AtomicU64::new(0);
/// Terminal states seen: succeeded, failed, panicked, cancelled.
static OUTCOMES: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];
/// The first mismatch, described.
static FIRST_MISMATCH: Mutex<Option<String>> = Mutex::new(None);
/// Semaphore-gated jobs' permits in use, as the jobs count them.
static SEM_IN_USE: AtomicU64 = AtomicU64::new(0);
static TICKS: AtomicU64 = AtomicU64::new(0);
static C_ARGS_MADE: AtomicU64 = AtomicU64::new(0);
static C_ARGS_FREED: AtomicU64 = AtomicU64::new(0);
static C_RESULTS_MADE: AtomicU64 = AtomicU64::new(0);
static C_RESULTS_FREED: AtomicU64 = AtomicU64::new(0);

fn outcome_index(state: JobState) -> Option<usize> {
    match state {
        JobState::Succeeded => Some(0),
        JobState::Failed => Some(1),
        JobState::Panicked => Some(2),
        JobState::Cancelled => Some(3),
        _ => None,
    }
}

/// A request ended in `state`; it was due at `due` and had to end in `expected`.
fn record_end(kind: Kind, due: Instant, state: JobState, expected: JobState) {
    let latency = Instant::now().saturating_duration_since(due);
    LATENCY.record(latency.as_nanos().min(u64::MAX as u128) as u64);
    match outcome_index(state) {
        Some(i) => OUTCOMES[i].fetch_add(1, Ordering::Relaxed),
        None => 0,
    };
    if state != expected {
        MISMATCHED.add(kind);
        let mut first = FIRST_MISMATCH.lock().unwrap_or_else(|e| e.into_inner());
        first.get_or_insert_with(|| {
            format!(
                "a {} request ended {state:?}, expected {expected:?}",
                kind.name()
            )
        });
    }
    ENDED.add(kind);
    ENDED_ALL.fetch_add(1, Ordering::SeqCst);
    CLOSED_LOOP.notify();
}

/// Checks `handle`'s end against `expected` when it comes.
fn watch(handle: JobHandle, kind: Kind, due: Instant, expected: JobState) {
    handle.on_end(move |state| record_end(kind, due, state, expected));
}

// ---------------------------------------------------------------------------------------
// Latency histogram: cumulative counts in 1/16-octave buckets, read by the reporter.

/// Sub-buckets per octave: 2^SUB_BITS.
const SUB_BITS: u32 = 4;
const SUBS: u64 = 1 << SUB_BITS;
const BUCKETS: usize = ((64 - SUB_BITS as usize) + 1) * SUBS as usize;

struct Histogram {
    counts: [AtomicU64; BUCKETS],
    /// The largest value since the reporter last took it.
    max: AtomicU64,
}

static LATENCY: Histogram = Histogram {
    counts: [const { AtomicU64::new(0) }; BUCKETS],
    max: AtomicU64::new(0),
};

fn bucket_of(value: u64) -> usize {
    if value < SUBS {
        return value as usize;
    }
    let msb = 63 - value.leading_zeros();
    let shift = msb - SUB_BITS;
    let sub = (value >> shift) & (SUBS - 1);
    ((shift as u64 + 1) * SUBS + sub) as usize
}

/// The largest value of bucket `index`.
fn bucket_top(index: usize) -> u64 {
    let index = index as u64;
    if index < SUBS {
        return index;
    }
    let shift = index / SUBS - 1;
    let sub = index % SUBS;
    ((SUBS + sub + 1) << shift) - 1
}

impl Histogram {
    fn record(&self, value: u64) {
        self.counts[bucket_of(value)].fetch_add(1, Ordering::Relaxed);
        self.max.fetch_max(value, Ordering::Relaxed);
    }

    fn snapshot(&self) -> Vec<u64> {
        self.counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }
}

/// The `q` quantile (0 to 1) of bucket counts, as the top of its bucket; 0 when empty.
fn quantile(counts: &[u64], q: f64) -> u64 {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return 0;
    }
    let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for (index, &count) in counts.iter().enumerate() {
        seen += count;
        if seen >= rank {
            return bucket_top(index);
        }
    }
    bucket_top(counts.len() - 1)
}

// ---------------------------------------------------------------------------------------
// The closed loop's wait for a free place: woken by `record_end` only while it waits.

struct ClosedLoop {
    waiting: AtomicBool,
    lock: Mutex<()>,
    ended: Condvar,
}

static CLOSED_LOOP: ClosedLoop = ClosedLoop {
    waiting: AtomicBool::new(false),
    lock: Mutex::new(()),
    ended: Condvar::new(),
};

impl ClosedLoop {
    fn notify(&self) {
        // SeqCst with the waiter's store and reload: either it sees our end, or we see
        // it waiting (and take the lock, which it holds until it sleeps in `wait`).
        if self.waiting.load(Ordering::SeqCst) {
            let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.ended.notify_one();
        }
    }

    /// Waits until fewer than `limit` of `submitted` requests are outstanding.
    fn wait_below(&self, submitted: u64, limit: u64) {
        // Saturating: an end reported twice must fail the accounting check at the end,
        // not wrap into a huge backlog that looks like a deadlock.
        let outstanding = || submitted.saturating_sub(ENDED_ALL.load(Ordering::SeqCst));
        if outstanding() < limit {
            return;
        }
        let mut guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.waiting.store(true, Ordering::SeqCst);
        let mut progress = (ENDED_ALL.load(Ordering::SeqCst), Instant::now());
        while outstanding() >= limit {
            let ended = ENDED_ALL.load(Ordering::SeqCst);
            if ended != progress.0 {
                progress = (ended, Instant::now());
            } else if progress.1.elapsed() > STALL {
                stalled(outstanding());
            }
            // The timeout is only a hang guard against a lost notification.
            guard = self
                .ended
                .wait_timeout(guard, Duration::from_millis(100))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        self.waiting.store(false, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------------------
// The C jobs.

/// A C job's argument.
struct CArg {
    iters: u64,
    expected: u64,
    fail: bool,
    owns_arg: bool,
}

/// What the done callback of a C job needs: the request's kind and due time.
struct CDone {
    due: Instant,
    expected: JobState,
}

/// The C job: spins, then fails or puts a boxed `u64` in `*result`.
///
/// # Safety
///
/// Called by the pool as `jr_job_fn`: `arg` is a `Box<CArg>` from `submit_c`, `result`
/// a writable slot.
unsafe extern "C" fn c_job(ctx: *mut jr_ctx, arg: *mut c_void, result: *mut *mut c_void) -> i32 {
    // SAFETY: `arg` is the `Box<CArg>` the submit gave, alive until its `arg_free` runs
    // (after the job ended) or, under `fn_owns_arg`, until we free it below.
    let carg = unsafe { &*arg.cast::<CArg>() };
    let value = spin(carg.iters);
    let fail = carg.fail;
    let right = value == carg.expected;
    if carg.owns_arg {
        // SAFETY: under `fn_owns_arg` the job owns `arg`: nobody else frees it.
        unsafe { c_arg_free(arg) };
    }
    if fail || !right {
        let status = jr_ctx_fail(ctx, c"soak: deliberate failure".as_ptr());
        if status != jr_status::JR_OK {
            return 9;
        }
        return 3;
    }
    C_RESULTS_MADE.fetch_add(1, Ordering::Relaxed);
    // SAFETY: `result` is the job's result slot (the `jr_job_fn` contract).
    unsafe { result.write(Box::into_raw(Box::new(value)).cast()) };
    0
}

/// # Safety
///
/// `arg` is a `Box<CArg>` made by `submit_c`, freed once.
unsafe extern "C" fn c_arg_free(arg: *mut c_void) {
    // SAFETY: the caller's contract.
    drop(unsafe { Box::from_raw(arg.cast::<CArg>()) });
    C_ARGS_FREED.fetch_add(1, Ordering::Relaxed);
}

/// # Safety
///
/// `result` is a `Box<u64>` made by `c_job`, freed once.
unsafe extern "C" fn c_result_free(result: *mut c_void) {
    // SAFETY: the caller's contract.
    drop(unsafe { Box::from_raw(result.cast::<u64>()) });
    C_RESULTS_FREED.fetch_add(1, Ordering::Relaxed);
}

/// # Safety
///
/// `arg` is a `Box<CDone>` made by `submit_c`; the library calls this once.
unsafe extern "C" fn c_done(arg: *mut c_void, state: jr_state) {
    // SAFETY: the caller's contract: called exactly once, so the box is ours to take.
    let done = unsafe { Box::from_raw(arg.cast::<CDone>()) };
    let state = match state {
        jr_state::JR_JOB_SUCCEEDED => JobState::Succeeded,
        jr_state::JR_JOB_FAILED => JobState::Failed,
        jr_state::JR_JOB_PANICKED => JobState::Panicked,
        jr_state::JR_JOB_CANCELLED => JobState::Cancelled,
        // Not terminal: a mismatch whatever was expected.
        _ => JobState::Running,
    };
    record_end(Kind::CAbi, done.due, state, done.expected);
}

// ---------------------------------------------------------------------------------------
// Submitting requests.

/// What every request needs, made once.
struct Plan {
    pool: &'static Pool,
    /// `jr_pool_global()`: the same pool, as C sees it.
    c_pool: *mut jr_pool,
    deck: Vec<Kind>,
    /// Rounds of `spin` for [`SPIN`], and what `spin` returns for them.
    iters: u64,
    value: u64,
    sem: Semaphore,
}

fn mismatch() -> Tracked {
    Tracked::new()
}

impl Plan {
    /// Submits request number `seq`, due at `due`.
    fn submit(&self, seq: u64, due: Instant) {
        let kind = self.deck[(seq % self.deck.len() as u64) as usize];
        SUBMITTED.add(kind);
        let (iters, value) = (self.iters, self.value);
        let arg = Tracked::new();
        let pool = self.pool;
        let ok = JobState::Succeeded;
        match kind {
            Kind::Cpu => {
                let job = pool
                    .submit(move |_ctx| {
                        let _arg = arg;
                        if spin(iters) == value {
                            Ok(Tracked::new())
                        } else {
                            Err(mismatch())
                        }
                    })
                    .expect("submit to the global pool");
                watch(job.handle(), kind, due, ok);
            }
            Kind::Nested => {
                let job = pool
                    .submit(move |ctx| {
                        let _arg = arg;
                        let (a, b) = ctx.join(|| spin(iters), || spin(iters));
                        let child = ctx
                            .pool()
                            .submit(move |_ctx| Ok::<_, Tracked>(spin(iters)))
                            .map_err(|_| mismatch())?;
                        let c = child.wait().map_err(|_| mismatch())?;
                        if a == value && b == value && c == value {
                            Ok(Tracked::new())
                        } else {
                            Err(mismatch())
                        }
                    })
                    .expect("submit to the global pool");
                watch(job.handle(), kind, due, ok);
            }
            Kind::Sem => {
                let permits = if seq % 3 == 0 { 2 } else { 1 };
                let job = pool
                    .submit_with(
                        SubmitOptions::new().semaphore(&self.sem, permits),
                        move |_ctx| {
                            let _arg = arg;
                            let in_use = SEM_IN_USE.fetch_add(permits, Ordering::SeqCst) + permits;
                            let v = spin(iters);
                            SEM_IN_USE.fetch_sub(permits, Ordering::SeqCst);
                            if in_use <= SEM_PERMITS && v == value {
                                Ok(Tracked::new())
                            } else {
                                Err(mismatch())
                            }
                        },
                    )
                    .expect("submit to the global pool");
                watch(job.handle(), kind, due, ok);
            }
            Kind::Group => {
                let job = pool
                    .submit(move |ctx| {
                        let _arg = arg;
                        let group = ctx.pool().group::<u64, Tracked>();
                        for _ in 0..GROUP_FAN_OUT {
                            group
                                .submit(move |_ctx| Ok(spin(iters)))
                                .map_err(|_| mismatch())?;
                        }
                        group.close();
                        let mut sum = 0;
                        for member in group.iter() {
                            sum += member.wait().map_err(|_| mismatch())?;
                        }
                        if sum == GROUP_FAN_OUT.wrapping_mul(value) {
                            Ok(Tracked::new())
                        } else {
                            Err(mismatch())
                        }
                    })
                    .expect("submit to the global pool");
                watch(job.handle(), kind, due, ok);
            }
            Kind::Delayed => {
                let not_before = Instant::now() + DELAY;
                let job = pool
                    .submit_with(SubmitOptions::new().delay(DELAY), move |_ctx| {
                        let _arg = arg;
                        if Instant::now() >= not_before && spin(iters) == value {
                            Ok(Tracked::new())
                        } else {
                            Err(mismatch())
                        }
                    })
                    .expect("submit to the global pool");
                watch(job.handle(), kind, due + DELAY, ok);
            }
            Kind::Channel => {
                let job = pool
                    .submit(move |ctx| {
                        let _arg = arg;
                        let channel = Channel::<u64>::new(CHANNEL_CAPACITY);
                        let sender = channel.clone();
                        let producer = ctx
                            .pool()
                            .submit(move |_ctx| {
                                for i in 0..CHANNEL_ITEMS {
                                    sender.send(i).map_err(|_| mismatch())?;
                                }
                                sender.close();
                                Ok::<_, Tracked>(())
                            })
                            .map_err(|_| mismatch())?;
                        let sum: u64 = channel.iter().sum();
                        producer.wait().map_err(|_| mismatch())?;
                        if sum == CHANNEL_ITEMS * (CHANNEL_ITEMS - 1) / 2 {
                            Ok(Tracked::new())
                        } else {
                            Err(mismatch())
                        }
                    })
                    .expect("submit to the global pool");
                watch(job.handle(), kind, due, ok);
            }
            Kind::Pipeline => {
                let job = pool
                    .submit(move |ctx| {
                        let _arg = arg;
                        let pipeline = Pipeline::<u64, u64, Tracked>::builder(ctx.pool())
                            .stage(2, true, move |_ctx, x: u64| {
                                spin(iters / 4);
                                Ok(Some(x * 2))
                            })
                            .stage(1, true, |_ctx, x: u64| Ok(Some(x + 1)))
                            .run(0..PIPELINE_ITEMS);
                        let mut expected = 0..PIPELINE_ITEMS;
                        loop {
                            match pipeline.next() {
                                Ok(out) if Some((out - 1) / 2) == expected.next() => {}
                                Err(NextError::Closed) if expected.next().is_none() => {
                                    return Ok(Tracked::new())
                                }
                                _ => return Err(mismatch()),
                            }
                        }
                    })
                    .expect("submit to the global pool");
                watch(job.handle(), kind, due, ok);
            }
            Kind::CancelJob => {
                let job = pool
                    .submit(move |_ctx| {
                        let _arg = arg;
                        spin(iters);
                        Ok::<_, Tracked>(Tracked::new())
                    })
                    .expect("submit to the global pool");
                // Prevented: it never ran. Not prevented: it had started, and it ignores
                // the request to stop.
                let prevented = job.cancel();
                let expected = if prevented {
                    JobState::Cancelled
                } else {
                    JobState::Succeeded
                };
                watch(job.handle(), kind, due, expected);
            }
            Kind::CancelToken => {
                let token = CancelToken::new();
                let job = if seq % 2 == 0 {
                    let job = pool
                        .submit_with(
                            SubmitOptions::new().token(&token).delay(CANCEL_DELAY),
                            move |_ctx| {
                                let _arg = arg;
                                Ok::<_, Tracked>(Tracked::new())
                            },
                        )
                        .expect("submit to the global pool");
                    token.cancel();
                    job
                } else {
                    let own = token.clone();
                    pool.submit_with(SubmitOptions::new().token(&token), move |ctx| {
                        let _arg = arg;
                        spin(iters);
                        own.cancel();
                        if ctx.is_cancelled() {
                            Err(Tracked::new())
                        } else {
                            Ok(Tracked::new())
                        }
                    })
                    .expect("submit to the global pool")
                };
                watch(job.handle(), kind, due, JobState::Cancelled);
            }
            Kind::Deadline => {
                let token = CancelToken::with_timeout(DEADLINE);
                let job = pool
                    .submit_with(SubmitOptions::new().token(&token), move |ctx| {
                        let _arg = arg;
                        let began = Instant::now();
                        while began.elapsed() < DEADLINE_GIVE_UP {
                            if ctx.is_cancelled() {
                                return Err(Tracked::new());
                            }
                            spin(iters / 4);
                        }
                        Ok(Tracked::new())
                    })
                    .expect("submit to the global pool");
                watch(job.handle(), kind, due, JobState::Cancelled);
            }
            Kind::Fail => {
                let job = pool
                    .submit(move |_ctx| {
                        let _arg = arg;
                        spin(iters);
                        Err::<Tracked, _>(Tracked::new())
                    })
                    .expect("submit to the global pool");
                watch(job.handle(), kind, due, JobState::Failed);
            }
            Kind::Panic => {
                let job = pool
                    .submit(move |_ctx| -> Result<Tracked, Tracked> {
                        let _arg = arg;
                        spin(iters);
                        panic!("{QUIET_PANIC} a deliberate panic");
                    })
                    .expect("submit to the global pool");
                watch(job.handle(), kind, due, JobState::Panicked);
            }
            Kind::CAbi => {
                drop(arg);
                self.submit_c(seq, due);
            }
        }
    }

    /// A [`Kind::CAbi`] request: through `jr_submit` on `jr_pool_global()`.
    fn submit_c(&self, seq: u64, due: Instant) {
        let fail = seq % 3 == 1;
        let owns_arg = seq % 3 == 2;
        C_ARGS_MADE.fetch_add(1, Ordering::Relaxed);
        let arg = Box::into_raw(Box::new(CArg {
            iters: self.iters,
            expected: self.value,
            fail,
            owns_arg,
        }));
        let mut options = jr_submit_options_default();
        options.arg_free = Some(c_arg_free);
        options.result_free = Some(c_result_free);
        options.fn_owns_arg = i32::from(owns_arg);
        let mut job: *mut jr_job = std::ptr::null_mut();
        let status = jr_submit(self.c_pool, Some(c_job), arg.cast(), &options, &mut job);
        assert_eq!(status, jr_status::JR_OK, "jr_submit");
        let done = Box::into_raw(Box::new(CDone {
            due,
            expected: if fail {
                JobState::Failed
            } else {
                JobState::Succeeded
            },
        }));
        let status = jr_job_on_done(job, Some(c_done), done.cast());
        assert_eq!(status, jr_status::JR_OK, "jr_job_on_done");
        // Detached: the job goes on; its result is freed by `c_result_free`.
        assert_eq!(jr_job_free(job), jr_status::JR_OK, "jr_job_free");
    }
}

/// Panic messages starting with this are the mix's own: the panic hook keeps quiet.
const QUIET_PANIC: &str = "soak:";

/// Installs a panic hook that prints every panic but the mix's deliberate ones.
fn quiet_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if !message.starts_with(QUIET_PANIC) {
            default(info);
        }
    }));
}

/// Reports a stalled pool (no request ended for [`STALL`]) and exits 2.
fn stalled(outstanding: u64) -> ! {
    let stats = jobrunner::global().stats();
    let message = format!(
        "no request ended for {} s with {outstanding} outstanding: the pool is deadlocked \
         ({} workers running, {} spare threads, {} queued)",
        STALL.as_secs(),
        stats.running,
        stats.spare_threads,
        stats.queued
    );
    println!(
        "{{\"type\": \"summary\", \"ok\": false, \"stalled\": true, \"problems\": [\"{message}\"]}}"
    );
    eprintln!("soak: FAILED: {message}");
    std::process::exit(2);
}

// ---------------------------------------------------------------------------------------
// Measurements of the process.

/// Jobs the pool has ended so far.
/// The pool's jobs that have ended, in any way.
fn pool_ended(s: &jobrunner::Stats) -> u64 {
    s.succeeded + s.failed + s.panicked + s.cancelled
}

fn micros(nanos: u64) -> f64 {
    nanos as f64 / 1000.0
}

/// Waits (yielding) until `done()` holds, at most `limit`: a hang guard, not a pause.
fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > limit {
            return false;
        }
        std::thread::yield_now();
    }
    true
}

// ---------------------------------------------------------------------------------------
// The run.

struct Settings {
    duration: Duration,
    load: f64,
    capacity: Duration,
    interval: Duration,
    threads: usize,
    /// The mix includes the kinds that block a worker on a child they queued
    /// ([`Kind::is_blocking`]); `SOAK_BLOCKING=0` leaves them out.
    blocking: bool,
}

impl Settings {
    fn from_env(config: &Config, smoke: bool) -> Settings {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let seconds = |name: &str, default: f64| -> f64 {
            var(name).map_or(default, |v| {
                v.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s > 0.0)
                    .unwrap_or_else(|| panic!("{name}={v}: not a positive number"))
            })
        };
        let duration = if smoke {
            2.0
        } else {
            seconds("SOAK_DURATION", 60.0)
        };
        let load = seconds("SOAK_LOAD", 0.8);
        assert!(load <= 1.5, "SOAK_LOAD={load}: a fraction of capacity");
        let capacity = if smoke {
            1.0
        } else {
            seconds("SOAK_CAPACITY_SECS", 5.0)
        };
        let interval = seconds("SOAK_INTERVAL", (duration / 120.0).max(1.0));
        Settings {
            duration: Duration::from_secs_f64(duration),
            load,
            capacity: Duration::from_secs_f64(capacity),
            interval: Duration::from_secs_f64(interval),
            threads: config.threads,
            blocking: var("SOAK_BLOCKING").as_deref() != Some("0"),
        }
    }
}

fn main() {
    // Counting jobs' memory blocks starts here, before the first job.
    let live_at_start = jobrunner::debug_live_jobs();
    let config = Config::for_bench_binary();
    let smoke = !std::env::args().any(|arg| arg == "--bench");
    let settings = Settings::from_env(&config, smoke);
    // The global pool, which the C ABI shares, sized before its first use.
    std::env::set_var("JOBRUNNER_THREADS", settings.threads.to_string());
    quiet_panics();
    let pool = jobrunner::try_global().expect("start the global pool");
    let c_pool = jr_pool_global();
    assert!(!c_pool.is_null(), "jr_pool_global");
    let iters = calibrate(SPIN);
    let plan = Plan {
        pool,
        c_pool,
        deck: deck(settings.blocking),
        iters,
        value: spin(iters),
        sem: Semaphore::new(SEM_PERMITS),
    };
    let mix: Vec<String> = Kind::ALL
        .iter()
        .filter(|k| k.weight(settings.blocking) > 0)
        .map(|k| format!("\"{}\": {}", k.name(), k.weight(settings.blocking)))
        .collect();
    println!(
        "{{\"type\": \"config\", \"threads\": {}, \"load\": {}, \"duration_s\": {}, \"interval_s\": {}, \
         \"capacity_s\": {}, \"spin_us\": {}, \"spin_iters\": {iters}, \"tick_ms\": {}, \
         \"load_average\": \"{}\", \"smoke\": {smoke}, \"blocking\": {}, \"mix\": {{{}}}}}",
        settings.threads,
        settings.load,
        settings.duration.as_secs_f64(),
        settings.interval.as_secs_f64(),
        settings.capacity.as_secs_f64(),
        micros(SPIN.as_nanos() as u64),
        TICK.as_millis(),
        load_average(),
        settings.blocking,
        mix.join(", ")
    );
    eprintln!(
        "\nsoak: {} workers (the global pool, shared with the C ABI), load {} of capacity for {:.0} s; \
         a short job spins {} µs ({iters} rounds); load average {}",
        settings.threads,
        settings.load,
        settings.duration.as_secs_f64(),
        SPIN.as_micros(),
        load_average()
    );

    // The C ABI's global pool is this pool: a C job shows in its stats.
    let before = pool.stats().submitted;
    let mut seq = 0u64;
    let warm_until = Instant::now() + Duration::from_secs(1).min(settings.capacity);
    SUBMITTED.add(Kind::CAbi);
    plan.submit_c(1, Instant::now());
    seq += 1;
    assert!(
        pool.stats().submitted > before,
        "jr_pool_global() is not jobrunner::global()"
    );

    // Phase 1: capacity, a closed loop (its first second a warm-up). `seq` counts the
    // requests submitted so far.
    let mut closed_loop = |until: Instant| {
        while Instant::now() < until {
            CLOSED_LOOP.wait_below(seq, CLOSED_LOOP_IN_FLIGHT);
            plan.submit(seq, Instant::now());
            seq += 1;
        }
    };
    closed_loop(warm_until);
    let measure_start = Instant::now();
    let ended_start = ENDED_ALL.load(Ordering::SeqCst);
    closed_loop(measure_start + settings.capacity);
    let capacity = (ENDED_ALL.load(Ordering::SeqCst) - ended_start) as f64
        / measure_start.elapsed().as_secs_f64();
    // Let the closed loop's requests end before the soak starts.
    CLOSED_LOOP.wait_below(seq, 1);
    let rate = capacity * settings.load;
    println!(
        "{{\"type\": \"capacity\", \"capacity_rps\": {capacity:.1}, \"target_rps\": {rate:.1}, \
         \"closed_loop_in_flight\": {CLOSED_LOOP_IN_FLIGHT}}}"
    );
    eprintln!(
        "capacity: {capacity:.0} requests/s (closed loop, {CLOSED_LOOP_IN_FLIGHT} in flight, {:.1} s); \
         soak at {rate:.0}/s",
        settings.capacity.as_secs_f64()
    );

    // Phase 2: the soak, with the ticker beside it and the reporter on its own thread.
    let ticker = pool
        .submit_every(TICK, |_ctx| {
            TICKS.fetch_add(1, Ordering::Relaxed);
            Ok::<_, Tracked>(())
        })
        .expect("start the ticker");
    let soak_start = Instant::now();
    let soak_end = soak_start + settings.duration;
    let ended_before_soak = ENDED_ALL.load(Ordering::SeqCst);
    let due_count = AtomicU64::new(0);
    let submitted_count = AtomicU64::new(0);
    // Dropped once every request has ended: the reporter's last line counts them all.
    let (finished, drained) = mpsc::channel::<()>();
    let overall = std::thread::scope(|scope| {
        let reporter = scope.spawn(|| {
            report(
                pool,
                &settings,
                soak_start,
                &due_count,
                &submitted_count,
                drained,
                ended_before_soak,
            )
        });
        let first = seq;
        let mut i = 0u64;
        loop {
            let now = Instant::now();
            if now >= soak_end {
                break;
            }
            let due_now = ((now - soak_start).as_secs_f64() * rate) as u64 + 1;
            due_count.store(due_now, Ordering::Relaxed);
            while i < due_now {
                let due = soak_start + Duration::from_secs_f64(i as f64 / rate);
                plan.submit(first + i, due);
                i += 1;
                submitted_count.store(i, Ordering::Relaxed);
            }
            let next = soak_start + Duration::from_secs_f64(i as f64 / rate);
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            }
        }
        seq += i;
        // Phase 3: every request ends (or `stalled` reports the pool deadlocked).
        CLOSED_LOOP.wait_below(seq, 1);
        drop(finished);
        let overall = reporter.join().expect("the reporter");
        (overall, i)
    });
    let ((counts, max_ns, rss_max), soak_requests) = overall;
    let soak_secs = settings.duration.as_secs_f64();

    // Stop the ticker, then wait for the pool to be idle and every job block freed.
    ticker.cancel();
    ticker.wait();
    let ticks = ticker.runs();
    let tick_failures = ticker.failures();
    drop(ticker);
    let idle = wait_until(Duration::from_secs(60), || {
        let s = pool.stats();
        s.queued == 0 && s.running == 0 && s.submitted == pool_ended(&s)
    });
    let live_jobs = jobrunner::debug_live_jobs() - live_at_start;
    let live_freed = wait_until(Duration::from_secs(10), || {
        jobrunner::debug_live_jobs() == live_at_start
    });
    let stats = pool.stats();
    let sem_available = plan.sem.available();
    drop(plan);

    // The accounting.
    let mut problems: Vec<String> = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            problems.push(what);
        }
    };
    let submitted_all = SUBMITTED.total();
    let ended_all = ENDED.total();
    check(
        submitted_all == ended_all && ended_all == seq,
        format!("requests: {submitted_all} submitted, {ended_all} ended"),
    );
    for kind in Kind::ALL {
        check(
            SUBMITTED.get(kind) == ENDED.get(kind),
            format!(
                "{} requests: {} submitted, {} ended",
                kind.name(),
                SUBMITTED.get(kind),
                ENDED.get(kind)
            ),
        );
    }
    let outcomes: Vec<u64> = OUTCOMES.iter().map(|o| o.load(Ordering::SeqCst)).collect();
    check(
        outcomes.iter().sum::<u64>() == ended_all,
        format!("terminal states {outcomes:?} do not add up to {ended_all} ended"),
    );
    let mismatched = MISMATCHED.total();
    if mismatched > 0 {
        let first = FIRST_MISMATCH
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_default();
        check(
            false,
            format!("{mismatched} requests ended in the wrong state; the first: {first}"),
        );
    }
    let (made, dropped) = (
        TRACKED_MADE.load(Ordering::SeqCst),
        TRACKED_DROPPED.load(Ordering::SeqCst),
    );
    check(
        made == dropped,
        format!("Rust values: {made} made, {dropped} dropped"),
    );
    let (args_made, args_freed) = (
        C_ARGS_MADE.load(Ordering::SeqCst),
        C_ARGS_FREED.load(Ordering::SeqCst),
    );
    check(
        args_made == args_freed,
        format!("C arguments: {args_made} made, {args_freed} freed"),
    );
    let (results_made, results_freed) = (
        C_RESULTS_MADE.load(Ordering::SeqCst),
        C_RESULTS_FREED.load(Ordering::SeqCst),
    );
    check(
        results_made == results_freed,
        format!("C results: {results_made} made, {results_freed} freed"),
    );
    check(
        sem_available == SEM_PERMITS,
        format!("semaphore: {sem_available} of {SEM_PERMITS} permits back"),
    );
    let max_ticks = (soak_secs / TICK.as_secs_f64()).ceil() as u64 + 2;
    check(
        ticks > 0 && ticks <= max_ticks && tick_failures == 0 && TICKS.load(Ordering::SeqCst) == ticks,
        format!(
            "ticker: {ticks} runs counted by it, {} by its job, {tick_failures} failures (at most {max_ticks} runs)",
            TICKS.load(Ordering::SeqCst)
        ),
    );
    let pool_ended_all = pool_ended(&stats);
    check(
        idle && stats.submitted == pool_ended_all && stats.queued == 0 && stats.running == 0,
        format!(
            "pool stats: {} submitted, {pool_ended_all} ended, {} queued, {} running",
            stats.submitted, stats.queued, stats.running
        ),
    );
    check(
        stats.succeeded >= outcomes[0]
            && stats.failed >= outcomes[1]
            && stats.panicked >= outcomes[2]
            && stats.cancelled >= outcomes[3]
            && stats.cancelled_before_start <= stats.cancelled,
        format!("pool stats {stats:?} below the requests' outcomes {outcomes:?}"),
    );
    check(
        live_freed,
        format!("{live_jobs} job blocks still allocated once the pool was idle"),
    );

    let achieved = (ENDED_ALL.load(Ordering::SeqCst) - ended_before_soak) as f64 / soak_secs;
    let per_kind: Vec<String> = Kind::ALL
        .iter()
        .map(|&k| {
            format!(
                "\"{}\": {{\"submitted\": {}, \"mismatched\": {}}}",
                k.name(),
                SUBMITTED.get(k),
                MISMATCHED.get(k)
            )
        })
        .collect();
    let problems_json: Vec<String> = problems.iter().map(|p| json_string(p)).collect();
    println!(
        "{{\"type\": \"summary\", \"ok\": {}, \"duration_s\": {soak_secs}, \"capacity_rps\": {capacity:.1}, \
         \"target_rps\": {rate:.1}, \"achieved_rps\": {achieved:.1}, \"soak_requests\": {soak_requests}, \
         \"requests\": {submitted_all}, \"ended\": {ended_all}, \
         \"p50_us\": {:.1}, \"p99_us\": {:.1}, \"p999_us\": {:.1}, \"max_us\": {:.1}, \"rss_max_bytes\": {rss_max}, \
         \"outcomes\": {{\"succeeded\": {}, \"failed\": {}, \"panicked\": {}, \"cancelled\": {}}}, \
         \"rust_values\": {made}, \"c_args\": {args_made}, \"c_results\": {results_made}, \"ticks\": {ticks}, \
         \"pool_jobs\": {}, \"pool_cancelled_before_start\": {}, \"steals\": {}, \"parks\": {}, \
         \"load_average\": \"{}\", \"kinds\": {{{}}}, \"problems\": [{}]}}",
        problems.is_empty(),
        micros(quantile(&counts, 0.5)),
        micros(quantile(&counts, 0.99)),
        micros(quantile(&counts, 0.999)),
        micros(max_ns),
        outcomes[0],
        outcomes[1],
        outcomes[2],
        outcomes[3],
        stats.submitted,
        stats.cancelled_before_start,
        stats.steals,
        stats.parks,
        load_average(),
        per_kind.join(", "),
        problems_json.join(", ")
    );
    eprintln!(
        "soak: {soak_requests} requests in {soak_secs:.0} s ({achieved:.0}/s of a target {rate:.0}/s); \
         latency p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs (soak phase); {} pool jobs; \
         outcomes: {} succeeded, {} failed, {} panicked, {} cancelled; {made} Rust values, \
         {args_made} C arguments, {results_made} C results made; {ticks} ticks",
        micros(quantile(&counts, 0.5)),
        micros(quantile(&counts, 0.99)),
        micros(max_ns),
        stats.submitted,
        outcomes[0],
        outcomes[1],
        outcomes[2],
        outcomes[3],
    );
    if !problems.is_empty() {
        for problem in &problems {
            eprintln!("soak: FAILED: {problem}");
        }
        std::process::exit(1);
    }
    eprintln!("soak: ok: every request ended once in the state it had to, every value released");
}

/// The reporter: a JSON line per interval until `finished`; returns the soak phase's
/// histogram, its largest latency and the largest RSS seen.
fn report(
    pool: &Pool,
    settings: &Settings,
    soak_start: Instant,
    due_count: &AtomicU64,
    submitted_count: &AtomicU64,
    drained: mpsc::Receiver<()>,
    ended_before: u64,
) -> (Vec<u64>, u64, u64) {
    let base = LATENCY.snapshot();
    LATENCY.max.store(0, Ordering::Relaxed);
    let mut previous = base.clone();
    let mut max_overall = 0;
    let mut rss_max = 0;
    let mut ended_prev = ended_before;
    let mut jobs_prev = pool_ended(&pool.stats());
    let mut at = soak_start;
    let mut tick = 0u64;
    let mut progress = (ended_before, Instant::now());
    let soak_end = soak_start + settings.duration;
    let mut finished = false;
    loop {
        tick += 1;
        let next = (soak_start + settings.interval.mul_f64(tick as f64)).min(soak_end);
        // The reporter's pace: one line per interval, or at once when every request has
        // ended (the sender is dropped).
        if !finished {
            let wait = next.saturating_duration_since(Instant::now());
            finished = drained.recv_timeout(wait) != Err(mpsc::RecvTimeoutError::Timeout);
        }
        let now = Instant::now();
        let span = (now - at).as_secs_f64();
        at = now;
        let counts = LATENCY.snapshot();
        let interval: Vec<u64> = counts.iter().zip(&previous).map(|(c, p)| c - p).collect();
        previous = counts;
        let max = LATENCY.max.swap(0, Ordering::Relaxed);
        max_overall = max_overall.max(max);
        let ended = ENDED_ALL.load(Ordering::SeqCst);
        let stats = pool.stats();
        let jobs = pool_ended(&stats);
        let rss = status_kb("VmRSS") * 1024;
        rss_max = rss_max.max(rss);
        let submitted = submitted_count.load(Ordering::Relaxed);
        let outstanding = (submitted + ended_before).saturating_sub(ended);
        let backlog = due_count.load(Ordering::Relaxed).saturating_sub(submitted);
        let live = jobrunner::debug_live_jobs();
        if ended != progress.0 || outstanding == 0 {
            progress = (ended, now);
        } else if now - progress.1 > STALL {
            stalled(outstanding);
        }
        let throughput = (ended - ended_prev) as f64 / span;
        let jobs_per_s = (jobs - jobs_prev) as f64 / span;
        ended_prev = ended;
        jobs_prev = jobs;
        let t = (now - soak_start).as_secs_f64();
        let (p50, p99) = (quantile(&interval, 0.5), quantile(&interval, 0.99));
        println!(
            "{{\"type\": \"interval\", \"t\": {t:.3}, \"throughput\": {throughput:.1}, \"jobs_per_s\": {jobs_per_s:.1}, \
             \"p50_us\": {:.1}, \"p99_us\": {:.1}, \"max_us\": {:.1}, \"rss_bytes\": {rss}, \"live_jobs\": {live}, \
             \"queued\": {}, \"running\": {}, \"outstanding\": {outstanding}, \"backlog\": {backlog}, \
             \"ticks\": {}, \"spare_threads\": {}}}",
            micros(p50),
            micros(p99),
            micros(max),
            stats.queued,
            stats.running,
            TICKS.load(Ordering::Relaxed),
            stats.spare_threads,
        );
        eprintln!(
            "  t {t:>7.1} s  {throughput:>8.0} req/s  {jobs_per_s:>8.0} jobs/s  p50 {:>7.0} µs  p99 {:>7.0} µs  \
             max {:>8.0} µs  RSS {:>6.1} MiB  live jobs {live:>5}  outstanding {outstanding:>5}  backlog {backlog}",
            micros(p50),
            micros(p99),
            micros(max),
            rss as f64 / (1024.0 * 1024.0),
        );
        if finished || now >= soak_end {
            // Wait for the drain, so that the last requests count in the totals.
            if !finished {
                let _ = drained.recv();
            }
            // The soak phase's own histogram: everything since the reporter began.
            let total: Vec<u64> = LATENCY
                .snapshot()
                .iter()
                .zip(&base)
                .map(|(l, b)| l - b)
                .collect();
            max_overall = max_overall.max(LATENCY.max.load(Ordering::Relaxed));
            return (total, max_overall, rss_max);
        }
    }
}
