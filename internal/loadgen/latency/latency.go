// Package latency is the load generators' latency histogram.
package latency

import (
	"math/bits"
	"time"
)

// Hist is a log-linear latency histogram: 16 sub-buckets per power of two of
// nanoseconds, so quantiles are within ~6% at any scale, and recording is an
// array increment (each worker owns one; Merge adds them up at the end).
type Hist struct {
	counts [64 * 16]uint64
	n      uint64
	max    time.Duration
}

func bucketOf(d time.Duration) int {
	v := uint64(max(d, 1))
	e := bits.Len64(v) - 1 // v in [2^e, 2^(e+1))
	if e < 4 {
		return int(v)
	}
	sub := (v >> (e - 4)) & 15
	return e*16 + int(sub)
}

// lowerBound is the smallest duration of bucket i.
func lowerBound(i int) time.Duration {
	e, sub := i/16, uint64(i%16)
	if e < 4 {
		return time.Duration(i)
	}
	return time.Duration((16 + sub) << (e - 4))
}

// Record counts one duration.
func (h *Hist) Record(d time.Duration) {
	h.counts[bucketOf(d)]++
	h.n++
	h.max = max(h.max, d)
}

// Merge adds o's counts.
func (h *Hist) Merge(o *Hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// Quantile returns the lower bound of the bucket holding quantile q.
func (h *Hist) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n-1)) + 1
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return lowerBound(i)
		}
	}
	return h.max
}

// Max is the longest duration recorded.
func (h *Hist) Max() time.Duration { return h.max }
