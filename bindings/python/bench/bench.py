"""Benchmark: jobrunner.Pool against ThreadPoolExecutor, in the same run.

1. submit + result of N trivial Python callables (submit them all, then take every
   result), per job, for both executors with the same number of threads;
2. a CPU-bound native C job (built here with cc) submitted M times with submit_native,
   wall time on 1 thread and on 2 threads.

Run from the repository root after `cargo build --release`:

    JOBRUNNER_LIBRARY=target/release/libjobrunner.so PYTHONPATH=bindings/python \\
        python3 bindings/python/bench/bench.py [--jobs 100000] [--threads 2] [--repeat 3]

(or with the package installed by `pip install ./bindings/python`, no variables).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import ctypes
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import jobrunner

SPIN_C = r"""
#include <stdint.h>
typedef struct jr_ctx jr_ctx;
/* About 100 us of integer work, nothing shared. */
int32_t spin(jr_ctx *ctx, void *arg, void **result) {
    (void)ctx;
    uint64_t x = (uint64_t)(uintptr_t)arg + 1;
    for (int i = 0; i < 200000; i++) x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    *result = (void *)(uintptr_t)(x & 0xffff);
    return 0;
}
"""


def per_job_us(executor: concurrent.futures.Executor, n: int) -> float:
    """Submit n trivial callables, then take every result: µs per job."""
    t0 = time.perf_counter()
    futures = [executor.submit(int) for _ in range(n)]
    for fut in futures:
        fut.result()
    return (time.perf_counter() - t0) / n * 1e6


def best(fn: Callable[[], float], repeat: int) -> tuple[float, float]:
    """(min, median) of repeat runs."""
    runs = [fn() for _ in range(repeat)]
    return min(runs), statistics.median(runs)


def native_wall(threads: int, spin: object, m: int) -> float:
    with jobrunner.Pool(threads=threads) as pool:
        t0 = time.perf_counter()
        futures = [pool.submit_native(spin, i) for i in range(m)]
        for fut in futures:
            fut.result()
        return time.perf_counter() - t0


def callback_us(pool: jobrunner.Pool, threads: int, n: int) -> float:
    """µs per C->Python callback (an empty ctypes job function) on ``pool``'s workers:
    n jobs queued behind blocked workers, then timed from release to the last end."""
    import threading

    from jobrunner import _native, _options

    empty = _native.JOB_FN(lambda ctx, arg, result: 0)
    release = threading.Event()
    parked = threading.Barrier(threads + 1)
    for _ in range(threads):
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
    while (st := pool.stats()).queued or st.running:
        time.sleep(0.0005)
    elapsed = time.perf_counter() - t0
    for job in jobs:
        _native.lib.jr_job_wait(job, -1)
        _native.fast.jr_job_free(job)
    return elapsed / n * 1e6


def hook_effect(n: int) -> None:
    """The same empty callback on a pool whose workers keep a thread state (ours) and on
    one made without the thread hooks (ctypes then makes a thread state per call)."""
    from jobrunner import _native

    with jobrunner.Pool(threads=1) as pool:
        kept = min(callback_us(pool, 1, n) for _ in range(3))
    opts = _native.lib.jr_pool_options_default()
    opts.threads = 1
    raw = _native.PoolP()
    _native.lib.jr_pool_new(ctypes.byref(opts), ctypes.byref(raw))
    bare = jobrunner.Pool.__new__(jobrunner.Pool)
    bare._name = None
    bare._setup(raw, borrowed=False)
    try:
        fresh = min(callback_us(bare, 1, n) for _ in range(3))
    finally:
        bare.shutdown()
    print(f"C->Python callback on a worker, {n} empty jobs (best of 3):")
    print(f"  thread state kept (on_thread_start hook)  {kept:6.2f} us")
    print(f"  no hook (ctypes makes one per call)       {fresh:6.2f} us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--native-jobs", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    print(f"jobrunner {jobrunner.LIBRARY_VERSION} from {jobrunner.LIBRARY_PATH}")
    print(f"submit+result of {args.jobs} trivial callables, {args.threads} threads "
          f"(min / median of {args.repeat}):")
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.threads) as tpe:
        per_job_us(tpe, 1000)
        tpe_min, tpe_med = best(lambda: per_job_us(tpe, args.jobs), args.repeat)
    with jobrunner.Pool(threads=args.threads) as pool:
        per_job_us(pool, 1000)
        jr_min, jr_med = best(lambda: per_job_us(pool, args.jobs), args.repeat)
    print(f"  ThreadPoolExecutor  {tpe_min:7.2f} / {tpe_med:7.2f} us per job")
    print(f"  jobrunner.Pool      {jr_min:7.2f} / {jr_med:7.2f} us per job")
    print(f"  speedup             {tpe_min / jr_min:7.2f}x / {tpe_med / jr_med:.2f}x")

    hook_effect(20_000)

    cc = shutil.which("cc")
    if cc is None:
        print("native: skipped (no cc)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "spin.c"
        src.write_text(SPIN_C)
        so = Path(tmp) / "libspin.so"
        subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(so), str(src)], check=True)
        spin = ctypes.CDLL(str(so)).spin
        native_wall(1, spin, 200)  # warm up
        one = min(native_wall(1, spin, args.native_jobs) for _ in range(args.repeat))
        two = min(native_wall(2, spin, args.native_jobs) for _ in range(args.repeat))
    print(f"native CPU-bound job x{args.native_jobs} (submit_native, no GIL), best of {args.repeat}:")
    print(f"  1 thread  {one * 1e3:8.1f} ms")
    print(f"  2 threads {two * 1e3:8.1f} ms")
    print(f"  speedup   {one / two:8.2f}x")


if __name__ == "__main__":
    main()
