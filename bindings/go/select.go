package jobrunner

// #include <stdint.h>
// #include "jobrunner.h"
import "C"

import (
	"context"
	"time"
	"unsafe"
)

// Go has select: a Go program waits for the binding's things as for any other, on
// channels. Job.Done, Group.Done, Stream.C (and Stream.Done), Output.Out, Chan's
// RecvReady and SendReady, and ctx.Done for a token give them.
//
// WaitAny is the C library's jr_wait_any for the things C owns, as C, Rust and Python
// code wait for them: one blocking call, level-triggered as poll(2) (ready says the
// operation would not wait now: follow it with the non-blocking one, TryRecv,
// TryNext, and call again if another consumer took what was ready), pool-aware (inside
// a job, a spare worker runs in the waiting worker's place), with no goroutine and no
// Go-side copy of the state. It blocks its OS thread while it waits, as any C call.

// Waitable is one thing WaitAny waits for; make it with Job.Waitable,
// Chan.RecvWaitable, Chan.SendWaitable or Output.Waitable.
type Waitable struct {
	kind uint32
	ref  *handleRef     // the handle's guard: a use is held for the wait
	free func()         // frees the handle if the wait's use is the last after a close
	ptr  unsafe.Pointer // where the C handle pointer is
	// goReady reports ready without asking C (a job seen to end, whose handle may be
	// released); nil: none.
	goReady func() bool
	// gone is what a closed handle means: nil for ready (a job's handle is released
	// once it has ended, a pipeline's once its output ended), else the error.
	gone error
}

// Waitable is ready once the job has ended.
func (j *Job[T]) Waitable() Waitable {
	t := &j.task
	return Waitable{kind: C.JR_WAIT_JOB, ref: &t.h.ref, free: t.h.freeLater,
		ptr: unsafe.Pointer(&t.h.ptr), goReady: t.ended.Load}
}

// RecvWaitable is ready when a receive would not wait: a value is buffered, or the
// channel is closed.
func (c *Chan[T]) RecvWaitable() Waitable {
	return Waitable{kind: C.JR_WAIT_CHAN_RECV, ref: &c.ref, free: c.free,
		ptr: unsafe.Pointer(&c.ptr), gone: ErrClosed}
}

// SendWaitable is ready when a send would not wait: there is room, or the channel is
// closed.
func (c *Chan[T]) SendWaitable() Waitable {
	return Waitable{kind: C.JR_WAIT_CHAN_SEND, ref: &c.ref, free: c.free,
		ptr: unsafe.Pointer(&c.ptr), gone: ErrClosed}
}

// Waitable is ready when TryNext would not return ErrEmpty: an item has come out, the
// pipeline failed, or it drained after CloseInput (a pipeline freed by Close is ready
// too: TryNext reports its end).
func (o *Output[T]) Waitable() Waitable {
	return Waitable{kind: C.JR_WAIT_PIPELINE, ref: &o.p.ref, free: o.p.free,
		ptr: unsafe.Pointer(&o.p.ptr)}
}

// WaitAny waits until one of ws is ready, ctx is done, or timeout passes (negative: no
// limit; 0: only look), and returns the index of a ready one (the first in order).
// It returns ctx's error if ctx is done first (a cancel takes effect as for any
// job's token: the ctx's token is one of the things waited for), ErrTimeout if the
// timeout passed, ErrClosed for a Chan freed. Ready is level-triggered: follow it
// with the non-blocking operation. It blocks its thread in C: prefer select on the
// channels above between Go code; WaitAny is for waiting as C does, in one call.
func WaitAny(ctx context.Context, timeout time.Duration, ws ...Waitable) (int, error) {
	if err := ctx.Err(); err != nil {
		return -1, err
	}
	// Handles looked at first: a job already ended is ready without C.
	for i, w := range ws {
		if w.goReady != nil && w.goReady() {
			return i, nil
		}
	}
	items := make([]C.jr_waitable, 0, len(ws)+1)
	held := 0
	defer func() {
		for _, w := range ws[:held] {
			w.ref.done(w.free)
		}
	}()
	for i, w := range ws {
		if !w.ref.use() {
			if w.gone == nil {
				return i, nil
			}
			return -1, w.gone
		}
		held++
		items = append(items, C.jr_waitable{kind: C.uint32_t(w.kind), handle: *(*unsafe.Pointer)(w.ptr)})
	}
	tok, err := newCtxToken(ctx)
	if err != nil {
		return -1, err
	}
	defer tok.release()
	if tok != nil {
		items = append(items, C.jr_waitable{kind: C.JR_WAIT_TOKEN, handle: unsafe.Pointer(tok.ptr())})
	}
	ns := int64(-1)
	if timeout >= 0 {
		ns = int64(timeout)
	}
	var ready C.size_t
	if len(items) == 0 {
		// C refuses to wait for nothing without a timeout; Go blocks as select{} does
		// when ctx can never be done.
		if ns < 0 {
			select {}
		}
		time.Sleep(timeout)
		return -1, ErrTimeout
	}
	st := C.jr_wait_any(&items[0], C.size_t(len(items)), C.int64_t(ns), &ready)
	switch {
	case st == C.JR_E_TIMEOUT:
		return -1, ErrTimeout
	case st != C.JR_OK:
		return -1, statusError(st)
	case int(ready) == len(ws): // the ctx's token
		return -1, ctxDoneError(ctx)
	default:
		return int(ready), nil
	}
}

// readyChan returns a channel closed when w is ready, unless ctx is done first: a
// goroutine blocked in WaitAny (one thread) until then.
func readyChan(ctx context.Context, w Waitable) <-chan struct{} {
	c := make(chan struct{})
	go func() {
		if _, err := WaitAny(ctx, -1, w); err == nil || err == ErrClosed {
			close(c)
		}
	}()
	return c
}

// RecvReady returns a channel closed when a receive would not wait (a value is
// buffered, or the channel is closed), for a select: then TryRecv, and ask again if it
// says ErrEmpty (another receiver, C code too, may have been first). It stays open if
// ctx is done first. Each call costs a goroutine blocked in C (one thread) until then:
// pass a ctx you cancel when you stop selecting.
func (c *Chan[T]) RecvReady(ctx context.Context) <-chan struct{} {
	return readyChan(ctx, c.RecvWaitable())
}

// SendReady returns a channel closed when a send would not wait (there is room, or
// the channel is closed); then TrySend. As RecvReady otherwise.
func (c *Chan[T]) SendReady(ctx context.Context) <-chan struct{} {
	return readyChan(ctx, c.SendWaitable())
}
