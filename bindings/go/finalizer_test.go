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

// Jobs dropped without Close, Wait or Done still have their C handles freed: by the
// finalizer of their handle block, once no job points into it.
func TestDroppedJobHandlesFreed(t *testing.T) {
	p := newTestPool(t, WithThreads(2))
	ctx := testCtx(t)
	const n = 4 * handleBlockSize
	ran := make(chan struct{}, n)
	before := handlesFreed.Load()
	for i := 0; i < n; i++ {
		if _, err := Submit(p, ctx, func(context.Context) (int, error) { ran <- struct{}{}; return 0, nil }); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < n; i++ {
		<-ran
	}
	// Rotate past the block the last jobs used, so that it is not the current one.
	for i := 0; i < handleBlockSize; i++ {
		j, err := Submit(p, ctx, func(context.Context) (int, error) { return 0, nil })
		if err != nil {
			t.Fatal(err)
		}
		j.Wait(ctx) // seen to end: its handle is freed here, not by the finalizer
	}
	// The jobs' Go sides have ended (the task table let go of them) but only the
	// finalizers can free the dropped handles. A finalizer runs after the GC that
	// found its block unreachable; poll a few GCs for them, bounded by the test ctx.
	for handlesFreed.Load()-before < n+handleBlockSize {
		if ctx.Err() != nil {
			t.Fatalf("%d of %d handles freed", handlesFreed.Load()-before, n+handleBlockSize)
		}
		runtime.GC()
		runtime.Gosched()
	}
}
