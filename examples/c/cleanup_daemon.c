/*
 * Delayed and periodic jobs: Go's time.AfterFunc and time.Ticker on the pool, in C.
 * The C twin of examples/cleanup_daemon.rs (it prints the same lines), plus a delayed
 * job.
 *
 * A table of sessions, each with an expiry time, is filled by the main thread; a
 * periodic job (jr_submit_every, every 20 ms) sweeps out the expired ones and reports
 * each sweep with its run number (jr_ctx_tick). A delayed job (options.delay_ns) logs
 * one session out 60 ms after it is submitted. After a few sweeps the main thread shuts
 * the pool down with JR_SHUTDOWN_DRAIN: the periodic job stops with it (jr_job_wait on
 * its handle returns JR_E_CANCELLED once it has stopped), no sweep starts after the
 * shutdown, and the delayed job has run (a drain runs delayed jobs when they come due).
 *
 * The lines checked by the tests are the same on every run (the number of sweeps that
 * ran in all may vary by one); the program checks its own results and exits 1 if wrong.
 *
 * Build (from the repository root, after `cargo build --release`):
 *   cc -std=c11 -Wall -Wextra -Werror -g -Iinclude -pthread examples/c/cleanup_daemon.c \
 *      target/release/libjobrunner.a -lpthread -ldl -lm -o /tmp/cleanup_daemon
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define EXAMPLE_NAME "cleanup_daemon"
#include "example.h"

#define SECOND (1000 * MS)

enum {
    PERIOD_MS = 20,   /* how often the cleanup runs */
    SWEEPS = 5,       /* sweeps to wait for before shutting down */
    SESSIONS = 100,   /* sessions at the start; the even ones are already expired */
    LOGOUT_MS = 60,   /* the delayed job's delay */
    LOGOUT_ID = 1,    /* the session it logs out */
    MAX_TICKS = 1000, /* room in the sweep log */
};

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * SECOND + t.tv_nsec;
}

/* The session table and the sweep log, under one mutex; `swept` is signalled after
 * every sweep. Slot SESSIONS holds a session the main thread adds later. */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t swept;
    bool live[SESSIONS + 1];
    int64_t expires[SESSIONS + 1];
    uint64_t ticks[MAX_TICKS]; /* the tick of each sweep, in the order they ran */
    int sweeps;
} table = {.mu = PTHREAD_MUTEX_INITIALIZER, .swept = PTHREAD_COND_INITIALIZER};

static atomic_bool shutting_down; /* set by main just before the shutdown */
static atomic_int late_sweeps;    /* sweeps that began after it */

/* The periodic job: removes the expired sessions. One run at a time (runs of a periodic
 * job never overlap), but the main thread reads the table too, hence the mutex. */
static int32_t sweep(jr_ctx *ctx, void *arg, void **result) {
    (void)arg;
    (void)result;
    uint64_t tick = 0;
    if (jr_ctx_tick(ctx, &tick) != JR_OK) {
        jr_ctx_fail(ctx, "not a periodic run");
        return 1;
    }
    if (atomic_load(&shutting_down)) {
        atomic_fetch_add(&late_sweeps, 1);
    }
    pthread_mutex_lock(&table.mu);
    int64_t now = now_ns();
    int removed = 0;
    for (int id = 0; id <= SESSIONS; id++) {
        if (table.live[id] && table.expires[id] <= now) {
            table.live[id] = false;
            removed++;
        }
    }
    printf("    sweep %llu: removed %d expired sessions\n", (unsigned long long)tick, removed);
    if (table.sweeps < MAX_TICKS) {
        table.ticks[table.sweeps++] = tick;
    }
    pthread_cond_broadcast(&table.swept);
    pthread_mutex_unlock(&table.mu);
    return 0;
}

/* The delayed job's argument: when it was submitted, and when it ran. */
struct logout {
    int64_t submitted_ns;
    int64_t ran_ns;
};

/* The delayed job: logs one session out. */
static int32_t logout(jr_ctx *ctx, void *arg, void **result) {
    (void)ctx;
    (void)result;
    struct logout *logout = arg;
    logout->ran_ns = now_ns();
    pthread_mutex_lock(&table.mu);
    table.live[LOGOUT_ID] = false;
    pthread_mutex_unlock(&table.mu);
    return 0;
}

static int live_sessions(void) {
    pthread_mutex_lock(&table.mu);
    int live = 0;
    for (int id = 0; id <= SESSIONS; id++) {
        live += table.live[id];
    }
    pthread_mutex_unlock(&table.mu);
    return live;
}

int main(void) {
    jr_pool_options pool_options = jr_pool_options_default();
    pool_options.threads = 2;
    jr_pool *pool = NULL;
    CHECK(jr_pool_new(&pool_options, &pool));

    /* Half of the sessions expire at once, the others in an hour. */
    int64_t now = now_ns();
    for (int id = 0; id < SESSIONS; id++) {
        table.live[id] = true;
        table.expires[id] = id % 2 == 0 ? now : now + 3600 * SECOND;
    }
    printf("cleanup_daemon: %d sessions, %d already expired; sweeping every %d ms\n", SESSIONS,
           SESSIONS / 2, PERIOD_MS);

    /* The delayed job. Its argument lives on this stack: main waits for the job. */
    struct logout delayed = {.submitted_ns = now_ns()};
    jr_submit_options later = jr_submit_options_default();
    later.delay_ns = LOGOUT_MS * MS;
    jr_job *logout_job = NULL;
    CHECK(jr_submit(pool, logout, &delayed, &later, &logout_job));
    jr_state state;
    CHECK(jr_job_state(logout_job, &state));
    ENSURE(state == JR_JOB_DELAYED, "the delayed job is in state %d, not JR_JOB_DELAYED",
           (int)state);
    printf("delayed job: logs session %d out in %d ms (state JR_JOB_DELAYED)\n", LOGOUT_ID,
           LOGOUT_MS);

    /* The periodic job: first run one period from now. */
    jr_job *ticker = NULL;
    CHECK(jr_submit_every(pool, PERIOD_MS * MS, sweep, NULL, NULL, &ticker));

    /* Wait for the first sweeps (events, not sleeps), adding a session that expires at
     * once after sweep 1, and then for at least one sweep after that. */
    pthread_mutex_lock(&table.mu);
    int inserted_after = -1;
    while (table.sweeps < SWEEPS || table.sweeps <= inserted_after) {
        struct timespec give_up;
        clock_gettime(CLOCK_REALTIME, &give_up);
        give_up.tv_sec += 5;
        ENSURE(pthread_cond_timedwait(&table.swept, &table.mu, &give_up) == 0,
               "no sweep for 5 s");
        if (inserted_after < 0 && table.sweeps >= 2) {
            table.live[SESSIONS] = true;
            table.expires[SESSIONS] = now_ns();
            inserted_after = table.sweeps;
        }
    }
    for (int i = 0; i < table.sweeps; i++) {
        ENSURE(table.ticks[i] == (uint64_t)i, "sweep %d ran with tick %llu", i,
               (unsigned long long)table.ticks[i]);
    }
    pthread_mutex_unlock(&table.mu);

    printf("main: %d sweeps seen, shutting the pool down (Drain)\n", SWEEPS);
    atomic_store(&shutting_down, true);
    jr_status shutdown = jr_pool_shutdown(pool, JR_SHUTDOWN_DRAIN, 5 * SECOND);
    /* A periodic job's handle "ends" JR_E_CANCELLED once it has stopped. */
    jr_status ticker_end = jr_job_wait(ticker, 5 * SECOND);
    CHECK(jr_job_state(ticker, &state));
    bool stopped = ticker_end == JR_E_CANCELLED && state == JR_JOB_CANCELLED;
    printf("shutdown(Drain): complete %s, ticker stopped: %s\n",
           shutdown == JR_OK ? "true" : "false", stopped ? "true" : "false");

    /* The drain ran the delayed job if it had not run yet; no sooner than its delay. */
    CHECK(jr_job_wait(logout_job, 0));
    bool on_time = delayed.ran_ns - delayed.submitted_ns >= LOGOUT_MS * MS;
    printf("delayed job: ran %s %d ms after it was submitted\n",
           on_time ? "no sooner than" : "EARLIER than", LOGOUT_MS);

    int left = live_sessions();
    pthread_mutex_lock(&table.mu);
    int runs = table.sweeps;
    pthread_mutex_unlock(&table.mu);
    int late = atomic_load(&late_sweeps);
    printf("summary: %d sweeps ran, %d live sessions left\n", runs, left);

    CHECK(jr_job_free(logout_job));
    CHECK(jr_job_free(ticker));
    CHECK(jr_pool_free(pool));

    /* A sweep that had already started when the shutdown began may finish: that is the
     * only one allowed to see the flag. 49 left: the 50 long-lived sessions but one,
     * logged out by the delayed job. */
    if (shutdown == JR_OK && stopped && on_time && runs >= SWEEPS && left == SESSIONS / 2 - 1 &&
        late <= 1) {
        printf("cleanup_daemon: the periodic job stopped with the pool\n");
        return 0;
    }
    fprintf(stderr,
            "cleanup_daemon: FAILED (shutdown %s, ticker %s, on time %d, runs %d, left %d, "
            "late sweeps %d)\n",
            jr_status_str(shutdown), jr_status_str(ticker_end), on_time, runs, left, late);
    return 1;
}
