/*
 * Ownership of what C hands the library: every argument's `arg_free` and every result's
 * `result_free` runs exactly once, on every path a job can take, and never for a value
 * the caller kept or took back.
 *
 * The rule for arguments (jr_submit, jr_submit_every):
 *   - the submit returned JR_OK: the job owns `arg`, and `arg_free(arg)` runs exactly
 *     once after the job has ended, whether it ran, failed, panicked, was cancelled
 *     before it started, or its pool shut down (for a periodic job: once, after its last
 *     run); with `fn_owns_arg`, `fn` takes `arg` over when the job starts, and
 *     `arg_free` runs only for a job that never ran;
 *   - the submit returned any error (JR_E_SHUTDOWN, JR_E_FULL, JR_E_TIMEOUT,
 *     JR_E_CANCELLED, JR_E_INVALID_ARG, JR_E_CLOSED, ...): nothing was submitted,
 *     `arg_free` is NEVER called, and `arg` is still the caller's to free.
 * The rule for results: a result taken with jr_job_take_result is the caller's
 * (`result_free` is not called on it); any other result (the handle freed first, a
 * detached job, a failed or panicked job, a periodic run, a group job nobody took from
 * jr_group_next) is freed with `result_free` exactly once.
 *
 * The values are "tracked" objects from a static array: the destructors count frees per
 * object (a second free of one object is a double free, caught without touching freed
 * memory) and per kind, under a condition variable that tests wait on. Every test ends by
 * checking that the books balance: each object made was freed exactly once.
 */
#define _GNU_SOURCE

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobrunner.h"
#include "jr_test.h"
#include "test_util.h"

/* ----- tracked values --------------------------------------------------------------------- */

enum kind { ARG = 1, RESULT = 2 };

typedef struct {
    int kind;
    atomic_int freed; /* times a destructor ran on it */
    atomic_int ran;   /* times a job ran with it as its argument */
} tracked;

enum { MAX_TRACKED = 4096 };
static tracked objs[MAX_TRACKED];
static atomic_int next_obj;
static counter args_made, args_freed, results_made, results_freed;
static atomic_int double_frees;
static atomic_int null_frees;

static tracked *track_new(int kind) {
    int i = atomic_fetch_add(&next_obj, 1);
    REQUIRE(i < MAX_TRACKED);
    tracked *t = &objs[i];
    t->kind = kind;
    atomic_store(&t->freed, 0);
    atomic_store(&t->ran, 0);
    counter_add(kind == ARG ? &args_made : &results_made, 1);
    return t;
}

/* The destructor given as both arg_free and result_free (and used by the caller for
 * what it keeps or takes). */
static void track_free(void *p) {
    if (p == NULL) {
        atomic_fetch_add(&null_frees, 1);
        return;
    }
    tracked *t = p;
    if (atomic_fetch_add(&t->freed, 1) != 0) {
        atomic_fetch_add(&double_frees, 1);
        fprintf(stderr, "double free of tracked object %td (kind %d)\n", t - objs, t->kind);
    }
    counter_add(t->kind == ARG ? &args_freed : &results_freed, 1);
}

static void books_open(void) {
    memset(objs, 0, sizeof objs);
    atomic_store(&next_obj, 0);
    counter_init(&args_made);
    counter_init(&args_freed);
    counter_init(&results_made);
    counter_init(&results_freed);
    atomic_store(&double_frees, 0);
    atomic_store(&null_frees, 0);
}

/* Waits (bounded) for every value made to be freed, then checks each was freed once. */
static void books_balance(void) {
    long am = counter_get(&args_made), rm = counter_get(&results_made);
    bool args_ok = counter_wait(&args_freed, am, HANG_MS);
    bool results_ok = counter_wait(&results_freed, rm, HANG_MS);
    long af = counter_get(&args_freed), rf = counter_get(&results_freed);
    if (!args_ok || !results_ok || af != am || rf != rm) {
        fprintf(stderr, "books: args made %ld freed %ld, results made %ld freed %ld\n", am, af, rm,
                rf);
    }
    CHECK(af == am);
    CHECK(rf == rm);
    CHECK(atomic_load(&double_frees) == 0);
    CHECK(atomic_load(&null_frees) == 0);
    int n = atomic_load(&next_obj);
    for (int i = 0; i < n; i++) {
        if (atomic_load(&objs[i].freed) != 1) {
            fprintf(stderr, "tracked object %d (kind %d) freed %d times\n", i, objs[i].kind,
                    atomic_load(&objs[i].freed));
            CHECK(atomic_load(&objs[i].freed) == 1);
            break;
        }
    }
    counter_destroy(&args_made);
    counter_destroy(&args_freed);
    counter_destroy(&results_made);
    counter_destroy(&results_freed);
}

static jr_submit_options owning_options(void) {
    jr_submit_options o = jr_submit_options_default();
    o.arg_free = track_free;
    o.result_free = track_free;
    return o;
}

/* ----- jobs ------------------------------------------------------------------------------------ */

/* Gate shared by the jobs of one test: they say they started, then wait for it. */
static blocker gate_b;

static int32_t result_job(jr_ctx *ctx, void *arg, void **result) {
    (void)ctx;
    atomic_fetch_add(&((tracked *)arg)->ran, 1);
    *result = track_new(RESULT);
    return 0;
}

static int32_t gated_result_job(jr_ctx *ctx, void *arg, void **result) {
    (void)ctx;
    atomic_fetch_add(&((tracked *)arg)->ran, 1);
    counter_add(&gate_b.started, 1);
    *result = track_new(RESULT);
    return gate_wait(&gate_b.gate, HANG_MS) ? 0 : 99;
}

static int32_t fail_with_result_job(jr_ctx *ctx, void *arg, void **result) {
    atomic_fetch_add(&((tracked *)arg)->ran, 1);
    *result = track_new(RESULT);
    jr_ctx_fail(ctx, "failed, with a result");
    return 3;
}

static int32_t panic_with_result_job(jr_ctx *ctx, void *arg, void **result) {
    atomic_fetch_add(&((tracked *)arg)->ran, 1);
    *result = track_new(RESULT);
    jr_ctx_panic(ctx, "panicked, with a result");
    return 0;
}

static int32_t slow_result_job(jr_ctx *ctx, void *arg, void **result) {
    sleep_ms(1);
    return result_job(ctx, arg, result);
}

/* ----- tests ------------------------------------------------------------------------------------ */

static void result_taken_is_the_callers(void) {
    books_open();
    jr_pool *p = make_pool(2, 0);
    jr_submit_options o = owning_options();
    tracked *arg = track_new(ARG);
    jr_job *j = submit_opts(p, result_job, arg, &o);
    CHECK_STATUS(jr_job_wait(j, HANG_MS * MS), JR_OK);
    void *r = NULL;
    CHECK_STATUS(jr_job_take_result(j, &r), JR_OK);
    REQUIRE(r != NULL);
    CHECK(((tracked *)r)->kind == RESULT);
    CHECK_STATUS(jr_job_free(j), JR_OK);
    /* The handle is gone: had it freed the taken result, it would have done so by now. */
    CHECK(atomic_load(&((tracked *)r)->freed) == 0);
    CHECK(counter_wait(&args_freed, 1, HANG_MS));
    CHECK(atomic_load(&arg->ran) == 1);
    track_free(r); /* the caller's to free */
    CHECK_STATUS(jr_pool_free(p), JR_OK);
    books_balance();
}

static void result_not_taken_freed_with_handle(void) {
    books_open();
    jr_pool *p = make_pool(2, 0);
    jr_submit_options o = owning_options();
    jr_job *j = submit_opts(p, result_job, track_new(ARG), &o);
    CHECK_STATUS(jr_job_wait(j, HANG_MS * MS), JR_OK);
    CHECK(counter_get(&results_freed) == 0); /* still held by the handle */
    CHECK_STATUS(jr_job_free(j), JR_OK);
    CHECK(counter_wait(&results_freed, 1, HANG_MS));

    /* Waited for and looked at (outcome computed), then freed without taking. */
    j = submit_opts(p, result_job, track_new(ARG), &o);
    CHECK_STATUS(jr_job_wait(j, HANG_MS * MS), JR_OK);
    CHECK(job_state(j) == JR_JOB_SUCCEEDED);
    int32_t code = -1;
    CHECK_STATUS(jr_job_error_code(j, &code), JR_OK);
    CHECK_STATUS(jr_job_free(j), JR_OK);

    /* Freed before the job ended: the result is freed when it ends. */
    blocker_init(&gate_b, false);
    j = submit_opts(p, gated_result_job, track_new(ARG), &o);
    REQUIRE(counter_wait(&gate_b.started, 1, HANG_MS));
    CHECK_STATUS(jr_job_free(j), JR_OK);
    gate_open(&gate_b.gate);
    CHECK(counter_wait(&results_freed, 3, HANG_MS));
    CHECK_STATUS(jr_pool_free(p), JR_OK);
    blocker_destroy(&gate_b);
    books_balance();
}

static void detached_jobs_free_everything(void) {
    enum { N = 50 };
    books_open();
    jr_pool *p = make_pool(2, 0);
    jr_submit_options o = owning_options();
    for (int i = 0; i < N; i++) {
        CHECK_STATUS(jr_submit(p, result_job, track_new(ARG), &o, NULL), JR_OK);
    }
    /* Detached failures too. */
    CHECK_STATUS(jr_submit(p, fail_with_result_job, track_new(ARG), &o, NULL), JR_OK);
    CHECK_STATUS(jr_submit(p, panic_with_result_job, track_new(ARG), &o, NULL), JR_OK);
    CHECK(counter_wait(&args_freed, N + 2, HANG_MS));
    CHECK(counter_wait(&results_freed, N + 2, HANG_MS));
    CHECK_STATUS(jr_pool_free(p), JR_OK);
    books_balance();
}

static void failed_and_panicked_jobs_free_their_result(void) {
    books_open();
    jr_pool *p = make_pool(2, 0);
    jr_submit_options o = owning_options();
    jr_job *f = submit_opts(p, fail_with_result_job, track_new(ARG), &o);
    CHECK_STATUS(jr_job_wait(f, HANG_MS * MS), JR_E_JOB_FAILED);
    void *r = &r;
    CHECK_STATUS(jr_job_take_result(f, &r), JR_E_JOB_FAILED);
    CHECK(r == NULL); /* a failed job hands no result over: it was freed */
    jr_job *pn = submit_opts(p, panic_with_result_job, track_new(ARG), &o);
    CHECK_STATUS(jr_job_wait(pn, HANG_MS * MS), JR_E_PANICKED);
    r = &r;
    CHECK_STATUS(jr_job_take_result(pn, &r), JR_E_PANICKED);
    CHECK(r == NULL);
    /* Freed by the library, not waiting for the handles. */
    CHECK(counter_wait(&results_freed, 2, HANG_MS));
    CHECK_STATUS(jr_job_free(f), JR_OK);
    CHECK_STATUS(jr_job_free(pn), JR_OK);
    CHECK_STATUS(jr_pool_free(p), JR_OK);
    books_balance();
}

static void cancelled_before_start_frees_arg(void) {
    books_open();
    jr_pool *p = make_pool(1, 0);
    blocker b;
    blocker_init(&b, false);
    jr_job *running = start_blocker(p, &b);
    jr_submit_options o = owning_options();
    tracked *arg = track_new(ARG);
    jr_job *j = submit_opts(p, result_job, arg, &o);
    CHECK_STATUS(jr_job_cancel(j), JR_OK);
    /* Freed when it ended (now), not when the worker gets free. */
    CHECK(counter_wait(&args_freed, 1, HANG_MS));
    CHECK(atomic_load(&arg->freed) == 1);
    CHECK_STATUS(jr_job_wait(j, 0), JR_E_CANCELLED);
    gate_open(&b.gate);
    CHECK_STATUS(wait_free(running), JR_OK);
    CHECK_STATUS(jr_job_free(j), JR_OK);
    CHECK(atomic_load(&arg->ran) == 0);
    CHECK(counter_get(&results_made) == 0);
    CHECK_STATUS(jr_pool_free(p), JR_OK);
    blocker_destroy(&b);
    books_balance();
}

/* With fn_owns_arg the function takes the argument over when it runs (here it frees it):
 * arg_free runs only for jobs that never ran. Each argument is still freed exactly once. */
static int32_t consuming_job(jr_ctx *ctx, void *arg, void **result) {
    (void)ctx;
    (void)result;
    atomic_fetch_add(&((tracked *)arg)->ran, 1);
    track_free(arg);
    return 0;
}

static void fn_owns_arg_frees_unrun_args_only(void) {
    enum { N = 40 };
    books_open();
    jr_pool *p = make_pool(1, 0);
    blocker b;
    blocker_init(&b, false);
    jr_job *running = start_blocker(p, &b);
    jr_submit_options o = owning_options();
    o.fn_owns_arg = 1;
    jr_job *handles[N];
    tracked *args[N];
    for (int i = 0; i < N; i++) {
        args[i] = track_new(ARG);
        handles[i] = submit_opts(p, consuming_job, args[i], &o);
    }
    /* Half never run: cancelled while queued, freed by arg_free at once. */
    for (int i = 0; i < N; i += 2) {
        CHECK_STATUS(jr_job_cancel(handles[i]), JR_OK);
    }
    CHECK(counter_wait(&args_freed, N / 2, HANG_MS));
    gate_open(&b.gate);
    CHECK_STATUS(wait_free(running), JR_OK);
    for (int i = 0; i < N; i++) {
        CHECK_STATUS(jr_job_wait(handles[i], HANG_MS * MS), i % 2 ? JR_OK : JR_E_CANCELLED);
        CHECK(atomic_load(&args[i]->ran) == i % 2);
        CHECK_STATUS(jr_job_free(handles[i]), JR_OK);
    }
    CHECK_STATUS(jr_pool_free(p), JR_OK);
    blocker_destroy(&b);
    books_balance();
}

static void shutdown_cancel_frees_queued_args(void) {
    enum { N = 100 };
    books_open();
    jr_pool *p = make_pool(1, 0);
    blocker b;
    blocker_init(&b, true);
    jr_job *running = start_blocker(p, &b);
    jr_submit_options o = owning_options();
    static jr_job *handles[N];
    static tracked *args[N];
    for (int i = 0; i < N; i++) {
        args[i] = track_new(ARG);
        /* Half with a handle, half detached. */
        handles[i] = NULL;
        CHECK_STATUS(jr_submit(p, result_job, args[i], &o, i % 2 ? &handles[i] : NULL), JR_OK);
    }
    CHECK_STATUS(jr_pool_shutdown(p, JR_SHUTDOWN_CANCEL, HANG_MS * MS), JR_OK);
    CHECK(counter_wait(&args_freed, N, HANG_MS));
    for (int i = 0; i < N; i++) {
        CHECK(atomic_load(&args[i]->ran) == 0);
        if (handles[i] != NULL) {
            CHECK_STATUS(jr_job_wait(handles[i], 0), JR_E_CANCELLED);
            CHECK_STATUS(jr_job_free(handles[i]), JR_OK);
        }
    }
    CHECK(counter_get(&results_made) == 0);
    CHECK_STATUS(wait_free(running), JR_E_CANCELLED);
    CHECK_STATUS(jr_pool_free(p), JR_OK);
    blocker_destroy(&b);
    books_balance();
}

static void cancelled_delayed_jobs_free_args_at_once(void) {
    books_open();
    jr_pool *p = make_pool(2, 0);
    jr_token *t = NULL;
    REQUIRE(jr_token_new(NULL, &t) == JR_OK);
    jr_submit_options o = owning_options();
    o.delay_ns = 60 * SEC;
    jr_job *by_handle[10];
    for (int i = 0; i < 10; i++) {
        by_handle[i] = submit_opts(p, result_job, track_new(ARG), &o);
    }
    o.token = t;
    jr_job *by_token[10];
    for (int i = 0; i < 10; i++) {
        by_token[i] = submit_opts(p, result_job, track_new(ARG), &o);
    }
    for (int i = 0; i < 5; i++) {
        CHECK_STATUS(jr_submit(p, result_job, track_new(ARG), &o, NULL), JR_OK); /* detached */
    }
    for (int i = 0; i < 10; i++) {
        CHECK_STATUS(jr_job_cancel(by_handle[i]), JR_OK);
    }
    CHECK_STATUS(jr_token_cancel(t), JR_OK);
    /* Long before the 60 s delay. */
    CHECK(counter_wait(&args_freed, 25, 5000));
    for (int i = 0; i < 10; i++) {
        CHECK_STATUS(jr_job_wait(by_handle[i], 0), JR_E_CANCELLED);
        CHECK_STATUS(jr_job_wait(by_token[i], HANG_MS * MS), JR_E_CANCELLED);
        jr_job_free(by_handle[i]);
        jr_job_free(by_token[i]);
    }
    CHECK(counter_get(&results_made) == 0);
    CHECK_STATUS(jr_token_free(t), JR_OK);
    CHECK_STATUS(jr_pool_free(p), JR_OK); /* nothing left to drain */
    books_balance();
}

static counter periodic_runs;

static int32_t periodic_result_job(jr_ctx *ctx, void *arg, void **result) {
    (void)ctx;
    tracked *t = arg;
    int n = atomic_fetch_add(&t->ran, 1);
    *result = track_new(RESULT);
    counter_add(&periodic_runs, 1);
    return n % 3 == 2 ? 1 : 0; /* every third run fails: its result is freed too */
}

static void periodic_job_frees_arg_once_and_each_result(void) {
    books_open();
    counter_init(&periodic_runs);
    jr_pool *p = make_pool(2, 0);
    jr_submit_options o = owning_options();
    tracked *arg = track_new(ARG);
    jr_job *h = NULL;
    CHECK_STATUS(jr_submit_every(p, 2 * MS, periodic_result_job, arg, &o, &h), JR_OK);
    CHECK(counter_wait(&periodic_runs, 6, HANG_MS));
    CHECK(atomic_load(&arg->freed) == 0); /* shared by the runs, until the last */
    CHECK_STATUS(jr_job_cancel(h), JR_OK);
    CHECK_STATUS(jr_job_wait(h, HANG_MS * MS), JR_E_CANCELLED);
    CHECK(counter_wait(&args_freed, 1, HANG_MS));
    CHECK(atomic_load(&arg->ran) == counter_get(&periodic_runs));
    CHECK_STATUS(jr_job_free(h), JR_OK);

    /* Detached, stopped by its token. */
    jr_token *t = NULL;
    REQUIRE(jr_token_new(NULL, &t) == JR_OK);
    o.token = t;
    long before = counter_get(&periodic_runs);
    CHECK_STATUS(jr_submit_every(p, 2 * MS, periodic_result_job, track_new(ARG), &o, NULL), JR_OK);
    CHECK(counter_wait(&periodic_runs, before + 3, HANG_MS));
    CHECK_STATUS(jr_token_cancel(t), JR_OK);
    CHECK(counter_wait(&args_freed, 2, HANG_MS));
    CHECK_STATUS(jr_token_free(t), JR_OK);

    /* Stopped by the pool's shutdown. */
    o.token = NULL;
    before = counter_get(&periodic_runs);
    CHECK_STATUS(jr_submit_every(p, 2 * MS, periodic_result_job, track_new(ARG), &o, NULL), JR_OK);
    CHECK(counter_wait(&periodic_runs, before + 2, HANG_MS));
    CHECK_STATUS(jr_pool_shutdown(p, JR_SHUTDOWN_DRAIN, HANG_MS * MS), JR_OK);
    CHECK(counter_wait(&args_freed, 3, HANG_MS));
    CHECK_STATUS(jr_pool_free(p), JR_OK);
    books_balance();
    counter_destroy(&periodic_runs);
}

/* A wait_only group keeps no ended job: each result is freed as its job ends, before
 * jr_group_wait sees the job ended, with the group still open and nobody calling
 * jr_group_next (which is refused); jr_group_wait reports the failure. */
static void wait_only_group_frees_results_as_jobs_end(void) {
    enum { N = 50 };
    books_open();
    jr_pool *p = make_pool(2, 0);
    jr_group_options go = jr_group_options_default();
    go.wait_only = 1;
    jr_group *g = NULL;
    REQUIRE(jr_group_new(p, &go, &g) == JR_OK);
    jr_submit_options o = owning_options();
    o.group = g;
    for (int i = 0; i < N; i++) {
        CHECK_STATUS(jr_submit(p, i == 7 ? fail_with_result_job : result_job, track_new(ARG), &o,
                               NULL),
                     JR_OK);
    }
    CHECK_STATUS(jr_group_wait(g, HANG_MS * MS), JR_E_JOB_FAILED);
    CHECK(counter_get(&results_freed) == N);
    jr_job *j = NULL;
    CHECK_STATUS(jr_group_next(g, 0, &j), JR_E_INVALID_ARG);
    CHECK(j == NULL);
    CHECK_STATUS(jr_group_free(g), JR_OK);
    CHECK_STATUS(jr_pool_free(p), JR_OK);
    books_balance();
}

static void group_freed_without_next_frees_results(void) {
    enum { N = 50 };
    books_open();
    jr_pool *p = make_pool(2, 0);
    jr_group *g = NULL;
    REQUIRE(jr_group_new(p, NULL, &g) == JR_OK);
    jr_submit_options o = owning_options();
    o.group = g;
    static tracked *args[N];
    jr_job *member = NULL;
    for (int i = 0; i < N; i++) {
        args[i] = track_new(ARG);
        CHECK_STATUS(jr_submit(p, i % 5 == 0 ? fail_with_result_job : slow_result_job, args[i], &o,
                               i == 1 ? &member : NULL),
                     JR_OK);
    }
    /* Freed while some jobs are still queued: they go on, nobody takes their results.
     * They are freed as the jobs end, but for the job whose member handle is still held:
     * a result goes with the last handle (DESIGN.md), so that one waits for the handle. */
    CHECK_STATUS(jr_group_free(g), JR_OK);
    CHECK(counter_wait(&args_freed, N, HANG_MS));
    CHECK(counter_wait(&results_freed, N - 1, HANG_MS));
    CHECK_STATUS(jr_job_wait(member, HANG_MS * MS), JR_OK);
    CHECK_STATUS(jr_job_free(member), JR_OK);
    CHECK(counter_wait(&results_freed, N, HANG_MS));
    for (int i = 0; i < N; i++) {
        CHECK(atomic_load(&args[i]->ran) == 1);
    }

    /* Some taken from jr_group_next, the rest left behind. */
    REQUIRE(jr_group_new(p, NULL, &g) == JR_OK);
    o.group = g;
    for (int i = 0; i < 10; i++) {
        CHECK_STATUS(jr_submit(p, result_job, track_new(ARG), &o, NULL), JR_OK);
    }
    for (int i = 0; i < 4; i++) {
        jr_job *j = NULL;
        CHECK_STATUS(jr_group_next(g, HANG_MS * MS, &j), JR_OK);
        void *r = NULL;
        if (i % 2 == 0) {
            CHECK_STATUS(jr_job_take_result(j, &r), JR_OK);
            CHECK(r != NULL);
            track_free(r);
        }
        CHECK_STATUS(jr_job_free(j), JR_OK);
    }
    CHECK_STATUS(jr_group_wait(g, HANG_MS * MS), JR_OK);
    CHECK_STATUS(jr_group_free(g), JR_OK);
    CHECK_STATUS(jr_pool_free(p), JR_OK);
    books_balance();
}

/* Checks a refused submit: the given status, and arg_free not called (the caller frees). */
static void refused(jr_status got, jr_status want, tracked *arg, const char *what) {
    if (got != want) {
        fprintf(stderr, "%s: got %s, want %s\n", what, jr_status_str(got), jr_status_str(want));
        CHECK(got == want);
    }
    if (got != JR_OK) {
        if (atomic_load(&arg->freed) != 0) {
            fprintf(stderr, "%s: failed submit (%s) called arg_free\n", what, jr_status_str(got));
            CHECK(atomic_load(&arg->freed) == 0);
        }
        track_free(arg); /* still the caller's */
    }
}

static void failed_submit_leaves_arg_with_caller(void) {
    books_open();
    jr_submit_options o = owning_options();
    tracked *a;

    /* JR_E_SHUTDOWN */
    jr_pool *down = make_pool(1, 0);
    CHECK_STATUS(jr_pool_shutdown(down, JR_SHUTDOWN_DRAIN, -1), JR_OK);
    a = track_new(ARG);
    refused(jr_submit(down, result_job, a, &o, NULL), JR_E_SHUTDOWN, a, "submit after shutdown");
    a = track_new(ARG);
    refused(jr_submit_every(down, MS, result_job, a, &o, NULL), JR_E_SHUTDOWN, a,
            "submit_every after shutdown");
    CHECK_STATUS(jr_pool_free(down), JR_OK);

    /* JR_E_FULL, JR_E_TIMEOUT, JR_E_CANCELLED: a full queue. */
    jr_pool *p = make_pool(1, 1);
    blocker b;
    blocker_init(&b, false);
    jr_job *running = start_blocker(p, &b);
    jr_job *queued = submit_opts(p, result_job, track_new(ARG), &o); /* fills the queue */
    jr_submit_options full = o;
    full.nonblocking = 1;
    a = track_new(ARG);
    refused(jr_submit(p, result_job, a, &full, NULL), JR_E_FULL, a, "nonblocking submit, full");
    full = o;
    full.timeout_ns = 0;
    a = track_new(ARG);
    refused(jr_submit(p, result_job, a, &full, NULL), JR_E_FULL, a, "timeout 0, full");
    full.timeout_ns = 5 * MS;
    a = track_new(ARG);
    refused(jr_submit(p, result_job, a, &full, NULL), JR_E_TIMEOUT, a, "timeout 5 ms, full");
    jr_token *t = NULL;
    REQUIRE(jr_token_new(NULL, &t) == JR_OK);
    CHECK_STATUS(jr_token_set_deadline(t, 10 * MS), JR_OK);
    full = o;
    full.token = t;
    a = track_new(ARG);
    refused(jr_submit(p, result_job, a, &full, NULL), JR_E_CANCELLED, a,
            "token cancelled while waiting for room");
    CHECK_STATUS(jr_token_free(t), JR_OK);
    gate_open(&b.gate);
    CHECK_STATUS(wait_free(running), JR_OK);
    CHECK_STATUS(wait_free(queued), JR_OK);

    /* JR_E_INVALID_ARG */
    a = track_new(ARG);
    refused(jr_submit(p, NULL, a, &o, NULL), JR_E_INVALID_ARG, a, "NULL fn");
    a = track_new(ARG);
    refused(jr_submit(NULL, result_job, a, &o, NULL), JR_E_INVALID_ARG, a, "NULL pool");
    jr_submit_options bad = o;
    bad.delay_ns = -1;
    a = track_new(ARG);
    refused(jr_submit(p, result_job, a, &bad, NULL), JR_E_INVALID_ARG, a, "negative delay");
    jr_sem *s = NULL;
    REQUIRE(jr_sem_new(1, &s) == JR_OK);
    bad = o;
    bad.sem = s;
    bad.permits = 2;
    a = track_new(ARG);
    refused(jr_submit(p, result_job, a, &bad, NULL), JR_E_INVALID_ARG, a, "permits over total");
    CHECK_STATUS(jr_sem_free(s), JR_OK);
    a = track_new(ARG);
    refused(jr_submit_every(p, 0, result_job, a, &o, NULL), JR_E_INVALID_ARG, a, "period 0");
    a = track_new(ARG);
    refused(jr_submit_every(p, -5, result_job, a, &o, NULL), JR_E_INVALID_ARG, a, "period < 0");
    /* A bigger options struct with nonzero extra bytes: arg_free is in it, not called. */
    struct {
        jr_submit_options o;
        uint64_t newer;
    } big;
    memset(&big, 0, sizeof big);
    big.o = o;
    big.o.size = sizeof big;
    big.newer = 1;
    a = track_new(ARG);
    refused(jr_submit(p, result_job, a, &big.o, NULL), JR_E_INVALID_ARG, a,
            "nonzero bytes past the known fields");

    /* JR_E_CLOSED, and a group of another pool */
    jr_group *g = NULL;
    REQUIRE(jr_group_new(p, NULL, &g) == JR_OK);
    CHECK_STATUS(jr_group_close(g), JR_OK);
    jr_submit_options go = o;
    go.group = g;
    a = track_new(ARG);
    refused(jr_submit(p, result_job, a, &go, NULL), JR_E_CLOSED, a, "closed group");
    jr_pool *other = make_pool(1, 0);
    a = track_new(ARG);
    refused(jr_submit(other, result_job, a, &go, NULL), JR_E_INVALID_ARG, a,
            "group of another pool");
    CHECK_STATUS(jr_pool_free(other), JR_OK);
    CHECK_STATUS(jr_group_free(g), JR_OK);

    /* The boundary case: a token already cancelled is accepted (JR_OK), and then the
     * job owns the arg and frees it, even though it never runs. */
    REQUIRE(jr_token_new(NULL, &t) == JR_OK);
    CHECK_STATUS(jr_token_cancel(t), JR_OK);
    jr_submit_options co = o;
    co.token = t;
    a = track_new(ARG);
    jr_job *j = NULL;
    CHECK_STATUS(jr_submit(p, result_job, a, &co, &j), JR_OK);
    CHECK_STATUS(jr_job_wait(j, HANG_MS * MS), JR_E_CANCELLED);
    CHECK(counter_wait(&args_freed, counter_get(&args_made), HANG_MS));
    CHECK(atomic_load(&a->freed) == 1 && atomic_load(&a->ran) == 0);
    CHECK_STATUS(jr_job_free(j), JR_OK);
    a = track_new(ARG);
    CHECK_STATUS(jr_submit_every(p, MS, result_job, a, &co, &j), JR_OK);
    CHECK_STATUS(jr_job_wait(j, HANG_MS * MS), JR_E_CANCELLED);
    CHECK(counter_wait(&args_freed, counter_get(&args_made), HANG_MS));
    CHECK(atomic_load(&a->freed) == 1 && atomic_load(&a->ran) == 0);
    CHECK_STATUS(jr_job_free(j), JR_OK);
    CHECK_STATUS(jr_token_free(t), JR_OK);

    CHECK_STATUS(jr_pool_free(p), JR_OK);
    blocker_destroy(&b);
    books_balance();
}

static void job_handle_freed_while_running(void) {
    books_open();
    jr_pool *p = make_pool(2, 0);
    blocker_init(&gate_b, false);
    jr_submit_options o = owning_options();
    tracked *arg = track_new(ARG);
    jr_job *j = submit_opts(p, gated_result_job, arg, &o);
    REQUIRE(counter_wait(&gate_b.started, 1, HANG_MS));
    CHECK_STATUS(jr_job_free(j), JR_OK);
    CHECK(atomic_load(&arg->freed) == 0); /* the job still runs with it */
    gate_open(&gate_b.gate);
    CHECK(counter_wait(&args_freed, 1, HANG_MS));
    CHECK(counter_wait(&results_freed, 1, HANG_MS));
    CHECK_STATUS(jr_pool_free(p), JR_OK);
    blocker_destroy(&gate_b);
    books_balance();
}

static void pool_freed_with_jobs_queued_drains(void) {
    enum { N = 20 };
    books_open();
    jr_pool *p = make_pool(1, 0);
    jr_submit_options o = owning_options();
    static tracked *args[N];
    jr_job *first = NULL;
    for (int i = 0; i < N; i++) {
        args[i] = track_new(ARG);
        CHECK_STATUS(jr_submit(p, slow_result_job, args[i], &o, i == 0 ? &first : NULL), JR_OK);
    }
    CHECK_STATUS(jr_pool_free(p), JR_OK);
    /* The free drained: every job ran. */
    for (int i = 0; i < N; i++) {
        CHECK(atomic_load(&args[i]->ran) == 1);
    }
    /* A handle outlives its pool. */
    CHECK_STATUS(jr_job_wait(first, 0), JR_OK);
    void *r = NULL;
    CHECK_STATUS(jr_job_take_result(first, &r), JR_OK);
    CHECK(r != NULL);
    track_free(r);
    CHECK_STATUS(jr_job_free(first), JR_OK);
    books_balance();
}

static void token_freed_while_jobs_queued(void) {
    enum { N = 10 };
    books_open();
    jr_pool *p = make_pool(1, 0);
    blocker b;
    blocker_init(&b, false);
    jr_job *running = start_blocker(p, &b);

    /* Freed, never cancelled: the jobs end normally. */
    jr_token *t = NULL;
    REQUIRE(jr_token_new(NULL, &t) == JR_OK);
    jr_submit_options o = owning_options();
    o.token = t;
    jr_job *normal[N];
    for (int i = 0; i < N; i++) {
        normal[i] = submit_opts(p, result_job, track_new(ARG), &o);
    }
    CHECK_STATUS(jr_token_free(t), JR_OK);

    /* Freed, then cancelled through its parent: the jobs end cancelled. */
    jr_token *parent = NULL, *child = NULL;
    REQUIRE(jr_token_new(NULL, &parent) == JR_OK);
    REQUIRE(jr_token_new(parent, &child) == JR_OK);
    o.token = child;
    jr_job *cancelled[N];
    static tracked *cargs[N];
    for (int i = 0; i < N; i++) {
        cargs[i] = track_new(ARG);
        cancelled[i] = submit_opts(p, result_job, cargs[i], &o);
    }
    CHECK_STATUS(jr_token_free(child), JR_OK);
    CHECK_STATUS(jr_token_cancel(parent), JR_OK);
    for (int i = 0; i < N; i++) {
        CHECK_STATUS(jr_job_wait(cancelled[i], HANG_MS * MS), JR_E_CANCELLED);
        jr_job_free(cancelled[i]);
    }
    gate_open(&b.gate);
    CHECK_STATUS(wait_free(running), JR_OK);
    for (int i = 0; i < N; i++) {
        CHECK_STATUS(jr_job_wait(normal[i], HANG_MS * MS), JR_OK);
        jr_job_free(normal[i]);
        CHECK(atomic_load(&cargs[i]->ran) == 0);
    }
    CHECK_STATUS(jr_token_free(parent), JR_OK);
    CHECK_STATUS(jr_pool_free(p), JR_OK);
    blocker_destroy(&b);
    books_balance();
}

static atomic_int sem_current, sem_high;

static int32_t sem_result_job(jr_ctx *ctx, void *arg, void **result) {
    int now = atomic_fetch_add(&sem_current, 1) + 1;
    int high = atomic_load(&sem_high);
    while (now > high && !atomic_compare_exchange_weak(&sem_high, &high, now)) {
    }
    int32_t rc = result_job(ctx, arg, result);
    atomic_fetch_sub(&sem_current, 1);
    return rc;
}

static void sem_freed_while_jobs_wait(void) {
    enum { N = 10 };
    books_open();
    atomic_store(&sem_current, 0);
    atomic_store(&sem_high, 0);
    jr_pool *p = make_pool(2, 0);
    jr_sem *s = NULL;
    REQUIRE(jr_sem_new(1, &s) == JR_OK);
    blocker_init(&gate_b, false);
    jr_submit_options o = owning_options();
    o.sem = s;
    /* The holder takes the one permit and keeps it until the gate opens. */
    jr_job *holder = submit_opts(p, gated_result_job, track_new(ARG), &o);
    REQUIRE(counter_wait(&gate_b.started, 1, HANG_MS));
    jr_job *waiting[N];
    for (int i = 0; i < N; i++) {
        waiting[i] = submit_opts(p, sem_result_job, track_new(ARG), &o);
        CHECK(job_state(waiting[i]) == JR_JOB_WAITING_PERMIT);
    }
    CHECK_STATUS(jr_sem_free(s), JR_OK); /* deferred: the jobs keep it alive */
    gate_open(&gate_b.gate);
    CHECK_STATUS(wait_free(holder), JR_OK);
    for (int i = 0; i < N; i++) {
        CHECK_STATUS(wait_free(waiting[i]), JR_OK);
    }
    CHECK(atomic_load(&sem_high) == 1);
    CHECK_STATUS(jr_pool_free(p), JR_OK);
    blocker_destroy(&gate_b);
    books_balance();
}

int main(void) {
    RUN(result_taken_is_the_callers);
    RUN(result_not_taken_freed_with_handle);
    RUN(detached_jobs_free_everything);
    RUN(failed_and_panicked_jobs_free_their_result);
    RUN(cancelled_before_start_frees_arg);
    RUN(fn_owns_arg_frees_unrun_args_only);
    RUN(shutdown_cancel_frees_queued_args);
    RUN(cancelled_delayed_jobs_free_args_at_once);
    RUN(periodic_job_frees_arg_once_and_each_result);
    RUN(group_freed_without_next_frees_results);
    RUN(wait_only_group_frees_results_as_jobs_end);
    RUN(failed_submit_leaves_arg_with_caller);
    RUN(job_handle_freed_while_running);
    RUN(pool_freed_with_jobs_queued_drains);
    RUN(token_freed_while_jobs_queued);
    RUN(sem_freed_while_jobs_wait);
    return jr_test_report();
}
