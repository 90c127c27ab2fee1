"""Groups of jobs (errgroup): waited for, limited and cancelled together."""

from __future__ import annotations

import concurrent.futures
import ctypes
import threading
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from ._errors import Cancelled, check, wait_sliced
from ._jobs import Future
from ._native import GroupP, Status, lib
from ._options import _Options
from ._sync import CancelToken

if TYPE_CHECKING:
    from ._pool import Pool

__all__ = ["Group"]

P = ParamSpec("P")
T = TypeVar("T")

_TIMEOUT = Status.JR_E_TIMEOUT


class Group:
    """Jobs on one pool that are waited for, limited and cancelled together (errgroup).

    Use as a context manager: leaving the block waits for every job, and raises the
    first failure (in completion order) unless the block itself raised.

    Args:
        pool: the pool the jobs run on.
        limit: at most this many of the group's jobs run at once; the others wait
            without holding a worker (None: no limit).
        fail_fast: the first job to raise cancels the others (queued ones never run,
            running ones see ``current().cancelled``).
        token: the group's token is a child of this one.
    """

    def __init__(
        self,
        pool: Pool,
        limit: int | None = None,
        fail_fast: bool = False,
        token: CancelToken | None = None,
    ) -> None:
        opts = lib.jr_group_options_default()
        opts.limit = limit or 0
        opts.fail_fast = 1 if fail_fast else 0
        if token is not None:
            opts.token = token._handle()
        out = GroupP()
        check(lib.jr_group_new(pool._handle(), ctypes.byref(opts), ctypes.byref(out)), "jr_group_new")
        self._ptr: Any = out
        self._pool = pool
        self._token = token
        self._futures: list[Future[Any]] = []
        self._first_error: BaseException | None = None
        self._lock = threading.Lock()
        self._options = _Options(group=self)

    def _handle(self) -> Any:
        if not self._ptr:
            raise ValueError("the group is closed")
        return self._ptr

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Run ``fn(*args, **kwargs)`` as a member of the group."""
        self._handle()  # raises if closed
        fut = self._pool._submit(fn, args, kwargs, self._options)
        self._track(fut)
        return fut

    def _track(self, fut: Future[Any]) -> None:
        with self._lock:
            self._futures.append(fut)
        fut.add_done_callback(self._on_done)

    def _on_done(self, fut: Future[Any]) -> None:
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is not None:
            with self._lock:
                if self._first_error is None:
                    self._first_error = exc

    @property
    def futures(self) -> list[Future[Any]]:
        """The futures of the jobs submitted so far, in submission order."""
        with self._lock:
            return list(self._futures)

    def as_completed(self, timeout: float | None = None) -> Iterator[Future[Any]]:
        """The futures of the jobs submitted so far, as they complete."""
        return concurrent.futures.as_completed(self.futures, timeout)

    def cancel(self) -> None:
        """Cancel the group's jobs: queued ones never run, running ones are told."""
        check(lib.jr_group_cancel(self._handle()), "jr_group_cancel")

    def wait(self, timeout: float | None = None) -> None:
        """Wait until every job submitted so far has ended; raise the first failure
        (its own exception), else :class:`Cancelled` if some were cancelled.

        Raises:
            TimeoutError: not all ended within ``timeout`` seconds.
        """
        ptr = self._handle()
        status = wait_sliced(lambda ns: lib.jr_group_wait(ptr, ns), timeout)
        if status == _TIMEOUT:
            raise TimeoutError("the group's jobs did not all end in time")
        futures = self.futures
        concurrent.futures.wait(futures)  # the Python side completes just after C
        if self._first_error is not None:
            raise self._first_error
        if status == Status.JR_E_CANCELLED or any(f.cancelled() for f in futures):
            raise Cancelled("some of the group's jobs were cancelled")

    def close(self) -> None:
        """Refuse new jobs and free the handle (the jobs go on). Idempotent."""
        ptr, self._ptr = self._ptr, None
        if ptr:
            lib.jr_group_close(ptr)
            lib.jr_group_free(ptr)

    def __enter__(self) -> Group:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc is not None:
                try:
                    self.wait()
                except BaseException:  # noqa: BLE001 - the block's own exception wins
                    pass
            else:
                self.wait()
        finally:
            self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter teardown
            pass
