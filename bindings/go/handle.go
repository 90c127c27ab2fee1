package jobrunner

import (
	"sync"
	"sync/atomic"
)

// closedBit marks a handleRef as closed; the bits below it count the calls in flight.
const closedBit = int64(1) << 62

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
	if r.state.Add(-1) == closedBit {
		free()
	}
}

// close marks the handle closed and frees it now if no call is in flight (otherwise
// the last one does). It reports whether this call closed it (false: already closed).
func (r *handleRef) close(free func()) bool {
	for {
		s := r.state.Load()
		if s&closedBit != 0 {
			return false
		}
		if r.state.CompareAndSwap(s, s|closedBit) {
			if s == 0 {
				free()
			}
			return true
		}
	}
}

// taskTable maps the numbers C holds as Go jobs' arguments to their tasks: what
// runtime/cgo.Handle does, for one type and cheaper. cgo.Handle boxes the value in an
// interface and keeps it in a concurrent map; NewHandle and Delete cost about 170 ns per
// job on the reference machine, more than a goroutine, while put and take here cost
// about 20: slices with free lists, each under a mutex held for a few instructions. The
// submitting goroutine puts and the workers take at the same time, so the table is
// split in shards, used in turn, to keep them off each other's lock and cache line.
// Numbers start at 1 (0 is never valid) and are reused once taken back.
type taskTable struct {
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
func (tt *taskTable) slot(id uintptr) (*tableShard, uintptr) {
	return &tt.shards[(id-1)%tableShards], (id - 1) / tableShards
}

// get returns the task numbered id (which must be in the table).
func (tt *taskTable) get(id uintptr) *task {
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
func (tt *taskTable) take(id uintptr) *task {
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
