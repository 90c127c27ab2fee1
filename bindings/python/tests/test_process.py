"""Whole-process behaviour, each in a subprocess: interpreter exit with jobs queued and
running, Ctrl-C while waiting, a missing library; and no leaks over many jobs."""

from __future__ import annotations

import gc
import os
import resource
import shutil
import subprocess
import tracemalloc
from pathlib import Path

import pytest

import jobrunner
from jobrunner import _jobs
from conftest import TIMEOUT
from conftest import run_child as _run

def test_exit_right_after_the_default_pool_starts_its_workers() -> None:
    # Workers of the global pool that start (or take their first job) after the
    # interpreter began finalising must not run the binding's thread hook: CPython ends
    # a thread that enters a finalising interpreter with pthread_exit, and its forced
    # unwind through the library aborts the process ("FATAL: exception not rethrown").
    # With 8 workers starting as the script ends, every run hit it before the binding
    # removed its hooks at exit.
    for _ in range(3):
        proc = _run(
            """
            import jobrunner
            pool = jobrunner.Pool.default()
            assert pool.submit(sum, [1, 2]).result() == 3
            """,
            env={"JOBRUNNER_THREADS": "8"},
        )
        assert proc.returncode == 0, proc.stderr


def test_futures_keep_their_attributes_inline() -> None:
    """In a fresh interpreter (the first futures made decide it), a burst of submits
    leaves no future with a dict of its own: its fields stay in the inline slots
    (see _jobs._prime_future_attributes)."""
    proc = _run(
        """
        import gc, jobrunner
        with jobrunner.Pool(threads=2) as pool:
            futs = [pool.submit(abs, -i) for i in range(2000)]
            assert [f.result() for f in futs] == list(range(2000))
            with_dict = sum(
                any(type(r) is dict for r in gc.get_referents(f)) for f in futs
            )
        print("with a dict:", with_dict)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert "with a dict: 0" in proc.stdout, proc.stdout


def test_exit_with_jobs_queued_and_running() -> None:
    proc = _run(
        """
        import threading, jobrunner
        started = threading.Barrier(3)
        def cooperative():
            started.wait()
            ctx = jobrunner.current()
            while not ctx.cancelled:
                ctx.token.wait(0.01)
        def forever_but_polite():
            ctx = jobrunner.current()
            while not ctx.cancelled:
                ctx.token.wait(0.01)
        pool = jobrunner.Pool(threads=2)
        running = [pool.submit(cooperative) for _ in range(2)]
        started.wait()  # both workers are busy: what follows stays queued
        queued = [pool.submit(print, "must not run") for _ in range(1000)]
        d = jobrunner.Pool.default()
        d_jobs = [d.submit(forever_but_polite) for _ in range(4)]
        ticker = pool.submit_every(0.001, int)
        print("exiting")
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "exiting"
    assert "Traceback" not in proc.stderr and "Fatal" not in proc.stderr


def test_exit_while_jobs_run_python_code_hard() -> None:
    proc = _run(
        """
        import jobrunner
        pool = jobrunner.Pool(threads=2)
        def spin(n):
            return sum(range(n))
        futs = [pool.submit(spin, 10_000) for _ in range(5000)]
        futs[10].result()
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


def test_keyboard_interrupt_interrupts_a_wait() -> None:
    proc = _run(
        """
        import os, signal, threading, jobrunner
        hit = threading.Event()
        def on_sigint(signum, frame):
            if not hit.is_set():
                hit.set()
                raise KeyboardInterrupt
        signal.signal(signal.SIGINT, on_sigint)
        def nag():  # keeps sending SIGINT until the main thread got one
            while not hit.wait(0.02):
                os.kill(os.getpid(), signal.SIGINT)
        release = threading.Event()
        started = threading.Event()
        pool = jobrunner.Pool(threads=1)
        fut = pool.submit(lambda: (started.set(), release.wait()))
        started.wait()
        try:
            threading.Thread(target=nag).start()
            fut.result()
        except KeyboardInterrupt:
            print("interrupted")
        hit.clear()
        token = jobrunner.CancelToken()
        try:
            threading.Thread(target=nag).start()
            token.wait()
        except KeyboardInterrupt:
            print("interrupted token wait")
        release.set()
        pool.shutdown()
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:2] == ["interrupted", "interrupted token wait"]


def test_missing_library_gives_a_clear_import_error() -> None:
    proc = _run("import jobrunner", env={"JOBRUNNER_LIBRARY": "/nonexistent/libjobrunner.so"})
    assert proc.returncode != 0
    assert "ImportError" in proc.stderr
    assert "/nonexistent/libjobrunner.so" in proc.stderr
    assert "pip install ./bindings/python" in proc.stderr
    assert "JOBRUNNER_LIBRARY" in proc.stderr


def test_wrong_major_version_gives_a_clear_import_error(tmp_path: Path) -> None:
    cc = shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    src = tmp_path / "fake.c"
    src.write_text('const char *jr_version(void) { return "9.0.0"; }\n')
    fake = tmp_path / "libjobrunner.so"
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(fake), str(src)], check=True)
    proc = _run("import jobrunner", env={"JOBRUNNER_LIBRARY": str(fake)})
    assert proc.returncode != 0
    assert "ImportError" in proc.stderr and "9.0.0" in proc.stderr
    assert "needs 0.x" in proc.stderr


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_no_leak_over_many_jobs() -> None:
    n = int(os.environ.get("JOBRUNNER_LEAK_JOBS", "100000"))
    with jobrunner.Pool(threads=2) as pool:
        def batch(count: int, chunk: int = 10_000) -> None:
            for start in range(0, count, chunk):
                futs = [pool.submit(divmod, i, 7) for i in range(start, start + chunk)]
                for f in futs:
                    f.result(TIMEOUT)

        # Warm up: allocator pools, and the tasks dict's table (which keeps the size of
        # the most jobs in flight at once, here one chunk).
        batch(10_000)
        gc.collect()
        base_rss = _rss_kib()
        batch(n)  # RSS: measured without tracemalloc (whose own traces cost RSS)
        gc.collect()
        rss = _rss_kib()
        tracemalloc.start()
        base_traced = tracemalloc.get_traced_memory()[0]
        batch(n // 2)
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        assert not _jobs._tasks and not _jobs._plain, "every task left the tables"
    # Anything kept per job (the smallest object is 16+ bytes, a future ~1 KiB) would
    # leave megabytes; allow 10 bytes per job of noise (dict tables, interned ints).
    assert traced - base_traced < 5 * n, f"{traced - base_traced} bytes still traced"
    assert rss - base_rss < 16 * 1024, f"RSS grew by {rss - base_rss} KiB"
    # The callbacks C may still call are module-level and alive for good.
    assert _jobs._JOB_FN and _jobs._ARG_FREE and _jobs._THREAD_START and _jobs._THREAD_STOP


