"""Streams (generators): a Python generator run as a ``jr_stream`` producer job.

``pool.stream(gen_fn, *args)`` calls ``jr_stream_new`` with one module-level C producer
(:data:`_PRODUCE`, a ``jr_stream_fn``) whose ``arg`` is an integer key into
:data:`_producers`. On a worker, the producer calls ``gen_fn(*args, **kwargs)`` and sends
every value it yields on the lent ``jr_chan`` (``jr_chan_send``, GIL released while it
waits for the reader), each as a strong reference passed by address: the reader takes
that reference over (``_chan._take``), and the stream's ``item_free`` (``_chan._drop_item``)
drops the references of the items nobody read. A send that fails (the stream was closed
or the producer's token cancelled) hands the reference back and closes the generator
(``GeneratorExit`` at its ``yield``). The producer's ``arg_free`` runs exactly once when
the job has ended, ran or not: it removes the entry and completes ``stream.producer``.
"""

from __future__ import annotations

import asyncio
import ctypes
import itertools
import traceback
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures._base import RUNNING
from ctypes import byref, c_void_p
from typing import TYPE_CHECKING, Any

from . import _jobs, _native
from ._chan import ChannelClosed, ChannelEmpty, _decref, _drop_item, _incref, _take
from ._errors import Cancelled, JobrunnerError, PoolShutdown, check, wait_sliced
from ._jobs import Future, _local
from ._native import FREE_FN, STREAM_FN, CtxP, StreamP, SubmitOptions, Status, Waitable, WaitKind, lib
from ._shared import _Shared
from ._sync import _ClosesOnExit

if TYPE_CHECKING:
    from ._options import _Options
    from ._pool import Pool

__all__ = ["Stream"]


_OK = Status.JR_OK
_FULL = Status.JR_E_FULL
_TIMEOUT = Status.JR_E_TIMEOUT

#: How long one readiness wait of ``async for`` lasts in the executor thread before it
#: goes back to the event loop (which then waits again): bounds how long a thread stays
#: busy for an async reader that was cancelled, or a loop that is shutting down.
_ASYNC_SLICE = 0.25


def _take_from(cell: c_void_p) -> Any:
    """The object whose address ``cell`` holds, taking over the reference it stands for."""
    return _take(cell.value)


class _Running:
    """What :func:`jobrunner.current` needs of a running producer or stage: the
    ``jr_ctx`` address, and the JobContext made on demand."""

    __slots__ = ("_ctx", "_context")

    def __init__(self, ctx: int | None) -> None:
        self._ctx = ctx
        self._context: Any = None

    def end(self) -> None:
        if self._context is not None:
            self._context._ctx = None  # the context is only valid during the call
            self._context = None


def _exception_message(exc: BaseException) -> bytes:
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return text.encode("utf-8", "replace") or b"exception"


class _Producer:
    """A stream's producer: what to call, how it ended, and the future it completes."""

    __slots__ = ("fn", "args", "kwargs", "future", "outcome", "error", "sent", "taken", "waiting")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.future: Future[None] = Future()
        self.future._state = RUNNING  # an observer: cancelling it does nothing
        #: "ok", "failed" or "cancelled" once the producer has returned (None: never ran).
        self.outcome: str | None = None
        #: The exception the generator raised (the reader raises it after the items).
        self.error: BaseException | None = None
        # Items sent and taken, and readers inside a waiting read (GIL-released): each
        # changed under the GIL after the C call. With the GIL held, ``sent - taken -
        # waiting > 0`` proves an item is buffered that no other reader can take first,
        # so a read of no wait may keep the GIL (``_native.stream_next_fast``): it takes
        # that item. (Without that proof it may not: see ``_native.stream_next_addr``.)
        self.sent = 0
        self.taken = 0
        self.waiting = 0

    def read(self, addr: int, out: c_void_p, timeout: float | None) -> int:
        """One ``jr_stream_next`` into ``out``: with the GIL kept if an item is known to
        be buffered, else released (in slices in the main thread)."""
        if self.sent - self.taken - self.waiting > 0:
            status = _native.stream_next_fast(addr, ctypes.addressof(out), 0)
        else:
            self.waiting += 1
            try:
                if timeout == 0:
                    status = _native.stream_next_addr(addr, ctypes.addressof(out), 0)
                else:
                    out_addr = ctypes.addressof(out)
                    status = wait_sliced(lambda ns: _native.stream_next_addr(addr, out_addr, ns), timeout)
            finally:
                self.waiting -= 1
        if status == _OK:
            self.taken += 1
        return status


#: Producers of streams not yet ended, by the key passed to C as the job's ``arg``.
_producers: dict[int, _Producer] = {}
_keys = itertools.count(1)


def _produce(ctx: int | None, key: int | None, chan: int | None) -> int:
    """The C producer of every Python stream (``jr_stream_fn``)."""
    state = _producers.get(key)  # type: ignore[arg-type]
    if state is None or _jobs._exiting or _jobs._is_finalizing():
        return 1  # nonzero after the atexit cancel: the job ends cancelled
    if _native.ctx_is_cancelled_raw(ctx):
        state.outcome = "cancelled"
        return 1
    run = _Running(ctx)
    prev = _local.job
    _local.job = run
    send = _native.chan_send_addr
    try_send = _native.chan_try_send_fast
    try:
        it = iter(state.fn(*state.args, **state.kwargs))
        for item in it:
            _incref(item)
            status = try_send(chan, id(item))  # GIL kept: no wait
            if status == _FULL:
                status = send(chan, id(item), -1, None)  # GIL released while it waits
            if status == _OK:
                state.sent += 1
            else:
                # The reader closed the stream, or the job was asked to stop: the item
                # is still ours, and the generator stops at its yield.
                _decref(item)
                close = getattr(it, "close", None)
                if close is not None:
                    close()
                state.outcome = "cancelled"
                return 1  # nonzero once asked to stop: the job ends cancelled
        state.outcome = "ok"
        return 0
    except BaseException as exc:  # noqa: BLE001 - every outcome goes to the reader
        cptr = ctypes.cast(ctx, CtxP)
        if isinstance(exc, Cancelled) and _native.fast.jr_ctx_is_cancelled(cptr):
            state.outcome = "cancelled"
            return 1
        state.outcome = "failed"
        state.error = exc
        # As for every Python job that raised: the job ends panicked, with the message.
        _native.fast.jr_ctx_panic(cptr, _exception_message(exc))
        return 1
    finally:
        _local.job = prev
        run.end()


def _producer_ended(key: int | None) -> None:
    """``arg_free`` of a stream's producer job: it has ended, ran or not."""
    state = _producers.pop(key, None)  # type: ignore[arg-type]
    if state is None:
        return
    state.fn = state.args = state.kwargs = None  # type: ignore[assignment]
    fut = state.future
    if state.outcome == "ok":
        fut._finish(None)
    elif state.outcome == "failed":
        fut.set_exception(state.error)
    else:
        fut._end_cancelled()
    if _jobs._exiting:
        with _jobs._ended:
            _jobs._ended.notify_all()


# Kept alive for the life of the process: C may call them until every pool has ended.
_PRODUCE = STREAM_FN(_produce)
_PRODUCER_ENDED = FREE_FN(_producer_ended)


def _error_message(raw: bytes | None) -> str | None:
    """A C error message (``jr_*_error_message``), decoded."""
    return raw.decode("utf-8", "replace") if raw else None


class _Reader(_ClosesOnExit):
    """What streams and pipelines share: a handle in a :class:`_Shared`, a ``_read``
    (raising ChannelClosed at the end, TimeoutError), iteration (``for``, ``async
    for``), ``get_nowait``, ``closed``, a context manager and a ``__del__`` that closes
    without waiting."""

    _shared: _Shared
    #: The C call a read makes, for the messages of ChannelEmpty.
    _next_name = ""

    def _read(self, timeout: float | None) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def _waitable(self) -> tuple[int, _Shared]:  # pragma: no cover - overridden
        raise NotImplementedError

    def _close_nowait(self, shared: _Shared) -> None:
        """What ``__del__`` does with an open handle: close it without waiting."""
        shared.close(wait=False)

    def get_nowait(self) -> Any:
        """The next item if one is there now; else raise :class:`jobrunner.ChannelEmpty`
        (the end and errors as :meth:`get`)."""
        try:
            return self._read(0)
        except TimeoutError:
            raise ChannelEmpty(Status.JR_E_EMPTY, self._next_name) from None

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        try:
            return self._read(None)
        except ChannelClosed:
            raise StopIteration from None

    @property
    def closed(self) -> bool:
        return self._shared.closed

    def __del__(self) -> None:
        shared = getattr(self, "_shared", None)
        if shared is None or shared.closed:
            return
        try:
            self._close_nowait(shared)
        except Exception:  # pragma: no cover - interpreter teardown
            pass

    def __aiter__(self) -> AsyncIterator[Any]:
        return self  # type: ignore[return-value]

    async def __anext__(self) -> Any:
        """The next item without blocking the event loop: a non-blocking read on the
        loop's thread; while there is nothing, a readiness wait (``jr_wait_any``, which
        takes nothing) in the loop's default executor, in slices of at most
        :data:`_ASYNC_SLICE`. A cancelled ``await`` thus loses no item."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                return self.get_nowait()
            except ChannelEmpty:
                pass
            except ChannelClosed:
                raise StopAsyncIteration from None
            await loop.run_in_executor(None, self._wait_ready, _ASYNC_SLICE)

    def _wait_ready(self, timeout: float) -> None:
        kind, shared = self._waitable()
        try:
            ptr = shared.acquire()
        except ValueError:
            return  # closed meanwhile: the next read says so
        try:
            item = Waitable(kind, _native.address(ptr))
            lib.jr_wait_any(byref(item), 1, int(timeout * 1e9), byref(ctypes.c_size_t()))
        finally:
            shared.release()


class Stream(_Reader):
    """A generator run as a producer job on the pool: ``pool.stream(gen_fn, *args)``.

    Iterate it (``for``, ``async for``) to read the values the generator yields, in
    order; the producer is never more than ``capacity`` values ahead. If the generator
    raises, the reader gets the values yielded before, then that exception (once), then
    the end. :meth:`close` (or leaving a ``with`` block, or dropping the stream) stops the
    producer: its next send fails, the generator gets ``GeneratorExit`` at its ``yield``,
    ``jobrunner.current().cancelled`` is true, and the values still buffered are released.
    :meth:`cancel` stops the producer but lets the reader drain what was sent
    (then :class:`jobrunner.Cancelled`). :attr:`producer` is a future that completes when
    the producer job has ended: ``None``, the generator's exception, or cancelled.
    """

    _next_name = "jr_stream_next"

    def __init__(
        self,
        pool: Pool,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        capacity: int,
        options: _Options,
    ) -> None:
        if capacity < 1:
            raise ValueError("a stream buffers at least one item")
        if options.group is not None:
            raise ValueError("a stream's producer cannot join a group")
        if pool._closed:
            raise PoolShutdown(Status.JR_E_SHUTDOWN, "cannot schedule new futures after shutdown")
        if _jobs._exiting:
            raise RuntimeError("cannot schedule new futures after interpreter shutdown")
        options.check_open()
        state = _Producer(fn, args, kwargs)
        key = next(_keys)
        _producers[key] = state
        opts = SubmitOptions.from_buffer_copy(options.struct)
        opts.arg_free = _PRODUCER_ENDED
        opts.nonblocking = 1
        out = StreamP()
        pool_ptr = pool._handle()
        status = lib.jr_stream_new(pool_ptr, _PRODUCE, key, capacity, _drop_item, byref(opts), byref(out))
        if status == Status.JR_E_FULL:  # a bounded queue: wait for room
            opts.nonblocking = 0

            def again(ns: int) -> int:
                opts.timeout_ns = ns
                return lib.jr_stream_new(pool_ptr, _PRODUCE, key, capacity, _drop_item, byref(opts), byref(out))

            status = wait_sliced(again, None)
        if status != _OK:
            _producers.pop(key, None)  # arg_free is not called on an error
            check(status, "jr_stream_new")
        self._shared = _Shared(out, lib.jr_stream_free, lib.jr_stream_cancel, "stream")
        self._state = state
        self._options = options  # what the options point to lives as long as the stream
        self._ended = False
        self.capacity = capacity
        #: Completes when the producer job has ended (see the class doc).
        self.producer: Future[None] = state.future

    # -- reading --

    def _read(self, timeout: float | None) -> Any:
        """The next item; raises ChannelClosed at the end, TimeoutError, or the end's
        error (the generator's exception, Cancelled)."""
        if self._ended:
            raise ChannelClosed(Status.JR_E_CLOSED, "jr_stream_next")
        ptr = self._shared.acquire()
        out = c_void_p()
        message = None
        try:
            status = self._state.read(self._shared.addr, out, timeout)
            if status in (Status.JR_E_PANICKED, Status.JR_E_JOB_FAILED):
                message = _error_message(lib.jr_stream_error_message(ptr))
        finally:
            self._shared.release()
        if status == _OK:
            return _take_from(out)
        if status == Status.JR_E_TIMEOUT:
            raise TimeoutError("jr_stream_next")
        self._raise_end(status, message)

    def _raise_end(self, status: int, message: str | None) -> None:
        """Raise what a read that returned ``status`` (not an item) stands for."""
        if status == Status.JR_E_CLOSED:
            self._ended = True
            raise ChannelClosed(status, "jr_stream_next")
        if status == Status.JR_E_CANCELLED:
            raise Cancelled("the stream's producer was cancelled")
        if status in (Status.JR_E_PANICKED, Status.JR_E_JOB_FAILED):
            error = self._state.error
            if error is not None:
                raise error
            raise JobrunnerError(status, message or "jr_stream_next")
        check(status, "jr_stream_next")
        raise AssertionError(f"jr_stream_next: unexpected {status}")

    def get(self, timeout: float | None = None) -> Any:
        """The next item, waiting at most ``timeout`` seconds (None: forever).

        Raises :class:`jobrunner.ChannelClosed` at the end, ``TimeoutError``, the
        generator's exception (once, after its items), :class:`jobrunner.Cancelled`
        (the producer was cancelled), ``ValueError`` once closed."""
        return self._read(timeout)

    # -- stopping --

    def cancel(self) -> None:
        """Stop the producer (as its token's cancel would): the reader still gets what
        was sent, then :class:`jobrunner.Cancelled` (unless the producer had ended)."""
        self._shared.stop()

    def close(self) -> None:
        """Stop the producer and release the items still buffered (idempotent). A read
        in progress on another thread ends first; the handle is freed by the last one."""
        self._shared.close(wait=True)

    def _waitable(self) -> tuple[int, _Shared]:
        return WaitKind.JR_WAIT_STREAM, self._shared

    def __repr__(self) -> str:
        return f"<jobrunner.Stream capacity={self.capacity}{' closed' if self.closed else ''}>"
