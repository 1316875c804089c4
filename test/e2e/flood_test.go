package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// rssMiB is a process's resident set in MiB, from /proc.
func rssMiB(t *testing.T, pid int) float64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		var kb float64
		if _, err := fmt.Sscanf(line, "VmRSS: %f kB", &kb); err == nil {
			return kb / 1024
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// TestMemoryAfterFlood: a flood of announces for up to 400,000 random hashes
// (starling bench udp) grows the tracker's RSS; once its peers expire
// and are swept, RSS comes back within 20 % of what it was before the
// flood plus 16 MiB.
func TestMemoryAfterFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("floods a tracker")
	}
	dir := t.TempDir()
	cfg := ephemeralConfig(dir, "inactive_peer_cleanup_interval = 2\n\n[core.tracker_policy]\nmax_peer_timeout = 5\n\n[core.swarm]\nsnapshot_path = \"\"\n")
	p := start(t, dir, []string{"STARLING_CONFIG_TOML=" + cfg})
	pid := p.cmd.Process.Pid
	time.Sleep(time.Second)
	before := rssMiB(t, pid)
	out, code := run(t, dir, nil, "bench", "udp", "--addr", strings.TrimPrefix(p.addr("udp"), "udp://"),
		"--torrents", "400000", "--peers", "400000", "--duration", "8s", "--sockets", "2", "--source-ips", "1")
	if code != 0 {
		t.Fatalf("bench udp exited %d:\n%s", code, out)
	}
	during := rssMiB(t, pid)
	torrents := func() int {
		code, body := apiGet(t, p.addr("api"), "/api/v1/stats?token="+e2eAPIToken)
		var st struct {
			Torrents int `json:"torrents"`
		}
		if code != 200 || json.Unmarshal([]byte(body), &st) != nil {
			t.Fatalf("stats: %d %s", code, body)
		}
		return st.Torrents
	}
	if n := torrents(); n < 100_000 {
		t.Fatalf("the flood created %d torrents; the test wants at least 100,000:\n%s", n, out)
	}
	limit := before*1.2 + 16
	if during < limit+16 {
		t.Fatalf("RSS %.1f MiB before, %.1f MiB after the flood: too small a flood to tell", before, during)
	}
	waitFor(t, "every flooded torrent to be swept", func() bool { return torrents() == 0 })
	deadline := time.Now().Add(20 * time.Second)
	after := rssMiB(t, pid)
	for after > limit && time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
		after = rssMiB(t, pid)
	}
	t.Logf("RSS %.1f MiB before the flood, %.1f MiB right after it, %.1f MiB once it expired", before, during, after)
	if after > limit {
		t.Fatalf("RSS %.1f MiB once the flood expired, more than %.1f MiB (%.1f MiB before it, %.1f MiB during); tracker log:\n%s", after, limit, before, during, p.Log())
	}
}
