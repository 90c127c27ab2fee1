//! A periodic job that stops on shutdown: Go's `time.Ticker` on the pool.
//!
//! A cache of sessions, each with an expiry time, is filled by the main thread; a periodic
//! job (`Pool::submit_every`, every 20 ms) sweeps out the expired ones and reports each
//! sweep with its tick number (`ctx.tick()`). After a few sweeps the main thread shuts the
//! pool down (`ShutdownMode::Drain`): the ticker stops with it, and the example checks
//! that it did (`Ticker::wait`, `is_stopped`) and that no sweep ran after the shutdown.
//!
//! Run it with `cargo run --release --example cleanup_daemon` (or `make demo`).

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use jobrunner::{Pool, ShutdownMode};

/// How often the cleanup runs.
const PERIOD: Duration = Duration::from_millis(20);
/// Sweeps to wait for before shutting down.
const SWEEPS: u64 = 5;

fn main() -> ExitCode {
    let pool = Pool::builder().threads(2).build().expect("build the pool");
    // Session id -> expiry time. Half of the sessions expire at once, the others in an hour.
    let sessions: Arc<Mutex<HashMap<u32, Instant>>> = Arc::new(Mutex::new(HashMap::new()));
    {
        let now = Instant::now();
        let mut map = sessions.lock().expect("sessions");
        for id in 0..100 {
            let ttl = if id % 2 == 0 {
                Duration::ZERO
            } else {
                Duration::from_secs(3600)
            };
            map.insert(id, now + ttl);
        }
    }
    println!("cleanup_daemon: 100 sessions, 50 already expired; sweeping every 20 ms");

    let shut_down = Arc::new(AtomicBool::new(false));
    let late_sweeps = Arc::new(Mutex::new(Vec::new()));
    let (sweeps, sweep_rx) = mpsc::channel::<u64>();
    let ticker = {
        let (sessions, shut_down, late) =
            (sessions.clone(), shut_down.clone(), late_sweeps.clone());
        let sweeps = Mutex::new(sweeps);
        pool.submit_every(PERIOD, move |ctx| {
            let tick = ctx.tick().expect("a periodic run has a tick");
            if shut_down.load(Ordering::SeqCst) {
                late.lock().expect("late").push(tick);
            }
            let now = Instant::now();
            let removed = {
                let mut map = sessions.lock().expect("sessions");
                let before = map.len();
                map.retain(|_, expiry| *expiry > now);
                before - map.len()
            };
            println!("    sweep {tick}: removed {removed} expired sessions");
            let _ = sweeps.lock().expect("sender").send(tick);
            Ok::<_, ()>(())
        })
        .expect("start the cleanup")
    };

    // Wait for the first sweeps, adding a session that expires at once in between.
    for expected in 0..SWEEPS {
        let tick = sweep_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("the cleanup sweeps");
        assert_eq!(tick, expected, "sweeps run in tick order");
        if tick == 1 {
            sessions
                .lock()
                .expect("sessions")
                .insert(1000, Instant::now());
        }
    }
    println!("main: {SWEEPS} sweeps seen, shutting the pool down (Drain)");
    shut_down.store(true, Ordering::SeqCst);
    let report = pool.shutdown(ShutdownMode::Drain, Some(Duration::from_secs(5)));
    let stopped = ticker.wait_timeout(Duration::from_secs(5));
    println!(
        "shutdown(Drain): complete {}, ticker stopped: {}",
        report.is_complete(),
        stopped && ticker.is_stopped()
    );

    let left = sessions.lock().expect("sessions").len();
    let late = late_sweeps.lock().expect("late").clone();
    let runs = ticker.runs();
    println!(
        "summary: {runs} sweeps ran, {left} live sessions left, failures {}",
        ticker.failures()
    );
    // A sweep that had already started when the shutdown began may finish: that is the
    // only one allowed to see the flag.
    let ok = stopped
        && ticker.is_stopped()
        && report.is_complete()
        && runs >= SWEEPS
        && left == 50
        && late.len() <= 1
        && ticker.failures() == 0;
    if ok {
        println!("cleanup_daemon: the periodic job stopped with the pool");
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "cleanup_daemon: FAILED (stopped {stopped}, runs {runs}, left {left}, late sweeps {late:?})"
        );
        ExitCode::FAILURE
    }
}
