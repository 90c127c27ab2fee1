"""The child interpreter of test_exit.py: puts jobs of every kind in flight, says
``ready``, then ends as the parent asks; its last atexit handler checks that every job
ended once and that everything it owned was released once.

    python exit_child.py HELPER_SO HOW [WHERE]

HOW: ``end`` (the script's last line), ``sys.exit`` (``sys.exit(3)`` with an exception
being handled), ``raise`` (an uncaught exception), ``daemon`` (daemon threads blocked in
``Future.result()`` and other waits, then the end), ``sigterm`` (the main thread waits
for ever; SIGTERM's default action ends the process), ``sigterm-handler`` (a SIGTERM
handler that raises ``SystemExit(143)``, as a user's would, while the main thread waits
in WHERE: ``result``, ``group``, ``channel``, ``token``, ``semaphore``, ``shutdown``).

In flight at the end, on a pool of ours (``P``) and on the process-wide pool (``D``):
Python jobs running (each waits for its cancellation: a token wait, a channel get, a
group member, a semaphore holder) and queued behind them (plain, with a token, waiting
for a permit, group members, a periodic job), native C jobs through ``submit_native``,
C jobs submitted through ``jr_submit`` with counted ``arg_free``/``result_free`` (with a
semaphore; on ``D`` under a token of "their C code", cancelled by our atexit handler),
one that ignores cancellation for a while, one detached (its handle freed at once: it
runs on through ``Py_Finalize``), a stream and a pipeline on ``D``.
"""

from __future__ import annotations

import atexit
import ctypes
import gc
import itertools
import os
import signal
import sys
import threading
from collections.abc import Callable

# Registered before jobrunner is imported, so it runs after the binding's own exit
# hook (atexit runs handlers last-in, first-out): it sees what that hook left.
REPORT: list[str] = []


def _report_at_exit() -> None:
    try:
        _check_everything()
    except BaseException as exc:  # noqa: BLE001 - the parent reads the verdict
        REPORT.append(f"FAIL: the check raised {exc!r}")
    verdict = "ok" if not any(line.startswith("FAIL") for line in REPORT) else "FAIL"
    print("\n".join(REPORT + [f"report: {verdict}"]), flush=True)


atexit.register(_report_at_exit)

import jobrunner  # noqa: E402
from jobrunner import _jobs, _native, _stream  # noqa: E402

HELPER = ctypes.CDLL(sys.argv[1])
HOW = sys.argv[2]
WHERE = sys.argv[3] if len(sys.argv) > 3 else "result"
lib = _native.lib


# --- what the Python jobs own: objects that count their release ----------------------

MADE: list[int] = []
FREED: list[int] = []


class Tracked:
    """An argument or a result of a Python job; list appends are atomic under the GIL."""

    def __init__(self) -> None:
        MADE.append(1)

    def __del__(self) -> None:
        FREED.append(1)


STARTED = threading.Condition()
started_count = 0
RAN: list[int] = []  # ids of the queued Python jobs that ran


def _started() -> None:
    global started_count
    with STARTED:
        started_count += 1
        STARTED.notify_all()


def coop(arg: Tracked) -> Tracked:
    """Runs until asked to stop, then returns a result."""
    _started()
    jobrunner.current().token.wait()
    return Tracked()


def coop_raises(arg: Tracked) -> Tracked:
    """Runs until asked to stop, then ends cancelled."""
    _started()
    ctx = jobrunner.current()
    ctx.token.wait()
    ctx.check()
    raise AssertionError("check() did not raise after the cancel")


def channel_getter(arg: Tracked, chan: jobrunner.Channel) -> Tracked:
    """Blocked in a channel get that watches the job's token."""
    _started()
    return chan.get(token=jobrunner.current().token)


def quick(arg: Tracked, tag: int) -> Tracked:
    RAN.append(tag)
    return Tracked()


def channel_putter(arg: Tracked, chan: jobrunner.Channel) -> None:
    token = jobrunner.current().token
    while True:
        chan.put(Tracked(), token=token)


# --- C jobs with counted destructors ---------------------------------------------------

index = itertools.count(1)
RAW: list[tuple[int, int]] = []  # (index, jr_job address) of every jr_submit of ours


def submit_raw(pool: jobrunner.Pool, fn_name: str, token: jobrunner.CancelToken | None = None,
               sem: jobrunner.Semaphore | None = None) -> None:
    opts = lib.jr_submit_options_default()
    opts.arg_free = ctypes.cast(HELPER.exit_arg_free, _native.FREE_FN)
    opts.result_free = ctypes.cast(HELPER.exit_result_free, _native.FREE_FN)
    if token is not None:
        opts.token = token._ptr
    if sem is not None:
        opts.sem = sem._ptr
        opts.weight = 1
    job = _native.JobP()
    i = next(index)
    fn = ctypes.cast(getattr(HELPER, fn_name), _native.JOB_FN)
    status = lib.jr_submit(pool._ptr, fn, i, ctypes.byref(opts), ctypes.byref(job))
    assert status == 0, status
    RAW.append((i, _native.address(job)))


# --- the jobs in flight -----------------------------------------------------------------

P = jobrunner.Pool(threads=6, name="exit-P")
D = jobrunner.Pool.default()  # JOBRUNNER_THREADS sets its size (the parent: 6)
token = jobrunner.CancelToken()
sem = jobrunner.Semaphore(1)
raw_sem = jobrunner.Semaphore(1)
group = P.group()
chan = jobrunner.Channel(2)
full = jobrunner.Channel(1)
c_token = jobrunner.CancelToken()  # the token "their C code" cancels at its exit
KEEP: dict[str, list[object]] = {"futures": [], "native": [], "objects": []}

# Blocking jobs, one worker each: 4 Python + 1 native + 1 C on P; 1 Python + 1 native
# + 1 C on D, plus the stream's producer and the pipeline.
futs = KEEP["futures"]
futs.append(P.options(token=token).submit(coop, Tracked()))
futs.append(P.options(semaphore=sem).submit(coop_raises, Tracked()))
futs.append(group.submit(coop, Tracked()))
futs.append(P.submit(channel_getter, Tracked(), chan))
futs.append(D.submit(coop_raises, Tracked()))
KEEP["native"].append(P.submit_native(HELPER.exit_coop_job, next(index)))
KEEP["native"].append(D.submit_native(HELPER.exit_coop_job, next(index)))
submit_raw(P, "exit_coop_job", sem=raw_sem)
submit_raw(D, "exit_coop_job", token=c_token)
PY_BLOCKERS, C_BLOCKERS = 5, 4
with STARTED:
    assert STARTED.wait_for(lambda: started_count >= PY_BLOCKERS, timeout=30), started_count
assert HELPER.exit_await_started(C_BLOCKERS, 30_000) >= C_BLOCKERS

stream = D.stream(itertools.count, capacity=2)
assert stream.get(timeout=30) == 0  # its producer now waits for room in its channel
pipeline = D.pipeline(itertools.count(), max_in_flight=4).stage(lambda x: x * 2, concurrency=2)
assert pipeline.get(timeout=30) == 0
KEEP["objects"] += [stream, pipeline]

# Queued behind them (a job blocked in a wait lends its worker's place to a spare, so
# some may run: each must then end with its result, the others cancelled).
QUICK: dict[int, jobrunner.Future[Tracked]] = {}
for tag in range(40):
    QUICK[tag] = P.submit(quick, Tracked(), tag)
for tag in range(40, 50):
    QUICK[tag] = P.options(token=token).submit(quick, Tracked(), tag)
for tag in range(50, 55):
    QUICK[tag] = P.options(semaphore=sem).submit(quick, Tracked(), tag)  # wait for a permit
for tag in range(55, 60):
    QUICK[tag] = group.submit(quick, Tracked(), tag)
for tag in range(60, 70):
    QUICK[tag] = D.submit(quick, Tracked(), tag)
futs += QUICK.values()
futs.append(P.submit(channel_putter, Tracked(), full))
for _ in range(10):
    KEEP["native"].append(P.submit_native(HELPER.exit_quick_job, next(index)))
for _ in range(20):
    submit_raw(P, "exit_quick_job")
for _ in range(5):
    submit_raw(P, "exit_quick_job", sem=raw_sem)  # wait for a permit
for _ in range(10):
    submit_raw(D, "exit_quick_job", token=c_token)
ticker = P.submit_every(0.001, int)
submit_raw(P, "exit_stubborn_job")  # ignores the cancel: exit waits for it
DETACHED = next(index)
assert HELPER.exit_submit_detached(D._ptr, DETACHED) == 0
LAST_INDEX = DETACHED


def _check_everything() -> None:
    """Run after the binding's exit hook: every job has ended, exactly once, and what
    it owned is released exactly once."""
    # Their C code's turn: it cancels its token and waits for its jobs.
    c_token.cancel()
    succeeded = set()
    for i, job in RAW:
        jp = _native.job_ptr(job)
        if lib.jr_job_wait(jp, 20_000_000_000) == _native.Status.JR_E_TIMEOUT:
            REPORT.append(f"FAIL: C job {i} did not end")
        state = ctypes.c_int()
        lib.jr_job_state(jp, ctypes.byref(state))
        if state.value == _native.State.JR_JOB_SUCCEEDED:
            succeeded.add(i)
        elif state.value != _native.State.JR_JOB_CANCELLED:
            REPORT.append(f"FAIL: C job {i} ended {state.value}")
        lib.jr_job_free(jp)  # an untaken result is freed with the last handle
    for i, _job in RAW:
        args, results = HELPER.exit_arg_frees(i), HELPER.exit_result_frees(i)
        want = 1 if i in succeeded else 0
        if args != 1 or results != want:
            REPORT.append(f"FAIL: C job {i}: arg_free ran {args}x, result_free {results}x (want 1, {want})")
        if HELPER.exit_ran(i) != (1 if i in succeeded else 0):
            REPORT.append(f"FAIL: C job {i} ran {HELPER.exit_ran(i)}x and ended {'ok' if i in succeeded else 'cancelled'}")
    if HELPER.exit_stray_frees():
        REPORT.append(f"FAIL: {HELPER.exit_stray_frees()} destructor calls for no job")
    REPORT.append(f"c: {len(RAW)} jobs, {len(succeeded)} succeeded, "
                  f"arg_frees={sum(HELPER.exit_arg_frees(i) for i, _ in RAW)} "
                  f"result_frees={sum(HELPER.exit_result_frees(i) for i, _ in RAW)}")

    # The Python jobs: each future ended once, consistently with whether its job ran.
    n_cancelled = 0
    for fut in futs:
        if not fut.done():
            REPORT.append(f"FAIL: a future is not done: {fut!r}")
            continue
        n_cancelled += fut.cancelled()
    ran_twice = len(RAN) - len(set(RAN))
    if ran_twice:
        REPORT.append(f"FAIL: {ran_twice} queued Python jobs ran more than once")
    for tag, fut in QUICK.items():
        if fut.done() and fut.cancelled() == (tag in RAN):
            REPORT.append(f"FAIL: queued job {tag}: ran {tag in RAN}, future cancelled {fut.cancelled()}")
    for fut in KEEP["native"]:
        if not fut.done():
            REPORT.append(f"FAIL: a native future is not done: {fut!r}")
    if not ticker.cancelled():
        REPORT.append("FAIL: the periodic job's future did not end cancelled")
    for name, table in (("_tasks", _jobs._tasks), ("_plain", _jobs._plain),
                        ("_native_pending", _jobs._native_pending),
                        ("_native_watched", _jobs._native_watched),
                        ("_producers", _stream._producers)):
        if table:
            REPORT.append(f"FAIL: {len(table)} entries left in _jobs.{name}")

    # Drop every reference of ours: then every argument and result is released.
    KEEP.clear()
    futs.clear()
    QUICK.clear()
    for name in ("ticker", "group", "chan", "full", "stream", "pipeline"):
        globals().pop(name)  # a group keeps its futures, a channel its items
    gc.collect()
    if len(FREED) != len(MADE):
        REPORT.append(f"FAIL: {len(MADE)} Python objects made, {len(FREED)} released")
    REPORT.append(f"python: {len(MADE)} made, {len(FREED)} released, {n_cancelled} futures cancelled, "
                  f"{len(set(RAN))} queued jobs ran")


# --- the end ------------------------------------------------------------------------------

if HOW == "sigterm-handler":
    def on_sigterm(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_sigterm)

if HOW != "daemon":
    print("ready", flush=True)

if HOW == "end":
    pass
elif HOW == "sys.exit":
    try:
        raise ValueError("pending while sys.exit runs")
    except ValueError:
        sys.exit(3)
elif HOW == "raise":
    raise RuntimeError("the script failed with jobs in flight")
elif HOW == "daemon":
    waits = [
        lambda: futs[0].result(),                 # a Python job on P (returns once cancelled)
        lambda: KEEP["native"][1].result(),       # a native job on D
        lambda: futs[4].result(),                 # a Python job on D (ends cancelled)
        lambda: jobrunner.Channel(1).get(),       # nothing ever comes: blocked for good
        lambda: sem.acquire(),                    # its permit is held by a job on P
        lambda: jobrunner.CancelToken().wait(),   # never cancelled: blocked for good
    ]

    def run(wait: Callable[[], object]) -> None:
        try:
            wait()
        except BaseException:  # noqa: BLE001 - cancelled at exit, as documented
            pass

    daemons = [threading.Thread(target=run, args=(w,), daemon=True) for w in waits]
    for thread in daemons:
        thread.start()
    # Until each is inside its wait: its innermost frame is the binding's C call (a
    # lambda of wait_sliced) or a condition's wait. Polled: a blocked thread sends no
    # event; the parent's deadline is the hang guard.
    def all_inside() -> bool:
        frames = sys._current_frames()  # every thread's: holds the jobs' frames too
        return all(t.ident in frames and frames[t.ident].f_code.co_name in ("<lambda>", "wait")
                   for t in daemons)

    while not all_inside():
        threading.Event().wait(0.001)
    print("ready", flush=True)
elif HOW == "sigterm":
    futs[0].result()  # never returns: SIGTERM's default action ends the process
elif HOW == "sigterm-handler":
    if WHERE == "result":
        futs[0].result()
    elif WHERE == "group":
        group.wait()
    elif WHERE == "channel":
        jobrunner.Channel(1).get()
    elif WHERE == "token":
        jobrunner.CancelToken().wait()
    elif WHERE == "semaphore":
        sem.acquire()
    elif WHERE == "shutdown":
        P.shutdown(wait=True)  # a drain: the blocking jobs never end by themselves
    raise AssertionError(f"the wait in {WHERE} returned")
else:
    raise SystemExit(f"unknown HOW {HOW}")
