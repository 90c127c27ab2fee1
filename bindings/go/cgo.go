package jobrunner

// This file holds the package's #cgo directives and the small C shims the binding
// needs; the Go functions that C calls back are in callbacks.go (a file with //export
// may not define C functions in its preamble).
//
// By default the package links target/release/libjobrunner.a (built by
// `cargo build --release` at the repository root), so a Go program that uses it is a
// single self-contained binary. With the build tag jobrunner_shared it links
// target/release/libjobrunner.so instead, found at run time through an rpath.

/*
#cgo CFLAGS: -I${SRCDIR}/../../include
#cgo !jobrunner_shared LDFLAGS: ${SRCDIR}/../../target/release/libjobrunner.a -lpthread -ldl -lm
#cgo jobrunner_shared LDFLAGS: -L${SRCDIR}/../../target/release -ljobrunner -Wl,-rpath,${SRCDIR}/../../target/release

#include <stdint.h>
#include <stdlib.h>
#include "jobrunner.h"

// The trampolines of callbacks.go.
extern int32_t jrgoRunJob(jr_ctx *ctx, uintptr_t handle, int32_t once);
extern void jrgoFreeArg(uintptr_t handle);

// A one-shot Go job's argument: C memory holding its cgo.Handle, and whether the job
// ran. A job that ran has ended its Go side itself (jrgoRunJob with once = 1), so its
// arg_free frees this block without a second call into Go.
typedef struct {
	uintptr_t handle;
	int32_t ran;
} jrgo_arg;

static int32_t jrgo_run_once(jr_ctx *ctx, void *arg, void **result) {
	(void)result;
	jrgo_arg *a = arg;
	a->ran = 1;
	return jrgoRunJob(ctx, a->handle, 1);
}

static void jrgo_free_once(void *arg) {
	jrgo_arg *a = arg;
	if (!a->ran) {
		jrgoFreeArg(a->handle); // ended without running: tell Go
	}
	free(a);
}

static int32_t jrgo_run_every(jr_ctx *ctx, void *arg, void **result) {
	(void)result;
	return jrgoRunJob(ctx, (uintptr_t)arg, 0);
}

static void jrgo_free_every(void *arg) { jrgoFreeArg((uintptr_t)arg); }

// Submits a Go job: `handle` is a runtime/cgo.Handle to its task (an integer, never a
// Go pointer), deleted once the job has ended. On an error nothing was submitted and
// the handle is still the caller's.
enum jr_status jrgo_submit(jr_pool *pool, uintptr_t handle, jr_submit_options *opts,
                           jr_job **out) {
	jrgo_arg *a = malloc(sizeof *a);
	if (a == NULL) return JR_E_NO_MEMORY;
	a->handle = handle;
	a->ran = 0;
	opts->arg_free = jrgo_free_once;
	enum jr_status st = jr_submit(pool, jrgo_run_once, a, opts, out);
	if (st != JR_OK) free(a);
	return st;
}

// Submits a periodic Go job (jr_submit_every): the runs share the handle, deleted by
// the arg_free once the last run has ended.
enum jr_status jrgo_submit_every(jr_pool *pool, int64_t period_ns, uintptr_t handle,
                                 jr_submit_options *opts, jr_job **out) {
	opts->arg_free = jrgo_free_every;
	return jr_submit_every(pool, period_ns, jrgo_run_every, (void *)handle, opts, out);
}

// Submits a C job function (a jr_job_fn given to Go as a plain pointer).
enum jr_status jrgo_submit_native(jr_pool *pool, void *fn, void *arg, jr_submit_options *opts,
                                    jr_job **out) {
	return jr_submit(pool, (jr_job_fn)fn, arg, opts, out);
}
*/
import "C"
