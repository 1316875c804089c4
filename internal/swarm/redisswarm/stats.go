package redisswarm

import (
	"sync/atomic"
	"time"
)

type op int

const (
	opAnnounce op = iota
	opScrape
	opTorrent
	opTorrents
	opTotals
	opSetCompleted
	opSweep
	opRelay
	opProbe
	numOps
)

var opNames = [numOps]string{"announce", "scrape", "torrent", "torrents", "totals", "set_completed", "sweep", "relay", "probe"}

// Buckets are the upper bounds, in seconds, of the latency histogram.
var Buckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5}

type opMetrics struct {
	calls   atomic.Uint64
	errors  atomic.Uint64
	refused atomic.Uint64 // breaker open or not connected
	shed    atomic.Uint64 // too many in flight
	sumNS   atomic.Uint64
	buckets [12]atomic.Uint64 // per bound of Buckets, and +Inf
}

func (m *opMetrics) observe(d time.Duration, err error) {
	m.calls.Add(1)
	if err != nil {
		m.errors.Add(1)
	}
	m.sumNS.Add(uint64(d))
	sec := d.Seconds()
	i := 0
	for i < len(Buckets) && sec > Buckets[i] {
		i++
	}
	m.buckets[i].Add(1)
}

// OpStats are one operation's counts since the store was built.
type OpStats struct {
	Op string
	// Calls reached Redis; Errors of them failed (including deadlines).
	Calls, Errors uint64
	// Refused were answered ErrUnavailable without a call (breaker open,
	// not connected); Shed because too many calls were in flight.
	Refused, Shed uint64
	// Sum is the total latency of the calls; Counts[i] how many took at
	// most Buckets[i] (not cumulative), the last one the rest.
	Sum    time.Duration
	Counts []uint64
}

// Stats is what the daemon exports as metrics.
type Stats struct {
	Degraded bool
	Ops      []OpStats
}

// Stats reads the counters.
func (s *Store) Stats() Stats {
	st := Stats{Degraded: s.Degraded(), Ops: make([]OpStats, numOps)}
	for i := range st.Ops {
		m := &s.metrics[i]
		o := OpStats{Op: opNames[i], Calls: m.calls.Load(), Errors: m.errors.Load(), Refused: m.refused.Load(),
			Shed: m.shed.Load(), Sum: time.Duration(m.sumNS.Load()), Counts: make([]uint64, len(Buckets)+1)}
		for j := range o.Counts {
			o.Counts[j] = m.buckets[j].Load()
		}
		st.Ops[i] = o
	}
	return st
}
