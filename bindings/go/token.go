package jobrunner

// #include "jobrunner.h"
import "C"

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// ctxToken is a C token that follows a Go context: cancelled when the context is done
// (through context.AfterFunc, so nothing polls), with the context's deadline set on it
// too, so that the C side ends queued work at the deadline on its own timer and reports
// JR_REASON_DEADLINE.
//
// The token is freed once both of its users are finished with it: the owner (release)
// and the AfterFunc callback (which may still be cancelling when the owner is done, and
// C forbids freeing a token another thread uses).
//
// Every cancel from Go is jr_token_cancel_sync, never jr_token_cancel: the latter is
// for signal handlers and may leave ending the queued jobs to a helper thread, and the
// binding relies on the work being done when the call returns (a job submitted with a
// context already done must never start; a queued job is cancelled by the time the
// AfterFunc returns).
type ctxToken struct {
	tok  *C.jr_token
	ctx  context.Context
	refs atomic.Int32
	stop func() bool

	// A token shared by the jobs submitted with contexts of one Done channel (see
	// jobCtxToken): the key it is shared under (nil for a token of its own), and its
	// users. A user is added under sharedTokens.mu, and may bring the count back from 0
	// (a release that took it there has not yet removed the token: it looks again under
	// the lock); a release subtracts without the lock, which it takes only at 0. So the
	// worker that ends a job does not take the lock the submitting goroutine takes.
	done  <-chan struct{}
	users atomic.Int64
}

// sharedTokens holds the tokens jobs share: one per Done channel in use. A token of
// its own per job cost a C token, a context.AfterFunc and their teardown: about 2.5 us
// per job, twice a whole Go job; a shared one costs a map lookup.
var sharedTokens struct {
	mu sync.Mutex
	m  map[<-chan struct{}]*ctxToken
}

// jobCtxToken returns the token that follows ctx for a job, shared with the other jobs
// in flight whose contexts have the same Done channel (the same cancellation: a
// context.WithValue of another shares it); nil if ctx can never be done. The job
// releases it with release.
func jobCtxToken(ctx context.Context) (*ctxToken, error) {
	done := ctx.Done()
	if done == nil {
		return newCtxToken(ctx) // never done, or a deadline without a channel
	}
	sharedTokens.mu.Lock()
	if t := sharedTokens.m[done]; t != nil {
		t.users.Add(1)
		sharedTokens.mu.Unlock()
		return t, nil
	}
	sharedTokens.mu.Unlock()
	t, err := newCtxToken(ctx) // C calls: outside the lock
	if err != nil || t == nil {
		return t, err
	}
	sharedTokens.mu.Lock()
	if other := sharedTokens.m[done]; other != nil { // made meanwhile by another job
		other.users.Add(1)
		sharedTokens.mu.Unlock()
		t.release()
		return other, nil
	}
	if sharedTokens.m == nil {
		sharedTokens.m = make(map[<-chan struct{}]*ctxToken)
	}
	t.done = done
	t.users.Store(1)
	sharedTokens.m[done] = t
	sharedTokens.mu.Unlock()
	return t, nil
}

// newCtxToken makes the token for ctx, or returns nil if ctx can never be done.
func newCtxToken(ctx context.Context) (*ctxToken, error) {
	_, hasDeadline := ctx.Deadline()
	if ctx.Done() == nil && !hasDeadline {
		return nil, nil
	}
	t := &ctxToken{ctx: ctx}
	if st := C.jr_token_new(nil, &t.tok); st != C.JR_OK {
		return nil, statusError(st)
	}
	if deadline, ok := ctx.Deadline(); ok {
		d := time.Until(deadline)
		if d < 0 {
			d = 0
		}
		C.jr_token_set_deadline(t.tok, C.int64_t(d))
	}
	if ctx.Err() != nil {
		// Cancelled now, not by the AfterFunc goroutine: a job submitted with it must
		// not get the chance to start.
		t.cancel()
	}
	t.refs.Store(2)
	t.stop = context.AfterFunc(ctx, func() {
		t.cancel()
		t.unref()
	})
	return t, nil
}

// cancel cancels the token completely before it returns: jobs still queued under it
// have ended cancelled, waiters are woken (jr_token_cancel_sync). The caller holds a
// reference.
func (t *ctxToken) cancel() { C.jr_token_cancel_sync(t.tok) }

// cause is why the token was cancelled, nil if it was not: the context's cause if the
// context is done, else the C reason (a deadline the C timer noticed first).
func (t *ctxToken) cause() error {
	if t == nil {
		return nil
	}
	if t.ctx.Err() != nil {
		return context.Cause(t.ctx)
	}
	var reason C.enum_jr_cancel_reason
	if C.jr_token_reason(t.tok, &reason) != C.JR_OK {
		return nil
	}
	return reasonError(reason)
}

// release ends the owner's use; the token is freed when the AfterFunc callback is done
// with it too (or will never run).
func (t *ctxToken) release() {
	if t == nil {
		return
	}
	if t.done != nil { // shared: the last job to go releases it
		if t.users.Add(-1) != 0 {
			return
		}
		// Ours unless a job took it up again meanwhile (then its release will look), or
		// that job's release has already removed it.
		sharedTokens.mu.Lock()
		last := t.users.Load() == 0 && sharedTokens.m[t.done] == t
		if last {
			delete(sharedTokens.m, t.done)
		}
		sharedTokens.mu.Unlock()
		if !last {
			return
		}
	}
	if t.stop() {
		t.unref() // the callback will never run: its share is released here
	}
	t.unref()
}

func (t *ctxToken) unref() {
	if t.refs.Add(-1) == 0 {
		C.jr_token_free(t.tok)
	}
}

// ptr is the C token to pass in options (NULL for a nil ctxToken).
func (t *ctxToken) ptr() *C.jr_token {
	if t == nil {
		return nil
	}
	return t.tok
}

// reasonError maps a C cancellation reason to the error that names it (nil for none).
func reasonError(reason C.enum_jr_cancel_reason) error {
	switch reason {
	case C.JR_REASON_NONE:
		return nil
	case C.JR_REASON_DEADLINE:
		return context.DeadlineExceeded
	case C.JR_REASON_SHUTDOWN:
		return ErrShutdown
	case C.JR_REASON_SIBLING_FAILED:
		return errSiblingFailed
	default:
		return context.Canceled
	}
}
