"""Submit options: a prepared ``jr_submit_options`` and ``pool.options(...)``."""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from ._jobs import _ARG_FREE, Future
from ._errors import to_ns
from ._native import SubmitOptions, lib
from ._sync import CancelToken, Semaphore

if TYPE_CHECKING:
    from ._group import Group
    from ._pool import Pool
    from ._stream import Stream

__all__ = ["Submitter"]

P = ParamSpec("P")
T = TypeVar("T")


class _Options:
    """A prepared ``jr_submit_options``, with the Python objects it points to kept alive."""

    def __init__(
        self,
        *,
        token: CancelToken | None = None,
        semaphore: Semaphore | None = None,
        weight: int = 1,
        group: Group | None = None,
        delay: float | None = None,
        name: str | None = None,
        arg_free: bool = True,
    ) -> None:
        self.managed = arg_free
        if weight < 1:
            raise ValueError("weight must be at least 1")
        if delay is not None and delay < 0:
            raise ValueError("delay must not be negative")
        opts = lib.jr_submit_options_default()
        opts.nonblocking = 1
        if arg_free:
            opts.arg_free = _ARG_FREE
        self._keep: list[Any] = []
        if token is not None:
            opts.token = token._handle()
            self._keep.append(token)
        if semaphore is not None:
            opts.sem = semaphore._handle()
            self._keep.append(semaphore)
        opts.permits = weight
        if group is not None:
            opts.group = group._handle()
            self._keep.append(group)
        opts.delay_ns = to_ns(delay) if delay is not None else 0
        if name is not None:
            encoded = name.encode()
            opts.name = encoded
            self._keep.append(encoded)
        self.struct = opts
        #: The struct's address, for the address-typed ``jr_submit`` (``submit_addr``).
        self.addr = ctypes.addressof(opts)
        self.group = group
        self._handles = [obj for obj in self._keep if not isinstance(obj, bytes)]

    def check_open(self) -> None:
        """Raise ValueError if a token, semaphore or group of the options was closed
        (its handle freed) after the options were made."""
        for obj in self._handles:
            obj._handle()

    def blocking(self, timeout_ns: int) -> Any:
        """A copy that waits up to ``timeout_ns`` for room in a bounded queue."""
        copy = SubmitOptions.from_buffer_copy(self.struct)
        copy.nonblocking = 0
        copy.timeout_ns = timeout_ns
        return ctypes.pointer(copy)


class Submitter:
    """``pool.options(...)``: submits with those options (so they never collide with the
    callable's own keyword arguments)."""

    def __init__(self, pool: Pool, options: _Options) -> None:
        self._pool = pool
        self._options = options

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Like :meth:`Pool.submit`, with the options."""
        self._options.check_open()
        fut = self._pool._submit(fn, args, kwargs, self._options)
        if self._options.group is not None:
            self._options.group._track(fut)
        return fut

    def submit_every(
        self, period: float, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> Future[None]:
        """Like :meth:`Pool.submit_every`, with the options (``delay`` is the first run's)."""
        self._options.check_open()
        return self._pool._submit(fn, args, kwargs, self._options, period=period)

    def stream(
        self, fn: Callable[..., Any], /, *args: Any, capacity: int = 16, **kwargs: Any
    ) -> Stream:
        """Like :meth:`Pool.stream`, with the options (the producer job's; no group)."""
        from ._stream import Stream

        return Stream(self._pool, fn, args, kwargs, capacity, self._options)
