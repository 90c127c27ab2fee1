#!/bin/sh
# Builds the Go bench (bench/go, a main package following bench/PROTOCOL.md) against
# target/release/libjobrunner.a and runs it: JSON lines on stdout, the rest on stderr.
# BENCH_QUICK, BENCH_RUNS, BENCH_THREADS and BENCH_ONLY pass through. Run from anywhere
# after `make lib` (or `cargo build --release`) at the repository root.
set -eu
cd "$(dirname "$0")"
root=$(cd ../.. && pwd)

if ! command -v go >/dev/null 2>&1; then
  echo "error: 'go' not found; the Go bench needs Go 1.21 or newer (https://go.dev/dl/)" >&2
  exit 1
fi
if [ ! -f "$root/target/release/libjobrunner.a" ]; then
  echo "error: $root/target/release/libjobrunner.a not built. Run: make lib" >&2
  exit 1
fi

# The header's checksum in CGO_CFLAGS, so that a changed header is not built from
# Go's cache (see bindings/go/cgo-cache-key.sh).
. "$root/bindings/go/cgo-cache-key.sh"
bin="$root/target/bench/go-bench"
mkdir -p "$(dirname "$bin")"
go build -o "$bin" .
exec "$bin"
