"""Channels of Python objects: order, close, iteration, timeouts, cancel, references
released exactly once, and producer/consumer jobs on a pool of one thread."""

from __future__ import annotations

import gc
import sys
import threading
import weakref

import pytest

import jobrunner

TIMEOUT = 10.0


class Thing:
    pass


def test_items_in_order_tries_and_close() -> None:
    ch = jobrunner.Channel(2)
    with pytest.raises(jobrunner.ChannelEmpty):
        ch.get_nowait()
    ch.put("a")
    ch.put_nowait({"b": 1})
    with pytest.raises(jobrunner.ChannelFull):
        ch.put_nowait("c")
    with pytest.raises(TimeoutError):
        ch.put("c", timeout=0.01)
    assert len(ch) == 2
    assert ch.get() == "a"
    ch.close_for_sending()
    with pytest.raises(jobrunner.ChannelClosed):
        ch.put("d")
    assert ch.get_nowait() == {"b": 1}
    with pytest.raises(jobrunner.ChannelClosed):
        ch.get()
    ch.close()


def test_get_times_out_and_a_token_cancels() -> None:
    ch = jobrunner.Channel(1)
    with pytest.raises(TimeoutError):
        ch.get(timeout=0.01)
    token = jobrunner.CancelToken()
    token.cancel()
    with pytest.raises(jobrunner.Cancelled):
        ch.get(token=token)
    ch.close()


def test_iteration_ends_at_close_with_a_producer_thread() -> None:
    ch = jobrunner.Channel(1)

    def produce() -> None:
        for i in range(50):
            ch.put(i)
        ch.close_for_sending()

    t = threading.Thread(target=produce)
    t.start()
    assert list(ch) == list(range(50))
    t.join(TIMEOUT)
    ch.close()


def test_references_are_released_once() -> None:
    ch = jobrunner.Channel(4)
    received, buffered = Thing(), Thing()
    rc = sys.getrefcount(received)
    ch.put(received)
    ch.put(buffered)
    assert ch.get() is received
    assert sys.getrefcount(received) == rc, "the channel's reference was not given back"
    ref = weakref.ref(buffered)
    del buffered
    assert ref() is not None, "the channel holds what it buffers"
    ch.close()  # frees the handle: the buffered item's reference goes
    gc.collect()
    assert ref() is None


def test_producer_and_consumer_jobs_on_one_thread() -> None:
    with jobrunner.Pool(threads=1) as pool:
        ch = jobrunner.Channel(1)

        def produce() -> None:
            for i in range(100):
                ch.put(i)
            ch.close_for_sending()

        producer = pool.submit(produce)
        consumer = pool.submit(lambda: sum(ch))
        producer.result(TIMEOUT)
        assert consumer.result(TIMEOUT) == sum(range(100))
        ch.close()
