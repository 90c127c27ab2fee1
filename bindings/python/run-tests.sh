#!/usr/bin/env bash
# Runs the Python binding's tests against the freshly built library.
#
# From the repository root, after `cargo build --release`:
#     bindings/python/run-tests.sh [pytest args...]
# Makes (or reuses) a venv in target/py-venv, installs pytest there if missing, and runs
# bindings/python/tests with JOBRUNNER_LIBRARY=target/release/libjobrunner.so and the
# package imported from the source tree (no install needed). The suite runs twice: as
# is, then under Python's development mode with every warning an error (see below).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LIB="$ROOT/target/release/libjobrunner.so"
VENV="$ROOT/target/py-venv"
PYTHON="${PYTHON:-python3}"

if [[ ! -f "$LIB" ]]; then
    echo "run-tests.sh: $LIB not found: run \`cargo build --release\` first" >&2
    exit 1
fi
if [[ ! -x "$VENV/bin/python" ]]; then
    "$PYTHON" -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c 'import pytest' 2>/dev/null; then
    "$VENV/bin/python" -m pip install --quiet pytest
fi

cd "$ROOT/bindings/python"
export JOBRUNNER_LIBRARY="$LIB"
export PYTHONPATH="$ROOT/bindings/python${PYTHONPATH:+:$PYTHONPATH}"
# A test that hangs dumps every thread's stack after this many seconds (then goes on).
FAULTHANDLER_TIMEOUT=300

# PY_DEV_MODE=only: just the second run below; PY_DEV_MODE=0: just the first.
if [[ "${PY_DEV_MODE:-1}" != only ]]; then
    echo "==> pytest (plain)"
    "$VENV/bin/python" -m pytest -q -p no:cacheprovider -o faulthandler_timeout=$FAULTHANDLER_TIMEOUT \
        tests "$@"
fi
if [[ "${PY_DEV_MODE:-1}" != 0 ]]; then
    # The same suite in Python's development mode, which changes behaviour (asyncio debug
    # mode, debug memory allocator hooks, warnings shown), with faulthandler, and with
    # every warning an error, ResourceWarning included. The variables, not -X options,
    # so the child interpreters of test_process.py, test_exit.py and test_examples.py
    # run the same way.
    echo "==> pytest under python -X dev -X faulthandler, PYTHONASYNCIODEBUG=1, -W error"
    PYTHONDEVMODE=1 PYTHONFAULTHANDLER=1 PYTHONASYNCIODEBUG=1 PYTHONWARNINGS=error \
        "$VENV/bin/python" -X dev -X faulthandler -W error -m pytest -q -p no:cacheprovider \
        -o faulthandler_timeout=$FAULTHANDLER_TIMEOUT -W error tests "$@"
fi
