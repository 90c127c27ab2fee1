//! `jr_job`: submitting C functions, waiting for them, their results and errors.

use std::cell::Cell;
use std::ffi::{c_char, c_void, CString};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::ctx::{jr_ctx, with_batch_kind, with_ctx};
use super::group::{jr_group, GroupHandle};
use super::jr_status;
use super::pool::{jr_pool, PoolHandle};
use super::sem::{jr_sem, SemHandle};
use super::status::invalid;
use super::token::{jr_token, TokenHandle};
use super::{
    boundary, opt_str, read_versioned, status, timeout_of, versioned, write_out, Handle, Kind,
};
use crate::{Context, Job, JobError, JobHandle, JobState, SubmitOptions, Ticker};

/// Frees a value the library was given (an argument, a result, a channel item). Called
/// exactly once per value, on any thread.
pub type jr_free_fn = Option<unsafe extern "C" fn(value: *mut c_void)>;

/// A job: runs on a worker with its context, its argument, and where to put its result
/// (`*result` starts NULL; ownership of what is put there moves to the job's handle).
/// Returns 0 for success, any other value as the job's own error code (see
/// `jr_ctx_fail` for a message); a nonzero return after the job was asked to stop
/// (`jr_ctx_is_cancelled`) ends it `JR_E_CANCELLED`, as Go's `ctx.Err()` would. It may call any `jr_*` function, including submitting
/// and waiting for other jobs (a wait inside a job runs other work meanwhile).
pub type jr_job_fn = Option<
    unsafe extern "C" fn(ctx: *mut jr_ctx, arg: *mut c_void, result: *mut *mut c_void) -> i32,
>;

// ----- owned C values ---------------------------------------------------------------------

/// A C value with its destructor, freed exactly once: when dropped, unless taken.
pub(crate) struct Owned {
    ptr: *mut c_void,
    free: jr_free_fn,
    /// The submit whose failure must give the value back to the caller (0: none).
    guard: u64,
}

// SAFETY: the header tells C callers that arguments and results are used and freed on
// worker threads; the pointer itself is only an address to us.
unsafe impl Send for Owned {}
// SAFETY: as above: we never dereference it; a periodic job's argument is used by one
// run at a time.
unsafe impl Sync for Owned {}

impl Owned {
    pub(crate) fn new(ptr: *mut c_void, free: jr_free_fn) -> Self {
        Owned {
            ptr,
            free,
            guard: 0,
        }
    }

    pub(crate) fn ptr(&self) -> *mut c_void {
        self.ptr
    }

    /// Gives the value up to the caller: it will not be freed.
    pub(crate) fn take(&mut self) -> *mut c_void {
        std::mem::replace(&mut self.ptr, std::ptr::null_mut())
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        let (Some(free), false) = (self.free, self.ptr.is_null()) else {
            return;
        };
        if self.guard != 0 && GUARD.with(Cell::get) == self.guard {
            // Dropped inside the submit that took it: the submit decides.
            STASH.with(|stash| stash.set(Some((self.ptr, free))));
            return;
        }
        // SAFETY: the caller gave us this value with this destructor, to call once.
        unsafe { free(self.ptr) };
    }
}

thread_local! {
    /// The submit in progress on this thread (see [`guarded`]).
    static GUARD: Cell<u64> = const { Cell::new(0) };
    /// An argument its submit dropped: freed if the submit succeeded.
    static STASH: Cell<Option<(*mut c_void, unsafe extern "C" fn(*mut c_void))>> =
        const { Cell::new(None) };
    /// The next guard id of this thread: its thread number (from [`GUARD_THREADS`]) in
    /// the high half, a count in the low half; 0 until the thread's first submit.
    static NEXT_GUARD: Cell<u64> = const { Cell::new(0) };
}

/// Thread numbers for guard ids, so that no two threads' submits share an id: a value
/// whose submit is over can be dropped during another thread's submit (a token's cancel
/// settled there ends the queued jobs under it), and must not be taken for that
/// submit's own.
static GUARD_THREADS: AtomicU64 = AtomicU64::new(1);

/// Runs a submit that takes `arg`: if it fails, the argument stays the caller's (never
/// freed); if it succeeds, the job owns it and frees it exactly once when the job ends,
/// even if the job was dropped inside the submit (an already-cancelled token).
pub(crate) fn guarded<R>(
    arg: *mut c_void,
    free: jr_free_fn,
    submit: impl FnOnce(Owned) -> Result<R, jr_status>,
) -> Result<R, jr_status> {
    let id = NEXT_GUARD.with(|next| {
        let mut id = next.get();
        if id & 0xffff_ffff == 0 {
            // This thread's first submit, or its count ran out: a new thread number.
            id = GUARD_THREADS.fetch_add(1, Ordering::Relaxed) << 32 | 1;
        }
        next.set(id + 1);
        id
    });
    let outer = GUARD.with(|g| g.replace(id));
    let outer_stash = STASH.with(Cell::take);
    let result = submit(Owned {
        ptr: arg,
        free,
        guard: id,
    });
    GUARD.with(|g| g.set(outer));
    let stashed = STASH.with(|s| s.replace(outer_stash));
    if let (Ok(_), Some((ptr, free))) = (&result, stashed) {
        // SAFETY: the caller gave us this value with this destructor, to call once.
        unsafe { free(ptr) };
    }
    result
}

/// A C job's error: its code and the message set with `jr_ctx_fail`.
#[derive(Clone)]
pub(crate) struct CError {
    pub(crate) code: i32,
    pub(crate) message: Option<CString>,
}

/// Runs a C job function with a context; its result becomes an `Owned`.
fn run(
    ctx: &Context<'_>,
    func: JobFnPtr,
    arg: *mut c_void,
    result_free: jr_free_fn,
) -> Result<Owned, CError> {
    call_c(ctx, |ctx_ptr| {
        let mut result = std::ptr::null_mut();
        // SAFETY: the caller's function, called as the header's `jr_job_fn` contract says.
        let code = unsafe { func(ctx_ptr, arg, &mut result) };
        (code, Owned::new(result, result_free))
    })
}

/// Calls a C function that takes a context and returns a job's code (`call` returns the
/// code and what the call made): a success gives what it made; a failure drops it and
/// gives the code and the `jr_ctx_fail` message; a `jr_ctx_panic` drops it and panics
/// with the message (no panic hook: the job's outcome carries it).
pub(crate) fn call_c<V>(
    ctx: &Context<'_>,
    call: impl FnOnce(*mut jr_ctx) -> (i32, V),
) -> Result<V, CError> {
    with_ctx(ctx, |ctx_ptr, state| {
        let (code, value) = call(ctx_ptr);
        if let Some(message) = state.panic.lock().unwrap_or_else(|p| p.into_inner()).take() {
            drop(value);
            std::panic::resume_unwind(Box::new(message));
        }
        if code == 0 {
            Ok(value)
        } else {
            // A failing job's result is freed now: only a success hands one over.
            drop(value);
            let message = state
                .message
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            Err(CError { code, message })
        }
    })
}

type JobFnPtr = unsafe extern "C" fn(*mut jr_ctx, *mut c_void, *mut *mut c_void) -> i32;

// ----- the handle -------------------------------------------------------------------------

/// A job (or a periodic job) and its outcome. Made by `jr_submit`, `jr_submit_every`,
/// `jr_group_next`, `jr_group_first_error`; freed with `jr_job_free` (the job itself goes
/// on: a handle is not the job).
pub struct jr_job {
    _opaque: [u8; 0],
}

pub(crate) struct JobHandleC {
    end: End,
    outcome: Mutex<Option<Outcome>>,
}

impl Kind for JobHandleC {
    const MAGIC: u64 = 0x6a72_6a6f_6200_0001; // "jrjob\0\0\x01"
    const NAME: &'static str = "jr_job";
    type Opaque = jr_job;
}

enum End {
    /// A job whose result this handle owns.
    Job {
        handle: JobHandle,
        job: Mutex<Option<Job<Owned, CError>>>,
    },
    /// A group's job: its result goes to `jr_group_next`.
    Member(JobHandle),
    Ticker(Ticker),
    /// Already ended, the outcome set (a group's first error).
    Settled,
}

struct Outcome {
    status: jr_status,
    code: i32,
    message: Option<CString>,
    result: Option<Owned>,
}

impl Outcome {
    fn of(status: jr_status) -> Self {
        Outcome {
            status,
            code: 0,
            message: None,
            result: None,
        }
    }

    pub(crate) fn of_error(error: JobError<CError>) -> Self {
        let status = jr_status::from_job_error(&error);
        match error {
            JobError::Failed(CError { code, message }) => Outcome {
                code,
                message,
                ..Outcome::of(status)
            },
            JobError::Panicked(message) => Outcome {
                message: CString::new(message.replace('\0', "")).ok(),
                ..Outcome::of(status)
            },
            _ => Outcome::of(status),
        }
    }
}

fn status_of_state(state: JobState) -> jr_status {
    match state {
        JobState::Succeeded => jr_status::JR_OK,
        JobState::Failed => jr_status::JR_E_JOB_FAILED,
        JobState::Panicked => jr_status::JR_E_PANICKED,
        _ => jr_status::JR_E_CANCELLED,
    }
}

impl JobHandleC {
    fn new(end: End) -> Self {
        JobHandleC {
            end,
            outcome: Mutex::new(None),
        }
    }

    pub(crate) fn owning(job: Job<Owned, CError>) -> Self {
        Self::new(End::Job {
            handle: job.handle(),
            job: Mutex::new(Some(job)),
        })
    }

    pub(crate) fn member(handle: JobHandle) -> Self {
        Self::new(End::Member(handle))
    }

    pub(crate) fn settled(error: JobError<CError>) -> Self {
        JobHandleC {
            end: End::Settled,
            outcome: Mutex::new(Some(Outcome::of_error(error))),
        }
    }

    /// The job for `jr_wait_any`: `Ok(Some(handle))`, or `Ok(None)` for a handle that has
    /// ended already (a group's first error); an error for a periodic job's handle.
    pub(crate) fn for_wait(&self) -> Result<Option<JobHandle>, jr_status> {
        match &self.end {
            End::Job { handle, .. } | End::Member(handle) => Ok(Some(handle.clone())),
            End::Settled => Ok(None),
            End::Ticker(_) => Err(invalid(format_args!(
                "a periodic job's handle cannot be waited on with jr_wait_any (use jr_job_wait)"
            ))),
        }
    }

    fn is_ended(&self) -> bool {
        match &self.end {
            End::Job { handle, .. } | End::Member(handle) => handle.is_finished(),
            End::Ticker(ticker) => ticker.is_stopped(),
            End::Settled => true,
        }
    }

    /// Waits for the end, at most `timeout` (`None`: forever); whether it ended.
    fn wait_end(&self, timeout: Option<Duration>) -> bool {
        match (&self.end, timeout) {
            (End::Job { handle, .. } | End::Member(handle), None) => {
                handle.wait();
                true
            }
            (End::Job { handle, .. } | End::Member(handle), Some(t)) => handle.wait_timeout(t),
            (End::Ticker(ticker), None) => {
                ticker.wait();
                true
            }
            (End::Ticker(ticker), Some(t)) => ticker.wait_timeout(t),
            (End::Settled, _) => true,
        }
    }

    /// The outcome of an ended job, computed on first use.
    fn outcome(&self) -> MutexGuard<'_, Option<Outcome>> {
        let mut outcome = self.outcome.lock().unwrap_or_else(|p| p.into_inner());
        if outcome.is_none() {
            *outcome = Some(match &self.end {
                End::Job { job, .. } => {
                    let job = job.lock().unwrap_or_else(|p| p.into_inner()).take();
                    match job.map(Job::wait) {
                        Some(Ok(value)) => Outcome {
                            result: Some(value),
                            ..Outcome::of(jr_status::JR_OK)
                        },
                        Some(Err(error)) => Outcome::of_error(error),
                        None => Outcome::of(jr_status::JR_E_INTERNAL),
                    }
                }
                End::Member(handle) => Outcome::of(status_of_state(handle.state())),
                End::Ticker(_) | End::Settled => Outcome::of(jr_status::JR_E_CANCELLED),
            });
        }
        outcome
    }

    /// The status of an ended job.
    fn end_status(&self) -> jr_status {
        self.outcome()
            .as_ref()
            .map_or(jr_status::JR_E_INTERNAL, |o| o.status)
    }

    /// The handle argument `ptr`.
    ///
    /// # Safety
    ///
    /// As [`Handle::from_ptr`].
    pub(crate) unsafe fn of<'a>(ptr: *const jr_job) -> Result<&'a JobHandleC, jr_status> {
        // SAFETY: the caller's contract.
        Ok(&unsafe { Handle::<JobHandleC>::from_ptr(ptr) }?.value)
    }
}

/// Where a job is in its life, as `jr_job_state` reports it (the function has the name,
/// so the enum is `jr_state`: C cannot have both).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum jr_state {
    /// Waiting for its delay to pass.
    JR_JOB_DELAYED = 0,
    /// Waiting for semaphore permits (or a group's limit), holding no worker.
    JR_JOB_WAITING_PERMIT = 1,
    /// Ready to run.
    JR_JOB_QUEUED = 2,
    /// Running (a periodic job: until it is stopped).
    JR_JOB_RUNNING = 3,
    /// Ended: returned 0.
    JR_JOB_SUCCEEDED = 4,
    /// Ended: returned a nonzero code.
    JR_JOB_FAILED = 5,
    /// Ended: panicked.
    JR_JOB_PANICKED = 6,
    /// Ended: cancelled (before running, or it stopped when asked); a periodic job once
    /// stopped.
    JR_JOB_CANCELLED = 7,
}

impl jr_state {
    fn from_state(state: JobState) -> Self {
        match state {
            JobState::Delayed => jr_state::JR_JOB_DELAYED,
            JobState::WaitingForPermit => jr_state::JR_JOB_WAITING_PERMIT,
            JobState::Queued => jr_state::JR_JOB_QUEUED,
            JobState::Running => jr_state::JR_JOB_RUNNING,
            JobState::Succeeded => jr_state::JR_JOB_SUCCEEDED,
            JobState::Failed => jr_state::JR_JOB_FAILED,
            JobState::Panicked => jr_state::JR_JOB_PANICKED,
            JobState::Cancelled => jr_state::JR_JOB_CANCELLED,
        }
    }
}

// ----- submit -----------------------------------------------------------------------------

/// Options for `jr_submit` and `jr_submit_every`. Get the defaults from
/// `jr_submit_options_default()` (which sets `size`), then change fields. Handles in it
/// are borrowed for the call: the job keeps what it needs.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct jr_submit_options {
    /// `sizeof(jr_submit_options)` as the caller was compiled.
    pub size: usize,
    /// Cancels the job when cancelled (NULL: none). Not with `group` (a group's jobs
    /// run under its token: give the group a parent token instead).
    pub token: *mut jr_token,
    /// The job waits, holding no worker, for `permits` of this semaphore, and gives them
    /// back when it ends however it ends (NULL: none).
    pub sem: *mut jr_sem,
    /// Permits to take from `sem`: 1 (default) up to the semaphore's total.
    pub permits: u64,
    /// Makes the job a member of this group (NULL: none): it takes the group's token
    /// and limit, and its result goes to `jr_group_next`.
    pub group: *mut jr_group,
    /// Runs the job no sooner than this many nanoseconds from now (0: at once).
    pub delay_ns: i64,
    /// How long a submit from outside the pool waits for room in a bounded queue:
    /// negative (default) forever, 0 not at all (`JR_E_FULL`).
    pub timeout_ns: i64,
    /// Nonzero: fail with `JR_E_FULL` rather than wait for room.
    pub nonblocking: i32,
    /// Frees `arg` once the job has ended (ran, or never will); not called when the
    /// submit fails (the caller keeps `arg`). NULL: `arg` is not freed.
    pub arg_free: jr_free_fn,
    /// Frees a result nobody took: the job's handle freed before `jr_job_take_result`,
    /// a detached job's, a failed job's, a periodic run's. NULL: results are not freed.
    pub result_free: jr_free_fn,
    /// The job's name (copied; NULL: none), for debugging.
    pub name: *const c_char,
    /// Nonzero: `fn` takes `arg` over when the job starts (it frees it, or hands it on),
    /// and `arg_free` runs only for a job that ends without running (cancelled while
    /// queued or delayed, a pool shut down). For a function that consumes its argument,
    /// and for bindings, which then need no "did it run?" record per job. Not with
    /// `jr_submit_every` (its runs share `arg`). 0 (default): `arg_free` runs either way.
    pub fn_owns_arg: i32,
}

versioned!(jr_submit_options {
    size,
    token,
    sem,
    permits,
    group,
    delay_ns,
    timeout_ns,
    nonblocking,
    arg_free,
    result_free,
    name,
    fn_owns_arg,
});

/// The default submit options, with `size` set. Thread-safe, never fails.
#[no_mangle]
pub extern "C" fn jr_submit_options_default() -> jr_submit_options {
    jr_submit_options {
        size: std::mem::size_of::<jr_submit_options>(),
        token: std::ptr::null_mut(),
        sem: std::ptr::null_mut(),
        permits: 1,
        group: std::ptr::null_mut(),
        delay_ns: 0,
        timeout_ns: -1,
        nonblocking: 0,
        arg_free: None,
        result_free: None,
        name: std::ptr::null(),
        fn_owns_arg: 0,
    }
}

/// The Rust submit options of a C options struct (its handles checked).
///
/// # Safety
///
/// The handles in `options` are NULL or valid for the call; `name` is NULL or a string.
pub(crate) unsafe fn submit_options(
    options: &jr_submit_options,
) -> Result<SubmitOptions, jr_status> {
    let mut out = SubmitOptions::new();
    // SAFETY: the caller's contract.
    if let Some(token) = unsafe { TokenHandle::opt_token_of(options.token) }? {
        out = out.token(&token);
    }
    if !options.sem.is_null() {
        // SAFETY: the caller's contract.
        let sem = unsafe { SemHandle::sem_of(options.sem) }?;
        if options.permits == 0 || options.permits > sem.total() {
            return Err(invalid(format_args!(
                "permits is {}: it must be 1 to the semaphore's total, {}",
                options.permits,
                sem.total()
            )));
        }
        out = out.semaphore(sem, options.permits);
    }
    let delay = u64::try_from(options.delay_ns)
        .map_err(|_| invalid(format_args!("delay_ns is negative")))?;
    if delay > 0 {
        out = out.delay(Duration::from_nanos(delay));
    }
    if let Some(timeout) = timeout_of(options.timeout_ns) {
        out = out.timeout(timeout);
    }
    if options.nonblocking != 0 {
        out = out.nonblocking();
    }
    // SAFETY: the caller's contract.
    if let Some(name) = unsafe { opt_str(options.name) } {
        out = out.name(name);
    }
    Ok(out)
}

/// Submits `fn(ctx, arg, &result)` to `pool`. `options` may be NULL (defaults). `out`
/// receives the job's handle (the caller frees it with `jr_job_free`); NULL detaches the
/// job (it runs; its result is freed with `result_free`).
///
/// Ownership of `arg`: on `JR_OK` the job owns it and `arg_free` runs exactly once when
/// the job has ended, whether it ran or not (with `fn_owns_arg`: only if it did not run,
/// `fn` owning it once started); on any error nothing was submitted and `arg` is still
/// the caller's.
///
/// Returns `JR_OK`, `JR_E_INVALID_ARG` (`pool` or a handle in `options` of the wrong
/// type, `fn` NULL, `permits` 0 or over the semaphore's total, `delay_ns` negative, a
/// group of another pool, a group with a token, or a semaphore with a limited group),
/// `JR_E_SHUTDOWN`, `JR_E_FULL` (a bounded queue, nonblocking or `timeout_ns` 0),
/// `JR_E_TIMEOUT` (no room within `timeout_ns`), `JR_E_CANCELLED` (the token was
/// cancelled while waiting for room), `JR_E_CLOSED` (a closed group), `JR_E_FORKED`.
/// A job whose token is already cancelled is accepted and ends `JR_E_CANCELLED`.
/// Thread-safe; may be called from inside a job.
#[no_mangle]
pub extern "C" fn jr_submit(
    pool: *mut jr_pool,
    func: jr_job_fn,
    arg: *mut c_void,
    options: *const jr_submit_options,
    out: *mut *mut jr_job,
) -> jr_status {
    status(|| {
        // SAFETY: NULL or an options struct of its declared size (the contract).
        let options = unsafe { read_versioned(options, jr_submit_options_default()) }?;
        // A detached job (`out` NULL) gets no `jr_job` at all: the `Job` is dropped at once.
        let wants_handle = !out.is_null();
        let handle = guarded(arg, options.arg_free, |arg| {
            // SAFETY: a pool handle by the contract above.
            let pool = unsafe { PoolHandle::pool_of(pool) }?;
            let func = func.ok_or_else(|| invalid(format_args!("fn is NULL")))?;
            let result_free = options.result_free;
            let fn_owns_arg = options.fn_owns_arg != 0;
            let job = move |ctx: &Context<'_>| {
                let mut arg = arg;
                let arg = if fn_owns_arg { arg.take() } else { arg.ptr() };
                run(ctx, func, arg, result_free)
            };
            if options.group.is_null() {
                // SAFETY: the handles in `options` are valid for the call (the contract).
                let rust_options = unsafe { submit_options(&options) }?;
                let rust_options = with_batch_kind(rust_options, func as usize);
                let job = pool
                    .submit_with(rust_options, job)
                    .map_err(jr_status::from_submit)?;
                Ok(wants_handle.then(|| JobHandleC::owning(job)))
            } else {
                // SAFETY: a group handle by the contract above.
                let group = unsafe { GroupHandle::of(options.group) }?;
                if !options.token.is_null()
                    || !group.pool.same_as(pool)
                    || (group.group.is_limited() && !options.sem.is_null())
                {
                    return Err(invalid(format_args!(
                        "a group job takes no token or semaphore of its own, and its group must belong to the pool"
                    )));
                }
                // SAFETY: the handles in `options` are valid for the call (the contract).
                let rust_options = unsafe { submit_options(&options) }?;
                let rust_options = with_batch_kind(rust_options, func as usize);
                let handle = group
                    .group
                    .submit_with(rust_options, job)
                    .map_err(jr_status::from_submit)?;
                Ok(wants_handle.then(|| JobHandleC::member(handle)))
            }
        })?;
        if let Some(handle) = handle {
            // SAFETY: `out` is non-null (`wants_handle`); the caller provides a writable
            // pointer.
            unsafe { out.write(Handle::into_raw(handle)) };
        }
        Ok(())
    })
}

/// Runs `fn(ctx, arg, &result)` every `period_ns` nanoseconds (the first run one period
/// from now, or after `options->delay_ns`) until the handle is cancelled
/// (`jr_job_cancel`), its token is, or the pool shuts down. Runs never overlap: a run
/// that overruns makes the next start when it ends, and missed ticks are skipped, not
/// queued. `jr_ctx_tick` gives the run number. A run that fails or panics is counted and
/// the schedule goes on. Each run's result is freed with `result_free`.
///
/// `out` receives a handle (NULL: detached): `jr_job_wait` waits for the periodic job to
/// stop (then `JR_E_CANCELLED`), `jr_job_state` says `JR_JOB_RUNNING` until then.
/// `arg` is shared by the runs (one at a time) and freed with `arg_free` once the last
/// run has ended; on any error it is still the caller's.
///
/// Returns `JR_OK`, `JR_E_INVALID_ARG` (`pool` not a pool, `fn` NULL, `period_ns` not
/// positive, a group in `options`, `fn_owns_arg` set, bad options as for `jr_submit`), the errors of
/// `jr_submit` for the first run, `JR_E_FORKED`. Thread-safe.
#[no_mangle]
pub extern "C" fn jr_submit_every(
    pool: *mut jr_pool,
    period_ns: i64,
    func: jr_job_fn,
    arg: *mut c_void,
    options: *const jr_submit_options,
    out: *mut *mut jr_job,
) -> jr_status {
    status(|| {
        // SAFETY: NULL or an options struct of its declared size (the contract).
        let options = unsafe { read_versioned(options, jr_submit_options_default()) }?;
        let ticker = guarded(arg, options.arg_free, |arg| {
            // SAFETY: a pool handle by the contract above.
            let pool = unsafe { PoolHandle::pool_of(pool) }?;
            let func = func.ok_or_else(|| invalid(format_args!("fn is NULL")))?;
            let period = u64::try_from(period_ns)
                .ok()
                .filter(|&p| p > 0)
                .ok_or_else(|| invalid(format_args!("period_ns must be positive")))?;
            if !options.group.is_null() {
                return Err(invalid(format_args!("a periodic job cannot be in a group")));
            }
            if options.fn_owns_arg != 0 {
                return Err(invalid(format_args!(
                    "fn_owns_arg is for one-shot jobs: the runs of a periodic job share arg"
                )));
            }
            // SAFETY: the handles in `options` are valid for the call (the contract).
            let rust_options = unsafe { submit_options(&options) }?;
            let result_free = options.result_free;
            pool.submit_every_with(rust_options, Duration::from_nanos(period), move |ctx| {
                run(ctx, func, arg.ptr(), result_free).map(drop)
            })
            .map_err(jr_status::from_submit)
        })?;
        if !out.is_null() {
            // SAFETY: non-null; the caller provides a writable pointer.
            unsafe { out.write(Handle::into_raw(JobHandleC::new(End::Ticker(ticker)))) };
        }
        Ok(())
    })
}

// ----- the handle's functions -------------------------------------------------------------

/// Waits for the job to end, at most `timeout_ns` nanoseconds (negative: forever; 0:
/// just look), and returns its outcome. Inside a job, a job not yet started is run
/// inline (even past the timeout); otherwise an untimed wait helps with other work under
/// the pool's help policy, and a timed one blocks.
///
/// Returns `JR_OK` (succeeded), `JR_E_JOB_FAILED`, `JR_E_PANICKED`, `JR_E_CANCELLED`
/// (also: a periodic job stopped), `JR_E_TIMEOUT` (not ended yet), `JR_E_INVALID_ARG`
/// (not a job), `JR_E_FORKED`. Thread-safe; any number of threads may wait.
#[no_mangle]
pub extern "C" fn jr_job_wait(job: *mut jr_job, timeout_ns: i64) -> jr_status {
    status(|| {
        // SAFETY: a job handle by the contract above.
        let job = unsafe { JobHandleC::of(job) }?;
        if !job.wait_end(timeout_of(timeout_ns)) {
            return Err(jr_status::JR_E_TIMEOUT);
        }
        match job.end_status() {
            jr_status::JR_OK => Ok(()),
            error => Err(error),
        }
    })
}

/// Moves an ended job's result to `*out`: the caller owns it now (`result_free` will not
/// run on it). A second call gives NULL. Does not wait.
///
/// Returns `JR_OK`, the job's failure (`JR_E_JOB_FAILED`, `JR_E_PANICKED`,
/// `JR_E_CANCELLED`; `*out` is then NULL), `JR_E_TIMEOUT` (not ended yet),
/// `JR_E_INVALID_ARG` (not a job, `out` NULL, a group member — its result goes to
/// `jr_group_next` — or a periodic job), `JR_E_FORKED`. Thread-safe.
#[no_mangle]
pub extern "C" fn jr_job_take_result(job: *mut jr_job, out: *mut *mut c_void) -> jr_status {
    status(|| {
        // SAFETY: a job handle by the contract above.
        let job = unsafe { JobHandleC::of(job) }?;
        if out.is_null() || matches!(job.end, End::Member(_) | End::Ticker(_)) {
            return Err(invalid(format_args!("out is NULL, or the job's result is not the handle's: a group job's or a periodic job's")));
        }
        if !job.is_ended() {
            return Err(jr_status::JR_E_TIMEOUT);
        }
        let mut outcome = job.outcome();
        let outcome = outcome.as_mut().ok_or(jr_status::JR_E_INTERNAL)?;
        let value = outcome
            .result
            .as_mut()
            .map_or(std::ptr::null_mut(), Owned::take);
        // SAFETY: checked non-null; the caller provides a writable pointer.
        unsafe { out.write(value) };
        match outcome.status {
            jr_status::JR_OK => Ok(()),
            error => Err(error),
        }
    })
}

/// Writes where the job is in its life to `*out`.
///
/// Returns `JR_OK`, `JR_E_INVALID_ARG` (not a job, `out` NULL), `JR_E_FORKED`.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn jr_job_state(job: *const jr_job, out: *mut jr_state) -> jr_status {
    status(|| {
        // SAFETY: a job handle by the contract above.
        let job = unsafe { JobHandleC::of(job) }?;
        let state = match &job.end {
            End::Job { handle, .. } | End::Member(handle) => jr_state::from_state(handle.state()),
            End::Ticker(ticker) if ticker.is_stopped() => jr_state::JR_JOB_CANCELLED,
            End::Ticker(_) => jr_state::JR_JOB_RUNNING,
            End::Settled => match job.end_status() {
                jr_status::JR_E_JOB_FAILED => jr_state::JR_JOB_FAILED,
                jr_status::JR_E_PANICKED => jr_state::JR_JOB_PANICKED,
                _ => jr_state::JR_JOB_CANCELLED,
            },
        };
        // SAFETY: checked in `write_out`; the caller provides a writable pointer.
        unsafe { write_out(out, state) }
    })
}

/// Writes the code an ended job failed with to `*out` (0 if it did not fail, or is a
/// group member: read the job `jr_group_next` gives).
///
/// Returns `JR_OK`, `JR_E_TIMEOUT` (not ended yet), `JR_E_INVALID_ARG` (not a job,
/// `out` NULL), `JR_E_FORKED`. Thread-safe.
#[no_mangle]
pub extern "C" fn jr_job_error_code(job: *const jr_job, out: *mut i32) -> jr_status {
    status(|| {
        // SAFETY: a job handle by the contract above.
        let job = unsafe { JobHandleC::of(job) }?;
        if out.is_null() {
            return Err(invalid(format_args!("out is NULL")));
        }
        if !job.is_ended() {
            return Err(jr_status::JR_E_TIMEOUT);
        }
        let code = job.outcome().as_ref().map_or(0, |o| o.code);
        // SAFETY: checked non-null; the caller provides a writable pointer.
        unsafe { write_out(out, code) }
    })
}

/// The message of an ended job's failure: the text given to `jr_ctx_fail` or
/// `jr_ctx_panic`, or a Rust panic's message. Valid until the handle is freed. NULL if
/// there is none, the job has not ended, or `job` is not a job. Thread-safe.
#[no_mangle]
pub extern "C" fn jr_job_error_message(job: *const jr_job) -> *const c_char {
    boundary(std::ptr::null(), || {
        // SAFETY: a job handle by the contract above.
        let Ok(job) = (unsafe { JobHandleC::of(job) }) else {
            return std::ptr::null();
        };
        if !job.is_ended() {
            return std::ptr::null();
        }
        // The message is set once with the outcome and never changed: its buffer stays
        // where it is until the handle is freed.
        job.outcome()
            .as_ref()
            .and_then(|o| o.message.as_ref())
            .map_or(std::ptr::null(), |m| m.as_ptr())
    })
}

/// Called once when a job ends: `arg` as given to `jr_job_on_done`, and the job's
/// terminal state.
pub type jr_done_fn = Option<unsafe extern "C" fn(arg: *mut c_void, state: jr_state)>;

/// Calls `done(arg, state)` exactly once when the job ends, with its terminal state
/// (`JR_JOB_SUCCEEDED`, `JR_JOB_FAILED`, `JR_JOB_PANICKED` or `JR_JOB_CANCELLED`): at
/// once, on this thread, if it has already ended, otherwise on the thread that ends it
/// (a worker, or a canceller), so keep it short and do not wait in it. The callback
/// needs no handle: it runs even if this handle is freed first. For bindings that turn
/// job ends into events (a future to complete, a channel to close) without a thread
/// waiting per job. Any number of callbacks may be added.
///
/// Returns `JR_OK`, `JR_E_INVALID_ARG` (not a job, `done` NULL, a periodic job: wait for
/// it with `jr_job_wait`), `JR_E_FORKED`. Thread-safe.
#[no_mangle]
pub extern "C" fn jr_job_on_done(
    job: *mut jr_job,
    done: jr_done_fn,
    arg: *mut c_void,
) -> jr_status {
    status(|| {
        // SAFETY: a job handle by the contract above.
        let job = unsafe { JobHandleC::of(job) }?;
        let done = done.ok_or_else(|| invalid(format_args!("callback is NULL")))?;
        let callback = DoneCallback { done, arg };
        match &job.end {
            End::Job { handle, .. } | End::Member(handle) => {
                handle.on_end(move |state| callback.call(jr_state::from_state(state)));
            }
            End::Settled => {
                let state = match job.end_status() {
                    jr_status::JR_E_JOB_FAILED => jr_state::JR_JOB_FAILED,
                    jr_status::JR_E_PANICKED => jr_state::JR_JOB_PANICKED,
                    _ => jr_state::JR_JOB_CANCELLED,
                };
                callback.call(state);
            }
            End::Ticker(_) => {
                return Err(invalid(format_args!(
                    "a periodic job's handle has no end callback"
                )))
            }
        }
        Ok(())
    })
}

/// A `jr_done_fn` with its argument, to call from whichever thread ends the job.
struct DoneCallback {
    done: unsafe extern "C" fn(*mut c_void, jr_state),
    arg: *mut c_void,
}

// SAFETY: the header says the callback runs on whichever thread ends the job; the
// pointer is only passed along.
unsafe impl Send for DoneCallback {}

impl DoneCallback {
    fn call(self, state: jr_state) {
        // SAFETY: the caller's callback, called once as `jr_job_on_done` documents.
        unsafe { (self.done)(self.arg, state) };
    }
}

/// Cancels the job. One that has not started ends `JR_E_CANCELLED` at once and never
/// runs; a running one is asked to stop (`jr_ctx_is_cancelled` turns true); a periodic
/// job stops (no run after the current one).
///
/// Returns `JR_OK` (the job will not run; a periodic job is stopping), `JR_E_CLOSED`
/// (too late to prevent it: it is running or has ended, or the periodic job was already
/// stopping), `JR_E_INVALID_ARG` (not a job), `JR_E_FORKED`. Thread-safe.
#[no_mangle]
pub extern "C" fn jr_job_cancel(job: *mut jr_job) -> jr_status {
    status(|| {
        // SAFETY: a job handle by the contract above.
        let job = unsafe { JobHandleC::of(job) }?;
        let prevented = match &job.end {
            End::Job { handle, .. } | End::Member(handle) => handle.cancel(),
            End::Ticker(ticker) => ticker.cancel(),
            End::Settled => false,
        };
        if prevented {
            Ok(())
        } else {
            Err(jr_status::JR_E_CLOSED)
        }
    })
}

/// Frees a job handle. The job goes on if it has not ended (detached); a result not
/// taken is freed with `result_free` (now, or when the job ends). NULL is a no-op.
///
/// Returns `JR_OK`, `JR_E_INVALID_ARG` (not a job), `JR_E_FORKED` (made before
/// `fork()`: leaked). Not to be called while another thread uses the handle.
#[no_mangle]
pub extern "C" fn jr_job_free(job: *mut jr_job) -> jr_status {
    status(|| {
        // SAFETY: a job handle or NULL, used by no other thread (the contract).
        drop(unsafe { Handle::<JobHandleC>::free(job) }?);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::ffi::pool::{jr_pool_free, jr_pool_new, jr_pool_shutdown, JR_SHUTDOWN_DRAIN};

    static FREED: AtomicUsize = AtomicUsize::new(0);

    unsafe extern "C" fn count_free(value: *mut c_void) {
        FREED.fetch_add(1, Ordering::SeqCst);
        // SAFETY: the tests below pass boxed u64s.
        drop(unsafe { Box::from_raw(value.cast::<u64>()) });
    }

    /// Doubles its `u64` argument into a new boxed result; fails with code 7 on odd input.
    unsafe extern "C" fn double(
        ctx: *mut jr_ctx,
        arg: *mut c_void,
        result: *mut *mut c_void,
    ) -> i32 {
        // SAFETY: the tests pass a boxed u64, alive for the call.
        let n = unsafe { *arg.cast::<u64>() };
        if n % 2 == 1 {
            crate::ffi::jr_ctx_fail(ctx, c"odd".as_ptr());
            return 7;
        }
        // SAFETY: `result` is the runner's out-slot.
        unsafe { *result = Box::into_raw(Box::new(n * 2)).cast() };
        0
    }

    fn boxed(n: u64) -> *mut c_void {
        Box::into_raw(Box::new(n)).cast()
    }

    fn options() -> jr_submit_options {
        jr_submit_options {
            arg_free: Some(count_free),
            result_free: Some(count_free),
            ..jr_submit_options_default()
        }
    }

    #[test]
    fn arguments_and_results_are_freed_once_and_failed_submits_keep_the_argument() {
        let mut pool = std::ptr::null_mut();
        assert_eq!(jr_pool_new(std::ptr::null(), &mut pool), jr_status::JR_OK);
        let before = FREED.load(Ordering::SeqCst);

        // Success, result taken: the argument is freed, the result is ours.
        let mut job = std::ptr::null_mut();
        assert_eq!(
            jr_submit(pool, Some(double), boxed(21 * 2), &options(), &mut job),
            jr_status::JR_OK
        );
        assert_eq!(jr_job_wait(job, -1), jr_status::JR_OK);
        let mut value = std::ptr::null_mut();
        assert_eq!(jr_job_take_result(job, &mut value), jr_status::JR_OK);
        // SAFETY: the job's boxed result, now ours.
        assert_eq!(unsafe { *Box::from_raw(value.cast::<u64>()) }, 84);
        assert_eq!(jr_job_take_result(job, &mut value), jr_status::JR_OK);
        assert!(value.is_null(), "a second take gives NULL");
        assert_eq!(jr_job_free(job), jr_status::JR_OK);
        assert_eq!(
            FREED.load(Ordering::SeqCst) - before,
            1,
            "the argument only"
        );

        // Failure: code and message; the argument freed.
        assert_eq!(
            jr_submit(pool, Some(double), boxed(3), &options(), &mut job),
            jr_status::JR_OK
        );
        assert_eq!(jr_job_wait(job, -1), jr_status::JR_E_JOB_FAILED);
        let mut code = 0;
        assert_eq!(jr_job_error_code(job, &mut code), jr_status::JR_OK);
        assert_eq!(code, 7);
        // SAFETY: a message the handle keeps until it is freed.
        let message = unsafe { std::ffi::CStr::from_ptr(jr_job_error_message(job)) };
        assert_eq!(message.to_str(), Ok("odd"));
        assert_eq!(jr_job_free(job), jr_status::JR_OK);
        assert_eq!(FREED.load(Ordering::SeqCst) - before, 2);

        // Success, handle freed without taking: argument and result freed.
        assert_eq!(
            jr_submit(pool, Some(double), boxed(2), &options(), &mut job),
            jr_status::JR_OK
        );
        assert_eq!(jr_job_wait(job, -1), jr_status::JR_OK);
        assert_eq!(jr_job_free(job), jr_status::JR_OK);
        assert_eq!(FREED.load(Ordering::SeqCst) - before, 4);

        // A refused submit leaves the argument with the caller.
        assert_eq!(
            jr_pool_shutdown(pool, JR_SHUTDOWN_DRAIN, -1),
            jr_status::JR_OK
        );
        let arg = boxed(2);
        assert_eq!(
            jr_submit(pool, Some(double), arg, &options(), &mut job),
            jr_status::JR_E_SHUTDOWN
        );
        assert_eq!(
            jr_submit(pool, None, arg, &options(), &mut job),
            jr_status::JR_E_INVALID_ARG
        );
        assert_eq!(FREED.load(Ordering::SeqCst) - before, 4);
        // SAFETY: still ours.
        unsafe { count_free(arg) };
        assert_eq!(jr_pool_free(pool), jr_status::JR_OK);
    }

    static CONSUMED: AtomicUsize = AtomicUsize::new(0);
    static FREED_UNRUN: AtomicUsize = AtomicUsize::new(0);

    /// Frees its boxed argument itself (`fn_owns_arg`).
    unsafe extern "C" fn consume(
        _ctx: *mut jr_ctx,
        arg: *mut c_void,
        _result: *mut *mut c_void,
    ) -> i32 {
        CONSUMED.fetch_add(1, Ordering::SeqCst);
        // SAFETY: a boxed u64 the job owns once it runs.
        drop(unsafe { Box::from_raw(arg.cast::<u64>()) });
        0
    }

    unsafe extern "C" fn free_unrun(value: *mut c_void) {
        FREED_UNRUN.fetch_add(1, Ordering::SeqCst);
        // SAFETY: a boxed u64.
        drop(unsafe { Box::from_raw(value.cast::<u64>()) });
    }

    #[test]
    fn fn_owns_arg_frees_only_the_arguments_of_jobs_that_never_ran() {
        use crate::ffi::token::{jr_token_cancel_sync, jr_token_free, jr_token_new};
        let mut pool = std::ptr::null_mut();
        assert_eq!(jr_pool_new(std::ptr::null(), &mut pool), jr_status::JR_OK);
        let owning = jr_submit_options {
            arg_free: Some(free_unrun),
            fn_owns_arg: 1,
            ..jr_submit_options_default()
        };

        // It runs: the function took the argument over; arg_free is not called.
        let mut job = std::ptr::null_mut();
        assert_eq!(
            jr_submit(pool, Some(consume), boxed(1), &owning, &mut job),
            jr_status::JR_OK
        );
        assert_eq!(jr_job_wait(job, -1), jr_status::JR_OK);
        assert_eq!(jr_job_free(job), jr_status::JR_OK);
        assert_eq!(CONSUMED.load(Ordering::SeqCst), 1);
        assert_eq!(FREED_UNRUN.load(Ordering::SeqCst), 0);

        // It never runs (its token is cancelled): arg_free frees the argument, once.
        let mut token = std::ptr::null_mut();
        assert_eq!(jr_token_new(std::ptr::null(), &mut token), jr_status::JR_OK);
        assert_eq!(jr_token_cancel_sync(token), jr_status::JR_OK);
        let cancelled = jr_submit_options { token, ..owning };
        assert_eq!(
            jr_submit(pool, Some(consume), boxed(2), &cancelled, &mut job),
            jr_status::JR_OK
        );
        assert_eq!(jr_job_wait(job, -1), jr_status::JR_E_CANCELLED);
        assert_eq!(jr_job_free(job), jr_status::JR_OK);
        assert_eq!(CONSUMED.load(Ordering::SeqCst), 1);
        assert_eq!(FREED_UNRUN.load(Ordering::SeqCst), 1);
        assert_eq!(jr_token_free(token), jr_status::JR_OK);

        // Not for a periodic job: refused, the argument still the caller's.
        let arg = boxed(3);
        assert_eq!(
            jr_submit_every(pool, 1_000_000, Some(consume), arg, &owning, &mut job),
            jr_status::JR_E_INVALID_ARG
        );
        assert_eq!(FREED_UNRUN.load(Ordering::SeqCst), 1);
        // SAFETY: still ours.
        unsafe { free_unrun(arg) };
        assert_eq!(jr_pool_free(pool), jr_status::JR_OK);
    }

    static FREED_ACROSS: AtomicUsize = AtomicUsize::new(0);

    unsafe extern "C" fn count_free_across(value: *mut c_void) {
        FREED_ACROSS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: the test below passes boxed u64s.
        drop(unsafe { Box::from_raw(value.cast::<u64>()) });
    }

    /// A job's argument, taken by a submit on one thread, dropped during another thread's
    /// submit (a `jr_token_cancel`'s settle, inside a submit with that token, ends the
    /// queued jobs under it there) is freed once, there and then; the other submit's
    /// refused argument stays its caller's. The guard ids that tell "dropped inside the
    /// submit that took it" used to count from 1 on every thread: the first submit of
    /// two threads had the same id, the other thread's argument was taken for the
    /// submit's own and never freed (found by tests/stress.rs, seed 242).
    #[test]
    fn an_argument_dropped_during_another_threads_submit_is_freed_once() {
        // Fresh threads: each makes its first guarded submit.
        let kept = std::thread::spawn(|| {
            let mut kept = None;
            guarded(boxed(1), Some(count_free_across), |owned| {
                kept = Some(owned);
                Ok(())
            })
            .unwrap();
            kept.unwrap()
        })
        .join()
        .unwrap();
        let refused = boxed(2) as usize;
        let returned = std::thread::spawn(move || {
            let result: Result<(), jr_status> =
                guarded(refused as *mut c_void, Some(count_free_across), |owned| {
                    // The other submit's job ends here (its argument dropped), then this
                    // submit fails: its own argument is handed back.
                    drop(kept);
                    drop(owned);
                    Err(jr_status::JR_E_SHUTDOWN)
                });
            assert_eq!(result, Err(jr_status::JR_E_SHUTDOWN));
            refused
        })
        .join()
        .unwrap();
        assert_eq!(
            FREED_ACROSS.load(Ordering::SeqCst),
            1,
            "the kept argument is freed once, the refused one not at all"
        );
        // SAFETY: refused: still ours.
        unsafe { count_free_across(returned as *mut c_void) };
        assert_eq!(FREED_ACROSS.load(Ordering::SeqCst), 2);
    }
}
