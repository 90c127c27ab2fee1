package jobrunner

// #include <stdint.h>
// #include "jobrunner.h"
//
// typedef struct {
// 	enum jr_status status;
// 	jr_job *job;
// } jrgo_submitted;
// extern jrgo_submitted jrgo_submit_native(jr_pool *pool, void *fn, void *arg,
//                                          jr_submit_options opts);
// extern jrgo_submitted jrgo_submit_native_simple(uintptr_t pool, uintptr_t fn, void *arg,
//                                                 uintptr_t token);
// typedef struct {
// 	enum jr_status status;
// 	void *result;
// } jrgo_result;
// extern jrgo_result jrgo_wait_take(jr_job *job);
import "C"

import (
	"context"
	"runtime"
	"unsafe"
)

// NativeJob is a C job submitted with SubmitNative: it runs on a worker without
// entering Go. Its methods are safe for concurrent use.
type NativeJob struct {
	h     *jobHandle
	token *ctxToken
}

// SubmitNative runs the C function fn (a jr_job_fn: int32_t fn(jr_ctx *, void *arg,
// void **result)) with arg on pool, without entering Go. arg is given to C as is: it
// must not point to Go memory (cgo's rules; use C memory, and WithArgFree to free it
// when the job ends). ctx cancels the job as for Submit. Close the job (or take its
// result with Wait) when done with it: a job dropped unclosed keeps its handle, and a
// result not taken, until the finalizer of its block of 64 handles runs.
func SubmitNative(pool *Pool, ctx context.Context, fn, arg unsafe.Pointer, opts ...SubmitOption) (*NativeJob, error) {
	if fn == nil {
		return nil, ErrInvalidArg
	}
	copts, cleanup, err := submitOptions(opts)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	j := &NativeJob{h: newJobHandle()}
	if j.token, err = jobCtxToken(ctx); err != nil {
		return nil, err
	}
	copts.token = j.token.ptr()
	ptr, err := pool.acquire()
	if err != nil {
		j.token.release()
		return nil, err
	}
	var r C.jrgo_submitted
	if len(opts) == 0 {
		// Integers but arg: cgo has no options struct to check.
		r = C.jrgo_submit_native_simple(C.uintptr_t(uintptr(unsafe.Pointer(ptr))),
			C.uintptr_t(uintptr(fn)), arg, C.uintptr_t(uintptr(unsafe.Pointer(j.token.ptr()))))
	} else {
		r = C.jrgo_submit_native(ptr, fn, arg, copts)
	}
	st, job := r.status, r.job
	pool.release()
	if st != C.JR_OK {
		err := statusError(st)
		if st == C.JR_E_CANCELLED {
			err = cancelledError(j.token.cause(), nil)
		}
		j.token.release()
		return nil, err
	}
	j.h.ptr = job
	j.h.ref.publish(j.free) // its submitter's use (see jobHandle)
	if j.token != nil {
		// Only a job with a token needs its own finalizer (to release the token if it
		// is dropped unclosed); its handle's block frees the handle in any case.
		runtime.SetFinalizer(j, (*NativeJob).Close)
	}
	return j, nil
}

// WithArgFree gives a C function (a jr_free_fn: void free_fn(void *)) that frees a
// native job's arg once the job has ended, whether it ran or not (not called if the
// submit fails). For SubmitNative only.
func WithArgFree(fn unsafe.Pointer) SubmitOption {
	return submitOptionFunc(func(c *submitConfig) { c.argFree = fn })
}

// WithResultFree gives a C function (a jr_free_fn) that frees a native job's result
// nobody took (Close before Wait, a failed job). For SubmitNative only.
func WithResultFree(fn unsafe.Pointer) SubmitOption {
	return submitOptionFunc(func(c *submitConfig) { c.resultFree = fn })
}

// Wait waits for the job to end and returns its result, which the caller owns from
// then on (a second Wait returns nil), or a *JobError (the C job's code and the
// message it gave jr_ctx_fail), a *PanicError, or an error matching ErrCancelled. If
// ctx is done first, Wait returns ctx.Err() and the job goes on (the C wait it started
// ends when the job does).
func (j *NativeJob) Wait(ctx context.Context) (unsafe.Pointer, error) {
	if !j.h.use() {
		return nil, ErrClosed
	}
	if ctx.Done() == nil {
		return j.wait()
	}
	type outcome struct {
		result unsafe.Pointer
		err    error
	}
	c := make(chan outcome, 1)
	go func() {
		r, err := j.wait()
		c <- outcome{r, err}
	}()
	select {
	case o := <-c:
		return o.result, o.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// wait waits for the job in C and takes its result, ending the use Wait took.
func (j *NativeJob) wait() (unsafe.Pointer, error) {
	defer j.h.ref.done(j.free)
	r := C.jrgo_wait_take(j.h.ptr)
	if r.status != C.JR_OK {
		return nil, j.failure(r.status)
	}
	return r.result, nil
}

// failure maps an ended native job's status to its error.
func (j *NativeJob) failure(st C.enum_jr_status) error {
	switch st {
	case C.JR_E_JOB_FAILED:
		var code C.int32_t
		C.jr_job_error_code(j.h.ptr, &code)
		je := &JobError{Code: int32(code)}
		if msg := C.jr_job_error_message(j.h.ptr); msg != nil {
			je.Message = C.GoString(msg)
		}
		return je
	case C.JR_E_PANICKED:
		return cPanic(j.h.ptr)
	case C.JR_E_CANCELLED:
		return cancelledError(j.token.cause(), nil)
	default:
		return statusError(st)
	}
}

// State returns where the job is in its life.
func (j *NativeJob) State() State {
	if !j.h.use() {
		return CancelledState
	}
	defer j.h.ref.done(j.free)
	var s C.enum_jr_state
	C.jr_job_state(j.h.ptr, &s)
	return State(s)
}

// Cancel cancels the job, as Job.Cancel.
func (j *NativeJob) Cancel() bool {
	if !j.h.use() {
		return false
	}
	defer j.h.ref.done(j.free)
	return C.jr_job_cancel(j.h.ptr) == C.JR_OK
}

// Close frees the job's handle (the job goes on, detached; a result not taken is
// freed with WithResultFree's function) and stops following the submit context.
// Calling it again does nothing.
func (j *NativeJob) Close() error {
	j.h.ref.close(j.free)
	if j.token != nil {
		runtime.SetFinalizer(j, nil)
	}
	return nil
}

// free frees the handle and releases the token, once Close was called and no call uses
// them: a Wait still in flight reads the token's cause when the job was cancelled.
func (j *NativeJob) free() {
	j.h.free()
	j.token.release()
}
