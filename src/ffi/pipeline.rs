//! `jr_pipeline`: pipelines of C stage functions over `void *` items.

use std::ffi::{c_char, c_void, CString};
use std::mem::{offset_of, size_of};
use std::sync::{Arc, Mutex, MutexGuard};

use super::ctx::{jr_ctx, with_ctx};
use super::job::{jr_free_fn, CError, Owned};
use super::jr_status;
use super::pool::{jr_pool, PoolHandle};
use super::status::invalid;
use super::token::{jr_token, TokenHandle};
use super::{
    boundary, fork, read_versioned, status, timeout_of, versioned, write_out, Handle, Kind,
    Versioned,
};
use crate::{
    CancelToken, Context, JobError, NextError, Pipeline, PipelineBuilder, Pool, PushError,
    DEFAULT_MAX_IN_FLIGHT,
};

/// A stage's return value: pass `*out` on to the next stage (or the output). Being 0, it
/// cannot be a failure code (nor can `JR_STAGE_DROP`): a binding that maps its errors to
/// codes must avoid both.
pub const JR_STAGE_EMIT: i32 = 0;

/// A stage's return value: drop the item (a filter). The most negative `int32_t`, so that
/// no failure code (`-1`, errno values, ...) is taken for it by accident.
pub const JR_STAGE_DROP: i32 = -0x7fff_ffff - 1;

/// A pipeline stage: runs on a worker, as its own short job, once per item.
///
/// `ctx` is the job's context (`jr_ctx_is_cancelled`, `jr_ctx_fail` for a failure's
/// message); `stage_arg` is what `jr_pipeline_add_stage` was given; `item` is the input;
/// `*out` starts equal to `item`.
///
/// Return `JR_STAGE_EMIT` to pass `*out` on (`item` itself if `*out` was left alone),
/// `JR_STAGE_DROP` to drop the item, or any other value as the stage's failure code:
/// the pipeline's first failure cancels its token and is reported by `jr_pipeline_next`
/// (`JR_E_JOB_FAILED`, or `JR_E_CANCELLED` for a failure once the pipeline was
/// cancelled).
///
/// Ownership: the pipeline owns `item` and whatever the stage leaves in `*out`; the stage
/// only borrows them and must free neither. After the call the pipeline destroys, with
/// the pipeline's `item_free`, each of the two that does not go on: on `JR_STAGE_EMIT`
/// with `*out != item`, `item` (so an output must not point into its input); on
/// `JR_STAGE_DROP` or a failure, `item`, and `*out` too if the stage set it to another
/// non-NULL pointer.
pub type jr_stage_fn = Option<
    unsafe extern "C" fn(
        ctx: *mut jr_ctx,
        stage_arg: *mut c_void,
        item: *mut c_void,
        out: *mut *mut c_void,
    ) -> i32,
>;

type StageFnPtr =
    unsafe extern "C" fn(*mut jr_ctx, *mut c_void, *mut c_void, *mut *mut c_void) -> i32;

/// Options for `jr_pipeline_new`. Every field's zero is its default: zero-initialise the
/// struct and set `size`, or call `jr_pipeline_options_init` (which writes no more than the
/// caller's `sizeof`, unlike a by-value `*_default()` return from a newer library).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct jr_pipeline_options {
    /// `sizeof(jr_pipeline_options)` as the caller was compiled.
    pub size: usize,
    /// At most this many items are in the pipeline at once (pushed and not yet given
    /// by `jr_pipeline_next` or dropped by a stage): a push waits while it is full.
    /// 0 (default): 64.
    pub max_in_flight: usize,
    /// The pipeline's token is a child of this one (NULL: a root): cancelling it cancels
    /// the pipeline. Borrowed for the call.
    pub token: *mut jr_token,
    /// Destroys an item the pipeline owns and does not give out: dropped by a stage,
    /// replaced by a stage's output, or still inside at a failure or at
    /// `jr_pipeline_free`. Called exactly once per such item, on any thread, never for
    /// NULL. NULL: items are not freed.
    pub item_free: jr_free_fn,
}

versioned!(jr_pipeline_options {
    size,
    max_in_flight,
    token,
    item_free,
});

/// The defaults (all zero) with `size` set: what `jr_pipeline_options_init` writes.
fn default_options() -> jr_pipeline_options {
    jr_pipeline_options {
        size: size_of::<jr_pipeline_options>(),
        max_in_flight: 0,
        token: std::ptr::null_mut(),
        item_free: None,
    }
}

/// Writes the default options into `*options`, whose size (as the caller was compiled)
/// is `size`: `size` is stored in its `size` field, the fields this library knows that
/// fit in `size` get their defaults, and any bytes past them are zeroed. It never writes
/// past `size` bytes, whatever the versions of the header and the library.
///
/// Returns `JR_OK`, `JR_E_INVALID_ARG` (`options` NULL, `size` below a word).
/// Thread-safe.
#[no_mangle]
pub extern "C" fn jr_pipeline_options_init(
    options: *mut jr_pipeline_options,
    size: usize,
) -> jr_status {
    status(|| {
        if options.is_null() || size < size_of::<usize>() {
            return Err(invalid(format_args!(
                "options is NULL or size is below a word"
            )));
        }
        let default = default_options();
        let known = jr_pipeline_options::field_ends()
            .iter()
            .copied()
            .filter(|&end| end <= size)
            .max()
            .unwrap_or(size_of::<usize>());
        let bytes = options.cast::<u8>();
        // SAFETY: the caller gives `size` writable bytes at `options`; `known <= size`,
        // and `known` bytes of `default` are readable (at most its size). The rest up to
        // `size` is zeroed, then the first word set to `size`.
        unsafe {
            std::ptr::copy_nonoverlapping(
                (&default as *const jr_pipeline_options).cast::<u8>(),
                bytes,
                known,
            );
            std::ptr::write_bytes(bytes.add(known), 0, size - known);
            options.cast::<usize>().write_unaligned(size);
        }
        Ok(())
    })
}

/// A pipeline: `void *` items pushed in (`jr_pipeline_push`), passed through stages
/// (`jr_pipeline_add_stage`), each with its own concurrency and ordered or not, and
/// taken out with `jr_pipeline_next`. Stages run as short jobs on the pool: an idle
/// pipeline holds no worker. Functions: `jr_pipeline_options_init`, `jr_pipeline_new`,
/// `jr_pipeline_add_stage`, `jr_pipeline_push`, `jr_pipeline_close_input`,
/// `jr_pipeline_next`, `jr_pipeline_cancel`, `jr_pipeline_error_code`,
/// `jr_pipeline_error_message`, `jr_pipeline_free`.
pub struct jr_pipeline {
    _opaque: [u8; 0],
}

/// A stage's function and argument, callable from any worker.
#[derive(Clone, Copy)]
struct CStage {
    func: StageFnPtr,
    arg: *mut c_void,
}

// SAFETY: the header tells callers that stages run on worker threads with `stage_arg`,
// several at once up to the stage's concurrency; we only pass the pointer along.
unsafe impl Send for CStage {}
// SAFETY: as above.
unsafe impl Sync for CStage {}

pub(crate) type CPipeline = Pipeline<Owned, Owned, CError>;

/// What `jr_pipeline_new` and `jr_pipeline_add_stage` gathered.
struct Setup {
    pool: Pool,
    token: Option<CancelToken>,
    max_in_flight: usize,
    stages: Vec<(CStage, usize, bool)>,
}

enum Phase {
    /// Before the first push (or `jr_pipeline_next`, `jr_pipeline_close_input`): stages
    /// may be added.
    Building(Setup),
    Running(Arc<CPipeline>),
    /// Only while the pipeline is being built (a panic there leaves it so).
    Broken,
}

/// The first failure, as `jr_pipeline_next` reports it from then on.
struct Failure {
    status: jr_status,
    code: i32,
    message: Option<CString>,
}

pub(crate) struct PipelineHandle {
    item_free: jr_free_fn,
    phase: Mutex<Phase>,
    /// Set once, never changed (its message stays where it is until the free).
    failure: Mutex<Option<Failure>>,
}

impl Kind for PipelineHandle {
    const MAGIC: u64 = 0x6a72_7069_7065_0001; // "jrpipe\0\x01"
    const NAME: &'static str = "jr_pipeline";
    type Opaque = jr_pipeline;
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl PipelineHandle {
    /// # Safety
    ///
    /// As [`Handle::from_ptr`].
    pub(crate) unsafe fn of<'a>(ptr: *const jr_pipeline) -> Result<&'a PipelineHandle, jr_status> {
        // SAFETY: the caller's contract.
        Ok(&unsafe { Handle::<PipelineHandle>::from_ptr(ptr) }?.value)
    }

    /// The running pipeline, built now if it was not (no more stages from then on).
    pub(crate) fn running(&self) -> Result<Arc<CPipeline>, jr_status> {
        let mut phase = locked(&self.phase);
        let setup = match std::mem::replace(&mut *phase, Phase::Broken) {
            Phase::Running(pipeline) => {
                *phase = Phase::Running(Arc::clone(&pipeline));
                return Ok(pipeline);
            }
            Phase::Building(setup) => setup,
            Phase::Broken => return Err(jr_status::JR_E_INTERNAL),
        };
        let mut builder: PipelineBuilder<Owned, Owned, CError> =
            Pipeline::builder(&setup.pool).max_in_flight(setup.max_in_flight);
        if let Some(token) = &setup.token {
            builder = builder.token(token);
        }
        for (stage, concurrency, ordered) in setup.stages {
            let free = self.item_free;
            builder = builder.stage(concurrency, ordered, move |ctx: &Context<'_>, item| {
                run_stage(ctx, stage, item, free)
            });
        }
        let pipeline = Arc::new(builder.build());
        *phase = Phase::Running(Arc::clone(&pipeline));
        Ok(pipeline)
    }

    /// Records the first failure; returns its status (the recorded one if there was one).
    fn failed(&self, error: JobError<CError>) -> jr_status {
        let mut failure = locked(&self.failure);
        let recorded = failure.get_or_insert_with(|| {
            let status = jr_status::from_job_error(&error);
            match error {
                JobError::Failed(CError { code, message }) => Failure {
                    status,
                    code,
                    message,
                },
                JobError::Panicked(message) => Failure {
                    status,
                    code: 0,
                    message: CString::new(message.replace('\0', "")).ok(),
                },
                JobError::Cancelled(_) => Failure {
                    status,
                    code: 0,
                    message: None,
                },
            }
        });
        recorded.status
    }
}

/// Runs a C stage on `item` (see `jr_stage_fn` for who destroys what).
fn run_stage(
    ctx: &Context<'_>,
    stage: CStage,
    item: Owned,
    free: jr_free_fn,
) -> Result<Option<Owned>, CError> {
    with_ctx(ctx, |ctx_ptr, state| {
        let input = item.ptr();
        let mut out = input;
        // SAFETY: the caller's function, called as the header's `jr_stage_fn` contract
        // says; `out` is a valid place for the call.
        let code = unsafe { (stage.func)(ctx_ptr, stage.arg, input, &mut out) };
        // What the stage left in `*out`, if it is another item: the pipeline's.
        let other = (out != input).then(|| Owned::new(out, free));
        if let Some(message) = locked(&state.panic).take() {
            drop((item, other));
            // No panic hook (`resume_unwind`): the pipeline's failure carries the message.
            std::panic::resume_unwind(Box::new(message));
        }
        match (code, other) {
            (JR_STAGE_EMIT, None) => Ok(Some(item)),
            (JR_STAGE_EMIT, Some(other)) => {
                drop(item);
                Ok(Some(other))
            }
            (JR_STAGE_DROP, other) => {
                drop((item, other));
                Ok(None)
            }
            (code, other) => {
                drop((item, other));
                let message = locked(&state.message).take();
                Err(CError { code, message })
            }
        }
    })
}

/// Makes a pipeline on `pool` with `options` (NULL: defaults), with no stage yet: add
/// them with `jr_pipeline_add_stage` before the first push. The caller owns `*out` and
/// frees it with `jr_pipeline_free`.
///
/// Returns `JR_OK`, `JR_E_INVALID_ARG` (not a pool, `out` NULL, bad options: a `size`
/// below a word, nonzero bytes past the known fields, a token that is not one),
/// `JR_E_FORKED`. Thread-safe.
#[no_mangle]
pub extern "C" fn jr_pipeline_new(
    pool: *mut jr_pool,
    options: *const jr_pipeline_options,
    out: *mut *mut jr_pipeline,
) -> jr_status {
    status(|| {
        // SAFETY: a pool handle by the contract above.
        let pool = unsafe { PoolHandle::pool_of(pool) }?;
        // SAFETY: NULL or an options struct of its declared size (the contract).
        let options = unsafe { read_versioned(options, default_options()) }?;
        // SAFETY: a token handle or NULL by the contract above.
        let token = unsafe { TokenHandle::opt_token_of(options.token) }?;
        if out.is_null() {
            return Err(invalid(format_args!("out is NULL")));
        }
        fork::install();
        let max_in_flight = match options.max_in_flight {
            0 => DEFAULT_MAX_IN_FLIGHT,
            n => n,
        };
        let handle = Handle::into_raw(PipelineHandle {
            item_free: options.item_free,
            phase: Mutex::new(Phase::Building(Setup {
                pool: pool.clone(),
                token,
                max_in_flight,
                stages: Vec::new(),
            })),
            failure: Mutex::new(None),
        });
        // SAFETY: checked non-null; the caller provides a writable pointer.
        unsafe { write_out(out, handle) }
    })
}

/// Adds a stage after the ones added so far: `stage_fn(ctx, stage_arg, item, &out)` runs
/// once per item (see `jr_stage_fn`), at most `concurrency` (at least 1) at once. With
/// `ordered` nonzero the stage passes its outputs on in input order (the order of the
/// pushes), however many run at once; with 0, as they come. `stage_arg` is borrowed: it
/// must stay valid until `jr_pipeline_free` returns (no stage runs after that).
///
/// Returns `JR_OK`, `JR_E_INVALID_ARG` (not a pipeline, `stage_fn` NULL, `concurrency`
/// 0, `ordered` not 0 or 1, or the pipeline has started: stages are added before the
/// first `jr_pipeline_push`, `jr_pipeline_next` or `jr_pipeline_close_input`),
/// `JR_E_FORKED`. Thread-safe.
#[no_mangle]
pub extern "C" fn jr_pipeline_add_stage(
    pipeline: *mut jr_pipeline,
    stage_fn: jr_stage_fn,
    stage_arg: *mut c_void,
    concurrency: usize,
    ordered: i32,
) -> jr_status {
    status(|| {
        // SAFETY: a pipeline handle by the contract above.
        let handle = unsafe { PipelineHandle::of(pipeline) }?;
        let func = stage_fn.ok_or_else(|| invalid(format_args!("stage_fn is NULL")))?;
        if concurrency == 0 {
            return Err(invalid(format_args!("concurrency is 0: at least 1")));
        }
        if ordered != 0 && ordered != 1 {
            return Err(invalid(format_args!("ordered is {ordered}: 0 or 1")));
        }
        match &mut *locked(&handle.phase) {
            Phase::Building(setup) => {
                let stage = CStage {
                    func,
                    arg: stage_arg,
                };
                setup.stages.push((stage, concurrency, ordered == 1));
                Ok(())
            }
            _ => Err(invalid(format_args!(
                "the pipeline has started: stages are added before the first push"
            ))),
        }
    })
}

/// Pushes `item` into the pipeline, waiting for room at most `timeout_ns` nanoseconds
/// (negative: forever; 0: not at all). On `JR_OK` the pipeline owns the item (it comes
/// out of `jr_pipeline_next`, or is destroyed with `item_free`); on any other status it
/// is still the caller's. The first push starts the pipeline (no more stages).
///
/// Returns `JR_OK`, `JR_E_FULL` (`timeout_ns` 0 and no room), `JR_E_TIMEOUT`,
/// `JR_E_CLOSED` (after `jr_pipeline_close_input`), `JR_E_CANCELLED` (the pipeline
/// failed or was cancelled: `jr_pipeline_next` says how), `JR_E_INVALID_ARG` (not a
/// pipeline), `JR_E_FORKED`. Thread-safe; inside a job, a spare worker takes the
/// waiting one's place if too few would be left running.
#[no_mangle]
pub extern "C" fn jr_pipeline_push(
    pipeline: *mut jr_pipeline,
    item: *mut c_void,
    timeout_ns: i64,
) -> jr_status {
    status(|| {
        // SAFETY: a pipeline handle by the contract above.
        let handle = unsafe { PipelineHandle::of(pipeline) }?;
        let running = handle.running()?;
        let item = Owned::new(item, handle.item_free);
        let pushed = match timeout_of(timeout_ns) {
            Some(t) if t.is_zero() => running.try_push(item),
            Some(timeout) => running.push_timeout(item, timeout),
            None => running.push(item),
        };
        pushed.map_err(|error| {
            let status = match &error {
                PushError::Full(_) => jr_status::JR_E_FULL,
                PushError::Timeout(_) => jr_status::JR_E_TIMEOUT,
                PushError::Closed(_) => jr_status::JR_E_CLOSED,
                PushError::Failed(_) => jr_status::JR_E_CANCELLED,
            };
            // Still the caller's: not destroyed.
            let _ = error.into_inner().take();
            status
        })
    })
}

/// Says no more items will be pushed: `jr_pipeline_next` gives `JR_E_CLOSED` once every
/// item inside has come out. Closing twice does nothing.
///
/// Returns `JR_OK`, `JR_E_INVALID_ARG` (not a pipeline), `JR_E_FORKED`. Thread-safe.
#[no_mangle]
pub extern "C" fn jr_pipeline_close_input(pipeline: *mut jr_pipeline) -> jr_status {
    status(|| {
        // SAFETY: a pipeline handle by the contract above.
        let handle = unsafe { PipelineHandle::of(pipeline) }?;
        handle.running()?.close_input();
        Ok(())
    })
}

/// Takes the next item out into `*item`, waiting at most `timeout_ns` nanoseconds
/// (negative: forever; 0: not at all). The caller owns the item it gets.
///
/// Returns `JR_OK`; `JR_E_CLOSED` at the end (the input closed and every item out);
/// `JR_E_TIMEOUT` (also for `timeout_ns` 0 and nothing ready); after the pipeline's first
/// failure, from then on, that failure's status: `JR_E_JOB_FAILED` (a stage's code and
/// message in `jr_pipeline_error_code` and `jr_pipeline_error_message`),
/// `JR_E_PANICKED`, `JR_E_CANCELLED` (its token, or `jr_pipeline_cancel`);
/// `JR_E_INVALID_ARG` (not a pipeline, `item` NULL), `JR_E_FORKED`. Thread-safe.
#[no_mangle]
pub extern "C" fn jr_pipeline_next(
    pipeline: *mut jr_pipeline,
    item: *mut *mut c_void,
    timeout_ns: i64,
) -> jr_status {
    status(|| {
        // SAFETY: a pipeline handle by the contract above.
        let handle = unsafe { PipelineHandle::of(pipeline) }?;
        if item.is_null() {
            return Err(invalid(format_args!("item is NULL")));
        }
        let running = handle.running()?;
        let next = match timeout_of(timeout_ns) {
            Some(timeout) => running.next_timeout(timeout),
            None => running.next(),
        };
        match next {
            Ok(mut got) => {
                // SAFETY: checked non-null; the caller provides a writable pointer.
                unsafe { write_out(item, got.take()) }
            }
            Err(NextError::Failed(error)) => Err(handle.failed(error)),
            Err(NextError::Timeout) => Err(jr_status::JR_E_TIMEOUT),
            Err(NextError::Closed) => Err(locked(&handle.failure)
                .as_ref()
                .map_or(jr_status::JR_E_CLOSED, |f| f.status)),
        }
    })
}

/// Cancels the pipeline: its token is cancelled, its items destroyed, and
/// `jr_pipeline_next` reports `JR_E_CANCELLED` (unless it failed before).
///
/// Returns `JR_OK`, `JR_E_INVALID_ARG` (not a pipeline), `JR_E_FORKED`. Thread-safe.
#[no_mangle]
pub extern "C" fn jr_pipeline_cancel(pipeline: *mut jr_pipeline) -> jr_status {
    status(|| {
        // SAFETY: a pipeline handle by the contract above.
        let handle = unsafe { PipelineHandle::of(pipeline) }?;
        handle.running()?.cancel();
        Ok(())
    })
}

/// Writes the failure code of the pipeline's failing stage to `*out` (0 if
/// `jr_pipeline_next` has reported no stage failure).
///
/// Returns `JR_OK`, `JR_E_INVALID_ARG` (not a pipeline, `out` NULL), `JR_E_FORKED`.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn jr_pipeline_error_code(pipeline: *const jr_pipeline, out: *mut i32) -> jr_status {
    status(|| {
        // SAFETY: a pipeline handle by the contract above.
        let handle = unsafe { PipelineHandle::of(pipeline) }?;
        let code = locked(&handle.failure).as_ref().map_or(0, |f| f.code);
        // SAFETY: checked in `write_out`; the caller provides a writable pointer.
        unsafe { write_out(out, code) }
    })
}

/// The message of the pipeline's failure, once `jr_pipeline_next` has reported it: the
/// text a stage gave `jr_ctx_fail` or `jr_ctx_panic`. Valid until `jr_pipeline_free`.
/// NULL if there is none, or `pipeline` is not a pipeline. Thread-safe.
#[no_mangle]
pub extern "C" fn jr_pipeline_error_message(pipeline: *const jr_pipeline) -> *const c_char {
    boundary(std::ptr::null(), || {
        // SAFETY: a pipeline handle by the contract above.
        let Ok(handle) = (unsafe { PipelineHandle::of(pipeline) }) else {
            return std::ptr::null();
        };
        // Set once and never changed: the buffer stays until the handle is freed.
        locked(&handle.failure)
            .as_ref()
            .and_then(|f| f.message.as_ref())
            .map_or(std::ptr::null(), |m| m.as_ptr())
    })
}

/// Frees a pipeline, at any point of its life: a pipeline still running is cancelled,
/// every item still inside is destroyed with `item_free` (exactly once), and this waits
/// for the stage functions running now to return, so that no stage function and no
/// `item_free` of this pipeline runs after it returns. NULL is a no-op. Not to be called
/// from one of the pipeline's own stage functions (it would wait for itself), nor while
/// another thread uses the handle.
///
/// Returns `JR_OK`, `JR_E_INVALID_ARG` (not a pipeline), `JR_E_FORKED` (made before
/// `fork()`: leaked).
#[no_mangle]
pub extern "C" fn jr_pipeline_free(pipeline: *mut jr_pipeline) -> jr_status {
    status(|| {
        // SAFETY: a pipeline handle or NULL, used by no other thread (the contract).
        let Some(handle) = unsafe { Handle::<PipelineHandle>::free(pipeline) }? else {
            return Ok(());
        };
        let phase = handle.phase.into_inner().unwrap_or_else(|p| p.into_inner());
        if let Phase::Running(pipeline) = phase {
            pipeline.stop();
        }
        Ok(())
    })
}

const _: () = assert!(offset_of!(jr_pipeline_options, size) == 0);
