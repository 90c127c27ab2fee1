package jobrunner

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestVersion(t *testing.T) {
	if v := Version(); !strings.HasPrefix(v, "0.") {
		t.Fatalf("Version() = %q", v)
	}
}

func TestSubmitWait(t *testing.T) {
	p := newTestPool(t, WithThreads(2), WithName("gotest"))
	ctx := testCtx(t)
	job, err := Submit(p, ctx, func(ctx context.Context) (int, error) { return 6 * 7, nil })
	if err != nil {
		t.Fatal(err)
	}
	defer job.Close()
	v, err := job.Wait(ctx)
	if err != nil || v != 42 {
		t.Fatalf("Wait = %d, %v; want 42, nil", v, err)
	}
	if s := job.State(); s != Succeeded {
		t.Fatalf("State = %v, want Succeeded", s)
	}
	// A second Wait gives the same.
	if v, err := job.Wait(ctx); err != nil || v != 42 {
		t.Fatalf("second Wait = %d, %v", v, err)
	}
}

func TestManyJobsResults(t *testing.T) {
	p := newTestPool(t, WithThreads(2))
	ctx := testCtx(t)
	jobs := make([]*Job[string], 200)
	for i := range jobs {
		i := i
		var err error
		jobs[i], err = Submit(p, ctx, func(context.Context) (string, error) { return fmt.Sprint(i), nil })
		if err != nil {
			t.Fatal(err)
		}
	}
	for i, j := range jobs {
		v, err := j.Wait(ctx)
		if err != nil || v != fmt.Sprint(i) {
			t.Fatalf("job %d: %q, %v", i, v, err)
		}
		j.Close()
	}
	if s := p.Stats(); s.Succeeded < 200 || s.Threads != 2 {
		t.Fatalf("Stats = %+v", s)
	}
}

var errBoom = errors.New("boom")

func TestJobError(t *testing.T) {
	p := newTestPool(t, WithThreads(1))
	ctx := testCtx(t)
	job, _ := Submit(p, ctx, func(context.Context) (int, error) { return 0, fmt.Errorf("wrapped: %w", errBoom) })
	_, err := job.Wait(ctx)
	var je *JobError
	if !errors.As(err, &je) || je.Code != 1 || !errors.Is(err, errBoom) || je.Message != "wrapped: boom" {
		t.Fatalf("err = %#v", err)
	}
	if job.State() != Failed {
		t.Fatalf("State = %v", job.State())
	}
	// A *JobError returned by the function sets the code.
	job2, _ := Submit(p, ctx, func(context.Context) (int, error) { return 0, &JobError{Code: 42, Message: "custom"} })
	_, err = job2.Wait(ctx)
	if !errors.As(err, &je) || je.Code != 42 {
		t.Fatalf("err = %#v", err)
	}
}

// Every Wait of a job that did not succeed returns the one error value made by the
// first, from concurrent callers too.
func TestWaitErrorIsMadeOnce(t *testing.T) {
	p := newTestPool(t, WithThreads(1))
	ctx := testCtx(t)
	for _, fn := range []func(context.Context) (int, error){
		func(context.Context) (int, error) { return 0, errBoom },
		func(context.Context) (int, error) { panic("kaboom") },
	} {
		job, err := Submit(p, ctx, fn)
		if err != nil {
			t.Fatal(err)
		}
		const waiters = 8
		errs := make(chan error, waiters)
		for i := 0; i < waiters; i++ {
			go func() { _, err := job.Wait(ctx); errs <- err }()
		}
		first := <-errs
		if first == nil {
			t.Fatal("Wait succeeded")
		}
		for i := 1; i < waiters; i++ {
			if err := <-errs; err != first {
				t.Fatalf("Wait %d = %p %v, the first %p %v", i, err, err, first, first)
			}
		}
		if _, err := job.Wait(ctx); err != first {
			t.Fatalf("a later Wait = %v, want the first's %v", err, first)
		}
		job.Close()
	}
	// A job cancelled before it ran, too (its Go side has no failure recorded).
	block := make(chan struct{})
	running := make(chan struct{})
	blocker, _ := Submit(p, ctx, func(context.Context) (int, error) { close(running); <-block; return 0, nil })
	<-running
	queued, _ := Submit(p, ctx, func(context.Context) (int, error) { return 1, nil })
	if !queued.Cancel() {
		t.Fatal("Cancel of a queued job returned false")
	}
	close(block)
	_, e1 := queued.Wait(ctx)
	_, e2 := queued.Wait(ctx)
	if !errors.Is(e1, ErrCancelled) || e1 != e2 {
		t.Fatalf("Waits of a cancelled job: %v, %v", e1, e2)
	}
	queued.Close()
	blocker.Wait(ctx)
	blocker.Close()
}

func TestPanicBecomesPanicError(t *testing.T) {
	p := newTestPool(t, WithThreads(1))
	ctx := testCtx(t)
	job, _ := Submit(p, ctx, func(context.Context) (int, error) { panic("kaboom") })
	_, err := job.Wait(ctx)
	var pe *PanicError
	if !errors.As(err, &pe) || pe.Value != "kaboom" || !strings.Contains(string(pe.Stack), "TestPanicBecomesPanicError") {
		t.Fatalf("err = %v", err)
	}
	if job.State() != Panicked {
		t.Fatalf("State = %v", job.State())
	}
	// The worker lives on.
	job2, _ := Submit(p, ctx, func(context.Context) (int, error) { return 1, nil })
	if v, err := job2.Wait(ctx); v != 1 || err != nil {
		t.Fatalf("after panic: %d, %v", v, err)
	}
	if s := p.Stats(); s.Panicked != 1 {
		t.Fatalf("Stats.Panicked = %d", s.Panicked)
	}
}

func TestCancelQueuedJobBySubmitCtx(t *testing.T) {
	p := newTestPool(t, WithThreads(1))
	ctx := testCtx(t)
	hold, started := make(gate), make(gate)
	defer hold.open()
	blocker, _ := Submit(p, ctx, func(context.Context) (int, error) { started.open(); hold.wait(); return 0, nil })
	started.wait()

	jobCtx, cancel := context.WithCancel(ctx)
	var ran atomic.Bool
	queued, err := Submit(p, jobCtx, func(context.Context) (int, error) { ran.Store(true); return 0, nil })
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	<-queued.Done() // ends without the worker freeing up
	_, err = queued.Wait(ctx)
	if !errors.Is(err, ErrCancelled) || !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	hold.open()
	blocker.Wait(ctx)
	if ran.Load() {
		t.Fatal("the cancelled job ran")
	}
	if s := queued.State(); s != CancelledState {
		t.Fatalf("State = %v", s)
	}
	if s := p.Stats(); s.CancelledBeforeStart != 1 {
		t.Fatalf("CancelledBeforeStart = %d", s.CancelledBeforeStart)
	}
}

func TestCancelRunningJobSeesCtx(t *testing.T) {
	p := newTestPool(t, WithThreads(1))
	ctx := testCtx(t)
	jobCtx, cancel := context.WithCancel(ctx)
	started := make(gate)
	job, _ := Submit(p, jobCtx, func(ctx context.Context) (int, error) {
		started.open()
		<-ctx.Done()
		return 0, ctx.Err()
	})
	started.wait()
	cancel()
	_, err := job.Wait(ctx)
	if !errors.Is(err, ErrCancelled) || !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if s := job.State(); s != CancelledState {
		t.Fatalf("State = %v", s)
	}
}

func TestJobCancel(t *testing.T) {
	p := newTestPool(t, WithThreads(1))
	ctx := testCtx(t)
	started := make(gate)
	running, _ := Submit(p, ctx, func(ctx context.Context) (int, error) {
		started.open()
		<-ctx.Done()
		return 0, ctx.Err()
	})
	queued, _ := Submit(p, ctx, func(ctx context.Context) (int, error) { return 1, nil })
	started.wait()
	if !queued.Cancel() {
		t.Fatal("Cancel of a queued job: false")
	}
	if running.Cancel() {
		t.Fatal("Cancel of a running job: true")
	}
	for _, j := range []*Job[int]{running, queued} {
		if _, err := j.Wait(ctx); !errors.Is(err, ErrCancelled) {
			t.Fatalf("err = %v", err)
		}
	}
}

func TestDeadline(t *testing.T) {
	p := newTestPool(t, WithThreads(1))
	ctx := testCtx(t)
	dctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	job, _ := Submit(p, dctx, func(ctx context.Context) (int, error) {
		if _, ok := ctx.Deadline(); !ok {
			return 0, errors.New("no deadline in the job's context")
		}
		<-ctx.Done()
		if ctx.Err() != context.DeadlineExceeded {
			return 0, fmt.Errorf("ctx.Err() = %v", ctx.Err())
		}
		return 0, ctx.Err()
	})
	_, err := job.Wait(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrCancelled) {
		t.Fatalf("err = %v", err)
	}
	// A job submitted with a passed deadline never runs.
	var ran atomic.Bool
	job2, _ := Submit(p, dctx, func(ctx context.Context) (int, error) { ran.Store(true); return 0, nil })
	if _, err := job2.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) || ran.Load() {
		t.Fatalf("err = %v, ran = %v", err, ran.Load())
	}
}

type ctxKey struct{}

func TestJobContextCarriesValues(t *testing.T) {
	p := newTestPool(t, WithThreads(1))
	ctx := context.WithValue(testCtx(t), ctxKey{}, "v")
	job, _ := Submit(p, ctx, func(ctx context.Context) (any, error) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		return ctx.Value(ctxKey{}), nil
	})
	if v, err := job.Wait(ctx); v != "v" || err != nil {
		t.Fatalf("%v, %v", v, err)
	}
}

func TestSelectOnDone(t *testing.T) {
	p := newTestPool(t, WithThreads(1))
	ctx := testCtx(t)
	hold := make(gate)
	defer hold.open()
	job, _ := Submit(p, ctx, func(context.Context) (int, error) { hold.wait(); return 1, nil })
	select {
	case <-job.Done():
		t.Fatal("done before its gate opened")
	case <-time.After(10 * time.Millisecond):
	}
	hold.open()
	select {
	case <-job.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("not done")
	}
	// Wait with a context that is done first returns its error.
	hold2 := make(gate)
	defer hold2.open()
	job2, _ := Submit(p, ctx, func(context.Context) (int, error) { hold2.wait(); return 1, nil })
	wctx, cancel := context.WithTimeout(ctx, time.Millisecond)
	defer cancel()
	if _, err := job2.Wait(wctx); err != context.DeadlineExceeded {
		t.Fatalf("Wait = %v", err)
	}
}

// Nested submit-and-wait on one thread runs the inner job inline (the only worker is
// this one), also when the inner job was closed before the wait.
func TestNestedSubmitWaitOneThread(t *testing.T) {
	for _, closeFirst := range []bool{false, true} {
		p := newTestPool(t, WithThreads(1))
		ctx := testCtx(t)
		outer, _ := Submit(p, ctx, func(ctx context.Context) (int, error) {
			inner, err := Submit(p, ctx, func(context.Context) (int, error) { return 20, nil })
			if err != nil {
				return 0, err
			}
			if closeFirst {
				inner.Close()
			} else {
				defer inner.Close()
			}
			v, err := inner.Wait(ctx)
			return v + 1, err
		})
		if v, err := outer.Wait(ctx); v != 21 || err != nil {
			t.Fatalf("closed first %v: %d, %v", closeFirst, v, err)
		}
	}
}

func TestDelayAndName(t *testing.T) {
	p := newTestPool(t, WithThreads(1))
	ctx := testCtx(t)
	start := time.Now()
	job, _ := Submit(p, ctx, func(context.Context) (time.Time, error) { return time.Now(), nil },
		WithDelay(30*time.Millisecond), WithName("delayed"))
	if s := job.State(); s != Delayed {
		t.Fatalf("State = %v", s)
	}
	ranAt, err := job.Wait(ctx)
	if err != nil || ranAt.Sub(start) < 30*time.Millisecond {
		t.Fatalf("ran after %v, %v", ranAt.Sub(start), err)
	}
}

func TestQueueFullNonBlocking(t *testing.T) {
	p := newTestPool(t, WithThreads(1), WithQueueCapacity(1))
	ctx := testCtx(t)
	hold, started := make(gate), make(gate)
	defer hold.open()
	blocker, _ := Submit(p, ctx, func(context.Context) (int, error) { started.open(); hold.wait(); return 0, nil })
	started.wait()
	queued, err := Submit(p, ctx, func(context.Context) (int, error) { return 1, nil })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Submit(p, ctx, func(context.Context) (int, error) { return 2, nil }, NonBlocking()); err != ErrFull {
		t.Fatalf("NonBlocking submit to a full queue: %v", err)
	}
	// A blocking submit gives up when its context is done.
	sctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	if _, err := Submit(p, sctx, func(context.Context) (int, error) { return 3, nil }); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("blocking submit with a deadline: %v", err)
	}
	hold.open()
	blocker.Wait(ctx)
	if v, err := queued.Wait(ctx); v != 1 || err != nil {
		t.Fatalf("%d, %v", v, err)
	}
}

func TestShutdown(t *testing.T) {
	p := newTestPool(t, WithThreads(1))
	ctx := testCtx(t)
	started := make(gate)
	running, _ := Submit(p, ctx, func(ctx context.Context) (int, error) {
		started.open()
		<-ctx.Done()
		return 0, ctx.Err()
	})
	queued, _ := Submit(p, ctx, func(context.Context) (int, error) { return 1, nil })
	started.wait()
	if err := p.Shutdown(ctx, Cancel); err != nil {
		t.Fatal(err)
	}
	for _, j := range []*Job[int]{running, queued} {
		if _, err := j.Wait(ctx); !errors.Is(err, ErrCancelled) {
			t.Fatalf("err = %v", err)
		}
	}
	if _, err := running.Wait(ctx); !errors.Is(err, ErrShutdown) {
		t.Fatalf("running job's error does not say shutdown: %v", err)
	}
	if _, err := Submit(p, ctx, func(context.Context) (int, error) { return 0, nil }); err != ErrShutdown {
		t.Fatalf("submit after shutdown: %v", err)
	}
}

func TestShutdownDrainTimeout(t *testing.T) {
	p := newTestPool(t, WithThreads(1))
	ctx := testCtx(t)
	hold, started := make(gate), make(gate)
	defer hold.open()
	Submit(p, ctx, func(context.Context) (int, error) { started.open(); hold.wait(); return 0, nil })
	started.wait()
	sctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	if err := p.Shutdown(sctx, Drain); !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v", err)
	}
	hold.open()
	if err := p.Shutdown(ctx, Drain); err != nil {
		t.Fatalf("second Shutdown = %v", err)
	}
}

func TestCloseIdempotentAndAfterClose(t *testing.T) {
	p, err := NewPool(WithThreads(1))
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	job, _ := Submit(p, ctx, func(context.Context) (int, error) { return 5, nil })
	p.Close()
	p.Close()
	if _, err := Submit(p, ctx, func(context.Context) (int, error) { return 0, nil }); err != ErrClosed {
		t.Fatalf("submit after Close: %v", err)
	}
	job.Close()
	if v, err := job.Wait(ctx); v != 5 || err != nil { // drained by Close
		t.Fatalf("%d, %v", v, err)
	}
}

func TestDefaultPool(t *testing.T) {
	ctx := testCtx(t)
	job, err := Submit(Default(), ctx, func(context.Context) (int, error) { return 1, nil })
	if err != nil {
		t.Fatal(err)
	}
	if v, err := job.Wait(ctx); v != 1 || err != nil {
		t.Fatalf("%d, %v", v, err)
	}
	if Default().Close() != nil || Default().Stats().Threads == 0 {
		t.Fatal("Default pool")
	}
}

// A cancel from Go is complete when it returns (jr_token_cancel_sync): a job queued
// under the cancelled token has already ended. The async jr_token_cancel leaves that to
// a helper thread, and this test then sees Queued now and then.
func TestTokenCancelIsSynchronous(t *testing.T) {
	p := newTestPool(t, WithThreads(1))
	ctx := testCtx(t)
	hold, started := make(gate), make(gate)
	defer hold.open()
	blocker, _ := Submit(p, ctx, func(context.Context) (int, error) { started.open(); hold.wait(); return 0, nil })
	started.wait()
	rounds := scaled(500, 100)
	for i := 0; i < rounds; i++ {
		jobCtx, cancel := context.WithCancel(ctx)
		job, err := Submit(p, jobCtx, func(context.Context) (int, error) { return 0, nil })
		if err != nil {
			t.Fatal(err)
		}
		job.task.token.cancel() // what the AfterFunc of jobCtx does
		if s := job.State(); s != CancelledState {
			t.Fatalf("round %d: State = %v right after the cancel returned", i, s)
		}
		cancel()
		job.Close()
	}
	hold.open()
	blocker.Wait(ctx)
}

// Done closes only once C's state is terminal (it is driven by jr_job_on_done): right
// after <-Done(), State has ended and the outcome is there, for every job. Done used to
// close as the Go function returned, on the worker, before C had recorded the end, and
// this test then saw Running.
func TestDoneMeansStateEnded(t *testing.T) {
	p := newTestPool(t, WithThreads(2))
	ctx := testCtx(t)
	n := scaled(20000, 3000)
	jobs := make([]*Job[int], n)
	for i := range jobs {
		i := i
		var err error
		jobs[i], err = Submit(p, ctx, func(context.Context) (int, error) {
			if i%3 == 0 {
				return 0, errors.New("odd one")
			}
			return i, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for i, j := range jobs {
		select {
		case <-j.Done():
		case <-ctx.Done():
			t.Fatalf("job %d: not done", i)
		}
		want := Succeeded
		if i%3 == 0 {
			want = Failed
		}
		if s := j.State(); s != want {
			t.Fatalf("job %d: State = %v right after Done", i, s)
		}
		v, err := j.Wait(ctx)
		if (err == nil) != (want == Succeeded) || (err == nil && v != i) {
			t.Fatalf("job %d: Wait = %v, %v", i, v, err)
		}
	}
	// A select that sees Done before the job ended would fail the same way: ask each
	// job while it is still likely to be running.
	for i := 0; i < n/10; i++ {
		j, err := Submit(p, ctx, func(context.Context) (int, error) { return i, nil })
		if err != nil {
			t.Fatal(err)
		}
		<-j.Done()
		if s := j.State(); s != Succeeded {
			t.Fatalf("fresh job %d: State = %v right after Done", i, s)
		}
		j.Close()
	}
}

// A job closed before it ends still reports its end: Close registers the done callback
// it would otherwise lose with the handle, so Done closes and Wait returns the value.
func TestCloseBeforeEnd(t *testing.T) {
	p := newTestPool(t, WithThreads(1))
	ctx := testCtx(t)
	hold := make(gate)
	defer hold.open()
	job, err := Submit(p, ctx, func(context.Context) (int, error) { hold.wait(); return 7, nil })
	if err != nil {
		t.Fatal(err)
	}
	job.Close()
	select {
	case <-job.Done():
		t.Fatal("done before its gate opened")
	default:
	}
	hold.open()
	select {
	case <-job.Done():
	case <-ctx.Done():
		t.Fatal("not done")
	}
	if s := job.State(); s != Succeeded {
		t.Fatalf("State = %v", s)
	}
	if v, err := job.Wait(ctx); v != 7 || err != nil {
		t.Fatalf("Wait = %v, %v", v, err)
	}
}

// Done, State and a Wait with a non-job context only look at a job: called inside a job
// on a job that has not started, they never run it inline (jr_job_wait would, on a
// worker thread, even with no timeout).
func TestLookingDoesNotRunInline(t *testing.T) {
	p := newTestPool(t, WithThreads(1))
	ctx := testCtx(t)
	var ran atomic.Bool
	outer, err := Submit(p, ctx, func(context.Context) (bool, error) {
		inner, err := Submit(p, ctx, func(context.Context) (int, error) { ran.Store(true); return 1, nil })
		if err != nil {
			return false, err
		}
		inner.Done()
		inner.State()
		wctx, cancel := context.WithTimeout(ctx, time.Millisecond)
		defer cancel()
		inner.Wait(wctx) // not the job's context: waits on the channel, times out
		inner.Close()
		return ran.Load(), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if ranInline, err := outer.Wait(ctx); err != nil || ranInline {
		t.Fatalf("inner job ran inline: %v, %v", ranInline, err)
	}
}

// Done, State, Wait, Cancel and Close race on the same jobs from several goroutines
// while the jobs are queued, run, end or are cancelled before they start (batches of 10
// jobs on two threads, held until the goroutines are going): the job's end is noted
// once, its handle freed once (a double free or a use after free crashes in C), every
// Wait of a job agrees, and State has ended after Wait.
func TestJobMethodsRace(t *testing.T) {
	p := newTestPool(t, WithThreads(2))
	ctx := testCtx(t)
	batches := scaled(30, 10)
	const size, callers = 10, 4
	for b := 0; b < batches; b++ {
		hold := make(gate)
		jobs := make([]*Job[int], size)
		for i := range jobs {
			i := i
			var err error
			if jobs[i], err = Submit(p, ctx, func(context.Context) (int, error) { hold.wait(); return i, nil }); err != nil {
				t.Fatal(err)
			}
		}
		results := make([][callers]error, size)
		var wg, going sync.WaitGroup
		for i, job := range jobs {
			for g := 0; g < callers; g++ {
				i, job, g := i, job, g
				wg.Add(1)
				going.Add(1)
				go func() {
					defer wg.Done()
					going.Done()
					switch (i + g) % 4 {
					case 0:
						<-job.Done()
					case 1:
						job.State()
						job.Cancel()
					case 2:
						job.Close()
					}
					v, err := job.Wait(ctx)
					if err == nil && v != i {
						err = fmt.Errorf("value %d", v)
					}
					if s := job.State(); err == nil && s != Succeeded {
						err = fmt.Errorf("State %v after a Wait that succeeded", s)
					}
					results[i][g] = err
				}()
			}
		}
		// Every caller is going before the jobs may end, so that their calls race the
		// jobs' running and ending, not only each other.
		going.Wait()
		hold.open()
		wg.Wait()
		for i, r := range results {
			for g, err := range r {
				if fmt.Sprint(err) != fmt.Sprint(r[0]) {
					t.Fatalf("job %d: caller %d saw %v, caller 0 %v", i, g, err, r[0])
				}
				if err != nil && !errors.Is(err, ErrCancelled) {
					t.Fatalf("job %d: %v", i, err)
				}
			}
		}
	}
}

// Close on a job still going keeps its state true: State is never a made-up terminal
// state before the end, and the end it reports is the job's.
func TestCloseBeforeEndKeepsStateAndCancel(t *testing.T) {
	p := newTestPool(t, WithThreads(1))
	ctx := testCtx(t)
	hold := make(gate)
	job, err := Submit(p, ctx, func(context.Context) (int, error) { hold.wait(); return 7, nil })
	if err != nil {
		t.Fatal(err)
	}
	queued, err := Submit(p, ctx, func(context.Context) (int, error) { return 8, nil })
	if err != nil {
		t.Fatal(err)
	}
	job.Close()
	queued.Close()
	if s := job.State(); s.Ended() {
		t.Fatalf("State after Close of a job still going = %v", s)
	}
	if !queued.Cancel() {
		t.Fatal("Cancel after Close did not prevent a queued job")
	}
	hold.open()
	if v, err := job.Wait(ctx); v != 7 || err != nil {
		t.Fatalf("Wait = %v, %v", v, err)
	}
	if s := job.State(); s != Succeeded {
		t.Fatalf("State at the end = %v", s)
	}
	if _, err := queued.Wait(ctx); !errors.Is(err, ErrCancelled) {
		t.Fatalf("the cancelled job's Wait = %v", err)
	}
}

// Inside a job, Wait with a context derived from the job's gives up when that context
// is done, while the awaited job runs on another worker.
func TestWaitInJobHonoursADerivedContext(t *testing.T) {
	p := newTestPool(t, WithThreads(2))
	ctx := testCtx(t)
	hold, started := make(gate), make(gate)
	defer hold.open()
	inner, err := Submit(p, ctx, func(context.Context) (int, error) { started.open(); hold.wait(); return 1, nil })
	if err != nil {
		t.Fatal(err)
	}
	started.wait()
	outer, err := Submit(p, ctx, func(jctx context.Context) (int, error) {
		wctx, cancel := context.WithTimeout(jctx, 10*time.Millisecond)
		defer cancel()
		return inner.Wait(wctx)
	})
	if err != nil {
		t.Fatal(err)
	}
	// The outer job ends while the inner one is still held: Wait gave up on its ctx.
	if _, err := outer.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait with a 10 ms context inside a job = %v", err)
	}
	if s := inner.State(); s.Ended() {
		t.Fatalf("the inner job ended before its gate opened: %v", s)
	}
}

// Jobs submitted with contexts of one Done channel share one C token, freed when the
// last of them has ended; cancelling the context still ends every queued one.
func TestJobsOfOneContextShareAToken(t *testing.T) {
	p := newTestPool(t, WithThreads(1))
	hold := make(gate)
	blocker, err := Submit(p, testCtx(t), func(context.Context) (int, error) { hold.wait(); return 0, nil })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(testCtx(t))
	valued := context.WithValue(ctx, struct{}{}, 1) // same Done channel
	var jobs []*Job[int]
	for i := 0; i < 20; i++ {
		c := ctx
		if i%2 == 1 {
			c = valued
		}
		j, err := Submit(p, c, func(context.Context) (int, error) { return 1, nil })
		if err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, j)
	}
	sharedTokens.mu.Lock()
	tok, users := sharedTokens.m[ctx.Done()], int64(0)
	if tok != nil {
		users = tok.users.Load()
	}
	sharedTokens.mu.Unlock()
	if users != 20 {
		t.Fatalf("the 20 queued jobs share a token with %d users", users)
	}
	cancel()
	for i, j := range jobs {
		if _, err := j.Wait(testCtx(t)); !errors.Is(err, ErrCancelled) || !errors.Is(err, context.Canceled) {
			t.Fatalf("job %d: Wait = %v", i, err)
		}
	}
	hold.open()
	if _, err := blocker.Wait(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	checkSharedTokenGone(t, ctx)
}

// A shared token's users come and go from several goroutines, so that the count keeps
// reaching 0 while other submits look the token up: the token is taken up again or made
// anew, never used after it is freed, and gone once the last job has ended; it still
// cancels.
func TestSharedTokenUsersComeAndGo(t *testing.T) {
	p := newTestPool(t, WithThreads(2))
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	const goroutines, jobs = 4, 2000
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < jobs; i++ {
				j, err := Submit(p, ctx, func(context.Context) (int, error) { return i, nil })
				if err != nil {
					errs <- err
					return
				}
				v, err := j.Wait(ctx)
				j.Close()
				if err != nil || v != i {
					errs <- fmt.Errorf("job %d: %d, %v", i, v, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	checkSharedTokenGone(t, ctx)
	// Cancelled now: a job submitted with the context never runs.
	cancel()
	ran := false
	j, err := Submit(p, ctx, func(context.Context) (int, error) { ran = true; return 0, nil })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.Wait(testCtx(t)); !errors.Is(err, ErrCancelled) || ran {
		t.Fatalf("after cancel: Wait = %v, ran = %v", err, ran)
	}
	j.Close()
}

// checkSharedTokenGone fails the test if the token shared by the jobs of ctx's Done
// channel is still in sharedTokens: it outlived its jobs.
func checkSharedTokenGone(t *testing.T, ctx context.Context) {
	t.Helper()
	sharedTokens.mu.Lock()
	_, still := sharedTokens.m[ctx.Done()]
	sharedTokens.mu.Unlock()
	if still {
		t.Fatal("the shared token outlived its jobs")
	}
}
