package jobrunner

// The Go functions C calls (through the shims of cgo.go). This file's preamble may
// only declare C, not define it.

// #include <stdint.h>
// #include "jobrunner.h"
import "C"

import "runtime/cgo"

// jrgoRunJob runs a Go job on a worker: handle is the cgo.Handle of its task. once is
// 1 for a one-shot job, which ends its Go side here (the handle is deleted and the
// task finished: C's arg_free will not call back); 0 for a run of a periodic job.
//
//export jrgoRunJob
func jrgoRunJob(jctx *C.jr_ctx, handle C.uintptr_t, once C.int32_t) C.int32_t {
	h := cgo.Handle(handle)
	t := h.Value().(*task)
	code := t.run(jctx)
	if once != 0 {
		h.Delete()
		t.finish()
	}
	return C.int32_t(code)
}

// jrgoFreeArg ends the Go side of a job that ended without running, or of a periodic
// job after its last run: C calls it exactly once, from the job's arg_free, on any
// thread. It deletes the handle and finishes the task.
//
//export jrgoFreeArg
func jrgoFreeArg(handle C.uintptr_t) {
	h := cgo.Handle(handle)
	t := h.Value().(*task)
	h.Delete()
	t.finish()
}
