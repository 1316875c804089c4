package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// StoreStats are a shared swarm store's state and calls (the Redis store),
// as the store counts them since it was built.
type StoreStats struct {
	// Degraded is true while the store cannot reach its server and
	// announces and scrapes are refused.
	Degraded bool
	// Bounds are the latency histogram's upper bounds, in seconds.
	Bounds []float64
	Ops    []StoreOpStats
}

// StoreOpStats are one operation's calls.
type StoreOpStats struct {
	Op string
	// Calls reached the server; Errors of them failed (timeouts too).
	Calls, Errors uint64
	// Refused were answered at once without a call (breaker open or not
	// connected); Shed because too many calls were in flight.
	Refused, Shed uint64
	// Sum is the calls' total latency; Counts[i] how many took at most
	// Bounds[i] and more than the bound before (the last: the rest).
	Sum    time.Duration
	Counts []uint64
}

var (
	storeDegradedDesc = prometheus.NewDesc("starling_swarm_store_degraded",
		"1 while the swarm store (Redis) cannot be reached and announces and scrapes are refused, else 0.", nil, nil)
	storeErrorsDesc = prometheus.NewDesc("starling_swarm_store_errors_total",
		"Swarm store calls that failed (Redis error, timeout, lost connection), by operation.", []string{"op"}, nil)
	storeRefusedDesc = prometheus.NewDesc("starling_swarm_store_refused_total",
		"Swarm store calls refused without asking Redis, by operation and reason: breaker (open, or not connected) or shed (too many in flight).", []string{"op", "reason"}, nil)
	storeLatencyDesc = prometheus.NewDesc("starling_swarm_store_latency_seconds",
		"Latency of the swarm store's calls to Redis, by operation.", []string{"op"}, nil)
)

// RegisterSwarmStore adds the metrics of a shared swarm store; stats is
// read at every scrape.
func (r *Registry) RegisterSwarmStore(stats func() StoreStats) {
	r.reg.MustRegister(storeCollector{stats})
}

type storeCollector struct{ stats func() StoreStats }

func (storeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- storeDegradedDesc
	ch <- storeErrorsDesc
	ch <- storeRefusedDesc
	ch <- storeLatencyDesc
}

func (c storeCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.stats()
	deg := 0.0
	if st.Degraded {
		deg = 1
	}
	ch <- prometheus.MustNewConstMetric(storeDegradedDesc, prometheus.GaugeValue, deg)
	for _, o := range st.Ops {
		ch <- prometheus.MustNewConstMetric(storeErrorsDesc, prometheus.CounterValue, float64(o.Errors), o.Op)
		ch <- prometheus.MustNewConstMetric(storeRefusedDesc, prometheus.CounterValue, float64(o.Refused), o.Op, "breaker")
		ch <- prometheus.MustNewConstMetric(storeRefusedDesc, prometheus.CounterValue, float64(o.Shed), o.Op, "shed")
		buckets := make(map[float64]uint64, len(st.Bounds))
		var cum uint64
		for i, b := range st.Bounds {
			if i < len(o.Counts) {
				cum += o.Counts[i]
			}
			buckets[b] = cum
		}
		ch <- prometheus.MustNewConstHistogram(storeLatencyDesc, o.Calls, o.Sum.Seconds(), buckets, o.Op)
	}
}
