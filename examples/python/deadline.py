"""Cancellation with a deadline (Go's context.WithTimeout), in Python.

A request has a token with a generous deadline (5 s); each step gets a child token with
a deadline of its own. A job submitted with a token polls `current().cancelled` between
slices of its work and stops when it turns true (raising `jobrunner.Cancelled`, so it
ends cancelled).

1. a quick step (3 ms of work) under a 2 s deadline succeeds;
2. a slow step (up to 5 s) under a 50 ms deadline is stopped by it (reason DEADLINE),
   and the parent request token is untouched;
3. a step submitted under a token whose deadline has passed never runs.

Every line printed is the same on every run; exits 1 if a result is wrong.
Run: see worker_pool.py.
"""

from __future__ import annotations

import concurrent.futures
import sys
import time

import jobrunner
from jobrunner import CancelReason


def outcome(fut: concurrent.futures.Future[object]) -> str:
    try:
        fut.result()
        return "Ok"
    except concurrent.futures.CancelledError:
        return "Cancelled"


def main() -> int:
    print("deadline: a request with a 5 s deadline, each step with a deadline of its own")
    request = jobrunner.CancelToken(timeout=5)
    seen: dict[str, object] = {}

    def step(slices: int, label: str) -> int:
        ctx = jobrunner.current()
        seen[label] = "ran"
        for i in range(slices):
            if ctx.cancelled:
                seen[label + "_stopped_at"] = i
                ctx.check()
            time.sleep(0.001)
        return slices

    with jobrunner.Pool(threads=2) as pool:
        quick_token = request.child(timeout=2)
        quick = pool.options(token=quick_token).submit(step, 3, "quick")
        print(f"quick step (3 ms of work, 2 s deadline): {outcome(quick)}, "
              f"token reason {quick_token.reason.name}")

        slow_token = request.child(timeout=0.05)
        slow = pool.options(token=slow_token).submit(step, 5000, "slow")
        print(f"slow step (up to 5 s of work, 50 ms deadline): {outcome(slow)}, "
              f"token reason {slow_token.reason.name}")
        stopped = seen.get("slow_stopped_at")
        if isinstance(stopped, int) and stopped < 5000:
            print("slow step: the job saw current().cancelled, reason "
                  f"{slow_token.reason.name}, and stopped early")
        print(f"request token: cancelled {request.cancelled}, reason {request.reason.name}")

        passed = request.child(timeout=0)
        late = pool.options(token=passed).submit(step, 1, "late")
        print(f"step under a passed deadline: {outcome(late)}, token reason "
              f"{passed.reason.name}, ran: {'yes' if 'late' in seen else 'no'}")
    good = (
        outcome(quick) == "Ok"
        and quick_token.reason == CancelReason.JR_REASON_NONE
        and outcome(slow) == "Cancelled"
        and slow_token.reason == CancelReason.JR_REASON_DEADLINE
        and isinstance(stopped, int)
        and not request.cancelled
        and outcome(late) == "Cancelled"
        and "late" not in seen
    )
    if not good:
        print("deadline: FAILED", file=sys.stderr)
        return 1
    print("deadline: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
