package daemon

import (
	"log/slog"
	"runtime/debug"
)

// memoryReleaser is implemented by stores that count the bytes of their
// structures they drop (memswarm).
type memoryReleaser interface {
	MemoryBytes() uint64
	ReleasedBytes() uint64
}

// A sweep hands what the store dropped since the last hand-back to the OS
// once it is freeAfterSweep, or a quarter of what the store still holds
// and at least minFreeAfterSweep: the end of a flood drops the most in
// sweeps that leave a small store.
const (
	freeAfterSweep    = 32 << 20
	minFreeAfterSweep = 4 << 20
)

// memoryGiver returns the memory a sweep dropped to the OS after it. What
// the store drops is garbage until the next collection, and the Go
// runtime's background scavenger gives freed pages back over minutes:
// after a flood of random hashes expired, RSS stayed at its peak for
// three minutes, and a sweep that repacked fragmented slabs left the old
// ones in RSS beside the new. debug.FreeOSMemory collects and returns
// the pages at once; it costs little on a heap of pointer-free slabs,
// and it runs only after a sweep that dropped much (see freeAfterSweep).
type memoryGiver struct {
	store memoryReleaser
	last  uint64
	log   *slog.Logger
}

func newMemoryGiver(store any, log *slog.Logger) *memoryGiver {
	m, ok := store.(memoryReleaser)
	if !ok {
		return nil
	}
	return &memoryGiver{store: m, last: m.ReleasedBytes(), log: log}
}

// afterSweep is called after every sweep.
func (m *memoryGiver) afterSweep() {
	if m == nil {
		return
	}
	released, held := m.store.ReleasedBytes(), m.store.MemoryBytes()
	if d := released - m.last; d < freeAfterSweep && (d < minFreeAfterSweep || d < held/4) {
		return
	}
	m.log.Info("swarm store dropped memory; returning it to the system", "dropped_bytes", released-m.last, "store_bytes", held)
	m.last = released
	debug.FreeOSMemory()
}
