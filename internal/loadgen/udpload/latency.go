package udpload

import (
	"fmt"
	"io"
	"math/bits"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Latency is the round trip of the requests answered in the measured
// window: sent in it and answered before it closed. A request's send time
// is taken just before the system call that sends it (in the batched mode,
// the batch's), its answer's just after the receive that returned it, so
// the figures include the generator's own system calls and wake-ups.
type Latency struct {
	// Count is how many answers were timed.
	Count uint64
	// Percentiles are a histogram bucket's midpoint (1 µs wide below
	// 256 µs, then under 0.8 % of the value wide), never above Max.
	P50, P90, P99, P999 time.Duration
	Max, Mean           time.Duration
}

// String is "p50 41 µs, p90 .., p99 .., p99.9 .., max .. (N answers)".
func (l Latency) String() string {
	if l.Count == 0 {
		return "no answers timed"
	}
	return fmt.Sprintf("p50 %s, p90 %s, p99 %s, p99.9 %s, max %s (%d answers)",
		fmtLatency(l.P50), fmtLatency(l.P90), fmtLatency(l.P99), fmtLatency(l.P999), fmtLatency(l.Max), l.Count)
}

// fmtLatency prints d with three significant digits or whole microseconds.
func fmtLatency(d time.Duration) string {
	us := float64(d) / 1e3
	switch {
	case us < 1000:
		return fmt.Sprintf("%.0f µs", us)
	case us < 10_000:
		return fmt.Sprintf("%.2f ms", us/1e3)
	case us < 1e6:
		return fmt.Sprintf("%.1f ms", us/1e3)
	default:
		return fmt.Sprintf("%.2f s", us/1e6)
	}
}

// The histogram is log-linear over microseconds: values below 256 µs get a
// bucket each; above, each power of two is cut into 128 buckets, so a
// bucket is less than 1/128 of its values wide. The last bucket takes
// everything from 2^24 µs (16.8 s) up.
const (
	histLinear  = 128 // buckets 0..127: 0..127 µs, 1 µs each
	histSub     = 128 // buckets per power of two from 128 µs up
	histOctaves = 17  // 2^7 .. 2^24 µs
	histBuckets = histLinear + histOctaves*histSub
)

// histogram counts round trips in fixed arrays: recording allocates
// nothing and costs a few instructions. One socket's goroutine writes it;
// it is read after the sockets stopped.
type histogram struct {
	counts [histBuckets]uint64
	n      uint64
	sum    int64 // nanoseconds
	max    int64 // nanoseconds
}

// histBucket is the bucket of a round trip of ns nanoseconds.
func histBucket(ns int64) int {
	if ns < 0 {
		ns = 0
	}
	us := uint64(ns) / 1000
	if us < histLinear {
		return int(us)
	}
	e := bits.Len64(us) - 8 // us>>e is 128..255
	i := histLinear + e*histSub + int(us>>e) - histSub
	return min(i, histBuckets-1)
}

// histBounds is bucket i's lowest value and width, in microseconds.
func histBounds(i int) (low, width uint64) {
	if i < histLinear {
		return uint64(i), 1
	}
	e := (i - histLinear) / histSub
	m := uint64(histSub + (i-histLinear)%histSub)
	return m << e, 1 << e
}

func (h *histogram) record(ns int64) {
	h.counts[histBucket(ns)]++
	h.n++
	h.sum += ns
	if ns > h.max {
		h.max = ns
	}
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.max = max(h.max, o.max)
}

// quantile is the midpoint of the bucket that holds the q-th value (0 <
// q <= 1), at most the largest value seen.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.999999)
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		if seen += c; seen >= rank {
			low, width := histBounds(i)
			mid := time.Duration(low*1000 + width*500)
			return min(mid, time.Duration(h.max))
		}
	}
	return time.Duration(h.max)
}

func (h *histogram) latency() Latency {
	if h.n == 0 {
		return Latency{}
	}
	return Latency{
		Count: h.n,
		P50:   h.quantile(0.50), P90: h.quantile(0.90), P99: h.quantile(0.99), P999: h.quantile(0.999),
		Max: time.Duration(h.max), Mean: time.Duration(h.sum / int64(h.n)),
	}
}

// window is the measured window as the sockets see it, in nanoseconds
// since epoch (monotonic): an answer is timed when its request was sent at
// or after from and it came back at or before to. Run moves from when the
// warm-up ends and to when the window closes.
type window struct {
	epoch    time.Time
	from, to atomic.Int64
	// paced is when a paced run's schedule starts (Config.Rate), set
	// before the sockets start.
	paced int64
	// slow, when set, lists the timed answers slower than its bound
	// (Config.SlowLog).
	slow *slowLog
}

// slowLog writes a line "SENT LATENCY" (the request's send time in unix
// microseconds, its round trip in microseconds) for each timed answer
// slower than over, so that two generators run side by side can tell the
// host's stalls, which delay both servers' answers in the same
// milliseconds, from one server's own.
type slowLog struct {
	over    int64 // nanoseconds
	epochUs int64 // the window's epoch, unix microseconds
	mu      sync.Mutex
	w       io.Writer
	buf     []byte
	err     error
}

func newSlowLog(w io.Writer, over time.Duration, epoch time.Time) *slowLog {
	return &slowLog{over: int64(over), epochUs: epoch.UnixMicro(), w: w}
}

// timed records the round trip of an answer to a request sent at at (both
// in nanoseconds since the window's epoch) in h, and in the slow log.
func (w *window) timed(h *histogram, at, now int64) {
	h.record(now - at)
	if l := w.slow; l != nil && now-at > l.over {
		l.add(at, now-at)
	}
}

func (l *slowLog) add(at, rtt int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return
	}
	l.buf = strconv.AppendInt(l.buf[:0], l.epochUs+at/1000, 10)
	l.buf = append(l.buf, ' ')
	l.buf = strconv.AppendInt(l.buf, rtt/1000, 10)
	l.buf = append(l.buf, '\n')
	_, l.err = l.w.Write(l.buf)
}

// now is the time since the run's epoch, from the monotonic clock.
func (w *window) now() int64 { return int64(time.Since(w.epoch)) }

// sendSlot is one request in flight: its transaction id and send time.
type sendSlot struct {
	at   int64 // nanoseconds since the window's epoch
	tx   uint32
	live bool
}

// inflightRing keeps the send time of each request in flight, indexed by
// transaction id (ids are consecutive per socket), so an answer finds its
// request's send time without a map or an allocation.
type inflightRing struct {
	slots []sendSlot
	mask  uint32
}

// newInflightRing sizes the ring for window requests in flight, with room
// to spare for ids left behind by answers that never came.
func newInflightRing(window int) inflightRing {
	n := 64
	for n < 2*window {
		n *= 2
	}
	return inflightRing{slots: make([]sendSlot, n), mask: uint32(n - 1)}
}

// sent records request tx as sent at at. It reports whether the slot still
// held a request in flight: one sent a whole ring of ids ago and never
// answered, which the caller counts as lost.
func (r *inflightRing) sent(tx uint32, at int64) (evicted bool) {
	s := &r.slots[tx&r.mask]
	evicted = s.live
	*s = sendSlot{at: at, tx: tx, live: true}
	return evicted
}

// answered releases request tx and returns its send time; ok is false for
// an answer to a request not in flight (given up on, or never sent).
func (r *inflightRing) answered(tx uint32) (at int64, ok bool) {
	s := &r.slots[tx&r.mask]
	if !s.live || s.tx != tx {
		return 0, false
	}
	s.live = false
	return s.at, true
}

// forget releases every request in flight: they were counted as lost, and
// late answers to them are not timed.
func (r *inflightRing) forget() { clear(r.slots) }
