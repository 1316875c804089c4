//go:build linux

package e2e

import (
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestHTTPOutOfFileDescriptors: clients holding every file descriptor the
// process may open make the HTTP tracker's accepts fail (EMFILE). That used
// to end the HTTP listener and with it the whole process; now accepting
// waits and resumes once connections close, and the rest keeps serving.
func TestHTTPOutOfFileDescriptors(t *testing.T) {
	dir := t.TempDir()
	p := start(t, dir, []string{"STARLING_CONFIG_TOML=" + ephemeralConfig(dir, "")})
	pid := p.cmd.Process.Pid
	fds, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	// Room for a few dozen more descriptors, then hold more connections
	// than that.
	var lim unix.Rlimit
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, nil, &lim); err != nil {
		t.Fatal(err)
	}
	lim.Cur = uint64(len(fds) + 32)
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &lim, nil); err != nil {
		t.Fatalf("lower the open-file limit of the tracker: %v", err)
	}
	httpAddr := strings.TrimPrefix(p.addr("http"), "http://")
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 80 {
		c, err := net.DialTimeout("tcp4", httpAddr, 2*time.Second)
		if err != nil {
			break // the backlog is full: enough
		}
		conns = append(conns, c)
	}
	waitFor(t, "the accept failure warning", func() bool {
		return strings.Contains(p.Log(), "cannot accept connections")
	})
	select {
	case <-p.exited:
		t.Fatalf("starling exited when out of file descriptors:\n%s", p.Log())
	case <-time.After(500 * time.Millisecond):
	}
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	// With the connections gone (the server closes its ends at the read
	// timeout), HTTP accepts again.
	client := &http.Client{Timeout: 2 * time.Second}
	waitFor(t, "an HTTP answer after the clients left", func() bool {
		resp, err := client.Get(p.addr("http") + "/health_check")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}
