package e2e

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/tracker"
	"github.com/anacrolix/torrent/types/infohash"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

type scrapeFiles map[string]struct {
	Complete   int64 `bencode:"complete"`
	Downloaded int64 `bencode:"downloaded"`
	Incomplete int64 `bencode:"incomplete"`
}

type got struct {
	status  int
	header  http.Header
	body    []byte // decompressed
	gzipped bool
}

// rawGet fetches u without Go's transparent gzip handling; hdr holds pairs.
func rawGet(t *testing.T, u string, hdr ...string) got {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableCompression: true}}
	defer c.CloseIdleConnections()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	g := got{status: resp.StatusCode, header: resp.Header, body: b}
	if resp.Header.Get("Content-Encoding") == "gzip" {
		g.gzipped = true
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if g.body, err = io.ReadAll(zr); err != nil {
			t.Fatal(err)
		}
	}
	if resp.Header.Get("X-Request-Id") == "" {
		t.Fatalf("GET %s: no x-request-id", u)
	}
	return g
}

func decodeFullScrape(t *testing.T, body []byte) scrapeFiles {
	t.Helper()
	var v struct {
		Files scrapeFiles `bencode:"files"`
	}
	if err := bencode.Unmarshal(body, &v); err != nil {
		t.Fatalf("not a full scrape: %v: %.200q", err, body)
	}
	return v.Files
}

func failureReason(t *testing.T, body []byte) string {
	t.Helper()
	var v struct {
		Failure string `bencode:"failure reason"`
	}
	if err := bencode.Unmarshal(body, &v); err != nil {
		t.Fatalf("not bencode: %v: %q", err, body)
	}
	return v.Failure
}

// TestFullScrapeBinary drives core.full_scrape over the running binary:
// "public" set from the environment, "api" from the file (with the token
// on the tracker URL and on the API), and listed mode.
func TestFullScrapeBinary(t *testing.T) {
	hashes := []infohash.T{{1}, {2}, {3}}
	announceAll := func(t *testing.T, p *process) {
		for i, ih := range hashes {
			// Torrent i has i+1 seeders and one leecher.
			for s := 0; s <= i; s++ {
				announceWith(t, p.addr("http")+"/announce", ih, byte(10*i+s), uint16(7000+10*i+s), 0, tracker.Started)
			}
			announceWith(t, p.addr("http")+"/announce", ih, byte(10*i+9), uint16(7000+10*i+9), 100, tracker.Started)
		}
	}
	checkCounts := func(t *testing.T, files scrapeFiles, want []infohash.T) {
		t.Helper()
		if len(files) != len(want) {
			t.Fatalf("%d torrents, want %d", len(files), len(want))
		}
		for _, ih := range want {
			i := int(ih[0]) - 1
			f, ok := files[string(ih[:])]
			if !ok || f.Complete != int64(i+1) || f.Incomplete != 1 {
				t.Fatalf("torrent %x: %+v (present %v)", ih[:1], f, ok)
			}
		}
	}

	t.Run("public from the environment", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "tracker.toml")
		if err := os.WriteFile(path, []byte(ephemeralConfig(dir, "")), 0o600); err != nil {
			t.Fatal(err)
		}
		p := start(t, dir, []string{"STARLING_CONFIG_TOML_PATH=" + path, "STARLING_CONFIG_OVERRIDE_CORE__FULL_SCRAPE=public"})
		announceAll(t, p)
		plain := rawGet(t, p.addr("http")+"/scrape")
		checkCounts(t, decodeFullScrape(t, plain.body), hashes)
		gz := rawGet(t, p.addr("http")+"/scrape", "Accept-Encoding", "gzip")
		if !gz.gzipped || !bytes.Equal(gz.body, plain.body) {
			t.Fatalf("gzip: %v, same body: %v", gz.gzipped, bytes.Equal(gz.body, plain.body))
		}
		// The API serves the same body, with the token.
		api := rawGet(t, p.addr("api")+"/api/v1/scrape/full?token="+e2eToken, "Accept-Encoding", "gzip")
		if api.status != 200 || !api.gzipped || !bytes.Equal(api.body, plain.body) {
			t.Fatalf("API: %d gzipped %v", api.status, api.gzipped)
		}
		// Three full scrapes within the interval: one build.
		m := rawGet(t, p.addr("api")+"/metrics")
		parser := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := parser.TextToMetricFamilies(bytes.NewReader(m.body))
		if err != nil {
			t.Fatal(err)
		}
		if n := metricValue(t, fams, "starling_full_scrape_builds_total", nil); n != 1 {
			t.Fatalf("%v builds, want 1", n)
		}
	})

	t.Run("api", func(t *testing.T) {
		p := startTracker(t, "full_scrape = \"api\"\nfull_scrape_interval = 1", "")
		announceAll(t, p)
		for _, u := range []string{"/scrape", "/scrape?token=wrong"} {
			g := rawGet(t, p.addr("http")+u)
			if r := failureReason(t, g.body); !strings.Contains(r, "admin token") {
				t.Fatalf("%s: failure %q", u, r)
			}
		}
		g := rawGet(t, p.addr("http")+"/scrape?token="+e2eToken)
		checkCounts(t, decodeFullScrape(t, g.body), hashes)
		g = rawGet(t, p.addr("http")+"/scrape", "Authorization", "Bearer "+e2eToken)
		checkCounts(t, decodeFullScrape(t, g.body), hashes)
		if g := rawGet(t, p.addr("api")+"/api/v1/scrape/full"); g.status != 500 {
			t.Fatalf("API without token: %d", g.status)
		}
	})

	t.Run("listed", func(t *testing.T) {
		p := startTracker(t, "listed = true\nfull_scrape = \"public\"", "")
		for _, ih := range hashes {
			if code, body := apiPost(t, p.addr("api")+"/api/v1/whitelist/"+ih.HexString()+"?token="+e2eToken); code != 200 {
				t.Fatalf("whitelist: %d %s", code, body)
			}
		}
		announceAll(t, p)
		// Taken off the whitelist, torrent 2 keeps its swarm until the
		// sweep, but a full scrape no longer lists it.
		req, _ := http.NewRequest(http.MethodDelete, p.addr("api")+"/api/v1/whitelist/"+hashes[1].HexString()+"?token="+e2eToken, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("remove from whitelist: %v %v", err, resp)
		}
		resp.Body.Close()
		g := rawGet(t, p.addr("http")+"/scrape")
		checkCounts(t, decodeFullScrape(t, g.body), []infohash.T{hashes[0], hashes[2]})
	})

	t.Run("off by default, request id in the log", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "tracker.toml")
		cfg := strings.Replace(ephemeralConfig(dir, ""), `threshold = "info"`, `threshold = "debug"`, 1)
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		p := start(t, dir, []string{"STARLING_CONFIG_TOML_PATH=" + path})
		g := rawGet(t, p.addr("http")+"/scrape", "X-Request-Id", "e2e-failed-scrape-1")
		if got := string(g.body); got != "d14:failure reason85:Cannot parse query params for scrape request: missing query params for scrape requeste" {
			t.Fatalf("answer %q", got)
		}
		if id := g.header.Get("X-Request-Id"); id != "e2e-failed-scrape-1" {
			t.Fatalf("id %q", id)
		}
		if g := rawGet(t, p.addr("api")+"/api/v1/scrape/full?token="+e2eToken); g.status != 404 {
			t.Fatalf("API full scrape when off: %d", g.status)
		}
		waitFor(t, "the failed request's id in the log", func() bool {
			for _, line := range strings.Split(p.Log(), "\n") {
				if strings.Contains(line, "request_id") && strings.Contains(line, "e2e-failed-scrape-1") {
					return true
				}
			}
			return false
		})
	})
}
