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
	"unsafe"
)

// task is the Go side of a Go job, referenced from C only through a cgo.Handle (the
// job's argument). Everything the job produces stays here, in Go memory: the result
// (through fn's closure), the error the function returned, the panic.
type task struct {
	fn     func(ctx context.Context) error
	parent context.Context // values and deadline for the job's context
	token  *ctxToken       // follows the submit context (nil: none)
	done   chan struct{}   // closed by finish (nil: nobody waits on it)

	periodic bool // a SubmitEvery job: run gives each run its number

	// onReturn, if set, is told the function's error (or panic) as it returns, on the
	// worker (a group records its first error this way).
	onReturn func(err error)
	// onEnd, if set, runs in finish.
	onEnd func()

	mu       sync.Mutex // orders run's writes before finish (for the race detector too)
	ran      bool
	err      error       // what the function returned
	panicked *PanicError // what it panicked with
	cause    error       // why the job was cancelled, if known (read in finish)
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
	return t.fn(ctx), nil
}

// finish ends the job's Go side (from jrgoRunJob once it ran, or jrgoFreeArg): it
// notes why it was cancelled, if it was, releases the token and wakes the waiters.
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
	if t.done != nil {
		close(t.done)
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
