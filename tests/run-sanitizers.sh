#!/usr/bin/env bash
# Runs the Rust tests (the library's unit tests and every tests/*.rs binary) under the
# Rust sanitizers, with the nightly toolchain.
#
# From the repository root:
#     tests/run-sanitizers.sh [address] [thread]      (default: both)
#
# Needs a nightly toolchain with rust-src: std is rebuilt with the sanitizer
# (-Zbuild-std), without which ThreadSanitizer reports false races inside std (its
# atomics and fences are not instrumented) and rustc refuses to mix instrumented and
# uninstrumented crates. When nightly or rust-src is missing it says so, prints the
# command that installs it, and exits 0: `make test` runs on stable and does not run it.
#
# ThreadSanitizer does not understand standalone fences (it ignores them), so the crates
# that use fences are built with a cfg that swaps each for an equivalent TSan sees:
# crossbeam's `crossbeam_sanitize_thread` and our `jobrunner_sanitize_thread`
# (src/job/ptr.rs). The reports that remain are suppressed only with a justification,
# in tests/tsan.supp.
#
# Each sanitizer builds into target/sanitize-NAME (a few minutes each: std, the deps and
# the tests are rebuilt instrumented) and runs with JR_TEST_SLOW=1 (tests/common: small
# stress loops, stretched waits, timing tests skipped). Logs: target/sanitize-NAME.log.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CARGO="${CARGO:-cargo}"
TOOLCHAIN="${SANITIZE_TOOLCHAIN:-nightly}"
cd "$ROOT"

if ! command -v rustup >/dev/null 2>&1 || ! rustup run "$TOOLCHAIN" rustc --version >/dev/null 2>&1; then
    echo "SKIPPED: make sanitize needs the Rust $TOOLCHAIN toolchain, which is not installed: the sanitizers did not run. To install it:"
    echo "    rustup toolchain install $TOOLCHAIN --component rust-src"
    exit 0
fi
if ! rustup component list --toolchain "$TOOLCHAIN" --installed 2>/dev/null | grep -qx 'rust-src'; then
    echo "SKIPPED: make sanitize needs rust-src for the $TOOLCHAIN toolchain (to rebuild std with the sanitizer): the sanitizers did not run. To install it:"
    echo "    rustup component add rust-src --toolchain $TOOLCHAIN"
    exit 0
fi

host=$(rustup run "$TOOLCHAIN" rustc -vV | sed -n 's/^host: //p')
case "$host" in
    x86_64-unknown-linux-gnu | aarch64-unknown-linux-gnu) ;;
    *)
        echo "SKIPPED: make sanitize runs on x86_64 or aarch64 Linux only (this host: $host)."
        exit 0
        ;;
esac

sanitizers=("$@")
[[ ${#sanitizers[@]} -eq 0 ]] && sanitizers=(address thread)

run() {
    local name="$1" flags="$2" env_name="$3" env_value="$4"
    local dir="target/sanitize-$name" log="target/sanitize-$name.log" start
    start=$(date +%s)
    echo "==> $name sanitizer: building into $dir (log $log)"
    # The doc tests are left out: rustdoc does not take -Zbuild-std's target libraries.
    if ! env RUSTFLAGS="$flags" RUSTDOCFLAGS="$flags" "$env_name=$env_value" JR_TEST_SLOW=1 \
        CARGO_PROFILE_RELEASE_DEBUG=1 \
        "$CARGO" "+$TOOLCHAIN" test -Zbuild-std --target "$host" --target-dir "$dir" \
        --release --lib --tests --no-fail-fast -- --test-threads=2 >"$log" 2>&1; then
        grep -E '^(test .* FAILED|SUMMARY:|WARNING: ThreadSanitizer|ERROR: AddressSanitizer|error)' "$log" | sort | uniq -c | head -n 40 || true
        tail -n 40 "$log"
        echo "$name sanitizer: FAILED after $(($(date +%s) - start))s (log $log)" >&2
        return 1
    fi
    local passed
    passed=$(grep -E '^test result: ok' "$log" | sed 's/.*ok\. \([0-9]*\) passed.*/\1/' | awk "{ n += \$1 } END { print n }")
    echo "$name sanitizer: ok, $passed tests passed, no report ($(($(date +%s) - start))s)"
}

status=0
for sanitizer in "${sanitizers[@]}"; do
    case "$sanitizer" in
        address)
            run address "-Zsanitizer=address -Cforce-frame-pointers=yes" \
                ASAN_OPTIONS "detect_leaks=1:detect_stack_use_after_return=1" || status=1
            ;;
        thread)
            run thread "-Zsanitizer=thread -Cforce-frame-pointers=yes --cfg crossbeam_sanitize_thread --cfg jobrunner_sanitize_thread" \
                TSAN_OPTIONS "halt_on_error=1:second_deadlock_stack=1:suppressions=$ROOT/tests/tsan.supp" || status=1
            ;;
        *)
            echo "error: unknown sanitizer '$sanitizer' (address or thread)" >&2
            exit 2
            ;;
    esac
done
exit "$status"
