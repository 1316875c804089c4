package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anacrolix/torrent/tracker"
	"github.com/anacrolix/torrent/types/infohash"
)

const (
	e2eToken  = "e2eAdminToken0123456789"
	checkHash = "9c38422213e30bff212b30c360d26f9a02136422"
	otherHash = "0123456789abcdef0123456789abcdef01234567"
)

// tool runs `starling args...` to completion with exactly env (plus PATH and
// HOME) and returns stdout and stderr apart: stdout is the JSON.
func tool(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	dir := t.TempDir()
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}, env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("run starling %v: %v", args, err)
	}
	return out.String(), errOut.String(), cmd.ProcessState.ExitCode()
}

// announceJSON is the output of `starling client announce` for one hash.
type announceJSON struct {
	URL           string   `json:"url"`
	InfoHash      string   `json:"info_hash"`
	Interval      *uint32  `json:"interval"`
	MinInterval   uint32   `json:"min_interval"`
	Seeders       uint32   `json:"seeders"`
	Leechers      uint32   `json:"leechers"`
	Peers         []string `json:"peers"`
	FailureReason string   `json:"failure_reason"`
}

type scrapeJSON struct {
	URL   string `json:"url"`
	Files []struct {
		InfoHash  string `json:"info_hash"`
		Seeders   uint32 `json:"seeders"`
		Completed uint32 `json:"completed"`
		Leechers  uint32 `json:"leechers"`
	} `json:"files"`
	FailureReason string `json:"failure_reason"`
}

type checkJSON struct {
	URL    string `json:"url"`
	Kind   string `json:"kind"`
	Status struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"status"`
	Steps []struct {
		Step   string `json:"step"`
		Status struct {
			Code string `json:"code"`
		} `json:"status"`
	} `json:"steps"`
}

func decodeAll[T any](t *testing.T, s string) []T {
	t.Helper()
	var all []T
	dec := json.NewDecoder(strings.NewReader(s))
	for {
		var v T
		if err := dec.Decode(&v); err == io.EOF {
			return all
		} else if err != nil {
			t.Fatalf("output is not a JSON stream: %v\n%s", err, s)
		}
		all = append(all, v)
	}
}

func mustClient(t *testing.T, wantCode int, args ...string) (string, string) {
	t.Helper()
	out, errOut, code := tool(t, nil, append([]string{"client"}, args...)...)
	if code != wantCode {
		t.Fatalf("starling client %v: exit %d, want %d\nstdout: %s\nstderr: %s", args, code, wantCode, out, errOut)
	}
	return out, errOut
}

// startTracker starts starling on the ephemeral configuration with the given
// [core] lines and extra TOML appended.
func startTracker(t *testing.T, core, extra string) *process {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "tracker.toml")
	if err := os.WriteFile(path, []byte(ephemeralConfig(dir, core)+extra), 0o600); err != nil {
		t.Fatal(err)
	}
	return start(t, dir, []string{"STARLING_CONFIG_TOML_PATH=" + path})
}

func hostPort(u string) string {
	_, hp, _ := strings.Cut(u, "://")
	return hp
}

// anacrolixAnnounce announces with anacrolix's tracker client, independent of
// ours, and returns its view of the answer.
func anacrolixAnnounce(t *testing.T, url, hexHash string, port uint16, left int64) tracker.AnnounceResponse {
	t.Helper()
	ih := infohash.FromHexString(hexHash)
	var pid [20]byte
	copy(pid[:], fmt.Sprintf("-AN0001-%012d", port))
	res, err := tracker.Announce{
		TrackerUrl: url,
		Request: tracker.AnnounceRequest{
			InfoHash: ih, PeerId: pid, Port: port, Left: left, NumWant: -1, Event: tracker.Started,
		},
		Context: context.Background(),
	}.Do()
	if err != nil {
		t.Fatalf("anacrolix announce to %s: %v", url, err)
	}
	return res
}

func TestClientPublic(t *testing.T) {
	extra := ""
	if ln, err := net.ListenPacket("udp6", "[::1]:0"); err == nil {
		ln.Close()
		extra = "\n[[udp_trackers]]\nbind_address = \"[::1]:0\"\n"
	}
	p := startTracker(t, "private = false\nlisted = false", extra)
	udpURL, httpURL := p.addr("udp"), p.addr("http")

	// A leecher announced by anacrolix over UDP, a seeder by anacrolix over HTTP.
	anacrolixAnnounce(t, udpURL, checkHash, 7001, 100)
	anacrolixAnnounce(t, httpURL+"/announce", checkHash, 7002, 0)

	t.Run("udp announce", func(t *testing.T) {
		out, _ := mustClient(t, 0, "announce", udpURL, checkHash, "--port", "7003", "--left", "10", "--event", "started")
		rs := decodeAll[announceJSON](t, out)
		if len(rs) != 1 || rs[0].Interval == nil || rs[0].InfoHash != checkHash || rs[0].URL != udpURL {
			t.Fatalf("output %s", out)
		}
		// A leecher is handed both others; the tracker counts itself too.
		slices.Sort(rs[0].Peers)
		if !slices.Equal(rs[0].Peers, []string{"127.0.0.1:7001", "127.0.0.1:7002"}) || rs[0].Seeders != 1 || rs[0].Leechers != 2 {
			t.Errorf("answer %+v", rs[0])
		}
	})
	t.Run("http announce, two hashes, compact and not", func(t *testing.T) {
		for _, compact := range []string{"", "--no-compact"} {
			args := []string{"announce", httpURL + "/announce", checkHash, otherHash, "--port", "7004", "--left", "5"}
			if compact != "" {
				args = append(args, compact)
			}
			out, _ := mustClient(t, 0, args...)
			rs := decodeAll[announceJSON](t, out)
			if len(rs) != 2 || rs[0].InfoHash != checkHash || rs[1].InfoHash != otherHash || rs[0].MinInterval == 0 {
				t.Fatalf("output %s", out)
			}
			if !slices.Contains(rs[0].Peers, "127.0.0.1:7002") || len(rs[1].Peers) != 0 {
				t.Errorf("peers %v and %v", rs[0].Peers, rs[1].Peers)
			}
		}
	})
	t.Run("scrape over UDP and HTTP agrees", func(t *testing.T) {
		var views []scrapeJSON
		for _, u := range []string{udpURL, httpURL} {
			out, _ := mustClient(t, 0, "scrape", u, checkHash, otherHash)
			rs := decodeAll[scrapeJSON](t, out)
			if len(rs) != 1 || len(rs[0].Files) != 2 {
				t.Fatalf("output %s", out)
			}
			views = append(views, rs[0])
		}
		f := views[0].Files[0]
		if f.InfoHash != checkHash || f.Seeders != 1 || f.Leechers != 3 {
			t.Errorf("UDP scrape %+v, want 1 seeder and 3 leechers", f)
		}
		for i := range views[0].Files {
			a, b := views[0].Files[i], views[1].Files[i]
			if a.InfoHash != b.InfoHash || a.Seeders != b.Seeders || a.Leechers != b.Leechers || a.Completed != b.Completed {
				t.Errorf("UDP %+v and HTTP %+v differ", a, b)
			}
		}
	})
	t.Run("stopped removes the peer", func(t *testing.T) {
		mustClient(t, 0, "announce", udpURL, checkHash, "--port", "7003", "--left", "10", "--event", "stopped")
		out, _ := mustClient(t, 0, "scrape", udpURL, checkHash)
		if rs := decodeAll[scrapeJSON](t, out); rs[0].Files[0].Leechers != 2 {
			t.Errorf("after stopped: %s", out)
		}
	})
	t.Run("ipv4 only to localhost", func(t *testing.T) {
		u := "udp://localhost:" + strings.Split(hostPort(udpURL), ":")[1]
		mustClient(t, 0, "scrape", u, checkHash, "--ip-family", "4")
	})
	if len(p.addrs["udp"]) > 1 {
		t.Run("ipv6 announce has 18-byte peers", func(t *testing.T) {
			v6 := p.addrs["udp"][1]
			mustClient(t, 0, "announce", v6, checkHash, "--port", "7010", "--left", "1", "--ip-family", "6")
			out, _ := mustClient(t, 0, "announce", v6, checkHash, "--port", "7011", "--left", "1", "--ip-family", "6")
			rs := decodeAll[announceJSON](t, out)
			if len(rs) != 1 || !slices.Contains(rs[0].Peers, "[::1]:7010") {
				t.Fatalf("output %s", out)
			}
			for _, peer := range rs[0].Peers {
				if !netip.MustParseAddrPort(peer).Addr().Is6() {
					t.Errorf("IPv4 peer %s in an IPv6 answer", peer)
				}
			}
		})
	}
}

// createKey makes a peer key through the REST API, as an operator would.
func createKey(t *testing.T, api string) string {
	t.Helper()
	resp, err := http.Post(api+"/api/v1/key/3600?token="+e2eToken, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var k struct {
		Key string `json:"key"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(body, &k) != nil || len(k.Key) != 32 {
		t.Fatalf("POST /api/v1/key/3600: %s %s", resp.Status, body)
	}
	return k.Key
}

func TestClientPrivate(t *testing.T) {
	p := startTracker(t, "private = true\nlisted = false", "")
	// Unlike Torrust, a private tracker serves UDP: the key comes as BEP 41
	// URL data, which `starling client` sends from the URL's path.
	udpURL, httpURL, api := p.addr("udp"), p.addr("http"), p.addr("api")
	key := createKey(t, api)

	t.Run("announce with the key in the path", func(t *testing.T) {
		out, _ := mustClient(t, 0, "announce", httpURL+"/announce/"+key, checkHash, "--port", "7101", "--left", "1")
		if rs := decodeAll[announceJSON](t, out); len(rs) != 1 || rs[0].Interval == nil || rs[0].Leechers != 1 {
			t.Fatalf("output %s", out)
		}
		out, _ = mustClient(t, 0, "scrape", httpURL+"/announce/"+key, checkHash)
		if rs := decodeAll[scrapeJSON](t, out); rs[0].Files[0].Leechers != 1 {
			t.Errorf("keyed scrape %s", out)
		}
		out, _ = mustClient(t, 0, "announce", udpURL+"/announce/"+key, checkHash, "--port", "7102", "--left", "1")
		rs := decodeAll[announceJSON](t, out)
		if len(rs) != 1 || rs[0].Leechers != 2 || !slices.Equal(rs[0].Peers, []string{"127.0.0.1:7101"}) {
			t.Fatalf("udp announce with the key: %s", out)
		}
		if rs[0].URL != udpURL+"/announce/REDACTED" || strings.Contains(out, key) {
			t.Errorf("the key is shown: %s", out)
		}
		// anacrolix/torrent sends URL data too (RequestURI, in 255-byte
		// options): an independent client gets the same answer.
		if r := anacrolixAnnounce(t, udpURL+"/announce/"+key, checkHash, 7103, 1); len(r.Peers) != 2 || r.Leechers != 3 {
			t.Errorf("anacrolix over UDP with the key: %+v", r)
		}
	})
	refusals := []struct {
		name, url, want string
	}{
		{"no key", httpURL + "/announce", "Authentication error: Missing authentication key"},
		{"unknown key", httpURL + "/announce/" + strings.Repeat("A", 32), "Authentication error: Failed to read key"},
		{"malformed key", httpURL + "/announce/short", "Authentication error: Invalid format for authentication key"},
		{"udp no key", udpURL + "/announce", "Authentication error: Missing authentication key"},
		{"udp no path", udpURL, "Authentication error: Missing authentication key"},
		{"udp unknown key", udpURL + "/announce/" + strings.Repeat("A", 32), "Authentication error: Failed to read key"},
		{"udp malformed key", udpURL + "/announce/short", "Authentication error: Invalid format for authentication key"},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut := mustClient(t, 1, "announce", tc.url, checkHash)
			rs := decodeAll[announceJSON](t, out)
			if len(rs) != 1 || !strings.Contains(rs[0].FailureReason, tc.want) || rs[0].Interval != nil {
				t.Errorf("output %s, want a failure_reason containing %q", out, tc.want)
			}
			if !strings.Contains(errOut, tc.want) {
				t.Errorf("stderr %q does not say why", errOut)
			}
		})
	}
	t.Run("keyless scrape is all zeros", func(t *testing.T) {
		// A UDP scrape has no room for a key: zeros, with or without one
		// in the URL.
		for _, u := range []string{httpURL, udpURL, udpURL + "/announce/" + key} {
			out, _ := mustClient(t, 0, "scrape", u, checkHash)
			if rs := decodeAll[scrapeJSON](t, out); rs[0].Files[0].Leechers != 0 {
				t.Errorf("keyless scrape of a private tracker %s", out)
			}
		}
	})
	t.Run("check", func(t *testing.T) {
		out, errOut, code := tool(t, nil, "check", "--http", httpURL+"/announce/"+key, "--http", httpURL+"/announce",
			"--udp", udpURL+"/announce/"+key, "--udp", udpURL)
		rs := decodeAll[[]checkJSON](t, out)
		if code != 1 || len(rs) != 1 || len(rs[0]) != 4 {
			t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
		}
		// Results are in configuration order: UDP, then HTTP.
		for i, want := range []string{"ok", "error", "ok", "error"} {
			if r := rs[0][i]; r.Status.Code != want || (want == "error" && !strings.Contains(r.Status.Message, "Missing authentication key")) {
				t.Errorf("check %s: %+v, want %s", r.URL, r.Status, want)
			}
		}
		if strings.Contains(out, key) || strings.Contains(errOut, key) {
			t.Errorf("check shows the key:\n%s\n%s", out, errOut)
		}
	})
}

// junkUDP answers every datagram with junk; silentUDP never answers. Both are
// owned by the test and closed in Cleanup.
func junkUDP(t *testing.T, answer []byte) string {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			_, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if answer != nil {
				_, _ = c.WriteToUDPAddrPort(answer, from)
			}
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return "udp://" + c.LocalAddr().String()
}

func freePort(t *testing.T, network string) string {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().String()
	}
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func junkHTTP(t *testing.T, body string) string {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, body)
	})}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(l) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return "http://" + l.Addr().String()
}

func TestClientFailures(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		code     int
		stderr   string
		maxTime  time.Duration
		minTime  time.Duration
		noStdout bool
	}{
		{"udp timeout", []string{"announce", junkUDP(t, nil), checkHash, "--timeout", "1500ms"}, 3, "no answer in time", 5 * time.Second, 1400 * time.Millisecond, true},
		{"udp refused", []string{"announce", "udp://" + freePort(t, "udp"), checkHash}, 3, "nothing listens", 3 * time.Second, 0, true},
		{"udp junk", []string{"scrape", junkUDP(t, []byte("HTTP/1.1 400 Bad Request\r\n\r\n")), checkHash}, 3, "malformed answer", 3 * time.Second, 0, true},
		{"http refused", []string{"announce", "http://" + freePort(t, "tcp") + "/announce", checkHash}, 3, "connection refused", 3 * time.Second, 0, true},
		{"http junk", []string{"announce", junkHTTP(t, "<html>it works</html>"), checkHash}, 3, "not bencode", 3 * time.Second, 0, true},
		{"http failure reason", []string{"announce", junkHTTP(t, "d14:failure reason8:go away!e"), checkHash}, 1, "go away!", 3 * time.Second, 0, false},
		{"bad info hash", []string{"announce", "udp://127.0.0.1:1", "xyz"}, 2, "info hash", time.Second * 3, 0, true},
		{"bad event", []string{"announce", "udp://127.0.0.1:1", checkHash, "--event", "paused"}, 2, "--event", 3 * time.Second, 0, true},
		{"bad scheme", []string{"scrape", "ftp://127.0.0.1:1/announce", checkHash}, 2, "scheme", 3 * time.Second, 0, true},
		{"bad family", []string{"scrape", "udp://127.0.0.1:1", checkHash, "--ip-family", "5"}, 2, "ip family", 3 * time.Second, 0, true},
		{"unknown flag", []string{"scrape", "udp://127.0.0.1:1", checkHash, "--nope"}, 2, "unknown flag", 3 * time.Second, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			out, errOut, code := tool(t, nil, append([]string{"client"}, tc.args...)...)
			d := time.Since(start)
			if code != tc.code || !strings.Contains(errOut, tc.stderr) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, errOut, tc.code, tc.stderr)
			}
			if tc.noStdout && out != "" {
				t.Errorf("stdout %q: nothing came from a tracker, nothing to print", out)
			}
			if d > tc.maxTime || d < tc.minTime {
				t.Errorf("took %v, want between %v and %v", d, tc.minTime, tc.maxTime)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	p := startTracker(t, "private = false\nlisted = false", "")
	udpURL, httpURL, api := p.addr("udp"), p.addr("http"), p.addr("api")
	health := api + "/api/health_check"
	if len(p.addrs["health"]) > 0 {
		health = p.addr("health") + "/health_check"
	}
	good := fmt.Sprintf(`{"udp_trackers":[%q],"http_trackers":[%q],"health_checks":[%q]}`, hostPort(udpURL), httpURL, health)
	cfgFile := filepath.Join(t.TempDir(), "checker.json")
	if err := os.WriteFile(cfgFile, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	sources := []struct {
		name string
		env  []string
		args []string
	}{
		{"--config", nil, []string{"--config", cfgFile}},
		{"--config-path (Torrust)", nil, []string{"--config-path", cfgFile}},
		{"STARLING_CHECKER_CONFIG", []string{"STARLING_CHECKER_CONFIG=" + good}, nil},
		{"TORRUST_CHECKER_CONFIG", []string{"TORRUST_CHECKER_CONFIG=" + good}, nil},
		{"TORRUST_CHECKER_CONFIG_PATH", []string{"TORRUST_CHECKER_CONFIG_PATH=" + cfgFile}, nil},
		{"flags", nil, []string{"--udp", udpURL, "--http", httpURL, "--health", health}},
	}
	for _, src := range sources {
		t.Run(src.name, func(t *testing.T) {
			out, errOut, code := tool(t, src.env, append([]string{"check"}, src.args...)...)
			rs := decodeAll[[]checkJSON](t, out)
			if code != 0 || len(rs) != 1 || len(rs[0]) != 3 {
				t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
			}
			kinds := []string{"udp", "http", "health"}
			for i, r := range rs[0] {
				if r.Kind != kinds[i] || r.Status.Code != "ok" {
					t.Errorf("result %d: %+v", i, r)
				}
			}
			var steps []string
			for _, s := range rs[0][0].Steps {
				steps = append(steps, s.Step+"="+s.Status.Code)
			}
			if strings.Join(steps, ",") != "connect=ok,announce=ok,scrape=ok,stop=ok" {
				t.Errorf("UDP steps %v", steps)
			}
		})
	}
	t.Run("failures", func(t *testing.T) {
		out, errOut, code := tool(t, nil, "check", "--timeout", "1s",
			"--udp", udpURL, "--udp", junkUDP(t, nil), "--udp", "udp://"+freePort(t, "udp"),
			"--http", httpURL, "--http", junkHTTP(t, "junk"),
			"--health", health, "--health", httpURL+"/nope")
		rs := decodeAll[[]checkJSON](t, out)
		want := []string{"ok", "error", "error", "ok", "error", "ok", "error"}
		if code != 1 || len(rs) != 1 || len(rs[0]) != len(want) {
			t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
		}
		for i, r := range rs[0] {
			if r.Status.Code != want[i] || (want[i] == "error" && r.Status.Message == "") {
				t.Errorf("result %d: %+v, want %s", i, r, want[i])
			}
		}
		if !strings.Contains(errOut, "4 of 7 checks failed") {
			t.Errorf("stderr %q", errOut)
		}
	})
	usage := []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"nothing to check", nil, nil, "nothing to check"},
		{"typo in the config", []string{"STARLING_CHECKER_CONFIG={\"udp_tracker\":[]}"}, nil, `unknown field "udp_tracker"`},
		{"missing file", nil, []string{"--config", "/nonexistent/checker.json"}, "/nonexistent/checker.json"},
	}
	for _, tc := range usage {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := tool(t, tc.env, append([]string{"check"}, tc.args...)...)
			if code != 2 || !strings.Contains(errOut, tc.want) || out != "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want 2 and %q", code, out, errOut, tc.want)
			}
		})
	}
	t.Run("healthcheck command", func(t *testing.T) {
		if _, errOut, code := tool(t, nil, "healthcheck", health); code != 0 {
			t.Errorf("healthcheck %s: exit %d: %s", health, code, errOut)
		}
		if _, errOut, code := tool(t, nil, "healthcheck", "--timeout", "1s", "http://"+freePort(t, "tcp")+"/health_check"); code != 1 || !strings.Contains(errOut, "refused") {
			t.Errorf("healthcheck of a closed port: exit %d: %s", code, errOut)
		}
	})
}

// TestCompletion: cobra's shell completion scripts are generated, and the
// bash one is valid bash.
func TestCompletion(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish", "powershell"} {
		t.Run(shell, func(t *testing.T) {
			out, errOut, code := tool(t, nil, "completion", shell)
			if code != 0 || !strings.Contains(out, "starling") {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			if shell != "bash" {
				return
			}
			bash, err := exec.LookPath("bash")
			if err != nil {
				t.Skip("no bash to check the script's syntax")
			}
			f := filepath.Join(t.TempDir(), "starling.bash")
			if err := os.WriteFile(f, []byte(out), 0o600); err != nil {
				t.Fatal(err)
			}
			if b, err := exec.Command(bash, "-n", f).CombinedOutput(); err != nil {
				t.Fatalf("bash -n: %v: %s", err, b)
			}
		})
	}
	// The completion backend answers the subcommands of `starling client`.
	out, _, code := tool(t, nil, "__complete", "client", "")
	if code != 0 || !strings.Contains(out, "announce") || !strings.Contains(out, "scrape") {
		t.Errorf("__complete client: exit %d: %s", code, out)
	}
}

// selfSigned writes a self-signed certificate for 127.0.0.1 and its key.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "starling-e2e"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestClientHTTPS: a TLS listener with a self-signed certificate is refused
// by default and reachable with --insecure.
func TestClientHTTPS(t *testing.T) {
	cert, key := selfSigned(t, t.TempDir())
	p := startTracker(t, "private = false", fmt.Sprintf(`
[[http_trackers]]
bind_address = "127.0.0.1:0"

[http_trackers.tsl_config]
ssl_cert_path = %q
ssl_key_path = %q
`, cert, key))
	var httpsURL string
	for _, u := range p.addrs["http"] {
		if strings.HasPrefix(u, "https://") {
			httpsURL = u
		}
	}
	if httpsURL == "" {
		t.Fatalf("no https:// HTTP tracker in the log:\n%s", p.Log())
	}
	_, errOut, code := tool(t, nil, "client", "announce", httpsURL+"/announce", checkHash)
	if code != 3 || !strings.Contains(errOut, "certificate") {
		t.Errorf("self-signed certificate without --insecure: exit %d, %s", code, errOut)
	}
	out, _ := mustClient(t, 0, "announce", httpsURL+"/announce", checkHash, "--insecure", "--port", "7401")
	if rs := decodeAll[announceJSON](t, out); len(rs) != 1 || rs[0].Seeders != 1 {
		t.Errorf("HTTPS announce: %s", out)
	}
	out, errOut, code = tool(t, nil, "check", "--insecure", "--http", httpsURL)
	if code != 0 {
		t.Errorf("check over HTTPS: exit %d\n%s\n%s", code, out, errOut)
	}
}
