package jobrunner

import (
	"context"
	"testing"
)

// Per-item costs of streams and pipelines (ns/op is per item), against a goroutine
// sending on a buffered Go channel of the same capacity. Each reads b.N items to the
// end and checks their sum.

const benchCapacity = 64

func BenchmarkStreamItems(b *testing.B) {
	pool, err := NewPool(WithThreads(2))
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	n := b.N
	clock := startCPU(b)
	s, err := NewStream(pool, context.Background(), benchCapacity, func(ctx context.Context, send func(int) error) error {
		for i := 0; i < n; i++ {
			if err := send(i); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	sum := 0
	for v := range s.C() {
		sum += v
	}
	clock.stop(b)
	if err := s.Err(); err != nil || sum != n*(n-1)/2 {
		b.Fatalf("sum %d, err %v", sum, err)
	}
}

func BenchmarkGoChanItems(b *testing.B) {
	n := b.N
	clock := startCPU(b)
	c := make(chan int, benchCapacity)
	go func() {
		for i := 0; i < n; i++ {
			c <- i
		}
		close(c)
	}()
	sum := 0
	for v := range c {
		sum += v
	}
	clock.stop(b)
	if sum != n*(n-1)/2 {
		b.Fatalf("sum %d", sum)
	}
}

func benchPipeline(b *testing.B, stages int, ordered bool) {
	pool, err := NewPool(WithThreads(2))
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	ctx := context.Background()
	p, err := NewPipeline[int](pool, ctx, WithMaxInFlight(256))
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	var src Source[int] = p
	var out *Output[int]
	for i := 0; i < stages; i++ {
		out = Stage(src, 2, ordered, func(ctx context.Context, v int) (int, bool, error) { return v, true, nil })
		src = out
	}
	n := b.N
	clock := startCPU(b)
	go func() {
		for i := 0; i < n; i++ {
			if err := p.Push(ctx, i); err != nil {
				panic(err)
			}
		}
		p.CloseInput()
	}()
	sum := 0
	for v := range out.Out() {
		sum += v
	}
	clock.stop(b)
	if err := out.Err(); err != nil || sum != n*(n-1)/2 {
		b.Fatalf("sum %d, err %v", sum, err)
	}
}

func BenchmarkPipelineOneStage(b *testing.B)         { benchPipeline(b, 1, false) }
func BenchmarkPipelineTwoOrderedStages(b *testing.B) { benchPipeline(b, 2, true) }
