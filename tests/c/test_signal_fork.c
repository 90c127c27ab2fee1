/*
 * Signals and fork():
 *
 * (a) jr_token_cancel is async-signal-safe: a SIGUSR1 handler (installed with sigaction)
 *     cancels a token, whichever thread the signal lands on (the thread that raised it,
 *     the main thread while it waits in the library, a worker in the middle of a job,
 *     or the main thread in the middle of any jr_* call, again and again). The token
 *     reads cancelled as soon as the handler returns, running jobs stop, and queued
 *     ones end JR_E_CANCELLED without running.
 *
 * (b) fork(): the child gets JR_E_FORKED (at once, never a hang) from every handle the
 *     parent made, and jr_pool_global() gives it a working pool of its own; the parent's
 *     pool goes on working. A child reports failures through its exit status; the parent
 *     waits for it with a timeout, so a hung child fails the test instead of hanging it.
 *
 * Jobs that loop until cancelled have a bounded number of iterations, so a cancel that
 * never arrives fails the test rather than hanging it; an alarm() watchdog ends the
 * program if a signal handler deadlocks. Children report their failures through a pipe
 * (see fork_child: under valgrind a forked child's exit status is valgrind's). The two
 * tests that fork while other threads are busy allocating, and the parts of the others
 * in which a child starts threads of its own, are skipped in ASan builds (ASan's
 * allocator is not fork-safe; see UNDER_ASAN).
 */
#define _GNU_SOURCE

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "jobrunner.h"
#include "jr_test.h"
#include "test_util.h"

/* AddressSanitizer's own allocator (GCC 12's libasan) is not fork-safe: a child forked
 * while another thread is inside malloc can deadlock in ASan's allocator lock as soon as
 * it starts a thread (seen with gdb: child threads stuck in
 * __sanitizer::SizeClassAllocator64::GetFromAllocator from AsanThread::Init). The tests
 * that fork while other threads are busy allocating are skipped in ASan builds; they run
 * in the plain and valgrind builds. */
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

static bool skip_under_asan(const char *test) {
    if (UNDER_ASAN) {
        fprintf(stderr, "%s: skipped under AddressSanitizer (its allocator is not fork-safe)\n",
                test);
        return true;
    }
    return false;
}

/* ----- the signal handler ------------------------------------------------------------------ */

/* The token the handler cancels (NULL: none). */
static jr_token *_Atomic sig_token;
/* What the handler saw: jr_token_cancel's status, and jr_token_is_cancelled right after. */
static volatile sig_atomic_t sig_status = -1;
static volatile sig_atomic_t sig_cancelled_after = -1;
static atomic_int sig_count;
static sem_t sig_handled; /* posted by the handler (sem_post is async-signal-safe) */

static void on_sigusr1(int signo) {
    (void)signo;
    int saved = errno;
    jr_token *t = atomic_load(&sig_token);
    sig_status = (sig_atomic_t)jr_token_cancel(t);
    sig_cancelled_after = jr_token_is_cancelled(t) ? 1 : 0;
    atomic_fetch_add(&sig_count, 1);
    sem_post(&sig_handled);
    errno = saved;
}

static void install_handler(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigusr1;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: the library's waits must cope with EINTR */
    REQUIRE(sigaction(SIGUSR1, &sa, NULL) == 0);
    REQUIRE(sem_init(&sig_handled, 0, 0) == 0);
}

/* Waits (bounded) for the handler to have run `n` more times. */
static bool wait_handled(int n) {
    for (int i = 0; i < n; i++) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += HANG_MS / 1000;
        int rc;
        while ((rc = sem_timedwait(&sig_handled, &until)) != 0 && errno == EINTR) {
        }
        if (rc != 0) {
            return false;
        }
    }
    return true;
}

/* ----- jobs ---------------------------------------------------------------------------------- */

/* Loops until its job is cancelled (bounded: ~10 s), recording its thread. */
typedef struct {
    counter started;
    atomic_int saw_cancel;
    atomic_int gave_up;
} spin_state;

static pthread_t spinner_threads[8];
static atomic_int spinner_index;

static int32_t spinner_job(jr_ctx *ctx, void *arg, void **result) {
    (void)result;
    spin_state *s = arg;
    int me = atomic_fetch_add(&spinner_index, 1);
    if (me < 8) {
        spinner_threads[me] = pthread_self();
    }
    counter_add(&s->started, 1);
    for (int i = 0; i < 20000; i++) {
        if (jr_ctx_is_cancelled(ctx)) {
            atomic_fetch_add(&s->saw_cancel, 1);
            return 1; /* an error after cancellation: ends JR_E_CANCELLED */
        }
        struct timespec ts = {0, 500 * 1000};
        nanosleep(&ts, NULL); /* may be cut short by the signal: fine */
    }
    atomic_fetch_add(&s->gave_up, 1);
    return 99;
}

static void spin_init(spin_state *s) {
    counter_init(&s->started);
    atomic_init(&s->saw_cancel, 0);
    atomic_init(&s->gave_up, 0);
    atomic_store(&spinner_index, 0);
}

/* The scenario of the three delivery tests: a pool of 2 busy with 2 spinners under a
 * token, 5 jobs queued behind them under the same token, then `deliver` sends the
 * signal; everything must end JR_E_CANCELLED, the queued jobs without running. */
static void signal_cancels_jobs(void (*deliver)(void)) {
    jr_pool *p = make_pool(2, 0);
    jr_token *t = NULL;
    REQUIRE(jr_token_new(NULL, &t) == JR_OK);
    jr_token *child = NULL;
    REQUIRE(jr_token_new(t, &child) == JR_OK);
    atomic_store(&sig_token, t);
    sig_status = -1;
    sig_cancelled_after = -1;

    spin_state s;
    spin_init(&s);
    jr_submit_options o = jr_submit_options_default();
    o.token = t;
    jr_job *spinners[2];
    for (int i = 0; i < 2; i++) {
        spinners[i] = submit_opts(p, spinner_job, &s, &o);
    }
    REQUIRE(counter_wait(&s.started, 2, HANG_MS));
    counter runs;
    counter_init(&runs);
    o.token = child; /* a descendant of the signalled token */
    jr_job *queued[5];
    for (int i = 0; i < 5; i++) {
        queued[i] = submit_opts(p, count_job, &runs, &o);
    }

    deliver();

    CHECK(jr_token_is_cancelled(t));
    CHECK(sig_status == JR_OK);
    CHECK(sig_cancelled_after == 1);
    for (int i = 0; i < 2; i++) {
        CHECK_STATUS(wait_free(spinners[i]), JR_E_CANCELLED);
    }
    for (int i = 0; i < 5; i++) {
        CHECK_STATUS(wait_free(queued[i]), JR_E_CANCELLED);
    }
    CHECK(atomic_load(&s.saw_cancel) == 2);
    CHECK(atomic_load(&s.gave_up) == 0);
    CHECK(counter_get(&runs) == 0);
    CHECK_STATUS(jr_token_wait(child, HANG_MS * MS), JR_OK);
    jr_cancel_reason r = JR_REASON_NONE;
    CHECK_STATUS(jr_token_reason(child, &r), JR_OK);
    CHECK(r == JR_REASON_CANCELLED);

    atomic_store(&sig_token, NULL);
    CHECK_STATUS(jr_token_free(child), JR_OK);
    CHECK_STATUS(jr_token_free(t), JR_OK);
    CHECK_STATUS(jr_pool_free(p), JR_OK);
    counter_destroy(&runs);
    counter_destroy(&s.started);
}

static void deliver_by_raise(void) {
    REQUIRE(raise(SIGUSR1) == 0);
    /* raise() returns after the handler has run in this thread. */
    CHECK(wait_handled(1));
}

static void signal_raised_in_main_thread(void) { signal_cancels_jobs(deliver_by_raise); }

static pthread_t main_thread;

static void *kill_main_thread(void *arg) {
    (void)arg;
    pthread_kill(main_thread, SIGUSR1);
    return NULL;
}

/* Another thread signals the main thread while it waits inside jr_job_wait. */
static void deliver_from_other_thread(void) {
    pthread_t th;
    main_thread = pthread_self();
    REQUIRE(pthread_create(&th, NULL, kill_main_thread, NULL) == 0);
    CHECK(wait_handled(1));
    pthread_join(th, NULL);
}

static void signal_from_another_thread(void) { signal_cancels_jobs(deliver_from_other_thread); }

/* The signal lands on a worker thread, in the middle of a spinning job. */
static void deliver_to_worker(void) {
    REQUIRE(atomic_load(&spinner_index) >= 1);
    REQUIRE(pthread_kill(spinner_threads[0], SIGUSR1) == 0);
    CHECK(wait_handled(1));
}

static void signal_on_a_worker_thread(void) { signal_cancels_jobs(deliver_to_worker); }

/* A thread fires signals at the main thread while it runs submit/wait/new/free cycles: the
 * handler interrupts it inside any jr_* call (holding whatever locks that call takes). */
static atomic_int flood_stop;

static void *flood_main_thread(void *arg) {
    (void)arg;
    while (!atomic_load(&flood_stop)) {
        pthread_kill(main_thread, SIGUSR1);
        struct timespec ts = {0, 200 * 1000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

/* Runs ~0.2 ms; stops (ends cancelled) if its token was cancelled meanwhile. */
static int32_t round_job(jr_ctx *ctx, void *arg, void **result) {
    (void)arg;
    (void)result;
    struct timespec ts = {0, 200 * 1000};
    nanosleep(&ts, NULL);
    return jr_ctx_is_cancelled(ctx) ? 1 : 0;
}

static void signals_during_library_calls(void) {
    size_t rounds = jr_test_scale(2000);
    jr_pool *p = make_pool(2, 0);
    main_thread = pthread_self();
    atomic_store(&flood_stop, 0);
    int start_count = atomic_load(&sig_count);
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, flood_main_thread, NULL) == 0);
    int ok = 0, cancelled = 0, bad = 0;
    /* At least `rounds` rounds, and on until `signals` signals have landed (bounded). */
    int signals = (int)jr_test_scale(200);
    int64_t give_up = now_ns() + 20 * SEC;
    size_t i = 0;
    for (; i < rounds || (atomic_load(&sig_count) - start_count < signals && now_ns() < give_up);
         i++) {
        jr_token *t = NULL;
        jr_status s = jr_token_new(NULL, &t);
        if (s != JR_OK) {
            bad++;
            continue;
        }
        atomic_store(&sig_token, t);
        jr_submit_options o = jr_submit_options_default();
        o.token = t;
        jr_job *j = NULL;
        s = jr_submit(p, round_job, NULL, &o, &j);
        if (s == JR_OK) {
            s = jr_job_wait(j, HANG_MS * MS);
            if (s == JR_OK) {
                ok++;
            } else if (s == JR_E_CANCELLED && jr_token_is_cancelled(t)) {
                cancelled++;
            } else {
                fprintf(stderr, "round %zu: jr_job_wait gave %s\n", i, jr_status_str(s));
                bad++;
            }
            jr_job_free(j);
        } else {
            bad++;
        }
        atomic_store(&sig_token, NULL);
        jr_token_free(t);
    }
    atomic_store(&flood_stop, 1);
    pthread_join(th, NULL);
    /* Drain the handler's posts. */
    while (sem_trywait(&sig_handled) == 0) {
    }
    fprintf(stderr, "signals_during_library_calls: %zu rounds, %d ok, %d cancelled, %d signals\n",
            i, ok, cancelled, atomic_load(&sig_count) - start_count);
    CHECK(bad == 0);
    CHECK(ok + cancelled == (int)i);
    CHECK(atomic_load(&sig_count) - start_count >= signals);
    CHECK(cancelled > 0); /* some signals did cancel a round's job */
    CHECK_STATUS(jr_pool_free(p), JR_OK);
}

/* ----- fork --------------------------------------------------------------------------------- */

/* In a child: write-only reporting (no stdio locks a parent thread might have held). */
static int child_failures;

static void child_say(const char *format, ...) {
    char buf[512];
    va_list args;
    va_start(args, format);
    int n = vsnprintf(buf, sizeof buf, format, args);
    va_end(args);
    if (n > 0) {
        ssize_t w = write(2, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
        (void)w;
    }
}

#define CHILD_CHECK(cond)                                                                  \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            child_say("%s:%d: in child %d: CHECK failed: %s\n", __FILE__, __LINE__,        \
                      (int)getpid(), #cond);                                               \
            child_failures++;                                                              \
        }                                                                                  \
    } while (0)

#define CHILD_STATUS(got, want)                                                            \
    do {                                                                                   \
        jr_status g_ = (got), w_ = (want);                                                 \
        if (g_ != w_) {                                                                    \
            child_say("%s:%d: in child %d: %s: got %s, want %s\n", __FILE__, __LINE__,     \
                      (int)getpid(), #got, jr_status_str(g_), jr_status_str(w_));          \
            child_failures++;                                                              \
        }                                                                                  \
    } while (0)

/* A child reports its failures through a pipe as well as its exit status: under valgrind
 * the exit status of a forked child is valgrind's (--error-exitcode), set by the leak check
 * valgrind runs at the child's exit: a forked child leaks, by design, whatever the
 * parent's vanished threads held. The report is what counts; the exit status must agree
 * with it otherwise. */
static int child_report_fd = -1;

typedef struct {
    pid_t pid;
    int report_fd; /* the parent's read end */
} child_proc;

/* Forks; in the child returns {0, -1} (with its failures reset), in the parent the child. */
static child_proc fork_child(void) {
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    fflush(NULL);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        if (child_report_fd >= 0) {
            close(child_report_fd); /* a grandchild: its parent's pipe is not its own */
        }
        child_report_fd = fds[1];
        child_failures = 0;
        return (child_proc){0, -1};
    }
    close(fds[1]);
    return (child_proc){pid, fds[0]};
}

/* Ends the child: 0 if every check passed, else the number of failures (capped). */
static void child_exit(void) {
    unsigned char n = (unsigned char)(child_failures > 100 ? 100 : child_failures);
    if (child_report_fd >= 0) {
        ssize_t w = write(child_report_fd, &n, 1);
        (void)w;
    }
    _exit(n);
}

/* Waits for a child with a timeout (polling waitpid: a hang fails, never blocks). Returns
 * its failures (0: all passed), -1 if it hung (killed after the timeout), 128+signal if
 * it died of one before reporting, -3 if it exited without reporting. */
static int wait_child(child_proc c, long timeout_ms) {
    int64_t until = now_ns() + timeout_ms * MS;
    int status = 0;
    for (;;) {
        pid_t r = waitpid(c.pid, &status, WNOHANG);
        if (r == c.pid) {
            break;
        }
        if (r < 0 && errno != EINTR) {
            fprintf(stderr, "waitpid: %s\n", strerror(errno));
            close(c.report_fd);
            return -2;
        }
        if (now_ns() > until) {
            fprintf(stderr, "child %d did not end within %ld ms (hung): killing it\n",
                    (int)c.pid, timeout_ms);
            kill(c.pid, SIGKILL);
            waitpid(c.pid, &status, 0);
            close(c.report_fd);
            return -1;
        }
        sleep_ms(5);
    }
    unsigned char report = 0;
    ssize_t got;
    while ((got = read(c.report_fd, &report, 1)) < 0 && errno == EINTR) {
    }
    close(c.report_fd);
    if (got == 1) {
        if (!WIFEXITED(status) || WEXITSTATUS(status) != report) {
            fprintf(stderr,
                    "note: child %d reported %d failures but its exit status is %d "
                    "(valgrind's error exit code for the child's leak report?)\n",
                    (int)c.pid, report, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        }
        return report;
    }
    if (WIFSIGNALED(status)) {
        fprintf(stderr, "child %d died of signal %d\n", (int)c.pid, WTERMSIG(status));
        return 128 + WTERMSIG(status);
    }
    fprintf(stderr, "child %d exited (status %d) without reporting\n", (int)c.pid,
            WEXITSTATUS(status));
    return -3;
}

/* Under valgrind a child is slow to start and run: a generous bound. */
#define CHILD_TIMEOUT_MS 60000

/* fib by nested submit+wait on the job's own pool. */
static int32_t fib_job(jr_ctx *ctx, void *arg, void **result) {
    intptr_t n = (intptr_t)arg;
    if (n < 2) {
        *result = (void *)n;
        return 0;
    }
    jr_pool *pool = jr_ctx_pool(ctx);
    jr_job *a = NULL, *b = NULL;
    if (jr_submit(pool, fib_job, (void *)(n - 1), NULL, &a) != JR_OK ||
        jr_submit(pool, fib_job, (void *)(n - 2), NULL, &b) != JR_OK) {
        jr_job_free(a);
        return 1;
    }
    void *ra = NULL, *rb = NULL;
    int32_t rc = jr_job_wait(a, -1) == JR_OK && jr_job_wait(b, -1) == JR_OK &&
                         jr_job_take_result(a, &ra) == JR_OK && jr_job_take_result(b, &rb) == JR_OK
                     ? 0
                     : 2;
    jr_job_free(a);
    jr_job_free(b);
    *result = (void *)((intptr_t)ra + (intptr_t)rb);
    return rc;
}

/* In a child: the child's own pools and tokens work. Not under ASan: the child's new
 * pools start threads, and ASan's allocator may have been locked at the fork by a parent
 * worker inside it (gdb on a child of fork_after_using_global_pool hung 1 run in ~40 under
 * load: both new workers in SizeClassAllocator64::GetFromAllocator, class 36, from
 * QuarantineCallback::Allocate); the plain and valgrind builds check all of it. */
static void child_checks_own_library(void) {
    if (UNDER_ASAN) {
        return;
    }
    jr_pool *g = jr_pool_global();
    CHILD_CHECK(g != NULL);
    if (g != NULL) {
        CHILD_CHECK(jr_pool_global() == g);
        jr_job *j = NULL;
        CHILD_STATUS(jr_submit(g, fib_job, (void *)(intptr_t)10, NULL, &j), JR_OK);
        CHILD_STATUS(jr_job_wait(j, HANG_MS * MS), JR_OK);
        void *r = NULL;
        CHILD_STATUS(jr_job_take_result(j, &r), JR_OK);
        CHILD_CHECK((intptr_t)r == 55);
        CHILD_STATUS(jr_job_free(j), JR_OK);
        CHILD_STATUS(jr_pool_free(g), JR_E_INVALID_ARG);
    }
    /* A new pool. */
    jr_pool_options o = jr_pool_options_default();
    o.threads = 2;
    jr_pool *p = NULL;
    CHILD_STATUS(jr_pool_new(&o, &p), JR_OK);
    if (p != NULL) {
        jr_job *j = NULL;
        CHILD_STATUS(jr_submit(p, echo_job, (void *)(intptr_t)9, NULL, &j), JR_OK);
        CHILD_STATUS(jr_job_wait(j, HANG_MS * MS), JR_OK);
        CHILD_STATUS(jr_job_free(j), JR_OK);
        CHILD_STATUS(jr_pool_free(p), JR_OK);
    }
    /* Tokens: deadlines fire (the timer restarted in the child)... */
    jr_token *t = NULL;
    CHILD_STATUS(jr_token_new(NULL, &t), JR_OK);
    CHILD_STATUS(jr_token_set_deadline(t, 10 * MS), JR_OK);
    CHILD_STATUS(jr_token_wait(t, HANG_MS * MS), JR_OK);
    jr_cancel_reason reason = JR_REASON_NONE;
    CHILD_STATUS(jr_token_reason(t, &reason), JR_OK);
    CHILD_CHECK(reason == JR_REASON_DEADLINE);
    CHILD_STATUS(jr_token_free(t), JR_OK);
    /* ...and a signal handler's cancel is completed (the signal helper restarted). */
    t = NULL;
    CHILD_STATUS(jr_token_new(NULL, &t), JR_OK);
    jr_token *c = NULL;
    CHILD_STATUS(jr_token_new(t, &c), JR_OK);
    atomic_store(&sig_token, t);
    raise(SIGUSR1);
    CHILD_CHECK(jr_token_is_cancelled(t));
    CHILD_STATUS(jr_token_wait(c, HANG_MS * MS), JR_OK); /* the descendant too */
    atomic_store(&sig_token, NULL);
    CHILD_STATUS(jr_token_free(c), JR_OK);
    CHILD_STATUS(jr_token_free(t), JR_OK);
    /* A semaphore. */
    jr_sem *s = NULL;
    CHILD_STATUS(jr_sem_new(1, &s), JR_OK);
    CHILD_STATUS(jr_sem_acquire(s, 1, HANG_MS * MS, NULL), JR_OK);
    CHILD_STATUS(jr_sem_release(s, 1), JR_OK);
    CHILD_STATUS(jr_sem_free(s), JR_OK);
}

static void fork_with_running_pool_and_job(void) {
    jr_pool *p = make_pool(2, 0);
    blocker b;
    blocker_init(&b, false);
    jr_job *running = start_blocker(p, &b);
    jr_job *done = submit(p, echo_job, (void *)(intptr_t)3);
    REQUIRE(jr_job_wait(done, HANG_MS * MS) == JR_OK);
    jr_token *t = NULL;
    REQUIRE(jr_token_new(NULL, &t) == JR_OK);
    jr_sem *s = NULL;
    REQUIRE(jr_sem_new(1, &s) == JR_OK);
    REQUIRE(jr_sem_acquire(s, 1, -1, NULL) == JR_OK); /* held: an acquire would block */
    jr_group *g = NULL;
    REQUIRE(jr_group_new(p, NULL, &g) == JR_OK);
    jr_submit_options go = jr_submit_options_default();
    go.group = g;
    blocker gb;
    blocker_init(&gb, false);
    REQUIRE(jr_submit(p, blocker_job, &gb, &go, NULL) == JR_OK); /* a group job, running */
    REQUIRE(counter_wait(&gb.started, 1, HANG_MS));

    child_proc child = fork_child();
    if (child.pid == 0) {
        /* The parent's handles: JR_E_FORKED at once, never a hang. */
        CHILD_STATUS(jr_submit(p, nop_job, NULL, NULL, NULL), JR_E_FORKED);
        jr_job *h = NULL;
        CHILD_STATUS(jr_submit_every(p, MS, nop_job, NULL, NULL, &h), JR_E_FORKED);
        CHILD_STATUS(jr_job_wait(running, -1), JR_E_FORKED);
        CHILD_STATUS(jr_job_wait(done, 0), JR_E_FORKED);
        jr_state st;
        CHILD_STATUS(jr_job_state(running, &st), JR_E_FORKED);
        void *r = NULL;
        CHILD_STATUS(jr_job_take_result(done, &r), JR_E_FORKED);
        int32_t code = 0;
        CHILD_STATUS(jr_job_error_code(done, &code), JR_E_FORKED);
        CHILD_CHECK(jr_job_error_message(done) == NULL);
        CHILD_STATUS(jr_job_cancel(running), JR_E_FORKED);
        CHILD_STATUS(jr_token_cancel(t), JR_E_FORKED);
        CHILD_CHECK(!jr_token_is_cancelled(t));
        CHILD_STATUS(jr_token_wait(t, -1), JR_E_FORKED);
        CHILD_STATUS(jr_token_set_deadline(t, MS), JR_E_FORKED);
        jr_cancel_reason reason;
        CHILD_STATUS(jr_token_reason(t, &reason), JR_E_FORKED);
        jr_token *child_of_parent = NULL;
        CHILD_STATUS(jr_token_new(t, &child_of_parent), JR_E_FORKED);
        CHILD_STATUS(jr_sem_acquire(s, 1, -1, NULL), JR_E_FORKED);
        CHILD_STATUS(jr_sem_try_acquire(s, 1), JR_E_FORKED);
        CHILD_STATUS(jr_sem_release(s, 1), JR_E_FORKED);
        uint64_t avail;
        CHILD_STATUS(jr_sem_available(s, &avail), JR_E_FORKED);
        CHILD_STATUS(jr_group_wait(g, -1), JR_E_FORKED);
        jr_job *next = NULL;
        CHILD_STATUS(jr_group_next(g, -1, &next), JR_E_FORKED);
        CHILD_STATUS(jr_group_close(g), JR_E_FORKED);
        CHILD_STATUS(jr_group_cancel(g), JR_E_FORKED);
        jr_group *g2 = NULL;
        CHILD_STATUS(jr_group_new(p, NULL, &g2), JR_E_FORKED);
        jr_stats stats = {.size = sizeof stats};
        CHILD_STATUS(jr_pool_stats(p, &stats), JR_E_FORKED);
        CHILD_STATUS(jr_pool_shutdown(p, JR_SHUTDOWN_DRAIN, -1), JR_E_FORKED);
        /* Frees: refused (leaked on purpose), not a hang or a crash. */
        CHILD_STATUS(jr_job_free(running), JR_E_FORKED);
        CHILD_STATUS(jr_job_free(done), JR_E_FORKED);
        CHILD_STATUS(jr_token_free(t), JR_E_FORKED);
        CHILD_STATUS(jr_sem_free(s), JR_E_FORKED);
        CHILD_STATUS(jr_group_free(g), JR_E_FORKED);
        CHILD_STATUS(jr_pool_free(p), JR_E_FORKED);
        child_checks_own_library();
        child_exit();
    }
    int rc = wait_child(child, CHILD_TIMEOUT_MS);
    if (rc != 0) {
        fprintf(stderr, "child: %d (failures, or hung/died)\n", rc);
    }
    CHECK(rc == 0);

    /* The parent's pool, jobs and token are untouched and still work. */
    CHECK(job_state(running) == JR_JOB_RUNNING);
    CHECK(!jr_token_is_cancelled(t));
    gate_open(&b.gate);
    gate_open(&gb.gate);
    CHECK_STATUS(wait_free(running), JR_OK);
    CHECK_STATUS(jr_group_close(g), JR_OK);
    CHECK_STATUS(jr_group_wait(g, HANG_MS * MS), JR_OK);
    jr_job *j = submit(p, fib_job, (void *)(intptr_t)12);
    CHECK_STATUS(jr_job_wait(j, HANG_MS * MS), JR_OK);
    void *r = NULL;
    CHECK_STATUS(jr_job_take_result(j, &r), JR_OK);
    CHECK((intptr_t)r == 144);
    jr_job_free(j);
    CHECK_STATUS(jr_sem_release(s, 1), JR_OK);
    CHECK_STATUS(jr_job_free(done), JR_OK);
    CHECK_STATUS(jr_group_free(g), JR_OK);
    CHECK_STATUS(jr_sem_free(s), JR_OK);
    CHECK_STATUS(jr_token_free(t), JR_OK);
    CHECK_STATUS(jr_pool_free(p), JR_OK);
    blocker_destroy(&b);
    blocker_destroy(&gb);
}

static void fork_after_using_global_pool(void) {
    if (UNDER_ASAN) {
        fprintf(stderr, "fork_after_using_global_pool: the child's own pools and the grandchild "
                        "skipped under AddressSanitizer (its allocator is not fork-safe)\n");
    }
    jr_pool *g = jr_pool_global();
    REQUIRE(g != NULL);
    jr_job *j = submit(g, fib_job, (void *)(intptr_t)10);
    CHECK_STATUS(wait_free(j), JR_OK);
    /* A job of the global pool is running at the fork. */
    blocker b;
    blocker_init(&b, false);
    jr_job *running = start_blocker(g, &b);

    child_proc child = fork_child();
    if (child.pid == 0) {
        CHILD_STATUS(jr_submit(g, nop_job, NULL, NULL, NULL), JR_E_FORKED);
        CHILD_STATUS(jr_job_wait(running, -1), JR_E_FORKED);
        if (UNDER_ASAN) {
            child_exit(); /* the rest starts threads: see child_checks_own_library */
        }
        jr_pool *mine = jr_pool_global();
        CHILD_CHECK(mine != NULL);
        CHILD_CHECK(mine != g);
        child_checks_own_library();
        /* And a grandchild: its parent's (this child's) global pool is foreign to it.
         * Not under ASan: this child's global pool has just started its threads, which
         * allocate as they start, and a grandchild forked while one of them is inside
         * ASan's allocator deadlocks in it (gdb on a hung grandchild: every thread in
         * SizeClassAllocator64::GetFromAllocator, class 29, the 2.3 KB of
         * crossbeam-epoch's per-thread record; 2 runs in 60 under load). */
        if (!UNDER_ASAN) {
            child_proc grandchild = fork_child();
            if (grandchild.pid == 0) {
                CHILD_STATUS(jr_submit(mine, nop_job, NULL, NULL, NULL), JR_E_FORKED);
                CHILD_STATUS(jr_submit(g, nop_job, NULL, NULL, NULL), JR_E_FORKED);
                jr_pool *its = jr_pool_global();
                CHILD_CHECK(its != NULL && its != mine && its != g);
                child_checks_own_library();
                child_exit();
            }
            int grc = wait_child(grandchild, CHILD_TIMEOUT_MS);
            if (grc != 0) {
                child_say("grandchild: %d (failures, or hung/died)\n", grc);
                child_failures++;
            }
        }
        /* The child's global pool still works after its own fork. */
        jr_job *k = NULL;
        CHILD_STATUS(jr_submit(mine, echo_job, (void *)(intptr_t)1, NULL, &k), JR_OK);
        CHILD_STATUS(jr_job_wait(k, HANG_MS * MS), JR_OK);
        CHILD_STATUS(jr_job_free(k), JR_OK);
        child_exit();
    }
    int rc = wait_child(child, CHILD_TIMEOUT_MS);
    if (rc != 0) {
        fprintf(stderr, "child: %d (failures, or hung/died)\n", rc);
    }
    CHECK(rc == 0);
    CHECK(jr_pool_global() == g);
    gate_open(&b.gate);
    CHECK_STATUS(wait_free(running), JR_OK);
    j = submit(g, fib_job, (void *)(intptr_t)11);
    CHECK_STATUS(jr_job_wait(j, HANG_MS * MS), JR_OK);
    void *r = NULL;
    CHECK_STATUS(jr_job_take_result(j, &r), JR_OK);
    CHECK((intptr_t)r == 89);
    jr_job_free(j);
    blocker_destroy(&b);
}

/* How long a child waits for a 1 ms deadline to fire: ample, but short enough that a
 * deadline that never fires fails the test quickly. */
static int64_t child_deadline_wait_ns(void) {
    return jr_test_scale(20) < 20 ? 10 * SEC : 2 * SEC; /* longer under valgrind */
}

/* fork() while other threads are busy inside the library (submitting, waiting, making and
 * cancelling tokens, on a pool and the global pool): no child inherits a lock held by a
 * thread that did not follow it into the child. */
static atomic_int busy_stop;

static void *busy_thread(void *arg) {
    jr_pool *p = arg;
    while (!atomic_load(&busy_stop)) {
        jr_token *t = NULL;
        if (jr_token_new(NULL, &t) != JR_OK) {
            continue;
        }
        jr_submit_options o = jr_submit_options_default();
        o.token = t;
        jr_job *a = NULL, *b = NULL;
        jr_submit(p, fib_job, (void *)(intptr_t)6, &o, &a);
        jr_submit(jr_pool_global(), nop_job, NULL, &o, &b);
        jr_token_set_deadline(t, 1 * MS);
        jr_job_wait(a, -1);
        jr_job_wait(b, -1);
        jr_job_free(a);
        jr_job_free(b);
        jr_token_cancel(t);
        jr_token_free(t);
    }
    return NULL;
}

static void fork_while_library_busy(void) {
    if (skip_under_asan(__func__)) {
        return;
    }
    size_t forks = jr_test_scale(20);
    jr_pool *p = make_pool(2, 0);
    atomic_store(&busy_stop, 0);
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        REQUIRE(pthread_create(&th[i], NULL, busy_thread, p) == 0);
    }
    int bad = 0;
    for (size_t i = 0; i < forks; i++) {
        child_proc child = fork_child();
        if (child.pid == 0) {
            jr_pool *g = jr_pool_global();
            CHILD_CHECK(g != NULL);
            if (g != NULL) {
                jr_job *j = NULL;
                CHILD_STATUS(jr_submit(g, fib_job, (void *)(intptr_t)8, NULL, &j), JR_OK);
                CHILD_STATUS(jr_job_wait(j, HANG_MS * MS), JR_OK);
                CHILD_STATUS(jr_job_free(j), JR_OK);
            }
            /* Tokens, cancelled by hand (deadlines in a child forked amid the parent's
             * deadlines: fork_while_parent_sets_deadlines). */
            jr_token *t = NULL, *c = NULL;
            CHILD_STATUS(jr_token_new(NULL, &t), JR_OK);
            CHILD_STATUS(jr_token_new(t, &c), JR_OK);
            jr_submit_options o = jr_submit_options_default();
            o.token = c;
            CHILD_STATUS(jr_submit(g, nop_job, NULL, &o, NULL), JR_OK);
            CHILD_STATUS(jr_token_cancel(t), JR_OK);
            CHILD_STATUS(jr_token_wait(c, HANG_MS * MS), JR_OK);
            CHILD_STATUS(jr_token_free(c), JR_OK);
            CHILD_STATUS(jr_token_free(t), JR_OK);
            CHILD_STATUS(jr_submit(p, nop_job, NULL, NULL, NULL), JR_E_FORKED);
            child_exit();
        }
        int rc = wait_child(child, CHILD_TIMEOUT_MS);
        if (rc != 0) {
            fprintf(stderr, "fork %zu: child: %d (failures, or hung/died)\n", i, rc);
            bad++;
        }
    }
    atomic_store(&busy_stop, 1);
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
    }
    CHECK(bad == 0);
    CHECK_STATUS(wait_free(submit(p, nop_job, NULL)), JR_OK);
    CHECK_STATUS(jr_pool_free(p), JR_OK);
}

/* fork() while other threads keep setting deadlines on tokens of their own: the child's
 * deadlines must fire. (The deadline timer is process-wide; the child must not be
 * affected by the parent's pending deadlines, nor by a token lock a parent thread held at
 * the instant of the fork.) Stops at the first child that fails. */
static atomic_int deadline_stop;

static void *deadline_thread(void *arg) {
    (void)arg;
    while (!atomic_load(&deadline_stop)) {
        jr_token *t = NULL;
        if (jr_token_new(NULL, &t) != JR_OK) {
            continue;
        }
        for (int i = 1; i <= 4; i++) {
            jr_token_set_deadline(t, i * MS);
        }
        jr_token_cancel(t);
        jr_token_free(t);
    }
    return NULL;
}

static void fork_while_parent_sets_deadlines(void) {
    if (skip_under_asan(__func__)) {
        return;
    }
    size_t forks = jr_test_scale(10);
    atomic_store(&deadline_stop, 0);
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        REQUIRE(pthread_create(&th[i], NULL, deadline_thread, NULL) == 0);
    }
    int bad = 0;
    for (size_t i = 0; i < forks && bad == 0; i++) {
        child_proc child = fork_child();
        if (child.pid == 0) {
            jr_token *t = NULL;
            CHILD_STATUS(jr_token_new(NULL, &t), JR_OK);
            CHILD_STATUS(jr_token_set_deadline(t, 1 * MS), JR_OK);
            CHILD_STATUS(jr_token_wait(t, child_deadline_wait_ns()), JR_OK);
            child_exit();
        }
        int rc = wait_child(child, CHILD_TIMEOUT_MS);
        if (rc != 0) {
            fprintf(stderr, "fork %zu: the child's 1 ms deadline did not fire (child: %d)\n",
                    i, rc);
            bad++;
        }
    }
    atomic_store(&deadline_stop, 1);
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
    }
    CHECK(bad == 0);
}

int main(void) {
    /* A watchdog: a deadlock in a signal handler (say, a lock taken by jr_token_cancel)
     * cannot be timed out from inside; SIGALRM's default action ends the program, and the
     * test run fails instead of hanging. */
    alarm(600);
    install_handler();
    RUN(signal_raised_in_main_thread);
    RUN(signal_from_another_thread);
    RUN(signal_on_a_worker_thread);
    RUN(signals_during_library_calls);
    RUN(fork_with_running_pool_and_job);
    RUN(fork_after_using_global_pool);
    RUN(fork_while_library_busy);
    RUN(fork_while_parent_sets_deadlines);
    return jr_test_report();
}
