//! Issue 8's workload 4, wake latency from an idle pool, for jobrunner's Rust API and its
//! Rust peers, following `bench/PROTOCOL.md` (one JSON line per measured run on stdout,
//! the rest on stderr; `BENCH_QUICK`, `BENCH_RUNS`, `BENCH_THREADS`, `BENCH_ONLY`).
//!
//! One job at a time: take an `Instant` just before the submit, another as the first
//! thing inside the job, and keep the difference. Before each sample the bench thread
//! sleeps 200 µs, long enough for every worker to stop spinning and park, so each sample
//! measures submit + wake of a sleeping worker + start of the job. A run is 10,000
//! samples (quick: 1,000) of one system, and prints two lines: `wake p50` and `wake p99`
//! in µs. jobrunner submits and `wait`s its `Job`, which returns the start `Instant`; the
//! peers (rayon `spawn`, tokio `Handle::spawn` onto a multi-thread runtime, the
//! Mutex+Condvar pool and the crossbeam-channel pool) send it back through a bounded
//! channel. Each round also prints on stderr the floor of the machine over a tenth of the
//! samples: a parked thread woken by `unpark` (one futex wake, no pool). jobrunner's lines
//! give its worker unparks per sample (≈1 confirms that each sample woke a sleeping
//! worker).
//!
//! Each run checks that every sample's job started after its submit. `cargo bench
//! --bench latency` runs the full sizes; without `--bench` (as under `cargo test
//! --benches`) it is a smoke run: quick sizes, one round. See `bench/README.md`.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{load_average, rounds, ChannelPool, CondvarPool, Config, Sample};
use crossbeam_channel::{Receiver, Sender};
use jobrunner::{HelpPolicy, Pool};

/// The bench thread's sleep before each sample: every worker is parked when it ends.
const PAUSE: Duration = Duration::from_micros(200);

fn main() {
    let config = Config::for_bench_binary();
    if !config.wants("wake p50") && !config.wants("wake p99") {
        return;
    }
    let started = Instant::now();
    let samples = config.size(10_000, 1_000);
    // The warm-up run of each system takes a tenth of the samples: enough to fault in
    // the code and the stacks, at a tenth of the time. So does the floor's run.
    let short = samples / 10;
    let count = |measured: bool| if measured { samples } else { short };
    eprintln!(
        "\nwake latency: submit → job start, one job at a time, {} workers, {samples} samples \
         per run, {} µs sleep before each; load average {}",
        config.threads,
        PAUSE.as_micros(),
        load_average()
    );

    let jobrunner = Pool::builder()
        .threads(config.threads)
        .help_policy(HelpPolicy::default())
        .build()
        .expect("build a jobrunner pool");
    let rayon = rayon::ThreadPoolBuilder::new()
        .num_threads(config.threads)
        .build()
        .expect("build a rayon pool");
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.threads)
        .build()
        .expect("build a tokio runtime");
    let condvar = CondvarPool::new(config.threads);
    let channel = ChannelPool::new(config.threads);
    let (start_tx, start_rx) = crossbeam_channel::bounded::<Instant>(1);
    let floor = Floor::new(start_tx.clone());

    // `count` samples of `system`: `sample` submits one job and returns the `Instant` it
    // started. Returns the p50 and the p99.
    let run = |count: usize, system: &str, sample: &mut dyn FnMut() -> Instant| {
        let mut latencies: Vec<Duration> = (0..count)
            .map(|_| {
                std::thread::sleep(PAUSE);
                let submitted = Instant::now();
                let began = sample();
                began
                    .checked_duration_since(submitted)
                    .unwrap_or_else(|| panic!("{system}: a job started before its submit"))
            })
            .collect();
        latencies.sort_unstable();
        (percentile(&latencies, 50.0), percentile(&latencies, 99.0))
    };
    // A peer's job: sends its start `Instant` back to the bench thread.
    let send_start =
        |tx: Sender<Instant>| move || tx.send(Instant::now()).expect("the bench thread waits");
    let received = |rx: &Receiver<Instant>| rx.recv().expect("the job ran");
    let emit_run = |measured: bool, system: &str, (p50, p99): (f64, f64), detail: Option<&str>| {
        if measured {
            emit("wake p50", system, p50, detail);
            emit("wake p99", system, p99, detail);
        }
    };

    rounds(
        &config,
        &mut [
            &mut |measured| {
                let before = jobrunner.stats();
                let figures = run(count(measured), "jobrunner (Rust)", &mut || {
                    let job = jobrunner.submit(|_| Ok::<_, ()>(Instant::now()));
                    job.expect("submit").wait().expect("the job succeeds")
                });
                let after = jobrunner.stats();
                let detail = format!(
                    "{:.2} worker unparks per sample",
                    (after.unparks - before.unparks) as f64 / count(measured) as f64
                );
                emit_run(measured, "jobrunner (Rust)", figures, Some(&detail));
            },
            &mut |measured| {
                let figures = run(count(measured), "rayon", &mut || {
                    rayon.spawn(send_start(start_tx.clone()));
                    received(&start_rx)
                });
                emit_run(measured, "rayon", figures, None);
            },
            &mut |measured| {
                let figures = run(count(measured), "tokio", &mut || {
                    let send = send_start(start_tx.clone());
                    drop(tokio.spawn(async move { send() }));
                    received(&start_rx)
                });
                emit_run(measured, "tokio", figures, None);
            },
            &mut |measured| {
                let figures = run(count(measured), "Mutex+Condvar pool", &mut || {
                    condvar.spawn(send_start(start_tx.clone()));
                    received(&start_rx)
                });
                emit_run(measured, "Mutex+Condvar pool", figures, None);
            },
            &mut |measured| {
                let figures = run(count(measured), "crossbeam-channel pool", &mut || {
                    channel.spawn(send_start(start_tx.clone()));
                    received(&start_rx)
                });
                emit_run(measured, "crossbeam-channel pool", figures, None);
            },
            // Not a system of the table: no warm-up, and a tenth of the samples.
            &mut |measured| {
                if measured {
                    let (p50, p99) = run(short, "floor", &mut || {
                        floor.wake();
                        received(&start_rx)
                    });
                    eprintln!(
                        "  floor (a parked thread woken by unpark, no pool, {short} samples): \
                         p50 {p50:.1} µs, p99 {p99:.1} µs"
                    );
                }
            },
        ],
    );
    drop(floor);
    eprintln!(
        "wake latency: {:.1} s; load average {}",
        started.elapsed().as_secs_f64(),
        load_average()
    );
}

/// The floor of the machine: one thread parked with `std::thread::park`, woken by
/// `unpark` (a futex wake), sending its start `Instant` as a pool's job would.
struct Floor {
    wake: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Floor {
    fn new(start_tx: Sender<Instant>) -> Floor {
        let wake = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (wake, stop) = (Arc::clone(&wake), Arc::clone(&stop));
            std::thread::spawn(move || loop {
                while !wake.swap(false, Ordering::AcqRel) {
                    std::thread::park();
                }
                if stop.load(Ordering::Acquire) {
                    return;
                }
                start_tx
                    .send(Instant::now())
                    .expect("the bench thread waits");
            })
        };
        Floor {
            wake,
            stop,
            thread: Some(thread),
        }
    }

    fn wake(&self) {
        self.wake.store(true, Ordering::Release);
        if let Some(thread) = &self.thread {
            thread.thread().unpark();
        }
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.wake();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The `p`-th percentile (nearest rank) of sorted `samples`, in µs.
fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    let index = rank.clamp(1, sorted.len()) - 1;
    sorted[index].as_nanos() as f64 / 1e3
}

/// Prints one of a run's two lines.
fn emit(workload: &str, system: &str, value: f64, detail: Option<&str>) {
    Sample {
        workload,
        system,
        ours: system.starts_with("jobrunner"),
        unit: "µs",
        value,
        lower_is_better: true,
        detail,
    }
    .emit();
}
