//! Fork-join: `join(a, b)` with the second closure on the stack, as rayon does.

use crate::job::StackJob;
use crate::pool::worker::WorkerThread;
use crate::unwind;

/// Runs `a` and `b`, potentially in parallel, and returns both results.
///
/// On a worker of a pool, `b` is pushed on the worker's deque (no allocation) where an
/// idle worker may steal it while this one runs `a`; if nobody did, it is popped back and
/// run here. Outside any pool, `a` then `b` run on the calling thread. A panic in either
/// closure is resumed here once no closure is running any more: if `a` panics, `b` is
/// dropped without running unless another worker had already taken it (then its end is
/// awaited first).
///
/// Like rayon's, `join` offers parallelism, it does not promise it: `b` may run after `a`
/// on this thread, so `a` must not block waiting for something `b` does. For jobs that
/// must run concurrently, submit them.
///
/// # Examples
///
/// ```
/// fn fib(n: u64) -> u64 {
///     if n < 2 {
///         return n;
///     }
///     let (a, b) = jobrunner::join(|| fib(n - 1), || fib(n - 2));
///     a + b
/// }
///
/// let pool = jobrunner::Pool::builder().threads(2).build()?;
/// let job = pool.submit(|_| Ok::<_, ()>(fib(20)))?;
/// assert_eq!(job.wait(), Ok(6765));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn join<A, B, RA, RB>(a: A, b: B) -> (RA, RB)
where
    A: FnOnce() -> RA + Send,
    B: FnOnce() -> RB + Send,
    RA: Send,
    RB: Send,
{
    match WorkerThread::current() {
        Some(worker) => join_on(worker, a, b),
        None => (a(), b()),
    }
}

pub(crate) fn join_on<A, B, RA, RB>(worker: &WorkerThread, a: A, b: B) -> (RA, RB)
where
    A: FnOnce() -> RA + Send,
    B: FnOnce() -> RB + Send,
    RA: Send,
    RB: Send,
{
    let job_b = StackJob::new(b, worker.index());
    // SAFETY: we do not leave this function (not even by unwinding: `a` runs under
    // `halt_unwinding`) before `job_b` was popped back or its thief set `done`.
    let job_b_ref = unsafe { job_b.job_ref() };
    let b_pointer = job_b_ref.pointer();
    worker.push_join(job_b_ref);
    let result_a = unwind::halt_unwinding(a);
    let result_b = loop {
        match worker.pop() {
            Some(job) if job.pointer() == b_pointer => {
                // Nobody stole it: it is ours alone.
                if let Err(payload) = result_a {
                    drop(job_b);
                    unwind::resume(payload);
                }
                break unwind::halt_unwinding(|| job_b.run_inline());
            }
            // Pushed by `a` and left behind: ours to run before we reach `b`.
            Some(job) => worker.execute(job),
            None => {
                // `b` was stolen: wait for its thief.
                worker.wait_for_stack_job(&job_b);
                break job_b.into_result();
            }
        }
    };
    match (result_a, result_b) {
        (Ok(ra), Ok(rb)) => (ra, rb),
        (Err(payload), _) | (_, Err(payload)) => unwind::resume(payload),
    }
}
