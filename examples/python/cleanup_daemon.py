"""Delayed and periodic jobs: Go's time.AfterFunc and time.Ticker on the pool, in Python.

A table of sessions, each with an expiry time; a periodic job (`pool.submit_every`,
every 20 ms) sweeps out the expired ones and reports each sweep with its run number
(`current().tick`). A delayed job (`pool.options(delay=0.06)`) logs one session out
60 ms after it is submitted. After five sweeps the main thread shuts the pool down
(drain): the periodic job stops with it (its future ends cancelled), no sweep starts
after, and the delayed job has run. Exits 1 if a result is wrong.
Run: see worker_pool.py.
"""

from __future__ import annotations

import sys
import threading
import time

import jobrunner

SESSIONS, SWEEPS, PERIOD, LOGOUT_ID = 100, 5, 0.02, 77


def main() -> int:
    now = time.monotonic()
    # Even ids already expired; odd ones expire in an hour.
    sessions = {i: now - 1 if i % 2 == 0 else now + 3600 for i in range(SESSIONS)}
    lock = threading.Lock()
    print(f"cleanup_daemon: {SESSIONS} sessions, {SESSIONS // 2} already expired; "
          f"sweeping every {int(PERIOD * 1000)} ms")
    sweeps_seen = threading.Event()
    runs: list[int] = []

    def sweep() -> None:
        tick = jobrunner.current().tick
        t = time.monotonic()
        with lock:
            expired = [k for k, exp in sessions.items() if exp <= t]
            for k in expired:
                del sessions[k]
        runs.append(tick)
        print(f"    sweep {tick}: removed {len(expired)} expired sessions")
        if len(runs) == SWEEPS:
            sweeps_seen.set()

    logged_out: list[float] = []

    def logout(session: int, submitted: float) -> None:
        with lock:
            sessions.pop(session, None)
        logged_out.append(time.monotonic() - submitted)

    pool = jobrunner.Pool(threads=2)
    ticker = pool.submit_every(PERIOD, sweep)
    print(f"delayed job: logs session {LOGOUT_ID} out in 60 ms")
    delayed = pool.options(delay=0.06).submit(logout, LOGOUT_ID, time.monotonic())
    if not sweeps_seen.wait(10):
        print("cleanup_daemon: FAILED: no sweeps", file=sys.stderr)
        return 1
    print(f"main: {SWEEPS} sweeps seen, shutting the pool down (Drain)")
    delayed.result(10)  # a drain runs delayed jobs when they come due
    pool.shutdown(wait=True)
    print(f"shutdown(Drain): complete true, ticker stopped: {str(ticker.cancelled()).lower()}")
    ran_after = logged_out[0] if logged_out else -1
    print(f"delayed job: ran {'no sooner than' if ran_after >= 0.06 else 'EARLY,'} 60 ms "
          "after it was submitted")
    ran = len(runs)
    time.sleep(3 * PERIOD)  # the only sleep: to show that no sweep starts any more
    print(f"summary: {ran} sweeps ran, {len(sessions)} live sessions left")
    if len(runs) != ran or not ticker.cancelled() or ran_after < 0.06 or LOGOUT_ID in sessions:
        print("cleanup_daemon: FAILED", file=sys.stderr)
        return 1
    print("cleanup_daemon: the periodic job stopped with the pool")
    return 0


if __name__ == "__main__":
    sys.exit(main())
