package e2e

import (
	"context"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anacrolix/torrent/tracker"
	"github.com/anacrolix/torrent/types/infohash"
)

// TestUpgradeKeepsHTTPAnnounces: HTTP announces go on through upgrades,
// each a new peer of one torrent, and every one that was answered is in
// the swarm afterwards. The old process answers HTTP until the new one
// serves, after its swarms were written out: what those announces change
// must reach the new process too (before, they were lost: 143 of 11,351
// in the two upgrades here). A hundred thousand peers of other torrents make the
// pause, and so that window, last longer.
func TestUpgradeKeepsHTTPAnnounces(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "starling.pid")
	p := start(t, dir, []string{"STARLING_CONFIG_TOML=" + snapshotConfig(dir, "")}, "serve", "--pid-file", pidFile)
	udpAddr := strings.TrimPrefix(p.addr("udp"), "udp://")
	walk := exec.Command(binary, "bench", "udp", "--addr", udpAddr, "--walk", "--peers", "100000", "--torrents", "5000",
		"--duration", "60s", "--sockets", "2", "--source-ips", "1", "--window", "64", "--batch=false")
	if out, err := walk.CombinedOutput(); err != nil {
		t.Fatalf("loading peers: %v\n%s", err, out)
	}

	// Peer n is on port 10000+n%perTorrent of torrent n/perTorrent: every
	// announce a new peer, however fast the machine.
	const perTorrent = 40000
	torrent := func(k int) infohash.T { return infohash.T{0x5e, 0x11, 0x0a, byte(k)} }
	var answered, sent atomic.Int64
	var next atomic.Uint32
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := tracker.NewClient(p.addr("http")+"/announce", tracker.NewClientOpts{})
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			for {
				select {
				case <-stop:
					return
				default:
				}
				n := next.Add(1)
				var pid [20]byte
				copy(pid[:], "-TR4060-upgrade-")
				pid[16], pid[17], pid[18], pid[19] = byte(g), byte(n>>16), byte(n>>8), byte(n)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				sent.Add(1)
				_, err := c.Announce(ctx, tracker.AnnounceRequest{
					InfoHash: torrent(int(n / perTorrent)), PeerId: pid, Port: uint16(10000 + n%perTorrent), Left: 100,
					Event: tracker.Started, NumWant: 5,
				}, tracker.AnnounceOpt{})
				cancel()
				if err == nil {
					answered.Add(1)
				}
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	for n := range 2 {
		out, code := run(t, dir, nil, "upgrade", "--pid-file", pidFile, "--timeout", "60s")
		if code != 0 {
			close(stop)
			wg.Wait()
			t.Fatalf("upgrade %d (exit %d): %s\n%s", n+1, code, out, p.Log())
		}
		if _, err := strconv.Atoi(strings.TrimSpace(out)); err != nil {
			t.Fatalf("upgrade %d printed %q", n+1, out)
		}
		time.Sleep(700 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	var hashes []infohash.T
	for k := range int(next.Load()/perTorrent) + 1 {
		hashes = append(hashes, torrent(k))
	}
	if len(hashes) > 74 {
		t.Fatalf("%d announces: more torrents than a scrape holds", next.Load())
	}

	// The last old process may still be applying what it answered last.
	var leechers int64
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := tracker.NewClient(p.addr("udp")+"/announce", tracker.NewClientOpts{})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := contextTimeout(5 * time.Second)
		sc, err := c.Scrape(ctx, hashes)
		cancel()
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		leechers = 0
		for _, s := range sc {
			leechers += int64(s.Leechers)
		}
		if leechers >= answered.Load() || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("%d announces sent, %d answered, %d leechers after the upgrades\n%s", sent.Load(), answered.Load(), leechers, upgradeSteps(p.Log()))
	if answered.Load() < 100 {
		t.Fatalf("only %d announces answered", answered.Load())
	}
	if leechers < answered.Load() || leechers > sent.Load() {
		t.Errorf("%d leechers after the upgrades: %d announces of a new peer were answered (%d sent)", leechers, answered.Load(), sent.Load())
	}
	stopLast(t, p, pidFile)
}
