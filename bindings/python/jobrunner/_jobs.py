"""How a Python job runs: the tasks table, the C callbacks, futures, the job context.

Every Python job is submitted with the same C job function, :data:`_JOB_FN`, a
module-level ctypes callback that lives as long as the process. Its ``arg`` is an
integer key into :data:`_tasks`, which holds the callable, its arguments and its
:class:`Future`. The trampoline runs the callable on the worker and completes the
future itself. Jobs that may end without running through no act of this binding (a
token, a fail-fast group, a delay, the shared pool) are submitted with ``arg_free``
(:data:`_ARG_FREE`), which the core calls exactly once when the job has ended, ran or
not: it removes the task and ends the future cancelled if the job never ran.

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
from ._errors import Cancelled, check, to_ns
from ._native import FREE_FN, JOB_FN, THREAD_HOOK, CtxP, Status, fast, lib
from ._sync import CancelToken

if TYPE_CHECKING:
    from ._pool import Pool

__all__ = ["Future", "JobContext", "current"]

T = TypeVar("T")

_OK = Status.JR_OK


# --- the tasks table and the callbacks -------------------------------------------------


class _Task:
    """A submitted Python job: what to call, and the future it completes."""

    __slots__ = ("fn", "args", "kwargs", "future", "pool", "periodic", "managed", "ctx", "context")

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        future: Future[Any],
        pool: Pool,
        periodic: bool,
        managed: bool,
    ) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.future = future
        self.pool = pool
        self.periodic = periodic
        #: Submitted with ``arg_free``: the callback removes the task when the job ends.
        #: Otherwise (plain jobs on a pool made here, the hot path) the trampoline
        #: removes it when the job starts, and ``Future.cancel``/``Pool.shutdown``
        #: remove the ones that never ran.
        self.managed = managed
        #: While it runs: the ``jr_ctx`` address, and the JobContext if one was asked for.
        self.ctx: int | None = None
        self.context: JobContext | None = None


#: Jobs submitted and not yet ended, by the key passed to C as the job's ``arg``.
_tasks: dict[int, _Task] = {}
_keys = itertools.count(1)
#: ``_local.job``: the :class:`_Task` this thread runs (None between jobs).
_local = threading.local()
#: Set by the atexit hook: no more submits, and the trampoline runs no more Python jobs.
_exiting = False
#: Notified when a managed job's ``arg_free`` runs once ``_exiting`` is set: the atexit
#: hook waits on it for the last callbacks.
_ended = threading.Condition()
_is_finalizing = sys.is_finalizing
#: The ``PyGILState_STATE`` each worker thread got from its start hook, by thread id.
_gil_states: dict[int, int] = {}


def _run_job(ctx: int | None, key: int | None, _result: int | None) -> int:
    """The C job function of every Python job (``jr_job_fn``)."""
    task = _tasks.get(key)  # type: ignore[arg-type]
    if task is None:
        return 1
    if not task.managed:
        del _tasks[key]  # type: ignore[arg-type]
    if _exiting or _is_finalizing():
        return 1  # nonzero after the atexit cancel: the job ends cancelled
    fut = task.future
    if task.managed and _native.ctx_is_cancelled_raw(ctx):
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
    prev = getattr(_local, "job", None)  # a job run inline by a wait inside a job
    task.ctx = ctx
    _local.job = task
    try:
        value = task.fn(*task.args, **task.kwargs)
    except BaseException as exc:  # noqa: BLE001 - every outcome goes to the future
        return _job_raised(ctx, task, exc)
    finally:
        _local.job = prev
        if task.context is not None:
            task.context._ctx = None  # the context is only valid during the call
            task.context = None
    if not task.periodic:
        fut._finish(value)
    return 0


def _job_raised(ctx: int | None, task: _Task, exc: BaseException) -> int:
    """A Python job raised ``exc``: report it to the future and to the core."""
    cptr = ctypes.cast(ctx, CtxP)
    fut = task.future
    if isinstance(exc, concurrent.futures.CancelledError) and fast.jr_ctx_is_cancelled(cptr):
        if not task.periodic:
            fut._end_cancelled()
        return 1  # nonzero after being asked to stop: the core ends the job Cancelled
    message = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    fast.jr_ctx_panic(cptr, message.encode("utf-8", "replace") or b"exception")
    if task.periodic:
        fut.last_exception = exc
    else:
        fut.set_exception(exc)
    return 1


def _arg_freed(key: int | None) -> None:
    """``arg_free`` of every Python job: the job has ended, ran or not."""
    task = _tasks.pop(key, None)  # type: ignore[arg-type]
    if task is not None and task.future._state != FINISHED:
        task.future._end_cancelled()  # it never ran (or, periodic, it has stopped)
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
_JOB_FN = JOB_FN(_run_job)
_ARG_FREE = FREE_FN(_arg_freed)
_THREAD_START = THREAD_HOOK(_thread_start)
_THREAD_STOP = THREAD_HOOK(_thread_stop)


# --- futures ------------------------------------------------------------------------------


#: The conditions futures share, striped (a Condition per future costs more than the rest
#: of a submit). Futures wait on them in a loop, so a wake meant for another is harmless.
_CONDITIONS = [threading.Condition() for _ in range(64)]
_condition_index = itertools.count()
_DONE = frozenset({FINISHED, CANCELLED, CANCELLED_AND_NOTIFIED})


class Future(concurrent.futures.Future[T]):
    """A :class:`concurrent.futures.Future` bound to a C job.

    :meth:`cancel` cancels the C job: True if it had not started (it will never run);
    False for a running job, whose token is cancelled all the same, so a cooperative job
    (``jobrunner.current().check()``) stops. Waiting for :meth:`result` from inside a job
    lets the core run the awaited job inline if it has not started, so nested
    submit-and-wait does not deadlock even on one worker.
    """

    _job: Any = None
    _key: int = 0
    _managed = True
    #: For a periodic job: the exception of the last run that raised.
    last_exception: BaseException | None = None

    def __init__(self) -> None:  # the base's, with a shared condition and lazy lists
        self._condition = _CONDITIONS[next(_condition_index) & 63]
        self._state = PENDING
        self._result = None
        self._exception = None

    # The base class's two lists, made on first use: most futures never get a waiter
    # or a callback, and two fewer objects per job is less work for the cyclic GC.
    # (Class-level None defaults, not ``__dict__`` look-ups, which would make CPython
    # materialise each instance's attribute dict.)
    _w: list[Any] | None = None
    _cb: list[Any] | None = None

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
        """set_result() for a RUNNING future, on the job path."""
        cond = self._condition
        cond.acquire()
        try:
            self._result = value
            self._state = FINISHED
            waiters = self._w
            if waiters:
                for waiter in waiters:
                    waiter.add_result(self)
            if cond._waiters:  # type: ignore[attr-defined]
                cond.notify_all()
        finally:
            cond.release()
        if self._cb:
            self._invoke_callbacks()

    def _wait(self, timeout: float | None) -> None:
        """Wait until done or ``timeout`` seconds pass (the condition is shared: loop)."""
        self._help(timeout)
        if self._state in _DONE:
            return
        end = None if timeout is None else time.monotonic() + timeout
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
        if job is None:
            return super().cancel()
        if lib.jr_job_cancel(job) == _OK:
            if self._managed:
                super().cancel()  # arg_free notifies the waiters
            else:
                _tasks.pop(self._key, None)
                self._end_cancelled()
            return True
        return False

    def result(self, timeout: float | None = None) -> T:
        if self._state != FINISHED:
            self._wait(timeout)
        return super().result(0)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if self._state != FINISHED:
            self._wait(timeout)
        return super().exception(0)

    def _help(self, timeout: float | None) -> None:
        """Inside a job, wait through the core (it runs the job inline or helps)."""
        if self._state != FINISHED and self._job is not None and getattr(_local, "job", None):
            lib.jr_job_wait(self._job, to_ns(timeout))

    def _end_cancelled(self) -> None:
        """End the future cancelled, from any state but FINISHED (a running job that
        stopped when asked ends cancelled, which the base class cannot express)."""
        with self._condition:
            was = self._state
            if was in (FINISHED, CANCELLED_AND_NOTIFIED):
                return
            self._state = CANCELLED_AND_NOTIFIED
            for waiter in self._waiters:
                waiter.add_cancelled(self)
            self._condition.notify_all()
        if was != CANCELLED:  # cancel() already ran the callbacks
            self._invoke_callbacks()

    def __del__(self) -> None:
        job, self._job = self._job, None
        if job:
            try:
                fast.jr_job_free(job)
            except Exception:  # pragma: no cover - interpreter teardown
                pass


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
    task = getattr(_local, "job", None)
    if task is None:
        raise RuntimeError("jobrunner.current() called outside a job")
    if task.context is None:
        task.context = JobContext(task.ctx)
    return task.context
