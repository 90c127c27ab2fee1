package jobrunner

// #include "jobrunner.h"
import "C"

import (
	"context"
	"errors"
	"fmt"
)

// Errors returned for the statuses of the C API. Compare with errors.Is: the errors a
// job's Wait returns wrap them together with their cause.
var (
	// ErrInvalidArg reports an argument the library refused (JR_E_INVALID_ARG).
	ErrInvalidArg = errors.New("jobrunner: invalid argument")
	// ErrNoMemory reports that a resource (memory, a thread) could not be had
	// (JR_E_NO_MEMORY).
	ErrNoMemory = errors.New("jobrunner: out of resources")
	// ErrShutdown reports a submit to a pool that is shutting down or shut down
	// (JR_E_SHUTDOWN), or a job cancelled by such a shutdown.
	ErrShutdown = errors.New("jobrunner: pool shut down")
	// ErrFull reports a full bounded queue for a NonBlocking submit (JR_E_FULL).
	ErrFull = errors.New("jobrunner: queue full")
	// ErrEmpty reports that nothing was there to take now: a Chan's TryRecv
	// (JR_E_EMPTY).
	ErrEmpty = errors.New("jobrunner: empty")
	// ErrTimeout reports a wait that ended before what it waited for (JR_E_TIMEOUT).
	ErrTimeout = errors.New("jobrunner: timed out")
	// ErrCancelled reports a job that ended cancelled, before or while running
	// (JR_E_CANCELLED). The error a Wait returns also wraps the cause when it is known:
	// context.DeadlineExceeded for a deadline, the submit context's cause, ErrShutdown.
	ErrCancelled = errors.New("jobrunner: cancelled")
	// ErrClosed reports the use of a handle after its Close (or a closed C group,
	// JR_E_CLOSED).
	ErrClosed = errors.New("jobrunner: closed")
	// ErrInternal reports a bug in jobrunner (JR_E_INTERNAL).
	ErrInternal = errors.New("jobrunner: internal error")
	// ErrForked reports a handle made before fork() used in the child (JR_E_FORKED).
	ErrForked = errors.New("jobrunner: handle made before fork()")
)

// JobError is the error of a job that failed: its function returned a non-nil error
// (a Go job) or a nonzero code (a C job).
type JobError struct {
	// Code is the job's error code: a C job's return value; for a Go job, 1, or the
	// Code of a *JobError the function returned.
	Code int32
	// Message is the failure's message (the Go error's text, or what a C job gave
	// jr_ctx_fail).
	Message string
	// Err is the error a Go job's function returned (nil for a C job).
	Err error
}

// Error implements error.
func (e *JobError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("jobrunner: job failed with code %d", e.Code)
	}
	return fmt.Sprintf("jobrunner: job failed: %s", e.Message)
}

// Unwrap gives the error the Go job returned, so that errors.Is and errors.As see it.
func (e *JobError) Unwrap() error { return e.Err }

// PanicError is the error of a job that panicked. The worker and the process live on.
type PanicError struct {
	// Value is what the Go job's function panicked with (nil for a C or Rust job).
	Value any
	// Stack is the goroutine's stack at the panic (nil for a C or Rust job).
	Stack []byte
	// Message is the panic's message as the C API reports it (for a Go job, the
	// value and the stack).
	Message string
}

// Error implements error.
func (e *PanicError) Error() string {
	if e.Stack != nil {
		return fmt.Sprintf("jobrunner: job panicked: %v", e.Value)
	}
	return "jobrunner: job panicked: " + e.Message
}

// statusError maps a status of the C API to an error (nil for JR_OK). The job statuses
// (JR_E_JOB_FAILED, JR_E_PANICKED) are mapped by the job, which knows their detail.
func statusError(st C.enum_jr_status) error {
	switch st {
	case C.JR_OK:
		return nil
	case C.JR_E_INVALID_ARG:
		return ErrInvalidArg
	case C.JR_E_NO_MEMORY:
		return ErrNoMemory
	case C.JR_E_SHUTDOWN:
		return ErrShutdown
	case C.JR_E_FULL:
		return ErrFull
	case C.JR_E_TIMEOUT:
		return ErrTimeout
	case C.JR_E_EMPTY:
		return ErrEmpty
	case C.JR_E_CANCELLED:
		return ErrCancelled
	case C.JR_E_CLOSED:
		return ErrClosed
	case C.JR_E_FORKED:
		return ErrForked
	case C.JR_E_JOB_FAILED:
		return &JobError{Code: 1}
	case C.JR_E_PANICKED:
		return &PanicError{}
	default:
		return fmt.Errorf("%w: %s", ErrInternal, C.GoString(C.jr_status_str(C.int(st))))
	}
}

// cancelledError is ErrCancelled with its cause (nil if unknown) and, if the job's
// function returned one after it was asked to stop, the error it returned.
func cancelledError(cause, returned error) error {
	switch {
	case cause == nil && returned == nil:
		return ErrCancelled
	case returned == nil:
		return fmt.Errorf("%w: %w", ErrCancelled, cause)
	case cause == nil:
		return fmt.Errorf("%w (the job returned: %w)", ErrCancelled, returned)
	default:
		return fmt.Errorf("%w: %w (the job returned: %w)", ErrCancelled, cause, returned)
	}
}

// ctxWait makes one blocking C call on a handle under ctx's token (NULL if ctx can
// never be done), holding a use of the handle (ref, free) for it: ctx.Err() if ctx is
// done before, ErrClosed if the handle is freed, else the call's status as waitError
// maps it. The shape of Chan's sends and receives and Semaphore.Acquire.
func ctxWait(ctx context.Context, ref *handleRef, free func(),
	call func(tok *C.jr_token) C.enum_jr_status) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !ref.use() {
		return ErrClosed
	}
	defer ref.done(free)
	tok, err := newCtxToken(ctx)
	if err != nil {
		return err
	}
	defer tok.release()
	return waitError(ctx, call(tok.ptr()))
}

// waitError maps the status of a C wait that ctx's token could cancel: JR_E_CANCELLED
// is ctx's error, any other status is statusError's.
func waitError(ctx context.Context, st C.enum_jr_status) error {
	if st == C.JR_E_CANCELLED {
		return ctxDoneError(ctx)
	}
	return statusError(st)
}

// ctxDoneError is the error of a wait ended by ctx's token: ctx.Err(), or
// context.DeadlineExceeded if the C timer saw the deadline before Go did.
func ctxDoneError(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return context.DeadlineExceeded
}
