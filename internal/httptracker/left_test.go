package httptracker

import (
	"fmt"
	"net/url"
	"testing"

	"github.com/starling-tracker/starling/internal/tracker"
)

// TestLeftOverHTTP: an announce without left is a leecher (it has not said
// it is complete), left=0 a seeder; two peers that both report left=0 (a
// magnet download before it has the metadata, and the real seeder) are
// handed each other, as the swarm has no leecher to hand them.
func TestLeftOverHTTP(t *testing.T) {
	r := newRules(t, tracker.DefaultConfig())
	srv := startServer(t, "tcp4", Config{}, r, r.counters)
	c := newClient(t, nil)
	announce := func(n int, left string) map[string]any {
		t.Helper()
		q := "info_hash=" + url.QueryEscape(string(testHash[:])) +
			"&peer_id=" + url.QueryEscape(fmt.Sprintf("-ST0001-%012d", n)) +
			fmt.Sprintf("&port=%d", 10000+n) + left
		_, _, body := get(t, c, srv.URL()+"/announce?"+q, nil)
		m := decode(t, body)
		if fr, ok := m["failure reason"]; ok {
			t.Fatalf("peer %d: failure %q", n, fr)
		}
		return m
	}
	scrape := func() (complete, incomplete any) {
		t.Helper()
		_, _, body := get(t, c, srv.URL()+"/scrape?info_hash="+url.QueryEscape(string(testHash[:])), nil)
		f := decode(t, body)["files"].(map[string]any)[string(testHash[:])].(map[string]any)
		return f["complete"], f["incomplete"]
	}

	announce(1, "&left=0")
	if m := announce(2, "&left=0"); len(m["peers"].([]any)) != 1 {
		t.Fatalf("a seeder among seeders only was handed %v, want the other seeder", m["peers"])
	}
	m := announce(3, "")
	if m["complete"] != int64(2) || m["incomplete"] != int64(1) || len(m["peers"].([]any)) != 2 {
		t.Fatalf("announce without left: %v, want 2 seeders, itself a leecher, and both seeders handed", m)
	}
	if s, l := scrape(); s != int64(2) || l != int64(1) {
		t.Fatalf("scrape: %v seeders, %v leechers; want 2 and 1", s, l)
	}
	// Now the swarm has a leecher: a seeder gets it alone.
	peers := announce(1, "&left=0")["peers"].([]any)
	if len(peers) != 1 || peers[0].(map[string]any)["port"] != int64(10003) {
		t.Fatalf("seeder with a leecher in the swarm was handed %v, want only the leecher", peers)
	}
}
