"""The interpreter ends with jobs in flight."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import jobrunner

PACKAGE_PARENT = str(Path(jobrunner.__file__).resolve().parents[1])

#: How long a child may take from its start to its end.
DEADLINE = 60.0

#: What a crash or a hang's dump leaves on stderr.
CRASH_SIGNS = (
    "Fatal Python error",
    "FATAL",
    "Segmentation fault",
    "Aborted",
    "most recent call first",  # a faulthandler dump
    "Exception ignored",
    "Warning",
)


def _no_crash(err: str, allowed: str = "") -> None:
    rest = err.replace(allowed, "") if allowed else err
    for sign in CRASH_SIGNS:
        assert sign not in rest, f"{sign!r} on stderr:\n{err}"



# Regressions: streams and pipelines left running at exit. Before the exit hook stopped
# them, the first aborted every run ("FATAL: exception not rethrown": the producer, on
# the shared pool, which the hook did not know of, went back into Python during
# finalisation), the second hung every run (the feeder waits in a push that its job's
# cancellation does not end, and the hook's Cancel shutdown waits for the feeder), the
# third aborted about one run in three (a stage function running on the shared pool).
EXIT_SCRIPTS = {
    "stream on the shared pool": """
        import itertools, jobrunner
        s = jobrunner.Pool.default().stream(itertools.count, capacity=4)
        assert [s.get(), s.get(), s.get()] == [0, 1, 2]
    """,
    "pipeline and stream on a pool of ours": """
        import itertools, threading, jobrunner
        pool = jobrunner.Pool(threads=2)
        gate = threading.Event()
        p = pool.pipeline(itertools.count(), max_in_flight=8).stage(lambda x: gate.wait(0.05) or x, concurrency=2)
        assert [p.get(), p.get(), p.get()] == [0, 1, 2]
        s = pool.stream(itertools.count, capacity=2)
        assert s.get() == 0
    """,
    "pipeline on the shared pool": """
        import itertools, threading, jobrunner
        gate = threading.Event()
        p = jobrunner.Pool.default().pipeline(itertools.count(), max_in_flight=8).stage(
            lambda x: gate.wait(0.05) or x, concurrency=2)
        assert [p.get(), p.get(), p.get()] == [0, 1, 2]
    """,
}


@pytest.mark.parametrize("name", list(EXIT_SCRIPTS))
def test_exit_with_a_stream_or_pipeline_running(name: str) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = PACKAGE_PARENT + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("JOBRUNNER_LIBRARY", str(jobrunner.LIBRARY_PATH))
    env["JOBRUNNER_THREADS"] = "2"
    for _ in range(3):
        try:
            proc = subprocess.run(
                [sys.executable, "-c", textwrap.dedent(EXIT_SCRIPTS[name])],
                env=env, capture_output=True, text=True, timeout=DEADLINE,
            )
        except subprocess.TimeoutExpired as exc:
            pytest.fail(f"hung at exit: {exc.stderr!r}")
        assert proc.returncode == 0, proc.stderr
        _no_crash(proc.stderr)
