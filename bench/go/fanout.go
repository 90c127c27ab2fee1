package main

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"
	"unsafe"

	"github.com/jobrunner/jobrunner/bindings/go"
	"golang.org/x/sync/errgroup"
)

const (
	fanOutWorkload     = "go: fan-out"
	efficiencyWorkload = "go: fan-out efficiency"
	nativeWorkload     = "go: native C jobs"
)

// benchFanOut is "go: fan-out" and "go: fan-out efficiency", issue 8's workload 3 in
// Go: N jobs (20,000, 2,000 quick), each running the Go spin for ~20 µs and storing its
// output in its own slot of a results slice, started from one goroutine and all
// awaited. "go: fan-out" is the wall time in ms from the first start to the end of the
// wait; "go: fan-out efficiency" is the sequential time (the same N spins in a loop on
// one goroutine, run first in every round) / (threads × that wall time), in %. Every
// slot is checked against the spin's output.
//
//   - jobrunner (Go): a Group, g.Go per job, g.Wait.
//   - goroutines+WaitGroup: a goroutine per job, wg.Wait.
//   - errgroup.SetLimit(threads): an errgroup limited to BENCH_THREADS goroutines at
//     once (Go blocks at the limit), g.Wait.
func benchFanOut(cfg config, pool *jobrunner.Pool, iters uint64) {
	n := cfg.size(20_000)
	want := spin(iters)
	results := make([]uint64, n)
	ctx := context.Background()
	var sequential time.Duration
	sequentialRun := func(bool) {
		clear(results)
		start := time.Now()
		for i := range results {
			results[i] = spin(iters)
		}
		sequential = time.Since(start)
		checkSlots(fanOutWorkload, "sequential", results, want)
		fmt.Fprintf(os.Stderr, "  %-24s %-46s %12.3f ms\n", fanOutWorkload, "(sequential, one goroutine)",
			ms(sequential))
	}
	measure := func(system string, ours bool, run func()) func(bool) {
		return func(measured bool) {
			clear(results)
			start := time.Now()
			run()
			elapsed := time.Since(start)
			checkSlots(fanOutWorkload, system, results, want)
			if !measured {
				return
			}
			detail := fmt.Sprintf("%s jobs of %s spins (~20 µs)", thousands(n), thousands(int(iters)))
			if cfg.wants(fanOutWorkload) {
				sample{Workload: fanOutWorkload, System: system, Ours: ours, Unit: "ms",
					Value: ms(elapsed), LowerIsBetter: true, Detail: detail}.emit()
			}
			if cfg.wants(efficiencyWorkload) {
				eff := 100 * float64(sequential) / (float64(cfg.threads) * float64(elapsed))
				sample{Workload: efficiencyWorkload, System: system, Ours: ours, Unit: "%",
					Value: eff, LowerIsBetter: false,
					Detail: fmt.Sprintf("sequential %.1f ms on %d threads", ms(sequential), cfg.threads)}.emit()
			}
		}
	}
	rounds(cfg,
		sequentialRun,
		measure("jobrunner (Go)", true, func() {
			g, _ := pool.NewGroup(ctx)
			for i := range results {
				i := i
				g.Go(func(context.Context) error { results[i] = spin(iters); return nil })
			}
			if err := g.Wait(); err != nil {
				fail("%s: group: %v", fanOutWorkload, err)
			}
			g.Close()
		}),
		measure("goroutines+WaitGroup", false, func() {
			var wg sync.WaitGroup
			for i := range results {
				wg.Add(1)
				go func(i int) { results[i] = spin(iters); wg.Done() }(i)
			}
			wg.Wait()
		}),
		measure(fmt.Sprintf("errgroup.SetLimit(%d)", cfg.threads), false, func() {
			var g errgroup.Group
			g.SetLimit(cfg.threads)
			for i := range results {
				i := i
				g.Go(func() error { results[i] = spin(iters); return nil })
			}
			if err := g.Wait(); err != nil {
				fail("%s: errgroup: %v", fanOutWorkload, err)
			}
		}),
	)
}

// benchNative is "go: native C jobs": the fan-out's N jobs (20,000, 2,000 quick) with
// the work in C: each runs the C spin for ~20 µs on its own slot of a C array (which
// holds the rounds to run and receives the output); ms from the first start to the end
// of the wait. Every slot is checked against the spin's output.
//
//   - jobrunner (Go, native C job): SubmitNative of the C function (a jr_job_fn) per
//     job, keeping the N *NativeJob handles, then Wait and Close each: the pool runs the
//     C function without entering Go.
//   - goroutines + cgo call: a goroutine per job calling the same C function through
//     cgo, wg.Wait.
func benchNative(cfg config, pool *jobrunner.Pool, iters uint64) {
	n := cfg.size(20_000)
	want := spin(iters)
	slots := cSlots(n)
	defer freeSlots(slots)
	fn := spinJob()
	ctx := context.Background()
	measure := func(system string, ours bool, run func()) func(bool) {
		return func(measured bool) {
			for i := range slots {
				slots[i] = iters
			}
			start := time.Now()
			run()
			elapsed := time.Since(start)
			checkSlots(nativeWorkload, system, slots, want)
			if measured {
				sample{Workload: nativeWorkload, System: system, Ours: ours, Unit: "ms",
					Value: ms(elapsed), LowerIsBetter: true,
					Detail: fmt.Sprintf("%s C jobs of %s spins (~20 µs)", thousands(n), thousands(int(iters)))}.emit()
			}
		}
	}
	rounds(cfg,
		measure("jobrunner (Go, native C job)", true, func() {
			jobs := make([]*jobrunner.NativeJob, n)
			for i := range slots {
				j, err := jobrunner.SubmitNative(pool, ctx, fn, unsafe.Pointer(&slots[i]))
				if err != nil {
					fail("%s: SubmitNative: %v", nativeWorkload, err)
				}
				jobs[i] = j
			}
			for _, j := range jobs {
				if _, err := j.Wait(ctx); err != nil {
					fail("%s: Wait: %v", nativeWorkload, err)
				}
				j.Close()
			}
		}),
		measure("goroutines + cgo call", false, func() {
			var wg sync.WaitGroup
			for i := range slots {
				wg.Add(1)
				go func(slot *uint64) { spinC(slot); wg.Done() }(&slots[i])
			}
			wg.Wait()
		}),
	)
}

// checkSlots fails the bench unless every job stored the spin's output.
func checkSlots(workload, system string, slots []uint64, want uint64) {
	for i, got := range slots {
		if got != want {
			fail("%s: %s: job %d gave %#x, want %#x", workload, system, i, got, want)
		}
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
