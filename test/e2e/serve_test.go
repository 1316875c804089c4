package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/anacrolix/torrent/tracker"
	"github.com/anacrolix/torrent/types/infohash"
)

func announceWith(t *testing.T, url string, ih infohash.T, id byte, port uint16, left int64, event tracker.AnnounceEvent) tracker.AnnounceResponse {
	t.Helper()
	c, err := tracker.NewClient(url, tracker.NewClientOpts{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var pid [20]byte
	copy(pid[:], "-qB4250-e2e-peer-")
	pid[19] = id
	resp, err := c.Announce(ctx, tracker.AnnounceRequest{
		InfoHash: ih, PeerId: pid, Port: port, Left: left, Event: event, NumWant: -1,
	}, tracker.AnnounceOpt{})
	if err != nil {
		t.Fatalf("announce to %s: %v", url, err)
	}
	return resp
}

// TestServe runs the binary on an ephemeral configuration, announces and
// scrapes over UDP and HTTP with an independent client, and stops it with
// SIGTERM and SIGINT.
func TestServe(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			dir := t.TempDir()
			p := start(t, dir, []string{"STARLING_CONFIG_TOML=" + ephemeralConfig(dir, "")})
			udp := p.addr("udp") + "/announce"
			http := p.addr("http") + "/announce"
			ih := infohash.T{1, 2, 3}

			first := announceWith(t, udp, ih, 1, 6881, 0, tracker.Started)
			if first.Seeders != 1 || first.Leechers != 0 || len(first.Peers) != 0 {
				t.Fatalf("first announce: %+v", first)
			}
			second := announceWith(t, http, ih, 2, 6882, 100, tracker.Started)
			if second.Seeders != 1 || second.Leechers != 1 || len(second.Peers) != 1 || second.Peers[0].Port != 6881 {
				t.Fatalf("second announce: %+v", second)
			}
			c, err := tracker.NewClient(udp, tracker.NewClientOpts{})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			sc, err := c.Scrape(ctx, []infohash.T{ih, {9}})
			if err != nil {
				t.Fatal(err)
			}
			if len(sc) != 2 || sc[0].Seeders != 1 || sc[0].Leechers != 1 || sc[1].Seeders != 0 {
				t.Fatalf("scrape: %+v", sc)
			}
			if code := p.stop(sig); code != 0 {
				t.Fatalf("exit code %d after %v:\n%s", code, sig, p.Log())
			}
			if !strings.Contains(p.Log(), "msg=stopped") {
				t.Fatalf("no clean stop in the log:\n%s", p.Log())
			}
		})
	}
}

func TestConfigCommands(t *testing.T) {
	dir := t.TempDir()
	out, code := run(t, dir, nil, "config", "default")
	if code != 0 || !strings.Contains(out, "schema_version") || !strings.Contains(out, "[[udp_trackers]]") {
		t.Fatalf("config default (exit %d):\n%s", code, out)
	}
	def := filepath.Join(dir, "default.toml")
	if err := os.WriteFile(def, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, code := run(t, dir, nil, "config", "check", def); code != 0 || !strings.Contains(out, "ok") {
		t.Fatalf("config check of the default (exit %d):\n%s", code, out)
	}

	bad := filepath.Join(dir, "bad.toml")
	err := os.WriteFile(bad, []byte(`[core]
privte = true
[core.announce_policy]
interval = "soon"
[[udp_trackers]]
bind_address = "nowhere"
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	out, code = run(t, dir, nil, "config", "check", bad)
	if code == 0 {
		t.Fatalf("config check accepted a bad file:\n%s", out)
	}
	for _, key := range []string{"core.privte", "core.announce_policy.interval", "udp_trackers"} {
		if !strings.Contains(out, key) {
			t.Errorf("config check does not name %s:\n%s", key, out)
		}
	}

	// A database URL that serve would refuse, without connecting to it.
	for _, path := range []string{"mysql://root@127.0.0.1:1/db?foo=bar", "mysql://root@127.0.0.1:1/db?ssl-mode=BOGUS", "mysql://127.0.0.1:1"} {
		dbFile := filepath.Join(dir, "db.toml")
		if err := os.WriteFile(dbFile, []byte("[core.database]\ndriver = \"mysql\"\npath = \""+path+"\"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		out, code = run(t, dir, nil, "config", "check", dbFile)
		if code == 0 || !strings.Contains(out, "core.database.path") {
			t.Errorf("config check of %s (exit %d):\n%s", path, code, out)
		}
	}
}

// TestBadConfigStopsStartup: the tracker refuses to start on an unknown key
// and says which.
func TestBadConfigStopsStartup(t *testing.T) {
	dir := t.TempDir()
	cfg := ephemeralConfig(dir, "privte = true")
	out, code := run(t, dir, []string{"STARLING_CONFIG_TOML=" + cfg})
	if code == 0 || !strings.Contains(out, "core.privte") {
		t.Fatalf("exit %d, output:\n%s", code, out)
	}
}

func TestVersion(t *testing.T) {
	out, code := run(t, t.TempDir(), nil, "version")
	if code != 0 || !strings.HasPrefix(out, "starling ") {
		t.Fatalf("version (exit %d): %s", code, out)
	}
}
