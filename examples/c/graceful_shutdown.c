/*
 * Graceful shutdown on SIGINT/SIGTERM, in C.
 *
 * A small "server" on a pool of 4 threads runs two kinds of work:
 *   - 4 connection handlers, long-running jobs that serve until told to stop: they are
 *     submitted with the shutdown token (options.token) and poll jr_ctx_is_cancelled;
 *   - 8 requests already accepted, short jobs queued behind the handlers: they do not
 *     watch the token, because accepted work must be finished, not dropped.
 *
 * The SIGINT/SIGTERM handler (installed with sigaction) does one thing: it calls
 * jr_token_cancel on the shutdown token. That is allowed in a signal handler:
 * jr_token_cancel is documented async-signal-safe (it neither locks nor allocates; a
 * helper thread of the library finishes the cancel). The main thread, waiting on the
 * token (jr_token_wait), then shuts the pool down with JR_SHUTDOWN_DRAIN and a timeout:
 * new submits are refused, the handlers have stopped, the queued requests still run.
 *
 * So that `make demo` can run it unattended, a helper thread sends SIGTERM to the
 * process once the handlers are running and the requests are queued (it waits for that
 * event, not for a sleep). Run it with `--wait` to send the signal yourself (Ctrl-C, or
 * `kill -TERM <pid>`). Every line printed is the same on every run; the program checks
 * its own results and exits 1 if they are wrong.
 *
 * Build (from the repository root, after `cargo build --release`):
 *   cc -std=c11 -Wall -Wextra -Werror -g -Iinclude -pthread examples/c/graceful_shutdown.c \
 *      target/release/libjobrunner.a -lpthread -ldl -lm -o /tmp/graceful_shutdown
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define EXAMPLE_NAME "graceful_shutdown"
#include "example.h"

enum { THREADS = 4, HANDLERS = 4, REQUESTS = 8 };

/* ---- the signal handler --------------------------------------------------------------- */

/* What the handler may touch: the token (set before the handler is installed, cleared
 * after it is removed) and a sig_atomic_t. */
static jr_token *volatile shutdown_token;
static volatile sig_atomic_t received_signal;

static void on_signal(int signo) {
    received_signal = signo;
    jr_token_cancel(shutdown_token); /* async-signal-safe */
}

static void install_handlers(void (*handler)(int)) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = handler;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    if (sigaction(SIGINT, &action, NULL) != 0 || sigaction(SIGTERM, &action, NULL) != 0) {
        perror("sigaction");
        exit(1);
    }
}

/* ---- the jobs ------------------------------------------------------------------------- */

/* Counts connection handlers that have started, for the signal sender to wait on. */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int count;
} handlers_started = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};

/* A connection handler: serves until the shutdown token is cancelled. */
static int32_t connection_handler(jr_ctx *ctx, void *arg, void **result) {
    (void)arg;
    (void)result;
    pthread_mutex_lock(&handlers_started.mu);
    handlers_started.count++;
    pthread_cond_broadcast(&handlers_started.cv);
    pthread_mutex_unlock(&handlers_started.mu);
    /* Serve, checking for the shutdown between slices of work. */
    while (!jr_ctx_is_cancelled(ctx)) {
        sleep_ms(1);
    }
    return 1; /* an error after the cancel: the job ends JR_E_CANCELLED */
}

static atomic_int requests_done;

/* An accepted request: a few milliseconds of work that must not be lost. */
static int32_t request(jr_ctx *ctx, void *arg, void **result) {
    (void)ctx;
    (void)arg;
    (void)result;
    sleep_ms(5);
    atomic_fetch_add(&requests_done, 1);
    return 0;
}

/* The helper thread that plays the operator: once started, it sends SIGTERM. */
static void *send_sigterm(void *unused) {
    (void)unused;
    kill(getpid(), SIGTERM);
    return NULL;
}

int main(int argc, char **argv) {
    bool wait_for_operator = argc > 1 && strcmp(argv[1], "--wait") == 0;

    jr_pool_options pool_options = jr_pool_options_default();
    pool_options.threads = THREADS;
    jr_pool *pool = NULL;
    CHECK(jr_pool_new(&pool_options, &pool));

    jr_token *token = NULL;
    CHECK(jr_token_new(NULL, &token));
    shutdown_token = token;
    install_handlers(on_signal);
    printf("graceful_shutdown: %d connection handlers watch the shutdown token; "
           "SIGINT/SIGTERM cancel it\n",
           HANDLERS);

    /* The handlers, each under the shutdown token; wait until all are running. */
    jr_submit_options watched = jr_submit_options_default();
    watched.token = token;
    jr_job *handlers[HANDLERS];
    for (int i = 0; i < HANDLERS; i++) {
        CHECK(jr_submit(pool, connection_handler, NULL, &watched, &handlers[i]));
    }
    pthread_mutex_lock(&handlers_started.mu);
    while (handlers_started.count < HANDLERS) {
        pthread_cond_wait(&handlers_started.cv, &handlers_started.mu);
    }
    pthread_mutex_unlock(&handlers_started.mu);

    /* The accepted requests: queued, since the handlers hold every worker. */
    jr_job *requests[REQUESTS];
    for (int i = 0; i < REQUESTS; i++) {
        CHECK(jr_submit(pool, request, NULL, NULL, &requests[i]));
    }
    printf("%d handlers running, %d requests accepted and queued\n", HANDLERS, REQUESTS);

    /* Wait for the signal: the handler cancels the token, which wakes us. */
    pthread_t sender;
    if (wait_for_operator) {
        printf("waiting for SIGINT or SIGTERM (press Ctrl-C, or kill -TERM %ld)\n",
               (long)getpid());
        fflush(stdout);
    } else {
        ENSURE(pthread_create(&sender, NULL, send_sigterm, NULL) == 0, "pthread_create");
    }
    if (wait_for_operator) {
        CHECK(jr_token_wait(token, -1));
    } else {
        jr_status status = jr_token_wait(token, 10000 * MS);
        ENSURE(status == JR_OK, "no cancel 10 s after SIGTERM: %s", jr_status_str(status));
        pthread_join(sender, NULL);
    }
    printf("main: got %s, the shutdown token is cancelled\n",
           received_signal == SIGINT ? "SIGINT" : "SIGTERM");

    /* Drain: refuse new work, finish what was accepted, wait at most 5 s. */
    printf("main: jr_pool_shutdown(JR_SHUTDOWN_DRAIN, 5 s)\n");
    CHECK(jr_pool_shutdown(pool, JR_SHUTDOWN_DRAIN, 5000 * MS));
    jr_status late = jr_submit(pool, request, NULL, NULL, NULL);
    printf("submit after shutdown: %s\n", jr_status_str(late));
    ENSURE(late == JR_E_SHUTDOWN, "a submit after the shutdown was not refused");

    /* Count how everything ended: requests completed, handlers cancelled. */
    int completed = 0, cancelled = 0, other = 0;
    for (int i = 0; i < REQUESTS; i++) {
        completed += jr_job_wait(requests[i], 0) == JR_OK;
        CHECK(jr_job_free(requests[i]));
    }
    for (int i = 0; i < HANDLERS; i++) {
        cancelled += jr_job_wait(handlers[i], 0) == JR_E_CANCELLED;
        CHECK(jr_job_free(handlers[i]));
    }
    other = REQUESTS + HANDLERS - completed - cancelled;
    printf("drained: %d of %d requests completed; cancelled: %d of %d handlers stopped\n",
           completed, REQUESTS, cancelled, HANDLERS);
    ENSURE(completed == REQUESTS && atomic_load(&requests_done) == REQUESTS &&
               cancelled == HANDLERS && other == 0,
           "unexpected ends (%d other)", other);
    jr_stats stats = {.size = sizeof stats};
    CHECK(jr_pool_stats(pool, &stats));
    printf("stats: succeeded %llu, cancelled %llu, queued %llu, running %llu\n",
           (unsigned long long)stats.succeeded, (unsigned long long)stats.cancelled,
           (unsigned long long)stats.queued, (unsigned long long)stats.running);
    ENSURE(stats.succeeded == REQUESTS && stats.cancelled == HANDLERS && stats.queued == 0 &&
               stats.running == 0,
           "the pool's counters disagree");

    /* Put the default handlers back before the token goes: a late signal must not reach
     * a freed token. */
    install_handlers(SIG_DFL);
    shutdown_token = NULL;
    CHECK(jr_token_free(token));
    CHECK(jr_pool_free(pool));
    printf("graceful_shutdown: ok\n");
    return 0;
}
