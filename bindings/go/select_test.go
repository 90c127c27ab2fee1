package jobrunner

import (
	"context"
	"errors"
	"testing"
	"time"
)

// isClosed reports whether c is closed now.
func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// waitClosed waits for c to close, failing the test at ctx's end.
func waitClosed(t *testing.T, ctx context.Context, c <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-c:
	case <-ctx.Done():
		t.Fatalf("%s: never ready", what)
	}
}

func TestSelectGroupDone(t *testing.T) {
	ctx := testCtx(t)
	pool := newTestPool(t, WithThreads(2))
	g, _ := pool.NewGroup(ctx)
	defer g.Close()
	hold := make(gate)
	defer hold.open()
	started := make(chan struct{})
	g.Go(func(context.Context) error { close(started); hold.wait(); return nil })
	g.Go(func(context.Context) error { return nil })
	<-started
	done := g.Done()
	if isClosed(done) {
		t.Fatal("Group.Done closed while a job runs")
	}
	hold.open()
	waitClosed(t, ctx, done, "Group.Done")
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
}

func TestSelectChanReady(t *testing.T) {
	ctx := testCtx(t)
	c := NewChan[int](1)
	defer c.Free()
	sel, stop := context.WithCancel(ctx)
	defer stop()
	recv := c.RecvReady(sel)
	if isClosed(recv) {
		t.Fatal("RecvReady on an empty channel")
	}
	send := c.SendReady(sel)
	waitClosed(t, ctx, send, "SendReady on an empty channel")
	if err := c.TrySend(1); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, ctx, recv, "RecvReady after a send")
	full := c.SendReady(sel)
	if isClosed(full) {
		t.Fatal("SendReady on a full channel")
	}
	if v, err := c.TryRecv(); v != 1 || err != nil {
		t.Fatalf("TryRecv = %d, %v", v, err)
	}
	waitClosed(t, ctx, full, "SendReady after a receive")
	// A cancelled ctx releases the waiting goroutine; the channel stays open.
	never := c.RecvReady(sel)
	stop()
	if isClosed(never) {
		t.Fatal("RecvReady closed by its ctx")
	}
}

func TestSelectStreamAndPipelineAndJob(t *testing.T) {
	ctx := testCtx(t)
	pool := newTestPool(t, WithThreads(2))
	s, err := NewStream(pool, ctx, 1, func(ctx context.Context, send func(string) error) error {
		return send("s")
	})
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPipeline[int](pool, ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	out := Stage(p, 1, true, func(ctx context.Context, v int) (int, bool, error) { return v + 1, true, nil })
	job, err := Submit(pool, ctx, func(context.Context) (int, error) { return 3, nil })
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Push(ctx, 1); err != nil {
		t.Fatal(err)
	}
	seen := 0
	for seen != 7 {
		select {
		case v, ok := <-s.C():
			if ok && v == "s" {
				seen |= 1
			}
		case v := <-out.Out():
			if v == 2 {
				seen |= 2
			}
		case <-job.Done():
			seen |= 4
		case <-ctx.Done():
			t.Fatalf("select: saw %b of 111", seen)
		}
	}
}

func TestWaitAny(t *testing.T) {
	ctx := testCtx(t)
	pool := newTestPool(t, WithThreads(2))
	c := NewChan[int](1)
	defer c.Free()
	if i, err := WaitAny(ctx, 0, c.RecvWaitable()); !errors.Is(err, ErrTimeout) {
		t.Fatalf("nothing ready, timeout 0: %d, %v", i, err)
	}
	if i, err := WaitAny(ctx, 0, c.RecvWaitable(), c.SendWaitable()); i != 1 || err != nil {
		t.Fatalf("room to send: %d, %v", i, err)
	}
	start := time.Now()
	if _, err := WaitAny(ctx, 20*time.Millisecond, c.RecvWaitable()); !errors.Is(err, ErrTimeout) || time.Since(start) < 20*time.Millisecond {
		t.Fatalf("timeout: %v after %v", err, time.Since(start))
	}

	// A job: ready once it ends, and after its handle is released.
	hold := make(gate)
	defer hold.open()
	job, err := Submit(pool, ctx, func(context.Context) (int, error) { hold.wait(); return 1, nil })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := WaitAny(ctx, 0, job.Waitable()); !errors.Is(err, ErrTimeout) {
		t.Fatalf("running job: %v", err)
	}
	go hold.open()
	if i, err := WaitAny(ctx, -1, c.RecvWaitable(), job.Waitable()); i != 1 || err != nil {
		t.Fatalf("ended job: %d, %v", i, err)
	}
	job.Wait(ctx)
	job.Close()
	if i, err := WaitAny(ctx, -1, job.Waitable()); i != 0 || err != nil {
		t.Fatalf("closed job: %d, %v", i, err)
	}

	// A pipeline's output, then TryNext.
	p, err := NewPipeline[int](pool, ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	out := Stage(p, 1, true, func(ctx context.Context, v int) (int, bool, error) { return v * 10, true, nil })
	if _, err := out.TryNext(); !errors.Is(err, ErrEmpty) {
		t.Fatalf("TryNext on nothing = %v", err)
	}
	if err := p.Push(ctx, 4); err != nil {
		t.Fatal(err)
	}
	if i, err := WaitAny(ctx, -1, c.RecvWaitable(), out.Waitable()); i != 1 || err != nil {
		t.Fatalf("pipeline output: %d, %v", i, err)
	}
	if v, err := out.TryNext(); v != 40 || err != nil {
		t.Fatalf("TryNext = %d, %v", v, err)
	}
	p.CloseInput()
	if i, err := WaitAny(ctx, -1, out.Waitable()); i != 0 || err != nil {
		t.Fatalf("drained pipeline: %d, %v", i, err)
	}
	if _, err := out.TryNext(); !errors.Is(err, ErrClosed) {
		t.Fatalf("TryNext at the end = %v", err)
	}

	// The ctx is the token: its cancel ends the wait.
	wctx, cancel := context.WithCancel(ctx)
	go cancel()
	if _, err := WaitAny(wctx, -1, c.RecvWaitable()); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled ctx: %v", err)
	}
	dctx, dcancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer dcancel()
	if _, err := WaitAny(dctx, -1, c.RecvWaitable()); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ctx deadline: %v", err)
	}
	c.Free()
	if _, err := WaitAny(ctx, 0, c.RecvWaitable()); !errors.Is(err, ErrClosed) {
		t.Fatalf("freed chan: %v", err)
	}
}
