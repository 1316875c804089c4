package metrics

import (
	"sync/atomic"
	"time"
)

// Op names one kind of request whose latency is measured.
type Op int

// The measured operations. Transports observe the time from having read a
// request to having written its answer.
const (
	UDPConnect Op = iota
	UDPAnnounce
	UDPScrape
	HTTPAnnounce
	HTTPScrape
	numOps
)

// NumOps is the number of measured operations.
const NumOps = int(numOps)

// Protocol is the transport of op ("udp" or "http"), its Prometheus label.
func (o Op) Protocol() string {
	if o <= UDPScrape {
		return "udp"
	}
	return "http"
}

// Kind is the request kind of op ("connect", "announce", "scrape").
func (o Op) Kind() string {
	switch o {
	case UDPConnect:
		return "connect"
	case UDPAnnounce, HTTPAnnounce:
		return "announce"
	default:
		return "scrape"
	}
}

// LatencyBuckets are the upper bounds of the histogram buckets in seconds.
// They span a UDP connect answered from cache (a few µs) to an HTTP announce
// stuck behind a slow Redis (seconds). Fixed at compile time so a stripe is
// a flat array and observing is a short scan plus two atomic adds.
var LatencyBuckets = [...]float64{
	5e-6, 10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6,
	1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3,
	1, 2.5, 5,
}

const numBuckets = len(LatencyBuckets)

// bucketBounds are LatencyBuckets in nanoseconds, compared against
// time.Duration without float arithmetic on the hot path.
var bucketBounds = func() (b [numBuckets]time.Duration) {
	for i, s := range LatencyBuckets {
		b[i] = time.Duration(s*1e9 + 0.5)
	}
	return b
}()

// opHist is one operation's histogram within a stripe: non-cumulative
// counts per bucket (the last is +Inf) and the sum of durations in ns.
type opHist struct {
	buckets [numBuckets + 1]atomic.Uint64
	sumNs   atomic.Uint64
}

// LatencyStripe is one worker's set of histograms. Like Stripe, a worker
// keeps the one it was handed, so observing touches no shared cache line.
type LatencyStripe struct {
	h [numOps]opHist
	_ [64]byte // no false sharing with the next stripe
}

// Observe records that one op took d. Negative durations count as zero.
func (s *LatencyStripe) Observe(op Op, d time.Duration) {
	if d < 0 {
		d = 0
	}
	h := &s.h[op]
	i := 0
	for i < numBuckets && d > bucketBounds[i] {
		i++
	}
	h.buckets[i].Add(1)
	h.sumNs.Add(uint64(d))
}

// ObserveSince records that one op started at start and ends now.
func (s *LatencyStripe) ObserveSince(op Op, start time.Time) {
	s.Observe(op, time.Since(start))
}

// Latency is a set of striped latency histograms. Allocate one per process.
type Latency struct {
	stripes []LatencyStripe
	next    atomic.Uint32
}

// NewLatency makes histograms with n stripes (one per transport worker is
// ideal; more workers than stripes share them, which is correct but slower).
func NewLatency(n int) *Latency {
	if n < 1 {
		n = 1
	}
	return &Latency{stripes: make([]LatencyStripe, n)}
}

// Stripe hands out stripes round-robin; a worker keeps the one it gets.
func (l *Latency) Stripe() *LatencyStripe {
	i := l.next.Add(1) - 1
	return &l.stripes[int(i)%len(l.stripes)]
}

// HistogramSnapshot is one operation's histogram summed over all stripes.
type HistogramSnapshot struct {
	// Buckets are cumulative counts for LatencyBuckets, as Prometheus wants.
	Buckets [numBuckets]uint64
	// Count includes observations above the last bucket (+Inf).
	Count uint64
	// Sum is the total observed time in seconds.
	Sum float64
}

// Snapshot sums op's histogram over the stripes. Stripes keep changing while
// they are read, so Sum may be a few observations ahead of or behind the
// buckets; Count is always the sum of the buckets, so +Inf == Count holds.
func (l *Latency) Snapshot(op Op) HistogramSnapshot {
	var raw [numBuckets + 1]uint64
	var sumNs uint64
	for i := range l.stripes {
		h := &l.stripes[i].h[op]
		for b := range raw {
			raw[b] += h.buckets[b].Load()
		}
		sumNs += h.sumNs.Load()
	}
	var out HistogramSnapshot
	var cum uint64
	for b := 0; b < numBuckets; b++ {
		cum += raw[b]
		out.Buckets[b] = cum
	}
	out.Count = cum + raw[numBuckets]
	out.Sum = float64(sumNs) / 1e9
	return out
}
