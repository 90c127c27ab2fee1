"""Benchmark: jobrunner.Pool against its peers, in the same run, runs alternating.

1. Trivial callables: submit N trivial Python callables (``int``), then take every
   result, per job; jobrunner.Pool against ThreadPoolExecutor with the same number of
   threads. Every job is a real jobrunner job on the pool (its own C job, cancellable)
   with a real concurrent.futures.Future. Runs alternate (TPE, ours, TPE, ours, ...).
2. The cost of one C->Python callback on a worker, with the worker's lasting thread
   state (our thread hooks) and without (ctypes then makes one per call).
3. Native jobs: a CPU-bound C job (built here with cc) submitted M times with
   submit_native, wall time on 1 and on 2 threads; in the same run, the ceiling: the
   same work on plain pthreads (an atomic counter hands out the M items), and the same
   jobs submitted to jobrunner from C (no Python), each on 1 and 2 threads.

The machine these numbers come from is shared and noisy: compare only within a run,
look at the medians, and at the spread (every run is printed with --verbose).

Run from the repository root after `cargo build --release`:

    JOBRUNNER_LIBRARY=target/release/libjobrunner.so PYTHONPATH=bindings/python \\
        python3 bindings/python/bench/bench.py [--jobs 100000] [--threads 2] [--repeat 7]

(or with the package installed by `pip install ./bindings/python`, no variables).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import ctypes
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import jobrunner

NATIVE_C = r"""
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>
#ifdef WITH_JOBRUNNER
#include "jobrunner.h"
#else
typedef struct jr_ctx jr_ctx;
#endif

/* The work: a dependent chain of SPIN multiply-adds, nothing shared. */
static uint64_t work(uint64_t x) {
    x += 1;
    for (int i = 0; i < SPIN; i++) x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    return x & 0xffff;
}

/* The jr_job_fn submitted with submit_native. */
int32_t spin(jr_ctx *ctx, void *arg, void **result) {
    (void)ctx;
    *result = (void *)(uintptr_t)work((uint64_t)(uintptr_t)arg);
    return 0;
}

/* The ceiling: `jobs` items of the same work on `threads` pthreads. */
static atomic_long next_item;
static long total_items;
static atomic_ulong sink;

static void *pthread_worker(void *unused) {
    (void)unused;
    uint64_t acc = 0;
    long i;
    while ((i = atomic_fetch_add(&next_item, 1)) < total_items) acc += work((uint64_t)i);
    atomic_fetch_add(&sink, acc);
    return NULL;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Wall seconds to run `jobs` items on `threads` pthreads (threads made inside). */
double spin_pthreads(int threads, long jobs) {
    pthread_t tid[64];
    atomic_store(&next_item, 0);
    total_items = jobs;
    double t0 = now_s();
    for (int t = 0; t < threads; t++) pthread_create(&tid[t], NULL, pthread_worker, NULL);
    for (int t = 0; t < threads; t++) pthread_join(tid[t], NULL);
    return now_s() - t0;
}

#ifdef WITH_JOBRUNNER
/* Wall seconds to submit `jobs` spin jobs from C to a new pool of `threads` threads
   (made before the clock starts) and wait for all; -1 on an error. */
double spin_jobrunner_c(int threads, long jobs, jr_job **handles) {
    jr_pool_options options = jr_pool_options_default();
    options.threads = (size_t)threads;
    jr_pool *pool = NULL;
    if (jr_pool_new(&options, &pool) != JR_OK) return -1;
    double t0 = now_s();
    for (long i = 0; i < jobs; i++)
        if (jr_submit(pool, spin, (void *)(uintptr_t)i, NULL, &handles[i]) != JR_OK) return -1;
    for (long i = 0; i < jobs; i++)
        if (jr_job_wait(handles[i], -1) != JR_OK) return -1;
    double elapsed = now_s() - t0;
    for (long i = 0; i < jobs; i++) jr_job_free(handles[i]);
    jr_pool_free(pool);
    return elapsed;
}
#endif
"""


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def show(label: str, runs: list[float], unit: str, verbose: bool) -> None:
    every = "  [" + " ".join(f"{x:.2f}" for x in runs) + "]" if verbose else ""
    print(f"  {label:<34} median {median(runs):8.2f} {unit}  (min {min(runs):.2f}, "
          f"max {max(runs):.2f}){every}")


# --- 1. trivial callables -------------------------------------------------------------------


def per_job_us(executor: concurrent.futures.Executor, n: int) -> float:
    """Submit n trivial callables, then take every result: wall µs per job."""
    t0 = time.perf_counter()
    futures = [executor.submit(int) for _ in range(n)]
    for fut in futures:
        fut.result()
    elapsed = time.perf_counter() - t0
    del futures  # freed outside the clock, as ThreadPoolExecutor's are
    return elapsed / n * 1e6


def bench_trivial(threads: int, n: int, repeat: int, verbose: bool) -> tuple[float, float]:
    print(f"\n1. submit+result of {n} trivial callables, {threads} threads, "
          f"{repeat} runs each, alternating (after one warm-up run each):")
    tpe_runs: list[float] = []
    ours_runs: list[float] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as tpe, \
            jobrunner.Pool(threads=threads) as pool:
        per_job_us(tpe, n)
        per_job_us(pool, n)
        for _ in range(repeat):
            tpe_runs.append(per_job_us(tpe, n))
            ours_runs.append(per_job_us(pool, n))
    show("ThreadPoolExecutor", tpe_runs, "us/job", verbose)
    show("jobrunner.Pool", ours_runs, "us/job", verbose)
    pairs = [t / o for t, o in zip(tpe_runs, ours_runs)]
    print(f"  ratio of the medians {median(tpe_runs) / median(ours_runs):.2f}x "
          f"(median of the per-pair ratios {median(pairs):.2f}x)")
    return median(tpe_runs), median(ours_runs)


# --- 2. the worker thread state --------------------------------------------------------------


def callback_us(pool: jobrunner.Pool, n: int) -> float:
    """µs per C->Python callback (an empty ctypes job function) on a one-thread pool:
    n jobs queued behind the blocked worker, then timed from release to the last end."""
    from jobrunner import _native, _options

    empty = _native.JOB_FN(lambda ctx, arg, result: 0)
    release = threading.Event()
    parked = threading.Barrier(2)
    pool.submit(lambda: (parked.wait(), release.wait()))
    parked.wait()
    opts = _options._Options(arg_free=False)
    jobs = []
    for _ in range(n):
        job = _native.JobP()
        _native.fast.jr_submit(pool._ptr, empty, 0, opts.ref, ctypes.byref(job))
        jobs.append(job)
    t0 = time.perf_counter()
    release.set()
    # Jobs from outside the pool start in submission order: with one worker the last
    # to end is the last submitted.
    _native.lib.jr_job_wait(jobs[-1], -1)
    elapsed = time.perf_counter() - t0
    for job in jobs:
        _native.lib.jr_job_wait(job, -1)
        _native.fast.jr_job_free(job)
    return elapsed / n * 1e6


def bare_pool() -> jobrunner.Pool:
    """A one-thread pool made without the thread hooks."""
    from jobrunner import _native

    opts = _native.lib.jr_pool_options_default()
    opts.threads = 1
    raw = _native.PoolP()
    _native.lib.jr_pool_new(ctypes.byref(opts), ctypes.byref(raw))
    bare = jobrunner.Pool.__new__(jobrunner.Pool)
    bare._name = None
    bare._setup(raw, borrowed=False)
    return bare


def bench_hooks(n: int, repeat: int, verbose: bool) -> None:
    print(f"\n2. one C->Python callback on a worker ({n} empty ctypes jobs, 1 thread, "
          f"{repeat} runs each, alternating):")
    kept: list[float] = []
    fresh: list[float] = []
    with jobrunner.Pool(threads=1) as pool:
        bare = bare_pool()
        try:
            for _ in range(repeat):
                kept.append(callback_us(pool, n))
                fresh.append(callback_us(bare, n))
        finally:
            bare.shutdown()
    show("thread state kept (our hooks)", kept, "us", verbose)
    show("no hooks (ctypes makes one per call)", fresh, "us", verbose)


# --- 3. native jobs ---------------------------------------------------------------------------


def native_wall(threads: int, spin: object, m: int) -> float:
    with jobrunner.Pool(threads=threads) as pool:
        t0 = time.perf_counter()
        futures = [pool.submit_native(spin, i) for i in range(m)]
        for fut in futures:
            fut.result()
        return time.perf_counter() - t0


def build_native(tmp: Path, spin_iters: int) -> tuple[ctypes.CDLL, bool] | None:
    cc = shutil.which("cc")
    if cc is None:
        return None
    src = tmp / "native.c"
    src.write_text(NATIVE_C)
    so = tmp / "libnative.so"
    base = [cc, "-O2", "-std=c11", "-shared", "-fPIC", f"-DSPIN={spin_iters}", "-pthread"]
    header = Path(__file__).resolve().parents[3] / "include" / "jobrunner.h"
    lib_path = Path(jobrunner.LIBRARY_PATH).resolve()
    if header.exists():
        cmd = base + ["-DWITH_JOBRUNNER", f"-I{header.parent}", "-o", str(so), str(src),
                      str(lib_path), f"-Wl,-rpath,{lib_path.parent}"]
        if subprocess.run(cmd).returncode == 0:
            return ctypes.CDLL(str(so)), True
    subprocess.run(base + ["-o", str(so), str(src)], check=True)
    return ctypes.CDLL(str(so)), False


def bench_native(m: int, repeat: int, spin_iters: int, verbose: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        built = build_native(Path(tmp), spin_iters)
        if built is None:
            print("\n3. native jobs: skipped (no cc)")
            return
        native, with_c = built
        spin = native.spin
        native.spin_pthreads.restype = ctypes.c_double
        native.spin_pthreads.argtypes = [ctypes.c_int, ctypes.c_long]
        runners: dict[str, Callable[[int], float]] = {
            "jobrunner.Pool (Python)": lambda t: native_wall(t, spin, m),
            "plain pthreads (C)": lambda t: native.spin_pthreads(t, m),
        }
        if with_c:
            native.spin_jobrunner_c.restype = ctypes.c_double
            native.spin_jobrunner_c.argtypes = [ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
            handles = (ctypes.c_void_p * m)()
            runners["jobrunner from C"] = lambda t: native.spin_jobrunner_c(
                t, m, ctypes.addressof(handles)
            )
        one_job_ms = native.spin_pthreads(1, 200) / 200 * 1e3
        print(f"\n3. a CPU-bound native job ({one_job_ms:.3f} ms of work) x{m}, 1 vs 2 threads, "
              f"{repeat} runs each, alternating (ours, pthreads, C; 1 then 2 threads):")
        for run in runners.values():  # warm up
            run(1)
        walls: dict[str, dict[int, list[float]]] = {k: {1: [], 2: []} for k in runners}
        for _ in range(repeat):
            for name, run in runners.items():
                for threads in (1, 2):
                    walls[name][threads].append(run(threads) * 1e3)
        for name in runners:
            one, two = walls[name][1], walls[name][2]
            pairs = [a / b for a, b in zip(one, two)]
            show(f"{name}, 1 thread", one, "ms", verbose)
            show(f"{name}, 2 threads", two, "ms", verbose)
            print(f"  {name}: speedup {median(one) / median(two):.2f}x "
                  f"(median of the per-run ratios {median(pairs):.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--native-jobs", type=int, default=10_000)
    parser.add_argument("--spin", type=int, default=200_000,
                        help="multiply-adds per native job")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--only", choices=["trivial", "hooks", "native"])
    parser.add_argument("--verbose", action="store_true", help="print every run")
    args = parser.parse_args()

    print(f"jobrunner {jobrunner.LIBRARY_VERSION} from {jobrunner.LIBRARY_PATH}; "
          f"Python {sys.version.split()[0]}, switch interval {sys.getswitchinterval()} s")
    if args.only in (None, "trivial"):
        bench_trivial(args.threads, args.jobs, args.repeat, args.verbose)
    if args.only in (None, "hooks"):
        bench_hooks(20_000, args.repeat, args.verbose)
    if args.only in (None, "native"):
        bench_native(args.native_jobs, args.repeat, args.spin, args.verbose)


if __name__ == "__main__":
    main()
