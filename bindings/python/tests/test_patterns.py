"""The Go-toolbox patterns of DESIGN.md that the C API offers: tokens, semaphores,
groups (errgroup), delayed and periodic jobs, native jobs, stats."""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import gc
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import jobrunner
from conftest import TIMEOUT

# --- CancelToken ---------------------------------------------------------------------


def test_token_tree_and_reason() -> None:
    root = jobrunner.CancelToken()
    child = root.child()
    assert not child.cancelled and child.reason == jobrunner.CancelReason.JR_REASON_NONE
    root.cancel()
    assert child.wait(TIMEOUT)
    assert child.cancelled and child.reason == jobrunner.CancelReason.JR_REASON_CANCELLED
    child.close()
    child.close()  # idempotent
    with pytest.raises(ValueError):
        child.cancel()


def test_token_deadline() -> None:
    t0 = time.monotonic()
    token = jobrunner.CancelToken(timeout=0.05)
    assert not token.wait(0)
    assert token.wait(TIMEOUT)
    assert time.monotonic() - t0 >= 0.045
    assert token.reason == jobrunner.CancelReason.JR_REASON_DEADLINE


def test_token_cancels_queued_and_running_jobs(pool1: jobrunner.Pool) -> None:
    token = jobrunner.CancelToken()
    started = threading.Event()

    def running() -> None:
        started.set()
        ctx = jobrunner.current()
        while not ctx.cancelled:
            ctx.token.wait(0.05)
        ctx.check()

    first = pool1.options(token=token).submit(running)
    assert started.wait(TIMEOUT)
    queued = pool1.options(token=token).submit(int)
    token.cancel()
    concurrent.futures.wait([first, queued], TIMEOUT)
    assert first.cancelled()
    with pytest.raises(concurrent.futures.CancelledError):  # CancelledError
        queued.result(TIMEOUT)
    assert queued.cancelled()


def test_token_cancel_tells_waiters_and_callbacks_once(pool1: jobrunner.Pool) -> None:
    # Queued futures ended by a token: those with a waiter or a callback are told, once,
    # under their condition; one that nobody watches ends without a condition made.
    token = jobrunner.CancelToken()
    release = threading.Event()
    started = threading.Event()

    def blocker() -> None:
        started.set()
        release.wait(TIMEOUT)

    held = pool1.submit(blocker)
    assert started.wait(TIMEOUT)
    watched, awaited, unwatched = (pool1.options(token=token).submit(int) for _ in range(3))
    told: list[concurrent.futures.Future[int]] = []
    watched.add_done_callback(told.append)
    waiting: list[set[concurrent.futures.Future[int]]] = []
    waiter = threading.Thread(
        target=lambda: waiting.append(concurrent.futures.wait([awaited], TIMEOUT).done))
    waiter.start()
    deadline = time.monotonic() + TIMEOUT
    while not awaited._w and time.monotonic() < deadline:  # the waiter has registered
        time.sleep(0.001)
    assert awaited._w
    token.cancel()
    waiter.join(TIMEOUT)
    assert waiting == [{awaited}]
    assert told == [watched]
    assert all(f.cancelled() for f in (watched, awaited, unwatched))
    assert unwatched._c is None
    with pytest.raises(concurrent.futures.CancelledError):
        unwatched.result(TIMEOUT)
    release.set()
    held.result(TIMEOUT)


def test_job_token_is_usable_for_children(pool: jobrunner.Pool) -> None:
    outer_token = jobrunner.CancelToken()
    started = threading.Event()

    def parent() -> bool:
        child_token = jobrunner.current().token
        started.set()
        return child_token.wait(TIMEOUT)

    fut = pool.options(token=outer_token).submit(parent)
    assert started.wait(TIMEOUT)
    outer_token.cancel()
    assert fut.cancelled() or fut.result(TIMEOUT) is True


# --- Semaphore ----------------------------------------------------------------------------


def test_semaphore_direct_use() -> None:
    sem = jobrunner.Semaphore(3)
    assert sem.available == 3
    assert sem.acquire(2)
    assert sem.available == 1
    assert not sem.acquire(2, timeout=0)
    assert not sem.acquire(2, timeout=0.01)
    sem.release(2)
    with sem:
        assert sem.available == 2
    assert sem.available == 3
    with pytest.raises(ValueError):
        sem.release(1)
    token = jobrunner.CancelToken()
    assert sem.acquire(3)
    token.cancel()
    with pytest.raises(jobrunner.Cancelled):
        sem.acquire(1, token=token)
    sem.release(3)


def test_a_bad_argument_is_named_in_the_error() -> None:
    # The library's detail for the failed call (jr_last_error_message) is in the message.
    sem = jobrunner.Semaphore(2)
    with pytest.raises(jobrunner.JobrunnerError) as raised:
        sem.acquire(5)
    assert raised.value.status == jobrunner.Status.JR_E_INVALID_ARG
    assert "5 permits requested from a semaphore of 2" in str(raised.value)


def test_semaphore_limits_jobs_without_holding_workers() -> None:
    sem = jobrunner.Semaphore(2)
    running = 0
    peak = 0
    lock = threading.Lock()
    with jobrunner.Pool(threads=4) as pool:
        def job() -> None:
            nonlocal running, peak
            with lock:
                running += 1
                peak = max(peak, running)
            time.sleep(0.002)
            with lock:
                running -= 1

        futs = [pool.options(semaphore=sem).submit(job) for _ in range(40)]
        # a job with weight 2 waits for both permits
        heavy = pool.options(semaphore=sem, weight=2).submit(lambda: sem.available)
        for f in futs:
            f.result(TIMEOUT)
        assert heavy.result(TIMEOUT) == 0
    assert peak <= 2
    assert sem.available == 2


# --- Group ------------------------------------------------------------------------------------


def test_group_waits_for_all_and_yields_in_completion_order(pool: jobrunner.Pool) -> None:
    gate = threading.Event()
    with pool.group() as group:
        slow = group.submit(lambda: gate.wait(TIMEOUT) and "slow")
        fast = group.submit(lambda: "fast")
        order = []
        for fut in group.as_completed(TIMEOUT):
            order.append(fut.result())
            gate.set()
    assert order == ["fast", "slow"]
    assert slow.done() and fast.done()


def test_group_limit() -> None:
    running = peak = 0
    lock = threading.Lock()

    def job() -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.002)
        with lock:
            running -= 1

    with jobrunner.Pool(threads=4) as pool:
        with pool.group(limit=1) as group:
            for _ in range(10):
                group.submit(job)
    assert peak == 1


def test_group_fail_fast_raises_first_error_and_cancels_the_rest(pool1: jobrunner.Pool) -> None:
    ran = []

    def fail() -> None:
        raise ValueError("first")

    with pytest.raises(ValueError, match="first"):
        with pool1.group(fail_fast=True) as group:
            group.submit(fail)
            later = [group.submit(ran.append, i) for i in range(5)]
    assert all(f.cancelled() for f in later)
    assert ran == []


def test_group_wait_reports_cancellation(pool: jobrunner.Pool) -> None:
    token = jobrunner.CancelToken()
    token.cancel()
    group = pool.group(token=token)
    fut = group.submit(int)
    with pytest.raises(jobrunner.Cancelled):
        group.wait(TIMEOUT)
    assert fut.cancelled()
    group.close()


# --- delayed and periodic jobs ----------------------------------------------------------


def test_delayed_job(pool: jobrunner.Pool) -> None:
    t0 = time.monotonic()
    fut = pool.options(delay=0.05, name="later").submit(time.monotonic)
    assert fut.result(TIMEOUT) - t0 >= 0.045


def test_delayed_job_cancelled_before_it_runs(pool: jobrunner.Pool) -> None:
    fut = pool.options(delay=30).submit(int)
    assert fut.cancel() is True
    assert fut.cancelled()


def test_submit_every_until_cancelled(pool: jobrunner.Pool) -> None:
    ticks: list[int] = []
    three = threading.Event()

    def tick() -> None:
        ticks.append(jobrunner.current().tick)
        if len(ticks) == 3:
            three.set()

    fut = pool.submit_every(0.01, tick)
    assert three.wait(TIMEOUT)
    assert fut.cancel() is True
    with pytest.raises(concurrent.futures.CancelledError):
        fut.result(TIMEOUT)
    assert ticks[:3] == [0, 1, 2]


# --- native jobs ------------------------------------------------------------------------

NATIVE_C = r"""
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
typedef struct jr_ctx jr_ctx;
extern int jr_ctx_fail(jr_ctx *ctx, const char *message);
int32_t square(jr_ctx *ctx, void *arg, void **result) {
    (void)ctx;
    intptr_t n = (intptr_t)arg;
    *result = (void *)(n * n);
    return 0;
}
int32_t deref(jr_ctx *ctx, void *arg, void **result) {
    (void)ctx;
    *result = (void *)(intptr_t)*(const int *)arg;
    return 0;
}
int32_t failing(jr_ctx *ctx, void *arg, void **result) {
    (void)arg; (void)result;
    jr_ctx_fail(ctx, "native says no");
    return 42;
}

/* A job that ends only once the test opens its gate: so that the job ends after the
   test has started waiting, and the future must be completed by the end itself. */
static volatile int gate_open;
static volatile int last_read = -1;
void set_gate(int open) { gate_open = open; }
int get_last_read(void) { return last_read; }
int32_t gated_deref(jr_ctx *ctx, void *arg, void **result) {
    (void)ctx;
    while (!gate_open) {
        struct timespec pause = {0, 100000};
        nanosleep(&pause, NULL);
    }
    last_read = *(const int *)arg;
    *result = (void *)(intptr_t)last_read;
    return 0;
}
"""


@pytest.fixture(scope="module")
def native_lib(tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    cc = shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    tmp = tmp_path_factory.mktemp("native")
    src = tmp / "native.c"
    src.write_text(NATIVE_C)
    so = tmp / "libnative.so"
    lib_dir = Path(jobrunner.LIBRARY_PATH).parent
    subprocess.run(
        [cc, "-shared", "-fPIC", "-O2", "-o", str(so), str(src), f"-L{lib_dir}", "-l:" + Path(jobrunner.LIBRARY_PATH).name],
        check=True,
    )
    return ctypes.CDLL(str(so))


def test_submit_native(pool: jobrunner.Pool, native_lib: ctypes.CDLL) -> None:
    futs = [pool.submit_native(native_lib.square, i) for i in range(100)]
    assert [f.result(TIMEOUT) for f in futs] == [i * i for i in range(100)]
    bad = pool.submit_native(native_lib.failing)
    err = bad.exception(TIMEOUT)
    assert isinstance(err, jobrunner.NativeJobError)
    assert err.code == 42 and err.message == "native says no"


def test_submit_native_keeps_its_arg_alive(pool: jobrunner.Pool, native_lib: ctypes.CDLL) -> None:
    """A ctypes object passed as arg is referenced only by the submit: the binding keeps
    it until the job has ended (the job reads it)."""
    futs = [pool.submit_native(native_lib.deref, ctypes.c_int(i)) for i in range(2_000)]
    gc.collect()
    assert [f.result(TIMEOUT) for f in futs] == list(range(2_000))


@pytest.fixture
def gate(native_lib: ctypes.CDLL) -> Iterator[Callable[[], None]]:
    """Closes the gate of ``gated_deref`` jobs; the test opens it by calling the value
    (and it is opened anyway at the end, so that no job is left blocked)."""
    native_lib.set_gate(0)
    yield lambda: native_lib.set_gate(1)
    native_lib.set_gate(1)


def _gated(pool: jobrunner.Pool, native_lib: ctypes.CDLL, value: int) -> jobrunner.Future[int]:
    return pool.submit_native(native_lib.gated_deref, ctypes.c_int(value))


# A native job's future is completed by whoever first sees the job ended, not by a
# callback at every job end: each way of waiting for a future, or of listening for its
# end, must see it complete when the job ends after the wait began. Each of these would
# hang (and fail on its timeout) if that way of waiting never completed the future.


def test_native_future_add_done_callback(
    pool: jobrunner.Pool, native_lib: ctypes.CDLL, gate: Callable[[], None]
) -> None:
    fut = _gated(pool, native_lib, 7)
    told = threading.Event()
    fut.add_done_callback(lambda f: told.set())
    assert not told.is_set()
    gate()
    assert told.wait(TIMEOUT)  # nobody calls result(): the job's end itself tells
    assert fut.result(0) == 7


def test_native_future_concurrent_wait(
    pool: jobrunner.Pool, native_lib: ctypes.CDLL, gate: Callable[[], None]
) -> None:
    futs = [_gated(pool, native_lib, i) for i in range(4)]
    threading.Timer(0.05, gate).start()
    done, not_done = concurrent.futures.wait(futs, timeout=TIMEOUT)
    assert not not_done and len(done) == 4
    assert sorted(f.result(0) for f in done) == [0, 1, 2, 3]


def test_native_future_as_completed(
    pool: jobrunner.Pool, native_lib: ctypes.CDLL, gate: Callable[[], None]
) -> None:
    futs = [_gated(pool, native_lib, i) for i in range(4)]
    threading.Timer(0.05, gate).start()
    got = [f.result(0) for f in concurrent.futures.as_completed(futs, timeout=TIMEOUT)]
    assert sorted(got) == [0, 1, 2, 3]


def test_native_future_asyncio(
    pool: jobrunner.Pool, native_lib: ctypes.CDLL, gate: Callable[[], None]
) -> None:
    async def main() -> int:
        wrapped = asyncio.wrap_future(_gated(pool, native_lib, 5))
        asyncio.get_running_loop().call_later(0.05, gate)
        return await asyncio.wait_for(wrapped, TIMEOUT)

    assert asyncio.run(main()) == 5


def test_native_future_done_polling(
    pool: jobrunner.Pool, native_lib: ctypes.CDLL, gate: Callable[[], None]
) -> None:
    fut = _gated(pool, native_lib, 3)
    assert not fut.done() and not fut.cancelled() and not fut.running()
    gate()
    deadline = time.monotonic() + TIMEOUT
    while not fut.done():
        assert time.monotonic() < deadline, "done() never turned true"
        time.sleep(0.001)
    assert fut.result(0) == 3 and fut.exception(0) is None


def test_native_future_result_and_exception(
    pool: jobrunner.Pool, native_lib: ctypes.CDLL, gate: Callable[[], None]
) -> None:
    fut = _gated(pool, native_lib, 9)
    with pytest.raises(concurrent.futures.TimeoutError):
        fut.result(0.01)
    threading.Timer(0.05, gate).start()
    assert fut.exception(TIMEOUT) is None and fut.result(0) == 9
    other = _gated(pool, native_lib, 4)  # waited for from another thread too
    seen: list[int] = []
    waiter = threading.Thread(target=lambda: seen.append(other.result(TIMEOUT)))
    waiter.start()
    assert other.result(TIMEOUT) == 4
    waiter.join(TIMEOUT)
    assert seen == [4]


def test_native_future_cancelled_by_shutdown(
    native_lib: ctypes.CDLL, gate: Callable[[], None]
) -> None:
    pool = jobrunner.Pool(threads=1)
    running = _gated(pool, native_lib, 1)
    deadline = time.monotonic() + TIMEOUT
    while pool.stats().running != 1:  # the gated job holds the one worker
        assert time.monotonic() < deadline
        time.sleep(0.001)
    queued = pool.submit_native(native_lib.square, 3)
    opener = threading.Timer(0.1, gate)  # while the shutdown waits for the running job
    opener.start()
    pool.shutdown(wait=True, cancel_futures=True)
    opener.join()
    assert queued.cancelled() and queued.done()  # ended by the pool, not by the future
    with pytest.raises(concurrent.futures.CancelledError):
        queued.result(0)
    assert running.result(0) == 1


def test_native_future_dropped_keeps_its_arg_until_the_job_ends(
    pool: jobrunner.Pool, native_lib: ctypes.CDLL, gate: Callable[[], None]
) -> None:
    """A future dropped while its job runs: its ctypes arg is kept (the job reads it after
    the drop) until the job ends, then let go."""
    from jobrunner import _jobs

    before = len(_jobs._native_orphans)
    _gated(pool, native_lib, 1234)  # the future is dropped at once
    gc.collect()
    assert len(_jobs._native_orphans) == before + 1
    for _ in range(100):  # reuse freed memory, should the arg have been freed
        ctypes.c_int(-1)
    gate()
    assert pool.submit_native(native_lib.square, 2).result(TIMEOUT) == 4
    deadline = time.monotonic() + TIMEOUT
    while len(_jobs._native_orphans) != before:
        assert time.monotonic() < deadline, "the orphan's entry was never let go"
        time.sleep(0.001)
    assert native_lib.get_last_read() == 1234


def test_native_futures_leave_no_entry(pool: jobrunner.Pool, native_lib: ctypes.CDLL) -> None:
    """Completed or dropped, native futures leave nothing behind in the binding's tables."""
    from jobrunner import _jobs

    futs = [pool.submit_native(native_lib.square, i) for i in range(200)]
    assert sum(f.result(TIMEOUT) for f in futs) == sum(i * i for i in range(200))
    del futs
    for i in range(200):
        pool.submit_native(native_lib.square, i)
    pool.submit_native(native_lib.square, 0).result(TIMEOUT)
    deadline = time.monotonic() + TIMEOUT
    while _jobs._native_pending or _jobs._native_watched or _jobs._native_orphans:
        assert time.monotonic() < deadline
        time.sleep(0.001)


def test_cancel_queued_native_job(pool1: jobrunner.Pool, native_lib: ctypes.CDLL) -> None:
    release = threading.Event()
    started = threading.Event()
    blocker = pool1.submit(lambda: (started.set(), release.wait(TIMEOUT)))
    assert started.wait(TIMEOUT)
    queued = pool1.submit_native(native_lib.square, 3)
    assert queued.cancel() and queued.cancelled()
    release.set()
    blocker.result(TIMEOUT)
    with pytest.raises(concurrent.futures.CancelledError):
        queued.result(TIMEOUT)
    assert pool1.submit_native(native_lib.square, 4).result(TIMEOUT) == 16


# --- stats ------------------------------------------------------------------------------


def test_stats_is_a_dataclass(pool: jobrunner.Pool) -> None:
    pool.submit(int).result(TIMEOUT)
    st = pool.stats()
    assert st.submitted >= 1 and st.started >= 1 and st.threads == 2
    assert isinstance(st, jobrunner.PoolStats)


def test_closed_handles_are_refused_not_used(pool: jobrunner.Pool) -> None:
    token = jobrunner.CancelToken()
    submitter = pool.options(token=token)
    token.close()
    with pytest.raises(ValueError):
        submitter.submit(int)
    group = pool.group()
    group.close()
    with pytest.raises(ValueError):
        group.submit(int)
    sem = jobrunner.Semaphore(1)
    sem.close()
    with pytest.raises(ValueError):
        sem.acquire()
