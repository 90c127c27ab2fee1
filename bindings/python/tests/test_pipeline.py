"""Pipelines of Python stages: ordered and unordered stages, filters (DROP), failures
(raised at the output, sticky, every item released once), close mid-run, sources
(iterable, channel, stream, pushes), and a seeded property test against a sequential
model."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import random
import sys
import threading
import weakref

import pytest

import jobrunner

TIMEOUT = 20.0


class Thing:
    __slots__ = ("n", "__weakref__")

    def __init__(self, n: int) -> None:
        self.n = n


def spin(n: int) -> None:
    """A little CPU work that varies by item, so that stages finish out of order."""
    x = 0
    for i in range((n * 7919) % 300):
        x += i


def test_ordered_stages_keep_the_input_order(pool: jobrunner.Pool) -> None:
    def square(x: int) -> int:
        spin(x)
        return x * x

    with pool.pipeline(range(300), max_in_flight=16).stage(square, concurrency=4).stage(
        lambda x: x + 1, concurrency=3
    ) as p:
        assert list(p) == [x * x + 1 for x in range(300)]


def test_unordered_stage_gives_every_output(pool: jobrunner.Pool) -> None:
    def work(x: int) -> int:
        spin(x)
        return -x

    with pool.pipeline(range(300)).stage(work, concurrency=4, ordered=False) as p:
        assert sorted(p) == sorted(-x for x in range(300))


def test_drop_filters_and_none_is_a_value(pool: jobrunner.Pool) -> None:
    with pool.pipeline(range(20)).stage(
        lambda x: x if x % 3 else jobrunner.DROP
    ).filter(lambda x: x < 15).stage(lambda x: None if x == 1 else x) as p:
        assert list(p) == [None, 2, 4, 5, 7, 8, 10, 11, 13, 14]
    assert repr(jobrunner.DROP) == "jobrunner.DROP"


def test_pushes_close_input_timeouts(pool: jobrunner.Pool) -> None:
    release = threading.Event()

    def held(x: int) -> int:
        release.wait(TIMEOUT)
        return x * 10

    with pool.pipeline(max_in_flight=2).stage(held, concurrency=1) as p:
        p.push(1)
        p.push(2)
        with pytest.raises(TimeoutError):
            p.push(3, timeout=0.01)  # two inside: no room
        with pytest.raises(jobrunner.ChannelEmpty):
            p.get_nowait()
        release.set()
        assert p.get(TIMEOUT) == 10
        p.push(3, timeout=TIMEOUT)
        p.close_input()
        with pytest.raises(jobrunner.ChannelClosed):
            p.push(4)
        assert list(p) == [20, 30]
        with pytest.raises(jobrunner.ChannelClosed):
            p.get()


def test_stages_are_added_before_the_start(pool: jobrunner.Pool) -> None:
    with pool.pipeline([1]).stage(lambda x: x) as p:
        assert list(p) == [1]
        with pytest.raises(RuntimeError):
            p.stage(lambda x: x)


def test_a_stage_exception_fails_the_pipeline_and_releases_every_item_once(
    pool: jobrunner.Pool,
) -> None:
    made = [Thing(i) for i in range(200)]
    boom = ValueError("item 50")

    def stage(t: Thing) -> Thing:
        if t.n == 50:
            raise boom
        return Thing(t.n)  # a new object: the input's reference is dropped

    outs: list[int] = []
    p = pool.pipeline(made, max_in_flight=8).stage(stage, concurrency=3)
    with pytest.raises(ValueError) as info:
        for t in p:
            outs.append(t.n)
    assert info.value is boom
    with pytest.raises(ValueError):
        next(p)  # sticky: every later read raises it again
    assert outs == list(range(len(outs))) and len(outs) <= 50
    p.close()
    # The traceback (ours, and pytest's copy) holds the stage's frame, and item 50.
    del info
    boom.__traceback__ = None
    gc.collect()
    # Everything the pipeline held was released exactly once: each input has only the
    # list's reference (and getrefcount's argument) left.
    counts = [sys.getrefcount(made[i]) for i in range(len(made))]
    assert counts == [2] * len(made)


def test_a_failure_cancels_the_stages_still_running(pool: jobrunner.Pool) -> None:
    saw: list[bool] = []
    started = threading.Event()

    def stage(x: int) -> int:
        if x == 0:
            started.set()
            saw.append(jobrunner.current().token.wait(TIMEOUT))  # until the failure
            return x
        started.wait(TIMEOUT)
        raise KeyError(x)

    with pool.pipeline([0, 1]).stage(stage, concurrency=2, ordered=False) as p:
        with pytest.raises(KeyError):
            list(p)
    assert saw == [True]  # close() waited for the stage, which saw the cancel


def test_an_exception_of_the_source_fails_the_pipeline(pool: jobrunner.Pool) -> None:
    oops = OSError("disk")

    def source():
        yield 1
        yield 2
        raise oops

    with pool.pipeline(source()).stage(lambda x: x) as p:
        with pytest.raises(OSError) as info:
            list(p)
        assert info.value is oops


def test_close_mid_run_stops_the_feeder_and_releases_items(pool: jobrunner.Pool) -> None:
    refs: list[weakref.ref[Thing]] = []
    stopped = threading.Event()

    def endless():
        i = 0
        try:
            while True:
                t = Thing(i)
                refs.append(weakref.ref(t))
                yield t
                i += 1
        finally:
            stopped.set()

    p = pool.pipeline(endless(), max_in_flight=8).stage(lambda t: t, concurrency=2)
    got = [next(p) for _ in range(20)]
    assert [t.n for t in got] == list(range(20))
    p.close()  # cancels, waits for the feeder, frees
    assert p._feeder.done()
    del got, p
    gc.collect()
    assert stopped.wait(TIMEOUT)  # the generator was dropped and closed
    assert all(r() is None for r in refs)


def test_dropping_a_running_pipeline_releases_everything(pool: jobrunner.Pool) -> None:
    made = [Thing(i) for i in range(100)]
    p = pool.pipeline(made, max_in_flight=4).stage(lambda t: t)
    assert next(p) is made[0]
    feeder = p._feeder
    shared = p._shared
    del p
    gc.collect()
    concurrent.futures.wait([feeder], TIMEOUT)
    assert feeder.done()
    # The feeder's borrow ends in its future's done callback, which may run after
    # `wait` returns: the last borrow's end frees the pipeline, and the free releases
    # every item inside.
    assert shared._freed.wait(TIMEOUT), "the pipeline was never freed"
    counts = [sys.getrefcount(made[i]) for i in range(len(made))]
    assert counts == [2] * len(made)


def test_a_channel_source(pool: jobrunner.Pool) -> None:
    ch = jobrunner.Channel(4)

    def produce() -> None:
        for i in range(50):
            ch.put(i)
        ch.close_for_sending()

    fut = pool.submit(produce)
    with pool.pipeline(ch).stage(lambda x: x * 2) as p:
        assert list(p) == [x * 2 for x in range(50)]
    fut.result(TIMEOUT)
    ch.close()


def test_a_stream_source_is_stopped_with_the_pipeline(pool: jobrunner.Pool) -> None:
    def numbers():
        i = 0
        while True:
            yield i
            i += 1

    s = pool.stream(numbers, capacity=4)
    p = pool.pipeline(s).stage(lambda x: x + 1)
    assert [next(p) for _ in range(10)] == list(range(1, 11))
    p.close()
    concurrent.futures.wait([s.producer], TIMEOUT)
    assert s.producer.cancelled() and s.closed


def test_a_finite_stream_source(pool: jobrunner.Pool) -> None:
    s = pool.stream(lambda: iter(range(30)), capacity=2)
    with pool.pipeline(s).filter(lambda x: x % 2 == 0, concurrency=2) as p:
        assert list(p) == list(range(0, 30, 2))


def test_a_parent_token_cancels_the_pipeline(pool: jobrunner.Pool) -> None:
    token = jobrunner.CancelToken()
    with pool.pipeline(token=token).stage(lambda x: x) as p:
        p.push(1)
        assert p.get(TIMEOUT) == 1
        token.cancel()
        with pytest.raises(jobrunner.Cancelled):
            p.get(TIMEOUT)
        with pytest.raises(jobrunner.Cancelled):
            p.push(2)


def test_async_iteration(pool: jobrunner.Pool) -> None:
    async def main() -> list[int]:
        with pool.pipeline(range(40)).stage(lambda x: x * 3, concurrency=2) as p:
            return [x async for x in p]

    assert asyncio.run(main()) == [x * 3 for x in range(40)]


def test_current_context_inside_a_stage(pool: jobrunner.Pool) -> None:
    with pool.pipeline([1]).stage(lambda x: jobrunner.current().cancelled) as p:
        assert list(p) == [False]


# --- a seeded random pipeline against a sequential model ----------------------------------


def _random_stage(rng: random.Random, fail_at: int | None):
    kind = rng.choice(["map", "filter", "same", "wrap"])
    a, b, m = rng.randint(1, 5), rng.randint(-3, 3), rng.randint(2, 5)

    def check(x: int) -> None:
        if fail_at is not None and x == fail_at:
            raise ArithmeticError(f"failed at {x}")

    if kind == "map":
        def fn(x: int) -> int:
            check(x)
            spin(x)
            return x * a + b
    elif kind == "filter":
        def fn(x: int) -> object:
            check(x)
            return x if x % m else jobrunner.DROP
    elif kind == "same":
        def fn(x: int) -> int:
            check(x)
            return x
    else:  # an object made and unwrapped by the next stage's int()
        def fn(x: int) -> int:
            check(x)
            return int(str(x))
    return fn


@pytest.mark.parametrize("seed", range(6))
def test_random_pipelines_match_a_sequential_model(pool: jobrunner.Pool, seed: int) -> None:
    rng = random.Random(seed)
    items = [rng.randint(-50, 50) for _ in range(rng.randint(0, 120))]
    stages = []
    fail = seed % 3 == 2 and items
    for _ in range(rng.randint(1, 4)):
        fail_at = rng.choice(items) if fail and rng.random() < 0.5 else None
        stages.append((_random_stage(rng, fail_at), rng.randint(1, 4), rng.random() < 0.6))
    # The model: the stages one after the other, in order.
    expected: list[int] = []
    error: BaseException | None = None
    for x in items:
        try:
            for fn, _c, _o in stages:
                x = fn(x)
                if x is jobrunner.DROP:
                    break
            else:
                expected.append(x)
        except ArithmeticError as exc:
            error = exc
            break
    all_ordered = all(o for _f, _c, o in stages)
    p = pool.pipeline(iter(items), max_in_flight=rng.randint(1, 16))
    for fn, concurrency, ordered in stages:
        p.stage(fn, concurrency=concurrency, ordered=ordered)
    got: list[int] = []
    with p:
        if error is None:
            got = list(p)
            assert got == expected if all_ordered else sorted(got) == sorted(expected)
        else:
            with pytest.raises(ArithmeticError):
                for x in p:
                    got.append(x)
            # Outputs before the failure are outputs of the model (without the ones
            # the failure cancelled).
            assert not set(got) - set(expected) - {x for x in got if x in expected}
