/*
 * What the C examples share: checking each jr_* call, checking the example's own
 * results, and two small helpers. Define EXAMPLE_NAME (a string) before including it;
 * messages start with it.
 */
#ifndef JR_EXAMPLE_H
#define JR_EXAMPLE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "jobrunner.h"

/* Calls a jr_* function; on anything but JR_OK, says which call failed and exits. */
#define CHECK(call)                                                                     \
    do {                                                                                \
        jr_status check_status_ = (call);                                               \
        if (check_status_ != JR_OK) {                                                   \
            fprintf(stderr, EXAMPLE_NAME ": %s:%d: %s: %s\n", __FILE__, __LINE__, #call, \
                    jr_status_str(check_status_));                                      \
            exit(1);                                                                    \
        }                                                                               \
    } while (0)

/* Fails the example with a message unless `cond` holds. */
#define ENSURE(cond, ...)                                \
    do {                                                 \
        if (!(cond)) {                                   \
            fprintf(stderr, EXAMPLE_NAME ": FAILED: ");  \
            fprintf(stderr, __VA_ARGS__);                \
            fprintf(stderr, "\n");                       \
            exit(1);                                     \
        }                                                \
    } while (0)

#define MS (INT64_C(1000000)) /* nanoseconds in a millisecond */

static inline const char *reason_name(jr_cancel_reason reason) {
    switch (reason) {
    case JR_REASON_NONE: return "JR_REASON_NONE";
    case JR_REASON_CANCELLED: return "JR_REASON_CANCELLED";
    case JR_REASON_DEADLINE: return "JR_REASON_DEADLINE";
    case JR_REASON_SHUTDOWN: return "JR_REASON_SHUTDOWN";
    case JR_REASON_SIBLING_FAILED: return "JR_REASON_SIBLING_FAILED";
    }
    return "unknown reason";
}

/* Stands for real work inside a job (a call to a slow service, a computation). */
static inline void sleep_ms(long ms) {
    struct timespec pause = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&pause, NULL);
}

#endif /* JR_EXAMPLE_H */
