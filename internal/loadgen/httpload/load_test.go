package httpload

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// startTarget serves a benchmark target on 127.0.0.1:0 for the test.
func startTarget(t *testing.T, cfg TargetConfig) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan net.Addr, 1)
	done := make(chan error, 1)
	cfg.Addr = "127.0.0.1:0"
	go func() { done <- Serve(ctx, cfg, nil, func(a net.Addr) { addrc <- a }) }()
	var addr net.Addr
	select {
	case addr = <-addrc:
	case err := <-done:
		t.Fatalf("target: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("target stopped with %v", err)
		}
	})
	return "http://" + addr.String()
}

func TestRun(t *testing.T) {
	tests := []struct {
		name   string
		target TargetConfig
		cfg    Config
	}{
		{"fasthttp keep-alive mix", TargetConfig{Engine: EngineFastHTTP}, Config{Concurrency: 4, ScrapeRatio: 0.3, Compact: true}},
		{"nethttp new connection per request", TargetConfig{Engine: EngineNetHTTP}, Config{Concurrency: 2, NewConnPerRequest: true}},
		{"trivial fasthttp", TargetConfig{Engine: EngineFastHTTP, Trivial: true}, Config{Concurrency: 2}},
		{"trivial nethttp", TargetConfig{Engine: EngineNetHTTP, Trivial: true}, Config{Concurrency: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.URL = startTarget(t, tt.target)
			cfg.Duration = 500 * time.Millisecond
			cfg.Torrents, cfg.Peers = 10, 100
			var progress bytes.Buffer
			cfg.Progress = &progress
			res, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if res.Requests < 20 || res.Errors != 0 || res.Answered != res.Requests {
				t.Fatalf("%v", res)
			}
			if tt.cfg.ScrapeRatio > 0 && (res.Scrapes == 0 || res.Announces == 0) {
				t.Fatalf("mix not honoured: %v", res)
			}
			if res.P50 <= 0 || res.P50 > res.P99 || res.P99 > res.Max {
				t.Fatalf("percentiles out of order: %v", res)
			}
		})
	}
}

// TestRunCountsFailures points the generator at a private-mode-like refusal:
// a malformed key makes every announce a failure reason, which must count as
// an error.
func TestRunCountsFailures(t *testing.T) {
	url := startTarget(t, TargetConfig{Engine: EngineFastHTTP})
	res, err := Run(context.Background(), Config{URL: url, Key: "short", Duration: 300 * time.Millisecond, Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests == 0 || res.Errors != res.Requests || res.Failures != res.Requests || res.Answered != res.Requests ||
		!strings.Contains(res.FirstErr, "Invalid format for authentication key param") {
		t.Fatalf("%v", res)
	}
}

func TestRunRefused(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	res, err := Run(context.Background(), Config{URL: "http://" + addr, Duration: 200 * time.Millisecond, Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors == 0 || res.Answered != 0 || !strings.Contains(res.FirstErr, "dial") {
		t.Fatalf("%v", res)
	}
}

func TestRunRejectsBadValues(t *testing.T) {
	for _, c := range []Config{
		{Concurrency: -3}, {Duration: -time.Second}, {Torrents: -1}, {Peers: -1},
		{Timeout: -time.Second}, {NumWant: -5}, {ScrapeRatio: 2}, {ScrapeRatio: -1},
	} {
		c.URL = "http://127.0.0.1:1"
		if _, err := Run(context.Background(), c); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

func TestParseURL(t *testing.T) {
	for _, u := range []string{"", "ftp://x", "127.0.0.1:80", "http://"} {
		if _, err := Run(context.Background(), Config{URL: u, Duration: time.Millisecond}); err == nil {
			t.Errorf("url %q accepted", u)
		}
	}
}
