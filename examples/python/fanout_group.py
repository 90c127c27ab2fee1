"""Fan-out / fan-in with a group (errgroup), in Python.

1. Twenty items, at most three at once (the group's limit, no worker held while
   waiting); results read in completion order. Item 0 is slow, so it comes last.
2. Fail fast: ten items, at most four at once; items 0-2 run until told to stop, item 3
   fails; the group cancels the others (queued ones never run,
   running ones see `jobrunner.current().cancelled`), and `wait()` raises the first error.

Run: see worker_pool.py.
"""

from __future__ import annotations

import sys
import threading

import jobrunner

ITEMS, LIMIT = 20, 3


class BadResponse(Exception):
    """An item's failure, with a code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def main() -> int:
    print(f"== fan-out: {ITEMS} items, at most {LIMIT} at once; fan-in in completion order ==")
    running = peak = 0
    lock = threading.Lock()
    others_done = threading.Event()
    done_count = 0

    def work(n: int) -> int:
        nonlocal running, peak, done_count
        with lock:
            running += 1
            peak = max(peak, running)
        if n == 0:
            others_done.wait(10)  # item 0 is the slow one
        with lock:
            running -= 1
            done_count += 1
            if done_count == ITEMS - 1:
                others_done.set()
        return n * n

    with jobrunner.Pool(threads=4) as pool:
        with pool.group(limit=LIMIT) as group:
            for n in range(ITEMS):
                group.submit(work, n)
            order = [f.result() for f in group.as_completed()]
            group.wait()
        print(f"fan-in: {len(order)} items received; item 0 came last, after the other {ITEMS - 1}"
              if order[-1] == 0 else "fan-in: item 0 did not come last")
        total = sum(order)
        print(f"group.wait(): Ok; sum of squares 0..{ITEMS - 1} = {total}; at most {LIMIT} running at once")

        print("\n== fail fast: 10 items, at most 4 at once; item 3 fails ==")
        started = threading.Barrier(4)
        saw_cancel: list[int] = []

        def item(n: int) -> int:
            if n < 3:
                started.wait()
                ctx = jobrunner.current()
                while not ctx.cancelled:
                    ctx.token.wait(0.01)
                saw_cancel.append(n)
                ctx.check()
            if n == 3:
                started.wait()
                raise BadResponse(42, f"item {n}: bad response")
            return n

        group = pool.group(limit=4, fail_fast=True)  # items 4-9 wait their turn
        futures = [group.submit(item, n) for n in range(3)]
        futures += [group.submit(item, n) for n in range(3, 10)]
        try:
            group.wait()
            error = None
        except BadResponse as exc:
            error = exc
        group.close()
        if error is None:
            print("fanout_group: FAILED: no error", file=sys.stderr)
            return 1
        print(f'group.wait(): Failed; first error: code {error.code}, "{error}"')
        failed = sum(1 for f in futures if not f.cancelled() and f.exception() is not None)
        cancelled = sum(1 for f in futures if f.cancelled())
        print(f"fail-fast: {failed} failed, {cancelled} cancelled "
              f"({len(saw_cancel)} stopped while running, {cancelled - len(saw_cancel)} never started)")
    if total != 2470 or peak > LIMIT or failed != 1 or cancelled != 9 or sorted(saw_cancel) != [0, 1, 2]:
        print("fanout_group: FAILED", file=sys.stderr)
        return 1
    print("fanout_group: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
