//! A bounded worker pool with backpressure and cancellation.
//!
//! Two worker threads, a queue bounded at four jobs, and twenty "tasks" that simulate
//! I/O with short sleeps while they poll `ctx.is_cancelled()`. The producer (this main
//! thread) shows, in order:
//!
//! 1. backpressure: `try_submit` failing with `Full`, a submit with a timeout timing
//!    out, and a plain `submit` waiting until a worker frees a slot;
//! 2. cancellation: ten of the tasks share one `CancelToken`; cancelling it ends the
//!    queued ones at once, without running them, and stops the running ones;
//! 3. shutdown: `shutdown(Drain, ..)` runs what is still queued, then reports.
//!
//! Gates (flags the producer opens) hold tasks on the workers where the story needs the
//! queue full, so the counts printed are the same on every run. The last line is checked
//! here: the example exits non-zero if the twenty jobs do not add up.
//!
//! Run it with `cargo run --release --example worker_pool` (or `make demo`).

use std::error::Error;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use jobrunner::{
    CancelToken, Context, Job, JobError, JobState, Pool, ShutdownMode, SubmitError, SubmitOptions,
};

/// Tasks submitted in all.
const TASKS: usize = 20;
/// The pool's queue bound: outside submits beyond this many queued jobs wait or fail.
const CAPACITY: usize = 4;
/// One simulated I/O call.
const STEP: Duration = Duration::from_millis(2);
/// Simulated I/O calls per task.
const STEPS: u32 = 5;

/// What a task returns when it stops early because it was cancelled.
#[derive(Debug)]
struct Stopped;

/// A task's handle: it returns its own id, or `Stopped`.
type Task = Job<usize, Stopped>;

/// What holds a task on its worker before it does its work.
enum Hold {
    /// Nothing: work at once.
    Free,
    /// Tell the producer the task started, then wait until the gate opens.
    Gate {
        gate: Arc<AtomicBool>,
        started: mpsc::Sender<usize>,
    },
    /// Tell the producer the task started, then wait until the pool begins to shut down
    /// (so that the drain has work left to do).
    Shutdown { started: mpsc::Sender<usize> },
}

impl Hold {
    fn gate(gate: &Arc<AtomicBool>, started: &mpsc::Sender<usize>) -> Self {
        Hold::Gate {
            gate: Arc::clone(gate),
            started: started.clone(),
        }
    }

    fn started(&self) -> Option<&mpsc::Sender<usize>> {
        match self {
            Hold::Free => None,
            Hold::Gate { started, .. } | Hold::Shutdown { started } => Some(started),
        }
    }

    fn released(&self, ctx: &Context<'_>) -> bool {
        match self {
            Hold::Free => true,
            Hold::Gate { gate, .. } => gate.load(Ordering::SeqCst),
            Hold::Shutdown { .. } => ctx.pool().is_shut_down(),
        }
    }
}

/// Which tasks started running (a cancelled task that never ran stays `false`).
type Ran = Arc<Vec<AtomicBool>>;

/// The job of task `id`: `STEPS` simulated I/O calls, checking for cancellation before
/// each, after whatever `hold` waits for.
fn task(
    id: usize,
    hold: Hold,
    ran: &Ran,
) -> impl FnOnce(&Context<'_>) -> Result<usize, Stopped> + Send + 'static {
    let ran = Arc::clone(ran);
    move |ctx| {
        ran[id].store(true, Ordering::SeqCst);
        println!("    task {id:2}: running on worker {}", ctx.worker_index());
        if let Some(started) = hold.started() {
            let _ = started.send(id);
        }
        let mut done = 0;
        while done < STEPS {
            if ctx.is_cancelled() {
                println!("    task {id:2}: saw ctx.is_cancelled(), stopping");
                return Err(Stopped);
            }
            if hold.released(ctx) {
                done += 1;
            }
            thread::sleep(STEP);
        }
        Ok(id)
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

/// Waits until `n` held tasks have reported that they run.
fn wait_started(started: &mpsc::Receiver<usize>, n: usize) -> Result<(), Box<dyn Error>> {
    for _ in 0..n {
        started.recv_timeout(Duration::from_secs(30))?;
    }
    Ok(())
}

fn run() -> Result<(), Box<dyn Error>> {
    let pool = Pool::builder()
        .threads(2)
        .queue_capacity(CAPACITY)
        .thread_name("demo")
        .build()?;
    println!("pool: 2 worker threads, queue_capacity {CAPACITY}");
    let ran: Ran = Arc::new((0..TASKS).map(|_| AtomicBool::new(false)).collect());
    let mut jobs: Vec<(usize, Task)> = Vec::with_capacity(TASKS);

    // ---- 1. Backpressure: tasks 0-6 ------------------------------------------------
    println!();
    println!("== backpressure: tasks 0-6 ==");
    let gate = Arc::new(AtomicBool::new(false));
    let (started_tx, started_rx) = mpsc::channel();
    for id in 0..2 {
        jobs.push((
            id,
            pool.submit(task(id, Hold::gate(&gate, &started_tx), &ran))?,
        ));
    }
    wait_started(&started_rx, 2)?;
    println!("producer: tasks 0 and 1 hold both workers until their gate opens");
    for id in 2..6 {
        let job = pool.try_submit(task(id, Hold::Free, &ran))?;
        println!("try_submit: task {id} queued ({}/{CAPACITY})", id - 1);
        jobs.push((id, job));
    }
    match pool.try_submit(task(6, Hold::Free, &ran)) {
        Err(SubmitError::Full) => {
            println!("try_submit: queue full, task 6 refused (retried below)");
        }
        other => return Err(format!("try_submit of task 6: expected Full, got {other:?}").into()),
    }
    let patient = SubmitOptions::new().timeout(Duration::from_millis(30));
    match pool.submit_with(patient, task(6, Hold::Free, &ran)) {
        Err(SubmitError::Timeout) => {
            println!("submit with a 30 ms timeout: timed out, the queue stayed full");
        }
        other => {
            return Err(format!("timed submit of task 6: expected Timeout, got {other:?}").into())
        }
    }
    println!("submit: queue full, waiting for room for task 6");
    let opener = {
        let gate = Arc::clone(&gate);
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            println!("producer: opening the gate of tasks 0 and 1");
            gate.store(true, Ordering::SeqCst);
        })
    };
    let asked = Instant::now();
    jobs.push((6, pool.submit(task(6, Hold::Free, &ran))?));
    println!(
        "submit: task 6 got in after waiting {} ms",
        asked.elapsed().as_millis()
    );
    opener.join().map_err(|_| "the gate opener panicked")?;
    for (_, job) in &jobs {
        job.handle().wait();
    }
    println!("tasks 0-6 ended");

    // ---- 2. Cancellation: tasks 10-19 share one token -------------------------------
    println!();
    println!("== cancellation: tasks 10-19 share one CancelToken ==");
    let batch = CancelToken::new();
    let with_batch = || SubmitOptions::new().token(&batch);
    let first = jobs.len();
    for id in 10..14 {
        jobs.push((
            id,
            pool.submit_with(with_batch(), task(id, Hold::Free, &ran))?,
        ));
    }
    for (_, job) in &jobs[first..] {
        job.handle().wait();
    }
    println!("tasks 10-13 completed before the cancel");
    let gate = Arc::new(AtomicBool::new(false)); // never opened
    for id in 14..16 {
        let hold = Hold::gate(&gate, &started_tx);
        jobs.push((id, pool.submit_with(with_batch(), task(id, hold, &ran))?));
    }
    wait_started(&started_rx, 2)?;
    println!("tasks 14 and 15 are running (their gate stays shut)");
    let queued = jobs.len();
    for id in 16..20 {
        let options = with_batch().nonblocking();
        jobs.push((id, pool.submit_with(options, task(id, Hold::Free, &ran))?));
    }
    println!("tasks 16-19 queued ({CAPACITY}/{CAPACITY})");
    println!("cancel: cancelling the token of tasks 10-19");
    batch.cancel();
    let at_once = jobs[queued..]
        .iter()
        .filter(|(_, job)| job.state() == JobState::Cancelled)
        .count();
    ensure(
        at_once == 4,
        format!("only {at_once} of the 4 queued tasks were Cancelled right after cancel()"),
    )?;
    println!("cancel: tasks 16-19 ended Cancelled at once, without running");
    for (_, job) in &jobs[queued - 2..queued] {
        let state = job.handle().wait();
        ensure(
            state == JobState::Cancelled,
            format!("a running task ended {state:?} after its token was cancelled"),
        )?;
    }
    println!("cancel: tasks 14 and 15 stopped and ended Cancelled");

    // ---- 3. Shutdown: tasks 7-9 are left for the drain ------------------------------
    println!();
    println!("== shutdown: tasks 7-9 wait for the shutdown to begin ==");
    for id in 7..10 {
        let hold = Hold::Shutdown {
            started: started_tx.clone(),
        };
        jobs.push((id, pool.submit(task(id, hold, &ran))?));
    }
    // Once two of them run, both workers are done with everything before (a worker
    // counts a job's end before it takes the next job).
    wait_started(&started_rx, 2)?;
    println!("producer: two of tasks 7-9 are running, one is queued");
    let report = pool.shutdown(ShutdownMode::Drain, Some(Duration::from_secs(60)));
    println!(
        "shutdown(Drain): completed {}, cancelled {}, still running {}, still queued {}",
        report.completed, report.cancelled, report.still_running, report.still_queued
    );
    ensure(
        report.is_complete() && report.completed == 3 && report.cancelled == 0,
        format!("the drain should have run tasks 7-9 to their end: {report:?}"),
    )?;
    match pool.submit(|_| Ok::<usize, Stopped>(0)) {
        Err(SubmitError::Shutdown) => println!("submit after shutdown: refused (Shutdown)"),
        other => return Err(format!("submit after shutdown: got {other:?}").into()),
    }
    let stats = pool.stats();
    println!(
        "stats: submitted {}, started {}, succeeded {}, failed {}, panicked {}, \
         cancelled {} ({} before start), queued {}, running {}, threads {}",
        stats.submitted,
        stats.started,
        stats.succeeded,
        stats.failed,
        stats.panicked,
        stats.cancelled,
        stats.cancelled_before_start,
        stats.queued,
        stats.running,
        stats.threads
    );
    println!(
        "stats: steals {}, parks {}, unparks {}",
        stats.steals, stats.parks, stats.unparks
    );

    // ---- Accounting: every job ended exactly once, and the pool agrees ---------------
    println!();
    ensure(
        jobs.len() == TASKS,
        format!("{} jobs submitted", jobs.len()),
    )?;
    let (mut ok, mut cancelled, mut never_ran) = (0u64, 0u64, 0u64);
    for (id, job) in jobs {
        match job.wait() {
            Ok(value) if value == id => ok += 1,
            Err(JobError::Cancelled(_)) => {
                cancelled += 1;
                if !ran[id].load(Ordering::SeqCst) {
                    never_ran += 1;
                }
            }
            other => return Err(format!("task {id}: unexpected outcome {other:?}").into()),
        }
    }
    ensure(
        ok + cancelled == TASKS as u64 && ok == 14 && cancelled == 6 && never_ran == 4,
        format!(
            "expected 14 ok and 6 cancelled (4 never ran): \
             got {ok} ok, {cancelled} cancelled ({never_ran} never ran)"
        ),
    )?;
    ensure(
        stats.submitted == TASKS as u64
            && stats.succeeded == ok
            && stats.cancelled == cancelled
            && stats.cancelled_before_start == never_ran
            && stats.failed == 0
            && stats.panicked == 0
            && stats.queued == 0
            && stats.running == 0,
        format!("pool stats disagree with the jobs: {stats:?}"),
    )?;
    println!(
        "all {TASKS} jobs accounted for: {ok} ok, {cancelled} cancelled \
         ({never_ran} before they ran, {} stopped while running)",
        cancelled - never_ran
    );
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("worker_pool: FAILED: {error}");
            ExitCode::FAILURE
        }
    }
}
