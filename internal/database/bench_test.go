package database_test

import (
	"fmt"
	"testing"

	"github.com/starling-tracker/starling/internal/access"
	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/swarm"
)

// The same benchmarks on every engine, one line each: a durable key write
// (what an API call waits for) and a batch of completed counts (what the
// batcher writes each second).
func BenchmarkAddKey(b *testing.B) {
	for _, e := range engines(b) {
		b.Run(e.name, func(b *testing.B) {
			loc := e.fresh(b)
			db := openDB(b, loc, nil)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				var k bittorrent.Key
				copy(k[:], fmt.Sprintf("bench%027d", i))
				if err := db.AddKey(b.Context(), access.KeyRecord{Key: k, ValidUntil: int64(i)}); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

func BenchmarkSaveCompleted(b *testing.B) {
	for _, n := range []int{100, 10_000} {
		for _, e := range engines(b) {
			b.Run(fmt.Sprintf("%s/rows=%d", e.name, n), func(b *testing.B) {
				db := openDB(b, e.fresh(b), nil)
				batch := make([]swarm.CompletedCount, n)
				for i := range batch {
					batch[i] = swarm.CompletedCount{InfoHash: hash(i)}
				}
				b.ReportAllocs()
				for b.Loop() {
					for i := range batch {
						batch[i].Completed++
					}
					if err := db.SaveCompleted(b.Context(), batch); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/row")
			})
		}
	}
}
