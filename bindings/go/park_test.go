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
// yields. (Not always then: the scheduler takes the yielder back first from time to
// time, one schedule in 61, for fairness; so most of the attempts, not all.)
func TestParkGivesThePToAWaitingGoroutine(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	for _, slot := range []int{0, -1} { // a hooked thread's sample, and one of its own
		const attempts = 20
		ranAtOnce := 0
		for i := 0; i < attempts; i++ {
			yields := parkYields.Load()
			ran := make(chan struct{})
			go close(ran)
			park(slot)
			if parkYields.Load() == yields {
				t.Fatalf("slot %d: park did not yield to a runnable goroutine", slot)
			}
			select {
			case <-ran:
				ranAtOnce++
			default:
				<-ran
			}
		}
		if ranAtOnce < attempts/2 {
			t.Fatalf("slot %d: the runnable goroutine ran during park %d times of %d", slot, ranAtOnce, attempts)
		}
	}
}
