package jobrunner

// The Go functions C calls (through the shims of cgo.go). This file's preamble may
// only declare C, not define it.

// #include <stdint.h>
// #include "jobrunner.h"
import "C"

// jrgoRunJob runs a Go job on a worker: id is its task's number in the task table. A
// one-shot job (once is 1) ends its Go side here (C's arg_free will not call back); a
// periodic job's arg_free ends it after its last run.
//
// prev (0: none) is the number of a job this worker kept after it succeeded, now known
// to have ended (see jrgo_slot in cgo.go). keep (NULL: not allowed) asks to keep this
// one the same way: if it succeeds and has a handle, its number stays taken and *keep
// is set; otherwise its number is taken back here.
//
//export jrgoRunJob
func jrgoRunJob(jctx *C.jr_ctx, id C.uintptr_t, once C.int32_t, prev C.uintptr_t, keep *C.int32_t) C.int32_t {
	if prev != 0 {
		jrgoEndPrev(prev)
	}
	if once == 0 {
		return C.int32_t(tasks.get(uintptr(id)).run(jctx))
	}
	if keep == nil {
		t := tasks.take(uintptr(id))
		code := t.run(jctx)
		t.finish()
		return C.int32_t(code)
	}
	t := tasks.get(uintptr(id))
	code := t.run(jctx)
	if code == 0 && t.h != nil { // succeeded, and a Submit job (a group's has no handle)
		*keep = 1
		kept.note()
	} else {
		tasks.take(uintptr(id))
	}
	t.finish()
	return C.int32_t(code)
}

// jrgoEndPrev notes the end of a job kept by its worker (see jrgo_slot in cgo.go): it
// has ended, succeeded. From the next Go job on that worker, or its stop hook.
//
//export jrgoEndPrev
func jrgoEndPrev(id C.uintptr_t) {
	tasks.take(uintptr(id)).cEnd(Succeeded)
}

// jrgoFreeArg ends the Go side of a job that ended without running, or of a periodic
// job after its last run: C calls it exactly once, from the job's arg_free, on any
// thread. It takes the task's number back and finishes the task.
//
//export jrgoFreeArg
func jrgoFreeArg(id C.uintptr_t) {
	tasks.take(uintptr(id)).finish()
}

// jrgoJobDone notes that a job with a handle has ended in state: C calls it exactly
// once, from the jr_job_on_done callback that task.watchEnd registered (id is the
// number it gave the callback), on the thread that ended the job.
//
//export jrgoJobDone
func jrgoJobDone(id C.uintptr_t, state C.int32_t) {
	tasks.take(uintptr(id)).cEnd(State(state))
}
