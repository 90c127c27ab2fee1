package jobrunner

import "sync/atomic"

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
