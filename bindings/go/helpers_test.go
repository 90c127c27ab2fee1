package jobrunner

import (
	"context"
	"testing"
	"time"
)

// newTestPool makes a pool closed at the end of the test.
func newTestPool(t *testing.T, opts ...PoolOption) *Pool {
	t.Helper()
	p, err := NewPool(opts...)
	if err != nil {
		t.Fatalf("NewPool: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// testCtx is a context that fails the test instead of hanging it: every wait in the
// tests is bounded by it.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// scaled is n, or underRace when the race detector slows the test down.
func scaled(n, underRace int) int {
	if raceEnabled {
		return underRace
	}
	return n
}

// gate is a one-shot event: jobs block on it until the test opens it.
type gate chan struct{}

// open opens the gate; it is idempotent, so a test may also defer it, to release its
// jobs after an early failure (the pool's Close would wait for them).
func (g gate) open() {
	select {
	case <-g:
	default:
		close(g)
	}
}

// wait blocks until the gate is open.
func (g gate) wait() { <-g }
