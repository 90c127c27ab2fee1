package jobrunner

import "testing"

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
