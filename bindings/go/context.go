package jobrunner

// #include "jobrunner.h"
import "C"

import (
	"context"
	"sync"
	"time"
)

// jobContext is the context.Context a Go job's function gets. It carries the values and
// deadline of the context the job was submitted with, and is done when the job's C
// token is cancelled: Job.Cancel, the submit context, the deadline, a fail-fast group,
// a pool shut down with Cancel. Once the function has returned it is done
// (context.Canceled), as a context whose work is over.
//
// It costs nothing unless used: Err asks C (jr_ctx_is_cancelled) while the job runs,
// and only the first Done makes a channel, with a child of the job's token (the
// borrowed jr_ctx_token is valid only during the call; the child is ours) and one
// goroutine blocked in jr_token_wait on it, so nothing polls. When the function returns,
// end cancels the child to release that goroutine, waits for it, and frees the child.
type jobContext struct {
	parent context.Context
	tick   uint64 // the run number of a periodic job

	mu   sync.Mutex
	err  ctxErr        // set when done is closed (or, without a channel, when seen)
	jctx *C.jr_ctx     // the job's C context; nil once the function has returned
	done chan struct{} // made by the first Done
	tok  *C.jr_token   // the watched child token, if Done made one
}

// ctxErr is a jobContext's error, one of two: a byte where an error would take two
// words, in a struct allocated per job.
type ctxErr uint8

const (
	ctxNotDone ctxErr = iota
	ctxCanceled
	ctxDeadline
)

// error returns the context error: nil, context.Canceled or context.DeadlineExceeded.
func (e ctxErr) error() error {
	switch e {
	case ctxCanceled:
		return context.Canceled
	case ctxDeadline:
		return context.DeadlineExceeded
	default:
		return nil
	}
}

// jobContextKey marks a jobContext in a context chain (Value), so that Job.Wait called
// with a job's context waits the C way (running an unstarted job inline).
type jobContextKey struct{}

func (c *jobContext) Deadline() (time.Time, bool) { return c.parent.Deadline() }

func (c *jobContext) Value(key any) any {
	if key == (jobContextKey{}) {
		return c
	}
	return c.parent.Value(key)
}

func (c *jobContext) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done != nil {
		return c.done
	}
	c.done = make(chan struct{})
	if c.jctx == nil || c.err != ctxNotDone {
		if c.err == ctxNotDone {
			c.err = ctxCanceled
		}
		close(c.done)
		return c.done
	}
	if C.jr_token_new(C.jr_ctx_token(c.jctx), &c.tok) != C.JR_OK {
		// Cannot happen for a live context; without a token the channel closes when
		// the function returns.
		c.tok = nil
		return c.done
	}
	go c.watch(c.tok)
	return c.done
}

// watch waits for the child token to be cancelled (by the job's token, or by end),
// then closes done with the error that says why.
func (c *jobContext) watch(tok *C.jr_token) {
	C.jr_token_wait(tok, -1)
	var reason C.enum_jr_cancel_reason
	C.jr_token_reason(tok, &reason)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == ctxNotDone {
		c.err = contextError(reason)
	}
	close(c.done)
}

func (c *jobContext) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != ctxNotDone || c.done != nil {
		return c.err.error() // with a channel, err is set when it closes
	}
	if c.jctx == nil {
		c.err = ctxCanceled
	} else if C.jr_ctx_is_cancelled(c.jctx) {
		var reason C.enum_jr_cancel_reason
		C.jr_token_reason(C.jr_ctx_token(c.jctx), &reason)
		c.err = contextError(reason)
	}
	return c.err.error()
}

// end is called when the job's function has returned: the C context is invalid from
// now on.
func (c *jobContext) end() {
	c.mu.Lock()
	c.jctx = nil
	tok, done := c.tok, c.done
	c.tok = nil
	if tok == nil && done != nil && c.err == ctxNotDone {
		c.err = ctxCanceled
		close(done)
	}
	c.mu.Unlock()
	if tok != nil {
		// Wakes watch now, on this thread (a no-op if it is already cancelled): the
		// async jr_token_cancel would leave the wake-up to a helper thread while this
		// worker blocks below.
		C.jr_token_cancel_sync(tok)
		<-done
		C.jr_token_free(tok)
	}
}

// contextError is the context error for a cancellation reason: DeadlineExceeded for a
// deadline, Canceled for anything else.
func contextError(reason C.enum_jr_cancel_reason) ctxErr {
	if reason == C.JR_REASON_DEADLINE {
		return ctxDeadline
	}
	return ctxCanceled
}
