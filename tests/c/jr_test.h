/*
 * jr_test.h: the test harness of the C tests in tests/c/.
 *
 * Each tests/c/NAME.c is a program of its own: its tests are `static void name(void)`
 * functions, and main() runs them and returns jr_test_report(), which prints the line
 * that `make test` reads, "N passed, N failed", and gives a non-zero exit status if a
 * test failed (or none ran):
 *
 *     #include "jr_test.h"
 *
 *     static void status_names(void) {
 *         CHECK_STR(jr_status_str(JR_E_FULL), "JR_E_FULL: ...");
 *     }
 *
 *     int main(void) {
 *         RUN_TEST(status_names);
 *         return jr_test_report();
 *     }
 *
 * CHECK* record a failure (file, line, what) against the running test and go on.
 * REQUIRE* are for a precondition without which nothing can go on (a NULL handle):
 * they print the report, counting the running test as failed, and end the program.
 * Checks are thread-safe: a job on a worker thread may CHECK (or set
 * `jr_test_current_failed = 1` after printing its own message), and the failure counts
 * against the test that is running. A test that fails no check passes.
 *
 * `make test` runs each program linked statically and dynamically, under valgrind and
 * with AddressSanitizer; under valgrind it sets JR_TEST_SLOW=1, and jr_test_scale()
 * shrinks stress loops then.
 *
 * The functions are `static inline`, so a test that uses only part of this header still
 * compiles without unused-function warnings (the tests build with -Wall -Wextra -Werror).
 */
#ifndef JR_TEST_H
#define JR_TEST_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobrunner.h"

#if defined(__GNUC__) || defined(__clang__)
#define JR_TEST_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#define JR_TEST_NORETURN __attribute__((noreturn))
#else
#define JR_TEST_PRINTF(fmt, args)
#define JR_TEST_NORETURN
#endif

/* Tests run that failed no check, and tests that failed one or more. */
static int jr_test_passed;
static int jr_test_failed;
/* Non-zero once the running test has failed a check (set from any thread). */
static atomic_int jr_test_current_failed;
/* The name of the running test, or NULL between tests. */
static const char *_Atomic jr_test_current;

/* Records a failed check at FILE:LINE, with a printf-style description. */
JR_TEST_PRINTF(3, 4)
static inline void jr_test_fail(const char *file, int line, const char *format, ...) {
    /* One write per message, so that messages from two threads do not interleave. */
    char message[1024];
    va_list args;
    va_start(args, format);
    vsnprintf(message, sizeof message, format, args);
    va_end(args);
    fprintf(stderr, "%s:%d: %s: %s\n", file, line,
            jr_test_current != NULL ? jr_test_current : "(no test)", message);
    atomic_store(&jr_test_current_failed, 1);
}

/* Prints "N passed, N failed" and returns the exit status for main(): EXIT_FAILURE if a
 * test failed or none ran, else EXIT_SUCCESS. */
static inline int jr_test_report(void) {
    printf("%d passed, %d failed\n", jr_test_passed, jr_test_failed);
    fflush(stdout);
    return jr_test_failed == 0 && jr_test_passed > 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

/* Ends the program after a failed REQUIRE: the running test counts as failed. */
JR_TEST_NORETURN
static inline void jr_test_abandon(void) {
    if (jr_test_current != NULL) {
        printf("FAILED %s (REQUIRE failed: the remaining tests did not run)\n",
               jr_test_current);
        jr_test_failed++;
    }
    jr_test_report();
    exit(2);
}

/* Whether JR_TEST_ONLY (a comma-separated list of test names, to debug one test under
 * valgrind, say) leaves out the test `name`. */
static inline int jr_test_left_out(const char *name) {
    const char *only = getenv("JR_TEST_ONLY");
    if (only == NULL || only[0] == '\0') return 0;
    size_t n = strlen(name);
    for (const char *p = only; (p = strstr(p, name)) != NULL; p += n) {
        if ((p == only || p[-1] == ',') && (p[n] == ',' || p[n] == '\0')) return 0;
    }
    return 1;
}

/* Runs one test function; prints "ok NAME" or "FAILED NAME". */
static inline void jr_test_run(const char *name, void (*test)(void)) {
    static int buffered;
    if (jr_test_left_out(name)) return;
    if (!buffered) {
        /* Line-buffered even into a file, so that a crash loses no finished test. */
        setvbuf(stdout, NULL, _IOLBF, 0);
        buffered = 1;
    }
    jr_test_current = name;
    atomic_store(&jr_test_current_failed, 0);
    test();
    if (atomic_load(&jr_test_current_failed)) {
        jr_test_failed++;
        printf("FAILED %s\n", name);
    } else {
        jr_test_passed++;
        printf("ok %s\n", name);
    }
    jr_test_current = NULL;
}

/* `n`, or a twentieth of it (at least 1) when JR_TEST_SLOW is set and not "0" (as
 * `make test` does under valgrind): the size of a stress loop. */
static inline size_t jr_test_scale(size_t n) {
    const char *slow = getenv("JR_TEST_SLOW");
    if (slow != NULL && slow[0] != '\0' && strcmp(slow, "0") != 0) {
        return n / 20 > 0 ? n / 20 : 1;
    }
    return n;
}

/* Runs `test`, a `static void test(void)`, under its own name. RUN is the same. */
#define RUN_TEST(test) jr_test_run(#test, test)
#define RUN(test) RUN_TEST(test)

/* Fails the running test unless `cond`. */
#define CHECK(cond)                                                         \
    do {                                                                    \
        if (!(cond)) jr_test_fail(__FILE__, __LINE__, "CHECK(%s)", #cond);  \
    } while (0)

/* Fails the running test unless two integers are equal (shown as long long). */
#define CHECK_EQ(got, want)                                                             \
    do {                                                                                \
        long long jr_got_ = (long long)(got);                                           \
        long long jr_want_ = (long long)(want);                                         \
        if (jr_got_ != jr_want_)                                                        \
            jr_test_fail(__FILE__, __LINE__, "%s is %lld, want %s = %lld", #got, jr_got_, \
                         #want, jr_want_);                                              \
    } while (0)

/* Fails the running test unless two C strings are equal (NULL equals only NULL). */
#define CHECK_STR(got, want)                                                           \
    do {                                                                               \
        const char *jr_got_ = (got);                                                   \
        const char *jr_want_ = (want);                                                 \
        if (jr_got_ == NULL || jr_want_ == NULL ? jr_got_ != jr_want_                  \
                                                : strcmp(jr_got_, jr_want_) != 0)      \
            jr_test_fail(__FILE__, __LINE__, "%s is \"%s\", want \"%s\"", #got,        \
                         jr_got_ != NULL ? jr_got_ : "(null)",                         \
                         jr_want_ != NULL ? jr_want_ : "(null)");                      \
    } while (0)

/* Fails the running test unless the jr_status `got` is `want`; names both. */
#define CHECK_STATUS(got, want)                                                        \
    do {                                                                               \
        jr_status jr_got_ = (got);                                                     \
        jr_status jr_want_ = (want);                                                   \
        if (jr_got_ != jr_want_)                                                       \
            jr_test_fail(__FILE__, __LINE__, "%s: got %s, want %s", #got,              \
                         jr_status_str(jr_got_), jr_status_str(jr_want_));             \
    } while (0)

/* CHECK_STATUS(got, JR_OK). */
#define CHECK_OK(got) CHECK_STATUS(got, JR_OK)

/* Unless `cond`: records the failure, prints the report and ends the program. */
#define REQUIRE(cond)                                                       \
    do {                                                                    \
        if (!(cond)) {                                                      \
            jr_test_fail(__FILE__, __LINE__, "REQUIRE(%s)", #cond);         \
            jr_test_abandon();                                              \
        }                                                                   \
    } while (0)

/* Unless the jr_status `got` is JR_OK: as REQUIRE. */
#define REQUIRE_OK(got)                                                                \
    do {                                                                               \
        jr_status jr_got_ = (got);                                                     \
        if (jr_got_ != JR_OK) {                                                        \
            jr_test_fail(__FILE__, __LINE__, "%s: got %s, want JR_OK", #got,           \
                         jr_status_str(jr_got_));                                      \
            jr_test_abandon();                                                         \
        }                                                                              \
    } while (0)

#endif /* JR_TEST_H */
