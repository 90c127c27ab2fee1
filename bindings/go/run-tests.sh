#!/bin/sh
# Checks the Go binding: go vet, then go test -race (static link, the default), then
# a GC-stress run (GOGC=1, GODEBUG=cgocheck=1), then the tests against the shared
# library (build tag jobrunner_shared), and builds the Go examples.
# Run from anywhere after `cargo build --release` at the repository root.
set -eu
cd "$(dirname "$0")"
root=$(cd ../.. && pwd)

if ! command -v go >/dev/null 2>&1; then
  echo "error: 'go' not found; the Go binding needs Go 1.21 or newer (https://go.dev/dl/)" >&2
  exit 1
fi
if [ ! -f "$root/target/release/libjobrunner.a" ]; then
  echo "error: $root/target/release/libjobrunner.a not built. Run:" >&2
  echo "    cargo build --release" >&2
  exit 1
fi

step() { printf '\n==> %s\n' "$*"; "$@"; }
. ./cgo-cache-key.sh

echo "==> gofmt -l ."
unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
  echo "error: not gofmt'ed: $unformatted (run: gofmt -w bindings/go)" >&2
  exit 1
fi
step go vet ./...
step go test -race -count=1 ./...
step env GOGC=1 GODEBUG=cgocheck=1 go test -short -count=1 ./...
# The shared-library build needs the soname link that `make lib` makes.
if [ -e "$root/target/release/libjobrunner.so.0" ]; then
  step go test -short -count=1 -tags jobrunner_shared ./...
else
  echo "SKIPPED: the jobrunner_shared tests (no target/release/libjobrunner.so.0: run make lib)"
fi
if [ -d "$root/examples/go" ]; then
  (cd "$root/examples/go" && step go vet ./... && step go build -o /dev/null ./...)
fi
echo "bindings/go: ok"
