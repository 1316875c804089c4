package wsload

import (
	"math/bits"
	"time"
)

// hist (as httpload's) is a log-linear latency histogram: 16 sub-buckets per power of two of
// nanoseconds, so quantiles are within ~6% at any scale, and recording is an
// array increment (each worker owns one; Merge adds them up at the end).
type hist struct {
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

func (h *hist) record(d time.Duration) {
	h.counts[bucketOf(d)]++
	h.n++
	h.max = max(h.max, d)
}

func (h *hist) merge(o *hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// quantile returns the lower bound of the bucket holding quantile q.
func (h *hist) quantile(q float64) time.Duration {
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
