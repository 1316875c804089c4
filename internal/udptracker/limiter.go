package udptracker

import (
	"encoding/binary"
	"net/netip"
	"sync/atomic"
)

// limiterSlots is the size of the per-IP error table: 64 Ki slots of 8
// bytes, 512 KiB per server whatever the number of clients.
const limiterSlots = 1 << 16

// limiter caps the error answers one IP gets per window. It is a fixed
// table of counters indexed by a keyed hash of the IP, shared by the
// server's workers and updated with compare-and-swap: memory is bounded, no
// packet allocates, and an attacker cannot aim collisions at a victim
// without the key. IPs sharing a slot share a budget, which errs on the
// side of answering less.
//
// Each slot holds the window number (high 32 bits) and the count (low 32);
// a slot from an older window counts as empty, so no sweeper is needed.
type limiter struct {
	// slots is allocated by the first limit above 0 (New or a reload).
	slots  atomic.Pointer[[limiterSlots]atomic.Uint64]
	limit  atomic.Uint32 // answers per window; 0 means no limit
	window int64         // seconds
	k0, k1 uint64
}

func newLimiter(limit int, window int64, k0, k1 uint64) *limiter {
	l := &limiter{window: window, k0: k0 ^ 0x5bd1e995, k1: k1 ^ 0x9e3779b97f4a7c15}
	l.setLimit(limit)
	if l.window < 1 {
		l.window = 1
	}
	return l
}

// setLimit changes the answers allowed per window (0 or less: no limit);
// counts already made in this window stand.
func (l *limiter) setLimit(limit int) {
	if limit <= 0 {
		l.limit.Store(0)
		return
	}
	if l.slots.Load() == nil {
		l.slots.CompareAndSwap(nil, new([limiterSlots]atomic.Uint64))
	}
	l.limit.Store(uint32(min(limit, 1<<32-1)))
}

// allow counts one error answer for ip and reports whether it may be sent.
func (l *limiter) allow(ip netip.Addr, now int64) bool {
	limit := l.limit.Load()
	if limit == 0 {
		return true
	}
	slots := l.slots.Load()
	// The address and four zero bytes: any keyed hash spreads the slots.
	a := ip.As16()
	slot := &slots[sipHash20(l.k0, l.k1, binary.LittleEndian.Uint64(a[:8]), binary.LittleEndian.Uint64(a[8:]), 0)&(limiterSlots-1)]
	epoch := uint64(uint32(now / l.window))
	for {
		old := slot.Load()
		count := uint32(old)
		if old>>32 != epoch {
			count = 0
		}
		if count >= limit {
			return false
		}
		if slot.CompareAndSwap(old, epoch<<32|uint64(count+1)) {
			return true
		}
	}
}
