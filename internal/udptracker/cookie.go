package udptracker

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"math/bits"
	"net/netip"
	"sync"
)

// cookies mints and checks connection ids without keeping any state. An id
// is the time it expires (unix seconds, high 32 bits) and a SipHash of the
// client's IP and that time under a random per-process key (low 32 bits),
// the layout aquatic uses. One MAC per check (instead of one per accepted
// time bucket) keeps verification at ~20 ns; 32 bits of MAC make a blind
// guess succeed once in 4 billion tries, and guesses are rate limited.
//
// The port is left out on purpose: a client behind NAT may send from a new
// port, and the id proves only that the client can receive at this IP.
type cookies struct {
	k0, k1   uint64
	lifetime uint32
}

// processKey is drawn once per process, so every listener (and a listener
// rebuilt on reload) accepts the ids the others minted; a restart
// invalidates them all, and clients simply connect again.
var processKey = sync.OnceValues(func() ([16]byte, error) {
	var key [16]byte
	_, err := rand.Read(key[:])
	return key, err
})

func newCookies(lifetime uint32) (*cookies, error) {
	key, err := processKey()
	if err != nil {
		return nil, fmt.Errorf("connection id key: %w", err)
	}
	return &cookies{
		k0:       binary.LittleEndian.Uint64(key[:8]),
		k1:       binary.LittleEndian.Uint64(key[8:]),
		lifetime: lifetime,
	}, nil
}

// mint makes the connection id for ip at now (unix seconds).
func (c *cookies) mint(ip netip.Addr, now int64) uint64 {
	exp := uint32(now) + c.lifetime
	return uint64(exp)<<32 | uint64(c.mac(ip, exp))
}

// valid reports whether id was minted for ip and has not expired at now.
func (c *cookies) valid(id uint64, ip netip.Addr, now int64) bool {
	exp := uint32(id >> 32)
	left := exp - uint32(now) // wraps when expired
	if left > c.lifetime {
		return false
	}
	return uint32(id) == c.mac(ip, exp)
}

func (c *cookies) mac(ip netip.Addr, exp uint32) uint32 {
	// The message is the 16-byte address and exp, big-endian, as bytes.
	a := ip.As16()
	return uint32(sipHash20(c.k0, c.k1, binary.LittleEndian.Uint64(a[:8]), binary.LittleEndian.Uint64(a[8:]), bits.ReverseBytes32(exp)))
}
