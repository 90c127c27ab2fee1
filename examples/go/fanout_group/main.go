// Command fanout_group is fan-out/fan-in with a group, in Go: errgroup's API on the
// runner's scheduler-aware group.
//
// First 20 items are squared by a group limited to 3 running at once (the others wait
// without holding a worker), and the results summed. Then a fail-fast group: item 3
// fails, which cancels the group's context, so the items still running see ctx.Done()
// and the queued ones never run; Wait returns item 3's error. Every line printed is the
// same on every run; the program checks its results and exits 1 if they are wrong.
//
// Run (from the repository root, after `cargo build --release`):
//
//	cd examples/go && go run ./fanout_group
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"sync/atomic"

	jobrunner "github.com/jobrunner/jobrunner/bindings/go"
)

// errBadResponse is item 3's failure.
var errBadResponse = errors.New("item 3: bad response")

func main() {
	log.SetFlags(0)
	log.SetPrefix("fanout_group: FAILED: ")
	ctx := context.Background()
	pool, err := jobrunner.NewPool(jobrunner.WithThreads(4))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	// Fan out with a limit, fan in through a results slice (each job its own slot).
	const items, limit = 20, 3
	g, _ := pool.NewGroup(ctx, jobrunner.WithLimit(limit))
	results := make([]int, items)
	var running, most atomic.Int64
	for i := 0; i < items; i++ {
		i := i
		g.Go(func(ctx context.Context) error {
			n := running.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			results[i] = i * i
			running.Add(-1)
			return nil
		})
	}
	err = g.Wait()
	g.Close()
	sum := 0
	for _, r := range results {
		sum += r
	}
	fmt.Printf("group Wait: %v; sum of squares 0..%d = %d; at most %d running at once\n", err, items-1, sum, limit)
	if err != nil || sum != 2470 || most.Load() > limit {
		log.Fatalf("sum %d, most %d", sum, most.Load())
	}

	// Fail fast: item 3 fails once items 0-2 are running; they see their ctx done.
	g, gctx := pool.NewGroup(ctx, jobrunner.FailFast(), jobrunner.WithLimit(4))
	started := make(chan struct{}, 3)
	var sawCancel, ranLate atomic.Int64
	for i := 0; i < 3; i++ {
		g.Go(func(ctx context.Context) error {
			started <- struct{}{}
			<-ctx.Done()
			sawCancel.Add(1)
			return ctx.Err()
		})
	}
	for i := 0; i < 3; i++ {
		<-started
	}
	g.Go(func(context.Context) error { return errBadResponse })
	for i := 4; i < 10; i++ {
		g.Go(func(context.Context) error { ranLate.Add(1); return nil })
	}
	err = g.Wait()
	g.Close()
	fmt.Printf("first error: %v\n", err)
	fmt.Printf("items 0-2 saw their context done: %d of 3; group context: %v\n", sawCancel.Load(), context.Cause(gctx))
	if !errors.Is(err, errBadResponse) || sawCancel.Load() != 3 || context.Cause(gctx) != errBadResponse {
		log.Fatal("fail-fast did not behave")
	}
	fmt.Println("fanout_group: ok")
}
