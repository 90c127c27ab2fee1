package jobrunner

import (
	"context"
	"runtime"
	"testing"
)

// A worker that ran a Go job calls park as it goes back to sleep: the binding's park
// hook is on every pool it uses.
func TestWorkersCallParkAfterAGoJob(t *testing.T) {
	ctx := testCtx(t)
	for _, p := range []*Pool{newTestPool(t, WithThreads(1)), Default()} {
		before := parkCalls.Load()
		j, err := Submit(p, ctx, func(context.Context) (int, error) { return 1, nil })
		if err != nil {
			t.Fatal(err)
		}
		if _, err := j.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		j.Close()
		for parkCalls.Load() == before { // the worker goes idle: an event that comes
			if ctx.Err() != nil {
				t.Fatal("a worker that ran a Go job went to sleep without calling park")
			}
			runtime.Gosched()
		}
	}
}

// park hands the P to a goroutine that waits for one. With GOMAXPROCS 1 and this
// goroutine on the only P, a goroutine it starts can run before it blocks only if park
// yields. Not in every attempt: the scheduler takes the yielder back first from time to
// time (one schedule in 61, for fairness), and under the race detector or a collection
// this goroutine may be descheduled before park looks, letting the other run first (an
// attempt that then says nothing). So most attempts, not all; never, were park not to
// yield.
func TestParkGivesThePToAWaitingGoroutine(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	// A slot's sample, as a hooked thread's (the last slot: slots are given from the
	// first, and a worker holding this one would read its sample concurrently), and a
	// sample of its own.
	for _, slot := range []int{jrgoSlots - 1, -1} {
		const attempts = 40
		ranAtOnce, yields := 0, 0
		for i := 0; i < attempts; i++ {
			before := parkYields.Load()
			ran := make(chan struct{})
			go close(ran)
			park(slot)
			if parkYields.Load() != before {
				yields++
			}
			select {
			case <-ran:
				ranAtOnce++
			default:
				<-ran
			}
		}
		if yields < attempts/2 || ranAtOnce < attempts/2 {
			t.Fatalf("slot %d: of %d attempts, park yielded in %d and the runnable goroutine ran during it in %d",
				slot, attempts, yields, ranAtOnce)
		}
	}
}
