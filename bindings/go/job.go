package jobrunner

// #include <stdint.h>
// #include <stdlib.h>
// #include "jobrunner.h"
//
// typedef struct {
// 	enum jr_status status;
// 	jr_job *job;
// } jrgo_submitted;
// extern jrgo_submitted jrgo_submit(jr_pool *pool, uintptr_t id, jr_submit_options opts);
// extern jrgo_submitted jrgo_submit_simple(uintptr_t pool, uintptr_t id, uintptr_t token,
//                                          uintptr_t group);
import "C"

import (
	"context"
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
	task task // its Go side (the task table holds &task while the job runs)
	fn   func(ctx context.Context) (T, error)

	value T // written by the job's function, read once the task has ended
}

// call runs the job's function and keeps its value (the task's body).
func (j *Job[T]) call(ctx context.Context) error {
	v, err := j.fn(ctx)
	j.value = v
	return err
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
// and fails with ErrShutdown on a pool shut down. The job's C handle is released once
// the job is seen to end (told by its worker, or by Wait, Done, State, or a Close made
// before the end), or else by a finalizer once the Job and the other jobs whose handles
// share its block of 64 are garbage collected; closing does not cancel the job.
func Submit[T any](pool *Pool, ctx context.Context, fn func(ctx context.Context) (T, error), opts ...SubmitOption) (*Job[T], error) {
	h := newJobHandle()  // first: its atomic add does not wait for the Job's stores
	j := &Job[T]{fn: fn} // one allocation for the Job and its task
	j.task.h = h
	j.task.jc.parent = ctx
	j.task.body = j
	if err := submitTask(pool, ctx, &j.task, nil, opts); err != nil {
		return nil, err
	}
	return j, nil
}

// submitTask submits a Go task to pool: a group's (detached, following the group's
// token) if group is not nil, else a job with a handle (t.h) and a token that follows
// ctx.
func submitTask(pool *Pool, ctx context.Context, t *task, group *C.jr_group, opts []SubmitOption) error {
	var copts C.jr_submit_options // built only for options: C has its own defaults
	if len(opts) > 0 {
		var cleanup func()
		var err error
		if copts, cleanup, err = submitOptions(opts); err != nil {
			return err
		}
		defer cleanup()
	}
	var token *C.jr_token
	var err error
	if group == nil {
		if t.token, err = jobCtxToken(ctx); err != nil {
			return err
		}
		token = t.token.ptr()
	} else {
		t.cEnded = true // no handle: the Go side's end is the task's
	}
	ptr, err := pool.acquire()
	if err != nil {
		t.token.release()
		return err
	}
	id := tasks.put(t)
	var r C.jrgo_submitted
	if len(opts) == 0 {
		// Integers only: cgo has no pointer argument to check.
		r = C.jrgo_submit_simple(C.uintptr_t(uintptr(unsafe.Pointer(ptr))), C.uintptr_t(id),
			C.uintptr_t(uintptr(unsafe.Pointer(token))), C.uintptr_t(uintptr(unsafe.Pointer(group))))
	} else {
		copts.token, copts.group = token, group
		r = C.jrgo_submit(ptr, C.uintptr_t(id), copts)
	}
	st, job := r.status, r.job
	pool.release()
	if st != C.JR_OK {
		// Nothing was submitted: the number is still ours.
		tasks.take(id)
		err := statusError(st)
		if st == C.JR_E_CANCELLED { // the token was cancelled while waiting for room
			err = cancelledError(t.token.cause(), nil)
		}
		t.token.release()
		if group == nil {
			t.h.ref.publish(t.h.freeLater) // nil ptr: nothing to free
		}
		t.h.close()
		return err
	}
	if group == nil {
		// The handle's first use, ours, ends here: the job may have ended, and a worker
		// that told its end closed the handle, before the submit returned; then the
		// free is ours.
		t.h.ptr = job
		t.h.ref.publish(t.h.freeLater)
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
// in a select: C's state is terminal by then (State says so, Wait does not block). The
// first Done of a job still going registers a done callback with C (jr_job_on_done).
func (j *Job[T]) Done() <-chan struct{} { return j.task.doneChan() }

// Wait waits for the job to end and returns its result: the value and nil, or the zero
// value and a *JobError (fn's error, wrapped), a *PanicError, or an error matching
// ErrCancelled (and its cause: context.DeadlineExceeded, ...). If ctx is done first,
// Wait returns ctx.Err() and the job goes on.
//
// Inside a job (ctx is the job's context, or derived from it), a job that has not
// started runs inline on this worker, as the C API's waits do, so nested
// submit-and-wait never deadlocks, even on one thread; one that runs elsewhere (or
// waits for its delay or its permits) is waited for in slices of inJobWaitSlice,
// between which ctx is looked at.
func (j *Job[T]) Wait(ctx context.Context) (T, error) {
	t := &j.task
	if !t.ended.Load() {
		if ctx.Value(jobContextKey{}) != nil {
			for !t.ended.Load() && ctx.Err() == nil && t.h.use() {
				st := C.jr_job_wait(t.h.ptr, C.int64_t(inJobWaitSlice))
				t.h.done()
				if st != C.JR_E_TIMEOUT {
					t.cEnd(endState(st))
				}
			}
		} else {
			t.look()
		}
		if !t.ended.Load() {
			select {
			case <-t.doneChan():
			case <-ctx.Done():
				var zero T
				return zero, ctx.Err()
			}
		}
	}
	if t.state == Succeeded { // read once ended is seen; no error to build
		return j.value, nil
	}
	if err := t.waitErr(t.state); err != nil {
		var zero T
		return zero, err
	}
	return j.value, nil
}

// inJobWaitSlice is how long (ns) one C wait lasts when Wait is called inside a job: a
// job that runs elsewhere is waited for in such slices, ctx looked at between them, and
// one that becomes runnable meanwhile (its delay passed, its permits granted) is run
// inline at the next slice.
const inJobWaitSlice = 5_000_000

// State returns where the job is in its life.
func (j *Job[T]) State() State {
	t := &j.task
	t.mu.Lock()
	known, s := t.cEnded, t.state
	t.mu.Unlock()
	if known {
		return s
	}
	if !t.h.use() {
		// The handle is freed once the job has ended (or it never had one): the end
		// is known by then, unless it came just now.
		t.look()
		t.mu.Lock()
		defer t.mu.Unlock()
		return t.state
	}
	s = t.h.cState()
	t.h.done()
	if s.Ended() {
		t.cEnd(s)
	}
	return s
}

// Cancel cancels the job: one that has not started ends cancelled at once and never
// runs (Cancel returns true); a running one sees its context done (Cancel returns
// false, as it does for a job that has ended).
func (j *Job[T]) Cancel() bool {
	t := &j.task
	if !t.h.use() {
		return false
	}
	prevented := C.jr_job_cancel(t.h.ptr) == C.JR_OK
	t.h.done()
	if prevented {
		t.cEnd(CancelledState)
	}
	return prevented
}

// Close releases the job's handle: at once if the job has ended, else when it ends (a
// done callback is registered). Until then State, Cancel, Done and Wait work as
// before; a job nobody closes has its handle released when it is seen to end, or, if
// nothing ever looks, by a finalizer (see the package docs). A released handle is
// freed with the next 63, in one cgo call, or within about 5 ms if fewer come. Calling
// it again does nothing.
func (j *Job[T]) Close() error {
	t := &j.task
	t.watchEnd()
	if t.ended.Load() {
		// The end path closes the handle too, but after it has woken the waiters: a
		// Wait that returned may come here first.
		t.h.close()
	}
	return nil
}
