package jobrunner

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestSubmitEvery(t *testing.T) {
	p := newTestPool(t, WithThreads(2))
	ctx := testCtx(t)
	runs := make(chan uint64, 100)
	tk, err := SubmitEvery(p, ctx, time.Millisecond, func(ctx context.Context, run uint64) error {
		runs <- run
		if run == 1 {
			return errors.New("a failed run does not stop the ticker")
		}
		if run == 2 {
			panic("neither does a panic")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer tk.Close()
	for want := uint64(0); want < 5; want++ {
		if got := <-runs; got != want {
			t.Fatalf("run %d, want %d", got, want)
		}
	}
	if !tk.Stop() {
		t.Fatal("Stop: false")
	}
	if err := tk.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	n := len(runs)
	if tk.Stop() {
		t.Fatal("second Stop: true")
	}
	if len(runs) != n {
		t.Fatal("a run after Wait")
	}
}

func TestSubmitEveryStoppedByCtx(t *testing.T) {
	p := newTestPool(t, WithThreads(1))
	ctx := testCtx(t)
	tctx, cancel := context.WithCancel(ctx)
	first := make(gate)
	tk, err := SubmitEvery(p, tctx, time.Millisecond, func(ctx context.Context, run uint64) error {
		if run == 0 {
			first.open()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer tk.Close()
	first.wait()
	cancel()
	if err := tk.Wait(ctx); err != nil {
		t.Fatal(err)
	}
}
