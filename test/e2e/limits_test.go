package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/anacrolix/torrent/tracker"
	"github.com/anacrolix/torrent/types/infohash"
)

// TestCapacityLimit: at max_peers_per_torrent, a new peer gets "tracker is
// full, try later" over UDP and HTTP while the peers already there are
// served; the start-up log names the limits and a metric counts the
// refusals.
func TestCapacityLimit(t *testing.T) {
	dir := t.TempDir()
	p := start(t, dir, []string{"STARLING_CONFIG_TOML=" + ephemeralConfig(dir, "\n[core.limits]\nmax_peers_per_torrent = 2\n")})
	if !strings.Contains(p.Log(), "capacity limits") || !strings.Contains(p.Log(), "max_peers_per_torrent=2") {
		t.Fatalf("the limits are not in the start-up log:\n%s", p.Log())
	}
	ih := infohash.T{0xf0}
	announceWith(t, p.addr("udp")+"/announce", ih, 1, 7001, 10, tracker.Started)
	announceWith(t, p.addr("http")+"/announce", ih, 2, 7002, 10, tracker.Started)
	for _, url := range []string{p.addr("udp") + "/announce", p.addr("http") + "/announce"} {
		c, err := tracker.NewClient(url, tracker.NewClientOpts{})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var pid [20]byte
		copy(pid[:], "-LM0001-limits-peer3")
		_, err = c.Announce(ctx, tracker.AnnounceRequest{InfoHash: ih, PeerId: pid, Port: 7003, Left: 1, Event: tracker.Started}, tracker.AnnounceOpt{})
		cancel()
		c.Close()
		if err == nil || !strings.Contains(err.Error(), "tracker is full, try later") {
			t.Errorf("%s: a third peer got %v, want \"tracker is full, try later\"", url, err)
		}
	}
	if r := announceWith(t, p.addr("udp")+"/announce", ih, 1, 7001, 10, tracker.Started); r.Leechers != 2 || len(r.Peers) != 1 {
		t.Fatalf("a stored peer at the limit: %+v", r)
	}
	_, body := apiGet(t, p.addr("api"), "/metrics")
	if !strings.Contains(body, `starling_announces_refused_full_total{limit="max_peers_per_torrent"} 2`) ||
		!strings.Contains(body, `starling_limit{limit="max_peers_per_torrent"} 2`) {
		t.Fatalf("metrics:\n%s", grepLines(body, "limit"))
	}
	waitFor(t, "the log line", func() bool { return strings.Contains(p.Log(), "capacity limit reached") })
}
