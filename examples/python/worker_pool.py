"""A bounded worker pool with backpressure, in Python.

Two worker threads and a queue bounded at four jobs; the main thread submits 100 jobs
that square their number and takes the results back. Jobs 0 and 1 hold both workers at
a gate, so the queue is full at a known moment: a submit then blocks until a worker
frees a slot (jobrunner's backpressure), here shown with a helper thread opening the
gate. Every printed line is the same on every run; exits 1 if a result is wrong.

Run (from the repository root, after `cargo build --release`):
    JOBRUNNER_LIBRARY=target/release/libjobrunner.so PYTHONPATH=bindings/python \
        python3 examples/python/worker_pool.py
"""

from __future__ import annotations

import sys
import threading

import jobrunner

THREADS, CAPACITY, JOBS = 2, 4, 100


def main() -> int:
    print(f"worker_pool: {THREADS} worker threads, queue_capacity {CAPACITY}, {JOBS} jobs")
    gate = threading.Event()
    at_gate = threading.Barrier(THREADS + 1)

    def square(n: int) -> int:
        if n < THREADS:
            at_gate.wait()
            gate.wait()
        return n * n

    pool = jobrunner.Pool(threads=THREADS, queue_capacity=CAPACITY)
    futures = [pool.submit(square, n) for n in range(THREADS)]
    at_gate.wait()  # both workers are held: the queue fills up
    futures += [pool.submit(square, n) for n in range(THREADS, THREADS + CAPACITY)]
    print(f"queue full: {pool.stats().queued} jobs waiting")
    opener = threading.Timer(0.02, gate.set)
    opener.start()
    futures.append(pool.submit(square, THREADS + CAPACITY))  # blocks until a slot frees
    print(f"submit of job {THREADS + CAPACITY} waited for room, then got in")
    futures += [pool.submit(square, n) for n in range(THREADS + CAPACITY + 1, JOBS)]
    total = sum(f.result() for f in futures)
    print(f"results: {len(futures)} taken, sum of squares 0..{JOBS - 1} = {total}")
    pool.shutdown()
    try:
        pool.submit(square, 0)
    except RuntimeError as exc:
        print(f"submit after shutdown: {type(exc).__name__}")
    if total != sum(n * n for n in range(JOBS)):
        print("worker_pool: FAILED: wrong sum", file=sys.stderr)
        return 1
    print("worker_pool: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
