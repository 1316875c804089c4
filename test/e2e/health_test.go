package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"syscall"
	"testing"
)

// TestHealthCheck: the health check probes every running listener for real
// and `starling healthcheck` turns its answer into an exit code.
func TestHealthCheck(t *testing.T) {
	dir := t.TempDir()
	p := start(t, dir, []string{"STARLING_CONFIG_TOML=" + ephemeralConfig(dir, "")})
	url := p.addr("health") + "/health_check"

	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	var report struct {
		Status  string `json:"status"`
		Message string `json:"message"`
		Details []struct {
			Binding string                     `json:"binding"`
			Info    string                     `json:"info"`
			Result  map[string]json.RawMessage `json:"result"`
		} `json:"details"`
	}
	err = json.NewDecoder(resp.Body).Decode(&report)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if report.Status != "Ok" || report.Message != "" || len(report.Details) != 4 {
		t.Fatalf("health report %+v", report)
	}
	for _, d := range report.Details {
		if _, ok := d.Result["Ok"]; !ok {
			t.Errorf("listener %s (%s) not healthy: %s", d.Binding, d.Info, d.Result)
		}
	}
	for _, want := range []string{"udp tracker", "http tracker", "api health check", "checking the database at: sqlite3 "} {
		found := false
		for _, d := range report.Details {
			found = found || strings.Contains(d.Info, want)
		}
		if !found {
			t.Errorf("no %q target in %+v", want, report.Details)
		}
	}

	if out, code := run(t, dir, nil, "healthcheck", url); code != 0 {
		t.Fatalf("starling healthcheck exit %d: %s", code, out)
	}
	if code := p.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if out, code := run(t, dir, nil, "healthcheck", url); code == 0 {
		t.Fatalf("starling healthcheck of a stopped tracker exit 0: %s", out)
	}
}
