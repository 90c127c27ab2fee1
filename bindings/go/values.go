package jobrunner

// #include <stdint.h>
import "C"

import (
	"runtime/cgo"
	"sync/atomic"
)

// Go values that C holds (the items of a Chan, a Stream or a Pipeline) travel as
// runtime/cgo.Handle numbers: C never sees a Go pointer. Every handle made here is
// deleted exactly once: by whoever takes the value out (a receive, a read, a
// pipeline's output; a stage writes into the item's box and keeps its handle), or by the C object's item_free (jrgoChanItemFree) for
// the items it destroys (buffered when it is freed, dropped by a stage, inside a
// pipeline that failed or was cancelled). heldValues counts the live ones.

// heldValues is the number of Go values C holds now (handles made and not deleted).
var heldValues atomic.Int64

// HeldValues returns the number of Go values held by the C side now: the items of
// every Chan, Stream and Pipeline that have not been taken out or dropped. A program
// that has closed and drained them all sees 0; anything else is a leak (the test
// suite and the log_ingest example check it).
func HeldValues() int64 { return heldValues.Load() }

// newItem makes the handle of v for C.
func newItem(v any) C.uintptr_t {
	heldValues.Add(1)
	return C.uintptr_t(cgo.NewHandle(v))
}

// takeItem takes the value out of a handle C gave back, and deletes the handle.
func takeItem[T any](item C.uintptr_t) T {
	h := cgo.Handle(item)
	v := h.Value().(T)
	h.Delete()
	heldValues.Add(-1)
	return v
}

// peekItem reads the value of a handle C lends (a stage's input): the handle stays.
func peekItem[T any](item C.uintptr_t) T {
	return cgo.Handle(item).Value().(T)
}

// dropItem deletes a handle whose value nobody will take.
func dropItem(item C.uintptr_t) {
	cgo.Handle(item).Delete()
	heldValues.Add(-1)
}
