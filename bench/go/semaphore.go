package main

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jobrunner/jobrunner/bindings/go"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"
)

const semaphoreWorkload = "go: semaphore-limited"

// benchSemaphore is "go: semaphore-limited", issue 8's workload 5 in Go: N constrained
// jobs (10,000, 1,000 quick) that each hold one permit of a semaphore of 1 while they
// run the Go spin for ~50 µs, and N unconstrained jobs of the same work, started from
// one goroutine interleaved (a constrained one, an unconstrained one, ...). The time
// measured is from the first start to the end of the last unconstrained job (the job
// that ends it reads the clock); the value is that time over the same time for the N
// unconstrained jobs started alone, both measured in the same run, alone first: 1 when
// the constrained jobs do not hold the unconstrained ones back. Every job's output is
// checked, as are the counts, and that no two constrained jobs ever ran at once.
//
//   - jobrunner (Go): Submit per job, the constrained ones WithSemaphore(sem, 1) on a
//     jobrunner Semaphore of 1 (a job waiting for the permit holds no worker), keeping
//     the handles, then Wait and Close each.
//   - goroutines+semaphore.Weighted: a goroutine per job; the constrained ones Acquire
//     and Release a golang.org/x/sync/semaphore.Weighted of 1 around the work (a waiting
//     goroutine is parked); wg.Wait.
//   - errgroup.SetLimit(threads) + semaphore.Weighted: the blocking baseline, a pool of
//     BENCH_THREADS slots: an errgroup limited to BENCH_THREADS goroutines at once, the
//     constrained jobs acquiring the same Weighted inside, so that one waiting for the
//     permit holds its slot; g.Wait.
func benchSemaphore(cfg config, pool *jobrunner.Pool, iters uint64) {
	n := cfg.size(10_000)
	want := spin(iters)
	ctx := context.Background()

	// One run's state, reset by once.
	var (
		start             time.Time
		unconstrainedLeft atomic.Int64 // unconstrained jobs not ended yet
		unconstrainedEnd  atomic.Int64 // when the last one ended, in ns since start
		constrainedDone   atomic.Int64 // constrained jobs ended
		inside            atomic.Int64 // constrained jobs running now
		overlaps          atomic.Int64 // constrained jobs that found another running
		wrong             atomic.Int64 // jobs whose spin gave a wrong output
	)
	unconstrained := func() {
		if spin(iters) != want {
			wrong.Add(1)
		}
		if unconstrainedLeft.Add(-1) == 0 {
			unconstrainedEnd.Store(int64(time.Since(start)))
		}
	}
	constrained := func() {
		if inside.Add(1) != 1 {
			overlaps.Add(1)
		}
		if spin(iters) != want {
			wrong.Add(1)
		}
		inside.Add(-1)
		constrainedDone.Add(1)
	}

	measure := func(system string, ours bool, run func(mixed bool)) func(bool) {
		// once runs the unconstrained jobs, with the constrained ones if mixed, and
		// returns when the last unconstrained job ended and when run returned (every
		// job ended).
		once := func(mixed bool) (unconstrainedEnded, allEnded time.Duration) {
			unconstrainedLeft.Store(int64(n))
			unconstrainedEnd.Store(0)
			constrainedDone.Store(0)
			overlaps.Store(0)
			wrong.Store(0)
			start = time.Now()
			run(mixed)
			allEnded = time.Since(start)
			wantConstrained := int64(0)
			if mixed {
				wantConstrained = int64(n)
			}
			switch {
			case unconstrainedLeft.Load() != 0:
				fail("%s: %s: %d unconstrained jobs did not run", semaphoreWorkload, system, unconstrainedLeft.Load())
			case constrainedDone.Load() != wantConstrained:
				fail("%s: %s: %d of %d constrained jobs ran", semaphoreWorkload, system, constrainedDone.Load(), wantConstrained)
			case overlaps.Load() != 0:
				fail("%s: %s: constrained jobs overlapped %d times (a semaphore of 1)", semaphoreWorkload, system, overlaps.Load())
			case wrong.Load() != 0:
				fail("%s: %s: %d jobs gave a wrong output", semaphoreWorkload, system, wrong.Load())
			}
			return time.Duration(unconstrainedEnd.Load()), allEnded
		}
		return func(measured bool) {
			alone, _ := once(false)
			runtime.GC()
			beside, all := once(true)
			if measured {
				sample{Workload: semaphoreWorkload, System: system, Ours: ours, Unit: "x alone",
					Value: float64(beside) / float64(alone), LowerIsBetter: true,
					Detail: fmt.Sprintf("%s unconstrained jobs done in %.1f ms beside %s constrained (all done in %.1f ms), %.1f ms alone",
						thousands(n), ms(beside), thousands(n), ms(all), ms(alone))}.emit()
			}
		}
	}

	sem := jobrunner.NewSemaphore(1)
	defer sem.Close()
	permit := jobrunner.WithSemaphore(sem, 1)
	weighted := semaphore.NewWeighted(1)
	rounds(cfg,
		measure("jobrunner (Go)", true, func(mixed bool) {
			jobs := make([]*jobrunner.Job[struct{}], 0, 2*n)
			submit := func(work func(), opts ...jobrunner.SubmitOption) {
				j, err := jobrunner.Submit(pool, ctx, func(context.Context) (struct{}, error) {
					work()
					return struct{}{}, nil
				}, opts...)
				if err != nil {
					fail("%s: Submit: %v", semaphoreWorkload, err)
				}
				jobs = append(jobs, j)
			}
			for i := 0; i < n; i++ {
				if mixed {
					submit(constrained, permit)
				}
				submit(unconstrained)
			}
			for _, j := range jobs {
				if _, err := j.Wait(ctx); err != nil {
					fail("%s: Wait: %v", semaphoreWorkload, err)
				}
				j.Close()
			}
		}),
		measure("goroutines+semaphore.Weighted", false, func(mixed bool) {
			var wg sync.WaitGroup
			for i := 0; i < n; i++ {
				if mixed {
					wg.Add(1)
					go func() {
						if err := weighted.Acquire(ctx, 1); err != nil {
							fail("%s: Acquire: %v", semaphoreWorkload, err)
						}
						constrained()
						weighted.Release(1)
						wg.Done()
					}()
				}
				wg.Add(1)
				go func() { unconstrained(); wg.Done() }()
			}
			wg.Wait()
		}),
		measure(fmt.Sprintf("errgroup.SetLimit(%d) + semaphore.Weighted", cfg.threads), false, func(mixed bool) {
			var g errgroup.Group
			g.SetLimit(cfg.threads)
			for i := 0; i < n; i++ {
				if mixed {
					g.Go(func() error {
						if err := weighted.Acquire(ctx, 1); err != nil {
							return err
						}
						constrained()
						weighted.Release(1)
						return nil
					})
				}
				g.Go(func() error { unconstrained(); return nil })
			}
			if err := g.Wait(); err != nil {
				fail("%s: errgroup: %v", semaphoreWorkload, err)
			}
		}),
	)
}
