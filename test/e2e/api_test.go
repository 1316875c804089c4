package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/anacrolix/torrent/tracker"
	"github.com/anacrolix/torrent/types/infohash"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// apiGet fetches path from the API and returns status and body.
func apiGet(t *testing.T, base, path string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func metricValue(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("/metrics lacks %s", name)
	}
next:
	for _, m := range f.GetMetric() {
		for _, l := range m.GetLabel() {
			if v, ok := labels[l.GetName()]; ok && v != l.GetValue() {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	t.Fatalf("/metrics lacks %s%v", name, labels)
	return 0
}

// TestAPICrossTransport announces and scrapes through the UDP and HTTP
// trackers with anacrolix's client, then reads the result back through the
// REST API (stats, torrent, torrents) and /metrics, as an operator would.
func TestAPICrossTransport(t *testing.T) {
	p := startTracker(t, "", "")
	udp := p.addr("udp") + "/announce"
	httpURL := p.addr("http") + "/announce"
	api := p.addr("api")
	a, b := infohash.T{0xaa, 1}, infohash.T{0xbb, 2}

	announceWith(t, udp, a, 1, 6881, 0, tracker.Started)       // seeder over UDP
	announceWith(t, httpURL, a, 2, 6882, 100, tracker.Started) // leecher over HTTP
	announceWith(t, httpURL, b, 3, 6883, 100, tracker.Started) // leecher of another torrent
	c, err := tracker.NewClient(udp, tracker.NewClientOpts{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Scrape(ctx, []infohash.T{a}); err != nil {
		t.Fatalf("udp scrape: %v", err)
	}

	t.Run("stats", func(t *testing.T) {
		status, body := apiGet(t, api, "/api/v1/stats?token="+e2eToken)
		var s map[string]uint64
		if err := json.Unmarshal([]byte(body), &s); err != nil || status != 200 {
			t.Fatalf("%d %s %v", status, body, err)
		}
		// Torrust's 16 fields, then Starling's capacity limits and use.
		if len(s) != 16+4 {
			t.Errorf("stats has %d fields, want Torrust's 16 and Starling's 4: %s", len(s), body)
		}
		for _, k := range []string{"max_torrents", "max_peers"} {
			if s[k] == 0 {
				t.Errorf("%s = 0, want the limit derived from memory: %s", k, body)
			}
		}
		want := map[string]uint64{
			"peers": 3, "max_peers_per_torrent": 0,
			"torrents": 2, "seeders": 1, "leechers": 2, "completed": 0,
			"udp4_announces_handled": 1, "udp4_scrapes_handled": 1,
			"tcp4_announces_handled": 2, "tcp4_scrapes_handled": 0,
			"tcp4_connections_handled": 2, // one per successful HTTP announce or scrape
			"udp6_announces_handled":   0, "tcp6_announces_handled": 0,
		}
		for k, v := range want {
			if s[k] != v {
				t.Errorf("%s = %d, want %d", k, s[k], v)
			}
		}
		// anacrolix connects once per client, maybe again after expiry.
		if s["udp4_connections_handled"] < 1 {
			t.Errorf("udp4_connections_handled = %d, want at least 1", s["udp4_connections_handled"])
		}
	})

	t.Run("torrent", func(t *testing.T) {
		status, body := apiGet(t, api, "/api/v1/torrent/"+a.HexString()+"?token="+e2eToken)
		var tor struct {
			InfoHash string `json:"info_hash"`
			Seeders  int    `json:"seeders"`
			Leechers int    `json:"leechers"`
			Peers    []struct {
				PeerID struct {
					ID     string  `json:"id"`
					Client *string `json:"client"`
				} `json:"peer_id"`
				PeerAddr string `json:"peer_addr"`
				Updated  int64  `json:"updated"`
				Left     int64  `json:"left"`
				Event    string `json:"event"`
			} `json:"peers"`
		}
		if err := json.Unmarshal([]byte(body), &tor); err != nil || status != 200 {
			t.Fatalf("%d %s %v", status, body, err)
		}
		if tor.InfoHash != a.HexString() || tor.Seeders != 1 || tor.Leechers != 1 || len(tor.Peers) != 2 {
			t.Fatalf("torrent %s", body)
		}
		addrs := map[string]int64{}
		now := time.Now().UnixMilli()
		for _, peer := range tor.Peers {
			addrs[peer.PeerAddr] = peer.Left
			if peer.PeerID.Client == nil || *peer.PeerID.Client != "qBittorrent" || !strings.HasPrefix(peer.PeerID.ID, "0x2d7142343235302d") {
				t.Errorf("peer id %+v", peer.PeerID)
			}
			if peer.Event != "Started" || peer.Updated > now || peer.Updated < now-60_000 {
				t.Errorf("peer %+v (now %d)", peer, now)
			}
		}
		if left, ok := addrs["127.0.0.1:6881"]; !ok || left != 0 {
			t.Errorf("UDP seeder missing: %v", addrs)
		}
		if left, ok := addrs["127.0.0.1:6882"]; !ok || left != 100 {
			t.Errorf("HTTP leecher missing: %v", addrs)
		}
	})

	t.Run("torrents", func(t *testing.T) {
		status, body := apiGet(t, api, "/api/v1/torrents?token="+e2eToken)
		want := `[{"info_hash":"` + a.HexString() + `","seeders":1,"completed":0,"leechers":1},` +
			`{"info_hash":"` + b.HexString() + `","seeders":0,"completed":0,"leechers":1}]`
		if status != 200 || body != want {
			t.Fatalf("%d %s\nwant %s", status, body, want)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		status, body := apiGet(t, api, "/metrics")
		if status != 200 {
			t.Fatalf("/metrics: %d", status)
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := parser.TextToMetricFamilies(strings.NewReader(body))
		if err != nil {
			t.Fatalf("parse /metrics: %v", err)
		}
		tests := []struct {
			name   string
			labels map[string]string
			want   float64
		}{
			{"starling_requests_total", map[string]string{"protocol": "udp", "family": "ipv4", "kind": "announce"}, 1},
			{"starling_requests_total", map[string]string{"protocol": "udp", "family": "ipv4", "kind": "scrape"}, 1},
			{"starling_requests_total", map[string]string{"protocol": "http", "family": "ipv4", "kind": "announce"}, 2},
			{"starling_torrents", nil, 2},
			{"starling_peers", map[string]string{"role": "seeder"}, 1},
			{"starling_peers", map[string]string{"role": "leecher"}, 2},
			{"starling_completed_downloads", nil, 0},
		}
		for _, tt := range tests {
			if got := metricValue(t, fams, tt.name, tt.labels); got != tt.want {
				t.Errorf("%s%v = %g, want %g", tt.name, tt.labels, got, tt.want)
			}
		}
		if n := len(fams["starling_request_duration_seconds"].GetMetric()); n != 5 {
			t.Errorf("starling_request_duration_seconds has %d series, want 5", n)
		}
	})

	t.Run("auth", func(t *testing.T) {
		if status, body := apiGet(t, api, "/api/v1/stats"); status != 500 || body != `Unhandled rejection: Err { reason: "unauthorized" }` {
			t.Fatalf("no token: %d %q", status, body)
		}
		if strings.Contains(p.Log(), e2eToken) {
			t.Fatal("the access token reached the log")
		}
	})
}
