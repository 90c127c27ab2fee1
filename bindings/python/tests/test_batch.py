"""Batches of plain jobs: a worker that ends a plain job runs the plain jobs queued
behind it in the same callback (``jr_ctx_run_queued``, GIL kept). Each batched job must
still be a job of its own: its result or exception, its own ``current()``, cancellation
of queued futures, waits inside it, exactly one run each.

The jobs queue behind gate jobs that hold every worker, so that when the gates open
the workers find them queued and run them in batches (each test checks that some did:
otherwise it would test nothing)."""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any

import pytest

import jobrunner
from jobrunner import _jobs
from conftest import TIMEOUT


def hold_workers(pool: jobrunner.Pool, threads: int) -> tuple[threading.Event, list[Any]]:
    """Plain jobs holding every worker of ``pool`` until the returned event is set."""
    release = threading.Event()
    started = threading.Semaphore(0)

    def gate() -> None:
        started.release()
        release.wait(TIMEOUT)

    gates = [pool.submit(gate) for _ in range(threads)]
    for _ in range(threads):
        assert started.acquire(timeout=TIMEOUT)
    return release, gates


def batched() -> bool:
    """Whether the calling job runs in a batch (inside another plain job's callback)."""
    return bool(_jobs._local.batching)


def test_each_batched_job_gets_its_own_result_or_exception(pool: jobrunner.Pool) -> None:
    n = 5000
    runs = [0] * n
    in_batch = []

    def job(i: int) -> int:
        runs[i] += 1
        if batched():
            in_batch.append(i)
        if i % 7 == 3:
            raise ValueError(i)
        if i % 11 == 5:  # not an Exception: still this job's outcome, the batch goes on
            raise KeyboardInterrupt(i)
        return i * i

    release, gates = hold_workers(pool, 2)
    futures = [pool.submit(job, i) for i in range(n)]
    release.set()
    for gate in gates:
        gate.result(TIMEOUT)
    for i, fut in enumerate(futures):
        if i % 7 == 3:
            exc = fut.exception(TIMEOUT)
            assert isinstance(exc, ValueError) and exc.args == (i,)
        elif i % 11 == 5:
            exc = fut.exception(TIMEOUT)
            assert isinstance(exc, KeyboardInterrupt) and exc.args == (i,)
        else:
            assert fut.result(TIMEOUT) == i * i
    assert runs == [1] * n
    assert len(in_batch) > n // 2, f"only {len(in_batch)} of {n} jobs ran in a batch"


def test_batched_jobs_see_their_own_context(pool1: jobrunner.Pool) -> None:
    seen = []

    def job(i: int) -> tuple[int, bool, bool]:
        ctx = jobrunner.current()
        seen.append(ctx)
        return i, batched(), ctx.cancelled

    release, gates = hold_workers(pool1, 1)
    futures = [pool1.submit(job, i) for i in range(20)]
    release.set()
    results = [f.result(TIMEOUT) for f in futures]
    assert [r[0] for r in results] == list(range(20))
    assert all(r[1] for r in results[1:]), "the jobs after the first ran in its batch"
    assert not any(r[2] for r in results)
    assert len({id(c) for c in seen}) == 20, "each job had a context of its own"
    for ctx in seen:  # each died with its own job
        with pytest.raises(RuntimeError):
            _ = ctx.cancelled
    # Between the jobs of a batch the thread is in no job: a callback of a batched
    # job's future, run on the worker, sees no current job.
    outside: list[bool] = []

    def where(_f: Any) -> None:
        try:
            jobrunner.current()
            outside.append(False)
        except RuntimeError:
            outside.append(True)

    release, gates = hold_workers(pool1, 1)
    futures = [pool1.submit(int, i) for i in range(10)]
    for fut in futures:
        fut.add_done_callback(where)
    release.set()
    assert [f.result(TIMEOUT) for f in futures] == list(range(10))
    assert outside == [True] * 10


def test_cancel_queued_futures_while_batches_run(pool: jobrunner.Pool) -> None:
    n = 20000
    ran = [0] * n
    release, gates = hold_workers(pool, 2)
    futures = [pool.submit(ran.__setitem__, i, 1) for i in range(n)]
    # Some cancelled before the workers start, the rest from the end backwards while
    # they run: each future either ran once (and was not cancelled) or never ran.
    before = {i for i in range(0, n, 3) if futures[i].cancel()}
    assert len(before) == len(range(0, n, 3))
    release.set()
    during = {i for i in range(n - 1, -1, -5) if i not in before and futures[i].cancel()}
    for i, fut in enumerate(futures):
        if i in before or i in during:
            assert fut.cancelled()
            with pytest.raises(concurrent.futures.CancelledError):
                fut.result(TIMEOUT)
        else:
            assert fut.result(TIMEOUT) is None
    for gate in gates:
        gate.result(TIMEOUT)
    cancelled = before | during
    assert [i for i in range(n) if ran[i] != (i not in cancelled)] == []
    assert during, "no future was cancelled while the workers ran: the test saw nothing"


def test_wait_inside_a_batched_job_on_one_thread(pool1: jobrunner.Pool) -> None:
    def outer(i: int) -> tuple[int, bool]:
        # The inner job runs inline (its wait lets the core claim it), not as a batch.
        inner = pool1.submit(lambda: (i + 1, batched()))
        value, inner_batched = inner.result(TIMEOUT)
        return value, batched() and inner_batched

    release, _ = hold_workers(pool1, 1)
    futures = [pool1.submit(outer, i) for i in range(50)]
    release.set()
    results = [f.result(TIMEOUT) for f in futures]
    assert [v for v, _ in results] == [i + 1 for i in range(50)]
    assert any(b for _, b in results), "no outer job ran in a batch"


def test_managed_jobs_are_not_batched_with_plain_ones(pool1: jobrunner.Pool) -> None:
    """A batch stops at a job of another kind (a managed job, with a token here): it
    still runs, after the batch, as its own callback."""
    token = jobrunner.CancelToken()
    order: list[str] = []

    def note(name: str, check: Callable[[], bool]) -> Callable[[], None]:
        return lambda: order.append(f"{name}:{check()}")

    release, gates = hold_workers(pool1, 1)
    a = pool1.submit(note("a", batched))
    m = pool1.options(token=token).submit(note("m", batched))
    b = pool1.submit(note("b", batched))
    release.set()
    for fut in (a, m, b, *gates):
        fut.result(TIMEOUT)
    assert order == ["a:True", "m:False", "b:False"]
