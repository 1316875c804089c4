package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

// defaultListeners are the addresses a first run binds (decisions.md).
var defaultListeners = []struct{ network, addr string }{
	{"udp", "0.0.0.0:6969"},
	{"tcp", "0.0.0.0:7070"},
	{"tcp", "127.0.0.1:1212"},
	{"tcp", "127.0.0.1:1313"},
}

// requireDefaultPortsFree fails with what to do when another process holds a
// default port: the point of the test is a first run with no configuration
// at all, so it cannot move to other ports.
func requireDefaultPortsFree(t *testing.T) {
	t.Helper()
	for _, l := range defaultListeners {
		var err error
		if l.network == "udp" {
			var c net.PacketConn
			if c, err = net.ListenPacket("udp4", l.addr); err == nil {
				c.Close()
			}
		} else {
			var ln net.Listener
			if ln, err = net.Listen("tcp4", l.addr); err == nil {
				ln.Close()
			}
		}
		if err != nil {
			_, port, _ := net.SplitHostPort(l.addr)
			t.Fatalf("the first-run test needs the default port %s/%s free, and it is not (%v): "+
				"stop the process that holds it (`ss -lntup | grep :%s` shows it) and run the test again", port, l.network, err, port)
		}
	}
}

// adminToken reads the token the first run wrote, with a TOML decoder
// independent of Starling's.
func adminToken(t *testing.T, file string) string {
	t.Helper()
	var cfg struct {
		HTTPAPI struct {
			AccessTokens map[string]string `toml:"access_tokens"`
		} `toml:"http_api"`
	}
	if _, err := toml.DecodeFile(file, &cfg); err != nil {
		t.Fatalf("decode %s: %v", file, err)
	}
	token := cfg.HTTPAPI.AccessTokens["admin"]
	if len(token) < 16 || token == "MyAccessToken" {
		t.Fatalf("first-run admin token %q is weak or well known", token)
	}
	return token
}

func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK && v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("GET %s: %v: %s", url, err, body)
		}
	}
	return resp.StatusCode
}

// TestFirstRun is the README's quick start as a new user meets it: no
// configuration and no environment; the tracker comes up on the defaults,
// says where it listens and where the token is, and answers `starling
// client` over UDP and HTTP.
func TestFirstRun(t *testing.T) {
	requireDefaultPortsFree(t)
	dir := t.TempDir()
	p := start(t, dir, nil)
	log := p.Log()

	t.Run("log", func(t *testing.T) {
		for service, want := range map[string]string{
			"udp": "udp://0.0.0.0:6969", "http": "http://0.0.0.0:7070", "api": "http://127.0.0.1:1212", "health": "http://127.0.0.1:1313",
		} {
			if got := p.addrs[service]; len(got) != 1 || got[0] != want {
				t.Errorf("%s listener %v, want %s in the log", service, got, want)
			}
		}
		if !strings.Contains(log, filepath.Join(dir, "tracker.toml")) {
			t.Errorf("the log does not say where the configuration was written:\n%s", log)
		}
		if !strings.Contains(log, "starling client announce") {
			t.Errorf("the log does not say how to announce with starling client:\n%s", log)
		}
	})
	file := filepath.Join(dir, "tracker.toml")
	st, err := os.Stat(file)
	if err != nil {
		t.Fatalf("first run wrote no %s: %v\n%s", file, err, log)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v; it holds the admin token, want 0600", file, st.Mode().Perm())
	}
	token := adminToken(t, file)
	if strings.Contains(log, token) {
		t.Fatal("the admin token is in the log")
	}
	if _, err := os.Stat(filepath.Join(dir, "storage/tracker/lib/database/sqlite3.db")); err != nil {
		t.Errorf("no SQLite database at the default path: %v", err)
	}

	// Announce as the log suggests, over UDP and HTTP.
	mustClient(t, 0, "announce", "udp://127.0.0.1:6969/announce", checkHash, "--port", "7301", "--left", "1")
	out, _ := mustClient(t, 0, "announce", "http://127.0.0.1:7070/announce", checkHash, "--port", "7302")
	if rs := decodeAll[announceJSON](t, out); len(rs) != 1 || len(rs[0].Peers) != 1 || rs[0].Peers[0] != "127.0.0.1:7301" {
		t.Errorf("HTTP announce after the UDP one: %s", out)
	}

	var stats map[string]int64
	if code := getJSON(t, "http://127.0.0.1:1212/api/v1/stats?token="+token, &stats); code != http.StatusOK {
		t.Fatalf("stats with the written token: HTTP %d", code)
	}
	if stats["torrents"] != 1 || stats["seeders"] != 1 || stats["leechers"] != 1 || stats["udp4_announces_handled"] < 1 || stats["tcp4_announces_handled"] < 1 {
		t.Errorf("stats %v", stats)
	}
	for _, bad := range []string{"", "MyAccessToken"} {
		if code := getJSON(t, "http://127.0.0.1:1212/api/v1/stats?token="+bad, nil); code == http.StatusOK {
			t.Errorf("stats answered 200 to token %q", bad)
		}
	}

	t.Run("check the defaults", func(t *testing.T) {
		out, errOut, code := tool(t, nil, "check", "--udp", "127.0.0.1:6969", "--http", "http://127.0.0.1:7070",
			"--health", "http://127.0.0.1:1313/health_check")
		if code != 0 {
			t.Errorf("starling check of the first run: exit %d\n%s\n%s", code, out, errOut)
		}
	})

	if code := p.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d on SIGTERM:\n%s", code, p.Log())
	}

	// The second start in the same directory reads the file it wrote.
	p2 := start(t, dir, nil)
	if strings.Contains(p2.Log(), "first run") {
		t.Errorf("second start is a first run again:\n%s", p2.Log())
	}
	if token2 := adminToken(t, file); token2 != token {
		t.Error("the second start changed the admin token")
	}
	if code := getJSON(t, "http://127.0.0.1:1212/api/v1/stats?token="+token, nil); code != http.StatusOK {
		t.Errorf("stats after restart: HTTP %d", code)
	}
	p2.stop(syscall.SIGTERM)
}

// runBounded runs `starling` in dir with exactly env and gives up after 20 s:
// a mistake that does not stop start-up would otherwise hang the test.
func runBounded(t *testing.T, dir string, env []string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}, env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("starling did not stop on a start-up mistake within 20 s:\n%s", out.String())
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return out.String(), cmd.ProcessState.ExitCode()
}

// TestStartupMistakes: each common mistake stops start-up with a message that
// names the cause and the setting to change, and never with a panic.
func TestStartupMistakes(t *testing.T) {
	base := func(dir, extra string) string {
		return fmt.Sprintf(`[metadata]
schema_version = "2.0.0"

[core.database]
path = %q

[http_api.access_tokens]
admin = "e2eAdminToken0123456789"

[health_check_api]
bind_address = "127.0.0.1:0"

[http_api]
bind_address = "127.0.0.1:0"
%s`, filepath.Join(dir, "tracker.db"), extra)
	}
	busyTCP, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busyTCP.Close()
	busyUDP, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busyUDP.Close()

	tests := []struct {
		name string
		// setup writes what it needs in dir and returns the environment.
		setup func(t *testing.T, dir string) []string
		want  []string
	}{
		{"HTTP port in use", func(t *testing.T, dir string) []string {
			return []string{"STARLING_CONFIG_TOML=" + base(dir, fmt.Sprintf("[[http_trackers]]\nbind_address = %q\n", busyTCP.Addr()))}
		}, []string{busyTCP.Addr().String(), "already in use", "bind_address"}},
		{"UDP port in use", func(t *testing.T, dir string) []string {
			return []string{"STARLING_CONFIG_TOML=" + base(dir, fmt.Sprintf("[[udp_trackers]]\nbind_address = %q\n", busyUDP.LocalAddr()))}
		}, []string{busyUDP.LocalAddr().String(), "already in use", "bind_address"}},
		{"config file missing", func(t *testing.T, dir string) []string {
			return []string{"STARLING_CONFIG_TOML_PATH=" + filepath.Join(dir, "nope.toml")}
		}, []string{filepath.Join(dir0(), "nope.toml"), "STARLING_CONFIG_TOML_PATH", "no such file"}},
		{"config path is a directory", func(t *testing.T, dir string) []string {
			return []string{"STARLING_CONFIG_TOML_PATH=" + dir}
		}, []string{"STARLING_CONFIG_TOML_PATH", "is a directory"}},
		{"config unreadable", func(t *testing.T, dir string) []string {
			if os.Geteuid() == 0 {
				t.Skip("root reads files of any mode")
			}
			f := filepath.Join(dir, "tracker.toml")
			if err := os.WriteFile(f, []byte(base(dir, "")), 0o000); err != nil {
				t.Fatal(err)
			}
			return nil
		}, []string{"tracker.toml", "permission denied"}},
		{"bad TOML", func(t *testing.T, dir string) []string {
			f := filepath.Join(dir, "tracker.toml")
			if err := os.WriteFile(f, []byte("[core\nprivate = true\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			return nil
		}, []string{"tracker.toml", "TOML syntax error on line"}},
		{"unknown key", func(t *testing.T, dir string) []string {
			return []string{"STARLING_CONFIG_TOML=" + base(dir, "[core]\nprivat = true\n")}
		}, []string{"core.privat", "private"}},
		{"bad value", func(t *testing.T, dir string) []string {
			return []string{"STARLING_CONFIG_TOML=" + base(dir, "[core.announce_policy]\ninterval = \"soon\"\n")}
		}, []string{"core.announce_policy.interval"}},
		{"database path not writable", func(t *testing.T, dir string) []string {
			// A regular file where the database's directory should be: no
			// one can create the database there, root included.
			if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o600); err != nil {
				t.Fatal(err)
			}
			cfg := strings.Replace(base(dir, ""), filepath.Join(dir, "tracker.db"), filepath.Join(dir, "file", "tracker.db"), 1)
			return []string{"STARLING_CONFIG_TOML=" + cfg}
		}, []string{filepath.Join("file", "tracker.db"), "core.database.path"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			env := tc.setup(t, dir)
			out, code := runBounded(t, dir, env)
			if code == 0 {
				t.Fatalf("exit 0 on a start-up mistake:\n%s", out)
			}
			if strings.Contains(out, "panic:") || strings.Contains(out, "goroutine ") {
				t.Fatalf("start-up mistake ends in a panic:\n%s", out)
			}
			for _, w := range tc.want {
				w = strings.ReplaceAll(w, dir0(), dir)
				if !strings.Contains(out, w) {
					t.Errorf("message does not contain %q:\n%s", w, out)
				}
			}
			if strings.Contains(out, "Starling is ready") {
				t.Errorf("ready despite the mistake:\n%s", out)
			}
		})
	}
}

// dir0 stands for the test's directory in wanted texts; each case replaces
// it with its own t.TempDir().
func dir0() string { return "\x00DIR\x00" }
