"""Graceful shutdown on SIGINT/SIGTERM, in Python.

A small "server" on a pool of 4 threads runs 4 connection handlers (long-running jobs
submitted with the shutdown token, polling `current().cancelled`) and 8 accepted
requests queued behind them (they do not watch the token: accepted work is finished,
not dropped). The SIGINT/SIGTERM handler cancels the shutdown token; the main thread,
waiting on the token, then shuts the pool down (drain): new submits are refused, the
handlers have stopped, the queued requests still run.

So that it runs unattended, a helper thread sends SIGTERM once the handlers run and the
requests are queued; `--wait` lets you send it (Ctrl-C, or kill -TERM <pid>).
Every line printed is the same on every run; exits 1 if a result is wrong.
Run: see worker_pool.py.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

import jobrunner

HANDLERS, REQUESTS = 4, 8


def main() -> int:
    wait_for_operator = "--wait" in sys.argv[1:]
    print(f"graceful_shutdown: {HANDLERS} connection handlers watch the shutdown token; "
          f"{REQUESTS} requests queued behind them")
    shutdown = jobrunner.CancelToken()
    received: list[str] = []

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signal.Signals(signum).name)
        shutdown.cancel()  # async-signal-safe in C; here it runs in the main thread

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    started = threading.Barrier(HANDLERS + 1)
    stopped: list[int] = []
    completed: list[int] = []

    def handler(i: int) -> None:
        started.wait()
        ctx = jobrunner.current()
        while not ctx.cancelled:
            ctx.token.wait(0.05)
        stopped.append(i)

    def request(i: int) -> int:
        completed.append(i)
        return i

    pool = jobrunner.Pool(threads=HANDLERS)
    handlers = [pool.options(token=shutdown).submit(handler, i) for i in range(HANDLERS)]
    started.wait()
    requests = [pool.submit(request, i) for i in range(REQUESTS)]
    print(f"{HANDLERS} handlers running, {REQUESTS} requests accepted and queued")
    if wait_for_operator:
        print(f"waiting for SIGINT or SIGTERM (press Ctrl-C, or kill -TERM {os.getpid()})",
              flush=True)
    else:
        threading.Thread(target=os.kill, args=(os.getpid(), signal.SIGTERM)).start()
    if not shutdown.wait(None if wait_for_operator else 10):
        print("graceful_shutdown: FAILED: no signal", file=sys.stderr)
        return 1
    print(f"main: got {received[0]}, the shutdown token is cancelled")
    print("main: pool.shutdown(wait=True) (drain)")
    pool.shutdown(wait=True)
    try:
        pool.submit(request, -1)
        late = "accepted"
    except RuntimeError:
        late = "refused (PoolShutdown)"
    print(f"submit after shutdown: {late}")
    done = sum(1 for f in requests if f.done() and not f.cancelled())
    print(f"drained: {done} of {REQUESTS} requests completed; cancelled: "
          f"{len(stopped)} of {HANDLERS} handlers stopped")
    good = (late.startswith("refused") and done == REQUESTS and sorted(completed) == list(range(REQUESTS))
            and sorted(stopped) == list(range(HANDLERS)) and all(h.done() for h in handlers))
    if not good:
        print("graceful_shutdown: FAILED", file=sys.stderr)
        return 1
    print("graceful_shutdown: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
