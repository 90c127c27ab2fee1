// Command worker_pool is a bounded worker pool with backpressure, in Go.
//
// Two worker threads and a queue bounded at four jobs. The producer submits 100 jobs,
// each squaring its number, and waits for their typed results. On the way it shows the
// ways a submit meets a full queue: NonBlocking fails at once with ErrFull; a submit
// whose context has a deadline gives up with context.DeadlineExceeded; a plain submit
// waits for room. Jobs 0 and 1 hold both workers at a gate so that the queue is full at
// a known moment. Every line printed is the same on every run; the program checks its
// results and exits 1 if they are wrong.
//
// Run (from the repository root, after `cargo build --release`):
//
//	cd examples/go && go run ./worker_pool
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	jobrunner "github.com/jobrunner/jobrunner/bindings/go"
)

const (
	threads  = 2
	capacity = 4
	jobs     = 100
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("worker_pool: FAILED: ")
	ctx := context.Background()
	pool, err := jobrunner.NewPool(jobrunner.WithThreads(threads), jobrunner.WithQueueCapacity(capacity),
		jobrunner.WithName("worker_pool"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("worker_pool: %d worker threads, queue_capacity %d, %d jobs\n", threads, capacity, jobs)

	gate := make(chan struct{})
	started := make(chan struct{}, threads)
	square := func(i int) func(context.Context) (int, error) {
		return func(context.Context) (int, error) {
			if i < threads { // jobs 0 and 1 hold both workers until the gate opens
				started <- struct{}{}
				<-gate
			}
			return i * i, nil
		}
	}

	handles := make([]*jobrunner.Job[int], 0, jobs)
	submit := func(i int, ctx context.Context, opts ...jobrunner.SubmitOption) error {
		job, err := jobrunner.Submit(pool, ctx, square(i), opts...)
		if err == nil {
			handles = append(handles, job)
		}
		return err
	}
	for i := 0; i < threads; i++ {
		if err := submit(i, ctx); err != nil {
			log.Fatal(err)
		}
	}
	for i := 0; i < threads; i++ {
		<-started
	}
	for i := threads; i < threads+capacity; i++ { // fills the queue
		if err := submit(i, ctx); err != nil {
			log.Fatal(err)
		}
	}
	next := threads + capacity
	err = submit(next, ctx, jobrunner.NonBlocking())
	fmt.Printf("nonblocking submit of job %d: %v\n", next, err)
	if !errors.Is(err, jobrunner.ErrFull) {
		log.Fatalf("want ErrFull, got %v", err)
	}
	tctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	err = submit(next, tctx)
	cancel()
	fmt.Printf("submit of job %d with a 20 ms deadline: %v\n", next, err)
	if !errors.Is(err, context.DeadlineExceeded) {
		log.Fatalf("want DeadlineExceeded, got %v", err)
	}
	close(gate)
	for i := next; i < jobs; i++ { // blocking submits: each waits for room
		if err := submit(i, ctx); err != nil {
			log.Fatal(err)
		}
	}
	sum := 0
	for _, job := range handles {
		v, err := job.Wait(ctx)
		if err != nil {
			log.Fatal(err)
		}
		sum += v
		job.Close()
	}
	fmt.Printf("results: %d taken, sum of squares 0..%d = %d\n", len(handles), jobs-1, sum)
	if len(handles) != jobs || sum != 328350 {
		log.Fatal("wrong results")
	}
	if err := pool.Shutdown(ctx, jobrunner.Drain); err != nil {
		log.Fatal(err)
	}
	_, err = jobrunner.Submit(pool, ctx, square(0))
	fmt.Printf("submit after shutdown: %v\n", err)
	if !errors.Is(err, jobrunner.ErrShutdown) {
		log.Fatalf("want ErrShutdown, got %v", err)
	}
	pool.Close()
	fmt.Println("worker_pool: ok")
}
