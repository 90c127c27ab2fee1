/*
 * The C/C++ bench of `make bench` (issue 8): jobrunner through its C API (this file,
 * C11, include/jobrunner.h only) against oneTBB's task_group (tbb_peer.cpp), in one
 * process, the systems taking turns run by run. Follows bench/PROTOCOL.md: one JSON line
 * per measured run on stdout, everything else on stderr; BENCH_QUICK, BENCH_RUNS,
 * BENCH_THREADS, BENCH_ONLY. Every run checks its result and the program exits 1 on a
 * wrong one. bench/README.md describes each workload.
 *
 * `bench-c --memory-child SYSTEM` is the fresh process of one memory measurement (the
 * program re-executes itself): it prints the bytes per queued job on stdout.
 */

#define _GNU_SOURCE

#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <semaphore.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "jobrunner.h"

#include "bench.h"

extern char **environ;

/* ------------------------------------------------------------------------------------
 * Settings, sizes, shared state. */

/* The BENCH_* settings of this invocation. */
static struct {
    bool quick;         /* BENCH_QUICK=1: small sizes */
    size_t runs;        /* BENCH_RUNS: measured runs per system per workload (default 5) */
    size_t threads;     /* BENCH_THREADS: pool size (default 2) */
    const char *only;   /* BENCH_ONLY: comma-separated workloads to run (NULL: all) */
} config;

/* The workloads' sizes (full, or quick) and calibrated work items. */
static struct {
    size_t spawn_jobs;
    unsigned fib_n;
    size_t fan_out_items;
    size_t wake_samples;
    size_t wake_warm_up_samples;
    size_t semaphore_jobs;     /* of each kind: constrained, unconstrained */
    size_t cancellation_jobs;
    size_t memory_jobs;
    uint64_t iters_20us;       /* bench_spin rounds of ~20 µs (fan-out) */
    uint64_t iters_50us;       /* bench_spin rounds of ~50 µs (semaphore-limited) */
} sizes;

/* Sleep between wake samples: long enough for every worker to stop spinning and park. */
#define WAKE_PAUSE_NS 200000u

/* The jobrunner pool of BENCH_THREADS workers, made once. */
static jr_pool *pool;
/* Job handles, room for the largest workload. */
static jr_job **handles;
/* The latencies of one wake run, in ns. */
static uint64_t *wake_samples;
/* A run's note for the table (JSON `detail`), set by the run; empty: none. */
static char detail[256];
/* This program, for the memory children. */
static char self_path[PATH_MAX];

void bench_fail(const char *format, ...) {
    va_list args;
    va_start(args, format);
    fputs("bench-c: ", stderr);
    vfprintf(stderr, format, args);
    fputc('\n', stderr);
    va_end(args);
    exit(1);
}

uint64_t bench_now_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
}

/* Not inlined, so that C and C++ callers run the same code, and opaque to the optimiser
 * (noipa), which would otherwise drop the calls whose result goes unused. */
__attribute__((noipa)) uint64_t bench_spin(uint64_t iters, uint64_t seed) {
    uint64_t x = 0x9E3779B97F4A7C15u + seed;
    for (uint64_t i = 0; i < iters; i++) {
        x = x * 6364136223846793005u + 1442695040888963407u;
        x ^= x >> 29;
    }
    return x;
}

uint64_t bench_fib_seq(unsigned n) {
    return n < 2 ? n : bench_fib_seq(n - 1) + bench_fib_seq(n - 2);
}

void bench_reset_peak_rss(void) {
    FILE *file = fopen("/proc/self/clear_refs", "w");
    if (file == NULL || fputs("5", file) < 0 || fclose(file) != 0) {
        bench_fail("cannot reset the peak RSS through /proc/self/clear_refs");
    }
}

uint64_t bench_status_bytes(const char *field) {
    FILE *file = fopen("/proc/self/status", "r");
    if (file == NULL) {
        bench_fail("cannot read /proc/self/status");
    }
    char line[256];
    size_t len = strlen(field);
    unsigned long long kib = 0;
    bool found = false;
    while (!found && fgets(line, sizeof line, file) != NULL) {
        found = strncmp(line, field, len) == 0 && line[len] == ':' &&
                sscanf(line + len + 1, "%llu", &kib) == 1;
    }
    fclose(file);
    if (!found) {
        bench_fail("no %s in /proc/self/status", field);
    }
    return (uint64_t)kib * 1024u;
}

/* Exits with the call's status and the library's last error message unless `status` is
 * JR_OK. */
static void check(jr_status status, const char *what) {
    if (status != JR_OK) {
        bench_fail("%s: %s (%s)", what, jr_status_str((int)status), jr_last_error_message());
    }
}

static void sleep_ns(uint64_t ns) {
    struct timespec pause = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
    nanosleep(&pause, NULL);
}

static size_t env_size(const char *name, size_t fallback) {
    const char *value = getenv(name);
    if (value == NULL || *value == '\0') {
        return fallback;
    }
    char *end;
    unsigned long long parsed = strtoull(value, &end, 10);
    if (*end != '\0') {
        bench_fail("%s=%s: not a number", name, value);
    }
    return (size_t)parsed;
}

static void read_config(void) {
    const char *quick = getenv("BENCH_QUICK");
    const char *only = getenv("BENCH_ONLY");
    config.quick = quick != NULL && strcmp(quick, "1") == 0;
    config.runs = env_size("BENCH_RUNS", 5);
    config.threads = env_size("BENCH_THREADS", 2);
    config.only = only != NULL && *only != '\0' ? only : NULL;
    if (config.runs == 0) {
        config.runs = 1;
    }
    if (config.threads == 0 || config.threads > JR_MAX_THREADS) {
        bench_fail("BENCH_THREADS=%zu: want 1 to %d", config.threads, JR_MAX_THREADS);
    }
    bool q = config.quick;
    sizes.spawn_jobs = q ? 100000 : 1000000;
    sizes.fib_n = q ? 25 : 30;
    sizes.fan_out_items = q ? 2000 : 20000;
    sizes.wake_samples = q ? 1000 : 10000;
    sizes.wake_warm_up_samples = sizes.wake_samples / 10;
    sizes.semaphore_jobs = q ? 1000 : 10000;
    sizes.cancellation_jobs = q ? 10000 : 100000;
    sizes.memory_jobs = q ? 100000 : 1000000;
}

/* The calling thread's CPU time, in nanoseconds. */
static uint64_t thread_cpu_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
    return (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
}

/* bench_spin rounds that take `target_ns` of CPU on this machine now (best of 5 probes).
 * CPU time, not wall time, so that a busy machine's preemptions do not shrink the item. */
static uint64_t calibrate(uint64_t target_ns) {
    const uint64_t probe = 2000000;
    uint64_t best = UINT64_MAX;
    bench_spin(probe, 0);
    for (int i = 0; i < 5; i++) {
        uint64_t start = thread_cpu_ns();
        bench_spin(probe, 0);
        uint64_t elapsed = thread_cpu_ns() - start;
        best = elapsed < best ? elapsed : best;
    }
    uint64_t iters = (uint64_t)((double)target_ns * (double)probe / (double)best);
    return iters > 0 ? iters : 1;
}

/* ------------------------------------------------------------------------------------
 * Synchronisation helpers. */

/* A countdown latch: an atomic counter each job decrements, a mutex and condvar used
 * only at zero (benches/common/mod.rs `Latch`). */
typedef struct latch {
    atomic_size_t count;
    pthread_mutex_t lock;
    pthread_cond_t zero;
} latch;

static latch spawn_latch = {0, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER};

static void latch_count_down(latch *l) {
    if (atomic_fetch_sub_explicit(&l->count, 1, memory_order_acq_rel) == 1) {
        /* Taking the lock orders the broadcast after the waiter's check. */
        pthread_mutex_lock(&l->lock);
        pthread_cond_broadcast(&l->zero);
        pthread_mutex_unlock(&l->lock);
    }
}

static void latch_wait(latch *l) {
    pthread_mutex_lock(&l->lock);
    while (atomic_load_explicit(&l->count, memory_order_acquire) != 0) {
        pthread_cond_wait(&l->zero, &l->lock);
    }
    pthread_mutex_unlock(&l->lock);
}

/* Holds every worker of the pool with a blocker job until released, so that the jobs
 * submitted meanwhile stay queued. */
typedef struct hold {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    size_t started;
    bool open;
    jr_job **blockers;
} hold;

static int32_t blocker_job(jr_ctx *ctx, void *arg, void **result) {
    (void)ctx;
    (void)result;
    hold *h = arg;
    pthread_mutex_lock(&h->lock);
    h->started++;
    pthread_cond_broadcast(&h->changed);
    while (!h->open) {
        pthread_cond_wait(&h->changed, &h->lock);
    }
    pthread_mutex_unlock(&h->lock);
    return 0;
}

/* Starts a blocker on every worker of `p` (BENCH_THREADS of them) and waits until each
 * has started. */
static void hold_workers(hold *h, jr_pool *p) {
    pthread_mutex_init(&h->lock, NULL);
    pthread_cond_init(&h->changed, NULL);
    h->started = 0;
    h->open = false;
    h->blockers = calloc(config.threads, sizeof *h->blockers);
    if (h->blockers == NULL) {
        bench_fail("out of memory");
    }
    for (size_t i = 0; i < config.threads; i++) {
        check(jr_submit(p, blocker_job, h, NULL, &h->blockers[i]), "jr_submit (blocker)");
    }
    pthread_mutex_lock(&h->lock);
    while (h->started < config.threads) {
        pthread_cond_wait(&h->changed, &h->lock);
    }
    pthread_mutex_unlock(&h->lock);
}

/* Lets the blockers return, waits for them, frees the hold. */
static void release_workers(hold *h) {
    pthread_mutex_lock(&h->lock);
    h->open = true;
    pthread_cond_broadcast(&h->changed);
    pthread_mutex_unlock(&h->lock);
    for (size_t i = 0; i < config.threads; i++) {
        check(jr_job_wait(h->blockers[i], -1), "a blocker job");
        check(jr_job_free(h->blockers[i]), "jr_job_free");
    }
    free(h->blockers);
    pthread_cond_destroy(&h->changed);
    pthread_mutex_destroy(&h->lock);
}

/* ------------------------------------------------------------------------------------
 * Job functions. */

static int32_t empty_job(jr_ctx *ctx, void *arg, void **result) {
    (void)ctx;
    (void)arg;
    (void)result;
    return 0;
}

static int32_t latch_job(jr_ctx *ctx, void *arg, void **result) {
    (void)ctx;
    (void)result;
    latch_count_down(arg);
    return 0;
}

/* Jobs that must never run count themselves here. */
static atomic_size_t ran_by_mistake;

static int32_t counted_job(jr_ctx *ctx, void *arg, void **result) {
    (void)ctx;
    (void)arg;
    (void)result;
    atomic_fetch_add_explicit(&ran_by_mistake, 1, memory_order_relaxed);
    return 0;
}

/* One fan-out item: arg is its index; the result is bench_spin's. */
static int32_t spin_20us_job(jr_ctx *ctx, void *arg, void **result) {
    (void)ctx;
    *result = (void *)(uintptr_t)bench_spin(sizes.iters_20us, (uint64_t)(uintptr_t)arg);
    return 0;
}

/* One semaphore-limited item (unconstrained; the constrained ones wrap it). */
static int32_t spin_50us_job(jr_ctx *ctx, void *arg, void **result) {
    (void)ctx;
    *result = (void *)(uintptr_t)bench_spin(sizes.iters_50us, (uint64_t)(uintptr_t)arg);
    return 0;
}

/* Constrained jobs inside their semaphore now: never more than 1. */
static atomic_int constrained_inside;

static int32_t constrained_job(jr_ctx *ctx, void *arg, void **result) {
    if (atomic_fetch_add(&constrained_inside, 1) != 0) {
        bench_fail("semaphore-limited: two constrained jobs ran at once");
    }
    int32_t code = spin_50us_job(ctx, arg, result);
    atomic_fetch_sub(&constrained_inside, 1);
    return code;
}

/* The blocking baseline's semaphore of 1, taken inside the job (holding the worker). */
static sem_t blocking_sem;

static int32_t blocking_constrained_job(jr_ctx *ctx, void *arg, void **result) {
    while (sem_wait(&blocking_sem) != 0) {
        /* EINTR: wait again */
    }
    int32_t code = constrained_job(ctx, arg, result);
    sem_post(&blocking_sem);
    return code;
}

typedef struct fib_task {
    unsigned n;
    uint64_t value;
} fib_task;

static int32_t fib_job(jr_ctx *ctx, void *arg, void **result);

/* fib(n) inside a job: above the cutoff, submit fib(n - 1) to the job's pool, compute
 * fib(n - 2) here, wait for the job (jr_job_wait inside a job runs it here if no worker
 * has taken it, or runs other work meanwhile). */
static uint64_t fib_par(jr_ctx *ctx, unsigned n) {
    if (n <= BENCH_FIB_CUTOFF) {
        return bench_fib_seq(n);
    }
    fib_task left = {n - 1, 0};
    jr_job *job;
    check(jr_submit(jr_ctx_pool(ctx), fib_job, &left, NULL, &job), "jr_submit (fib)");
    uint64_t right = fib_par(ctx, n - 2);
    check(jr_job_wait(job, -1), "a fib job");
    check(jr_job_free(job), "jr_job_free");
    return left.value + right;
}

static int32_t fib_job(jr_ctx *ctx, void *arg, void **result) {
    (void)result;
    fib_task *task = arg;
    task->value = fib_par(ctx, task->n);
    return 0;
}

/* The spawns of one fib(n): one per call above the cutoff. */
static uint64_t fib_spawns(unsigned n) {
    return n <= BENCH_FIB_CUTOFF ? 0 : 1 + fib_spawns(n - 1) + fib_spawns(n - 2);
}

/* ------------------------------------------------------------------------------------
 * The workloads, one function per system: each runs once (`warm_up`: the unreported
 * first run), checks its result, and writes its figures to out[] in the order of its
 * workload's metrics. */

static double per_job_ns(uint64_t elapsed, size_t jobs) {
    return (double)elapsed / (double)jobs;
}

static double ms(uint64_t ns) {
    return (double)ns / 1e6;
}

/* spawn, as a C user writes it: jr_submit keeping each handle, then jr_job_wait and
 * jr_job_free each. */
static void spawn_handles(bool warm_up, double *out) {
    (void)warm_up;
    size_t n = sizes.spawn_jobs;
    uint64_t start = bench_now_ns();
    for (size_t i = 0; i < n; i++) {
        check(jr_submit(pool, empty_job, NULL, NULL, &handles[i]), "jr_submit");
    }
    for (size_t i = 0; i < n; i++) {
        check(jr_job_wait(handles[i], -1), "a spawned job");
        check(jr_job_free(handles[i]), "jr_job_free");
    }
    out[0] = per_job_ns(bench_now_ns() - start, n);
    snprintf(detail, sizeof detail, "handle per job, jr_job_wait each");
}

/* spawn, detached: jr_submit with no handle; each job counts down a latch. */
static void spawn_detached(bool warm_up, double *out) {
    (void)warm_up;
    size_t n = sizes.spawn_jobs;
    atomic_store(&spawn_latch.count, n);
    uint64_t start = bench_now_ns();
    for (size_t i = 0; i < n; i++) {
        check(jr_submit(pool, latch_job, &spawn_latch, NULL, NULL), "jr_submit");
    }
    latch_wait(&spawn_latch);
    out[0] = per_job_ns(bench_now_ns() - start, n);
    snprintf(detail, sizeof detail, "no handle, a latch");
}

static uint64_t fib_expected;

/* fork-join: the root fib job submitted from the main thread and waited for. */
static void fork_join_jobrunner(bool warm_up, double *out) {
    (void)warm_up;
    fib_task root = {sizes.fib_n, 0};
    jr_job *job;
    uint64_t start = bench_now_ns();
    check(jr_submit(pool, fib_job, &root, NULL, &job), "jr_submit (fib)");
    check(jr_job_wait(job, -1), "the fib job");
    out[0] = ms(bench_now_ns() - start);
    check(jr_job_free(job), "jr_job_free");
    if (root.value != fib_expected) {
        bench_fail("fork-join: fib(%u) = %" PRIu64 ", not %" PRIu64, sizes.fib_n, root.value,
                   fib_expected);
    }
    snprintf(detail, sizeof detail, "submit + jr_job_wait, %" PRIu64 " spawns",
             fib_spawns(sizes.fib_n));
}

/* fan-out: this round's sequential time and sum of the same items (before_round). */
static uint64_t fan_out_sequential_ns;
static uint64_t fan_out_sum;

static void fan_out_sequential(void) {
    uint64_t sum = 0;
    uint64_t start = bench_now_ns();
    for (size_t i = 0; i < sizes.fan_out_items; i++) {
        sum += bench_spin(sizes.iters_20us, i);
    }
    fan_out_sequential_ns = bench_now_ns() - start;
    fan_out_sum = sum;
}

/* The fan-out figures of a parallel run of `elapsed` ns: ms, and efficiency (%). */
static void fan_out_figures(uint64_t elapsed, double *out) {
    out[0] = ms(elapsed);
    out[1] = 100.0 * (double)fan_out_sequential_ns / ((double)config.threads * (double)elapsed);
    snprintf(detail, sizeof detail, "sequential %.1f ms (%.1f µs/item, %" PRIu64 " rounds)",
             ms(fan_out_sequential_ns),
             (double)fan_out_sequential_ns / 1e3 / (double)sizes.fan_out_items,
             sizes.iters_20us);
}

/* fan-out: a job with a handle per item, then wait, jr_job_take_result, free, sum. */
static void fan_out_jobrunner(bool warm_up, double *out) {
    (void)warm_up;
    size_t n = sizes.fan_out_items;
    uint64_t sum = 0;
    uint64_t start = bench_now_ns();
    for (size_t i = 0; i < n; i++) {
        check(jr_submit(pool, spin_20us_job, (void *)(uintptr_t)i, NULL, &handles[i]),
              "jr_submit");
    }
    for (size_t i = 0; i < n; i++) {
        void *result;
        check(jr_job_wait(handles[i], -1), "a fan-out job");
        check(jr_job_take_result(handles[i], &result), "jr_job_take_result");
        check(jr_job_free(handles[i]), "jr_job_free");
        sum += (uint64_t)(uintptr_t)result;
    }
    uint64_t elapsed = bench_now_ns() - start;
    if (sum != fan_out_sum) {
        bench_fail("fan-out: the results sum to %" PRIu64 ", not %" PRIu64, sum, fan_out_sum);
    }
    fan_out_figures(elapsed, out);
}

static int compare_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a;
    uint64_t y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* The p-th percentile (nearest rank) of sorted samples, in µs. */
static double percentile_us(const uint64_t *sorted, size_t n, double p) {
    size_t rank = (size_t)(p / 100.0 * (double)n + 0.999999);
    rank = rank < 1 ? 1 : rank > n ? n : rank;
    return (double)sorted[rank - 1] / 1e3;
}

static void wake_figures(size_t n, double *out) {
    qsort(wake_samples, n, sizeof *wake_samples, compare_u64);
    out[0] = percentile_us(wake_samples, n, 50.0);
    out[1] = percentile_us(wake_samples, n, 99.0);
    snprintf(detail, sizeof detail, "%zu samples, %u µs apart; max %.1f µs", n,
             WAKE_PAUSE_NS / 1000u, percentile_us(wake_samples, n, 100.0));
}

static int32_t stamp_job(jr_ctx *ctx, void *arg, void **result) {
    (void)ctx;
    (void)result;
    *(uint64_t *)arg = bench_now_ns();
    return 0;
}

/* wake: one job at a time on the idle pool; it stores the time first thing; the main
 * thread waits for its handle. */
static void wake_jobrunner(bool warm_up, double *out) {
    size_t n = warm_up ? sizes.wake_warm_up_samples : sizes.wake_samples;
    for (size_t i = 0; i < n; i++) {
        uint64_t started = 0;
        jr_job *job;
        sleep_ns(WAKE_PAUSE_NS);
        uint64_t submitted = bench_now_ns();
        check(jr_submit(pool, stamp_job, &started, NULL, &job), "jr_submit");
        check(jr_job_wait(job, -1), "a wake job");
        check(jr_job_free(job), "jr_job_free");
        wake_samples[i] = started - submitted;
    }
    wake_figures(n, out);
}

/* Waits for and frees handles[from..to), and exits unless each succeeded. */
static void wait_all(size_t from, size_t to, const char *what) {
    for (size_t i = from; i < to; i++) {
        check(jr_job_wait(handles[i], -1), what);
        check(jr_job_free(handles[i]), "jr_job_free");
    }
}

/* semaphore-limited: `constrained` (a job function) jobs with `options`, interleaved
 * with as many unconstrained ones; the figure is the time until every unconstrained
 * job has ended, over their time alone (measured first, in the same run). */
static void semaphore_run(jr_job_fn constrained, const jr_submit_options *options,
                          double *out) {
    size_t n = sizes.semaphore_jobs;
    jr_job **unconstrained = handles;
    uint64_t start = bench_now_ns();
    for (size_t i = 0; i < n; i++) {
        check(jr_submit(pool, spin_50us_job, (void *)(uintptr_t)i, NULL, &unconstrained[i]),
              "jr_submit");
    }
    wait_all(0, n, "an unconstrained job");
    uint64_t alone = bench_now_ns() - start;

    jr_job **constrained_jobs = handles + n;
    start = bench_now_ns();
    for (size_t i = 0; i < n; i++) {
        check(jr_submit(pool, constrained, (void *)(uintptr_t)i, options, &constrained_jobs[i]),
              "jr_submit (constrained)");
        check(jr_submit(pool, spin_50us_job, (void *)(uintptr_t)i, NULL, &unconstrained[i]),
              "jr_submit");
    }
    wait_all(0, n, "an unconstrained job");
    uint64_t beside = bench_now_ns() - start;
    wait_all(n, 2 * n, "a constrained job");
    uint64_t all = bench_now_ns() - start;
    out[0] = (double)beside / (double)alone;
    snprintf(detail, sizeof detail,
             "unconstrained alone %.0f ms, beside the constrained %.0f ms; all done %.0f ms",
             ms(alone), ms(beside), ms(all));
}

/* The constrained jobs wait for a jr_sem of 1 (jr_submit_options.sem), holding no
 * worker. */
static void semaphore_jobrunner(bool warm_up, double *out) {
    (void)warm_up;
    jr_submit_options options = jr_submit_options_default();
    check(jr_sem_new(1, &options.sem), "jr_sem_new");
    semaphore_run(constrained_job, &options, out);
    check(jr_sem_free(options.sem), "jr_sem_free");
}

/* The baseline: the constrained jobs take a POSIX semaphore of 1 inside the job,
 * blocking their worker while they wait. */
static void semaphore_blocking(bool warm_up, double *out) {
    (void)warm_up;
    semaphore_run(blocking_constrained_job, NULL, out);
}

/* cancellation: jobs queued under one token behind a hold of every worker; the time from
 * jr_token_cancel until jr_job_wait has returned JR_E_CANCELLED for every handle. */
static void cancellation_jobrunner(bool warm_up, double *out) {
    (void)warm_up;
    size_t n = sizes.cancellation_jobs;
    hold h;
    hold_workers(&h, pool);
    jr_submit_options options = jr_submit_options_default();
    check(jr_token_new(NULL, &options.token), "jr_token_new");
    atomic_store(&ran_by_mistake, 0);
    for (size_t i = 0; i < n; i++) {
        check(jr_submit(pool, counted_job, NULL, &options, &handles[i]), "jr_submit");
    }
    uint64_t start = bench_now_ns();
    check(jr_token_cancel(options.token), "jr_token_cancel");
    for (size_t i = 0; i < n; i++) {
        jr_status status = jr_job_wait(handles[i], -1);
        if (status != JR_E_CANCELLED) {
            bench_fail("cancellation: a job ended %s, not cancelled", jr_status_str((int)status));
        }
    }
    out[0] = ms(bench_now_ns() - start);
    for (size_t i = 0; i < n; i++) {
        check(jr_job_free(handles[i]), "jr_job_free");
    }
    release_workers(&h);
    check(jr_token_free(options.token), "jr_token_free");
    if (atomic_load(&ran_by_mistake) != 0) {
        bench_fail("cancellation: %zu cancelled jobs ran", atomic_load(&ran_by_mistake));
    }
    snprintf(detail, sizeof detail, "%zu queued jobs, jr_token_cancel, jr_job_wait each", n);
}

/* memory, in the child: the peak RSS growth while `sizes.memory_jobs` jobs sit queued
 * (a hold of every worker), per job; then they are cancelled. With `keep_handles`, a
 * handle per job (the caller's array of pointers to them is made before and not
 * counted); without, detached. */
static double memory_jobrunner(bool keep_handles) {
    size_t n = sizes.memory_jobs;
    jr_job **kept = NULL;
    if (keep_handles) {
        kept = calloc(n, sizeof *kept);
        if (kept == NULL) {
            bench_fail("out of memory");
        }
    }
    hold h;
    hold_workers(&h, pool);
    jr_submit_options options = jr_submit_options_default();
    check(jr_token_new(NULL, &options.token), "jr_token_new");
    bench_reset_peak_rss();
    uint64_t before = bench_status_bytes("VmRSS");
    for (size_t i = 0; i < n; i++) {
        check(jr_submit(pool, counted_job, NULL, &options, keep_handles ? &kept[i] : NULL),
              "jr_submit");
    }
    uint64_t peak = bench_status_bytes("VmHWM");
    check(jr_token_cancel_sync(options.token), "jr_token_cancel_sync");
    for (size_t i = 0; keep_handles && i < n; i++) {
        if (jr_job_wait(kept[i], -1) != JR_E_CANCELLED) {
            bench_fail("memory: a queued job was not cancelled");
        }
        check(jr_job_free(kept[i]), "jr_job_free");
    }
    release_workers(&h);
    check(jr_token_free(options.token), "jr_token_free");
    free(kept);
    jr_stats stats = {.size = sizeof stats};
    check(jr_pool_stats(pool, &stats), "jr_pool_stats");
    if (stats.cancelled_before_start != n || atomic_load(&ran_by_mistake) != 0) {
        bench_fail("memory: %" PRIu64 " jobs cancelled before start and %zu ran (want %zu, 0)",
                   stats.cancelled_before_start, atomic_load(&ran_by_mistake), n);
    }
    return (double)(peak - before) / (double)n;
}

/* The memory children, by the name given on the command line. */
static const char *const MEMORY_HANDLES = "jobrunner-handles";
static const char *const MEMORY_DETACHED = "jobrunner-detached";
#ifdef BENCH_HAVE_TBB
static const char *const MEMORY_TBB = "tbb";
#endif

/* `bench-c --memory-child WHICH`: prints the bytes per queued job. */
static int memory_child(const char *which) {
    double per_job;
    if (strcmp(which, MEMORY_HANDLES) == 0 || strcmp(which, MEMORY_DETACHED) == 0) {
        jr_pool_options options = jr_pool_options_default();
        options.threads = config.threads;
        check(jr_pool_new(&options, &pool), "jr_pool_new");
        per_job = memory_jobrunner(strcmp(which, MEMORY_HANDLES) == 0);
        check(jr_pool_free(pool), "jr_pool_free");
#ifdef BENCH_HAVE_TBB
    } else if (strcmp(which, MEMORY_TBB) == 0) {
        tbb_peer_init(config.threads);
        per_job = tbb_memory_per_task(sizes.memory_jobs);
        tbb_peer_free();
#endif
    } else {
        bench_fail("--memory-child %s: unknown", which);
    }
    printf("%.3f\n", per_job);
    return 0;
}

/* Runs `bench-c --memory-child which` and returns what it printed. */
static double memory_in_child(const char *which) {
    int pipe_fds[2];
    if (pipe(pipe_fds) != 0) {
        bench_fail("pipe failed");
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&actions, pipe_fds[0]);
    posix_spawn_file_actions_addclose(&actions, pipe_fds[1]);
    char *argv[] = {self_path, "--memory-child", (char *)which, NULL};
    pid_t child;
    int error = posix_spawn(&child, self_path, &actions, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    close(pipe_fds[1]);
    if (error != 0) {
        bench_fail("cannot start %s: %s", self_path, strerror(error));
    }
    FILE *output = fdopen(pipe_fds[0], "r");
    double per_job = -1.0;
    bool parsed = output != NULL && fscanf(output, "%lf", &per_job) == 1;
    if (output != NULL) {
        fclose(output);
    }
    int status;
    if (waitpid(child, &status, 0) != child || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0 || !parsed) {
        bench_fail("the memory child (%s) failed", which);
    }
    return per_job;
}

static void memory_handles(bool warm_up, double *out) {
    (void)warm_up;
    out[0] = memory_in_child(MEMORY_HANDLES);
    snprintf(detail, sizeof detail,
             "%zu queued jobs, a handle each (+8 B/job for the caller's array)",
             sizes.memory_jobs);
}

static void memory_detached(bool warm_up, double *out) {
    (void)warm_up;
    out[0] = memory_in_child(MEMORY_DETACHED);
    snprintf(detail, sizeof detail, "%zu queued jobs, detached", sizes.memory_jobs);
}

#ifdef BENCH_HAVE_TBB
static void spawn_tbb(bool warm_up, double *out) {
    (void)warm_up;
    out[0] = per_job_ns(tbb_spawn(sizes.spawn_jobs), sizes.spawn_jobs);
    snprintf(detail, sizeof detail, "task_group::run each, one wait()");
}

static void fork_join_tbb(bool warm_up, double *out) {
    (void)warm_up;
    out[0] = ms(tbb_fork_join(sizes.fib_n, fib_expected));
    snprintf(detail, sizeof detail, "a task_group per call, %" PRIu64 " spawns",
             fib_spawns(sizes.fib_n));
}

static void fan_out_tbb(bool warm_up, double *out) {
    (void)warm_up;
    fan_out_figures(tbb_fan_out(sizes.fan_out_items, sizes.iters_20us, fan_out_sum), out);
}

static void wake_tbb(bool warm_up, double *out) {
    size_t n = warm_up ? sizes.wake_warm_up_samples : sizes.wake_samples;
    tbb_wake(wake_samples, n, WAKE_PAUSE_NS);
    wake_figures(n, out);
}

static void cancellation_tbb(bool warm_up, double *out) {
    (void)warm_up;
    out[0] = ms(tbb_cancellation(sizes.cancellation_jobs));
    snprintf(detail, sizeof detail, "%zu queued tasks, task_group::cancel, wait()",
             sizes.cancellation_jobs);
}

static void memory_tbb(bool warm_up, double *out) {
    (void)warm_up;
    out[0] = memory_in_child(MEMORY_TBB);
    snprintf(detail, sizeof detail, "%zu queued tasks in a task_group", sizes.memory_jobs);
}
#endif

/* ------------------------------------------------------------------------------------
 * The driver. */

/* One figure a workload reports per run: its id in the table (bench/PROTOCOL.md). */
typedef struct metric {
    const char *id;
    const char *unit;
    bool lower_is_better;
} metric;

typedef struct system_def {
    const char *name;
    bool ours;
    void (*run)(bool warm_up, double *out);
} system_def;

typedef struct workload {
    const char *name;              /* for BENCH_ONLY, beside the metric ids */
    metric metrics[2];             /* id NULL: none */
    void (*before_round)(void);    /* NULL: none */
    system_def systems[3];         /* name NULL: none */
} workload;

#ifdef BENCH_HAVE_TBB
#define TBB_SYSTEM(run) {"oneTBB task_group", false, run}
#else
#define TBB_SYSTEM(run) {NULL, false, NULL}
#endif

static const workload WORKLOADS[] = {
    {"spawn",
     {{"spawn", "ns/job", true}},
     NULL,
     {{"jobrunner (C API)", true, spawn_handles},
      {"jobrunner (C API, detached)", true, spawn_detached},
      TBB_SYSTEM(spawn_tbb)}},
    {"fork-join",
     {{"fork-join", "ms", true}},
     NULL,
     {{"jobrunner (C API)", true, fork_join_jobrunner}, TBB_SYSTEM(fork_join_tbb)}},
    {"fan-out",
     {{"fan-out", "ms", true}, {"fan-out efficiency", "%", false}},
     fan_out_sequential,
     {{"jobrunner (C API)", true, fan_out_jobrunner}, TBB_SYSTEM(fan_out_tbb)}},
    {"wake",
     {{"wake p50", "µs", true}, {"wake p99", "µs", true}},
     NULL,
     {{"jobrunner (C API)", true, wake_jobrunner}, TBB_SYSTEM(wake_tbb)}},
    {"semaphore-limited",
     {{"semaphore-limited", "x alone", true}},
     NULL,
     {{"jobrunner (C API)", true, semaphore_jobrunner},
      {"blocking sem_t in the job (C)", false, semaphore_blocking}}},
    {"cancellation",
     {{"cancellation", "ms", true}},
     NULL,
     {{"jobrunner (C API)", true, cancellation_jobrunner}, TBB_SYSTEM(cancellation_tbb)}},
    {"memory",
     {{"memory", "B/job", true}},
     NULL,
     {{"jobrunner (C API, handles)", true, memory_handles},
      {"jobrunner (C API, detached)", true, memory_detached},
      TBB_SYSTEM(memory_tbb)}},
};

/* Whether BENCH_ONLY lists `id`. */
static bool only_lists(const char *id) {
    size_t len = strlen(id);
    for (const char *p = config.only; p != NULL; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL) {
        while (*p == ' ') {
            p++;
        }
        const char *end = p + strcspn(p, ",");
        while (end > p && end[-1] == ' ') {
            end--;
        }
        if ((size_t)(end - p) == len && strncmp(p, id, len) == 0) {
            return true;
        }
    }
    return false;
}

static bool wanted(const workload *w) {
    if (config.only == NULL || only_lists(w->name)) {
        return true;
    }
    for (size_t m = 0; m < 2 && w->metrics[m].id != NULL; m++) {
        if (only_lists(w->metrics[m].id)) {
            return true;
        }
    }
    return false;
}

/* Writes `s` as a JSON string. */
static void json_string(const char *s) {
    putchar('"');
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            printf("\\%c", c);
        } else if (c < 0x20) {
            printf("\\u%04x", c);
        } else {
            putchar(c);
        }
    }
    putchar('"');
}

/* One measured run of one system: a JSON line on stdout, a line for humans on stderr. */
static void emit(const metric *m, const system_def *s, double value) {
    printf("{\"workload\": ");
    json_string(m->id);
    printf(", \"system\": ");
    json_string(s->name);
    printf(", \"ours\": %s, \"unit\": ", s->ours ? "true" : "false");
    json_string(m->unit);
    printf(", \"value\": %.6g, \"lower_is_better\": %s", value,
           m->lower_is_better ? "true" : "false");
    if (detail[0] != '\0') {
        printf(", \"detail\": ");
        json_string(detail);
    }
    printf("}\n");
    fflush(stdout);
    fprintf(stderr, "  %-20s %-32s %12.3f %-8s %s\n", m->id, s->name, value, m->unit, detail);
}

/* One warm-up run of every system (not reported), then BENCH_RUNS rounds in which each
 * runs once, in order. */
static void run_workload(const workload *w) {
    for (size_t round = 0; round <= config.runs; round++) {
        bool warm_up = round == 0;
        if (w->before_round != NULL) {
            w->before_round();
        }
        for (size_t i = 0; i < 3 && w->systems[i].name != NULL; i++) {
            const system_def *s = &w->systems[i];
            double out[2];
            detail[0] = '\0';
            s->run(warm_up, out);
            for (size_t m = 0; !warm_up && m < 2 && w->metrics[m].id != NULL; m++) {
                emit(&w->metrics[m], s, out[m]);
            }
        }
    }
}

static void print_load_average(const char *when) {
    double load[3];
    if (getloadavg(load, 3) == 3) {
        fprintf(stderr, "bench-c: load average %s: %.2f %.2f %.2f\n", when, load[0], load[1],
                load[2]);
    }
}

int main(int argc, char **argv) {
    read_config();
    if (argc == 3 && strcmp(argv[1], "--memory-child") == 0) {
        return memory_child(argv[2]);
    }
    if (argc != 1) {
        fprintf(stderr, "usage: %s (settings in BENCH_* variables: bench/PROTOCOL.md)\n",
                argv[0]);
        return 2;
    }
    ssize_t len = readlink("/proc/self/exe", self_path, sizeof self_path - 1);
    if (len <= 0) {
        bench_fail("cannot find this program through /proc/self/exe");
    }
    self_path[len] = '\0';
    uint64_t started = bench_now_ns();

    size_t most = sizes.spawn_jobs;
    most = sizes.fan_out_items > most ? sizes.fan_out_items : most;
    most = 2 * sizes.semaphore_jobs > most ? 2 * sizes.semaphore_jobs : most;
    most = sizes.cancellation_jobs > most ? sizes.cancellation_jobs : most;
    handles = calloc(most, sizeof *handles);
    wake_samples = calloc(sizes.wake_samples, sizeof *wake_samples);
    if (handles == NULL || wake_samples == NULL) {
        bench_fail("out of memory");
    }
    if (sem_init(&blocking_sem, 0, 1) != 0) {
        bench_fail("sem_init failed");
    }
    jr_pool_options options = jr_pool_options_default();
    options.threads = config.threads;
    options.thread_name = "bench-c";
    check(jr_pool_new(&options, &pool), "jr_pool_new");
#ifdef BENCH_HAVE_TBB
    tbb_peer_init(config.threads);
    const char *peer = "oneTBB task_group";
#else
    const char *peer = "no oneTBB peer (not built: apt-get install libtbb-dev)";
#endif
    sizes.iters_20us = calibrate(20000);
    sizes.iters_50us = calibrate(50000);
    fib_expected = bench_fib_seq(sizes.fib_n);
    fprintf(stderr,
            "bench-c: jobrunner %s C API vs %s; %zu threads, %s sizes, %zu runs; work items: "
            "%" PRIu64 " rounds ~20 µs, %" PRIu64 " rounds ~50 µs\n",
            jr_version(), peer, config.threads, config.quick ? "quick" : "full", config.runs,
            sizes.iters_20us, sizes.iters_50us);
    print_load_average("before");

    for (size_t i = 0; i < sizeof WORKLOADS / sizeof WORKLOADS[0]; i++) {
        if (wanted(&WORKLOADS[i])) {
            run_workload(&WORKLOADS[i]);
        }
    }

#ifdef BENCH_HAVE_TBB
    tbb_peer_free();
#endif
    check(jr_pool_free(pool), "jr_pool_free");
    sem_destroy(&blocking_sem);
    free(wake_samples);
    free(handles);
    print_load_average("after");
    fprintf(stderr, "bench-c: %.1f s\n", (double)(bench_now_ns() - started) / 1e9);
    return 0;
}
