// Package cjobs holds C job functions for the tests of package jobrunner (a _test.go
// file cannot use cgo): native jobs that run without entering Go.
package cjobs

/*
#cgo CFLAGS: -I${SRCDIR}/../../../../include
#include <stdint.h>
#include <stdlib.h>
#include "jobrunner.h"

// Squares *(int64_t *)arg into a malloc'd result.
static int32_t jrtest_square(jr_ctx *ctx, void *arg, void **result) {
	(void)ctx;
	int64_t *out = malloc(sizeof *out);
	if (out == NULL) return 1;
	*out = *(int64_t *)arg * *(int64_t *)arg;
	*result = out;
	return 0;
}

// Fails with code 42 and a message.
static int32_t jrtest_fail(jr_ctx *ctx, void *arg, void **result) {
	(void)arg; (void)result;
	jr_ctx_fail(ctx, "native failure");
	return 42;
}

// Increments *(int64_t *)arg atomically: a tiny job for benchmarks.
static int32_t jrtest_incr(jr_ctx *ctx, void *arg, void **result) {
	(void)ctx; (void)result;
	__atomic_fetch_add((int64_t *)arg, 1, __ATOMIC_RELAXED);
	return 0;
}

static void *jrtest_square_ptr(void) { return (void *)jrtest_square; }
static void *jrtest_fail_ptr(void) { return (void *)jrtest_fail; }
static void *jrtest_incr_ptr(void) { return (void *)jrtest_incr; }
static void *jrtest_free_ptr(void) { return (void *)free; }
static void jrtest_incr_direct(int64_t *counter) { jrtest_incr(NULL, counter, NULL); }

// Takes and frees every ended job the group still keeps for jr_group_next; their count.
static int64_t jrtest_group_retained(jr_group *group) {
	int64_t n = 0;
	jr_job *job;
	jr_status s;
	while ((s = jr_group_next(group, 0, &job)) == JR_OK) {
		jr_job_free(job);
		n++;
	}
	return s == JR_E_INVALID_ARG ? -1 : n;
}
*/
import "C"

import "unsafe"

// Square is a jr_job_fn that squares the int64_t its arg points to into a malloc'd
// int64_t result.
func Square() unsafe.Pointer { return C.jrtest_square_ptr() }

// Fail is a jr_job_fn that fails with code 42 and the message "native failure".
func Fail() unsafe.Pointer { return C.jrtest_fail_ptr() }

// Incr is a jr_job_fn that atomically increments the int64_t its arg points to.
func Incr() unsafe.Pointer { return C.jrtest_incr_ptr() }

// Free is C's free, as a jr_free_fn.
func Free() unsafe.Pointer { return C.jrtest_free_ptr() }

// NewInt64 allocates a C int64_t holding v (free it with FreeMem, or WithArgFree(Free())).
func NewInt64(v int64) unsafe.Pointer {
	p := C.malloc(C.sizeof_int64_t)
	*(*int64)(p) = v
	return p
}

// Load reads the int64_t at p.
func Load(p unsafe.Pointer) int64 { return int64(*(*C.int64_t)(p)) }

// FreeMem frees C memory.
func FreeMem(p unsafe.Pointer) { C.free(p) }

// IncrDirect calls the C increment directly, from Go: the cost of the cgo call alone.
func IncrDirect(counter unsafe.Pointer) { C.jrtest_incr_direct((*C.int64_t)(counter)) }

// GroupRetained takes and frees the ended jobs a C group (a *jr_group) still keeps for
// jr_group_next, and returns how many there were: -1 if jr_group_next is refused (a
// wait_only group, which keeps none).
func GroupRetained(group unsafe.Pointer) int64 {
	return int64(C.jrtest_group_retained((*C.jr_group)(group)))
}
