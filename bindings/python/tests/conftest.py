"""Shared fixtures: a fresh two-thread pool per test, shut down (cancelling) after it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import jobrunner

#: How long any single wait in a test may take before the test is declared hung.
TIMEOUT = 20.0

#: The directory holding this ``jobrunner`` package, for child interpreters.
PACKAGE_PARENT = str(Path(jobrunner.__file__).resolve().parents[1])


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a child interpreter that imports this ``jobrunner`` and loads
    the same library, plus ``extra``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = PACKAGE_PARENT + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("JOBRUNNER_LIBRARY", str(jobrunner.LIBRARY_PATH))
    if extra:
        env.update(extra)
    return env


def run_child(
    code: str, env: dict[str, str] | None = None, timeout: float = 60.0, **kw: object
) -> subprocess.CompletedProcess[str]:
    """Runs ``code`` (dedented) in a child interpreter (:func:`child_env` plus ``env``)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=child_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def pool() -> Iterator[jobrunner.Pool]:
    p = jobrunner.Pool(threads=2, name="pytest")
    try:
        yield p
    finally:
        p.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def pool1() -> Iterator[jobrunner.Pool]:
    p = jobrunner.Pool(threads=1, name="pytest1")
    try:
        yield p
    finally:
        p.shutdown(wait=True, cancel_futures=True)
