"""Select: ``wait_any`` over the binding's objects, on ``jr_wait_any``."""

from __future__ import annotations

from collections.abc import Iterable
from ctypes import byref, c_size_t
from typing import Any

from . import _native
from ._chan import Channel
from ._errors import check, wait_sliced
from ._group import Group
from ._jobs import Future
from ._native import JR_WAIT_MAX, Status, Waitable, WaitKind, lib
from ._shared import _Shared
from ._sync import CancelToken

__all__ = ["wait_any", "can_send", "SendSide"]


class SendSide:
    """``can_send(channel)``: the send side of a channel, for :func:`wait_any` (ready
    when a put would not wait: there is room, or the channel is closed)."""

    __slots__ = ("channel",)

    def __init__(self, channel: Channel) -> None:
        if not isinstance(channel, Channel):
            raise TypeError(f"can_send() takes a jobrunner.Channel, not {type(channel).__name__}")
        self.channel = channel

    def __repr__(self) -> str:
        return f"can_send({self.channel!r})"


def can_send(channel: Channel) -> SendSide:
    """The send side of ``channel``, to wait for room with :func:`wait_any` (a channel
    itself stands for its receive side)."""
    return SendSide(channel)


def _resolve(obj: Any, borrowed: list[_Shared]) -> tuple[int, int]:
    """The ``jr_waitable`` of one item: its kind and handle address. Streams and
    pipelines are borrowed (see :mod:`jobrunner._shared`) until the wait returns; every
    other handle is kept alive by the caller's list and must not be closed meanwhile."""
    waitable = getattr(obj, "_waitable", None)
    if waitable is not None:  # a Stream or a Pipeline (which starts, if not yet)
        kind, shared = waitable()
        ptr = shared.acquire()
        borrowed.append(shared)
        return kind, _native.address(ptr)
    if isinstance(obj, Future):
        if not obj._job:
            raise ValueError("this future is not bound to a job yet")
        return WaitKind.JR_WAIT_JOB, obj._job
    if isinstance(obj, Channel):
        return WaitKind.JR_WAIT_CHAN_RECV, _native.address(obj._handle())
    if isinstance(obj, SendSide):
        return WaitKind.JR_WAIT_CHAN_SEND, _native.address(obj.channel._handle())
    if isinstance(obj, CancelToken):
        return WaitKind.JR_WAIT_TOKEN, _native.address(obj._handle())
    if isinstance(obj, Group):
        return WaitKind.JR_WAIT_GROUP, _native.address(obj._handle())
    raise TypeError(
        "wait_any() waits for jobrunner Futures, Groups, Channels (can_send(ch) for room), "
        f"CancelTokens, Streams and Pipelines, not {type(obj).__name__}"
    )


def wait_any(items: Iterable[Any], timeout: float | None = None) -> int | None:
    """Wait until one of ``items`` is ready; return its index (the first ready one, in
    order), or ``None`` once ``timeout`` seconds (None: no limit; 0: only look) have
    passed with none ready.

    Ready means: a :class:`Future` has ended; a :class:`Group` has an ended job (its C
    completion queue, which the Python group never consumes: once one job has ended it
    stays ready); a :class:`Channel` has an item or is closed (``can_send(ch)``: has room
    or is closed); a :class:`CancelToken` is cancelled; a :class:`Stream` or a
    :class:`Pipeline` would not wait on its next read (an item, its failure or its end).

    Level-triggered, as ``poll(2)``: with several consumers of one thing another may act
    first, so follow it with the non-blocking operation (``get_nowait``, ``put_nowait``)
    and call again if that finds nothing. The GIL is released while it waits; in the main
    thread the wait is cut into slices, so Ctrl-C interrupts it. None of the items may be
    closed while the wait lasts (a stream or pipeline closed meanwhile is freed after it).
    """
    objs = list(items)
    n = len(objs)
    if n > JR_WAIT_MAX:
        raise ValueError(f"wait_any() takes at most {JR_WAIT_MAX} items")
    if n == 0 and timeout is None:
        raise ValueError("wait_any() of nothing, with no timeout, would never return")
    array = (Waitable * max(n, 1))()
    borrowed: list[_Shared] = []
    ready = c_size_t()
    try:
        for i, obj in enumerate(objs):
            kind, handle = _resolve(obj, borrowed)
            array[i].kind = kind
            array[i].handle = handle
        status = wait_sliced(lambda ns: lib.jr_wait_any(array, n, ns, byref(ready)), timeout)
    finally:
        for shared in borrowed:
            shared.release()
    if status == Status.JR_E_TIMEOUT:
        return None
    check(status, "jr_wait_any")
    return ready.value

