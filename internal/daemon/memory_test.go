package daemon

import (
	"io"
	"log/slog"
	"testing"
)

type fakeReleaser struct{ held, released uint64 }

func (f *fakeReleaser) MemoryBytes() uint64   { return f.held }
func (f *fakeReleaser) ReleasedBytes() uint64 { return f.released }

// TestMemoryGiver: memory goes back to the OS after sweeps that dropped
// 32 MiB, or a quarter of what the store holds and 4 MiB; dropped bytes
// add up over sweeps until then.
func TestMemoryGiver(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		name  string
		held  uint64
		drops []uint64 // dropped by each sweep
		gives []bool   // whether the memory went back after each
	}{
		{"big store, big drop", 1000 * mib, []uint64{40 * mib}, []bool{true}},
		{"big store, drops add up", 1000 * mib, []uint64{20 * mib, 20 * mib, 20 * mib}, []bool{false, true, false}},
		{"small store after a flood", 10 * mib, []uint64{5 * mib}, []bool{true}},
		{"small drops of a small store", 10 * mib, []uint64{mib, mib}, []bool{false, false}},
		{"nothing dropped", 0, []uint64{0}, []bool{false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeReleaser{held: tc.held}
			g := newMemoryGiver(f, slog.New(slog.NewTextHandler(io.Discard, nil)))
			for i, d := range tc.drops {
				before := g.last
				f.released += d
				g.afterSweep()
				if gave := g.last != before; gave != tc.gives[i] {
					t.Fatalf("sweep %d (dropped %d MiB): gave back %v, want %v", i, d/mib, gave, tc.gives[i])
				}
			}
		})
	}
	if newMemoryGiver(struct{}{}, nil) != nil {
		t.Fatal("a store that does not count its memory gets a giver")
	}
}
