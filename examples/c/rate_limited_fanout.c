/*
 * Rate-limited fan-out: 200 "API calls" through a semaphore of 8, under a deadline.
 * The C twin of examples/rate_limited_fanout.rs; it prints the same lines.
 *
 * The service being called allows at most 8 requests in flight, so every call is
 * submitted with a semaphore (options.sem, options.permits = 1): calls beyond the 8
 * running wait in the semaphore's FIFO queue without occupying a worker (the pool has
 * 16 threads, so it is the semaphore, not the pool, that limits them). All calls share
 * one token with a deadline (jr_token_set_deadline) too short for all of them: when it
 * passes, the calls still waiting for a permit end JR_E_CANCELLED at once, without
 * running, and the ones in flight see jr_ctx_is_cancelled between their I/O steps and
 * stop.
 *
 * The main thread fans in by waiting on the calls in submit order, printing progress,
 * then the final count of ok and cancelled calls. How many calls fit in the deadline
 * depends on the machine; what does not is checked, and the program exits 1 if it is
 * wrong: every call is either ok or cancelled by the deadline, the pool's statistics
 * agree, never more than 8 calls were in flight at once, and every permit came back.
 *
 * Build (from the repository root, after `cargo build --release`):
 *   cc -std=c11 -Wall -Wextra -Werror -g -Iinclude -pthread examples/c/rate_limited_fanout.c \
 *      target/release/libjobrunner.a -lpthread -ldl -lm -o /tmp/rate_limited_fanout
 */
#define _POSIX_C_SOURCE 200809L

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define EXAMPLE_NAME "rate_limited_fanout"
#include "example.h"

enum {
    CALLS = 200,         /* API calls fanned out */
    LIMIT = 8,           /* calls the service allows in flight at once */
    THREADS = 16,        /* worker threads: more than LIMIT, so only the semaphore limits */
    STEP_MS = 2,         /* one simulated I/O step; a call checks for cancellation between */
    STEPS = 5,           /* steps per call: ~10 ms a call, ~250 ms for all 200 */
    DEADLINE_MS = 100,   /* the deadline for the whole fan-out: ~40% of the calls fit */
    PROGRESS_EVERY = 50, /* progress is printed after every this many calls have ended */
};

/* One call's record: its id, and whether it ever started (one that was cancelled while
 * waiting for a permit never does). Also what the call returns as its result: a pointer
 * to its own record, which the library does not own (options.result_free stays NULL). */
struct call {
    int id;
    atomic_bool started;
};

static struct call calls[CALLS];
static atomic_int in_flight; /* calls running now */
static atomic_int peak;      /* the most calls ever running at once */

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* One "API call": a few sleeps standing for network I/O, stopping early when the
 * deadline passes. */
static int32_t api_call(jr_ctx *ctx, void *arg, void **result) {
    struct call *call = arg;
    atomic_store(&call->started, true);
    int now = atomic_fetch_add(&in_flight, 1) + 1;
    for (int seen = atomic_load(&peak); now > seen;) {
        if (atomic_compare_exchange_weak(&peak, &seen, now)) {
            break;
        }
    }
    bool stopped = false;
    for (int step = 0; step < STEPS; step++) {
        if (jr_ctx_is_cancelled(ctx)) {
            stopped = true;
            break;
        }
        sleep_ms(STEP_MS);
    }
    atomic_fetch_sub(&in_flight, 1);
    if (stopped) {
        return 1; /* an error after the cancel: the job ends JR_E_CANCELLED */
    }
    *result = call;
    return 0;
}

int main(void) {
    jr_pool_options pool_options = jr_pool_options_default();
    pool_options.threads = THREADS;
    jr_pool *pool = NULL;
    CHECK(jr_pool_new(&pool_options, &pool));
    jr_sem *limit = NULL;
    CHECK(jr_sem_new(LIMIT, &limit));
    printf("rate_limited_fanout: %d calls through a semaphore of %d on a pool of %d threads, "
           "deadline %d ms\n",
           CALLS, LIMIT, THREADS, DEADLINE_MS);

    /* Fan out: every call waits for one permit; all share the deadline's token. */
    int64_t started = now_ns();
    jr_token *deadline = NULL;
    CHECK(jr_token_new(NULL, &deadline));
    jr_submit_options options = jr_submit_options_default();
    options.token = deadline;
    options.sem = limit;
    options.permits = 1;
    static jr_job *jobs[CALLS];
    for (int id = 0; id < CALLS; id++) {
        char name[16];
        snprintf(name, sizeof name, "call-%d", id);
        options.name = name; /* copied by the submit */
        calls[id].id = id;
        CHECK(jr_submit(pool, api_call, &calls[id], &options, &jobs[id]));
    }
    /* The clock starts once every call is out: a token's deadline can be set at any time,
     * and so the time the submits take (long under valgrind) does not count. */
    CHECK(jr_token_set_deadline(deadline, DEADLINE_MS * MS));

    /* Fan in, in submit order (the semaphore grants in that order too). */
    int ok = 0, cancelled_waiting = 0, cancelled_in_flight = 0, unexpected = 0;
    for (int id = 0; id < CALLS; id++) {
        jr_status status = jr_job_wait(jobs[id], -1);
        if (status == JR_OK) {
            void *result = NULL;
            CHECK(jr_job_take_result(jobs[id], &result));
            if (result == &calls[id]) {
                ok++;
            } else {
                fprintf(stderr, "error: call %d returned the wrong record\n", id);
                unexpected++;
            }
        } else if (status == JR_E_CANCELLED) {
            /* A job's handle does not say why it was cancelled; its token does. */
            jr_cancel_reason reason = JR_REASON_NONE;
            CHECK(jr_token_reason(deadline, &reason));
            if (reason != JR_REASON_DEADLINE) {
                fprintf(stderr, "error: call %d cancelled, but not by the deadline\n", id);
                unexpected++;
            } else if (atomic_load(&calls[id].started)) {
                cancelled_in_flight++;
            } else {
                cancelled_waiting++;
            }
        } else {
            fprintf(stderr, "error: call %d: %s\n", id, jr_status_str(status));
            unexpected++;
        }
        CHECK(jr_job_free(jobs[id]));
        int cancelled = cancelled_waiting + cancelled_in_flight;
        int ended = ok + cancelled + unexpected;
        if (ended % PROGRESS_EVERY == 0) {
            printf("progress: %d/%d calls ended (%d ok, %d cancelled so far)\n", ended, CALLS, ok,
                   cancelled);
        }
    }
    int64_t elapsed_ms = (now_ns() - started) / MS;
    int cancelled = cancelled_waiting + cancelled_in_flight;
    int most = atomic_load(&peak);
    if (most <= LIMIT) {
        printf("%d calls: %d ok, %d cancelled, at most %d at once\n", CALLS, ok, cancelled, LIMIT);
    } else {
        printf("%d calls: %d ok, %d cancelled, %d at once, over the limit of %d\n", CALLS, ok,
               cancelled, most, LIMIT);
    }
    printf("  cancelled by the deadline: %d while waiting for a permit (never ran), %d in "
           "flight\n",
           cancelled_waiting, cancelled_in_flight);
    printf("  most calls in flight at once: %d; all ended after %lld ms\n", most,
           (long long)elapsed_ms);

    /* Check the accounting. */
    int errors = unexpected;
    if (ok + cancelled != CALLS) {
        fprintf(stderr, "error: %d ok + %d cancelled != %d calls\n", ok, cancelled, CALLS);
        errors++;
    }
    if (most > LIMIT) {
        fprintf(stderr, "error: %d calls were in flight at once (limit %d)\n", most, LIMIT);
        errors++;
    }
    if (ok == 0 || cancelled == 0) {
        fprintf(stderr, "error: the %d ms deadline should let some calls finish and cancel the "
                        "rest\n",
                DEADLINE_MS);
        errors++;
    }
    jr_stats stats = {.size = sizeof stats};
    CHECK(jr_pool_stats(pool, &stats));
    if (stats.succeeded != (uint64_t)ok || stats.cancelled != (uint64_t)cancelled ||
        stats.cancelled_before_start != (uint64_t)cancelled_waiting) {
        fprintf(stderr,
                "error: the pool's statistics disagree: succeeded %llu, cancelled %llu (%llu "
                "before start)\n",
                (unsigned long long)stats.succeeded, (unsigned long long)stats.cancelled,
                (unsigned long long)stats.cancelled_before_start);
        errors++;
    }
    uint64_t available = 0;
    CHECK(jr_sem_available(limit, &available));
    if (available != LIMIT) {
        fprintf(stderr, "error: permits not all returned: %llu of %d free\n",
                (unsigned long long)available, LIMIT);
        errors++;
    }
    if (errors == 0) {
        printf("accounting checked: ok + cancelled = %d, never more than %d at once, every "
               "permit returned\n",
               CALLS, LIMIT);
    }

    CHECK(jr_token_free(deadline));
    CHECK(jr_sem_free(limit));
    CHECK(jr_pool_free(pool));
    return errors == 0 ? 0 : 1;
}
