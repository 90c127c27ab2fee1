package jobrunner

// #include <stdint.h>
// #include <stdlib.h>
// #include "jobrunner.h"
// #include "jrgo.h"
//
// extern enum jr_status jrgo_on_done(jr_job *job, uintptr_t id);
// extern int32_t jrgo_state(jr_job *job);
// extern void jrgo_free_jobs(jr_job **jobs, size_t n);
// extern int32_t jrgo_slots_used(void);
import "C"

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// task is the Go side of a Go job, referenced from C only by its number in the task
// table (the job's argument). Everything the job produces stays here, in Go memory: the
// result (through body), the error the function returned, the panic.
//
// A task has ended when both of its ends have happened: its Go side has finished
// (finish: the function returned, or the job ended without running) and C's state is
// terminal (cEnd: told by the worker's next Go job or stop hook, or seen by the kept-job
// sweeper, a done callback, a wait, State or Cancel; given for a task without a handle). Only then are Done closed and Wait's outcome computed, so that
// they agree with State.
//
// A task is allocated per job (with its Job, for Submit), so it is kept small: what only
// a job that fails, panics or is cancelled needs is in fail, allocated then. (Making the
// Job 128 bytes bigger cost 12% per Submit job in the benchmark: memory is most of a
// tiny job's cost.)
type task struct {
	body  taskBody  // the function: a Job[T] (which keeps the result), or a funcBody
	token *ctxToken // follows the submit context (nil: none)
	group *Group    // the group the job is in (nil: none)

	// A job with a handle (Submit): the handle (in a handleBlock), freed once the
	// task has ended (Close makes sure it will be seen to), or by the block's
	// finalizer, whichever is first. nil for a task without a handle.
	h *jobHandle

	ended    atomic.Bool // both ends have happened (set under mu, after the fields below)
	periodic bool        // a SubmitEvery job: run gives each run its number

	// Guarded by mu (which also orders run's writes before the end).
	goEnded   bool // finish has run
	cEnded    bool // C's state is terminal (state says which)
	doneAsked bool // a done callback is registered (or being registered)

	mu    sync.Mutex
	state State         // the terminal state
	done  chan struct{} // made by the first doneChan before the end; closed at it
	fail  *taskFail     // what went wrong, if anything did (nil: nothing so far)

	// jc is the context of a one-shot job's run; jc.parent (values and deadline for
	// the job's context) is set at submit, for periodic jobs too.
	jc jobContext
}

// taskFail is what a task keeps of a job that did not simply succeed (under task.mu).
type taskFail struct {
	err      error       // what the function returned
	panicked *PanicError // what it panicked with
	cause    error       // why the job was cancelled, if known (read in finish)
	waitErr  error       // Wait's error, made by the first Wait that needs it (never nil then)
}

// failLocked returns t.fail, allocating it on first use (mu held).
func (t *task) failLocked() *taskFail {
	if t.fail == nil {
		t.fail = new(taskFail)
	}
	return t.fail
}

// taskBody is a Go job's function with the place for its result: a Job[T].
type taskBody interface {
	call(ctx context.Context) error
}

// funcBody is the body of a job without a result (a group's, a periodic job's): a func
// value is a pointer, so making it an interface allocates nothing.
type funcBody func(ctx context.Context) error

func (f funcBody) call(ctx context.Context) error { return f(ctx) }

// run runs the job's function on a worker: the body of jrgoRunJob. It reports a panic
// with jr_ctx_panic (with the stack), an error with jr_ctx_fail, and returns the job's
// code.
func (t *task) run(jctx *C.jr_ctx) int32 {
	var c *jobContext
	if t.periodic { // a context per run: one may outlive its run
		var tick C.uint64_t
		C.jr_ctx_tick(jctx, &tick)
		c = &jobContext{parent: t.jc.parent, jctx: jctx, tick: uint64(tick)}
	} else {
		c = &t.jc // runs once: no allocation
		c.jctx = jctx
	}
	err, p := t.call(c)
	c.end()
	var seen error // why the job was asked to stop, as it returned an error
	if err != nil && C.jr_ctx_is_cancelled(jctx) {
		var reason C.enum_jr_cancel_reason
		C.jr_token_reason(C.jr_ctx_token(jctx), &reason)
		seen = reasonError(reason)
	}
	code := int32(0)
	switch {
	case p != nil:
		cmsg := C.CString(p.Message)
		C.jr_ctx_panic(jctx, cmsg)
		C.free(unsafe.Pointer(cmsg))
		code = 1
		err = p
	case err != nil:
		cmsg := C.CString(err.Error())
		C.jr_ctx_fail(jctx, cmsg)
		C.free(unsafe.Pointer(cmsg))
		code = 1
		var je *JobError
		if errors.As(err, &je) && je.Code != 0 {
			code = je.Code
		}
	}
	if t.group != nil && err != nil {
		t.group.fail(err)
	}
	t.mu.Lock()
	if t.fail != nil || seen != nil || p != nil || err != nil {
		f := t.failLocked()
		f.cause = seen
		if p != nil {
			f.panicked = p
		} else {
			f.err = err
		}
	}
	t.mu.Unlock()
	return code
}

// call runs fn, recovering a panic.
func (t *task) call(ctx context.Context) (err error, p *PanicError) {
	defer func() {
		if r := recover(); r != nil {
			stack := debug.Stack()
			p = &PanicError{
				Value:   r,
				Stack:   stack,
				Message: fmt.Sprintf("%v\n\n%s", r, stack),
			}
		}
	}()
	return t.body.call(ctx), nil
}

// finish ends the job's Go side (from jrgoRunJob once it ran, or jrgoFreeArg): it
// notes why the job was cancelled, if it may have been, releases the token and, if C's
// state is known to be terminal too, ends the task. succeeded says the job ran and its
// function returned nil: it ends Succeeded whatever its token says, so no cause is
// needed (a look at the token is a cgo call and an allocation, per job).
func (t *task) finish(succeeded bool) {
	if t.token != nil {
		if !succeeded {
			if cause := t.token.cause(); cause != nil {
				t.mu.Lock()
				t.failLocked().cause = cause
				t.mu.Unlock()
			}
		}
		t.token.release()
	}
	if t.group != nil {
		t.group.count(-1)
	}
	t.mu.Lock()
	t.goEnded = true
	t.endLocked()
}

// cEnd notes that C's state is terminal (s): from the done callback, or from a call
// that saw it. The first call counts; later ones see the same state.
func (t *task) cEnd(s State) {
	t.mu.Lock()
	if t.cEnded {
		t.mu.Unlock()
		return
	}
	t.cEnded, t.state = true, s
	t.endLocked()
}

// endLocked ends the task if both ends have happened: wakes the waiters and frees the
// handle, which nothing needs any more. Called with mu held; unlocks it.
func (t *task) endLocked() {
	if !t.goEnded || !t.cEnded {
		t.mu.Unlock()
		return
	}
	t.ended.Store(true)
	done := t.done
	t.mu.Unlock()
	if done != nil {
		close(done)
	}
	t.h.close()
}

// jobHandle is a job's C handle, guarded by a handleRef: every C call on it is
// between use and done, and it is freed by close, or by the last call in flight after
// close.
//
// A job handle is born holding one use, its submitter's, which publish ends once ptr is
// written (or the submit failed): the job may end, and a worker close the handle,
// before the submit returns, and the free is then left to publish. The kept-job
// sweeper looks at a job only once its handle is published.
type jobHandle struct {
	ptr *C.jr_job
	ref handleRef
}

// cState reads C's state of the job (a use of the handle held).
func (h *jobHandle) cState() State { return State(C.jrgo_state(h.ptr)) }

// use takes a use of the handle; false if there is none or it is closed.
func (h *jobHandle) use() bool { return h != nil && h.ref.use() }

// done ends a use; the last one after close frees the handle with others, as close
// does (see freeLater).
func (h *jobHandle) done() { h.ref.done(h.freeLater) }

// close closes the handle (nil: nothing to close).
func (h *jobHandle) close() {
	if h != nil {
		h.ref.close(h.freeLater)
	}
}

// free frees the handle now: a native job's, whose untaken result its free releases.
func (h *jobHandle) free() {
	if h.ptr != nil {
		C.jr_job_free(h.ptr)
		handlesFreed.Add(1)
	}
}

// freeLater frees a Go job's handle with others, in batches (see freeBatches).
func (h *jobHandle) freeLater() {
	if h.ptr != nil {
		freeBatches.add(h.ptr)
	}
}

// handlesFreed counts the job handles freed, for the tests.
var handlesFreed atomic.Int64

// freeBatches holds the C handles of ended Go jobs until freeBatchSize of them can be
// freed in one cgo call: a call per job cost about as much as a third of a Go job's
// submit. A Go job's handle holds no result (Go keeps it), so freeing it later changes
// nothing a caller can see; at most freeBatchShards*(freeBatchSize-1) handles (a few
// hundred bytes each) wait, for at most about keptSweep: the kept-job sweeper flushes
// them (and so do the handle block finalizers). C allows freeing a handle after its
// pool, so the batches need no pool.
//
// The batches are sharded by handle address, and a full batch is freed after its lock
// is released: the workers and the submitter each end jobs, and a lock they queue on,
// held across a cgo call, parked worker callbacks, each park a hand-over of the
// worker's locked thread (a futex wake and sleep on each side).
var freeBatches handleBatches

const (
	freeBatchSize   = 64
	freeBatchShards = 8
)

type handleBatches [freeBatchShards]handleBatch

type handleBatch struct {
	mu   sync.Mutex
	n    int
	ptrs [freeBatchSize]*C.jr_job // C pointers
	_    [64 - 16]byte            // a size in whole cache lines: shards share none
}

func (bs *handleBatches) add(ptr *C.jr_job) {
	// Consecutive handles are a few cache lines apart: the bits above a line's spread
	// them over the shards.
	b := &bs[(uintptr(unsafe.Pointer(ptr))>>6)%freeBatchShards]
	b.mu.Lock()
	b.ptrs[b.n] = ptr
	b.n++
	switch b.n {
	case 1:
		b.mu.Unlock()
		kept.note() // the sweeper flushes what waits, within keptSweep
	case len(b.ptrs):
		full := b.take()
		b.mu.Unlock()
		full.free()
	default:
		b.mu.Unlock()
	}
}

// flush frees the handles waiting.
func (bs *handleBatches) flush() {
	for i := range bs {
		b := &bs[i]
		b.mu.Lock()
		full := b.take()
		b.mu.Unlock()
		full.free()
	}
}

// take empties the batch (mu held) and returns what it held, by value, for free to
// free once mu is released.
func (b *handleBatch) take() freeList {
	l := freeList{n: b.n, ptrs: b.ptrs} // C pointers: nothing for the GC to let go of
	b.n = 0
	return l
}

// freeList is a batch of handles on their way to C.
type freeList struct {
	n    int
	ptrs [freeBatchSize]*C.jr_job // C pointers, in Go memory that C reads during the call
}

func (l freeList) free() {
	if l.n == 0 {
		return
	}
	heap := new(freeList) // cgo moves what it points to to the heap: here, not under mu
	*heap = l
	C.jrgo_free_jobs(&heap.ptrs[0], C.size_t(heap.n))
	handlesFreed.Add(int64(heap.n))
}

// keptBy holds, for each hooked worker thread (its slot number, see jrgo_slot in cgo.go),
// the job it ran last that succeeded, until its end is told: by the thread's next Go
// job, its stop hook, or the sweeper, whichever swaps it out first.
var keptBy [jrgoSlots]keptSlot

// keptSlot is a slot of keptBy, a cache line each: two workers write their own slots
// once per job. It also holds the metrics sample jrgoPark reads on the slot's thread.
type keptSlot struct {
	atomic.Pointer[task]
	runnable [1]metrics.Sample
	_        [64 - unsafe.Sizeof(atomic.Pointer[task]{}) - unsafe.Sizeof([1]metrics.Sample{})]byte
}

// A keptSlot is one cache line, exactly (a negative array length does not compile).
var (
	_ [unsafe.Sizeof(keptSlot{}) - 64]byte
	_ [64 - unsafe.Sizeof(keptSlot{})]byte
)

const jrgoSlots = C.JRGO_SLOTS

// kept is the sweeper of the jobs workers keep: while some may be kept, it takes them
// every keptSweep and looks at each one's state, so that a job whose worker runs no
// other Go job is still seen to end (its Job, its value and its handle released) within
// a few milliseconds. It also frees the handles freeBatches hold, so that none waits
// longer.
var kept keptSweeper

const keptSweep = 5 * time.Millisecond

type keptSweeper struct {
	once  sync.Once
	armed atomic.Bool   // a job may have been kept since the last sweep
	wake  chan struct{} // wakes the sweeper from its idle wait

	// For tests of the workers' own telling: no sweep runs while paused. A sweep holds
	// mu throughout, so that pause returns only once a sweep in progress has ended (it
	// could otherwise free a handle the test follows, after the test paused).
	mu     sync.Mutex
	paused bool
}

// pause stops (true) or resumes (false) the sweeps; see paused.
func (k *keptSweeper) pause(paused bool) {
	k.mu.Lock()
	k.paused = paused
	k.mu.Unlock()
}

// note says a job was kept in keptBy (from jrgoRunJob, on a worker), or a handle waits
// in freeBatches. Mostly a read of a flag.
func (k *keptSweeper) note() {
	if k.armed.Load() || !k.armed.CompareAndSwap(false, true) {
		return
	}
	k.once.Do(func() {
		k.wake = make(chan struct{}, 1)
		go k.run()
	})
	select {
	case k.wake <- struct{}{}:
	default:
	}
}

func (k *keptSweeper) run() {
	var early []*task // swept before their submit returned: looked at next time
	for range k.wake {
		for k.armed.Load() || len(early) > 0 {
			time.Sleep(keptSweep)
			early = k.sweep(early)
		}
	}
}

// sweep looks at the jobs early holds and the workers keep, frees the handles the
// batches hold, and returns the jobs to look at next time; unless paused.
func (k *keptSweeper) sweep(early []*task) []*task {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.paused {
		return early
	}
	k.armed.Store(false) // before the sweep: a job kept during it arms again
	waiting := early[:0]
	for _, t := range early {
		waiting = k.look(t, waiting)
	}
	for i := range keptBy[:C.jrgo_slots_used()] {
		if t := keptBy[i].Swap(nil); t != nil {
			waiting = k.look(t, waiting)
		}
	}
	freeBatches.flush()
	return waiting
}

// look makes sure the end of t, a swept job, will be noted (watchEnd), or, if its
// submit has not yet published its handle (the job ran and was kept before Submit
// returned), adds it to early.
func (k *keptSweeper) look(t *task, early []*task) []*task {
	if !t.h.ref.published() {
		return append(early, t)
	}
	t.watchEnd()
	return early
}

// closedChan is the channel doneChan gives for a task that has ended.
var closedChan = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// doneChan returns a channel closed when the task has ended, made on first use, and
// makes sure C's end will be seen: a job nobody waits for costs no channel and no done
// callback.
func (t *task) doneChan() <-chan struct{} {
	if t.ended.Load() {
		return closedChan
	}
	t.mu.Lock()
	if t.ended.Load() {
		t.mu.Unlock()
		return closedChan
	}
	if t.done == nil {
		t.done = make(chan struct{})
	}
	done := t.done
	t.mu.Unlock()
	t.watchEnd()
	return done
}

// watchEnd makes sure C's end of the job will be noted: now, if the job has ended (one
// look at its state), else by a done callback (jr_job_on_done, once per job). It does
// nothing once the handle is closed: Close calls it first.
func (t *task) watchEnd() {
	if !t.h.use() {
		return
	}
	defer t.h.done()
	t.mu.Lock()
	ask := !t.cEnded && !t.doneAsked
	t.doneAsked = t.doneAsked || ask
	t.mu.Unlock()
	if !ask {
		return
	}
	if s := t.h.cState(); s.Ended() {
		t.cEnd(s)
		return
	}
	// The callback takes the number back, exactly once; it may run before this returns.
	id := tasks.put(t)
	if st := C.jrgo_on_done(t.h.ptr, C.uintptr_t(id)); st != C.JR_OK {
		panic("jobrunner: jr_job_on_done: " + statusError(st).Error()) // a live handle: cannot fail
	}
}

// look notes C's end if the job has ended, unless it is already known. It reads the
// state (jrgo_state), never waits: jr_job_wait, even with no timeout, runs a job that
// has not started inline when called on a worker thread (inside a Go job).
func (t *task) look() {
	t.mu.Lock()
	known := t.cEnded
	t.mu.Unlock()
	if known || !t.h.use() {
		return
	}
	s := t.h.cState()
	t.h.done()
	if s.Ended() {
		t.cEnd(s)
	}
}

// endState is the terminal state of a job whose wait returned st (not JR_E_TIMEOUT).
func endState(st C.enum_jr_status) State {
	switch st {
	case C.JR_OK:
		return Succeeded
	case C.JR_E_JOB_FAILED:
		return Failed
	case C.JR_E_PANICKED:
		return Panicked
	default:
		return CancelledState
	}
}

// waitErr is Wait's error for a job that ended in s, which is not Succeeded: made by
// the first call (once the job has ended, after done is closed), and the same value for
// every later one.
func (t *task) waitErr(s State) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.failLocked()
	if f.waitErr == nil {
		f.waitErr = f.outcome(s) // not nil: s is not Succeeded
	}
	return f.waitErr
}

// outcome maps the job's terminal state to the Go error (nil for Succeeded).
func (f *taskFail) outcome(s State) error {
	switch s {
	case Succeeded:
		return nil
	case Failed:
		je := &JobError{Code: 1, Err: f.err}
		if f.err != nil {
			je.Message = f.err.Error()
			var inner *JobError
			if errors.As(f.err, &inner) && inner.Code != 0 {
				je.Code = inner.Code
			}
		}
		return je
	case Panicked:
		if f.panicked != nil { // recovered by run: every Go job's panic, in practice
			return f.panicked
		}
		return &PanicError{Message: "the job panicked outside its Go function"}
	default:
		return cancelledError(f.cause, f.err)
	}
}

// cPanic is the PanicError of a job that panicked outside Go.
func cPanic(job *C.jr_job) *PanicError {
	return &PanicError{Message: C.GoString(C.jr_job_error_message(job))}
}

// handleBlock holds the C handles of jobs (Submit's and SubmitNative's),
// handleBlockSize at a time, with one finalizer for them all: once no job points into
// the block any more, it frees the handles nobody freed (a job dropped before anything
// saw it end, and not closed). A finalizer per job cost about 300 ns here, more than a
// goroutine; per block, a few. The block holds no Go pointer: a collection has nothing
// to mark on the finalizer's behalf, and a job's other memory is freed as soon as the
// job is unreachable. The price: while one job of a block is reachable, the handles of
// its dropped, unclosed neighbours (at most 63, with a native job's untaken result)
// stay allocated; Close, or any look at a job's end, releases a handle without waiting
// (freed with the next 63 released, or by the sweeper: see freeBatches).
type handleBlock struct {
	h    [handleBlockSize]jobHandle
	next atomic.Int32 // the next unused handle
}

const handleBlockSize = 64

// handles is the block handles are taken from; mu serialises making the next one.
var handles struct {
	mu  sync.Mutex
	cur atomic.Pointer[handleBlock]
}

// newJobHandle returns an empty handle (ptr nil, open, its submitter's use held) for a
// job about to be submitted: one atomic add, and a new block every handleBlockSize
// handles.
func newJobHandle() *jobHandle {
	for {
		if b := handles.cur.Load(); b != nil {
			if i := b.next.Add(1) - 1; i < handleBlockSize {
				return &b.h[i]
			}
		}
		handles.mu.Lock()
		if b := handles.cur.Load(); b == nil || b.next.Load() >= handleBlockSize {
			b = new(handleBlock)
			for i := range b.h {
				b.h[i].ref.state.Store(1) // its submitter's use, until publish
			}
			runtime.SetFinalizer(b, (*handleBlock).release)
			handles.cur.Store(b)
		}
		handles.mu.Unlock()
	}
}

// release frees the handles nobody freed: no job points to them, so no call can be
// using them. They join freeBatches, whose first handle arms the sweeper: it frees them
// within keptSweep if no batch fills first. (It used to flush the batches itself: a
// finalizer, run at a garbage collection's whim, then freed handles a test had just
// seen released and was following, with its sweeps paused.)
func (b *handleBlock) release() {
	for i := range b.h {
		b.h[i].close()
	}
}
