package metrics

import (
	"bytes"
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/starling-tracker/starling/internal/fullscrape"
	"github.com/starling-tracker/starling/internal/swarm"
)

type twoTorrents struct{}

func (twoTorrents) Torrents(_ context.Context, offset, _ int) ([]swarm.TorrentSummary, error) {
	if offset > 0 {
		return nil, nil
	}
	return []swarm.TorrentSummary{{InfoHash: [20]byte{1}}, {InfoHash: [20]byte{2}}}, nil
}

func TestFullScrapeMetrics(t *testing.T) {
	b := fullscrape.New(twoTorrents{}, fullscrape.Config{})
	r := NewRegistry(nil, nil, nil, nil)
	r.RegisterFullScrape(b)
	for range 3 {
		if _, err := b.Get(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	fams, body := scrape(t, r)
	want := map[string]float64{
		"starling_full_scrape_builds_total":         1,
		"starling_full_scrape_build_failures_total": 0,
		"starling_full_scrape_torrents":             2,
	}
	for name, v := range want {
		f, ok := fams[name]
		if !ok {
			t.Fatalf("%s missing:\n%s", name, body)
		}
		m := f.GetMetric()[0]
		got := m.GetCounter().GetValue() + m.GetGauge().GetValue()
		if got != v {
			t.Fatalf("%s = %v, want %v", name, got, v)
		}
	}
	if len(fams["starling_full_scrape_bytes"].GetMetric()) != 2 {
		t.Fatal("starling_full_scrape_bytes should have identity and gzip")
	}
	problems, err := promlint.New(bytes.NewReader(body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if bytes.Contains([]byte(p.Metric), []byte("full_scrape")) {
			t.Errorf("lint %s: %s", p.Metric, p.Text)
		}
	}
}
