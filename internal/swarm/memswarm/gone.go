package memswarm

import (
	"github.com/starling-tracker/starling/internal/bittorrent"
)

// goneSlots is the size of a shard's memory of counted peers that are no
// longer stored: 2,048 fingerprints of 8 bytes, 4 MiB over 256 shards.
const goneSlots = 1 << 11

// gone remembers the peers whose completion a swarm counted but which it
// no longer stores: peers that stopped, and completions announced with
// port 0 (never stored). A stopped peer that comes back is stored as
// counted again, so a client that stops and restarts is not counted twice
// for one download, and a retried port-0 completion is not counted again.
// (A peer that expires is forgotten, as it always was.) It is a fixed table of fingerprints of
// (info hash, address), pointer-free; a full probe run overwrites its
// oldest-placed entry, so under a flood the memory is lost, not grown (at
// worst a completion counts twice, as without it).
type gone struct {
	slots []uint64 // fingerprint | 1; 0 is empty. Made on first use.
	n     int      // entries held, so that an empty table costs no hashing
	next  uint32   // which slot of a full run is overwritten next
}

// goneProbe is how many slots a fingerprint may be in.
const goneProbe = 8

func goneKey[A addr](h *bittorrent.InfoHash, ip *A, port uint16, seed uint64) uint64 {
	return (hashInfo(h, seed) ^ hashPeer(ip, port, seed^0x9e3779b97f4a7c15)) | 1
}

func (g *gone) add(key uint64) {
	if g.slots == nil {
		g.slots = make([]uint64, goneSlots)
	}
	base := int(key>>32) & (goneSlots - 1)
	for k := range goneProbe {
		s := &g.slots[(base+k)&(goneSlots-1)]
		if *s == key {
			return
		}
		if *s == 0 {
			*s = key
			g.n++
			return
		}
	}
	g.next++
	g.slots[(base+int(g.next%goneProbe))&(goneSlots-1)] = key
}

// take reports whether key is remembered, and forgets it.
func (g *gone) take(key uint64) bool {
	if g.slots == nil {
		return false
	}
	base := int(key>>32) & (goneSlots - 1)
	for k := range goneProbe {
		if s := &g.slots[(base+k)&(goneSlots-1)]; *s == key {
			*s = 0
			g.n--
			return true
		}
	}
	return false
}
