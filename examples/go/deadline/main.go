// Command deadline shows cancellation with a deadline, in Go: a context.WithTimeout
// given to Submit becomes the job's C token deadline, and the job's own context is done
// when it passes.
//
// A quick step finishes well within its deadline; a slow step watches ctx.Done() and
// stops early when its 50 ms deadline passes (Wait's error matches both
// jobrunner.ErrCancelled and context.DeadlineExceeded); a step submitted under a
// deadline already passed never runs. Every line printed is the same on every run; the
// program checks its results and exits 1 if they are wrong.
//
// Run (from the repository root, after `cargo build --release`):
//
//	cd examples/go && go run ./deadline
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"sync/atomic"
	"time"

	jobrunner "github.com/jobrunner/jobrunner/bindings/go"
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("deadline: FAILED: ")
	pool, err := jobrunner.NewPool(jobrunner.WithThreads(2))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	bg := context.Background()

	step := func(ctx context.Context, work time.Duration) (*jobrunner.Job[string], error) {
		return jobrunner.Submit(pool, ctx, func(ctx context.Context) (string, error) {
			select {
			case <-time.After(work):
				return "done", nil
			case <-ctx.Done():
				return "", ctx.Err()
			}
		})
	}

	ctx, cancel := context.WithTimeout(bg, 2*time.Second)
	job, err := step(ctx, 3*time.Millisecond)
	if err != nil {
		log.Fatal(err)
	}
	v, err := job.Wait(bg)
	cancel()
	fmt.Printf("quick step (3 ms of work, 2 s deadline): %q, %v\n", v, err)
	if err != nil {
		log.Fatal(err)
	}

	ctx, cancel = context.WithTimeout(bg, 50*time.Millisecond)
	start := time.Now()
	job, err = step(ctx, 5*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	_, err = job.Wait(bg)
	cancel()
	fmt.Printf("slow step (up to 5 s of work, 50 ms deadline): %v\n", err)
	if !errors.Is(err, jobrunner.ErrCancelled) || !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 4*time.Second {
		log.Fatal("the slow step did not stop at its deadline")
	}
	fmt.Println("slow step: the job saw ctx.Done() with context.DeadlineExceeded and stopped early")

	ctx, cancel = context.WithTimeout(bg, time.Nanosecond)
	<-ctx.Done()
	var ran atomic.Bool
	late, err := jobrunner.Submit(pool, ctx, func(context.Context) (int, error) { ran.Store(true); return 0, nil })
	if err != nil {
		log.Fatal(err)
	}
	_, err = late.Wait(bg)
	cancel()
	fmt.Printf("step under a passed deadline: %v (ran: %v)\n", err, ran.Load())
	if !errors.Is(err, context.DeadlineExceeded) || ran.Load() {
		log.Fatal("the step under a passed deadline ran")
	}
	fmt.Println("deadline: ok")
}
