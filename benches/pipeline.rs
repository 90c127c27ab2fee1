//! Pipeline and channel throughput: jobrunner against crossbeam-channel and std threads,
//! side by side, in the same run.
//!
//! - `pipeline`: 1,000,000 `u64` items through three stages (a hash, a filter that drops
//!   about a quarter, another hash), every stage ordered or every stage unordered.
//!   jobrunner runs it as a `Pipeline` fed by `run(0..n)` on a pool of 2 threads;
//!   the peer is the same pipeline built from `crossbeam_channel::bounded` channels and
//!   one std thread per stage worker, with the same concurrency per stage, whose
//!   ordered stages put their outputs back in input order through a reorder window.
//!   Figure: items entering per second (wall time of the whole run, from the first item
//!   in to the last out).
//! - `channel`: send + receive cost per item of `jobrunner::Channel` against
//!   `crossbeam_channel::bounded`: one producer thread and one consumer thread, with
//!   capacity 1024 and 1, and one thread sending then receiving on an empty channel
//!   (no contention, never a wait).
//!
//! The systems take turns run by run (A B A B ...), after warm-up runs, so that noise from
//! a shared machine falls on both; the Markdown tables give the median over the measured
//! runs, min and max, and the ratio to crossbeam in the same run. Every run checks its
//! output (count, sum, and for ordered pipelines an order-sensitive hash) against the
//! sequential result. Not a criterion bench: each run is long (about a second), and the
//! point is the side-by-side median. See `bench/README.md`.
//!
//! It follows the `make bench` protocol (`bench/PROTOCOL.md`): one JSON line per measured
//! run on stdout, the tables on stderr. `cargo bench --bench pipeline` runs the full
//! sizes (`BENCH_QUICK=1`: small ones); without `--bench` (as under `cargo test
//! --benches`) a smoke run of 10,000 items. Environment overrides: `PIPELINE_ITEMS`,
//! `PIPELINE_RUNS`, `PIPELINE_WARM_UP`, `PIPELINE_CONCURRENCY`, `PIPELINE_MAX_IN_FLIGHT`,
//! `PIPELINE_CAPACITY`, `CHANNEL_ITEMS`, `CHANNEL_ONE_ITEMS`, `PIPELINE_ONLY`
//! (`pipeline` or `channel`), `PIPELINE_SYSTEMS` (`jobrunner` or `crossbeam`: one side
//! alone, to profile it).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::hint::black_box;
use std::sync::Mutex;
use std::thread::Scope;
use std::time::{Duration, Instant};

use common::{load_average, Config, Sample};
use crossbeam_channel::Receiver;
use jobrunner::{Channel, Context, Pipeline, Pool};

mod common;

/// Worker threads of the jobrunner pool (the machine has 2 cores).
const THREADS: usize = 2;

// ---------------------------------------------------------------------------------------
// The work: three small stages, and the checks of their output.

/// The splitmix64 finaliser: a few ns of integer work.
#[inline]
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Stage 1: a small computation.
fn first(x: u64) -> Option<u64> {
    Some(mix(x))
}

/// Stage 2: a filter that drops about one item in four.
fn filter(x: u64) -> Option<u64> {
    (x % 4 != 0).then_some(x)
}

/// Stage 3: another small computation.
fn last(x: u64) -> Option<u64> {
    Some(mix(x ^ 0x5555_5555_5555_5555))
}

/// What came out of a pipeline: enough to tell a lost, duplicated, wrong or (for an
/// ordered pipeline) misplaced item.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
struct Checks {
    count: u64,
    sum: u64,
    /// An order-sensitive hash (FNV-1a style over the values).
    ordered_hash: u64,
}

impl Checks {
    fn new() -> Self {
        Checks {
            ordered_hash: 0xCBF2_9CE4_8422_2325,
            ..Checks::default()
        }
    }

    #[inline]
    fn add(&mut self, value: u64) {
        self.count += 1;
        self.sum = self.sum.wrapping_add(value);
        self.ordered_hash = (self.ordered_hash ^ value).wrapping_mul(0x100_0000_01B3);
    }

    /// Whether `self` (a run's output) is `expected` (the sequential output): the same
    /// items, and in the same order if `ordered`.
    fn matches(&self, expected: &Checks, ordered: bool) -> bool {
        self.count == expected.count
            && self.sum == expected.sum
            && (!ordered || self.ordered_hash == expected.ordered_hash)
    }
}

/// The pipeline run sequentially on one thread: the expected output, and how long the
/// work alone takes.
fn sequential(items: u64) -> Checks {
    let mut checks = Checks::new();
    for x in 0..items {
        if let Some(v) = first(x).and_then(filter).and_then(last) {
            checks.add(v);
        }
    }
    checks
}

// ---------------------------------------------------------------------------------------
// The pipeline, two ways.

/// The shape shared by both implementations.
#[derive(Clone, Copy)]
struct Setup {
    items: u64,
    /// Workers per stage (jobrunner: stage concurrency; crossbeam: threads per stage).
    concurrency: usize,
    /// jobrunner: `max_in_flight`.
    max_in_flight: usize,
    /// crossbeam: capacity of each of the 4 channels (source → 1 → 2 → 3 → consumer).
    capacity: usize,
}

fn jobrunner_pipeline(pool: &Pool, setup: Setup, ordered: bool) -> Checks {
    let c = setup.concurrency;
    let pipeline = Pipeline::builder(pool)
        .max_in_flight(setup.max_in_flight)
        .stage(c, ordered, |_: &Context<'_>, x: u64| {
            Ok::<_, Infallible>(first(x))
        })
        .stage(c, ordered, |_: &Context<'_>, x: u64| Ok(filter(x)))
        .stage(c, ordered, |_: &Context<'_>, x: u64| Ok(last(x)))
        .run(0..setup.items);
    let mut checks = Checks::new();
    for value in pipeline {
        checks.add(value.expect("the pipeline does not fail"));
    }
    checks
}

/// An item between crossbeam stages: its sequence number and its value.
type Seq = (u64, u64);

/// An ordered stage's reorder window: the outputs (`Some(None)`: dropped) of the items
/// from `next_in` on, waiting for the ones before them.
struct Reorder {
    /// The input sequence number of `window[0]`.
    next_in: u64,
    /// The sequence number of the next item passed on (numbers stay consecutive past
    /// dropped items, so the next stage's window needs no marks for them).
    next_out: u64,
    window: VecDeque<Option<Option<u64>>>,
}

/// One crossbeam stage: `workers` threads receiving from `input`, applying `f`, sending
/// to the returned receiver (capacity `capacity`). An ordered stage with more than one
/// worker passes its outputs through a reorder window under a mutex, sending under it so
/// that the sends are in order.
fn crossbeam_stage<'scope, 'env>(
    scope: &'scope Scope<'scope, 'env>,
    reorder: &'env Mutex<Reorder>,
    input: Receiver<Seq>,
    setup: Setup,
    ordered: bool,
    f: fn(u64) -> Option<u64>,
) -> Receiver<Seq> {
    let (tx, rx) = crossbeam_channel::bounded::<Seq>(setup.capacity);
    if ordered && setup.concurrency > 1 {
        for _ in 0..setup.concurrency {
            let (input, tx) = (input.clone(), tx.clone());
            scope.spawn(move || {
                for (seq, x) in input {
                    let output = f(x);
                    let mut r = reorder.lock().expect("reorder lock");
                    let slot = usize::try_from(seq - r.next_in).expect("window index");
                    if r.window.len() <= slot {
                        r.window.resize(slot + 1, None);
                    }
                    r.window[slot] = Some(output);
                    while let Some(Some(ready)) = r.window.front().copied() {
                        r.window.pop_front();
                        r.next_in += 1;
                        if let Some(value) = ready {
                            let out = r.next_out;
                            r.next_out += 1;
                            tx.send((out, value)).expect("next stage alive");
                        }
                    }
                }
            });
        }
    } else {
        // Unordered, or a single worker (which keeps the order by itself).
        for _ in 0..setup.concurrency {
            let (input, tx) = (input.clone(), tx.clone());
            scope.spawn(move || {
                for (seq, x) in input {
                    if let Some(value) = f(x) {
                        tx.send((seq, value)).expect("next stage alive");
                    }
                }
            });
        }
    }
    rx
}

impl Reorder {
    fn new() -> Mutex<Self> {
        Mutex::new(Reorder {
            next_in: 0,
            next_out: 0,
            window: VecDeque::new(),
        })
    }
}

fn crossbeam_pipeline(setup: Setup, ordered: bool) -> Checks {
    let reorders = [Reorder::new(), Reorder::new(), Reorder::new()];
    std::thread::scope(|scope| {
        let (source, input) = crossbeam_channel::bounded::<Seq>(setup.capacity);
        scope.spawn(move || {
            for x in 0..setup.items {
                source.send((x, x)).expect("first stage alive");
            }
        });
        let output = crossbeam_stage(scope, &reorders[0], input, setup, ordered, first);
        let output = crossbeam_stage(scope, &reorders[1], output, setup, ordered, filter);
        let output = crossbeam_stage(scope, &reorders[2], output, setup, ordered, last);
        let mut checks = Checks::new();
        for (_, value) in output {
            checks.add(value);
        }
        checks
    })
}

// ---------------------------------------------------------------------------------------
// Channel send + receive.

/// `items` sent by one thread and received by another through a jobrunner channel of
/// `capacity`.
fn jobrunner_channel(capacity: usize, items: u64) -> Duration {
    let channel = Channel::new(capacity);
    let start = Instant::now();
    std::thread::scope(|scope| {
        let sender = channel.clone();
        scope.spawn(move || {
            for i in 0..items {
                sender.send(i).expect("channel open");
            }
        });
        let mut sum = 0u64;
        for _ in 0..items {
            sum = sum.wrapping_add(channel.recv().expect("channel open"));
        }
        black_box(sum);
    });
    start.elapsed()
}

/// As `jobrunner_channel`, through `crossbeam_channel::bounded(capacity)`.
fn crossbeam_channel(capacity: usize, items: u64) -> Duration {
    let (tx, rx) = crossbeam_channel::bounded::<u64>(capacity);
    let start = Instant::now();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            for i in 0..items {
                tx.send(i).expect("channel open");
            }
        });
        let mut sum = 0u64;
        for _ in 0..items {
            sum = sum.wrapping_add(rx.recv().expect("channel open"));
        }
        black_box(sum);
    });
    start.elapsed()
}

/// One thread sends then receives `items` times on an empty jobrunner channel.
fn jobrunner_same_thread(items: u64) -> Duration {
    let channel = Channel::new(1024);
    let start = Instant::now();
    for i in 0..items {
        channel.send(black_box(i)).expect("room");
        black_box(channel.recv().expect("an item"));
    }
    start.elapsed()
}

/// As `jobrunner_same_thread`, on `crossbeam_channel::bounded(1024)`.
fn crossbeam_same_thread(items: u64) -> Duration {
    let (tx, rx) = crossbeam_channel::bounded::<u64>(1024);
    let start = Instant::now();
    for i in 0..items {
        tx.send(black_box(i)).expect("room");
        black_box(rx.recv().expect("an item"));
    }
    start.elapsed()
}

// ---------------------------------------------------------------------------------------
// Taking turns, and the tables.

/// One system of one case: how to run it once, and its runs.
struct System<'a> {
    name: &'static str,
    run: Box<dyn FnMut() -> Duration + 'a>,
    measured: Vec<Duration>,
}

impl<'a> System<'a> {
    fn new(name: &'static str, run: impl FnMut() -> Duration + 'a) -> Self {
        System {
            name,
            run: Box::new(run),
            measured: Vec::new(),
        }
    }
}

/// Runs `systems` in turn, `warm_up` unrecorded rounds then `runs` recorded ones.
fn take_turns(systems: &mut [System<'_>], warm_up: usize, runs: usize) {
    for round in 0..warm_up + runs {
        for system in systems.iter_mut() {
            let took = (system.run)();
            if round >= warm_up {
                system.measured.push(took);
            }
        }
    }
}

/// Whether `PIPELINE_SYSTEMS` (a substring of the system names, for profiling one
/// system alone) selects the system `name`; unset selects all.
fn chosen(name: &str) -> bool {
    std::env::var("PIPELINE_SYSTEMS").map_or(true, |only| name.contains(&only))
}

/// `f(peer median)` as a ratio, where the peer is the system `peer` of `systems`; a dash
/// if the peer did not run.
fn ratio(systems: &[System<'_>], peer: &str, f: impl Fn(f64) -> f64) -> String {
    systems
        .iter()
        .find(|system| system.name == peer)
        .map_or_else(
            || "–".to_owned(),
            |peer| format!("{:.2}x", f(summary(&peer.measured).0)),
        )
}

/// Median, min and max of `durations`, in ns.
fn summary(durations: &[Duration]) -> (f64, f64, f64) {
    let mut ns: Vec<f64> = durations.iter().map(|d| d.as_nanos() as f64).collect();
    ns.sort_by(f64::total_cmp);
    let mid = ns.len() / 2;
    let median = if ns.len() % 2 == 0 {
        (ns[mid - 1] + ns[mid]) / 2.0
    } else {
        ns[mid]
    };
    (median, ns[0], ns[ns.len() - 1])
}

/// The protocol's JSON lines (`bench/PROTOCOL.md`) for the measured runs of one system:
/// `name` is `jobrunner` or `crossbeam`; the figure is ns per item.
/// `peer` names crossbeam's side in the table.
fn emit(workload: &str, name: &str, peer: &str, measured: &[Duration], items: u64) {
    let ours = name == "jobrunner";
    let system = if ours { "jobrunner (Rust)" } else { peer };
    for took in measured {
        Sample {
            workload,
            system,
            ours,
            unit: "ns/item",
            value: took.as_nanos() as f64 / items as f64,
            lower_is_better: true,
            detail: None,
        }
        .emit();
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn bench_pipeline(setup: Setup, warm_up: usize, runs: usize) {
    let started = Instant::now();
    let expected = sequential(setup.items);
    let sequential_time = started.elapsed();
    let pool = Pool::builder()
        .threads(THREADS)
        .build()
        .expect("build a jobrunner pool");

    let timed = |ordered: bool, run: &dyn Fn() -> Checks| {
        let start = Instant::now();
        let checks = run();
        let took = start.elapsed();
        assert!(
            checks.matches(&expected, ordered),
            "wrong output: {checks:?}, expected {expected:?} (ordered: {ordered})"
        );
        took
    };
    let mut systems = vec![
        System::new("jobrunner ordered", || {
            timed(true, &|| jobrunner_pipeline(&pool, setup, true))
        }),
        System::new("crossbeam ordered", || {
            timed(true, &|| crossbeam_pipeline(setup, true))
        }),
        System::new("jobrunner unordered", || {
            timed(false, &|| jobrunner_pipeline(&pool, setup, false))
        }),
        System::new("crossbeam unordered", || {
            timed(false, &|| crossbeam_pipeline(setup, false))
        }),
    ];
    systems.retain(|system| chosen(system.name));
    let before = pool.stats();
    take_turns(&mut systems, warm_up, runs);
    let after = pool.stats();
    for system in &systems {
        let (name, mode) = system.name.split_once(' ').expect("system mode");
        emit(
            &format!("pipeline, {mode}"),
            name,
            "crossbeam-channel + threads",
            &system.measured,
            setup.items,
        );
    }
    let jobrunner_systems = systems.iter().filter(|s| s.name.starts_with("jobrunner"));
    let jobrunner_runs = (jobrunner_systems.count() * (warm_up + runs)).max(1) as u64 * setup.items;

    eprintln!(
        "\n### pipeline: {} items, 3 stages (hash, filter dropping ~25%, hash)\n",
        setup.items
    );
    eprintln!(
        "jobrunner: `Pipeline::run(0..n)` on a pool of {THREADS} threads, concurrency {c} per stage, \
         `max_in_flight` {m}. crossbeam: a source thread, {c} std threads per stage, \
         `crossbeam_channel::bounded({cap})` between stages ({t} threads and the consumer). \
         {runs} measured runs per system after {warm_up} warm-up, taking turns. \
         Items/s = items entering / wall time; higher is better; ratio = jobrunner / crossbeam \
         in the same mode. Sequential (one thread, no pipeline): {seq:.1} ms, {seq_rate:.1} M items/s.\n",
        c = setup.concurrency,
        m = setup.max_in_flight,
        cap = setup.capacity,
        t = 1 + 3 * setup.concurrency,
        seq = sequential_time.as_secs_f64() * 1e3,
        seq_rate = setup.items as f64 / sequential_time.as_secs_f64() / 1e6,
    );
    eprintln!("| mode | system | M items/s (median) | min | max | ns/item (median) | runs | ratio to crossbeam |");
    eprintln!("|---|---|---:|---:|---:|---:|---:|---:|");
    for system in &systems {
        let (median, min, max) = summary(&system.measured);
        let rate = |ns: f64| setup.items as f64 / ns * 1e3; // M items/s
        let (name, mode) = system.name.split_once(' ').expect("system mode");
        eprintln!(
            "| {mode} | {name} | {:.2} | {:.2} | {:.2} | {:.0} | {} | {} |",
            rate(median),
            rate(max),
            rate(min),
            median / setup.items as f64,
            system.measured.len(),
            ratio(&systems, &format!("crossbeam {mode}"), |peer| peer / median),
        );
    }
    eprintln!(
        "\njobrunner pool, per item entering: {:.2} jobs submitted, {:.3} worker parks, {:.3} unparks, {:.3} steals.",
        (after.submitted - before.submitted) as f64 / jobrunner_runs as f64,
        (after.parks - before.parks) as f64 / jobrunner_runs as f64,
        (after.unparks - before.unparks) as f64 / jobrunner_runs as f64,
        (after.steals - before.steals) as f64 / jobrunner_runs as f64,
    );
}

fn bench_channel(items: u64, one_items: u64, warm_up: usize, runs: usize) {
    let same_items = items * 2;
    let mut cases: Vec<(String, u64, Vec<System<'_>>)> = vec![
        (
            "2 threads, capacity 1024".to_owned(),
            items,
            vec![
                System::new("jobrunner", || jobrunner_channel(1024, items)),
                System::new("crossbeam", || crossbeam_channel(1024, items)),
            ],
        ),
        (
            "2 threads, capacity 1".to_owned(),
            one_items,
            vec![
                System::new("jobrunner", || jobrunner_channel(1, one_items)),
                System::new("crossbeam", || crossbeam_channel(1, one_items)),
            ],
        ),
        (
            "1 thread, send then recv".to_owned(),
            same_items,
            vec![
                System::new("jobrunner", || jobrunner_same_thread(same_items)),
                System::new("crossbeam", || crossbeam_same_thread(same_items)),
            ],
        ),
    ];
    for (case, n, systems) in &mut cases {
        systems.retain(|system| chosen(system.name));
        take_turns(systems, warm_up, runs);
        for system in systems.iter() {
            emit(
                &format!("channel, {case}"),
                system.name,
                "crossbeam-channel",
                &system.measured,
                *n,
            );
        }
    }

    eprintln!("\n### channel: send + recv, ns per item (u64 items)\n");
    eprintln!(
        "`jobrunner::Channel::new(cap)` against `crossbeam_channel::bounded(cap)`. 2 threads: one \
         producer, one consumer (std threads, not pool workers); capacity 1024: {items} items per \
         run, capacity 1: {one_items}. 1 thread: send then recv on an empty channel of 1024, \
         {same_items} times (never waits). {runs} measured runs per system after {warm_up} \
         warm-up, taking turns. Lower is better; ratio = jobrunner / crossbeam.\n"
    );
    eprintln!("| case | system | ns/item (median) | min | max | runs | ratio to crossbeam |");
    eprintln!("|---|---|---:|---:|---:|---:|---:|");
    for (case, n, systems) in &cases {
        for system in systems {
            let (median, min, max) = summary(&system.measured);
            let per = |ns: f64| ns / *n as f64;
            eprintln!(
                "| {case} | {} | {:.1} | {:.1} | {:.1} | {} | {} |",
                system.name,
                per(median),
                per(min),
                per(max),
                system.measured.len(),
                ratio(systems, "crossbeam", |peer| median / peer),
            );
        }
    }
}

fn main() {
    let started = Instant::now();
    let load_before = load_average();
    let config = Config::from_env();
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: a smoke run.
    let bench_mode = std::env::args().any(|arg| arg == "--bench");
    let full = |bench: u64, quick: u64, smoke: u64| match (bench_mode, config.quick) {
        (false, _) => smoke,
        (true, true) => quick,
        (true, false) => bench,
    };
    let warm_up = env_or("PIPELINE_WARM_UP", 1) as usize;
    let runs = env_or(
        "PIPELINE_RUNS",
        if bench_mode { config.runs as u64 } else { 1 },
    ) as usize;
    let setup = Setup {
        items: env_or("PIPELINE_ITEMS", full(1_000_000, 50_000, 10_000)),
        concurrency: env_or("PIPELINE_CONCURRENCY", 2) as usize,
        max_in_flight: env_or("PIPELINE_MAX_IN_FLIGHT", 256) as usize,
        capacity: env_or("PIPELINE_CAPACITY", 64) as usize,
    };
    let only = std::env::var("PIPELINE_ONLY").unwrap_or_default();
    let only = if only.is_empty() {
        match (config.wants("pipeline"), config.wants("channel")) {
            (true, false) => "pipeline".to_owned(),
            (false, true) => "channel".to_owned(),
            (false, false) => return,
            (true, true) => only,
        }
    } else {
        only
    };

    eprintln!("\n## jobrunner vs crossbeam-channel + std threads (medians over the measured runs)");
    if only != "channel" {
        bench_pipeline(setup, warm_up, runs);
    }
    if only != "pipeline" {
        bench_channel(
            env_or("CHANNEL_ITEMS", full(2_000_000, 100_000, 10_000)),
            env_or("CHANNEL_ONE_ITEMS", full(200_000, 10_000, 1_000)),
            warm_up,
            runs,
        );
    }
    eprintln!(
        "\n(pipeline bench total: {:.1} s; load average before: {load_before}, after: {})",
        started.elapsed().as_secs_f64(),
        load_average()
    );
}
