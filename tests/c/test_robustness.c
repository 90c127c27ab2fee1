/*
 * Bad input to every exported function: NULL for each pointer, handles of the wrong
 * type, out-of-range enums and flags, absurd counts, options structs of other sizes.
 * Each must give its documented status (or false / NULL / "unknown status" for the
 * functions that return no status) and never crash.
 *
 * TABLE-DRIVEN: each row of `rows` names a thunk that makes one call with one bad
 * argument, and the status it must return. To cover a new function, add its thunks and
 * rows. Thunks of functions that do not return a status return JR_OK when the result is
 * the documented one and JR_E_INTERNAL (after saying why) when not. Rows marked IN_JOB
 * run inside a job, with its jr_ctx.
 *
 * The fixtures (a pool, a token, a semaphore, groups, jobs in various states) are made
 * once by main(); the last rows check that none of the bad calls disturbed them.
 */
#define _GNU_SOURCE

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobrunner.h"
#include "jr_test.h"
#include "test_util.h"

/* A handle of one type passed as another. */
#define AS(type, handle) ((type *)(void *)(handle))

/* A row's call, when it is one expression: defines `static jr_status name(jr_ctx *)`. */
#define THUNK(name, call)             \
    static jr_status name(jr_ctx *c) { \
        (void)c;                       \
        return call;                   \
    }

/* ----- fixtures ---------------------------------------------------------------------------- */

static struct {
    jr_pool *pool;         /* 2 threads */
    jr_pool *other_pool;   /* 1 thread */
    jr_token *token;       /* live, never cancelled */
    jr_sem *sem;           /* 2 permits, all free */
    jr_group *group;       /* on `pool`, no limit */
    jr_group *limited;     /* on `pool`, limit 1 */
    jr_job *done;          /* succeeded */
    jr_job *running;       /* blocked on `blocker` until the end */
    jr_job *member;        /* a group member's handle, ended */
    jr_job *ticker;        /* a periodic job, running until the end */
    jr_chan *chan;         /* capacity 1, open, empty */
    jr_stream *stream;     /* its producer sent nothing and succeeded; read to the end */
    jr_pipeline *pipe;     /* on `pool`, not started: stages may be added */
    jr_pipeline *started;  /* on `pool`, one stage, input closed, drained */
    blocker blocker;
} F;

/* Readable memory that is no handle: zeros, and the tag a freed handle gets. */
static uint64_t junk_zero[8];
static uint64_t junk_dead[8] = {0xdeaddeaddeaddeadULL, 0, 0, 0, 0, 0, 0, 0};

static jr_status want_false(bool got, const char *what) {
    if (got) {
        fprintf(stderr, "  %s returned true, want false\n", what);
        return JR_E_INTERNAL;
    }
    return JR_OK;
}

static jr_status want_null(const void *got, const char *what) {
    if (got != NULL) {
        fprintf(stderr, "  %s returned %p, want NULL\n", what, got);
        return JR_E_INTERNAL;
    }
    return JR_OK;
}

static jr_status want_unknown(const char *got, const char *what) {
    if (got == NULL || strcmp(got, "unknown status") != 0) {
        fprintf(stderr, "  %s returned \"%s\", want \"unknown status\"\n", what,
                got ? got : "(null)");
        return JR_E_INTERNAL;
    }
    return JR_OK;
}

static jr_status fail_because(const char *why) {
    fprintf(stderr, "  %s\n", why);
    return JR_E_INTERNAL;
}

static int32_t fail_job(jr_ctx *ctx, void *arg, void **result) {
    (void)ctx;
    (void)arg;
    (void)result;
    return 1;
}

/* ----- status strings and version -------------------------------------------------------------- */

THUNK(t_status_str_minus1, want_unknown(jr_status_str(-1), "jr_status_str(-1)"))
THUNK(t_status_str_9999, want_unknown(jr_status_str(9999), "jr_status_str(9999)"))
THUNK(t_status_str_int_min, want_unknown(jr_status_str(INT_MIN), "jr_status_str(INT_MIN)"))
THUNK(t_status_str_past_last, want_unknown(jr_status_str(JR_E_EMPTY + 1), "jr_status_str(JR_E_EMPTY + 1)"))
static jr_status t_version_not_null(jr_ctx *c) {
    (void)c;
    const char *v = jr_version();
    return v != NULL && v[0] >= '0' && v[0] <= '9' ? JR_OK : fail_because("jr_version()");
}

/* A failed call leaves its detail in jr_last_error_message: which argument, and why. */
static jr_status t_last_error_message_says_which(jr_ctx *c) {
    (void)c;
    if (jr_pool_new(NULL, NULL) != JR_E_INVALID_ARG) {
        return fail_because("jr_pool_new(NULL, NULL) did not fail");
    }
    const char *m = jr_last_error_message();
    return m != NULL && strstr(m, "out") != NULL ? JR_OK : fail_because("jr_last_error_message()");
}

/* ----- pool options and jr_pool_new ------------------------------------------------------------ */

static jr_status t_pool_options_default(jr_ctx *c) {
    (void)c;
    jr_pool_options o = jr_pool_options_default();
    if (o.size != sizeof o || o.threads != 0 || o.queue_capacity != 0 || o.thread_name != NULL) {
        return fail_because("jr_pool_options_default() is not the documented default");
    }
    return JR_OK;
}

/* Frees a pool made by a thunk that should not have made one. */
static jr_status pool_new_status(const jr_pool_options *o) {
    jr_pool *p = NULL;
    jr_status s = jr_pool_new(o, &p);
    if (s == JR_OK) {
        jr_pool_free(p);
    } else if (p != NULL) {
        return fail_because("jr_pool_new failed but wrote *out");
    }
    return s;
}

THUNK(t_pool_new_null_out, jr_pool_new(NULL, NULL))
static jr_status t_pool_new_null_out_with_options(jr_ctx *c) {
    (void)c;
    jr_pool_options o = jr_pool_options_default();
    o.threads = 1;
    return jr_pool_new(&o, NULL);
}
static jr_status t_pool_new_size_0(jr_ctx *c) {
    (void)c;
    jr_pool_options o = jr_pool_options_default();
    o.threads = 1;
    o.size = 0;
    return pool_new_status(&o);
}
static jr_status t_pool_new_size_below_word(jr_ctx *c) {
    (void)c;
    jr_pool_options o = jr_pool_options_default();
    o.threads = 1;
    o.size = sizeof(size_t) - 1;
    return pool_new_status(&o);
}
static jr_status t_pool_new_threads_over_max(jr_ctx *c) {
    (void)c;
    jr_pool_options o = jr_pool_options_default();
    o.threads = JR_MAX_THREADS + 1;
    return pool_new_status(&o);
}
static jr_status t_pool_new_threads_size_max(jr_ctx *c) {
    (void)c;
    jr_pool_options o = jr_pool_options_default();
    o.threads = SIZE_MAX;
    return pool_new_status(&o);
}

/* A caller compiled against a newer header: a bigger struct. */
typedef struct {
    jr_pool_options o;
    uint64_t newer[3];
} bigger_pool_options;

static jr_status t_pool_new_bigger_zeroed(jr_ctx *c) {
    (void)c;
    bigger_pool_options b;
    memset(&b, 0, sizeof b);
    b.o = jr_pool_options_default();
    b.o.size = sizeof b;
    b.o.threads = 1;
    return pool_new_status(&b.o);
}
static jr_status t_pool_new_bigger_nonzero(jr_ctx *c) {
    (void)c;
    bigger_pool_options b;
    memset(&b, 0, sizeof b);
    b.o = jr_pool_options_default();
    b.o.size = sizeof b;
    b.o.threads = 1;
    b.newer[0] = 1;
    return pool_new_status(&b.o);
}
static jr_status t_pool_new_bigger_nonzero_last_byte(jr_ctx *c) {
    (void)c;
    bigger_pool_options b;
    memset(&b, 0, sizeof b);
    b.o = jr_pool_options_default();
    b.o.size = sizeof b;
    b.o.threads = 1;
    ((unsigned char *)&b)[sizeof b - 1] = 0x80;
    return pool_new_status(&b.o);
}

/* The job of the "older caller" thunk: records its thread's name, then blocks. */
typedef struct {
    char name[32];
    blocker b;
} named;

static int32_t name_job(jr_ctx *ctx, void *arg, void **result) {
    named *n = arg;
    pthread_getname_np(pthread_self(), n->name, sizeof n->name);
    return blocker_job(ctx, &n->b, result);
}

/* A caller compiled against an older header: `size` covers only `size` and `threads`.
 * The fields past it hold values that would show if they were read (a queue bound of 1,
 * a thread name): they must take their defaults, and the call succeed. */
static jr_status t_pool_new_older_size(jr_ctx *c) {
    (void)c;
    jr_pool_options o = jr_pool_options_default();
    o.size = offsetof(jr_pool_options, queue_capacity);
    o.threads = 1;
    o.queue_capacity = 1;
    o.thread_name = "not-this-name";
    jr_pool *p = NULL;
    jr_status s = jr_pool_new(&o, &p);
    if (s != JR_OK) {
        return s;
    }
    jr_status verdict = JR_OK;
    named n;
    memset(n.name, 0, sizeof n.name);
    blocker_init(&n.b, false);
    jr_job *j = NULL;
    if (jr_submit(p, name_job, &n, NULL, &j) != JR_OK || !counter_wait(&n.b.started, 1, HANG_MS)) {
        verdict = fail_because("older-size pool does not run a job");
    }
    /* One worker, busy: with the default (unbounded) queue, nonblocking submits get in;
     * with a bound of 1 the second would be JR_E_FULL. */
    jr_submit_options so = jr_submit_options_default();
    so.nonblocking = 1;
    for (int i = 0; i < 3 && verdict == JR_OK; i++) {
        if (jr_submit(p, nop_job, NULL, &so, NULL) != JR_OK) {
            verdict = fail_because("queue_capacity past `size` was read (queue bounded)");
        }
    }
    jr_stats st = {.size = sizeof st};
    if (verdict == JR_OK && (jr_pool_stats(p, &st) != JR_OK || st.threads != 1)) {
        verdict = fail_because("threads within `size` was not taken");
    }
    gate_open(&n.b.gate);
    if (j != NULL) {
        jr_job_wait(j, HANG_MS * MS);
        jr_job_free(j);
    }
    if (verdict == JR_OK && strncmp(n.name, "not-this", 8) == 0) {
        verdict = fail_because("thread_name past `size` was read");
    }
    jr_pool_free(p);
    blocker_destroy(&n.b);
    return verdict;
}

/* Only the `size` field itself: every field defaults. */
static jr_status t_pool_new_size_word_only(jr_ctx *c) {
    (void)c;
    jr_pool_options o = jr_pool_options_default();
    o.size = sizeof(size_t);
    o.threads = JR_MAX_THREADS + 1; /* would be refused if read */
    return pool_new_status(&o);
}

/* A size inside a field (not at a field's end): the partial field is not taken. */
static jr_status t_pool_new_size_mid_field(jr_ctx *c) {
    (void)c;
    jr_pool_options o = jr_pool_options_default();
    o.size = offsetof(jr_pool_options, threads) + 1;
    o.threads = JR_MAX_THREADS + 1; /* would be refused if read */
    return pool_new_status(&o);
}

/* ----- jr_pool_global, jr_pool_shutdown, jr_pool_stats, jr_pool_free ---------------------------- */

THUNK(t_pool_global_not_null, jr_pool_global() != NULL ? JR_OK : fail_because("jr_pool_global() is NULL"))

THUNK(t_shutdown_null, jr_pool_shutdown(NULL, JR_SHUTDOWN_DRAIN, 0))
THUNK(t_shutdown_token_as_pool, jr_pool_shutdown(AS(jr_pool, F.token), JR_SHUTDOWN_CANCEL, 0))
THUNK(t_shutdown_sem_as_pool, jr_pool_shutdown(AS(jr_pool, F.sem), JR_SHUTDOWN_CANCEL, 0))
THUNK(t_shutdown_junk, jr_pool_shutdown(AS(jr_pool, junk_zero), JR_SHUTDOWN_DRAIN, 0))
THUNK(t_shutdown_mode_0, jr_pool_shutdown(F.pool, 0, 0))
THUNK(t_shutdown_mode_4, jr_pool_shutdown(F.pool, 4, 0))
THUNK(t_shutdown_mode_ffff, jr_pool_shutdown(F.pool, 0xFFFF, 0))
THUNK(t_shutdown_mode_all_bits, jr_pool_shutdown(F.pool, UINT32_MAX, 0))
static jr_status t_shutdown_mode_drain_cancel_ok(jr_ctx *c) {
    (void)c;
    jr_pool *p = make_pool(1, 0);
    jr_status s = jr_pool_shutdown(p, JR_SHUTDOWN_DRAIN | JR_SHUTDOWN_CANCEL, HANG_MS * MS);
    jr_pool_free(p);
    return s;
}
static jr_status t_shutdown_ctx_pool_mode_bad_in_job(jr_ctx *c) {
    return jr_pool_shutdown(jr_ctx_pool(c), 8, 0);
}

THUNK(t_stats_null_pool, jr_pool_stats(NULL, &(jr_stats){.size = sizeof(jr_stats)}))
THUNK(t_stats_group_as_pool, jr_pool_stats(AS(jr_pool, F.group), &(jr_stats){.size = sizeof(jr_stats)}))
THUNK(t_stats_null_out, jr_pool_stats(F.pool, NULL))
THUNK(t_stats_size_0, jr_pool_stats(F.pool, &(jr_stats){.size = 0}))
THUNK(t_stats_size_below_word, jr_pool_stats(F.pool, &(jr_stats){.size = 4}))
/* An older caller's smaller struct: only the fields that fit are written. */
static jr_status t_stats_older_size(jr_ctx *c) {
    (void)c;
    jr_stats st;
    memset(&st, 0xAB, sizeof st);
    st.size = offsetof(jr_stats, started);
    jr_status s = jr_pool_stats(F.pool, &st);
    if (s != JR_OK) {
        return s;
    }
    uint64_t untouched;
    memset(&untouched, 0xAB, sizeof untouched);
    if (st.started != untouched || st.threads != untouched) {
        return fail_because("jr_stats wrote past the caller's size");
    }
    if (st.submitted == untouched) {
        return fail_because("jr_stats did not write `submitted`");
    }
    return JR_OK;
}
/* A newer caller's bigger struct: the bytes past ours are left alone. */
static jr_status t_stats_bigger_size(jr_ctx *c) {
    (void)c;
    struct {
        jr_stats st;
        uint64_t newer[2];
    } b;
    memset(&b, 0xAB, sizeof b);
    b.st.size = sizeof b;
    jr_status s = jr_pool_stats(F.pool, &b.st);
    if (s != JR_OK) {
        return s;
    }
    if (b.newer[0] != 0xABABABABABABABABULL || b.st.threads != 2) {
        return fail_because("jr_stats with a bigger struct");
    }
    return JR_OK;
}

THUNK(t_pool_free_null, jr_pool_free(NULL))
THUNK(t_pool_free_token_as_pool, jr_pool_free(AS(jr_pool, F.token)))
THUNK(t_pool_free_job_as_pool, jr_pool_free(AS(jr_pool, F.done)))
THUNK(t_pool_free_junk, jr_pool_free(AS(jr_pool, junk_zero)))
THUNK(t_pool_free_dead_tag, jr_pool_free(AS(jr_pool, junk_dead)))
THUNK(t_pool_free_global, jr_pool_free(jr_pool_global()))
static jr_status t_pool_free_ctx_pool_in_job(jr_ctx *c) {
    return jr_pool_free(jr_ctx_pool(c));
}

/* ----- groups ------------------------------------------------------------------------------------ */

static jr_status t_group_options_default(jr_ctx *c) {
    (void)c;
    jr_group_options o = jr_group_options_default();
    if (o.size != sizeof o || o.limit != 0 || o.fail_fast != 0 || o.token != NULL) {
        return fail_because("jr_group_options_default() is not the documented default");
    }
    return JR_OK;
}

static jr_status group_new_status(jr_pool *pool, const jr_group_options *o) {
    jr_group *g = NULL;
    jr_status s = jr_group_new(pool, o, &g);
    if (s == JR_OK) {
        jr_group_free(g);
    } else if (g != NULL) {
        return fail_because("jr_group_new failed but wrote *out");
    }
    return s;
}

THUNK(t_group_new_null_pool, group_new_status(NULL, NULL))
THUNK(t_group_new_group_as_pool, group_new_status(AS(jr_pool, F.group), NULL))
THUNK(t_group_new_null_out, jr_group_new(F.pool, NULL, NULL))
static jr_status t_group_new_size_0(jr_ctx *c) {
    (void)c;
    jr_group_options o = jr_group_options_default();
    o.size = 0;
    return group_new_status(F.pool, &o);
}
static jr_status t_group_new_sem_as_token(jr_ctx *c) {
    (void)c;
    jr_group_options o = jr_group_options_default();
    o.token = AS(jr_token, F.sem);
    return group_new_status(F.pool, &o);
}
static jr_status t_group_new_bigger_zeroed(jr_ctx *c) {
    (void)c;
    struct {
        jr_group_options o;
        uint64_t newer[2];
    } b;
    memset(&b, 0, sizeof b);
    b.o = jr_group_options_default();
    b.o.size = sizeof b;
    return group_new_status(F.pool, &b.o);
}
static jr_status t_group_new_bigger_nonzero(jr_ctx *c) {
    (void)c;
    struct {
        jr_group_options o;
        uint64_t newer[2];
    } b;
    memset(&b, 0, sizeof b);
    b.o = jr_group_options_default();
    b.o.size = sizeof b;
    b.newer[1] = 7;
    return group_new_status(F.pool, &b.o);
}
/* An older caller: `size` up to `limit`; fail_fast and token past it are not read (the
 * token is of the wrong type, and would be refused). */
static jr_status t_group_new_older_size(jr_ctx *c) {
    (void)c;
    jr_group_options o = jr_group_options_default();
    o.size = offsetof(jr_group_options, fail_fast);
    o.limit = 1;
    o.fail_fast = 1;
    o.token = AS(jr_token, F.sem);
    jr_group *g = NULL;
    jr_status s = jr_group_new(F.pool, &o, &g);
    if (s != JR_OK) {
        return s;
    }
    /* Not fail-fast (the default): a failure does not stop the next job. */
    jr_submit_options so = jr_submit_options_default();
    so.group = g;
    counter runs;
    counter_init(&runs);
    jr_status verdict = JR_OK;
    if (jr_submit(F.pool, fail_job, NULL, &so, NULL) != JR_OK ||
        jr_submit(F.pool, count_job, &runs, &so, NULL) != JR_OK) {
        verdict = fail_because("submit to the older-size group");
    }
    jr_status w = jr_group_wait(g, HANG_MS * MS);
    if (verdict == JR_OK && w != JR_E_JOB_FAILED) {
        verdict = fail_because("jr_group_wait did not report the failure");
    }
    if (verdict == JR_OK && counter_get(&runs) != 1) {
        verdict = fail_because("fail_fast past `size` was read (the sibling was cancelled)");
    }
    jr_group_free(g);
    counter_destroy(&runs);
    return verdict;
}

THUNK(t_group_close_null, jr_group_close(NULL))
THUNK(t_group_close_pool_as_group, jr_group_close(AS(jr_group, F.pool)))
THUNK(t_group_cancel_null, jr_group_cancel(NULL))
THUNK(t_group_cancel_token_as_group, jr_group_cancel(AS(jr_group, F.token)))
THUNK(t_group_wait_null, jr_group_wait(NULL, 0))
THUNK(t_group_wait_sem_as_group, jr_group_wait(AS(jr_group, F.sem), 0))
THUNK(t_group_first_error_null, jr_group_first_error(NULL, &(jr_job *){NULL}))
THUNK(t_group_first_error_job_as_group, jr_group_first_error(AS(jr_group, F.done), &(jr_job *){NULL}))
THUNK(t_group_first_error_null_out, jr_group_first_error(F.group, NULL))
THUNK(t_group_next_null, jr_group_next(NULL, 0, &(jr_job *){NULL}))
THUNK(t_group_next_pool_as_group, jr_group_next(AS(jr_group, F.pool), 0, &(jr_job *){NULL}))
THUNK(t_group_next_null_out, jr_group_next(F.group, 0, NULL))
static jr_status t_group_next_wait_only(jr_ctx *c) {
    (void)c;
    jr_group_options go = jr_group_options_default();
    go.wait_only = 1;
    jr_group *g = NULL;
    jr_status s = jr_group_new(F.pool, &go, &g);
    if (s != JR_OK) {
        return s;
    }
    jr_job *j = NULL;
    s = jr_group_next(g, 0, &j);
    jr_group_free(g);
    return s;
}
THUNK(t_group_free_null, jr_group_free(NULL))
THUNK(t_group_free_pool_as_group, jr_group_free(AS(jr_group, F.pool)))
THUNK(t_group_free_junk, jr_group_free(AS(jr_group, junk_zero)))

/* ----- semaphores ---------------------------------------------------------------------------------- */

static jr_status t_sem_new_0(jr_ctx *c) {
    (void)c;
    jr_sem *s = NULL;
    jr_status st = jr_sem_new(0, &s);
    if (st == JR_OK) {
        jr_sem_free(s);
    } else if (s != NULL) {
        return fail_because("jr_sem_new failed but wrote *out");
    }
    return st;
}
THUNK(t_sem_new_null_out, jr_sem_new(1, NULL))
THUNK(t_sem_acquire_null, jr_sem_acquire(NULL, 1, 0, NULL))
THUNK(t_sem_acquire_token_as_sem, jr_sem_acquire(AS(jr_sem, F.token), 1, 0, NULL))
THUNK(t_sem_acquire_pool_as_token, jr_sem_acquire(F.sem, 1, 0, AS(jr_token, F.pool)))
THUNK(t_sem_acquire_n_0, jr_sem_acquire(F.sem, 0, 0, NULL))
/* More than the total can never be had: refused (a timeout bounds a wrong wait). */
static jr_status t_sem_acquire_over_total(jr_ctx *c) {
    (void)c;
    jr_status s = jr_sem_acquire(F.sem, 3, 100 * MS, NULL);
    if (s == JR_OK) {
        jr_sem_release(F.sem, 3);
    }
    return s;
}
THUNK(t_sem_acquire_u64_max, jr_sem_acquire(F.sem, UINT64_MAX, 100 * MS, F.token))
THUNK(t_sem_try_acquire_null, jr_sem_try_acquire(NULL, 1))
THUNK(t_sem_try_acquire_group_as_sem, jr_sem_try_acquire(AS(jr_sem, F.group), 1))
THUNK(t_sem_try_acquire_0, jr_sem_try_acquire(F.sem, 0))
static jr_status t_sem_try_acquire_over_total(jr_ctx *c) {
    (void)c;
    jr_status s = jr_sem_try_acquire(F.sem, 3);
    if (s == JR_OK) {
        jr_sem_release(F.sem, 3);
    }
    return s;
}
THUNK(t_sem_release_null, jr_sem_release(NULL, 1))
THUNK(t_sem_release_job_as_sem, jr_sem_release(AS(jr_sem, F.done), 1))
THUNK(t_sem_release_0, jr_sem_release(F.sem, 0))
static jr_status t_sem_release_more_than_taken(jr_ctx *c) {
    (void)c;
    return jr_sem_release(F.sem, 1); /* all permits are free */
}
THUNK(t_sem_release_u64_max, jr_sem_release(F.sem, UINT64_MAX))
static jr_status t_sem_release_some_more_than_taken(jr_ctx *c) {
    (void)c;
    if (jr_sem_try_acquire(F.sem, 1) != JR_OK) {
        return fail_because("fixture semaphore has no free permit");
    }
    jr_status s = jr_sem_release(F.sem, 2); /* took 1 */
    if (s == JR_OK) {
        return s;
    }
    uint64_t n = 0;
    jr_sem_available(F.sem, &n);
    jr_sem_release(F.sem, 1);
    if (n != 1) {
        return fail_because("a refused release released some permits");
    }
    return s;
}
static jr_status t_sem_available_null(jr_ctx *c) {
    (void)c;
    uint64_t n;
    return jr_sem_available(NULL, &n);
}
static jr_status t_sem_available_pool_as_sem(jr_ctx *c) {
    (void)c;
    uint64_t n;
    return jr_sem_available(AS(jr_sem, F.pool), &n);
}
THUNK(t_sem_available_null_out, jr_sem_available(F.sem, NULL))
THUNK(t_sem_free_null, jr_sem_free(NULL))
THUNK(t_sem_free_group_as_sem, jr_sem_free(AS(jr_sem, F.group)))
THUNK(t_sem_free_dead_tag, jr_sem_free(AS(jr_sem, junk_dead)))

/* ----- jr_submit --------------------------------------------------------------------------------- */

static jr_status t_submit_options_default(jr_ctx *c) {
    (void)c;
    jr_submit_options o = jr_submit_options_default();
    if (o.size != sizeof o || o.token != NULL || o.sem != NULL || o.permits != 1 ||
        o.group != NULL || o.delay_ns != 0 || o.timeout_ns >= 0 || o.nonblocking != 0 ||
        o.arg_free != NULL || o.result_free != NULL || o.name != NULL) {
        return fail_because("jr_submit_options_default() is not the documented default");
    }
    return JR_OK;
}

/* Submits to the fixture pool with these options; a job wrongly accepted is waited for. */
static jr_status submit_status(jr_pool *pool, jr_job_fn fn, const jr_submit_options *o) {
    jr_job *j = NULL;
    jr_status s = jr_submit(pool, fn, NULL, o, &j);
    if (s == JR_OK && j != NULL) {
        jr_job_cancel(j);
        jr_job_wait(j, HANG_MS * MS);
        jr_job_free(j);
    }
    return s;
}

THUNK(t_submit_null_pool, submit_status(NULL, nop_job, NULL))
THUNK(t_submit_token_as_pool, submit_status(AS(jr_pool, F.token), nop_job, NULL))
THUNK(t_submit_junk_pool, submit_status(AS(jr_pool, junk_zero), nop_job, NULL))
static jr_status t_submit_ctx_as_pool_in_job(jr_ctx *c) {
    return submit_status(AS(jr_pool, c), nop_job, NULL);
}
THUNK(t_submit_null_fn, submit_status(F.pool, NULL, NULL))
static jr_status t_submit_options_size_0(jr_ctx *c) {
    (void)c;
    jr_submit_options o = jr_submit_options_default();
    o.size = 0;
    return submit_status(F.pool, nop_job, &o);
}
static jr_status t_submit_options_size_below_word(jr_ctx *c) {
    (void)c;
    jr_submit_options o = jr_submit_options_default();
    o.size = 3;
    return submit_status(F.pool, nop_job, &o);
}
static jr_status t_submit_sem_as_token(jr_ctx *c) {
    (void)c;
    jr_submit_options o = jr_submit_options_default();
    o.token = AS(jr_token, F.sem);
    return submit_status(F.pool, nop_job, &o);
}
static jr_status t_submit_token_as_sem(jr_ctx *c) {
    (void)c;
    jr_submit_options o = jr_submit_options_default();
    o.sem = AS(jr_sem, F.token);
    return submit_status(F.pool, nop_job, &o);
}
static jr_status t_submit_permits_0(jr_ctx *c) {
    (void)c;
    jr_submit_options o = jr_submit_options_default();
    o.sem = F.sem;
    o.permits = 0;
    return submit_status(F.pool, nop_job, &o);
}
static jr_status t_submit_permits_over_total(jr_ctx *c) {
    (void)c;
    jr_submit_options o = jr_submit_options_default();
    o.sem = F.sem;
    o.permits = 3;
    return submit_status(F.pool, nop_job, &o);
}
static jr_status t_submit_permits_u64_max(jr_ctx *c) {
    (void)c;
    jr_submit_options o = jr_submit_options_default();
    o.sem = F.sem;
    o.permits = UINT64_MAX;
    return submit_status(F.pool, nop_job, &o);
}
static jr_status t_submit_delay_negative(jr_ctx *c) {
    (void)c;
    jr_submit_options o = jr_submit_options_default();
    o.delay_ns = -1;
    return submit_status(F.pool, nop_job, &o);
}
static jr_status t_submit_delay_int64_min(jr_ctx *c) {
    (void)c;
    jr_submit_options o = jr_submit_options_default();
    o.delay_ns = INT64_MIN;
    return submit_status(F.pool, nop_job, &o);
}
static jr_status t_submit_pool_as_group(jr_ctx *c) {
    (void)c;
    jr_submit_options o = jr_submit_options_default();
    o.group = AS(jr_group, F.pool);
    return submit_status(F.pool, nop_job, &o);
}
static jr_status t_submit_group_of_other_pool(jr_ctx *c) {
    (void)c;
    jr_submit_options o = jr_submit_options_default();
    o.group = F.group;
    return submit_status(F.other_pool, nop_job, &o);
}
static jr_status t_submit_group_with_token(jr_ctx *c) {
    (void)c;
    jr_submit_options o = jr_submit_options_default();
    o.group = F.group;
    o.token = F.token;
    return submit_status(F.pool, nop_job, &o);
}
static jr_status t_submit_limited_group_with_sem(jr_ctx *c) {
    (void)c;
    jr_submit_options o = jr_submit_options_default();
    o.group = F.limited;
    o.sem = F.sem;
    return submit_status(F.pool, nop_job, &o);
}
typedef struct {
    jr_submit_options o;
    uint64_t newer[2];
} bigger_submit_options;

static jr_status t_submit_bigger_zeroed(jr_ctx *c) {
    (void)c;
    bigger_submit_options b;
    memset(&b, 0, sizeof b);
    b.o = jr_submit_options_default();
    b.o.size = sizeof b;
    jr_job *j = NULL;
    jr_status s = jr_submit(F.pool, nop_job, NULL, &b.o, &j);
    if (s != JR_OK) {
        return s;
    }
    return wait_free(j);
}
static jr_status t_submit_bigger_nonzero(jr_ctx *c) {
    (void)c;
    bigger_submit_options b;
    memset(&b, 0, sizeof b);
    b.o = jr_submit_options_default();
    b.o.size = sizeof b;
    b.newer[0] = 0x100;
    return submit_status(F.pool, nop_job, &b.o);
}

static atomic_int older_arg_free_calls;
static void older_arg_free(void *p) {
    (void)p;
    atomic_fetch_add(&older_arg_free_calls, 1);
}

/* An older caller: `size` covers `size` and `token` only. Every field past it holds a
 * value that would be refused or would show if read: they take their defaults. */
static jr_status t_submit_older_size(jr_ctx *c) {
    (void)c;
    jr_submit_options o = jr_submit_options_default();
    o.size = offsetof(jr_submit_options, sem);
    o.token = F.token;
    o.sem = AS(jr_sem, junk_zero);
    o.permits = 0;
    o.group = AS(jr_group, F.pool);
    o.delay_ns = -5;
    o.timeout_ns = 0;
    o.nonblocking = 1;
    o.arg_free = older_arg_free;
    o.result_free = older_arg_free;
    o.name = "x";
    atomic_store(&older_arg_free_calls, 0);
    jr_job *j = NULL;
    int arg = 0;
    jr_status s = jr_submit(F.pool, nop_job, &arg, &o, &j);
    if (s != JR_OK) {
        return s;
    }
    s = wait_free(j);
    if (s == JR_OK && atomic_load(&older_arg_free_calls) != 0) {
        return fail_because("arg_free past `size` was read and called");
    }
    return s;
}

/* ----- jr_submit_every ------------------------------------------------------------------------------ */

static jr_status every_status(jr_pool *pool, int64_t period, jr_job_fn fn,
                              const jr_submit_options *o) {
    jr_job *j = NULL;
    jr_status s = jr_submit_every(pool, period, fn, NULL, o, &j);
    if (s == JR_OK && j != NULL) {
        jr_job_cancel(j);
        jr_job_wait(j, HANG_MS * MS);
        jr_job_free(j);
    }
    return s;
}

THUNK(t_every_null_pool, every_status(NULL, MS, nop_job, NULL))
THUNK(t_every_sem_as_pool, every_status(AS(jr_pool, F.sem), MS, nop_job, NULL))
THUNK(t_every_null_fn, every_status(F.pool, MS, NULL, NULL))
/* `out` NULL is allowed: a detached periodic job, stopped when `other_pool` is freed. */
THUNK(t_every_null_out_detached, jr_submit_every(F.other_pool, 60 * SEC, nop_job, NULL, NULL, NULL))
THUNK(t_every_period_0, every_status(F.pool, 0, nop_job, NULL))
THUNK(t_every_period_negative, every_status(F.pool, -1, nop_job, NULL))
THUNK(t_every_period_int64_min, every_status(F.pool, INT64_MIN, nop_job, NULL))
static jr_status t_every_with_group(jr_ctx *c) {
    (void)c;
    jr_submit_options o = jr_submit_options_default();
    o.group = F.group;
    return every_status(F.pool, MS, nop_job, &o);
}
static jr_status t_every_fn_owns_arg(jr_ctx *c) {
    (void)c;
    jr_submit_options o = jr_submit_options_default();
    o.fn_owns_arg = 1;
    return every_status(F.pool, MS, nop_job, &o);
}
static jr_status t_every_options_size_0(jr_ctx *c) {
    (void)c;
    jr_submit_options o = jr_submit_options_default();
    o.size = 0;
    return every_status(F.pool, MS, nop_job, &o);
}
static jr_status t_every_delay_negative(jr_ctx *c) {
    (void)c;
    jr_submit_options o = jr_submit_options_default();
    o.delay_ns = -1;
    return every_status(F.pool, MS, nop_job, &o);
}
static jr_status t_every_permits_0(jr_ctx *c) {
    (void)c;
    jr_submit_options o = jr_submit_options_default();
    o.sem = F.sem;
    o.permits = 0;
    return every_status(F.pool, MS, nop_job, &o);
}
static jr_status t_every_group_as_token(jr_ctx *c) {
    (void)c;
    jr_submit_options o = jr_submit_options_default();
    o.token = AS(jr_token, F.group);
    return every_status(F.pool, MS, nop_job, &o);
}
static jr_status t_every_bigger_nonzero(jr_ctx *c) {
    (void)c;
    bigger_submit_options b;
    memset(&b, 0, sizeof b);
    b.o = jr_submit_options_default();
    b.o.size = sizeof b;
    b.newer[1] = 1;
    return every_status(F.pool, MS, nop_job, &b.o);
}

/* ----- jobs ---------------------------------------------------------------------------------------- */

THUNK(t_job_wait_null, jr_job_wait(NULL, 0))
THUNK(t_job_wait_sem_as_job, jr_job_wait(AS(jr_job, F.sem), 0))
THUNK(t_job_wait_pool_as_job, jr_job_wait(AS(jr_job, F.pool), 0))
THUNK(t_job_wait_dead_tag, jr_job_wait(AS(jr_job, junk_dead), 0))
THUNK(t_take_result_null_job, jr_job_take_result(NULL, &(void *){NULL}))
THUNK(t_take_result_token_as_job, jr_job_take_result(AS(jr_job, F.token), &(void *){NULL}))
THUNK(t_take_result_null_out, jr_job_take_result(F.done, NULL))
THUNK(t_take_result_member, jr_job_take_result(F.member, &(void *){NULL}))
THUNK(t_take_result_ticker, jr_job_take_result(F.ticker, &(void *){NULL}))
THUNK(t_take_result_running, jr_job_take_result(F.running, &(void *){NULL}))
static jr_status t_job_state_null(jr_ctx *c) {
    (void)c;
    jr_state st;
    return jr_job_state(NULL, &st);
}
static jr_status t_job_state_group_as_job(jr_ctx *c) {
    (void)c;
    jr_state st;
    return jr_job_state(AS(jr_job, F.group), &st);
}
THUNK(t_job_state_null_out, jr_job_state(F.done, NULL))
static jr_status t_error_code_null(jr_ctx *c) {
    (void)c;
    int32_t code;
    return jr_job_error_code(NULL, &code);
}
static jr_status t_error_code_pool_as_job(jr_ctx *c) {
    (void)c;
    int32_t code;
    return jr_job_error_code(AS(jr_job, F.pool), &code);
}
THUNK(t_error_code_null_out, jr_job_error_code(F.done, NULL))
static jr_status t_error_code_running(jr_ctx *c) {
    (void)c;
    int32_t code;
    return jr_job_error_code(F.running, &code);
}
THUNK(t_error_message_null, want_null(jr_job_error_message(NULL), "jr_job_error_message(NULL)"))
THUNK(t_error_message_sem_as_job, want_null(jr_job_error_message(AS(jr_job, F.sem)), "jr_job_error_message(sem)"))
THUNK(t_error_message_junk, want_null(jr_job_error_message(AS(jr_job, junk_zero)), "jr_job_error_message(junk)"))
THUNK(t_error_message_running, want_null(jr_job_error_message(F.running), "jr_job_error_message(running job)"))
THUNK(t_error_message_succeeded, want_null(jr_job_error_message(F.done), "jr_job_error_message(succeeded job)"))
static atomic_int done_calls;
static void count_done(void *arg, jr_state state) {
    (void)arg;
    (void)state;
    atomic_fetch_add(&done_calls, 1);
}
static void noop_hook(void *arg, size_t index) {
    (void)arg;
    (void)index;
}
THUNK(t_add_hooks_null_pool, jr_pool_add_thread_hooks(NULL, noop_hook, noop_hook, NULL))
THUNK(t_add_hooks_sem_as_pool, jr_pool_add_thread_hooks(AS(jr_pool, F.sem), noop_hook, NULL, NULL))
THUNK(t_add_hooks_no_hooks, jr_pool_add_thread_hooks(F.other_pool, NULL, NULL, NULL))
THUNK(t_add_hooks_junk, jr_pool_add_thread_hooks(AS(jr_pool, junk_zero), noop_hook, NULL, NULL))
THUNK(t_add_hooks_stop_only, jr_pool_add_thread_hooks(F.other_pool, NULL, noop_hook, NULL))
THUNK(t_remove_hooks_null_pool, jr_pool_remove_thread_hooks(NULL, noop_hook, noop_hook, NULL))
THUNK(t_remove_hooks_sem_as_pool, jr_pool_remove_thread_hooks(AS(jr_pool, F.sem), noop_hook, NULL, NULL))
THUNK(t_remove_hooks_junk, jr_pool_remove_thread_hooks(AS(jr_pool, junk_dead), noop_hook, NULL, NULL))
THUNK(t_remove_hooks_no_hooks, jr_pool_remove_thread_hooks(F.other_pool, NULL, NULL, NULL))
THUNK(t_remove_hooks_never_added, jr_pool_remove_thread_hooks(F.pool, noop_hook, noop_hook, F.pool))
/* The stop-only hooks added by t_add_hooks_stop_only: removed once, then no more. */
THUNK(t_remove_hooks_stop_only, jr_pool_remove_thread_hooks(F.other_pool, NULL, noop_hook, NULL))
THUNK(t_add_park_hook_null_pool, jr_pool_add_park_hook(NULL, noop_hook, NULL))
THUNK(t_add_park_hook_sem_as_pool, jr_pool_add_park_hook(AS(jr_pool, F.sem), noop_hook, NULL))
THUNK(t_add_park_hook_junk, jr_pool_add_park_hook(AS(jr_pool, junk_zero), noop_hook, NULL))
THUNK(t_add_park_hook_no_hook, jr_pool_add_park_hook(F.other_pool, NULL, NULL))
THUNK(t_add_park_hook, jr_pool_add_park_hook(F.other_pool, noop_hook, NULL))
THUNK(t_remove_park_hook_null_pool, jr_pool_remove_park_hook(NULL, noop_hook, NULL))
THUNK(t_remove_park_hook_sem_as_pool, jr_pool_remove_park_hook(AS(jr_pool, F.sem), noop_hook, NULL))
THUNK(t_remove_park_hook_junk, jr_pool_remove_park_hook(AS(jr_pool, junk_dead), noop_hook, NULL))
THUNK(t_remove_park_hook_no_hook, jr_pool_remove_park_hook(F.other_pool, NULL, NULL))
THUNK(t_remove_park_hook_never_added, jr_pool_remove_park_hook(F.pool, noop_hook, F.pool))
/* The park hook of t_add_park_hook is not a start hook with the same function. */
THUNK(t_remove_park_hook_as_start_hook, jr_pool_remove_thread_hooks(F.other_pool, noop_hook, NULL, NULL))
/* The park hook added by t_add_park_hook: removed once, then no more. */
THUNK(t_remove_park_hook, jr_pool_remove_park_hook(F.other_pool, noop_hook, NULL))
static void *chan_out;
static size_t chan_len_out;
THUNK(t_chan_new_null_out, jr_chan_new(1, NULL, NULL))
static jr_status t_chan_new_capacity_0(jr_ctx *c) {
    (void)c;
    jr_chan *ch = NULL;
    jr_status st = jr_chan_new(0, NULL, &ch);
    if (ch != NULL) jr_chan_free(ch);
    return st;
}
THUNK(t_chan_send_null, jr_chan_send(NULL, NULL, 0, NULL))
THUNK(t_chan_send_sem_as_chan, jr_chan_send(AS(jr_chan, F.sem), NULL, 0, NULL))
THUNK(t_chan_send_junk, jr_chan_send(AS(jr_chan, junk_dead), NULL, 0, NULL))
THUNK(t_chan_send_sem_as_token, jr_chan_send(F.chan, NULL, 0, AS(jr_token, F.sem)))
THUNK(t_chan_try_send_null, jr_chan_try_send(NULL, NULL))
THUNK(t_chan_recv_null, jr_chan_recv(NULL, &chan_out, 0, NULL))
THUNK(t_chan_recv_null_out, jr_chan_recv(F.chan, NULL, 0, NULL))
THUNK(t_chan_recv_junk, jr_chan_recv(AS(jr_chan, junk_zero), &chan_out, 0, NULL))
THUNK(t_chan_recv_empty_now, jr_chan_recv(F.chan, &chan_out, 0, NULL))
THUNK(t_chan_try_recv_null_out, jr_chan_try_recv(F.chan, NULL))
/* The thinnest functions of the table, each also with a wrong-type and a freed handle. */
THUNK(t_chan_try_send_sem_as_chan, jr_chan_try_send(AS(jr_chan, F.sem), NULL))
THUNK(t_chan_try_send_junk, jr_chan_try_send(AS(jr_chan, junk_dead), NULL))
THUNK(t_chan_try_recv_token_as_chan, jr_chan_try_recv(AS(jr_chan, F.token), &(void *){NULL}))
THUNK(t_chan_try_recv_junk, jr_chan_try_recv(AS(jr_chan, junk_dead), &(void *){NULL}))
THUNK(t_chan_close_junk, jr_chan_close(AS(jr_chan, junk_dead)))
THUNK(t_chan_len_group_as_chan, jr_chan_len(AS(jr_chan, F.group), &(size_t){0}))
THUNK(t_group_close_junk, jr_group_close(AS(jr_group, junk_dead)))
THUNK(t_group_cancel_junk, jr_group_cancel(AS(jr_group, junk_dead)))
THUNK(t_pipe_cancel_junk, jr_pipeline_cancel(AS(jr_pipeline, junk_dead)))
THUNK(t_stream_free_junk, jr_stream_free(AS(jr_stream, junk_dead)))
THUNK(t_token_wait_junk, jr_token_wait(AS(jr_token, junk_dead), 0))
static jr_status t_chan_try_recv_null(jr_ctx *c) {
    (void)c;
    void *item = NULL;
    return jr_chan_try_recv(NULL, &item);
}
THUNK(t_chan_close_null, jr_chan_close(NULL))
THUNK(t_chan_close_pool_as_chan, jr_chan_close(AS(jr_chan, F.pool)))
THUNK(t_chan_len_null_out, jr_chan_len(F.chan, NULL))
THUNK(t_chan_len_null, jr_chan_len(NULL, &chan_len_out))
THUNK(t_chan_free_sem_as_chan, jr_chan_free(AS(jr_chan, F.sem)))
THUNK(t_chan_free_null, jr_chan_free(NULL))

static int32_t empty_producer(jr_ctx *ctx, void *arg, jr_chan *out) {
    (void)ctx;
    (void)arg;
    (void)out;
    return 0;
}
static void *stream_item;
static int32_t stream_code;
static jr_stream *stream_out;
THUNK(t_stream_new_null_pool, jr_stream_new(NULL, empty_producer, NULL, 1, NULL, NULL, &stream_out))
THUNK(t_stream_new_sem_as_pool, jr_stream_new(AS(jr_pool, F.sem), empty_producer, NULL, 1, NULL, NULL, &stream_out))
THUNK(t_stream_new_null_producer, jr_stream_new(F.pool, NULL, NULL, 1, NULL, NULL, &stream_out))
THUNK(t_stream_new_capacity_0, jr_stream_new(F.pool, empty_producer, NULL, 0, NULL, NULL, &stream_out))
THUNK(t_stream_new_null_out, jr_stream_new(F.pool, empty_producer, NULL, 1, NULL, NULL, NULL))
static jr_status t_stream_new_group(jr_ctx *c) {
    (void)c;
    jr_submit_options o = jr_submit_options_default();
    o.group = F.group;
    return jr_stream_new(F.pool, empty_producer, NULL, 1, NULL, &o, &stream_out);
}
static jr_status t_stream_new_bad_options_size(jr_ctx *c) {
    (void)c;
    jr_submit_options o = jr_submit_options_default();
    o.size = 0;
    return jr_stream_new(F.pool, empty_producer, NULL, 1, NULL, &o, &stream_out);
}
THUNK(t_stream_next_null, jr_stream_next(NULL, &stream_item, 0))
THUNK(t_stream_next_chan_as_stream, jr_stream_next(AS(jr_stream, F.chan), &stream_item, 0))
THUNK(t_stream_next_junk, jr_stream_next(AS(jr_stream, junk_dead), &stream_item, 0))
THUNK(t_stream_next_null_item, jr_stream_next(F.stream, NULL, 0))
THUNK(t_stream_next_ended, jr_stream_next(F.stream, &stream_item, -1))
THUNK(t_stream_cancel_null, jr_stream_cancel(NULL))
THUNK(t_stream_cancel_pool_as_stream, jr_stream_cancel(AS(jr_stream, F.pool)))
THUNK(t_stream_cancel_ended, jr_stream_cancel(F.stream))
THUNK(t_stream_error_code_null, jr_stream_error_code(NULL, &stream_code))
THUNK(t_stream_error_code_null_out, jr_stream_error_code(F.stream, NULL))
THUNK(t_stream_error_code_ended, jr_stream_error_code(F.stream, &stream_code))
THUNK(t_stream_error_message_null, want_null(jr_stream_error_message(NULL), "jr_stream_error_message(NULL)"))
THUNK(t_stream_error_message_junk, want_null(jr_stream_error_message(AS(jr_stream, junk_zero)), "jr_stream_error_message(junk)"))
THUNK(t_stream_free_sem_as_stream, jr_stream_free(AS(jr_stream, F.sem)))
THUNK(t_stream_free_null, jr_stream_free(NULL))

static size_t wait_ready;
static jr_waitable wait_one[1];
static jr_status wait_with(uint32_t kind, const void *handle, int64_t timeout_ns) {
    wait_one[0] = (jr_waitable){kind, handle};
    return jr_wait_any(wait_one, 1, timeout_ns, &wait_ready);
}
THUNK(t_wait_any_null_items, jr_wait_any(NULL, 1, 0, &wait_ready))
THUNK(t_wait_any_null_ready, wait_with(JR_WAIT_TOKEN, F.token, 0) == JR_E_TIMEOUT
                                 ? jr_wait_any(wait_one, 1, 0, NULL) : JR_E_INTERNAL)
THUNK(t_wait_any_too_many, jr_wait_any(wait_one, JR_WAIT_MAX + 1, 0, &wait_ready))
THUNK(t_wait_any_nothing_forever, jr_wait_any(NULL, 0, -1, &wait_ready))
THUNK(t_wait_any_nothing_briefly, jr_wait_any(NULL, 0, 1000, &wait_ready))
THUNK(t_wait_any_bad_kind, wait_with(7, F.token, 0))
THUNK(t_wait_any_chan_as_pipeline, wait_with(JR_WAIT_PIPELINE, F.chan, 0))
THUNK(t_wait_any_drained_pipeline, wait_with(JR_WAIT_PIPELINE, F.started, -1))
THUNK(t_wait_any_huge_kind, wait_with(UINT32_MAX, F.token, 0))
THUNK(t_wait_any_null_handle, wait_with(JR_WAIT_JOB, NULL, 0))
THUNK(t_wait_any_sem_as_job, wait_with(JR_WAIT_JOB, F.sem, 0))
THUNK(t_wait_any_job_as_group, wait_with(JR_WAIT_GROUP, F.done, 0))
THUNK(t_wait_any_token_as_chan, wait_with(JR_WAIT_CHAN_RECV, F.token, 0))
THUNK(t_wait_any_group_as_chan, wait_with(JR_WAIT_CHAN_SEND, F.group, 0))
THUNK(t_wait_any_chan_as_token, wait_with(JR_WAIT_TOKEN, F.chan, 0))
THUNK(t_wait_any_chan_as_stream, wait_with(JR_WAIT_STREAM, F.chan, 0))
THUNK(t_wait_any_junk, wait_with(JR_WAIT_JOB, junk_dead, 0))
THUNK(t_wait_any_ticker, wait_with(JR_WAIT_JOB, F.ticker, 0))
THUNK(t_wait_any_running_job_now, wait_with(JR_WAIT_JOB, F.running, 0))
THUNK(t_wait_any_ended_job, wait_with(JR_WAIT_JOB, F.done, -1))
THUNK(t_wait_any_live_token_briefly, wait_with(JR_WAIT_TOKEN, F.token, 1000))
THUNK(t_wait_any_empty_chan_now, wait_with(JR_WAIT_CHAN_RECV, F.chan, 0))
THUNK(t_wait_any_room_in_chan, wait_with(JR_WAIT_CHAN_SEND, F.chan, -1))
THUNK(t_wait_any_ended_stream, wait_with(JR_WAIT_STREAM, F.stream, -1))
static int32_t pass_stage(jr_ctx *ctx, void *arg, void *in, void **out) {
    (void)ctx;
    (void)arg;
    (void)in;
    (void)out;
    return JR_STAGE_EMIT;
}
static void *pipe_out;
static int32_t pipe_code_out;
static jr_pipeline *pipe_new_out;
THUNK(t_pipe_options_init_null, jr_pipeline_options_init(NULL, sizeof(jr_pipeline_options)))
static jr_status t_pipe_options_init_size_0(jr_ctx *c) {
    (void)c;
    jr_pipeline_options o;
    return jr_pipeline_options_init(&o, 0);
}
THUNK(t_pipe_new_null_pool, jr_pipeline_new(NULL, NULL, &pipe_new_out))
THUNK(t_pipe_new_chan_as_pool, jr_pipeline_new(AS(jr_pool, F.chan), NULL, &pipe_new_out))
THUNK(t_pipe_new_null_out, jr_pipeline_new(F.pool, NULL, NULL))
static jr_status t_pipe_new_size_0(jr_ctx *c) {
    (void)c;
    jr_pipeline_options o;
    memset(&o, 0, sizeof o);
    return jr_pipeline_new(F.pool, &o, &pipe_new_out);
}
static jr_status t_pipe_new_sem_as_token(jr_ctx *c) {
    (void)c;
    jr_pipeline_options o = {.size = sizeof o, .token = AS(jr_token, F.sem)};
    return jr_pipeline_new(F.pool, &o, &pipe_new_out);
}
static jr_status t_pipe_new_bigger_nonzero(jr_ctx *c) {
    (void)c;
    struct {
        jr_pipeline_options o;
        uint64_t extra;
    } big = {.o = {.size = sizeof big}, .extra = 1};
    return jr_pipeline_new(F.pool, &big.o, &pipe_new_out);
}
static jr_status t_pipe_new_older_size(jr_ctx *c) {
    (void)c;
    jr_pipeline_options o = {.size = offsetof(jr_pipeline_options, token), .max_in_flight = 3};
    jr_pipeline *p = NULL;
    jr_status st = jr_pipeline_new(F.pool, &o, &p);
    if (st == JR_OK) st = jr_pipeline_free(p);
    return st;
}
THUNK(t_pipe_add_stage_null, jr_pipeline_add_stage(NULL, pass_stage, NULL, 1, 0))
THUNK(t_pipe_add_stage_chan_as_pipe, jr_pipeline_add_stage(AS(jr_pipeline, F.chan), pass_stage, NULL, 1, 0))
THUNK(t_pipe_add_stage_junk, jr_pipeline_add_stage(AS(jr_pipeline, junk_dead), pass_stage, NULL, 1, 0))
THUNK(t_pipe_add_stage_no_fn, jr_pipeline_add_stage(F.pipe, NULL, NULL, 1, 0))
THUNK(t_pipe_add_stage_concurrency_0, jr_pipeline_add_stage(F.pipe, pass_stage, NULL, 0, 0))
THUNK(t_pipe_add_stage_ordered_2, jr_pipeline_add_stage(F.pipe, pass_stage, NULL, 1, 2))
THUNK(t_pipe_add_stage_ordered_minus1, jr_pipeline_add_stage(F.pipe, pass_stage, NULL, 1, -1))
THUNK(t_pipe_add_stage_ok, jr_pipeline_add_stage(F.pipe, pass_stage, NULL, 1, 1))
THUNK(t_pipe_add_stage_started, jr_pipeline_add_stage(F.started, pass_stage, NULL, 1, 0))
THUNK(t_pipe_push_null, jr_pipeline_push(NULL, NULL, 0))
THUNK(t_pipe_push_sem_as_pipe, jr_pipeline_push(AS(jr_pipeline, F.sem), NULL, 0))
THUNK(t_pipe_push_closed, jr_pipeline_push(F.started, NULL, 0))
THUNK(t_pipe_close_input_null, jr_pipeline_close_input(NULL))
THUNK(t_pipe_close_input_pool_as_pipe, jr_pipeline_close_input(AS(jr_pipeline, F.pool)))
THUNK(t_pipe_close_input_twice, jr_pipeline_close_input(F.started))
THUNK(t_pipe_next_null, jr_pipeline_next(NULL, &pipe_out, 0))
THUNK(t_pipe_next_null_out, jr_pipeline_next(F.started, NULL, 0))
THUNK(t_pipe_next_junk, jr_pipeline_next(AS(jr_pipeline, junk_zero), &pipe_out, 0))
THUNK(t_pipe_next_drained, jr_pipeline_next(F.started, &pipe_out, 0))
THUNK(t_pipe_cancel_null, jr_pipeline_cancel(NULL))
THUNK(t_pipe_cancel_token_as_pipe, jr_pipeline_cancel(AS(jr_pipeline, F.token)))
THUNK(t_pipe_error_code_null, jr_pipeline_error_code(NULL, &pipe_code_out))
THUNK(t_pipe_error_code_null_out, jr_pipeline_error_code(F.started, NULL))
THUNK(t_pipe_error_code_none, jr_pipeline_error_code(F.started, &pipe_code_out))
THUNK(t_pipe_error_message_null, want_null(jr_pipeline_error_message(NULL), "jr_pipeline_error_message(NULL)"))
THUNK(t_pipe_error_message_group_as_pipe, want_null(jr_pipeline_error_message(AS(jr_pipeline, F.group)), "jr_pipeline_error_message(group)"))
THUNK(t_pipe_error_message_none, want_null(jr_pipeline_error_message(F.started), "jr_pipeline_error_message(no failure)"))
THUNK(t_pipe_free_null, jr_pipeline_free(NULL))
THUNK(t_pipe_free_chan_as_pipe, jr_pipeline_free(AS(jr_pipeline, F.chan)))
THUNK(t_pipe_free_junk, jr_pipeline_free(AS(jr_pipeline, junk_dead)))
THUNK(t_job_on_done_null, jr_job_on_done(NULL, count_done, NULL))
THUNK(t_job_on_done_sem_as_job, jr_job_on_done(AS(jr_job, F.sem), count_done, NULL))
THUNK(t_job_on_done_no_fn, jr_job_on_done(F.done, NULL, NULL))
THUNK(t_job_on_done_ticker, jr_job_on_done(F.ticker, count_done, NULL))
THUNK(t_job_on_done_junk, jr_job_on_done(AS(jr_job, junk_dead), count_done, NULL))
static jr_status t_job_on_done_ended_calls_at_once(jr_ctx *c) {
    (void)c;
    int before = atomic_load(&done_calls);
    jr_status s = jr_job_on_done(F.done, count_done, NULL);
    if (s == JR_OK && atomic_load(&done_calls) != before + 1) {
        return fail_because("jr_job_on_done on an ended job did not call back at once");
    }
    return s;
}
THUNK(t_job_cancel_null, jr_job_cancel(NULL))
THUNK(t_job_cancel_token_as_job, jr_job_cancel(AS(jr_job, F.token)))
THUNK(t_job_cancel_ended, jr_job_cancel(F.done))
THUNK(t_job_free_null, jr_job_free(NULL))
THUNK(t_job_free_sem_as_job, jr_job_free(AS(jr_job, F.sem)))
THUNK(t_job_free_junk, jr_job_free(AS(jr_job, junk_zero)))

/* ----- job contexts ----------------------------------------------------------------------------------- */

THUNK(t_ctx_is_cancelled_null, want_false(jr_ctx_is_cancelled(NULL), "jr_ctx_is_cancelled(NULL)"))
THUNK(t_ctx_is_cancelled_token_as_ctx, want_false(jr_ctx_is_cancelled(AS(jr_ctx, F.token)), "jr_ctx_is_cancelled(token)"))
THUNK(t_ctx_is_cancelled_job_as_ctx_in_job, want_false(jr_ctx_is_cancelled(AS(jr_ctx, F.running)), "jr_ctx_is_cancelled(job)"))
THUNK(t_ctx_token_null, want_null(jr_ctx_token(NULL), "jr_ctx_token(NULL)"))
THUNK(t_ctx_token_pool_as_ctx, want_null(jr_ctx_token(AS(jr_ctx, F.pool)), "jr_ctx_token(pool)"))
THUNK(t_ctx_token_junk, want_null(jr_ctx_token(AS(jr_ctx, junk_zero)), "jr_ctx_token(junk)"))
THUNK(t_ctx_pool_null, want_null(jr_ctx_pool(NULL), "jr_ctx_pool(NULL)"))
THUNK(t_ctx_pool_sem_as_ctx, want_null(jr_ctx_pool(AS(jr_ctx, F.sem)), "jr_ctx_pool(sem)"))
THUNK(t_ctx_fail_null_ctx, jr_ctx_fail(NULL, "message"))
THUNK(t_ctx_fail_group_as_ctx, jr_ctx_fail(AS(jr_ctx, F.group), "message"))
static jr_status t_ctx_fail_null_message_in_job(jr_ctx *c) {
    return jr_ctx_fail(c, NULL);
}
THUNK(t_ctx_panic_null_ctx, jr_ctx_panic(NULL, "message"))
THUNK(t_ctx_panic_pool_as_ctx, jr_ctx_panic(AS(jr_ctx, F.pool), "message"))
static jr_status t_ctx_panic_null_message_in_job(jr_ctx *c) {
    return jr_ctx_panic(c, NULL);
}
static jr_status t_ctx_tick_null_ctx(jr_ctx *c) {
    (void)c;
    uint64_t t;
    return jr_ctx_tick(NULL, &t);
}
static jr_status t_ctx_tick_token_as_ctx(jr_ctx *c) {
    (void)c;
    uint64_t t;
    return jr_ctx_tick(AS(jr_ctx, F.token), &t);
}
static jr_status t_ctx_tick_not_periodic_in_job(jr_ctx *c) {
    uint64_t t;
    return jr_ctx_tick(c, &t);
}
static jr_status t_ctx_tick_null_out_in_job(jr_ctx *c) {
    return jr_ctx_tick(c, NULL);
}

/* A job function never submitted: jr_ctx_run_queued with it finds nothing to run. */
static int32_t never_submitted_job(jr_ctx *ctx, void *arg, void **result) {
    (void)ctx;
    (void)arg;
    (void)result;
    return 0;
}
static jr_status t_ctx_run_queued_null_ctx(jr_ctx *c) {
    (void)c;
    uint32_t ran = 7;
    jr_status s = jr_ctx_run_queued(NULL, never_submitted_job, 8, &ran);
    return ran == 7 ? s : fail_because("jr_ctx_run_queued failed but wrote *ran");
}
THUNK(t_ctx_run_queued_sem_as_ctx, jr_ctx_run_queued(AS(jr_ctx, F.sem), never_submitted_job, 8, NULL))
THUNK(t_ctx_run_queued_junk_ctx, jr_ctx_run_queued(AS(jr_ctx, junk_dead), never_submitted_job, 8, NULL))
static jr_status t_ctx_run_queued_null_fn_in_job(jr_ctx *c) {
    jr_status s = jr_ctx_run_queued(c, NULL, 8, NULL);
    const char *m = jr_last_error_message();
    return s != JR_E_INVALID_ARG || (m != NULL && strstr(m, "fn") != NULL)
               ? s
               : fail_because("jr_last_error_message() does not name fn");
}
/* NULL `ran` is allowed; nothing of this function is queued: JR_OK. */
THUNK(t_ctx_run_queued_null_ran_in_job, jr_ctx_run_queued(c, never_submitted_job, 8, NULL))
static jr_status t_ctx_run_queued_nothing_queued_in_job(jr_ctx *c) {
    uint32_t ran = 7;
    jr_status s = jr_ctx_run_queued(c, never_submitted_job, UINT32_MAX, &ran);
    return s != JR_OK || ran == 0 ? s : fail_because("jr_ctx_run_queued ran a job");
}
/* The job's context used from another thread (allowed for the other jr_ctx_* calls). */
typedef struct {
    jr_ctx *ctx;
    jr_status status;
} off_thread_call;
static void *run_queued_off_thread(void *arg) {
    off_thread_call *call = arg;
    call->status = jr_ctx_run_queued(call->ctx, never_submitted_job, 8, NULL);
    return NULL;
}
static jr_status t_ctx_run_queued_other_thread_in_job(jr_ctx *c) {
    off_thread_call call = {c, JR_E_INTERNAL};
    pthread_t thread;
    if (pthread_create(&thread, NULL, run_queued_off_thread, &call) != 0) {
        return fail_because("pthread_create");
    }
    pthread_join(thread, NULL);
    return call.status;
}

/* ----- tokens ------------------------------------------------------------------------------------------ */

THUNK(t_token_new_null_out, jr_token_new(NULL, NULL))
THUNK(t_token_new_null_out_with_parent, jr_token_new(F.token, NULL))
static jr_status t_token_new_pool_as_parent(jr_ctx *c) {
    (void)c;
    jr_token *t = NULL;
    jr_status s = jr_token_new(AS(jr_token, F.pool), &t);
    if (s == JR_OK) {
        jr_token_free(t);
    }
    return s;
}
static jr_status t_token_new_junk_parent(jr_ctx *c) {
    (void)c;
    jr_token *t = NULL;
    jr_status s = jr_token_new(AS(jr_token, junk_zero), &t);
    if (s == JR_OK) {
        jr_token_free(t);
    }
    return s;
}
THUNK(t_set_deadline_null, jr_token_set_deadline(NULL, SEC))
THUNK(t_set_deadline_sem_as_token, jr_token_set_deadline(AS(jr_token, F.sem), SEC))
static jr_status t_set_deadline_negative(jr_ctx *c) {
    (void)c;
    jr_token *t = NULL;
    if (jr_token_new(NULL, &t) != JR_OK) {
        return fail_because("jr_token_new");
    }
    jr_status s = jr_token_set_deadline(t, -1);
    if (s != JR_OK && jr_token_is_cancelled(t)) {
        s = fail_because("a refused deadline cancelled the token");
    }
    jr_token_free(t);
    return s;
}
THUNK(t_token_cancel_null, jr_token_cancel(NULL))
THUNK(t_token_cancel_sync_null, jr_token_cancel_sync(NULL))
THUNK(t_token_cancel_sync_sem_as_token, jr_token_cancel_sync(AS(jr_token, F.sem)))
THUNK(t_token_cancel_sync_junk, jr_token_cancel_sync(AS(jr_token, junk_dead)))
THUNK(t_token_cancel_group_as_token, jr_token_cancel(AS(jr_token, F.group)))
THUNK(t_token_cancel_junk, jr_token_cancel(AS(jr_token, junk_zero)))
THUNK(t_token_is_cancelled_null, want_false(jr_token_is_cancelled(NULL), "jr_token_is_cancelled(NULL)"))
THUNK(t_token_is_cancelled_pool_as_token, want_false(jr_token_is_cancelled(AS(jr_token, F.pool)), "jr_token_is_cancelled(pool)"))
static jr_status t_token_is_cancelled_dead_tag(jr_ctx *c) {
    (void)c;
    return want_false(jr_token_is_cancelled(AS(jr_token, junk_dead)),
                      "jr_token_is_cancelled(freed-looking)");
}
static jr_status t_token_reason_null(jr_ctx *c) {
    (void)c;
    jr_cancel_reason r;
    return jr_token_reason(NULL, &r);
}
static jr_status t_token_reason_job_as_token(jr_ctx *c) {
    (void)c;
    jr_cancel_reason r;
    return jr_token_reason(AS(jr_token, F.done), &r);
}
THUNK(t_token_reason_null_out, jr_token_reason(F.token, NULL))
THUNK(t_token_wait_null, jr_token_wait(NULL, 100 * MS))
THUNK(t_token_wait_sem_as_token, jr_token_wait(AS(jr_token, F.sem), 100 * MS))
THUNK(t_token_free_null, jr_token_free(NULL))
THUNK(t_token_free_pool_as_token, jr_token_free(AS(jr_token, F.pool)))
static jr_status t_token_free_ctx_token_in_job(jr_ctx *c) {
    return jr_token_free(jr_ctx_token(c));
}

/* ----- the fixtures are intact ------------------------------------------------------------------------- */

static jr_status t_fixture_pool_still_works(jr_ctx *c) {
    (void)c;
    counter runs;
    counter_init(&runs);
    jr_job *j = NULL;
    jr_status s = jr_submit(F.pool, count_job, &runs, NULL, &j);
    if (s == JR_OK) {
        s = wait_free(j);
    }
    if (s == JR_OK && counter_get(&runs) != 1) {
        s = fail_because("job did not run");
    }
    counter_destroy(&runs);
    return s;
}
THUNK(t_fixture_token_not_cancelled, want_false(jr_token_is_cancelled(F.token), "jr_token_is_cancelled(fixture token)"))
static jr_status t_fixture_sem_all_free(jr_ctx *c) {
    (void)c;
    uint64_t n = 0;
    jr_status s = jr_sem_available(F.sem, &n);
    return s != JR_OK ? s : n == 2 ? JR_OK : fail_because("fixture semaphore lost permits");
}
static jr_status t_fixture_group_open(jr_ctx *c) {
    (void)c;
    jr_submit_options o = jr_submit_options_default();
    o.group = F.group;
    jr_job *j = NULL;
    jr_status s = jr_submit(F.pool, nop_job, NULL, &o, &j);
    return s != JR_OK ? s : wait_free(j);
}
static jr_status t_fixture_running_still_running(jr_ctx *c) {
    (void)c;
    return job_state(F.running) == JR_JOB_RUNNING ? JR_OK
                                                  : fail_because("the running job was disturbed");
}

/* ----- the table ---------------------------------------------------------------------------------------- */

typedef struct {
    const char *name;
    jr_status (*thunk)(jr_ctx *ctx);
    jr_status want;
    bool in_job;
} row;

#define ROW(thunk, want) {#thunk, thunk, want, false}
#define IN_JOB(thunk, want) {#thunk, thunk, want, true}
#define BAD JR_E_INVALID_ARG

static const row rows[] = {
    /* jr_status_str, jr_version */
    ROW(t_status_str_minus1, JR_OK),
    ROW(t_status_str_9999, JR_OK),
    ROW(t_status_str_int_min, JR_OK),
    ROW(t_status_str_past_last, JR_OK),
    ROW(t_version_not_null, JR_OK),
    /* jr_last_error_message */
    ROW(t_last_error_message_says_which, JR_OK),
    /* jr_pool_options_default, jr_pool_new */
    ROW(t_pool_options_default, JR_OK),
    ROW(t_pool_new_null_out, BAD),
    ROW(t_pool_new_null_out_with_options, BAD),
    ROW(t_pool_new_size_0, BAD),
    ROW(t_pool_new_size_below_word, BAD),
    ROW(t_pool_new_threads_over_max, BAD),
    ROW(t_pool_new_threads_size_max, BAD),
    ROW(t_pool_new_bigger_zeroed, JR_OK),
    ROW(t_pool_new_bigger_nonzero, BAD),
    ROW(t_pool_new_bigger_nonzero_last_byte, BAD),
    ROW(t_pool_new_older_size, JR_OK),
    ROW(t_pool_new_size_word_only, JR_OK),
    ROW(t_pool_new_size_mid_field, JR_OK),
    /* jr_pool_global */
    ROW(t_pool_global_not_null, JR_OK),
    /* jr_pool_shutdown */
    ROW(t_shutdown_null, BAD),
    ROW(t_shutdown_token_as_pool, BAD),
    ROW(t_shutdown_sem_as_pool, BAD),
    ROW(t_shutdown_junk, BAD),
    ROW(t_shutdown_mode_0, BAD),
    ROW(t_shutdown_mode_4, BAD),
    ROW(t_shutdown_mode_ffff, BAD),
    ROW(t_shutdown_mode_all_bits, BAD),
    ROW(t_shutdown_mode_drain_cancel_ok, JR_OK),
    IN_JOB(t_shutdown_ctx_pool_mode_bad_in_job, BAD),
    /* jr_stats */
    ROW(t_stats_null_pool, BAD),
    ROW(t_stats_group_as_pool, BAD),
    ROW(t_stats_null_out, BAD),
    ROW(t_stats_size_0, BAD),
    ROW(t_stats_size_below_word, BAD),
    ROW(t_stats_older_size, JR_OK),
    ROW(t_stats_bigger_size, JR_OK),
    /* jr_pool_free */
    ROW(t_pool_free_null, JR_OK),
    ROW(t_pool_free_token_as_pool, BAD),
    ROW(t_pool_free_job_as_pool, BAD),
    ROW(t_pool_free_junk, BAD),
    ROW(t_pool_free_dead_tag, BAD),
    ROW(t_pool_free_global, BAD),
    IN_JOB(t_pool_free_ctx_pool_in_job, BAD),
    /* jr_group_options_default, jr_group_new */
    ROW(t_group_options_default, JR_OK),
    ROW(t_group_new_null_pool, BAD),
    ROW(t_group_new_group_as_pool, BAD),
    ROW(t_group_new_null_out, BAD),
    ROW(t_group_new_size_0, BAD),
    ROW(t_group_new_sem_as_token, BAD),
    ROW(t_group_new_bigger_zeroed, JR_OK),
    ROW(t_group_new_bigger_nonzero, BAD),
    ROW(t_group_new_older_size, JR_OK),
    /* jr_group_close, _cancel, _wait, _first_error, _next, _free */
    ROW(t_group_close_null, BAD),
    ROW(t_group_close_pool_as_group, BAD),
    ROW(t_group_cancel_null, BAD),
    ROW(t_group_cancel_token_as_group, BAD),
    ROW(t_group_wait_null, BAD),
    ROW(t_group_wait_sem_as_group, BAD),
    ROW(t_group_first_error_null, BAD),
    ROW(t_group_first_error_job_as_group, BAD),
    ROW(t_group_first_error_null_out, BAD),
    ROW(t_group_next_null, BAD),
    ROW(t_group_next_pool_as_group, BAD),
    ROW(t_group_next_null_out, BAD),
    ROW(t_group_next_wait_only, BAD),
    ROW(t_group_free_null, JR_OK),
    ROW(t_group_free_pool_as_group, BAD),
    ROW(t_group_free_junk, BAD),
    /* jr_sem_* */
    ROW(t_sem_new_0, BAD),
    ROW(t_sem_new_null_out, BAD),
    ROW(t_sem_acquire_null, BAD),
    ROW(t_sem_acquire_token_as_sem, BAD),
    ROW(t_sem_acquire_pool_as_token, BAD),
    ROW(t_sem_acquire_n_0, BAD),
    ROW(t_sem_acquire_over_total, BAD),
    ROW(t_sem_acquire_u64_max, BAD),
    ROW(t_sem_try_acquire_null, BAD),
    ROW(t_sem_try_acquire_group_as_sem, BAD),
    ROW(t_sem_try_acquire_0, BAD),
    ROW(t_sem_try_acquire_over_total, BAD),
    ROW(t_sem_release_null, BAD),
    ROW(t_sem_release_job_as_sem, BAD),
    ROW(t_sem_release_0, BAD),
    ROW(t_sem_release_more_than_taken, BAD),
    ROW(t_sem_release_u64_max, BAD),
    ROW(t_sem_release_some_more_than_taken, BAD),
    ROW(t_sem_available_null, BAD),
    ROW(t_sem_available_pool_as_sem, BAD),
    ROW(t_sem_available_null_out, BAD),
    ROW(t_sem_free_null, JR_OK),
    ROW(t_sem_free_group_as_sem, BAD),
    ROW(t_sem_free_dead_tag, BAD),
    /* jr_submit_options_default, jr_submit */
    ROW(t_submit_options_default, JR_OK),
    ROW(t_submit_null_pool, BAD),
    ROW(t_submit_token_as_pool, BAD),
    ROW(t_submit_junk_pool, BAD),
    IN_JOB(t_submit_ctx_as_pool_in_job, BAD),
    ROW(t_submit_null_fn, BAD),
    ROW(t_submit_options_size_0, BAD),
    ROW(t_submit_options_size_below_word, BAD),
    ROW(t_submit_sem_as_token, BAD),
    ROW(t_submit_token_as_sem, BAD),
    ROW(t_submit_permits_0, BAD),
    ROW(t_submit_permits_over_total, BAD),
    ROW(t_submit_permits_u64_max, BAD),
    ROW(t_submit_delay_negative, BAD),
    ROW(t_submit_delay_int64_min, BAD),
    ROW(t_submit_pool_as_group, BAD),
    ROW(t_submit_group_of_other_pool, BAD),
    ROW(t_submit_group_with_token, BAD),
    ROW(t_submit_limited_group_with_sem, BAD),
    ROW(t_submit_bigger_zeroed, JR_OK),
    ROW(t_submit_bigger_nonzero, BAD),
    ROW(t_submit_older_size, JR_OK),
    /* jr_submit_every */
    ROW(t_every_null_pool, BAD),
    ROW(t_every_sem_as_pool, BAD),
    ROW(t_every_null_fn, BAD),
    ROW(t_every_null_out_detached, JR_OK),
    ROW(t_every_period_0, BAD),
    ROW(t_every_period_negative, BAD),
    ROW(t_every_period_int64_min, BAD),
    ROW(t_every_with_group, BAD),
    ROW(t_every_fn_owns_arg, BAD),
    ROW(t_every_options_size_0, BAD),
    ROW(t_every_delay_negative, BAD),
    ROW(t_every_permits_0, BAD),
    ROW(t_every_group_as_token, BAD),
    ROW(t_every_bigger_nonzero, BAD),
    /* jr_job_* */
    ROW(t_job_wait_null, BAD),
    ROW(t_job_wait_sem_as_job, BAD),
    ROW(t_job_wait_pool_as_job, BAD),
    ROW(t_job_wait_dead_tag, BAD),
    ROW(t_take_result_null_job, BAD),
    ROW(t_take_result_token_as_job, BAD),
    ROW(t_take_result_null_out, BAD),
    ROW(t_take_result_member, BAD),
    ROW(t_take_result_ticker, BAD),
    ROW(t_take_result_running, JR_E_TIMEOUT),
    ROW(t_job_state_null, BAD),
    ROW(t_job_state_group_as_job, BAD),
    ROW(t_job_state_null_out, BAD),
    ROW(t_error_code_null, BAD),
    ROW(t_error_code_pool_as_job, BAD),
    ROW(t_error_code_null_out, BAD),
    ROW(t_error_code_running, JR_E_TIMEOUT),
    ROW(t_error_message_null, JR_OK),
    ROW(t_error_message_sem_as_job, JR_OK),
    ROW(t_error_message_junk, JR_OK),
    ROW(t_error_message_running, JR_OK),
    ROW(t_error_message_succeeded, JR_OK),
    ROW(t_add_hooks_null_pool, BAD),
    ROW(t_add_hooks_sem_as_pool, BAD),
    ROW(t_add_hooks_no_hooks, BAD),
    ROW(t_add_hooks_junk, BAD),
    ROW(t_add_hooks_stop_only, JR_OK),
    ROW(t_remove_hooks_null_pool, BAD),
    ROW(t_remove_hooks_sem_as_pool, BAD),
    ROW(t_remove_hooks_junk, BAD),
    ROW(t_remove_hooks_no_hooks, BAD),
    ROW(t_remove_hooks_never_added, BAD),
    ROW(t_remove_hooks_stop_only, JR_OK),
    ROW(t_remove_hooks_stop_only, BAD),
    ROW(t_chan_new_null_out, BAD),
    ROW(t_chan_new_capacity_0, BAD),
    ROW(t_chan_send_null, BAD),
    ROW(t_chan_send_sem_as_chan, BAD),
    ROW(t_chan_send_junk, BAD),
    ROW(t_chan_send_sem_as_token, BAD),
    ROW(t_chan_try_send_null, BAD),
    ROW(t_chan_recv_null, BAD),
    ROW(t_chan_recv_null_out, BAD),
    ROW(t_chan_recv_junk, BAD),
    ROW(t_chan_recv_empty_now, JR_E_EMPTY),
    ROW(t_chan_try_recv_null_out, BAD),
    ROW(t_chan_try_recv_null, BAD),
    ROW(t_chan_try_send_sem_as_chan, BAD),
    ROW(t_chan_try_send_junk, BAD),
    ROW(t_chan_try_recv_token_as_chan, BAD),
    ROW(t_chan_try_recv_junk, BAD),
    ROW(t_chan_close_junk, BAD),
    ROW(t_chan_len_group_as_chan, BAD),
    ROW(t_group_close_junk, BAD),
    ROW(t_group_cancel_junk, BAD),
    ROW(t_pipe_cancel_junk, BAD),
    ROW(t_stream_free_junk, BAD),
    ROW(t_token_wait_junk, BAD),
    ROW(t_chan_close_null, BAD),
    ROW(t_chan_close_pool_as_chan, BAD),
    ROW(t_chan_len_null_out, BAD),
    ROW(t_chan_len_null, BAD),
    ROW(t_chan_free_sem_as_chan, BAD),
    ROW(t_chan_free_null, JR_OK),
    ROW(t_stream_new_null_pool, BAD),
    ROW(t_stream_new_sem_as_pool, BAD),
    ROW(t_stream_new_null_producer, BAD),
    ROW(t_stream_new_capacity_0, BAD),
    ROW(t_stream_new_null_out, BAD),
    ROW(t_stream_new_group, BAD),
    ROW(t_stream_new_bad_options_size, BAD),
    ROW(t_stream_next_null, BAD),
    ROW(t_stream_next_chan_as_stream, BAD),
    ROW(t_stream_next_junk, BAD),
    ROW(t_stream_next_null_item, BAD),
    ROW(t_stream_next_ended, JR_E_CLOSED),
    ROW(t_stream_cancel_null, BAD),
    ROW(t_stream_cancel_pool_as_stream, BAD),
    ROW(t_stream_cancel_ended, JR_OK),
    ROW(t_stream_error_code_null, BAD),
    ROW(t_stream_error_code_null_out, BAD),
    ROW(t_stream_error_code_ended, JR_OK),
    ROW(t_stream_error_message_null, JR_OK),
    ROW(t_stream_error_message_junk, JR_OK),
    ROW(t_stream_free_sem_as_stream, BAD),
    ROW(t_stream_free_null, JR_OK),
    ROW(t_wait_any_null_items, BAD),
    ROW(t_wait_any_null_ready, BAD),
    ROW(t_wait_any_too_many, BAD),
    ROW(t_wait_any_nothing_forever, BAD),
    ROW(t_wait_any_nothing_briefly, JR_E_TIMEOUT),
    ROW(t_wait_any_bad_kind, BAD),
    ROW(t_wait_any_chan_as_pipeline, BAD),
    ROW(t_wait_any_drained_pipeline, JR_OK),
    ROW(t_wait_any_huge_kind, BAD),
    ROW(t_wait_any_null_handle, BAD),
    ROW(t_wait_any_sem_as_job, BAD),
    ROW(t_wait_any_job_as_group, BAD),
    ROW(t_wait_any_token_as_chan, BAD),
    ROW(t_wait_any_group_as_chan, BAD),
    ROW(t_wait_any_chan_as_token, BAD),
    ROW(t_wait_any_chan_as_stream, BAD),
    ROW(t_wait_any_junk, BAD),
    ROW(t_wait_any_ticker, BAD),
    ROW(t_wait_any_running_job_now, JR_E_TIMEOUT),
    ROW(t_wait_any_ended_job, JR_OK),
    ROW(t_wait_any_live_token_briefly, JR_E_TIMEOUT),
    ROW(t_wait_any_empty_chan_now, JR_E_TIMEOUT),
    ROW(t_wait_any_room_in_chan, JR_OK),
    ROW(t_wait_any_ended_stream, JR_OK),
    ROW(t_pipe_options_init_null, BAD),
    ROW(t_pipe_options_init_size_0, BAD),
    ROW(t_pipe_new_null_pool, BAD),
    ROW(t_pipe_new_chan_as_pool, BAD),
    ROW(t_pipe_new_null_out, BAD),
    ROW(t_pipe_new_size_0, BAD),
    ROW(t_pipe_new_sem_as_token, BAD),
    ROW(t_pipe_new_bigger_nonzero, BAD),
    ROW(t_pipe_new_older_size, JR_OK),
    ROW(t_pipe_add_stage_null, BAD),
    ROW(t_pipe_add_stage_chan_as_pipe, BAD),
    ROW(t_pipe_add_stage_junk, BAD),
    ROW(t_pipe_add_stage_no_fn, BAD),
    ROW(t_pipe_add_stage_concurrency_0, BAD),
    ROW(t_pipe_add_stage_ordered_2, BAD),
    ROW(t_pipe_add_stage_ordered_minus1, BAD),
    ROW(t_pipe_add_stage_ok, JR_OK),
    ROW(t_pipe_add_stage_started, BAD),
    ROW(t_pipe_push_null, BAD),
    ROW(t_pipe_push_sem_as_pipe, BAD),
    ROW(t_pipe_push_closed, JR_E_CLOSED),
    ROW(t_pipe_close_input_null, BAD),
    ROW(t_pipe_close_input_pool_as_pipe, BAD),
    ROW(t_pipe_close_input_twice, JR_OK),
    ROW(t_pipe_next_null, BAD),
    ROW(t_pipe_next_null_out, BAD),
    ROW(t_pipe_next_junk, BAD),
    ROW(t_pipe_next_drained, JR_E_CLOSED),
    ROW(t_pipe_cancel_null, BAD),
    ROW(t_pipe_cancel_token_as_pipe, BAD),
    ROW(t_pipe_error_code_null, BAD),
    ROW(t_pipe_error_code_null_out, BAD),
    ROW(t_pipe_error_code_none, JR_OK),
    ROW(t_pipe_error_message_null, JR_OK),
    ROW(t_pipe_error_message_group_as_pipe, JR_OK),
    ROW(t_pipe_error_message_none, JR_OK),
    ROW(t_pipe_free_null, JR_OK),
    ROW(t_pipe_free_chan_as_pipe, BAD),
    ROW(t_pipe_free_junk, BAD),
    ROW(t_add_park_hook_null_pool, BAD),
    ROW(t_add_park_hook_sem_as_pool, BAD),
    ROW(t_add_park_hook_junk, BAD),
    ROW(t_add_park_hook_no_hook, BAD),
    ROW(t_add_park_hook, JR_OK),
    ROW(t_remove_park_hook_null_pool, BAD),
    ROW(t_remove_park_hook_sem_as_pool, BAD),
    ROW(t_remove_park_hook_junk, BAD),
    ROW(t_remove_park_hook_no_hook, BAD),
    ROW(t_remove_park_hook_never_added, BAD),
    ROW(t_remove_park_hook_as_start_hook, BAD),
    ROW(t_remove_park_hook, JR_OK),
    ROW(t_remove_park_hook, BAD),
    ROW(t_job_on_done_null, BAD),
    ROW(t_job_on_done_sem_as_job, BAD),
    ROW(t_job_on_done_no_fn, BAD),
    ROW(t_job_on_done_ticker, BAD),
    ROW(t_job_on_done_junk, BAD),
    ROW(t_job_on_done_ended_calls_at_once, JR_OK),
    ROW(t_job_cancel_null, BAD),
    ROW(t_job_cancel_token_as_job, BAD),
    ROW(t_job_cancel_ended, JR_E_CLOSED),
    ROW(t_job_free_null, JR_OK),
    ROW(t_job_free_sem_as_job, BAD),
    ROW(t_job_free_junk, BAD),
    /* jr_ctx_* */
    ROW(t_ctx_is_cancelled_null, JR_OK),
    ROW(t_ctx_is_cancelled_token_as_ctx, JR_OK),
    IN_JOB(t_ctx_is_cancelled_job_as_ctx_in_job, JR_OK),
    ROW(t_ctx_token_null, JR_OK),
    ROW(t_ctx_token_pool_as_ctx, JR_OK),
    ROW(t_ctx_token_junk, JR_OK),
    ROW(t_ctx_pool_null, JR_OK),
    ROW(t_ctx_pool_sem_as_ctx, JR_OK),
    ROW(t_ctx_fail_null_ctx, BAD),
    ROW(t_ctx_fail_group_as_ctx, BAD),
    IN_JOB(t_ctx_fail_null_message_in_job, BAD),
    ROW(t_ctx_panic_null_ctx, BAD),
    ROW(t_ctx_panic_pool_as_ctx, BAD),
    IN_JOB(t_ctx_panic_null_message_in_job, BAD),
    ROW(t_ctx_tick_null_ctx, BAD),
    ROW(t_ctx_tick_token_as_ctx, BAD),
    IN_JOB(t_ctx_tick_not_periodic_in_job, BAD),
    IN_JOB(t_ctx_tick_null_out_in_job, BAD),
    ROW(t_ctx_run_queued_null_ctx, BAD),
    ROW(t_ctx_run_queued_sem_as_ctx, BAD),
    ROW(t_ctx_run_queued_junk_ctx, BAD),
    IN_JOB(t_ctx_run_queued_null_fn_in_job, BAD),
    IN_JOB(t_ctx_run_queued_null_ran_in_job, JR_OK),
    IN_JOB(t_ctx_run_queued_nothing_queued_in_job, JR_OK),
    IN_JOB(t_ctx_run_queued_other_thread_in_job, BAD),
    /* jr_token_* */
    ROW(t_token_new_null_out, BAD),
    ROW(t_token_new_null_out_with_parent, BAD),
    ROW(t_token_new_pool_as_parent, BAD),
    ROW(t_token_new_junk_parent, BAD),
    ROW(t_set_deadline_null, BAD),
    ROW(t_set_deadline_sem_as_token, BAD),
    ROW(t_set_deadline_negative, BAD),
    ROW(t_token_cancel_null, BAD),
    ROW(t_token_cancel_sync_null, BAD),
    ROW(t_token_cancel_sync_sem_as_token, BAD),
    ROW(t_token_cancel_sync_junk, BAD),
    ROW(t_token_cancel_group_as_token, BAD),
    ROW(t_token_cancel_junk, BAD),
    ROW(t_token_is_cancelled_null, JR_OK),
    ROW(t_token_is_cancelled_pool_as_token, JR_OK),
    ROW(t_token_is_cancelled_dead_tag, JR_OK),
    ROW(t_token_reason_null, BAD),
    ROW(t_token_reason_job_as_token, BAD),
    ROW(t_token_reason_null_out, BAD),
    ROW(t_token_wait_null, BAD),
    ROW(t_token_wait_sem_as_token, BAD),
    ROW(t_token_free_null, JR_OK),
    ROW(t_token_free_pool_as_token, BAD),
    IN_JOB(t_token_free_ctx_token_in_job, BAD),
    /* Last: none of the above disturbed the fixtures. */
    ROW(t_fixture_pool_still_works, JR_OK),
    ROW(t_fixture_token_not_cancelled, JR_OK),
    ROW(t_fixture_sem_all_free, JR_OK),
    ROW(t_fixture_group_open, JR_OK),
    ROW(t_fixture_running_still_running, JR_OK),
};

/* Runs a row's thunk inside a job, with the job's context. */
typedef struct {
    const row *row;
    jr_status got;
} in_job_arg;

static int32_t run_row_job(jr_ctx *ctx, void *arg, void **result) {
    (void)result;
    in_job_arg *a = arg;
    a->got = a->row->thunk(ctx);
    return 0;
}

static jr_status run_row(const row *r) {
    if (!r->in_job) {
        return r->thunk(NULL);
    }
    in_job_arg a = {.row = r, .got = JR_E_INTERNAL};
    jr_job *j = NULL;
    jr_status s = jr_submit(F.pool, run_row_job, &a, NULL, &j);
    if (s != JR_OK) {
        fprintf(stderr, "  could not submit the row's job: %s\n", jr_status_str(s));
        return JR_E_INTERNAL;
    }
    s = wait_free(j);
    if (s != JR_OK) {
        /* e.g. a bad call that made the job panic or fail */
        fprintf(stderr, "  the row's job ended %s\n", jr_status_str(s));
        return JR_E_INTERNAL;
    }
    return a.got;
}

static void every_row_gives_its_status(void) {
    int bad = 0;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        jr_status got = run_row(&rows[i]);
        if (got != rows[i].want) {
            fprintf(stderr, "%s: got %s, want %s\n", rows[i].name, jr_status_str(got),
                    jr_status_str(rows[i].want));
            bad++;
        }
        /* Every invalid argument is named: the detail is never just the status's text
         * (which is what a failure without a detail of its own leaves). */
        if (!rows[i].in_job && got == JR_E_INVALID_ARG &&
            strcmp(jr_last_error_message(), jr_status_str(JR_E_INVALID_ARG)) == 0) {
            fprintf(stderr, "%s: JR_E_INVALID_ARG without a detail in jr_last_error_message\n",
                    rows[i].name);
            bad++;
        }
    }
    fprintf(stderr, "robustness table: %zu rows, %d wrong\n", sizeof rows / sizeof rows[0], bad);
    CHECK(bad == 0);
}

/* ----- fixtures ---------------------------------------------------------------------------------------- */

static void make_fixtures(void) {
    F.pool = make_pool(2, 0);
    F.other_pool = make_pool(1, 0);
    REQUIRE(jr_token_new(NULL, &F.token) == JR_OK);
    REQUIRE(jr_sem_new(2, &F.sem) == JR_OK);
    REQUIRE(jr_chan_new(1, NULL, &F.chan) == JR_OK);
    REQUIRE(jr_stream_new(F.pool, empty_producer, NULL, 1, NULL, NULL, &F.stream) == JR_OK);
    void *none = NULL;
    REQUIRE(jr_stream_next(F.stream, &none, HANG_MS * MS) == JR_E_CLOSED);
    REQUIRE(jr_pipeline_new(F.pool, NULL, &F.pipe) == JR_OK);
    REQUIRE(jr_pipeline_new(F.pool, NULL, &F.started) == JR_OK);
    REQUIRE(jr_pipeline_add_stage(F.started, pass_stage, NULL, 1, 0) == JR_OK);
    REQUIRE(jr_pipeline_close_input(F.started) == JR_OK);
    REQUIRE(jr_group_new(F.pool, NULL, &F.group) == JR_OK);
    jr_group_options go = jr_group_options_default();
    go.limit = 1;
    REQUIRE(jr_group_new(F.pool, &go, &F.limited) == JR_OK);
    REQUIRE(jr_submit(F.pool, nop_job, NULL, NULL, &F.done) == JR_OK);
    REQUIRE(jr_job_wait(F.done, HANG_MS * MS) == JR_OK);
    blocker_init(&F.blocker, false);
    REQUIRE(jr_submit(F.pool, blocker_job, &F.blocker, NULL, &F.running) == JR_OK);
    REQUIRE(counter_wait(&F.blocker.started, 1, HANG_MS));
    jr_submit_options o = jr_submit_options_default();
    o.group = F.group;
    REQUIRE(jr_submit(F.pool, nop_job, NULL, &o, &F.member) == JR_OK);
    REQUIRE(jr_job_wait(F.member, HANG_MS * MS) == JR_OK);
    REQUIRE(jr_submit_every(F.pool, 60 * SEC, nop_job, NULL, NULL, &F.ticker) == JR_OK);
}

static void free_fixtures(void) {
    CHECK_STATUS(jr_chan_free(F.chan), JR_OK);
    CHECK_STATUS(jr_stream_free(F.stream), JR_OK);
    CHECK_STATUS(jr_pipeline_free(F.pipe), JR_OK);
    CHECK_STATUS(jr_pipeline_free(F.started), JR_OK);
    gate_open(&F.blocker.gate);
    CHECK_STATUS(jr_job_wait(F.running, HANG_MS * MS), JR_OK);
    CHECK_STATUS(jr_job_cancel(F.ticker), JR_OK);
    CHECK_STATUS(jr_job_wait(F.ticker, HANG_MS * MS), JR_E_CANCELLED);
    CHECK_STATUS(jr_job_free(F.ticker), JR_OK);
    CHECK_STATUS(jr_job_free(F.running), JR_OK);
    CHECK_STATUS(jr_job_free(F.member), JR_OK);
    CHECK_STATUS(jr_job_free(F.done), JR_OK);
    CHECK_STATUS(jr_group_close(F.group), JR_OK);
    CHECK_STATUS(jr_group_free(F.group), JR_OK);
    CHECK_STATUS(jr_group_free(F.limited), JR_OK);
    CHECK_STATUS(jr_sem_free(F.sem), JR_OK);
    CHECK_STATUS(jr_token_free(F.token), JR_OK);
    CHECK_STATUS(jr_pool_free(F.other_pool), JR_OK);
    CHECK_STATUS(jr_pool_free(F.pool), JR_OK);
    blocker_destroy(&F.blocker);
}

int main(void) {
    make_fixtures();
    RUN(every_row_gives_its_status);
    RUN(free_fixtures);
    return jr_test_report();
}
