package udptracker

import "testing"

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
}
