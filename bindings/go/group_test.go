package jobrunner

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/jobrunner/jobrunner/bindings/go/internal/cjobs"
)

func TestGroupWaitAll(t *testing.T) {
	p := newTestPool(t, WithThreads(2))
	ctx := testCtx(t)
	g, gctx := p.NewGroup(ctx)
	defer g.Close()
	var sum atomic.Int64
	for i := 1; i <= 100; i++ {
		i := i
		g.Go(func(ctx context.Context) error { sum.Add(int64(i)); return nil })
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if sum.Load() != 5050 {
		t.Fatalf("sum = %d", sum.Load())
	}
	if gctx.Err() == nil {
		t.Fatal("the group's context is not cancelled after Wait")
	}
}

func TestGroupLimit(t *testing.T) {
	p := newTestPool(t, WithThreads(4))
	ctx := testCtx(t)
	n := 100_000
	if raceEnabled || testing.Short() {
		n = 10_000
	}
	g, _ := p.NewGroup(ctx, WithLimit(4))
	defer g.Close()
	var hw highWater
	var count atomic.Int64
	for i := 0; i < n; i++ {
		g.Go(func(ctx context.Context) error {
			hw.enter()
			count.Add(1)
			hw.leave()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if count.Load() != int64(n) {
		t.Fatalf("ran %d of %d", count.Load(), n)
	}
	if m := hw.max.Load(); m > 4 {
		t.Fatalf("high-water mark %d with limit 4", m)
	}
}

func TestGroupLimitTryGo(t *testing.T) {
	p := newTestPool(t, WithThreads(2))
	ctx := testCtx(t)
	g, _ := p.NewGroup(ctx, WithLimit(1))
	defer g.Close()
	hold, started := make(gate), make(gate)
	if !g.TryGo(func(context.Context) error { started.open(); hold.wait(); return nil }) {
		t.Fatal("TryGo in an empty group: false")
	}
	started.wait()
	if g.TryGo(func(context.Context) error { return nil }) {
		t.Fatal("TryGo past the limit: true")
	}
	hold.open()
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if !g.TryGo(func(context.Context) error { return nil }) {
		t.Fatal("TryGo after Wait: false")
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
}

func TestGroupFailFast(t *testing.T) {
	p := newTestPool(t, WithThreads(2))
	ctx := testCtx(t)
	g, gctx := p.NewGroup(ctx, FailFast(), WithLimit(2))
	defer g.Close()
	started := make(gate)
	var sawCancel atomic.Bool
	g.Go(func(ctx context.Context) error {
		started.open()
		<-ctx.Done() // cancelled by the sibling's failure
		sawCancel.Store(true)
		return ctx.Err()
	})
	started.wait()
	g.Go(func(context.Context) error { return errBoom })
	var ranAfter atomic.Int64
	for i := 0; i < 10; i++ {
		g.Go(func(context.Context) error { ranAfter.Add(1); return nil })
	}
	if err := g.Wait(); err != errBoom {
		t.Fatalf("Wait = %v, want errBoom", err)
	}
	if !sawCancel.Load() {
		t.Fatal("the running sibling did not see its context done")
	}
	if context.Cause(gctx) != errBoom {
		t.Fatalf("group context cause = %v", context.Cause(gctx))
	}
	if ranAfter.Load() == 10 {
		t.Fatal("fail-fast cancelled none of the queued jobs")
	}
}

func TestGroupPanic(t *testing.T) {
	p := newTestPool(t, WithThreads(1))
	ctx := testCtx(t)
	g, _ := p.NewGroup(ctx)
	defer g.Close()
	g.Go(func(context.Context) error { panic("group kaboom") })
	var pe *PanicError
	if err := g.Wait(); !errors.As(err, &pe) || pe.Value != "group kaboom" {
		t.Fatalf("Wait = %v", err)
	}
}

func TestGroupCancelledByCtx(t *testing.T) {
	p := newTestPool(t, WithThreads(1))
	ctx := testCtx(t)
	gctxParent, cancel := context.WithCancel(ctx)
	g, _ := p.NewGroup(gctxParent)
	defer g.Close()
	started := make(gate)
	g.Go(func(ctx context.Context) error { started.open(); <-ctx.Done(); return nil })
	var ran atomic.Bool
	g.Go(func(context.Context) error { ran.Store(true); return nil })
	started.wait()
	cancel()
	if err := g.Wait(); !errors.Is(err, ErrCancelled) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait = %v", err)
	}
	if ran.Load() {
		t.Fatal("a queued job of a cancelled group ran")
	}
}

func TestGroupOnClosedPool(t *testing.T) {
	p, _ := NewPool(WithThreads(1))
	p.Close()
	g, _ := p.NewGroup(context.Background())
	defer g.Close()
	g.Go(func(context.Context) error { return nil })
	if err := g.Wait(); err != ErrClosed {
		t.Fatalf("Wait = %v", err)
	}
}

// A C group keeps every ended job for jr_group_next, which Group does not offer: the
// Group's C group is wait_only (it frees each job as it ends, and refuses
// jr_group_next), so a long-lived group does not grow with every job it ran.
func TestGroupKeepsNoEndedJobs(t *testing.T) {
	p := newTestPool(t, WithThreads(2))
	g, _ := p.NewGroup(testCtx(t))
	defer g.Close()
	const n = 640
	for round := 0; round < 3; round++ {
		for i := 0; i < n; i++ {
			g.Go(func(context.Context) error { return nil })
		}
		if err := g.Wait(); err != nil {
			t.Fatal(err)
		}
		if !g.ref.use() {
			t.Fatal("group closed")
		}
		kept := cjobs.GroupRetained(unsafe.Pointer(g.ptr))
		g.ref.done(g.free)
		if kept != -1 {
			t.Fatalf("round %d: the C group is not wait_only: it kept %d of %d ended jobs", round, kept, n)
		}
	}
}
