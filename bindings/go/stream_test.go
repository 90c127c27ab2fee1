package jobrunner

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// collect reads a stream to its end.
func collect[T any](t *testing.T, ctx context.Context, s *Stream[T]) []T {
	t.Helper()
	var got []T
	for {
		select {
		case v, ok := <-s.C():
			if !ok {
				return got
			}
			got = append(got, v)
		case <-ctx.Done():
			t.Fatalf("stream: no end after %d values", len(got))
		}
	}
}

func TestStreamOrderAndEnd(t *testing.T) {
	ctx := testCtx(t)
	p := newTestPool(t, WithThreads(2))
	held := HeldValues()
	const n = 2000
	s, err := NewStream(p, ctx, 4, func(ctx context.Context, send func(int) error) error {
		for i := 0; i < n; i++ {
			if err := send(i); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Err(); err != nil {
		t.Fatalf("Err before the end = %v", err)
	}
	got := collect(t, ctx, s)
	if len(got) != n {
		t.Fatalf("%d values, want %d", len(got), n)
	}
	for i, v := range got {
		if v != i {
			t.Fatalf("value %d is %d: out of order", i, v)
		}
	}
	if err := s.Err(); err != nil {
		t.Fatalf("Err = %v, want nil", err)
	}
	select {
	case <-s.Done():
	default:
		t.Fatal("Done not closed with C()")
	}
	if d := HeldValues() - held; d != 0 {
		t.Fatalf("%d values still held by C", d)
	}
	s.Close() // after the end: nothing to do
}

func TestStreamProducerError(t *testing.T) {
	ctx := testCtx(t)
	p := newTestPool(t, WithThreads(1))
	boom := errors.New("boom")
	s, err := NewStream(p, ctx, 2, func(ctx context.Context, send func(string) error) error {
		for _, v := range []string{"a", "b", "c"} {
			if err := send(v); err != nil {
				return err
			}
		}
		return &JobError{Code: 7, Err: boom}
	})
	if err != nil {
		t.Fatal(err)
	}
	got := collect(t, ctx, s)
	if len(got) != 3 || got[0] != "a" || got[2] != "c" {
		t.Fatalf("values before the failure = %q", got)
	}
	var je *JobError
	if err := s.Err(); !errors.As(err, &je) || !errors.Is(err, boom) || je.Code != 7 {
		t.Fatalf("Err = %v, want a *JobError with code 7 wrapping boom", err)
	}
}

func TestStreamProducerPanic(t *testing.T) {
	ctx := testCtx(t)
	p := newTestPool(t, WithThreads(1))
	s, err := NewStream(p, ctx, 2, func(ctx context.Context, send func(int) error) error {
		send(1)
		panic("producer blew up")
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := collect(t, ctx, s); len(got) != 1 {
		t.Fatalf("values = %v, want [1]", got)
	}
	var pe *PanicError
	if err := s.Err(); !errors.As(err, &pe) || pe.Value != "producer blew up" {
		t.Fatalf("Err = %v, want the panic", err)
	}
}

// Close while the producer runs, with values buffered: the producer's send fails and its
// ctx is done, C() closes only once it has returned, the buffered values are dropped
// (their handles deleted once: a second delete would panic), Err says cancelled.
func TestStreamCloseMidRun(t *testing.T) {
	ctx := testCtx(t)
	p := newTestPool(t, WithThreads(2))
	held := HeldValues()
	var sent, returned atomic.Int64
	var sendErr, ctxErr atomic.Value
	s, err := NewStream(p, ctx, 8, func(ctx context.Context, send func(int) error) error {
		defer returned.Add(1)
		for i := 0; ; i++ {
			if err := send(i); err != nil {
				sendErr.Store(err)
				ctxErr.Store(ctx.Err())
				return err
			}
			sent.Add(1)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if v := <-s.C(); v != i {
			t.Fatalf("value %d = %d", i, v)
		}
	}
	s.Close()
	s.Close()
	n := len(collect(t, ctx, s)) // at most the one in the pump's hand
	if n > 1 {
		t.Fatalf("%d values delivered after Close", n)
	}
	if returned.Load() != 1 {
		t.Fatal("C() closed before the producer returned")
	}
	if sendErr.Load() == nil || ctxErr.Load() == nil || ctxErr.Load().(error) == nil {
		t.Fatalf("the producer's send error %v, its ctx.Err %v: both should be set", sendErr.Load(), ctxErr.Load())
	}
	if err := s.Err(); !errors.Is(err, ErrCancelled) {
		t.Fatalf("Err = %v, want ErrCancelled", err)
	}
	if sent.Load() < 10 {
		t.Fatalf("only %d sent", sent.Load())
	}
	if d := HeldValues() - held; d != 0 {
		t.Fatalf("%d values still held by C after Close", d)
	}
}

// The reader stops at once: Close before reading anything, on a producer that has not
// started (one thread, busy) never runs.
func TestStreamCloseBeforeStart(t *testing.T) {
	ctx := testCtx(t)
	p := newTestPool(t, WithThreads(1))
	busy := make(gate)
	defer busy.open()
	started := make(chan struct{})
	if _, err := Submit(p, ctx, func(context.Context) (int, error) { close(started); busy.wait(); return 0, nil }); err != nil {
		t.Fatal(err)
	}
	<-started
	var ran atomic.Bool
	s, err := NewStream(p, ctx, 1, func(ctx context.Context, send func(int) error) error {
		ran.Store(true)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	collect(t, ctx, s)
	busy.open()
	if ran.Load() {
		t.Fatal("a producer closed before it started ran")
	}
	if err := s.Err(); !errors.Is(err, ErrCancelled) {
		t.Fatalf("Err = %v, want ErrCancelled", err)
	}
}

// The NewStream ctx cancels the producer: its send fails, Err wraps context.Canceled.
func TestStreamCtxCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	p := newTestPool(t, WithThreads(2))
	s, err := NewStream(p, ctx, 1, func(ctx context.Context, send func(int) error) error {
		for i := 0; ; i++ {
			if err := send(i); err != nil {
				return err
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	<-s.C()
	cancel()
	collect(t, testCtx(t), s)
	if err := s.Err(); !errors.Is(err, ErrCancelled) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Err = %v, want ErrCancelled and context.Canceled", err)
	}
}

func TestStreamBadArgs(t *testing.T) {
	p := newTestPool(t, WithThreads(1))
	fn := func(ctx context.Context, send func(int) error) error { return nil }
	if _, err := NewStream(p, context.Background(), 0, fn); !errors.Is(err, ErrInvalidArg) {
		t.Fatalf("capacity 0: %v", err)
	}
	p.Close()
	if _, err := NewStream(p, context.Background(), 1, fn); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed pool: %v", err)
	}
}

// Streams made with one ctx share its C token (as Submit jobs do): closing one stops
// only its own producer.
func TestStreamCloseStopsOnlyItsOwnProducer(t *testing.T) {
	ctx := testCtx(t)
	p := newTestPool(t, WithThreads(2))
	endless := func(ctx context.Context, send func(int) error) error {
		for i := 0; ; i++ {
			if err := send(i); err != nil {
				return err
			}
		}
	}
	a, err := NewStream(p, ctx, 1, endless)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewStream(p, ctx, 1, endless)
	if err != nil {
		t.Fatal(err)
	}
	<-a.C()
	a.Close()
	collect(t, ctx, a)
	for i := 0; i < 100; i++ {
		if v := <-b.C(); v != i {
			t.Fatalf("b's value %d = %d after a's Close", i, v)
		}
	}
	if err := b.Err(); err != nil {
		t.Fatalf("b ended: %v", err)
	}
	b.Close()
	collect(t, ctx, b)
}

// Submit's options apply to the producer job: a semaphore's permits are held while it
// runs, and returned when it ends.
func TestStreamWithOptions(t *testing.T) {
	ctx := testCtx(t)
	p := newTestPool(t, WithThreads(2))
	sem := NewSemaphore(1)
	defer sem.Close()
	s, err := NewStream(p, ctx, 1, func(ctx context.Context, send func(int) error) error {
		if n := sem.Available(); n != 0 {
			return errors.New("the producer runs without its permit")
		}
		return send(1)
	}, WithSemaphore(sem, 1), WithDelay(time.Millisecond), WithName("producer"))
	if err != nil {
		t.Fatal(err)
	}
	if got := collect(t, ctx, s); len(got) != 1 {
		t.Fatalf("values = %v", got)
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := NewStream(p, ctx, 1, func(ctx context.Context, send func(int) error) error { return nil },
		WithDelay(-time.Second)); !errors.Is(err, ErrInvalidArg) {
		t.Fatalf("a negative delay: %v", err)
	}
}
