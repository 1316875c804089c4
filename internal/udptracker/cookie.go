package udptracker

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"math/bits"
	"net/netip"
	"sync"
	"sync/atomic"
)

// cookies mints and checks connection ids without keeping any state. An id
// is the time it expires (unix seconds, its low expBits bits, in the high
// bits of the id) and a SipHash of the client's IP and the full expiry
// time under a random per-process key (the other macBits bits). The check
// rebuilds the full expiry time from the clock and the id's bits (the
// lifetime is at most a day, well inside their range) and recomputes the
// MAC: one MAC per check (instead of one per accepted time bucket) keeps
// verification at ~20 ns. With 46 bits of MAC a blind guess succeeds once
// in 7*10^13 tries, two years of guessing at a million packets a second
// for one address; a 32-bit time field (aquatic's layout) would leave 32
// bits, half a day at 100,000 packets a second.
//
// The port is left out on purpose: a client behind NAT may send from a new
// port, and the id proves only that the client can receive at this IP.
type cookies struct {
	k0, k1   uint64
	lifetime uint32
}

// processKey is drawn once per process, so every listener (and a listener
// rebuilt on reload) accepts the ids the others minted; a restart
// invalidates them all, and clients simply connect again. An upgrade
// hands it to the new process (ConnectionIDKey, SetConnectionIDKey), so
// the ids minted before it stay valid after it.
var processKey = sync.OnceValues(func() ([16]byte, error) {
	if k := inheritedKey.Load(); k != nil {
		return *k, nil
	}
	var key [16]byte
	_, err := rand.Read(key[:])
	return key, err
})

var inheritedKey atomic.Pointer[[16]byte]

// ConnectionIDKey is the key this process's connection ids are made with.
func ConnectionIDKey() ([16]byte, error) { return processKey() }

// SetConnectionIDKey makes this process use key (the one of the process
// it takes over from); it must be called before the first server is built.
func SetConnectionIDKey(key [16]byte) { inheritedKey.Store(&key) }

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

// The id's layout: expBits of expiry time above macBits of MAC.
const (
	expBits = 18
	macBits = 64 - expBits
	expMask = 1<<expBits - 1
	macMask = 1<<macBits - 1
)

// mint makes the connection id for ip at now (unix seconds).
func (c *cookies) mint(ip netip.Addr, now int64) uint64 {
	exp := uint32(now) + c.lifetime
	return uint64(exp&expMask)<<macBits | c.mac(ip, exp)&macMask
}

// valid reports whether id was minted for ip and has not expired at now.
func (c *cookies) valid(id uint64, ip netip.Addr, now int64) bool {
	// Seconds until the expiry time the id names, modulo its range: an
	// expired id gives a value near the range's end, far above any
	// lifetime, and one minted a whole range ago names an expiry time
	// other than the one its MAC covers.
	left := (uint32(id>>macBits) - uint32(now)) & expMask
	if left > c.lifetime {
		return false
	}
	return id&macMask == c.mac(ip, uint32(now)+left)&macMask
}

func (c *cookies) mac(ip netip.Addr, exp uint32) uint64 {
	// The message is the 16-byte address and exp, big-endian, as bytes.
	a := ip.As16()
	return sipHash20(c.k0, c.k1, binary.LittleEndian.Uint64(a[:8]), binary.LittleEndian.Uint64(a[8:]), bits.ReverseBytes32(exp))
}
