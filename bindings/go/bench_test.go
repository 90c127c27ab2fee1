package jobrunner

import (
	"context"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/jobrunner/jobrunner/bindings/go/internal/cjobs"
)

// The benchmarks run b.N tiny jobs and report ns/job: through jobrunner (a group, so
// that there is no per-job handle to wait on, as with a WaitGroup; or Submit, Wait and
// Close per job) and through goroutines and a sync.WaitGroup; Go jobs (which add 1 to a
// Go counter), and C jobs (a C function that increments a C counter) run natively or
// by goroutines each calling it through cgo. Every side submits b.N jobs, waits for
// all of them and checks the counter. Run them with -benchtime 100000x (the issue's
// 100,000 jobs).
//
// Each also reports cpu-ns/job, the process's CPU time (user and system, all threads)
// per job: on a shared machine it varies less than the wall time.

// cpuClock measures the process's CPU time over a benchmark.
type cpuClock struct{ start time.Duration }

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func startCPU(b *testing.B) cpuClock {
	b.ResetTimer()
	return cpuClock{cpuTime()}
}

func (c cpuClock) stop(b *testing.B) {
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-c.start)/float64(b.N), "cpu-ns/job")
}

func checkCount(b *testing.B, got int64) {
	if got != int64(b.N) {
		b.Fatalf("%d of %d jobs ran", got, b.N)
	}
}

func BenchmarkGoJobsGroup(b *testing.B) {
	p, _ := NewPool()
	defer p.Close()
	var n atomic.Int64
	clock := startCPU(b)
	g, _ := p.NewGroup(context.Background())
	for i := 0; i < b.N; i++ {
		g.Go(func(context.Context) error { n.Add(1); return nil })
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	g.Close()
	clock.stop(b)
	checkCount(b, n.Load())
}

func BenchmarkGoJobsSubmit(b *testing.B) { benchSubmit(b, context.Background()) }

// BenchmarkGoJobsSubmitCancellableCtx is BenchmarkGoJobsSubmit with the context most
// callers pass, one that can be cancelled: each job then gets a C token that follows it
// (context.AfterFunc), which a context that is never done does not need.
func BenchmarkGoJobsSubmitCancellableCtx(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	benchSubmit(b, ctx)
}

func benchSubmit(b *testing.B, ctx context.Context) {
	p, _ := NewPool()
	defer p.Close()
	var n atomic.Int64
	clock := startCPU(b)
	inBatches(b, func() (*Job[struct{}], error) {
		return Submit(p, ctx, func(context.Context) (struct{}, error) { n.Add(1); return struct{}{}, nil })
	}, func(j *Job[struct{}]) error {
		_, err := j.Wait(ctx)
		j.Close()
		return err
	})
	clock.stop(b)
	checkCount(b, n.Load())
}

// inBatches submits b.N jobs, each ended (waited for and closed) by end, 1,024 at a
// time: what a program that keeps its jobs does, without holding b.N handles.
func inBatches[J any](b *testing.B, submit func() (J, error), end func(J) error) {
	jobs := make([]J, 0, 1024)
	for i := 0; i < b.N; i++ {
		j, err := submit()
		if err != nil {
			b.Fatal(err)
		}
		jobs = append(jobs, j)
		if len(jobs) == cap(jobs) || i == b.N-1 {
			for _, j := range jobs {
				if err := end(j); err != nil {
					b.Fatal(err)
				}
			}
			jobs = jobs[:0]
		}
	}
}

func BenchmarkGoroutinesWaitGroup(b *testing.B) {
	var n atomic.Int64
	var wg sync.WaitGroup
	clock := startCPU(b)
	for i := 0; i < b.N; i++ {
		wg.Add(1)
		go func() { n.Add(1); wg.Done() }()
	}
	wg.Wait()
	clock.stop(b)
	checkCount(b, n.Load())
}

func BenchmarkNativeJobs(b *testing.B) {
	p, _ := NewPool()
	defer p.Close()
	ctx := context.Background()
	counter := cjobs.NewInt64(0)
	defer cjobs.FreeMem(counter)
	clock := startCPU(b)
	inBatches(b, func() (*NativeJob, error) {
		return SubmitNative(p, ctx, cjobs.Incr(), counter)
	}, func(j *NativeJob) error {
		_, err := j.Wait(ctx)
		j.Close()
		return err
	})
	clock.stop(b)
	checkCount(b, cjobs.Load(counter))
}

func BenchmarkGoroutinesCallingC(b *testing.B) {
	counter := cjobs.NewInt64(0)
	defer cjobs.FreeMem(counter)
	var wg sync.WaitGroup
	clock := startCPU(b)
	for i := 0; i < b.N; i++ {
		wg.Add(1)
		go func(c unsafe.Pointer) { cjobs.IncrDirect(c); wg.Done() }(counter)
	}
	wg.Wait()
	clock.stop(b)
	checkCount(b, cjobs.Load(counter))
}
