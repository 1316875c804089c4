package udpload

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestHistBuckets: every value falls in a bucket whose bounds hold it,
// buckets grow with the value, are 1 µs wide below 256 µs and at most
// 1/128 of their values wide above.
func TestHistBuckets(t *testing.T) {
	prev := 0
	for us := uint64(0); us < 1<<24; us = us + 1 + us/300 {
		ns := int64(us*1000 + 999)
		i := histBucket(ns)
		if i < prev {
			t.Fatalf("%d µs: bucket %d after bucket %d", us, i, prev)
		}
		prev = i
		low, width := histBounds(i)
		if us < low || us >= low+width {
			t.Fatalf("%d µs in bucket %d [%d, %d)", us, i, low, low+width)
		}
		if us < 256 && width != 1 {
			t.Fatalf("%d µs: bucket %d µs wide", us, width)
		}
		if float64(width) > float64(low)/128 && width > 1 {
			t.Fatalf("%d µs: bucket [%d, +%d) wider than 1/128", us, low, width)
		}
	}
	for _, ns := range []int64{-5, 0, 999} {
		if i := histBucket(ns); i != 0 {
			t.Errorf("%d ns in bucket %d", ns, i)
		}
	}
	for _, d := range []time.Duration{17 * time.Second, time.Hour, math.MaxInt64} {
		if i := histBucket(int64(d)); i != histBuckets-1 {
			t.Errorf("%v in bucket %d, want the last, %d", d, i, histBuckets-1)
		}
	}
}

// TestHistQuantiles compares the histogram's quantiles with the exact ones
// of samples spread over several decades.
func TestHistQuantiles(t *testing.T) {
	for _, tc := range []struct {
		name string
		draw func(*rand.Rand) int64
	}{
		{"uniform 0-1ms", func(r *rand.Rand) int64 { return r.Int64N(int64(time.Millisecond)) }},
		{"log-uniform 10µs-10s", func(r *rand.Rand) int64 { return int64(1e4 * math.Pow(10, 6*r.Float64())) }},
		{"constant 41µs", func(*rand.Rand) int64 { return 41_300 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			var h histogram
			xs := make([]int64, 100_000)
			for i := range xs {
				xs[i] = tc.draw(r)
				h.record(xs[i])
			}
			slices.Sort(xs)
			l := h.latency()
			if l.Count != uint64(len(xs)) || l.Max != time.Duration(xs[len(xs)-1]) {
				t.Fatalf("count %d max %v, want %d %v", l.Count, l.Max, len(xs), time.Duration(xs[len(xs)-1]))
			}
			for _, q := range []struct {
				p   float64
				got time.Duration
			}{{0.5, l.P50}, {0.9, l.P90}, {0.99, l.P99}, {0.999, l.P999}} {
				want := float64(xs[int(math.Ceil(q.p*float64(len(xs))))-1])
				// Half a bucket: 0.5 µs, or 1/256 of the value.
				if d := math.Abs(float64(q.got) - want); d > max(500, want/256)+1 {
					t.Errorf("p%g = %v, exact %v", 100*q.p, q.got, time.Duration(want))
				}
			}
			if !(l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.P999 && l.P999 <= l.Max) {
				t.Errorf("quantiles out of order: %+v", l)
			}
		})
	}
	var h histogram
	if l := h.latency(); l != (Latency{}) || l.String() != "no answers timed" {
		t.Fatalf("empty histogram: %+v %q", l, l.String())
	}
}

func TestHistMerge(t *testing.T) {
	var a, b, all histogram
	for i := int64(0); i < 1000; i++ {
		v := i * 7919 % 5_000_000
		all.record(v)
		if i%3 == 0 {
			a.record(v)
		} else {
			b.record(v)
		}
	}
	a.merge(&b)
	if a != all {
		t.Fatalf("merged %+v, want %+v", a.latency(), all.latency())
	}
}

// TestTimingAllocatesNothing: sending, answering and recording a round
// trip are on the generator's hot path.
func TestTimingAllocatesNothing(t *testing.T) {
	ring := newInflightRing(16)
	var h histogram
	tx := uint32(0)
	if n := testing.AllocsPerRun(1000, func() {
		tx++
		ring.sent(tx, int64(tx)*1000)
		if at, ok := ring.answered(tx); ok {
			h.record(int64(tx)*1000 + 41_000 - at)
		}
	}); n != 0 {
		t.Fatalf("%v allocations per request", n)
	}
}

// TestInflightRing: an answer releases its request once; an answer to a
// request forgotten, never sent, or whose slot was reused is not timed; a
// reused slot that was still in flight is reported.
func TestInflightRing(t *testing.T) {
	r := newInflightRing(16)
	if len(r.slots) != 64 {
		t.Fatalf("ring of %d for a window of 16", len(r.slots))
	}
	if big := newInflightRing(100); len(big.slots) != 256 {
		t.Fatalf("ring of %d for a window of 100", len(big.slots))
	}
	for tx := uint32(1); tx <= 3; tx++ {
		if r.sent(tx, int64(tx)) {
			t.Fatalf("slot of %d was taken", tx)
		}
	}
	if at, ok := r.answered(2); !ok || at != 2 {
		t.Fatalf("answer to 2: %d %v", at, ok)
	}
	if _, ok := r.answered(2); ok {
		t.Fatal("a second answer to 2 was timed")
	}
	if _, ok := r.answered(9); ok {
		t.Fatal("an answer to a request never sent was timed")
	}
	if !r.sent(1+64, 100) {
		t.Fatal("reusing the slot of 1, still in flight, was not reported")
	}
	if _, ok := r.answered(1); ok {
		t.Fatal("an answer to 1, displaced, was timed")
	}
	r.forget()
	if _, ok := r.answered(3); ok {
		t.Fatal("an answer to 3, given up on, was timed")
	}
}

func TestFmtLatency(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{41 * time.Microsecond, "41 µs"},
		{999 * time.Microsecond, "999 µs"},
		{1234 * time.Microsecond, "1.23 ms"},
		{27100 * time.Microsecond, "27.1 ms"},
		{1500 * time.Millisecond, "1.50 s"},
	} {
		if got := fmtLatency(tc.d); got != tc.want {
			t.Errorf("fmtLatency(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

// TestSlowLog: window.timed records every round trip in the histogram and
// lists in the slow log only those over its bound, with the send time in
// unix microseconds.
func TestSlowLog(t *testing.T) {
	epoch := time.UnixMicro(1_800_000_000_000_000)
	var out strings.Builder
	w := &window{epoch: epoch, slow: newSlowLog(&out, 300*time.Microsecond, epoch)}
	var h histogram
	for _, tc := range []struct{ at, rtt time.Duration }{
		{time.Millisecond, 299 * time.Microsecond},
		{2 * time.Millisecond, 300 * time.Microsecond},
		{3 * time.Millisecond, 301 * time.Microsecond},
		{time.Second, 7 * time.Millisecond},
	} {
		w.timed(&h, int64(tc.at), int64(tc.at+tc.rtt))
	}
	if got := h.latency().Count; got != 4 {
		t.Errorf("histogram counted %d round trips, want 4", got)
	}
	want := "1800000000003000 301\n1800000001000000 7000\n"
	if out.String() != want {
		t.Errorf("slow log:\n%s\nwant:\n%s", out.String(), want)
	}
}
