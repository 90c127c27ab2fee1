// Command graceful_shutdown shuts a small server down gracefully on SIGINT/SIGTERM, in
// Go, with signal.NotifyContext.
//
// On a pool of 4 threads: 4 connection handlers serve until their context is done (they
// are submitted with the signal context, so the signal cancels their C tokens), and 8
// requests already accepted are queued behind them, submitted without it (accepted work
// is finished, not dropped). On the signal, main shuts the pool down with Drain: new
// submits fail with ErrShutdown, the handlers stop, the requests still run.
//
// So that it runs unattended, the program sends itself SIGTERM once the handlers run and
// the requests are queued; run it with -wait to send the signal yourself (Ctrl-C, or
// kill -TERM <pid>). Every line printed is the same on every run; the program checks
// its results and exits 1 if they are wrong.
//
// Run (from the repository root, after `cargo build --release`):
//
//	cd examples/go && go run ./graceful_shutdown
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	jobrunner "github.com/jobrunner/jobrunner/bindings/go"
)

const (
	handlers = 4
	requests = 8
)

func main() {
	wait := flag.Bool("wait", false, "wait for a signal instead of sending one")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("graceful_shutdown: FAILED: ")

	pool, err := jobrunner.NewPool(jobrunner.WithThreads(handlers))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	sigCtx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	fmt.Printf("graceful_shutdown: %d connection handlers watch the signal context; %d requests queued behind them\n", handlers, requests)

	started := make(chan struct{}, handlers)
	var stopped, completed atomic.Int64
	var conns []*jobrunner.Job[struct{}]
	for i := 0; i < handlers; i++ {
		job, err := jobrunner.Submit(pool, sigCtx, func(ctx context.Context) (struct{}, error) {
			started <- struct{}{}
			<-ctx.Done() // serve until told to stop
			stopped.Add(1)
			return struct{}{}, nil
		})
		if err != nil {
			log.Fatal(err)
		}
		conns = append(conns, job)
	}
	for i := 0; i < handlers; i++ {
		<-started
	}
	for i := 0; i < requests; i++ {
		if _, err := jobrunner.Submit(pool, context.Background(), func(context.Context) (int, error) {
			completed.Add(1)
			return 0, nil
		}); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Printf("%d handlers running, %d requests accepted and queued\n", handlers, requests)
	if *wait {
		fmt.Printf("waiting for SIGINT or SIGTERM (press Ctrl-C, or kill -TERM %d)\n", os.Getpid())
	} else if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		log.Fatal(err)
	}
	<-sigCtx.Done()
	fmt.Println("main: got SIGTERM or SIGINT, the signal context is done")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	fmt.Println("main: pool.Shutdown(Drain, 5 s)")
	if err := pool.Shutdown(ctx, jobrunner.Drain); err != nil {
		log.Fatal(err)
	}
	_, err = jobrunner.Submit(pool, context.Background(), func(context.Context) (int, error) { return 0, nil })
	fmt.Printf("submit after shutdown: %v\n", err)
	if !errors.Is(err, jobrunner.ErrShutdown) {
		log.Fatal("a submit after shutdown was accepted")
	}
	for _, c := range conns {
		if _, err := c.Wait(context.Background()); err != nil {
			log.Fatalf("handler: %v", err)
		}
	}
	fmt.Printf("drained: %d of %d requests completed; cancelled: %d of %d handlers stopped\n",
		completed.Load(), requests, stopped.Load(), handlers)
	if completed.Load() != requests || stopped.Load() != handlers {
		log.Fatal("wrong counts")
	}
	fmt.Println("graceful_shutdown: ok")
}
