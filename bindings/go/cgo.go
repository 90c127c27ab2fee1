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
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include "jobrunner.h"
#include "jrgo.h"

// The trampolines of callbacks.go.
extern int32_t jrgoRunJob(jr_ctx *ctx, uintptr_t id, int32_t once, int32_t slot);
extern void jrgoFreeArg(uintptr_t id);
extern void jrgoEndSlot(int32_t slot);
extern void jrgoJobDone(uintptr_t id, int32_t state);
extern void jrgoPark(int32_t slot);
extern void jrgoChanItemFree(uintptr_t item);
extern int32_t jrgoRunStream(jr_ctx *ctx, uintptr_t id, jr_chan *out);
extern int32_t jrgoRunStage(jr_ctx *ctx, uintptr_t stage, uintptr_t item);

// A one-shot Go job's argument is its task's number, submitted with fn_owns_arg: a job
// that runs ends its Go side itself (jrgoRunJob with once = 1), and arg_free calls back
// into Go only for a job that ended without running. No C memory per job.
//
// The end of a job that succeeded is told to Go by the next Go job its worker runs, so
// that Wait finds it ended without a cgo call to read C's state: a worker ends a job
// (its state terminal) before it starts anything else, so when a job starts, the one its
// thread ran before it has ended, and in the state Go knows (a Go function that returned
// 0 and did not panic ends JR_JOB_SUCCEEDED). Go keeps such a job in the slot of its
// thread (keptBy in task.go) until then. Only a job not nested in another Go job (depth
// 0) is kept so, and only on a thread that ran the binding's start hook, which gave it a
// slot number (jrgo_slot); its stop hook tells Go the last one as the thread exits. A
// worker may run no Go job for a long time (idle, or busy with other languages' jobs on
// the global pool), so a sweeper takes what the slots hold every few milliseconds while
// jobs are kept (kept in task.go).

static pthread_mutex_t jrgo_slots_mu = PTHREAD_MUTEX_INITIALIZER;
static int32_t jrgo_free_slots[JRGO_SLOTS]; // slot numbers given back, under the mutex
static int32_t jrgo_nfree, jrgo_next_slot;  // under the mutex
static __thread int32_t jrgo_slot = -1;     // this thread's slot (-1: not hooked)
static __thread int32_t jrgo_depth;         // Go jobs running on this thread's stack
static __thread int32_t jrgo_called;        // called into Go since it last blocked

// A Go processor (P) held by a worker thread: a C thread that calls into Go takes a P
// and, back in C, keeps it, as after a system call, until it calls into Go again or the
// Go scheduler's monitor (sysmon) takes it back: 20 us to 10 ms later, as its ticks back
// off. A goroutine that a job readied (the submitter waiting for it, say) goes to the
// run queue of that P, and waits there. With as many workers as GOMAXPROCS, every P
// can sit with an idle worker while goroutines wait: in the benchmark, the submitter
// waited ~300 us at each of ~120 wakes per 100,000 jobs, a quarter of the run. So a
// worker about to block that has called into Go since it last blocked (jrgo_called)
// calls jrgoPark, which hands its P to the goroutines that wait for one, if any.
static void jrgo_thread_park(void *arg, size_t index) {
	(void)arg;
	(void)index;
	if (!jrgo_called) return;
	jrgo_called = 0;
	jrgoPark(jrgo_slot);
}

static int32_t jrgo_run_once(jr_ctx *ctx, void *arg, void **result) {
	(void)result;
	jrgo_called = 1;
	int32_t slot = jrgo_depth == 0 ? jrgo_slot : -1;
	jrgo_depth++;
	int32_t code = jrgoRunJob(ctx, (uintptr_t)arg, 1, slot);
	jrgo_depth--;
	return code;
}

static void jrgo_thread_start(void *arg, size_t index) {
	(void)arg;
	(void)index;
	int32_t slot = -1;
	pthread_mutex_lock(&jrgo_slots_mu);
	if (jrgo_nfree > 0) {
		slot = jrgo_free_slots[--jrgo_nfree];
	} else if (jrgo_next_slot < JRGO_SLOTS) {
		slot = jrgo_next_slot++;
	}
	pthread_mutex_unlock(&jrgo_slots_mu);
	jrgo_slot = slot; // -1 past JRGO_SLOTS threads at once: this one keeps no job
}

static void jrgo_thread_stop(void *arg, size_t index) {
	(void)arg;
	(void)index;
	int32_t slot = jrgo_slot;
	if (slot < 0) return;
	jrgo_slot = -1;
	jrgoEndSlot(slot); // the thread ran it, and is exiting: it has ended
	pthread_mutex_lock(&jrgo_slots_mu);
	jrgo_free_slots[jrgo_nfree++] = slot;
	pthread_mutex_unlock(&jrgo_slots_mu);
}

// How many slots have been given out so far (a high-water mark): the sweeper looks at
// keptBy up to there.
int32_t jrgo_slots_used(void) {
	pthread_mutex_lock(&jrgo_slots_mu);
	int32_t n = jrgo_next_slot;
	pthread_mutex_unlock(&jrgo_slots_mu);
	return n;
}

// Adds the binding's worker hooks (see jrgo_slot and jrgo_thread_park) to a pool Go
// made or borrowed.
enum jr_status jrgo_add_hooks(jr_pool *pool) {
	enum jr_status st = jr_pool_add_thread_hooks(pool, jrgo_thread_start, jrgo_thread_stop, NULL);
	if (st != JR_OK) return st;
	return jr_pool_add_park_hook(pool, jrgo_thread_park, NULL);
}

// A one-shot job's arg_free (for a job that ended without running) and a periodic
// job's (after its last run): the Go side ends the task.
static void jrgo_free_arg(void *arg) {
	jrgo_called = 1;
	jrgoFreeArg((uintptr_t)arg);
}

static int32_t jrgo_run_every(jr_ctx *ctx, void *arg, void **result) {
	(void)result;
	jrgo_called = 1;
	jrgo_depth++;
	int32_t code = jrgoRunJob(ctx, (uintptr_t)arg, 0, -1);
	jrgo_depth--;
	return code;
}

static void jrgo_done(void *arg, enum jr_state state) {
	jrgo_called = 1;
	jrgoJobDone((uintptr_t)arg, (int32_t)state);
}

// What a submit shim returns: the status and the handle (NULL if none was asked for or
// on an error). Options go in and the handle comes out by value, so that no Go pointer
// crosses into C: a pointer argument would move both to the Go heap, and cgo would
// check it, on every submit.
typedef struct {
	enum jr_status status;
	jr_job *job;
} jrgo_submitted;

// Submits a Go job: `id` is its task's number in the task table (an integer, never a Go
// pointer), taken back once the job's Go side has ended. On an error nothing was
// submitted and the number is still the caller's. A group's job is detached (no handle).
jrgo_submitted jrgo_submit(jr_pool *pool, uintptr_t id, jr_submit_options opts) {
	jrgo_submitted r = {JR_OK, NULL};
	opts.arg_free = jrgo_free_arg;
	opts.fn_owns_arg = 1;
	r.status = jr_submit(pool, jrgo_run_once, (void *)id, &opts, opts.group ? NULL : &r.job);
	return r;
}

// jrgo_submit with the default options but a token or a group (either may be NULL;
// detached with a group), every argument an integer: cgo checks a pointer argument (the
// options hold some) on each call, and this is the submit of nearly every Go job.
static jr_submit_options jrgo_default_options; // made once: not a call per submit

__attribute__((constructor)) static void jrgo_init_default_options(void) {
	jrgo_default_options = jr_submit_options_default();
}

jrgo_submitted jrgo_submit_simple(uintptr_t pool, uintptr_t id, uintptr_t token,
                                  uintptr_t group) {
	jr_submit_options opts = jrgo_default_options;
	opts.token = (jr_token *)token;
	opts.group = (jr_group *)group;
	return jrgo_submit((jr_pool *)pool, id, opts);
}

// Channels of Go values: an item is a runtime/cgo.Handle number (an integer, never a Go
// pointer); the channel's item_free deletes the handle of an item nobody received.
static void jrgo_chan_item_free(void *item) {
	jrgo_called = 1;
	jrgoChanItemFree((uintptr_t)item);
}

enum jr_status jrgo_chan_new(size_t capacity, jr_chan **out) {
	return jr_chan_new(capacity, jrgo_chan_item_free, out);
}

enum jr_status jrgo_chan_send(jr_chan *ch, uintptr_t item, int64_t timeout_ns, jr_token *tok) {
	return jr_chan_send(ch, (void *)item, timeout_ns, tok);
}

// What jrgo_chan_recv returns: the status and the item, by value (an out-parameter would
// move Go memory to the heap on every call).
typedef struct {
	enum jr_status status;
	uintptr_t item;
} jrgo_received;

jrgo_received jrgo_chan_recv(jr_chan *ch, int64_t timeout_ns, jr_token *tok) {
	jrgo_received r = {JR_OK, 0};
	void *item = NULL;
	r.status = jr_chan_recv(ch, &item, timeout_ns, tok);
	r.item = (uintptr_t)item;
	return r;
}

// What a drain returns: how many items it read into the buffer, and the status that
// stopped it (JR_OK: the buffer is full; JR_E_TIMEOUT: nothing more ready now; else the
// end the stream or pipeline reported).
typedef struct {
	enum jr_status status;
	size_t n;
} jrgo_drained;

// Streams of Go values (stream.go): the producer is a Go task (its number the job's
// argument, owned by the function as for a one-shot job: arg_free ends the Go side of a
// producer that never ran); the items are runtime/cgo.Handle numbers, the ones nobody
// reads deleted by jrgo_chan_item_free.
static int32_t jrgo_stream_run(jr_ctx *ctx, void *arg, jr_chan *out) {
	jrgo_called = 1;
	jrgo_depth++;
	int32_t code = jrgoRunStream(ctx, (uintptr_t)arg, out);
	jrgo_depth--;
	return code;
}

enum jr_status jrgo_stream_new(uintptr_t pool, uintptr_t id, size_t capacity, uintptr_t token,
                          jr_stream **out) {
	jr_submit_options opts = jrgo_default_options;
	opts.token = (jr_token *)token;
	opts.arg_free = jrgo_free_arg;
	opts.fn_owns_arg = 1;
	return jr_stream_new((jr_pool *)pool, jrgo_stream_run, (void *)id, capacity,
	                     jrgo_chan_item_free, &opts, out);
}

// jrgo_stream_new with options (a semaphore, a delay, a name, ...), by value as for
// jrgo_submit.
enum jr_status jrgo_stream_new_opts(jr_pool *pool, uintptr_t id, size_t capacity,
                               jr_submit_options opts, jr_stream **out) {
	opts.arg_free = jrgo_free_arg;
	opts.fn_owns_arg = 1;
	return jr_stream_new(pool, jrgo_stream_run, (void *)id, capacity, jrgo_chan_item_free,
	                     &opts, out);
}

// Reads up to cap items into buf: the first waiting at most first_timeout_ns, the
// others not at all. One cgo call per batch instead of one per item.
jrgo_drained jrgo_stream_drain(jr_stream *s, uintptr_t *buf, size_t cap,
                               int64_t first_timeout_ns) {
	jrgo_drained r = {JR_OK, 0};
	while (r.n < cap) {
		void *item = NULL;
		enum jr_status st = jr_stream_next(s, &item, r.n == 0 ? first_timeout_ns : 0);
		if (st != JR_OK) {
			r.status = st;
			break;
		}
		buf[r.n++] = (uintptr_t)item;
	}
	return r;
}

// Pipelines of Go values (pipeline.go): stage_arg is the stage's runtime/cgo.Handle
// number; items are cgo.Handle numbers, deleted by jrgo_chan_item_free when the
// pipeline destroys them. A Go stage writes its output into the item (a box) and
// leaves *out alone.
static int32_t jrgo_stage_run(jr_ctx *ctx, void *stage_arg, void *item, void **out) {
	jrgo_called = 1;
	jrgo_depth++;
	(void)out; // the output is in the item's box: the item goes on as it is
	int32_t code = jrgoRunStage(ctx, (uintptr_t)stage_arg, (uintptr_t)item);
	jrgo_depth--;
	return code;
}

enum jr_status jrgo_pipeline_new(uintptr_t pool, size_t max_in_flight, uintptr_t token,
                            jr_pipeline **out) {
	jr_pipeline_options opts;
	enum jr_status st = jr_pipeline_options_init(&opts, sizeof opts);
	if (st != JR_OK) return st;
	opts.max_in_flight = max_in_flight;
	opts.token = (jr_token *)token;
	opts.item_free = jrgo_chan_item_free;
	return jr_pipeline_new((jr_pool *)pool, &opts, out);
}

enum jr_status jrgo_pipeline_add_stage(jr_pipeline *p, uintptr_t stage, size_t concurrency,
                                  int32_t ordered) {
	return jr_pipeline_add_stage(p, jrgo_stage_run, (void *)stage, concurrency, ordered);
}

enum jr_status jrgo_pipeline_push(jr_pipeline *p, uintptr_t item, int64_t timeout_ns) {
	return jr_pipeline_push(p, (void *)item, timeout_ns);
}

// jrgo_stream_drain for a pipeline's output.
jrgo_drained jrgo_pipeline_drain(jr_pipeline *p, uintptr_t *buf, size_t cap,
                                 int64_t first_timeout_ns) {
	jrgo_drained r = {JR_OK, 0};
	while (r.n < cap) {
		void *item = NULL;
		enum jr_status st = jr_pipeline_next(p, &item, r.n == 0 ? first_timeout_ns : 0);
		if (st != JR_OK) {
			r.status = st;
			break;
		}
		buf[r.n++] = (uintptr_t)item;
	}
	return r;
}

// The failure a pipeline or stream reported, read in the same cgo call: its code and a
// copy of its message (malloc'd, for the caller to free; NULL if none).
typedef struct {
	int32_t code;
	char *message;
} jrgo_failure;

static char *jrgo_strdup(const char *s) {
	if (s == NULL) return NULL;
	size_t n = strlen(s) + 1;
	char *c = malloc(n);
	if (c != NULL) memcpy(c, s, n);
	return c;
}

jrgo_failure jrgo_pipeline_failure(jr_pipeline *p) {
	jrgo_failure f = {0, NULL};
	jr_pipeline_error_code(p, &f.code);
	f.message = jrgo_strdup(jr_pipeline_error_message(p));
	return f;
}

jrgo_failure jrgo_stream_failure(jr_stream *s) {
	jrgo_failure f = {0, NULL};
	jr_stream_error_code(s, &f.code);
	f.message = jrgo_strdup(jr_stream_error_message(s));
	return f;
}

// Frees n job handles (a batch of freeBatches): one cgo call for them all.
void jrgo_free_jobs(jr_job **jobs, size_t n) {
	for (size_t i = 0; i < n; i++) jr_job_free(jobs[i]);
}

// The job's state, returned by value (an out-parameter would be Go memory escaping to the
// heap on every call).
int32_t jrgo_state(jr_job *job) {
	enum jr_state s = JR_JOB_QUEUED;
	jr_job_state(job, &s);
	return (int32_t)s;
}

// Asks for jrgoJobDone(id, state) once the job has ended (at once, on this thread, if it
// has).
enum jr_status jrgo_on_done(jr_job *job, uintptr_t id) {
	return jr_job_on_done(job, jrgo_done, (void *)id);
}

// Submits a periodic Go job (jr_submit_every): the runs share the task's number, taken
// back by the arg_free once the last run has ended.
enum jr_status jrgo_submit_every(jr_pool *pool, int64_t period_ns, uintptr_t id,
                                 jr_submit_options *opts, jr_job **out) {
	opts->arg_free = jrgo_free_arg;
	return jr_submit_every(pool, period_ns, jrgo_run_every, (void *)id, opts, out);
}

// Submits a C job function (a jr_job_fn given to Go as a plain pointer).
jrgo_submitted jrgo_submit_native(jr_pool *pool, void *fn, void *arg, jr_submit_options opts) {
	jrgo_submitted r = {JR_OK, NULL};
	r.status = jr_submit(pool, (jr_job_fn)fn, arg, &opts, &r.job);
	return r;
}

// jrgo_submit_native with the default options but a token (NULL: none), every argument
// but arg an integer: cgo checks every pointer field of an options struct passed by
// value, on each call (7% of a native job's CPU time in the benchmark); arg stays a
// pointer, so that cgo still checks what it can of it.
jrgo_submitted jrgo_submit_native_simple(uintptr_t pool, uintptr_t fn, void *arg,
                                         uintptr_t token) {
	jr_submit_options opts = jrgo_default_options;
	opts.token = (jr_token *)token;
	return jrgo_submit_native((jr_pool *)pool, (void *)fn, arg, opts);
}

// What jrgo_wait_take returns.
typedef struct {
	enum jr_status status;
	void *result;
} jrgo_result;

// Waits for a job and takes its result, in one cgo call, returned by value (a pointer
// argument for the result would move it to the Go heap).
jrgo_result jrgo_wait_take(jr_job *job) {
	jrgo_result r = {JR_OK, NULL};
	r.status = jr_job_wait(job, -1);
	if (r.status == JR_OK) jr_job_take_result(job, &r.result);
	return r;
}
*/
import "C"
