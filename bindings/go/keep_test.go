package jobrunner

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"unsafe"
)

// Tests of the jobs a worker keeps after they succeed (see jrgo_slot in cgo.go): what a
// kept job holds is let go of even if its worker runs no other Go job, and Go's view of
// a job (Done, State, Wait) agrees with C's whichever way its end was told. The first
// three failed in review before the kept-job sweeper.

// A dropped job kept by a worker that then stays idle: its value is collected.
func TestKeptJobDoesNotRetainADroppedJob(t *testing.T) {
	p := newTestPool(t, WithThreads(1))
	ctx := testCtx(t)
	var collected atomic.Bool
	ran := make(chan struct{})
	func() {
		_, err := Submit(p, ctx, func(context.Context) (*[1 << 20]byte, error) {
			v := new([1 << 20]byte)
			runtime.SetFinalizer(v, func(*[1 << 20]byte) { collected.Store(true) })
			close(ran)
			return v, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}()
	<-ran
	for !collected.Load() {
		if ctx.Err() != nil {
			t.Fatal("a dropped, ended job's 1 MiB value is still reachable")
		}
		runtime.GC()
		runtime.Gosched()
	}
}

// A dropped job kept by a worker that then stays idle: its C handle is freed.
func TestKeptJobHandleIsFreed(t *testing.T) {
	idle := newTestPool(t, WithThreads(1))
	other := newTestPool(t, WithThreads(1))
	ctx := testCtx(t)
	// Counted from before the dropped job: it may be freed (by the sweeper) before this
	// goroutine runs again after it ran. Handles other tests left waiting go first.
	freeBatches.flush()
	before := handlesFreed.Load()
	ran := make(chan struct{})
	if _, err := Submit(idle, ctx, func(context.Context) (int, error) { close(ran); return 0, nil }); err != nil {
		t.Fatal(err)
	}
	<-ran
	// Use up the rest of the dropped job's handle block (and a full one more) on the
	// other pool, waiting for each: only the dropped job's handle is left to free.
	for i := 0; i < 2*handleBlockSize; i++ {
		j, err := Submit(other, ctx, func(context.Context) (int, error) { return 0, nil })
		if err != nil {
			t.Fatal(err)
		}
		j.Wait(ctx)
	}
	want := int64(2*handleBlockSize + 1)
	for handlesFreed.Load()-before < want {
		if ctx.Err() != nil {
			t.Fatalf("%d of %d handles freed: the dropped job kept by the idle worker still holds its C handle",
				handlesFreed.Load()-before, want)
		}
		runtime.GC()
		runtime.Gosched()
	}
}

// checkAgreement compares, once Done is closed, Go's state with C's, read through a
// use of the handle that the caller took right after Submit (held): the job's end
// closes the handle, so a use taken after Done would always be refused.
func checkAgreement(t *testing.T, j *Job[int], held bool) {
	<-j.Done()
	s := j.State()
	if !s.Ended() {
		t.Errorf("after Done, State %v", s)
	}
	if held {
		cs := j.task.h.cState()
		j.task.h.done()
		if cs != s {
			t.Errorf("Go %v, C %v", s, cs)
		}
	}
	_, err := j.Wait(context.Background())
	if (err == nil) != (s == Succeeded) {
		t.Errorf("Wait %v with state %v", err, s)
	}
}

// Goroutines submit nested, failing, cancelled and plain jobs, and look at them in
// different orders (Done first, State first, or only Close): Go's state agrees with C's
// and with Wait's outcome.
func TestGoAndCAgreeOnEveryEnd(t *testing.T) {
	p := newTestPool(t, WithThreads(2))
	ctx := testCtx(t)
	n := scaled(1500, 500)
	var wg sync.WaitGroup
	var agreed atomic.Int64 // jobs whose C state was compared
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < n; i++ {
				cctx, cancel := context.WithCancel(ctx)
				k := i % 5
				j, err := Submit(p, cctx, func(jctx context.Context) (int, error) {
					switch k {
					case 0:
						in, err := Submit(p, jctx, func(context.Context) (int, error) { return 1, nil })
						if err != nil {
							return 0, err
						}
						return in.Wait(jctx)
					case 1:
						return 0, errors.New("x")
					}
					return 2, nil
				})
				if k == 2 {
					cancel()
				}
				if err != nil {
					cancel()
					continue
				}
				// Taken before anything can see the end (which closes the handle).
				held := j.task.h.use()
				if held {
					agreed.Add(1)
				}
				switch i % 3 {
				case 0:
					checkAgreement(t, j, held)
				case 1:
					j.State()
					checkAgreement(t, j, held)
				default:
					if held {
						j.task.h.done()
						agreed.Add(-1)
					}
					j.Close()
				}
				cancel()
			}
		}()
	}
	wg.Wait()
	if agreed.Load() == 0 {
		t.Fatal("no job's C state was compared: every use was refused")
	}
}

// A released handle does not wait for 63 more to be freed: the sweeper frees what the
// batch holds within a few milliseconds (no garbage collection needed). The handle is
// followed by its C pointer: in a batch once released (the sweeper held back meanwhile;
// the thread that saw the job end may still be putting it there as Close returns),
// then out of every batch, freed, with no other handle needed to fill the batch.
func TestReleasedHandleIsFreedSoon(t *testing.T) {
	p := newTestPool(t, WithThreads(1))
	ctx := testCtx(t)
	freeBatches.flush()
	kept.pause(true)
	t.Cleanup(func() { kept.pause(false) })
	j, err := Submit(p, ctx, func(context.Context) (int, error) { return 1, nil })
	if err != nil {
		t.Fatal(err)
	}
	ptr := unsafe.Pointer(j.task.h.ptr)
	if _, err := j.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	j.Close()
	for !batchesHold(ptr) {
		if ctx.Err() != nil {
			t.Fatal("the released handle never waited in a batch")
		}
		runtime.Gosched()
	}
	kept.pause(false)
	for batchesHold(ptr) {
		if ctx.Err() != nil {
			t.Fatal("a released handle was never freed")
		}
		runtime.Gosched()
	}
}

// batchesHold reports whether a handle (its C pointer) waits in freeBatches.
func batchesHold(ptr unsafe.Pointer) bool {
	for i := range freeBatches {
		b := &freeBatches[i]
		b.mu.Lock()
		held := false
		for _, q := range b.ptrs[:b.n] {
			held = held || unsafe.Pointer(q) == ptr
		}
		b.mu.Unlock()
		if held {
			return true
		}
	}
	return false
}
