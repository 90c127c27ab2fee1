package jobrunner

// #include <stdint.h>
// #include "jobrunner.h"
//
// extern enum jr_status jrgo_submit_every(jr_pool *pool, int64_t period_ns, uintptr_t id,
//                                         jr_submit_options *opts, jr_job **out);
import "C"

import (
	"context"
	"runtime"
	"time"
)

// Ticker is a periodic Go job made by SubmitEvery. Its methods are safe for concurrent
// use.
type Ticker struct {
	ptr  *C.jr_job
	ref  handleRef
	task *task
}

// SubmitEvery runs fn on pool every period (the first run one period from now, or
// after WithDelay) until the ticker is stopped (Stop), ctx is done, or the pool shuts
// down. Runs never overlap: a run that overruns makes the next start when it ends, and
// missed ticks are skipped. fn gets the run number (0 for the first); a run that fails
// or panics is counted in the pool's stats and the schedule goes on. Close the ticker
// when done with it (a finalizer does it otherwise); closing does not stop it.
func SubmitEvery(pool *Pool, ctx context.Context, period time.Duration, fn func(ctx context.Context, run uint64) error, opts ...SubmitOption) (*Ticker, error) {
	if period <= 0 {
		return nil, ErrInvalidArg
	}
	t := &task{periodic: true, cEnded: true} // Done: its last run has ended
	t.jc.parent = ctx
	t.body = funcBody(func(ctx context.Context) error { return fn(ctx, ctx.(*jobContext).tick) })
	copts, cleanup, err := submitOptions(opts)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	if t.token, err = newCtxToken(ctx); err != nil {
		return nil, err
	}
	copts.token = t.token.ptr()
	ptr, err := pool.acquire()
	if err != nil {
		t.token.release()
		return nil, err
	}
	id := tasks.put(t)
	var job *C.jr_job
	st := C.jrgo_submit_every(ptr, C.int64_t(period), C.uintptr_t(id), &copts, &job)
	pool.release()
	if st != C.JR_OK {
		tasks.take(id)
		err := statusError(st)
		t.token.release()
		return nil, err
	}
	tk := &Ticker{ptr: job, task: t}
	runtime.SetFinalizer(tk, (*Ticker).Close)
	return tk, nil
}

// Stop stops the ticker: no run starts after the current one, if any. It reports
// whether this call stopped it (false: already stopping or stopped).
func (t *Ticker) Stop() bool {
	if !t.ref.use() {
		return false
	}
	defer t.ref.done(t.free)
	return C.jr_job_cancel(t.ptr) == C.JR_OK
}

// Done returns a channel closed once the ticker has stopped and its last run has
// ended.
func (t *Ticker) Done() <-chan struct{} { return t.task.doneChan() }

// Wait waits until the ticker has stopped and its last run has ended (nil), or ctx is
// done (ctx.Err()).
func (t *Ticker) Wait(ctx context.Context) error {
	select {
	case <-t.task.doneChan():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close frees the ticker's handle; the ticker goes on until stopped by its context or
// the pool's shutdown. Calling it again does nothing.
func (t *Ticker) Close() error {
	t.ref.close(t.free)
	runtime.SetFinalizer(t, nil)
	return nil
}

func (t *Ticker) free() { C.jr_job_free(t.ptr) }
