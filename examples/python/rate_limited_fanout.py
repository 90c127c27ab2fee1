"""Rate-limited fan-out: 200 "API calls" through a semaphore of 8, under a deadline.

The Python twin of examples/rate_limited_fanout.rs and examples/c/rate_limited_fanout.c.
Every call is submitted with the semaphore (`pool.options(semaphore=sem)`): calls beyond
the 8 in flight wait in its FIFO queue without occupying a worker (the pool has 16
threads, so the semaphore, not the pool, limits them). All calls share one token with a
deadline too short for all of them: the calls still waiting for a permit then end
cancelled without running, the ones in flight see `current().cancelled` between their
I/O steps and stop. How many fit in the deadline varies; what is checked does not, and
the script exits 1 if it is wrong.

Run: see worker_pool.py.
"""

from __future__ import annotations

import concurrent.futures
import sys
import threading
import time

import jobrunner

CALLS, LIMIT, THREADS, DEADLINE = 200, 8, 16, 0.3


def main() -> int:
    print(f"rate_limited_fanout: {CALLS} calls through a semaphore of {LIMIT} on a pool of "
          f"{THREADS} threads, deadline {int(DEADLINE * 1000)} ms")
    sem = jobrunner.Semaphore(LIMIT)
    token = jobrunner.CancelToken(timeout=DEADLINE)
    in_flight = most = 0
    lock = threading.Lock()

    def call(n: int) -> dict[str, int]:
        nonlocal in_flight, most
        with lock:
            in_flight += 1
            most = max(most, in_flight)
        try:
            ctx = jobrunner.current()
            for _ in range(10):  # ten "I/O steps" of 2 ms
                ctx.check()
                time.sleep(0.002)
            return {"id": n}
        finally:
            with lock:
                in_flight -= 1

    t0 = time.monotonic()
    with jobrunner.Pool(threads=THREADS) as pool:
        submit = pool.options(token=token, semaphore=sem).submit
        futures = [submit(call, n) for n in range(CALLS)]
        ok = cancelled = 0
        for i, fut in enumerate(futures):
            try:
                if fut.result()["id"] != i:
                    print(f"error: call {i} returned the wrong record", file=sys.stderr)
                    return 1
                ok += 1
            except concurrent.futures.CancelledError:
                cancelled += 1
            if (i + 1) % 50 == 0:
                print(f"progress: {i + 1}/{CALLS} calls ended")
        stats = pool.stats()
    print(f"{CALLS} calls: {ok} ok, {cancelled} cancelled, at most {LIMIT} at once")
    print(f"  most calls in flight at once: {most}; all ended after "
          f"{int((time.monotonic() - t0) * 1000)} ms; token reason {token.reason.name}")
    good = (ok + cancelled == CALLS and most <= LIMIT and sem.available == LIMIT
            and stats.submitted == CALLS)
    if not good:
        print("rate_limited_fanout: FAILED: accounting", file=sys.stderr)
        return 1
    print(f"accounting checked: ok + cancelled = {CALLS}, never more than {LIMIT} at once, "
          "every permit returned")
    return 0


if __name__ == "__main__":
    sys.exit(main())
