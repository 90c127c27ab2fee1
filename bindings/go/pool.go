package jobrunner

// #include <stdlib.h>
// #include "jobrunner.h"
//
// extern enum jr_status jrgo_add_hooks(jr_pool *pool);
import "C"

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"time"
	"unsafe"
)

// Version is the version of the jobrunner library linked in, "MAJOR.MINOR.PATCH".
func Version() string { return C.GoString(C.jr_version()) }

// Pool is a pool of worker threads shared with every language in the process that
// uses it: C, Rust, Python and Go jobs can all run on it. Its methods are safe for
// concurrent use.
type Pool struct {
	ptr      *C.jr_pool
	ref      handleRef
	borrowed bool // the global pool: never freed
}

// NewPool makes a pool. Close it when done (a finalizer closes a forgotten one).
func NewPool(opts ...PoolOption) (*Pool, error) {
	var cfg poolConfig
	for _, o := range opts {
		o.applyPool(&cfg)
	}
	if cfg.threads < 0 || cfg.capacity < 0 {
		return nil, ErrInvalidArg
	}
	copts := C.jr_pool_options_default()
	copts.threads = C.size_t(cfg.threads)
	copts.queue_capacity = C.size_t(cfg.capacity)
	if cfg.name != "" {
		copts.thread_name = C.CString(cfg.name) // copied by jr_pool_new
		defer C.free(unsafe.Pointer(copts.thread_name))
	}
	p := &Pool{}
	if st := C.jr_pool_new(&copts, &p.ptr); st != C.JR_OK {
		return nil, statusError(st)
	}
	if st := C.jrgo_add_hooks(p.ptr); st != C.JR_OK {
		C.jr_pool_free(p.ptr)
		return nil, statusError(st)
	}
	// A forgotten pool is closed in the background: Close drains, and the finalizer
	// goroutine must not wait for that.
	runtime.SetFinalizer(p, func(p *Pool) { go p.Close() })
	return p, nil
}

var (
	defaultPool     *Pool
	defaultPoolOnce sync.Once
)

// Default returns the process-wide pool, shared with C's jr_pool_global() and Rust's
// jobrunner::global() (sized by JOBRUNNER_THREADS, one thread per CPU by default). It
// panics if the pool cannot start. Close on it does nothing.
func Default() *Pool {
	defaultPoolOnce.Do(func() {
		ptr := C.jr_pool_global()
		if ptr == nil {
			panic("jobrunner: the global pool could not start (check JOBRUNNER_THREADS)")
		}
		if st := C.jrgo_add_hooks(ptr); st != C.JR_OK {
			panic("jobrunner: jr_pool_add_thread_hooks on the global pool: " + statusError(st).Error())
		}
		defaultPool = &Pool{ptr: ptr, borrowed: true}
	})
	return defaultPool
}

// acquire takes a use of the C pool for one call.
func (p *Pool) acquire() (*C.jr_pool, error) {
	if !p.ref.use() {
		return nil, ErrClosed
	}
	return p.ptr, nil
}

func (p *Pool) release() { p.ref.done(p.free) }

func (p *Pool) free() {
	if !p.borrowed {
		C.jr_pool_free(p.ptr)
	}
}

// ShutdownMode says what Shutdown does with the jobs that have not ended.
type ShutdownMode uint32

const (
	// Drain runs everything already accepted (delayed jobs when they come due).
	Drain ShutdownMode = C.JR_SHUTDOWN_DRAIN
	// Cancel ends every queued and delayed job cancelled and cancels the running jobs'
	// contexts.
	Cancel ShutdownMode = C.JR_SHUTDOWN_CANCEL
	// DrainThenCancel drains until ctx's deadline, then cancels what is left.
	DrainThenCancel ShutdownMode = C.JR_SHUTDOWN_DRAIN | C.JR_SHUTDOWN_CANCEL
)

// Shutdown shuts the pool down: from now on every submit fails with ErrShutdown. It
// waits for the jobs to end until ctx's deadline (ErrTimeout, which also matches
// context.DeadlineExceeded) or until ctx is done otherwise (ctx.Err(); the shutdown
// goes on). Calling it again is allowed, e.g. Cancel after a Drain that timed out.
// Called from inside one of the pool's jobs it does not wait.
func (p *Pool) Shutdown(ctx context.Context, mode ShutdownMode) error {
	ptr, err := p.acquire()
	if err != nil {
		return err
	}
	timeout := int64(-1)
	if deadline, ok := ctx.Deadline(); ok {
		timeout = max(int64(time.Until(deadline)), 0)
	}
	result := make(chan C.enum_jr_status, 1)
	go func() {
		defer p.release()
		result <- C.jr_pool_shutdown(ptr, C.uint32_t(mode), C.int64_t(timeout))
	}()
	var st C.enum_jr_status
	select {
	case st = <-result:
	case <-ctx.Done():
		if timeout < 0 || ctx.Err() != context.DeadlineExceeded {
			return ctx.Err()
		}
		// The deadline the C call was given has passed too: its own verdict (ended
		// just in time, or timed out) comes at once.
		st = <-result
	}
	if st == C.JR_E_TIMEOUT {
		return fmt.Errorf("%w: %w", ErrTimeout, context.DeadlineExceeded)
	}
	return statusError(st)
}

// Close shuts the pool down with Drain, waits for every job to end, and frees it.
// Calling it again does nothing; on the Default pool it does nothing.
func (p *Pool) Close() error {
	if p.borrowed {
		return nil
	}
	if p.ref.use() {
		C.jr_pool_shutdown(p.ptr, C.JR_SHUTDOWN_DRAIN, -1)
		p.ref.done(p.free)
	}
	p.ref.close(p.free)
	runtime.SetFinalizer(p, nil)
	return nil
}

// Stats is a snapshot of a pool's counters. Once the pool is idle, Submitted =
// Succeeded + Failed + Panicked + Cancelled + Queued + Running.
type Stats struct {
	Submitted            uint64 // jobs accepted by a submit
	Started              uint64 // jobs that started running
	Succeeded            uint64 // jobs that succeeded
	Failed               uint64 // jobs that failed
	Panicked             uint64 // jobs that panicked
	Cancelled            uint64 // jobs that ended cancelled, before or while running
	CancelledBeforeStart uint64 // of Cancelled, the jobs that never ran
	Queued               uint64 // jobs accepted and not yet started or cancelled
	Running              uint64 // jobs running now
	Steals               uint64 // jobs taken from another worker's queue
	Parks                uint64 // times a worker went to sleep
	Unparks              uint64 // times a sleeping worker was woken
	Threads              uint64 // worker threads (the configured number)
	SpareThreads         uint64 // spare workers running in place of workers blocked in a channel wait
}

// Stats returns a snapshot of the pool's counters (zero after Close).
func (p *Pool) Stats() Stats {
	ptr, err := p.acquire()
	if err != nil {
		return Stats{}
	}
	defer p.release()
	var s C.jr_stats
	s.size = C.sizeof_jr_stats
	C.jr_pool_stats(ptr, &s)
	return Stats{
		Submitted:            uint64(s.submitted),
		Started:              uint64(s.started),
		Succeeded:            uint64(s.succeeded),
		Failed:               uint64(s.failed),
		Panicked:             uint64(s.panicked),
		Cancelled:            uint64(s.cancelled),
		CancelledBeforeStart: uint64(s.cancelled_before_start),
		Queued:               uint64(s.queued),
		Running:              uint64(s.running),
		Steals:               uint64(s.steals),
		Parks:                uint64(s.parks),
		Unparks:              uint64(s.unparks),
		Threads:              uint64(s.threads),
		SpareThreads:         uint64(s.spare_threads),
	}
}
