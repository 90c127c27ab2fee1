#!/usr/bin/env bash
# Runs the Python binding's tests against the freshly built library.
#
# From the repository root, after `cargo build --release`:
#     bindings/python/run-tests.sh [pytest args...]
# Makes (or reuses) a venv in target/py-venv, installs pytest there if missing, and runs
# bindings/python/tests with JOBRUNNER_LIBRARY=target/release/libjobrunner.so and the
# package imported from the source tree (no install needed).
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
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests "$@"
