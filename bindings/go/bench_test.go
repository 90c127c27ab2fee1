package jobrunner

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/jobrunner/jobrunner/bindings/go/internal/cjobs"
)

// The benchmarks run b.N tiny jobs and report ns/job: through jobrunner (a group, so
// that there is no per-job handle to wait on, as with a WaitGroup) and through
// goroutines and a sync.WaitGroup; Go jobs, and C jobs (a C function that increments a
// counter) run natively or by goroutines each calling it through cgo.

func BenchmarkGoJobsGroup(b *testing.B) {
	p, _ := NewPool()
	defer p.Close()
	var n atomic.Int64
	b.ResetTimer()
	g, _ := p.NewGroup(context.Background())
	for i := 0; i < b.N; i++ {
		g.Go(func(context.Context) error { n.Add(1); return nil })
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	g.Close()
}

func BenchmarkGoJobsSubmit(b *testing.B) {
	p, _ := NewPool()
	defer p.Close()
	ctx := context.Background()
	var n atomic.Int64
	jobs := make([]*Job[struct{}], 0, 1024)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		j, err := Submit(p, ctx, func(context.Context) (struct{}, error) { n.Add(1); return struct{}{}, nil })
		if err != nil {
			b.Fatal(err)
		}
		jobs = append(jobs, j)
		if len(jobs) == cap(jobs) || i == b.N-1 {
			for _, j := range jobs {
				j.Wait(ctx)
				j.Close()
			}
			jobs = jobs[:0]
		}
	}
}

func BenchmarkGoroutinesWaitGroup(b *testing.B) {
	var n atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		wg.Add(1)
		go func() { n.Add(1); wg.Done() }()
	}
	wg.Wait()
}

func BenchmarkNativeJobs(b *testing.B) {
	p, _ := NewPool()
	defer p.Close()
	ctx := context.Background()
	counter := cjobs.NewInt64(0)
	defer cjobs.FreeMem(counter)
	jobs := make([]*NativeJob, 0, 1024)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		j, err := SubmitNative(p, ctx, cjobs.Incr(), counter)
		if err != nil {
			b.Fatal(err)
		}
		jobs = append(jobs, j)
		if len(jobs) == cap(jobs) || i == b.N-1 {
			for _, j := range jobs {
				j.Wait(ctx)
				j.Close()
			}
			jobs = jobs[:0]
		}
	}
}

func BenchmarkGoroutinesCallingC(b *testing.B) {
	counter := cjobs.NewInt64(0)
	defer cjobs.FreeMem(counter)
	var wg sync.WaitGroup
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		wg.Add(1)
		go func(c unsafe.Pointer) { cjobs.IncrDirect(c); wg.Done() }(counter)
	}
	wg.Wait()
}
