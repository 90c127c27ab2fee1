/*
 * Log ingestion in C: a generator (jr_stream), a pipeline (jr_pipeline) and a batcher
 * that selects with a timeout (jr_wait_any). The scenario of examples/log_ingest.rs.
 *
 * Run 1 reads 20,000 log lines. The generator, a stream's producer job, makes each line
 * (malloc'd) and sends it on the channel it is lent; it pauses 300 ms after line 10,250,
 * a quiet moment in which the batcher's timer must fire. A feeder job reads the stream
 * (jr_stream_next) and pushes into the pipeline, whose stages run as jobs: `parse` (4 at
 * once, ordered) turns a line into a record in place, `filter` (2 at once, ordered)
 * drops INFO records of fast requests (the pipeline frees them with its item_free). The
 * main thread is the batcher: it flushes a batch at 1,000 records, or 100 ms after the
 * first record of the pending batch, or at the end, waiting with jr_wait_any over the
 * pipeline's output and a stop token with the time left as its timeout, then reading
 * with jr_pipeline_next(..., 0), and sends each flushed batch to a writer job over a
 * jr_chan of 2 (the sink). It checks the records against a sequential filter, the
 * flushes, and that every item malloc'd was freed exactly once.
 *
 * Run 2 is the same over an endless generator, stopped by Ctrl-C: a SIGINT handler calls
 * jr_token_cancel (async-signal-safe) on the stop token, the parent of the generator's
 * and the pipeline's tokens. So that it runs unattended, the batcher raises SIGINT after
 * its 3rd flush (`--wait`: press Ctrl-C yourself). It then flushes, waits for the feeder,
 * frees the pipeline (which waits until none of its stages runs) and the stream, and
 * checks that the generator ended cancelled and nothing leaked.
 *
 * Build and run: make demo (or: cc -Iinclude examples/c/log_ingest.c
 * target/release/libjobrunner.a -lpthread -ldl -lm).
 */
#define _POSIX_C_SOURCE 200809L
#define EXAMPLE_NAME "log_ingest"

#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

#include "example.h"

#define LINES 20000
#define PAUSE_AFTER 10250
#define PAUSE_MS 300
#define BATCH 1000
#define FLUSH_EVERY_NS (100 * MS)
#define INTERRUPT_AFTER 3
#define PATIENCE_NS (10000 * MS)

enum level { INFO, WARN, ERROR };

/* A line, then (parsed in place) its record: one allocation travels the pipeline. */
typedef struct {
    bool parsed;
    char text[64];
    uint64_t seq;
    enum level level;
    unsigned ms;
} item;

static atomic_long made, freed;

static item *new_line(uint64_t i) {
    item *it = malloc(sizeof *it);
    ENSURE(it != NULL, "out of memory");
    const char *level = i % 50 == 0 ? "ERROR" : i % 10 == 0 ? "WARN" : "INFO";
    snprintf(it->text, sizeof it->text, "svc-%u %s request %llu took %u ms", (unsigned)(i % 7),
             level, (unsigned long long)i, (unsigned)((i * 37) % 500));
    it->parsed = false;
    atomic_fetch_add(&made, 1);
    return it;
}

/* Every item's destructor: the pipeline's and the stream's item_free, and ours. */
static void free_item(void *p) {
    free(p);
    atomic_fetch_add(&freed, 1);
}

static bool keep(enum level level, unsigned ms) { return level != INFO || ms >= 50; }

/* ----- the generator ------------------------------------------------------------------ */

typedef struct {
    long end; /* lines 0..end-1; -1: endless */
    long pause_after;
} generator;

static int32_t generate(jr_ctx *ctx, void *arg, jr_chan *out) {
    (void)ctx;
    const generator *g = arg;
    for (long i = 0; g->end < 0 || i < g->end; i++) {
        item *line = new_line((uint64_t)(i % LINES));
        if (jr_chan_send(out, line, -1, NULL) != JR_OK) {
            free_item(line); /* a failed send leaves it with us */
            return 1;        /* the reader is gone, or we were stopped */
        }
        if (i == g->pause_after) sleep_ms(PAUSE_MS);
    }
    return 0;
}

/* ----- the feeder: stream -> pipeline --------------------------------------------------- */

typedef struct {
    jr_stream *lines;
    jr_pipeline *pipeline;
    jr_status stream_end; /* what jr_stream_next said last */
} feeder;

static int32_t feed(jr_ctx *ctx, void *arg, void **result) {
    (void)ctx;
    (void)result;
    feeder *f = arg;
    void *line = NULL;
    while ((f->stream_end = jr_stream_next(f->lines, &line, -1)) == JR_OK) {
        if (jr_pipeline_push(f->pipeline, line, -1) != JR_OK) {
            free_item(line); /* refused (the pipeline was stopped): still ours */
            return 1;
        }
    }
    jr_pipeline_close_input(f->pipeline);
    return f->stream_end == JR_E_CLOSED ? 0 : 1;
}

/* ----- the stages ------------------------------------------------------------------------- */

static int32_t parse(jr_ctx *ctx, void *stage_arg, void *p, void **out) {
    (void)stage_arg;
    (void)out; /* parsed in place: *out stays the item */
    item *it = p;
    char level[8];
    unsigned svc, ms;
    unsigned long long seq;
    if (sscanf(it->text, "svc-%u %7s request %llu took %u ms", &svc, level, &seq, &ms) != 4) {
        jr_ctx_fail(ctx, "unparsable line");
        return 1;
    }
    it->level = strcmp(level, "ERROR") == 0 ? ERROR : strcmp(level, "WARN") == 0 ? WARN : INFO;
    it->seq = seq;
    it->ms = ms;
    it->parsed = true;
    return JR_STAGE_EMIT;
}

static int32_t filter(jr_ctx *ctx, void *stage_arg, void *p, void **out) {
    (void)ctx;
    (void)stage_arg;
    (void)out;
    const item *it = p;
    return keep(it->level, it->ms) ? JR_STAGE_EMIT : JR_STAGE_DROP;
}

/* ----- one run ----------------------------------------------------------------------------- */

typedef struct {
    jr_pool *pool;
    jr_token *stop;
    generator gen;
    jr_stream *lines;
    jr_pipeline *pipeline;
    feeder feed;
    jr_job *feeder_job;
} run;

static void start(run *r, long end, long pause_after) {
    r->gen = (generator){end, pause_after};
    jr_submit_options so = jr_submit_options_default();
    so.token = r->stop;
    CHECK(jr_stream_new(r->pool, generate, &r->gen, 64, free_item, &so, &r->lines));
    jr_pipeline_options po;
    CHECK(jr_pipeline_options_init(&po, sizeof po));
    po.max_in_flight = 256;
    po.token = r->stop;
    po.item_free = free_item;
    CHECK(jr_pipeline_new(r->pool, &po, &r->pipeline));
    CHECK(jr_pipeline_add_stage(r->pipeline, parse, NULL, 4, 1));
    CHECK(jr_pipeline_add_stage(r->pipeline, filter, NULL, 2, 1));
    r->feed = (feeder){r->lines, r->pipeline, JR_OK};
    CHECK(jr_submit(r->pool, feed, &r->feed, NULL, &r->feeder_job));
}

/* Why a batch was flushed. */
enum why { SIZE, TIMER, END, STOP };
static const char *why_name[] = {"size", "timer", "end", "stop"};

/* A flushed batch on its way to the writer (the sink channel's item). */
typedef struct {
    size_t n;
    item *records[BATCH];
} batch_msg;

static void free_batch(void *p) {
    batch_msg *m = p;
    for (size_t i = 0; i < m->n; i++) free_item(m->records[i]);
    free(m);
}

/* The writer: takes each batch from the sink until it is closed, notes its records'
 * sequence numbers and frees them. */
typedef struct {
    jr_chan *sink;
    uint64_t *seqs;
    size_t kept;
    size_t cap;
} writer;

static int32_t write_batches(jr_ctx *ctx, void *arg, void **result) {
    (void)ctx;
    (void)result;
    writer *w = arg;
    void *p = NULL;
    jr_status st;
    while ((st = jr_chan_recv(w->sink, &p, -1, NULL)) == JR_OK) {
        batch_msg *m = p;
        for (size_t i = 0; i < m->n; i++) {
            if (w->kept < w->cap) w->seqs[w->kept] = m->records[i]->seq;
            w->kept++;
        }
        free_batch(m);
    }
    return st == JR_E_CLOSED ? 0 : 1;
}

typedef struct {
    item *records[BATCH];
    size_t n;
    int64_t due;   /* when the pending batch's 100 ms are up (0: no batch) */
    jr_chan *sink; /* where flushed batches go (NULL: freed at once) */
    size_t kept;
    int flushes[4];
    int total_flushes;
    bool bad_size;
    bool interrupt; /* raise SIGINT after INTERRUPT_AFTER flushes */
} batcher;

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static void flush(batcher *b, enum why why) {
    if (b->n > 0) {
        printf("flush: %zu records (%s)\n", b->n, why_name[why]);
        if (b->n > BATCH) b->bad_size = true;
        b->kept += b->n;
        batch_msg *m = malloc(sizeof *m);
        ENSURE(m != NULL, "out of memory");
        m->n = b->n;
        memcpy(m->records, b->records, b->n * sizeof m->records[0]);
        if (b->sink == NULL) {
            free_batch(m);
        } else {
            CHECK(jr_chan_send(b->sink, m, -1, NULL)); /* the writer's now */
        }
        b->n = 0;
        b->flushes[why]++;
        b->total_flushes++;
        if (b->interrupt && b->total_flushes == INTERRUPT_AFTER) raise(SIGINT);
    }
    b->due = 0;
}

/* Reads the pipeline until its end (returns true) or the stop (false). */
static bool batch(run *r, batcher *b) {
    jr_waitable watch[2] = {{JR_WAIT_PIPELINE, r->pipeline}, {JR_WAIT_TOKEN, r->stop}};
    for (;;) {
        int64_t timeout = b->due == 0 ? PATIENCE_NS : b->due - now_ns();
        if (timeout < 0) timeout = 0;
        size_t ready = 0;
        jr_status st = jr_wait_any(watch, 2, timeout, &ready);
        if (st == JR_E_TIMEOUT) {
            ENSURE(b->due != 0, "no record for 10 s: a hang");
            flush(b, TIMER);
            continue;
        }
        CHECK(st);
        if (ready == 1) {
            flush(b, STOP);
            return false;
        }
        void *p = NULL;
        st = jr_pipeline_next(r->pipeline, &p, 0);
        if (st == JR_OK) {
            if (b->due == 0) b->due = now_ns() + FLUSH_EVERY_NS;
            b->records[b->n++] = p;
            if (b->n == BATCH) flush(b, SIZE);
        } else if (st == JR_E_CLOSED) {
            flush(b, END);
            return true;
        } else if (st == JR_E_CANCELLED && jr_token_is_cancelled(r->stop)) {
            flush(b, STOP);
            return false;
        } else {
            ENSURE(st == JR_E_TIMEOUT, "jr_pipeline_next: %s", jr_status_str(st));
        }
    }
}

/* Waits for the feeder, frees the pipeline (no stage runs once it returns), reads the
 * stream to its end (freeing the lines left), frees it, and says how the generator
 * ended: JR_E_CLOSED (it succeeded) or its failure's status. */
static jr_status finish(run *r) {
    jr_status fed = jr_job_wait(r->feeder_job, PATIENCE_NS);
    ENSURE(fed == JR_OK || fed == JR_E_JOB_FAILED, "the feeder: %s", jr_status_str(fed));
    CHECK(jr_job_free(r->feeder_job));
    CHECK(jr_pipeline_free(r->pipeline));
    jr_status end = r->feed.stream_end;
    void *line = NULL;
    while (end == JR_OK && (end = jr_stream_next(r->lines, &line, PATIENCE_NS)) == JR_OK) {
        free_item(line);
    }
    CHECK(jr_stream_free(r->lines));
    return end;
}

static jr_token *volatile stop_token; /* for the signal handler */

static void on_sigint(int signum) {
    (void)signum;
    jr_token_cancel(stop_token); /* async-signal-safe */
}

int main(int argc, char **argv) {
    bool wait_for_user = argc > 1 && strcmp(argv[1], "--wait") == 0;
    jr_pool_options o = jr_pool_options_default();
    o.threads = 2;
    jr_pool *pool = NULL;
    CHECK(jr_pool_new(&o, &pool));
    printf("log_ingest: %d lines; parse (4 at once) and filter (2 at once), both ordered; "
           "batches of %d records or every 100 ms\n",
           LINES, BATCH);

    /* Run 1. */
    run r = {.pool = pool};
    CHECK(jr_token_new(NULL, &r.stop));
    batcher *b = calloc(1, sizeof *b);
    ENSURE(b != NULL, "out of memory");
    /* The sink: a writer job takes each flushed batch from a channel of 2 (blocked on
     * it, it lends its worker's place to a spare). */
    writer w = {.cap = LINES};
    w.seqs = calloc(LINES, sizeof *w.seqs);
    ENSURE(w.seqs != NULL, "out of memory");
    CHECK(jr_chan_new(2, free_batch, &w.sink));
    jr_job *writer_job = NULL;
    CHECK(jr_submit(pool, write_batches, &w, NULL, &writer_job));
    b->sink = w.sink;
    start(&r, LINES, PAUSE_AFTER);
    ENSURE(batch(&r, b), "run 1 stopped");
    CHECK(jr_chan_close(w.sink));
    CHECK(jr_job_wait(writer_job, PATIENCE_NS));
    CHECK(jr_job_free(writer_job));
    CHECK(jr_chan_free(w.sink));
    ENSURE(finish(&r) == JR_E_CLOSED, "the generator did not succeed");
    size_t expected = 0;
    for (uint64_t i = 0; i < LINES; i++) {
        enum level level = i % 50 == 0 ? ERROR : i % 10 == 0 ? WARN : INFO;
        if (!keep(level, (unsigned)((i * 37) % 500))) continue;
        ENSURE(expected < w.kept && w.seqs[expected] == i, "record %zu is not line %llu",
               expected, (unsigned long long)i);
        expected++;
    }
    ENSURE(expected == w.kept && w.kept == b->kept, "kept %zu records (%zu flushed), expected %zu",
           w.kept, b->kept, expected);
    printf("kept %zu of %d lines, in order, the same as a sequential filter\n", w.kept, LINES);
    ENSURE(!b->bad_size && b->flushes[SIZE] > 0 && b->flushes[TIMER] > 0 && b->flushes[END] == 1 &&
               b->flushes[STOP] == 0,
           "flushes: %d by size, %d by timer, %d at the end, %d at a stop", b->flushes[SIZE],
           b->flushes[TIMER], b->flushes[END], b->flushes[STOP]);
    printf("flushes: by size, by the 100 ms timer, and one at the end\n");
    ENSURE(atomic_load(&made) == LINES && atomic_load(&freed) == LINES,
           "%ld lines made, %ld freed", atomic_load(&made), atomic_load(&freed));
    CHECK(jr_token_free(r.stop));
    free(w.seqs);
    free(b);

    /* Run 2: endless, until SIGINT. */
    atomic_store(&made, 0);
    atomic_store(&freed, 0);
    run r2 = {.pool = pool};
    CHECK(jr_token_new(NULL, &r2.stop));
    stop_token = r2.stop;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    ENSURE(sigaction(SIGINT, &sa, NULL) == 0, "sigaction");
    if (wait_for_user) printf("endless run: press Ctrl-C to stop it\n");
    batcher *b2 = calloc(1, sizeof *b2);
    ENSURE(b2 != NULL, "out of memory");
    b2->interrupt = !wait_for_user;
    start(&r2, -1, -1);
    ENSURE(!batch(&r2, b2), "the endless run ended without the stop");
    jr_status end = finish(&r2);
    ENSURE(end == JR_E_CANCELLED, "the generator ended %s, not cancelled", jr_status_str(end));
    ENSURE(atomic_load(&made) == atomic_load(&freed), "%ld lines made, %ld freed: a leak",
           atomic_load(&made), atomic_load(&freed));
    printf("interrupted run: SIGINT after %d flushes; stopped cleanly, the generator "
           "cancelled, nothing leaked\n",
           INTERRUPT_AFTER);
    CHECK(jr_token_free(r2.stop));
    free(b2);
    CHECK(jr_pool_free(pool));
    printf("log_ingest: ok\n");
    return 0;
}
