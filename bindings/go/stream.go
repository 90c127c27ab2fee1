package jobrunner

// #include <stdint.h>
// #include <stdlib.h>
// #include "jobrunner.h"
//
// typedef struct {
// 	enum jr_status status;
// 	size_t n;
// } jrgo_drained;
// typedef struct {
// 	int32_t code;
// 	char *message;
// } jrgo_failure;
// extern enum jr_status jrgo_stream_new(uintptr_t pool, uintptr_t id, size_t capacity,
//                                  uintptr_t token, jr_stream **out);
// extern jrgo_drained jrgo_stream_drain(jr_stream *s, uintptr_t *buf, size_t cap,
//                                       int64_t first_timeout_ns);
// extern jrgo_failure jrgo_stream_failure(jr_stream *s);
// extern enum jr_status jrgo_stream_new_opts(jr_pool *pool, uintptr_t id, size_t capacity,
//                                       jr_submit_options opts, jr_stream **out);
// extern enum jr_status jrgo_chan_send(jr_chan *ch, uintptr_t item, int64_t timeout_ns,
//                                      jr_token *tok);
import "C"

import (
	"context"
	"sync"
	"sync/atomic"
	"unsafe"
)

// Stream is a generator: a producer function that runs as a job on the pool (C's
// jr_stream) and sends values into a bounded buffer, read as a Go channel. A stream is
// a <-chan T (C) plus an error (Err), as a scanner is. Its methods are safe for
// concurrent use.
//
// The values cross from the producer's worker to the reader through the C stream as
// runtime/cgo.Handles. A pump goroutine reads them in batches (one cgo call for up to
// streamBatch values) and sends them on C(); while the buffer is empty it waits on a
// Go channel the producer's send signals, so no thread is blocked in C for a stream
// that waits. Up to capacity values wait in the C buffer, plus one in the pump's hand.
type Stream[T any] struct {
	ptr *C.jr_stream
	ref handleRef
	t   task // the producer's Go side (no handle: the stream is its handle)
	fn  func(ctx context.Context, send func(T) error) error

	out    *C.jr_chan // the channel the producer sends on, while it runs
	c      chan T
	notify chan struct{} // a value was sent, or the producer ended (buffered: 1)
	ended  atomic.Bool   // the producer's Go side has ended (set before notify)

	closing   chan struct{} // closed by Close
	closeOnce sync.Once

	done chan struct{} // closed with c, once err is written
	err  error         // the producer's outcome
	buf  [streamBatch]C.uintptr_t
}

// streamBatch is how many values one cgo call of the pump reads at most.
const streamBatch = 64

// streamBody is what jrgoRunStream needs of a Stream[T] (the body of its task).
type streamBody interface {
	taskBody
	setOut(out *C.jr_chan)
	producerEnded()
}

// NewStream starts fn as a job on pool, producing values into a buffer of capacity
// (at least 1), and returns the stream that reads them: range over C() until it is
// closed, then look at Err().
//
// fn's send waits for room while the reader is behind (backpressure) and fails once the
// stream is closed or fn's ctx is done (fn should then return; its error ends the
// stream cancelled, not failed). ctx cancels the producer when it is done, as for
// Submit: one that has not started never runs. An error returned by fn, or a panic in
// it, ends the stream after the values sent: Err reports it.
//
// Close the stream if you stop reading before C() is closed: the producer and the pump
// goroutine otherwise wait for a reader forever. opts are Submit's (WithSemaphore,
// WithDelay, WithName, NonBlocking).
func NewStream[T any](pool *Pool, ctx context.Context, capacity int,
	fn func(ctx context.Context, send func(T) error) error, opts ...SubmitOption) (*Stream[T], error) {
	if capacity < 1 || fn == nil {
		return nil, ErrInvalidArg
	}
	s := &Stream[T]{
		fn:      fn,
		c:       make(chan T),
		notify:  make(chan struct{}, 1),
		closing: make(chan struct{}),
		done:    make(chan struct{}),
	}
	t := &s.t
	t.body = s
	t.cEnded = true // no job handle: the Go side's end is the task's
	t.jc.parent = ctx
	var copts C.jr_submit_options
	var err error
	if len(opts) > 0 {
		var cleanup func()
		if copts, cleanup, err = submitOptions(opts); err != nil {
			return nil, err
		}
		defer cleanup()
	}
	if t.token, err = jobCtxToken(ctx); err != nil {
		return nil, err
	}
	ptr, err := pool.acquire()
	if err != nil {
		t.token.release()
		return nil, err
	}
	id := tasks.put(t)
	var st C.enum_jr_status
	if len(opts) == 0 {
		st = C.jrgo_stream_new(C.uintptr_t(uintptr(unsafe.Pointer(ptr))), C.uintptr_t(id),
			C.size_t(capacity), C.uintptr_t(uintptr(unsafe.Pointer(t.token.ptr()))), &s.ptr)
	} else {
		copts.token = t.token.ptr()
		st = C.jrgo_stream_new_opts(ptr, C.uintptr_t(id), C.size_t(capacity), copts, &s.ptr)
	}
	pool.release()
	if st != C.JR_OK {
		tasks.take(id) // nothing was submitted: the number is still ours
		t.token.release()
		err := statusError(st)
		if st == C.JR_E_CANCELLED {
			err = cancelledError(t.token.cause(), nil)
		}
		return nil, err
	}
	go s.pump()
	return s, nil
}

// C returns the channel of the stream's values, in the order they were sent. It is
// closed after the last one (or at once after Close); Err then says why.
func (s *Stream[T]) C() <-chan T { return s.c }

// Err returns, once C() is closed, the producer's outcome: nil if fn returned nil
// (every value was delivered), a *JobError with fn's error, a *PanicError, or an error
// matching ErrCancelled (ctx done, Close, a pool shut down with Cancel; it wraps the
// cause and the error fn returned). Before C() is closed it returns nil.
func (s *Stream[T]) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

// Done returns a channel closed when C() is: the producer has ended and Err has its
// outcome. For a select that must not take a value.
func (s *Stream[T]) Done() <-chan struct{} { return s.done }

// Close stops the producer, if it still runs: its send fails and its ctx is done (one
// that has not started never runs). The values buffered are dropped (their handles
// deleted), and C() is closed once the producer has ended. Calling it again does
// nothing.
func (s *Stream[T]) Close() error {
	s.closeOnce.Do(func() {
		close(s.closing)
		if s.ref.use() {
			C.jr_stream_cancel(s.ptr)
			s.ref.done(s.free)
		}
	})
	return nil
}

func (s *Stream[T]) free() { C.jr_stream_free(s.ptr) }

// call runs the producer (the task's body, on a worker).
func (s *Stream[T]) call(ctx context.Context) error { return s.fn(ctx, s.send) }

func (s *Stream[T]) setOut(out *C.jr_chan) { s.out = out }

// producerEnded wakes the pump for the end: the C stream reports it once the
// producer job has ended, right after this.
func (s *Stream[T]) producerEnded() {
	s.ended.Store(true)
	s.wake()
}

func (s *Stream[T]) wake() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// send is the producer's send: it waits for room; it fails once the stream is closed
// or the producer's ctx is done (ctx.Err(), else ErrClosed), and the value is then
// dropped.
func (s *Stream[T]) send(v T) error {
	out := s.out
	if out == nil {
		return ErrClosed // called after the producer returned
	}
	h := newItem(v)
	if st := C.jrgo_chan_send(out, h, -1, nil); st != C.JR_OK {
		dropItem(h)
		if err := s.t.jc.Err(); err != nil {
			return err
		}
		return ErrClosed
	}
	s.wake()
	return nil
}

// pump moves the values from the C stream to c, until the stream's end; then it records
// the outcome, closes c and frees the C stream.
func (s *Stream[T]) pump() {
	var end C.enum_jr_status
	for end == 0 {
		wait := int64(0)
		if s.ended.Load() {
			wait = -1 // the end follows at once: wait for it in C
		}
		r := C.jrgo_stream_drain(s.ptr, &s.buf[0], streamBatch, C.int64_t(wait))
		if r.status != C.JR_OK && r.status != C.JR_E_TIMEOUT {
			end = r.status
		}
		for i := 0; i < int(r.n); i++ {
			if !s.deliver(s.buf[i]) {
				for _, h := range s.buf[i+1 : r.n] {
					dropItem(h)
				}
				break
			}
		}
		if r.n == 0 && end == 0 {
			select {
			case <-s.notify:
			case <-s.closing:
				// The cancelled producer's sends fail and it ends soon: read until
				// its end without waiting for a signal.
				s.ended.Store(true)
			}
		}
	}
	s.err = s.outcome(end)
	close(s.done)
	close(s.c)
	s.ref.close(s.free)
}

// deliver sends the value of item on c, or drops it if the stream is closed first;
// false once closed.
func (s *Stream[T]) deliver(item C.uintptr_t) bool {
	select {
	case <-s.closing:
		dropItem(item)
		return false
	default:
	}
	v := takeItem[T](item)
	select {
	case s.c <- v:
		return true
	case <-s.closing:
		return false
	}
}

// outcome maps the stream's end to Err's error.
func (s *Stream[T]) outcome(end C.enum_jr_status) error {
	switch end {
	case C.JR_E_CLOSED:
		return nil
	case C.JR_E_JOB_FAILED, C.JR_E_PANICKED, C.JR_E_CANCELLED:
		t := &s.t
		t.mu.Lock()
		defer t.mu.Unlock()
		f := t.failLocked()
		err := f.outcome(endState(end))
		if je, ok := err.(*JobError); ok && f.err == nil {
			// Not a Go error (cannot happen for a Go producer): C's code and message.
			cf := C.jrgo_stream_failure(s.ptr)
			je.Code, je.Message = int32(cf.code), cString(cf.message)
		}
		return err
	default:
		return statusError(end)
	}
}

// cString copies a string jrgo_*_failure malloc'd, and frees it ("" for NULL).
func cString(p *C.char) string {
	if p == nil {
		return ""
	}
	s := C.GoString(p)
	C.free(unsafe.Pointer(p))
	return s
}
