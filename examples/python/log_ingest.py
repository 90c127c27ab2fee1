"""Log ingestion: a generator, a pipeline and a batcher with wait_any, in Python.

Run 1: a generator (``pool.stream``: a producer job) yields 20,000 log lines, with a
300 ms pause after line 10250; a pipeline reads it (``pool.pipeline(stream)``: a feeder
job pushes the lines) through ``parse`` (4 at once, ordered) and ``filter`` (2 at once,
ordered, returning ``jobrunner.DROP`` for the lines it drops) with at most 256 items
inside; the main thread batches the records, flushing 1,000 at a time ("size"), 100 ms
after a batch's first record ("timer"), and at the end ("end"). It waits with
``jobrunner.wait_any([pipeline, stop], timeout=...)`` and then reads without waiting; a
writer job takes each flushed batch from a ``jobrunner.Channel(2)`` (the sink).

Run 2: the same over an endless generator; a SIGINT handler cancels the stop token (the
parent of the generator's and the pipeline's tokens). The batcher sends itself SIGINT
after its 3rd flush (with ``--wait`` it does not: press Ctrl-C), then flushes what it
holds, closes the pipeline and the generator, and checks that the producer ended
cancelled and that every line and record was released.

Every checked line is the same on every run; exits 1 with a message if a check fails.
Run: see worker_pool.py.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator

import jobrunner

LINES = 20_000
PAUSE_AFTER = 10_250
PAUSE = 0.3
BATCH = 1_000
FLUSH_AFTER = 0.1
MAX_IN_FLIGHT = 256
PARSERS, FILTERS = 4, 2

# Lines and records count their making and their end (``__del__``), so that the run can
# check each was released exactly once: ``next()`` on an itertools.count is atomic.
lines_made, lines_freed = itertools.count(), itertools.count()
records_made, records_freed = itertools.count(), itertools.count()


def total(counter: itertools.count) -> int:
    """How many times ``next(counter)`` was called before (it counts this call too)."""
    return next(counter)


class Line:
    __slots__ = ("text",)

    def __init__(self, i: int) -> None:
        level = "ERROR" if i % 50 == 0 else "WARN" if i % 10 == 0 else "INFO"
        self.text = f"svc-{i % 7} {level} request {i} took {(i * 37) % 500} ms"
        next(lines_made)

    def __del__(self) -> None:
        next(lines_freed)


class Record:
    __slots__ = ("seq", "service", "level", "ms")

    def __init__(self, seq: int, service: str, level: str, ms: int) -> None:
        self.seq, self.service, self.level, self.ms = seq, service, level, ms
        next(records_made)

    def __del__(self) -> None:
        next(records_freed)


def parse(line: Line) -> Record:
    service, level, _request, seq, _took, ms, _unit = line.text.split()
    return Record(int(seq), service, level, int(ms))


def keep(record: Record) -> bool:
    return record.level != "INFO" or record.ms >= 50


def filter_stage(record: Record) -> object:
    return record if keep(record) else jobrunner.DROP


def lines(count: int | None, pause: bool) -> Iterator[Line]:
    """The generator: lines 0..count-1 (None: cycling forever through 0..LINES-1)."""
    numbers = range(count) if count is not None else itertools.cycle(range(LINES))
    for i in numbers:
        yield Line(i)
        if pause and i == PAUSE_AFTER:
            time.sleep(PAUSE)  # lines 0..=10250 are sent: a quiet moment


def batch_records(
    pipeline: jobrunner.Pipeline,
    stop: jobrunner.CancelToken,
    flush: Callable[[list[Record], str], None],
) -> bool:
    """The batcher: returns True at the end of the input, False when stopped."""
    batch: list[Record] = []
    first_at = 0.0
    while True:
        now = time.monotonic()
        if batch and now >= first_at + FLUSH_AFTER:
            flush(batch, "timer")
            batch = []
        timeout = first_at + FLUSH_AFTER - now if batch else 1.0
        ready = jobrunner.wait_any([pipeline, stop], timeout=max(0.0, timeout))
        if ready is None:
            continue  # the timer: flushed at the top
        if ready == 1:
            flush(batch, "stop")
            return False
        # Ready: read without waiting, as long as records are there.
        while True:
            try:
                record = pipeline.get_nowait()
            except jobrunner.ChannelEmpty:
                break  # level-triggered: another reader, or nothing after all
            except jobrunner.ChannelClosed:
                if batch:
                    flush(batch, "end")
                return True
            except jobrunner.Cancelled:
                if stop.cancelled:  # the stop token cancelled the pipeline first
                    flush(batch, "stop")
                    return False
                raise
            if not batch:
                first_at = time.monotonic()
            batch.append(record)
            if len(batch) == BATCH:
                flush(batch, "size")
                batch = []
            elif time.monotonic() >= first_at + FLUSH_AFTER:
                break  # flushed by the timer at the top


def build(pool: jobrunner.Pool, count: int | None, pause: bool, stop: jobrunner.CancelToken):
    stream = pool.options(token=stop, name="lines").stream(lines, count, pause, capacity=1024)
    pipeline = (
        pool.pipeline(stream, max_in_flight=MAX_IN_FLIGHT, token=stop)
        .stage(parse, concurrency=PARSERS, ordered=True)
        .stage(filter_stage, concurrency=FILTERS, ordered=True)
    )
    return stream, pipeline


def fail(message: str) -> int:
    print(f"log_ingest: FAILED: {message}")
    return 1


def full_run(pool: jobrunner.Pool) -> int:
    stop = jobrunner.CancelToken()
    flushes: list[tuple[str, int]] = []
    # The sink: a writer job takes each flushed batch from a channel of 2 (blocked on it,
    # it lends its worker's place to a spare) and "writes" it: notes the sequence numbers.
    sink = jobrunner.Channel(2)

    def write() -> list[int]:
        return [record.seq for batch in sink for record in batch]

    writer = pool.submit(write)

    def flush(batch: list[Record], why: str) -> None:
        flushes.append((why, len(batch)))
        print(f"  flush {len(flushes)}: {len(batch)} records ({why})")
        sink.put(list(batch))

    start = time.monotonic()
    stream, pipeline = build(pool, LINES, True, stop)
    with pipeline:
        ended = batch_records(pipeline, stop, flush)
    elapsed = time.monotonic() - start
    sink.close_for_sending()
    seqs = writer.result(timeout=10)
    sink.close()
    concurrent.futures.wait([stream.producer])
    if not ended or stream.producer.exception() is not None:
        return fail("the run did not end normally")
    want = [i for i in range(LINES) if keep(parse(Line(i)))]
    if seqs != want or len(seqs) != 18200:
        return fail(f"kept {len(seqs)} records, not the {len(want)} of a sequential filter in order")
    print(f"kept {len(seqs)} of {LINES} lines, in order, the same as a sequential filter")
    kinds = [why for why, _ in flushes]
    if any(not 1 <= n <= BATCH for _, n in flushes):
        return fail(f"a batch out of 1..{BATCH}: {flushes}")
    if "size" not in kinds:
        # Every record passes through two Python stage calls, each a C job that takes
        # the GIL: on a busy machine the pipeline may not deliver 1,000 records in 100 ms.
        most = max(n for why, n in flushes if why == "timer")
        return fail(f"no size flush: at most {most} records came out within 100 ms "
                    f"(the pipeline ran {LINES} lines in {elapsed:.2f} s; a size flush "
                    f"needs about 90 µs per line)")
    if "timer" not in kinds or kinds.count("end") != 1 or kinds[-1] != "end":
        return fail(f"flushes {kinds}: want a size, a timer and one end flush")
    print("flushes: by size, by the 100 ms timer, and one at the end")
    print(f"  (full run: {elapsed:.2f} s, with the 0.3 s pause)")
    return 0


def interrupted_run(pool: jobrunner.Pool, wait_for_operator: bool) -> int:
    stop = jobrunner.CancelToken()
    previous = signal.signal(signal.SIGINT, lambda _s, _f: stop.cancel())
    flushes = 0

    def flush(batch: list[Record], why: str) -> None:
        nonlocal flushes
        flushes += 1
        print(f"  flush {flushes}: {len(batch)} records ({why})")
        if flushes == 3 and not wait_for_operator:
            os.kill(os.getpid(), signal.SIGINT)

    if wait_for_operator:
        print("interrupted run: press Ctrl-C to stop it")
    try:
        stream, pipeline = build(pool, None, False, stop)
        ended = batch_records(pipeline, stop, flush)
        pipeline.close()  # waits for its feeder and stages; closes the stream
        concurrent.futures.wait([stream.producer])
    finally:
        signal.signal(signal.SIGINT, previous)
    if ended or not stop.cancelled:
        return fail("the endless run ended without the stop")
    if not stream.producer.cancelled():
        return fail("the generator's producer job did not end cancelled")
    if flushes < 3 and not wait_for_operator:
        return fail(f"stopped after {flushes} flushes")
    del stream, pipeline
    return 0


def main() -> int:
    wait_for_operator = "--wait" in sys.argv[1:]
    print(f"log_ingest: {LINES} lines; parse ({PARSERS} at once) and filter ({FILTERS} at once), "
          f"both ordered; batches of {BATCH} records or every 100 ms")
    with jobrunner.Pool(threads=2, name="ingest") as pool:
        if full_run(pool):
            return 1
        if interrupted_run(pool, wait_for_operator):
            return 1
    # Everything made was released exactly once: nothing holds a line or a record now.
    made = (total(lines_made), total(records_made))
    freed = (total(lines_freed), total(records_freed))
    if made != freed:
        return fail(f"lines/records made {made}, released {freed}")
    how = "Ctrl-C" if wait_for_operator else "SIGINT after 3 flushes"
    print(f"interrupted run: {how}; stopped cleanly, the generator cancelled, nothing leaked")
    print("log_ingest: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
