#!/bin/sh
# Runs the benchmarks of bench_test.go ROUNDS times (default 7), each round one
# `go test -bench` run of all five with 100,000 jobs each, and prints per benchmark the
# median ns/job and cpu-ns/job over the rounds (and the least ns/job, the least loaded
# round), then the ratios the issue asks about:
# Go jobs through jobrunner vs goroutines + WaitGroup, native C jobs vs goroutines
# calling C, each as the median of the per-round ratios (both sides from the same run).
# The rounds alternate the benchmarks in time, so that a shared machine's load falls on
# all of them alike. Run from anywhere after `cargo build --release` at the root.
set -eu
cd "$(dirname "$0")"
root=$(cd ../.. && pwd)
. ./cgo-cache-key.sh
rounds=${1:-7}
bin=$(mktemp -d)/bench.test
trap 'rm -rf "$(dirname "$bin")"' EXIT
go test -c -o "$bin" .
i=0
while [ "$i" -lt "$rounds" ]; do
  i=$((i + 1))
  "$bin" -test.run XXX -test.bench . -test.benchtime 100000x |
    awk -v r="$i" '/^Benchmark/ { sub(/-[0-9]+$/, "", $1); print r, $1, $3, $5 }'
done | awk '
  function sorted(list, a,   n, i, j, t) {
    n = split(list, a, " ")
    for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
    return n
  }
  function median(list,   n, a) { n = sorted(list, a); return n % 2 ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2 }
  function least(list,   a) { sorted(list, a); return a[1] }
  { wall[$2] = wall[$2] " " $3; cpu[$2] = cpu[$2] " " $4; v[$1, $2] = $3; c[$1, $2] = $4
    if ($1 > rounds) rounds = $1; if (!($2 in seen)) { seen[$2] = 1; order[++n] = $2 } }
  function ratio(a, b,   r, wl, cl) {
    for (r = 1; r <= rounds; r++) if ((r, a) in v && (r, b) in v) { wl = wl " " v[r, a] / v[r, b]; cl = cl " " c[r, a] / c[r, b] }
    printf "%-36s / %-28s  wall %5.2fx  cpu %5.2fx\n", a, b, median(wl), median(cl)
  }
  END {
    printf "%-30s %10s %12s %10s   (medians of %d rounds; min: the least loaded round)\n", "benchmark", "ns/job", "cpu-ns/job", "min ns", rounds
    for (i = 1; i <= n; i++) printf "%-30s %10.0f %12.0f %10.0f\n", order[i], median(wall[order[i]]), median(cpu[order[i]]), least(wall[order[i]])
    ratio("BenchmarkGoJobsSubmit", "BenchmarkGoroutinesWaitGroup")
    ratio("BenchmarkGoJobsSubmitCancellableCtx", "BenchmarkGoroutinesWaitGroup")
    ratio("BenchmarkGoJobsGroup", "BenchmarkGoroutinesWaitGroup")
    ratio("BenchmarkNativeJobs", "BenchmarkGoroutinesCallingC")
  }'
