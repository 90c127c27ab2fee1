/*
 * jr_pipeline: a three-stage pipeline (an unordered stage, an ordered filter, an ordered
 * stage that replaces its items) gives the pushes' order; a failing stage is reported
 * (code, message, sticky) and every item is destroyed once; a pipeline freed mid-run
 * returns only once no stage runs and every item is destroyed; pushes with timeouts
 * leave the item with the caller; stages cannot be added once started; the options'
 * init writes no more than the caller's size.
 *
 * Items are tracked: each is made once and must be freed exactly once (by the pipeline's
 * item_free, or by the test for what it takes out or keeps).
 */
#define _GNU_SOURCE

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

/* ----- tracked items --------------------------------------------------------------------------- */

typedef struct {
    long value;
    atomic_int freed;
} item;

enum { MAX_ITEMS = 8192 };
static item items[MAX_ITEMS];
static atomic_int next_item;
static counter made, freed;
static atomic_int double_frees;

static item *item_new(long value) {
    int i = atomic_fetch_add(&next_item, 1);
    REQUIRE(i < MAX_ITEMS);
    item *it = &items[i];
    it->value = value;
    atomic_store(&it->freed, 0);
    counter_add(&made, 1);
    return it;
}

static void item_free(void *p) {
    item *it = p;
    if (atomic_fetch_add(&it->freed, 1) != 0) {
        atomic_fetch_add(&double_frees, 1);
        fprintf(stderr, "double free of item %td\n", it - items);
    }
    counter_add(&freed, 1);
}

static void books_open(void) {
    memset(items, 0, sizeof items);
    atomic_store(&next_item, 0);
    counter_init(&made);
    counter_init(&freed);
    atomic_store(&double_frees, 0);
}

/* Every item made was freed exactly once, by now (no wait: the caller says when). */
static void books_balance(void) {
    long m = counter_get(&made), f = counter_get(&freed);
    if (m != f) {
        fprintf(stderr, "items made %ld, freed %ld\n", m, f);
    }
    CHECK(m == f);
    CHECK(atomic_load(&double_frees) == 0);
    counter_destroy(&made);
    counter_destroy(&freed);
}

static jr_pipeline *make_pipeline(jr_pool *pool, size_t max_in_flight) {
    jr_pipeline_options o;
    REQUIRE(jr_pipeline_options_init(&o, sizeof o) == JR_OK);
    o.max_in_flight = max_in_flight;
    o.item_free = item_free;
    jr_pipeline *p = NULL;
    REQUIRE(jr_pipeline_new(pool, &o, &p) == JR_OK);
    return p;
}

/* ----- stages ---------------------------------------------------------------------------------- */

/* Doubles the item in place. */
static int32_t double_it(jr_ctx *ctx, void *arg, void *in, void **out) {
    (void)ctx;
    (void)arg;
    (void)out;
    ((item *)in)->value *= 2;
    return JR_STAGE_EMIT;
}

/* Drops the multiples of 3. */
static int32_t drop_threes(jr_ctx *ctx, void *arg, void *in, void **out) {
    (void)ctx;
    (void)arg;
    (void)out;
    return ((item *)in)->value % 3 == 0 ? JR_STAGE_DROP : JR_STAGE_EMIT;
}

/* Emits a new item, value + 1 (the pipeline frees the input). */
static int32_t replace_plus_one(jr_ctx *ctx, void *arg, void *in, void **out) {
    (void)ctx;
    (void)arg;
    *out = item_new(((item *)in)->value + 1);
    return JR_STAGE_EMIT;
}

/* Fails on the value pointed to by `arg`, with a message; makes a new item first on
 * that path (the pipeline must free it too). */
static int32_t fail_at(jr_ctx *ctx, void *arg, void *in, void **out) {
    if (((item *)in)->value == *(long *)arg) {
        *out = item_new(-1);
        jr_ctx_fail(ctx, "fifty");
        return 42;
    }
    return JR_STAGE_EMIT;
}

/* ----- a producer thread ----------------------------------------------------------------------- */

typedef struct {
    jr_pipeline *p;
    long n;
    atomic_long pushed;
    jr_status last;
} producer;

static void *produce(void *arg) {
    producer *pr = arg;
    pr->last = JR_OK;
    for (long i = 0; i < pr->n; i++) {
        item *it = item_new(i);
        jr_status st = jr_pipeline_push(pr->p, it, HANG_MS * MS);
        if (st != JR_OK) {
            item_free(it); /* a refused item is still ours */
            pr->last = st;
            break;
        }
        atomic_fetch_add(&pr->pushed, 1);
    }
    CHECK_OK(jr_pipeline_close_input(pr->p));
    return NULL;
}

/* ----- tests ----------------------------------------------------------------------------------- */

static void three_stages_filter_and_keep_order(void) {
    enum { N = 600 };
    books_open();
    jr_pool *pool = make_pool(3, 0);
    jr_pipeline *p = make_pipeline(pool, 8);
    CHECK_OK(jr_pipeline_add_stage(p, double_it, NULL, 3, 0));
    CHECK_OK(jr_pipeline_add_stage(p, drop_threes, NULL, 2, 1));
    CHECK_OK(jr_pipeline_add_stage(p, replace_plus_one, NULL, 2, 1));
    producer pr = {.p = p, .n = N};
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, produce, &pr) == 0);
    long want = 0, count = 0;
    for (;;) {
        void *got = NULL;
        jr_status st = jr_pipeline_next(p, &got, HANG_MS * MS);
        if (st == JR_E_CLOSED) break;
        REQUIRE(st == JR_OK);
        /* The next input whose double is not a multiple of 3. */
        while ((want * 2) % 3 == 0) want++;
        CHECK_EQ(((item *)got)->value, want * 2 + 1);
        want++;
        count++;
        item_free(got);
    }
    pthread_join(t, NULL);
    CHECK_STATUS(pr.last, JR_OK);
    CHECK_EQ(count, N - N / 3);
    CHECK_OK(jr_pipeline_free(p));
    CHECK_OK(jr_pool_free(pool));
    books_balance();
}

static void a_failing_stage_is_reported_and_items_are_freed_once(void) {
    books_open();
    jr_pool *pool = make_pool(3, 0);
    jr_pipeline *p = make_pipeline(pool, 6);
    static long fifty = 50;
    CHECK_OK(jr_pipeline_add_stage(p, double_it, NULL, 2, 0));
    CHECK_OK(jr_pipeline_add_stage(p, fail_at, &fifty, 2, 1));
    producer pr = {.p = p, .n = 1000};
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, produce, &pr) == 0);
    jr_status st;
    void *got = NULL;
    while ((st = jr_pipeline_next(p, &got, HANG_MS * MS)) == JR_OK) {
        CHECK(((item *)got)->value < 50); /* ordered: nothing past the failing item */
        item_free(got);
    }
    CHECK_STATUS(st, JR_E_JOB_FAILED);
    int32_t code = 0;
    CHECK_OK(jr_pipeline_error_code(p, &code));
    CHECK_EQ(code, 42);
    const char *message = jr_pipeline_error_message(p);
    CHECK(message != NULL && strcmp(message, "fifty") == 0);
    /* Sticky: reported again, and pushes are refused. */
    CHECK_STATUS(jr_pipeline_next(p, &got, 0), JR_E_JOB_FAILED);
    pthread_join(t, NULL);
    CHECK_STATUS(pr.last, JR_E_CANCELLED);
    item *refused = item_new(7);
    CHECK_STATUS(jr_pipeline_push(p, refused, 0), JR_E_CANCELLED);
    item_free(refused);
    CHECK_OK(jr_pipeline_free(p));
    CHECK_OK(jr_pool_free(pool));
    books_balance();
}

static atomic_int running_stages, ran_after_free;
static atomic_int freed_flag;
static counter started_stages;

/* Holds its item until the pipeline is cancelled (its job's token), then works a little
 * longer: the free must wait for it. */
static int32_t hold_until_cancelled(jr_ctx *ctx, void *arg, void *in, void **out) {
    (void)arg;
    (void)in;
    (void)out;
    if (atomic_load(&freed_flag)) atomic_fetch_add(&ran_after_free, 1);
    atomic_fetch_add(&running_stages, 1);
    counter_add(&started_stages, 1);
    jr_token_wait(jr_ctx_token(ctx), HANG_MS * MS);
    sleep_ms(5); /* still running a while after the cancel */
    atomic_fetch_sub(&running_stages, 1);
    return JR_STAGE_EMIT;
}

static void freed_mid_run_waits_and_frees_everything(void) {
    books_open();
    counter_init(&started_stages);
    jr_pool *pool = make_pool(3, 0);
    jr_pipeline *p = make_pipeline(pool, 16);
    CHECK_OK(jr_pipeline_add_stage(p, double_it, NULL, 1, 1));
    CHECK_OK(jr_pipeline_add_stage(p, hold_until_cancelled, NULL, 2, 0));
    for (int i = 0; i < 12; i++) {
        CHECK_OK(jr_pipeline_push(p, item_new(i), 0));
    }
    CHECK(counter_wait(&started_stages, 2, HANG_MS));
    CHECK_EQ(counter_get(&started_stages), 2);
    CHECK_OK(jr_pipeline_free(p));
    atomic_store(&freed_flag, 1);
    /* No wait: free returned after the stages and every destructor. */
    CHECK_EQ(atomic_load(&running_stages), 0);
    CHECK_EQ(counter_get(&freed), 12);
    /* Once the pool is freed every job it ever had has ended: none ran a stage late. */
    CHECK_OK(jr_pool_free(pool));
    CHECK_EQ(atomic_load(&ran_after_free), 0);
    counter_destroy(&started_stages);
    books_balance();

    /* Freed before it ever started, with stages: nothing to do. */
    books_open();
    pool = make_pool(1, 0);
    p = make_pipeline(pool, 0);
    CHECK_OK(jr_pipeline_add_stage(p, double_it, NULL, 1, 0));
    CHECK_OK(jr_pipeline_free(p));
    CHECK_OK(jr_pool_free(pool));
    books_balance();
}

static counter release;

/* Waits for `release` to pass the item's value. */
static int32_t wait_release(jr_ctx *ctx, void *arg, void *in, void **out) {
    (void)ctx;
    (void)arg;
    (void)out;
    counter_wait(&release, ((item *)in)->value + 1, HANG_MS);
    return JR_STAGE_EMIT;
}

static void pushes_time_out_and_leave_the_item_with_the_caller(void) {
    books_open();
    counter_init(&release);
    jr_pool *pool = make_pool(2, 0);
    jr_pipeline *p = make_pipeline(pool, 1);
    CHECK_OK(jr_pipeline_add_stage(p, wait_release, NULL, 1, 1));
    void *got = NULL;
    CHECK_STATUS(jr_pipeline_next(p, &got, 0), JR_E_TIMEOUT);
    CHECK_OK(jr_pipeline_push(p, item_new(0), -1));
    CHECK_STATUS(jr_pipeline_add_stage(p, double_it, NULL, 1, 0), JR_E_INVALID_ARG);
    item *mine = item_new(1);
    CHECK_STATUS(jr_pipeline_push(p, mine, 0), JR_E_FULL);
    CHECK_STATUS(jr_pipeline_push(p, mine, 10 * MS), JR_E_TIMEOUT);
    CHECK_EQ(atomic_load(&mine->freed), 0);
    counter_add(&release, 1);
    CHECK_OK(jr_pipeline_next(p, &got, HANG_MS * MS));
    CHECK_EQ(((item *)got)->value, 0);
    item_free(got);
    CHECK_OK(jr_pipeline_push(p, mine, HANG_MS * MS));
    CHECK_OK(jr_pipeline_close_input(p));
    item *late = item_new(2);
    CHECK_STATUS(jr_pipeline_push(p, late, 0), JR_E_CLOSED);
    item_free(late);
    counter_add(&release, 1);
    CHECK_OK(jr_pipeline_next(p, &got, HANG_MS * MS));
    item_free(got);
    CHECK_STATUS(jr_pipeline_next(p, &got, HANG_MS * MS), JR_E_CLOSED);
    CHECK_OK(jr_pipeline_free(p));
    CHECK_OK(jr_pool_free(pool));
    counter_destroy(&release);
    books_balance();
}

/* jr_pipeline_options_init writes exactly the caller's size: an older, shorter struct
 * is not overrun. */
static void options_init_writes_only_the_callers_size(void) {
    unsigned char buf[sizeof(jr_pipeline_options) + 8];
    memset(buf, 0xab, sizeof buf);
    size_t older = offsetof(jr_pipeline_options, token);
    CHECK_OK(jr_pipeline_options_init((jr_pipeline_options *)(void *)buf, older));
    size_t size;
    memcpy(&size, buf, sizeof size);
    CHECK_EQ(size, older);
    for (size_t i = older; i < sizeof buf; i++) {
        if (buf[i] != 0xab) {
            CHECK(buf[i] == 0xab);
            break;
        }
    }
    jr_pipeline_options o;
    CHECK_OK(jr_pipeline_options_init(&o, sizeof o));
    CHECK_EQ(o.size, sizeof o);
    CHECK_EQ(o.max_in_flight, 0);
    CHECK(o.token == NULL && o.item_free == NULL);
}

int main(void) {
    RUN(three_stages_filter_and_keep_order);
    RUN(a_failing_stage_is_reported_and_items_are_freed_once);
    RUN(freed_mid_run_waits_and_frees_everything);
    RUN(pushes_time_out_and_leave_the_item_with_the_caller);
    RUN(options_init_writes_only_the_callers_size);
    return jr_test_report();
}
