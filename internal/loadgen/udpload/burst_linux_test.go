//go:build linux

package udpload

import (
	"strings"
	"testing"
)

func TestParseUDPTable(t *testing.T) {
	const table = `   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  10: 0100007F:423B 00000000:0000 07 00000000:00000D00 00:00000000 00000000     0        0 200 2 0000000000000000 5
  11: 0100007F:423B 00000000:0000 07 00000000:00000100 00:00000000 00000000     0        0 100 2 0000000000000000 1
  12: 0200007F:9C41 0100007F:423B 01 00000000:00000340 00:00000000 00000000     0        0 300 2 0000000000000000 7
  13: 0100007F:1F90 00000000:0000 07 00000000:00000400 00:00000000 00000000     0        0 400 2 0000000000000000 9
`
	got, err := parseUDPTable(strings.NewReader(table), 0x423B, map[uint64]bool{300: true})
	if err != nil {
		t.Fatal(err)
	}
	// Server sockets ordered by inode; ours and other ports apart.
	if len(got.serverQ) != 2 || got.serverQ[0] != 0x100 || got.serverQ[1] != 0xD00 || got.serverDrops != 6 ||
		got.clientQueued != 0x340 || got.clientDrops != 7 || got.serverQueued() != 0xE00 {
		t.Fatalf("%+v", got)
	}
	if _, err := parseUDPTable(strings.NewReader("header\n 1: a b c d e f g h x j k l\n"), 1, nil); err == nil {
		t.Fatal("bad line accepted")
	}
}

func TestBurstSummary(t *testing.T) {
	for _, tt := range []struct {
		name          string
		rates         []float64
		invalid       []bool
		median        float64
		valid, counts int
	}{
		{"first burst left out", []float64{1, 10, 30, 20}, nil, 20, 3, 3},
		{"even count", []float64{1, 10, 20}, nil, 15, 2, 2},
		{"invalid left out", []float64{1, 10, 20, 99}, []bool{false, false, false, true}, 15, 2, 3},
		{"one burst counts", []float64{7}, nil, 7, 1, 1},
		{"none valid", []float64{1, 2}, []bool{false, true}, 0, 0, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rs := make([]BurstResult, len(tt.rates))
			for i, r := range tt.rates {
				rs[i].Rate = r
				if tt.invalid != nil && tt.invalid[i] {
					rs[i].Invalid = "dropped"
				}
			}
			m, v, c := BurstSummary(rs)
			if m != tt.median || v != tt.valid || c != tt.counts {
				t.Fatalf("got %v %d %d", m, v, c)
			}
		})
	}
}
