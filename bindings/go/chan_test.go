package jobrunner

import (
	"context"
	"errors"
	"testing"
)

func TestChanOrderTriesAndClose(t *testing.T) {
	ctx := testCtx(t)
	c := NewChan[string](2)
	defer c.Free()
	if _, err := c.TryRecv(); !errors.Is(err, ErrEmpty) {
		t.Fatalf("TryRecv on empty = %v", err)
	}
	if err := c.Send(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if err := c.TrySend("b"); err != nil {
		t.Fatal(err)
	}
	if err := c.TrySend("c"); !errors.Is(err, ErrFull) {
		t.Fatalf("TrySend on full = %v", err)
	}
	if c.Len() != 2 {
		t.Fatalf("Len = %d", c.Len())
	}
	if v, err := c.Recv(ctx); v != "a" || err != nil {
		t.Fatalf("Recv = %q, %v", v, err)
	}
	c.Close()
	if err := c.Send(ctx, "d"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send after Close = %v", err)
	}
	if v, err := c.Recv(ctx); v != "b" || err != nil {
		t.Fatalf("Recv after Close = %q, %v (what is buffered comes first)", v, err)
	}
	if _, err := c.Recv(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Recv when drained = %v", err)
	}
}

func TestChanRecvEndsWhenTheContextIsDone(t *testing.T) {
	c := NewChan[int](1)
	defer c.Free()
	ctx, cancel := context.WithCancel(testCtx(t))
	done := make(chan error, 1)
	go func() {
		_, err := c.Recv(ctx)
		done <- err
	}()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Recv = %v", err)
	}
}

func TestChanValuesLeftAreDroppedWithIt(t *testing.T) {
	ctx := testCtx(t)
	before := chanItemsFreed.Load()
	c := NewChan[[]byte](4)
	for i := 0; i < 3; i++ {
		if err := c.Send(ctx, make([]byte, 8)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Recv(ctx); err != nil {
		t.Fatal(err)
	}
	c.Free()
	if got := chanItemsFreed.Load() - before; got != 2 {
		t.Fatalf("%d values dropped with the channel, want 2", got)
	}
}

// A producer job and a consumer job on a pool of one thread, over a channel of one.
func TestChanProducerAndConsumerJobsOnOneThread(t *testing.T) {
	ctx := testCtx(t)
	p := newTestPool(t, WithThreads(1))
	c := NewChan[int](1)
	defer c.Free()
	producer, err := Submit(p, ctx, func(ctx context.Context) (struct{}, error) {
		for i := 1; i <= 100; i++ {
			if err := c.Send(ctx, i); err != nil {
				return struct{}{}, err
			}
		}
		return struct{}{}, c.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
	consumer, err := Submit(p, ctx, func(ctx context.Context) (int, error) {
		sum := 0
		for {
			v, err := c.Recv(ctx)
			if errors.Is(err, ErrClosed) {
				return sum, nil
			}
			if err != nil {
				return sum, err
			}
			sum += v
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := producer.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if sum, err := consumer.Wait(ctx); err != nil || sum != 5050 {
		t.Fatalf("consumer = %d, %v", sum, err)
	}
}
