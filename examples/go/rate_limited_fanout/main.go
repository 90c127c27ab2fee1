// Command rate_limited_fanout runs 200 calls through a semaphore of 8 on a pool of 16
// threads, in Go: the semaphore (the C library's, shareable with C, Rust and Python code
// in the process) bounds the calls in flight, and the jobs waiting for permits hold no
// worker. Halfway through, the request's context is cancelled: the calls not yet
// started end cancelled without running. Every line printed is the same on every run;
// the program checks its results and exits 1 if they are wrong.
//
// Run (from the repository root, after `cargo build --release`):
//
//	cd examples/go && go run ./rate_limited_fanout
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"sync/atomic"

	jobrunner "github.com/jobrunner/jobrunner/bindings/go"
)

const (
	threads = 16
	permits = 8
	calls   = 200
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("rate_limited_fanout: FAILED: ")
	pool, err := jobrunner.NewPool(jobrunner.WithThreads(threads))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	sem := jobrunner.NewSemaphore(permits)
	defer sem.Close()
	fmt.Printf("rate_limited_fanout: %d calls through a semaphore of %d on a pool of %d threads\n", calls, permits, threads)

	// The first half of the calls run freely; the second half are submitted with a
	// request context, and the first 8 of them hold their permits at a gate, so that the
	// other 92 are waiting for permits (holding no worker) when the request is cancelled.
	ctx, cancel := context.WithCancel(context.Background())
	var inFlight, most atomic.Int64
	gate := make(chan struct{})
	holding := make(chan struct{}, permits)
	call := func(hold bool) func(context.Context) (int, error) {
		return func(ctx context.Context) (int, error) {
			n := inFlight.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			defer inFlight.Add(-1)
			if hold {
				holding <- struct{}{}
				<-gate
			}
			return 1, nil
		}
	}
	jobs := make([]*jobrunner.Job[int], calls)
	for i := range jobs {
		jctx, hold := context.Background(), false
		if i >= calls/2 {
			jctx, hold = ctx, true
		}
		if jobs[i], err = jobrunner.Submit(pool, jctx, call(hold), jobrunner.WithSemaphore(sem, 1)); err != nil {
			log.Fatal(err)
		}
	}
	for i := 0; i < permits; i++ {
		<-holding
	}
	cancel() // the calls still waiting for permits end cancelled, without running
	// The cancel reaches the jobs' C tokens through context.AfterFunc, a few
	// microseconds later: wait for the waiting calls to end before opening the gate.
	for _, j := range jobs[calls/2:] {
		if j.State() != jobrunner.Running {
			<-j.Done()
		}
	}
	close(gate)
	ok, cancelled := 0, 0
	for _, j := range jobs {
		_, err := j.Wait(context.Background())
		switch {
		case err == nil:
			ok++
		case errors.Is(err, jobrunner.ErrCancelled) && errors.Is(err, context.Canceled):
			cancelled++
		default:
			log.Fatal(err)
		}
		j.Close()
	}
	fmt.Printf("progress: %d/%d calls ended\n", ok+cancelled, calls)
	fmt.Printf("%d ok, %d cancelled, at most %d at once\n", ok, cancelled, permits)
	if ok+cancelled != calls || most.Load() > permits || sem.Available() != permits {
		log.Fatalf("ok %d + cancelled %d, most %d, available %d", ok, cancelled, most.Load(), sem.Available())
	}
	fmt.Printf("accounting checked: ok + cancelled = %d, never more than %d at once, every permit returned\n", calls, permits)
}
