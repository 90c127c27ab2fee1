"""Exceptions of the binding, and the mapping of ``jr_status`` values to them."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable

from . import _native
from ._native import Status

__all__ = [
    "JobrunnerError",
    "Cancelled",
    "PoolShutdown",
    "NativeJobError",
    "check",
    "slice_ns",
    "wait_sliced",
    "to_ns",
]


class JobrunnerError(Exception):
    """A C call failed: ``status`` is the :class:`~jobrunner._native.Status` it returned."""

    def __init__(self, status: int, what: str = "") -> None:
        self.status = Status(status) if status in Status._value2member_map_ else status
        text = _native.status_str(status)
        if status in _DETAILED:
            # Made right after the failed call, on its thread: the library's detail
            # (which argument, and why) is that call's.
            text = f"{text} ({_native.last_error_message()})"
        super().__init__(f"{what}: {text}" if what else text)


#: Statuses whose detail (``jr_last_error_message``) says more than their text.
_DETAILED = frozenset({Status.JR_E_INVALID_ARG, Status.JR_E_NO_MEMORY, Status.JR_E_FORKED})


class Cancelled(concurrent.futures.CancelledError):
    """The job (or a wait) was cancelled.

    Raised by :meth:`JobContext.check` inside a job whose token is cancelled; a job
    that lets it escape while cancelled ends cancelled (its future's ``cancelled()`` is
    true). A subclass of :class:`concurrent.futures.CancelledError`, so code written
    for the standard executors catches it.
    """


class PoolShutdown(JobrunnerError, RuntimeError):
    """The pool is shut down: it accepts no new job (a ``RuntimeError``, as the
    standard executors raise)."""


class NativeJobError(JobrunnerError):
    """A native job (``submit_native``) failed or panicked: ``code`` is its nonzero
    return code (0 for a panic), ``message`` what it gave ``jr_ctx_fail``/``jr_ctx_panic``."""

    def __init__(self, status: int, code: int, message: str | None) -> None:
        super().__init__(status, message or f"native job failed with code {code}")
        self.code = code
        self.message = message


def check(status: int, what: str = "") -> None:
    """Raise the exception that ``status`` stands for, if it is not ``JR_OK``."""
    if status == 0:
        return
    if status == Status.JR_E_SHUTDOWN:
        raise PoolShutdown(status, what or "cannot schedule new futures after shutdown")
    if status == Status.JR_E_CANCELLED:
        raise Cancelled(what or _native.status_str(status))
    raise JobrunnerError(status, what)


#: How long one C wait lasts, in the main thread, before Python gets a chance to run
#: its signal handlers (so Ctrl-C interrupts a wait). Other threads wait in one call.
MAIN_THREAD_SLICE_NS = 50_000_000


def slice_ns(remaining_ns: int) -> int:
    """The timeout of the next C wait: all that remains, except in the main thread,
    where it is cut into slices of at most :data:`MAIN_THREAD_SLICE_NS`."""
    if threading.current_thread() is threading.main_thread():
        if remaining_ns < 0 or remaining_ns > MAIN_THREAD_SLICE_NS:
            return MAIN_THREAD_SLICE_NS
    return remaining_ns


def wait_sliced(call: Callable[[int], int], timeout: float | None) -> int:
    """Run the C wait ``call(timeout_ns)`` until it returns something other than
    ``JR_E_TIMEOUT`` or ``timeout`` seconds (None: forever) have passed.

    In the main thread each call lasts at most :data:`MAIN_THREAD_SLICE_NS`, so a
    ``KeyboardInterrupt`` raised by Python's signal handler between two calls ends the
    wait. Returns the last status.
    """
    if timeout is None:
        deadline = None
    else:
        deadline = time.monotonic_ns() + max(0, int(timeout * 1e9))
    while True:
        remaining = -1 if deadline is None else max(0, deadline - time.monotonic_ns())
        status = call(slice_ns(remaining))
        if status != Status.JR_E_TIMEOUT:
            return status
        if deadline is not None and time.monotonic_ns() >= deadline:
            return status


def to_ns(seconds: float | None) -> int:
    """Seconds (None: forever) as the C API's nanoseconds (negative: forever)."""
    if seconds is None:
        return -1
    return max(0, int(seconds * 1e9))
