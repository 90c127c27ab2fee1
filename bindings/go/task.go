package jobrunner

// #include <stdlib.h>
// #include "jobrunner.h"
import "C"

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"unsafe"
)

// task is the Go side of a Go job, referenced from C only by its number in the task
// table (the job's argument). Everything the job produces stays here, in Go memory: the
// result (through body), the error the function returned, the panic.
type task struct {
	fn     func(ctx context.Context) error // the function, unless body is set
	body   taskBody                        // the function of a Job[T] (no closure to allocate)
	parent context.Context                 // values and deadline for the job's context
	token  *ctxToken                       // follows the submit context (nil: none)

	// A job with a handle (Submit): the handle, freed by end (or Close, if first).
	ptr *C.jr_job
	ref handleRef

	// ended is set by finish, after state; done (made by the first doneChan while the
	// job is going, under mu) is closed then.
	ended atomic.Bool
	state State // the terminal state C reported to end (a job with a handle)
	done  chan struct{}

	periodic bool // a SubmitEvery job: run gives each run its number

	// onReturn, if set, is told the function's error (or panic) as it returns, on the
	// worker (a group records its first error this way).
	onReturn func(err error)
	// onEnd, if set, runs in finish.
	onEnd func()

	mu       sync.Mutex // orders run's writes before finish (for the race detector too); guards done
	ran      bool
	err      error       // what the function returned
	panicked *PanicError // what it panicked with
	cause    error       // why the job was cancelled, if known (read in finish)
}

// taskBody is a Go job's function with the place for its result: a Job[T].
type taskBody interface {
	call(ctx context.Context) error
}

// run runs the job's function on a worker: the body of jrgoRunJob. It reports a panic
// with jr_ctx_panic (with the stack), an error with jr_ctx_fail, and returns the job's
// code.
func (t *task) run(jctx *C.jr_ctx) int32 {
	c := &jobContext{parent: t.parent, jctx: jctx}
	if t.periodic {
		var tick C.uint64_t
		C.jr_ctx_tick(jctx, &tick)
		c.tick = uint64(tick)
	}
	err, p := t.call(c)
	c.end()
	var seen error // why the job was asked to stop, as it returned an error
	if err != nil && C.jr_ctx_is_cancelled(jctx) {
		var reason C.enum_jr_cancel_reason
		C.jr_token_reason(C.jr_ctx_token(jctx), &reason)
		seen = reasonError(reason)
	}
	code := int32(0)
	switch {
	case p != nil:
		cmsg := C.CString(p.Message)
		C.jr_ctx_panic(jctx, cmsg)
		C.free(unsafe.Pointer(cmsg))
		code = 1
		err = p
	case err != nil:
		cmsg := C.CString(err.Error())
		C.jr_ctx_fail(jctx, cmsg)
		C.free(unsafe.Pointer(cmsg))
		code = 1
		var je *JobError
		if errors.As(err, &je) && je.Code != 0 {
			code = je.Code
		}
	}
	if t.onReturn != nil {
		t.onReturn(err)
	}
	t.mu.Lock()
	t.ran = true
	t.cause = seen
	if p != nil {
		t.panicked = p
	} else {
		t.err = err
	}
	t.mu.Unlock()
	return code
}

// call runs fn, recovering a panic.
func (t *task) call(ctx context.Context) (err error, p *PanicError) {
	defer func() {
		if r := recover(); r != nil {
			stack := debug.Stack()
			p = &PanicError{
				Value:   r,
				Stack:   stack,
				Message: fmt.Sprintf("%v\n\n%s", r, stack),
			}
		}
	}()
	if t.body != nil {
		return t.body.call(ctx), nil
	}
	return t.fn(ctx), nil
}

// finish ends the job's Go side (from jrgoJobDone, jrgoRunJob once it ran, or
// jrgoFreeArg): it notes why it was cancelled, if it was, releases the token and wakes
// the waiters.
func (t *task) finish() {
	t.mu.Lock()
	if cause := t.token.cause(); cause != nil {
		t.cause = cause
	}
	t.mu.Unlock()
	t.token.release()
	if t.onEnd != nil {
		t.onEnd()
	}
	t.mu.Lock()
	t.ended.Store(true)
	done := t.done
	t.mu.Unlock()
	if done != nil {
		close(done)
	}
}

// end ends the Go side of a job with a handle, from its done callback: C's state is
// terminal (state), so whoever sees the task ended sees the job's final state. The
// handle is freed here, or by the last call still using it: a job's handle lives as
// long as the job or until Close, with no finalizer needed to free a forgotten one.
func (t *task) end(state State) {
	t.state = state // read only once ended is seen
	t.finish()
	t.ref.close(t.freeHandle)
}

func (t *task) freeHandle() { C.jr_job_free(t.ptr) }

// closedChan is the channel doneChan gives for a task that has ended.
var closedChan = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// doneChan returns a channel closed when the task has ended, made on first use: a
// job nobody selects on costs no channel.
func (t *task) doneChan() <-chan struct{} {
	if t.ended.Load() {
		return closedChan
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ended.Load() {
		return closedChan
	}
	if t.done == nil {
		t.done = make(chan struct{})
	}
	return t.done
}

// endStatus is the C status of a job that ended in state s.
func endStatus(s State) C.enum_jr_status {
	switch s {
	case Succeeded:
		return C.JR_OK
	case Failed:
		return C.JR_E_JOB_FAILED
	case Panicked:
		return C.JR_E_PANICKED
	default:
		return C.JR_E_CANCELLED
	}
}

// outcome maps the job's final C status to the Go result: called once the job ended
// (after done is closed).
func (t *task) outcome(st C.enum_jr_status, job *C.jr_job) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch st {
	case C.JR_OK:
		return nil
	case C.JR_E_JOB_FAILED:
		je := &JobError{Code: 1, Err: t.err}
		if t.err != nil {
			je.Message = t.err.Error()
			var inner *JobError
			if errors.As(t.err, &inner) && inner.Code != 0 {
				je.Code = inner.Code
			}
		}
		return je
	case C.JR_E_PANICKED:
		if t.panicked != nil {
			return t.panicked
		}
		return cPanic(job)
	case C.JR_E_CANCELLED:
		return cancelledError(t.cause, t.err)
	default:
		return statusError(st)
	}
}

// cPanic is the PanicError of a job that panicked outside Go.
func cPanic(job *C.jr_job) *PanicError {
	return &PanicError{Message: C.GoString(C.jr_job_error_message(job))}
}
