package httptracker

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/starling-tracker/starling/internal/bencode"
	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/metrics"
	"github.com/starling-tracker/starling/internal/tracker"
)

// warmSwarm fills testHash's swarm with n peers of each family, so answers
// carry a realistic number of peers.
func warmSwarm(t testing.TB, r *rules, n int) {
	t.Helper()
	ctx := context.Background()
	for i := 0; i < n; i++ {
		for _, fam := range []string{"10.0.%d.%d", "2001:db8::%x:%x"} {
			a := netip.MustParseAddr(fmt.Sprintf(fam, i/250, i%250+1))
			req := bittorrent.AnnounceRequest{InfoHash: testHash, Addr: netip.AddrPortFrom(a, 6881), Left: 1, Families: bittorrent.BothFamilies}
			copy(req.PeerID[:], fmt.Sprintf("-WM0001-%012d", i))
			var resp bittorrent.AnnounceResponse
			if err := r.Announce(ctx, &req, &resp); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// coreRequests are the hot-path requests whose steady state must not allocate.
var coreRequests = []struct {
	name, path, query string
}{
	{"announce non-compact", "/announce", minQuery + "&uploaded=10&downloaded=20&left=30"},
	{"announce compact", "/announce", minQuery + "&left=30&compact=1&numwant=50"},
	{"announce with key", "/announce/" + strings.Repeat("k", 32), minQuery + "&compact=1"},
	{"scrape", "/scrape", "info_hash=" + hash20 + "&info_hash=" + strings.Repeat("%01", 20) + "&info_hash=" + hash20},
	{"failure", "/announce", "info_hash=short&peer_id=x&port=1"},
	{"health", "/health_check", ""},
}

func TestCoreAllocs(t *testing.T) {
	r := newRules(t, tracker.DefaultConfig())
	warmSwarm(t, r, 60)
	lat := metrics.NewLatency(2)
	h := NewHandler(Config{Latency: lat}, r, r.counters, nil)
	ctx := context.Background()
	for _, tt := range coreRequests {
		t.Run(tt.name, func(t *testing.T) {
			req := rawRequest{path: []byte(tt.path), query: []byte(tt.query), hasQuery: true,
				remote: netip.MustParseAddrPort("192.0.2.1:40000")}
			s := h.getScratch()
			defer h.putScratch(s)
			h.handle(ctx, s, &req) // first use sizes the buffers
			allocs := testing.AllocsPerRun(200, func() {
				if a := h.handle(ctx, s, &req); a.status != 200 {
					t.Fatalf("status %d", a.status)
				}
			})
			if allocs != 0 {
				t.Fatalf("%v allocations per request, want 0", allocs)
			}
		})
	}
	if n := lat.Snapshot(metrics.HTTPAnnounce).Count; n < 600 {
		t.Fatalf("%d announce latencies observed", n)
	}
}

// TestFastHTTPAdapterAllocs runs the whole fasthttp adapter (pool, routing,
// response writing) on a reused request context.
func TestFastHTTPAdapterAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	r := newRules(t, tracker.DefaultConfig())
	warmSwarm(t, r, 60)
	h := NewHandler(Config{OnReverseProxy: true}, r, r.counters, nil)
	remote := &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 40000}
	for _, tt := range coreRequests {
		t.Run(tt.name, func(t *testing.T) {
			var ctx fasthttp.RequestCtx
			var req fasthttp.Request
			req.SetRequestURI(tt.path + "?" + tt.query)
			req.Header.Set("X-Forwarded-For", "198.51.100.7")
			ctx.Init(&req, remote, nil)
			h.ServeFastHTTP(&ctx)
			allocs := testing.AllocsPerRun(200, func() {
				ctx.Response.Reset()
				h.ServeFastHTTP(&ctx)
				if ctx.Response.StatusCode() != 200 {
					t.Fatalf("status %d", ctx.Response.StatusCode())
				}
			})
			if allocs != 0 {
				t.Fatalf("%v allocations per request, want 0", allocs)
			}
		})
	}
}

// FuzzAnnounceHandler drives the whole handler core with arbitrary paths,
// queries and X-Forwarded-For values: every answer must be a 404, a health
// answer, or bencode that anacrolix decodes into a failure or a success.
func FuzzAnnounceHandler(f *testing.F) {
	for _, tt := range coreRequests {
		f.Add(tt.path, tt.query, "203.0.113.1")
	}
	f.Add("/announce", minQuery+"&event=stopped", "")
	f.Add("/scrape/"+strings.Repeat("A", 32), "info_hash=%%%", "::1, x")
	r := newRules(f, tracker.DefaultConfig())
	h := NewHandler(Config{OnReverseProxy: true}, r, r.counters, nil)
	f.Fuzz(func(t *testing.T, path, query, xff string) {
		s := h.getScratch()
		defer h.putScratch(s)
		a := h.handle(context.Background(), s, &rawRequest{path: []byte(path), query: []byte(query), hasQuery: query != "", xff: []byte(xff)})
		switch {
		case a.status == 404:
			return
		case a.status != 200:
			t.Fatalf("status %d", a.status)
		case a.contentType == contentTypeJSON:
			return
		}
		m := decode(t, a.body)
		if reason, failed := m["failure reason"]; failed {
			if a.contentType != contentTypeFailure || reason == "" {
				t.Fatalf("failure %q with content type %q", reason, a.contentType)
			}
			return
		}
		if _, ok := m["files"]; !ok {
			if _, ok := m["interval"]; !ok {
				t.Fatalf("success without files or interval: %q", a.body)
			}
		}
	})
}

func BenchmarkAnnounceCore(b *testing.B) {
	for _, compact := range []bool{false, true} {
		b.Run(fmt.Sprintf("compact=%v", compact), func(b *testing.B) {
			r := newRules(b, tracker.DefaultConfig())
			warmSwarm(b, r, 60)
			h := NewHandler(Config{}, r, r.counters, nil)
			q := minQuery + "&left=30&numwant=50"
			if compact {
				q += "&compact=1"
			}
			req := rawRequest{path: []byte("/announce"), query: []byte(q), hasQuery: true, remote: netip.MustParseAddrPort("192.0.2.1:40000")}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				s := h.getScratch()
				h.handle(ctx, s, &req)
				h.putScratch(s)
			}
		})
	}
}

func BenchmarkScrapeCore(b *testing.B) {
	r := newRules(b, tracker.DefaultConfig())
	warmSwarm(b, r, 10)
	h := NewHandler(Config{}, r, r.counters, nil)
	var q strings.Builder
	for i := 0; i < 10; i++ {
		fmt.Fprintf(&q, "&info_hash=%s%%%02X", strings.Repeat("%AA", 19), i)
	}
	req := rawRequest{path: []byte("/scrape"), query: []byte(q.String()[1:]), hasQuery: true, remote: netip.MustParseAddrPort("192.0.2.1:40000")}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		s := h.getScratch()
		h.handle(ctx, s, &req)
		h.putScratch(s)
	}
}

func BenchmarkParseAnnounce(b *testing.B) {
	q := []byte(minQuery + "&uploaded=10&downloaded=20&left=30&event=started&compact=1&numwant=50&key=abc")
	var req bittorrent.AnnounceRequest
	var perr parseError
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := parseAnnounce(q, true, &req, &perr); err != nil {
			b.Fatal(err)
		}
	}
}

// TestEncodingKeys checks the pre-encoded keys against the encoder, so a
// typo in a length prefix cannot slip through.
func TestEncodingKeys(t *testing.T) {
	for _, tc := range []struct{ got, key, tail string }{
		{keyComplete, "complete", ""}, {keyIncomplete, "incomplete", ""}, {keyInterval, "interval", ""},
		{keyMinInterval, "min interval", ""}, {keyPeers, "peers", ""}, {keyPeers6, "peers6", ""},
		{keyIP, "ip", ""}, {keyPeerID, "peer id", "20:"}, {keyPort, "port", ""}, {keyFiles, "files", ""},
		{keyDownloaded, "downloaded", ""},
	} {
		if want := string(bencode.AppendString(nil, tc.key)) + tc.tail; tc.got != want {
			t.Errorf("key %q encoded as %q, want %q", tc.key, tc.got, want)
		}
	}
}

func TestLogPath(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"/announce", "/announce"},
		{"/announce/", "/announce/"},
		{"/announce/FZOK1egIIRrimv0Oj9TVOrEeqgx85K5Z", "/announce/REDACTED"},
		{"/scrape/abc", "/scrape/REDACTED"},
		{"/other/abc", "/other/abc"},
	} {
		if got := logPath([]byte(tt.in)); got != tt.want {
			t.Errorf("logPath(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
