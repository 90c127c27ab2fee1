package jobrunner

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// highWater counts how many are inside at once and remembers the most.
type highWater struct{ now, max atomic.Int64 }

func (h *highWater) enter() {
	n := h.now.Add(1)
	for {
		m := h.max.Load()
		if n <= m || h.max.CompareAndSwap(m, n) {
			return
		}
	}
}

func (h *highWater) leave() { h.now.Add(-1) }

func TestSemaphoreAcquireRelease(t *testing.T) {
	ctx := testCtx(t)
	s := NewSemaphore(3)
	defer s.Close()
	if err := s.Acquire(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if s.TryAcquire(2) {
		t.Fatal("TryAcquire(2) with 1 free")
	}
	if !s.TryAcquire(1) || s.Available() != 0 {
		t.Fatal("TryAcquire(1) with 1 free")
	}
	// A blocked Acquire gives up when its context is done.
	actx, cancel := context.WithCancel(ctx)
	errc := make(chan error)
	go func() { errc <- s.Acquire(actx, 1) }()
	cancel()
	if err := <-errc; err != context.Canceled {
		t.Fatalf("cancelled Acquire = %v", err)
	}
	// And at its deadline.
	dctx, cancel2 := context.WithTimeout(ctx, 5*time.Millisecond)
	defer cancel2()
	if err := s.Acquire(dctx, 1); err != context.DeadlineExceeded {
		t.Fatalf("Acquire past deadline = %v", err)
	}
	// A waiter gets the permits when they are released.
	go func() { errc <- s.Acquire(ctx, 3) }()
	s.Release(3)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	s.Release(3)
	if s.Available() != 3 {
		t.Fatalf("Available = %d", s.Available())
	}
	if err := s.Acquire(ctx, 4); !errors.Is(err, ErrInvalidArg) {
		t.Fatalf("Acquire over the total = %v", err)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("over-release did not panic")
			}
		}()
		s.Release(1)
	}()
}

func TestSubmitWithSemaphoreLimits(t *testing.T) {
	p := newTestPool(t, WithThreads(4))
	ctx := testCtx(t)
	s := NewSemaphore(2)
	defer s.Close()
	var hw highWater
	n := 200
	jobs := make([]*Job[int], n)
	for i := range jobs {
		jobs[i], _ = Submit(p, ctx, func(context.Context) (int, error) {
			hw.enter()
			defer hw.leave()
			for j := 0; j < 1000; j++ { // a little work, so jobs overlap
				_ = j * j
			}
			return 1, nil
		}, WithSemaphore(s, 1))
	}
	for _, j := range jobs {
		if _, err := j.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if m := hw.max.Load(); m > 2 || m < 1 {
		t.Fatalf("high-water mark %d with 2 permits", m)
	}
	if s.Available() != 2 {
		t.Fatalf("permits not all returned: %d", s.Available())
	}
}

func TestSemaphoreSharedWithGoroutines(t *testing.T) {
	ctx := testCtx(t)
	s := NewSemaphore(3)
	defer s.Close()
	var hw highWater
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < 20; k++ {
				if err := s.Acquire(ctx, 1); err != nil {
					t.Error(err)
					return
				}
				hw.enter()
				hw.leave()
				s.Release(1)
			}
		}()
	}
	wg.Wait()
	if m := hw.max.Load(); m > 3 {
		t.Fatalf("high-water mark %d with 3 permits", m)
	}
}
