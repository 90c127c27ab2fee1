"""The Python bench of `make bench`: jobrunner.Pool against ThreadPoolExecutor.

Follows bench/PROTOCOL.md: one JSON line per measured run on stdout, everything else on
stderr; BENCH_QUICK, BENCH_RUNS, BENCH_THREADS and BENCH_ONLY from the environment. For
each workload, one warm-up run of every system (not printed), then BENCH_RUNS rounds
in which every system runs once, in a fixed order. Both systems get BENCH_THREADS
workers (default 2), made before the warm-up and kept for the workload's runs. Every run
checks its results and the program exits non-zero on a wrong one.

Workloads (sizes full / quick):

``python: spawn`` (µs per job)
    N = 100,000 / 10,000 trivial callables (``abs(i)``) submitted one by one from the
    main thread, then every ``result()`` taken in submission order; the sum is checked.
    Timed: from the first ``submit`` to the futures' release after the last
    ``result()`` (a jobrunner future frees its C job handle then).
``python: fan-out (native job)`` (ms) and ``python: native 1→2 threads speedup`` (x)
    20,000 / 2,000 calls of a C function doing ~20 µs of integer work (the calibrated
    recurrence of benches/common, compiled here with cc), submitted from the main thread,
    then every result gathered and checked. jobrunner runs it as a native job
    (``Pool.submit_native``: a ``jr_job_fn`` the workers call without the GIL);
    ThreadPoolExecutor runs a ctypes call to the same function (ctypes releases the GIL
    for the call). Timed as spawn. Each system runs on 1 worker and on BENCH_THREADS
    workers in every round; the ms row is the BENCH_THREADS run, the speedup row is the
    1-worker time over it, in the same round.
``python: fan-out (Python callable)`` (ms)
    20,000 / 2,000 Python calls of ~20 µs each (the same recurrence in Python), results
    gathered and checked; timed as spawn. The GIL runs one call at a time in either
    system: this measures the overhead per job around real Python work.
``python: cancellation`` (ms)
    With every worker held by a blocker job, 100,000 / 10,000 jobs are queued and a
    waiter thread blocks on the first one's ``exception()``. Timed: from the cancel to
    the waiter having seen every future cancelled (it then walks the others, each
    ``exception()`` raising ``CancelledError``); the detail says when the cancel call
    itself returned. jobrunner cancels one ``CancelToken`` every job was submitted with
    (``token.cancel()``, which returns once every queued job has ended cancelled);
    ThreadPoolExecutor calls ``Future.cancel()`` on each future. Checked: the waiter saw
    every future cancelled, none ran.

Run from the repository root after ``make lib``:

    JOBRUNNER_LIBRARY=$PWD/target/release/libjobrunner.so PYTHONPATH=$PWD/bindings/python \\
        python3 bindings/python/bench/bench.py
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jobrunner

OURS = "jobrunner (Python)"
TPE = "ThreadPoolExecutor"
REPO = Path(__file__).resolve().parents[3]

#: The work item of every bench program (benches/common/mod.rs, ``spin``): a serial
#: integer recurrence, here in C (a native job, and a function ctypes can call) and in
#: Python. ``spin_job`` is a ``jr_job_fn``: its result is the recurrence's value XOR its
#: argument, so every result names the job that made it.
NATIVE_C = r"""
#include <stdint.h>
#include "jobrunner.h"

static volatile uint64_t rounds_per_item = 1;

static uint64_t spin(uint64_t rounds) {
    uint64_t x = 0x9E3779B97F4A7C15ULL;
    for (uint64_t i = 0; i < rounds; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        x ^= x >> 29;
    }
    return x;
}

void set_rounds_per_item(uint64_t rounds) { rounds_per_item = rounds; }

uint64_t spin_rounds(uint64_t rounds) { return spin(rounds); }

uint64_t spin_item(uint64_t i) { return spin(rounds_per_item) ^ i; }

int32_t spin_job(jr_ctx *ctx, void *arg, void **result) {
    (void)ctx;
    *result = (void *)(uintptr_t)spin_item((uint64_t)(uintptr_t)arg);
    return 0;
}

_Static_assert(_Generic(&spin_job, jr_job_fn: 1, default: 0), "spin_job is not a jr_job_fn");
"""

MASK = (1 << 64) - 1


def py_spin(rounds: int) -> int:
    """The recurrence in Python."""
    x = 0x9E3779B97F4A7C15
    for _ in range(rounds):
        x = (x * 6364136223846793005 + 1442695040888963407) & MASK
        x ^= x >> 29
    return x


def py_item(i: int, rounds: int) -> int:
    """The Python fan-out's job: ``rounds`` of the recurrence, XOR the job's index."""
    return py_spin(rounds) ^ i


# --- the protocol ---------------------------------------------------------------------------


class WrongResult(Exception):
    """A run's result is wrong: the bench exits non-zero."""


def expect(ok: bool, what: str) -> None:
    if not ok:
        raise WrongResult(what)


@dataclass
class Config:
    """The ``BENCH_*`` settings of this invocation."""

    quick: bool
    runs: int
    threads: int
    only: list[str]
    #: Every emitted value, by (workload, system), for the summary on stderr.
    seen: dict[tuple[str, str], list[float]] = field(default_factory=lambda: defaultdict(list))

    @classmethod
    def from_env(cls) -> Config:
        def number(name: str, default: int) -> int:
            value = os.environ.get(name) or str(default)
            try:
                return max(1, int(value))
            except ValueError:
                sys.exit(f"bench.py: {name}={value}: not a number")

        only = os.environ.get("BENCH_ONLY") or ""
        return cls(
            quick=os.environ.get("BENCH_QUICK") == "1",
            runs=number("BENCH_RUNS", 5),
            threads=number("BENCH_THREADS", 2),
            only=[w.strip() for w in only.split(",") if w.strip()],
        )

    def size(self, full: int, quick: int) -> int:
        return quick if self.quick else full

    def wants(self, workload: str) -> bool:
        """Whether BENCH_ONLY selects ``workload`` (its id, with or without the
        ``python: `` prefix)."""
        short = workload.removeprefix("python: ")
        return not self.only or workload in self.only or short in self.only

    def emit(self, workload: str, system: str, unit: str, value: float,
             lower_is_better: bool = True, detail: str | None = None) -> None:
        """Print one measured run: its JSON line on stdout, a line for humans on stderr."""
        line: dict[str, Any] = {
            "workload": workload, "system": system, "ours": system == OURS, "unit": unit,
            "value": round(value, 4), "lower_is_better": lower_is_better,
        }
        if detail:
            line["detail"] = detail
        print(json.dumps(line), flush=True)
        note = f"  ({detail})" if detail else ""
        log(f"  {workload:<38} {system:<20} {value:>10.3f} {unit}{note}")
        self.seen[(workload, system)].append(value)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def rounds(config: Config, systems: list[Callable[[bool], None]]) -> None:
    """One warm-up run of every system (``emit`` False), then ``config.runs`` rounds in
    which every system runs once, in the order given."""
    for run in systems:
        run(False)
    for _ in range(config.runs):
        for run in systems:
            run(True)


@contextmanager
def executors(threads: int) -> Iterator[tuple[jobrunner.Pool, concurrent.futures.Executor]]:
    """A jobrunner pool and a ThreadPoolExecutor with ``threads`` workers each."""
    with jobrunner.Pool(threads=threads) as pool, \
            concurrent.futures.ThreadPoolExecutor(max_workers=threads) as tpe:
        yield pool, tpe


def timed(body: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds ``body()`` takes, and what it returns. Collects garbage first, so that no
    run pays for the one before it."""
    gc.collect()
    t0 = time.perf_counter()
    out = body()
    return time.perf_counter() - t0, out


# --- python: spawn ----------------------------------------------------------------------------


def spawn(config: Config) -> None:
    """``python: spawn``: µs per trivial callable, from submit to result."""
    n = config.size(100_000, 10_000)
    workload = "python: spawn"
    log(f"\n{workload}: {n:,} x submit(abs, i), then every result(); "
        f"{config.threads} workers")

    def run(executor: concurrent.futures.Executor) -> int:
        submit = executor.submit
        futures = [submit(abs, i) for i in range(n)]
        total = 0
        for fut in futures:
            total += fut.result()
        return total  # the futures are freed on return, inside the clock

    def system(name: str, executor: concurrent.futures.Executor) -> Callable[[bool], None]:
        def once(emit: bool) -> None:
            seconds, total = timed(lambda: run(executor))
            expect(total == n * (n - 1) // 2, f"{workload}, {name}: sum {total}")
            if emit:
                config.emit(workload, name, "µs/job", seconds / n * 1e6)
        return once

    with executors(config.threads) as (pool, tpe):
        rounds(config, [system(OURS, pool), system(TPE, tpe)])


# --- python: fan-out (native job) -----------------------------------------------------------


def build_native(tmp: Path) -> ctypes.CDLL:
    """Compile :data:`NATIVE_C` with cc into ``tmp`` and load it."""
    cc = shutil.which("cc")
    if cc is None:
        sys.exit("bench.py: the native fan-out needs a C compiler (cc)")
    src = tmp / "spin.c"
    src.write_text(NATIVE_C)
    so = tmp / "libspin.so"
    subprocess.run([cc, "-O2", "-std=c11", "-Wall", "-Werror", "-shared", "-fPIC",
                    f"-I{REPO / 'include'}", "-o", str(so), str(src)], check=True)
    lib = ctypes.CDLL(str(so))
    lib.set_rounds_per_item.argtypes = [ctypes.c_uint64]
    lib.set_rounds_per_item.restype = None
    lib.spin_rounds.argtypes = [ctypes.c_uint64]
    lib.spin_rounds.restype = ctypes.c_uint64
    lib.spin_item.argtypes = [ctypes.c_uint64]
    lib.spin_item.restype = ctypes.c_uint64
    return lib


def calibrate(seconds_per_rounds: Callable[[int], float], probe: int, target: float) -> int:
    """Rounds of the recurrence that take ``target`` seconds now (best of 5 probes)."""
    seconds_per_rounds(probe)
    best = min(seconds_per_rounds(probe) for _ in range(5))
    return max(1, round(target / (best / probe)))


def native_speedup_id(threads: int) -> str:
    return f"python: native 1→{threads} threads speedup"


def fan_out_native(config: Config) -> None:
    """``python: fan-out (native job)`` and ``python: native 1→N threads speedup``."""
    n = config.size(20_000, 2_000)
    threads = config.threads
    workload = "python: fan-out (native job)"
    speedup = native_speedup_id(threads)
    with tempfile.TemporaryDirectory() as tmp:
        lib = build_native(Path(tmp))

    def c_seconds(rounds_: int) -> float:
        t0 = time.perf_counter()
        lib.spin_rounds(rounds_)
        return time.perf_counter() - t0

    rounds_per_item = calibrate(c_seconds, 2_000_000, 20e-6)
    lib.set_rounds_per_item(rounds_per_item)
    base = lib.spin_item(0)
    log(f"\n{workload}: {n:,} native calls of ~20 µs ({rounds_per_item:,} rounds), "
        f"results gathered; 1 and {threads} workers")

    job, item = lib.spin_job, lib.spin_item

    def run_ours(pool: jobrunner.Pool) -> list[int]:
        submit = pool.submit_native
        futures = [submit(job, i) for i in range(n)]
        return [fut.result() for fut in futures]

    def run_tpe(tpe: concurrent.futures.Executor) -> list[int]:
        submit = tpe.submit
        futures = [submit(item, i) for i in range(n)]
        return [fut.result() for fut in futures]

    #: Each system's time on one worker in the current round (when threads > 1).
    one_worker: dict[str, float] = {}

    def system(name: str, workers: int, executor: Any,
               run: Callable[[Any], list[int]]) -> Callable[[bool], None]:
        def once(emit: bool) -> None:
            seconds, results = timed(lambda: run(executor))
            expect(results == [base ^ i for i in range(n)],
                   f"{workload}, {name}, {workers} workers: wrong results")
            if workers < threads:
                one_worker[name] = seconds
                return
            if emit:
                config.emit(workload, name, "ms", seconds * 1e3)
            if emit and name in one_worker:
                config.emit(speedup, name, "x", one_worker[name] / seconds,
                            lower_is_better=False,
                            detail=f"{one_worker[name] * 1e3:.0f} → {seconds * 1e3:.0f} ms")
        return once

    with executors(1) as (pool1, tpe1), executors(threads) as (pool, tpe):
        systems = [system(OURS, threads, pool, run_ours), system(TPE, threads, tpe, run_tpe)]
        if threads > 1:
            systems[:0] = [system(OURS, 1, pool1, run_ours), system(TPE, 1, tpe1, run_tpe)]
        rounds(config, systems)


# --- python: fan-out (Python callable) ------------------------------------------------------


def fan_out_python(config: Config) -> None:
    """``python: fan-out (Python callable)``: ms for n Python calls of ~20 µs."""
    n = config.size(20_000, 2_000)
    workload = "python: fan-out (Python callable)"

    def py_seconds(rounds_: int) -> float:
        t0 = time.perf_counter()
        py_spin(rounds_)
        return time.perf_counter() - t0

    rounds_per_item = calibrate(py_seconds, 20_000, 20e-6)
    base = py_spin(rounds_per_item)
    log(f"\n{workload}: {n:,} Python calls of ~20 µs ({rounds_per_item} rounds), "
        f"results gathered; {config.threads} workers")

    def run(executor: concurrent.futures.Executor) -> list[int]:
        submit = executor.submit
        futures = [submit(py_item, i, rounds_per_item) for i in range(n)]
        return [fut.result() for fut in futures]

    def system(name: str, executor: concurrent.futures.Executor) -> Callable[[bool], None]:
        def once(emit: bool) -> None:
            seconds, results = timed(lambda: run(executor))
            expect(results == [base ^ i for i in range(n)], f"{workload}, {name}: wrong results")
            if emit:
                config.emit(workload, name, "ms", seconds * 1e3)
        return once

    with executors(config.threads) as (pool, tpe):
        rounds(config, [system(OURS, pool), system(TPE, tpe)])


# --- python: cancellation -------------------------------------------------------------------


def block(started: threading.Barrier, release: threading.Event) -> None:
    """A blocker job: holds its worker until ``release`` is set."""
    started.wait()
    release.wait()


def hold_workers(executor: concurrent.futures.Executor, threads: int) -> threading.Event:
    """Put a blocker on each of the ``threads`` workers and return once every one runs
    (so every job submitted earlier has been taken); set the event to release them."""
    started = threading.Barrier(threads + 1)
    release = threading.Event()
    for _ in range(threads):
        executor.submit(block, started, release)
    started.wait()
    return release


def waiter(futures: list[concurrent.futures.Future[Any]], ready: threading.Event,
           cancelled: list[int]) -> None:
    """The cancellation's waiter: blocks on the first future, then walks the others;
    appends the number of futures it saw cancelled to ``cancelled``."""
    count = 0
    ready.set()
    for fut in futures:
        try:
            fut.exception()
        except concurrent.futures.CancelledError:
            count += 1
    cancelled.append(count)


#: Queues n jobs that append to the list given if they run; returns their futures and
#: the call that cancels them all.
Queue = Callable[[list[None]], tuple[list[Any], Callable[[], None]]]


def cancellation(config: Config) -> None:
    """``python: cancellation``: ms from the cancel of n queued jobs to their waiter's
    return."""
    n = config.size(100_000, 10_000)
    threads = config.threads
    workload = "python: cancellation"
    log(f"\n{workload}: {n:,} queued jobs (every worker blocked), cancelled; "
        f"{threads} workers. jobrunner: one CancelToken; {TPE}: Future.cancel() on each")

    def run(name: str, executor: concurrent.futures.Executor, queue: Queue,
            emit: bool) -> None:
        release = hold_workers(executor, threads)
        ran: list[None] = []
        futures, cancel_all = queue(ran)
        ready = threading.Event()
        seen: list[int] = []
        watcher = threading.Thread(target=waiter, args=(futures, ready, seen))
        gc.collect()
        watcher.start()
        # The waiter keeps the GIL from set() to its first wait (unless the switch
        # interval passes first): the clock starts with the waiter blocked.
        ready.wait()
        t0 = time.perf_counter()
        cancel_all()
        cancelled_at = time.perf_counter() - t0
        watcher.join()
        seconds = time.perf_counter() - t0

        release.set()
        # ThreadPoolExecutor's workers still take each cancelled item off its queue:
        # once a blocker runs on every worker, they have.
        hold_workers(executor, threads).set()
        expect(seen == [n], f"{workload}, {name}: the waiter saw {seen} of {n} cancelled")
        expect(all(fut.cancelled() for fut in futures), f"{workload}, {name}: not all cancelled")
        expect(not ran, f"{workload}, {name}: {len(ran)} cancelled jobs ran")
        if emit:
            config.emit(workload, name, "ms", seconds * 1e3,
                        detail=f"the cancel returned at {cancelled_at * 1e3:.0f} ms")

    with executors(threads) as (pool, tpe):
        def queue_ours(ran: list[None]) -> tuple[list[Any], Callable[[], None]]:
            token = jobrunner.CancelToken()
            submit = pool.options(token=token).submit
            return [submit(ran.append, None) for _ in range(n)], token.cancel

        def queue_tpe(ran: list[None]) -> tuple[list[Any], Callable[[], None]]:
            futures = [tpe.submit(ran.append, None) for _ in range(n)]

            def cancel_all() -> None:
                for fut in futures:
                    fut.cancel()
            return futures, cancel_all

        rounds(config, [lambda emit: run(OURS, pool, queue_ours, emit),
                        lambda emit: run(TPE, tpe, queue_tpe, emit)])


# --- main -----------------------------------------------------------------------------------


#: Each workload by the id BENCH_ONLY selects it with (the native fan-out's speedup row
#: comes with it).
WORKLOADS: dict[str, Callable[[Config], None]] = {
    "python: spawn": spawn,
    "python: fan-out (native job)": fan_out_native,
    "python: fan-out (Python callable)": fan_out_python,
    "python: cancellation": cancellation,
}


def summary(config: Config) -> None:
    """Medians per workload and system on stderr, with the issue's Python targets."""
    log("\nmedians:")
    for (workload, system), values in config.seen.items():
        log(f"  {workload:<38} {system:<20} {statistics.median(values):>10.3f}")
    spawn_runs = (config.seen.get(("python: spawn", OURS)),
                  config.seen.get(("python: spawn", TPE)))
    if spawn_runs[0] and spawn_runs[1]:
        ratio = statistics.median(spawn_runs[1]) / statistics.median(spawn_runs[0])
        log(f"  spawn: {ratio:.2f}x ThreadPoolExecutor's throughput (target >= 4x)")
    speedups = config.seen.get((native_speedup_id(config.threads), OURS))
    if speedups:
        log(f"  native jobs: {statistics.median(speedups):.2f}x from 1 to "
            f"{config.threads} workers (target >= 1.8x on 2)")


def main() -> int:
    config = Config.from_env()
    log(f"bench.py: jobrunner {jobrunner.LIBRARY_VERSION} ({jobrunner.LIBRARY_PATH}), "
        f"Python {sys.version.split()[0]}; {'quick' if config.quick else 'full'}, "
        f"{config.runs} runs, {config.threads} workers")
    start = time.perf_counter()
    try:
        for workload, run in WORKLOADS.items():
            if config.wants(workload):
                t0 = time.perf_counter()
                run(config)
                log(f"  ({workload}: {time.perf_counter() - t0:.1f} s)")
    except WrongResult as exc:
        log(f"bench.py: WRONG RESULT: {exc}")
        return 1
    summary(config)
    log(f"bench.py: {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
