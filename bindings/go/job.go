package jobrunner

// #include <stdint.h>
// #include <stdlib.h>
// #include "jobrunner.h"
//
// extern enum jr_status jrgo_submit(jr_pool *pool, uintptr_t handle, jr_submit_options *opts,
//                              jr_job **out);
import "C"

import (
	"context"
	"runtime"
	"runtime/cgo"
	"sync"
	"unsafe"
)

// State is where a job is in its life.
type State int

// The states of a job, in the order it goes through them; it ends in one of the last
// four.
const (
	Delayed        State = C.JR_JOB_DELAYED        // waiting for its delay
	WaitingPermit  State = C.JR_JOB_WAITING_PERMIT // waiting for semaphore permits or a group's limit
	Queued         State = C.JR_JOB_QUEUED         // ready to run
	Running        State = C.JR_JOB_RUNNING        // running
	Succeeded      State = C.JR_JOB_SUCCEEDED      // ended: returned no error
	Failed         State = C.JR_JOB_FAILED         // ended: returned an error
	Panicked       State = C.JR_JOB_PANICKED       // ended: panicked
	CancelledState State = C.JR_JOB_CANCELLED      // ended: cancelled, before or while running
)

var stateNames = [...]string{"Delayed", "WaitingPermit", "Queued", "Running", "Succeeded", "Failed", "Panicked", "Cancelled"}

// String names the state.
func (s State) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "State(?)"
}

// Ended reports whether the state is a terminal one.
func (s State) Ended() bool { return s >= Succeeded }

// Job is a Go job submitted with Submit, and its result of type T. Its methods are
// safe for concurrent use.
type Job[T any] struct {
	ptr  *C.jr_job
	ref  handleRef
	task *task

	value T // written by the job's function, read after task.done is closed

	once sync.Once
	err  error // the outcome, computed once by the first Wait
}

// Submit runs fn on pool and returns the job's handle.
//
// ctx cancels the job when it is done: a job that has not started ends cancelled
// without running; a running one sees its own context done. Inside the job, fn's ctx
// carries ctx's values and deadline and is done when the job is asked to stop (ctx,
// Job.Cancel, the deadline, a pool shut down with Cancel). A job whose fn returns an
// error after its ctx was done ends cancelled.
//
// Submit waits for room in a bounded queue until ctx is done (unless NonBlocking),
// and fails with ErrShutdown on a pool shut down. Close the job when done with it (a
// finalizer does it otherwise); closing does not cancel it.
func Submit[T any](pool *Pool, ctx context.Context, fn func(ctx context.Context) (T, error), opts ...SubmitOption) (*Job[T], error) {
	j := &Job[T]{}
	t := &task{parent: ctx, done: make(chan struct{})}
	t.fn = func(ctx context.Context) error {
		v, err := fn(ctx)
		j.value = v
		return err
	}
	j.task = t
	if err := submitTask(pool, ctx, t, nil, opts, &j.ptr); err != nil {
		return nil, err
	}
	runtime.SetFinalizer(j, (*Job[T]).Close)
	return j, nil
}

// submitTask submits a Go task to pool (to group, if not nil), with a token that
// follows ctx unless the task is a group's (its jobs follow the group's token). out
// receives the handle (nil: detached).
func submitTask(pool *Pool, ctx context.Context, t *task, group *C.jr_group, opts []SubmitOption, out **C.jr_job) error {
	copts, cleanup, err := submitOptions(opts)
	if err != nil {
		return err
	}
	defer cleanup()
	if group == nil {
		if t.token, err = newCtxToken(ctx); err != nil {
			return err
		}
		copts.token = t.token.ptr()
	} else {
		copts.group = group
	}
	ptr, err := pool.acquire()
	if err != nil {
		t.token.release()
		return err
	}
	h := cgo.NewHandle(t)
	var job *C.jr_job
	pout := &job // Go memory holding no Go pointer, as cgo requires (out may not be)
	if out == nil {
		pout = nil
	}
	st := C.jrgo_submit(ptr, C.uintptr_t(h), &copts, pout)
	pool.release()
	if out != nil {
		*out = job
	}
	if st != C.JR_OK {
		// Nothing was submitted: the argument is still ours.
		h.Delete()
		err := statusError(st)
		if st == C.JR_E_CANCELLED { // the token was cancelled while waiting for room
			err = cancelledError(t.token.cause(), nil)
		}
		t.token.release()
		return err
	}
	return nil
}

// defaultSubmitOptions is jr_submit_options_default(), read once (a cgo call per
// submit would cost more than the rest of the options).
var defaultSubmitOptions = C.jr_submit_options_default()

// noCleanup is submitOptions' cleanup when there is nothing to free.
func noCleanup() {}

// submitOptions builds the C options; cleanup frees what they hold, after the submit.
func submitOptions(opts []SubmitOption) (C.jr_submit_options, func(), error) {
	copts := defaultSubmitOptions
	if len(opts) == 0 {
		return copts, noCleanup, nil
	}
	var cfg submitConfig
	for _, o := range opts {
		o.applySubmit(&cfg)
	}
	var name *C.char
	var sem *Semaphore
	cleanup := func() {
		if name != nil {
			C.free(unsafe.Pointer(name))
		}
		if sem != nil {
			sem.ref.done(sem.free)
		}
	}
	if cfg.delay < 0 {
		return copts, noCleanup, ErrInvalidArg
	}
	copts.delay_ns = C.int64_t(cfg.delay)
	if cfg.nonblocking {
		copts.nonblocking = 1
	}
	copts.arg_free = C.jr_free_fn(cfg.argFree)
	copts.result_free = C.jr_free_fn(cfg.resultFree)
	if cfg.sem != nil {
		if cfg.permits < 1 {
			return copts, noCleanup, ErrInvalidArg
		}
		if !cfg.sem.ref.use() {
			return copts, noCleanup, ErrClosed
		}
		sem = cfg.sem
		copts.sem = sem.ptr
		copts.permits = C.uint64_t(cfg.permits)
	}
	if cfg.name != "" {
		name = C.CString(cfg.name) // copied by jr_submit
		copts.name = name
	}
	return copts, cleanup, nil
}

// Done returns a channel closed when the job has ended (ran, or never will), for use
// in a select. State may say Running for a few microseconds after it is closed; Wait
// never returns before the job has ended.
func (j *Job[T]) Done() <-chan struct{} { return j.task.done }

// Wait waits for the job to end and returns its result: the value and nil, or the zero
// value and a *JobError (fn's error, wrapped), a *PanicError, or an error matching
// ErrCancelled (and its cause: context.DeadlineExceeded, ...). If ctx is done first,
// Wait returns ctx.Err() and the job goes on.
//
// Inside a job (ctx is the job's context, or derived from it), Wait waits as the C
// API does: a job that has not started runs inline on this worker, so nested
// submit-and-wait never deadlocks, even on one thread; such a wait is not interrupted
// by ctx.
func (j *Job[T]) Wait(ctx context.Context) (T, error) {
	if ctx.Value(jobContextKey{}) != nil {
		select {
		case <-j.task.done:
		default:
			if j.ref.use() {
				C.jr_job_wait(j.ptr, -1)
				j.ref.done(j.free)
			}
		}
	}
	select {
	case <-j.task.done:
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
	j.once.Do(func() {
		if !j.ref.use() {
			j.err = j.task.outcomeWithoutHandle()
			return
		}
		defer j.ref.done(j.free)
		st := C.jr_job_wait(j.ptr, -1) // ended, or about to: done is closed
		j.err = j.task.outcome(st, j.ptr)
	})
	if j.err != nil {
		var zero T
		return zero, j.err
	}
	return j.value, nil
}

// State returns where the job is in its life (CancelledState after Close, if it had
// not ended).
func (j *Job[T]) State() State {
	if !j.ref.use() {
		return CancelledState
	}
	defer j.ref.done(j.free)
	var s C.enum_jr_state
	C.jr_job_state(j.ptr, &s)
	return State(s)
}

// Cancel cancels the job: one that has not started ends cancelled at once and never
// runs (Cancel returns true); a running one sees its context done (Cancel returns
// false, as it does for a job that has ended).
func (j *Job[T]) Cancel() bool {
	if !j.ref.use() {
		return false
	}
	defer j.ref.done(j.free)
	return C.jr_job_cancel(j.ptr) == C.JR_OK
}

// Close frees the job's handle; the job goes on if it has not ended (detached). After
// Close, Wait still reports the outcome, without the C detail of a job that ran
// outside Go. Calling it again does nothing.
func (j *Job[T]) Close() error {
	j.ref.close(j.free)
	runtime.SetFinalizer(j, nil)
	return nil
}

func (j *Job[T]) free() { C.jr_job_free(j.ptr) }

// outcomeWithoutHandle is the outcome of a Go job whose handle was closed, from what
// the Go side saw.
func (t *task) outcomeWithoutHandle() error {
	t.mu.Lock()
	ran, p, err := t.ran, t.panicked, t.err
	t.mu.Unlock()
	switch {
	case !ran:
		return t.outcome(C.JR_E_CANCELLED, nil)
	case p != nil:
		return t.outcome(C.JR_E_PANICKED, nil)
	case err != nil && t.cause != nil:
		return t.outcome(C.JR_E_CANCELLED, nil)
	case err != nil:
		return t.outcome(C.JR_E_JOB_FAILED, nil)
	default:
		return nil
	}
}
