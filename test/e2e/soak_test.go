package e2e

import (
	"strings"
	"testing"
)

// TestSoak runs the two-minute soak CI runs (the one-hour one is in
// BENCHMARKS.md): a mixed, churning load at 1,000 requests a second, with
// peers expiring after 20 s so the swarms level off in the first half.
// Nothing may fail, and over the second half RSS may grow less than 5 %,
// goroutines and open files not at all.
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("two minutes")
	}
	dir := t.TempDir()
	cfg := ephemeralConfig(dir, "inactive_peer_cleanup_interval = 5\n\n[core.tracker_policy]\nmax_peer_timeout = 20\n")
	p := start(t, dir, []string{"STARLING_CONFIG_TOML=" + cfg})
	out, code := run(t, dir, []string{"STARLING_SOAK_TOKEN=" + e2eAPIToken}, "bench", "soak",
		"--udp", p.addr("udp"), "--http", p.addr("http"), "--api", p.addr("api"),
		"--duration", "2m", "--report", "10s", "--rate", "1000", "--torrents", "10000", "--swarm", "20")
	t.Logf("starling bench soak:\n%s", out)
	if code != 0 || !strings.Contains(out, "verdict: OK") {
		t.Fatalf("soak verdict failed (exit %d); tracker log:\n%s", code, p.Log())
	}
}
