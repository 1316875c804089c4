package soak

import (
	"strings"
	"testing"
	"time"
)

func TestParseMetrics(t *testing.T) {
	m := parseMetrics(`# HELP starling_peers Peers.
# TYPE starling_peers gauge
starling_peers{role="seeder"} 3
starling_peers{role="leecher"} 4
process_resident_memory_bytes 1.5e+07
go_goroutines 12
`)
	if m["starling_peers"] != 7 || m["process_resident_memory_bytes"] != 15e6 || m["go_goroutines"] != 12 {
		t.Fatalf("got %v", m)
	}
}

func TestJudge(t *testing.T) {
	flat := []Sample{
		{At: time.Minute, Answered: 10, RSS: 100, Goroutines: 50, OpenFiles: 40},
		{At: 2 * time.Minute, Answered: 10, RSS: 102, Goroutines: 52, OpenFiles: 41},
		{At: 3 * time.Minute, Answered: 10, RSS: 104, Goroutines: 50, OpenFiles: 40},
	}
	tests := []struct {
		name  string
		edit  func(r *Result)
		ok    bool
		words string
	}{
		{"flat", func(*Result) {}, true, "verdict: OK"},
		{"an error", func(r *Result) { r.Errors = 1 }, false, "1 errors"},
		{"RSS grows", func(r *Result) { r.Samples[2].RSS = 110 }, false, "RSS grew"},
		{"goroutines grow", func(r *Result) { r.Samples[2].Goroutines = 200 }, false, "goroutines grew"},
		{"files grow", func(r *Result) { r.Samples[2].OpenFiles = 100 }, false, "open files grew"},
		{"one sample", func(r *Result) { r.Samples = r.Samples[:1] }, false, "too short"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &Result{Samples: append([]Sample(nil), flat...), Answered: 30}
			tt.edit(r)
			r.judge()
			if r.OK != tt.ok || !strings.Contains(r.Verdict, tt.words) {
				t.Fatalf("OK %v, verdict %q", r.OK, r.Verdict)
			}
		})
	}
}
