package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/starling-tracker/starling/internal/swarm"
)

type fixedTotals struct {
	t   swarm.Totals
	err error
	ctx context.Context
}

func (f *fixedTotals) Totals(ctx context.Context) (swarm.Totals, error) {
	f.ctx = ctx
	return f.t, f.err
}

// scrape fetches /metrics over a real socket and parses it with expfmt.
func scrape(t *testing.T, h http.Handler) (map[string]*dto.MetricFamily, []byte) {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read /metrics: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: status %d: %s", resp.StatusCode, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	return fams, body
}

func labelsOf(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

func find(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels map[string]string) *dto.Metric {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("metric %s missing", name)
	}
next:
	for _, m := range f.GetMetric() {
		got := labelsOf(m)
		for k, v := range labels {
			if got[k] != v {
				continue next
			}
		}
		return m
	}
	t.Fatalf("metric %s%v missing", name, labels)
	return nil
}

func TestRegistryExposition(t *testing.T) {
	counters := NewCounters(3, true)
	for i := 0; i < 3; i++ {
		counters.Stripe().Inc(UDP4Announces)
	}
	counters.Stripe().Inc(TCP6Scrapes)
	counters.Stripe().Inc(UDPBadConnectionIDs)
	counters.Stripe().Inc(HTTPErrors)
	counters.Stripe().Inc(UDPRequests)
	lat := NewLatency(2)
	lat.Stripe().Observe(UDPAnnounce, 30*time.Microsecond)
	lat.Stripe().Observe(UDPAnnounce, 2*time.Second)
	totals := &fixedTotals{t: swarm.Totals{Torrents: 7, Seeders: 5, Leechers: 11, Completed: 13}}
	reg := NewRegistry(counters, lat, totals, nil)

	fams, body := scrape(t, reg)

	problems, err := promlint.New(strings.NewReader(string(body))).Lint()
	if err != nil {
		t.Fatalf("promlint: %v", err)
	}
	for _, p := range problems {
		// The Go and process collectors are client_golang's own; lint ours.
		if strings.HasPrefix(p.Metric, "starling_") {
			t.Errorf("promlint: %s: %s", p.Metric, p.Text)
		}
	}

	counterTests := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"starling_requests_total", map[string]string{"protocol": "udp", "family": "ipv4", "kind": "announce"}, 3},
		{"starling_requests_total", map[string]string{"protocol": "http", "family": "ipv6", "kind": "scrape"}, 1},
		{"starling_requests_total", map[string]string{"protocol": "udp", "family": "ipv6", "kind": "connect"}, 0},
		{"starling_udp_bad_connection_ids_total", nil, 1},
		{"starling_error_responses_total", map[string]string{"protocol": "http"}, 1},
		{"starling_error_responses_total", map[string]string{"protocol": "udp"}, 0},
		{"starling_udp_datagrams_received_total", nil, 1},
	}
	for _, tt := range counterTests {
		t.Run(tt.name, func(t *testing.T) {
			m := find(t, fams, tt.name, tt.labels)
			if got := m.GetCounter().GetValue(); got != tt.want {
				t.Fatalf("%s%v = %g, want %g", tt.name, tt.labels, got, tt.want)
			}
		})
	}
	if n := len(fams["starling_requests_total"].GetMetric()); n != len(requestSeries) {
		t.Errorf("starling_requests_total has %d series, want %d", n, len(requestSeries))
	}

	gaugeTests := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"starling_torrents", nil, 7},
		{"starling_peers", map[string]string{"role": "seeder"}, 5},
		{"starling_peers", map[string]string{"role": "leecher"}, 11},
		{"starling_completed_downloads", nil, 13},
	}
	for _, tt := range gaugeTests {
		t.Run(tt.name, func(t *testing.T) {
			if got := find(t, fams, tt.name, tt.labels).GetGauge().GetValue(); got != tt.want {
				t.Fatalf("%s%v = %g, want %g", tt.name, tt.labels, got, tt.want)
			}
		})
	}
	if totals.ctx == nil || totals.ctx == context.Background() {
		t.Error("totals were not queried with the scrape's context")
	}

	h := find(t, fams, "starling_request_duration_seconds", map[string]string{"protocol": "udp", "kind": "announce"}).GetHistogram()
	if h.GetSampleCount() != 2 {
		t.Errorf("histogram count %d, want 2", h.GetSampleCount())
	}
	if got := h.GetSampleSum(); got < 2.00002 || got > 2.00004 {
		t.Errorf("histogram sum %g, want 2.00003", got)
	}
	for _, b := range h.GetBucket() {
		var want uint64
		switch {
		case b.GetUpperBound() >= 2.5:
			want = 2
		case b.GetUpperBound() >= 50e-6:
			want = 1
		}
		if b.GetCumulativeCount() != want {
			t.Errorf("bucket le=%g: %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
		}
	}
	if n := len(fams["starling_request_duration_seconds"].GetMetric()); n != NumOps {
		t.Errorf("%d latency series, want %d", n, NumOps)
	}
}

// TestRegistryTotalsError checks that a failing store does not take the
// whole scrape down: the other metrics are still served.
func TestRegistryTotalsError(t *testing.T) {
	reg := NewRegistry(NewCounters(1, true), nil, &fixedTotals{err: errors.New("redis down")}, nil)
	fams, _ := scrape(t, reg)
	if _, ok := fams["starling_torrents"]; ok {
		t.Error("starling_torrents served although the store failed")
	}
	if _, ok := fams["starling_requests_total"]; !ok {
		t.Error("starling_requests_total missing after a totals failure")
	}
}

func TestRegistryWithoutSources(t *testing.T) {
	fams, _ := scrape(t, NewRegistry(nil, nil, nil, nil))
	for name := range fams {
		if strings.HasPrefix(name, "starling_") {
			t.Errorf("%s served without a source", name)
		}
	}
	if _, ok := fams["go_goroutines"]; !ok {
		t.Error("go runtime metrics missing")
	}
}

// TestGrafanaDashboard checks that every starling_ metric the dashboard in
// contrib/grafana queries is one the registry serves, so renaming a metric
// without updating the dashboard fails here.
func TestGrafanaDashboard(t *testing.T) {
	raw, err := os.ReadFile("../../contrib/grafana/starling.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard is not JSON: %v", err)
	}
	lat := NewLatency(1)
	reg := NewRegistry(NewCounters(1, true), lat, &fixedTotals{}, nil)
	// The Redis store's metrics, served when the daemon runs one.
	reg.RegisterSwarmStore(func() StoreStats {
		return StoreStats{Bounds: []float64{0.001}, Ops: []StoreOpStats{{Op: "announce", Counts: []uint64{0, 0}}}}
	})
	fams, _ := scrape(t, reg)
	name := regexp.MustCompile(`\b(starling_[a-z0-9_]+|process_[a-z0-9_]+|go_[a-z0-9_]+)`)
	used := 0
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, m := range name.FindAllString(tg.Expr, -1) {
				used++
				base := m
				if _, ok := fams[m]; !ok {
					for _, suffix := range []string{"_bucket", "_sum", "_count"} {
						base = strings.TrimSuffix(base, suffix)
					}
				}
				if _, ok := fams[base]; !ok {
					t.Errorf("panel %q queries %s, which /metrics does not serve", p.Title, m)
				}
			}
		}
	}
	if used < 10 {
		t.Fatalf("dashboard queries only %d metrics", used)
	}
}

// BenchmarkGather is the cost of one scrape of the registry, all stripes read.
func BenchmarkGather(b *testing.B) {
	b.ReportAllocs()
	counters := NewCounters(16, true)
	lat := NewLatency(16)
	reg := NewRegistry(counters, lat, &fixedTotals{}, nil)
	ctx := context.Background()
	for b.Loop() {
		if _, err := reg.Gather(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
