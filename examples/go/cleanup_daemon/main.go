// Command cleanup_daemon shows delayed and periodic jobs, Go's time.AfterFunc and
// time.Ticker on the pool, in Go.
//
// A table of sessions, each with an expiry time, is filled by main; a periodic job
// (jobrunner.SubmitEvery, every 20 ms) sweeps out the expired ones and reports each
// sweep with its run number. A delayed job (jobrunner.WithDelay) logs one session out
// 60 ms after it is submitted. After a few sweeps main shuts the pool down with Drain:
// the periodic job stops with it, and the delayed job has run (a drain runs delayed
// jobs when they come due). The lines checked are the same on every run (the number of
// sweeps that ran in all may vary by one); the program checks its results and exits 1
// if they are wrong.
//
// Run (from the repository root, after `cargo build --release`):
//
//	cd examples/go && go run ./cleanup_daemon
package main

import (
	"context"
	"fmt"
	"log"
	"sync"
	"time"

	jobrunner "github.com/jobrunner/jobrunner/bindings/go"
)

const (
	sessions = 100
	sweeps   = 5
	period   = 20 * time.Millisecond
	delay    = 60 * time.Millisecond
	logout   = 99 // the session the delayed job logs out
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("cleanup_daemon: FAILED: ")
	ctx := context.Background()
	pool, err := jobrunner.NewPool(jobrunner.WithThreads(2))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	var mu sync.Mutex
	now := time.Now()
	table := make(map[int]time.Time, sessions)
	for id := 0; id < sessions; id++ {
		expiry := now.Add(time.Hour)
		if id%2 == 0 {
			expiry = now.Add(-time.Second) // already expired
		}
		table[id] = expiry
	}
	fmt.Printf("cleanup_daemon: %d sessions, %d already expired; sweeping every %d ms\n",
		sessions, sessions/2, period.Milliseconds())

	seen := make(chan uint64, 1000)
	ticker, err := jobrunner.SubmitEvery(pool, ctx, period, func(ctx context.Context, run uint64) error {
		mu.Lock()
		removed := 0
		for id, expiry := range table {
			if time.Now().After(expiry) {
				delete(table, id)
				removed++
			}
		}
		mu.Unlock()
		if run < sweeps {
			fmt.Printf("    sweep %d: removed %d expired sessions\n", run, removed)
		}
		seen <- run
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	defer ticker.Close()

	submitted := time.Now()
	loggedOut, err := jobrunner.Submit(pool, ctx, func(context.Context) (time.Duration, error) {
		mu.Lock()
		delete(table, logout)
		mu.Unlock()
		return time.Since(submitted), nil
	}, jobrunner.WithDelay(delay), jobrunner.WithName("logout"))
	if err != nil {
		log.Fatal(err)
	}
	defer loggedOut.Close()
	fmt.Printf("delayed job: logs session %d out in %d ms (state %v)\n", logout, delay.Milliseconds(), loggedOut.State())

	for i := 0; i < sweeps; i++ {
		<-seen
	}
	fmt.Printf("main: %d sweeps seen, shutting the pool down (Drain)\n", sweeps)
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err = pool.Shutdown(sctx, jobrunner.Drain)
	stopped := false
	select { // the ticker's Go side learns of its end just after the C side
	case <-ticker.Done():
		stopped = true
	case <-time.After(5 * time.Second):
	}
	fmt.Printf("shutdown(Drain): complete %v, ticker stopped: %v\n", err == nil, stopped)
	after, err := loggedOut.Wait(ctx)
	if err != nil {
		log.Fatal(err)
	}
	word := "no sooner than"
	if after < delay {
		word = "SOONER than"
	}
	fmt.Printf("delayed job: ran %s %d ms after it was submitted\n", word, delay.Milliseconds())
	mu.Lock()
	left := len(table)
	mu.Unlock()
	fmt.Printf("summary: %d sweeps ran, %d live sessions left\n", sweeps+len(seen), left)
	if !stopped || after < delay || left != sessions/2-1 {
		log.Fatal("wrong results")
	}
	fmt.Println("cleanup_daemon: the periodic job stopped with the pool")
}
