//! Wake latency from an idle pool: jobrunner against rayon and a plain channel pool.
//!
//! One job at a time: take an `Instant` just before the submit, another as the first
//! thing inside the job, and keep the difference. Between samples the submitting thread
//! sleeps (200 µs by default), long enough for every worker to stop spinning and park, so
//! each sample measures submit + wake of a sleeping worker + start of the job. The three
//! systems run interleaved in rounds, so that noise from the shared machine falls on all
//! of them alike. A fourth row, `floor_unpark`, measures the machine's floor in the same
//! run: a parked thread woken by `unpark`, no pool. Prints a Markdown table of percentiles
//! with ratios to the best peer.
//!
//! Not a criterion bench (criterion reports means of batches, not tail percentiles of
//! single events). `cargo bench --bench latency` runs 10,000 samples per system; without
//! `--bench` (as under `cargo test --benches`) a quick 300. `LATENCY_SAMPLES` and
//! `LATENCY_PAUSE_US` override both.

mod common;

use std::time::{Duration, Instant};

use common::ChannelPool;
use jobrunner::{HelpPolicy, Pool};

/// Worker threads of every pool (the machine has 2 cores).
const THREADS: usize = 2;
/// Rounds the samples are split into, the systems taking turns each round.
const ROUNDS: usize = 10;
/// Unrecorded samples per system before the first round.
const WARM_UP_SAMPLES: usize = 100;

/// One system under test: how to take one sample (submit → job start).
struct System<'a> {
    name: &'static str,
    sample: Box<dyn FnMut() -> Duration + 'a>,
    samples: Vec<Duration>,
}

/// A system's latency percentiles, in µs.
struct Percentiles {
    name: &'static str,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
    n: usize,
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `p`-th percentile (nearest rank) of sorted `samples`, in µs.
fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    let index = rank.clamp(1, sorted.len()) - 1;
    sorted[index].as_nanos() as f64 / 1e3
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
    let bench_mode = std::env::args().any(|arg| arg == "--bench");
    let samples = env_or("LATENCY_SAMPLES", if bench_mode { 10_000 } else { 300 }) as usize;
    let pause = Duration::from_micros(env_or("LATENCY_PAUSE_US", 200));
    let per_round = samples.div_ceil(ROUNDS);

    let jobrunner = Pool::builder()
        .threads(THREADS)
        .help_policy(HelpPolicy::default())
        .build()
        .expect("build a jobrunner pool");
    let rayon = rayon::ThreadPoolBuilder::new()
        .num_threads(THREADS)
        .build()
        .expect("build a rayon pool");
    let channel = ChannelPool::new(THREADS);
    let (start_tx, start_rx) = crossbeam_channel::bounded::<Instant>(1);
    // The floor: one parked thread woken by `unpark` (a futex wake), no pool around it.
    let wake_flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_floor = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let floor_thread = {
        let (flag, stop, tx) = (wake_flag.clone(), stop_floor.clone(), start_tx.clone());
        std::thread::spawn(move || loop {
            while !flag.swap(false, std::sync::atomic::Ordering::AcqRel) {
                std::thread::park();
            }
            if stop.load(std::sync::atomic::Ordering::Acquire) {
                return;
            }
            let _ = tx.send(Instant::now());
        })
    };

    let mut systems = vec![
        System {
            name: "jobrunner",
            sample: Box::new(|| {
                let submitted = Instant::now();
                let job = jobrunner
                    .submit(|_| Ok::<_, ()>(Instant::now()))
                    .expect("submit");
                let began = job.wait().expect("job succeeds");
                began.saturating_duration_since(submitted)
            }),
            samples: Vec::with_capacity(samples),
        },
        System {
            name: "rayon_spawn",
            sample: Box::new(|| {
                let tx = start_tx.clone();
                let submitted = Instant::now();
                rayon.spawn(move || {
                    let _ = tx.send(Instant::now());
                });
                let began = start_rx.recv().expect("job ran");
                began.saturating_duration_since(submitted)
            }),
            samples: Vec::with_capacity(samples),
        },
        System {
            name: "channel_pool",
            sample: Box::new(|| {
                let tx = start_tx.clone();
                let submitted = Instant::now();
                channel.spawn(move || {
                    let _ = tx.send(Instant::now());
                });
                let began = start_rx.recv().expect("job ran");
                began.saturating_duration_since(submitted)
            }),
            samples: Vec::with_capacity(samples),
        },
        System {
            name: "floor_unpark",
            sample: Box::new(|| {
                let submitted = Instant::now();
                wake_flag.store(true, std::sync::atomic::Ordering::Release);
                floor_thread.thread().unpark();
                let began = start_rx.recv().expect("floor thread ran");
                began.saturating_duration_since(submitted)
            }),
            samples: Vec::with_capacity(samples),
        },
    ];

    for system in &mut systems {
        for _ in 0..WARM_UP_SAMPLES {
            std::thread::sleep(pause);
            (system.sample)();
        }
    }
    let before = jobrunner.stats();
    for round in 0..ROUNDS {
        let count = per_round.min(samples - round * per_round);
        for system in &mut systems {
            for _ in 0..count {
                std::thread::sleep(pause);
                let latency = (system.sample)();
                system.samples.push(latency);
            }
        }
    }
    let after = jobrunner.stats();

    let table: Vec<Percentiles> = systems
        .iter_mut()
        .map(|system| {
            system.samples.sort();
            let s = &system.samples;
            Percentiles {
                name: system.name,
                p50: percentile(s, 50.0),
                p90: percentile(s, 90.0),
                p99: percentile(s, 99.0),
                max: percentile(s, 100.0),
                n: s.len(),
            }
        })
        .collect();
    let best = |pick: fn(&Percentiles) -> f64| {
        table
            .iter()
            .filter(|row| !row.name.starts_with("jobrunner") && !row.name.starts_with("floor"))
            .map(pick)
            .fold(f64::INFINITY, f64::min)
    };
    let best_p50 = best(|row| row.p50);
    let best_p99 = best(|row| row.p99);

    println!("\n### wake latency: submit → job start, one job at a time, idle pool ({THREADS} workers)\n");
    println!(
        "{samples} samples per system in {ROUNDS} interleaved rounds, {} µs sleep between samples. Lower is better; ratios are to the best peer's percentile.\n",
        pause.as_micros()
    );
    println!("| system | p50 µs | p90 µs | p99 µs | max µs | samples | p50 ratio to best peer | p99 ratio to best peer |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for row in &table {
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {:.2}x | {:.2}x |",
            row.name,
            row.p50,
            row.p90,
            row.p99,
            row.max,
            row.n,
            row.p50 / best_p50,
            row.p99 / best_p99
        );
    }
    println!(
        "\n`floor_unpark` is the floor of this machine: a parked thread woken by `unpark` \
         (one futex wake), with no pool around it; it is not counted as a peer."
    );
    drop(systems);
    stop_floor.store(true, std::sync::atomic::Ordering::Release);
    wake_flag.store(true, std::sync::atomic::Ordering::Release);
    floor_thread.thread().unpark();
    let _ = floor_thread.join();
    println!(
        "\njobrunner sanity check: {:.2} worker unparks and {:.2} parks per sample (≈1 means each sample woke a sleeping worker).",
        (after.unparks - before.unparks) as f64 / samples as f64,
        (after.parks - before.parks) as f64 / samples as f64
    );
    println!(
        "\n(latency bench total: {:.1} s; load average before: {load_before}, after: {})",
        started.elapsed().as_secs_f64(),
        load_average()
    );
}
