"""jobrunner: one work-stealing job runner shared by C, Python, Go and Rust code.

A drop-in :class:`concurrent.futures.Executor` on the jobrunner C library (through
ctypes), with what the standard library lacks: cancellation tokens, semaphores the
scheduler understands, fail-fast groups, delayed and periodic jobs, native C jobs that
run without the GIL, and one pool shared with the rest of the process::

    import jobrunner

    with jobrunner.Pool(threads=4) as pool:
        futures = [pool.submit(pow, n, 2) for n in range(10)]
        print([f.result() for f in futures])

The library is the copy bundled by ``pip install ./bindings/python``, or the file named
by the ``JOBRUNNER_LIBRARY`` environment variable.
"""

from __future__ import annotations

from ._chan import Channel, ChannelClosed, ChannelEmpty, ChannelFull
from ._errors import Cancelled, JobrunnerError, NativeJobError, PoolShutdown
from ._group import Group
from ._jobs import Future, JobContext, current
from ._native import LIBRARY_PATH, LIBRARY_VERSION, CancelReason, State, Status
from ._options import Submitter
from ._pipeline import DROP, Pipeline
from ._pool import Pool, PoolStats
from ._select import SendSide, can_send, wait_any
from ._stream import Stream
from ._sync import CancelToken, Semaphore

__version__ = "0.1.0"

__all__ = [
    "Channel",
    "Stream",
    "Pipeline",
    "DROP",
    "wait_any",
    "can_send",
    "SendSide",
    "ChannelClosed",
    "ChannelEmpty",
    "ChannelFull",
    "Pool",
    "Future",
    "Group",
    "Submitter",
    "JobContext",
    "PoolStats",
    "CancelToken",
    "Semaphore",
    "Cancelled",
    "JobrunnerError",
    "NativeJobError",
    "PoolShutdown",
    "CancelReason",
    "State",
    "Status",
    "current",
    "LIBRARY_PATH",
    "LIBRARY_VERSION",
    "__version__",
]
