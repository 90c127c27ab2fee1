//! Shared by the bench binaries: the bench protocol (`bench/PROTOCOL.md`: JSON lines on
//! stdout, `BENCH_*` environment), the calibrated CPU work item, a countdown latch, and
//! the two hand-written baseline pools (a crossbeam-channel pool and a Mutex+Condvar
//! pool).
//!
//! Each bench binary includes this module with `mod common;` and uses what it needs.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

// ---------------------------------------------------------------------------------------
// The protocol.

/// The `BENCH_*` settings of this invocation.
pub(crate) struct Config {
    /// `BENCH_QUICK=1`: small sizes.
    pub(crate) quick: bool,
    /// `BENCH_RUNS`: measured runs per system per workload (default 5).
    pub(crate) runs: usize,
    /// `BENCH_THREADS`: pool size (default 2).
    pub(crate) threads: usize,
    /// `BENCH_ONLY`: the workloads to run (empty: all).
    only: Vec<String>,
}

impl Config {
    pub(crate) fn from_env() -> Config {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let number = |name: &str, default: usize| {
            var(name).map_or(default, |v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("{name}={v}: not a number"))
            })
        };
        Config {
            quick: var("BENCH_QUICK").as_deref() == Some("1"),
            runs: number("BENCH_RUNS", 5).max(1),
            threads: number("BENCH_THREADS", 2).max(1),
            only: var("BENCH_ONLY")
                .map(|v| v.split(',').map(|w| w.trim().to_owned()).collect())
                .unwrap_or_default(),
        }
    }

    /// [`Config::from_env`] for a bench binary (`harness = false`): `cargo bench` passes
    /// it `--bench`; without that flag it runs under `cargo test --benches`, as a smoke
    /// test that every workload still runs and checks its result: quick sizes, one run.
    pub(crate) fn for_bench_binary() -> Config {
        let mut config = Config::from_env();
        if !std::env::args().any(|arg| arg == "--bench") {
            config.quick = true;
            config.runs = 1;
        }
        config
    }

    /// Whether `workload` is to run (`BENCH_ONLY`).
    pub(crate) fn wants(&self, workload: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|w| w == workload)
    }

    /// `full` normally, `quick` under `BENCH_QUICK=1`.
    pub(crate) fn size<T>(&self, full: T, quick: T) -> T {
        if self.quick {
            quick
        } else {
            full
        }
    }
}

/// One measured run, as the JSON line of the protocol (on stdout).
pub(crate) struct Sample<'a> {
    pub(crate) workload: &'a str,
    pub(crate) system: &'a str,
    pub(crate) ours: bool,
    pub(crate) unit: &'a str,
    pub(crate) value: f64,
    pub(crate) lower_is_better: bool,
    pub(crate) detail: Option<&'a str>,
}

impl Sample<'_> {
    pub(crate) fn emit(&self) {
        let mut line = format!(
            "{{\"workload\": {}, \"system\": {}, \"ours\": {}, \"unit\": {}, \"value\": {}, \"lower_is_better\": {}",
            json_string(self.workload),
            json_string(self.system),
            self.ours,
            json_string(self.unit),
            if self.value.is_finite() { self.value } else { -1.0 },
            self.lower_is_better,
        );
        if let Some(detail) = self.detail {
            line.push_str(&format!(", \"detail\": {}", json_string(detail)));
        }
        line.push('}');
        println!("{line}");
        eprintln!(
            "  {:<22} {:<40} {:>12.3} {}",
            self.workload, self.system, self.value, self.unit
        );
    }
}

pub(crate) fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The system load averages (Linux `/proc/loadavg`), to judge how shared the machine was.
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// A line of `/proc/self/status` in kB (`VmRSS`, `VmHWM`).
pub(crate) fn status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// Runs the protocol's rounds for one workload: one warm-up run of every system (not
/// emitted), then `config.runs` rounds in which every system runs once in turn. Each
/// system is a closure that runs once and returns its samples (it checks its own result
/// and panics on a wrong one, which fails the bench).
pub(crate) fn rounds(config: &Config, systems: &mut [&mut dyn FnMut(bool)]) {
    for system in systems.iter_mut() {
        system(false);
    }
    for _ in 0..config.runs {
        for system in systems.iter_mut() {
            system(true);
        }
    }
}

// ---------------------------------------------------------------------------------------
// The work item.

/// A serial integer recurrence (no closed form, no vectorisation): `iters` rounds of it.
pub(crate) fn spin(iters: u64) -> u64 {
    let mut x = black_box(0x9E37_79B9_7F4A_7C15_u64);
    for _ in 0..black_box(iters) {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        x ^= x >> 29;
    }
    black_box(x)
}

/// Rounds of `spin` that take `target` on this machine now: the best of 30 short probes
/// (200,000 rounds each). Few long probes swung 2x on a loaded machine (one preemption
/// spoils a probe); the best of many short ones stays within a percent.
pub(crate) fn calibrate(target: Duration) -> u64 {
    const PROBE: u64 = 200_000;
    spin(PROBE);
    let best = (0..30)
        .map(|_| {
            let start = Instant::now();
            spin(PROBE);
            start.elapsed()
        })
        .min()
        .unwrap_or(Duration::from_millis(1));
    let per_round = best.as_secs_f64() / PROBE as f64;
    ((target.as_secs_f64() / per_round) as u64).max(1)
}

// ---------------------------------------------------------------------------------------
// A countdown latch.

/// A countdown latch: an atomic counter, and one mutex + condvar used only at zero.
pub(crate) struct Latch {
    count: AtomicUsize,
    lock: Mutex<()>,
    zero: Condvar,
}

impl Latch {
    pub(crate) const fn new() -> Self {
        Latch {
            count: AtomicUsize::new(0),
            lock: Mutex::new(()),
            zero: Condvar::new(),
        }
    }

    /// Arms the latch for `n` count-downs (no count-down may be pending).
    pub(crate) fn reset(&self, n: usize) {
        self.count.store(n, Ordering::Release);
    }

    pub(crate) fn count_down(&self) {
        if self.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            // Taking the lock orders the notification after the waiter's check.
            let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.zero.notify_all();
        }
    }

    pub(crate) fn wait(&self) {
        let mut guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        while self.count.load(Ordering::Acquire) != 0 {
            guard = self.zero.wait(guard).unwrap_or_else(|e| e.into_inner());
        }
    }
}

// ---------------------------------------------------------------------------------------
// The baseline pools.

type Task = Box<dyn FnOnce() + Send>;

/// The simplest pool there is: `threads` threads receiving boxed closures from one
/// unbounded crossbeam channel.
pub(crate) struct ChannelPool {
    sender: Option<Sender<Task>>,
    threads: Vec<JoinHandle<()>>,
}

impl ChannelPool {
    pub(crate) fn new(threads: usize) -> Self {
        let (sender, receiver) = crossbeam_channel::unbounded::<Task>();
        let threads = (0..threads)
            .map(|index| {
                let receiver = receiver.clone();
                std::thread::Builder::new()
                    .name(format!("chanpool-{index}"))
                    .spawn(move || {
                        for task in receiver {
                            task();
                        }
                    })
                    .expect("spawn a channel-pool thread")
            })
            .collect();
        ChannelPool {
            sender: Some(sender),
            threads,
        }
    }

    pub(crate) fn spawn(&self, task: impl FnOnce() + Send + 'static) {
        if let Some(sender) = &self.sender {
            sender.send(Box::new(task)).expect("channel pool alive");
        }
    }
}

impl Drop for ChannelPool {
    fn drop(&mut self) {
        self.sender = None;
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// The textbook pool: one `Mutex<VecDeque>` of boxed closures, one `Condvar` the workers
/// wait on, one notify per submit.
pub(crate) struct CondvarPool {
    shared: Arc<CondvarShared>,
    threads: Vec<JoinHandle<()>>,
}

struct CondvarShared {
    queue: Mutex<(VecDeque<Task>, bool)>,
    ready: Condvar,
}

impl CondvarPool {
    pub(crate) fn new(threads: usize) -> Self {
        let shared = Arc::new(CondvarShared {
            queue: Mutex::new((VecDeque::new(), false)),
            ready: Condvar::new(),
        });
        let threads = (0..threads)
            .map(|index| {
                let shared = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("condvarpool-{index}"))
                    .spawn(move || loop {
                        let task = {
                            let mut queue = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
                            loop {
                                if let Some(task) = queue.0.pop_front() {
                                    break task;
                                }
                                if queue.1 {
                                    return;
                                }
                                queue = shared.ready.wait(queue).unwrap_or_else(|e| e.into_inner());
                            }
                        };
                        task();
                    })
                    .expect("spawn a condvar-pool thread")
            })
            .collect();
        CondvarPool { shared, threads }
    }

    pub(crate) fn spawn(&self, task: impl FnOnce() + Send + 'static) {
        let mut queue = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        queue.0.push_back(Box::new(task));
        drop(queue);
        self.shared.ready.notify_one();
    }
}

impl Drop for CondvarPool {
    fn drop(&mut self) {
        self.shared
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1 = true;
        self.shared.ready.notify_all();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
