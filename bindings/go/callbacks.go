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
	tasks.take(uintptr(id)).finish(false)
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

// jrgoChanItemFree deletes the handle of a channel item nobody received (the channel's
// item_free, as the channel is freed), on any thread.
//
//export jrgoChanItemFree
func jrgoChanItemFree(item C.uintptr_t) {
	cgo.Handle(item).Delete()
	chanItemsFreed.Add(1)
}

// chanItemsFreed counts the items channels freed unreceived, for the tests.
var chanItemsFreed atomic.Int64
