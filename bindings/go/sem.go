package jobrunner

// #include "jobrunner.h"
import "C"

import (
	"context"
	"runtime"
)

// Semaphore is a counting, weighted, FIFO-fair semaphore: the C library's, so C,
// Rust and Python code in the process can share it. Jobs can wait for its permits
// without holding a worker (WithSemaphore). Its methods are safe for concurrent use.
type Semaphore struct {
	ptr *C.jr_sem
	ref handleRef
}

// NewSemaphore makes a semaphore with n permits. It panics if n < 1. Close it when
// done (a finalizer does it otherwise).
func NewSemaphore(n int64) *Semaphore {
	if n < 1 {
		panic("jobrunner: NewSemaphore: n must be at least 1")
	}
	s := &Semaphore{}
	if st := C.jr_sem_new(C.uint64_t(n), &s.ptr); st != C.JR_OK {
		panic("jobrunner: NewSemaphore: " + statusError(st).Error())
	}
	runtime.SetFinalizer(s, (*Semaphore).Close)
	return s
}

func (s *Semaphore) free() { C.jr_sem_free(s.ptr) }

// Acquire takes n permits, waiting in FIFO order until they are free or ctx is done
// (then it returns ctx.Err() and takes none). Inside a job, the worker runs other work
// while it waits. It returns ErrInvalidArg if n is below 1 or above the total.
func (s *Semaphore) Acquire(ctx context.Context, n int64) error {
	if n < 1 {
		return ErrInvalidArg
	}
	return ctxWait(ctx, &s.ref, s.free, func(tok *C.jr_token) C.enum_jr_status {
		return C.jr_sem_acquire(s.ptr, C.uint64_t(n), -1, tok)
	})
}

// TryAcquire takes n permits if they are free now (and nobody queues before), without
// waiting, and reports whether it did.
func (s *Semaphore) TryAcquire(n int64) bool {
	if n < 1 || !s.ref.use() {
		return false
	}
	defer s.ref.done(s.free)
	return C.jr_sem_try_acquire(s.ptr, C.uint64_t(n)) == C.JR_OK
}

// Release gives back n permits, waking the waiters (threads and jobs) in order. It
// panics if more are released than were taken, as golang.org/x/sync/semaphore does.
func (s *Semaphore) Release(n int64) {
	if !s.ref.use() {
		panic("jobrunner: Semaphore.Release after Close")
	}
	defer s.ref.done(s.free)
	if n < 1 || C.jr_sem_release(s.ptr, C.uint64_t(n)) != C.JR_OK {
		panic("jobrunner: Semaphore.Release: released more permits than were taken")
	}
}

// Available returns the permits free now.
func (s *Semaphore) Available() int64 {
	if !s.ref.use() {
		return 0
	}
	defer s.ref.done(s.free)
	var n C.uint64_t
	C.jr_sem_available(s.ptr, &n)
	return int64(n)
}

// Close frees the semaphore's handle. Jobs already submitted with it still get and
// return their permits. Calling it again does nothing.
func (s *Semaphore) Close() error {
	s.ref.close(s.free)
	runtime.SetFinalizer(s, nil)
	return nil
}
