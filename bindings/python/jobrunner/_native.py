"""The one module that talks to ``libjobrunner`` through ctypes.

It finds and loads the shared library, checks its version, and declares the
``argtypes``/``restype`` of every function of ``include/jobrunner.h``, its enums,
constants, option structs and callback types. Nothing else in the package imports
:mod:`ctypes` for the library: the rest goes through the names defined here.

Where the library comes from, in order:

1. the ``JOBRUNNER_LIBRARY`` environment variable (a path to ``libjobrunner.so``);
2. the copy bundled inside this package (``pip install ./bindings/python`` builds it).

Two handles are opened on the same library:

* :data:`lib` (:class:`ctypes.CDLL`) releases the GIL around every call: it is the one
  to use for anything that may block (waits, blocking submits, shutdown), because a
  worker thread that runs a Python job needs the GIL to make progress.
* :data:`fast` (:class:`ctypes.PyDLL`) keeps the GIL: cheaper for short calls that
  never block (a nonblocking submit, state queries). A callback that such a call makes
  on the calling thread (an ``arg_free`` run at once) re-enters the GIL the thread
  already holds, which is allowed.
"""

from __future__ import annotations

import ctypes
import enum
import os
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_bool,
    c_char_p,
    c_int,
    c_int32,
    c_int64,
    c_size_t,
    c_uint32,
    c_uint64,
    c_void_p,
)
from pathlib import Path
from typing import Any

__all__ = [
    "EXPECTED_MAJOR",
    "LIBRARY_PATH",
    "Status",
    "State",
    "CancelReason",
    "lib",
    "fast",
    "FUNCTIONS",
]

#: The major version of the C ABI this package was written against (``JR_VERSION_MAJOR``).
EXPECTED_MAJOR = 0

#: The file name of the library bundled inside the package.
BUNDLED_NAME = "libjobrunner.so"

# --- constants (the header's #defines) ------------------------------------------------

#: ``JR_MAX_THREADS``: the most worker threads a pool may have.
JR_MAX_THREADS = 4096
#: ``JR_WAIT_MAX``: the most items one ``jr_wait_any`` takes.
JR_WAIT_MAX = 65536
#: ``JR_SHUTDOWN_DRAIN``: run everything already accepted.
JR_SHUTDOWN_DRAIN = 1
#: ``JR_SHUTDOWN_CANCEL``: end queued jobs cancelled, tell running ones.
JR_SHUTDOWN_CANCEL = 2
#: ``JR_STAGE_EMIT``: a pipeline stage passes ``*out`` on.
JR_STAGE_EMIT = 0
#: ``JR_STAGE_DROP``: a pipeline stage drops its item (the most negative ``int32_t``; the
#: header writes it as an expression, so it is not in :data:`DEFINES`).
JR_STAGE_DROP = -(2**31)

# --- enums -----------------------------------------------------------------------------


class Status(enum.IntEnum):
    """``jr_status``: what a call did (``JR_OK`` is 0, errors are positive)."""

    JR_OK = 0
    JR_E_INVALID_ARG = 1
    JR_E_NO_MEMORY = 2
    JR_E_SHUTDOWN = 3
    JR_E_FULL = 4
    JR_E_TIMEOUT = 5
    JR_E_CANCELLED = 6
    JR_E_JOB_FAILED = 7
    JR_E_PANICKED = 8
    JR_E_CLOSED = 9
    JR_E_INTERNAL = 10
    JR_E_FORKED = 11
    JR_E_EMPTY = 12


class State(enum.IntEnum):
    """``jr_state``: where a job is in its life (``jr_job_state``)."""

    JR_JOB_DELAYED = 0
    JR_JOB_WAITING_PERMIT = 1
    JR_JOB_QUEUED = 2
    JR_JOB_RUNNING = 3
    JR_JOB_SUCCEEDED = 4
    JR_JOB_FAILED = 5
    JR_JOB_PANICKED = 6
    JR_JOB_CANCELLED = 7


class CancelReason(enum.IntEnum):
    """``jr_cancel_reason``: why a token was cancelled."""

    JR_REASON_NONE = 0
    JR_REASON_CANCELLED = 1
    JR_REASON_DEADLINE = 2
    JR_REASON_SHUTDOWN = 3
    JR_REASON_SIBLING_FAILED = 4


class WaitKind(enum.IntEnum):
    """``jr_wait_kind``: what a ``jr_waitable`` waits for."""

    JR_WAIT_JOB = 0
    JR_WAIT_GROUP = 1
    JR_WAIT_CHAN_RECV = 2
    JR_WAIT_CHAN_SEND = 3
    JR_WAIT_TOKEN = 4
    JR_WAIT_STREAM = 5
    JR_WAIT_PIPELINE = 6


#: Every enum of the header, by its C name (checked against the header by the tests).
ENUMS: dict[str, type[enum.IntEnum]] = {
    "jr_status": Status,
    "jr_state": State,
    "jr_cancel_reason": CancelReason,
    "jr_wait_kind": WaitKind,
}

#: Every integer ``#define`` of the header except the version macros.
DEFINES: dict[str, int] = {
    "JR_MAX_THREADS": JR_MAX_THREADS,
    "JR_WAIT_MAX": JR_WAIT_MAX,
    "JR_SHUTDOWN_DRAIN": JR_SHUTDOWN_DRAIN,
    "JR_SHUTDOWN_CANCEL": JR_SHUTDOWN_CANCEL,
    "JR_STAGE_EMIT": JR_STAGE_EMIT,
}

# --- opaque handle types: each its own POINTER type, so a wrong handle is an error ------


class jr_ctx(Structure):
    """Opaque ``struct jr_ctx`` (a running job's context)."""


class jr_group(Structure):
    """Opaque ``struct jr_group``."""


class jr_job(Structure):
    """Opaque ``struct jr_job``."""


class jr_pool(Structure):
    """Opaque ``struct jr_pool``."""


class jr_sem(Structure):
    """Opaque ``struct jr_sem``."""


class jr_token(Structure):
    """Opaque ``struct jr_token``."""


class jr_chan(Structure):
    """Opaque ``struct jr_chan``."""


class jr_stream(Structure):
    """Opaque ``struct jr_stream``."""


class jr_pipeline(Structure):
    """Opaque ``struct jr_pipeline``."""


ChanP = POINTER(jr_chan)
StreamP = POINTER(jr_stream)
CtxP = POINTER(jr_ctx)
GroupP = POINTER(jr_group)
PipelineP = POINTER(jr_pipeline)
JobP = POINTER(jr_job)
PoolP = POINTER(jr_pool)
SemP = POINTER(jr_sem)
TokenP = POINTER(jr_token)

# --- callback types ----------------------------------------------------------------------
# Pointers passed *to* Python callbacks are declared c_void_p (a plain int or None) rather
# than typed POINTERs: ctypes then builds no object per call, which matters on the job path.

#: ``jr_thread_hook``: ``void (*)(void *arg, size_t index)``.
THREAD_HOOK = CFUNCTYPE(None, c_void_p, c_size_t)
#: ``jr_free_fn``: ``void (*)(void *value)``.
FREE_FN = CFUNCTYPE(None, c_void_p)
#: ``jr_job_fn``: ``int32_t (*)(struct jr_ctx *ctx, void *arg, void **result)``.
JOB_FN = CFUNCTYPE(c_int32, c_void_p, c_void_p, c_void_p)
#: ``jr_done_fn``: ``void (*)(void *arg, jr_state state)``.
DONE_FN = CFUNCTYPE(None, c_void_p, c_int)
#: ``jr_stream_fn``: ``int32_t (*)(struct jr_ctx *ctx, void *arg, struct jr_chan *out)``.
STREAM_FN = CFUNCTYPE(c_int32, c_void_p, c_void_p, c_void_p)
#: ``jr_stage_fn``: ``int32_t (*)(struct jr_ctx *ctx, void *stage_arg, void *item,
#: void **out)``.
STAGE_FN = CFUNCTYPE(c_int32, c_void_p, c_void_p, c_void_p, c_void_p)

#: Every callback typedef of the header, by its C name.
CALLBACKS: dict[str, Any] = {
    "jr_thread_hook": THREAD_HOOK,
    "jr_free_fn": FREE_FN,
    "jr_job_fn": JOB_FN,
    "jr_done_fn": DONE_FN,
    "jr_stream_fn": STREAM_FN,
    "jr_stage_fn": STAGE_FN,
}

# --- option and stats structs -----------------------------------------------------------


class PoolOptions(Structure):
    """``jr_pool_options``: start from ``jr_pool_options_default()``."""

    _fields_ = [
        ("size", c_size_t),
        ("threads", c_size_t),
        ("queue_capacity", c_size_t),
        ("thread_name", c_char_p),
        ("on_thread_start", THREAD_HOOK),
        ("on_thread_stop", THREAD_HOOK),
        ("hook_arg", c_void_p),
    ]


class Stats(Structure):
    """``jr_stats``: a pool's counters; set ``size`` to ``sizeof(Stats)``."""

    _fields_ = [
        ("size", c_size_t),
        ("submitted", c_uint64),
        ("started", c_uint64),
        ("succeeded", c_uint64),
        ("failed", c_uint64),
        ("panicked", c_uint64),
        ("cancelled", c_uint64),
        ("cancelled_before_start", c_uint64),
        ("queued", c_uint64),
        ("running", c_uint64),
        ("steals", c_uint64),
        ("parks", c_uint64),
        ("unparks", c_uint64),
        ("threads", c_uint64),
        ("sleeping", c_uint64),
        ("spare_threads", c_uint64),
    ]


class SubmitOptions(Structure):
    """``jr_submit_options``: start from ``jr_submit_options_default()``."""

    _fields_ = [
        ("size", c_size_t),
        ("token", TokenP),
        ("sem", SemP),
        ("permits", c_uint64),
        ("group", GroupP),
        ("delay_ns", c_int64),
        ("timeout_ns", c_int64),
        ("nonblocking", c_int32),
        ("arg_free", FREE_FN),
        ("result_free", FREE_FN),
        ("name", c_char_p),
        ("fn_owns_arg", c_int32),
    ]


class GroupOptions(Structure):
    """``jr_group_options``: start from ``jr_group_options_default()``."""

    _fields_ = [
        ("size", c_size_t),
        ("limit", c_uint64),
        ("fail_fast", c_int32),
        ("token", TokenP),
        ("wait_only", c_int32),
    ]


class Waitable(Structure):
    """``jr_waitable``: a ``jr_wait_kind`` and the handle it names."""

    _fields_ = [
        ("kind", c_uint32),
        ("handle", c_void_p),
    ]


class PipelineOptions(Structure):
    """``jr_pipeline_options``: zero means default; ``jr_pipeline_options_init`` sets ``size``."""

    _fields_ = [
        ("size", c_size_t),
        ("max_in_flight", c_size_t),
        ("token", TokenP),
        ("item_free", FREE_FN),
    ]


#: Every struct of the header with fields, by its C name.
STRUCTS: dict[str, type[Structure]] = {
    "jr_pool_options": PoolOptions,
    "jr_stats": Stats,
    "jr_submit_options": SubmitOptions,
    "jr_group_options": GroupOptions,
    "jr_waitable": Waitable,
    "jr_pipeline_options": PipelineOptions,
}

#: Every opaque handle struct of the header, by its C name.
OPAQUE: dict[str, type[Structure]] = {
    "jr_ctx": jr_ctx,
    "jr_group": jr_group,
    "jr_job": jr_job,
    "jr_pool": jr_pool,
    "jr_sem": jr_sem,
    "jr_chan": jr_chan,
    "jr_stream": jr_stream,
    "jr_pipeline": jr_pipeline,
    "jr_token": jr_token,
}

# --- the function table: name -> (restype, argtypes) -------------------------------------

_status = c_int  # enum jr_status

#: ``restype`` and ``argtypes`` of every function of the header, in header order.
FUNCTIONS: dict[str, tuple[Any, list[Any]]] = {
    "jr_status_str": (c_char_p, [c_int]),
    "jr_version": (c_char_p, []),
    "jr_last_error_message": (c_char_p, []),
    "jr_pool_options_default": (PoolOptions, []),
    "jr_pool_new": (_status, [POINTER(PoolOptions), POINTER(PoolP)]),
    "jr_pool_global": (PoolP, []),
    "jr_pool_shutdown": (_status, [PoolP, c_uint32, c_int64]),
    "jr_pool_stats": (_status, [PoolP, POINTER(Stats)]),
    "jr_pool_free": (_status, [PoolP]),
    "jr_pool_add_thread_hooks": (_status, [PoolP, THREAD_HOOK, THREAD_HOOK, c_void_p]),
    "jr_pool_add_park_hook": (_status, [PoolP, THREAD_HOOK, c_void_p]),
    "jr_pool_remove_park_hook": (_status, [PoolP, THREAD_HOOK, c_void_p]),
    "jr_pool_remove_thread_hooks": (_status, [PoolP, THREAD_HOOK, THREAD_HOOK, c_void_p]),
    "jr_submit_options_default": (SubmitOptions, []),
    "jr_submit": (_status, [PoolP, JOB_FN, c_void_p, POINTER(SubmitOptions), POINTER(JobP)]),
    "jr_submit_every": (
        _status,
        [PoolP, c_int64, JOB_FN, c_void_p, POINTER(SubmitOptions), POINTER(JobP)],
    ),
    "jr_job_wait": (_status, [JobP, c_int64]),
    "jr_job_take_result": (_status, [JobP, POINTER(c_void_p)]),
    "jr_job_state": (_status, [JobP, POINTER(c_int)]),
    "jr_job_error_code": (_status, [JobP, POINTER(c_int32)]),
    "jr_job_error_message": (c_char_p, [JobP]),
    "jr_job_on_done": (_status, [JobP, DONE_FN, c_void_p]),
    "jr_job_cancel": (_status, [JobP]),
    "jr_job_free": (_status, [JobP]),
    "jr_ctx_is_cancelled": (c_bool, [CtxP]),
    "jr_ctx_token": (TokenP, [CtxP]),
    "jr_ctx_pool": (PoolP, [CtxP]),
    "jr_ctx_fail": (_status, [CtxP, c_char_p]),
    "jr_ctx_panic": (_status, [CtxP, c_char_p]),
    "jr_ctx_tick": (_status, [CtxP, POINTER(c_uint64)]),
    "jr_ctx_run_queued": (_status, [CtxP, JOB_FN, c_uint32, POINTER(c_uint32)]),
    "jr_token_new": (_status, [TokenP, POINTER(TokenP)]),
    "jr_token_set_deadline": (_status, [TokenP, c_int64]),
    "jr_token_cancel": (_status, [TokenP]),
    "jr_token_cancel_sync": (_status, [TokenP]),
    "jr_token_is_cancelled": (c_bool, [TokenP]),
    "jr_token_reason": (_status, [TokenP, POINTER(c_int)]),
    "jr_token_wait": (_status, [TokenP, c_int64]),
    "jr_token_free": (_status, [TokenP]),
    "jr_sem_new": (_status, [c_uint64, POINTER(SemP)]),
    "jr_sem_acquire": (_status, [SemP, c_uint64, c_int64, TokenP]),
    "jr_sem_try_acquire": (_status, [SemP, c_uint64]),
    "jr_sem_release": (_status, [SemP, c_uint64]),
    "jr_sem_available": (_status, [SemP, POINTER(c_uint64)]),
    "jr_sem_free": (_status, [SemP]),
    "jr_chan_new": (_status, [c_size_t, FREE_FN, POINTER(ChanP)]),
    "jr_chan_send": (_status, [ChanP, c_void_p, c_int64, TokenP]),
    "jr_chan_try_send": (_status, [ChanP, c_void_p]),
    "jr_chan_recv": (_status, [ChanP, POINTER(c_void_p), c_int64, TokenP]),
    "jr_chan_try_recv": (_status, [ChanP, POINTER(c_void_p)]),
    "jr_chan_close": (_status, [ChanP]),
    "jr_chan_len": (_status, [ChanP, POINTER(c_size_t)]),
    "jr_chan_free": (_status, [ChanP]),
    "jr_stream_new": (
        _status,
        [PoolP, STREAM_FN, c_void_p, c_size_t, FREE_FN, POINTER(SubmitOptions), POINTER(StreamP)],
    ),
    "jr_stream_next": (_status, [StreamP, POINTER(c_void_p), c_int64]),
    "jr_stream_cancel": (_status, [StreamP]),
    "jr_stream_error_code": (_status, [StreamP, POINTER(c_int32)]),
    "jr_stream_error_message": (c_char_p, [StreamP]),
    "jr_stream_free": (_status, [StreamP]),
    "jr_wait_any": (_status, [POINTER(Waitable), c_size_t, c_int64, POINTER(c_size_t)]),
    "jr_group_options_default": (GroupOptions, []),
    "jr_group_new": (_status, [PoolP, POINTER(GroupOptions), POINTER(GroupP)]),
    "jr_group_close": (_status, [GroupP]),
    "jr_group_cancel": (_status, [GroupP]),
    "jr_group_wait": (_status, [GroupP, c_int64]),
    "jr_group_first_error": (_status, [GroupP, POINTER(JobP)]),
    "jr_group_next": (_status, [GroupP, c_int64, POINTER(JobP)]),
    "jr_group_free": (_status, [GroupP]),
    "jr_pipeline_options_init": (_status, [POINTER(PipelineOptions), c_size_t]),
    "jr_pipeline_new": (_status, [PoolP, POINTER(PipelineOptions), POINTER(PipelineP)]),
    "jr_pipeline_add_stage": (_status, [PipelineP, STAGE_FN, c_void_p, c_size_t, c_int32]),
    "jr_pipeline_push": (_status, [PipelineP, c_void_p, c_int64]),
    "jr_pipeline_close_input": (_status, [PipelineP]),
    "jr_pipeline_next": (_status, [PipelineP, POINTER(c_void_p), c_int64]),
    "jr_pipeline_cancel": (_status, [PipelineP]),
    "jr_pipeline_error_code": (_status, [PipelineP, POINTER(c_int32)]),
    "jr_pipeline_error_message": (c_char_p, [PipelineP]),
    "jr_pipeline_free": (_status, [PipelineP]),
}

#: Functions that never block: also declared on :data:`fast` (GIL kept during the call).
NONBLOCKING: frozenset[str] = frozenset(
    {
        "jr_status_str",
        "jr_version",
        "jr_last_error_message",
        "jr_pool_options_default",
        "jr_pool_stats",
        "jr_submit_options_default",
        "jr_submit",  # only ever called with nonblocking = 1 through `fast`
        "jr_job_take_result",
        "jr_job_state",
        "jr_job_error_code",
        "jr_job_error_message",
        "jr_job_free",
        "jr_ctx_is_cancelled",
        "jr_ctx_token",
        "jr_ctx_pool",
        "jr_ctx_fail",
        "jr_ctx_panic",
        "jr_ctx_tick",
        "jr_token_is_cancelled",
        "jr_token_reason",
        "jr_sem_try_acquire",
        "jr_sem_available",
        "jr_group_options_default",
    }
)


# --- loading ---------------------------------------------------------------------------

_FIX = (
    "Install the package with `pip install ./bindings/python` (it builds and bundles the "
    "library with cargo), or build it with `cargo build --release` and set "
    "JOBRUNNER_LIBRARY=/path/to/target/release/libjobrunner.so."
)


def _candidates() -> list[tuple[str, Path]]:
    """The places to look for the library, in order, each with where the idea came from."""
    found: list[tuple[str, Path]] = []
    env = os.environ.get("JOBRUNNER_LIBRARY")
    if env:
        found.append(("JOBRUNNER_LIBRARY", Path(env)))
    found.append(("bundled copy", Path(__file__).resolve().parent / BUNDLED_NAME))
    return found


def _load() -> tuple[ctypes.CDLL, ctypes.PyDLL, Path]:
    """Load the first library that exists and has the expected major version.

    Raises:
        ImportError: nothing found, not loadable, or of another major version; the
            message lists every place tried and how to fix it.
    """
    tried: list[str] = []
    env_set = bool(os.environ.get("JOBRUNNER_LIBRARY"))
    for origin, path in _candidates():
        if not path.exists():
            tried.append(f"{origin}: {path} (no such file)")
            if origin == "JOBRUNNER_LIBRARY":
                break  # an explicit override that is wrong must not be papered over
            continue
        try:
            cdll = ctypes.CDLL(str(path))
            pydll = ctypes.PyDLL(str(path))
        except OSError as exc:
            tried.append(f"{origin}: {path} (could not load: {exc})")
            if origin == "JOBRUNNER_LIBRARY":
                break
            continue
        cdll.jr_version.restype = c_char_p
        cdll.jr_version.argtypes = []
        version = (cdll.jr_version() or b"").decode()
        major = version.split(".", 1)[0]
        if major != str(EXPECTED_MAJOR):
            tried.append(
                f"{origin}: {path} (version {version!r}, this package needs "
                f"{EXPECTED_MAJOR}.x)"
            )
            if origin == "JOBRUNNER_LIBRARY":
                break
            continue
        return cdll, pydll, path
    hint = " (JOBRUNNER_LIBRARY is set: fix or unset it)" if env_set else ""
    raise ImportError(
        "jobrunner: could not load libjobrunner" + hint + ". Tried:\n  - "
        + "\n  - ".join(tried)
        + "\n"
        + _FIX
    )


def _declare(handle: ctypes.CDLL, names: Any) -> None:
    """Set ``restype``/``argtypes`` of each named function on ``handle``."""
    for name in names:
        restype, argtypes = FUNCTIONS[name]
        func = getattr(handle, name)
        func.restype = restype
        func.argtypes = argtypes


lib, fast, LIBRARY_PATH = _load()
_declare(lib, FUNCTIONS)
_declare(fast, NONBLOCKING)

# --- the job path: handles as plain addresses ------------------------------------------
# On the path every job takes (submit, run, free), a typed POINTER object per handle costs
# an allocation the cyclic GC then tracks, and its argument check costs more than the C
# call it guards. These few functions are declared a second time with every pointer a
# ``c_void_p``, so handles travel as ints (a test checks each against the typed table).
# Use them only with addresses that came from the library.

#: Functions redeclared on :data:`fast` with pointers as addresses, by the name used here.
ADDRESS_FUNCTIONS: dict[str, str] = {
    "submit_addr": "jr_submit",  # nonblocking only, as on `fast`
    "job_free_addr": "jr_job_free",
    "job_on_done_addr": "jr_job_on_done",
    "job_take_result_addr": "jr_job_take_result",
    "job_error_code_addr": "jr_job_error_code",  # a native job's "has it ended?" look
    "job_wait_addr": "jr_job_wait",  # on `lib`: it blocks
    "ctx_is_cancelled_raw": "jr_ctx_is_cancelled",
    "ctx_run_queued_raw": "jr_ctx_run_queued",  # GIL kept: see below
    "chan_send_addr": "jr_chan_send",  # on `lib`: it blocks (a stream's producer)
    "pipeline_push_addr": "jr_pipeline_push",  # on `lib`: it blocks (a pipeline's feeder)
    # On `fast` (GIL kept), only ever called with no wait: the first try of each item.
    "chan_try_send_fast": "jr_chan_try_send",
    "stream_next_addr": "jr_stream_next",  # on `lib`: it may wait (see below)
    "stream_next_fast": "jr_stream_next",  # only when an item is known to be buffered
    "pipeline_push_fast": "jr_pipeline_push",
    "pipeline_next_fast": "jr_pipeline_next",
}


def _address_version(name: str, handle: ctypes.CDLL | None = None) -> Any:
    restype, argtypes = FUNCTIONS[name]
    # A new function object: the typed `fast.<name>` / `lib.<name>` is unchanged.
    func = (handle or fast)[name]
    func.restype = restype
    func.argtypes = [c_void_p if _is_pointer(t) else t for t in argtypes]
    return func


def _is_pointer(ctype: Any) -> bool:
    """A handle, struct or function pointer type (not ``char *``, a string)."""
    return ctype is c_void_p or issubclass(ctype, (ctypes._Pointer, ctypes._CFuncPtr))


#: ``jr_submit(pool, fn, arg, options, out)`` with every pointer an address.
submit_addr = _address_version("jr_submit")
#: ``jr_job_free(job)`` with the job an address.
job_free_addr = _address_version("jr_job_free")
#: ``jr_job_on_done(job, done, arg)`` with pointers as addresses, on :data:`lib`: it
#: never blocks, but releasing the GIL around it lets in a worker that waits for the GIL
#: to complete an earlier native job's future, rather than leave it stalled until the
#: switch interval (5 ms) forces the submitting thread to yield.
job_on_done_addr = _address_version("jr_job_on_done", lib)
#: ``jr_job_wait(job, timeout_ns)`` with the job an address, on :data:`lib` (GIL released).
job_wait_addr = _address_version("jr_job_wait", lib)
#: ``jr_job_take_result(job, out)`` with pointers as addresses (does not wait).
job_take_result_addr = _address_version("jr_job_take_result")
#: ``jr_job_error_code(job, out)`` with pointers as addresses (does not wait): its status
#: says whether the job has ended, without moving the result out as a take would.
job_error_code_addr = _address_version("jr_job_error_code")
#: ``jr_ctx_is_cancelled`` taking the context as a plain address (the ``c_void_p`` the job
#: trampoline receives).
ctx_is_cancelled_raw = _address_version("jr_ctx_is_cancelled")
#: ``jr_ctx_run_queued(ctx, fn, max, ran)`` with pointers as addresses, on :data:`fast`
#: (GIL kept, though it runs jobs): only ever called with the plain jobs' trampoline as
#: ``fn``, whose jobs would take the GIL anyway; keeping it is the point (see _jobs.py).
ctx_run_queued_raw = _address_version("jr_ctx_run_queued")
#: ``jr_chan_send(chan, item, timeout_ns, token)`` with pointers as addresses, on
#: :data:`lib` (GIL released while it waits for room): a stream producer's send of each
#: item, on the lent channel its ``jr_stream_fn`` receives as an address.
chan_send_addr = _address_version("jr_chan_send", lib)
#: ``jr_pipeline_push(pipeline, item, timeout_ns)`` with pointers as addresses, on
#: :data:`lib` (GIL released while it waits for room): a pipeline feeder's push.
pipeline_push_addr = _address_version("jr_pipeline_push", lib)
# A stream's producer and a pipeline's feeder and reader try each send, push and read
# first with no wait and the GIL kept (on `fast`), and release the GIL only to wait: a
# producer and a reader that both keep up then hand the GIL over at the interpreter's
# switch interval, not at every item. Not `jr_stream_next`: even with timeout 0 it waits
# for the producer job to return once the producer's side is closed and drained (see
# the README's Limits), and that producer needs the GIL to return.
#: ``jr_chan_try_send(chan, item)`` with pointers as addresses (GIL kept; never waits).
chan_try_send_fast = _address_version("jr_chan_try_send")
#: ``jr_stream_next(stream, item, timeout_ns)`` with pointers as addresses, on :data:`lib`.
stream_next_addr = _address_version("jr_stream_next", lib)
#: ``jr_stream_next(stream, item, 0)`` with pointers as addresses, GIL kept: only when the
#: binding knows an item is buffered for this reader (``_stream._Producer`` counts), so
#: that the call takes it and returns.
stream_next_fast = _address_version("jr_stream_next")
#: ``jr_pipeline_push(pipeline, item, 0)`` with pointers as addresses (GIL kept; timeout 0
#: only, and only on a pool without a queue bound: a push or a read may submit stage jobs).
pipeline_push_fast = _address_version("jr_pipeline_push")
#: ``jr_pipeline_next(pipeline, item, 0)`` with pointers as addresses (GIL kept; as above).
pipeline_next_fast = _address_version("jr_pipeline_next")


def address(ptr: Any) -> int:
    """The address a typed handle (or a ctypes function pointer) points to (0: NULL)."""
    return ctypes.cast(ptr, c_void_p).value or 0


def job_ptr(addr: int) -> Any:
    """A typed ``jr_job *`` (:data:`JobP`) for a job handle's address, for the typed calls."""
    return ctypes.cast(addr, JobP)

#: The version string of the loaded library, e.g. ``"0.1.0"``.
LIBRARY_VERSION: str = lib.jr_version().decode()


def status_str(status: int) -> str:
    """``jr_status_str``: the name and meaning of a status."""
    return fast.jr_status_str(status).decode()


def last_error_message() -> str:
    """``jr_last_error_message``: the detail of the last failed call on this thread."""
    return (fast.jr_last_error_message() or b"").decode(errors="replace")


# --- the CPython C API the worker hooks need ---------------------------------------------

#: ``PyGILState_Ensure``/``PyGILState_Release`` (GIL held: ``pythonapi`` is a PyDLL).
PyGILState_Ensure = ctypes.pythonapi.PyGILState_Ensure
PyGILState_Ensure.restype = c_int
PyGILState_Ensure.argtypes = []
PyGILState_Release = ctypes.pythonapi.PyGILState_Release
PyGILState_Release.restype = None
PyGILState_Release.argtypes = [c_int]
