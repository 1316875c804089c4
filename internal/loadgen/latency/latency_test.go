package latency

import (
	"testing"
	"time"
)

func TestHist(t *testing.T) {
	var h Hist
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Microsecond}, {0.9, 900 * time.Microsecond}, {0.99, 990 * time.Microsecond}} {
		got := h.Quantile(tc.q)
		if got > tc.want || float64(got) < float64(tc.want)*0.93 {
			t.Errorf("q%.2f = %v, want within 7%% below %v", tc.q, got, tc.want)
		}
	}
	if h.Max() != time.Millisecond {
		t.Errorf("max %v", h.Max())
	}
}
