"""Streams: a generator function run as a producer job. Order and end, the generator's
exception after its items, close and drop stopping the producer with every item
released exactly once, a token option, and async iteration that leaves the loop free."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import sys
import threading
import weakref

import pytest

import jobrunner

TIMEOUT = 20.0


class Thing:
    pass


def count(n: int):
    yield from range(n)


def test_items_in_order_then_the_end(pool: jobrunner.Pool) -> None:
    with pool.stream(count, 100, capacity=4) as s:
        assert list(s) == list(range(100))
        with pytest.raises(StopIteration):
            next(s)
        with pytest.raises(jobrunner.ChannelClosed):
            s.get()
        assert s.producer.result(TIMEOUT) is None


def test_kwargs_and_a_callable_returning_an_iterable(pool: jobrunner.Pool) -> None:
    with pool.stream(lambda start, stop: range(start, stop), 3, stop=6) as s:
        assert list(s) == [3, 4, 5]


def test_the_generators_exception_comes_after_its_items(pool: jobrunner.Pool) -> None:
    boom = KeyError("boom")

    def gen():
        yield "a"
        yield "b"
        raise boom

    with pool.stream(gen, capacity=1) as s:
        assert next(s) == "a"
        assert next(s) == "b"
        with pytest.raises(KeyError) as info:
            next(s)
        assert info.value is boom  # the original exception, as Future.result() raises
        assert list(s) == []  # once, then the end
        assert s.producer.exception(TIMEOUT) is boom
    assert pool.stats().panicked >= 1  # counted as every Python job that raised


def test_get_timeout_and_get_nowait(pool: jobrunner.Pool) -> None:
    go = threading.Event()

    def gen():
        go.wait(TIMEOUT)
        yield 1

    with pool.stream(gen) as s:
        with pytest.raises(jobrunner.ChannelEmpty):
            s.get_nowait()
        with pytest.raises(TimeoutError):
            s.get(timeout=0.01)
        go.set()
        assert s.get(TIMEOUT) == 1
        with pytest.raises(jobrunner.ChannelClosed):
            s.get(TIMEOUT)


def _blocked_producer(pool: jobrunner.Pool, capacity: int):
    """A stream whose producer made capacity + 1 Things and is blocked sending the last
    (the buffer is full); returns the stream, every Thing made, and what the generator
    saw when it stopped."""
    made: list[Thing] = []
    full = threading.Event()
    seen: dict[str, object] = {}

    def gen():
        try:
            while True:
                t = Thing()
                made.append(t)
                if len(made) == capacity + 1:
                    full.set()  # capacity sent, this one's send will wait
                yield t
        except GeneratorExit:
            seen["exit"] = True
            seen["cancelled"] = jobrunner.current().cancelled
            raise

    s = pool.stream(gen, capacity=capacity)
    assert full.wait(TIMEOUT)
    return s, made, seen


def test_close_mid_run_stops_the_producer_and_releases_items_once(pool: jobrunner.Pool) -> None:
    s, made, seen = _blocked_producer(pool, capacity=4)
    first = next(s)  # one read: ours now
    s.close()
    concurrent.futures.wait([s.producer], TIMEOUT)
    assert s.producer.cancelled()  # the producer job ended cancelled
    assert seen == {"exit": True, "cancelled": True}
    # The generator has let go of everything; each Thing now has exactly the list's
    # reference (+1 for getrefcount's argument), and `first` ours too: none leaked (3),
    # none released twice (1).
    assert first is made[0]
    assert sys.getrefcount(first) == 3
    counts = [sys.getrefcount(made[i]) for i in range(1, len(made))]  # (not in an assert:
    assert counts == [2] * (len(made) - 1)  # pytest's rewriting would hold a reference)
    with pytest.raises(ValueError):
        next(s)  # use after close raises, does not crash
    s.close()  # idempotent


def test_dropping_the_stream_stops_the_producer(pool: jobrunner.Pool) -> None:
    s, made, seen = _blocked_producer(pool, capacity=2)
    producer = s.producer
    refs = [weakref.ref(t) for t in made]
    del s, made
    gc.collect()
    concurrent.futures.wait([producer], TIMEOUT)
    assert producer.cancelled()
    assert seen["exit"] is True
    gc.collect()
    assert all(r() is None for r in refs)


def test_cancel_lets_the_reader_drain_then_raises_cancelled(pool: jobrunner.Pool) -> None:
    s, made, _seen = _blocked_producer(pool, capacity=3)
    s.cancel()
    got = list(_read_until_cancelled(s))
    assert got == made[: len(got)] and 3 <= len(got) <= 4
    assert list(s) == []
    s.close()


def test_cancel_then_drain_many_times(pool: jobrunner.Pool) -> None:
    """A reader that drains a cancelled stream meets the producer's end while the
    producer still has to return (and needs the GIL to): it once deadlocked when the
    read of no wait kept the GIL (``jr_stream_next`` waits for the producer then)."""
    for _ in range(100):
        s, _made, _seen = _blocked_producer(pool, capacity=2)
        s.cancel()
        assert list(_read_until_cancelled(s)) is not None
        s.close()


def _read_until_cancelled(s: jobrunner.Stream):
    while True:
        try:
            yield next(s)
        except jobrunner.Cancelled:
            return


def test_a_token_option_cancels_the_producer(pool: jobrunner.Pool) -> None:
    token = jobrunner.CancelToken()

    def gen():
        yield 0
        token.wait(TIMEOUT)
        i = 1
        while True:  # until a send fails: the job's token is cancelled
            yield i
            i += 1

    with pool.options(token=token, name="producer").stream(gen, capacity=1) as s:
        assert next(s) == 0
        token.cancel()
        # The producer may still send an item or two (it saw the token before the
        # cancel reached its channel); then its sends fail and the reader is told.
        with pytest.raises(jobrunner.Cancelled):
            for _ in range(1000):
                next(s)
        concurrent.futures.wait([s.producer], TIMEOUT)
        assert s.producer.cancelled()


def test_a_group_option_is_refused(pool: jobrunner.Pool) -> None:
    with pool.group() as group:
        with pytest.raises(ValueError):
            pool.options(group=group).stream(count, 3)


def test_async_iteration_leaves_the_event_loop_free(pool: jobrunner.Pool) -> None:
    go = threading.Event()

    def gen():
        yield 0
        # The next value needs a coroutine of the same loop to run while the reader
        # waits: were the read blocking the loop, this would time out.
        yield 1 if go.wait(TIMEOUT) else "the loop was blocked"
        yield from range(2, 50)

    async def main() -> list[int]:
        s = pool.stream(gen, capacity=2)
        out = []

        async def reader() -> None:
            async for x in s:
                out.append(x)
                if x == 0:
                    await asyncio.sleep(0)  # hand the loop to setter() once

        async def setter() -> None:
            go.set()

        await asyncio.gather(reader(), setter())
        s.close()
        return out

    assert asyncio.run(main()) == list(range(50))


def test_async_iteration_raises_the_generators_exception(pool: jobrunner.Pool) -> None:
    def gen():
        yield 1
        raise ValueError("late")

    async def main() -> list[int]:
        out = []
        with pool.stream(gen) as s:
            with pytest.raises(ValueError, match="late"):
                async for x in s:
                    out.append(x)
        return out

    assert asyncio.run(main()) == [1]


def test_a_job_reads_a_stream_on_a_pool_of_one_thread(pool1: jobrunner.Pool) -> None:
    def consume() -> int:
        with pool1.stream(count, 200, capacity=1) as s:
            return sum(s)

    assert pool1.submit(consume).result(TIMEOUT) == sum(range(200))
