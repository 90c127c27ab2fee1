"""Shared fixtures: a fresh two-thread pool per test, shut down (cancelling) after it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import jobrunner

#: How long any single wait in a test may take before the test is declared hung.
TIMEOUT = 20.0


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
