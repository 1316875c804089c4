package memswarm

import (
	"context"
	"flag"
	"testing"
	"unsafe"

	"github.com/starling-tracker/starling/internal/swarm"
	"github.com/starling-tracker/starling/internal/swarm/swarmtest"
)

var memory3M = flag.Bool("memory3m", false, "run TestMemory3MBreakdown: 3M IPv4 peers in 1M torrents, where each byte goes (~400 MiB, ~10 s)")

// TestMemory3MBreakdown loads 3,000,000 IPv4 peers into 1,000,000
// torrents in the order of `starling bench udp --walk` (peer i in torrent
// i mod 1,000,000, so every swarm grows from one peer to three in step)
// and says where the store's bytes go, before and after a sweep: the
// figures BENCHMARKS.md's "Memory per peer from the outside" explains
// the process's RSS with.
func TestMemory3MBreakdown(t *testing.T) {
	if !*memory3M {
		t.Skip("needs -memory3m")
	}
	const peers, torrents = 3_000_000, 1_000_000
	s := New(swarm.Options{})
	for i := range peers {
		a := swarmtest.Announce(swarmtest.Hash(i%torrents), swarmtest.PeerID(i), swarmtest.Addr4(i, 6881), 100)
		a.NumWant, a.Left = 0, int64(i%2)
		swarmtest.Do(t, s, a)
	}
	report := func(when string) {
		var tcap, idx, capSlots, live, freeListed, freeEntries uint64
		for k := range s.shards {
			sh := &s.shards[k]
			tcap += uint64(cap(sh.torrents))
			idx += uint64(len(sh.index.slots))
			capSlots += sh.p4.capSlots
			live += sh.p4.slots
			freeListed += sh.p4.freeListed()
			for _, f := range sh.p4.free {
				freeEntries += uint64(cap(f))
			}
		}
		slot := uint64(unsafe.Sizeof(peer[[4]byte]{}) + unsafe.Sizeof(hotPeer[[4]byte]{}))
		per := func(b uint64) float64 { return float64(b) / peers }
		t.Logf("%s: torrents %.1f B/peer (%d slots of %d B), index %.1f, peers in live segments %.1f (%d B a slot), free-listed %.1f, bump tails %.1f, free-list entries %.1f; MemoryBytes %.1f B/peer",
			when, per(tcap*uint64(unsafe.Sizeof(torrent{}))), tcap, unsafe.Sizeof(torrent{}), per(idx*8),
			per(live*slot), slot, per(freeListed*slot), per((capSlots-live-freeListed)*slot), per(freeEntries*4), per(s.MemoryBytes()))
	}
	report("loaded")
	if _, err := s.Sweep(context.Background(), 50); err != nil {
		t.Fatal(err)
	}
	report("after a sweep")
	if got := float64(s.MemoryBytes()) / peers; got > maxBytesPerPeer {
		t.Errorf("the store holds %.1f bytes per peer after a sweep, more than %d", got, maxBytesPerPeer)
	}
}
