"""Every script of examples/python runs, exits 0 and prints its checked lines."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import jobrunner

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "python"
PACKAGE_PARENT = str(Path(jobrunner.__file__).resolve().parents[1])

#: Lines (substrings) each example must print.
EXPECT = {
    "worker_pool": ["results: 100 taken, sum of squares 0..99 = 328350", "worker_pool: ok"],
    "fanout_group": [
        "fan-in: 20 items received; item 0 came last, after the other 19",
        'first error: code 42, "item 3: bad response"',
        "fail-fast: 1 failed, 9 cancelled (3 stopped while running, 6 never started)",
        "fanout_group: ok",
    ],
    "rate_limited_fanout": [
        "progress: 200/200 calls ended",
        "accounting checked: ok + cancelled = 200, never more than 8 at once, every permit returned",
    ],
    "deadline": ["step under a passed deadline: Cancelled", "deadline: ok"],
    "graceful_shutdown": [
        "drained: 8 of 8 requests completed; cancelled: 4 of 4 handlers stopped",
        "graceful_shutdown: ok",
    ],
    "cleanup_daemon": [
        "sweep 0: removed 50 expired sessions",
        "cleanup_daemon: the periodic job stopped with the pool",
    ],
    "asyncio_interop": ["asyncio_interop: ok"],
    "log_ingest": [
        "log_ingest: 20000 lines; parse (4 at once) and filter (2 at once), both ordered; "
        "batches of 1000 records or every 100 ms",
        "kept 18200 of 20000 lines, in order, the same as a sequential filter",
        "flushes: by size, by the 100 ms timer, and one at the end",
        "interrupted run: SIGINT after 3 flushes; stopped cleanly, the generator cancelled, "
        "nothing leaked",
        "log_ingest: ok",
    ],
}


@pytest.mark.parametrize("name", sorted(EXPECT))
def test_example(name: str) -> None:
    script = EXAMPLES / f"{name}.py"
    if not script.exists():
        pytest.skip(f"{script} not found")
    env = dict(os.environ)
    env["PYTHONPATH"] = PACKAGE_PARENT + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("JOBRUNNER_LIBRARY", str(jobrunner.LIBRARY_PATH))
    proc = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for line in EXPECT[name]:
        assert line in proc.stdout, f"{name}: missing {line!r} in:\n{proc.stdout}"


def test_every_example_is_tested() -> None:
    if not EXAMPLES.exists():
        pytest.skip("no examples/python")
    assert {p.stem for p in EXAMPLES.glob("*.py")} == set(EXPECT)
