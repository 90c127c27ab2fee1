/* Native jobs and counted destructors for test_exit.py's child interpreters.

   Each job's arg is its index plus one (1..EXIT_MAX), as a pointer, and so is its
   result: the destructors count per index, so a destructor that runs twice (or for an
   index never submitted) shows. The counts are read by the child's last atexit
   handler and printed once more by this library's destructor, when the process exits
   after Py_Finalize: a destructor that ran after the atexit check shows there. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "jobrunner.h"

#define EXIT_MAX 4096

static atomic_int arg_frees[EXIT_MAX];
static atomic_int result_frees[EXIT_MAX];
static atomic_int stray_frees; /* an index out of range: never submitted */
static atomic_int ran[EXIT_MAX];

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static int started;   /* blocking jobs that have started */

static void count(atomic_int *counts, void *p) {
    intptr_t i = (intptr_t)p;
    if (i >= 1 && i <= EXIT_MAX) {
        atomic_fetch_add(&counts[i - 1], 1);
    } else {
        atomic_fetch_add(&stray_frees, 1);
    }
}

void exit_arg_free(void *p) { count(arg_frees, p); }
void exit_result_free(void *p) { count(result_frees, p); }

int exit_arg_frees(int i) { return atomic_load(&arg_frees[i - 1]); }
int exit_result_frees(int i) { return atomic_load(&result_frees[i - 1]); }
int exit_ran(int i) { return atomic_load(&ran[i - 1]); }
int exit_stray_frees(void) { return atomic_load(&stray_frees); }

static void mark_started(void) {
    pthread_mutex_lock(&lock);
    started++;
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&lock);
}

/* Waits (GIL released: called through ctypes.CDLL) until n blocking jobs have started
   or timeout_ms have passed; returns how many have. */
int exit_await_started(int n, int timeout_ms) {
    struct timespec end;
    clock_gettime(CLOCK_REALTIME, &end);
    end.tv_sec += timeout_ms / 1000;
    end.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (end.tv_nsec >= 1000000000L) {
        end.tv_sec++;
        end.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&lock);
    while (started < n && pthread_cond_timedwait(&changed, &lock, &end) == 0) {
    }
    int now = started;
    pthread_mutex_unlock(&lock);
    return now;
}

static void pause_1ms(void) {
    struct timespec t = {0, 1000000L};
    nanosleep(&t, NULL);
}

/* Runs until asked to stop; then succeeds with its arg as result. */
int32_t exit_coop_job(jr_ctx *ctx, void *arg, void **result) {
    atomic_fetch_add(&ran[(intptr_t)arg - 1], 1);
    mark_started();
    while (!jr_ctx_is_cancelled(ctx)) {
        pause_1ms();
    }
    *result = arg;
    return 0;
}

/* Ignores cancellation: runs about `stubborn_ms`, then succeeds. */
static atomic_int stubborn_ms = 300;
void exit_set_stubborn_ms(int ms) { atomic_store(&stubborn_ms, ms); }
int32_t exit_stubborn_job(jr_ctx *ctx, void *arg, void **result) {
    (void)ctx;
    atomic_fetch_add(&ran[(intptr_t)arg - 1], 1);
    mark_started();
    for (int i = 0; i < atomic_load(&stubborn_ms); i++) {
        pause_1ms();
    }
    *result = arg;
    return 0;
}

/* Succeeds at once (jobs queued behind the blocking ones). */
int32_t exit_quick_job(jr_ctx *ctx, void *arg, void **result) {
    (void)ctx;
    atomic_fetch_add(&ran[(intptr_t)arg - 1], 1);
    *result = arg;
    return 0;
}

/* A job submitted here and its handle freed at once ("detached"), as C code that
   never waits for its work would: it runs on through Py_Finalize, and its destructors
   run on the worker when it ends (both: the handle is gone), after which the
   destructor below (at exit(), after Py_Finalize) finds them counted. */
static int detached_pending; /* destructor calls of detached jobs still to come */
static void detached_done(void) {
    pthread_mutex_lock(&lock);
    detached_pending--;
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&lock);
}
static void detached_arg_free(void *p) {
    count(arg_frees, p);
    detached_done();
}
static void detached_result_free(void *p) {
    count(result_frees, p);
    detached_done();
}
int exit_submit_detached(jr_pool *pool, int index) {
    jr_submit_options options = jr_submit_options_default();
    options.arg_free = detached_arg_free;
    options.result_free = detached_result_free;
    jr_job *job = NULL;
    pthread_mutex_lock(&lock);
    detached_pending += 2;
    pthread_mutex_unlock(&lock);
    if (jr_submit(pool, exit_stubborn_job, (void *)(intptr_t)index, &options, &job) != JR_OK) {
        return -1;
    }
    jr_job_free(job);
    return 0;
}

/* The library's last word, after Py_Finalize: the totals, to compare with the
   child's atexit report (nothing may be released after it, nor twice). */
__attribute__((destructor)) static void exit_report(void) {
    struct timespec end;
    clock_gettime(CLOCK_REALTIME, &end);
    end.tv_sec += 20; /* a hang guard: the parent's deadline is shorter */
    pthread_mutex_lock(&lock);
    while (detached_pending > 0 && pthread_cond_timedwait(&changed, &lock, &end) == 0) {
    }
    int pending = detached_pending;
    pthread_mutex_unlock(&lock);
    int args = 0, results = 0;
    for (int i = 0; i < EXIT_MAX; i++) {
        args += atomic_load(&arg_frees[i]);
        results += atomic_load(&result_frees[i]);
    }
    dprintf(STDOUT_FILENO, "c-destructor: arg_frees=%d result_frees=%d stray=%d detached_pending=%d\n", args,
            results, atomic_load(&stray_frees), pending);
}
