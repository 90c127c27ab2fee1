/*
 * The C/C++ bench of `make bench` (bench/PROTOCOL.md): what the C side (bench.c, the
 * jobrunner C API and the driver) and the C++ side (tbb_peer.cpp, the oneTBB peer)
 * share. Compiled as C11 and as C++17.
 */

#ifndef JR_BENCH_C_BENCH_H
#define JR_BENCH_C_BENCH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Below this `n`, fork-join's fib computes sequentially (no spawn). */
#define BENCH_FIB_CUTOFF 15u

/* Prints "bench-c: <message>" to stderr and exits 1: a wrong result or a failed call. */
__attribute__((noreturn, format(printf, 1, 2))) void bench_fail(const char *format, ...);

/* CLOCK_MONOTONIC, in nanoseconds. */
uint64_t bench_now_ns(void);

/* The calibrated work item: `iters` rounds of a serial integer recurrence (the one of
 * benches/common/mod.rs `spin`: no closed form, no vectorisation), started from a
 * value that depends on `seed`, so that every item of a run has its own result. */
uint64_t bench_spin(uint64_t iters, uint64_t seed);

/* fib(n), sequentially. */
uint64_t bench_fib_seq(unsigned n);

/* Empties the kernel's peak-RSS record (VmHWM), so that the next peak is measured from
 * now; exits if the kernel refuses. */
void bench_reset_peak_rss(void);

/* A field of /proc/self/status in bytes ("VmRSS", "VmHWM"). */
uint64_t bench_status_bytes(const char *field);

#ifdef BENCH_HAVE_TBB
/* The oneTBB peer (tbb_peer.cpp): one task_arena of `threads` slots (threads - 1
 * workers and the calling thread, which works while it waits), made by tbb_peer_init. */
void tbb_peer_init(size_t threads);
void tbb_peer_free(void);
/* Each runs a workload once, checks its result, and returns the time it measured (ns). */
uint64_t tbb_spawn(size_t jobs);
uint64_t tbb_fork_join(unsigned n, uint64_t expected);
uint64_t tbb_fan_out(size_t items, uint64_t iters, uint64_t expected_sum);
uint64_t tbb_cancellation(size_t jobs);
/* Fills samples[0..n) with submit-to-start latencies (ns), `pause_ns` apart. */
void tbb_wake(uint64_t *samples, size_t n, uint64_t pause_ns);
/* In a fresh process: bytes of peak RSS per task with `jobs` tasks queued, not started. */
double tbb_memory_per_task(size_t jobs);
#endif

#ifdef __cplusplus
}
#endif

#endif /* JR_BENCH_C_BENCH_H */
