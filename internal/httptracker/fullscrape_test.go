package httptracker

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	anabencode "github.com/anacrolix/torrent/bencode"

	"github.com/starling-tracker/starling/internal/access"
	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/clock"
	"github.com/starling-tracker/starling/internal/fullscrape"
	"github.com/starling-tracker/starling/internal/metrics"
	"github.com/starling-tracker/starling/internal/swarm"
	"github.com/starling-tracker/starling/internal/swarm/memswarm"
	"github.com/starling-tracker/starling/internal/tracker"
)

// fullScrapeRig is a tracker over a store of n torrents, torrent i with
// completed count i+1.
type fullScrapeRig struct {
	tracker *tracker.Tracker
	store   swarm.Store
	hashes  []bittorrent.InfoHash
}

func newFullScrapeRig(t testing.TB, n int) *fullScrapeRig {
	t.Helper()
	store := memswarm.New(swarm.Options{})
	counts := make([]swarm.CompletedCount, n)
	hashes := make([]bittorrent.InfoHash, n)
	for i := range counts {
		binary.BigEndian.PutUint32(hashes[i][:], uint32(i)*2654435761)
		binary.BigEndian.PutUint32(hashes[i][16:], uint32(i))
		counts[i] = swarm.CompletedCount{InfoHash: hashes[i], Completed: uint32(i + 1)}
	}
	if err := store.SetCompleted(context.Background(), counts); err != nil {
		t.Fatal(err)
	}
	tr := tracker.New(tracker.DefaultConfig(), store, access.New(nil), clock.NewManual(testNow), nil)
	return &fullScrapeRig{tracker: tr, store: store, hashes: hashes}
}

const adminToken = "s3cret-admin-token"

func rawClient(t testing.TB) *http.Client {
	tr := &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

type fullAnswer struct {
	status   int
	header   http.Header
	body     []byte // decompressed
	gzipped  bool
	rawBytes int
}

func fetch(t testing.TB, c *http.Client, url string, header ...string) fullAnswer {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	a := fullAnswer{status: resp.StatusCode, header: resp.Header, body: raw, rawBytes: len(raw)}
	if resp.Header.Get("Content-Encoding") == "gzip" {
		a.gzipped = true
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		if a.body, err = io.ReadAll(zr); err != nil {
			t.Fatal(err)
		}
	}
	return a
}

// checkFullScrape decodes a full scrape with anacrolix's decoder and
// compares every torrent's counts with the rig's.
func checkFullScrape(t testing.TB, rig *fullScrapeRig, body []byte) {
	t.Helper()
	var v struct {
		Files map[string]struct {
			Complete   int64 `bencode:"complete"`
			Downloaded int64 `bencode:"downloaded"`
			Incomplete int64 `bencode:"incomplete"`
		} `bencode:"files"`
	}
	if err := anabencode.Unmarshal(body, &v); err != nil {
		t.Fatalf("not a full scrape: %v (%.100q)", err, body)
	}
	if len(v.Files) != len(rig.hashes) {
		t.Fatalf("%d torrents, want %d", len(v.Files), len(rig.hashes))
	}
	for i, h := range rig.hashes {
		f, ok := v.Files[string(h[:])]
		if !ok || f.Downloaded != int64(i+1) || f.Complete != 0 || f.Incomplete != 0 {
			t.Fatalf("torrent %d: %+v (present %v)", i, f, ok)
		}
	}
}

func TestFullScrape(t *testing.T) {
	rig := newFullScrapeRig(t, 2000)
	c := rawClient(t)
	// What Starling answered before full scrapes existed, and still does
	// with full_scrape = "off".
	missingQuery := string(failureBody("Cannot parse query params for scrape request: missing query params for scrape request"))
	missingHash := string(failureBody("Cannot parse query params for scrape request: missing param info_hash"))
	needToken := string(failureBody(msgFullScrapeToken))
	badHash := string(failureBody("Cannot parse query params for scrape request: invalid param value short for info_hash in not enough bytes for infohash: got 5 bytes, expected 20"))
	const paddedToken = "c2VjcmV0dG9rZW4="
	tests := []struct {
		name     string
		mode     fullscrape.Mode
		path     string
		header   []string
		wantBody string // a failure; empty: the full scrape
		wantGzip bool
	}{
		{"off: no query", fullscrape.Off, "/scrape", nil, missingQuery, false},
		{"off: token only", fullscrape.Off, "/scrape?token=" + adminToken, nil, missingHash, false},
		{"public", fullscrape.Public, "/scrape", nil, "", false},
		{"public, gzip", fullscrape.Public, "/scrape", []string{"Accept-Encoding", "br, gzip"}, "", true},
		{"public, gzip refused", fullscrape.Public, "/scrape", []string{"Accept-Encoding", "gzip;q=0"}, "", false},
		{"public, empty query", fullscrape.Public, "/scrape?", nil, "", false},
		{"public, key path", fullscrape.Public, "/scrape/" + strings.Repeat("k", 32), nil, "", false},
		{"api: no token", fullscrape.API, "/scrape", nil, needToken, false},
		{"api: wrong token", fullscrape.API, "/scrape?token=nope", nil, needToken, false},
		{"api: other scheme", fullscrape.API, "/scrape", []string{"Authorization", "Basic " + adminToken}, needToken, false},
		{"api: ?token=", fullscrape.API, "/scrape?token=" + adminToken, []string{"Accept-Encoding", "gzip"}, "", true},
		{"api: bearer", fullscrape.API, "/scrape", []string{"Authorization", "Bearer " + adminToken}, "", false},
		{"api: token with padding", fullscrape.API, "/scrape?token=" + paddedToken, nil, "", false},
		{"api: token with padding, escaped", fullscrape.API, "/scrape?token=" + url.QueryEscape(paddedToken), nil, "", false},
		{"api: bad hash wins", fullscrape.API, "/scrape?token=" + adminToken + "&info_hash=short", nil, badHash, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{}
			if tt.mode != fullscrape.Off {
				cfg.FullScrape = &FullScrape{Builder: fullscrape.New(rig.store, fullscrape.Config{})}
				if tt.mode == fullscrape.API {
					cfg.FullScrape.Tokens = NewTokens(map[string]string{"admin": adminToken, "b64": paddedToken, "empty": ""})
				}
			}
			srv := startServer(t, "tcp4", cfg, rig.tracker, nil)
			a := fetch(t, c, srv.URL()+tt.path, tt.header...)
			if a.status != 200 {
				t.Fatalf("status %d", a.status)
			}
			if a.header.Get("X-Request-Id") == "" {
				t.Fatal("no x-request-id")
			}
			if tt.wantBody != "" {
				if string(a.body) != tt.wantBody {
					t.Fatalf("body %q, want %q", a.body, tt.wantBody)
				}
				return
			}
			if a.gzipped != tt.wantGzip {
				t.Fatalf("gzipped %v, want %v", a.gzipped, tt.wantGzip)
			}
			if a.gzipped && a.rawBytes >= len(a.body) {
				t.Fatalf("gzip body of %d bytes for %d plain", a.rawBytes, len(a.body))
			}
			if got := a.header.Get("Content-Type"); got != contentTypeBencode {
				t.Fatalf("content type %q", got)
			}
			checkFullScrape(t, rig, a.body)
		})
	}
}

// TestFullScrapeThousandClients: a thousand concurrent full scrapes over
// real sockets cost one build.
func TestFullScrapeThousandClients(t *testing.T) {
	rig := newFullScrapeRig(t, 500)
	b := fullscrape.New(rig.store, fullscrape.Config{Interval: time.Hour})
	counters := metrics.NewCounters(2, true)
	srv := startServer(t, "tcp4", Config{FullScrape: &FullScrape{Builder: b}}, rig.tracker, counters)
	c := rawClient(t)
	var wg sync.WaitGroup
	start := make(chan struct{})
	sem := make(chan struct{}, 64) // connections at a time
	var mu sync.Mutex
	bodies := map[string]int{}
	for range 1000 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			sem <- struct{}{}
			defer func() { <-sem }()
			a := fetch(t, c, srv.URL()+"/scrape", "Accept-Encoding", "gzip")
			mu.Lock()
			bodies[string(a.body)]++
			mu.Unlock()
		}()
	}
	close(start)
	wg.Wait()
	if n := b.Stats().Builds; n != 1 {
		t.Fatalf("%d builds for 1000 full scrapes, want 1", n)
	}
	// The same count, as Prometheus reads it.
	reg := metrics.NewRegistry(nil, nil, nil, nil)
	reg.RegisterFullScrape(b)
	fams, err := reg.Gather(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	builds := -1.0
	for _, f := range fams {
		if f.GetName() == "starling_full_scrape_builds_total" {
			builds = f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	if builds != 1 {
		t.Fatalf("starling_full_scrape_builds_total = %v, want 1", builds)
	}
	if len(bodies) != 1 {
		t.Fatalf("%d different answers", len(bodies))
	}
	for body := range bodies {
		checkFullScrape(t, rig, []byte(body))
	}
	if got := counters.Snapshot()[metrics.TCP4Scrapes]; got != 1000 {
		t.Fatalf("%d scrapes counted, want 1000", got)
	}
}

// TestRequestID: every answer carries x-request-id; a well-formed client id
// is kept, anything else replaced; a refused request's log line has it.
func TestRequestID(t *testing.T) {
	var logBuf syncBuffer
	log := slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r := newRules(t, tracker.DefaultConfig())
	srv, err := New(Config{}, r, r.counters, log)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	<-srv.Ready()
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	c := rawClient(t)
	base := srv.URL()
	tests := []struct {
		name, method, path, clientID string
		keep                         bool
	}{
		{"announce", "GET", announceURL(base, 1, ""), "", false},
		{"scrape", "GET", base + "/scrape?info_hash=" + hash20, "abc-123", true},
		{"failure keeps id", "GET", base + "/announce?info_hash=short", "trace.me_1", true},
		{"health", "GET", base + "/health_check", strings.Repeat("x", 64), true},
		{"404", "GET", base + "/nope", "", false},
		{"405", "POST", base + "/announce", "", false},
		{"too long id replaced", "GET", base + "/health_check", strings.Repeat("x", 65), false},
		{"unsafe id replaced", "GET", base + "/health_check", "a b", false},
		{"quote replaced", "GET", base + "/health_check", `x"y`, false},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tt.clientID != "" {
				req.Header.Set("X-Request-Id", tt.clientID)
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			id := resp.Header.Get("X-Request-Id")
			switch {
			case id == "":
				t.Fatal("no x-request-id")
			case tt.keep && id != tt.clientID:
				t.Fatalf("id %q, want the client's %q", id, tt.clientID)
			case !tt.keep && (id == tt.clientID || seen[id]):
				t.Fatalf("id %q not fresh", id)
			}
			seen[id] = true
		})
	}
	if !strings.Contains(logBuf.String(), "request_id=trace.me_1") {
		t.Fatalf("the refused request's id is not in the log:\n%s", logBuf.String())
	}
}

// TestRequestIDOnUnreadableRequest: fasthttp's error answers (431 here)
// carry an id too.
func TestRequestIDOnUnreadableRequest(t *testing.T) {
	r := newRules(t, tracker.DefaultConfig())
	srv := startServer(t, "tcp4", Config{MaxHeaderBytes: 1024}, r, r.counters)
	conn, err := net.Dial("tcp4", srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET /announce?"+strings.Repeat("a", 4096)+" HTTP/1.1\r\nHost: x\r\n\r\n")
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	head, _ := io.ReadAll(conn)
	if !bytes.Contains(head, []byte(" 431 ")) || !bytes.Contains(bytes.ToLower(head), []byte("x-request-id: ")) {
		t.Fatalf("answer %q", head)
	}
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

// TestFullScrapeSlowReader: a full scrape larger than what the write
// timeout allows for still reaches a client that reads it slowly.
func TestFullScrapeSlowReader(t *testing.T) {
	rig := newFullScrapeRig(t, 100_000) // about 7 MB
	cfg := Config{WriteTimeout: 200 * time.Millisecond, FullScrape: &FullScrape{Builder: fullscrape.New(rig.store, fullscrape.Config{})}}
	srv := startServer(t, "tcp4", cfg, rig.tracker, nil)
	conn, err := net.Dial("tcp4", srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// A small receive buffer keeps the kernel from taking the whole answer.
	if err := conn.(*net.TCPConn).SetReadBuffer(32 << 10); err != nil {
		t.Fatal(err)
	}
	io.WriteString(conn, "GET /scrape HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	var all bytes.Buffer
	buf := make([]byte, 256<<10)
	start := time.Now()
	for {
		n, err := conn.Read(buf)
		all.Write(buf[:n])
		if err != nil {
			break
		}
		time.Sleep(10 * time.Millisecond) // a few MB/s: well past 200 ms in all
	}
	if time.Since(start) < 300*time.Millisecond {
		t.Skip("the socket buffers took the whole answer; nothing was slow")
	}
	_, body, ok := bytes.Cut(all.Bytes(), []byte("\r\n\r\n"))
	if !ok {
		t.Fatalf("no answer: %q", all.Bytes())
	}
	checkFullScrape(t, rig, body)
}
