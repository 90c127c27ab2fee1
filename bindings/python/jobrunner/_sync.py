"""Cancellation tokens and semaphores: thin owners of ``jr_token`` / ``jr_sem`` handles."""

from __future__ import annotations

from ctypes import byref, c_int, c_uint64
from types import TracebackType
from typing import TypeVar

from . import _native
from ._errors import check, to_ns, wait_sliced
from ._native import CancelReason, SemP, Status, TokenP, lib

__all__ = ["CancelToken", "Semaphore"]

_T = TypeVar("_T")


class _ClosesOnExit:
    """A context manager that returns itself and calls ``self.close()`` on exit."""

    def close(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def __enter__(self: _T) -> _T:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _Handle(_ClosesOnExit):
    """Owner of one C handle: idempotent :meth:`close`, context manager, a ``__del__``
    that is safe at interpreter exit, and use-after-close raising ``ValueError``."""

    _ptr: object = None
    _free_name = ""

    def _handle(self) -> object:
        if not self._ptr:
            raise ValueError(f"{type(self).__name__} is closed")
        return self._ptr

    def close(self) -> None:
        """Free the handle (idempotent). Jobs that use the object keep what they need."""
        ptr, self._ptr = self._ptr, None
        if ptr:
            free = getattr(_native.lib, self._free_name, None) if _native else None
            if free is not None:
                free(ptr)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter teardown
            pass


class CancelToken(_Handle):
    """A node of the process-wide cancellation tree (``jr_token``).

    Cancelling a token cancels its descendants and the jobs submitted with them: queued
    ones end cancelled without running, running ones see ``current().cancelled``.

    Args:
        parent: the token is cancelled when ``parent`` is (None: a root).
        timeout: seconds until the token cancels itself with reason ``DEADLINE``.
    """

    _free_name = "jr_token_free"

    def __init__(self, parent: CancelToken | None = None, timeout: float | None = None) -> None:
        out = TokenP()
        check(lib.jr_token_new(parent._handle() if parent else None, byref(out)), "jr_token_new")
        self._ptr = out
        if timeout is not None:
            self.set_deadline(timeout)

    @classmethod
    def _child_of_raw(cls, parent: object) -> CancelToken:
        """A new owned token, child of a borrowed C token (``jr_ctx_token``)."""
        self = cls.__new__(cls)
        out = TokenP()
        check(lib.jr_token_new(parent, byref(out)), "jr_token_new")
        self._ptr = out
        return self

    def set_deadline(self, timeout: float) -> None:
        """Cancel the token (reason ``DEADLINE``) ``timeout`` seconds from now, replacing
        any earlier deadline. Does nothing if it is already cancelled."""
        status = lib.jr_token_set_deadline(self._handle(), to_ns(timeout))
        if status != Status.JR_E_CANCELLED:
            check(status, "jr_token_set_deadline")

    def cancel(self) -> None:
        """Cancel the token and its descendants: when it returns, jobs still queued
        under it have ended cancelled (``jr_token_cancel_sync``). Fine in a Python signal
        handler, which Python runs in the main thread, outside the C signal context."""
        check(lib.jr_token_cancel_sync(self._handle()), "jr_token_cancel_sync")

    @property
    def cancelled(self) -> bool:
        """Whether the token, or an ancestor, is cancelled."""
        return bool(_native.fast.jr_token_is_cancelled(self._handle()))

    @property
    def reason(self) -> CancelReason:
        """Why the token was cancelled (``JR_REASON_NONE`` while it is live)."""
        out = c_int()
        check(_native.fast.jr_token_reason(self._handle(), byref(out)), "jr_token_reason")
        return CancelReason(out.value)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the token is cancelled or ``timeout`` seconds pass; True if it is
        cancelled. Interruptible by Ctrl-C in the main thread."""
        ptr = self._handle()
        status = wait_sliced(lambda ns: lib.jr_token_wait(ptr, ns), timeout)
        if status == Status.JR_E_TIMEOUT:
            return False
        check(status, "jr_token_wait")
        return True

    def child(self, timeout: float | None = None) -> CancelToken:
        """A new token cancelled when this one is."""
        return CancelToken(self, timeout)

    def __repr__(self) -> str:
        if not self._ptr:
            return "<CancelToken closed>"
        return f"<CancelToken cancelled={self.cancelled} reason={self.reason.name}>"


class Semaphore(_Handle):
    """A counting, weighted, FIFO-fair semaphore shared by every language in the process
    (``jr_sem``).

    Use it directly (:meth:`acquire`/:meth:`release`, ``with sem:``) or as a submit
    option, ``pool.options(semaphore=sem, weight=2).submit(fn)``: the job then waits for
    its permits without holding a worker thread, and gives them back when it ends.
    """

    _free_name = "jr_sem_free"

    def __init__(self, permits: int) -> None:
        if permits < 1:
            raise ValueError("a semaphore needs at least 1 permit")
        out = SemP()
        check(lib.jr_sem_new(permits, byref(out)), "jr_sem_new")
        self._ptr = out
        self.permits = permits

    def acquire(
        self, n: int = 1, timeout: float | None = None, token: CancelToken | None = None
    ) -> bool:
        """Take ``n`` permits, waiting at most ``timeout`` seconds (None: forever).

        Returns True when taken, False on timeout. Raises :class:`Cancelled` if
        ``token`` is cancelled first. Outside the main thread the wait is one C call
        (FIFO order kept); in the main thread it is cut into slices so that Ctrl-C works
        (a slice that times out re-queues the request at the back).
        """
        ptr = self._handle()
        tok = token._handle() if token is not None else None
        if timeout == 0:
            status = _native.fast.jr_sem_try_acquire(ptr, n)
            if status == Status.JR_E_FULL:
                return False
        else:
            status = wait_sliced(lambda ns: lib.jr_sem_acquire(ptr, n, ns, tok), timeout)
            if status == Status.JR_E_TIMEOUT:
                return False
        check(status, "jr_sem_acquire")
        return True

    def release(self, n: int = 1) -> None:
        """Give back ``n`` permits, waking waiters (threads and jobs) in order."""
        status = lib.jr_sem_release(self._handle(), n)
        if status == Status.JR_E_INVALID_ARG:
            raise ValueError(f"cannot release {n} permits: more than were taken")
        check(status, "jr_sem_release")

    @property
    def available(self) -> int:
        """The permits free now."""
        out = c_uint64()
        check(_native.fast.jr_sem_available(self._handle(), byref(out)), "jr_sem_available")
        return out.value

    def __enter__(self) -> Semaphore:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        if not self._ptr:
            return "<Semaphore closed>"
        return f"<Semaphore available={self.available}/{self.permits}>"

