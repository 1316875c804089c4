// Package e2e builds the starling binary and drives it as an operator and a
// BitTorrent client would: over real sockets, from the outside.
package e2e

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "starling-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "starling")
	build := exec.Command("go", "build", "-o", binary, "../../cmd/starling")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build starling:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// process is a running starling.
type process struct {
	t      *testing.T
	cmd    *exec.Cmd
	dir    string
	mu     sync.Mutex
	log    strings.Builder
	ready  chan struct{}
	exited chan struct{}
	// Addresses read from the start-up log, by service: "udp", "http", "api", "health".
	addrs map[string][]string
}

var listenLine = regexp.MustCompile(`(UDP tracker|HTTP tracker|API|Health check API) listening on (\w+)://([^\s"]+)`)

// start runs `starling args...` in dir with exactly the environment env (plus
// PATH and HOME) and waits until it logs that it is ready.
func start(t *testing.T, dir string, env []string, args ...string) *process {
	t.Helper()
	p := &process{t: t, dir: dir, ready: make(chan struct{}), exited: make(chan struct{}), addrs: map[string][]string{}}
	p.cmd = exec.Command(binary, args...)
	p.cmd.Dir = dir
	p.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}, env...)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stdout = p.cmd.Stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go p.read(stderr)
	t.Cleanup(func() { p.kill() })
	select {
	case <-p.ready:
	case <-p.exited:
		t.Fatalf("starling exited before it was ready:\n%s", p.Log())
	case <-time.After(30 * time.Second):
		t.Fatalf("starling not ready after 30 s:\n%s", p.Log())
	}
	return p
}

func (p *process) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	readyClosed := false
	for sc.Scan() {
		line := sc.Text()
		p.mu.Lock()
		p.log.WriteString(line + "\n")
		if m := listenLine.FindStringSubmatch(line); m != nil {
			key := map[string]string{"UDP tracker": "udp", "HTTP tracker": "http", "API": "api", "Health check API": "health"}[m[1]]
			p.addrs[key] = append(p.addrs[key], m[2]+"://"+m[3])
		}
		p.mu.Unlock()
		if !readyClosed && strings.Contains(line, "Starling is ready") {
			readyClosed = true
			close(p.ready)
		}
	}
	_ = p.cmd.Wait()
	close(p.exited)
}

// Log is everything the process printed so far.
func (p *process) Log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// addr is the first logged URL of a service ("udp", "http", "api", "health").
func (p *process) addr(service string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.addrs[service]) == 0 {
		p.t.Fatalf("no %s listener in the log:\n%s", service, p.log.String())
	}
	return p.addrs[service][0]
}

// stop sends sig and waits for the exit, returning the exit code.
func (p *process) stop(sig syscall.Signal) int {
	p.t.Helper()
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		p.t.Fatalf("starling did not exit on %v:\n%s", sig, p.Log())
	}
	return p.cmd.ProcessState.ExitCode()
}

func (p *process) kill() {
	select {
	case <-p.exited:
	default:
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// run runs `starling args...` to completion and returns its output and exit code.
func run(t *testing.T, dir string, env []string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}, env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatal(err)
		}
	}
	return string(out), cmd.ProcessState.ExitCode()
}

// ephemeralConfig is a configuration with every listener on 127.0.0.1 port 0
// and the database in dir.
func ephemeralConfig(dir, core string) string {
	return fmt.Sprintf(`[metadata]
schema_version = "2.0.0"

[logging]
threshold = "info"

[core]
%s

[core.database]
path = %q

[[udp_trackers]]
bind_address = "127.0.0.1:0"

[[http_trackers]]
bind_address = "127.0.0.1:0"

[http_api]
bind_address = "127.0.0.1:0"

[http_api.access_tokens]
admin = "e2eAdminToken0123456789"

[health_check_api]
bind_address = "127.0.0.1:0"
`, core, filepath.Join(dir, "tracker.db"))
}
