package jobrunner

// #include <stdint.h>
// #include "jobrunner.h"
//
// typedef struct {
// 	enum jr_status status;
// 	uintptr_t item;
// } jrgo_received;
// extern enum jr_status jrgo_chan_new(size_t capacity, jr_chan **out);
// extern enum jr_status jrgo_chan_send(jr_chan *ch, uintptr_t item, int64_t timeout_ns,
//                                      jr_token *tok);
// extern jrgo_received jrgo_chan_recv(jr_chan *ch, int64_t timeout_ns, jr_token *tok);
import "C"

import (
	"context"
	"runtime"
)

// Chan is a bounded multi-producer, multi-consumer FIFO channel of T values: the C
// library's jr_chan, whose waits know the pool (inside a job, the pool lends a spare
// worker while the job waits, so producer and consumer jobs on a small pool still
// meet). Each value travels as a runtime/cgo.Handle. Its methods are safe for
// concurrent use.
type Chan[T any] struct {
	ptr *C.jr_chan
	ref handleRef
}

// NewChan makes a channel that buffers up to capacity values. It panics if capacity
// is below 1. Free it when done (a finalizer does it otherwise); values still buffered
// then are dropped.
func NewChan[T any](capacity int) *Chan[T] {
	if capacity < 1 {
		panic("jobrunner: NewChan: capacity must be at least 1")
	}
	c := &Chan[T]{}
	if st := C.jrgo_chan_new(C.size_t(capacity), &c.ptr); st != C.JR_OK {
		panic("jobrunner: NewChan: " + statusError(st).Error())
	}
	runtime.SetFinalizer(c, (*Chan[T]).Free)
	return c
}

func (c *Chan[T]) free() { C.jr_chan_free(c.ptr) }

// Send sends v, waiting for room until ctx is done. It returns ErrClosed if the
// channel is closed (before or while waiting), ctx.Err() if ctx is done first.
func (c *Chan[T]) Send(ctx context.Context, v T) error {
	return c.send(ctx, v, -1)
}

// TrySend sends v if there is room now: ErrFull if not, ErrClosed if closed.
func (c *Chan[T]) TrySend(v T) error {
	return c.send(context.Background(), v, 0)
}

func (c *Chan[T]) send(ctx context.Context, v T, timeoutNs int64) error {
	return ctxWait(ctx, &c.ref, c.free, func(tok *C.jr_token) C.enum_jr_status {
		h := newItem(v)
		st := C.jrgo_chan_send(c.ptr, h, C.int64_t(timeoutNs), tok)
		if st != C.JR_OK {
			dropItem(h) // not sent: still ours
		}
		return st
	})
}

// Recv receives a value, waiting until one comes or ctx is done. It returns
// ErrClosed once the channel is closed and drained, ctx.Err() if ctx is done first.
func (c *Chan[T]) Recv(ctx context.Context) (T, error) {
	return c.recv(ctx, -1)
}

// TryRecv receives a value if one is buffered now: ErrEmpty if not, ErrClosed if the
// channel is closed and drained.
func (c *Chan[T]) TryRecv() (T, error) {
	return c.recv(context.Background(), 0)
}

func (c *Chan[T]) recv(ctx context.Context, timeoutNs int64) (T, error) {
	var item C.uintptr_t
	err := ctxWait(ctx, &c.ref, c.free, func(tok *C.jr_token) C.enum_jr_status {
		r := C.jrgo_chan_recv(c.ptr, C.int64_t(timeoutNs), tok)
		item = r.item
		return r.status
	})
	if err != nil {
		var zero T
		return zero, err
	}
	return takeItem[T](item), nil
}

// Close closes the channel for senders: sends fail with ErrClosed from now on
// (waiting ones too); receivers get what is buffered, then ErrClosed. Calling it again
// does nothing.
func (c *Chan[T]) Close() error {
	if !c.ref.use() {
		return nil
	}
	defer c.ref.done(c.free)
	C.jr_chan_close(c.ptr)
	return nil
}

// Len returns the number of values buffered now.
func (c *Chan[T]) Len() int {
	if !c.ref.use() {
		return 0
	}
	defer c.ref.done(c.free)
	var n C.size_t
	C.jr_chan_len(c.ptr, &n)
	return int(n)
}

// Free frees the channel's handle; the values it still buffers are dropped. Calling it
// again does nothing.
func (c *Chan[T]) Free() {
	c.ref.close(c.free)
	runtime.SetFinalizer(c, nil)
}
