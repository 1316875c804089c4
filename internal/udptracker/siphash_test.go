package udptracker

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// sipHash24 is SipHash-2-4 of a message of any length, written from the
// paper: the reference sipHash20 is checked against.
func sipHash24(k0, k1 uint64, m []byte) uint64 {
	v0 := k0 ^ 0x736f6d6570736575
	v1 := k1 ^ 0x646f72616e646f6d
	v2 := k0 ^ 0x6c7967656e657261
	v3 := k1 ^ 0x7465646279746573
	n := len(m)
	for len(m) >= 8 {
		w := binary.LittleEndian.Uint64(m)
		v3 ^= w
		v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
		v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
		v0 ^= w
		m = m[8:]
	}
	// The last block holds the remaining bytes and the length's low byte.
	w := uint64(n) << 56
	for i := len(m) - 1; i >= 0; i-- {
		w |= uint64(m[i]) << (8 * uint(i))
	}
	v3 ^= w
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0 ^= w
	v2 ^= 0xff
	for i := 0; i < 4; i++ {
		v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	}
	return v0 ^ v1 ^ v2 ^ v3
}

// Vectors from the SipHash reference implementation (vectors.h): key
// 00 01 .. 0f, message 00 01 .. (n-1).
func TestSipHash24ReferenceVectors(t *testing.T) {
	var k0, k1 uint64 = 0x0706050403020100, 0x0f0e0d0c0b0a0908
	tests := []struct {
		n    int
		want uint64
	}{
		{0, 0x726fdb47dd0e0e31},
		{1, 0x74f839c593dc67fd},
		{2, 0x0d6c8009d9a94f5a},
		{3, 0x85676696d7fb7e2d},
		{15, 0xa129ca6149be45e5},
		{20, 0xbed65cf21aa2ee98},
	}
	msg := make([]byte, 64)
	for i := range msg {
		msg[i] = byte(i)
	}
	for _, tt := range tests {
		if got := sipHash24(k0, k1, msg[:tt.n]); got != tt.want {
			t.Errorf("sipHash24(%d bytes) = %#x, want %#x", tt.n, got, tt.want)
		}
	}
	w := func(i int) uint64 { return binary.LittleEndian.Uint64(msg[i:]) }
	if got := sipHash20(k0, k1, w(0), w(8), binary.LittleEndian.Uint32(msg[16:])); got != 0xbed65cf21aa2ee98 {
		t.Errorf("sipHash20 = %#x, want the reference's 20-byte vector", got)
	}
}

// TestSipHash20: the fixed-length version agrees with the general one on
// random keys and messages.
func TestSipHash20(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var m [20]byte
	for range 1000 {
		k0, k1 := rng.Uint64(), rng.Uint64()
		for i := range m {
			m[i] = byte(rng.Uint32())
		}
		want := sipHash24(k0, k1, m[:])
		got := sipHash20(k0, k1, binary.LittleEndian.Uint64(m[:8]), binary.LittleEndian.Uint64(m[8:16]), binary.LittleEndian.Uint32(m[16:]))
		if got != want {
			t.Fatalf("key %x %x message %x: %#x, want %#x", k0, k1, m, got, want)
		}
	}
}
