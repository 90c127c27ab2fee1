"""Pipelines: Python stage functions on a ``jr_pipeline``.

Items are Python objects passed to C as strong references by address, as in
:mod:`jobrunner._chan`: a push (or the feeder job) gives the pipeline one reference, an
output read takes it over, and the pipeline's ``item_free`` (``_chan._drop_item``)
drops the reference of every item it destroys (dropped, replaced by a stage's output,
inside at a failure or at the free): exactly once, by the header's ownership rules.

Every stage is one module-level C stage function (:data:`_STAGE`, a ``jr_stage_fn``)
whose ``stage_arg`` is an integer key into :data:`_stages`. It calls the Python function
on the item (borrowed: the pipeline keeps its reference) and

* passes the item on if the function returned the item itself (``*out`` left alone);
* passes another object on with a new reference in ``*out`` (the pipeline then drops
  the input's reference);
* drops the item if it returned :data:`DROP` (``JR_STAGE_DROP``);
* fails the pipeline if it raised: the exception is kept under a fresh failure code,
  which the stage returns (``jr_ctx_fail`` gets the message), so that whichever failure
  the core reports first (``jr_pipeline_error_code``) is raised at the output.

A pipeline with a ``source`` is fed by a feeder job (an ordinary Python job on the
pool) that pushes each item and then closes the input; a push that waits inside a job
gives its worker's place to a spare. The feeder holds a borrow of the handle
(:class:`_shared._Shared`) until it ends, so the last of the feeder, a reader and
``close()`` frees the pipeline.
"""

from __future__ import annotations

import ctypes
import itertools
import threading
from collections.abc import Callable, Iterator
from ctypes import byref, c_int32, c_void_p
from typing import TYPE_CHECKING, Any

from . import _jobs, _native
from ._chan import Channel, ChannelClosed, _decref, _drop_item, _from_ptr, _incref, _take
from ._errors import Cancelled, JobrunnerError, PoolShutdown, check, wait_sliced
from ._jobs import _local
from ._native import (
    JR_STAGE_DROP,
    JR_STAGE_EMIT,
    STAGE_FN,
    CtxP,
    PipelineOptions,
    PipelineP,
    Status,
    WaitKind,
    lib,
)
from ._options import _Options
from ._shared import _Shared
from ._stream import Stream, _error_message, _exception_message, _Reader, _Running, _take_from
from ._sync import CancelToken

if TYPE_CHECKING:
    from ._pool import Pool

__all__ = ["DROP", "Pipeline"]

_OK = Status.JR_OK
_FULL = Status.JR_E_FULL
_TIMEOUT = Status.JR_E_TIMEOUT


class _Drop:
    """The type of :data:`DROP`."""

    _instance: _Drop | None = None

    def __new__(cls) -> _Drop:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "jobrunner.DROP"

    def __reduce__(self) -> str:
        return "DROP"


#: What a stage function returns to drop its item (a filter). ``None`` is an ordinary
#: value that goes on, so a stage that forgets its ``return`` shows at the output
#: instead of silently emptying the pipeline.
DROP = _Drop()


class _PipeState:
    """What the stages, the feeder and the reader of one pipeline share."""

    __slots__ = ("errors", "source_error", "lock")

    def __init__(self) -> None:
        #: The exceptions stages raised, by the failure code their stage returned.
        self.errors: dict[int, BaseException] = {}
        #: The exception the source raised (the feeder then cancelled the pipeline).
        self.source_error: BaseException | None = None
        self.lock = threading.Lock()


class _Stage:
    __slots__ = ("fn", "state")

    def __init__(self, fn: Callable[[Any], Any], state: _PipeState) -> None:
        self.fn = fn
        self.state = state


#: Stages of pipelines not yet freed, by the key passed to C as ``stage_arg``.
_stages: dict[int, _Stage] = {}
_keys = itertools.count(1)
#: Failure codes for stage exceptions: 1 .. 2**31 - 1 (never 0, JR_STAGE_EMIT, nor the
#: most negative int32, JR_STAGE_DROP).
_codes = itertools.count(1)
_CODE_SPAN = 2**31 - 1
_ptr_at = c_void_p.from_address


def _run_stage(ctx: int | None, key: int | None, item: int | None, out: int | None) -> int:
    """The C stage function of every Python stage (``jr_stage_fn``)."""
    stage = _stages.get(key)  # type: ignore[arg-type]
    if stage is None or _jobs._exiting or _jobs._is_finalizing():
        return 1  # a failure: the pipeline is being torn down with the interpreter
    obj = _from_ptr(item)  # a new reference for `obj`; the pipeline keeps its own
    run = _Running(ctx)
    prev = _local.job
    _local.job = run
    try:
        result = stage.fn(obj)
    except BaseException as exc:  # noqa: BLE001 - every outcome goes to the output
        code = next(_codes) % _CODE_SPAN + 1
        stage.state.errors[code] = exc
        _native.fast.jr_ctx_fail(ctypes.cast(ctx, CtxP), _exception_message(exc))
        return code
    finally:
        _local.job = prev
        run.end()
    if result is DROP:
        return JR_STAGE_DROP
    if result is not obj:
        _incref(result)  # the pipeline's reference to the output
        _ptr_at(out).value = id(result)  # type: ignore[arg-type]
    return JR_STAGE_EMIT


# Kept alive for the life of the process: C may call it until every pipeline is freed.
_STAGE = STAGE_FN(_run_stage)


def _push(addr: int, item_addr: int, fast: bool) -> int:
    """Push an item (an address) into a pipeline: first with no wait and the GIL kept
    (``fast``: see _native.pipeline_push_fast), then, if it is full, waiting with the GIL
    released."""
    status = _native.pipeline_push_fast(addr, item_addr, 0) if fast else _FULL
    if status == _FULL:
        status = _native.pipeline_push_addr(addr, item_addr, -1)
    return status


def _feed(shared: _Shared, state: _PipeState, source: Any, token: CancelToken, fast: bool) -> None:
    """The feeder job: push every item of ``source``, then close the input. It holds a
    borrow of the handle, taken at its submit and given back when its future ends."""
    ptr = shared._ptr
    addr = _native.address(ptr)
    stopped = False
    try:
        if isinstance(source, Stream):
            stopped = not _feed_stream(addr, source, fast)
            if stopped:
                return
        else:
            items = _channel_items(source, token) if isinstance(source, Channel) else source
            for item in items:
                _incref(item)
                if _push(addr, id(item), fast) != _OK:
                    # The pipeline failed, was cancelled or closed: the item is still ours.
                    _decref(item)
                    stopped = True
                    return
        lib.jr_pipeline_close_input(ptr)
    except BaseException as exc:  # noqa: BLE001 - the source's failure fails the pipeline
        stopped = True
        if not token.cancelled:
            state.source_error = exc
            lib.jr_pipeline_cancel(ptr)
    finally:
        if stopped and isinstance(source, Stream):
            source.close()  # the pipeline took the stream: stop its producer


def _feed_stream(addr: int, stream: Stream, fast: bool) -> bool:
    """Move every item of a stream into the pipeline: the reference the stream gives
    goes to the pipeline as it is (no Python object is touched). False if the pipeline
    stopped first. The stream's end (its producer's exception, Cancelled) is raised."""
    out = c_void_p()
    shared = stream._shared
    state = stream._state
    while True:
        shared.acquire()  # ValueError once the stream is closed
        try:
            status = state.read(shared.addr, out, None)
        finally:
            shared.release()
        if status == Status.JR_E_CLOSED:
            return True
        if status != _OK:
            stream._raise_end(status, None)  # the producer's failure, as a reader sees it
        item = out.value
        if _push(addr, item, fast) != _OK:
            _take(item)  # still ours: drop the reference
            return False


def _channel_items(ch: Channel, token: CancelToken) -> Iterator[Any]:
    while True:
        try:
            yield ch.get(token=token)
        except ChannelClosed:
            return


class Pipeline(_Reader):
    """Items through stages of Python functions, each with its own concurrency, ordered
    or not, under a bound on the items inside: ``pool.pipeline(source)``.

    Build it with :meth:`stage` (and :meth:`filter`) before it starts; it starts when
    first read (iteration, :meth:`get`, ``wait_any``), pushed to, or at
    :meth:`close_input`. Iterate it (``for``, ``async for``) for the outputs. See
    :meth:`Pool.pipeline <jobrunner.Pool.pipeline>` and the package README.
    """

    _next_name = "jr_pipeline_next"

    def __init__(
        self,
        pool: Pool,
        source: Any = None,
        max_in_flight: int = 64,
        token: CancelToken | None = None,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        if source is not None and not isinstance(source, (Channel, Stream)):
            source = iter(source)  # a TypeError now, not in the feeder
        if pool._closed:
            raise PoolShutdown(Status.JR_E_SHUTDOWN, "cannot schedule new futures after shutdown")
        opts = PipelineOptions()
        check(lib.jr_pipeline_options_init(byref(opts), ctypes.sizeof(opts)), "jr_pipeline_options_init")
        opts.max_in_flight = max_in_flight
        #: Parent of the pipeline's token and the feeder job's: cancelling it stops both.
        self._token = CancelToken(token)
        opts.token = self._token._handle()
        opts.item_free = _drop_item
        out = PipelineP()
        check(lib.jr_pipeline_new(pool._handle(), byref(opts), byref(out)), "jr_pipeline_new")
        stage_keys: list[int] = []

        def free(ptr: Any) -> None:
            lib.jr_pipeline_free(ptr)  # no stage function runs after it returns
            for key in stage_keys:
                _stages.pop(key, None)

        self._shared = _Shared(out, free, lib.jr_pipeline_cancel, "pipeline", on_stop=self._token.cancel)
        self._stage_keys = stage_keys
        self._state = _PipeState()
        self._pool = pool
        self._source = source
        self._source_stream = source if isinstance(source, Stream) else None
        self._started = False
        self._start_lock = threading.Lock()
        self._feeder: Any = None
        #: Whether pushes and reads may first try with the GIL kept: not on a pool with a
        #: queue bound (a push or read that submits stage jobs could wait for room).
        self._fast = not pool._bounded
        self.max_in_flight = max_in_flight

    # -- building --

    def stage(self, fn: Callable[[Any], Any], concurrency: int = 4, ordered: bool = True) -> Pipeline:
        """Add a stage after the others: ``fn(item)`` runs once per item, as its own
        short job, at most ``concurrency`` at once; its return value goes on
        (:data:`jobrunner.DROP` drops the item); an exception fails the pipeline.
        ``ordered``: outputs go on in input order, else as they come. Returns the
        pipeline, to chain. Raises ``RuntimeError`` once the pipeline has started."""
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self._started:
            raise RuntimeError("stages are added before the pipeline starts (first read, push or close_input)")
        key = next(_keys)
        _stages[key] = _Stage(fn, self._state)
        ptr = self._shared.acquire()
        try:
            status = lib.jr_pipeline_add_stage(ptr, _STAGE, key, concurrency, 1 if ordered else 0)
        finally:
            self._shared.release()
        if status != _OK:
            _stages.pop(key, None)
            check(status, "jr_pipeline_add_stage")
        self._stage_keys.append(key)
        return self

    def filter(self, predicate: Callable[[Any], Any], concurrency: int = 4, ordered: bool = True) -> Pipeline:
        """A stage that keeps the items for which ``predicate(item)`` is true."""
        return self.stage(lambda item: item if predicate(item) else DROP, concurrency, ordered)

    def start(self) -> Pipeline:
        """Start the pipeline (no more stages) and its feeder, if it has a source.
        Reads, pushes, ``close_input`` and ``wait_any`` start it; idempotent."""
        if self._started:
            return self
        with self._start_lock:
            if self._started:
                return self
            self._started = True
            source, self._source = self._source, None
            if source is None:
                return self
            self._shared.acquire()  # the feeder's borrow
            try:
                fut = self._pool._submit(
                    _feed,
                    (self._shared, self._state, source, self._token, self._fast),
                    {},
                    _Options(token=self._token),
                )
            except BaseException:
                self._shared.release()
                raise
            fut.add_done_callback(lambda _f, shared=self._shared: shared.release())
            self._feeder = fut
        return self

    # -- feeding --

    def push(self, item: Any, timeout: float | None = None) -> None:
        """Push ``item``, waiting at most ``timeout`` seconds (None: forever) while
        ``max_in_flight`` items are inside.

        Raises ``TimeoutError``, :class:`jobrunner.ChannelClosed` (after
        :meth:`close_input`), :class:`jobrunner.Cancelled` (the pipeline failed or was
        cancelled: reading it says how)."""
        self.start()
        ptr = self._shared.acquire()
        _incref(item)
        try:
            status = wait_sliced(lambda ns: lib.jr_pipeline_push(ptr, id(item), ns), timeout)
        finally:
            self._shared.release()
        if status == _OK:
            return
        _decref(item)  # still ours
        if status in (Status.JR_E_TIMEOUT, Status.JR_E_FULL):
            raise TimeoutError("jr_pipeline_push")
        if status == Status.JR_E_CLOSED:
            raise ChannelClosed(status, "jr_pipeline_push: the input is closed")
        if status == Status.JR_E_CANCELLED:
            raise Cancelled("jr_pipeline_push: the pipeline failed or was cancelled")
        check(status, "jr_pipeline_push")

    def close_input(self) -> None:
        """No more pushes: the output ends once every item inside has come out."""
        self.start()
        ptr = self._shared.acquire()
        try:
            check(lib.jr_pipeline_close_input(ptr), "jr_pipeline_close_input")
        finally:
            self._shared.release()

    # -- reading --

    def _read(self, timeout: float | None) -> Any:
        self.start()
        ptr = self._shared.acquire()
        out = c_void_p()
        code = c_int32()
        message = None
        try:
            # First with no wait and the GIL kept (see _native.pipeline_next_fast).
            if self._fast:
                status = _native.pipeline_next_fast(self._shared.addr, ctypes.addressof(out), 0)
            else:
                status = lib.jr_pipeline_next(ptr, byref(out), 0)
            if status == _TIMEOUT and timeout != 0:
                status = wait_sliced(lambda ns: lib.jr_pipeline_next(ptr, byref(out), ns), timeout)
            if status in (Status.JR_E_JOB_FAILED, Status.JR_E_PANICKED):
                lib.jr_pipeline_error_code(ptr, byref(code))
                message = _error_message(lib.jr_pipeline_error_message(ptr))
        finally:
            self._shared.release()
        if status == _OK:
            return _take_from(out)
        if status == Status.JR_E_TIMEOUT:
            raise TimeoutError("jr_pipeline_next")
        if status == Status.JR_E_CLOSED:
            raise ChannelClosed(status, "jr_pipeline_next")
        if status == Status.JR_E_JOB_FAILED:
            error = self._state.errors.get(code.value)
            if error is not None:
                raise error
        if status in (Status.JR_E_JOB_FAILED, Status.JR_E_PANICKED):
            raise JobrunnerError(status, message or "jr_pipeline_next")
        if status == Status.JR_E_CANCELLED:
            if self._state.source_error is not None:
                raise self._state.source_error
            raise Cancelled("the pipeline was cancelled")
        check(status, "jr_pipeline_next")
        raise AssertionError(f"jr_pipeline_next: unexpected {status}")

    def get(self, timeout: float | None = None) -> Any:
        """The next output, waiting at most ``timeout`` seconds (None: forever).

        Raises :class:`jobrunner.ChannelClosed` at the end, ``TimeoutError``, and, from
        the pipeline's first failure on (every call): the exception a stage raised, the
        exception the source raised, or :class:`jobrunner.Cancelled`."""
        return self._read(timeout)

    def _waitable(self) -> tuple[int, _Shared]:
        self.start()
        return WaitKind.JR_WAIT_PIPELINE, self._shared

    # -- stopping --

    def cancel(self) -> None:
        """Cancel the pipeline and its feeder: the items inside are released, and reads
        raise :class:`jobrunner.Cancelled` (unless it had failed before)."""
        self._token.cancel()

    def close(self) -> None:
        """Stop the pipeline (cancel it if it runs), release every item inside, stop a
        stream source's producer, wait for the feeder and the stage functions running
        now, and free it. Idempotent. Not from one of its own stage functions."""
        if self._shared.closed:
            return
        self._token.cancel()
        if self._source_stream is not None:
            self._source_stream.close()
        self._shared.close(wait=True)

    def _close_nowait(self, shared: _Shared) -> None:
        if not _jobs._is_finalizing():
            self._token.cancel()  # a feeder waiting on a channel source stops too
        shared.close(wait=False)

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("started" if self._started else "building")
        return f"<jobrunner.Pipeline {len(self._stage_keys)} stages, {state}>"
