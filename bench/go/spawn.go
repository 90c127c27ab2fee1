package main

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jobrunner/jobrunner/bindings/go"
)

const spawnWorkload = "go: spawn"

// benchSpawn is "go: spawn", issue 8's workload 1 in Go: N trivial jobs (each adds 1 to
// a shared atomic counter; N = 1,000,000, 100,000 quick) started from one goroutine,
// then all awaited; ns per job, from the first start to the end of the wait. The count
// is checked.
//
//   - jobrunner (Go): a Group (errgroup's API on the C group): g.Go per job, g.Wait.
//   - jobrunner (Go, handles): Submit per job, keeping the N *Job handles, then Wait and
//     Close each.
//   - goroutines+WaitGroup: wg.Add(1) and a go statement per job, wg.Wait.
func benchSpawn(cfg config, pool *jobrunner.Pool) {
	n := cfg.size(1_000_000)
	ctx := context.Background()
	var count atomic.Int64
	measure := func(system string, ours bool, run func()) func(bool) {
		return func(measured bool) {
			count.Store(0)
			start := time.Now()
			run()
			elapsed := time.Since(start)
			if got := count.Load(); got != int64(n) {
				fail("%s: %s: %d of %d jobs ran", spawnWorkload, system, got, n)
			}
			if measured {
				sample{Workload: spawnWorkload, System: system, Ours: ours, Unit: "ns/job",
					Value: float64(elapsed.Nanoseconds()) / float64(n), LowerIsBetter: true,
					Detail: thousands(n) + " jobs"}.emit()
			}
		}
	}
	rounds(cfg,
		measure("jobrunner (Go)", true, func() {
			g, _ := pool.NewGroup(ctx)
			for i := 0; i < n; i++ {
				g.Go(func(context.Context) error { count.Add(1); return nil })
			}
			if err := g.Wait(); err != nil {
				fail("%s: group: %v", spawnWorkload, err)
			}
			g.Close()
		}),
		measure("jobrunner (Go, handles)", true, func() {
			jobs := make([]*jobrunner.Job[struct{}], n)
			for i := range jobs {
				j, err := jobrunner.Submit(pool, ctx, func(context.Context) (struct{}, error) {
					count.Add(1)
					return struct{}{}, nil
				})
				if err != nil {
					fail("%s: Submit: %v", spawnWorkload, err)
				}
				jobs[i] = j
			}
			for _, j := range jobs {
				if _, err := j.Wait(ctx); err != nil {
					fail("%s: Wait: %v", spawnWorkload, err)
				}
				j.Close()
			}
		}),
		measure("goroutines+WaitGroup", false, func() {
			var wg sync.WaitGroup
			for i := 0; i < n; i++ {
				wg.Add(1)
				go func() { count.Add(1); wg.Done() }()
			}
			wg.Wait()
		}),
	)
}
