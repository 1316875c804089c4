package healthcheck_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/starling-tracker/starling/internal/healthcheck"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestRequestID: every answer carries x-request-id, and a failed probe's
// log line names the request it ran for.
func TestRequestID(t *testing.T) {
	var logs lockedBuffer
	dead := deadAddr(t)
	hc := healthcheck.New(healthcheck.Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))}, []healthcheck.Target{
		healthcheck.HTTP(dead, "http://"+dead, func(ctx context.Context) error { return context.DeadlineExceeded }),
	})
	url := serve(t, hc)
	tests := []struct{ path, clientID string }{
		{"/health_check", "probe-run-1"},
		{"/", ""},
		{"/nothing", "bad id"},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest(http.MethodGet, url+tt.path, nil)
		if tt.clientID != "" {
			req.Header.Set("X-Request-Id", tt.clientID)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		id := resp.Header.Get("X-Request-Id")
		if id == "" || tt.clientID == "bad id" && id == tt.clientID || tt.clientID == "probe-run-1" && id != tt.clientID {
			t.Fatalf("%s: id %q", tt.path, id)
		}
	}
	if !strings.Contains(logs.String(), "request_id=probe-run-1") {
		t.Fatalf("failed probe's log line lacks the request id:\n%s", logs.String())
	}
}
