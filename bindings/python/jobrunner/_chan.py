"""Channels: a thin owner of a ``jr_chan`` handle whose items are Python objects."""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from ctypes import byref, c_size_t, c_void_p, py_object
from typing import Any

from ._errors import JobrunnerError, check, wait_sliced
from ._native import FREE_FN, ChanP, Status, lib
from ._sync import CancelToken, _Handle

__all__ = ["Channel", "ChannelClosed", "ChannelEmpty", "ChannelFull"]


class ChannelClosed(JobrunnerError):
    """The channel is closed (for a receive: closed and drained)."""


class ChannelFull(JobrunnerError):
    """``put_nowait``: no room now."""


class ChannelEmpty(JobrunnerError):
    """``get_nowait``: nothing buffered now."""


# Items are strong references passed by address. The three primitives come from
# CPython's own ``_ctypes`` module (``PyObj_FromPtr``, ``Py_INCREF``, ``Py_DECREF``:
# undocumented, present since Python 2.5), plain C functions that cost ~0.1 µs, where a
# ctypes call of ``Py_IncRef`` costs ~0.6 µs and ``ctypes.cast`` ~1.7 µs; streams and
# pipelines make several per item. ``Py_INCREF``/``Py_DECREF`` return their argument.
try:
    from _ctypes import Py_DECREF as _decref
    from _ctypes import Py_INCREF as _incref
    from _ctypes import PyObj_FromPtr as _from_ptr
except ImportError:  # pragma: no cover - another implementation of ctypes
    _IncRefApi = ctypes.pythonapi["Py_IncRef"]
    _DecRefApi = ctypes.pythonapi["Py_DecRef"]
    _IncRefApi.argtypes = _DecRefApi.argtypes = [py_object]
    _IncRefApi.restype = _DecRefApi.restype = None

    def _incref(obj: Any) -> Any:
        _IncRefApi(obj)
        return obj

    def _decref(obj: Any) -> Any:
        _DecRefApi(obj)
        return obj

    def _from_ptr(ptr: int) -> Any:
        return ctypes.cast(ptr, py_object).value


def _take(ptr: int) -> Any:
    """The object a channel item points to, taking over the reference the channel held."""
    obj = _from_ptr(ptr)
    _decref(obj)
    return obj


@FREE_FN
def _drop_item(ptr: int) -> None:
    """``item_free``: drops the reference an item still buffered at the free held."""
    if ptr:
        _decref(_from_ptr(ptr))


class Channel(_Handle):
    """A bounded multi-producer, multi-consumer FIFO channel of Python objects, shared
    with the C, Rust and Go code of the process (``jr_chan``).

    :meth:`put` waits for room and :meth:`get` for an item, releasing the GIL; inside a
    job the pool lends a spare worker meanwhile, so producer and consumer jobs on a
    small pool still meet. :meth:`close_for_sending` ends it for producers; consumers
    get what is buffered, then :class:`ChannelClosed` (and iteration ends).
    :meth:`close` frees the handle (a finalizer does it otherwise), as for every handle
    of the binding; items still buffered then are released.
    """

    _free_name = "jr_chan_free"

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("a channel holds at least one item")
        out = ChanP()
        check(lib.jr_chan_new(capacity, _drop_item, byref(out)), "jr_chan_new")
        self._ptr = out
        self.capacity = capacity

    def put(self, item: Any, timeout: float | None = None, token: CancelToken | None = None) -> None:
        """Send ``item``, waiting at most ``timeout`` seconds (None: forever) for room.

        Raises :class:`ChannelClosed`, ``TimeoutError``, or :class:`jobrunner.Cancelled`
        (``token`` cancelled)."""
        ptr = self._handle()
        tok = token._handle() if token is not None else None
        _incref(item)
        status = wait_sliced(lambda ns: lib.jr_chan_send(ptr, id(item), ns, tok), timeout)
        if status != Status.JR_OK:
            _decref(item)  # still ours
            self._raise(status, "jr_chan_send")

    def put_nowait(self, item: Any) -> None:
        """Send ``item`` if there is room now; else raise :class:`ChannelFull`."""
        ptr = self._handle()
        _incref(item)
        status = lib.jr_chan_try_send(ptr, id(item))
        if status != Status.JR_OK:
            _decref(item)
            if status == Status.JR_E_FULL:
                raise ChannelFull(status, "jr_chan_try_send")
            self._raise(status, "jr_chan_try_send")

    def get(self, timeout: float | None = None, token: CancelToken | None = None) -> Any:
        """Receive an item, waiting at most ``timeout`` seconds (None: forever).

        Raises :class:`ChannelClosed` (closed and drained), ``TimeoutError``, or
        :class:`jobrunner.Cancelled`."""
        ptr = self._handle()
        tok = token._handle() if token is not None else None
        out = c_void_p()
        status = wait_sliced(lambda ns: lib.jr_chan_recv(ptr, byref(out), ns, tok), timeout)
        if status != Status.JR_OK:
            self._raise(status, "jr_chan_recv")
        return _take(out.value)

    def get_nowait(self) -> Any:
        """Receive an item if one is buffered now; else raise :class:`ChannelEmpty`."""
        out = c_void_p()
        status = lib.jr_chan_try_recv(self._handle(), byref(out))
        if status == Status.JR_E_EMPTY:
            raise ChannelEmpty(status, "jr_chan_try_recv")
        if status != Status.JR_OK:
            self._raise(status, "jr_chan_try_recv")
        return _take(out.value)

    def close_for_sending(self) -> None:
        """Close the channel (``jr_chan_close``): puts fail from now on; gets drain what
        is buffered, then raise :class:`ChannelClosed`. Idempotent. (:meth:`close`
        frees the handle, as for the other handle types.)"""
        check(lib.jr_chan_close(self._handle()), "jr_chan_close")

    def __len__(self) -> int:
        out = c_size_t()
        check(lib.jr_chan_len(self._handle(), byref(out)), "jr_chan_len")
        return out.value

    def __iter__(self) -> Iterator[Any]:
        while True:
            try:
                yield self.get()
            except ChannelClosed:
                return

    @staticmethod
    def _raise(status: int, what: str) -> None:
        if status == Status.JR_E_CLOSED:
            raise ChannelClosed(status, what)
        if status in (Status.JR_E_TIMEOUT, Status.JR_E_FULL):  # FULL: a put of timeout 0
            raise TimeoutError(what)
        check(status, what)
