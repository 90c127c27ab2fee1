// Command bench is the Go part of `make bench` (issue 8): Go jobs through the jobrunner
// binding against what a Go programmer writes without it (goroutines with a
// sync.WaitGroup, golang.org/x/sync's errgroup and semaphore), on the workloads that
// concern Go. It follows bench/PROTOCOL.md: one JSON line per measured run on stdout,
// everything else on stderr; BENCH_QUICK, BENCH_RUNS, BENCH_THREADS and BENCH_ONLY.
//
// GOMAXPROCS and the jobrunner pool's thread count are both BENCH_THREADS (default 2),
// so that Go code and the pool get the same number of threads to run on.
//
// The workloads (sizes are the full run's; BENCH_QUICK=1 divides them by 10):
//
//   - "go: spawn" (spawn.go): 1,000,000 trivial Go jobs, all awaited, ns/job.
//   - "go: fan-out" and "go: fan-out efficiency" (fanout.go): 20,000 jobs of ~20 µs of
//     CPU each, their results gathered; ms, and the parallel efficiency in %.
//   - "go: native C jobs" (fanout.go): the same 20,000 jobs as a C function, run by the
//     pool without entering Go, against goroutines each calling it through cgo; ms.
//   - "go: semaphore-limited" (semaphore.go): 10,000 jobs of ~50 µs through a semaphore
//     of 1 interleaved with 10,000 unconstrained ones; how much later the unconstrained
//     ones finish than when they run alone.
//
// Every run checks its result (a count, or every job's output against the value the
// work must produce) and the program exits 1 on a wrong one.
//
// Build and run it with bench/go/run.sh, which links target/release/libjobrunner.a.
package main

import (
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/jobrunner/jobrunner/bindings/go"
)

func main() {
	cfg, err := configFromEnv()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/go:", err)
		os.Exit(2)
	}
	runtime.GOMAXPROCS(cfg.threads)
	pool, err := jobrunner.NewPool(jobrunner.WithThreads(cfg.threads))
	if err != nil {
		fail("NewPool: %v", err)
	}
	defer pool.Close()

	w := calibrate()
	fmt.Fprintf(os.Stderr, "bench/go: %d threads (GOMAXPROCS and pool), quick=%v, %d runs; "+
		"work: %d Go rounds = 20 µs, %d Go rounds = 50 µs, %d C rounds = 20 µs\n",
		cfg.threads, cfg.quick, cfg.runs, w.go20, w.go50, w.c20)

	start := time.Now()
	if cfg.wants(spawnWorkload) {
		benchSpawn(cfg, pool)
	}
	if cfg.wants(fanOutWorkload) || cfg.wants(efficiencyWorkload) {
		benchFanOut(cfg, pool, w.go20)
	}
	if cfg.wants(nativeWorkload) {
		benchNative(cfg, pool, w.c20)
	}
	if cfg.wants(semaphoreWorkload) {
		benchSemaphore(cfg, pool, w.go50)
	}
	fmt.Fprintf(os.Stderr, "bench/go: done in %.1f s\n", time.Since(start).Seconds())
}

// fail reports a wrong result (or a failed call) on stderr and exits 1: a fast wrong
// system must not produce a figure.
func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench/go: FAILED: "+format+"\n", args...)
	os.Exit(1)
}
