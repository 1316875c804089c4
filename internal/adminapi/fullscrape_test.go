package adminapi_test

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"strings"
	"testing"

	anabencode "github.com/anacrolix/torrent/bencode"

	"github.com/starling-tracker/starling/internal/adminapi"
	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/fullscrape"
)

func TestFullScrapeEndpoint(t *testing.T) {
	var builder *fullscrape.Builder
	e := newEnv(t, func(c *adminapi.Config, d *adminapi.Deps) {
		builder = fullscrape.New(d.Store, fullscrape.Config{})
		d.FullScrape = builder
	})
	for b := range byte(50) {
		e.announce(hash(b), fmt.Sprintf("-TR3000-%012d", b), "10.0.0.1:6881", int64(b%2), bittorrent.EventStarted)
	}
	off := newEnv(t)
	tests := []struct {
		name, path string
		env        *env
		header     []string
		status     int
		wantGzip   bool
	}{
		{"no token", "/api/v1/scrape/full", e, nil, 500, false},
		{"wrong token", "/api/v1/scrape/full?token=nope", e, nil, 500, false},
		{"token", "/api/v1/scrape/full?token=" + token, e, nil, 200, false},
		{"bearer and gzip", "/api/v1/scrape/full", e, []string{"Authorization", "Bearer " + token, "Accept-Encoding", "gzip"}, 200, true},
		{"gzip refused", "/api/v1/scrape/full?token=" + token, e, []string{"Accept-Encoding", "gzip;q=0"}, 200, false},
		{"full scrape off", "/api/v1/scrape/full?token=" + token, off, nil, 404, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := tt.env.do("GET", tt.path, "", tt.header...)
			if a.status != tt.status {
				t.Fatalf("status %d, want %d: %q", a.status, tt.status, a.body)
			}
			if a.header.Get("X-Request-Id") == "" {
				t.Fatal("no x-request-id")
			}
			if tt.status != 200 {
				return
			}
			body := []byte(a.body)
			if gz := a.header.Get("Content-Encoding") == "gzip"; gz != tt.wantGzip {
				t.Fatalf("gzipped %v, want %v", gz, tt.wantGzip)
			} else if gz {
				zr, err := gzip.NewReader(bytes.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				if body, err = io.ReadAll(zr); err != nil {
					t.Fatal(err)
				}
			}
			var v struct {
				Files map[string]struct {
					Complete   int64 `bencode:"complete"`
					Incomplete int64 `bencode:"incomplete"`
				} `bencode:"files"`
			}
			if err := anabencode.Unmarshal(body, &v); err != nil {
				t.Fatal(err)
			}
			if len(v.Files) != 50 {
				t.Fatalf("%d torrents", len(v.Files))
			}
			for b := range byte(50) {
				h := hash(b)
				f := v.Files[string(h[:])]
				if seeder := b%2 == 0; f.Complete != int64(b2i(seeder)) || f.Incomplete != int64(b2i(!seeder)) {
					t.Fatalf("torrent %d: %+v", b, f)
				}
			}
		})
	}
	if n := builder.Stats().Builds; n != 1 {
		t.Fatalf("%d builds, want 1", n)
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestRequestIDInLog: the lines about a request carry its id.
func TestRequestIDInLog(t *testing.T) {
	e := newEnv(t)
	e.do("GET", "/api/v1/torrent/nothex?token="+token, "", "X-Request-Id", "find-me.42")
	e.do("GET", "/api/v1/stats", "", "X-Request-Id", "no-token-7")
	for _, id := range []string{"find-me.42", "no-token-7"} {
		if !strings.Contains(e.logs.String(), "request_id="+id) {
			t.Fatalf("no log line with request_id=%s:\n%s", id, e.logs.String())
		}
	}
	// An id that could break a log line is replaced.
	a := e.do("GET", "/api/health_check", "", "X-Request-Id", "x\" injected=1")
	if id := a.header.Get("X-Request-Id"); id == "" || strings.Contains(id, " ") {
		t.Fatalf("id %q", id)
	}
}
