package jobrunner

import (
	"context"
	"errors"
	"testing"

	"github.com/jobrunner/jobrunner/bindings/go/internal/cjobs"
)

func TestSubmitNative(t *testing.T) {
	p := newTestPool(t, WithThreads(2))
	ctx := testCtx(t)
	arg := cjobs.NewInt64(12)
	job, err := SubmitNative(p, ctx, cjobs.Square(), arg, WithArgFree(cjobs.Free()), WithResultFree(cjobs.Free()))
	if err != nil {
		t.Fatal(err)
	}
	defer job.Close()
	res, err := job.Wait(ctx)
	if err != nil || res == nil || cjobs.Load(res) != 144 {
		t.Fatalf("Wait = %v, %v", res, err)
	}
	cjobs.FreeMem(res) // taken: ours
	if job.State() != Succeeded {
		t.Fatalf("State = %v", job.State())
	}

	failing, err := SubmitNative(p, context.Background(), cjobs.Fail(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer failing.Close()
	_, err = failing.Wait(context.Background())
	var je *JobError
	if !errors.As(err, &je) || je.Code != 42 || je.Message != "native failure" {
		t.Fatalf("err = %#v", err)
	}
}

// Go and C jobs share one pool: C jobs counted by the same stats.
func TestNativeAndGoShareThePool(t *testing.T) {
	p := newTestPool(t, WithThreads(2))
	ctx := testCtx(t)
	counter := cjobs.NewInt64(0)
	defer cjobs.FreeMem(counter)
	g, _ := p.NewGroup(ctx)
	defer g.Close()
	var natives []*NativeJob
	for i := 0; i < 50; i++ {
		j, err := SubmitNative(p, ctx, cjobs.Incr(), counter)
		if err != nil {
			t.Fatal(err)
		}
		natives = append(natives, j)
		g.Go(func(context.Context) error { return nil })
	}
	for _, j := range natives {
		if _, err := j.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		j.Close()
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if got := cjobs.Load(counter); got != 50 {
		t.Fatalf("counter = %d", got)
	}
	if s := p.Stats(); s.Succeeded != 100 {
		t.Fatalf("Succeeded = %d", s.Succeeded)
	}
}
