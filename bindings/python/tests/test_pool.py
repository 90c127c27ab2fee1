"""Pool as a concurrent.futures.Executor: submit, results, exceptions, map, cancel,
current(), shutdown, nested waits, worker thread states."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import traceback

import pytest

import jobrunner
from conftest import TIMEOUT


def test_submit_returns_real_future(pool: jobrunner.Pool) -> None:
    fut = pool.submit(pow, 3, 4)
    assert isinstance(fut, concurrent.futures.Future)
    assert fut.result(TIMEOUT) == 81


def test_kwargs_do_not_collide_with_options(pool: jobrunner.Pool) -> None:
    def f(*, token: str, name: str) -> str:
        return token + name

    assert pool.submit(f, token="a", name="b").result(TIMEOUT) == "ab"


def test_exception_keeps_its_traceback(pool: jobrunner.Pool) -> None:
    def inner() -> None:
        raise KeyError("boom")

    def job() -> None:
        inner()

    fut = pool.submit(job)
    with pytest.raises(KeyError) as info:
        fut.result(TIMEOUT)
    names = [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
    assert "inner" in names and "job" in names


def test_stats_count_outcomes() -> None:
    with jobrunner.Pool(threads=2) as pool:
        ok = [pool.submit(int, i) for i in range(10)]
        bad = pool.submit(int, "x")
        concurrent.futures.wait(ok + [bad], TIMEOUT)
        assert bad.exception() is not None
        pool.submit(int).result(TIMEOUT)
        st = pool.stats()
        assert st.threads == 2
        assert st.submitted == 12
        assert st.panicked + st.running >= 1  # the raising job, maybe still ending
        assert st.succeeded >= 10


def test_as_completed_wait_and_callbacks(pool: jobrunner.Pool) -> None:
    seen: list[int] = []
    done = threading.Event()
    futs = [pool.submit(pow, i, 2) for i in range(20)]
    futs[-1].add_done_callback(lambda f: (seen.append(f.result()), done.set()))
    results = sorted(f.result() for f in concurrent.futures.as_completed(futs, TIMEOUT))
    assert results == [i * i for i in range(20)]
    finished, pending = concurrent.futures.wait(futs, TIMEOUT)
    assert len(finished) == 20 and not pending
    assert done.wait(TIMEOUT) and seen == [361]


def test_waiters_and_callbacks_racing_the_job_end(pool: jobrunner.Pool) -> None:
    """A job completes its future without the future's lock unless someone waits or
    listens: a callback, a wait() or a result() that arrives while the job is ending is
    never lost (each is added right after the submit, while the job may be finishing)."""
    n = 5_000
    called = []
    lock = threading.Condition()

    def note(fut: concurrent.futures.Future[int]) -> None:
        with lock:
            called.append(fut.result())
            lock.notify_all()

    futs = []
    for i in range(n):
        fut = pool.submit(abs, -i)
        fut.add_done_callback(note)
        futs.append(fut)
    waited = [pool.submit(abs, -i) for i in range(n)]
    finished, pending = concurrent.futures.wait(waited, TIMEOUT)
    assert not pending and len(finished) == n
    raced = [pool.submit(abs, -i) for i in range(n)]
    assert [f.result(TIMEOUT) for f in raced] == list(range(n))
    assert sorted(f.result() for f in concurrent.futures.as_completed(waited, TIMEOUT)) == list(
        range(n)
    )
    with lock:
        assert lock.wait_for(lambda: len(called) == n, TIMEOUT), f"{len(called)} of {n} callbacks"
    assert sorted(called) == list(range(n))


def test_submit_nested_in_a_submit_gets_its_own_handle(
    pool: jobrunner.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """submit() reads the new job's handle from a per-thread slot just after jr_submit;
    a submit that runs in between on the same thread (a signal handler, a finaliser)
    must not overwrite it: it takes another path with a slot of its own, and each future
    has its own job."""
    from jobrunner import _pool

    real = _pool.submit_addr
    inner: list[jobrunner.Future[int]] = []
    interrupted: list[bool] = []

    def submit_then_interrupt(*args: object) -> int:
        status = real(*args)
        if not interrupted:  # what a signal handler arriving right after the call would do
            interrupted.append(True)
            inner.append(pool.submit(abs, -2))
        return status

    monkeypatch.setattr(_pool, "submit_addr", submit_then_interrupt)
    outer = pool.submit(abs, -1)
    assert outer.result(TIMEOUT) == 1 and inner[0].result(TIMEOUT) == 2
    assert outer._job and inner[0]._job and outer._job != inner[0]._job


def test_asyncio_wrap_future(pool: jobrunner.Pool) -> None:
    async def main() -> int:
        return await asyncio.wrap_future(pool.submit(sum, [1, 2, 3]))

    assert asyncio.run(main()) == 6


def test_map_in_order_with_timeout(pool: jobrunner.Pool) -> None:
    assert list(pool.map(pow, range(10), range(10), timeout=TIMEOUT)) == [
        i**i for i in range(10)
    ]


def test_map_buffersize_is_lazy(pool: jobrunner.Pool) -> None:
    consumed = 0

    def inputs():  # type: ignore[no-untyped-def]
        nonlocal consumed
        for i in range(100):
            consumed += 1
            yield i

    it = pool.map(abs, inputs(), buffersize=4)
    assert consumed == 4  # submitted at once, no more
    assert next(it) == 0
    assert consumed == 5
    assert list(it) == list(range(1, 100))


def test_cancel_queued_job_never_runs(pool1: jobrunner.Pool) -> None:
    started, release = threading.Event(), threading.Event()
    ran = []
    blocker = pool1.submit(lambda: (started.set(), release.wait(TIMEOUT)))
    assert started.wait(TIMEOUT)
    queued = pool1.submit(ran.append, 1)
    assert queued.cancel() is True
    assert queued.cancelled()
    with pytest.raises(concurrent.futures.CancelledError):
        queued.result(TIMEOUT)
    release.set()
    blocker.result(TIMEOUT)
    pool1.submit(int).result(TIMEOUT)  # the worker is past where `queued` was
    assert ran == []


def test_cancel_running_job_returns_false_but_stops_it(pool: jobrunner.Pool) -> None:
    started = threading.Event()

    def cooperative() -> str:
        started.set()
        ctx = jobrunner.current()
        while True:
            ctx.check()  # raises Cancelled once asked to stop
            ctx.token.wait(0.05)

    fut = pool.submit(cooperative)
    assert started.wait(TIMEOUT)
    assert fut.cancel() is False
    with pytest.raises(concurrent.futures.CancelledError):
        fut.result(TIMEOUT)
    assert fut.cancelled()  # a job that raised Cancelled while cancelled ends cancelled


def test_cancelled_raised_without_cancel_is_a_failure(pool: jobrunner.Pool) -> None:
    def job() -> None:
        raise jobrunner.Cancelled("not really")

    fut = pool.submit(job)
    assert isinstance(fut.exception(TIMEOUT), jobrunner.Cancelled)
    assert not fut.cancelled()


def test_current_outside_a_job() -> None:
    with pytest.raises(RuntimeError):
        jobrunner.current()


def test_current_context_dies_with_the_job(pool: jobrunner.Pool) -> None:
    ctx = pool.submit(jobrunner.current).result(TIMEOUT)
    assert isinstance(ctx, jobrunner.JobContext)
    with pytest.raises(RuntimeError):
        _ = ctx.cancelled


def test_nested_submit_and_wait_on_one_thread(pool1: jobrunner.Pool) -> None:
    def outer() -> int:
        return pool1.submit(lambda: 41).result() + 1

    assert pool1.submit(outer).result(TIMEOUT) == 42


def test_worker_keeps_one_thread_state(pool1: jobrunner.Pool) -> None:
    """threading.local lives in the thread state: it survives from job to job only if
    the worker keeps its state (the start hook's PyGILState_Ensure)."""
    local = threading.local()
    pool1.submit(setattr, local, "mark", 7).result(TIMEOUT)
    assert pool1.submit(getattr, local, "mark", None).result(TIMEOUT) == 7


def test_default_pool_workers_keep_one_thread_state() -> None:
    """The global pool was not made by Python, so its hooks are added to it running
    (jr_pool_add_thread_hooks): a worker's threading.local survives from job to job."""
    local = threading.local()

    def count() -> tuple[int, int]:
        local.runs = getattr(local, "runs", 0) + 1
        return threading.get_ident(), local.runs

    pool = jobrunner.Pool.default()
    seen: dict[int, list[int]] = {}
    for _ in range(40):
        thread, runs = pool.submit(count).result(TIMEOUT)
        seen.setdefault(thread, []).append(runs)
    for thread, runs in seen.items():
        assert runs == list(range(1, len(runs) + 1)), f"thread {thread}: {runs}"


def test_shutdown_drains_by_default() -> None:
    pool = jobrunner.Pool(threads=1)
    futs = [pool.submit(pow, 2, i) for i in range(50)]
    pool.shutdown(wait=True)
    assert [f.result(0) for f in futs] == [2**i for i in range(50)]
    with pytest.raises(RuntimeError):
        pool.submit(int)


def test_shutdown_cancel_futures(pool1: jobrunner.Pool) -> None:
    started, release = threading.Event(), threading.Event()
    blocker = pool1.submit(lambda: (started.set(), release.wait(TIMEOUT)))
    assert started.wait(TIMEOUT)
    queued = [pool1.submit(int) for _ in range(10)]
    pool1.shutdown(wait=False, cancel_futures=True)  # queued jobs end now
    assert all(f.cancelled() for f in queued)
    with pytest.raises(RuntimeError):
        pool1.submit(int)
    release.set()
    pool1.shutdown(wait=True)
    assert blocker.done() and not blocker.cancelled()


def test_bounded_queue_blocks_then_proceeds() -> None:
    with jobrunner.Pool(threads=1, queue_capacity=2) as pool:
        futs = [pool.submit(pow, i, 2) for i in range(200)]
        assert [f.result(TIMEOUT) for f in futs] == [i * i for i in range(200)]


def test_default_pool_is_shared_singleton() -> None:
    d = jobrunner.Pool.default()
    assert d is jobrunner.Pool.default()
    assert d.submit(pow, 2, 10).result(TIMEOUT) == 1024
    assert d.stats().threads >= 1


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        jobrunner.Pool(threads=0)
    with pytest.raises(ValueError):
        jobrunner.Pool(queue_capacity=0)


def test_default_pool_shutdown_only_settles_our_jobs() -> None:
    d = jobrunner.Pool.default()
    with d:
        futs = [d.submit(pow, 3, i) for i in range(10)]
    assert all(f.done() for f in futs)  # leaving the block waited for them
    assert d.submit(pow, 2, 3).result(TIMEOUT) == 8  # and the shared pool goes on
