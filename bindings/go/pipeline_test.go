package jobrunner

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"sort"
	"strconv"
	"sync/atomic"
	"testing"
)

// spin does work proportional to n, so that concurrent stage calls end out of order.
func spin(n int) int {
	x := 0
	for i := 0; i < n*200; i++ {
		x += i ^ n
	}
	return x
}

// pushAll pushes vs then closes the input, on a goroutine; the error comes on the
// channel.
func pushAll[T any](ctx context.Context, p *Pipeline[T], vs []T) <-chan error {
	done := make(chan error, 1)
	go func() {
		for _, v := range vs {
			if err := p.Push(ctx, v); err != nil {
				done <- err
				return
			}
		}
		done <- p.CloseInput()
	}()
	return done
}

// drainOut reads an output's channel to its end.
func drainOut[T any](t *testing.T, ctx context.Context, o *Output[T]) []T {
	t.Helper()
	var got []T
	for {
		select {
		case v, ok := <-o.Out():
			if !ok {
				return got
			}
			got = append(got, v)
		case <-ctx.Done():
			t.Fatalf("pipeline: no end after %d items", len(got))
		}
	}
}

func ints(n int) []int {
	vs := make([]int, n)
	for i := range vs {
		vs[i] = i
	}
	return vs
}

// Two ordered stages of 4, changing types: the output is in input order.
func TestPipelineOrdered(t *testing.T) {
	ctx := testCtx(t)
	pool := newTestPool(t, WithThreads(2))
	held := HeldValues()
	p, err := NewPipeline[int](pool, ctx, WithMaxInFlight(16))
	if err != nil {
		t.Fatal(err)
	}
	var running, most atomic.Int64
	s1 := Stage(p, 4, true, func(ctx context.Context, v int) (string, bool, error) {
		n := running.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		spin((v * 7919) % 97)
		running.Add(-1)
		return strconv.Itoa(v), true, nil
	})
	s2 := Stage(s1, 4, true, func(ctx context.Context, s string) (string, bool, error) {
		spin(len(s) * 13 % 50)
		return "<" + s + ">", true, nil
	})
	const n = 500
	pushed := pushAll(ctx, p, ints(n))
	got := drainOut(t, ctx, s2)
	if err := <-pushed; err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("%d items out, want %d", len(got), n)
	}
	for i, s := range got {
		if s != fmt.Sprintf("<%d>", i) {
			t.Fatalf("item %d is %s: out of order", i, s)
		}
	}
	if err := s2.Err(); err != nil {
		t.Fatalf("Err = %v", err)
	}
	if most.Load() > 4 {
		t.Fatalf("%d calls of a stage of 4 at once", most.Load())
	}
	p.Close()
	if d := HeldValues() - held; d != 0 {
		t.Fatalf("%d values still held", d)
	}
}

// An unordered stage passes items on as they come: every item once, in some order; and
// a filter drops what it does not keep (the dropped items' handles deleted).
func TestPipelineUnorderedAndFilter(t *testing.T) {
	ctx := testCtx(t)
	pool := newTestPool(t, WithThreads(2))
	held := HeldValues()
	p, err := NewPipeline[int](pool, ctx)
	if err != nil {
		t.Fatal(err)
	}
	sq := Stage(p, 3, false, func(ctx context.Context, v int) (int, bool, error) {
		spin(v % 31)
		return v * v, true, nil
	})
	even := Stage(sq, 2, false, func(ctx context.Context, v int) (int, bool, error) {
		return v, v%2 == 0, nil
	})
	const n = 400
	pushed := pushAll(ctx, p, ints(n))
	got := drainOut(t, ctx, even)
	if err := <-pushed; err != nil {
		t.Fatal(err)
	}
	sort.Ints(got)
	var want []int
	for i := 0; i < n; i += 2 {
		want = append(want, i*i)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %d items %v..., want the %d even squares", len(got), got[:min(5, len(got))], len(want))
	}
	if err := even.Err(); err != nil {
		t.Fatal(err)
	}
	p.Close()
	if d := HeldValues() - held; d != 0 {
		t.Fatalf("%d values still held", d)
	}
}

// The first failure cancels the pipeline and is reported at the output (Next, then Err)
// with the stage's Go error; Push fails from then on; every value is released.
func TestPipelineFailure(t *testing.T) {
	ctx := testCtx(t)
	pool := newTestPool(t, WithThreads(2))
	held := HeldValues()
	p, err := NewPipeline[int](pool, ctx, WithMaxInFlight(8))
	if err != nil {
		t.Fatal(err)
	}
	bad := errors.New("bad item")
	out := Stage(p, 2, true, func(ctx context.Context, v int) (int, bool, error) {
		if v == 20 {
			return 0, false, &JobError{Code: 42, Err: bad}
		}
		return v, true, nil
	})
	pushed := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			if err := p.Push(ctx, i); err != nil {
				pushed <- err
				return
			}
		}
	}()
	var got []int
	var end error
	for end == nil {
		var v int
		if v, end = out.Next(ctx); end == nil {
			got = append(got, v)
		}
	}
	var je *JobError
	if !errors.As(end, &je) || je.Code != 42 || !errors.Is(end, bad) {
		t.Fatalf("Next's end = %v, want a *JobError code 42 wrapping the stage's error", end)
	}
	if err := out.Err(); err != end {
		t.Fatalf("Err = %v, want Next's %v", err, end)
	}
	if _, err := out.Next(ctx); err != end {
		t.Fatalf("Next after the end = %v", err)
	}
	if len(got) > 20 {
		t.Fatalf("%d items came out of an ordered stage that failed on item 20", len(got))
	}
	for i, v := range got {
		if v != i {
			t.Fatalf("item %d = %d", i, v)
		}
	}
	if err := <-pushed; !errors.Is(err, ErrCancelled) {
		t.Fatalf("Push after the failure = %v, want ErrCancelled", err)
	}
	p.Close()
	if d := HeldValues() - held; d != 0 {
		t.Fatalf("%d values still held", d)
	}
}

func TestPipelinePanic(t *testing.T) {
	ctx := testCtx(t)
	pool := newTestPool(t, WithThreads(2))
	p, err := NewPipeline[int](pool, ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	out := Stage(p, 1, false, func(ctx context.Context, v int) (int, bool, error) {
		panic(fmt.Sprintf("stage saw %d", v))
	})
	pushAll(ctx, p, []int{5})
	drainOut(t, ctx, out)
	var pe *PanicError
	if err := out.Err(); !errors.As(err, &pe) || pe.Value != "stage saw 5" {
		t.Fatalf("Err = %v, want the stage's panic", err)
	}
}

// Close mid-run: the stages running end, none runs after Close returns, the items
// inside are released, the output reports ErrCancelled.
func TestPipelineCloseMidRun(t *testing.T) {
	ctx := testCtx(t)
	pool := newTestPool(t, WithThreads(2))
	held := HeldValues()
	p, err := NewPipeline[int](pool, ctx, WithMaxInFlight(32))
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	entered := make(chan struct{}, 64)
	out := Stage(p, 2, true, func(ctx context.Context, v int) (int, bool, error) {
		calls.Add(1)
		entered <- struct{}{}
		<-ctx.Done() // until the pipeline is cancelled
		return v, true, nil
	})
	for i := 0; i < 32; i++ {
		if err := p.TryPush(i); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.TryPush(32); !errors.Is(err, ErrFull) {
		t.Fatalf("TryPush past max_in_flight = %v, want ErrFull", err)
	}
	<-entered
	<-entered
	p.Close()
	n := calls.Load()
	if _, err := out.Next(ctx); !errors.Is(err, ErrCancelled) && !errors.Is(err, ErrClosed) {
		t.Fatalf("Next after Close = %v", err)
	}
	if err := p.Push(ctx, 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Push after Close = %v", err)
	}
	if d := HeldValues() - held; d != 0 {
		t.Fatalf("%d values still held after Close", d)
	}
	if calls.Load() != n {
		t.Fatal("a stage ran after Close returned")
	}
}

// The NewPipeline ctx cancels the pipeline: Next reports ErrCancelled with the cause.
func TestPipelineCtxCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(testCtx(t))
	pool := newTestPool(t, WithThreads(1))
	p, err := NewPipeline[int](pool, ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	out := Stage(p, 1, true, func(ctx context.Context, v int) (int, bool, error) { return v, true, nil })
	if err := p.Push(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if v, err := out.Next(testCtx(t)); v != 1 || err != nil {
		t.Fatalf("Next = %d, %v", v, err)
	}
	cancel()
	if _, err := out.Next(testCtx(t)); !errors.Is(err, ErrCancelled) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Next after the ctx's cancel = %v", err)
	}
}

// Mistakes building a pipeline are sticky.
func TestPipelineBuildErrors(t *testing.T) {
	ctx := testCtx(t)
	pool := newTestPool(t, WithThreads(1))
	p, err := NewPipeline[int](pool, ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	id := func(ctx context.Context, v int) (int, bool, error) { return v, true, nil }
	first := Stage(p, 1, true, id)
	Stage(p, 1, true, id) // not after the last stage
	if err := p.Push(ctx, 1); !errors.Is(err, ErrInvalidArg) {
		t.Fatalf("Push = %v, want ErrInvalidArg", err)
	}
	if err := first.Err(); !errors.Is(err, ErrInvalidArg) {
		t.Fatalf("Err = %v", err)
	}
	q, err := NewPipeline[int](pool, ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	Stage(q, 0, true, id)
	if err := q.Push(ctx, 1); !errors.Is(err, ErrInvalidArg) {
		t.Fatalf("concurrency 0: Push = %v", err)
	}
}

// A seeded property test: random pipelines (1 to 4 stages, each a map or a filter,
// concurrency 1 to 4, ordered or not, sometimes a failure) against a sequential model.
// All stages ordered: the same sequence; otherwise the same multiset. A failure: the
// output is a prefix (ordered) or a subset of the model's, then the error.
func TestPipelineMatchesSequentialModel(t *testing.T) {
	ctx := testCtx(t)
	pool := newTestPool(t, WithThreads(2))
	seeds := scaled(40, 10)
	for seed := int64(1); seed <= int64(seeds); seed++ {
		rng := rand.New(rand.NewSource(seed))
		held := HeldValues()
		type op struct {
			filter  bool
			a, b    int
			conc    int
			ordered bool
			failAt  int // fail on this input value (-1: never)
		}
		nStages := 1 + rng.Intn(4)
		ops := make([]op, nStages)
		allOrdered := true
		failing := rng.Intn(4) == 0
		for i := range ops {
			ops[i] = op{filter: rng.Intn(3) == 0, a: 1 + rng.Intn(5), b: rng.Intn(7),
				conc: 1 + rng.Intn(4), ordered: rng.Intn(3) != 0, failAt: -1}
			allOrdered = allOrdered && ops[i].ordered
		}
		n := 50 + rng.Intn(150)
		input := make([]int, n)
		for i := range input {
			input[i] = rng.Intn(1000)
		}
		// The model, and the failure's input position in the last stage's terms.
		if failing {
			ops[rng.Intn(nStages)].failAt = -2 // fails on the first value it sees that is 0 mod 5
		}
		apply := func(o op, v int) (int, bool, bool) { // value, keep, fail
			if o.failAt == -2 && v%5 == 0 {
				return 0, false, true
			}
			if o.filter {
				return v, v%o.a != 0 || o.a == 1, false
			}
			return (v*o.a + o.b) % 1009, true, false
		}
		var model []int
		modelFails := false
		for _, v := range input {
			keep := true
			for _, o := range ops {
				var fail bool
				if v, keep, fail = apply(o, v); fail {
					modelFails = true
				}
				if fail || !keep {
					keep = false
					break
				}
			}
			if modelFails {
				break
			}
			if keep {
				model = append(model, v)
			}
		}
		p, err := NewPipeline[int](pool, ctx, WithMaxInFlight(1+rng.Intn(32)))
		if err != nil {
			t.Fatal(err)
		}
		var src Source[int] = p
		var out *Output[int]
		for _, o := range ops {
			o := o
			out = Stage(src, o.conc, o.ordered, func(ctx context.Context, v int) (int, bool, error) {
				spin(v % 17)
				v, keep, fail := apply(o, v)
				if fail {
					return 0, false, errors.New("model failure")
				}
				return v, keep, nil
			})
			src = out
		}
		pushAll(ctx, p, input)
		got := drainOut(t, ctx, out)
		err = out.Err()
		desc := fmt.Sprintf("seed %d (%d stages %+v, %d items)", seed, nStages, ops, n)
		switch {
		case modelFails:
			if err == nil || err.Error() != (&JobError{Code: 1, Message: "model failure"}).Error() {
				t.Fatalf("%s: Err = %v, want the stage failure", desc, err)
			}
			if allOrdered {
				for i, v := range got {
					if i >= len(model) || v != model[i] {
						t.Fatalf("%s: item %d = %d, not a prefix of the model", desc, i, v)
					}
				}
			}
		case err != nil:
			t.Fatalf("%s: Err = %v", desc, err)
		case allOrdered:
			if fmt.Sprint(got) != fmt.Sprint(model) {
				t.Fatalf("%s: got %v, model %v", desc, got, model)
			}
		default:
			sort.Ints(got)
			m := append([]int(nil), model...)
			sort.Ints(m)
			if fmt.Sprint(got) != fmt.Sprint(m) {
				t.Fatalf("%s: got %v, model (sorted) %v", desc, got, m)
			}
		}
		p.Close()
		if d := HeldValues() - held; d != 0 {
			t.Fatalf("%s: %d values still held", desc, d)
		}
	}
}
