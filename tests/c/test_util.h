/*
 * Helpers shared by the C tests (on top of the jr_test.h harness): a monotonic clock,
 * gates and counters that tests wait on (condition variables with a bounded wait, so
 * that a broken library fails a test instead of hanging it), and a few stock jobs.
 *
 * Include after defining _GNU_SOURCE (each test file does, before any include).
 */
#ifndef JR_TEST_UTIL_H
#define JR_TEST_UTIL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "jr_test.h"

#define MS (1000 * 1000LL) /* nanoseconds in a millisecond */
#define SEC (1000 * MS)

/* How long any wait in a test may take before it counts as a hang (a failure). */
#define HANG_MS 10000

static inline int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * SEC + ts.tv_nsec;
}

/* For use inside a job only (to make it run for a while), never to let things settle. */
static inline void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static inline struct timespec deadline_in_ms(long ms) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

static inline void monotonic_cond_init(pthread_cond_t *c) {
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(c, &attr);
    pthread_condattr_destroy(&attr);
}

/* ----- counter: a number that threads bump and tests wait on ------------------------- */

typedef struct {
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    long value;
} counter;

static inline void counter_init(counter *c) {
    pthread_mutex_init(&c->mutex, NULL);
    monotonic_cond_init(&c->cond);
    c->value = 0;
}

static inline void counter_destroy(counter *c) {
    pthread_mutex_destroy(&c->mutex);
    pthread_cond_destroy(&c->cond);
}

static inline long counter_add(counter *c, long n) {
    pthread_mutex_lock(&c->mutex);
    long v = (c->value += n);
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mutex);
    return v;
}

static inline long counter_get(counter *c) {
    pthread_mutex_lock(&c->mutex);
    long v = c->value;
    pthread_mutex_unlock(&c->mutex);
    return v;
}

/* Waits until the counter is at least `target`, at most `ms`; whether it got there. */
static inline bool counter_wait(counter *c, long target, long ms) {
    struct timespec until = deadline_in_ms(ms);
    pthread_mutex_lock(&c->mutex);
    int rc = 0;
    while (c->value < target && rc == 0) {
        rc = pthread_cond_timedwait(&c->cond, &c->mutex, &until);
    }
    bool ok = c->value >= target;
    pthread_mutex_unlock(&c->mutex);
    return ok;
}

/* ----- gate: closed until opened, once ------------------------------------------------- */

typedef counter gate;

static inline void gate_init(gate *g) { counter_init(g); }
static inline void gate_destroy(gate *g) { counter_destroy(g); }
static inline void gate_open(gate *g) { counter_add(g, 1); }
static inline bool gate_wait(gate *g, long ms) { return counter_wait(g, 1, ms); }

/* ----- stock jobs ------------------------------------------------------------------------ */

/* A job that says it started, then holds its worker until the gate opens (or it is
 * cancelled, when `stop_on_cancel`). Ends 0, or 99 if the gate never opened (a hang). */
typedef struct {
    counter started;
    gate gate;
    bool stop_on_cancel;
    atomic_int saw_cancel;
} blocker;

static inline void blocker_init(blocker *b, bool stop_on_cancel) {
    counter_init(&b->started);
    gate_init(&b->gate);
    b->stop_on_cancel = stop_on_cancel;
    atomic_init(&b->saw_cancel, 0);
}

static inline void blocker_destroy(blocker *b) {
    counter_destroy(&b->started);
    gate_destroy(&b->gate);
}

static inline int32_t blocker_job(jr_ctx *ctx, void *arg, void **result) {
    (void)result;
    blocker *b = arg;
    counter_add(&b->started, 1);
    if (b->stop_on_cancel) {
        /* Waits for the job's own token: the event that ends it. */
        if (jr_token_wait(jr_ctx_token(ctx), HANG_MS * MS) == JR_OK && jr_ctx_is_cancelled(ctx)) {
            atomic_store(&b->saw_cancel, 1);
            return 1; /* an error after cancellation: the job ends cancelled */
        }
        return 99;
    }
    return gate_wait(&b->gate, HANG_MS) ? 0 : 99;
}

/* A job that counts its runs in the counter passed as `arg`. */
static inline int32_t count_job(jr_ctx *ctx, void *arg, void **result) {
    (void)ctx;
    (void)result;
    counter_add(arg, 1);
    return 0;
}

/* A job that does nothing and succeeds. */
static inline int32_t nop_job(jr_ctx *ctx, void *arg, void **result) {
    (void)ctx;
    (void)arg;
    (void)result;
    return 0;
}

/* A job whose result is its argument (an integer in a pointer). */
static inline int32_t echo_job(jr_ctx *ctx, void *arg, void **result) {
    (void)ctx;
    *result = arg;
    return 0;
}

/* A pool with `threads` workers (and an optional queue bound), or the program stops. */
static inline jr_pool *make_pool(size_t threads, size_t queue_capacity) {
    jr_pool_options o = jr_pool_options_default();
    o.threads = threads;
    o.queue_capacity = queue_capacity;
    jr_pool *p = NULL;
    jr_status s = jr_pool_new(&o, &p);
    if (s != JR_OK || p == NULL) {
        fprintf(stderr, "jr_pool_new(%zu threads): %s\n", threads, jr_status_str(s));
        exit(2);
    }
    return p;
}

/* Submits with options (NULL: defaults), or records a failure and returns NULL. */
static inline jr_job *submit_opts(jr_pool *pool, jr_job_fn fn, void *arg,
                                  const jr_submit_options *o) {
    jr_job *job = NULL;
    jr_status s = jr_submit(pool, fn, arg, o, &job);
    if (s != JR_OK) {
        fprintf(stderr, "jr_submit: %s\n", jr_status_str(s));
        jr_test_current_failed = 1;
        return NULL;
    }
    return job;
}

static inline jr_job *submit(jr_pool *pool, jr_job_fn fn, void *arg) {
    return submit_opts(pool, fn, arg, NULL);
}

/* Submits `blocker_job` on `pool` and returns once it runs: it then holds a worker until
 * `b`'s gate opens (or its token is cancelled, for a blocker that stops on cancel). */
static inline jr_job *start_blocker(jr_pool *pool, blocker *b) {
    long before = counter_get(&b->started); /* read first: the job may start at once */
    jr_job *job = submit(pool, blocker_job, b);
    if (!counter_wait(&b->started, before + 1, HANG_MS)) {
        fprintf(stderr, "the blocker job never started\n");
        exit(2);
    }
    return job;
}

/* Waits for a job with the hang timeout and frees its handle; returns its status. */
static inline jr_status wait_free(jr_job *job) {
    if (job == NULL) {
        return JR_E_INVALID_ARG;
    }
    jr_status s = jr_job_wait(job, HANG_MS * MS);
    jr_job_free(job);
    return s;
}

static inline jr_state job_state(const jr_job *job) {
    jr_state st = (jr_state)-1;
    if (jr_job_state(job, &st) != JR_OK) {
        return (jr_state)-1;
    }
    return st;
}

#endif /* JR_TEST_UTIL_H */
