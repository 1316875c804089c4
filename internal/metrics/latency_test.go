package metrics

import (
	"sync"
	"testing"
	"time"
)

func TestLatencyBuckets(t *testing.T) {
	tests := []struct {
		name string
		d    time.Duration
		// first is the index of the first cumulative bucket that counts d;
		// numBuckets means only +Inf.
		first int
	}{
		{"zero", 0, 0},
		{"negative counts as zero", -time.Second, 0},
		{"exactly on the first bound", 5 * time.Microsecond, 0},
		{"just above the first bound", 5*time.Microsecond + 1, 1},
		{"one millisecond", time.Millisecond, 7},
		{"between 1ms and 2.5ms", 2 * time.Millisecond, 8},
		{"exactly the last bound", 5 * time.Second, numBuckets - 1},
		{"above every bound", 6 * time.Second, numBuckets},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := NewLatency(2)
			l.Stripe().Observe(HTTPScrape, tt.d)
			s := l.Snapshot(HTTPScrape)
			for b := 0; b < numBuckets; b++ {
				want := uint64(0)
				if b >= tt.first {
					want = 1
				}
				if s.Buckets[b] != want {
					t.Errorf("bucket le=%g: got %d, want %d", LatencyBuckets[b], s.Buckets[b], want)
				}
			}
			if s.Count != 1 {
				t.Errorf("count: got %d, want 1", s.Count)
			}
			wantSum := tt.d.Seconds()
			if tt.d < 0 {
				wantSum = 0
			}
			if s.Sum != wantSum {
				t.Errorf("sum: got %g, want %g", s.Sum, wantSum)
			}
			if other := l.Snapshot(HTTPAnnounce); other.Count != 0 {
				t.Errorf("another op counted %d observations", other.Count)
			}
		})
	}
}

func TestLatencyBoundsAscending(t *testing.T) {
	for i := 1; i < numBuckets; i++ {
		if bucketBounds[i] <= bucketBounds[i-1] {
			t.Fatalf("bucket %d (%v) not above bucket %d (%v)", i, bucketBounds[i], i-1, bucketBounds[i-1])
		}
	}
}

// TestLatencyConcurrent observes from many goroutines over fewer stripes
// (so stripes are shared) and checks that nothing is lost; run with -race.
func TestLatencyConcurrent(t *testing.T) {
	const workers, each = 8, 1000
	l := NewLatency(3)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		s := l.Stripe()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				s.Observe(UDPAnnounce, time.Duration(i)*time.Microsecond)
			}
		}()
	}
	// Read while writers run: the invariant +Inf == Count must hold in
	// every snapshot, and counts never go backwards.
	var last uint64
	for i := 0; i < 50; i++ {
		s := l.Snapshot(UDPAnnounce)
		if s.Count < last {
			t.Fatalf("count went backwards: %d after %d", s.Count, last)
		}
		if s.Buckets[numBuckets-1] > s.Count {
			t.Fatalf("last bucket %d above count %d", s.Buckets[numBuckets-1], s.Count)
		}
		last = s.Count
	}
	wg.Wait()
	if got := l.Snapshot(UDPAnnounce).Count; got != workers*each {
		t.Fatalf("count: got %d, want %d", got, workers*each)
	}
}

func TestOpLabels(t *testing.T) {
	tests := []struct {
		op             Op
		protocol, kind string
	}{
		{UDPConnect, "udp", "connect"},
		{UDPAnnounce, "udp", "announce"},
		{UDPScrape, "udp", "scrape"},
		{HTTPAnnounce, "http", "announce"},
		{HTTPScrape, "http", "scrape"},
	}
	if len(tests) != NumOps {
		t.Fatalf("table covers %d ops, there are %d", len(tests), NumOps)
	}
	for _, tt := range tests {
		t.Run(tt.protocol+"_"+tt.kind, func(t *testing.T) {
			if tt.op.Protocol() != tt.protocol || tt.op.Kind() != tt.kind {
				t.Fatalf("got %s/%s", tt.op.Protocol(), tt.op.Kind())
			}
		})
	}
}

func TestObserveAllocatesNothing(t *testing.T) {
	s := NewLatency(1).Stripe()
	start := time.Now()
	if n := testing.AllocsPerRun(1000, func() {
		s.Observe(UDPAnnounce, 37*time.Microsecond)
		s.ObserveSince(HTTPAnnounce, start)
	}); n != 0 {
		t.Fatalf("Observe allocates %v times per run", n)
	}
}

func BenchmarkLatencyObserve(b *testing.B) {
	b.ReportAllocs()
	l := NewLatency(4)
	b.RunParallel(func(pb *testing.PB) {
		s := l.Stripe()
		d := 40 * time.Microsecond
		for pb.Next() {
			s.Observe(UDPAnnounce, d)
		}
	})
}

func BenchmarkLatencyObserveSince(b *testing.B) {
	b.ReportAllocs()
	s := NewLatency(1).Stripe()
	for b.Loop() {
		s.ObserveSince(UDPAnnounce, time.Now())
	}
}
