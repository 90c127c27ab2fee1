//! Log ingestion: a generator, a pipeline and a batcher that selects with a timeout.
//!
//! Run 1 reads 20,000 log lines:
//! - a **generator** (`Pool::stream`) produces the lines, and pauses 300 ms after line
//!   10,250 (a quiet moment, so that the batcher's timer must fire);
//! - a **pipeline** reads it: `parse` (4 at once, ordered) turns each line into a record,
//!   `filter` (2 at once, ordered) keeps warnings, errors and slow requests
//!   (`max_in_flight` 256);
//! - a **batcher** (the main thread) flushes a batch at 1,000 records, or 100 ms after the
//!   first record of the pending batch, whichever comes first, and the rest at the end. It
//!   waits with `wait_any` over the pipeline's output and a stop token, with a timeout of
//!   the time left on the pending batch's 100 ms, then reads without waiting;
//! - a **writer** job takes each flushed batch from a `Channel` of 2 (the sink).
//!
//! It checks that the 18,200 records kept are, in order, those a sequential filter keeps;
//! that there were flushes by size, by the timer, and one at the end; and that every line
//! and record was dropped exactly once.
//!
//! Run 2 is the same pipeline over an endless generator, stopped by Ctrl-C: SIGINT
//! cancels the stop token, the parent of the generator's and the pipeline's tokens. So
//! that it runs unattended, the batcher sends the process SIGINT after its 3rd flush
//! (`--wait`: press Ctrl-C yourself). The signal is blocked in every thread and taken by
//! a thread in `sigwait`, which cancels the token (`CancelToken::cancel` takes locks: it
//! is not for a signal handler; C code may call `jr_token_cancel` from one). The batcher
//! flushes what it holds, stops the pipeline, and checks that the generator ended
//! cancelled and nothing leaked.
//!
//! The same scenario is `examples/c/log_ingest.c`, `examples/python/log_ingest.py` and
//! `examples/go/log_ingest/main.go`. Run it with `cargo run --release --example
//! log_ingest` (or `make demo`).

use std::error::Error;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use jobrunner::{
    wait_any, CancelToken, Channel, Context, JobHandle, JobState, NextError, Pipeline, Pool,
    StreamSender, SubmitOptions, Waitable,
};

/// Lines of run 1.
const LINES: u64 = 20_000;
/// The generator pauses after sending this line.
const PAUSE_AFTER: u64 = 10_250;
const PAUSE: Duration = Duration::from_millis(300);
const BATCH: usize = 1_000;
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Run 2 is interrupted after this many flushes.
const INTERRUPT_AFTER: usize = 3;
/// How long any wait may take before the example calls it a hang.
const PATIENCE: Duration = Duration::from_secs(10);

/// Counts values made and dropped, to show that each is dropped exactly once.
#[derive(Default)]
struct Census {
    made: AtomicUsize,
    dropped: AtomicUsize,
}

/// Travels with a line, then with its record: counted when made and when dropped.
struct Tracked(Arc<Census>);

impl Tracked {
    fn new(census: &Arc<Census>) -> Self {
        census.made.fetch_add(1, Ordering::SeqCst);
        Tracked(Arc::clone(census))
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.0.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

struct Line {
    text: String,
    _tracked: Tracked,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Info,
    Warn,
    Error,
}

struct Record {
    seq: u64,
    level: Level,
    ms: u32,
    _tracked: Tracked,
}

/// Line `i` of the log.
fn line_text(i: u64) -> String {
    let level = match i {
        i if i % 50 == 0 => "ERROR",
        i if i % 10 == 0 => "WARN",
        _ => "INFO",
    };
    format!(
        "svc-{} {level} request {i} took {} ms",
        i % 7,
        (i * 37) % 500
    )
}

/// Whether the filter keeps a record of this level and duration.
fn keep(level: Level, ms: u32) -> bool {
    level != Level::Info || ms >= 50
}

/// The `parse` stage: a line into a record.
fn parse(_: &Context<'_>, line: Line) -> Result<Option<Record>, String> {
    let fields: Vec<&str> = line.text.split(' ').collect();
    let bad = || format!("unparsable line: {}", line.text);
    let [_, level, "request", seq, "took", ms, "ms"] = fields[..] else {
        return Err(bad());
    };
    let level = match level {
        "ERROR" => Level::Error,
        "WARN" => Level::Warn,
        "INFO" => Level::Info,
        _ => return Err(bad()),
    };
    Ok(Some(Record {
        seq: seq.parse().map_err(|_| bad())?,
        level,
        ms: ms.parse().map_err(|_| bad())?,
        _tracked: line._tracked,
    }))
}

/// The `filter` stage.
fn filter(_: &Context<'_>, record: Record) -> Result<Option<Record>, String> {
    Ok(keep(record.level, record.ms).then_some(record))
}

/// The generator's body: lines `0..end` (endless for `None`), pausing after `pause`.
fn generate(
    tx: &StreamSender<'_, Line>,
    census: &Arc<Census>,
    end: Option<u64>,
    pause: Option<u64>,
) -> Result<(), String> {
    let mut i = 0;
    while end.is_none_or(|end| i < end) {
        let line = Line {
            text: line_text(i % LINES),
            _tracked: Tracked::new(census),
        };
        tx.send(line).map_err(|_| "the reader is gone".to_owned())?;
        if pause == Some(i) {
            thread::sleep(PAUSE);
        }
        i += 1;
    }
    Ok(())
}

/// Why a batch was flushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    Size,
    Timer,
    End,
    Stop,
}

/// The batcher: reads the pipeline until its end or the stop token, flushing by size and
/// by time. `on_flush` gets each batch's records and why it was flushed.
fn batch(
    pipeline: &Ingest,
    stop: &CancelToken,
    mut on_flush: impl FnMut(Vec<Record>, Why),
) -> Result<(), Box<dyn Error>> {
    let mut pending: Vec<Record> = Vec::with_capacity(BATCH);
    let mut due: Option<Instant> = None; // when the pending batch's 100 ms are up
    let mut flush = |pending: &mut Vec<Record>, due: &mut Option<Instant>, why| {
        if !pending.is_empty() {
            on_flush(std::mem::replace(pending, Vec::with_capacity(BATCH)), why);
        }
        *due = None;
    };
    loop {
        let timeout = due.map_or(PATIENCE, |due| {
            due.saturating_duration_since(Instant::now())
        });
        let watch = [Waitable::pipeline(pipeline), Waitable::token(stop)];
        match wait_any(&watch, Some(timeout)) {
            Some(0) => match pipeline.next_timeout(Duration::ZERO) {
                Ok(record) => {
                    due.get_or_insert_with(|| Instant::now() + FLUSH_EVERY);
                    pending.push(record);
                    if pending.len() == BATCH {
                        flush(&mut pending, &mut due, Why::Size);
                    }
                }
                Err(NextError::Timeout) => {} // level-triggered: look again
                Err(NextError::Closed) => {
                    flush(&mut pending, &mut due, Why::End);
                    return Ok(());
                }
                Err(NextError::Failed(error)) if stop.is_cancelled() => {
                    let _ = error; // the stop cancelled the pipeline
                    flush(&mut pending, &mut due, Why::Stop);
                    return Ok(());
                }
                Err(NextError::Failed(error)) => return Err(error.to_string().into()),
            },
            Some(_) => {
                flush(&mut pending, &mut due, Why::Stop);
                return Ok(());
            }
            None if due.is_some() => flush(&mut pending, &mut due, Why::Timer),
            None => return Err("no record for 10 s: a hang".into()),
        }
    }
}

/// The pipeline of both runs: lines in, records out.
type Ingest = Pipeline<Line, Record, String>;

/// The pipeline of both runs, over a generator started with `options`; and the
/// generator's job.
fn start(
    pool: &Pool,
    census: &Arc<Census>,
    options: SubmitOptions,
    stop: &CancelToken,
    end: Option<u64>,
    pause: Option<u64>,
) -> Result<(Ingest, JobHandle), Box<dyn Error>> {
    let lines = {
        let census = Arc::clone(census);
        pool.stream_with(options, 64, move |_, tx| generate(tx, &census, end, pause))?
    };
    let generator = lines.producer().clone();
    let pipeline = Pipeline::builder(pool)
        .max_in_flight(256)
        .token(stop)
        .stage(4, true, parse)
        .stage(2, true, filter)
        .run(lines.map_while(Result::ok));
    Ok((pipeline, generator))
}

fn full_run(pool: &Pool) -> Result<(), Box<dyn Error>> {
    let census = Arc::new(Census::default());
    let stop = CancelToken::new();
    let (pipeline, generator) = start(
        pool,
        &census,
        SubmitOptions::new(),
        &stop,
        Some(LINES),
        Some(PAUSE_AFTER),
    )?;
    // The sink: a writer job takes each flushed batch over a channel and "writes" it
    // (notes its records' sequence numbers). A job blocked on the channel lends its
    // worker's place to a spare, so it does not take one of the pool's two workers.
    let sink = Channel::<Vec<Record>>::new(2);
    let writer = {
        let sink = sink.clone();
        pool.submit(move |_| {
            let seqs: Vec<u64> = sink.iter().flatten().map(|record| record.seq).collect();
            Ok::<_, String>(seqs)
        })?
    };
    let mut flushes = Vec::new();
    batch(&pipeline, &stop, |records, why| {
        flushes.push((records.len(), why));
        println!("flush: {} records ({why:?})", records.len());
        if sink.send(records).is_err() {
            eprintln!("log_ingest: the writer is gone");
        }
    })?;
    sink.close();
    let seqs = writer.wait()?;
    if generator.wait() != JobState::Succeeded {
        return Err("the generator did not succeed".into());
    }
    drop(pipeline);
    let expected: Vec<u64> = (0..LINES)
        .filter(|&i| {
            let level = match i {
                i if i % 50 == 0 => Level::Error,
                i if i % 10 == 0 => Level::Warn,
                _ => Level::Info,
            };
            keep(level, ((i * 37) % 500) as u32)
        })
        .collect();
    if seqs != expected {
        return Err(format!(
            "kept {} records, not the {} expected in order",
            seqs.len(),
            expected.len()
        )
        .into());
    }
    println!(
        "kept {} of {LINES} lines, in order, the same as a sequential filter",
        seqs.len()
    );
    let count = |why| flushes.iter().filter(|&&(_, w)| w == why).count();
    if flushes.iter().any(|&(n, _)| n == 0 || n > BATCH) {
        return Err(format!("a batch of a bad size: {flushes:?}").into());
    }
    if count(Why::Size) == 0
        || count(Why::Timer) == 0
        || count(Why::End) != 1
        || count(Why::Stop) != 0
    {
        return Err(format!("unexpected flushes: {flushes:?}").into());
    }
    println!("flushes: by size, by the 100 ms timer, and one at the end");
    let (made, dropped) = (
        census.made.load(Ordering::SeqCst),
        census.dropped.load(Ordering::SeqCst),
    );
    if made != LINES as usize || dropped != made {
        return Err(format!("{made} lines made, {dropped} dropped").into());
    }
    Ok(())
}

/// Blocks SIGINT in this thread and the threads it starts from now on (they inherit the
/// mask), so that only `sigwait` takes it.
fn block_sigint() -> Result<libc::sigset_t, Box<dyn Error>> {
    // SAFETY: plain libc calls on a local, initialised signal set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return Err("pthread_sigmask failed".into());
        }
        Ok(set)
    }
}

fn interrupted_run(
    pool: &Pool,
    sigint: libc::sigset_t,
    wait_for_user: bool,
) -> Result<(), Box<dyn Error>> {
    let census = Arc::new(Census::default());
    let stop = CancelToken::new();
    // The signal's taker: cancels the stop token when SIGINT comes.
    let taker = {
        let stop = stop.clone();
        thread::spawn(move || {
            let mut signal = 0;
            // SAFETY: `sigint` is an initialised set; `signal` a writable int.
            let rc = unsafe { libc::sigwait(&sigint, &mut signal) };
            if rc == 0 && signal == libc::SIGINT {
                stop.cancel();
            }
        })
    };
    let (pipeline, generator) = start(
        pool,
        &census,
        SubmitOptions::new().token(&stop),
        &stop,
        None,
        None,
    )?;
    if wait_for_user {
        println!("endless run: press Ctrl-C to stop it");
    }
    let mut flushes = 0;
    batch(&pipeline, &stop, |records, why| {
        flushes += 1;
        println!("flush: {} records ({why:?})", records.len());
        if flushes == INTERRUPT_AFTER && !wait_for_user {
            // SAFETY: a plain libc call; the process sends itself SIGINT.
            unsafe { libc::kill(libc::getpid(), libc::SIGINT) };
        }
    })?;
    taker.join().map_err(|_| "the signal taker panicked")?;
    if !stop.is_cancelled() {
        return Err("the batcher ended without the stop".into());
    }
    pipeline.stop(); // no stage runs and no item is left once it returns
    if generator.wait() != JobState::Cancelled {
        return Err(format!("the generator ended {:?}, not Cancelled", generator.state()).into());
    }
    drop(pipeline);
    let (made, dropped) = (
        census.made.load(Ordering::SeqCst),
        census.dropped.load(Ordering::SeqCst),
    );
    if made != dropped {
        return Err(format!("{made} lines made, {dropped} dropped: a leak").into());
    }
    println!(
        "interrupted run: SIGINT after {INTERRUPT_AFTER} flushes; stopped cleanly, the generator cancelled, nothing leaked"
    );
    Ok(())
}

fn run() -> Result<(), Box<dyn Error>> {
    let wait_for_user = std::env::args().any(|arg| arg == "--wait");
    let sigint = block_sigint()?;
    let pool = Pool::builder().threads(2).build()?;
    println!(
        "log_ingest: {LINES} lines; parse (4 at once) and filter (2 at once), both ordered; batches of {BATCH} records or every 100 ms"
    );
    full_run(&pool)?;
    interrupted_run(&pool, sigint, wait_for_user)?;
    println!("log_ingest: ok");
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("log_ingest: FAILED: {error}");
            ExitCode::FAILURE
        }
    }
}
