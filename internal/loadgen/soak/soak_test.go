package soak

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
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

// TestRequestsCutByTheEnd: a request still waiting for its answer when
// the run ends is not an error, even when the client gives up at the
// deadline before the run's context says it is over. The tracker here
// never answers, so every request is cut by the end.
func TestRequestsCutByTheEnd(t *testing.T) {
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		<-req.Context().Done()
	}))
	defer hang.Close()
	cfg := Config{UDP: "udp://" + silent.LocalAddr().String(), HTTP: hang.URL, API: hang.URL, Torrents: 10, Rate: 1, Timeout: 5 * time.Second}
	cfg.defaults()
	r := &runner{cfg: cfg, httpc: &http.Client{Timeout: cfg.Timeout}, joined: make([]bool, cfg.Torrents*cfg.Swarm)}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	const workers = 32
	tokens := make(chan struct{}, workers)
	for range workers {
		tokens <- struct{}{}
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.worker(ctx, tokens, uint64(w))
		}()
	}
	wg.Wait()
	if n := r.errs.Load(); n != 0 {
		t.Fatalf("%d requests cut by the end of the run counted as errors, the first: %s", n, *r.firstErr.Load())
	}
}
