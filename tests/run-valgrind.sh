#!/usr/bin/env bash
# Runs every Rust integration test binary (tests/*.rs) under valgrind memcheck.
#
# From the repository root:
#     tests/run-valgrind.sh [NAME...]      (default: every tests/*.rs binary)
# Builds the binaries with `cargo test --release --lib --bins --tests --no-run` (as
# `make test-rust` does: nothing new to build after it), finds them in cargo's JSON
# messages (so a new tests/*.rs file is picked up without editing anything), and runs each
# under valgrind with JR_TEST_SLOW=1 (tests/common: small stress loops, stretched waits,
# timing tests skipped), RUST_VALGRIND_JOBS binaries at a time (default 2: valgrind runs a
# process's threads one at a time, so two binaries keep two cores busy). A binary fails
# on a failed test, on any memcheck error, and on a block definitely or indirectly lost;
# memory still reachable at exit (the global pool's threads, thread-locals) and "possibly
# lost" blocks (valgrind's guess on interior pointers) do not fail it. Each binary's
# output is kept in target/valgrind/NAME.log; a failure's log tail is printed.
#
# Environment: CARGO (default cargo), VALGRIND (default valgrind), RUST_VALGRIND_JOBS,
# RUST_VALGRIND_TIMEOUT (seconds one binary may take before it counts as hung, 900).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CARGO="${CARGO:-cargo}"
VALGRIND="${VALGRIND:-valgrind}"
JOBS="${RUST_VALGRIND_JOBS:-2}"
TIMEOUT="${RUST_VALGRIND_TIMEOUT:-900}"
OUT="$ROOT/target/valgrind"

if ! command -v "$VALGRIND" >/dev/null 2>&1; then
    echo "SKIPPED: valgrind not installed, the Rust tests did not run under memcheck. To run them: apt-get install valgrind"
    exit 0
fi

cd "$ROOT"
mkdir -p "$OUT"
# One line per test binary: NAME PATH. `"kind":["test"]` is an integration test (the
# library's unit tests are "lib"); the filter keeps the script free of a JSON parser.
"$CARGO" test --release --lib --bins --tests --no-run --message-format=json >"$OUT/build.json"
grep '"reason":"compiler-artifact"' "$OUT/build.json" | grep '"kind":\["test"\]' |
    sed -n 's/.*"name":"\([^"]*\)","src_path".*"executable":"\([^"]*\)".*/\1 \2/p' |
    sort >"$OUT/binaries"
if [[ $# -gt 0 ]]; then
    wanted=" $* "
    while read -r name path; do
        [[ "$wanted" == *" $name "* ]] && echo "$name $path"
    done <"$OUT/binaries" >"$OUT/binaries.wanted"
    mv "$OUT/binaries.wanted" "$OUT/binaries"
fi
count=$(wc -l <"$OUT/binaries")
if [[ "$count" -eq 0 ]]; then
    echo "error: no integration test binary found in cargo's output ($OUT/build.json)" >&2
    exit 1
fi
expected=$(ls tests/*.rs | wc -l)
if [[ $# -eq 0 && "$count" -ne "$expected" ]]; then
    echo "error: found $count test binaries for $expected tests/*.rs files ($OUT/binaries)" >&2
    exit 1
fi

# Runs one binary (NAME PATH) under valgrind; prints one result line, returns its status.
run_one() {
    local name="$1" path="$2" log="$OUT/$1.log" start status
    start=$(date +%s)
    set +e
    JR_TEST_SLOW=1 timeout "$TIMEOUT" "$VALGRIND" --error-exitcode=99 --leak-check=full \
        --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect \
        --num-callers=40 --fair-sched=yes "$path" --quiet >"$log" 2>&1
    status=$?
    set -e
    local took=$(($(date +%s) - start))
    if [[ $status -eq 0 ]]; then
        echo "ok      $name (${took}s): $(grep -E '^test result:' "$log" | tail -n 1)"
        return 0
    fi
    local why="tests failed"
    [[ $status -eq 99 ]] && why="memcheck errors or leaks"
    [[ $status -eq 124 ]] && why="hung: killed after ${TIMEOUT}s"
    echo "FAILED  $name (${took}s, exit $status: $why), log $log:"
    grep -E '^test .* FAILED|panicked|ERROR SUMMARY: [1-9]|definitely lost: [1-9]|indirectly lost: [1-9]|^==[0-9]+== (Invalid|Conditional|Use of|Mismatched|Syscall)' \
        "$log" | head -n 40 || true
    tail -n 30 "$log"
    return 1
}
export -f run_one
export OUT VALGRIND TIMEOUT

echo "valgrind memcheck: $count test binaries, $JOBS at a time (logs in $OUT)"
start=$(date +%s)
if xargs -P "$JOBS" -L 1 bash -c 'run_one "$0" "$1"' <"$OUT/binaries"; then
    echo "valgrind memcheck: all $count test binaries passed, 0 errors, nothing definitely or indirectly lost ($(($(date +%s) - start))s)"
else
    echo "valgrind memcheck: some test binaries failed (see above)" >&2
    exit 1
fi
