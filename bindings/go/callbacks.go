package jobrunner

// The Go functions C calls (through the shims of cgo.go). This file's preamble may
// only declare C, not define it.

// #include <stdint.h>
// #include "jobrunner.h"
import "C"

// The modes of jrgoRunJob (JRGO_* in cgo.go).
const (
	modeEvery   = 0 // a run of a periodic job: its arg_free ends it
	modeOnce    = 1 // a detached one-shot job: ends here, or in arg_free if it never runs
	modeTracked = 2 // a job with a handle: ends in jrgoJobDone
)

// jrgoRunJob runs a Go job on a worker: id is its task's number in the task table. A
// detached one-shot job (modeOnce) ends its Go side here (its number is taken back and
// the task finished: C's arg_free will not call back); the others end later.
//
//export jrgoRunJob
func jrgoRunJob(jctx *C.jr_ctx, id C.uintptr_t, mode C.int32_t) C.int32_t {
	if mode == modeOnce {
		t := tasks.take(uintptr(id))
		code := t.run(jctx)
		t.finish()
		return C.int32_t(code)
	}
	return C.int32_t(tasks.get(uintptr(id)).run(jctx))
}

// jrgoFreeArg ends the Go side of a detached job that ended without running, or of a
// periodic job after its last run: C calls it exactly once, from the job's arg_free, on
// any thread. It takes the task's number back and finishes the task.
//
//export jrgoFreeArg
func jrgoFreeArg(id C.uintptr_t) {
	tasks.take(uintptr(id)).finish()
}

// jrgoJobDone ends the Go side of a job with a handle (Submit): C calls it exactly once,
// from jr_job_on_done, once the job's state is terminal (state), whether it ran or not,
// on the thread that ended it.
//
//export jrgoJobDone
func jrgoJobDone(id C.uintptr_t, state C.int32_t) {
	tasks.take(uintptr(id)).end(State(state))
}
