package jobrunner

import (
	"context"
	"testing"
	"time"
)

// The task table: numbers from the ring, slots still held skipped when the ring comes
// round, the spill table once ringProbes slots in a row are held, every number unique
// while held and every task given back by exactly one take.
func TestTaskTableRingAndSpill(t *testing.T) {
	var tt taskTable
	held := make(map[uintptr]*task)
	put := func() uintptr {
		tk := new(task)
		id := tt.put(tk)
		if _, dup := held[id]; dup || id == 0 {
			t.Fatalf("number %d given twice (or 0)", id)
		}
		held[id] = tk
		return id
	}
	take := func(id uintptr) {
		if got := tt.take(id); got != held[id] {
			t.Fatalf("take(%d) gave another task", id)
		}
		delete(held, id)
	}
	// Hold every eighth slot of the ring, fill the rest and give them back: the next
	// round skips the held ones.
	for i := 0; i < ringSize; i++ {
		id := put()
		if id > ringSize {
			t.Fatalf("put %d spilled with the ring free", i)
		}
		if i%8 != 0 {
			take(id)
		}
	}
	for i := 0; i < ringSize; i++ {
		id := put()
		if id > ringSize {
			t.Fatalf("spilled with 7 of 8 ring slots free")
		}
		if tt.get(id) != held[id] {
			t.Fatalf("get(%d) gave another task", id)
		}
		take(id)
	}
	// Fill the ring (an eighth of it is still held): then puts spill, and the spill
	// numbers work the same.
	for i := 0; i < ringSize-ringSize/8; i++ {
		id := put()
		if id > ringSize {
			t.Fatalf("spilled with a ring slot free")
		}
	}
	spilled := put()
	if spilled <= ringSize {
		t.Fatalf("a full ring gave number %d", spilled)
	}
	if tt.get(spilled) != held[spilled] {
		t.Fatal("get of a spilled number gave another task")
	}
	for id := range held {
		take(id)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("a second take of a number did not panic")
		}
	}()
	tt.take(spilled)
}

// inTable reports whether t holds a number in the task table, or a worker keeps it.
func inTable(t *task) bool {
	for i := range keptBy {
		if keptBy[i].Load() == t {
			return true
		}
	}
	for i := range tasks.ring {
		if tasks.ring[i].Load() == t {
			return true
		}
	}
	for k := range tasks.spill.shards {
		sh := &tasks.spill.shards[k]
		sh.mu.Lock()
		for _, s := range sh.slots {
			if s == t {
				sh.mu.Unlock()
				return true
			}
		}
		sh.mu.Unlock()
	}
	return false
}

// A job that succeeded is seen to end by the next Go job its worker runs, with nobody
// looking at it (see jrgo_slot in cgo.go); the last one a worker ran, by the worker's stop hook
// when the pool closes; a job nested in another is not kept (its worker has not ended
// the outer one). Nothing stays in the task table.
func TestWorkerTellsTheEndOfTheJobBefore(t *testing.T) {
	kept.pause(true) // the workers' own telling, not the sweeper's
	t.Cleanup(func() { kept.pause(false) })
	p := newTestPool(t, WithThreads(1))
	ctx := testCtx(t)
	first, err := Submit(p, ctx, func(context.Context) (int, error) { return 1, nil })
	if err != nil {
		t.Fatal(err)
	}
	var inner *Job[int]
	second, err := Submit(p, ctx, func(ctx context.Context) (int, error) {
		var err error
		// Run inline by the Wait below, nested in this job, on the pool's one thread.
		inner, err = Submit(p, ctx, func(context.Context) (int, error) { return 3, nil })
		if err != nil {
			return 0, err
		}
		v, err := inner.Wait(ctx)
		return v + 1, err
	})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := second.Wait(ctx); v != 4 || err != nil {
		t.Fatalf("second job: %v, %v", v, err)
	}
	// Nobody looked at the first job: its worker told its end when it started the second.
	if !first.task.ended.Load() || first.task.state != Succeeded {
		t.Fatal("the first job's end was not told by the job its worker ran next")
	}
	if inTable(&first.task) || inTable(&inner.task) {
		t.Fatal("an ended job is still in the task table")
	}
	if s := second.State(); s != Succeeded {
		t.Fatalf("second job: %v", s)
	}
	// The second job, the last its worker ran, may still be kept: closing the pool ends
	// the worker, whose stop hook gives it back.
	p.Close()
	if inTable(&second.task) || inTable(&first.task) {
		t.Fatal("a kept job is still in the task table after its pool closed")
	}
}

// A kept job whose worker runs no other Go job (here: none at all) is still seen to
// end, by the sweeper, with nobody looking at it, and leaves the task table: a dropped
// job is not held for as long as its worker stays idle.
func TestSweeperEndsJobsKeptByIdleWorkers(t *testing.T) {
	p := newTestPool(t, WithThreads(1))
	ctx := testCtx(t)
	ran := make(chan struct{})
	j, err := Submit(p, ctx, func(context.Context) (int, error) { close(ran); return 1, nil })
	if err != nil {
		t.Fatal(err)
	}
	<-ran
	for !j.task.ended.Load() || inTable(&j.task) {
		if ctx.Err() != nil {
			t.Fatal("a job kept by an idle worker was never seen to end")
		}
		time.Sleep(time.Millisecond) // polling a condition nothing signals, bounded by ctx
	}
	if j.task.state != Succeeded {
		t.Fatalf("state %v", j.task.state)
	}
}
