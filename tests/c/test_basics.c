/*
 * The C ABI's main features, one test each: statuses and version, pools, jobs (results,
 * errors, panics, states, cancel), nested submits, bounded queues, delayed and periodic
 * jobs, shutdown, statistics, tokens, semaphores (direct and as job gates), groups, and
 * the global pool.
 *
 * Every test waits for events (job waits, tokens, condition variables with a bounded
 * timeout): none sleeps to let things settle. A job may sleep to make itself run long.
 */
#define _GNU_SOURCE

#include <limits.h>
#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobrunner.h"
#include "jr_test.h"
#include "test_util.h"

/* ----- statuses and version ------------------------------------------------------------ */

static void status_strings_name_every_status(void) {
    static const struct {
        jr_status status;
        const char *name;
    } all[] = {
        {JR_OK, "JR_OK"},
        {JR_E_INVALID_ARG, "JR_E_INVALID_ARG"},
        {JR_E_NO_MEMORY, "JR_E_NO_MEMORY"},
        {JR_E_SHUTDOWN, "JR_E_SHUTDOWN"},
        {JR_E_FULL, "JR_E_FULL"},
        {JR_E_TIMEOUT, "JR_E_TIMEOUT"},
        {JR_E_CANCELLED, "JR_E_CANCELLED"},
        {JR_E_JOB_FAILED, "JR_E_JOB_FAILED"},
        {JR_E_PANICKED, "JR_E_PANICKED"},
        {JR_E_CLOSED, "JR_E_CLOSED"},
        {JR_E_INTERNAL, "JR_E_INTERNAL"},
        {JR_E_FORKED, "JR_E_FORKED"},
        {JR_E_EMPTY, "JR_E_EMPTY"},
    };
    CHECK(JR_OK == 0);
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        const char *s = jr_status_str(all[i].status);
        REQUIRE(s != NULL);
        size_t n = strlen(all[i].name);
        /* "NAME: meaning": the name, then a colon (so JR_E_FULL is not JR_E_FULLX). */
        if (strncmp(s, all[i].name, n) != 0 || s[n] != ':' || strlen(s) < n + 3) {
            fprintf(stderr, "jr_status_str(%d) = \"%s\", want \"%s: ...\"\n", (int)all[i].status,
                    s, all[i].name);
            CHECK(0);
        }
        if (all[i].status != JR_OK) {
            CHECK(all[i].status > 0);
        }
        /* Static: the same pointer every time. */
        CHECK(jr_status_str(all[i].status) == s);
    }
    static const int bad[] = {-1, 13, 9999, INT_MIN, INT_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *s = jr_status_str(bad[i]);
        REQUIRE(s != NULL);
        CHECK(strcmp(s, "unknown status") == 0);
    }
}

static void version_matches_header(void) {
    const char *v = jr_version();
    REQUIRE(v != NULL);
    char *end = NULL;
    long major = strtol(v, &end, 10);
    CHECK(end != v && *end == '.');
    CHECK(major == JR_VERSION_MAJOR);
    long minor = strtol(end + 1, &end, 10);
    CHECK(*end == '.');
    CHECK(minor == JR_VERSION_MINOR);
    long patch = strtol(end + 1, &end, 10);
    CHECK(*end == '\0');
    CHECK(patch == JR_VERSION_PATCH);
}

/* ----- pools ---------------------------------------------------------------------------- */

static void pool_options_default_and_create_free(void) {
    jr_pool_options o = jr_pool_options_default();
    CHECK(o.size == sizeof(jr_pool_options));
    CHECK(o.threads == 0);
    CHECK(o.queue_capacity == 0);
    CHECK(o.thread_name == NULL);

    jr_pool *p = NULL;
    CHECK_STATUS(jr_pool_new(NULL, &p), JR_OK);
    REQUIRE(p != NULL);
    jr_stats st = {.size = sizeof st};
    CHECK_STATUS(jr_pool_stats(p, &st), JR_OK);
    CHECK(st.threads >= 1); /* one per CPU */
    CHECK_STATUS(jr_pool_free(p), JR_OK);

    o.threads = 3;
    o.thread_name = "basics";
    p = NULL;
    CHECK_STATUS(jr_pool_new(&o, &p), JR_OK);
    REQUIRE(p != NULL);
    st = (jr_stats){.size = sizeof st};
    CHECK_STATUS(jr_pool_stats(p, &st), JR_OK);
    CHECK(st.threads == 3);
    CHECK(st.submitted == 0);
    CHECK_STATUS(jr_pool_free(p), JR_OK);
}

/* Thread hooks: each worker calls on_thread_start before its first job and
 * on_thread_stop after its last, on its own thread, with hook_arg and its index. */
struct hook_log {
    atomic_int started[4];
    atomic_int stopped[4];
    atomic_int jobs_before_all_started;
};

static void hook_start(void *arg, size_t index) {
    struct hook_log *log = arg;
    if (index < 4) {
        atomic_fetch_add(&log->started[index], 1);
    }
}

static void hook_stop(void *arg, size_t index) {
    struct hook_log *log = arg;
    if (index < 4) {
        atomic_fetch_add(&log->stopped[index], 1);
    }
}

static int32_t hooks_seen_job(jr_ctx *ctx, void *arg, void **result) {
    (void)ctx;
    (void)result;
    struct hook_log *log = arg;
    int started = 0;
    for (int i = 0; i < 4; i++) {
        started += atomic_load(&log->started[i]);
    }
    /* This job's own worker has started, at least. */
    if (started == 0) {
        atomic_fetch_add(&log->jobs_before_all_started, 1);
    }
    return 0;
}

static void pool_thread_hooks_run_once_per_worker(void) {
    static struct hook_log log;
    jr_pool_options o = jr_pool_options_default();
    CHECK(o.on_thread_start == NULL && o.on_thread_stop == NULL && o.hook_arg == NULL);
    o.threads = 4;
    o.on_thread_start = hook_start;
    o.on_thread_stop = hook_stop;
    o.hook_arg = &log;
    jr_pool *p = NULL;
    CHECK_STATUS(jr_pool_new(&o, &p), JR_OK);
    REQUIRE(p != NULL);
    for (int i = 0; i < 16; i++) {
        CHECK_STATUS(jr_submit(p, hooks_seen_job, &log, NULL, NULL), JR_OK);
    }
    CHECK_STATUS(jr_pool_free(p), JR_OK); /* drains, then joins the workers */
    for (int i = 0; i < 4; i++) {
        CHECK(atomic_load(&log.started[i]) == 1);
        CHECK(atomic_load(&log.stopped[i]) == 1);
    }
    CHECK(atomic_load(&log.jobs_before_all_started) == 0);
}

/* Hooks added to a running pool run on each worker before its next job. */
static _Thread_local int thread_setup_done;

static void setup_thread(void *arg, size_t index) {
    (void)index;
    thread_setup_done = 1;
    atomic_fetch_add((atomic_int *)arg, 1);
}

static void teardown_thread(void *arg, size_t index) {
    (void)index;
    atomic_fetch_add((atomic_int *)arg, 100);
}

static int32_t setup_seen_job(jr_ctx *ctx, void *arg, void **result) {
    (void)ctx;
    (void)arg;
    (void)result;
    return thread_setup_done ? 0 : 1;
}

static void pool_add_thread_hooks_to_a_running_pool(void) {
    static atomic_int calls;
    jr_pool *p = make_pool(1, 0);
    CHECK_STATUS(jr_pool_add_thread_hooks(p, setup_thread, teardown_thread, &calls), JR_OK);
    jr_job *job = submit(p, setup_seen_job, NULL);
    CHECK_STATUS(wait_free(job), JR_OK);
    CHECK(atomic_load(&calls) == 1);
    CHECK_STATUS(jr_pool_free(p), JR_OK); /* the worker exits: its stop hook runs */
    CHECK(atomic_load(&calls) == 101);
}

/* Hooks that count their calls, and can be held: `hold` makes the start hook say it
 * started, then wait for the gate. */
typedef struct {
    counter starts;
    counter stops;
    bool hold;
    gate release;
    jr_pool *remove_from; /* when set, the start hook removes its own hooks from it */
    jr_status removed;
} hook_probe;

static void probe_start(void *arg, size_t index) {
    (void)index;
    hook_probe *h = arg;
    counter_add(&h->starts, 1);
    if (h->hold) {
        CHECK(gate_wait(&h->release, HANG_MS));
    }
    if (h->remove_from != NULL) {
        h->removed = jr_pool_remove_thread_hooks(h->remove_from, probe_start, NULL, h);
    }
}

static void probe_stop(void *arg, size_t index) {
    (void)index;
    counter_add(&((hook_probe *)arg)->stops, 1);
}

static void probe_init(hook_probe *h) {
    memset(h, 0, sizeof *h);
    counter_init(&h->starts);
    counter_init(&h->stops);
    gate_init(&h->release);
}

static void probe_destroy(hook_probe *h) {
    counter_destroy(&h->starts);
    counter_destroy(&h->stops);
    gate_destroy(&h->release);
}

/* Removed hooks are never called again: not by workers that had not run them yet, not
 * as stop hooks at exit. */
static void pool_remove_thread_hooks_stops_every_call(void) {
    hook_probe h;
    probe_init(&h);
    jr_pool *p = make_pool(2, 0);
    /* Both workers busy: neither takes a job, so neither runs new start hooks. */
    blocker b;
    blocker_init(&b, false);
    jr_job *blocked[2] = {submit(p, blocker_job, &b), submit(p, blocker_job, &b)};
    REQUIRE(counter_wait(&b.started, 2, HANG_MS));
    CHECK_STATUS(jr_pool_add_thread_hooks(p, probe_start, probe_stop, &h), JR_OK);
    CHECK_STATUS(jr_pool_remove_thread_hooks(p, probe_start, probe_stop, &h), JR_OK);
    /* Gone: a second removal, or one with other arguments, finds nothing. */
    CHECK_STATUS(jr_pool_remove_thread_hooks(p, probe_start, probe_stop, &h), JR_E_INVALID_ARG);
    CHECK(strstr(jr_last_error_message(), "no such hooks") != NULL);
    CHECK_STATUS(jr_pool_remove_thread_hooks(p, probe_start, NULL, NULL), JR_E_INVALID_ARG);
    gate_open(&b.gate);
    for (int i = 0; i < 2; i++) {
        CHECK_STATUS(wait_free(blocked[i]), JR_OK);
    }
    counter runs;
    counter_init(&runs);
    for (int i = 0; i < 100; i++) {
        jr_submit(p, count_job, &runs, NULL, NULL);
    }
    CHECK(counter_wait(&runs, 100, HANG_MS));
    CHECK_STATUS(jr_pool_free(p), JR_OK); /* the workers exit */
    CHECK(counter_get(&h.starts) == 0);
    CHECK(counter_get(&h.stops) == 0);
    counter_destroy(&runs);
    blocker_destroy(&b);
    probe_destroy(&h);
}

typedef struct {
    jr_pool *pool;
    hook_probe *probe;
    atomic_int returned;
    jr_status status;
} remover;

static void *remove_hooks_thread(void *arg) {
    remover *r = arg;
    r->status = jr_pool_remove_thread_hooks(r->pool, probe_start, probe_stop, r->probe);
    atomic_store(&r->returned, 1);
    return NULL;
}

/* A removal waits for a call in progress; the worker that ran the start hook does not
 * get the stop hook. */
static void pool_remove_thread_hooks_waits_for_calls_in_progress(void) {
    hook_probe h;
    probe_init(&h);
    h.hold = true;
    jr_pool *p = make_pool(1, 0);
    CHECK_STATUS(jr_pool_add_thread_hooks(p, probe_start, probe_stop, &h), JR_OK);
    counter runs;
    counter_init(&runs);
    jr_submit(p, count_job, &runs, NULL, NULL); /* the worker runs the hook first */
    REQUIRE(counter_wait(&h.starts, 1, HANG_MS));
    remover r = {.pool = p, .probe = &h, .status = JR_E_INTERNAL};
    atomic_init(&r.returned, 0);
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, remove_hooks_thread, &r) == 0);
    /* A bounded wait for what must not happen: the removal returning mid-call. */
    CHECK(!counter_wait(&runs, 1, 100));
    CHECK(atomic_load(&r.returned) == 0);
    gate_open(&h.release);
    pthread_join(th, NULL);
    CHECK_STATUS(r.status, JR_OK);
    CHECK(counter_wait(&runs, 1, HANG_MS));
    CHECK_STATUS(jr_pool_free(p), JR_OK);
    CHECK(counter_get(&h.starts) == 1);
    CHECK(counter_get(&h.stops) == 0);
    counter_destroy(&runs);
    probe_destroy(&h);
}

/* ----- channels ------------------------------------------------------------------------- */

static atomic_int chan_items_freed;

static void chan_free_item(void *item) {
    atomic_fetch_add(&chan_items_freed, 1);
    free(item);
}

static int *boxed(int value) {
    int *p = malloc(sizeof *p);
    REQUIRE(p != NULL);
    *p = value;
    return p;
}

/* FIFO; a try says FULL or EMPTY; close lets receivers drain, then
 * says CLOSED; a failed send leaves the item with the caller; free destroys what is
 * left with item_free. */
static void chan_fifo_try_close_and_free(void) {
    atomic_store(&chan_items_freed, 0);
    jr_chan *ch = NULL;
    CHECK_STATUS(jr_chan_new(0, chan_free_item, &ch), JR_E_INVALID_ARG);
    CHECK_STATUS(jr_chan_new(2, chan_free_item, &ch), JR_OK);
    void *item = NULL;
    CHECK_STATUS(jr_chan_try_recv(ch, &item), JR_E_EMPTY);
    CHECK_STATUS(jr_chan_recv(ch, &item, 0, NULL), JR_E_EMPTY);
    CHECK_STATUS(jr_chan_send(ch, boxed(1), -1, NULL), JR_OK);
    CHECK_STATUS(jr_chan_try_send(ch, boxed(2)), JR_OK);
    int *third = boxed(3);
    CHECK_STATUS(jr_chan_try_send(ch, third), JR_E_FULL);
    CHECK_STATUS(jr_chan_send(ch, third, 1000000, NULL), JR_E_TIMEOUT); /* 1 ms */
    size_t len = 0;
    CHECK_STATUS(jr_chan_len(ch, &len), JR_OK);
    CHECK(len == 2);
    CHECK_STATUS(jr_chan_recv(ch, &item, -1, NULL), JR_OK);
    CHECK(*(int *)item == 1);
    free(item);
    CHECK_STATUS(jr_chan_send(ch, third, -1, NULL), JR_OK);
    CHECK_STATUS(jr_chan_close(ch), JR_OK);
    CHECK_STATUS(jr_chan_close(ch), JR_OK);
    int *late = boxed(4);
    CHECK_STATUS(jr_chan_send(ch, late, -1, NULL), JR_E_CLOSED);
    free(late); /* still ours */
    CHECK_STATUS(jr_chan_recv(ch, &item, -1, NULL), JR_OK);
    CHECK(*(int *)item == 2);
    free(item);
    CHECK(atomic_load(&chan_items_freed) == 0);
    CHECK_STATUS(jr_chan_free(ch), JR_OK); /* item 3 is still buffered */
    CHECK(atomic_load(&chan_items_freed) == 1);
}

/* A cancelled token ends a receive that waits. */
static void chan_recv_ends_on_cancel(void) {
    jr_chan *ch = NULL;
    CHECK_STATUS(jr_chan_new(1, NULL, &ch), JR_OK);
    jr_token *tok = NULL;
    CHECK_STATUS(jr_token_new(NULL, &tok), JR_OK);
    CHECK_STATUS(jr_token_cancel_sync(tok), JR_OK);
    void *item = NULL;
    CHECK_STATUS(jr_chan_recv(ch, &item, -1, tok), JR_E_CANCELLED);
    CHECK_STATUS(jr_token_free(tok), JR_OK);
    CHECK_STATUS(jr_chan_free(ch), JR_OK);
}

typedef struct {
    jr_chan *ch;
    int n;
    long sum;
} chan_pair;

static int32_t chan_producer(jr_ctx *ctx, void *arg, void **result) {
    (void)ctx;
    (void)result;
    chan_pair *p = arg;
    for (int i = 1; i <= p->n; i++) {
        if (jr_chan_send(p->ch, boxed(i), -1, NULL) != JR_OK) return 1;
    }
    return jr_chan_close(p->ch) == JR_OK ? 0 : 1;
}

static int32_t chan_consumer(jr_ctx *ctx, void *arg, void **result) {
    (void)ctx;
    (void)result;
    chan_pair *p = arg;
    void *item = NULL;
    jr_status st;
    while ((st = jr_chan_recv(p->ch, &item, -1, NULL)) == JR_OK) {
        p->sum += *(int *)item;
        free(item);
    }
    return st == JR_E_CLOSED ? 0 : 1;
}

/* A producer job and a consumer job on a pool of one thread, over a channel of one: the
 * producer's wait lets a spare worker run the consumer. */
static void chan_producer_and_consumer_jobs_on_one_thread(void) {
    jr_pool *p = make_pool(1, 0);
    chan_pair pair = {.n = 200};
    CHECK_STATUS(jr_chan_new(1, chan_free_item, &pair.ch), JR_OK);
    jr_job *producer = submit(p, chan_producer, &pair);
    jr_job *consumer = submit(p, chan_consumer, &pair);
    CHECK_STATUS(wait_free(producer), JR_OK);
    CHECK_STATUS(wait_free(consumer), JR_OK);
    CHECK(pair.sum == 200L * 201 / 2);
    CHECK_STATUS(jr_chan_free(pair.ch), JR_OK);
    CHECK_STATUS(jr_pool_free(p), JR_OK);
}

/* ----- streams ------------------------------------------------------------------------ */

typedef struct {
    int n;            /* items to send (-1: until a send fails) */
    int fail_code;    /* returned after the items (0: success) */
    atomic_int sent;  /* items the channel took */
    atomic_int stop_status;  /* the failed send's status (0 if none) */
    atomic_int saw_cancel;   /* jr_ctx_is_cancelled after the failed send */
    atomic_int free_borrowed; /* what jr_chan_free said of the lent channel */
    counter done;     /* counted when the producer returns */
} producer_log;

static atomic_int stream_args_freed;

static void stream_free_arg(void *arg) {
    (void)arg;
    atomic_fetch_add(&stream_args_freed, 1);
}

/* Sends 1..n (or until a send fails, which makes it fail with code 1: after a cancel,
 * the job then ends cancelled), then returns fail_code. */
static int32_t stream_producer(jr_ctx *ctx, void *arg, jr_chan *out) {
    producer_log *log = arg;
    int32_t code = log->fail_code;
    atomic_store(&log->free_borrowed, (int)jr_chan_free(out));
    for (int i = 1; log->n < 0 || i <= log->n; i++) {
        int *item = boxed(i);
        jr_status st = jr_chan_send(out, item, -1, NULL);
        if (st != JR_OK) {
            free(item); /* a failed send leaves the item with us */
            atomic_store(&log->stop_status, (int)st);
            atomic_store(&log->saw_cancel, jr_ctx_is_cancelled(ctx) ? 1 : 0);
            code = 1;
            break;
        }
        atomic_fetch_add(&log->sent, 1);
    }
    if (code == 42) jr_ctx_fail(ctx, "bad line 4");
    counter_add(&log->done, 1);
    return code;
}

static producer_log *new_producer_log(int n, int fail_code) {
    producer_log *log = calloc(1, sizeof *log);
    REQUIRE(log != NULL);
    log->n = n;
    log->fail_code = fail_code;
    counter_init(&log->done);
    return log;
}

static void free_producer_log(producer_log *log) {
    counter_destroy(&log->done);
    free(log);
}

static jr_stream *start_stream(jr_pool *p, producer_log *log, size_t capacity) {
    jr_submit_options o = jr_submit_options_default();
    o.arg_free = stream_free_arg;
    jr_stream *s = NULL;
    REQUIRE_OK(jr_stream_new(p, stream_producer, log, capacity, chan_free_item, &o, &s));
    return s;
}

/* Items in order, then JR_E_CLOSED (again and again); the producer's argument is freed
 * once; the lent channel cannot be freed by the producer; bad arguments are refused. */
static void stream_items_in_order_then_closed(void) {
    jr_pool *p = make_pool(2, 0);
    atomic_store(&stream_args_freed, 0);
    producer_log *log = new_producer_log(100, 0);
    jr_stream *s = NULL;
    CHECK_STATUS(jr_stream_new(p, stream_producer, log, 0, NULL, NULL, &s), JR_E_INVALID_ARG);
    CHECK_STATUS(jr_stream_new(p, NULL, log, 4, NULL, NULL, &s), JR_E_INVALID_ARG);
    jr_submit_options bad = jr_submit_options_default();
    bad.result_free = chan_free_item;
    CHECK_STATUS(jr_stream_new(p, stream_producer, log, 4, NULL, &bad, &s), JR_E_INVALID_ARG);
    s = start_stream(p, log, 4);
    void *item = NULL;
    long sum = 0;
    int expect = 1;
    jr_status st;
    while ((st = jr_stream_next(s, &item, -1)) == JR_OK) {
        CHECK(*(int *)item == expect);
        expect++;
        sum += *(int *)item;
        free(item);
    }
    CHECK_STATUS(st, JR_E_CLOSED);
    CHECK(sum == 100L * 101 / 2);
    CHECK_STATUS(jr_stream_next(s, &item, -1), JR_E_CLOSED);
    CHECK_STATUS(jr_stream_next(s, &item, 0), JR_E_CLOSED);
    int32_t code = -1;
    CHECK_STATUS(jr_stream_error_code(s, &code), JR_OK);
    CHECK(code == 0);
    CHECK(jr_stream_error_message(s) == NULL);
    CHECK(atomic_load(&log->free_borrowed) == JR_E_INVALID_ARG);
    CHECK_STATUS(jr_stream_free(s), JR_OK);
    CHECK(atomic_load(&stream_args_freed) == 1);
    free_producer_log(log);
    CHECK_STATUS(jr_pool_free(p), JR_OK);
}

/* A producer that fails after 3 items: the reader gets the 3, then JR_E_JOB_FAILED with
 * the code and the message, then JR_E_CLOSED. */
static void stream_failure_comes_after_the_items(void) {
    jr_pool *p = make_pool(2, 0);
    producer_log *log = new_producer_log(3, 42);
    jr_stream *s = start_stream(p, log, 8);
    void *item = NULL;
    for (int i = 1; i <= 3; i++) {
        CHECK_STATUS(jr_stream_next(s, &item, -1), JR_OK);
        CHECK(*(int *)item == i);
        free(item);
    }
    CHECK_STATUS(jr_stream_next(s, &item, -1), JR_E_JOB_FAILED);
    int32_t code = 0;
    CHECK_STATUS(jr_stream_error_code(s, &code), JR_OK);
    CHECK(code == 42);
    CHECK_STR(jr_stream_error_message(s), "bad line 4");
    CHECK_STATUS(jr_stream_next(s, &item, -1), JR_E_CLOSED);
    CHECK_STATUS(jr_stream_free(s), JR_OK);
    free_producer_log(log);
    CHECK_STATUS(jr_pool_free(p), JR_OK);
}

/* Freeing a stream mid-run: the producer's blocked send fails JR_E_CLOSED while its
 * context says cancelled; every item made is freed exactly once (read and freed by us,
 * destroyed with the stream, or freed by the producer after its failed send). */
static void stream_free_mid_run_stops_the_producer(void) {
    jr_pool *p = make_pool(2, 0);
    atomic_store(&chan_items_freed, 0);
    producer_log *log = new_producer_log(-1, 0);
    jr_stream *s = start_stream(p, log, 4);
    void *item = NULL;
    CHECK_STATUS(jr_stream_next(s, &item, -1), JR_OK);
    free(item);
    CHECK_STATUS(jr_stream_next(s, &item, -1), JR_OK); /* the producer goes on */
    free(item);
    CHECK_STATUS(jr_stream_free(s), JR_OK);
    REQUIRE(counter_wait(&log->done, 1, HANG_MS));
    CHECK(atomic_load(&log->stop_status) == JR_E_CLOSED);
    CHECK(atomic_load(&log->saw_cancel) == 1);
    /* Sent: 2 read by us, the rest destroyed with the stream. */
    CHECK(atomic_load(&chan_items_freed) == atomic_load(&log->sent) - 2);
    free_producer_log(log);
    CHECK_STATUS(jr_pool_free(p), JR_OK);
}

/* jr_stream_cancel while the producer waits for room: the reader gets what is buffered,
 * then JR_E_CANCELLED. */
static void stream_cancel_ends_after_the_buffered_items(void) {
    jr_pool *p = make_pool(2, 0);
    producer_log *log = new_producer_log(-1, 0);
    jr_stream *s = start_stream(p, log, 2);
    void *item = NULL;
    int read = 0;
    CHECK_STATUS(jr_stream_next(s, &item, -1), JR_OK);
    free(item);
    read++;
    CHECK_STATUS(jr_stream_cancel(s), JR_OK);
    REQUIRE(counter_wait(&log->done, 1, HANG_MS));
    CHECK(atomic_load(&log->stop_status) == JR_E_CLOSED);
    CHECK(atomic_load(&log->saw_cancel) == 1);
    jr_status st;
    while ((st = jr_stream_next(s, &item, -1)) == JR_OK) {
        free(item);
        read++;
    }
    CHECK_STATUS(st, JR_E_CANCELLED);
    CHECK(read == atomic_load(&log->sent));
    CHECK_STATUS(jr_stream_next(s, &item, -1), JR_E_CLOSED);
    CHECK_STATUS(jr_stream_free(s), JR_OK);
    free_producer_log(log);
    CHECK_STATUS(jr_pool_free(p), JR_OK);
}

/* A timed read of a stream whose producer has not run yet times out; the stream goes
 * on. */
static void stream_timed_read_times_out(void) {
    void *item = NULL;
    producer_log *log;
    jr_stream *s;
    jr_pool *one = make_pool(1, 0);
    blocker b;
    blocker_init(&b, false);
    jr_job *busy = start_blocker(one, &b);
    log = new_producer_log(1, 0);
    s = start_stream(one, log, 1); /* queued behind the blocker */
    CHECK_STATUS(jr_stream_next(s, &item, 2 * MS), JR_E_TIMEOUT);
    gate_open(&b.gate);
    CHECK_STATUS(wait_free(busy), JR_OK);
    CHECK_STATUS(jr_stream_next(s, &item, -1), JR_OK);
    free(item);
    CHECK_STATUS(jr_stream_next(s, &item, -1), JR_E_CLOSED);
    CHECK_STATUS(jr_stream_free(s), JR_OK);
    free_producer_log(log);
    blocker_destroy(&b);
    CHECK_STATUS(jr_pool_free(one), JR_OK);
}

typedef struct {
    jr_pool *pool;
    long sum;
} stream_reader_arg;

static int32_t stream_reader_job(jr_ctx *ctx, void *arg, void **result) {
    (void)result;
    stream_reader_arg *r = arg;
    producer_log *log = new_producer_log(50, 0);
    jr_stream *s = NULL;
    if (jr_stream_new(jr_ctx_pool(ctx), stream_producer, log, 1, chan_free_item, NULL, &s) != JR_OK) return 1;
    void *item = NULL;
    jr_status st;
    while ((st = jr_stream_next(s, &item, -1)) == JR_OK) {
        r->sum += *(int *)item;
        free(item);
    }
    jr_stream_free(s);
    free_producer_log(log);
    return st == JR_E_CLOSED ? 0 : 1;
}

/* The reader is a job of a one-thread pool and its producer is queued behind it: the
 * reader's wait lends its place to a spare worker. */
static void stream_reader_job_on_one_thread(void) {
    jr_pool *p = make_pool(1, 0);
    stream_reader_arg r = {.pool = p};
    jr_job *reader = submit(p, stream_reader_job, &r);
    CHECK_STATUS(wait_free(reader), JR_OK);
    CHECK(r.sum == 50L * 51 / 2);
    CHECK_STATUS(jr_pool_free(p), JR_OK);
}

/* ----- wait_any ---------------------------------------------------------------------- */

static int32_t send_one_job(jr_ctx *ctx, void *arg, void **result) {
    (void)ctx;
    (void)result;
    return jr_chan_send(arg, boxed(7), -1, NULL) == JR_OK ? 0 : 1;
}

/* Each kind is ready when its operation would not wait, and the index is the first
 * ready one; nothing ready times out; bad lists are refused. */
static void wait_any_each_kind_and_timeout(void) {
    jr_pool *p = make_pool(2, 0);
    jr_job *done = submit(p, nop_job, NULL);
    CHECK_STATUS(jr_job_wait(done, -1), JR_OK);
    jr_group *g = NULL;
    CHECK_STATUS(jr_group_new(p, NULL, &g), JR_OK);
    jr_submit_options o = jr_submit_options_default();
    o.group = g;
    CHECK_STATUS(jr_submit(p, nop_job, NULL, &o, NULL), JR_OK);
    jr_chan *quiet = NULL, *full = NULL;
    CHECK_STATUS(jr_chan_new(1, chan_free_item, &quiet), JR_OK);
    CHECK_STATUS(jr_chan_new(1, chan_free_item, &full), JR_OK);
    CHECK_STATUS(jr_chan_send(full, boxed(1), -1, NULL), JR_OK);
    jr_token *never = NULL, *cancelled = NULL;
    CHECK_STATUS(jr_token_new(NULL, &never), JR_OK);
    CHECK_STATUS(jr_token_new(NULL, &cancelled), JR_OK);
    CHECK_STATUS(jr_token_cancel_sync(cancelled), JR_OK);
    producer_log *log = new_producer_log(1, 0);
    jr_stream *s = start_stream(p, log, 1);

    size_t ready = 99;
    jr_waitable one[1];
    one[0] = (jr_waitable){JR_WAIT_JOB, done};
    CHECK_STATUS(jr_wait_any(one, 1, -1, &ready), JR_OK);
    CHECK(ready == 0);
    one[0] = (jr_waitable){JR_WAIT_GROUP, g};
    CHECK_STATUS(jr_wait_any(one, 1, HANG_MS * MS, &ready), JR_OK);
    one[0] = (jr_waitable){JR_WAIT_CHAN_RECV, full};
    CHECK_STATUS(jr_wait_any(one, 1, 0, &ready), JR_OK);
    one[0] = (jr_waitable){JR_WAIT_CHAN_SEND, full};
    CHECK_STATUS(jr_wait_any(one, 1, 1 * MS, &ready), JR_E_TIMEOUT);
    one[0] = (jr_waitable){JR_WAIT_CHAN_SEND, quiet};
    CHECK_STATUS(jr_wait_any(one, 1, 0, &ready), JR_OK);
    one[0] = (jr_waitable){JR_WAIT_TOKEN, cancelled};
    CHECK_STATUS(jr_wait_any(one, 1, 0, &ready), JR_OK);
    one[0] = (jr_waitable){JR_WAIT_STREAM, s};
    CHECK_STATUS(jr_wait_any(one, 1, HANG_MS * MS, &ready), JR_OK);

    jr_waitable list[4] = {
        {JR_WAIT_CHAN_RECV, quiet},
        {JR_WAIT_TOKEN, never},
        {JR_WAIT_CHAN_RECV, full},
        {JR_WAIT_JOB, done},
    };
    CHECK_STATUS(jr_wait_any(list, 4, -1, &ready), JR_OK);
    CHECK(ready == 2);
    CHECK_STATUS(jr_wait_any(list, 2, 2 * MS, &ready), JR_E_TIMEOUT);
    CHECK_STATUS(jr_wait_any(NULL, 0, 1 * MS, &ready), JR_E_TIMEOUT);
    CHECK_STATUS(jr_wait_any(NULL, 0, -1, &ready), JR_E_INVALID_ARG);
    jr_waitable bad = {99, done};
    CHECK_STATUS(jr_wait_any(&bad, 1, 0, &ready), JR_E_INVALID_ARG);
    bad = (jr_waitable){JR_WAIT_GROUP, done};
    CHECK_STATUS(jr_wait_any(&bad, 1, 0, &ready), JR_E_INVALID_ARG);

    void *item = NULL;
    while (jr_stream_next(s, &item, -1) == JR_OK) free(item);
    CHECK_STATUS(jr_stream_free(s), JR_OK);
    free_producer_log(log);
    CHECK_STATUS(jr_group_wait(g, -1), JR_OK);
    CHECK_STATUS(jr_group_free(g), JR_OK);
    CHECK_STATUS(jr_token_free(never), JR_OK);
    CHECK_STATUS(jr_token_free(cancelled), JR_OK);
    CHECK_STATUS(jr_chan_free(quiet), JR_OK);
    CHECK_STATUS(jr_chan_free(full), JR_OK);
    CHECK_STATUS(jr_job_free(done), JR_OK);
    CHECK_STATUS(jr_pool_free(p), JR_OK);
}

typedef struct {
    jr_chan *ch;
    jr_token *stop;
    size_t ready;
} waiter_arg;

static int32_t cancel_token_job(jr_ctx *ctx, void *arg, void **result) {
    (void)ctx;
    (void)result;
    return jr_token_cancel_sync(arg) == JR_OK ? 0 : 1;
}

static int32_t wait_any_job(jr_ctx *ctx, void *arg, void **result) {
    (void)result;
    waiter_arg *w = arg;
    jr_job *sender = NULL;
    if (jr_submit(jr_ctx_pool(ctx), send_one_job, w->ch, NULL, &sender) != JR_OK) return 1;
    jr_waitable items[2] = {{JR_WAIT_TOKEN, w->stop}, {JR_WAIT_CHAN_RECV, w->ch}};
    jr_status st = jr_wait_any(items, 2, HANG_MS * MS, &w->ready);
    jr_job_wait(sender, -1);
    jr_job_free(sender);
    return st == JR_OK ? 0 : 1;
}

/* A job of a one-thread pool waits for an item that a job queued behind it sends: the
 * wait lends its place to a spare worker. And a thread outside the pool is woken by a
 * token's cancel. */
static void wait_any_wakes_inside_a_job_and_outside(void) {
    jr_pool *p = make_pool(1, 0);
    waiter_arg w = {.ready = 99};
    CHECK_STATUS(jr_chan_new(1, chan_free_item, &w.ch), JR_OK);
    CHECK_STATUS(jr_token_new(NULL, &w.stop), JR_OK);
    CHECK_STATUS(wait_free(submit(p, wait_any_job, &w)), JR_OK);
    CHECK(w.ready == 1);
    void *item = NULL;
    CHECK_STATUS(jr_chan_try_recv(w.ch, &item), JR_OK);
    CHECK(*(int *)item == 7);
    free(item);

    jr_job *canceller = NULL;
    jr_submit_options o = jr_submit_options_default();
    o.delay_ns = 5 * MS;
    CHECK_STATUS(jr_submit(p, cancel_token_job, w.stop, &o, &canceller), JR_OK);
    jr_waitable items[2] = {{JR_WAIT_CHAN_RECV, w.ch}, {JR_WAIT_TOKEN, w.stop}};
    size_t ready = 99;
    CHECK_STATUS(jr_wait_any(items, 2, HANG_MS * MS, &ready), JR_OK);
    CHECK(ready == 1);
    CHECK_STATUS(wait_free(canceller), JR_OK);
    CHECK_STATUS(jr_token_free(w.stop), JR_OK);
    CHECK_STATUS(jr_chan_free(w.ch), JR_OK);
    CHECK_STATUS(jr_pool_free(p), JR_OK);
}

/* Park hooks: each worker calls on_thread_park on its own thread, with hook_arg and its
 * index, each time it is about to sleep. */
typedef struct {
    pthread_t threads[2]; /* each worker's, recorded by its start hook */
    atomic_int started[2];
    counter parks[2];
    atomic_int foreign; /* park calls with a bad index or on another thread */
} park_log;

static void park_log_start(void *arg, size_t index) {
    park_log *log = arg;
    if (index < 2) {
        log->threads[index] = pthread_self();
        atomic_store(&log->started[index], 1);
    }
}

static void park_log_park(void *arg, size_t index) {
    park_log *log = arg;
    if (index >= 2 || !atomic_load(&log->started[index]) ||
        !pthread_equal(log->threads[index], pthread_self())) {
        atomic_fetch_add(&log->foreign, 1);
        return;
    }
    counter_add(&log->parks[index], 1);
}

static long stats_sleeping(jr_pool *p) {
    jr_stats st = {.size = sizeof st};
    CHECK_STATUS(jr_pool_stats(p, &st), JR_OK);
    return (long)st.sleeping;
}

/* Waits until `n` workers of `p` sleep (an event the stats show). */
static bool wait_sleeping(jr_pool *p, long n) {
    for (int64_t start = now_ns(); now_ns() - start < HANG_MS * MS; sched_yield()) {
        if (stats_sleeping(p) == n) {
            return true;
        }
    }
    return false;
}

static void pool_park_hook_runs_as_each_worker_goes_to_sleep(void) {
    static park_log log;
    for (int i = 0; i < 2; i++) {
        counter_init(&log.parks[i]);
    }
    jr_pool_options o = jr_pool_options_default();
    o.threads = 2;
    o.on_thread_start = park_log_start;
    o.hook_arg = &log;
    jr_pool *p = NULL;
    CHECK_STATUS(jr_pool_new(&o, &p), JR_OK);
    REQUIRE(p != NULL);
    CHECK_STATUS(jr_pool_add_park_hook(p, park_log_park, &log), JR_OK);
    /* The start hooks run before the first job: one on each worker. */
    blocker b;
    blocker_init(&b, false);
    jr_job *held[2] = {submit(p, blocker_job, &b), submit(p, blocker_job, &b)};
    REQUIRE(counter_wait(&b.started, 2, HANG_MS));
    long before[2] = {counter_get(&log.parks[0]), counter_get(&log.parks[1])};
    gate_open(&b.gate);
    for (int i = 0; i < 2; i++) {
        CHECK_STATUS(wait_free(held[i]), JR_OK);
    }
    /* Idle again: each worker runs its park hook before it sleeps. */
    CHECK(wait_sleeping(p, 2));
    for (int i = 0; i < 2; i++) {
        CHECK(counter_get(&log.parks[i]) > before[i]);
    }
    CHECK(atomic_load(&log.foreign) == 0);
    CHECK_STATUS(jr_pool_free(p), JR_OK);
    blocker_destroy(&b);
    for (int i = 0; i < 2; i++) {
        counter_destroy(&log.parks[i]);
    }
}

static void count_park(void *arg, size_t index) {
    (void)index;
    counter_add(arg, 1);
}

/* A park hook added to a running pool runs from the next sleep on, until removed. */
static void pool_add_park_hook_to_a_running_pool_until_removed(void) {
    counter parks, runs;
    counter_init(&parks);
    counter_init(&runs);
    jr_pool *p = make_pool(1, 0);
    CHECK_STATUS(jr_pool_add_park_hook(p, count_park, &parks), JR_OK);
    CHECK_STATUS(wait_free(submit(p, count_job, &runs)), JR_OK);
    CHECK(counter_wait(&parks, 1, HANG_MS));
    CHECK_STATUS(jr_pool_remove_park_hook(p, count_park, &parks), JR_OK);
    CHECK_STATUS(jr_pool_remove_park_hook(p, count_park, &parks), JR_E_INVALID_ARG);
    long calls = counter_get(&parks);
    CHECK_STATUS(wait_free(submit(p, count_job, &runs)), JR_OK);
    /* The worker counts as sleeping only once past its park hooks. */
    CHECK(wait_sleeping(p, 1));
    CHECK(counter_get(&parks) == calls);
    CHECK_STATUS(jr_pool_free(p), JR_OK);
    counter_destroy(&runs);
    counter_destroy(&parks);
}

/* A hook that removes its own hooks does not wait for itself. */
static void pool_remove_thread_hooks_from_inside_a_hook(void) {
    hook_probe h;
    probe_init(&h);
    h.removed = JR_E_INTERNAL;
    jr_pool *p = make_pool(1, 0);
    h.remove_from = p;
    CHECK_STATUS(jr_pool_add_thread_hooks(p, probe_start, NULL, &h), JR_OK);
    counter runs;
    counter_init(&runs);
    for (int i = 0; i < 3; i++) {
        jr_submit(p, count_job, &runs, NULL, NULL);
    }
    CHECK(counter_wait(&runs, 3, HANG_MS));
    CHECK_STATUS(jr_pool_free(p), JR_OK);
    CHECK(counter_get(&h.starts) == 1);
    CHECK_STATUS(h.removed, JR_OK);
    counter_destroy(&runs);
    probe_destroy(&h);
}

/* ----- jobs ----------------------------------------------------------------------------- */

static int32_t double_job(jr_ctx *ctx, void *arg, void **result) {
    (void)ctx;
    int *out = malloc(sizeof *out);
    if (out == NULL) {
        return 1;
    }
    *out = 2 * *(int *)arg;
    *result = out;
    return 0;
}

static void submit_wait_take_result(void) {
    jr_pool *p = make_pool(2, 0);
    int arg = 21;
    jr_job *job = submit(p, double_job, &arg);
    REQUIRE(job != NULL);
    CHECK_STATUS(jr_job_wait(job, -1), JR_OK);
    /* Waiting again gives the same outcome. */
    CHECK_STATUS(jr_job_wait(job, 0), JR_OK);
    CHECK(job_state(job) == JR_JOB_SUCCEEDED);
    int32_t code = -1;
    CHECK_STATUS(jr_job_error_code(job, &code), JR_OK);
    CHECK(code == 0);
    CHECK(jr_job_error_message(job) == NULL);
    void *result = NULL;
    CHECK_STATUS(jr_job_take_result(job, &result), JR_OK);
    REQUIRE(result != NULL);
    CHECK(*(int *)result == 42);
    free(result);
    /* A second take gives NULL. */
    result = &arg;
    CHECK_STATUS(jr_job_take_result(job, &result), JR_OK);
    CHECK(result == NULL);
    CHECK_STATUS(jr_job_free(job), JR_OK);
    CHECK_STATUS(jr_pool_free(p), JR_OK);
}

static int32_t failing_job(jr_ctx *ctx, void *arg, void **result) {
    (void)result;
    char msg[64];
    snprintf(msg, sizeof msg, "failed with %d", (int)(intptr_t)arg);
    /* A later call replaces the message. */
    CHECK_STATUS(jr_ctx_fail(ctx, "not this one"), JR_OK);
    CHECK_STATUS(jr_ctx_fail(ctx, msg), JR_OK);
    return (int32_t)(intptr_t)arg;
}

static int32_t fail_then_succeed_job(jr_ctx *ctx, void *arg, void **result) {
    (void)arg;
    (void)result;
    jr_ctx_fail(ctx, "dropped: the job succeeds");
    return 0;
}

static void job_error_code_and_message(void) {
    jr_pool *p = make_pool(2, 0);
    jr_job *job = submit(p, failing_job, (void *)(intptr_t)42);
    REQUIRE(job != NULL);
    CHECK_STATUS(jr_job_wait(job, -1), JR_E_JOB_FAILED);
    CHECK(job_state(job) == JR_JOB_FAILED);
    int32_t code = 0;
    CHECK_STATUS(jr_job_error_code(job, &code), JR_OK);
    CHECK(code == 42);
    const char *msg = jr_job_error_message(job);
    CHECK(msg != NULL && strcmp(msg, "failed with 42") == 0);
    void *result = &code;
    CHECK_STATUS(jr_job_take_result(job, &result), JR_E_JOB_FAILED);
    CHECK(result == NULL);
    CHECK_STATUS(jr_job_free(job), JR_OK);

    /* A negative code is a failure too. */
    job = submit(p, failing_job, (void *)(intptr_t)-7);
    CHECK_STATUS(jr_job_wait(job, -1), JR_E_JOB_FAILED);
    CHECK_STATUS(jr_job_error_code(job, &code), JR_OK);
    CHECK(code == -7);
    CHECK_STATUS(jr_job_free(job), JR_OK);

    job = submit(p, fail_then_succeed_job, NULL);
    CHECK_STATUS(jr_job_wait(job, -1), JR_OK);
    CHECK(jr_job_error_message(job) == NULL);
    CHECK_STATUS(jr_job_free(job), JR_OK);
    CHECK_STATUS(jr_pool_free(p), JR_OK);
}

static int32_t panicking_job(jr_ctx *ctx, void *arg, void **result) {
    (void)arg;
    (void)result;
    CHECK_STATUS(jr_ctx_panic(ctx, "oops: out of bananas"), JR_OK);
    return 0; /* whatever it returns */
}

static void job_panic_becomes_panicked(void) {
    jr_pool *p = make_pool(1, 0);
    jr_job *job = submit(p, panicking_job, NULL);
    REQUIRE(job != NULL);
    CHECK_STATUS(jr_job_wait(job, -1), JR_E_PANICKED);
    CHECK(job_state(job) == JR_JOB_PANICKED);
    const char *msg = jr_job_error_message(job);
    CHECK(msg != NULL && strcmp(msg, "oops: out of bananas") == 0);
    void *result = &result;
    CHECK_STATUS(jr_job_take_result(job, &result), JR_E_PANICKED);
    CHECK(result == NULL);
    CHECK_STATUS(jr_job_free(job), JR_OK);
    /* The (only) worker lives on. */
    int arg = 5;
    job = submit(p, double_job, &arg);
    CHECK_STATUS(jr_job_wait(job, -1), JR_OK);
    result = NULL;
    CHECK_STATUS(jr_job_take_result(job, &result), JR_OK);
    CHECK(result != NULL && *(int *)result == 10);
    free(result);
    CHECK_STATUS(jr_job_free(job), JR_OK);
    CHECK_STATUS(jr_pool_free(p), JR_OK);
}

static void job_state_transitions(void) {
    jr_pool *p = make_pool(1, 0);
    blocker b;
    blocker_init(&b, false);
    jr_job *running = submit(p, blocker_job, &b);
    REQUIRE(running != NULL);
    REQUIRE(counter_wait(&b.started, 1, HANG_MS));
    CHECK(job_state(running) == JR_JOB_RUNNING);
    CHECK_STATUS(jr_job_wait(running, 0), JR_E_TIMEOUT);
    CHECK_STATUS(jr_job_wait(running, 1 * MS), JR_E_TIMEOUT);
    void *result = NULL;
    CHECK_STATUS(jr_job_take_result(running, &result), JR_E_TIMEOUT);
    int32_t code = 0;
    CHECK_STATUS(jr_job_error_code(running, &code), JR_E_TIMEOUT);
    CHECK(jr_job_error_message(running) == NULL);

    counter runs;
    counter_init(&runs);
    jr_job *queued = submit(p, count_job, &runs);
    CHECK(job_state(queued) == JR_JOB_QUEUED);

    jr_submit_options o = jr_submit_options_default();
    o.delay_ns = 60 * SEC;
    jr_job *delayed = submit_opts(p, count_job, &runs, &o);
    CHECK(job_state(delayed) == JR_JOB_DELAYED);

    jr_sem *sem = NULL;
    REQUIRE(jr_sem_new(1, &sem) == JR_OK);
    CHECK_STATUS(jr_sem_acquire(sem, 1, -1, NULL), JR_OK);
    o = jr_submit_options_default();
    o.sem = sem;
    jr_job *gated = submit_opts(p, count_job, &runs, &o);
    CHECK(job_state(gated) == JR_JOB_WAITING_PERMIT);

    CHECK_STATUS(jr_job_cancel(delayed), JR_OK);
    CHECK(job_state(delayed) == JR_JOB_CANCELLED);
    CHECK_STATUS(jr_job_wait(delayed, 0), JR_E_CANCELLED);

    gate_open(&b.gate);
    CHECK_STATUS(jr_job_wait(running, -1), JR_OK);
    CHECK(job_state(running) == JR_JOB_SUCCEEDED);
    CHECK_STATUS(jr_job_wait(queued, -1), JR_OK);
    CHECK(job_state(queued) == JR_JOB_SUCCEEDED);
    CHECK(job_state(gated) == JR_JOB_WAITING_PERMIT);
    CHECK_STATUS(jr_sem_release(sem, 1), JR_OK);
    CHECK_STATUS(jr_job_wait(gated, HANG_MS * MS), JR_OK);
    CHECK(job_state(gated) == JR_JOB_SUCCEEDED);
    CHECK(counter_get(&runs) == 2);

    jr_job *failed = submit(p, failing_job, (void *)(intptr_t)3);
    CHECK_STATUS(jr_job_wait(failed, -1), JR_E_JOB_FAILED);
    CHECK(job_state(failed) == JR_JOB_FAILED);
    jr_job *panicked = submit(p, panicking_job, NULL);
    CHECK_STATUS(jr_job_wait(panicked, -1), JR_E_PANICKED);
    CHECK(job_state(panicked) == JR_JOB_PANICKED);

    jr_job *jobs[] = {running, queued, delayed, gated, failed, panicked};
    for (size_t i = 0; i < sizeof jobs / sizeof jobs[0]; i++) {
        CHECK_STATUS(jr_job_free(jobs[i]), JR_OK);
    }
    CHECK_STATUS(jr_sem_free(sem), JR_OK);
    CHECK_STATUS(jr_pool_free(p), JR_OK);
    counter_destroy(&runs);
    blocker_destroy(&b);
}

/* jr_job_on_done: one call per callback, with the terminal state, when the job ends
 * (or at once if it has), even if the handle is freed first. */
typedef struct {
    counter calls;
    atomic_int last_state;
} done_log;

static void log_done(void *arg, jr_state state) {
    done_log *log = arg;
    atomic_store(&log->last_state, (int)state);
    counter_add(&log->calls, 1);
}

static void job_on_done_reports_each_end_once(void) {
    jr_pool *p = make_pool(1, 0);
    blocker b;
    blocker_init(&b, false);
    done_log log;
    counter_init(&log.calls);
    atomic_init(&log.last_state, -1);

    jr_job *running = start_blocker(p, &b);
    counter runs;
    counter_init(&runs);
    jr_job *queued = submit(p, count_job, &runs);
    CHECK_STATUS(jr_job_on_done(running, log_done, &log), JR_OK);
    CHECK_STATUS(jr_job_on_done(queued, log_done, &log), JR_OK);
    CHECK(counter_get(&log.calls) == 0); /* neither has ended */

    /* Cancelling the queued job ends it now: its callback runs on this thread. */
    CHECK_STATUS(jr_job_cancel(queued), JR_OK);
    CHECK(counter_get(&log.calls) == 1);
    CHECK(atomic_load(&log.last_state) == JR_JOB_CANCELLED);

    /* The handle freed before the end: the callback still runs, once. */
    CHECK_STATUS(jr_job_free(running), JR_OK);
    gate_open(&b.gate);
    CHECK(counter_wait(&log.calls, 2, HANG_MS));
    CHECK(atomic_load(&log.last_state) == JR_JOB_SUCCEEDED);

    /* Added after the end: called at once. */
    CHECK_STATUS(jr_job_on_done(queued, log_done, &log), JR_OK);
    CHECK(counter_get(&log.calls) == 3);
    CHECK(atomic_load(&log.last_state) == JR_JOB_CANCELLED);
    CHECK_STATUS(jr_job_free(queued), JR_OK);
    CHECK_STATUS(jr_pool_free(p), JR_OK);
    CHECK(counter_get(&log.calls) == 3);
    CHECK(counter_get(&runs) == 0);
    counter_destroy(&runs);
    counter_destroy(&log.calls);
    blocker_destroy(&b);
}

static void job_cancel_queued_vs_running(void) {
    jr_pool *p = make_pool(1, 0);
    blocker b;
    blocker_init(&b, true); /* runs until cancelled */
    jr_job *running = submit(p, blocker_job, &b);
    REQUIRE(running != NULL);
    REQUIRE(counter_wait(&b.started, 1, HANG_MS));

    counter runs;
    counter_init(&runs);
    jr_job *queued = submit(p, count_job, &runs);
    CHECK_STATUS(jr_job_cancel(queued), JR_OK);
    /* Ends at once, while the worker is still busy: its waiters do not wait for it. */
    CHECK_STATUS(jr_job_wait(queued, 0), JR_E_CANCELLED);
    CHECK(job_state(queued) == JR_JOB_CANCELLED);
    CHECK(job_state(running) == JR_JOB_RUNNING);
    /* Cancelling again: too late to prevent anything. */
    CHECK_STATUS(jr_job_cancel(queued), JR_E_CLOSED);

    /* Running: too late to prevent it, but the job is told. */
    CHECK_STATUS(jr_job_cancel(running), JR_E_CLOSED);
    CHECK_STATUS(jr_job_wait(running, -1), JR_E_CANCELLED);
    CHECK(atomic_load(&b.saw_cancel) == 1);
    CHECK(job_state(running) == JR_JOB_CANCELLED);
    /* Ended: still JR_E_CLOSED. */
    CHECK_STATUS(jr_job_cancel(running), JR_E_CLOSED);

    /* The cancelled job never ran: a later job behind it on the one worker has run. */
    jr_job *after = submit(p, nop_job, NULL);
    CHECK_STATUS(wait_free(after), JR_OK);
    CHECK(counter_get(&runs) == 0);

    CHECK_STATUS(jr_job_free(queued), JR_OK);
    CHECK_STATUS(jr_job_free(running), JR_OK);
    CHECK_STATUS(jr_pool_free(p), JR_OK);
    counter_destroy(&runs);
    blocker_destroy(&b);
}

/* fib(n) by submitting fib(n-1) and fib(n-2) to the job's own pool and waiting. */
static int32_t fib_job(jr_ctx *ctx, void *arg, void **result) {
    intptr_t n = (intptr_t)arg;
    if (n < 2) {
        *result = (void *)n;
        return 0;
    }
    jr_pool *pool = jr_ctx_pool(ctx);
    jr_job *a = NULL, *b = NULL;
    if (jr_submit(pool, fib_job, (void *)(n - 1), NULL, &a) != JR_OK) {
        return 1;
    }
    if (jr_submit(pool, fib_job, (void *)(n - 2), NULL, &b) != JR_OK) {
        jr_job_free(a);
        return 2;
    }
    void *ra = NULL, *rb = NULL;
    int32_t rc = 0;
    if (jr_job_wait(b, -1) != JR_OK || jr_job_wait(a, -1) != JR_OK ||
        jr_job_take_result(a, &ra) != JR_OK || jr_job_take_result(b, &rb) != JR_OK) {
        rc = 3;
    }
    jr_job_free(a);
    jr_job_free(b);
    *result = (void *)((intptr_t)ra + (intptr_t)rb);
    return rc;
}

static void nested_submit_wait_on_one_thread(void) {
    jr_pool *p = make_pool(1, 0);
    jr_job *job = submit(p, fib_job, (void *)(intptr_t)15);
    REQUIRE(job != NULL);
    CHECK_STATUS(jr_job_wait(job, 30 * SEC), JR_OK);
    void *r = NULL;
    CHECK_STATUS(jr_job_take_result(job, &r), JR_OK);
    CHECK((intptr_t)r == 610);
    CHECK_STATUS(jr_job_free(job), JR_OK);
    /* Nested submits from inside a job are never blocked by a queue bound. */
    jr_pool *q = make_pool(1, 1);
    job = submit(q, fib_job, (void *)(intptr_t)10);
    CHECK_STATUS(jr_job_wait(job, 30 * SEC), JR_OK);
    r = NULL;
    CHECK_STATUS(jr_job_take_result(job, &r), JR_OK);
    CHECK((intptr_t)r == 55);
    CHECK_STATUS(jr_job_free(job), JR_OK);
    CHECK_STATUS(jr_pool_free(q), JR_OK);
    CHECK_STATUS(jr_pool_free(p), JR_OK);
}

/* ----- batches: jr_ctx_run_queued -------------------------------------------------------------- */

/* The log of batch_job runs: ids in the order they ran, and -1 - ran where a batcher's
 * jr_ctx_run_queued returned. */
static struct {
    pthread_mutex_t mutex;
    int entries[64];
    int len;
    atomic_int freed[16];  /* arg_free calls, per id */
} batch_log = {.mutex = PTHREAD_MUTEX_INITIALIZER};

static void batch_note(int entry) {
    pthread_mutex_lock(&batch_log.mutex);
    if (batch_log.len < 64) {
        batch_log.entries[batch_log.len++] = entry;
    }
    pthread_mutex_unlock(&batch_log.mutex);
}

/* A batch_job's argument: its id, and the max of its batch (0: it is no batcher). */
typedef struct {
    int id;
    uint32_t max;
    jr_status status;
} batch_arg;

static batch_arg batch_args[16];

static void batch_arg_free(void *arg) {
    atomic_fetch_add(&batch_log.freed[((batch_arg *)arg)->id], 1);
}

static int32_t batch_job(jr_ctx *ctx, void *arg, void **result) {
    (void)result;
    batch_arg *a = arg;
    batch_note(a->id);
    if (a->max == 0) {
        return 0;
    }
    uint32_t ran = 12345;
    a->status = jr_ctx_run_queued(ctx, batch_job, a->max, &ran);
    batch_note(-1 - (int)ran);
    return 0;
}

/* Submits batch_job with batch_args[id] (arg_free counts), or NULL. */
static jr_job *submit_batch(jr_pool *p, int id, uint32_t max) {
    batch_args[id] = (batch_arg){.id = id, .max = max, .status = JR_E_INTERNAL};
    jr_submit_options o = jr_submit_options_default();
    o.arg_free = batch_arg_free;
    return submit_opts(p, batch_job, &batch_args[id], &o);
}

static void batch_reset(void) {
    batch_log.len = 0;
    for (int i = 0; i < 16; i++) {
        atomic_store(&batch_log.freed[i], 0);
    }
}

static bool batch_log_is(const int *want, int n) {
    bool same = batch_log.len == n;
    for (int i = 0; same && i < n; i++) {
        same = batch_log.entries[i] == want[i];
    }
    if (!same) {
        fprintf(stderr, "  batch log:");
        for (int i = 0; i < batch_log.len; i++) {
            fprintf(stderr, " %d", batch_log.entries[i]);
        }
        fprintf(stderr, "\n  want:     ");
        for (int i = 0; i < n; i++) {
            fprintf(stderr, " %d", want[i]);
        }
        fprintf(stderr, "\n");
    }
    return same;
}

static void ctx_run_queued_runs_ready_jobs_of_its_function(void) {
    jr_pool *p = make_pool(1, 0);
    /* Jobs of a function are batched once jr_ctx_run_queued has been called with it. */
    batch_reset();
    CHECK_STATUS(wait_free(submit_batch(p, 0, 100)), JR_OK);
    CHECK_STATUS(batch_args[0].status, JR_OK);
    CHECK(batch_log_is((int[]){0, -1}, 2)); /* nothing queued: ran 0 */

    /* Queued behind a blocker: batcher 1 (max 100), 2, 3 (cancelled), 4 (a batcher
     * itself: runs nothing, no recursion), 5, a count_job (another function: the batch
     * stops there), 6. */
    batch_reset();
    blocker b;
    blocker_init(&b, false);
    jr_job *blocked = start_blocker(p, &b);
    counter other;
    counter_init(&other);
    jr_job *jobs[7];
    jobs[0] = submit_batch(p, 1, 100);
    jobs[1] = submit_batch(p, 2, 0);
    jobs[2] = submit_batch(p, 3, 0);
    jobs[3] = submit_batch(p, 4, 100);
    jobs[4] = submit_batch(p, 5, 0);
    jobs[5] = submit(p, count_job, &other);
    jobs[6] = submit_batch(p, 6, 0);
    CHECK_STATUS(jr_job_cancel(jobs[2]), JR_OK);
    gate_open(&b.gate);
    CHECK_STATUS(wait_free(blocked), JR_OK);
    for (int i = 0; i < 7; i++) {
        CHECK_STATUS(wait_free(jobs[i]), i == 2 ? JR_E_CANCELLED : JR_OK);
    }
    /* 1 ran 2, 4 (whose call ran 0) and 5: 3 of them; then count_job, then 6. */
    CHECK(batch_log_is((int[]){1, 2, 4, -1, 5, -4, 6}, 7));
    CHECK_STATUS(batch_args[1].status, JR_OK);
    CHECK_STATUS(batch_args[4].status, JR_OK);
    CHECK(counter_get(&other) == 1);
    for (int id = 1; id <= 6; id++) {
        CHECK(atomic_load(&batch_log.freed[id]) == 1); /* each argument freed once */
    }

    /* At most `max`: batcher 7 (max 2) runs 8 and 9; 10 runs after it. */
    batch_reset();
    blocker_destroy(&b);
    blocker_init(&b, false);
    blocked = start_blocker(p, &b);
    jobs[0] = submit_batch(p, 7, 2);
    jobs[1] = submit_batch(p, 8, 0);
    jobs[2] = submit_batch(p, 9, 0);
    jobs[3] = submit_batch(p, 10, 0);
    gate_open(&b.gate);
    CHECK_STATUS(wait_free(blocked), JR_OK);
    for (int i = 0; i < 4; i++) {
        CHECK_STATUS(wait_free(jobs[i]), JR_OK);
    }
    CHECK(batch_log_is((int[]){7, 8, 9, -3, 10}, 5));
    blocker_destroy(&b);
    counter_destroy(&other);
    CHECK_STATUS(jr_pool_free(p), JR_OK);
}

/* ----- bounded queue ---------------------------------------------------------------------- */

typedef struct {
    jr_pool *pool;
    counter *runs;
    jr_status status;
    counter done;
} submitter;

static void *blocking_submit_thread(void *arg) {
    submitter *s = arg;
    jr_submit_options o = jr_submit_options_default();
    o.timeout_ns = -1;
    s->status = jr_submit(s->pool, count_job, s->runs, &o, NULL);
    counter_add(&s->done, 1);
    return NULL;
}

static void bounded_queue_full_and_timeout(void) {
    jr_pool *p = make_pool(1, 2);
    blocker b;
    blocker_init(&b, false);
    jr_job *running = start_blocker(p, &b); /* started: no longer queued */
    counter runs;
    counter_init(&runs);
    jr_job *q1 = submit(p, count_job, &runs);
    jr_job *q2 = submit(p, count_job, &runs);

    jr_submit_options o = jr_submit_options_default();
    o.nonblocking = 1;
    jr_job *extra = (jr_job *)&o;
    CHECK_STATUS(jr_submit(p, count_job, &runs, &o, &extra), JR_E_FULL);
    CHECK(extra == (jr_job *)&o); /* untouched on failure */

    o = jr_submit_options_default();
    o.timeout_ns = 0;
    CHECK_STATUS(jr_submit(p, count_job, &runs, &o, NULL), JR_E_FULL);

    o.timeout_ns = 30 * MS;
    int64_t t0 = now_ns();
    CHECK_STATUS(jr_submit(p, count_job, &runs, &o, NULL), JR_E_TIMEOUT);
    CHECK(now_ns() - t0 >= 30 * MS);

    /* A blocking submit waits for room, and gets in once the queue moves. */
    submitter s = {.pool = p, .runs = &runs, .status = JR_E_INTERNAL};
    counter_init(&s.done);
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, blocking_submit_thread, &s) == 0);
    gate_open(&b.gate);
    CHECK(counter_wait(&s.done, 1, HANG_MS));
    pthread_join(th, NULL);
    CHECK_STATUS(s.status, JR_OK);

    CHECK_STATUS(wait_free(running), JR_OK);
    CHECK_STATUS(wait_free(q1), JR_OK);
    CHECK_STATUS(wait_free(q2), JR_OK);
    CHECK(counter_wait(&runs, 3, HANG_MS));
    CHECK_STATUS(jr_pool_free(p), JR_OK);
    CHECK(counter_get(&runs) == 3); /* the refused submits never ran */
    counter_destroy(&s.done);
    counter_destroy(&runs);
    blocker_destroy(&b);
}

/* ----- delayed and periodic jobs ------------------------------------------------------------ */

static int32_t stamp_job(jr_ctx *ctx, void *arg, void **result) {
    (void)ctx;
    (void)result;
    *(int64_t *)arg = now_ns();
    return 0;
}

static void delayed_job_waits_its_delay(void) {
    jr_pool *p = make_pool(2, 0);
    int64_t ran_at = 0;
    jr_submit_options o = jr_submit_options_default();
    o.delay_ns = 50 * MS;
    int64_t t0 = now_ns();
    jr_job *job = submit_opts(p, stamp_job, &ran_at, &o);
    REQUIRE(job != NULL);
    CHECK(job_state(job) == JR_JOB_DELAYED);
    CHECK_STATUS(jr_job_wait(job, HANG_MS * MS), JR_OK);
    CHECK(ran_at - t0 >= 50 * MS);
    CHECK_STATUS(jr_job_free(job), JR_OK);
    CHECK_STATUS(jr_pool_free(p), JR_OK);
}

typedef struct {
    _Atomic(jr_job *) self;
    int64_t ticks[64];
    atomic_int runs;
    atomic_int bad_tick;
    int stop_after;
    atomic_int cancel_status;
    atomic_int cancelled_in_run; /* the run (1-based) that cancelled it */
} periodic;

static int32_t periodic_job(jr_ctx *ctx, void *arg, void **result) {
    (void)result;
    periodic *pr = arg;
    uint64_t tick = 0;
    if (jr_ctx_tick(ctx, &tick) != JR_OK) {
        atomic_store(&pr->bad_tick, 1);
        return 1;
    }
    int n = atomic_fetch_add(&pr->runs, 1);
    if (n < 64) {
        pr->ticks[n] = (int64_t)tick;
    }
    jr_job *self = atomic_load(&pr->self);
    if (n + 1 >= pr->stop_after && self != NULL && atomic_load(&pr->cancel_status) < 0) {
        /* Stops itself: no run after this one. */
        atomic_store(&pr->cancel_status, (int)jr_job_cancel(self));
        atomic_store(&pr->cancelled_in_run, n + 1);
    }
    return 0;
}

static void periodic_job_ticks_and_stops_itself(void) {
    jr_pool *p = make_pool(2, 0);
    periodic pr = {.stop_after = 4};
    atomic_init(&pr.self, NULL);
    atomic_init(&pr.runs, 0);
    atomic_init(&pr.bad_tick, 0);
    atomic_init(&pr.cancel_status, -1);
    atomic_init(&pr.cancelled_in_run, 0);
    jr_job *h = NULL;
    int64_t t0 = now_ns();
    CHECK_STATUS(jr_submit_every(p, 5 * MS, periodic_job, &pr, NULL, &h), JR_OK);
    REQUIRE(h != NULL);
    atomic_store(&pr.self, h);
    CHECK(job_state(h) == JR_JOB_RUNNING);
    CHECK_STATUS(jr_job_wait(h, HANG_MS * MS), JR_E_CANCELLED);
    CHECK(job_state(h) == JR_JOB_CANCELLED);
    CHECK(atomic_load(&pr.cancel_status) == JR_OK);
    CHECK(atomic_load(&pr.bad_tick) == 0);
    int runs = atomic_load(&pr.runs);
    /* It stopped in the run that cancelled it: no run after that one. */
    CHECK(runs >= pr.stop_after);
    CHECK(runs == atomic_load(&pr.cancelled_in_run));
    CHECK(pr.ticks[0] == 0);
    for (int i = 1; i < runs && i < 64; i++) {
        CHECK(pr.ticks[i] > pr.ticks[i - 1]);
    }
    /* The first run one period from now at the earliest, the next ones a period apart. */
    CHECK(now_ns() - t0 >= (int64_t)(runs)*5 * MS);
    /* Stopped: cancelling again is too late, taking a result is not for periodic jobs. */
    CHECK_STATUS(jr_job_cancel(h), JR_E_CLOSED);
    void *r = NULL;
    CHECK_STATUS(jr_job_take_result(h, &r), JR_E_INVALID_ARG);
    CHECK_STATUS(jr_job_free(h), JR_OK);

    /* Stopped from outside, by its token. */
    jr_token *t = NULL;
    REQUIRE(jr_token_new(NULL, &t) == JR_OK);
    counter runs2;
    counter_init(&runs2);
    jr_submit_options o = jr_submit_options_default();
    o.token = t;
    CHECK_STATUS(jr_submit_every(p, 2 * MS, count_job, &runs2, &o, &h), JR_OK);
    CHECK(counter_wait(&runs2, 3, HANG_MS));
    CHECK_STATUS(jr_token_cancel(t), JR_OK);
    CHECK_STATUS(jr_job_wait(h, HANG_MS * MS), JR_E_CANCELLED);
    long final = counter_get(&runs2);
    CHECK_STATUS(jr_job_free(h), JR_OK);
    CHECK_STATUS(jr_token_free(t), JR_OK);
    CHECK_STATUS(jr_pool_free(p), JR_OK);
    CHECK(counter_get(&runs2) == final); /* no run after the stop was waited for */
    counter_destroy(&runs2);
}

/* ----- shutdown ------------------------------------------------------------------------------ */

static int32_t slow_count_job(jr_ctx *ctx, void *arg, void **result) {
    (void)ctx;
    (void)result;
    sleep_ms(2);
    counter_add(arg, 1);
    return 0;
}

static void shutdown_drain_runs_queued_jobs(void) {
    jr_pool *p = make_pool(1, 0);
    counter runs;
    counter_init(&runs);
    jr_job *jobs[6];
    for (int i = 0; i < 6; i++) {
        jobs[i] = submit(p, slow_count_job, &runs);
    }
    CHECK_STATUS(jr_pool_shutdown(p, JR_SHUTDOWN_DRAIN, -1), JR_OK);
    CHECK(counter_get(&runs) == 6);
    for (int i = 0; i < 6; i++) {
        CHECK_STATUS(jr_job_wait(jobs[i], 0), JR_OK);
        jr_job_free(jobs[i]);
    }
    CHECK_STATUS(jr_submit(p, count_job, &runs, NULL, NULL), JR_E_SHUTDOWN);
    jr_job *h = NULL;
    CHECK_STATUS(jr_submit_every(p, MS, count_job, &runs, NULL, &h), JR_E_SHUTDOWN);
    CHECK(h == NULL);
    /* Again: allowed. */
    CHECK_STATUS(jr_pool_shutdown(p, JR_SHUTDOWN_DRAIN, -1), JR_OK);
    CHECK_STATUS(jr_pool_free(p), JR_OK);
    CHECK(counter_get(&runs) == 6);
    counter_destroy(&runs);
}

static void shutdown_cancel_ends_queued_jobs(void) {
    jr_pool *p = make_pool(1, 0);
    blocker b;
    blocker_init(&b, true);
    jr_job *running = start_blocker(p, &b);
    counter runs;
    counter_init(&runs);
    jr_job *queued[5];
    for (int i = 0; i < 5; i++) {
        queued[i] = submit(p, count_job, &runs);
    }
    jr_submit_options o = jr_submit_options_default();
    o.delay_ns = 60 * SEC;
    jr_job *delayed = submit_opts(p, count_job, &runs, &o);

    int64_t t0 = now_ns();
    CHECK_STATUS(jr_pool_shutdown(p, JR_SHUTDOWN_CANCEL, HANG_MS * MS), JR_OK);
    CHECK(now_ns() - t0 < 5 * SEC); /* did not wait for the delayed job */
    CHECK_STATUS(jr_job_wait(running, 0), JR_E_CANCELLED);
    CHECK(atomic_load(&b.saw_cancel) == 1);
    for (int i = 0; i < 5; i++) {
        CHECK_STATUS(jr_job_wait(queued[i], 0), JR_E_CANCELLED);
        CHECK(job_state(queued[i]) == JR_JOB_CANCELLED);
        jr_job_free(queued[i]);
    }
    CHECK_STATUS(jr_job_wait(delayed, 0), JR_E_CANCELLED);
    CHECK(counter_get(&runs) == 0);
    CHECK_STATUS(jr_submit(p, count_job, &runs, NULL, NULL), JR_E_SHUTDOWN);

    jr_stats st = {.size = sizeof st};
    CHECK_STATUS(jr_pool_stats(p, &st), JR_OK);
    CHECK(st.submitted == 7);
    CHECK(st.cancelled == 7);
    CHECK(st.cancelled_before_start == 6);
    CHECK(st.queued == 0 && st.running == 0);

    jr_job_free(running);
    jr_job_free(delayed);
    CHECK_STATUS(jr_pool_free(p), JR_OK);
    counter_destroy(&runs);
    blocker_destroy(&b);
}

/* ----- statistics ------------------------------------------------------------------------------ */

static void pool_stats_add_up(void) {
    jr_pool *p = make_pool(1, 0);
    blocker b;
    blocker_init(&b, false);
    jr_job *jobs[32];
    int n = 0;
    jobs[n++] = start_blocker(p, &b);
    counter runs;
    counter_init(&runs);
    jr_job *to_cancel[4];
    for (int i = 0; i < 4; i++) {
        to_cancel[i] = jobs[n++] = submit(p, count_job, &runs);
    }
    for (int i = 0; i < 10; i++) {
        jobs[n++] = submit(p, count_job, &runs);
    }
    for (int i = 0; i < 3; i++) {
        jobs[n++] = submit(p, failing_job, (void *)(intptr_t)(i + 1));
    }
    for (int i = 0; i < 2; i++) {
        jobs[n++] = submit(p, panicking_job, NULL);
    }
    jr_stats st = {.size = sizeof st};
    CHECK_STATUS(jr_pool_stats(p, &st), JR_OK);
    CHECK(st.submitted == 20);
    CHECK(st.running == 1);
    CHECK(st.queued == 19);
    CHECK(st.submitted ==
          st.succeeded + st.failed + st.panicked + st.cancelled + st.queued + st.running);

    for (int i = 0; i < 4; i++) {
        CHECK_STATUS(jr_job_cancel(to_cancel[i]), JR_OK);
    }
    gate_open(&b.gate);
    for (int i = 0; i < n; i++) {
        jr_job_wait(jobs[i], HANG_MS * MS);
        jr_job_free(jobs[i]);
    }
    st = (jr_stats){.size = sizeof st};
    CHECK_STATUS(jr_pool_stats(p, &st), JR_OK);
    CHECK(st.size == sizeof st);
    CHECK(st.submitted == 20);
    CHECK(st.started == 16);
    CHECK(st.succeeded == 11);
    CHECK(st.failed == 3);
    CHECK(st.panicked == 2);
    CHECK(st.cancelled == 4);
    CHECK(st.cancelled_before_start == 4);
    CHECK(st.queued == 0);
    CHECK(st.running == 0);
    CHECK(st.threads == 1);
    CHECK(st.sleeping <= st.threads);
    CHECK(st.submitted == st.succeeded + st.failed + st.panicked + st.cancelled);
    CHECK(counter_get(&runs) == 10);
    /* Idle now: the one worker goes to sleep (an event the stats show). */
    for (int64_t start = now_ns(); st.sleeping == 0 && now_ns() - start < HANG_MS * MS;) {
        sched_yield();
        st = (jr_stats){.size = sizeof st};
        CHECK_STATUS(jr_pool_stats(p, &st), JR_OK);
    }
    CHECK(st.sleeping == 1);
    CHECK_STATUS(jr_pool_free(p), JR_OK);
    counter_destroy(&runs);
    blocker_destroy(&b);
}

/* ----- tokens ------------------------------------------------------------------------------------ */

static jr_cancel_reason reason_of(const jr_token *t) {
    jr_cancel_reason r = (jr_cancel_reason)-1;
    CHECK_STATUS(jr_token_reason(t, &r), JR_OK);
    return r;
}

static void token_tree_cancel(void) {
    jr_token *root = NULL, *child = NULL, *grandchild = NULL, *other = NULL;
    REQUIRE(jr_token_new(NULL, &root) == JR_OK);
    REQUIRE(jr_token_new(root, &child) == JR_OK);
    REQUIRE(jr_token_new(child, &grandchild) == JR_OK);
    REQUIRE(jr_token_new(root, &other) == JR_OK);
    CHECK(!jr_token_is_cancelled(root));
    CHECK(reason_of(grandchild) == JR_REASON_NONE);

    /* A child's cancel does not reach its parent or siblings. */
    CHECK_STATUS(jr_token_cancel(other), JR_OK);
    CHECK(jr_token_is_cancelled(other));
    CHECK(!jr_token_is_cancelled(root));
    CHECK(!jr_token_is_cancelled(child));

    CHECK_STATUS(jr_token_cancel(root), JR_OK);
    CHECK(jr_token_is_cancelled(root));
    CHECK_STATUS(jr_token_wait(child, HANG_MS * MS), JR_OK);
    CHECK_STATUS(jr_token_wait(grandchild, HANG_MS * MS), JR_OK);
    CHECK(jr_token_is_cancelled(grandchild));
    CHECK(reason_of(root) == JR_REASON_CANCELLED);
    CHECK(reason_of(grandchild) == JR_REASON_CANCELLED);
    /* Cancelling again is fine. */
    CHECK_STATUS(jr_token_cancel(root), JR_OK);
    /* A child made from a cancelled token starts cancelled. */
    jr_token *late = NULL;
    REQUIRE(jr_token_new(child, &late) == JR_OK);
    CHECK(jr_token_is_cancelled(late));
    CHECK_STATUS(jr_token_set_deadline(late, 1 * SEC), JR_E_CANCELLED);

    jr_token *all[] = {root, child, grandchild, other, late};
    for (size_t i = 0; i < 5; i++) {
        CHECK_STATUS(jr_token_free(all[i]), JR_OK);
    }
}

static void token_deadline_and_wait_timeout(void) {
    jr_token *t = NULL;
    REQUIRE(jr_token_new(NULL, &t) == JR_OK);
    int64_t t0 = now_ns();
    CHECK_STATUS(jr_token_wait(t, 20 * MS), JR_E_TIMEOUT);
    CHECK(now_ns() - t0 >= 20 * MS);
    CHECK_STATUS(jr_token_wait(t, 0), JR_E_TIMEOUT);
    CHECK(!jr_token_is_cancelled(t));

    jr_token *child = NULL;
    REQUIRE(jr_token_new(t, &child) == JR_OK);
    /* A later deadline replaces an earlier one. */
    CHECK_STATUS(jr_token_set_deadline(t, 60 * SEC), JR_OK);
    t0 = now_ns();
    CHECK_STATUS(jr_token_set_deadline(t, 30 * MS), JR_OK);
    CHECK_STATUS(jr_token_wait(child, HANG_MS * MS), JR_OK);
    CHECK(now_ns() - t0 >= 30 * MS);
    CHECK(jr_token_is_cancelled(t));
    CHECK(reason_of(t) == JR_REASON_DEADLINE);
    CHECK(reason_of(child) == JR_REASON_DEADLINE);
    /* A cancel after the deadline keeps the first reason. */
    CHECK_STATUS(jr_token_cancel(t), JR_OK);
    CHECK(reason_of(t) == JR_REASON_DEADLINE);
    CHECK_STATUS(jr_token_free(child), JR_OK);
    CHECK_STATUS(jr_token_free(t), JR_OK);

    /* A zero deadline cancels at once. */
    REQUIRE(jr_token_new(NULL, &t) == JR_OK);
    CHECK_STATUS(jr_token_set_deadline(t, 0), JR_OK);
    CHECK_STATUS(jr_token_wait(t, HANG_MS * MS), JR_OK);
    CHECK(reason_of(t) == JR_REASON_DEADLINE);
    CHECK_STATUS(jr_token_free(t), JR_OK);
}

static int32_t reason_job(jr_ctx *ctx, void *arg, void **result) {
    (void)result;
    jr_token *t = jr_ctx_token(ctx);
    if (t == NULL || jr_token_wait(t, HANG_MS * MS) != JR_OK) {
        return 99;
    }
    jr_cancel_reason r = JR_REASON_NONE;
    jr_token_reason(t, &r);
    *(jr_cancel_reason *)arg = r;
    return jr_ctx_is_cancelled(ctx) ? 1 : 98;
}

static void token_cancels_jobs(void) {
    jr_pool *p = make_pool(1, 0);
    blocker b;
    blocker_init(&b, false);
    jr_job *running = start_blocker(p, &b);

    counter runs;
    counter_init(&runs);
    jr_token *t = NULL;
    REQUIRE(jr_token_new(NULL, &t) == JR_OK);
    jr_submit_options o = jr_submit_options_default();
    o.token = t;
    jr_job *queued = submit_opts(p, count_job, &runs, &o);
    CHECK(job_state(queued) == JR_JOB_QUEUED);
    CHECK_STATUS(jr_token_cancel(t), JR_OK);
    /* Ends without running, while the worker is still busy. */
    CHECK_STATUS(jr_job_wait(queued, HANG_MS * MS), JR_E_CANCELLED);
    CHECK(job_state(running) == JR_JOB_RUNNING);

    /* A job submitted with an already-cancelled token is accepted and ends cancelled. */
    jr_job *late = NULL;
    CHECK_STATUS(jr_submit(p, count_job, &runs, &o, &late), JR_OK);
    CHECK_STATUS(jr_job_wait(late, HANG_MS * MS), JR_E_CANCELLED);
    jr_job_free(late);

    /* jr_token_cancel_sync: the queued job has ended when it returns (no wait). */
    jr_token *sync_token = NULL;
    REQUIRE(jr_token_new(NULL, &sync_token) == JR_OK);
    jr_submit_options so = jr_submit_options_default();
    so.token = sync_token;
    jr_job *sync_queued = submit_opts(p, count_job, &runs, &so);
    CHECK(job_state(sync_queued) == JR_JOB_QUEUED);
    CHECK_STATUS(jr_token_cancel_sync(sync_token), JR_OK);
    CHECK_STATUS(jr_job_wait(sync_queued, 0), JR_E_CANCELLED);
    CHECK(jr_token_is_cancelled(sync_token));
    CHECK_STATUS(jr_token_cancel_sync(sync_token), JR_OK); /* again: a no-op */
    CHECK_STATUS(jr_job_free(sync_queued), JR_OK);
    CHECK_STATUS(jr_token_free(sync_token), JR_OK);

    gate_open(&b.gate);
    CHECK_STATUS(wait_free(running), JR_OK);
    CHECK(counter_get(&runs) == 0);
    CHECK_STATUS(jr_job_free(queued), JR_OK);
    CHECK_STATUS(jr_token_free(t), JR_OK);

    /* A running job sees its token's deadline, with the reason. */
    REQUIRE(jr_token_new(NULL, &t) == JR_OK);
    o.token = t;
    jr_cancel_reason seen = JR_REASON_NONE;
    jr_job *job = submit_opts(p, reason_job, &seen, &o);
    CHECK_STATUS(jr_token_set_deadline(t, 10 * MS), JR_OK);
    CHECK_STATUS(wait_free(job), JR_E_CANCELLED);
    CHECK(seen == JR_REASON_DEADLINE);
    CHECK_STATUS(jr_token_free(t), JR_OK);

    CHECK_STATUS(jr_pool_free(p), JR_OK);
    counter_destroy(&runs);
    blocker_destroy(&b);
}

/* ----- semaphores ------------------------------------------------------------------------------ */

static uint64_t available(jr_sem *s) {
    uint64_t n = UINT64_MAX;
    CHECK_STATUS(jr_sem_available(s, &n), JR_OK);
    return n;
}

typedef struct {
    jr_sem *sem;
    jr_token *token;
    int64_t timeout_ns;
    jr_status status;
    counter done;
} acquirer;

static void *acquire_thread(void *arg) {
    acquirer *a = arg;
    a->status = jr_sem_acquire(a->sem, 1, a->timeout_ns, a->token);
    counter_add(&a->done, 1);
    return NULL;
}

static void semaphore_basics(void) {
    jr_sem *s = NULL;
    REQUIRE(jr_sem_new(3, &s) == JR_OK);
    CHECK(available(s) == 3);
    CHECK_STATUS(jr_sem_acquire(s, 2, -1, NULL), JR_OK);
    CHECK(available(s) == 1);
    CHECK_STATUS(jr_sem_try_acquire(s, 2), JR_E_FULL);
    CHECK(available(s) == 1);
    CHECK_STATUS(jr_sem_try_acquire(s, 1), JR_OK);
    CHECK(available(s) == 0);
    CHECK_STATUS(jr_sem_try_acquire(s, 1), JR_E_FULL);

    int64_t t0 = now_ns();
    CHECK_STATUS(jr_sem_acquire(s, 1, 20 * MS, NULL), JR_E_TIMEOUT);
    CHECK(now_ns() - t0 >= 20 * MS);
    CHECK_STATUS(jr_sem_acquire(s, 1, 0, NULL), JR_E_TIMEOUT);

    /* Cancelled while waiting. */
    jr_token *t = NULL;
    REQUIRE(jr_token_new(NULL, &t) == JR_OK);
    acquirer a = {.sem = s, .token = t, .timeout_ns = -1, .status = JR_E_INTERNAL};
    counter_init(&a.done);
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, acquire_thread, &a) == 0);
    CHECK_STATUS(jr_token_cancel(t), JR_OK);
    CHECK(counter_wait(&a.done, 1, HANG_MS));
    pthread_join(th, NULL);
    CHECK_STATUS(a.status, JR_E_CANCELLED);
    CHECK_STATUS(jr_token_free(t), JR_OK);

    /* With both a timeout and a token: the token's deadline comes first. */
    REQUIRE(jr_token_new(NULL, &t) == JR_OK);
    CHECK_STATUS(jr_token_set_deadline(t, 10 * MS), JR_OK);
    CHECK_STATUS(jr_sem_acquire(s, 1, HANG_MS * MS, t), JR_E_CANCELLED);
    CHECK_STATUS(jr_token_free(t), JR_OK);

    /* A waiter gets the permits released by another thread. */
    acquirer w = {.sem = s, .token = NULL, .timeout_ns = HANG_MS * MS, .status = JR_E_INTERNAL};
    counter_init(&w.done);
    REQUIRE(pthread_create(&th, NULL, acquire_thread, &w) == 0);
    CHECK_STATUS(jr_sem_release(s, 1), JR_OK);
    CHECK(counter_wait(&w.done, 1, HANG_MS));
    pthread_join(th, NULL);
    CHECK_STATUS(w.status, JR_OK);
    CHECK(available(s) == 0);
    CHECK_STATUS(jr_sem_release(s, 3), JR_OK);
    CHECK(available(s) == 3);
    /* More than were taken: refused, nothing released. */
    CHECK_STATUS(jr_sem_release(s, 1), JR_E_INVALID_ARG);
    CHECK(available(s) == 3);
    CHECK_STATUS(jr_sem_free(s), JR_OK);
    counter_destroy(&a.done);
    counter_destroy(&w.done);
}

typedef struct {
    atomic_long current;
    atomic_long high;
    atomic_long ran;
    long weight_of_id[256];
} hwm;

static void hwm_enter(hwm *h, long weight) {
    long now = atomic_fetch_add(&h->current, weight) + weight;
    long high = atomic_load(&h->high);
    while (now > high && !atomic_compare_exchange_weak(&h->high, &high, now)) {
    }
}

static void hwm_leave(hwm *h, long weight) {
    atomic_fetch_sub(&h->current, weight);
    atomic_fetch_add(&h->ran, 1);
}

typedef struct {
    hwm *h;
    long weight;
} gated_arg;

static int32_t gated_job(jr_ctx *ctx, void *arg, void **result) {
    (void)ctx;
    (void)result;
    gated_arg *g = arg;
    hwm_enter(g->h, g->weight);
    sleep_ms(1);
    hwm_leave(g->h, g->weight);
    return 0;
}

static void semaphore_gated_jobs_never_exceed_permits(void) {
    enum { N = 200 };
    jr_pool *p = make_pool(4, 0);
    jr_sem *s = NULL;
    REQUIRE(jr_sem_new(3, &s) == JR_OK);
    static hwm h;
    atomic_init(&h.current, 0);
    atomic_init(&h.high, 0);
    atomic_init(&h.ran, 0);
    static gated_arg args[N];
    static jr_job *jobs[N];
    for (int i = 0; i < N; i++) {
        /* Weighted: every fifth job takes 2 of the 3 permits. */
        args[i] = (gated_arg){.h = &h, .weight = i % 5 == 0 ? 2 : 1};
        jr_submit_options o = jr_submit_options_default();
        o.sem = s;
        o.permits = (uint64_t)args[i].weight;
        jobs[i] = submit_opts(p, gated_job, &args[i], &o);
    }
    for (int i = 0; i < N; i++) {
        CHECK_STATUS(wait_free(jobs[i]), JR_OK);
    }
    CHECK(atomic_load(&h.ran) == N);
    CHECK(atomic_load(&h.high) <= 3);
    CHECK(atomic_load(&h.high) >= 2); /* they did run side by side */
    CHECK(available(s) == 3);         /* every permit returned */

    /* Permits return however the job ends. */
    jr_submit_options o = jr_submit_options_default();
    o.sem = s;
    o.permits = 3;
    CHECK_STATUS(wait_free(submit_opts(p, failing_job, (void *)(intptr_t)1, &o)), JR_E_JOB_FAILED);
    CHECK_STATUS(wait_free(submit_opts(p, panicking_job, NULL, &o)), JR_E_PANICKED);
    CHECK(available(s) == 3);

    CHECK_STATUS(jr_sem_free(s), JR_OK);
    CHECK_STATUS(jr_pool_free(p), JR_OK);
}

/* ----- groups ------------------------------------------------------------------------------------ */

static jr_group *make_group(jr_pool *p, uint64_t limit, int fail_fast, jr_token *parent) {
    jr_group_options o = jr_group_options_default();
    o.limit = limit;
    o.fail_fast = fail_fast;
    o.token = parent;
    jr_group *g = NULL;
    REQUIRE(jr_group_new(p, &o, &g) == JR_OK && g != NULL);
    return g;
}

static void group_fan_out_fan_in(void) {
    enum { N = 1000 };
    jr_pool *p = make_pool(4, 0);
    jr_group_options d = jr_group_options_default();
    CHECK(d.size == sizeof d && d.limit == 0 && d.fail_fast == 0 && d.token == NULL);
    jr_group *g = make_group(p, 0, 0, NULL);
    jr_submit_options o = jr_submit_options_default();
    o.group = g;
    for (intptr_t i = 0; i < N; i++) {
        CHECK_STATUS(jr_submit(p, echo_job, (void *)(i + 1), &o, NULL), JR_OK);
    }
    /* A member's handle cannot take the result: jr_group_next's handle does. */
    jr_job *member = NULL;
    CHECK_STATUS(jr_submit(p, echo_job, (void *)(intptr_t)(N + 1), &o, &member), JR_OK);
    CHECK_STATUS(jr_job_wait(member, HANG_MS * MS), JR_OK);
    void *r = NULL;
    CHECK_STATUS(jr_job_take_result(member, &r), JR_E_INVALID_ARG);
    CHECK_STATUS(jr_job_free(member), JR_OK);
    CHECK_STATUS(jr_group_close(g), JR_OK);
    CHECK_STATUS(jr_submit(p, echo_job, NULL, &o, NULL), JR_E_CLOSED);

    static int seen[N + 2];
    memset(seen, 0, sizeof seen);
    int got = 0;
    for (;;) {
        jr_job *j = NULL;
        jr_status s = jr_group_next(g, HANG_MS * MS, &j);
        if (s == JR_E_CLOSED) {
            break;
        }
        CHECK_STATUS(s, JR_OK);
        if (s != JR_OK) {
            break;
        }
        CHECK_STATUS(jr_job_wait(j, 0), JR_OK);
        void *res = NULL;
        CHECK_STATUS(jr_job_take_result(j, &res), JR_OK);
        intptr_t v = (intptr_t)res;
        CHECK(v >= 1 && v <= N + 1);
        if (v >= 1 && v <= N + 1) {
            seen[v]++;
        }
        got++;
        jr_job_free(j);
    }
    CHECK(got == N + 1);
    for (int i = 1; i <= N + 1; i++) {
        if (seen[i] != 1) {
            fprintf(stderr, "job %d seen %d times\n", i, seen[i]);
            CHECK(seen[i] == 1);
            break;
        }
    }
    jr_job *j = NULL;
    CHECK_STATUS(jr_group_next(g, 0, &j), JR_E_CLOSED);
    CHECK_STATUS(jr_group_wait(g, -1), JR_OK);
    jr_job *first = (jr_job *)&j; /* a sentinel: must become NULL */
    CHECK_STATUS(jr_group_first_error(g, &first), JR_OK);
    CHECK(first == NULL);
    CHECK_STATUS(jr_group_free(g), JR_OK);
    CHECK_STATUS(jr_pool_free(p), JR_OK);
}

static void group_next_times_out_while_open(void) {
    jr_pool *p = make_pool(1, 0);
    jr_group *g = make_group(p, 0, 0, NULL);
    jr_job *j = NULL;
    int64_t t0 = now_ns();
    CHECK_STATUS(jr_group_next(g, 20 * MS, &j), JR_E_TIMEOUT);
    CHECK(now_ns() - t0 >= 20 * MS);
    CHECK_STATUS(jr_group_wait(g, 0), JR_OK); /* no job: nothing to wait for */
    CHECK_STATUS(jr_group_close(g), JR_OK);
    CHECK_STATUS(jr_group_next(g, HANG_MS * MS, &j), JR_E_CLOSED);
    CHECK_STATUS(jr_group_free(g), JR_OK);
    CHECK_STATUS(jr_pool_free(p), JR_OK);
}

static void group_wait_reports_first_failure(void) {
    jr_pool *p = make_pool(2, 0);
    jr_group *g = make_group(p, 0, 0, NULL);
    jr_submit_options o = jr_submit_options_default();
    o.group = g;
    counter runs;
    counter_init(&runs);
    CHECK_STATUS(jr_submit(p, count_job, &runs, &o, NULL), JR_OK);
    CHECK_STATUS(jr_submit(p, failing_job, (void *)(intptr_t)7, &o, NULL), JR_OK);
    CHECK_STATUS(jr_submit(p, count_job, &runs, &o, NULL), JR_OK);
    CHECK_STATUS(jr_submit(p, count_job, &runs, &o, NULL), JR_OK);
    CHECK_STATUS(jr_group_wait(g, HANG_MS * MS), JR_E_JOB_FAILED);
    /* Not fail-fast: every job ran. */
    CHECK(counter_get(&runs) == 3);
    jr_job *first = NULL;
    CHECK_STATUS(jr_group_first_error(g, &first), JR_OK);
    REQUIRE(first != NULL);
    CHECK_STATUS(jr_job_wait(first, 0), JR_E_JOB_FAILED);
    CHECK(job_state(first) == JR_JOB_FAILED);
    int32_t code = 0;
    CHECK_STATUS(jr_job_error_code(first, &code), JR_OK);
    CHECK(code == 7);
    const char *msg = jr_job_error_message(first);
    CHECK(msg != NULL && strcmp(msg, "failed with 7") == 0);
    CHECK_STATUS(jr_job_free(first), JR_OK);
    /* Every later wait says the same, even after later failures: the first one stays. */
    CHECK_STATUS(jr_group_wait(g, 0), JR_E_JOB_FAILED);
    CHECK_STATUS(jr_submit(p, failing_job, (void *)(intptr_t)8, &o, NULL), JR_OK);
    CHECK_STATUS(jr_submit(p, panicking_job, NULL, &o, NULL), JR_OK);
    CHECK_STATUS(jr_group_wait(g, HANG_MS * MS), JR_E_JOB_FAILED);
    first = NULL;
    CHECK_STATUS(jr_group_first_error(g, &first), JR_OK);
    REQUIRE(first != NULL);
    CHECK_STATUS(jr_job_error_code(first, &code), JR_OK);
    CHECK(code == 7);
    msg = jr_job_error_message(first);
    CHECK(msg != NULL && strcmp(msg, "failed with 7") == 0);
    CHECK_STATUS(jr_job_free(first), JR_OK);
    CHECK_STATUS(jr_group_free(g), JR_OK);

    /* A panic (the only failure). */
    g = make_group(p, 0, 0, NULL);
    o.group = g;
    CHECK_STATUS(jr_submit(p, count_job, &runs, &o, NULL), JR_OK);
    CHECK_STATUS(jr_submit(p, panicking_job, NULL, &o, NULL), JR_OK);
    CHECK_STATUS(jr_group_wait(g, HANG_MS * MS), JR_E_PANICKED);
    first = NULL;
    CHECK_STATUS(jr_group_first_error(g, &first), JR_OK);
    REQUIRE(first != NULL);
    CHECK_STATUS(jr_job_wait(first, 0), JR_E_PANICKED);
    CHECK(job_state(first) == JR_JOB_PANICKED);
    msg = jr_job_error_message(first);
    CHECK(msg != NULL && strcmp(msg, "oops: out of bananas") == 0);
    CHECK_STATUS(jr_job_free(first), JR_OK);
    CHECK_STATUS(jr_group_free(g), JR_OK);

    /* Only cancellations: JR_E_CANCELLED, and the first error is a cancelled job. */
    g = make_group(p, 0, 0, NULL);
    o.group = g;
    CHECK_STATUS(jr_group_cancel(g), JR_OK);
    long before = counter_get(&runs);
    CHECK_STATUS(jr_submit(p, count_job, &runs, &o, NULL), JR_OK);
    CHECK_STATUS(jr_group_wait(g, HANG_MS * MS), JR_E_CANCELLED);
    CHECK(counter_get(&runs) == before);
    first = NULL;
    CHECK_STATUS(jr_group_first_error(g, &first), JR_OK);
    CHECK(first != NULL);
    if (first != NULL) {
        CHECK_STATUS(jr_job_wait(first, 0), JR_E_CANCELLED);
        CHECK_STATUS(jr_job_free(first), JR_OK);
    }
    CHECK_STATUS(jr_group_free(g), JR_OK);
    CHECK_STATUS(jr_pool_free(p), JR_OK);
    counter_destroy(&runs);
}

typedef struct {
    counter started;
    atomic_int saw_reason;
} ff_state;

static int32_t ff_sibling(jr_ctx *ctx, void *arg, void **result) {
    (void)ctx;
    (void)result;
    counter_add(&((ff_state *)arg)->started, 1);
    return 0;
}

/* Runs until told to stop; records why. */
static int32_t ff_runner(jr_ctx *ctx, void *arg, void **result) {
    (void)result;
    ff_state *st = arg;
    counter_add(&st->started, 1);
    jr_token *t = jr_ctx_token(ctx);
    if (jr_token_wait(t, HANG_MS * MS) != JR_OK) {
        return 99;
    }
    jr_cancel_reason r = JR_REASON_NONE;
    jr_token_reason(t, &r);
    atomic_store(&st->saw_reason, (int)r);
    return 1;
}

static void group_fail_fast_stops_siblings(void) {
    jr_pool *p = make_pool(2, 0);
    ff_state st;
    counter_init(&st.started);
    atomic_init(&st.saw_reason, -1);
    jr_group *g = make_group(p, 1, 1, NULL);
    jr_submit_options o = jr_submit_options_default();
    o.group = g;
    CHECK_STATUS(jr_submit(p, failing_job, (void *)(intptr_t)5, &o, NULL), JR_OK);
    for (int i = 0; i < 20; i++) {
        CHECK_STATUS(jr_submit(p, ff_sibling, &st, &o, NULL), JR_OK);
    }
    CHECK_STATUS(jr_group_close(g), JR_OK);
    CHECK_STATUS(jr_group_wait(g, HANG_MS * MS), JR_E_JOB_FAILED);
    CHECK(counter_get(&st.started) == 0);
    int failed = 0, cancelled = 0;
    jr_job *j = NULL;
    while (jr_group_next(g, HANG_MS * MS, &j) == JR_OK) {
        jr_status s = jr_job_wait(j, 0);
        failed += s == JR_E_JOB_FAILED;
        cancelled += s == JR_E_CANCELLED;
        jr_job_free(j);
    }
    /* jr_group_next gives the failed job too (see group_next_gives_failed_jobs). */
    CHECK(failed == 1);
    CHECK(cancelled == 20);
    jr_job *first = NULL;
    CHECK_STATUS(jr_group_first_error(g, &first), JR_OK);
    int32_t code = 0;
    CHECK_STATUS(jr_job_error_code(first, &code), JR_OK);
    CHECK(code == 5);
    jr_job_free(first);
    /* Refused after close, whatever happened. */
    CHECK_STATUS(jr_submit(p, ff_sibling, &st, &o, NULL), JR_E_CLOSED);
    CHECK_STATUS(jr_group_free(g), JR_OK);

    /* A running sibling is told, with the reason. */
    g = make_group(p, 0, 1, NULL);
    o.group = g;
    CHECK_STATUS(jr_submit(p, ff_runner, &st, &o, NULL), JR_OK);
    REQUIRE(counter_wait(&st.started, 1, HANG_MS));
    CHECK_STATUS(jr_submit(p, failing_job, (void *)(intptr_t)6, &o, NULL), JR_OK);
    CHECK_STATUS(jr_group_wait(g, HANG_MS * MS), JR_E_JOB_FAILED);
    CHECK(atomic_load(&st.saw_reason) == JR_REASON_SIBLING_FAILED);
    CHECK_STATUS(jr_group_free(g), JR_OK);

    /* A parent token's cancel reaches the group's jobs. */
    jr_token *parent = NULL;
    REQUIRE(jr_token_new(NULL, &parent) == JR_OK);
    g = make_group(p, 0, 0, parent);
    o.group = g;
    atomic_store(&st.saw_reason, -1);
    long before = counter_get(&st.started);
    CHECK_STATUS(jr_submit(p, ff_runner, &st, &o, NULL), JR_OK);
    REQUIRE(counter_wait(&st.started, before + 1, HANG_MS));
    CHECK_STATUS(jr_token_cancel(parent), JR_OK);
    CHECK_STATUS(jr_group_wait(g, HANG_MS * MS), JR_E_CANCELLED);
    CHECK(atomic_load(&st.saw_reason) == JR_REASON_CANCELLED);
    CHECK_STATUS(jr_group_free(g), JR_OK);
    CHECK_STATUS(jr_token_free(parent), JR_OK);

    CHECK_STATUS(jr_pool_free(p), JR_OK);
    counter_destroy(&st.started);
}

static void group_limit_respected(void) {
    enum { N = 100 };
    jr_pool *p = make_pool(4, 0);
    jr_group *g = make_group(p, 2, 0, NULL);
    static hwm h;
    atomic_init(&h.current, 0);
    atomic_init(&h.high, 0);
    atomic_init(&h.ran, 0);
    static gated_arg args[N];
    jr_submit_options o = jr_submit_options_default();
    o.group = g;
    for (int i = 0; i < N; i++) {
        args[i] = (gated_arg){.h = &h, .weight = 1};
        CHECK_STATUS(jr_submit(p, gated_job, &args[i], &o, NULL), JR_OK);
    }
    CHECK_STATUS(jr_group_wait(g, HANG_MS * MS), JR_OK);
    CHECK(atomic_load(&h.ran) == N);
    CHECK(atomic_load(&h.high) <= 2);
    CHECK(atomic_load(&h.high) == 2);
    /* A semaphore on a limited group's job is refused. */
    jr_sem *s = NULL;
    REQUIRE(jr_sem_new(1, &s) == JR_OK);
    o.sem = s;
    CHECK_STATUS(jr_submit(p, nop_job, NULL, &o, NULL), JR_E_INVALID_ARG);
    CHECK_STATUS(jr_sem_free(s), JR_OK);
    CHECK_STATUS(jr_group_free(g), JR_OK);
    CHECK_STATUS(jr_pool_free(p), JR_OK);
}

/* jr_group_next must give every job of the group, exactly once: the failed ones too
 * ("Gives the group's next job to end, in completion order ... Each job is given once"),
 * whether or not jr_group_wait was called first. */
static void group_next_gives_failed_jobs(void) {
    jr_pool *p = make_pool(2, 0);
    for (int wait_first = 0; wait_first < 2; wait_first++) {
        jr_group *g = make_group(p, 0, 0, NULL);
        jr_submit_options o = jr_submit_options_default();
        o.group = g;
        CHECK_STATUS(jr_submit(p, failing_job, (void *)(intptr_t)4, &o, NULL), JR_OK);
        CHECK_STATUS(jr_submit(p, panicking_job, NULL, &o, NULL), JR_OK);
        for (intptr_t i = 1; i <= 3; i++) {
            CHECK_STATUS(jr_submit(p, echo_job, (void *)i, &o, NULL), JR_OK);
        }
        CHECK_STATUS(jr_group_close(g), JR_OK);
        if (wait_first) {
            /* The failing and the panicking job race on two workers: either is first. */
            jr_status first = jr_group_wait(g, HANG_MS * MS);
            CHECK(first == JR_E_JOB_FAILED || first == JR_E_PANICKED);
        }
        int ok = 0, failed = 0, panicked = 0, other = 0;
        jr_job *j = NULL;
        jr_status s;
        while ((s = jr_group_next(g, HANG_MS * MS, &j)) == JR_OK) {
            switch (jr_job_wait(j, 0)) {
            case JR_OK: ok++; break;
            case JR_E_JOB_FAILED: failed++; break;
            case JR_E_PANICKED: panicked++; break;
            default: other++; break;
            }
            jr_job_free(j);
        }
        CHECK_STATUS(s, JR_E_CLOSED);
        if (ok != 3 || failed != 1 || panicked != 1 || other != 0) {
            fprintf(stderr,
                    "jr_group_next (wait first: %d) gave %d ok, %d failed, %d panicked, %d other;"
                    " want 3, 1, 1, 0\n",
                    wait_first, ok, failed, panicked, other);
            CHECK(0);
        }
        CHECK_STATUS(jr_group_free(g), JR_OK);
    }
    CHECK_STATUS(jr_pool_free(p), JR_OK);
}

/* A group waited for from inside a job runs its queued jobs meanwhile: on a 1-thread
 * pool, the group's jobs can only run that way. `timeout_ns` is the inner wait's. */
static int64_t inner_timeout_ns;

static int32_t group_in_job(jr_ctx *ctx, void *arg, void **result) {
    (void)arg;
    jr_pool *p = jr_ctx_pool(ctx);
    jr_group *g = NULL;
    if (jr_group_new(p, NULL, &g) != JR_OK) {
        return 1;
    }
    jr_submit_options o = jr_submit_options_default();
    o.group = g;
    for (intptr_t i = 0; i < 10; i++) {
        if (jr_submit(p, echo_job, (void *)i, &o, NULL) != JR_OK) {
            return 2;
        }
    }
    jr_status s = jr_group_wait(g, inner_timeout_ns);
    if (s != JR_OK) {
        fprintf(stderr, "jr_group_wait(timeout %lld ns) inside a job: %s\n",
                (long long)inner_timeout_ns, jr_status_str(s));
    }
    jr_group_close(g);
    intptr_t sum = 0;
    jr_job *j = NULL;
    while (jr_group_next(g, s == JR_OK ? inner_timeout_ns : 0, &j) == JR_OK) {
        void *r = NULL;
        jr_job_take_result(j, &r);
        sum += (intptr_t)r;
        jr_job_free(j);
    }
    jr_group_cancel(g); /* if the wait timed out: the jobs end without running */
    jr_group_free(g);
    *result = (void *)sum;
    return s == JR_OK ? 0 : 3;
}

static void run_group_in_job(int64_t timeout_ns) {
    inner_timeout_ns = timeout_ns;
    jr_pool *p = make_pool(1, 0);
    jr_job *job = submit(p, group_in_job, NULL);
    CHECK_STATUS(jr_job_wait(job, 30 * SEC), JR_OK);
    void *r = NULL;
    CHECK_STATUS(jr_job_take_result(job, &r), JR_OK);
    CHECK((intptr_t)r == 45);
    jr_job_free(job);
    CHECK_STATUS(jr_pool_free(p), JR_OK);
}

static void group_wait_inside_job_one_thread(void) { run_group_in_job(-1); }

/* The same with a timeout on the inner wait: the doc promises the worker runs the
 * group's queued jobs "while it waits", timeout or not. */
static void group_wait_with_timeout_inside_job_one_thread(void) { run_group_in_job(2 * SEC); }

/* jr_job_wait with a timeout from inside a job, on a 1-thread pool: "Inside a job, a job
 * not yet started is run inline", so the child runs and the wait succeeds. */
static int32_t wait_child_with_timeout_job(jr_ctx *ctx, void *arg, void **result) {
    (void)arg;
    jr_job *child = NULL;
    if (jr_submit(jr_ctx_pool(ctx), echo_job, (void *)(intptr_t)77, NULL, &child) != JR_OK) {
        return 1;
    }
    jr_status s = jr_job_wait(child, 2 * SEC);
    if (s != JR_OK) {
        fprintf(stderr, "jr_job_wait(child, 2 s) inside a job on 1 thread: %s\n",
                jr_status_str(s));
        jr_job_cancel(child);
    }
    void *r = NULL;
    jr_job_take_result(child, &r);
    jr_job_free(child);
    *result = r;
    return s == JR_OK ? 0 : 2;
}

static void job_wait_with_timeout_inside_job_one_thread(void) {
    jr_pool *p = make_pool(1, 0);
    jr_job *job = submit(p, wait_child_with_timeout_job, NULL);
    CHECK_STATUS(jr_job_wait(job, 30 * SEC), JR_OK);
    void *r = NULL;
    jr_job_take_result(job, &r);
    CHECK((intptr_t)r == 77);
    jr_job_free(job);
    CHECK_STATUS(jr_pool_free(p), JR_OK);
}

/* ----- the global pool ------------------------------------------------------------------------ */

/* ----- jr_last_error_message --------------------------------------------------------------------- */

static bool contains(const char *haystack, const char *needle) {
    if (haystack == NULL || strstr(haystack, needle) == NULL) {
        fprintf(stderr, "  \"%s\" does not contain \"%s\"\n", haystack ? haystack : "(null)",
                needle);
        return false;
    }
    return true;
}

static void *other_thread_last_error(void *arg) {
    (void)arg;
    /* Nothing failed on this thread yet. */
    CHECK(strcmp(jr_last_error_message(), "") == 0);
    CHECK_STATUS(jr_sem_new(0, NULL), JR_E_INVALID_ARG);
    CHECK(contains(jr_last_error_message(), "permits is 0"));
    return NULL;
}

static void last_error_message_names_the_argument(void) {
    jr_pool *p = make_pool(1, 0);
    jr_token *t = NULL;
    REQUIRE(jr_token_new(NULL, &t) == JR_OK);

    CHECK_STATUS(jr_submit(NULL, nop_job, NULL, NULL, NULL), JR_E_INVALID_ARG);
    CHECK(contains(jr_last_error_message(), "a NULL jr_pool handle"));
    CHECK_STATUS(jr_submit((jr_pool *)(void *)t, nop_job, NULL, NULL, NULL), JR_E_INVALID_ARG);
    CHECK(contains(jr_last_error_message(), "not a live jr_pool handle: a jr_token handle"));
    CHECK_STATUS(jr_submit(p, NULL, NULL, NULL, NULL), JR_E_INVALID_ARG);
    CHECK(contains(jr_last_error_message(), "fn is NULL"));

    jr_sem *sem = NULL;
    REQUIRE(jr_sem_new(2, &sem) == JR_OK);
    jr_submit_options o = jr_submit_options_default();
    o.sem = sem;
    o.permits = 3;
    CHECK_STATUS(jr_submit(p, nop_job, NULL, &o, NULL), JR_E_INVALID_ARG);
    CHECK(contains(jr_last_error_message(), "permits is 3"));
    o.size = 0;
    CHECK_STATUS(jr_submit(p, nop_job, NULL, &o, NULL), JR_E_INVALID_ARG);
    CHECK(contains(jr_last_error_message(), "size field is 0"));
    CHECK_STATUS(jr_pool_shutdown(p, 7, 0), JR_E_INVALID_ARG);
    CHECK(contains(jr_last_error_message(), "mode 7"));
    CHECK_STATUS(jr_sem_acquire(sem, 5, 0, NULL), JR_E_INVALID_ARG);
    CHECK(contains(jr_last_error_message(), "5 permits requested from a semaphore of 2"));

    /* A success leaves the last failure's detail alone. */
    CHECK_STATUS(jr_submit(p, nop_job, NULL, NULL, NULL), JR_OK);
    CHECK(contains(jr_last_error_message(), "5 permits requested"));
    /* A failure without a detail of its own leaves the status's text. */
    jr_job *j = NULL;
    CHECK_STATUS(jr_submit(p, failing_job, (void *)(intptr_t)7, NULL, &j), JR_OK);
    CHECK_STATUS(jr_job_wait(j, HANG_MS * MS), JR_E_JOB_FAILED);
    CHECK(strcmp(jr_last_error_message(), jr_status_str(JR_E_JOB_FAILED)) == 0);
    CHECK_STATUS(jr_job_free(j), JR_OK);

    /* Each thread has its own. */
    pthread_t other;
    REQUIRE(pthread_create(&other, NULL, other_thread_last_error, NULL) == 0);
    pthread_join(other, NULL);
    CHECK(strcmp(jr_last_error_message(), jr_status_str(JR_E_JOB_FAILED)) == 0);

    CHECK_STATUS(jr_sem_free(sem), JR_OK);
    CHECK_STATUS(jr_token_free(t), JR_OK);
    CHECK_STATUS(jr_pool_free(p), JR_OK);
}

static void global_pool_works_and_is_borrowed(void) {
    jr_pool *g = jr_pool_global();
    REQUIRE(g != NULL);
    CHECK(jr_pool_global() == g);
    int arg = 8;
    jr_job *job = submit(g, double_job, &arg);
    CHECK_STATUS(jr_job_wait(job, HANG_MS * MS), JR_OK);
    void *r = NULL;
    CHECK_STATUS(jr_job_take_result(job, &r), JR_OK);
    CHECK(r != NULL && *(int *)r == 16);
    free(r);
    jr_job_free(job);
    CHECK_STATUS(jr_pool_free(g), JR_E_INVALID_ARG);
    /* Still works. */
    counter runs;
    counter_init(&runs);
    CHECK_STATUS(wait_free(submit(g, count_job, &runs)), JR_OK);
    CHECK(counter_get(&runs) == 1);
    counter_destroy(&runs);
}

int main(void) {
    RUN(status_strings_name_every_status);
    RUN(version_matches_header);
    RUN(pool_options_default_and_create_free);
    RUN(pool_thread_hooks_run_once_per_worker);
    RUN(pool_add_thread_hooks_to_a_running_pool);
    RUN(pool_remove_thread_hooks_stops_every_call);
    RUN(pool_remove_thread_hooks_waits_for_calls_in_progress);
    RUN(pool_remove_thread_hooks_from_inside_a_hook);
    RUN(pool_park_hook_runs_as_each_worker_goes_to_sleep);
    RUN(pool_add_park_hook_to_a_running_pool_until_removed);
    RUN(chan_fifo_try_close_and_free);
    RUN(chan_recv_ends_on_cancel);
    RUN(chan_producer_and_consumer_jobs_on_one_thread);
    RUN(stream_items_in_order_then_closed);
    RUN(stream_failure_comes_after_the_items);
    RUN(stream_free_mid_run_stops_the_producer);
    RUN(stream_cancel_ends_after_the_buffered_items);
    RUN(stream_timed_read_times_out);
    RUN(stream_reader_job_on_one_thread);
    RUN(wait_any_each_kind_and_timeout);
    RUN(wait_any_wakes_inside_a_job_and_outside);
    RUN(submit_wait_take_result);
    RUN(job_error_code_and_message);
    RUN(job_panic_becomes_panicked);
    RUN(job_state_transitions);
    RUN(job_cancel_queued_vs_running);
    RUN(job_on_done_reports_each_end_once);
    RUN(nested_submit_wait_on_one_thread);
    RUN(ctx_run_queued_runs_ready_jobs_of_its_function);
    RUN(bounded_queue_full_and_timeout);
    RUN(delayed_job_waits_its_delay);
    RUN(periodic_job_ticks_and_stops_itself);
    RUN(shutdown_drain_runs_queued_jobs);
    RUN(shutdown_cancel_ends_queued_jobs);
    RUN(pool_stats_add_up);
    RUN(token_tree_cancel);
    RUN(token_deadline_and_wait_timeout);
    RUN(token_cancels_jobs);
    RUN(semaphore_basics);
    RUN(semaphore_gated_jobs_never_exceed_permits);
    RUN(group_fan_out_fan_in);
    RUN(group_next_times_out_while_open);
    RUN(group_wait_reports_first_failure);
    RUN(group_fail_fast_stops_siblings);
    RUN(group_limit_respected);
    RUN(group_next_gives_failed_jobs);
    RUN(group_wait_inside_job_one_thread);
    RUN(group_wait_with_timeout_inside_job_one_thread);
    RUN(job_wait_with_timeout_inside_job_one_thread);
    RUN(global_pool_works_and_is_borrowed);
    RUN(last_error_message_names_the_argument);
    return jr_test_report();
}
