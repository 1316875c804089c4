package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/anacrolix/torrent/tracker"
	"github.com/anacrolix/torrent/types/infohash"
)

const e2eAPIToken = "e2eAdminToken0123456789" // ephemeralConfig's

// swarmState is every torrent as the API shows it, with all its peers.
func swarmState(t *testing.T, p *process) map[string]any {
	t.Helper()
	api := p.addr("api")
	code, body := apiGet(t, api, "/api/v1/torrents?limit=10000&token="+e2eAPIToken)
	if code != 200 {
		t.Fatalf("torrents: %d %s", code, body)
	}
	var list []struct {
		InfoHash string `json:"info_hash"`
	}
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		t.Fatal(err)
	}
	state := map[string]any{}
	for _, tr := range list {
		code, body := apiGet(t, api, "/api/v1/torrent/"+tr.InfoHash+"?token="+e2eAPIToken)
		if code != 200 {
			t.Fatalf("torrent %s: %d %s", tr.InfoHash, code, body)
		}
		var v any
		if err := json.Unmarshal([]byte(body), &v); err != nil {
			t.Fatal(err)
		}
		state[tr.InfoHash] = v
	}
	return state
}

// snapshotConfig is ephemeralConfig with the snapshot in dir and more
// settings of [core] (text that may open further [core.*] sections).
func snapshotConfig(dir, core string) string {
	return ephemeralConfig(dir, core+fmt.Sprintf("\n[core.swarm]\nsnapshot_path = %q\n", filepath.Join(dir, "swarms.snapshot")))
}

// TestSnapshotRestart: peers announced over UDP and HTTP across many
// torrents, with seeders, leechers and completions, come back after a
// SIGTERM and a new start: the same torrents, counts and peers.
func TestSnapshotRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := []string{"STARLING_CONFIG_TOML=" + snapshotConfig(dir, "")}
	p := start(t, dir, cfg)
	udp, http := p.addr("udp")+"/announce", p.addr("http")+"/announce"
	for i := range 40 {
		ih := infohash.T{byte(i), 0xee}
		for k := range 1 + i%4 {
			url := udp
			if k%2 == 1 {
				url = http
			}
			left, ev := int64(1000), tracker.Started
			switch k {
			case 1:
				left = 0
			case 2:
				left, ev = 0, tracker.Completed
			}
			announceWith(t, url, ih, byte(k), uint16(7000+k), left, ev)
		}
	}
	before := swarmState(t, p)
	if len(before) != 40 {
		t.Fatalf("%d torrents before the restart, want 40", len(before))
	}
	if code := p.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d:\n%s", code, p.Log())
	}
	if !strings.Contains(p.Log(), "swarm snapshot written") {
		t.Fatalf("no snapshot written at the stop:\n%s", p.Log())
	}
	p2 := start(t, dir, cfg)
	if !strings.Contains(p2.Log(), "swarms restored from the snapshot") {
		t.Fatalf("no snapshot restored:\n%s", p2.Log())
	}
	after := swarmState(t, p2)
	if !reflect.DeepEqual(before, after) {
		for h, b := range before {
			if !reflect.DeepEqual(b, after[h]) {
				t.Errorf("torrent %s: before %v\nafter %v", h, b, after[h])
			}
		}
		t.Fatalf("%d torrents before, %d after", len(before), len(after))
	}
	// Still a working swarm: a new peer is handed the restored ones.
	resp := announceWith(t, p2.addr("udp")+"/announce", infohash.T{3, 0xee}, 9, 7009, 500, tracker.Started)
	if resp.Seeders != 2 || resp.Leechers != 3 || len(resp.Peers) != 4 {
		t.Fatalf("announce after the restart: %+v", resp)
	}
}

// TestSnapshotExpiry: a peer that would have expired while the tracker
// was down is not restored; one that would not is.
func TestSnapshotExpiry(t *testing.T) {
	dir := t.TempDir()
	cfg := []string{"STARLING_CONFIG_TOML=" + snapshotConfig(dir, "\n[core.tracker_policy]\nmax_peer_timeout = 4\n")}
	p := start(t, dir, cfg)
	ih := infohash.T{0x42}
	began := time.Now()
	announceWith(t, p.addr("udp")+"/announce", ih, 1, 7001, 100, tracker.Started)
	time.Sleep(5 * time.Second)
	announceWith(t, p.addr("udp")+"/announce", ih, 2, 7002, 100, tracker.Started)
	if code := p.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d:\n%s", code, p.Log())
	}
	// Down long enough for the first peer (last seen at 0 s) to be past its
	// 4 s and the 2 s of margin for whole-second times, not the second (5 s).
	time.Sleep(time.Until(began.Add(7500 * time.Millisecond)))
	p2 := start(t, dir, cfg)
	st := swarmState(t, p2)
	tr, _ := st[ih.HexString()].(map[string]any)
	peers, _ := tr["peers"].([]any)
	if len(peers) != 1 {
		t.Fatalf("restored %v, want only the second peer", tr)
	}
	if addr := peers[0].(map[string]any)["peer_addr"]; !strings.HasSuffix(fmt.Sprint(addr), ":7002") {
		t.Fatalf("restored peer %v, want the one on port 7002", peers[0])
	}
	if !strings.Contains(p2.Log(), "expired_while_down=1") {
		t.Fatalf("the log does not count the expired peer:\n%s", p2.Log())
	}
}

// TestSnapshotRefused: a snapshot that is torn, truncated, foreign or
// empty is refused with a clear log line, and the tracker starts with
// empty swarms and serves.
func TestSnapshotRefused(t *testing.T) {
	dir := t.TempDir()
	cfg := []string{"STARLING_CONFIG_TOML=" + snapshotConfig(dir, "")}
	p := start(t, dir, cfg)
	for i := range 5 {
		announceWith(t, p.addr("udp")+"/announce", infohash.T{byte(i), 0x77}, 1, 7001, 100, tracker.Started)
	}
	if code := p.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d:\n%s", code, p.Log())
	}
	path := filepath.Join(dir, "swarms.snapshot")
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	flipped := append([]byte(nil), good...)
	flipped[len(flipped)/2] ^= 1
	for name, data := range map[string][]byte{
		"empty":     nil,
		"truncated": good[:len(good)/2],
		"torn end":  good[:len(good)-3],
		"flipped":   flipped,
		"foreign":   []byte("[core]\nprivate = true\n"),
	} {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			p := start(t, dir, cfg)
			if !strings.Contains(p.Log(), "the swarm snapshot cannot be used") {
				t.Fatalf("no refusal in the log:\n%s", p.Log())
			}
			if st := swarmState(t, p); len(st) != 0 {
				t.Fatalf("started with %d torrents, want none", len(st))
			}
			resp := announceWith(t, p.addr("udp")+"/announce", infohash.T{1, 0x77}, 2, 7002, 0, tracker.Started)
			if resp.Seeders != 1 || resp.Leechers != 0 {
				t.Fatalf("announce: %+v", resp)
			}
			if code := p.stop(syscall.SIGTERM); code != 0 {
				t.Fatalf("exit %d:\n%s", code, p.Log())
			}
		})
	}
}

// TestSnapshotSIGKILL: with periodic snapshots, a SIGKILL loses only what
// changed after the last one.
func TestSnapshotSIGKILL(t *testing.T) {
	dir := t.TempDir()
	cfg := []string{"STARLING_CONFIG_TOML=" + ephemeralConfig(dir, fmt.Sprintf("\n[core.swarm]\nsnapshot_path = %q\nsnapshot_interval = 1\n", filepath.Join(dir, "swarms.snapshot")))}
	p := start(t, dir, cfg)
	early := infohash.T{0x51}
	announceWith(t, p.addr("udp")+"/announce", early, 1, 7001, 100, tracker.Started)
	announceWith(t, p.addr("http")+"/announce", early, 2, 7002, 0, tracker.Completed)
	waitFor(t, "a periodic snapshot", func() bool {
		return strings.Count(p.Log(), "reason=periodic") >= 2 // the second began after the announces
	})
	p.kill()
	p2 := start(t, dir, cfg)
	st := swarmState(t, p2)
	tr, _ := st[early.HexString()].(map[string]any)
	if tr["seeders"] != 1.0 || tr["leechers"] != 1.0 || tr["completed"] != 1.0 {
		t.Fatalf("after SIGKILL: %v, want the peers announced before the last periodic snapshot", tr)
	}
}
