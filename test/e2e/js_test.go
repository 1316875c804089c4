package e2e

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The JavaScript clients of the WebTorrent project, from npm, at the
// versions pinned in js/package-lock.json: bittorrent-tracker's Client
// (which sends left = all ones over UDP when it is not told its progress)
// and webtorrent (whose magnet downloads report left 0 over UDP before they
// have the metadata). Both misreport left; Starling must still get their
// peers together.

var (
	jsOnce sync.Once
	jsDir  string
	jsErr  error
)

// needJS returns a directory holding the scripts of js/ and their
// node_modules, installed with npm once per lockfile and kept in the
// temporary directory across runs (in CI, installed anew on every run, so
// a broken install cannot hide behind an old one). Without node and npm
// the test skips, except in CI, where it fails.
func needJS(t *testing.T) string {
	t.Helper()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is required in CI (Node 20 and npm)", tool)
			}
			t.Skipf("%s not installed", tool)
		}
	}
	jsOnce.Do(func() { jsDir, jsErr = installJS() })
	if jsErr != nil {
		t.Fatal(jsErr)
	}
	return jsDir
}

func installJS() (string, error) {
	lock, err := os.ReadFile("js/package-lock.json")
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(lock)
	dir := filepath.Join(os.TempDir(), "starling-e2e-js-"+hex.EncodeToString(sum[:8]))
	if _, err := os.Stat(filepath.Join(dir, "installed")); err != nil || os.Getenv("CI") == "true" {
		// Installed beside the final place and renamed there, so an
		// interrupted install is never taken for a finished one.
		tmp, err := os.MkdirTemp(os.TempDir(), "starling-e2e-js-install")
		if err != nil {
			return "", err
		}
		defer os.RemoveAll(tmp)
		for _, f := range []string{"package.json", "package-lock.json"} {
			if err := copyFile(filepath.Join("js", f), filepath.Join(tmp, f)); err != nil {
				return "", err
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		// --ignore-scripts: no install script may download a binary (and
		// one dependency's preinstall insists on another package manager).
		cmd := exec.CommandContext(ctx, "npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error")
		cmd.Dir = tmp
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", &installError{err: err, out: string(out)}
		}
		if err := os.WriteFile(filepath.Join(tmp, "installed"), nil, 0o644); err != nil {
			return "", err
		}
		os.RemoveAll(dir)
		if err := os.Rename(tmp, dir); err != nil {
			return "", err
		}
	}
	// The scripts are copied on every run: they change without the lockfile.
	scripts, err := filepath.Glob("js/*.mjs")
	if err != nil || len(scripts) == 0 {
		return "", &installError{err: err, out: "no scripts in js/"}
	}
	for _, s := range scripts {
		if err := copyFile(s, filepath.Join(dir, filepath.Base(s))); err != nil {
			return "", err
		}
	}
	return dir, nil
}

type installError struct {
	err error
	out string
}

func (e *installError) Error() string { return "npm ci: " + e.err.Error() + "\n" + e.out }

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o644)
}

// node runs a script of dir to completion, at most limit, and returns its
// last line of output decoded into out.
func node(t *testing.T, dir string, limit time.Duration, out any, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", args...)
	cmd.Dir = dir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("node %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, stdout, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(string(stdout)), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), out); err != nil {
		t.Fatalf("node %s printed %q: %v", strings.Join(args, " "), stdout, err)
	}
}

// TestJavaScriptClients runs the WebTorrent project's Node clients against
// the running binary over UDP and over HTTP: two default bittorrent-tracker
// Clients find each other, a start/complete/stop sequence gives the right
// scrape counts, and a webtorrent magnet download gets a 2 MiB file from a
// webtorrent seeder, checked by sha256.
func TestJavaScriptClients(t *testing.T) {
	js := needJS(t)
	dir := t.TempDir()
	p := start(t, dir, []string{"STARLING_CONFIG_TOML=" + ephemeralConfig(dir, "")})
	urls := map[string]string{"udp": p.addr("udp"), "http": p.addr("http") + "/announce"}
	for _, proto := range []string{"udp", "http"} {
		u := urls[proto]
		t.Run(proto+"/two default Clients find each other", func(t *testing.T) {
			var r struct{ A, B string }
			node(t, js, 40*time.Second, &r, "tracker-client.mjs", "pair", u)
			if r.A != "handed b" || r.B != "handed a" {
				t.Fatalf("pair: %+v", r)
			}
		})
		t.Run(proto+"/announce, scrape, complete, stop", func(t *testing.T) {
			var r struct {
				Steps []struct {
					Name string
					Got  []int
				}
			}
			node(t, js, 40*time.Second, &r, "tracker-client.mjs", "sequence", u)
			if len(r.Steps) != 4 {
				t.Fatalf("sequence: %+v", r)
			}
		})
		t.Run(proto+"/webtorrent magnet download", func(t *testing.T) {
			webtorrentShare(t, js, u)
		})
	}
	if t.Failed() {
		t.Logf("starling's log:\n%s", p.Log())
	}
}

// webtorrentShare seeds 2 MiB with one webtorrent process and downloads it
// by magnet link, whose only tracker is u, with another, within 30 s.
func webtorrentShare(t *testing.T, js, u string) {
	const size = 2 << 20
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	seed := exec.CommandContext(ctx, "node", "webtorrent-share.mjs", "seed", u, "2097152")
	seed.Dir = js
	var seedErr strings.Builder
	seed.Stderr = &seedErr
	stdin, err := seed.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := seed.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := seed.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close() // the seeder stops when its input ends
		done := make(chan struct{})
		go func() { _ = seed.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = seed.Process.Kill()
			<-done
		}
	}()
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			line <- sc.Text()
		}
		close(line)
	}()
	var seeded struct{ Magnet, Sha256 string }
	select {
	case l, ok := <-line:
		if !ok {
			t.Fatalf("seeder printed nothing; stderr: %s", seedErr.String())
		}
		if err := json.Unmarshal([]byte(l), &seeded); err != nil || seeded.Magnet == "" {
			t.Fatalf("seeder printed %q (%v)", l, err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("seeder not seeding after 30 s; stderr: %s", seedErr.String())
	}
	if !strings.Contains(seeded.Magnet, "tr=") {
		t.Fatalf("magnet link %q names no tracker", seeded.Magnet)
	}
	var got struct {
		Sha256 string
		Bytes  int
	}
	began := time.Now()
	node(t, js, 40*time.Second, &got, "webtorrent-share.mjs", "fetch", seeded.Magnet, t.TempDir())
	took := time.Since(began)
	if got.Bytes != size || got.Sha256 != seeded.Sha256 {
		t.Fatalf("downloaded %d bytes with sha256 %s, want %d with %s", got.Bytes, got.Sha256, size, seeded.Sha256)
	}
	if took > 30*time.Second {
		t.Fatalf("download took %v, want at most 30 s", took)
	}
	t.Logf("2 MiB by magnet link in %v", took.Round(time.Millisecond))
}
