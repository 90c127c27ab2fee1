//! Nothing a job holds outlives it: seeded random workloads (plain, nested, delayed and
//! periodic jobs, tokens, semaphores, groups, cancels of every kind, failures, panics,
//! shutdowns) end with every job's memory freed and every closure dropped exactly once.
//!
//! A second thread cancels tokens (the jobs', the tickers') at random moments meanwhile,
//! so that cancels race with submits, grants and timer releases.
//!
//! Jobs are counted by the library itself once asked (`debug_live_jobs`), so this is its
//! own test binary with one test: no other test's jobs are alive meanwhile.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use jobrunner::{
    debug_live_jobs, CancelToken, Group, GroupOptions, Job, PanicPolicy, Pool, Semaphore,
    ShutdownMode, SubmitOptions, Ticker,
};

#[allow(dead_code)]
mod common;

use common::{
    by_profile, patience, quiet_expected_panics, wait_until, DropCounter, XorShift, EXPECTED,
};

/// What one seed leaves alive until its end.
struct World {
    pool: Pool,
    /// Shared with the chaos thread, which cancels them.
    tokens: Arc<Mutex<Vec<CancelToken>>>,
    sem: Semaphore,
    jobs: Vec<Job<u64, u64>>,
    groups: Vec<Group<u64, u64>>,
    tickers: Vec<Ticker>,
    /// Closures made, and dropped (each captures a `DropCounter`).
    made: usize,
    dropped: Arc<AtomicUsize>,
}

impl World {
    /// A job body: fails, panics or succeeds, by `kind`; holds a drop counter.
    fn body(&mut self, kind: u64) -> impl FnOnce(&jobrunner::Context<'_>) -> Result<u64, u64> {
        self.made += 1;
        let counter = DropCounter(Arc::clone(&self.dropped));
        move |ctx| {
            let _counter = counter;
            match kind % 8 {
                0 => Err(7),
                1 => panic!("{EXPECTED}: a job of a leak test"),
                2 => {
                    // Nested: a child waited for from inside the job.
                    let child = ctx.pool().submit(|_| Ok::<u64, u64>(1));
                    child.map_or(Ok(0), |child| child.wait().map_err(|_| 9))
                }
                3 => {
                    // Cooperative: stops when cancelled, within a bound.
                    let token = ctx.token();
                    token.wait_timeout(Duration::from_millis(2));
                    Ok(3)
                }
                _ => Ok(kind),
            }
        }
    }

    fn options(&mut self, rng: &mut XorShift) -> SubmitOptions {
        let mut options = SubmitOptions::new();
        if rng.below(3) == 0 {
            let mut tokens = self.tokens.lock().unwrap();
            let i = rng.below(tokens.len() as u64) as usize;
            if tokens[i].is_cancelled() && rng.below(2) == 0 {
                tokens[i] = CancelToken::new();
            }
            options = options.token(&tokens[i]);
        }
        match rng.below(6) {
            0 => options = options.delay(Duration::from_micros(rng.below(3_000))),
            1 => options = options.delay(Duration::from_secs(3_600)),
            _ => {}
        }
        if rng.below(5) == 0 {
            options = options.semaphore(&self.sem, rng.range(1, 2));
        }
        options
    }

    fn step(&mut self, rng: &mut XorShift) {
        match rng.below(10) {
            0..=3 => {
                let options = self.options(rng);
                let body = self.body(rng.next_u64());
                if let Ok(job) = self.pool.submit_with(options, body) {
                    if rng.below(2) == 0 {
                        self.jobs.push(job);
                    }
                }
            }
            4 => {
                if self.groups.is_empty() || rng.below(4) == 0 {
                    let mut options = GroupOptions::new().limit(rng.range(1, 3));
                    if rng.below(2) == 0 {
                        options = options.fail_fast();
                    }
                    self.groups.push(Group::new(&self.pool, options));
                }
                let mut options = SubmitOptions::new();
                if rng.below(4) == 0 {
                    options = options.delay(Duration::from_micros(rng.below(2_000)));
                }
                let body = self.body(rng.next_u64());
                let group = self.groups.last().expect("a group");
                let _ = group.submit_with(options, body);
            }
            5 => {
                if self.tickers.len() < 4 {
                    self.made += 1;
                    let counter = DropCounter(Arc::clone(&self.dropped));
                    let ticker = self
                        .pool
                        .submit_every(Duration::from_micros(500), move |_| {
                            let _ = &counter;
                            Ok::<(), ()>(())
                        });
                    if let Ok(ticker) = ticker {
                        self.tokens.lock().unwrap().push(ticker.token().clone());
                        self.tickers.push(ticker);
                    }
                }
            }
            6 => {
                if !self.jobs.is_empty() {
                    let i = rng.below(self.jobs.len() as u64) as usize;
                    self.jobs[i].cancel();
                }
            }
            7 => {
                let tokens = self.tokens.lock().unwrap();
                tokens[rng.below(tokens.len() as u64) as usize].cancel();
            }
            8 => match rng.below(3) {
                0 if !self.tickers.is_empty() => {
                    let i = rng.below(self.tickers.len() as u64) as usize;
                    self.tickers.swap_remove(i).cancel();
                }
                1 if !self.groups.is_empty() => {
                    let i = rng.below(self.groups.len() as u64) as usize;
                    self.groups[i].cancel();
                }
                _ => {
                    // Fan in what has ended so far.
                    if let Some(group) = self.groups.last() {
                        while let Ok(Some(job)) = group.next_timeout(Duration::ZERO) {
                            drop(job.wait());
                        }
                    }
                }
            },
            _ => {
                if !self.jobs.is_empty() {
                    let i = rng.below(self.jobs.len() as u64) as usize;
                    let job = self.jobs.swap_remove(i);
                    if rng.below(2) == 0 {
                        drop(job.wait_timeout(Duration::from_millis(1)));
                    }
                }
            }
        }
    }
}

fn one_seed(seed: u64, steps: usize) {
    let mut rng = XorShift::new(seed);
    let pool = Pool::builder()
        .threads(rng.range(1, 3) as usize)
        .panic_policy(PanicPolicy::Capture)
        .build()
        .expect("a pool");
    let dropped = Arc::new(AtomicUsize::new(0));
    let tokens = Arc::new(Mutex::new(
        (0..4).map(|_| CancelToken::new()).collect::<Vec<_>>(),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let chaos = {
        let (tokens, stop) = (Arc::clone(&tokens), Arc::clone(&stop));
        let mut rng = XorShift::new(seed ^ 0x5eed);
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..rng.below(20_000) {
                    std::hint::spin_loop();
                }
                let tokens = tokens.lock().unwrap();
                let token = tokens[rng.below(tokens.len() as u64) as usize].clone();
                drop(tokens);
                token.cancel();
            }
        })
    };
    let mut world = World {
        pool,
        tokens,
        sem: Semaphore::new(2),
        jobs: Vec::new(),
        groups: Vec::new(),
        tickers: Vec::new(),
        made: 0,
        dropped: Arc::clone(&dropped),
    };
    for _ in 0..steps {
        world.step(&mut rng);
    }
    stop.store(true, Ordering::Relaxed);
    chaos.join().expect("the chaos thread");
    // Hour-long delays end by a cancel: of the pool, now or after a short drain.
    let mode = match rng.below(3) {
        0 => ShutdownMode::Cancel,
        _ => ShutdownMode::DrainThenCancel,
    };
    world
        .pool
        .shutdown(mode, Some(Duration::from_millis(rng.below(20))));
    // Jobs running at the cancel end within a few milliseconds: wait for them.
    let report = world.pool.shutdown(ShutdownMode::Cancel, Some(patience()));
    assert!(
        report.is_complete(),
        "seed {seed}: {mode:?} left {report:?}"
    );
    let made = world.made;
    drop(world);
    wait_until(&format!("seed {seed}: every closure is dropped"), || {
        dropped.load(Ordering::SeqCst) >= made
    });
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        made,
        "seed {seed}: a closure dropped twice"
    );
    wait_until(&format!("seed {seed}: every job is freed"), || {
        debug_live_jobs() == 0
    });
}

#[test]
fn random_workloads_free_every_job_and_drop_every_closure_once() {
    assert_eq!(debug_live_jobs(), 0, "no job before the test");
    quiet_expected_panics();
    let (seeds, steps) = by_profile((30, 300), (100, 1_000));
    for seed in 1..=seeds {
        one_seed(seed, steps);
    }
}
