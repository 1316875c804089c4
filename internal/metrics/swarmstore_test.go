package metrics

import (
	"testing"
	"time"
)

func TestSwarmStoreMetrics(t *testing.T) {
	tests := []struct {
		name     string
		stats    StoreStats
		degraded float64
		errors   float64
		count    uint64
		le1ms    uint64
	}{
		{"healthy", StoreStats{Bounds: []float64{0.001, 0.01}, Ops: []StoreOpStats{
			{Op: "announce", Calls: 5, Errors: 1, Sum: 6 * time.Millisecond, Counts: []uint64{3, 1, 1}}}}, 0, 1, 5, 3},
		{"degraded", StoreStats{Degraded: true, Bounds: []float64{0.001}, Ops: []StoreOpStats{
			{Op: "announce", Refused: 7, Counts: []uint64{0, 0}}}}, 1, 0, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg := NewRegistry(nil, nil, nil, nil)
			reg.RegisterSwarmStore(func() StoreStats { return tc.stats })
			fams, _ := scrape(t, reg)
			if g := fams["starling_swarm_store_degraded"].GetMetric()[0].GetGauge().GetValue(); g != tc.degraded {
				t.Errorf("degraded %v, want %v", g, tc.degraded)
			}
			if e := fams["starling_swarm_store_errors_total"].GetMetric()[0].GetCounter().GetValue(); e != tc.errors {
				t.Errorf("errors %v, want %v", e, tc.errors)
			}
			h := fams["starling_swarm_store_latency_seconds"].GetMetric()[0].GetHistogram()
			if h.GetSampleCount() != tc.count || h.GetBucket()[0].GetCumulativeCount() != tc.le1ms {
				t.Errorf("histogram %v", h)
			}
			if _, ok := fams["starling_swarm_store_refused_total"]; !ok {
				t.Error("no starling_swarm_store_refused_total")
			}
		})
	}
}
