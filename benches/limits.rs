//! `make bench` workloads 5 to 7 (issue 8): what jobrunner does at its limits, against
//! its peers, following `bench/PROTOCOL.md` (JSON lines on stdout, `BENCH_*` settings).
//!
//! - **`semaphore-limited`** (unit `x alone`): on a pool of `BENCH_THREADS` (2) threads,
//!   10,000 *constrained* jobs of ~50 µs of CPU that each hold the one permit of a
//!   semaphore, and 10,000 *unconstrained* jobs of ~50 µs, submitted alternately
//!   (C U C U ...) from the bench thread. The figure is the time from the first submit
//!   until the last unconstrained job has finished, divided by the time the same 10,000
//!   unconstrained jobs take alone on the same pool (run just before, in the same run).
//!   Each run checks that every constrained job ran and that no two ever ran at once.
//!   With one permit the constrained jobs run one at a time whatever the scheduler does:
//!   1.0 means the unconstrained jobs had every worker, as if alone (the constrained ones
//!   waited); 2.0 on two threads means one worker stayed on the constrained chain
//!   throughout (which finishes *all* the work soonest); above 2.0, workers sat blocked
//!   in `acquire`. The detail gives the time until all jobs were done too.
//! - **`cancellation`** (ms): 100,000 jobs queued behind blockers (one blocker job per
//!   worker, started and waiting on a gate, so none of the 100,000 can start). Timed from
//!   the cancel until every job's waiter has returned; the cancel is followed at once by
//!   opening the gate (a system that needs its workers to get through the cancelled
//!   jobs has them). Each run checks that every job ended cancelled and none ran.
//!   The waiters: jobrunner's jobs share one `CancelToken` and the bench thread `wait`s
//!   every `Job` in submit order; tokio's are in one `JoinSet` (`abort_all`), awaited
//!   with `join_next` until it is empty; the baselines (Mutex+Condvar pool,
//!   crossbeam-channel pool, rayon `spawn`) have no cancel: each job checks a flag and
//!   counts itself cancelled on a latch, and the bench thread waits for the latch.
//! - **`memory`** (B/job): 1,000,000 jobs queued behind blockers; the peak RSS (`VmHWM`
//!   of `/proc/self/status`, reset just before) minus the RSS before the first submit,
//!   divided by 1,000,000. The jobs capture nothing (they count their run in a static),
//!   so the figure is each system's own cost per queued job. Each measurement runs in a
//!   fresh child process (this binary re-executed with `--memory-child SYSTEM JOBS`), so
//!   one system's heap does not colour the next; there is no warm-up run. Each run
//!   checks that no job started before the peak was read, and that all ran afterwards.
//!
//! `BENCH_QUICK=1` sizes: 1,000 + 1,000 semaphore jobs, 10,000 cancellation jobs,
//! 100,000 memory jobs. `cargo bench --bench limits` runs what the environment says;
//! without `--bench` (as under `cargo test --benches`) it is a smoke run: quick sizes,
//! one measured run.

mod common;

use std::convert::Infallible;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use common::{calibrate, rounds, spin, status_kb, ChannelPool, CondvarPool, Config, Latch, Sample};
use jobrunner::{CancelToken, Job, JobError, Pool, Semaphore, SubmitOptions};

const SEMAPHORE_LIMITED: &str = "semaphore-limited";
const CANCELLATION: &str = "cancellation";
const MEMORY: &str = "memory";

/// The argument that makes this binary a `memory` child: `--memory-child SYSTEM JOBS`.
const MEMORY_CHILD: &str = "--memory-child";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, system, jobs] = args.as_slice() {
        if flag == MEMORY_CHILD {
            let jobs = jobs
                .parse()
                .expect("--memory-child SYSTEM JOBS: JOBS is a number");
            memory_child(system, jobs, Config::from_env().threads);
            return;
        }
    }
    let config = Config::for_bench_binary();
    let start = Instant::now();
    if config.wants(SEMAPHORE_LIMITED) {
        semaphore_limited(&config);
    }
    if config.wants(CANCELLATION) {
        cancellation(&config);
    }
    if config.wants(MEMORY) {
        memory(&config);
    }
    eprintln!("limits: {:.1} s", start.elapsed().as_secs_f64());
}

fn emit(workload: &str, system: &str, ours: bool, unit: &str, value: f64, detail: &str) {
    Sample {
        workload,
        system,
        ours,
        unit,
        value,
        lower_is_better: true,
        detail: Some(detail),
    }
    .emit();
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

fn jobrunner_pool(threads: usize) -> Pool {
    Pool::builder()
        .threads(threads)
        .build()
        .expect("build a jobrunner pool")
}

fn rayon_pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("build a rayon pool")
}

fn tokio_runtime(threads: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .build()
        .expect("build a tokio runtime")
}

/// Submits `f` as a jobrunner job with `options` and detaches it (drops the handle).
fn detach(pool: &Pool, options: SubmitOptions, f: impl FnOnce() + Send + 'static) {
    let job = pool
        .submit_with(options, move |_| {
            f();
            Ok::<(), Infallible>(())
        })
        .expect("submit to a live pool");
    drop(job);
}

// ---------------------------------------------------------------------------------------
// Blockers: one job per worker, holding it until released.

/// The blocker jobs of `cancellation` and `memory`: each says it has started, then waits
/// on a gate, so that while they wait no other job of the pool can start.
struct Blockers {
    started: Latch,
    gate: Latch,
    left: Latch,
}

static BLOCKERS: Blockers = Blockers {
    started: Latch::new(),
    gate: Latch::new(),
    left: Latch::new(),
};

impl Blockers {
    /// Closes the gate and holds every one of `threads` workers with a blocker, which
    /// `spawn_blocker` submits; returns once all of them run.
    fn hold(&self, threads: usize, spawn_blocker: impl Fn()) {
        self.started.reset(threads);
        self.gate.reset(1);
        self.left.reset(threads);
        for _ in 0..threads {
            spawn_blocker();
        }
        self.started.wait();
    }

    /// The body of a blocker job.
    fn block(&self) {
        self.started.count_down();
        self.gate.wait();
        self.left.count_down();
    }

    /// Opens the gate: the blockers return.
    fn release(&self) {
        self.gate.count_down();
    }

    /// Waits until every blocker has left the gate (so that `hold` may close it again).
    fn join(&self) {
        self.left.wait();
    }
}

/// What the queued jobs of `cancellation` and `memory` report: how many ran, how many
/// found the cancel flag set, and a latch that opens when all have done either.
struct Tally {
    ran: AtomicUsize,
    cancelled: AtomicUsize,
    ended: Latch,
}

static TALLY: Tally = Tally {
    ran: AtomicUsize::new(0),
    cancelled: AtomicUsize::new(0),
    ended: Latch::new(),
};

/// The cancel flag of the flag-checking baselines of `cancellation`.
static CANCEL_FLAG: AtomicBool = AtomicBool::new(false);

impl Tally {
    fn arm(&self, jobs: usize) {
        self.ran.store(0, Ordering::Relaxed);
        self.cancelled.store(0, Ordering::Relaxed);
        self.ended.reset(jobs);
    }

    /// The body of a job that must not run before it is let (or never, if cancelled).
    fn run(&self) {
        self.ran.fetch_add(1, Ordering::Relaxed);
        self.ended.count_down();
    }

    /// The body of a flag-checking baseline job: reports "cancelled" if the flag is set.
    fn run_unless_flagged(&self) {
        if CANCEL_FLAG.load(Ordering::Acquire) {
            self.cancelled.fetch_add(1, Ordering::Relaxed);
            self.ended.count_down();
        } else {
            self.run();
        }
    }

    fn ran(&self) -> usize {
        self.ran.load(Ordering::Relaxed)
    }
}

// ---------------------------------------------------------------------------------------
// 5. semaphore-limited

/// A counting semaphore that blocks the calling thread (a worker, here) in `acquire`: the
/// baseline of `semaphore-limited`.
struct BlockingSemaphore {
    available: Mutex<usize>,
    freed: Condvar,
}

impl BlockingSemaphore {
    fn new(permits: usize) -> Self {
        BlockingSemaphore {
            available: Mutex::new(permits),
            freed: Condvar::new(),
        }
    }

    /// Takes a permit, blocking the thread until one is free, and runs `f` holding it.
    fn with_permit(&self, f: impl FnOnce()) {
        let mut available = self.available.lock().unwrap_or_else(|e| e.into_inner());
        while *available == 0 {
            available = self
                .freed
                .wait(available)
                .unwrap_or_else(|e| e.into_inner());
        }
        *available -= 1;
        drop(available);
        f();
        *self.available.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.freed.notify_one();
    }
}

/// What the jobs of one `semaphore-limited` system share.
struct Limited {
    /// Rounds of `spin` in one job (~50 µs).
    iters: u64,
    unconstrained_left: Latch,
    constrained_left: Latch,
    /// Constrained jobs running now (at most 1 if the semaphore works).
    holding: AtomicUsize,
    /// Constrained jobs that started while another was running.
    overlaps: AtomicUsize,
    constrained_ran: AtomicUsize,
}

/// The times of one `semaphore-limited` run.
struct LimitedRun {
    /// The unconstrained jobs alone: first submit to last end.
    alone: Duration,
    /// Mixed: first submit to the last unconstrained job's end.
    mixed: Duration,
    /// Mixed: first submit to the last constrained job's end.
    all: Duration,
}

impl Limited {
    fn new(iters: u64) -> Arc<Self> {
        Arc::new(Limited {
            iters,
            unconstrained_left: Latch::new(),
            constrained_left: Latch::new(),
            holding: AtomicUsize::new(0),
            overlaps: AtomicUsize::new(0),
            constrained_ran: AtomicUsize::new(0),
        })
    }

    fn unconstrained(&self) {
        spin(self.iters);
        self.unconstrained_left.count_down();
    }

    /// The body of a constrained job, run holding the permit.
    fn constrained(&self) {
        if self.holding.fetch_add(1, Ordering::AcqRel) != 0 {
            self.overlaps.fetch_add(1, Ordering::Relaxed);
        }
        spin(self.iters);
        self.holding.fetch_sub(1, Ordering::AcqRel);
        self.constrained_ran.fetch_add(1, Ordering::Relaxed);
        self.constrained_left.count_down();
    }

    /// One run: `jobs` unconstrained jobs alone, then `jobs` constrained and `jobs`
    /// unconstrained ones interleaved (C U C U ...). Panics if a constrained job did not
    /// run or two ran at once.
    fn run(
        self: &Arc<Self>,
        jobs: usize,
        unconstrained: impl Fn(Arc<Self>),
        constrained: impl Fn(Arc<Self>),
    ) -> LimitedRun {
        self.unconstrained_left.reset(jobs);
        let start = Instant::now();
        for _ in 0..jobs {
            unconstrained(Arc::clone(self));
        }
        self.unconstrained_left.wait();
        let alone = start.elapsed();

        self.overlaps.store(0, Ordering::Relaxed);
        self.constrained_ran.store(0, Ordering::Relaxed);
        self.unconstrained_left.reset(jobs);
        self.constrained_left.reset(jobs);
        let start = Instant::now();
        for _ in 0..jobs {
            constrained(Arc::clone(self));
            unconstrained(Arc::clone(self));
        }
        self.unconstrained_left.wait();
        let mixed = start.elapsed();
        self.constrained_left.wait();
        let all = start.elapsed();

        let ran = self.constrained_ran.load(Ordering::Relaxed);
        assert_eq!(ran, jobs, "{SEMAPHORE_LIMITED}: constrained jobs run");
        let overlaps = self.overlaps.load(Ordering::Relaxed);
        assert_eq!(
            overlaps, 0,
            "{SEMAPHORE_LIMITED}: constrained jobs ran two at once"
        );
        LimitedRun { alone, mixed, all }
    }
}

fn emit_limited(system: &str, ours: bool, run: &LimitedRun) {
    let detail = format!(
        "unconstrained done {:.0} ms, alone {:.0} ms, all done {:.0} ms",
        millis(run.mixed),
        millis(run.alone),
        millis(run.all)
    );
    let ratio = run.mixed.as_secs_f64() / run.alone.as_secs_f64();
    emit(SEMAPHORE_LIMITED, system, ours, "x alone", ratio, &detail);
}

/// Workload 5: see the module's doc.
fn semaphore_limited(config: &Config) {
    let jobs = config.size(10_000, 1_000);
    let iters = calibrate(Duration::from_micros(50));
    eprintln!("{SEMAPHORE_LIMITED}: {jobs} + {jobs} jobs of {iters} rounds (~50 µs)");

    let pool = jobrunner_pool(config.threads);
    let rayon = rayon_pool(config.threads);
    let tokio = tokio_runtime(config.threads);

    let mut jobrunner = |measured: bool| {
        let semaphore = Semaphore::new(1);
        let with_permit = SubmitOptions::new().semaphore(&semaphore, 1);
        let run = Limited::new(iters).run(
            jobs,
            |limited| detach(&pool, SubmitOptions::new(), move || limited.unconstrained()),
            |limited| detach(&pool, with_permit.clone(), move || limited.constrained()),
        );
        if measured {
            emit_limited("jobrunner (Rust)", true, &run);
        }
    };
    let mut tokio_semaphore = |measured: bool| {
        let semaphore = Arc::new(tokio::sync::Semaphore::new(1));
        let run = Limited::new(iters).run(
            jobs,
            |limited| drop(tokio.spawn(async move { limited.unconstrained() })),
            |limited| {
                let semaphore = Arc::clone(&semaphore);
                drop(tokio.spawn(async move {
                    let _permit = semaphore.acquire().await.expect("semaphore open");
                    limited.constrained();
                }));
            },
        );
        if measured {
            emit_limited("tokio", false, &run);
        }
    };
    let mut blocking_on_jobrunner = |measured: bool| {
        let semaphore = Arc::new(BlockingSemaphore::new(1));
        let run = Limited::new(iters).run(
            jobs,
            |limited| detach(&pool, SubmitOptions::new(), move || limited.unconstrained()),
            |limited| {
                let semaphore = Arc::clone(&semaphore);
                detach(&pool, SubmitOptions::new(), move || {
                    semaphore.with_permit(|| limited.constrained())
                });
            },
        );
        if measured {
            emit_limited("blocking semaphore (on jobrunner's pool)", false, &run);
        }
    };
    let mut blocking_on_rayon = |measured: bool| {
        let semaphore = Arc::new(BlockingSemaphore::new(1));
        let run = Limited::new(iters).run(
            jobs,
            |limited| rayon.spawn(move || limited.unconstrained()),
            |limited| {
                let semaphore = Arc::clone(&semaphore);
                rayon.spawn(move || semaphore.with_permit(|| limited.constrained()));
            },
        );
        if measured {
            emit_limited("rayon + blocking semaphore", false, &run);
        }
    };
    rounds(
        config,
        &mut [
            &mut jobrunner,
            &mut tokio_semaphore,
            &mut blocking_on_jobrunner,
            &mut blocking_on_rayon,
        ],
    );
}

// ---------------------------------------------------------------------------------------
// 6. cancellation

fn check_cancelled(system: &str, jobs: usize, cancelled: usize) {
    assert_eq!(
        cancelled, jobs,
        "{CANCELLATION}: {system}: jobs ended cancelled"
    );
    assert_eq!(
        TALLY.ran(),
        0,
        "{CANCELLATION}: {system}: cancelled jobs that ran"
    );
}

fn emit_cancellation(system: &str, ours: bool, jobs: usize, elapsed: Duration) {
    let detail = format!(
        "{:.0} ns per job",
        elapsed.as_secs_f64() * 1e9 / jobs as f64
    );
    emit(CANCELLATION, system, ours, "ms", millis(elapsed), &detail);
}

/// One run of a flag-checking baseline on a pool that `spawn` submits to: `jobs` jobs
/// queued behind blockers; the flag is set and the gate opened; timed until every job
/// has seen the flag and counted itself cancelled (the latch opens).
fn flag_checking(system: &str, threads: usize, jobs: usize, spawn: impl Fn(fn())) -> Duration {
    CANCEL_FLAG.store(false, Ordering::Relaxed);
    BLOCKERS.hold(threads, || spawn(|| BLOCKERS.block()));
    TALLY.arm(jobs);
    for _ in 0..jobs {
        spawn(|| TALLY.run_unless_flagged());
    }
    let start = Instant::now();
    CANCEL_FLAG.store(true, Ordering::Release);
    BLOCKERS.release();
    TALLY.ended.wait();
    let elapsed = start.elapsed();
    BLOCKERS.join();
    check_cancelled(system, jobs, TALLY.cancelled.load(Ordering::Relaxed));
    elapsed
}

/// Workload 6: see the module's doc.
fn cancellation(config: &Config) {
    let jobs = config.size(100_000, 10_000);
    let threads = config.threads;
    eprintln!("{CANCELLATION}: {jobs} queued jobs behind {threads} blockers");

    let pool = jobrunner_pool(threads);
    let tokio = tokio_runtime(threads);
    let condvar = CondvarPool::new(threads);
    let channel = ChannelPool::new(threads);
    let rayon = rayon_pool(threads);

    // One token for every job; the bench thread waits each `Job` in submit order.
    let mut jobrunner = |measured: bool| {
        let system = "jobrunner (Rust)";
        BLOCKERS.hold(threads, || {
            detach(&pool, SubmitOptions::new(), || BLOCKERS.block());
        });
        TALLY.arm(jobs);
        let token = CancelToken::new();
        let with_token = SubmitOptions::new().token(&token);
        let queued: Vec<Job<(), Infallible>> = (0..jobs)
            .map(|_| {
                pool.submit_with(with_token.clone(), |_| {
                    TALLY.run();
                    Ok(())
                })
                .expect("submit to a live pool")
            })
            .collect();
        let start = Instant::now();
        token.cancel();
        BLOCKERS.release();
        let cancelled = queued
            .into_iter()
            .map(Job::wait)
            .filter(|result| matches!(result, Err(JobError::Cancelled(_))))
            .count();
        let elapsed = start.elapsed();
        BLOCKERS.join();
        check_cancelled(system, jobs, cancelled);
        if measured {
            emit_cancellation(system, true, jobs, elapsed);
        }
    };
    // A `JoinSet` (abort_all), awaited to the end from the bench thread.
    let mut tokio_abort = |measured: bool| {
        let system = "tokio";
        BLOCKERS.hold(threads, || drop(tokio.spawn(async { BLOCKERS.block() })));
        TALLY.arm(jobs);
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..jobs {
            set.spawn_on(async { TALLY.run() }, tokio.handle());
        }
        let start = Instant::now();
        set.abort_all();
        BLOCKERS.release();
        let cancelled = tokio.block_on(async {
            let mut cancelled = 0;
            while let Some(result) = set.join_next().await {
                if result.is_err_and(|error| error.is_cancelled()) {
                    cancelled += 1;
                }
            }
            cancelled
        });
        let elapsed = start.elapsed();
        BLOCKERS.join();
        check_cancelled(system, jobs, cancelled);
        if measured {
            emit_cancellation(system, false, jobs, elapsed);
        }
    };
    let mut condvar_flag = |measured: bool| {
        let system = "Mutex+Condvar pool";
        let elapsed = flag_checking(system, threads, jobs, |f| condvar.spawn(f));
        if measured {
            emit_cancellation(system, false, jobs, elapsed);
        }
    };
    let mut channel_flag = |measured: bool| {
        let system = "crossbeam-channel pool";
        let elapsed = flag_checking(system, threads, jobs, |f| channel.spawn(f));
        if measured {
            emit_cancellation(system, false, jobs, elapsed);
        }
    };
    let mut rayon_flag = |measured: bool| {
        let system = "rayon";
        let elapsed = flag_checking(system, threads, jobs, |f| rayon.spawn(f));
        if measured {
            emit_cancellation(system, false, jobs, elapsed);
        }
    };
    rounds(
        config,
        &mut [
            &mut jobrunner,
            &mut tokio_abort,
            &mut condvar_flag,
            &mut channel_flag,
            &mut rayon_flag,
        ],
    );
}

// ---------------------------------------------------------------------------------------
// 7. memory

/// The systems of `memory`: the child's argument, the display name, whether it is ours.
const MEMORY_SYSTEMS: [(&str, &str, bool); 7] = [
    ("jobrunner", "jobrunner (Rust)", true),
    ("jobrunner-handles", "jobrunner (Rust, handles kept)", true),
    ("rayon", "rayon", false),
    ("tokio", "tokio", false),
    ("threadpool", "threadpool", false),
    ("condvar", "Mutex+Condvar pool", false),
    ("channel", "crossbeam-channel pool", false),
];

/// Workload 7: see the module's doc. Each run of each system is a child process.
fn memory(config: &Config) {
    let jobs = config.size(1_000_000, 100_000);
    let exe = std::env::current_exe().expect("the bench's own path");
    eprintln!("{MEMORY}: {jobs} queued jobs, one child process per system and run");
    for _ in 0..config.runs {
        for (system, ..) in MEMORY_SYSTEMS {
            let status = Command::new(&exe)
                .args([MEMORY_CHILD, system, &jobs.to_string()])
                .status()
                .expect("start a memory child");
            assert!(status.success(), "{MEMORY}: the {system} child: {status}");
        }
    }
}

/// The resident set before the first submit and at its peak with every job queued.
struct Footprint {
    before_kb: u64,
    peak_kb: u64,
}

/// Holds every worker with a blocker (`spawn_blocker`), submits `jobs` jobs that run
/// `TALLY.run` (`submit`, which returns whatever must stay alive while they are queued,
/// such as their handles), and reads the peak RSS; then lets the jobs run and checks
/// that none had started before and all ran after.
fn queued_footprint<Kept>(
    threads: usize,
    jobs: usize,
    spawn_blocker: impl Fn(),
    submit: impl FnOnce(usize) -> Kept,
) -> Footprint {
    BLOCKERS.hold(threads, spawn_blocker);
    TALLY.arm(jobs);
    // "5" resets VmHWM to the current RSS (proc(5)).
    std::fs::write("/proc/self/clear_refs", "5").expect("reset the peak RSS");
    let before_kb = status_kb("VmRSS");
    let kept = submit(jobs);
    let peak_kb = status_kb("VmHWM");
    assert_eq!(TALLY.ran(), 0, "{MEMORY}: jobs started while queued");
    BLOCKERS.release();
    TALLY.ended.wait();
    assert_eq!(TALLY.ran(), jobs, "{MEMORY}: queued jobs that ran");
    drop(kept);
    BLOCKERS.join();
    Footprint { before_kb, peak_kb }
}

/// [`queued_footprint`] for a pool whose spawn takes a closure: `$spawn` is run with
/// `$job` bound to each job's closure. A macro, not a function taking a `fn()`, so that
/// every job stays a closure that captures nothing (a `fn()` pointer would make the
/// pools' boxes allocate 8 bytes each).
macro_rules! spawned_footprint {
    ($threads:expr, $jobs:expr, |$job:ident| $spawn:expr) => {
        queued_footprint(
            $threads,
            $jobs,
            || {
                let $job = || BLOCKERS.block();
                $spawn
            },
            |jobs| {
                for _ in 0..jobs {
                    let $job = || TALLY.run();
                    $spawn
                }
            },
        )
    };
}

/// A `memory` child: measures one system once and prints its sample.
fn memory_child(system: &str, jobs: usize, threads: usize) {
    let &(_, name, ours) = MEMORY_SYSTEMS
        .iter()
        .find(|(id, ..)| *id == system)
        .unwrap_or_else(|| panic!("{MEMORY_CHILD}: no system {system}"));
    let footprint = match system {
        "jobrunner" => {
            let pool = jobrunner_pool(threads);
            queued_footprint(
                threads,
                jobs,
                || detach(&pool, SubmitOptions::new(), || BLOCKERS.block()),
                |jobs| {
                    for _ in 0..jobs {
                        detach(&pool, SubmitOptions::new(), || TALLY.run());
                    }
                },
            )
        }
        "jobrunner-handles" => {
            let pool = jobrunner_pool(threads);
            queued_footprint(
                threads,
                jobs,
                || detach(&pool, SubmitOptions::new(), || BLOCKERS.block()),
                |jobs| {
                    (0..jobs)
                        .map(|_| {
                            pool.submit(|_| {
                                TALLY.run();
                                Ok::<(), Infallible>(())
                            })
                            .expect("submit to a live pool")
                        })
                        .collect::<Vec<_>>()
                },
            )
        }
        "rayon" => {
            let pool = rayon_pool(threads);
            spawned_footprint!(threads, jobs, |job| pool.spawn(job))
        }
        "tokio" => {
            let runtime = tokio_runtime(threads);
            queued_footprint(
                threads,
                jobs,
                || drop(runtime.spawn(async { BLOCKERS.block() })),
                |jobs| {
                    for _ in 0..jobs {
                        drop(runtime.spawn(async { TALLY.run() }));
                    }
                },
            )
        }
        "threadpool" => {
            let pool = threadpool::ThreadPool::new(threads);
            spawned_footprint!(threads, jobs, |job| pool.execute(job))
        }
        "condvar" => {
            let pool = CondvarPool::new(threads);
            spawned_footprint!(threads, jobs, |job| pool.spawn(job))
        }
        "channel" => {
            let pool = ChannelPool::new(threads);
            spawned_footprint!(threads, jobs, |job| pool.spawn(job))
        }
        _ => unreachable!("every system of MEMORY_SYSTEMS has its arm"),
    };
    let grown = footprint.peak_kb.saturating_sub(footprint.before_kb);
    let detail = format!(
        "peak RSS +{:.1} MB over {:.1} MB before",
        grown as f64 / 1024.0,
        footprint.before_kb as f64 / 1024.0
    );
    emit(
        MEMORY,
        name,
        ours,
        "B/job",
        (grown * 1024) as f64 / jobs as f64,
        &detail,
    );
}
