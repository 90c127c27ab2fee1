package jobrunner

import (
	"context"
	"runtime"
	"testing"
)

// Handles nobody closed: the jobs (whose handles are freed as they end, no finalizer
// needed) still run to their end, and a semaphore freed by its finalizer still serves
// the jobs submitted with it.
func TestFinalizersDetach(t *testing.T) {
	p := newTestPool(t, WithThreads(2))
	ctx := testCtx(t)
	hold := make(gate)
	ran := make(chan int, 10)
	func() {
		sem := NewSemaphore(1)
		for i := 0; i < 10; i++ {
			i := i
			if _, err := Submit(p, ctx, func(context.Context) (int, error) {
				hold.wait()
				ran <- i
				return i, nil
			}, WithSemaphore(sem, 1)); err != nil {
				t.Fatal(err)
			}
		}
	}()
	// The jobs and the semaphore are unreachable now: two GCs run the semaphore's
	// finalizer (the first queues it, the second makes sure it ran).
	runtime.GC()
	runtime.GC()
	hold.open()
	seen := 0
	for seen < 10 {
		select {
		case <-ran:
			seen++
		case <-ctx.Done():
			t.Fatalf("%d of 10 detached jobs ran", seen)
		}
	}
}

// A pool nobody closed is closed by its finalizer, in the background.
func TestPoolFinalizer(t *testing.T) {
	ctx := testCtx(t)
	done := make(chan struct{})
	func() {
		p, err := NewPool(WithThreads(1))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Submit(p, ctx, func(context.Context) (int, error) { close(done); return 0, nil }); err != nil {
			t.Fatal(err)
		}
	}()
	runtime.GC()
	runtime.GC()
	select {
	case <-done: // the queued job ran: the finalizer's Close drains
	case <-ctx.Done():
		t.Fatal("the job of a finalized pool never ran")
	}
}
