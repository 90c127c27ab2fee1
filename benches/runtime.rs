//! Throughput benchmarks: jobrunner against its peers, side by side, in the same run.
//!
//! Three criterion groups, one function per system:
//!
//! - `spawn`: 1,000,000 empty jobs submitted from one outside thread and all awaited:
//!   jobrunner keeping the `Job` handles and waiting each, jobrunner detached with a
//!   countdown latch, rayon `ThreadPool::spawn` with the same latch, and a plain
//!   crossbeam-channel pool (built here) with the same latch.
//! - `fork_join`: fib(27) with a join per call (`jobrunner::join` in a pool job against
//!   `rayon::join` in `install`), and with a nested `ctx.pool().submit` + `wait` per call,
//!   each jobrunner variant under every `HelpPolicy`. This is the measurement that picks
//!   the pool's default help policy.
//! - `efficiency`: 20,000 jobs of ~20 µs of calibrated CPU work on 2 threads, against the
//!   same work run sequentially on one thread in this run.
//!
//! Every timed iteration is also recorded here, and after criterion's own report the run
//! prints Markdown tables: medians per system, derived figures (ns/job, efficiency), and
//! the ratio to the best peer. See `benches/README.md`.

mod common;

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use common::ChannelPool;
use criterion::{Bencher, Criterion, SamplingMode, Throughput};
use jobrunner::{Context, HelpPolicy, Pool};

/// Worker threads of every pool (the machine has 2 cores).
const THREADS: usize = 2;
/// Jobs per iteration of the `spawn` group.
const SPAWN_JOBS: usize = 1_000_000;
/// The `fork_join` argument.
const FIB_N: u32 = 27;
/// Below this `n`, the nested-submit fib computes sequentially (2 = no cutoff: one
/// submit per call that would `join`).
const SUBMIT_CUTOFF: u32 = 2;
/// Jobs per iteration of the `efficiency` group.
const EFF_JOBS: usize = 20_000;
/// CPU time per job of the `efficiency` group.
const EFF_JOB_TIME: Duration = Duration::from_micros(20);

/// Criterion's warm-up time, also used to tell warm-up iterations from measured ones.
const WARM_UP: Duration = Duration::from_secs(1);
/// Criterion's measurement time per function.
const MEASUREMENT: Duration = Duration::from_secs(3);
/// Criterion's samples per function.
const SAMPLES: usize = 10;

const SPAWN: &str = "spawn";
const FORK_JOIN: &str = "fork_join";
const EFFICIENCY: &str = "efficiency";

// ---------------------------------------------------------------------------------------
// A countdown latch and a plain channel pool, the baselines' building blocks.

/// A countdown latch: an atomic counter, and one mutex + condvar used only at zero.
struct Latch {
    count: AtomicUsize,
    lock: Mutex<()>,
    zero: Condvar,
}

impl Latch {
    const fn new() -> Self {
        Latch {
            count: AtomicUsize::new(0),
            lock: Mutex::new(()),
            zero: Condvar::new(),
        }
    }

    /// Arms the latch for `n` count-downs (no count-down may be pending).
    fn reset(&self, n: usize) {
        self.count.store(n, Ordering::Release);
    }

    fn count_down(&self) {
        if self.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            // Taking the lock orders the notification after the waiter's check.
            let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.zero.notify_all();
        }
    }

    fn wait(&self) {
        let mut guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        while self.count.load(Ordering::Acquire) != 0 {
            guard = self.zero.wait(guard).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// The latch of every latch-based workload (they run one at a time).
static LATCH: Latch = Latch::new();

fn jobrunner_pool(policy: HelpPolicy) -> Pool {
    Pool::builder()
        .threads(THREADS)
        .help_policy(policy)
        .build()
        .expect("build a jobrunner pool")
}

fn rayon_pool() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(THREADS)
        .build()
        .expect("build a rayon pool")
}

// ---------------------------------------------------------------------------------------
// Recording every timed iteration, for the tables at the end.

/// The iterations of one function of one group.
struct Series {
    group: &'static str,
    system: String,
    /// Sum of the durations of the calls seen so far (criterion warms up until the sum of
    /// its calls passes the warm-up time).
    elapsed: Duration,
    warm_up: Vec<Duration>,
    measured: Vec<Duration>,
}

static RECORDS: Mutex<Vec<Series>> = Mutex::new(Vec::new());

fn record(group: &'static str, system: &str, call: &[Duration]) {
    let mut records = RECORDS.lock().unwrap_or_else(|e| e.into_inner());
    let index = match records
        .iter()
        .position(|s| s.group == group && s.system == system)
    {
        Some(index) => index,
        None => {
            records.push(Series {
                group,
                system: system.to_owned(),
                elapsed: Duration::ZERO,
                warm_up: Vec::new(),
                measured: Vec::new(),
            });
            records.len() - 1
        }
    };
    let series = &mut records[index];
    let in_warm_up = series.elapsed <= WARM_UP;
    series.elapsed += call.iter().sum::<Duration>();
    if in_warm_up {
        series.warm_up.extend_from_slice(call);
    } else {
        series.measured.extend_from_slice(call);
    }
}

/// Times `routine` once per criterion iteration, recording each iteration.
fn timed(b: &mut Bencher<'_>, group: &'static str, system: &str, mut routine: impl FnMut()) {
    b.iter_custom(|iters| {
        let mut call = Vec::with_capacity(usize::try_from(iters).unwrap_or(0));
        for _ in 0..iters {
            let start = Instant::now();
            routine();
            call.push(start.elapsed());
        }
        record(group, system, &call);
        call.iter().sum()
    });
}

/// Median, min, max and count of the measured iterations of `system` in `group` (the
/// warm-up ones if criterion measured none, as in `--test` mode).
fn stats(group: &str, system: &str) -> Option<(f64, f64, f64, usize)> {
    let records = RECORDS.lock().unwrap_or_else(|e| e.into_inner());
    let series = records
        .iter()
        .find(|s| s.group == group && s.system == system)?;
    let chosen = if series.measured.is_empty() {
        &series.warm_up
    } else {
        &series.measured
    };
    let mut ns: Vec<f64> = chosen.iter().map(|d| d.as_nanos() as f64).collect();
    if ns.is_empty() {
        return None;
    }
    ns.sort_by(f64::total_cmp);
    let mid = ns.len() / 2;
    let median = if ns.len() % 2 == 0 {
        (ns[mid - 1] + ns[mid]) / 2.0
    } else {
        ns[mid]
    };
    Some((median, ns[0], ns[ns.len() - 1], ns.len()))
}

// ---------------------------------------------------------------------------------------
// Workload 1: spawn.

fn bench_spawn(c: &mut Criterion) {
    let mut group = c.benchmark_group(SPAWN);
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(SPAWN_JOBS as u64));

    let pool = jobrunner_pool(HelpPolicy::default());
    group.bench_function("jobrunner_handles", |b| {
        timed(b, SPAWN, "jobrunner_handles", || {
            let jobs: Vec<_> = (0..SPAWN_JOBS)
                .map(|_| pool.submit(|_| Ok::<_, ()>(())).expect("submit"))
                .collect();
            for job in jobs {
                job.wait().expect("job succeeds");
            }
        });
    });
    group.bench_function("jobrunner_detached", |b| {
        timed(b, SPAWN, "jobrunner_detached", || {
            LATCH.reset(SPAWN_JOBS);
            for _ in 0..SPAWN_JOBS {
                drop(
                    pool.submit(|_| {
                        LATCH.count_down();
                        Ok::<_, ()>(())
                    })
                    .expect("submit"),
                );
            }
            LATCH.wait();
        });
    });
    drop(pool);

    let rayon = rayon_pool();
    group.bench_function("rayon_spawn", |b| {
        timed(b, SPAWN, "rayon_spawn", || {
            LATCH.reset(SPAWN_JOBS);
            for _ in 0..SPAWN_JOBS {
                rayon.spawn(|| LATCH.count_down());
            }
            LATCH.wait();
        });
    });
    drop(rayon);

    let channel = ChannelPool::new(THREADS);
    group.bench_function("channel_pool", |b| {
        timed(b, SPAWN, "channel_pool", || {
            LATCH.reset(SPAWN_JOBS);
            for _ in 0..SPAWN_JOBS {
                channel.spawn(|| LATCH.count_down());
            }
            LATCH.wait();
        });
    });
    drop(channel);
    group.finish();
}

// ---------------------------------------------------------------------------------------
// Workload 2: fork-join.

fn fib_seq(n: u32) -> u64 {
    if n < 2 {
        return u64::from(n);
    }
    fib_seq(n - 1) + fib_seq(n - 2)
}

fn fib_jobrunner_join(n: u32) -> u64 {
    if n < 2 {
        return u64::from(n);
    }
    let (a, b) = jobrunner::join(|| fib_jobrunner_join(n - 1), || fib_jobrunner_join(n - 2));
    a + b
}

fn fib_rayon_join(n: u32) -> u64 {
    if n < 2 {
        return u64::from(n);
    }
    let (a, b) = rayon::join(|| fib_rayon_join(n - 1), || fib_rayon_join(n - 2));
    a + b
}

/// fib with `n - 1` submitted as a job of the pool and `n - 2` computed here, then a
/// `wait` on the job: `join` made of heap jobs.
fn fib_submit(ctx: &Context<'_>, n: u32) -> u64 {
    if n < SUBMIT_CUTOFF.max(2) {
        return fib_seq(n);
    }
    let a = ctx
        .pool()
        .submit(move |ctx| Ok::<_, ()>(fib_submit(ctx, n - 1)))
        .expect("submit");
    let b = fib_submit(ctx, n - 2);
    a.wait().expect("job succeeds") + b
}

/// Jobs `fib_submit(n)` submits.
fn submits(n: u32) -> u64 {
    if n < SUBMIT_CUTOFF.max(2) {
        return 0;
    }
    1 + submits(n - 1) + submits(n - 2)
}

const POLICIES: [(HelpPolicy, &str); 3] = [
    (HelpPolicy::Any, "Any"),
    (HelpPolicy::Own, "Own"),
    (HelpPolicy::Block, "Block"),
];

fn bench_fork_join(c: &mut Criterion) {
    let expected = fib_seq(FIB_N);
    let mut group = c.benchmark_group(FORK_JOIN);
    group.sampling_mode(SamplingMode::Flat);

    let rayon = rayon_pool();
    group.bench_function("rayon_join", |b| {
        timed(b, FORK_JOIN, "rayon_join", || {
            assert_eq!(rayon.install(|| fib_rayon_join(black_box(FIB_N))), expected);
        });
    });
    drop(rayon);

    for (policy, policy_name) in POLICIES {
        let pool = jobrunner_pool(policy);
        let name = format!("jobrunner_join_{policy_name}");
        group.bench_function(&name, |b| {
            timed(b, FORK_JOIN, &name, || {
                let n = black_box(FIB_N);
                let job = pool
                    .submit(move |_| Ok::<_, ()>(fib_jobrunner_join(n)))
                    .expect("submit");
                assert_eq!(job.wait(), Ok(expected));
            });
        });
        let name = format!("jobrunner_submit_{policy_name}");
        group.bench_function(&name, |b| {
            timed(b, FORK_JOIN, &name, || {
                let n = black_box(FIB_N);
                let job = pool
                    .submit(move |ctx| Ok::<_, ()>(fib_submit(ctx, n)))
                    .expect("submit");
                assert_eq!(job.wait(), Ok(expected));
            });
        });
        drop(pool);
    }
    group.finish();
}

// ---------------------------------------------------------------------------------------
// Workload 3: parallel efficiency.

/// `iters` rounds of a serial integer recurrence (no closed form, no vectorisation).
fn spin(iters: u64) -> u64 {
    let mut x = black_box(0x9E37_79B9_7F4A_7C15_u64);
    for _ in 0..black_box(iters) {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        x ^= x >> 29;
    }
    black_box(x)
}

/// Rounds of `spin` that take `EFF_JOB_TIME` on this machine now (best of a few tries).
fn calibrate() -> u64 {
    const PROBE: u64 = 2_000_000;
    spin(PROBE);
    let best = (0..5)
        .map(|_| {
            let start = Instant::now();
            spin(PROBE);
            start.elapsed()
        })
        .min()
        .unwrap_or(Duration::from_millis(1));
    let per_round = best.as_secs_f64() / PROBE as f64;
    ((EFF_JOB_TIME.as_secs_f64() / per_round) as u64).max(1)
}

fn bench_efficiency(c: &mut Criterion, rounds: u64) {
    let mut group = c.benchmark_group(EFFICIENCY);
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(EFF_JOBS as u64));

    group.bench_function("sequential", |b| {
        timed(b, EFFICIENCY, "sequential", || {
            for _ in 0..EFF_JOBS {
                spin(rounds);
            }
        });
    });

    let pool = jobrunner_pool(HelpPolicy::default());
    group.bench_function("jobrunner", |b| {
        timed(b, EFFICIENCY, "jobrunner", || {
            LATCH.reset(EFF_JOBS);
            for _ in 0..EFF_JOBS {
                drop(
                    pool.submit(move |_| {
                        spin(rounds);
                        LATCH.count_down();
                        Ok::<_, ()>(())
                    })
                    .expect("submit"),
                );
            }
            LATCH.wait();
        });
    });
    drop(pool);

    let rayon = rayon_pool();
    group.bench_function("rayon_spawn", |b| {
        timed(b, EFFICIENCY, "rayon_spawn", || {
            LATCH.reset(EFF_JOBS);
            for _ in 0..EFF_JOBS {
                rayon.spawn(move || {
                    spin(rounds);
                    LATCH.count_down();
                });
            }
            LATCH.wait();
        });
    });
    drop(rayon);

    let channel = ChannelPool::new(THREADS);
    group.bench_function("channel_pool", |b| {
        timed(b, EFFICIENCY, "channel_pool", || {
            LATCH.reset(EFF_JOBS);
            for _ in 0..EFF_JOBS {
                channel.spawn(move || {
                    spin(rounds);
                    LATCH.count_down();
                });
            }
            LATCH.wait();
        });
    });
    drop(channel);
    group.finish();
}

// ---------------------------------------------------------------------------------------
// The tables.

/// One row: system, median, min, max (all in the table's unit) and iterations.
struct Row {
    system: String,
    median: f64,
    min: f64,
    max: f64,
    n: usize,
}

/// The rows of `systems` in `group`, each value (ns per iteration) mapped by `unit`.
fn rows(group: &str, systems: &[String], unit: impl Fn(f64) -> f64) -> Vec<Row> {
    systems
        .iter()
        .filter_map(|system| {
            let (median, min, max, n) = stats(group, system)?;
            Some(Row {
                system: system.clone(),
                median: unit(median),
                min: unit(min),
                max: unit(max),
                n,
            })
        })
        .collect()
}

/// The best (lowest) median among the rows that are peers (not jobrunner).
fn best_peer(rows: &[Row]) -> Option<&Row> {
    rows.iter()
        .filter(|r| !r.system.starts_with("jobrunner"))
        .min_by(|a, b| a.median.total_cmp(&b.median))
}

fn print_spawn_table() {
    let systems: Vec<String> = [
        "jobrunner_handles",
        "jobrunner_detached",
        "rayon_spawn",
        "channel_pool",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    let rows = rows(SPAWN, &systems, |ns| ns / SPAWN_JOBS as f64);
    let Some(best) = best_peer(&rows) else {
        return;
    };
    println!("\n### spawn: {SPAWN_JOBS} empty jobs from one outside thread, all awaited ({THREADS} workers)\n");
    println!(
        "Lower is better; ratio = median / best peer's median ({}).\n",
        best.system
    );
    println!("| system | ns/job (median) | min | max | runs | ratio to best peer |");
    println!("|---|---:|---:|---:|---:|---:|");
    for row in &rows {
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {} | {:.2}x |",
            row.system,
            row.median,
            row.min,
            row.max,
            row.n,
            row.median / best.median
        );
    }
}

fn print_fork_join_table() {
    let mut systems = vec!["rayon_join".to_owned()];
    for (_, name) in POLICIES {
        systems.push(format!("jobrunner_join_{name}"));
    }
    for (_, name) in POLICIES {
        systems.push(format!("jobrunner_submit_{name}"));
    }
    let rows = rows(FORK_JOIN, &systems, |ns| ns / 1e6);
    let Some(best) = best_peer(&rows) else {
        return;
    };
    let joins = fib_calls(FIB_N);
    let jobs = submits(FIB_N) + 1;
    println!("\n### fork_join: fib({FIB_N}) with a join (or a submit + wait) per call ({THREADS} workers)\n");
    println!("Lower is better; ratio = median / rayon::join's median. `join` rows do {joins} joins per run; `submit` rows submit {jobs} jobs per run (cutoff n < {}).\n", SUBMIT_CUTOFF.max(2));
    println!("| system | help policy | ms per fib({FIB_N}) (median) | min | max | runs | ns per join/job | ratio to rayon::join |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for row in &rows {
        let (kind, policy) = match row.system.rsplit_once('_') {
            Some((kind, policy)) if row.system.starts_with("jobrunner") => (kind, policy),
            _ => (row.system.as_str(), "-"),
        };
        let per = if kind.ends_with("submit") {
            jobs
        } else {
            joins
        };
        println!(
            "| {} | {} | {:.2} | {:.2} | {:.2} | {} | {:.1} | {:.2}x |",
            kind,
            policy,
            row.median,
            row.min,
            row.max,
            row.n,
            row.median * 1e6 / per as f64,
            row.median / best.median
        );
    }
    for kind in ["jobrunner_join", "jobrunner_submit"] {
        let mut of_kind: Vec<&Row> = rows.iter().filter(|r| r.system.starts_with(kind)).collect();
        of_kind.sort_by(|a, b| a.median.total_cmp(&b.median));
        if let Some(fastest) = of_kind.first() {
            let others: Vec<String> = of_kind[1..]
                .iter()
                .map(|r| {
                    format!(
                        "{} {:.2}x",
                        r.system.rsplit('_').next().unwrap_or("?"),
                        r.median / fastest.median
                    )
                })
                .collect();
            println!(
                "\nFastest help policy for `{kind}`: **{}** (others: {}).",
                fastest.system.rsplit('_').next().unwrap_or("?"),
                others.join(", ")
            );
        }
    }
    println!(
        "\nThis table is the measurement that chooses the pool's default `HelpPolicy` (DESIGN.md, \"Scheduler\"); the default in this build is `{:?}`.",
        HelpPolicy::default()
    );
}

/// Joins of the join-based fib: one per call with `n >= 2`.
fn fib_calls(n: u32) -> u64 {
    if n < 2 {
        return 0;
    }
    1 + fib_calls(n - 1) + fib_calls(n - 2)
}

fn print_efficiency_table(rounds: u64) {
    let Some((sequential, ..)) = stats(EFFICIENCY, "sequential") else {
        return;
    };
    let systems: Vec<String> = ["jobrunner", "rayon_spawn", "channel_pool"]
        .into_iter()
        .map(String::from)
        .collect();
    let rows = rows(EFFICIENCY, &systems, |ns| ns / 1e6);
    let efficiency = |wall_ms: f64| sequential / 1e6 / (THREADS as f64 * wall_ms);
    let Some(best) = rows
        .iter()
        .filter(|r| !r.system.starts_with("jobrunner"))
        .max_by(|a, b| efficiency(a.median).total_cmp(&efficiency(b.median)))
    else {
        return;
    };
    println!(
        "\n### efficiency: {EFF_JOBS} jobs of ~{} µs of CPU on {THREADS} threads\n",
        EFF_JOB_TIME.as_micros()
    );
    println!(
        "Single-thread time of the same work in this run: {:.1} ms (median; {:.2} µs per job, {rounds} rounds of the calibrated loop).",
        sequential / 1e6,
        sequential / 1e3 / EFF_JOBS as f64
    );
    println!("Efficiency = single-thread time / ({THREADS} × wall time); higher is better; ratio = efficiency / best peer's efficiency ({}).\n", best.system);
    println!("| system | wall ms (median) | min | max | runs | efficiency | ratio to best peer |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for row in &rows {
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {} | {:.1}% | {:.2}x |",
            row.system,
            row.median,
            row.min,
            row.max,
            row.n,
            efficiency(row.median) * 100.0,
            efficiency(row.median) / efficiency(best.median)
        );
    }
}

/// The system load averages (Linux `/proc/loadavg`), to judge how shared the machine was.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".to_owned())
}

fn main() {
    let started = Instant::now();
    let load_before = load_average();
    let rounds = calibrate();
    let mut criterion = Criterion::default()
        .sample_size(SAMPLES)
        .warm_up_time(WARM_UP)
        .measurement_time(MEASUREMENT)
        .configure_from_args();
    bench_spawn(&mut criterion);
    bench_fork_join(&mut criterion);
    bench_efficiency(&mut criterion, rounds);
    criterion.final_summary();

    println!("\n## jobrunner vs peers (medians over the measured iterations)");
    print_spawn_table();
    print_fork_join_table();
    print_efficiency_table(rounds);
    println!(
        "\n(runtime bench total: {:.1} s; load average before: {load_before}, after: {})",
        started.elapsed().as_secs_f64(),
        load_average()
    );
}
