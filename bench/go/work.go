package main

// The work item: a calibrated integer loop, in Go and in C (for the native jobs).

/*
#cgo CFLAGS: -I${SRCDIR}/../../include
#include <stdint.h>
#include <stdlib.h>
#include "jobrunner.h"

// spin in C: the same recurrence as the Go spin below.
static uint64_t bench_spin(uint64_t iters) {
	uint64_t x = 0x9E3779B97F4A7C15ull;
	for (uint64_t i = 0; i < iters; i++) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		x ^= x >> 29;
	}
	return x;
}

// Replaces the rounds *slot holds by their output.
static void bench_spin_slot(uint64_t *slot) { *slot = bench_spin(*slot); }

// A jr_job_fn doing bench_spin_slot on its arg, a uint64_t slot in C memory.
static int32_t bench_spin_job(jr_ctx *ctx, void *arg, void **result) {
	(void)ctx;
	(void)result;
	bench_spin_slot(arg);
	return 0;
}

static void *bench_spin_job_ptr(void) { return (void *)bench_spin_job; }
*/
import "C"

import (
	"time"
	"unsafe"
)

// spin runs iters rounds of a serial integer recurrence (no closed form, nothing to
// vectorise) and returns its output, which depends on every round. It is
// benches/common's spin, in Go.
func spin(iters uint64) uint64 {
	x := uint64(0x9E3779B97F4A7C15)
	for i := uint64(0); i < iters; i++ {
		x = x*6364136223846793005 + 1442695040888963407
		x ^= x >> 29
	}
	return x
}

// spinC runs the C spin through cgo: the rounds in *slot (C memory) are replaced by
// their output.
func spinC(slot *uint64) { C.bench_spin_slot((*C.uint64_t)(unsafe.Pointer(slot))) }

// spinJob is the C spin as a jr_job_fn whose arg is a slot of cSlots.
func spinJob() unsafe.Pointer { return C.bench_spin_job_ptr() }

// cSlots allocates n uint64 slots in C memory (a native job's arg must not point to
// Go memory), to be freed with freeSlots.
func cSlots(n int) []uint64 {
	return unsafe.Slice((*uint64)(C.calloc(C.size_t(n), 8)), n)
}

func freeSlots(s []uint64) { C.free(unsafe.Pointer(&s[0])) }

// sink keeps the compiler from dropping a calibration run's work.
var sink uint64

// workSizes are the rounds of spin that take the workloads' job times on this machine.
type workSizes struct {
	go20, go50 uint64 // Go spin: 20 µs, 50 µs
	c20        uint64 // C spin: 20 µs
}

// calibrate times each spin (the best of 30 runs of 200,000 rounds, ~0.4 ms each, after
// one unmeasured: short runs, so that the best is likely one no other thread interrupted)
// and checks that the Go and C spins compute the same thing.
func calibrate() workSizes {
	const probe = 200_000
	if got, want := uint64(C.bench_spin(C.uint64_t(probe))), spin(probe); got != want {
		fail("the C spin gives %#x, the Go spin %#x", got, want)
	}
	perRound := func(run func()) time.Duration {
		run()
		best := time.Duration(1<<63 - 1)
		for i := 0; i < 30; i++ {
			start := time.Now()
			run()
			best = min(best, time.Since(start))
		}
		return best
	}
	goBest := perRound(func() { sink = spin(probe) })
	cBest := perRound(func() { sink = uint64(C.bench_spin(C.uint64_t(probe))) })
	rounds := func(target, best time.Duration) uint64 {
		return max(1, uint64(float64(target)/float64(best)*probe))
	}
	return workSizes{
		go20: rounds(20*time.Microsecond, goBest),
		go50: rounds(50*time.Microsecond, goBest),
		c20:  rounds(20*time.Microsecond, cBest),
	}
}
