"""wait_any over every kind of waitable: futures, groups, channels (both sides),
tokens, streams, pipelines; the timeout; waking by another thread and by a job; and a
wait inside a job on a pool of one thread."""

from __future__ import annotations

import threading
import time

import pytest

import jobrunner

TIMEOUT = 20.0


def test_a_future(pool: jobrunner.Pool) -> None:
    go = threading.Event()
    fut = pool.submit(go.wait, TIMEOUT)
    assert jobrunner.wait_any([fut], timeout=0) is None
    go.set()
    assert jobrunner.wait_any([fut], timeout=TIMEOUT) == 0
    assert fut.result(TIMEOUT) is True


def test_a_group(pool: jobrunner.Pool) -> None:
    go = threading.Event()
    with pool.group() as group:
        assert jobrunner.wait_any([group], timeout=0) is None
        group.submit(go.wait, TIMEOUT)
        assert jobrunner.wait_any([group], timeout=0) is None
        go.set()
        assert jobrunner.wait_any([group], timeout=TIMEOUT) == 0


def test_a_channel_receive_side_woken_by_a_job(pool: jobrunner.Pool) -> None:
    ch = jobrunner.Channel(1)
    token = jobrunner.CancelToken()
    assert jobrunner.wait_any([ch, token], timeout=0) is None
    pool.submit(ch.put, "x")
    assert jobrunner.wait_any([token, ch], timeout=TIMEOUT) == 1
    assert ch.get_nowait() == "x"
    ch.close_for_sending()
    assert jobrunner.wait_any([ch], timeout=TIMEOUT) == 0  # closed: a get would not wait
    ch.close()


def test_a_channel_send_side(pool: jobrunner.Pool) -> None:
    ch = jobrunner.Channel(1)
    assert jobrunner.wait_any([jobrunner.can_send(ch)], timeout=0) == 0
    ch.put(1)
    assert jobrunner.wait_any([jobrunner.can_send(ch)], timeout=0) is None
    pool.submit(ch.get)
    assert jobrunner.wait_any([jobrunner.can_send(ch)], timeout=TIMEOUT) == 0
    ch.put_nowait(2)
    ch.close()
    with pytest.raises(TypeError):
        jobrunner.can_send(object())  # type: ignore[arg-type]


def test_a_token_woken_by_another_thread() -> None:
    token = jobrunner.CancelToken()
    entered = threading.Event()

    def cancel_later() -> None:
        entered.wait(TIMEOUT)
        token.cancel()

    t = threading.Thread(target=cancel_later)
    t.start()
    entered.set()
    assert jobrunner.wait_any([token], timeout=TIMEOUT) == 0
    t.join(TIMEOUT)


def test_a_stream(pool: jobrunner.Pool) -> None:
    go = threading.Event()

    def gen():
        go.wait(TIMEOUT)
        yield "item"

    with pool.stream(gen) as s:
        assert jobrunner.wait_any([s], timeout=0) is None
        go.set()
        assert jobrunner.wait_any([s], timeout=TIMEOUT) == 0
        assert s.get_nowait() == "item"
        assert jobrunner.wait_any([s], timeout=TIMEOUT) == 0  # the end is ready too
        with pytest.raises(jobrunner.ChannelClosed):
            s.get_nowait()


def test_a_pipeline_is_started_by_wait_any(pool: jobrunner.Pool) -> None:
    with pool.pipeline(range(3)).stage(lambda x: x + 1) as p:
        assert jobrunner.wait_any([p], timeout=TIMEOUT) == 0
        assert p.get_nowait() == 1
    with pool.pipeline().stage(lambda x: x) as p:
        assert jobrunner.wait_any([p], timeout=0) is None
        p.push("a")
        assert jobrunner.wait_any([p], timeout=TIMEOUT) == 0
        assert p.get_nowait() == "a"


def test_the_first_ready_in_order() -> None:
    a, b = jobrunner.CancelToken(), jobrunner.CancelToken()
    b.cancel()
    assert jobrunner.wait_any([a, b], timeout=0) == 1
    a.cancel()
    assert jobrunner.wait_any([a, b], timeout=0) == 0


def test_timeout_returns_none_after_the_timeout() -> None:
    token = jobrunner.CancelToken()
    start = time.monotonic()
    assert jobrunner.wait_any([token], timeout=0.12) is None  # in 50 ms slices here
    assert time.monotonic() - start >= 0.1
    assert jobrunner.wait_any([], timeout=0) is None


def test_bad_items() -> None:
    with pytest.raises(TypeError):
        jobrunner.wait_any([object()], timeout=0)
    with pytest.raises(ValueError):
        jobrunner.wait_any([])
    token = jobrunner.CancelToken()
    token.close()
    with pytest.raises(ValueError):
        jobrunner.wait_any([token], timeout=0)


def test_wait_any_inside_a_job_on_a_pool_of_one_thread(pool1: jobrunner.Pool) -> None:
    ch = jobrunner.Channel(1)

    def selector() -> object:
        # Waits in a job; the pool runs a spare worker meanwhile, so the producer job
        # submitted after it still runs on this one-thread pool.
        assert jobrunner.wait_any([ch], timeout=TIMEOUT) == 0
        return ch.get_nowait()

    fut = pool1.submit(selector)
    pool1.submit(ch.put, 42)
    assert fut.result(TIMEOUT) == 42
    ch.close()


def test_waking_a_thread_in_wait_any_by_closing_a_stream(pool: jobrunner.Pool) -> None:
    go = threading.Event()

    def gen():
        go.wait(TIMEOUT)
        yield 1

    s = pool.stream(gen)
    result: list[object] = []
    t = threading.Thread(target=lambda: result.append(jobrunner.wait_any([s], timeout=TIMEOUT)))
    t.start()
    s.cancel()  # the producer is told to stop ...
    go.set()  # ... and returns: the stream has ended, ready (not before: next would wait)
    t.join(TIMEOUT)
    assert result == [0]
    s.close()
