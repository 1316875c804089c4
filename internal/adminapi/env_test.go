package adminapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/starling-tracker/starling/internal/access"
	"github.com/starling-tracker/starling/internal/adminapi"
	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/clock"
	"github.com/starling-tracker/starling/internal/database"
	"github.com/starling-tracker/starling/internal/metrics"
	"github.com/starling-tracker/starling/internal/swarm"
	"github.com/starling-tracker/starling/internal/swarm/memswarm"
	"github.com/starling-tracker/starling/internal/tracker"
)

// token is the Torrust development config's admin token.
const token = "MyAccessToken"

// fixedNow is the API's clock in these tests: 2023-03-28 13:25:00.058085050 UTC.
var fixedNow = time.Date(2023, 3, 28, 13, 25, 0, 58085050, time.UTC)

// env is a running API on 127.0.0.1:0 over a memswarm store, access lists
// written through to a real SQLite database, and a tracker to announce with.
type env struct {
	t        *testing.T
	url      string
	api      *adminapi.API
	store    swarm.Store
	lists    *access.Lists
	db       *database.DB
	counters *metrics.Counters
	tracker  *tracker.Tracker
	clock    *clock.Manual
	logs     *syncBuffer
	client   *http.Client
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type envOption func(*adminapi.Config, *adminapi.Deps)

func newEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	ctx := context.Background()
	db, err := database.Open(ctx, "sqlite3", filepath.Join(t.TempDir(), "tracker.db"), nil)
	if err != nil {
		t.Fatalf("open sqlite: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	e := &env{
		t:        t,
		store:    memswarm.New(swarm.Options{RemovePeerlessTorrents: true}),
		lists:    access.New(db),
		db:       db,
		counters: metrics.NewCounters(2, true),
		clock:    clock.NewManual(fixedNow.Unix()),
		logs:     &syncBuffer{},
	}
	e.tracker = tracker.New(tracker.DefaultConfig(), e.store, e.lists, e.clock, nil)
	cfg := adminapi.Config{
		AccessTokens: map[string]string{"admin": token, "second": "AnotherToken"},
		Logger:       slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	deps := adminapi.Deps{
		Store:    e.store,
		Lists:    e.lists,
		Counters: e.counters,
		Metrics:  metrics.NewRegistry(e.counters, metrics.NewLatency(1), e.store, nil),
		Now:      func() time.Time { return fixedNow },
	}
	for _, o := range opts {
		o(&cfg, &deps)
	}
	e.store = deps.Store
	api, err := adminapi.New(cfg, deps)
	if err != nil {
		t.Fatalf("adminapi.New: %v", err)
	}
	e.api = api
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	e.url = "http://" + ln.Addr().String()
	done := make(chan error, 1)
	go func() { done <- api.Serve(ln) }()
	e.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableCompression: true}}
	t.Cleanup(func() {
		e.client.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := api.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve returned %v, want http.ErrServerClosed", err)
		}
		// No secret may reach the log, whatever the test did.
		logs := e.logs.String()
		for _, secret := range []string{token, "AnotherToken", "WrongToken", knownKey} {
			if strings.Contains(logs, secret) {
				t.Errorf("log contains secret %q:\n%s", secret, logs)
			}
		}
	})
	return e
}

// knownKey is a key the tests add by value; it must never be logged.
const knownKey = "YZSl4lMZupRuOpSRC3krIKR5BPB14nrJ"

type answer struct {
	status int
	header http.Header
	body   string
}

// do sends a request; hdr holds header pairs.
func (e *env) do(method, path, body string, hdr ...string) answer {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.url+path, rd)
	if err != nil {
		e.t.Fatalf("new request %s %s: %v", method, path, err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return answer{resp.StatusCode, resp.Header, string(b)}
}

// announce registers a peer through the tracker's rules.
func (e *env) announce(h bittorrent.InfoHash, id string, addr string, left int64, ev bittorrent.Event) {
	e.t.Helper()
	var pid bittorrent.PeerID
	copy(pid[:], id)
	req := bittorrent.AnnounceRequest{
		InfoHash: h, PeerID: pid, Addr: netip.MustParseAddrPort(addr),
		Uploaded: 11, Downloaded: 22, Left: left, Event: ev,
	}
	var resp bittorrent.AnnounceResponse
	if err := e.tracker.Announce(context.Background(), &req, &resp); err != nil {
		e.t.Fatalf("announce: %v", err)
	}
}

func hash(b byte) bittorrent.InfoHash {
	var h bittorrent.InfoHash
	for i := range h {
		h[i] = b
	}
	return h
}

func decodeJSON(t *testing.T, body string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("answer is not JSON: %v: %q", err, body)
	}
	return v
}
