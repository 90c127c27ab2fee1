//! Issue 8's throughput workloads 1-3 for jobrunner's Rust API and its Rust peers, side
//! by side in one process, following `bench/PROTOCOL.md` (one JSON line per measured run
//! on stdout, the rest on stderr; `BENCH_QUICK`, `BENCH_RUNS`, `BENCH_THREADS`,
//! `BENCH_ONLY`). Every pool has `BENCH_THREADS` workers (default 2).
//!
//! - `spawn` (ns/job): 1,000,000 empty jobs submitted from the bench thread (outside the
//!   pool), all awaited; the time from the first submit to the end of the last job,
//!   divided by the job count. `jobrunner (Rust, handles)` keeps every `Job` and waits
//!   each (what a user writes); every other system drops its handles, if it has any, and
//!   each job counts down one shared latch, which the bench thread waits on.
//! - `fork-join` (ms per fib(30)): fib(30) forking both calls while n > 15 and computing
//!   sequentially at n <= 15, started on a worker of the pool and awaited from outside.
//!   `jobrunner (Rust, join)` forks with `jobrunner::join`, `jobrunner (Rust,
//!   submit+wait)` with `ctx.pool().submit` + `wait`, `rayon` with `rayon::join` in
//!   `install`, `tokio` with `tokio::spawn` + `.await`. `BENCH_HELP_POLICIES=1` adds both
//!   jobrunner variants on a pool of each `HelpPolicy`: the measurement behind the
//!   default policy, which a fork per call shows best (`BENCH_FIB_CUTOFF=1`).
//! - `fan-out` (ms per run) and `fan-out efficiency` (%): 20,000 jobs of ~20 µs of CPU
//!   each (`common::spin`, calibrated at start), submitted from the bench thread, each
//!   returning a value; the results are gathered and summed. Efficiency is the time the
//!   same 20,000 items take one after another on the bench thread, measured in the same
//!   round, divided by (threads × the system's time).
//!
//! Each run checks its result (the fib value, the sum of the items, every job waited) and
//! panics if it is wrong, so the program exits non-zero. `cargo bench --bench workloads`
//! runs the full sizes; without `--bench` (as under `cargo test --benches`) it is a smoke
//! run: quick sizes, one round. See `bench/README.md`.

mod common;

use std::cell::Cell;
use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::{
    calibrate, load_average, rounds, spin, ChannelPool, CondvarPool, Config, Latch, Sample,
};
use jobrunner::{Context, HelpPolicy, Pool};

/// The latch of every latch-based system (the systems run one at a time).
static LATCH: Latch = Latch::new();

fn main() {
    let config = Config::for_bench_binary();
    let started = Instant::now();
    eprintln!(
        "workloads: {} threads, {} measured runs per system, {} sizes; load average {}",
        config.threads,
        config.runs,
        if config.quick { "quick" } else { "full" },
        load_average()
    );
    if config.wants("spawn") {
        spawn(&config);
    }
    if config.wants("fork-join") {
        fork_join(&config);
    }
    if config.wants("fan-out") || config.wants("fan-out efficiency") {
        fan_out(&config);
    }
    eprintln!(
        "workloads: {:.1} s; load average {}",
        started.elapsed().as_secs_f64(),
        load_average()
    );
}

// ---------------------------------------------------------------------------------------
// The pools.

/// One pool of every system of `spawn` and `fan-out`, each of `config.threads` threads
/// (jobrunner with the default help policy).
struct Systems {
    jobrunner: Pool,
    rayon: rayon::ThreadPool,
    tokio: tokio::runtime::Runtime,
    threadpool: threadpool::ThreadPool,
    condvar: CondvarPool,
    channel: ChannelPool,
}

impl Systems {
    fn new(config: &Config) -> Self {
        Systems {
            jobrunner: jobrunner_pool(config, HelpPolicy::default()),
            rayon: rayon_pool(config),
            tokio: tokio_runtime(config),
            threadpool: threadpool::ThreadPool::new(config.threads),
            condvar: CondvarPool::new(config.threads),
            channel: ChannelPool::new(config.threads),
        }
    }
}

fn jobrunner_pool(config: &Config, policy: HelpPolicy) -> Pool {
    Pool::builder()
        .threads(config.threads)
        .help_policy(policy)
        .build()
        .expect("build a jobrunner pool")
}

fn rayon_pool(config: &Config) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(config.threads)
        .build()
        .expect("build a rayon pool")
}

/// A multi-thread runtime with `config.threads` workers and no I/O or timer driver.
fn tokio_runtime(config: &Config) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.threads)
        .build()
        .expect("build a tokio runtime")
}

/// Runs `f` once and returns how long it took.
fn time(f: impl FnOnce()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

/// Prints one measured run: `system`'s `value` on `workload` (a percentage is higher is
/// better, every other unit lower is better).
fn emit(workload: &str, system: &str, unit: &str, value: f64, detail: Option<&str>) {
    Sample {
        workload,
        system,
        ours: system.starts_with("jobrunner"),
        unit,
        value,
        lower_is_better: unit != "%",
        detail,
    }
    .emit();
}

// ---------------------------------------------------------------------------------------
// Workload 1: spawn.

/// 1,000,000 (quick: 100,000) empty jobs from the bench thread, all awaited.
fn spawn(config: &Config) {
    let jobs = config.size(1_000_000, 100_000);
    eprintln!("\nspawn: {jobs} empty jobs submitted from one outside thread, all awaited");
    let Systems {
        jobrunner,
        rayon,
        tokio,
        threadpool,
        condvar,
        channel,
    } = Systems::new(config);

    rounds(
        config,
        &mut [
            &mut |measured| {
                let elapsed = time(|| {
                    let handles: Vec<_> = (0..jobs)
                        .map(|_| jobrunner.submit(|_| Ok::<_, ()>(())).expect("submit"))
                        .collect();
                    for handle in handles {
                        handle.wait().expect("an empty job succeeds");
                    }
                });
                if measured {
                    let ns = elapsed.as_nanos() as f64 / jobs as f64;
                    emit("spawn", "jobrunner (Rust, handles)", "ns/job", ns, None);
                }
            },
            &mut |measured| {
                latched(measured, "jobrunner (Rust, detached)", jobs, || {
                    let job = jobrunner.submit(|_| {
                        LATCH.count_down();
                        Ok::<_, ()>(())
                    });
                    drop(job.expect("submit"));
                });
            },
            &mut |measured| {
                latched(measured, "rayon", jobs, || {
                    rayon.spawn(|| LATCH.count_down())
                });
            },
            &mut |measured| {
                latched(measured, "tokio", jobs, || {
                    drop(tokio.spawn(async { LATCH.count_down() }));
                });
            },
            &mut |measured| {
                latched(measured, "threadpool", jobs, || {
                    threadpool.execute(|| LATCH.count_down());
                });
            },
            &mut |measured| {
                latched(measured, "Mutex+Condvar pool", jobs, || {
                    condvar.spawn(|| LATCH.count_down());
                });
            },
            &mut |measured| {
                latched(measured, "crossbeam-channel pool", jobs, || {
                    channel.spawn(|| LATCH.count_down());
                });
            },
        ],
    );
}

/// One run of a latch-based `spawn` system: `submit` submits one job that counts the
/// latch down; it runs `jobs` times, then the bench thread waits on the latch.
fn latched(measured: bool, system: &str, jobs: usize, submit: impl Fn()) {
    let elapsed = time(|| {
        LATCH.reset(jobs);
        for _ in 0..jobs {
            submit();
        }
        LATCH.wait();
    });
    if measured {
        let ns = elapsed.as_nanos() as f64 / jobs as f64;
        emit("spawn", system, "ns/job", ns, None);
    }
}

// ---------------------------------------------------------------------------------------
// Workload 2: fork-join.

/// At or below this `n`, fib computes sequentially instead of forking: 15, or
/// `BENCH_FIB_CUTOFF` (set once, before the first run).
static FIB_CUTOFF: AtomicU32 = AtomicU32::new(15);

fn cutoff() -> u32 {
    FIB_CUTOFF.load(Ordering::Relaxed)
}

fn fib_seq(n: u32) -> u64 {
    if n < 2 {
        return u64::from(n);
    }
    fib_seq(n - 1) + fib_seq(n - 2)
}

fn fib_join(n: u32) -> u64 {
    if n <= cutoff() {
        return fib_seq(n);
    }
    let (a, b) = jobrunner::join(|| fib_join(n - 1), || fib_join(n - 2));
    a + b
}

/// fib with `n - 1` submitted as a job of the pool and `n - 2` computed here, then a
/// `wait` on the job: a fork made of a heap job.
fn fib_submit(ctx: &Context<'_>, n: u32) -> u64 {
    if n <= cutoff() {
        return fib_seq(n);
    }
    let a = ctx
        .pool()
        .submit(move |ctx| Ok::<_, ()>(fib_submit(ctx, n - 1)))
        .expect("submit");
    let b = fib_submit(ctx, n - 2);
    a.wait().expect("a fib job succeeds") + b
}

fn fib_rayon(n: u32) -> u64 {
    if n <= cutoff() {
        return fib_seq(n);
    }
    let (a, b) = rayon::join(|| fib_rayon(n - 1), || fib_rayon(n - 2));
    a + b
}

/// fib with `n - 1` spawned as a task and `n - 2` awaited in this one (an `async fn`
/// cannot recurse without boxing).
fn fib_tokio(n: u32) -> Pin<Box<dyn Future<Output = u64> + Send>> {
    Box::pin(async move {
        if n <= cutoff() {
            return fib_seq(n);
        }
        let a = tokio::spawn(fib_tokio(n - 1));
        let b = fib_tokio(n - 2).await;
        a.await.expect("a fib task succeeds") + b
    })
}

/// Forks of one fib(n): one per call with `n` above the cutoff.
fn forks(n: u32) -> u64 {
    if n <= cutoff() {
        return 0;
    }
    1 + forks(n - 1) + forks(n - 2)
}

/// fib(30) (quick: fib(25)), `reps` times per run, with a fork per call above the cutoff.
fn fork_join(config: &Config) {
    let n = config.size(30, 25);
    // One fib(30) takes a few ms on 2 threads: each run computes it `reps` times and
    // reports the mean, so that a run is long enough to time on a shared machine.
    let reps = 10;
    let expected = fib_seq(n);
    let help_policies = std::env::var("BENCH_HELP_POLICIES").as_deref() == Ok("1");
    if let Ok(value) = std::env::var("BENCH_FIB_CUTOFF") {
        let cutoff = value
            .parse()
            .unwrap_or_else(|_| panic!("BENCH_FIB_CUTOFF={value}: not a number"));
        FIB_CUTOFF.store(cutoff, Ordering::Relaxed);
    }
    eprintln!(
        "\nfork-join: fib({n}) with {} forks (sequential at n <= {}), {reps} per run{}",
        forks(n),
        cutoff(),
        if help_policies {
            ", under each HelpPolicy"
        } else {
            ""
        }
    );
    let rayon = rayon_pool(config);
    let tokio = tokio_runtime(config);
    // The default pool, then one per policy for BENCH_HELP_POLICIES=1.
    let mut pools = vec![(String::new(), jobrunner_pool(config, HelpPolicy::default()))];
    if help_policies {
        for policy in [HelpPolicy::Any, HelpPolicy::Own, HelpPolicy::Block] {
            pools.push((format!(", {policy:?}"), jobrunner_pool(config, policy)));
        }
    }

    // The sequential time of one fib(n) in ms, measured first in each round, for the
    // detail of the round's lines.
    let sequential = Cell::new(0.0);
    // Times `reps` fib(n) computed by `fib` and, when measured, prints the mean.
    let run = |measured: bool, system: &str, fib: &dyn Fn(u32) -> u64| {
        let elapsed = time(|| {
            for _ in 0..reps {
                assert_eq!(fib(black_box(n)), expected, "{system}: fib({n})");
            }
        });
        if measured {
            let ms = elapsed.as_secs_f64() * 1e3 / f64::from(reps);
            let detail = format!("sequential fib({n}): {:.2} ms", sequential.get());
            emit("fork-join", system, "ms", ms, Some(&detail));
        }
    };

    let mut systems: Vec<Box<dyn FnMut(bool) + '_>> = vec![Box::new(|_| {
        let elapsed = time(|| {
            for _ in 0..reps {
                assert_eq!(fib_seq(black_box(n)), expected, "sequential: fib({n})");
            }
        });
        let ms = elapsed.as_secs_f64() * 1e3 / f64::from(reps);
        eprintln!("  sequential fib({n}) on the bench thread: {ms:.2} ms");
        sequential.set(ms);
    })];
    for (suffix, pool) in &pools {
        let run = &run;
        systems.push(Box::new(move |measured| {
            run(measured, &format!("jobrunner (Rust, join{suffix})"), &|n| {
                let job = pool.submit(move |_| Ok::<_, ()>(fib_join(n)));
                job.expect("submit").wait().expect("fib succeeds")
            });
        }));
        systems.push(Box::new(move |measured| {
            run(
                measured,
                &format!("jobrunner (Rust, submit+wait{suffix})"),
                &|n| {
                    let job = pool.submit(move |ctx| Ok::<_, ()>(fib_submit(ctx, n)));
                    job.expect("submit").wait().expect("fib succeeds")
                },
            );
        }));
    }
    systems.push(Box::new(|measured| {
        run(measured, "rayon", &|n| rayon.install(|| fib_rayon(n)));
    }));
    systems.push(Box::new(|measured| {
        run(measured, "tokio", &|n| {
            let root = tokio.spawn(fib_tokio(n));
            tokio.block_on(root).expect("fib succeeds")
        });
    }));
    let mut systems: Vec<&mut dyn FnMut(bool)> = systems
        .iter_mut()
        .map(|system| &mut **system as _)
        .collect();
    rounds(config, &mut systems);
}

// ---------------------------------------------------------------------------------------
// Workload 3: fan-out / fan-in.

/// One work item: ~20 µs of `spin`, plus the item's index so that the sum checks that
/// each item ran exactly once.
fn item(index: usize, iters: u64) -> u64 {
    spin(iters).wrapping_add(index as u64)
}

/// 20,000 (quick: 2,000) items of ~20 µs from the bench thread, results gathered.
fn fan_out(config: &Config) {
    let jobs = config.size(20_000, 2_000);
    let iters = calibrate(Duration::from_micros(20));
    let expected = (0..jobs).fold(0_u64, |sum, i| sum.wrapping_add(item(i, iters)));
    eprintln!(
        "\nfan-out: {jobs} jobs of ~20 µs ({iters} rounds of the calibrated loop), results summed"
    );
    let Systems {
        jobrunner,
        rayon,
        tokio,
        threadpool,
        condvar,
        channel,
    } = Systems::new(config);

    // The sequential time of the round: the same items on the bench thread, first in each
    // round; the efficiencies of the round divide it.
    let sequential = Cell::new(Duration::ZERO);
    // Times `fan` (which returns the sum of the items) and, when measured, prints the
    // time and the efficiency.
    let run = |measured: bool, system: &str, fan: &dyn Fn() -> u64| {
        let mut sum = 0;
        let elapsed = time(|| sum = fan());
        assert_eq!(sum, expected, "{system}: the sum of the items");
        if measured {
            let sequential = sequential.get();
            let efficiency =
                sequential.as_secs_f64() / (config.threads as f64 * elapsed.as_secs_f64());
            let detail = format!("sequential: {:.1} ms", sequential.as_secs_f64() * 1e3);
            let ms = elapsed.as_secs_f64() * 1e3;
            emit("fan-out", system, "ms", ms, None);
            emit(
                "fan-out efficiency",
                system,
                "%",
                efficiency * 100.0,
                Some(&detail),
            );
        }
    };
    rounds(
        config,
        &mut [
            &mut |_| {
                let mut sum = 0;
                let elapsed = time(|| {
                    sum = (0..jobs).fold(0_u64, |sum, i| sum.wrapping_add(item(i, iters)));
                });
                assert_eq!(sum, expected, "sequential: the sum of the items");
                eprintln!("  sequential: {:.1} ms", elapsed.as_secs_f64() * 1e3);
                sequential.set(elapsed);
            },
            &mut |measured| {
                run(measured, "jobrunner (Rust, handles)", &|| {
                    let handles: Vec<_> = (0..jobs)
                        .map(|i| {
                            let job = jobrunner.submit(move |_| Ok::<_, ()>(item(i, iters)));
                            job.expect("submit")
                        })
                        .collect();
                    handles.into_iter().fold(0, |sum, handle| {
                        sum.wrapping_add(handle.wait().expect("an item succeeds"))
                    })
                });
            },
            &mut |measured| {
                run(measured, "jobrunner (Rust, group)", &|| {
                    let group = jobrunner.group::<u64, ()>();
                    for i in 0..jobs {
                        group.submit(move |_| Ok(item(i, iters))).expect("submit");
                    }
                    group.close();
                    group.iter().fold(0, |sum, job| {
                        sum.wrapping_add(job.wait().expect("an item succeeds"))
                    })
                });
            },
            &mut |measured| {
                run(measured, "rayon", &|| {
                    let mut values = vec![0_u64; jobs];
                    rayon.scope(|scope| {
                        for (i, value) in values.iter_mut().enumerate() {
                            scope.spawn(move |_| *value = item(i, iters));
                        }
                    });
                    values.iter().fold(0, |sum, value| sum.wrapping_add(*value))
                });
            },
            &mut |measured| {
                run(measured, "tokio", &|| {
                    let mut set = tokio::task::JoinSet::new();
                    for i in 0..jobs {
                        set.spawn_on(async move { item(i, iters) }, tokio.handle());
                    }
                    tokio.block_on(async {
                        let mut sum = 0_u64;
                        while let Some(value) = set.join_next().await {
                            sum = sum.wrapping_add(value.expect("an item succeeds"));
                        }
                        sum
                    })
                });
            },
            &mut |measured| {
                run(measured, "threadpool", &|| {
                    gathered(&threadpool, jobs, iters)
                });
            },
            &mut |measured| {
                run(measured, "Mutex+Condvar pool", &|| {
                    gathered(&condvar, jobs, iters)
                });
            },
            &mut |measured| {
                run(measured, "crossbeam-channel pool", &|| {
                    gathered(&channel, jobs, iters)
                });
            },
        ],
    );
}

/// Fan-out on a pool whose jobs return nothing: each job sends its item's value through a
/// channel, and the bench thread receives and sums them.
fn gathered(pool: &impl Execute, jobs: usize, iters: u64) -> u64 {
    let (sender, receiver) = crossbeam_channel::unbounded();
    for i in 0..jobs {
        let sender = sender.clone();
        pool.execute(move || {
            sender
                .send(item(i, iters))
                .expect("the bench thread gathers");
        });
    }
    receiver
        .iter()
        .take(jobs)
        .fold(0_u64, |sum, value| sum.wrapping_add(value))
}

/// The pools that run closures and return nothing.
trait Execute {
    fn execute(&self, task: impl FnOnce() + Send + 'static);
}

impl Execute for threadpool::ThreadPool {
    fn execute(&self, task: impl FnOnce() + Send + 'static) {
        threadpool::ThreadPool::execute(self, task);
    }
}

impl Execute for CondvarPool {
    fn execute(&self, task: impl FnOnce() + Send + 'static) {
        self.spawn(task);
    }
}

impl Execute for ChannelPool {
    fn execute(&self, task: impl FnOnce() + Send + 'static) {
        self.spawn(task);
    }
}
