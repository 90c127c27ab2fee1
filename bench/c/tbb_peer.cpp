// The oneTBB peer of the C/C++ bench: the same workloads as bench.c's jobrunner side,
// written as a oneTBB user would, on one task_arena of `threads` slots. Called from
// bench.c through the extern "C" functions declared in bench.h.
//
// The arena keeps oneTBB's default of one slot reserved for the calling thread: it has
// threads - 1 worker threads, and the main thread works in its slot while it waits in
// task_group::wait(), so that `threads` threads run the jobs, as on jobrunner's pool of
// `threads` workers (whose caller only submits and waits). Submitting from outside the
// arena (task_arena::enqueue, for wake latency) is served by the workers alone.

#include "bench.h"

#include <oneapi/tbb/enumerable_thread_specific.h>
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/task_arena.h>
#include <oneapi/tbb/task_group.h>

#include <atomic>
#include <condition_variable>
#include <ctime>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

namespace {

std::unique_ptr<tbb::global_control> g_parallelism;
std::unique_ptr<tbb::task_arena> g_arena;
size_t g_threads;

// Holds every worker thread of the arena (the calling thread is the bench's own) with a
// task that waits for the hold to end, for the workloads that need jobs queued and not
// started. Ends when destroyed, once every holding task has returned.
class WorkerHold {
public:
    WorkerHold() : workers_(g_threads - 1) {
        for (size_t i = 0; i < workers_; i++) {
            g_arena->enqueue([this] { hold(); });
        }
        std::unique_lock<std::mutex> lock(mutex_);
        changed_.wait(lock, [this] { return started_ == workers_; });
    }

    ~WorkerHold() {
        std::unique_lock<std::mutex> lock(mutex_);
        open_ = true;
        changed_.notify_all();
        changed_.wait(lock, [this] { return returned_ == workers_; });
    }

    WorkerHold(const WorkerHold &) = delete;
    WorkerHold &operator=(const WorkerHold &) = delete;

private:
    void hold() {
        std::unique_lock<std::mutex> lock(mutex_);
        started_++;
        changed_.notify_all();
        changed_.wait(lock, [this] { return open_; });
        returned_++;
        changed_.notify_all();
    }

    const size_t workers_;
    std::mutex mutex_;
    std::condition_variable changed_;
    size_t started_ = 0;
    size_t returned_ = 0;
    bool open_ = false;
};

uint64_t fib_tbb(unsigned n) {
    if (n <= BENCH_FIB_CUTOFF) {
        return bench_fib_seq(n);
    }
    uint64_t left = 0;
    tbb::task_group group;
    group.run([&left, n] { left = fib_tbb(n - 1); });
    uint64_t right = fib_tbb(n - 2);
    group.wait();
    return left + right;
}

void sleep_ns(uint64_t ns) {
    struct timespec pause = {static_cast<time_t>(ns / 1000000000u),
                             static_cast<long>(ns % 1000000000u)};
    nanosleep(&pause, nullptr);
}

}  // namespace

extern "C" void tbb_peer_init(size_t threads) {
    g_threads = threads;
    // oneTBB's default limit is the core count: let BENCH_THREADS go past it, as
    // jobrunner's pool does.
    g_parallelism = std::make_unique<tbb::global_control>(
        tbb::global_control::max_allowed_parallelism, threads);
    g_arena = std::make_unique<tbb::task_arena>(static_cast<int>(threads));
    g_arena->initialize();
}

extern "C" void tbb_peer_free(void) {
    g_arena.reset();
    g_parallelism.reset();
}

// spawn: `jobs` task_group::run of an empty task (it counts itself in a thread-local
// counter, the check), then one wait().
extern "C" uint64_t tbb_spawn(size_t jobs) {
    tbb::enumerable_thread_specific<size_t> ran(0);
    uint64_t elapsed = 0;
    g_arena->execute([&] {
        uint64_t start = bench_now_ns();
        tbb::task_group group;
        for (size_t i = 0; i < jobs; i++) {
            group.run([&ran] { ++ran.local(); });
        }
        if (group.wait() != tbb::complete) {
            bench_fail("oneTBB spawn: the task_group did not complete");
        }
        elapsed = bench_now_ns() - start;
    });
    size_t total = ran.combine(std::plus<size_t>());
    if (total != jobs) {
        bench_fail("oneTBB spawn: %zu tasks ran, not %zu", total, jobs);
    }
    return elapsed;
}

// fork-join: fib(n) with a task_group per call above the cutoff: run fib(n - 1), compute
// fib(n - 2) here, wait.
extern "C" uint64_t tbb_fork_join(unsigned n, uint64_t expected) {
    uint64_t value = 0;
    uint64_t elapsed = 0;
    g_arena->execute([&] {
        uint64_t start = bench_now_ns();
        value = fib_tbb(n);
        elapsed = bench_now_ns() - start;
    });
    if (value != expected) {
        bench_fail("oneTBB fork-join: fib(%u) = %llu, not %llu", n,
                   static_cast<unsigned long long>(value),
                   static_cast<unsigned long long>(expected));
    }
    return elapsed;
}

// fan-out: one task per item, each storing its result in its slot; wait, then sum.
extern "C" uint64_t tbb_fan_out(size_t items, uint64_t iters, uint64_t expected_sum) {
    std::vector<uint64_t> results(items);
    uint64_t sum = 0;
    uint64_t elapsed = 0;
    g_arena->execute([&] {
        uint64_t start = bench_now_ns();
        tbb::task_group group;
        for (size_t i = 0; i < items; i++) {
            group.run([&results, i, iters] { results[i] = bench_spin(iters, i); });
        }
        if (group.wait() != tbb::complete) {
            bench_fail("oneTBB fan-out: the task_group did not complete");
        }
        for (uint64_t result : results) {
            sum += result;
        }
        elapsed = bench_now_ns() - start;
    });
    if (sum != expected_sum) {
        bench_fail("oneTBB fan-out: the results sum to %llu, not %llu",
                   static_cast<unsigned long long>(sum),
                   static_cast<unsigned long long>(expected_sum));
    }
    return elapsed;
}

// wake: one task at a time, task_arena::enqueue'd from outside the arena (a worker must
// wake for it); the task takes the time first thing and hands it back.
extern "C" void tbb_wake(uint64_t *samples, size_t n, uint64_t pause_ns) {
    std::mutex mutex;
    std::condition_variable done;
    uint64_t started = 0;
    for (size_t i = 0; i < n; i++) {
        sleep_ns(pause_ns);
        started = 0;
        uint64_t submitted = bench_now_ns();
        g_arena->enqueue([&] {
            uint64_t now = bench_now_ns();
            std::lock_guard<std::mutex> lock(mutex);
            started = now;
            done.notify_one();
        });
        std::unique_lock<std::mutex> lock(mutex);
        done.wait(lock, [&] { return started != 0; });
        samples[i] = started - submitted;
    }
}

// cancellation: `jobs` tasks queued in a task_group behind a hold of every worker;
// the time from task_group::cancel() until wait() has returned.
extern "C" uint64_t tbb_cancellation(size_t jobs) {
    WorkerHold hold;
    std::atomic<size_t> ran(0);
    tbb::task_group_status status = tbb::not_complete;
    uint64_t elapsed = 0;
    g_arena->execute([&] {
        tbb::task_group group;
        for (size_t i = 0; i < jobs; i++) {
            group.run([&ran] { ran.fetch_add(1, std::memory_order_relaxed); });
        }
        uint64_t start = bench_now_ns();
        group.cancel();
        status = group.wait();
        elapsed = bench_now_ns() - start;
    });
    if (status != tbb::canceled || ran.load() != 0) {
        bench_fail("oneTBB cancellation: wait() gave %d and %zu tasks ran (want canceled, 0)",
                   static_cast<int>(status), ran.load());
    }
    return elapsed;
}

// memory: the peak RSS growth while `jobs` tasks sit queued in a task_group behind a hold
// of every worker, per task; then they are cancelled.
extern "C" double tbb_memory_per_task(size_t jobs) {
    WorkerHold hold;
    std::atomic<size_t> ran(0);
    uint64_t before = 0;
    uint64_t peak = 0;
    tbb::task_group_status status = tbb::not_complete;
    g_arena->execute([&] {
        tbb::task_group group;
        bench_reset_peak_rss();
        before = bench_status_bytes("VmRSS");
        for (size_t i = 0; i < jobs; i++) {
            group.run([&ran] { ran.fetch_add(1, std::memory_order_relaxed); });
        }
        peak = bench_status_bytes("VmHWM");
        group.cancel();
        status = group.wait();
    });
    if (status != tbb::canceled || ran.load() != 0) {
        bench_fail("oneTBB memory: wait() gave %d and %zu tasks ran (want canceled, 0)",
                   static_cast<int>(status), ran.load());
    }
    return static_cast<double>(peak - before) / static_cast<double>(jobs);
}
