package adminapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/starling-tracker/starling/internal/adminapi"
	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/swarm"
)

// limitStore records the limit /torrents passes to the store.
type limitStore struct {
	swarm.Store
	limit int
}

func (s *limitStore) Torrents(ctx context.Context, offset, limit int) ([]swarm.TorrentSummary, error) {
	s.limit = limit
	return s.Store.Torrents(ctx, offset, limit)
}

// TestBoundedAnswers: /torrents reads at most MaxLimit torrents whatever
// limit asks, and /torrent/{info_hash} lists at most MaxTorrentPeers peers
// with exact counts.
func TestBoundedAnswers(t *testing.T) {
	ls := &limitStore{}
	e := newEnv(t, func(_ *adminapi.Config, d *adminapi.Deps) {
		ls.Store = d.Store
		d.Store = ls
	})
	for _, tc := range []struct {
		query string
		want  int
	}{
		{"", 4000},
		{"&limit=10", 10},
		{"&limit=10000", adminapi.MaxLimit},
		{"&limit=10001", adminapi.MaxLimit},
		{"&limit=4294967295", adminapi.MaxLimit},
	} {
		if a := e.do("GET", "/api/v1/torrents?token="+token+tc.query, ""); a.status != 200 || ls.limit != tc.want {
			t.Errorf("%q: status %d, store asked for %d torrents, want %d", tc.query, a.status, ls.limit, tc.want)
		}
	}

	h := bittorrent.InfoHash{0x42}
	n := adminapi.MaxTorrentPeers + 5
	for i := range n {
		e.announce(h, fmt.Sprintf("-AP0001-%012d", i), fmt.Sprintf("10.%d.%d.%d:6881", i>>16&255, i>>8&255, i&255), 100, bittorrent.EventStarted)
	}
	a := e.do("GET", "/api/v1/torrent/"+h.String()+"?token="+token, "")
	var body struct {
		Leechers int   `json:"leechers"`
		Peers    []any `json:"peers"`
	}
	if err := json.Unmarshal([]byte(a.body), &body); err != nil {
		t.Fatal(err, strings.TrimSpace(a.body[:min(len(a.body), 200)]))
	}
	if body.Leechers != n || len(body.Peers) != adminapi.MaxTorrentPeers {
		t.Fatalf("%d leechers and %d peers listed, want %d and %d", body.Leechers, len(body.Peers), n, adminapi.MaxTorrentPeers)
	}
}
