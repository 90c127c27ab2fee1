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
// extern enum jr_status jrgo_pipeline_new(uintptr_t pool, size_t max_in_flight, uintptr_t token,
//                                    jr_pipeline **out);
// extern enum jr_status jrgo_pipeline_add_stage(jr_pipeline *p, uintptr_t stage, size_t concurrency,
//                                          int32_t ordered);
// extern enum jr_status jrgo_pipeline_push(jr_pipeline *p, uintptr_t item, int64_t timeout_ns);
// extern jrgo_drained jrgo_pipeline_drain(jr_pipeline *p, uintptr_t *buf, size_t cap,
//                                         int64_t first_timeout_ns);
// extern jrgo_failure jrgo_pipeline_failure(jr_pipeline *p);
import "C"

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime/cgo"
	"runtime/debug"
	"sync"
	"unsafe"
)

// A pipeline is typed at each point: NewPipeline gives a *Pipeline[In] (the input:
// Push, CloseInput, Close), each Stage a *Output[Out] (the items after that stage:
// Next, TryNext, Out, Err, Waitable), and the last stage's output is the pipeline's.
// Go methods cannot bring new type parameters, so stages are added by the free
// function Stage, from the input or from the previous stage's output:
//
//	p, _ := jobrunner.NewPipeline[string](pool, ctx, jobrunner.WithMaxInFlight(256))
//	parsed := jobrunner.Stage(p, 4, true, parse)   // *Output[Record]
//	kept := jobrunner.Stage(parsed, 2, true, keep) // *Output[Record]
//	go func() { for _, l := range lines { p.Push(ctx, l) }; p.CloseInput() }()
//	for r := range kept.Out() { ... }
//	if err := kept.Err(); err != nil { ... }
//	p.Close()

// Pipeline is the input of a pipeline whose items are In as pushed: the C library's
// jr_pipeline, with Go stage functions. Its methods are safe for concurrent use.
type Pipeline[In any] struct {
	p *pipeline
}

// Output is the output of a pipeline's stage, whose items are T. Only the last stage's
// output gives items. Its methods are safe for concurrent use.
type Output[T any] struct {
	p     *pipeline
	index int // stages up to and including this one

	once sync.Once
	c    chan T
	buf  [streamBatch]C.uintptr_t
}

// Source is where a stage takes its items from: the pipeline's input or the last
// stage's output.
type Source[T any] interface {
	source() (*pipeline, int)
}

// pipeline is the untyped part of a pipeline.
type pipeline struct {
	ptr   *C.jr_pipeline
	ref   handleRef
	ctx   context.Context
	token *ctxToken

	mu       sync.Mutex
	stages   []cgo.Handle // the stage_args, deleted once the C pipeline is freed
	started  bool         // a push, a next or close_input happened: no more stages
	buildErr error        // the first error building it (sticky: Push and Next report it)
	fails    []error      // the errors and panics of failed stage calls, by message
	endErr   error        // the output's end: errPipelineDone or the failure
	closed   bool         // Close was called

	freed     chan struct{} // closed once the C pipeline is freed
	closeOnce sync.Once
}

// errPipelineDone marks a pipeline output that ended cleanly (Next returns ErrClosed,
// Err nil).
var errPipelineDone = errors.New("jobrunner: pipeline drained")

// PipelineOption configures NewPipeline.
type PipelineOption func(*pipelineConfig)

type pipelineConfig struct{ maxInFlight int }

// WithMaxInFlight bounds the items inside the pipeline at once (pushed and not yet
// taken out, or dropped): Push waits while it is full. Default 64.
func WithMaxInFlight(n int) PipelineOption {
	return func(c *pipelineConfig) { c.maxInFlight = n }
}

// NewPipeline makes a pipeline on pool whose input items are In; add its stages with
// Stage before the first Push. ctx cancels it when done: the items inside are dropped
// and the output reports ErrCancelled. Close it when done (it holds C resources and
// its stage functions until then).
func NewPipeline[In any](pool *Pool, ctx context.Context, opts ...PipelineOption) (*Pipeline[In], error) {
	var cfg pipelineConfig
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.maxInFlight < 0 {
		return nil, ErrInvalidArg
	}
	p := &pipeline{ctx: ctx, freed: make(chan struct{})}
	var err error
	if p.token, err = newCtxToken(ctx); err != nil {
		return nil, err
	}
	ptr, err := pool.acquire()
	if err != nil {
		p.token.release()
		return nil, err
	}
	st := C.jrgo_pipeline_new(C.uintptr_t(uintptr(unsafe.Pointer(ptr))), C.size_t(cfg.maxInFlight),
		C.uintptr_t(uintptr(unsafe.Pointer(p.token.ptr()))), &p.ptr)
	pool.release()
	if st != C.JR_OK {
		p.token.release()
		return nil, statusError(st)
	}
	return &Pipeline[In]{p: p}, nil
}

func (in *Pipeline[In]) source() (*pipeline, int) { return in.p, 0 }
func (o *Output[T]) source() (*pipeline, int)     { return o.p, o.index }

// Stage adds a stage after from (the pipeline's input, or its last stage's output):
// fn runs once per item, as a short job on the pool, at most concurrency at once. It
// returns the output value and whether to keep it (false drops the item), or an error:
// the pipeline's first failure (an error or a panic) cancels it, and the output reports
// it after the items that came out before. With ordered, the stage passes its outputs
// on in input order (the order of the pushes), however many run at once; otherwise as
// they come. fn's ctx carries the values of the NewPipeline ctx and is done when the
// pipeline is cancelled.
//
// A mistake (concurrency below 1, a stage added after the first Push or Next, or not
// after the last stage) is sticky: Push, Next and Err report it (ErrInvalidArg), and
// the returned output gives nothing.
func Stage[In, Out any](from Source[In], concurrency int, ordered bool,
	fn func(ctx context.Context, v In) (Out, bool, error)) *Output[Out] {
	p, index := from.source()
	o := &Output[Out]{p: p, index: index + 1}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.buildErr != nil {
		return o
	}
	if concurrency < 1 || fn == nil || index != len(p.stages) || p.started || !p.ref.use() {
		p.buildErr = fmt.Errorf("%w: a stage needs a concurrency of at least 1 and a function, "+
			"and follows the last stage before the pipeline starts", ErrInvalidArg)
		return o
	}
	defer p.ref.done(p.free)
	h := cgo.NewHandle(stageRunner(&stage[In, Out]{p: p, fn: fn}))
	ord := C.int32_t(0)
	if ordered {
		ord = 1
	}
	if st := C.jrgo_pipeline_add_stage(p.ptr, C.uintptr_t(h), C.size_t(concurrency), ord); st != C.JR_OK {
		h.Delete()
		p.buildErr = statusError(st)
		return o
	}
	p.stages = append(p.stages, h)
	return o
}

// stageRunner is what jrgoRunStage needs of a stage.
type stageRunner interface {
	run(jctx *C.jr_ctx, item C.uintptr_t) (code int32)
}

type stage[In, Out any] struct {
	p  *pipeline
	fn func(ctx context.Context, v In) (Out, bool, error)
}

// run runs the stage's function on one item (lent: the pipeline deletes it if it is
// dropped or the stage fails).
func (s *stage[In, Out]) run(jctx *C.jr_ctx, item C.uintptr_t) int32 {
	box := peekItem[*pipeItem](item)
	c := &jobContext{parent: s.p.ctx, jctx: jctx}
	v, keep, err, p := s.call(c, box.get().(In))
	c.end()
	switch {
	case p != nil:
		cmsg := C.CString(p.Message)
		C.jr_ctx_panic(jctx, cmsg)
		C.free(unsafe.Pointer(cmsg))
		s.p.recordFail(p)
		return 1
	case err != nil:
		code := int32(1)
		var je *JobError
		if errors.As(err, &je) && je.Code != 0 && je.Code != math.MinInt32 {
			code = je.Code // JR_STAGE_EMIT is 0 and JR_STAGE_DROP INT32_MIN: never codes
		}
		cmsg := C.CString(err.Error())
		C.jr_ctx_fail(jctx, cmsg)
		C.free(unsafe.Pointer(cmsg))
		s.p.recordFail(err)
		return code
	case !keep:
		return C.JR_STAGE_DROP
	default:
		box.set(v) // the item goes on with its handle
		return C.JR_STAGE_EMIT
	}
}

// pipeItem is what a pipeline item's handle holds: a stage puts its output in place of
// its input, so that an item keeps one handle from its push to its output. (A new
// handle per stage output cost a handle made and deleted per stage, and an item_free
// call into Go from C for the input each output replaced.) The mutex orders a stage's
// write before the next stage's read for Go (the race detector does not see C's
// synchronisation); it is never contended.
type pipeItem struct {
	mu sync.Mutex
	v  any
}

func (b *pipeItem) get() any {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.v
}

func (b *pipeItem) set(v any) {
	b.mu.Lock()
	b.v = v
	b.mu.Unlock()
}

// call runs fn, recovering a panic.
func (s *stage[In, Out]) call(ctx context.Context, v In) (out Out, keep bool, err error, p *PanicError) {
	defer func() {
		if r := recover(); r != nil {
			stack := debug.Stack()
			p = &PanicError{Value: r, Stack: stack, Message: fmt.Sprintf("%v\n\n%s", r, stack)}
		}
	}()
	out, keep, err = s.fn(ctx, v)
	return out, keep, err, nil
}

// recordFail keeps a failed stage call's Go error, for the output to report the one C
// chose as the first (matched by its message).
func (p *pipeline) recordFail(err error) {
	p.mu.Lock()
	if len(p.fails) < 64 { // the first failure cancels: few come after it
		p.fails = append(p.fails, err)
	}
	p.mu.Unlock()
}

// start notes that the pipeline has started (no more stages) and returns the sticky
// build error, if any.
func (p *pipeline) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.started = true
	return p.buildErr
}

// Push pushes v into the pipeline, waiting while max_in_flight items are inside, until
// ctx is done. It returns ErrClosed after CloseInput or Close, an error matching
// ErrCancelled once the pipeline failed or was cancelled (the output says how), ctx's
// error if ctx is done first. A Push that waits for room notices a ctx other than the
// pipeline's within pushSlice (jr_pipeline_push takes a timeout, no token); the
// pipeline's own ctx cancels the pipeline, and the Push, at once.
func (in *Pipeline[In]) Push(ctx context.Context, v In) error {
	return in.push(ctx, v, -1)
}

// TryPush pushes v if there is room now: ErrFull if not.
func (in *Pipeline[In]) TryPush(v In) error {
	return in.push(context.Background(), v, 0)
}

// pushSlice is how long (ns) one C push waits before ctx is looked at again.
const pushSlice = 5_000_000

func (in *Pipeline[In]) push(ctx context.Context, v In, timeoutNs int64) error {
	p := in.p
	if err := p.start(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if !p.ref.use() {
		return ErrClosed
	}
	defer p.ref.done(p.free)
	if timeoutNs < 0 && ctx.Done() != nil {
		timeoutNs = pushSlice
	}
	h := newItem(&pipeItem{v: v})
	for {
		st := C.jrgo_pipeline_push(p.ptr, h, C.int64_t(timeoutNs))
		if st == C.JR_OK {
			return nil
		}
		if st == C.JR_E_TIMEOUT && ctx.Err() == nil {
			continue
		}
		dropItem(h) // not pushed: still ours
		switch st {
		case C.JR_E_TIMEOUT:
			return ctx.Err()
		case C.JR_E_CANCELLED:
			return cancelledError(p.token.cause(), nil)
		default:
			return statusError(st)
		}
	}
}

// CloseInput says no more items will be pushed: the output ends (Next returns
// ErrClosed, Out is closed) once every item inside has come out. Calling it again does
// nothing.
func (in *Pipeline[In]) CloseInput() error {
	p := in.p
	if err := p.start(); err != nil {
		return err
	}
	if !p.ref.use() {
		return nil
	}
	defer p.ref.done(p.free)
	return statusError(C.jr_pipeline_close_input(p.ptr))
}

// Close cancels the pipeline if it still runs (the items inside are dropped), waits
// for the stage functions running now to return, and frees it: after Close no stage
// function runs. Not to be called from a stage function. Calling it again does
// nothing.
func (in *Pipeline[In]) Close() error {
	p := in.p
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.closeOnce.Do(func() {
		if p.ref.use() {
			C.jr_pipeline_cancel(p.ptr) // wakes a Next or a Push in progress
			p.ref.done(p.free)
		}
		p.ref.close(p.free)
	})
	<-p.freed
	return nil
}

// free frees the C pipeline (waiting for running stage functions; the items inside
// are deleted), then the stage functions and the token.
func (p *pipeline) free() {
	C.jr_pipeline_free(p.ptr)
	p.mu.Lock()
	stages := p.stages
	p.stages = nil
	p.mu.Unlock()
	for _, h := range stages {
		h.Delete()
	}
	p.token.release()
	close(p.freed)
}

// Next takes the next item out of the pipeline, waiting until one comes or ctx is done.
// It returns ErrClosed once the input is closed and every item has come out; the
// pipeline's failure (a *JobError with the stage's error, a *PanicError, an error
// matching ErrCancelled) once it failed, from then on; ctx's error if ctx is done
// first. Don't mix Next and Out: Out's goroutine takes the items.
func (o *Output[T]) Next(ctx context.Context) (T, error) {
	var zero T
	for {
		v, err := o.TryNext()
		if !errors.Is(err, ErrEmpty) {
			return v, err
		}
		if _, err := WaitAny(ctx, -1, o.Waitable()); err != nil {
			return zero, err
		}
	}
}

// TryNext takes the next item out if one is ready now: ErrEmpty if none, else as
// Next.
func (o *Output[T]) TryNext() (T, error) {
	var zero T
	p := o.p
	if err := o.check(); err != nil {
		return zero, err
	}
	if !p.ref.use() {
		return zero, o.ended()
	}
	var item C.uintptr_t
	r := C.jrgo_pipeline_drain(p.ptr, &item, 1, 0)
	if r.n == 1 {
		p.ref.done(p.free)
		return takeItem[*pipeItem](item).get().(T), nil
	}
	err := ErrEmpty
	if r.status != C.JR_E_TIMEOUT {
		err = p.end(r.status)
	}
	p.ref.done(p.free)
	if err == errPipelineDone {
		err = ErrClosed
	}
	return zero, err
}

// check starts the pipeline and refuses an output that is not the last stage's.
func (o *Output[T]) check() error {
	if err := o.p.start(); err != nil {
		return err
	}
	o.p.mu.Lock()
	defer o.p.mu.Unlock()
	if o.index != len(o.p.stages) && o.p.stages != nil {
		return fmt.Errorf("%w: only the last stage's output gives items", ErrInvalidArg)
	}
	return nil
}

// ended is the error of an output whose pipeline is freed: its end if it was seen,
// else ErrClosed.
func (o *Output[T]) ended() error {
	o.p.mu.Lock()
	defer o.p.mu.Unlock()
	if o.p.endErr == nil || o.p.endErr == errPipelineDone {
		return ErrClosed
	}
	return o.p.endErr
}

// end records the output's end (the first status that is not an item) and returns
// the error it means; a use of the handle is held.
func (p *pipeline) end(st C.enum_jr_status) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.endErr != nil {
		return p.endErr
	}
	switch st {
	case C.JR_E_CLOSED:
		p.endErr = errPipelineDone
	case C.JR_E_JOB_FAILED, C.JR_E_PANICKED:
		cf := C.jrgo_pipeline_failure(p.ptr)
		msg := cString(cf.message)
		var goErr error
		for _, e := range p.fails {
			if e.Error() == msg || (st == C.JR_E_PANICKED && isPanicWith(e, msg)) {
				goErr = e
				break
			}
		}
		if st == C.JR_E_PANICKED {
			if pe, ok := goErr.(*PanicError); ok {
				p.endErr = pe
			} else {
				p.endErr = &PanicError{Message: msg}
			}
		} else {
			p.endErr = &JobError{Code: int32(cf.code), Message: msg, Err: goErr}
		}
	case C.JR_E_CANCELLED:
		cause := p.token.cause()
		if cause == nil && p.closed {
			cause = ErrClosed
		}
		p.endErr = cancelledError(cause, nil)
	default:
		p.endErr = statusError(st)
	}
	return p.endErr
}

func isPanicWith(err error, msg string) bool {
	pe, ok := err.(*PanicError)
	return ok && pe.Message == msg
}

// Out returns a channel of the pipeline's output items, closed at the output's end
// (Err then says why). The first call starts a goroutine that takes the items out, in
// batches of up to 64 per cgo call, and blocks in C (one thread) while none is ready.
// Don't mix Out with Next or TryNext.
func (o *Output[T]) Out() <-chan T {
	o.once.Do(func() {
		o.c = make(chan T)
		go o.pump()
	})
	return o.c
}

func (o *Output[T]) pump() {
	defer close(o.c)
	p := o.p
	if o.check() != nil {
		return
	}
	for {
		if !p.ref.use() {
			return // freed by Close
		}
		r := C.jrgo_pipeline_drain(p.ptr, &o.buf[0], streamBatch, -1)
		var err error
		if r.status != C.JR_OK && r.status != C.JR_E_TIMEOUT {
			err = p.end(r.status)
		}
		p.ref.done(p.free)
		for i := 0; i < int(r.n); i++ {
			select {
			case o.c <- takeItem[*pipeItem](o.buf[i]).get().(T):
			case <-p.freed:
				for _, h := range o.buf[i+1 : r.n] {
					dropItem(h)
				}
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// Err returns the output's end once it has been reached (Next returned an error other
// than ctx's, or Out was closed): nil for a clean end (the input closed and every item
// out), the failure otherwise (as Next returns it); also a mistake building the
// pipeline. nil before the end.
func (o *Output[T]) Err() error {
	p := o.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.buildErr != nil {
		return p.buildErr
	}
	if p.endErr == errPipelineDone {
		return nil
	}
	return p.endErr
}
