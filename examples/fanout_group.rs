//! Fan-out / fan-in with a group: Go's `errgroup` on the pool.
//!
//! Part 1, fan-in in completion order: 20 items are submitted to a group limited to 3
//! running at once (`GroupOptions::limit`: the others wait for a slot without holding a
//! worker). The main thread takes each finished item from `group.next()` as it ends,
//! whatever its place in the submit order: item 0 is held back until the 19 others have
//! been received, so a fan-in in submit order would wait for it forever. `group.wait()`
//! then reports that every item succeeded.
//!
//! Part 2, fail fast: 10 items in a fail-fast group limited to 4, made with
//! `Group::new_yielding_failures`, so that `next()` yields every item, the failed one
//! included, while `wait()` still returns the first error (as errgroup's `Wait`). Item 3
//! fails (code 42, with a message) once items 0-3 are all running; the group cancels its
//! token at once (`CancelReason::SiblingFailed`), so items 0-2 see `ctx.is_cancelled()`
//! and stop, and items 4-9, still waiting for a slot, end `Cancelled` without running.
//!
//! Every line printed is the same on every run; the example checks its own results and
//! exits non-zero if they are wrong. The C version is `examples/c/fanout_group.c`.
//!
//! Run it with `cargo run --release --example fanout_group` (or `make demo`).

use std::convert::Infallible;
use std::error::Error;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread;
use std::time::Duration;

use jobrunner::{CancelReason, Context, Group, GroupOptions, JobError, Pool, SubmitOptions};

/// Worker threads.
const THREADS: usize = 4;
/// Items of part 1.
const ITEMS: u64 = 20;
/// At most this many items of part 1 run at once.
const LIMIT: u64 = 3;
/// Items of part 2.
const FF_ITEMS: usize = 10;
/// At most this many items of part 2 run at once.
const FF_LIMIT: usize = 4;
/// The item of part 2 that fails.
const FF_BAD: usize = 3;
/// A slice of real work.
const SLICE: Duration = Duration::from_millis(1);
/// How long any wait may take before the example calls it a hang.
const PATIENCE: Duration = Duration::from_secs(5);

/// A count that threads wait on: one side adds to it, the other waits until it reaches
/// a number.
#[derive(Default)]
struct Event {
    count: Mutex<usize>,
    changed: Condvar,
}

impl Event {
    fn add(&self) {
        *self.count.lock().expect("event") += 1;
        self.changed.notify_all();
    }

    /// Waits until the count reaches `n`; false if `PATIENCE` passed first.
    fn wait_for(&self, n: usize) -> bool {
        let count = self.count.lock().expect("event");
        let (count, _) = self
            .changed
            .wait_timeout_while(count, PATIENCE, |count| *count < n)
            .expect("event");
        *count >= n
    }
}

/// Fails the example with `message` unless `condition` holds.
fn ensure(condition: bool, message: impl Into<String>) -> Result<(), Box<dyn Error>> {
    if condition {
        Ok(())
    } else {
        Err(message.into().into())
    }
}

// ---- part 1: fan-in in completion order --------------------------------------------------

/// An item of part 1 and its result.
#[derive(Debug)]
struct Square {
    item: u64,
    square: u64,
}

/// How many items run now, and the most that ever ran at once.
#[derive(Default)]
struct Concurrency {
    running: AtomicU64,
    peak: AtomicU64,
}

impl Concurrency {
    fn enter(&self) {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
    }

    fn leave(&self) {
        self.running.fetch_sub(1, Ordering::SeqCst);
    }
}

fn fan_in_in_completion_order(pool: &Pool) -> Result<(), Box<dyn Error>> {
    println!("== fan-out: {ITEMS} items, at most {LIMIT} at once; fan-in in completion order ==");
    let group: Group<Square, Infallible> = pool.group_with(GroupOptions::new().limit(LIMIT));
    let item0_release = Arc::new(Event::default()); // raised by main: item 0 may finish
    let concurrency = Arc::new(Concurrency::default());
    for item in 0..ITEMS {
        let (release, concurrency) = (Arc::clone(&item0_release), Arc::clone(&concurrency));
        group.submit(move |_ctx| {
            concurrency.enter();
            if item == 0 {
                release.wait_for(1); // the straggler
            } else {
                thread::sleep(SLICE);
            }
            concurrency.leave();
            Ok(Square {
                item,
                square: item * item,
            })
        })?;
    }
    group.close(); // no more items: `next` returns None once all were taken

    let (mut received, mut item0_place, mut sum) = (0, None, 0);
    while let Some(job) = group
        .next_timeout(PATIENCE)
        .map_err(|()| "group.next: no item ended for 5 s")?
    {
        let Square { item, square } = job.wait()?;
        if item == 0 {
            item0_place = Some(received);
        }
        sum += square;
        received += 1;
        if received == ITEMS - 1 {
            item0_release.add(); // all the others are in: let item 0 finish
        }
    }
    ensure(
        received == ITEMS && item0_place == Some(ITEMS - 1),
        format!("received {received} items, item 0 in place {item0_place:?}"),
    )?;
    println!(
        "fan-in: {received} items received; item 0 came last, after the other {}",
        ITEMS - 1
    );

    group.wait()?;
    let peak = concurrency.peak.load(Ordering::SeqCst);
    ensure(
        peak <= LIMIT,
        format!("{peak} items ran at once, over the limit of {LIMIT}"),
    )?;
    println!(
        "group.wait(): Ok; sum of squares 0..{} = {sum}; at most {LIMIT} running at once",
        ITEMS - 1
    );
    ensure(
        sum == 2470,
        format!("the sum of squares 0..19 is 2470, not {sum}"),
    )
}

// ---- part 2: fail fast -------------------------------------------------------------------

/// How an item of part 2 fails. `Clone`, so that the group can both yield the failed job
/// and give `wait` a copy of its error.
#[derive(Debug, Clone, PartialEq, Eq)]
enum FetchError {
    /// The service answered with an error.
    BadResponse { code: i32, message: String },
    /// The item saw the group's token cancelled and stopped (the job ends `Cancelled`).
    Stopped,
}

/// What the items of part 2 share with the main thread.
struct FailFast {
    /// One count per item that started.
    started: Event,
    /// Which items ever ran.
    ran: Vec<AtomicBool>,
    /// The cancel reason each stopped item saw.
    seen: Vec<OnceLock<CancelReason>>,
}

/// Item `item` of part 2: a long fetch that checks for cancellation between its steps,
/// except item 3, which fails once the other admitted items are running (so that they
/// see the cancel).
fn fetch_item(item: usize, ctx: &Context<'_>, shared: &FailFast) -> Result<(), FetchError> {
    shared.ran[item].store(true, Ordering::SeqCst);
    shared.started.add();
    if item == FF_BAD {
        shared.started.wait_for(FF_LIMIT);
        return Err(FetchError::BadResponse {
            code: 42,
            message: format!("item {item}: bad response"),
        });
    }
    for _ in 0..5000 {
        if let Some(reason) = ctx.cancel_reason() {
            let _ = shared.seen[item].set(reason);
            return Err(FetchError::Stopped); // an error after a cancel: ends Cancelled
        }
        thread::sleep(SLICE);
    }
    Ok(())
}

fn fail_fast(pool: &Pool) -> Result<(), Box<dyn Error>> {
    println!();
    println!("== fail fast: {FF_ITEMS} items, at most {FF_LIMIT} at once; item {FF_BAD} fails ==");
    let group =
        Group::new_yielding_failures(pool, GroupOptions::new().limit(FF_LIMIT as u64).fail_fast());
    let shared = Arc::new(FailFast {
        started: Event::default(),
        ran: (0..FF_ITEMS).map(|_| AtomicBool::new(false)).collect(),
        seen: (0..FF_ITEMS).map(|_| OnceLock::new()).collect(),
    });
    for item in 0..FF_ITEMS {
        let shared = Arc::clone(&shared);
        let options = SubmitOptions::new().name(format!("item-{item}"));
        group.submit_with(options, move |ctx| fetch_item(item, ctx, &shared))?;
    }
    group.close();

    // The first failure, as errgroup's Wait gives it.
    let outcome = group
        .wait_timeout(PATIENCE)
        .map_err(|()| "group.wait: items still running after 5 s")?;
    let expected = FetchError::BadResponse {
        code: 42,
        message: "item 3: bad response".to_owned(),
    };
    match outcome {
        Err(JobError::Failed(FetchError::BadResponse { code, message }))
            if code == 42 && message == "item 3: bad response" =>
        {
            println!("group.wait(): Failed; first error: code {code}, \"{message}\"");
        }
        other => return Err(format!("group.wait(): expected {expected:?}, got {other:?}").into()),
    }

    // `next` yields every item, the failed one included, in completion order.
    let (mut failed, mut cancelled) = (0, 0);
    let mut failed_name = None;
    while let Some(job) = group
        .next_timeout(PATIENCE)
        .map_err(|()| "group.next: no item ended for 5 s")?
    {
        let name = job.name().unwrap_or("?").to_owned();
        match job.wait() {
            Err(JobError::Failed(error)) if error == expected => {
                failed += 1;
                failed_name = Some(name);
            }
            Err(JobError::Cancelled(CancelReason::SiblingFailed)) => cancelled += 1,
            other => return Err(format!("{name}: unexpected end {other:?}").into()),
        }
    }
    println!(
        "group.next(): all {} items, the failed {} included",
        failed + cancelled,
        failed_name.as_deref().unwrap_or("(none)")
    );

    let others = (0..FF_ITEMS).filter(|&item| item != FF_BAD);
    let stopped: Vec<usize> = others
        .clone()
        .filter(|&item| shared.ran[item].load(Ordering::SeqCst))
        .collect();
    let never_ran = others.count() - stopped.len();
    println!(
        "fail-fast: {failed} failed, {cancelled} cancelled ({} stopped while running, \
         {never_ran} never started)",
        stopped.len()
    );
    ensure(
        failed == 1
            && cancelled == FF_ITEMS - 1
            && stopped.len() == FF_LIMIT - 1
            && never_ran == FF_ITEMS - FF_LIMIT,
        "unexpected ends",
    )?;
    let reasons: Vec<Option<&CancelReason>> = stopped
        .iter()
        .map(|&item| shared.seen[item].get())
        .collect();
    ensure(
        reasons
            .iter()
            .all(|reason| *reason == Some(&CancelReason::SiblingFailed)),
        format!("the stopped items {stopped:?} saw the reasons {reasons:?}"),
    )?;
    println!(
        "items {}-{} saw ctx.is_cancelled() with reason {:?}",
        stopped[0],
        stopped[stopped.len() - 1],
        reasons[0].expect("checked above")
    );
    Ok(())
}

fn run() -> Result<(), Box<dyn Error>> {
    let pool = Pool::builder().threads(THREADS).build()?;
    fan_in_in_completion_order(&pool)?;
    fail_fast(&pool)?;
    println!("fanout_group: ok");
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("fanout_group: FAILED: {error}");
            ExitCode::FAILURE
        }
    }
}
