"""How a Python job runs: the tasks tables, the C callbacks, futures, the job context.

Every Python job is submitted with one of two C job functions, module-level ctypes
callbacks that live as long as the process. Their ``arg`` is an integer key into a table
that holds the callable, its arguments and its :class:`Future`; the trampoline runs the
callable on the worker and completes the future itself.

* Plain jobs (``pool.submit`` on a pool made here, no options: the hot path) run through
  :data:`_PLAIN_FN`. Their entry in :data:`_plain` is a tuple keyed by ``id(future)``,
  removed when the job starts, or by ``Future.cancel``/``Pool.shutdown`` for the ones
  that never run (on a pool of ours only this binding can cancel them).
* Jobs that may end without running through no act of this binding (a token, a
  fail-fast group, a delay, the shared pool) and periodic jobs run through
  :data:`_JOB_FN`, with a :class:`_Task` in :data:`_tasks`. They are submitted with
  ``arg_free`` (:data:`_ARG_FREE`), which the core calls exactly once when the job has
  ended, ran or not: it removes the task and ends the future cancelled if the job never
  ran.

Per plain job the binding makes one object the cyclic GC tracks (the future) plus a
short-lived tuple, and passes handles to C as plain addresses (ints): with 100,000
futures alive, every tracked object per job costs in each GC pass (README.md, Performance).

Worker threads of the pools made here keep one Python thread state for their whole life:
the ``on_thread_start`` hook calls ``PyGILState_Ensure`` once, so the state survives the
``Ensure``/``Release`` pair ctypes wraps around each callback, and ``on_thread_stop``
releases it. Without that, ctypes would create and destroy a thread state per job.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import itertools
import sys
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures._base import (
    CANCELLED,
    CANCELLED_AND_NOTIFIED,
    FINISHED,
    PENDING,
    RUNNING,
)
from typing import TYPE_CHECKING, Any, TypeVar

from . import _native
from ._errors import Cancelled, NativeJobError, check, to_ns, wait_sliced
from ._native import FREE_FN, JOB_FN, THREAD_HOOK, CtxP, Status, fast, lib
from ._sync import CancelToken

if TYPE_CHECKING:
    from ._pool import Pool

__all__ = ["Future", "NativeFuture", "JobContext", "current"]

T = TypeVar("T")

_OK = Status.JR_OK


# --- the tasks table and the callbacks -------------------------------------------------


class _Task:
    """A managed or periodic Python job: what to call, and the future it completes.
    Submitted with ``arg_free``, which removes the task when the job ends."""

    __slots__ = ("fn", "args", "kwargs", "future", "pool", "periodic", "_ctx", "_context")

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        future: Future[Any],
        pool: Pool,
        periodic: bool,
    ) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.future = future
        self.pool = pool
        self.periodic = periodic
        #: While it runs: the ``jr_ctx`` address, and the JobContext if one was asked for
        #: (the names a :class:`Future` of a plain job uses for the same: see current()).
        self._ctx: int | None = None
        self._context: JobContext | None = None


#: Managed and periodic jobs submitted and not yet ended, by the key passed to C as the
#: job's ``arg``.
_tasks: dict[int, _Task] = {}
_keys = itertools.count(1)
#: Plain jobs submitted and not yet started: ``id(future)`` (the job's ``arg``) to
#: ``(future, fn, args, kwargs, pool)``.
_plain: dict[int, tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any], Pool]] = {}


class _Local(threading.local):
    #: The job this thread runs: its :class:`_Task`, or its :class:`Future` for a plain
    #: job (None between jobs). Both have ``_ctx`` and ``_context``.
    job: Any = None
    #: True while a plain job on this thread runs a batch (``jr_ctx_run_queued``).
    batching = False


_local = _Local()
#: Set by the atexit hook: no more submits, and the trampoline runs no more Python jobs.
_exiting = False
#: Notified when a managed job's ``arg_free`` runs once ``_exiting`` is set: the atexit
#: hook waits on it for the last callbacks.
_ended = threading.Condition()
#: One entry per call of :func:`_arg_freed` or :func:`_native_done` in progress: they
#: complete futures, whose done callbacks run user code; the atexit hook waits until
#: none runs (the tables they pop from are empty before they return).
_in_callback: list[None] = []
_is_finalizing = sys.is_finalizing
#: The ``PyGILState_STATE`` each worker thread got from its start hook, by thread id.
_gil_states: dict[int, int] = {}


def _run_plain(ctx: int | None, key: int | None, _result: int | None) -> int:
    """The C job function of plain jobs (``jr_job_fn``): the hot path, kept short."""
    entry = _plain.pop(key, None)  # type: ignore[arg-type]
    if entry is None:
        return 1
    fut, fn, args, kwargs, _pool = entry
    if _exiting or _is_finalizing():
        fut._end_cancelled()
        return 1  # nonzero after the atexit cancel: the job ends cancelled
    if fut._state != PENDING:
        return 1
    # No lock needed: Future.cancel() cannot move a job the core has started out of
    # PENDING (jr_job_cancel says JR_E_CLOSED), and nothing else touches the state.
    fut._state = RUNNING
    fut._ctx = ctx
    prev = _local.job  # a job run inline by a wait inside a job
    _local.job = fut
    try:
        value = fn(*args, **kwargs) if kwargs else fn(*args)  # `**{}` would copy a dict
    except BaseException as exc:  # noqa: BLE001 - every outcome goes to the future
        return _job_raised(ctx, fut, False, exc)
    finally:
        _local.job = prev
        if fut._context is not None:
            fut._context._ctx = None  # the context is only valid during the call
            fut._context = None
    # Future._finish, inline (see "Completing a future without its lock").
    fut._result = value
    if fut._c is None:
        fut._state = FINISHED
    else:
        fut._finish_locked()
    if prev is None and not _local.batching and not _exiting:
        _run_batch(ctx)
    return 0


#: The most plain jobs one plain job runs after its own (see :func:`_run_batch`).
#: Measured (the first bench.py, 100,000 trivial jobs, quiet 2-CPU machine, in-process
#: alternation): 16 ran at 8.2-8.4 µs per job, 32 at 7.6-8.7, 64 at 7.1-7.4, 128 at
#: 7.2-7.5, none at 13.7. A batch of 64 trivial jobs holds the GIL ~0.1 ms, far under
#: the switch interval (5 ms) at which the interpreter would hand it to a waiting thread
#: anyway.
_BATCH = 64


def _run_batch(ctx: int | None) -> None:
    """Run, on this worker and without letting go of the GIL, the plain jobs that are
    ready now, up to :data:`_BATCH`: each plain job that a worker starts takes the GIL
    from C and gives it back when it returns, and with the submitting thread and the
    other workers all wanting it, the GIL changes hands (a futex handoff) per job.
    ``jr_ctx_run_queued`` runs the next ready jobs of the plain trampoline, each a whole
    C job (its start, cancellation, end), from inside this one: the GIL is taken once per
    batch. It stops at a job of another function. Only from the outermost job of the
    thread (not one run inline by a wait inside a job, which is waited for, nor one of
    the batch): the batch runs on this job's stack, and this job ends after it. The
    main thread is not starved: the interpreter still hands the GIL over at its switch
    interval while the batch runs Python code."""
    _local.batching = True
    try:
        _run_queued(ctx, _PLAIN_FN_ADDR, _BATCH, None)
    finally:
        _local.batching = False


def _run_job(ctx: int | None, key: int | None, _result: int | None) -> int:
    """The C job function of managed and periodic Python jobs (``jr_job_fn``)."""
    task = _tasks.get(key)  # type: ignore[arg-type]
    if task is None:
        return 1
    if _exiting or _is_finalizing():
        return 1  # nonzero after the atexit cancel: the job ends cancelled
    fut = task.future
    if _native.ctx_is_cancelled_raw(ctx):
        # Asked to stop before it started (its token, a fail-fast sibling): the core
        # may start a job whose cancellation is still being propagated; do not run it.
        if not task.periodic:
            fut._end_cancelled()
        return 1
    if task.periodic:
        pass
    elif fut._state == PENDING:
        # No lock needed: Future.cancel() cannot move a job the core has started out of
        # PENDING (jr_job_cancel says JR_E_CLOSED), and nothing else touches the state.
        fut._state = RUNNING
    else:
        return 1
    prev = _local.job  # a job run inline by a wait inside a job
    task._ctx = ctx
    _local.job = task
    try:
        value = task.fn(*task.args, **task.kwargs)
    except BaseException as exc:  # noqa: BLE001 - every outcome goes to the future
        return _job_raised(ctx, fut, task.periodic, exc)
    finally:
        _local.job = prev
        if task._context is not None:
            task._context._ctx = None  # the context is only valid during the call
            task._context = None
    if not task.periodic:
        fut._finish(value)
    return 0


def _job_raised(ctx: int | None, fut: Future[Any], periodic: bool, exc: BaseException) -> int:
    """A Python job raised ``exc``: report it to the future and to the core."""
    cptr = ctypes.cast(ctx, CtxP)
    if isinstance(exc, concurrent.futures.CancelledError) and fast.jr_ctx_is_cancelled(cptr):
        if not periodic:
            fut._end_cancelled()
        return 1  # nonzero after being asked to stop: the core ends the job Cancelled
    message = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    fast.jr_ctx_panic(cptr, message.encode("utf-8", "replace") or b"exception")
    if periodic:
        fut.last_exception = exc
    else:
        fut.set_exception(exc)
    return 1


def _arg_freed(key: int | None) -> None:
    """``arg_free`` of every Python job: the job has ended, ran or not."""
    _in_callback.append(None)
    try:
        task = _tasks.pop(key, None)  # type: ignore[arg-type]
        if task is not None and task.future._state != FINISHED:
            task.future._end_cancelled()  # it never ran (or, periodic, it has stopped)
    finally:
        _in_callback.pop()
        if _exiting:
            with _ended:
                _ended.notify_all()


def _thread_start(_arg: int | None, _index: int) -> None:
    """``on_thread_start``: keep a thread state for the worker's whole life."""
    _gil_states[threading.get_ident()] = _native.PyGILState_Ensure()


def _thread_stop(_arg: int | None, _index: int) -> None:
    """``on_thread_stop``: drop the thread state taken by :func:`_thread_start`."""
    state = _gil_states.pop(threading.get_ident(), None)
    if state is not None:
        _native.PyGILState_Release(state)


# Kept alive for the life of the process: C may call them until every pool has ended.
_PLAIN_FN = JOB_FN(_run_plain)
_PLAIN_FN_ADDR = _native.address(_PLAIN_FN)
_run_queued = _native.ctx_run_queued_raw
_JOB_FN = JOB_FN(_run_job)
_JOB_FN_ADDR = _native.address(_JOB_FN)
_ARG_FREE = FREE_FN(_arg_freed)
_THREAD_START = THREAD_HOOK(_thread_start)
_THREAD_STOP = THREAD_HOOK(_thread_stop)


# --- futures ------------------------------------------------------------------------------


_DONE = frozenset({FINISHED, CANCELLED, CANCELLED_AND_NOTIFIED})
#: Makes a future's condition at most once (see ``Future._condition``).
_condition_made = threading.Lock()


class Future(concurrent.futures.Future[T]):
    """A :class:`concurrent.futures.Future` bound to a C job.

    :meth:`cancel` cancels the C job: True if it had not started (it will never run);
    False for a running job, whose token is cancelled all the same, so a cooperative job
    (``jobrunner.current().check()``) stops. Waiting for :meth:`result` from inside a job
    lets the core run the awaited job inline if it has not started, so nested
    submit-and-wait does not deadlock even on one worker.
    """

    # The base class's __init__ makes a Condition (an RLock and four bound methods) and
    # two lists per future; here every field starts as a class-level default and is made
    # on first use, so making a future runs no Python code. Most futures never get a
    # waiter or a callback, and fewer objects per job is less work for the cyclic GC.
    # (Class-level defaults, not ``__dict__`` look-ups, which would make CPython
    # materialise each instance's attribute dict.)
    #
    # Completing a future without its lock
    # ------------------------------------
    # Everything that waits for a future, or registers to hear of its end (``result``,
    # ``concurrent.futures.wait``/``as_completed``, ``add_done_callback``), does so under
    # ``self._condition``, which makes the condition (``_c``) first. The job path
    # (:meth:`_finish`, :func:`_run_plain`) writes the result, then looks at ``_c``: if
    # there is none, it writes the state FINISHED, and anyone who comes later takes the
    # lock and sees FINISHED. If there is one, it writes the state under the lock, as
    # set_result() does, and wakes the waiters. The look and the lock-free write are
    # one step: no bytecode between them lets the GIL go (no call, no backward jump).
    # (Writing the state first and then looking, as this once did, let a waiter that
    # made ``_c`` just before count the future twice: FINISHED under its lock, and again
    # when told; ``concurrent.futures.wait`` then returned with futures not done.)
    __init__ = object.__init__  # type: ignore[assignment]
    _state = PENDING
    _result: Any = None
    _exception: BaseException | None = None
    _c: threading.Condition | None = None
    _w: list[Any] | None = None
    _cb: list[Any] | None = None
    #: The ``jr_job *`` handle's address (0: none yet), freed with the future.
    _job: int = 0
    #: While the job runs (plain jobs): the ``jr_ctx`` address and the JobContext, if one
    #: was asked for (see :func:`current`).
    _ctx: int | None = None
    _context: JobContext | None = None
    #: For a periodic job: the exception of the last run that raised.
    last_exception: BaseException | None = None

    @property  # type: ignore[override]
    def _condition(self) -> threading.Condition:
        """The future's condition, made on first use (once: two threads may ask)."""
        cond = self._c
        if cond is None:
            with _condition_made:
                cond = self._c
                if cond is None:
                    cond = self._c = threading.Condition()
        return cond

    @property
    def _waiters(self) -> list[Any]:
        lst = self._w
        if lst is None:
            lst = self._w = []
        return lst

    @property
    def _done_callbacks(self) -> list[Any]:
        lst = self._cb
        if lst is None:
            lst = self._cb = []
        return lst

    @_done_callbacks.setter
    def _done_callbacks(self, value: list[Any]) -> None:
        self._cb = value

    def _finish(self, value: Any) -> None:
        """set_result() for a RUNNING (or, for a native job, PENDING) future, on the job
        path: without the lock unless someone waits or listens (see above)."""
        self._result = value
        if self._c is None:
            self._state = FINISHED
        else:
            self._finish_locked()

    def _finish_locked(self) -> None:
        """End a future that has a condition FINISHED (its ``_result`` set), as
        set_result() does: the state under the lock, then the waiters and callbacks."""
        cond = self._c
        assert cond is not None
        with cond:
            self._state = FINISHED
            waiters = self._w
            if waiters:
                for waiter in waiters:
                    waiter.add_result(self)
            cond.notify_all()
        if self._cb:
            self._invoke_callbacks()

    def done(self) -> bool:
        return self._state in _DONE  # one read: no lock needed (nor a condition made)

    def running(self) -> bool:
        return self._state == RUNNING

    def cancelled(self) -> bool:
        return self._state in (CANCELLED, CANCELLED_AND_NOTIFIED)

    def _wait(self, timeout: float | None) -> None:
        """Wait until done or ``timeout`` seconds pass.

        First in C, on the job (GIL released; inside a job the core may run the awaited
        job inline or help): a Python job completes its future before its C job ends,
        so this is usually the only wait, and no Condition is made. Otherwise (a future
        ended by a callback that runs after the job, or one with no job), on the
        future's condition.
        """
        if self._state in _DONE:
            return
        end = None if timeout is None else time.monotonic() + timeout
        job = self._job
        if job:
            _wait_for_job(job, timeout)
            if self._state in _DONE:
                return
        self._wait_on_condition(end)

    def _wait_on_condition(self, end: float | None) -> None:
        """Wait on the future's condition until done or ``end`` (monotonic) passes."""
        cond = self._condition
        with cond:
            while self._state not in _DONE:
                if end is None:
                    cond.wait()
                else:
                    remaining = end - time.monotonic()
                    if remaining <= 0:
                        return
                    cond.wait(remaining)

    def cancel(self) -> bool:
        state = self._state
        if state == FINISHED:
            return False
        if state in (CANCELLED, CANCELLED_AND_NOTIFIED):
            return True
        job = self._job
        if not job:
            return super().cancel()
        if lib.jr_job_cancel(_native.job_ptr(job)) == _OK:
            if _plain.pop(id(self), None) is not None:
                self._end_cancelled()  # a plain job: nothing else will tell the future
            else:
                super().cancel()  # arg_free (or the native on_done) notifies the waiters
            return True
        return False

    def result(self, timeout: float | None = None) -> T:
        # Written by the worker before _state under the condition; under the GIL a
        # FINISHED state read here means the result is there.
        if self._state != FINISHED:
            self._wait(timeout)
        if self._state == FINISHED and self._exception is None:
            return self._result  # type: ignore[no-any-return]
        return super().result(0)  # raises: the exception, cancelled, or timed out

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if self._state != FINISHED:
            self._wait(timeout)
        if self._state == FINISHED:
            return self._exception
        return super().exception(0)  # raises: cancelled, or timed out

    def _end_cancelled(self) -> None:
        """End the future cancelled, from any state but FINISHED (a running job that
        stopped when asked ends cancelled, which the base class cannot express).

        Without a condition, nobody waits or listens: the state is written without one,
        as :meth:`_finish` does (see "Completing a future without its lock"), so that
        cancelling 100,000 queued jobs does not make 100,000 conditions."""
        was = self._state
        if was in (FINISHED, CANCELLED_AND_NOTIFIED):
            return
        if self._c is None:
            self._state = CANCELLED_AND_NOTIFIED
            return
        cond = self._c
        with cond:
            was = self._state
            if was in (FINISHED, CANCELLED_AND_NOTIFIED):
                return
            self._state = CANCELLED_AND_NOTIFIED
            for waiter in self._waiters:
                waiter.add_cancelled(self)
            cond.notify_all()
        if was != CANCELLED:  # cancel() already ran the callbacks
            self._invoke_callbacks()

    def __del__(self) -> None:
        job = self._job
        if job:
            self._job = 0
            try:
                _job_free_addr(job)
            except Exception:  # pragma: no cover - interpreter teardown
                pass


_job_free_addr = _native.job_free_addr
_job_wait_addr = _native.job_wait_addr
_TIMEOUT = Status.JR_E_TIMEOUT


def _wait_for_job(job: int, timeout: float | None) -> int:
    """``jr_job_wait`` on a job handle's address, GIL released: at once inside a job (the
    core may run the job inline or help), else in slices, so that Ctrl-C interrupts it
    in the main thread. Returns the status (``JR_E_TIMEOUT``: not ended)."""
    if _local.job is not None:
        return _job_wait_addr(job, to_ns(timeout))  # type: ignore[no-any-return]
    return wait_sliced(lambda ns: _job_wait_addr(job, ns), timeout)


# --- native jobs: completing their futures --------------------------------------------------
#
# A native job (``Pool.submit_native``) runs C code on a worker without the GIL. Its end
# used to be reported by a ``jr_job_on_done`` callback installed at every submit: a
# Python callback on the worker, which had to take the GIL from the submitting thread
# at every job end, so the workers queued for the GIL (and the submitting thread spent
# its time handing it over) instead of running jobs. Now nothing in Python runs on the
# worker unless someone needs to hear of the end as it happens: a future is completed
# by whoever first sees its job ended and pops its entry from ``_native_pending``:
#
# * a caller of ``result``/``exception`` (after ``jr_job_wait``), ``done``,
#   ``cancelled`` or ``cancel`` (a non-blocking look at the job);
# * the done callback, installed (``NativeFuture._watch``) only when the future's
#   condition is made, which every waiter and listener of ``concurrent.futures`` does
#   first (``wait``, ``as_completed``, ``add_done_callback``, so ``asyncio.wrap_future``
#   too); and at submit on the process-wide pool, whose jobs C code elsewhere may end
#   (a shutdown) and which exit must find (``Pool._settle_own_jobs``).
#
# A watched future stays in ``_native_watched`` until its callback has run, so its
# ``id`` (the key of its entry) is not reused while a callback may still pop it. A
# future dropped before anyone completed it hands its entry (which keeps the job's
# function and ``arg`` alive) to ``_native_orphans`` until its job ends.

#: Native futures not yet completed: ``id(future)`` to ``(pool, cfunc, arg, watched)``,
#: which keeps cfunc and arg alive until the job ends. Dict operations are atomic under
#: the GIL: whoever pops the entry completes the future.
_native_pending: dict[int, tuple[Any, Any, Any, bool]] = {}
#: Futures whose done callback is installed, by the callback's ``arg`` (a key from
#: ``_keys``), until the callback runs.
_native_watched: dict[int, NativeFuture] = {}
#: The entries of futures dropped before their job ended, by the done callback's key,
#: until it runs.
_native_orphans: dict[int, tuple[Any, Any, Any, bool]] = {}


class _Probe(threading.local):
    """A per-thread ``int32_t`` for ``jr_job_error_code``, which :func:`_has_ended` calls
    only for its status: the value written there is never read."""

    def __init__(self) -> None:
        self.box = ctypes.c_int32()
        self.addr = ctypes.addressof(self.box)


_probe = _Probe()
_job_error_code_addr = _native.job_error_code_addr


def _has_ended(job: int) -> bool:
    """Whether the job of this handle address has ended (a look: never waits, and moves
    nothing out of the handle, unlike ``jr_job_take_result``)."""
    return _job_error_code_addr(job, _probe.addr) != _TIMEOUT  # type: ignore[no-any-return]


class NativeFuture(Future[int]):
    """The future of a native job: completed by whoever first sees the job ended (see
    "native jobs" above), not by a callback at every job end."""

    @property  # type: ignore[override]
    def _condition(self) -> threading.Condition:
        """The condition, made on first use; whoever makes it also installs the done
        callback, since everyone who waits on it or registers under it expects the job's
        end to notify it."""
        cond = self._c
        if cond is None:
            with _condition_made:
                cond = self._c
                made = cond is None
                if made:
                    cond = self._c = threading.Condition()
            if made:
                self._watch()
        return cond  # type: ignore[return-value]

    def _watch(self) -> None:
        """Install the done callback, unless the future is complete or watched already.
        It may run at once, on this thread, if the job has ended."""
        key = id(self)
        # Popped, not read, while it is marked: an entry read, then written back after
        # another thread popped it and completed the future, would be completed twice.
        entry = _native_pending.pop(key, None)
        if entry is None:
            return
        if entry[3]:
            _native_pending[key] = entry
            return
        _native_pending[key] = (entry[0], entry[1], entry[2], True)
        tag = next(_keys)
        _native_watched[tag] = self
        status = _job_on_done_addr(self._job, _NATIVE_DONE_ADDR, tag)
        if status != _OK:
            _native_watched.pop(tag, None)
            check(status, "jr_job_on_done")

    def _try_complete(self) -> None:
        """Complete the future now if its job has ended and nobody else is completing
        it, in one call (``jr_job_take_result``) made with the entry popped: whoever pops
        it completes the future. If the job has not ended the entry goes back; a done
        callback (installed, or being installed by the condition's maker) may have found
        it missing meanwhile, hence the second look when there is a condition."""
        key = id(self)
        entry = _native_pending.pop(key, None)
        if entry is None:
            return  # complete, or being completed by another thread
        out = _c_void_p()
        status = _job_take_result_addr(self._job, _addressof(out))
        if status != _TIMEOUT:
            _end_native(self, status, out.value)
            return
        _native_pending[key] = entry
        if self._c is not None:
            self._watch()  # its maker's _watch may have found no entry, and installed none
            if _has_ended(self._job) and _native_pending.pop(key, None) is not None:
                _complete_native(self)  # its callback ran while the entry was out

    def done(self) -> bool:
        if self._state in _DONE:
            return True
        self._try_complete()
        return self._state in _DONE

    def cancelled(self) -> bool:
        if self._state not in _DONE:
            self._try_complete()
        return self._state in (CANCELLED, CANCELLED_AND_NOTIFIED)

    def _wait(self, timeout: float | None) -> None:
        """Wait until done or ``timeout`` seconds pass: a look at the job first (the
        usual case once the workers are ahead: no wait, the GIL kept), then
        ``jr_job_wait``. On the future's condition only when another thread popped the
        entry and is completing the future."""
        if self._state in _DONE:
            return
        end = None if timeout is None else time.monotonic() + timeout
        self._try_complete()
        if self._state in _DONE:
            return
        key = id(self)
        if key in _native_pending:
            if _wait_for_job(self._job, timeout) == _TIMEOUT:
                return
            self._try_complete()
        if self._state not in _DONE:
            self._wait_on_condition(end)

    def cancel(self) -> bool:
        if self.done():  # ended, perhaps cancelled by someone else (a shutdown)
            return self.cancelled()
        if lib.jr_job_cancel(_native.job_ptr(self._job)) != _OK:
            return self.cancelled()  # running or ended
        # Cancelled before it ran: end the future unless the done callback (run by
        # jr_job_cancel on this thread) already has.
        if _native_pending.pop(id(self), None) is not None:
            self._end_cancelled()
        return True

    def __del__(self) -> None:
        job = self._job
        if not job:
            return
        self._job = 0
        try:
            entry = _native_pending.pop(id(self), None)
            if entry is not None and not _has_ended(job) and not _is_finalizing():
                # Nobody completed it, and the job runs on: keep its function and arg
                # until it ends.
                tag = next(_keys)
                _native_orphans[tag] = entry
                if _job_on_done_addr(job, _NATIVE_DONE_ADDR, tag) != _OK:
                    _native_orphans.pop(tag, None)  # pragma: no cover - a valid handle
            _job_free_addr(job)
        except Exception:  # pragma: no cover - interpreter teardown
            pass


def _complete_native(fut: Future[int]) -> None:
    """Complete the future of an ended native job; only by whoever popped the future's
    entry from ``_native_pending``."""
    out = _c_void_p()
    status = _job_take_result_addr(fut._job, _addressof(out))
    _end_native(fut, status, out.value)


def _end_native(fut: Future[int], status: int, value: int | None) -> None:
    """Complete the future of an ended native job from what ``jr_job_take_result`` gave."""
    if status == _OK:
        # The job ran, so Future.cancel() failed (jr_job_cancel said JR_E_CLOSED): the
        # future is PENDING, and only the one who popped its entry completes it.
        fut._finish(value or 0)
        return
    if status == Status.JR_E_CANCELLED:
        fut._end_cancelled()
        return
    job = _native.job_ptr(fut._job)
    code = ctypes.c_int32()
    fast.jr_job_error_code(job, ctypes.byref(code))
    raw = fast.jr_job_error_message(job)
    error = NativeJobError(status, code.value, raw.decode("utf-8", "replace") if raw else None)
    if fut.set_running_or_notify_cancel():
        fut.set_exception(error)


def _native_done(tag: int | None, _state: int) -> None:
    """``jr_done_fn`` of native jobs (``arg``: the key of a watched future or of an
    orphaned entry): complete the future if nobody has (never while the interpreter
    finalises)."""
    if tag is None or _is_finalizing():
        return
    _in_callback.append(None)  # list operations are atomic under the GIL
    try:
        fut = _native_watched.pop(tag, None)
        if fut is None:
            _native_orphans.pop(tag, None)
        elif _native_pending.pop(id(fut), None) is not None:
            _complete_native(fut)  # runs the future's done callbacks
    finally:
        _in_callback.pop()
        if _exiting:  # the atexit hook waits for the last of these callbacks
            with _ended:
                _ended.notify_all()


# Kept alive for the life of the process: C may call it until every native job has ended.
_NATIVE_DONE = _native.DONE_FN(_native_done)
_NATIVE_DONE_ADDR = _native.address(_NATIVE_DONE)
_job_on_done_addr = _native.job_on_done_addr
_job_take_result_addr = _native.job_take_result_addr
_c_void_p = ctypes.c_void_p
_addressof = ctypes.addressof


def _prime_future_attributes() -> None:
    """Put every attribute name a future ever gets into its class's shared keys, once.

    CPython (3.11) stores an instance's attributes inline, in slots named by keys the
    class shares, while the names fit; and each new instance shrinks the room left for
    new names (``init_inline_values``). Future fields are set on the job path, not in an
    ``__init__``, so after the first burst of submits the names the worker sets
    (``_state``, ``_ctx``, ``_result``) no longer fit, and from then on every future got
    a dict of its own, made and filled on the worker: an allocation, a dict for the GC
    to track and traverse, slower attribute access. Setting the names on one throwaway
    future at import, before any other exists, fixes the keys (a test checks, in a
    fresh interpreter, that futures carry no dict).
    """
    for cls in (Future, NativeFuture):
        _prime_attributes(cls)


def _prime_attributes(cls: type[Future[Any]]) -> None:
    fut = cls()
    for name in ("_job", "_state", "_ctx", "_result", "_exception", "_c", "_w", "_cb",
                 "_context", "last_exception"):
        setattr(fut, name, getattr(cls, name))


_prime_future_attributes()


# --- the running job's context -------------------------------------------------------------


class JobContext:
    """The running job's view of itself: ``jobrunner.current()`` inside a job.

    Valid only while the job runs (afterwards every method raises ``RuntimeError``).
    """

    __slots__ = ("_ctx",)

    def __init__(self, ctx: int) -> None:
        self._ctx: Any = ctypes.cast(ctx, CtxP)

    def _handle(self) -> Any:
        if self._ctx is None:
            raise RuntimeError("the job this context belongs to has ended")
        return self._ctx

    @property
    def cancelled(self) -> bool:
        """Whether the job has been asked to stop (its token, group, pool shutdown,
        ``Future.cancel``)."""
        return bool(fast.jr_ctx_is_cancelled(self._handle()))

    def check(self) -> None:
        """Raise :class:`Cancelled` if the job has been asked to stop."""
        if fast.jr_ctx_is_cancelled(self._handle()):
            raise Cancelled("the job was cancelled")

    @property
    def token(self) -> CancelToken:
        """A new token, child of the job's: cancelled when the job is asked to stop,
        and usable after the job ends (pass it to the jobs this one submits)."""
        return CancelToken._child_of_raw(fast.jr_ctx_token(self._handle()))

    @property
    def tick(self) -> int:
        """The run number of a periodic job (0 for the first run)."""
        out = ctypes.c_uint64()
        check(fast.jr_ctx_tick(self._handle(), ctypes.byref(out)), "jr_ctx_tick")
        return out.value


def current() -> JobContext:
    """The context of the job running on this thread.

    Raises:
        RuntimeError: not called from inside a job of a jobrunner pool.
    """
    task = _local.job
    if task is None:
        raise RuntimeError("jobrunner.current() called outside a job")
    if task._context is None:
        task._context = JobContext(task._ctx)
    return task._context
