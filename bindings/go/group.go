package jobrunner

// #include "jobrunner.h"
import "C"

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
)

// errSiblingFailed is the cause of a job cancelled because a job of its fail-fast
// group failed.
var errSiblingFailed = errors.New("jobrunner: a job of the same fail-fast group failed")

// Group is a set of jobs on one pool with errgroup's API and semantics, backed by the
// C library's scheduler-aware group: its limit holds jobs back without holding workers,
// and fail-fast cancels the queued jobs without running them. Its methods are safe for
// concurrent use.
type Group struct {
	pool     *Pool
	ptr      *C.jr_group
	ref      handleRef
	token    *ctxToken // the parent of the group's C token: follows the NewGroup ctx
	ctx      context.Context
	cancel   context.CancelCauseFunc
	limit    int64
	failFast bool
	active   atomic.Int64 // with a limit (for TryGo): jobs submitted and not ended

	mu  sync.Mutex
	err error // the first error a job returned (or a submit failed with)
}

// NewGroup makes a group of jobs on p, and a context derived from ctx that is cancelled
// when Wait returns or, with FailFast, when a job first fails or panics (errgroup's
// WithContext). ctx cancels the group's jobs when it is done. An error making the group
// (a closed pool) is returned by Wait. Close the group when done (a finalizer does it
// otherwise).
func (p *Pool) NewGroup(ctx context.Context, opts ...GroupOption) (*Group, context.Context) {
	var cfg groupConfig
	for _, o := range opts {
		o.applyGroup(&cfg)
	}
	g := &Group{pool: p, limit: int64(cfg.limit), failFast: cfg.failFast}
	g.ctx, g.cancel = context.WithCancelCause(ctx)
	runtime.SetFinalizer(g, (*Group).Close)
	if cfg.limit < 0 {
		g.fail(ErrInvalidArg)
		g.ref.close(func() {})
		return g, g.ctx
	}
	var err error
	if g.token, err = newCtxToken(ctx); err != nil {
		g.fail(err)
		g.ref.close(func() {})
		return g, g.ctx
	}
	copts := C.jr_group_options_default()
	copts.limit = C.uint64_t(cfg.limit)
	if cfg.failFast {
		copts.fail_fast = 1
	}
	copts.wait_only = 1 // Go never asks for ended jobs: C frees each as it ends
	copts.token = g.token.ptr()
	pool, err := p.acquire()
	if err == nil {
		err = statusError(C.jr_group_new(pool, &copts, &g.ptr))
		p.release()
	}
	if err != nil {
		g.token.release()
		g.token = nil
		g.fail(err)
		g.ref.close(func() {})
	}
	return g, g.ctx
}

// free frees the C group and releases its parent token, once Close was called and no
// call uses them.
func (g *Group) free() {
	C.jr_group_free(g.ptr)
	g.token.release()
}

// fail records err as the group's error if it is the first, and with FailFast cancels
// the group's context.
func (g *Group) fail(err error) {
	g.mu.Lock()
	if g.err == nil {
		g.err = err
	}
	g.mu.Unlock()
	if g.failFast {
		g.cancel(err)
	}
}

// Go runs fn as a job of the group. Unlike errgroup it never blocks: past the limit the
// job waits in the group's queue, holding no worker. fn's ctx carries the values and
// deadline of the group's context and is done when the job is asked to stop. If the job
// cannot be submitted (a pool shut down), Wait reports why.
func (g *Group) Go(fn func(ctx context.Context) error) {
	g.count(1)
	if err := g.submit(fn, nil); err != nil {
		g.fail(err)
	}
}

// TryGo runs fn as a job of the group if it can start now: fewer than the limit of the
// group's jobs are active, and the pool's queue has room. It reports whether it did.
func (g *Group) TryGo(fn func(ctx context.Context) error) bool {
	if g.limit > 0 {
		for {
			n := g.active.Load()
			if n >= g.limit {
				return false
			}
			if g.active.CompareAndSwap(n, n+1) {
				break // the slot is reserved: submit does not count it again
			}
		}
	}
	err := g.submit(fn, []SubmitOption{NonBlocking()})
	if err != nil && !errors.Is(err, ErrFull) {
		g.fail(err)
	}
	return err == nil
}

// count adds n to the jobs counted in active, which only TryGo reads, and only with a
// limit: without one, nothing is counted, and the workers that end the jobs do not write
// the cache line the submitting goroutine writes.
func (g *Group) count(n int64) {
	if g.limit > 0 {
		g.active.Add(n)
	}
}

// submit submits fn as a job of the group; the caller has counted it (count), and submit
// uncounts it if it fails.
func (g *Group) submit(fn func(ctx context.Context) error, opts []SubmitOption) error {
	if !g.ref.use() {
		g.count(-1)
		g.mu.Lock()
		err := g.err
		g.mu.Unlock()
		if err == nil {
			err = ErrClosed
		}
		return err
	}
	defer g.ref.done(g.free)
	t := &task{body: funcBody(fn), group: g}
	t.jc.parent = g.ctx
	err := submitTask(g.pool, g.ctx, t, g.ptr, opts)
	if err != nil {
		g.count(-1)
	}
	return err
}

// Wait waits for every job submitted so far to end, cancels the group's context, and
// returns the first error a job returned (or panicked with: a *PanicError), in the
// order they ended; ErrCancelled (with the cause, e.g. the NewGroup context's) if none
// failed but some were cancelled before running; nil if all succeeded.
func (g *Group) Wait() error {
	st := C.enum_jr_status(C.JR_OK)
	var cause error
	if g.ref.use() {
		st = C.jr_group_wait(g.ptr, -1)
		if st == C.JR_E_CANCELLED {
			cause = g.token.cause() // while the use keeps the token from being released
		}
		g.ref.done(g.free)
	}
	g.mu.Lock()
	err := g.err
	g.mu.Unlock()
	g.cancel(err)
	if err != nil {
		return err
	}
	switch st {
	case C.JR_OK:
		return nil
	case C.JR_E_CANCELLED:
		return cancelledError(cause, nil)
	default:
		return statusError(st)
	}
}

// Close frees the group's handle (its jobs go on) and cancels its context. Calling it
// again does nothing.
func (g *Group) Close() error {
	g.ref.close(g.free)
	g.cancel(context.Canceled)
	runtime.SetFinalizer(g, nil)
	return nil
}

// Done returns a channel closed once every job submitted to the group before the call
// has ended (Wait would not block for them), for a select. The group keeps no ended
// job (errgroup's Wait is its only reader), so there is no "one job ended" to select
// on: select on a Submit job's Done for that, or send results on a channel. Each call
// costs a goroutine blocked in C (jr_group_wait, one thread) until the jobs end; the
// group's handle is kept until then (Close is deferred).
func (g *Group) Done() <-chan struct{} {
	c := make(chan struct{})
	if !g.ref.use() {
		close(c)
		return c
	}
	go func() {
		C.jr_group_wait(g.ptr, -1)
		g.ref.done(g.free)
		close(c)
	}()
	return c
}
