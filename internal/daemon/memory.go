package daemon

import (
	"log/slog"
	"runtime/debug"
)

// memoryFootprint is implemented by stores that can say how much memory
// their structures hold (memswarm).
type memoryFootprint interface{ MemoryBytes() uint64 }

// freeAfterSweep is how much a store's memory must have shrunk since its
// peak for a sweep to hand the freed pages back to the OS at once.
const freeAfterSweep = 32 << 20

// memoryGiver returns the memory a flood left behind to the OS after the
// sweep that freed it. The Go runtime's background scavenger would give
// it back too, but over minutes: after a flood of random hashes expired,
// RSS stayed at its peak for three minutes. debug.FreeOSMemory forces a
// collection, which costs little on a heap of pointer-free slabs, and it
// runs only after a sweep that freed a lot, not once per sweep.
type memoryGiver struct {
	store memoryFootprint
	peak  uint64
	log   *slog.Logger
}

// observe is called before and after every sweep: the store's size
// before one is the peak it is measured against.
func (m *memoryGiver) observe() {
	if m == nil || m.store == nil {
		return
	}
	now := m.store.MemoryBytes()
	if now > m.peak {
		m.peak = now
		return
	}
	if m.peak-now < freeAfterSweep || now > m.peak/4*3 {
		return
	}
	m.log.Info("swarm store shrank; returning its memory to the system", "from_bytes", m.peak, "to_bytes", now)
	m.peak = now
	debug.FreeOSMemory()
}
