package jobrunner

import (
	"sync"
	"sync/atomic"
)

// closedBit marks a handleRef as closed; the bits below publishedBit count the calls in
// flight.
const closedBit = int64(1) << 62

// publishedBit marks a job handle's pointer as written (see jobHandle): a job handle is
// born holding its submitter's use, which publish ends. Other handles never set it.
const publishedBit = int64(1) << 61

// handleRef guards a C handle that C forbids freeing while another thread uses it:
// every C call takes a use (use/done), Close marks the handle closed (refusing new
// uses), and whoever ends the last use of a closed handle frees it, exactly once.
// A long C call (a blocking wait) thus delays the free instead of racing it.
type handleRef struct {
	state atomic.Int64
}

// use takes a use of the handle; false if it is closed (the caller must not touch it).
func (r *handleRef) use() bool {
	for {
		s := r.state.Load()
		if s&closedBit != 0 {
			return false
		}
		if r.state.CompareAndSwap(s, s+1) {
			return true
		}
	}
}

// done ends a use taken by use, running free if it was the last use of a closed handle.
func (r *handleRef) done(free func()) {
	if r.state.Add(-1)&^publishedBit == closedBit {
		free()
	}
}

// publish ends a job handle's first use, its submitter's, once the pointer is written
// (or the submit failed), and says so: one atomic add. It runs free if the handle was
// closed meanwhile with no other use in flight.
func (r *handleRef) publish(free func()) {
	if r.state.Add(publishedBit-1)&^publishedBit == closedBit {
		free()
	}
}

// published reports whether publish has run.
func (r *handleRef) published() bool { return r.state.Load()&publishedBit != 0 }

// close marks the handle closed and frees it now if no call is in flight (otherwise
// the last one does). It reports whether this call closed it (false: already closed).
func (r *handleRef) close(free func()) bool {
	for {
		s := r.state.Load()
		if s&closedBit != 0 {
			return false
		}
		if r.state.CompareAndSwap(s, s|closedBit) {
			if s&^publishedBit == 0 {
				free()
			}
			return true
		}
	}
}

// taskTable maps the numbers C holds as Go jobs' arguments to their tasks: what
// runtime/cgo.Handle does, for one type and cheaper. cgo.Handle boxes the value in an
// interface and keeps it in a concurrent map; NewHandle and Delete cost about 170 ns per
// job on the reference machine, more than a goroutine.
//
// The submitting goroutine puts and a worker takes, on another core, so what costs is
// the cache lines they both write. Most numbers come from a ring of ringSize slots, used
// in turn: a put claims the next slot with one CAS (nil to the task), a take swaps it
// back to nil, and consecutive jobs share a cache line, so a line crosses cores once per
// eight jobs. A slot still held when the ring comes round again (a job queued or running
// for ringSize submits) is skipped, and after ringProbes such slots the put goes to the
// spill table instead: slices with free lists, each under a mutex, split in shards.
// Ring numbers are 1..ringSize; spill numbers are above.
type taskTable struct {
	next  atomic.Uint64                  // the ring slot of the next put
	ring  [ringSize]atomic.Pointer[task] // 128 KiB of zeroes until used
	spill spillTable
}

const (
	ringSize   = 1 << 14
	ringProbes = 8
)

type spillTable struct {
	next   atomic.Uint32 // the shard of the next put
	shards [tableShards]tableShard
}

const tableShards = 16

type tableShard struct {
	mu    sync.Mutex
	slots []*task
	free  []uintptr // indexes of empty slots
	_     [8]byte   // to 64 bytes: one cache line per shard
}

// tasks is the table of every Go job in flight in the process.
var tasks taskTable

// put stores t and returns its number.
func (tt *taskTable) put(t *task) uintptr {
	for probe := 0; probe < ringProbes; probe++ {
		i := ringSlot(uintptr(tt.next.Add(1) - 1))
		if tt.ring[i].CompareAndSwap(nil, t) {
			return i + 1
		}
	}
	return ringSize + tt.spill.put(t)
}

// ringSlot is the ring slot of the n-th put: consecutive puts go to slots a cache line
// apart (8 slots per line), so that two workers taking the numbers of consecutive jobs
// do not write the same line; a line's 8 slots are used ringSize/8 puts apart.
func ringSlot(n uintptr) uintptr {
	const lines = ringSize / 8
	return (n%lines)*8 + (n/lines)%8
}

// get returns the task numbered id (which must be in the table).
func (tt *taskTable) get(id uintptr) *task {
	var t *task
	if id <= ringSize {
		t = tt.ring[id-1].Load()
	} else {
		t = tt.spill.get(id - ringSize)
	}
	if t == nil {
		panic("jobrunner: no Go task with this number")
	}
	return t
}

// take removes the task numbered id and returns it; the number may be reused.
func (tt *taskTable) take(id uintptr) *task {
	var t *task
	if id <= ringSize {
		t = tt.ring[id-1].Swap(nil)
	} else {
		t = tt.spill.take(id - ringSize)
	}
	if t == nil {
		panic("jobrunner: no Go task with this number")
	}
	return t
}

// put stores t and returns its number in the spill table (from 1).
func (tt *spillTable) put(t *task) uintptr {
	k := uintptr(tt.next.Add(1) % tableShards)
	sh := &tt.shards[k]
	sh.mu.Lock()
	var i uintptr
	if n := len(sh.free); n > 0 {
		i = sh.free[n-1]
		sh.free = sh.free[:n-1]
		sh.slots[i] = t
	} else {
		i = uintptr(len(sh.slots))
		sh.slots = append(sh.slots, t)
	}
	sh.mu.Unlock()
	return i*tableShards + k + 1
}

// slot returns the shard and the index in it of the number id.
func (tt *spillTable) slot(id uintptr) (*tableShard, uintptr) {
	return &tt.shards[(id-1)%tableShards], (id - 1) / tableShards
}

// get returns the task numbered id (which must be in the table).
func (tt *spillTable) get(id uintptr) *task {
	sh, i := tt.slot(id)
	sh.mu.Lock()
	t := sh.slots[i]
	sh.mu.Unlock()
	if t == nil {
		panic("jobrunner: no Go task with this number")
	}
	return t
}

// take removes the task numbered id and returns it; the number may be reused.
func (tt *spillTable) take(id uintptr) *task {
	sh, i := tt.slot(id)
	sh.mu.Lock()
	t := sh.slots[i]
	sh.slots[i] = nil
	if t != nil {
		sh.free = append(sh.free, i)
	}
	sh.mu.Unlock()
	if t == nil {
		panic("jobrunner: no Go task with this number")
	}
	return t
}
