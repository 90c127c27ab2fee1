"""A C handle that several threads use at once and that must be freed by the last one.

A stream or a pipeline handle is read by the caller's thread, waited on by
``wait_any``, fed by a feeder job, and closed by the caller or the garbage collector:
``jr_stream_free``/``jr_pipeline_free`` must not run while another thread is inside a
call on the handle. :class:`_Shared` counts the calls in progress ("borrows"); a close
asks the C object to stop (which wakes every borrower promptly: a cancelled stream or
pipeline is ready), and whoever ends the last borrow frees the handle.
"""

from __future__ import annotations

import ctypes
import sys
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["_Shared"]

#: Every handle not yet freed: interpreter exit stops them all, then frees the pipelines
#: (see ``_pool._at_exit``). Removed when freed.
_live: set[_Shared] = set()


class _Shared:
    """Owner of one C handle shared by threads; see the module doc.

    ``free(ptr)`` frees the handle; ``stop(ptr)`` asks it to stop (thread-safe, never
    blocks for long), called at close while borrowers are inside.
    """

    __slots__ = (
        "_ptr", "addr", "_users", "_closed", "_lock", "_freed", "_free_fn", "_stop_fn", "_what", "_on_stop"
    )

    def __init__(
        self,
        ptr: Any,
        free: Callable[[Any], Any],
        stop: Callable[[Any], Any],
        what: str,
        on_stop: Callable[[], Any] | None = None,
    ) -> None:
        self._ptr = ptr
        #: The handle's address, for the calls declared with addresses (valid while
        #: borrowed).
        self.addr: int = ctypes.cast(ptr, ctypes.c_void_p).value or 0
        self._users = 0
        self._closed = False
        self._lock = threading.Lock()
        self._freed = threading.Event()
        self._free_fn = free
        self._stop_fn = stop
        self._what = what
        #: Called by :meth:`stop` first (a pipeline's: cancel its token, which a feeder
        #: waiting on a channel source watches).
        self._on_stop = on_stop
        _live.add(self)

    @property
    def closed(self) -> bool:
        return self._closed

    def acquire(self) -> Any:
        """Borrow the handle for one call; raises ValueError once closed."""
        with self._lock:
            if self._closed:
                raise ValueError(f"the {self._what} is closed")
            self._users += 1
            return self._ptr

    def release(self) -> None:
        """End a borrow; the last one after a close frees the handle."""
        with self._lock:
            self._users -= 1
            ptr = None
            if self._closed and self._users == 0 and self._ptr:
                ptr, self._ptr = self._ptr, None
        if ptr is not None:
            self._do_free(ptr)

    def stop(self) -> None:
        """Ask the C object to stop (no free): under a borrow, so never on a freed handle."""
        if self._on_stop is not None:
            self._on_stop()
        try:
            ptr = self.acquire()
        except ValueError:
            return
        try:
            self._stop_fn(ptr)
        finally:
            self.release()

    def close(self, wait: bool) -> None:
        """Refuse new borrows, stop the object if borrowers are inside, and free it now
        or when the last of them leaves. ``wait``: return only once it is freed."""
        with self._lock:
            if self._closed:
                ptr = None
            else:
                self._closed = True
                self._users += 1  # our own borrow, for the stop below
                ptr = self._ptr
        if ptr is not None:
            if self._users > 1:
                self._stop_fn(ptr)
            self.release()
        if wait and not self._freed.is_set():
            # In slices, so that Ctrl-C interrupts it in the main thread.
            while not self._freed.wait(0.05):
                pass

    def _do_free(self, ptr: Any) -> None:
        try:
            if not sys.is_finalizing():  # never call back into a finalising interpreter
                self._free_fn(ptr)
        finally:
            _live.discard(self)
            self._freed.set()
