/*
 * Cancellation with a deadline (Go's context.WithTimeout), in C.
 *
 * A request has a token with a generous deadline (5 s); each step of the request gets
 * a child token with a deadline of its own (jr_token_new with a parent, then
 * jr_token_set_deadline). A job submitted with a token (options.token) polls
 * jr_ctx_is_cancelled between slices of its work and stops when it turns true; a job
 * that returns an error after its cancel ends JR_E_CANCELLED.
 *
 *   1. a quick step (3 slices of 1 ms) under a 2 s deadline succeeds: JR_OK, and its
 *      token is never cancelled (JR_REASON_NONE);
 *   2. a slow step (up to 5000 slices of 1 ms) under a 50 ms deadline is stopped by it:
 *      JR_E_CANCELLED, reason JR_REASON_DEADLINE, seen by the job through its own token
 *      (jr_ctx_token) as well as by the caller. The parent request token is untouched:
 *      a deadline cancels a token and its descendants, never its ancestors.
 *   3. a step submitted under a token whose deadline has already passed is accepted but
 *      never runs: it ends JR_E_CANCELLED at once.
 *
 * Every line printed is the same on every run; the program checks its own results and
 * exits 1 if they are wrong.
 *
 * Build (from the repository root, after `cargo build --release`):
 *   cc -std=c11 -Wall -Wextra -Werror -g -Iinclude -pthread examples/c/deadline.c \
 *      target/release/libjobrunner.a -lpthread -ldl -lm -o /tmp/deadline
 */
#define _POSIX_C_SOURCE 200809L

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define EXAMPLE_NAME "deadline"
#include "example.h"

/* A step's argument (the caller's, on its stack: it outlives the job, which the caller
 * waits for) and what the job reports back. */
struct step {
    int slices;               /* 1 ms slices of work to do */
    atomic_bool ran;          /* the job started */
    atomic_int done;          /* slices done before it finished or stopped */
    _Atomic jr_cancel_reason reason; /* why it stopped, as the job saw it */
};

/* The job: does its slices, polling for cancellation between them. */
static int32_t work(jr_ctx *ctx, void *arg, void **result) {
    (void)result;
    struct step *step = arg;
    atomic_store(&step->ran, true);
    for (int i = 0; i < step->slices; i++) {
        if (jr_ctx_is_cancelled(ctx)) {
            /* The job's own token says why: the deadline of the token it was given. */
            jr_cancel_reason reason = JR_REASON_NONE;
            jr_token_reason(jr_ctx_token(ctx), &reason);
            atomic_store(&step->reason, reason);
            jr_ctx_fail(ctx, "stopped early");
            return 1;
        }
        sleep_ms(1); /* a slice of real work */
        atomic_fetch_add(&step->done, 1);
    }
    return 0;
}

/* Runs one step under a child of `request` with the given deadline; returns how the
 * job ended, and writes its token's cancel reason to `*reason`. */
static jr_status run_step(jr_pool *pool, jr_token *request, struct step *step,
                          int64_t deadline_ns, jr_cancel_reason *reason) {
    jr_token *token = NULL;
    CHECK(jr_token_new(request, &token));
    CHECK(jr_token_set_deadline(token, deadline_ns));
    jr_submit_options options = jr_submit_options_default();
    options.token = token;
    jr_job *job = NULL;
    CHECK(jr_submit(pool, work, step, &options, &job));
    jr_status status = jr_job_wait(job, 5000 * MS);
    CHECK(jr_token_reason(token, reason));
    CHECK(jr_job_free(job));
    CHECK(jr_token_free(token)); /* the job kept what it needed; it has ended anyway */
    return status;
}

int main(void) {
    jr_pool_options pool_options = jr_pool_options_default();
    pool_options.threads = 2;
    jr_pool *pool = NULL;
    CHECK(jr_pool_new(&pool_options, &pool));

    jr_token *request = NULL;
    CHECK(jr_token_new(NULL, &request));
    CHECK(jr_token_set_deadline(request, 5000 * MS));
    printf("deadline: a request with a 5 s deadline, each step with a deadline of its own\n");

    /* 1. Fits in its deadline. */
    struct step quick = {.slices = 3};
    jr_cancel_reason reason = JR_REASON_NONE;
    jr_status status = run_step(pool, request, &quick, 2000 * MS, &reason);
    printf("quick step (3 ms of work, 2 s deadline): %s, token reason %s\n",
           jr_status_str(status), reason_name(reason));
    ENSURE(status == JR_OK && reason == JR_REASON_NONE && atomic_load(&quick.done) == 3,
           "the quick step should have finished");

    /* 2. Does not fit: the deadline stops it. */
    struct step slow = {.slices = 5000};
    status = run_step(pool, request, &slow, 50 * MS, &reason);
    printf("slow step (up to 5 s of work, 50 ms deadline): %s, token reason %s\n",
           jr_status_str(status), reason_name(reason));
    ENSURE(status == JR_E_CANCELLED && reason == JR_REASON_DEADLINE,
           "the slow step should have been stopped by its deadline");
    ENSURE(atomic_load(&slow.done) < slow.slices, "the slow step did all its work");
    printf("slow step: the job saw jr_ctx_is_cancelled, reason %s, and stopped early\n",
           reason_name(atomic_load(&slow.reason)));
    ENSURE(atomic_load(&slow.reason) == JR_REASON_DEADLINE,
           "the job saw the wrong reason through its token");

    /* The request itself is still live: cancellation flows down the tree, not up. */
    jr_cancel_reason request_reason = JR_REASON_NONE;
    CHECK(jr_token_reason(request, &request_reason));
    printf("request token: cancelled %s, reason %s\n",
           jr_token_is_cancelled(request) ? "yes" : "no", reason_name(request_reason));
    ENSURE(request_reason == JR_REASON_NONE, "the request token was cancelled");

    /* 3. A deadline already passed: the job is accepted, ends at once, never runs. */
    struct step late = {.slices = 3};
    status = run_step(pool, request, &late, 0, &reason);
    printf("step under a passed deadline: %s, token reason %s, ran: %s\n",
           jr_status_str(status), reason_name(reason),
           atomic_load(&late.ran) ? "yes" : "no");
    ENSURE(status == JR_E_CANCELLED && reason == JR_REASON_DEADLINE && !atomic_load(&late.ran),
           "a job under a passed deadline should end cancelled without running");

    CHECK(jr_token_free(request));
    CHECK(jr_pool_free(pool));
    printf("deadline: ok\n");
    return 0;
}
