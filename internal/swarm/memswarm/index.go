package memswarm

import (
	"encoding/binary"
	"math/bits"

	"github.com/starling-tracker/starling/internal/bittorrent"
)

// hashIndex finds a torrent's position in its shard's torrents by info
// hash. It replaces a map[InfoHash]uint32: its slots are 8 bytes, not a
// map slot's 20-byte key and 4-byte value plus control bytes, so the
// index of 10,000 torrents stays in the CPU's caches where the map's
// missed them, and a lookup compares the full hash only in the torrent
// record it then needs anyway. Pointer-free, one allocation per shard.
type hashIndex struct {
	// slots hold entries (see entry: 32 bits of the hash above the
	// torrent's position+1) in linear-probing order; 0 is empty. The
	// length is a power of two, at most 3/4 full.
	slots []uint64
	n     int
	// seed keys the hash: info hashes are chosen by clients, so a fixed
	// hash would let anyone pile torrents into one probe run.
	seed uint64
}

func hashInfo(h *bittorrent.InfoHash, seed uint64) uint64 {
	a := binary.LittleEndian.Uint64(h[0:8])
	b := binary.LittleEndian.Uint64(h[8:16])
	c := uint64(binary.LittleEndian.Uint32(h[16:20]))
	// The seed is in both factors: with a known factor, hashes whose
	// bytes 8..15 made it zero would all collide.
	hi, lo := bits.Mul64(a^seed^0xa0761d6478bd642f, b^bits.RotateLeft64(seed, 32)^0xe7037ed1a0b428db)
	hi, lo = bits.Mul64(hi^lo^c, bits.RotateLeft64(seed, 29)^0x8ebc6af09c88c6e3)
	return hi ^ lo
}

// find returns the slot of h and the torrent's position, or the empty slot
// where h would go and -1.
func (x *hashIndex) find(h *bittorrent.InfoHash, hv uint64, ts []torrent) (slot, pos int) {
	if len(x.slots) == 0 {
		return -1, -1
	}
	mask := len(x.slots) - 1
	tag := uint32(hv)
	for j := int(hv) & mask; ; j = (j + 1) & mask {
		v := x.slots[j]
		if v == 0 {
			return j, -1
		}
		if uint32(v>>32) == tag && ts[uint32(v)-1].hash == *h {
			return j, int(uint32(v) - 1)
		}
	}
}

// get returns the position of h in ts.
func (x *hashIndex) get(h *bittorrent.InfoHash, ts []torrent) (int, bool) {
	_, pos := x.find(h, hashInfo(h, x.seed), ts)
	return pos, pos >= 0
}

// add records that h, not yet indexed, is at position pos of ts.
func (x *hashIndex) add(h *bittorrent.InfoHash, pos int, ts []torrent) {
	if (x.n+1)*4 > len(x.slots)*3 {
		x.grow()
	}
	hv := hashInfo(h, x.seed)
	j, _ := x.find(h, hv, ts)
	x.slots[j] = entry(hv, pos)
	x.n++
}

func (x *hashIndex) grow() {
	old := x.slots
	x.slots = make([]uint64, max(16, 2*len(old)))
	mask := len(x.slots) - 1
	for _, v := range old {
		if v == 0 {
			continue
		}
		j := int(v>>32) & mask
		for x.slots[j] != 0 {
			j = (j + 1) & mask
		}
		x.slots[j] = v
	}
}

// rebuild indexes ts afresh in a table sized for them (empty for none),
// keeping the seed.
func (x *hashIndex) rebuild(ts []torrent) {
	x.slots, x.n = nil, 0
	if len(ts) == 0 {
		return
	}
	size := 16
	for size*3 < len(ts)*4+4 {
		size *= 2
	}
	x.slots = make([]uint64, size)
	for i := range ts {
		x.add(&ts[i].hash, i, ts)
	}
}

// remove forgets h, which is indexed, by backward shifting the entries
// after it (no tombstones).
func (x *hashIndex) remove(h *bittorrent.InfoHash, ts []torrent) {
	j, _ := x.find(h, hashInfo(h, x.seed), ts)
	mask := len(x.slots) - 1
	x.slots[j] = 0
	for k := (j + 1) & mask; x.slots[k] != 0; k = (k + 1) & mask {
		v := x.slots[k]
		home := int(v>>32) & mask
		if (k-home)&mask >= (k-j)&mask {
			x.slots[j], x.slots[k] = v, 0
			j = k
		}
	}
	x.n--
}
