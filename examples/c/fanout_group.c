/*
 * Fan-out / fan-in with a group (Go's errgroup), in C.
 *
 * Part 1, fan-in in completion order: 20 items are submitted to a jr_group limited to
 * 3 running at once (the others wait for a slot without holding a worker). The main
 * thread takes each finished item from jr_group_next as it ends, whatever its place in
 * the submit order: item 0 is held back until the 19 others have been received, so a
 * fan-in in submit order would wait for it forever. jr_group_wait then reports that
 * every item succeeded.
 *
 * Part 2, fail fast: 10 items in a fail-fast group limited to 4. Item 3 fails (code 42,
 * with a message) once items 0-3 are all running; the group cancels its token at once,
 * so items 0-2 see jr_ctx_is_cancelled and stop, and items 4-9, still waiting for a
 * slot, end cancelled without ever running. jr_group_wait reports the failure and
 * jr_group_first_error gives its code and message; jr_group_next gives all 10 items,
 * the failed one included.
 *
 * Every line printed is the same on every run; the program checks its own results and
 * exits 1 if they are wrong.
 *
 * Build (from the repository root, after `cargo build --release`):
 *   cc -std=c11 -Wall -Wextra -Werror -g -Iinclude -pthread examples/c/fanout_group.c \
 *      target/release/libjobrunner.a -lpthread -ldl -lm -o /tmp/fanout_group
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EXAMPLE_NAME "fanout_group"
#include "example.h"

/* How long any wait may take before the example calls it a hang. */
#define PATIENCE (5000 * MS)

enum { THREADS = 4, ITEMS = 20, LIMIT = 3, FF_ITEMS = 10, FF_LIMIT = 4, FF_BAD = 3 };

/* A flag with a condition variable: one side waits for it, the other raises it. */
struct event {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int count;
};
#define EVENT_INIT {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0}

static void event_add(struct event *e) {
    pthread_mutex_lock(&e->mu);
    e->count++;
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

static void event_wait(struct event *e, int count) {
    pthread_mutex_lock(&e->mu);
    while (e->count < count) {
        pthread_cond_wait(&e->cv, &e->mu);
    }
    pthread_mutex_unlock(&e->mu);
}

/* ---- part 1: fan-in in completion order --------------------------------------------- */

/* An item's result: malloc'd by the job, taken by the main thread. */
struct item_result {
    int item;
    uint64_t square;
};

static struct event item0_release = EVENT_INIT; /* raised by main: item 0 may finish */
static atomic_int running;                      /* items running now */
static atomic_int peak;                         /* the most ever running at once */

static int32_t work_item(jr_ctx *ctx, void *arg, void **result) {
    int item = *(const int *)arg;
    int now = atomic_fetch_add(&running, 1) + 1;
    for (int seen = atomic_load(&peak); now > seen;) {
        if (atomic_compare_exchange_weak(&peak, &seen, now)) {
            break;
        }
    }
    if (item == 0) {
        event_wait(&item0_release, 1); /* the straggler */
    } else {
        sleep_ms(1); /* a slice of real work */
    }
    atomic_fetch_sub(&running, 1);
    struct item_result *out = malloc(sizeof *out);
    if (out == NULL) {
        jr_ctx_fail(ctx, "out of memory");
        return 1;
    }
    out->item = item;
    out->square = (uint64_t)item * (uint64_t)item;
    *result = out;
    return 0;
}

static void fan_in_in_completion_order(jr_pool *pool) {
    printf("== fan-out: %d items, at most %d at once; fan-in in completion order ==\n", ITEMS,
           LIMIT);
    jr_group_options group_options = jr_group_options_default();
    group_options.limit = LIMIT;
    jr_group *group = NULL;
    CHECK(jr_group_new(pool, &group_options, &group));

    static int ids[ITEMS];
    jr_submit_options options = jr_submit_options_default();
    options.group = group;
    options.result_free = free; /* a result nobody takes is freed by the library */
    for (int i = 0; i < ITEMS; i++) {
        ids[i] = i;
        CHECK(jr_submit(pool, work_item, &ids[i], &options, NULL)); /* the group keeps it */
    }
    CHECK(jr_group_close(group)); /* no more items: jr_group_next ends with JR_E_CLOSED */

    int received = 0, item0_place = -1;
    uint64_t sum = 0;
    jr_job *job = NULL;
    jr_status status;
    while ((status = jr_group_next(group, PATIENCE, &job)) == JR_OK) {
        void *result = NULL;
        CHECK(jr_job_take_result(job, &result));
        struct item_result *r = result;
        if (r->item == 0) {
            item0_place = received;
        }
        sum += r->square;
        free(r);
        CHECK(jr_job_free(job));
        if (++received == ITEMS - 1) {
            event_add(&item0_release); /* all the others are in: let item 0 finish */
        }
    }
    ENSURE(status == JR_E_CLOSED, "jr_group_next: expected JR_E_CLOSED at the end, got %s",
           jr_status_str(status));
    ENSURE(received == ITEMS && item0_place == ITEMS - 1,
           "received %d items, item 0 in place %d", received, item0_place);
    printf("fan-in: %d items received; item 0 came last, after the other %d\n", received,
           ITEMS - 1);

    status = jr_group_wait(group, PATIENCE);
    ENSURE(status == JR_OK, "jr_group_wait: %s", jr_status_str(status));
    int most = atomic_load(&peak);
    ENSURE(most <= LIMIT, "%d items ran at once, over the limit of %d", most, LIMIT);
    printf("jr_group_wait: %s; sum of squares 0..%d = %llu; at most %d running at once\n",
           jr_status_str(status), ITEMS - 1, (unsigned long long)sum, LIMIT);
    ENSURE(sum == 2470, "the sum of squares 0..19 is 2470, not %llu", (unsigned long long)sum);
    CHECK(jr_group_free(group));
}

/* ---- part 2: fail fast -------------------------------------------------------------- */

static struct event ff_started = EVENT_INIT; /* one count per item that started */
static atomic_bool ff_ran[FF_ITEMS];         /* which items ever ran */
static _Atomic jr_cancel_reason ff_reason_seen[FF_ITEMS];

static int32_t fetch_item(jr_ctx *ctx, void *arg, void **result) {
    (void)result;
    int item = *(const int *)arg;
    atomic_store(&ff_ran[item], true);
    event_add(&ff_started);
    if (item == FF_BAD) {
        /* Fail once the other admitted items are running, so that they see the cancel. */
        event_wait(&ff_started, FF_LIMIT);
        jr_ctx_fail(ctx, "item 3: bad response");
        return 42;
    }
    /* A long fetch, checking for cancellation between its steps. */
    for (int step = 0; step < 5000; step++) {
        if (jr_ctx_is_cancelled(ctx)) {
            jr_cancel_reason reason = JR_REASON_NONE;
            jr_token_reason(jr_ctx_token(ctx), &reason);
            atomic_store(&ff_reason_seen[item], reason);
            return 1; /* an error after a cancel: the item ends cancelled */
        }
        sleep_ms(1);
    }
    return 0;
}

static void fail_fast(jr_pool *pool) {
    printf("\n== fail fast: %d items, at most %d at once; item %d fails ==\n", FF_ITEMS,
           FF_LIMIT, FF_BAD);
    jr_group_options group_options = jr_group_options_default();
    group_options.limit = FF_LIMIT;
    group_options.fail_fast = 1;
    jr_group *group = NULL;
    CHECK(jr_group_new(pool, &group_options, &group));

    static int ids[FF_ITEMS];
    jr_submit_options options = jr_submit_options_default();
    options.group = group;
    for (int i = 0; i < FF_ITEMS; i++) {
        ids[i] = i;
        CHECK(jr_submit(pool, fetch_item, &ids[i], &options, NULL));
    }
    CHECK(jr_group_close(group));

    /* The first failure, as errgroup's Wait gives it. */
    jr_status status = jr_group_wait(group, PATIENCE);
    ENSURE(status == JR_E_JOB_FAILED, "jr_group_wait: expected JR_E_JOB_FAILED, got %s",
           jr_status_str(status));
    jr_job *first = NULL;
    CHECK(jr_group_first_error(group, &first));
    ENSURE(first != NULL, "jr_group_first_error gave no job");
    int32_t code = 0;
    CHECK(jr_job_error_code(first, &code));
    const char *message = jr_job_error_message(first);
    ENSURE(code == 42 && message != NULL && strcmp(message, "item 3: bad response") == 0,
           "first error: code %d, message %s", code, message ? message : "(none)");
    printf("jr_group_wait: %s; first error: code %d, \"%s\"\n", jr_status_str(status), code,
           message);
    /* jr_group_first_error gave a copy of the first failure, as a job that has ended. */
    CHECK(jr_job_free(first));

    /* jr_group_next gives every item, the failed one included, in completion order. */
    int failed = 0, cancelled = 0, other = 0;
    jr_job *job = NULL;
    while ((status = jr_group_next(group, PATIENCE, &job)) == JR_OK) {
        switch (jr_job_wait(job, 0)) {
        case JR_E_JOB_FAILED: failed++; break;
        case JR_E_CANCELLED: cancelled++; break;
        default: other++; break;
        }
        CHECK(jr_job_free(job));
    }
    ENSURE(status == JR_E_CLOSED, "jr_group_next: expected JR_E_CLOSED, got %s",
           jr_status_str(status));
    int stopped = 0, never_ran = 0, sibling_reason = 0;
    for (int i = 0; i < FF_ITEMS; i++) {
        if (i == FF_BAD) {
            continue;
        }
        if (!atomic_load(&ff_ran[i])) {
            never_ran++;
        } else {
            stopped++;
            sibling_reason += atomic_load(&ff_reason_seen[i]) == JR_REASON_SIBLING_FAILED;
        }
    }
    printf("fail-fast: %d failed, %d cancelled (%d stopped while running, %d never started)\n",
           failed, cancelled, stopped, never_ran);
    ENSURE(failed == 1 && cancelled == FF_ITEMS - 1 && other == 0 && stopped == FF_LIMIT - 1 &&
               never_ran == FF_ITEMS - FF_LIMIT,
           "unexpected ends");
    ENSURE(sibling_reason == stopped, "only %d of %d stopped items saw the sibling's failure",
           sibling_reason, stopped);
    printf("items 0-2 saw jr_ctx_is_cancelled with reason %s\n",
           reason_name(atomic_load(&ff_reason_seen[0])));
    CHECK(jr_group_free(group));
}

int main(void) {
    jr_pool_options pool_options = jr_pool_options_default();
    pool_options.threads = THREADS;
    jr_pool *pool = NULL;
    CHECK(jr_pool_new(&pool_options, &pool));

    fan_in_in_completion_order(pool);
    fail_fast(pool);

    CHECK(jr_pool_free(pool));
    printf("fanout_group: ok\n");
    return 0;
}
