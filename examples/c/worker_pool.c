/*
 * A bounded worker pool with backpressure, in C.
 *
 * Two worker threads and a queue bounded at four jobs. The producer (this main thread)
 * submits 100 jobs, each squaring its number into a result that the producer takes back
 * with jr_job_take_result. On the way it shows the three ways a submit meets a full
 * queue:
 *
 *   1. nonblocking (options.nonblocking = 1): fails at once with JR_E_FULL, and the
 *      argument is still the caller's, so the same one can be submitted again;
 *   2. with a timeout (options.timeout_ns): fails with JR_E_TIMEOUT;
 *   3. blocking (the default): waits until a worker takes a job and frees a slot.
 *
 * To make the queue full at a known moment, jobs 0 and 1 hold both workers at a gate
 * (a mutex and condition variable) that a helper thread opens later. Every line printed
 * is the same on every run; the program checks its own results and exits 1 if wrong.
 *
 * Build (from the repository root, after `cargo build --release`):
 *   cc -std=c11 -Wall -Wextra -Werror -g -Iinclude -pthread examples/c/worker_pool.c \
 *      target/release/libjobrunner.a -lpthread -ldl -lm -o /tmp/worker_pool
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define EXAMPLE_NAME "worker_pool"
#include "example.h"

enum { THREADS = 2, CAPACITY = 4, JOBS = 100 };

/* ---- the gate that holds jobs 0 and 1 on the two workers ------------------------- */

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int entered; /* held jobs that have started: the producer waits for 2 */
    bool open;
} gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, false};

/* Called by a held job: says it started, then waits until the gate opens. */
static void gate_enter(void) {
    pthread_mutex_lock(&gate.mu);
    gate.entered++;
    pthread_cond_broadcast(&gate.cv);
    while (!gate.open) {
        pthread_cond_wait(&gate.cv, &gate.mu);
    }
    pthread_mutex_unlock(&gate.mu);
}

/* The producer waits until `n` held jobs are running: an event, not a sleep. */
static void gate_wait_entered(int n) {
    pthread_mutex_lock(&gate.mu);
    while (gate.entered < n) {
        pthread_cond_wait(&gate.cv, &gate.mu);
    }
    pthread_mutex_unlock(&gate.mu);
}

static bool gate_is_open(void) {
    pthread_mutex_lock(&gate.mu);
    bool open = gate.open;
    pthread_mutex_unlock(&gate.mu);
    return open;
}

/* The helper thread: opens the gate a little after the producer starts its blocking
 * submit, so that the submit has to wait for room. */
static void *open_gate_later(void *unused) {
    (void)unused;
    struct timespec pause = {0, 20 * MS};
    nanosleep(&pause, NULL);
    pthread_mutex_lock(&gate.mu);
    gate.open = true;
    pthread_cond_broadcast(&gate.cv);
    pthread_mutex_unlock(&gate.mu);
    return NULL;
}

/* ---- the job ------------------------------------------------------------------------ */

/* A job's argument: malloc'd by the producer, owned by the job once submitted (freed
 * by the library with options.arg_free = free when the job has ended). */
struct task {
    int id;
    bool held; /* wait at the gate first */
};

static struct task *new_task(int id, bool held) {
    struct task *task = malloc(sizeof *task);
    ENSURE(task != NULL, "out of memory");
    task->id = id;
    task->held = held;
    return task;
}

/* A jr_job_fn: squares the task's number into a malloc'd result. The result's
 * ownership moves to the job's handle, and from there to whoever takes it. */
static int32_t square(jr_ctx *ctx, void *arg, void **result) {
    const struct task *task = arg;
    if (task->held) {
        gate_enter();
    }
    uint64_t *value = malloc(sizeof *value);
    if (value == NULL) {
        jr_ctx_fail(ctx, "out of memory");
        return 1;
    }
    *value = (uint64_t)task->id * (uint64_t)task->id;
    *result = value;
    return 0;
}

int main(void) {
    jr_pool_options pool_options = jr_pool_options_default();
    pool_options.threads = THREADS;
    pool_options.queue_capacity = CAPACITY;
    pool_options.thread_name = "worker_pool";
    jr_pool *pool = NULL;
    CHECK(jr_pool_new(&pool_options, &pool));
    printf("worker_pool: %d worker threads, queue_capacity %d, %d jobs\n", THREADS, CAPACITY,
           JOBS);

    /* Every job's argument is freed by the library; a result nobody takes is too. */
    jr_submit_options options = jr_submit_options_default();
    options.arg_free = free;
    options.result_free = free;

    jr_job *jobs[JOBS] = {NULL};

    /* Jobs 0 and 1 take both workers and stay at the gate. */
    for (int id = 0; id < 2; id++) {
        CHECK(jr_submit(pool, square, new_task(id, true), &options, &jobs[id]));
    }
    gate_wait_entered(2);
    printf("jobs 0 and 1 hold both workers at a gate\n");

    /* Jobs 2-5 fill the queue: a nonblocking submit succeeds while there is room. */
    options.nonblocking = 1;
    for (int id = 2; id < 2 + CAPACITY; id++) {
        CHECK(jr_submit(pool, square, new_task(id, false), &options, &jobs[id]));
    }
    printf("jobs 2-5 queued: the queue is full (%d/%d)\n", CAPACITY, CAPACITY);

    /* 1. Nonblocking: refused at once. The submit failed, so `six` is still ours. */
    struct task *six = new_task(6, false);
    jr_status status = jr_submit(pool, square, six, &options, &jobs[6]);
    ENSURE(status == JR_E_FULL, "nonblocking submit: expected JR_E_FULL, got %s",
           jr_status_str(status));
    printf("nonblocking submit of job 6: %s (its argument is still ours)\n",
           jr_status_str(status));

    /* 2. With a timeout: the queue stays full (the gate is shut), so it times out. */
    options.nonblocking = 0;
    options.timeout_ns = 20 * MS;
    status = jr_submit(pool, square, six, &options, &jobs[6]);
    ENSURE(status == JR_E_TIMEOUT, "submit with a timeout: expected JR_E_TIMEOUT, got %s",
           jr_status_str(status));
    printf("submit of job 6 with a 20 ms timeout: %s\n", jr_status_str(status));

    /* 3. Blocking: waits for room, which comes once the helper opens the gate and a
     *    worker, done with job 0 or 1, takes a queued job. */
    options.timeout_ns = -1;
    pthread_t opener;
    ENSURE(pthread_create(&opener, NULL, open_gate_later, NULL) == 0, "pthread_create");
    CHECK(jr_submit(pool, square, six, &options, &jobs[6])); /* the job owns `six` now */
    ENSURE(gate_is_open(), "the blocking submit returned while the queue was full");
    printf("blocking submit of job 6: waited until a worker freed a slot\n");
    pthread_join(opener, NULL);

    /* The rest: each blocking submit waits while the queue is full (backpressure), so
     * the producer can never get more than 4 jobs ahead of the workers. */
    for (int id = 7; id < JOBS; id++) {
        CHECK(jr_submit(pool, square, new_task(id, false), &options, &jobs[id]));
    }
    printf("jobs 7-99 submitted with blocking submits\n");

    /* Fan in: wait for each job, take its result (ours to free now), free the handle. */
    uint64_t sum = 0;
    int taken = 0;
    for (int id = 0; id < JOBS; id++) {
        CHECK(jr_job_wait(jobs[id], -1));
        void *result = NULL;
        CHECK(jr_job_take_result(jobs[id], &result));
        ENSURE(result != NULL, "job %d gave no result", id);
        sum += *(uint64_t *)result;
        taken++;
        free(result);
        CHECK(jr_job_free(jobs[id]));
    }
    printf("results: %d taken, sum of squares 0..%d = %llu\n", taken, JOBS - 1,
           (unsigned long long)sum);
    ENSURE(sum == 328350, "the sum of squares 0..99 is 328350, not %llu",
           (unsigned long long)sum);

    /* Only the accepted submits count: the two refused ones never made a job. */
    jr_stats stats = {.size = sizeof stats};
    CHECK(jr_pool_stats(pool, &stats));
    printf("stats: submitted %llu, succeeded %llu, failed %llu, cancelled %llu\n",
           (unsigned long long)stats.submitted, (unsigned long long)stats.succeeded,
           (unsigned long long)stats.failed, (unsigned long long)stats.cancelled);
    ENSURE(stats.submitted == JOBS && stats.succeeded == JOBS, "the pool's counters disagree");

    /* Shut down: nothing is left to drain; later submits are refused. */
    CHECK(jr_pool_shutdown(pool, JR_SHUTDOWN_DRAIN, 5000 * MS));
    struct task *late = new_task(JOBS, false);
    status = jr_submit(pool, square, late, &options, NULL);
    ENSURE(status == JR_E_SHUTDOWN, "submit after shutdown: expected JR_E_SHUTDOWN, got %s",
           jr_status_str(status));
    free(late); /* refused: still ours */
    printf("submit after shutdown: %s\n", jr_status_str(status));

    CHECK(jr_pool_free(pool));
    printf("worker_pool: ok\n");
    return 0;
}
