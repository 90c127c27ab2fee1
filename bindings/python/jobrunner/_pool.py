"""The pool: a :class:`concurrent.futures.Executor` on a ``jr_pool``.

How a Python job runs is in :mod:`jobrunner._jobs`; groups in :mod:`jobrunner._group`;
submit options in :mod:`jobrunner._options`.

Interpreter exit
----------------
An :mod:`atexit` hook (which runs before the interpreter starts finalising) stops new
submits, shuts every pool made here down in Cancel mode (queued jobs end cancelled,
running ones are told and waited for) and cancels and waits for this module's jobs on
the shared global pool, then removes its thread hooks from that pool (a worker that
had not taken a job since would otherwise run the start hook, and enter Python, later),
so no callback ever runs into a finalising interpreter. (A thread that enters a
finalising CPython 3.11 is ended with ``pthread_exit``, whose forced unwind through the
library's frames aborts the process.)
"""

from __future__ import annotations

import atexit
import collections
import concurrent.futures
import ctypes
import itertools
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from . import _jobs, _native, _shared, _stream
from ._errors import JobrunnerError, PoolShutdown, check, to_ns, wait_sliced
from ._group import Group
from ._jobs import (
    _ARG_FREE,
    _JOB_FN,
    _JOB_FN_ADDR,
    _PLAIN_FN_ADDR,
    _THREAD_START,
    _THREAD_STOP,
    Future,
    NativeFuture,
    _native_pending,
    _native_watched,
    _keys,
    _plain,
    _tasks,
    _Task,
)
from ._native import (
    JOB_FN,
    JR_MAX_THREADS,
    JR_SHUTDOWN_CANCEL,
    JR_SHUTDOWN_DRAIN,
    JobP,
    PoolP,
    State,
    Status,
    address,
    fast,
    job_ptr,
    lib,
    submit_addr,
)
from ._options import Submitter, _Options
from ._pipeline import Pipeline
from ._stream import Stream
from ._sync import CancelToken, Semaphore

__all__ = ["Pool", "PoolStats"]

P = ParamSpec("P")
T = TypeVar("T")

_OK = Status.JR_OK
_FULL = Status.JR_E_FULL

#: Pools made here and not yet freed (plus the default pool once used).
_pools: set[Pool] = set()
_pools_lock = threading.Lock()


class _Slot:
    """Where ``jr_submit`` writes the new job's handle on the hot path: one ``jr_job *``
    per thread, read right after the call. ``busy`` guards against a submit nested in
    between (a signal handler, a finaliser), which takes the typed path instead."""

    __slots__ = ("busy", "job", "addr")

    def __init__(self) -> None:
        self.busy = False
        self.job = ctypes.c_void_p()
        self.addr = ctypes.addressof(self.job)


class _Out(threading.local):
    """This thread's :class:`_Slot` (one thread-local read per submit; a thread-local
    attribute costs about as much as the rest of the slot's use)."""

    def __init__(self) -> None:
        self.slot = _Slot()


_out = _Out()


# --- stats ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PoolStats:
    """A snapshot of a pool's counters (``jr_stats``). Once the pool is idle,
    ``submitted == succeeded + failed + panicked + cancelled + queued + running``.
    A Python job that raised counts as ``panicked``."""

    submitted: int
    started: int
    succeeded: int
    failed: int
    panicked: int
    cancelled: int
    cancelled_before_start: int
    queued: int
    running: int
    steals: int
    parks: int
    unparks: int
    threads: int
    sleeping: int
    spare_threads: int


# --- the pool --------------------------------------------------------------------------------------


class Pool(concurrent.futures.Executor):
    """A jobrunner worker pool, usable wherever a ``ThreadPoolExecutor`` is.

    Args:
        threads: worker threads (None: one per CPU).
        queue_capacity: the most jobs submitted from outside the pool and not yet
            started; ``submit`` blocks while it is full (None: unbounded).
        name: prefix of the worker threads' names (None: ``"jobrunner"``).

    Beyond the standard executor: :meth:`options` (token, semaphore, group, delay,
    name), :meth:`group`, :meth:`submit_every`, :meth:`submit_native`, :meth:`stats`,
    and :meth:`default`, the process-wide pool shared with C, Rust and Go code.
    """

    _default: Pool | None = None
    _default_lock = threading.Lock()

    def __init__(
        self,
        threads: int | None = None,
        queue_capacity: int | None = None,
        name: str | None = None,
    ) -> None:
        if threads is not None and not 1 <= threads <= JR_MAX_THREADS:
            raise ValueError(f"threads must be between 1 and {JR_MAX_THREADS}")
        if queue_capacity is not None and queue_capacity < 1:
            raise ValueError("queue_capacity must be at least 1 (None: unbounded)")
        opts = lib.jr_pool_options_default()
        opts.threads = threads or 0
        opts.queue_capacity = queue_capacity or 0
        self._name = name.encode() if name else None
        self._bounded = queue_capacity is not None
        opts.thread_name = self._name
        opts.on_thread_start = _THREAD_START
        opts.on_thread_stop = _THREAD_STOP
        out = PoolP()
        check(lib.jr_pool_new(ctypes.byref(opts), ctypes.byref(out)), "jr_pool_new")
        self._setup(out, borrowed=False)

    def _setup(self, ptr: Any, borrowed: bool) -> None:
        self._ptr = ptr
        self._borrowed = borrowed
        self._closed = False
        self._freed = False
        self._lock = threading.Lock()
        # Plain jobs on a pool of ours need no arg_free (see _jobs): they take the hot
        # path of submit(); on the shared pool, C code elsewhere may cancel them (a
        # shutdown), so they keep it and take the general path.
        self._plain = _Options(arg_free=borrowed)
        #: submit() takes the hot path: a pool of ours, not shut down, and the
        #: interpreter not exiting (shutdown and the atexit hook clear it).
        self._hot = not borrowed and not _jobs._exiting
        self._addr = address(ptr)
        self._plain_addr = ctypes.addressof(self._plain.struct)
        self._native_opts = _Options(arg_free=False)
        self._native_addr = ctypes.addressof(self._native_opts.struct)
        with _pools_lock:
            _pools.add(self)

    @classmethod
    def default(cls) -> Pool:
        """The process-wide pool (``jr_pool_global()``), shared with every language in
        the process and sized by ``JOBRUNNER_THREADS``. Its :meth:`shutdown` (and leaving
        a ``with`` block) only waits for, or cancels, the jobs submitted from Python; it
        never stops the pool, which keeps accepting jobs.

        Its workers get a lasting Python thread state as ``Pool()``'s do, through hooks
        added to the running pool (``jr_pool_add_thread_hooks``): each worker takes one
        before the next job it runs.
        """
        with cls._default_lock:
            if cls._default is None:
                ptr = lib.jr_pool_global()  # may start its threads: GIL released
                if not ptr:
                    raise JobrunnerError(Status.JR_E_NO_MEMORY, "jr_pool_global")
                check(
                    lib.jr_pool_add_thread_hooks(ptr, _THREAD_START, _THREAD_STOP, None),
                    "jr_pool_add_thread_hooks",
                )
                self = cls.__new__(cls)
                self._name = None
                self._bounded = True  # its queue bound is the process's: unknown here
                self._setup(ptr, borrowed=True)
                cls._default = self
            return cls._default

    # -- submitting --

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Run ``fn(*args, **kwargs)`` on the pool; returns its :class:`Future`.

        Blocks while a bounded queue is full. Raises :class:`PoolShutdown` (a
        ``RuntimeError``) after :meth:`shutdown`.
        """
        # The hot path (see _jobs for what a plain job is): everything inline, handles as
        # addresses, one nonblocking jr_submit with the GIL kept.
        slot = _out.slot
        if not self._hot or slot.busy:
            return self._submit(fn, args, kwargs, self._plain)
        fut: Future[T] = Future()
        key = id(fut)
        _plain[key] = (fut, fn, args, kwargs, self)
        slot.busy = True
        try:
            status = submit_addr(self._addr, _PLAIN_FN_ADDR, key, self._plain_addr, slot.addr)
            job = slot.job.value
        finally:
            slot.busy = False
        if status != _OK:
            self._submit_plain_cold(fut, key, status)
        else:
            fut._job = job  # type: ignore[assignment]
        return fut

    def _submit_plain_cold(self, fut: Future[Any], key: int, status: int) -> None:
        """A plain submit the queue refused: wait for room (bounded queue) or raise."""
        if status == _FULL:
            job = JobP()
            status = wait_sliced(
                lambda ns: lib.jr_submit(
                    self._ptr, _jobs._PLAIN_FN, key, self._plain.blocking(ns), ctypes.byref(job)
                ),
                None,
            )
        if status != _OK:
            _plain.pop(key, None)
            check(status, "jr_submit")
        fut._job = address(job)

    def options(
        self,
        *,
        token: CancelToken | None = None,
        semaphore: Semaphore | None = None,
        weight: int = 1,
        group: Group | None = None,
        delay: float | None = None,
        name: str | None = None,
    ) -> Submitter:
        """Submit options, e.g. ``pool.options(token=t, semaphore=s).submit(fn, x)``.

        Args:
            token: cancels the job when cancelled (not with ``group``).
            semaphore: the job waits for ``weight`` permits without holding a worker
                and gives them back when it ends.
            weight: permits to take from ``semaphore``.
            group: a :class:`Group` of this pool the job joins.
            delay: run no sooner than this many seconds from now.
            name: the job's name, for debugging.
        """
        return Submitter(
            self,
            _Options(
                token=token,
                semaphore=semaphore,
                weight=weight,
                group=group,
                delay=delay,
                name=name,
            ),
        )

    def _submit(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: _Options,
        period: float | None = None,
    ) -> Future[Any]:
        if self._closed:
            raise PoolShutdown(Status.JR_E_SHUTDOWN, "cannot schedule new futures after shutdown")
        if _jobs._exiting:
            raise RuntimeError("cannot schedule new futures after interpreter shutdown")
        fut: Future[Any] = Future()
        if period is not None:
            return self._submit_every(fut, fn, args, kwargs, options, period)
        managed = options.managed
        if managed:
            key = next(_keys)
            _tasks[key] = _Task(fn, args, kwargs, fut, self, False)
            fn_addr = _JOB_FN_ADDR
        else:  # a plain job, on a path other than submit()'s hot one
            key = id(fut)
            _plain[key] = (fut, fn, args, kwargs, self)
            fn_addr = _PLAIN_FN_ADDR
        # As submit()'s hot path: handles as addresses, the new job's through the slot.
        slot = _out.slot
        if slot.busy:  # a submit nested in another's read of the slot: see _Slot
            slot = _Slot()
        slot.busy = True
        try:
            status = submit_addr(self._addr, fn_addr, key, options.addr, slot.addr)
            job = slot.job.value
        finally:
            slot.busy = False
        if status == _FULL:
            fn_ptr = _JOB_FN if managed else _jobs._PLAIN_FN
            out = JobP()
            status = wait_sliced(
                lambda ns: lib.jr_submit(
                    self._ptr, fn_ptr, key, options.blocking(ns), ctypes.byref(out)
                ),
                None,
            )
            job = address(out)
        if status != _OK:
            (_tasks if managed else _plain).pop(key, None)
            check(status, "jr_submit")
        fut._job = job
        return fut

    def _submit_every(
        self,
        fut: Future[Any],
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: _Options,
        period: float,
    ) -> Future[Any]:
        if period <= 0:
            raise ValueError("period must be positive")
        key = next(_keys)
        _tasks[key] = _Task(fn, args, kwargs, fut, self, True)
        every = options.blocking(-1)
        every.contents.arg_free = _ARG_FREE
        job = JobP()
        status = lib.jr_submit_every(self._ptr, to_ns(period), _JOB_FN, key, every, ctypes.byref(job))
        if status != _OK:
            _tasks.pop(key, None)
            check(status, "jr_submit_every")
        fut._job = address(job)
        return fut

    def submit_every(
        self, period: float, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> Future[None]:
        """Run ``fn(*args, **kwargs)`` every ``period`` seconds (first run one period
        from now) until the returned future is cancelled, or the pool shuts down.

        Runs never overlap; missed ticks are skipped. A run that raises is counted
        (``stats().panicked``), its exception kept in ``future.last_exception``, and the
        schedule goes on. ``jobrunner.current().tick`` is the run number. The future ends
        cancelled once the job has stopped.
        """
        return self._submit(fn, args, kwargs, self._plain, period=period)

    def submit_native(self, cfunc: Any, arg: Any = None) -> Future[int]:
        """Run a native ``jr_job_fn`` (a ctypes function pointer from a loaded C
        library, e.g. ``ctypes.CDLL(path).my_job``) on the pool, without the GIL.

        ``arg`` is passed as the job's ``void *arg``: None, an int address, a ctypes
        pointer (what it points to), or another ctypes object (its address: a
        ``c_int``, a structure, an array); a ctypes ``arg`` is kept alive until the job
        ends. The future's result is the job's result
        pointer as an int (0 for NULL), now owned by the caller. A nonzero return code
        raises :class:`NativeJobError` (with ``code`` and ``message``).
        """
        if not self._hot:
            if self._closed:
                raise PoolShutdown(Status.JR_E_SHUTDOWN, "cannot schedule new futures after shutdown")
            if _jobs._exiting:
                raise RuntimeError("cannot schedule new futures after interpreter shutdown")
        fn_addr = _fn_addrs.get(id(cfunc))
        if fn_addr is None or fn_addr[0] is not cfunc:
            fn_addr = _remember_fn_addr(cfunc)
        if arg is None or isinstance(arg, int):
            arg_addr = arg
        elif isinstance(arg, (ctypes._Pointer, ctypes.c_void_p, ctypes.c_char_p)):
            arg_addr = ctypes.cast(arg, ctypes.c_void_p).value  # what it points to
        else:
            arg_addr = ctypes.addressof(arg)  # a ctypes object: its own buffer
        slot = _out.slot
        if slot.busy:  # a submit nested in another's read of the slot: see _Slot
            slot = _Slot()
        slot.busy = True
        try:
            status = submit_addr(self._addr, fn_addr[1], arg_addr, self._native_addr, slot.addr)
            job = slot.job.value
        finally:
            slot.busy = False
        if status == _FULL:
            func = ctypes.cast(fn_addr[1], JOB_FN)
            opts = self._native_opts
            out = JobP()
            status = wait_sliced(
                lambda ns: lib.jr_submit(self._ptr, func, arg_addr, opts.blocking(ns), ctypes.byref(out)),
                None,
            )
            job = address(out)
        if status != _OK:
            check(status, "jr_submit")
        fut: NativeFuture = NativeFuture()
        fut._job = job  # type: ignore[assignment]
        # Keeps cfunc and arg alive until the job ends (see _jobs._native_pending); the
        # future is completed by whoever first sees the job ended, with no callback into
        # Python on the worker, except on the shared pool (see _jobs, "native jobs").
        _native_pending[id(fut)] = (self, cfunc, arg, False)
        if self._borrowed:
            fut._watch()
        return fut

    def map(
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
    ) -> Iterator[T]:
        """Like :meth:`concurrent.futures.Executor.map`; ``buffersize`` bounds how many
        tasks are in flight (the input is consumed lazily). ``chunksize`` is ignored, as
        by ``ThreadPoolExecutor``."""
        if buffersize is not None and buffersize < 1:
            raise ValueError("buffersize must be None or at least 1")
        end = None if timeout is None else time.monotonic() + timeout
        args_iter = zip(*iterables)
        if buffersize is None:
            fs = collections.deque(self.submit(fn, *a) for a in args_iter)
        else:
            fs = collections.deque(
                self.submit(fn, *a) for a in itertools.islice(args_iter, buffersize)
            )

        def results() -> Iterator[T]:
            try:
                while fs:
                    fut = fs.popleft()
                    if buffersize is not None:
                        for a in itertools.islice(args_iter, 1):
                            fs.append(self.submit(fn, *a))
                    if end is None:
                        yield fut.result()
                    else:
                        yield fut.result(end - time.monotonic())
            finally:
                for fut in fs:
                    fut.cancel()

        return results()

    def stream(
        self, fn: Callable[..., Any], /, *args: Any, capacity: int = 16, **kwargs: Any
    ) -> Stream:
        """Run the generator function ``fn(*args, **kwargs)`` as a producer job and return
        the :class:`Stream` of the values it yields (an iterator and an async iterator),
        at most ``capacity`` of them sent ahead of the reader. Submit options (token,
        semaphore, delay, name; not a group) through :meth:`options`:
        ``pool.options(token=t).stream(fn, ...)``."""
        return Stream(self, fn, args, kwargs, capacity, self._plain)

    def pipeline(
        self,
        source: Any = None,
        max_in_flight: int = 64,
        token: CancelToken | None = None,
    ) -> Pipeline:
        """A :class:`Pipeline` on this pool. ``source``: an iterable, a
        :class:`Channel` (read until closed) or a :class:`Stream`, pushed by a feeder
        job that then closes the input; or None, to :meth:`Pipeline.push` and
        :meth:`Pipeline.close_input` yourself. At most ``max_in_flight`` items are
        inside at once; ``token`` cancels the pipeline (and its feeder) when cancelled.
        Add stages with ``.stage(fn, concurrency=4, ordered=True)``."""
        return Pipeline(self, source, max_in_flight, token)

    def group(
        self, limit: int | None = None, fail_fast: bool = False, token: CancelToken | None = None
    ) -> Group:
        """A :class:`Group` of jobs on this pool (use it as a context manager)."""
        return Group(self, limit=limit, fail_fast=fail_fast, token=token)

    # -- observing --

    def stats(self) -> PoolStats:
        """A snapshot of the pool's counters."""
        out = _native.Stats()
        out.size = ctypes.sizeof(_native.Stats)
        check(fast.jr_pool_stats(self._handle(), ctypes.byref(out)), "jr_pool_stats")
        return PoolStats(**{f.name: getattr(out, f.name) for f in fields(PoolStats)})

    def _handle(self) -> Any:
        if self._freed:
            raise ValueError("the pool is shut down and freed")
        return self._ptr

    # -- shutting down --

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting jobs; ``cancel_futures`` ends the queued ones cancelled and asks
        the running ones to stop (their tokens are cancelled), else everything accepted
        runs. ``wait`` blocks until every job has ended (interruptible by Ctrl-C) and
        frees the pool. On :meth:`default` only this binding's jobs are concerned."""
        if self._borrowed:
            self._settle_own_jobs(cancel_futures, wait)
            return
        self._closed = True
        self._hot = False
        if self._freed:
            return
        mode = JR_SHUTDOWN_CANCEL if cancel_futures else JR_SHUTDOWN_DRAIN
        ptr = self._ptr
        if not wait:
            lib.jr_pool_shutdown(ptr, mode, 0)
            self._sweep()
            return
        status = wait_sliced(lambda ns: lib.jr_pool_shutdown(ptr, mode, ns), None)
        check(status, "jr_pool_shutdown")
        self._sweep()
        self._free()

    def _sweep(self) -> None:
        """End cancelled the futures of this pool's plain jobs that ended without running
        (a Cancel shutdown): they have no arg_free to tell them."""
        state = ctypes.c_int()
        for key, (fut, _fn, _args, _kwargs, pool) in list(_plain.items()):
            if pool is not self or not fut._job:
                continue
            if (
                fast.jr_job_state(job_ptr(fut._job), ctypes.byref(state)) == _OK
                and state.value == State.JR_JOB_CANCELLED
            ):
                if _plain.pop(key, None) is not None:
                    fut._end_cancelled()

    def _free(self) -> None:
        with self._lock:
            if self._freed or self._borrowed:
                return
            self._freed = True
        lib.jr_pool_free(self._ptr)
        with _pools_lock:
            _pools.discard(self)

    def _settle_own_jobs(self, cancel: bool, wait: bool) -> None:
        """Cancel (if asked) and wait for (if asked) the jobs this binding put on the pool."""
        mine = [(t.future, t.periodic) for t in list(_tasks.values()) if t.pool is self]
        mine += [(e[0], False) for e in list(_plain.values()) if e[4] is self]
        mine += [(f, False) for f in _natives_of(self)]
        for fut, periodic in mine:
            if not fut._job:
                continue
            job = job_ptr(fut._job)
            if cancel or (wait and periodic):  # a periodic job would never end by itself
                lib.jr_job_cancel(job)
            if wait:
                wait_sliced(lambda ns, j=job: lib.jr_job_wait(j, ns), None)

    def __enter__(self) -> Pool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown(wait=True)

    def __repr__(self) -> str:
        kind = "default" if self._borrowed else "owned"
        state = "shut down" if self._closed else "running"
        return f"<jobrunner.Pool {kind} {state}>"


# --- native jobs: completing their futures --------------------------------------------------


#: The address of each native job function submitted lately, by ``id``: ``(cfunc, addr)``
#: (the object is kept, so its id is not reused while here). ``ctypes.cast`` per submit
#: costs more than the rest of submit_native's Python; bounded, as callers may make a
#: new function object per call (``lib["name"]``).
_fn_addrs: dict[int, tuple[Any, int]] = {}


def _remember_fn_addr(cfunc: Any) -> tuple[Any, int]:
    if len(_fn_addrs) >= 64:
        _fn_addrs.clear()
    entry = (cfunc, address(cfunc))
    _fn_addrs[id(cfunc)] = entry
    return entry


def _natives_of(pool: Pool) -> list[Future[Any]]:
    """The futures of the native jobs of ``pool`` not yet completed, for the shared pool
    (whose native futures are all watched, see ``Pool.submit_native``)."""
    found = []
    for fut in list(_native_watched.values()):
        entry = _native_pending.get(id(fut))
        if entry is not None and entry[0] is pool:
            found.append(fut)
    return found


# --- interpreter exit -----------------------------------------------------------------------------


def _at_exit() -> None:
    """Shut every pool down before the interpreter finalises (see the module doc)."""
    _jobs._exiting = True
    with _pools_lock:
        pools = list(_pools)
    for pool in pools:
        pool._hot = False  # submit() then takes the path that refuses
    # Stop every stream and pipeline first, on every pool: a pipeline's feeder waits in
    # a push (or on a channel source) that its job's cancellation does not end, and a
    # stream's producer on the shared pool is not a job the loop below knows of.
    live = list(_shared._live)
    for shared in live:
        try:
            shared.stop()
        except Exception:  # noqa: BLE001 - a handle closed meanwhile: nothing to stop
            pass
    for pool in pools:
        if pool._borrowed:
            pool._settle_own_jobs(cancel=True, wait=True)
            # Waits for a hook call in progress (GIL released: it may need the GIL).
            check(
                lib.jr_pool_remove_thread_hooks(pool._ptr, _THREAD_START, _THREAD_STOP, None),
                "jr_pool_remove_thread_hooks",
            )
        elif not pool._freed:
            ptr = pool._ptr
            wait_sliced(lambda ns, p=ptr: lib.jr_pool_shutdown(p, JR_SHUTDOWN_CANCEL, ns), None)
            pool._sweep()
            pool._free()
    # Free the pipelines: jr_pipeline_free returns once no stage function runs (on the
    # shared pool, nothing else waits for them), and none runs after it.
    for shared in live:
        if shared._what == "pipeline":
            shared.close(wait=True)
    # arg_free, and the done callback of a native job's future (on the shared pool,
    # every one has it), may run just after the job's waiters wake: wait for the last
    # callbacks, or one could come into the finalising interpreter.
    with _jobs._ended:
        _jobs._ended.wait_for(lambda: not _tasks and not _native_watched, timeout=5)
        # Those callbacks complete futures, whose own done callbacks run user code on
        # the worker: wait for them to return, as for a running job.
        _jobs._ended.wait_for(lambda: not _jobs._in_callback)
        # A stream's producer on the shared pool (stopped above) runs Python code until
        # its generator returns: wait for its end, as for a running job.
        _jobs._ended.wait_for(lambda: not _stream._producers)


atexit.register(_at_exit)
