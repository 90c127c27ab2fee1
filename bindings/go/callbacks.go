package jobrunner

// The Go functions C calls (through the shims of cgo.go). This file's preamble may
// only declare C, not define it.

// #include <stdint.h>
// #include "jobrunner.h"
import "C"

import (
	"runtime"
	"runtime/cgo"
	"runtime/metrics"
	"sync/atomic"
)

// jrgoRunJob runs a Go job on a worker: id is its task's number in the task table. A
// one-shot job (once is 1) ends its Go side here (C's arg_free will not call back); a
// periodic job's arg_free ends it after its last run.
//
// slot (-1: none) is the worker thread's slot in keptBy, for a job not nested in another
// Go job: the job the thread kept there has ended, and is told so first; this one, if
// it succeeds and has a handle, is kept there in turn (see jrgo_slot in cgo.go).
//
//export jrgoRunJob
func jrgoRunJob(jctx *C.jr_ctx, id C.uintptr_t, once C.int32_t, slot C.int32_t) C.int32_t {
	if once == 0 {
		return C.int32_t(tasks.get(uintptr(id)).run(jctx))
	}
	t := tasks.take(uintptr(id))
	if slot >= 0 {
		if prev := keptBy[slot].Swap(nil); prev != nil {
			prev.cEnd(Succeeded)
		}
	}
	code := t.run(jctx)
	t.finish(code == 0)
	if slot >= 0 && code == 0 && t.h != nil { // succeeded, and a Submit job (a group's has no handle)
		keptBy[slot].Store(t)
		kept.note()
	}
	return C.int32_t(code)
}

// jrgoEndSlot tells the end of the job a worker kept, if any, as the worker exits (its
// stop hook): the thread ran it, so it has ended.
//
//export jrgoEndSlot
func jrgoEndSlot(slot C.int32_t) {
	if t := keptBy[slot].Swap(nil); t != nil {
		t.cEnd(Succeeded)
	}
}

// jrgoFreeArg ends the Go side of a job that ended without running, or of a periodic
// job after its last run: C calls it exactly once, from the job's arg_free, on any
// thread. It takes the task's number back and finishes the task.
//
//export jrgoFreeArg
func jrgoFreeArg(id C.uintptr_t) {
	t := tasks.take(uintptr(id))
	t.finish(false)
	if sb, ok := t.body.(streamBody); ok { // a stream's producer that never ran
		sb.producerEnded()
	}
}

// jrgoJobDone notes that a job with a handle has ended in state: C calls it exactly
// once, from the jr_job_on_done callback that task.watchEnd registered (id is the
// number it gave the callback), on the thread that ended the job.
//
//export jrgoJobDone
func jrgoJobDone(id C.uintptr_t, state C.int32_t) {
	tasks.take(uintptr(id)).cEnd(State(state))
}

// jrgoPark runs on a worker thread that called into Go since it last blocked, as it is
// about to block (see jrgo_thread_park in cgo.go); slot is the thread's slot in keptBy
// (-1: none).
//
//export jrgoPark
func jrgoPark(slot C.int32_t) { park(int(slot)) }

// park yields if goroutines wait for a P: the scheduler hands this thread's P to one of
// them (a callback's goroutine is locked to its thread: the thread waits until a P is
// free again, then returns to C to block). Otherwise it returns at once, and the thread
// keeps the P for its next call into Go. A thread with a slot reads the metric into
// the slot's sample (no allocation).
func park(slot int) {
	parkCalls.Add(1)
	var sample []metrics.Sample
	if slot >= 0 {
		sample = keptBy[slot].runnable[:]
	} else {
		sample = make([]metrics.Sample, 1)
	}
	if sample[0].Name == "" {
		sample[0].Name = runnableMetric
	}
	metrics.Read(sample)
	if sample[0].Value.Kind() == metrics.KindUint64 && sample[0].Value.Uint64() > 0 {
		parkYields.Add(1)
		runtime.Gosched()
	}
}

// runnableMetric counts the goroutines ready to run that no P runs yet.
const runnableMetric = "/sched/goroutines/runnable:goroutines"

// parkCalls and parkYields count park's calls and its yields, for the tests.
var parkCalls, parkYields atomic.Int64

// jrgoChanItemFree deletes the handle of an item C destroys (the item_free of a
// channel, a stream or a pipeline): one nobody received, or a pipeline's item that was
// dropped, or inside at a failure or the free. On any thread.
//
//export jrgoChanItemFree
func jrgoChanItemFree(item C.uintptr_t) {
	dropItem(item)
	chanItemsFreed.Add(1)
}

// chanItemsFreed counts the items C destroyed unreceived, for the tests.
var chanItemsFreed atomic.Int64

// jrgoRunStream runs a stream's Go producer on a worker (jr_stream_fn): id is its
// task's number, out the channel it sends on, lent for the call. It ends the task's Go
// side, as jrgoRunJob does for a one-shot job.
//
//export jrgoRunStream
func jrgoRunStream(jctx *C.jr_ctx, id C.uintptr_t, out *C.jr_chan) C.int32_t {
	t := tasks.take(uintptr(id))
	sb := t.body.(streamBody)
	sb.setOut(out)
	code := t.run(jctx)
	sb.setOut(nil)
	t.finish(code == 0)
	sb.producerEnded()
	return C.int32_t(code)
}

// jrgoRunStage runs a pipeline stage's Go function on a worker (jr_stage_fn): stage is
// the stage's runtime/cgo.Handle, item the input's (lent). On JR_STAGE_EMIT the output
// is in the item's box (pipeItem), so the item goes on with its handle and *out is
// left alone.
//
//export jrgoRunStage
func jrgoRunStage(jctx *C.jr_ctx, stage C.uintptr_t, item C.uintptr_t) C.int32_t {
	return C.int32_t(cgo.Handle(stage).Value().(stageRunner).run(jctx, item))
}
