package jobrunner

import (
	"time"
	"unsafe"
)

// PoolOption configures NewPool.
type PoolOption interface {
	applyPool(*poolConfig)
}

// SubmitOption configures Submit, SubmitNative, and the jobs of a Group.
type SubmitOption interface {
	applySubmit(*submitConfig)
}

// GroupOption configures Pool.NewGroup.
type GroupOption interface {
	applyGroup(*groupConfig)
}

type poolConfig struct {
	threads  int
	capacity int
	name     string
}

type submitConfig struct {
	sem         *Semaphore
	permits     int64
	delay       time.Duration
	name        string
	nonblocking bool
	argFree     unsafe.Pointer // a C jr_free_fn, for native jobs
	resultFree  unsafe.Pointer // a C jr_free_fn, for native jobs
}

type groupConfig struct {
	limit    int
	failFast bool
}

type poolOptionFunc func(*poolConfig)

func (f poolOptionFunc) applyPool(c *poolConfig) { f(c) }

type submitOptionFunc func(*submitConfig)

func (f submitOptionFunc) applySubmit(c *submitConfig) { f(c) }

type groupOptionFunc func(*groupConfig)

func (f groupOptionFunc) applyGroup(c *groupConfig) { f(c) }

// WithThreads sets the number of worker threads of a pool (default: one per CPU).
func WithThreads(n int) PoolOption {
	return poolOptionFunc(func(c *poolConfig) { c.threads = n })
}

// WithQueueCapacity bounds the jobs submitted from outside the pool and not yet
// started (default: unbounded). A submit waits for room (until its context is done),
// or fails with ErrFull if NonBlocking.
func WithQueueCapacity(n int) PoolOption {
	return poolOptionFunc(func(c *poolConfig) { c.capacity = n })
}

// NameOption is what WithName returns: it names a pool's worker threads (a
// PoolOption) or a job, for debugging (a SubmitOption).
type NameOption string

func (n NameOption) applyPool(c *poolConfig)     { c.name = string(n) }
func (n NameOption) applySubmit(c *submitConfig) { c.name = string(n) }

// WithName names a pool's worker threads (their prefix) or a job.
func WithName(name string) NameOption { return NameOption(name) }

// WithSemaphore makes the job wait, holding no worker, for n permits of sem, which
// it gives back when it ends however it ends. Not for the jobs of a group with a limit.
func WithSemaphore(sem *Semaphore, n int64) SubmitOption {
	return submitOptionFunc(func(c *submitConfig) { c.sem, c.permits = sem, n })
}

// WithDelay runs the job no sooner than d from now.
func WithDelay(d time.Duration) SubmitOption {
	return submitOptionFunc(func(c *submitConfig) { c.delay = d })
}

// NonBlocking makes a submit to a full bounded queue fail with ErrFull at once
// instead of waiting for room.
func NonBlocking() SubmitOption {
	return submitOptionFunc(func(c *submitConfig) { c.nonblocking = true })
}

// WithLimit lets at most n of the group's jobs run at once; the others wait without
// holding a worker (errgroup's SetLimit, but Go does not block).
func WithLimit(n int) GroupOption {
	return groupOptionFunc(func(c *groupConfig) { c.limit = n })
}

// FailFast makes the first job of the group to fail or panic cancel the others:
// queued ones end cancelled without running, running ones see their context done, and
// the group's context is cancelled (errgroup's WithContext).
func FailFast() GroupOption {
	return groupOptionFunc(func(c *groupConfig) { c.failFast = true })
}
