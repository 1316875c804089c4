package fullscrape_test

import (
	"context"
	"testing"

	"github.com/starling-tracker/starling/internal/fullscrape"
	"github.com/starling-tracker/starling/internal/swarm"
	"github.com/starling-tracker/starling/internal/swarm/memswarm"
)

// BenchmarkBuild is one full-scrape build (encoding and gzip) of a million
// torrents: from a plain sorted slice (the encoder alone, counts up to
// 1,000 seeders, 5,000 leechers and 2^32 completed) and from the memory
// store holding them (counts as loaded at start-up: completed only).
//
//	go test -run '^$' -bench Build -benchtime 5x ./internal/fullscrape/
func BenchmarkBuild(b *testing.B) {
	const n = 1_000_000
	ts := randomTorrents(n, 42)
	mem := memswarm.New(swarm.Options{})
	counts := make([]swarm.CompletedCount, len(ts))
	for i := range ts {
		counts[i] = swarm.CompletedCount{InfoHash: ts[i].InfoHash, Completed: max(1, ts[i].Completed)}
	}
	if err := mem.SetCompleted(context.Background(), counts); err != nil {
		b.Fatal(err)
	}
	for _, bb := range []struct {
		name string
		src  fullscrape.Source
	}{
		{"slice-1M", &sliceSource{torrents: ts}},
		{"memswarm-1M", mem},
	} {
		b.Run(bb.name, func(b *testing.B) {
			// Every Get rebuilds (the interval is a nanosecond), each
			// after the first sized by the one before, as in service.
			fs := fullscrape.New(bb.src, fullscrape.Config{Interval: 1})
			if _, err := fs.Get(context.Background()); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			var body *fullscrape.Body
			for b.Loop() {
				var err error
				if body, err = fs.Get(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(body.Plain)), "plain-bytes")
			b.ReportMetric(float64(len(body.Gzip)), "gzip-bytes")
			b.ReportMetric(float64(body.Torrents), "torrents")
		})
	}
}
