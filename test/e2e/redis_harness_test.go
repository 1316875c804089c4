package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The Redis tests talk to Redis with redisDo, a few lines of RESP over TCP,
// rather than with the client library the store uses: what they check must
// not depend on the code under test.

// redisDo sends one command to the Redis at addr (host:port) and returns
// its answer: a simple or bulk string, an integer in decimal, or an array's
// elements joined by newlines. A Redis error comes back as an error.
func redisDo(addr string, timeout time.Duration, args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return "", err
	}
	return readRESP(bufio.NewReader(c))
}

func readRESP(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return "", errors.New("redis: empty answer line")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", errors.New("redis: " + line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", err
		}
		parts := make([]string, n)
		for i := range parts {
			if parts[i], err = readRESP(r); err != nil {
				return "", err
			}
		}
		return strings.Join(parts, "\n"), nil
	}
	return "", fmt.Errorf("redis: unexpected answer %q", line)
}

// redisInfo is one INFO section as field → value.
func redisInfo(t *testing.T, addr, section string) map[string]string {
	t.Helper()
	s, err := redisDo(addr, 2*time.Second, "INFO", section)
	if err != nil {
		t.Fatalf("INFO %s on %s: %v", section, addr, err)
	}
	m := map[string]string{}
	for _, l := range strings.Split(s, "\r\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			m[k] = v
		}
	}
	return m
}

// testRedis is the Redis of STARLING_TEST_REDIS_URL as its URL and its
// host:port. The test is skipped when the variable is unset and fails when
// it is set and Redis does not answer.
func testRedis(t *testing.T) (u, addr string) {
	t.Helper()
	u = os.Getenv("STARLING_TEST_REDIS_URL")
	if u == "" {
		t.Skip("STARLING_TEST_REDIS_URL is not set")
	}
	pu, err := url.Parse(u)
	if err != nil || pu.Host == "" {
		t.Fatalf("STARLING_TEST_REDIS_URL=%s: not a redis://host:port URL", u)
	}
	addr = pu.Host
	if pu.Port() == "" {
		addr = net.JoinHostPort(pu.Hostname(), "6379")
	}
	if got, err := redisDo(addr, 2*time.Second, "PING"); err != nil || got != "PONG" {
		t.Fatalf("STARLING_TEST_REDIS_URL=%s does not answer PING: %q %v", u, got, err)
	}
	return u, addr
}

var redisPrefixes atomic.Int64

// redisPrefix is a key prefix no other test uses; its keys on the Redis at
// addrs (every primary of a Cluster) are deleted when the test ends.
func redisPrefix(t *testing.T, addrs ...string) string {
	p := fmt.Sprintf("starling-e2e:%d:%d:%d:", os.Getpid(), time.Now().UnixNano()%1e9, redisPrefixes.Add(1))
	t.Cleanup(func() {
		for _, a := range addrs {
			deleteRedisKeys(t, a, p)
		}
	})
	return p
}

// deleteRedisKeys deletes the keys starting with prefix on one node, one
// key per DEL (a Cluster refuses a DEL across slots).
func deleteRedisKeys(t *testing.T, addr, prefix string) {
	cursor := "0"
	for range 10_000 {
		s, err := redisDo(addr, 5*time.Second, "SCAN", cursor, "MATCH", prefix+"*", "COUNT", "1000")
		if err != nil {
			t.Logf("clean up %s on %s: %v", prefix, addr, err)
			return
		}
		parts := strings.Split(s, "\n")
		cursor = parts[0]
		for _, k := range parts[1:] {
			if k != "" {
				_, _ = redisDo(addr, 5*time.Second, "DEL", k)
			}
		}
		if cursor == "0" {
			return
		}
	}
}

// redisCluster is a Redis Cluster of three primaries on loopback that a
// test started, and stops when it ends.
type redisCluster struct {
	addrs  []string // host:port of each primary
	procs  []*exec.Cmd
	args   [][]string // each node's redis-server arguments, to start it again
	server string
	cli    string
	dir    string
}

// URL is the cluster as the store is given it: one node, the others as
// more seeds.
func (c *redisCluster) URL() string {
	u := "redis://" + c.addrs[0]
	for i, a := range c.addrs[1:] {
		if i == 0 {
			u += "?addr=" + a
		} else {
			u += "&addr=" + a
		}
	}
	return u
}

// needRedisBinaries returns redis-server and redis-cli, skipping the test
// when they are missing (failing it in CI, which installs them).
func needRedisBinaries(t *testing.T) (server, cli string) {
	t.Helper()
	server, err1 := exec.LookPath("redis-server")
	cli, err2 := exec.LookPath("redis-cli")
	if err1 != nil || err2 != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-server and redis-cli are required in CI (Debian packages redis-server, redis-tools)")
		}
		t.Skip("redis-server or redis-cli not installed (apt-get install redis-server redis-tools)")
	}
	return server, cli
}

// freeClusterPort is a loopback TCP port that is free, with its cluster
// bus port (port + 10000) free too. Both are below Linux's ephemeral range
// (32768 and up), so that the port-0 binds of tests running beside this one
// cannot take them between this check and redis-server binding them.
func freeClusterPort(t *testing.T, taken map[int]bool) int {
	t.Helper()
	for range 200 {
		p := 20000 + rand.IntN(32768-10000-20000)
		if taken[p] || taken[p+10000] {
			continue
		}
		ok := true
		var lns []net.Listener
		for _, q := range []int{p, p + 10000} {
			ln, err := net.Listen("tcp4", "127.0.0.1:"+strconv.Itoa(q))
			if err != nil {
				ok = false
				break
			}
			lns = append(lns, ln)
		}
		for _, ln := range lns {
			ln.Close()
		}
		if ok {
			taken[p], taken[p+10000] = true, true
			return p
		}
	}
	t.Fatal("no free port pair for a Redis Cluster node")
	return 0
}

// startRedisCluster starts three redis-server processes with cluster mode
// on 127.0.0.1, no persistence, joins them with redis-cli --cluster create
// (no replicas) and waits until every node reports cluster_state:ok. The
// processes are killed when the test ends. It takes a few seconds.
func startRedisCluster(t *testing.T) *redisCluster {
	t.Helper()
	server, cli := needRedisBinaries(t)
	c := &redisCluster{dir: t.TempDir(), server: server, cli: cli}
	t.Cleanup(c.stop)
	taken := map[int]bool{}
	for i := range 3 {
		port := freeClusterPort(t, taken)
		nodeDir := filepath.Join(c.dir, strconv.Itoa(i))
		if err := os.MkdirAll(nodeDir, 0o755); err != nil {
			t.Fatal(err)
		}
		c.args = append(c.args, []string{
			"--bind", "127.0.0.1", "--port", strconv.Itoa(port),
			"--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(nodeDir, "nodes.conf"),
			"--cluster-node-timeout", "2000",
			"--save", "", "--appendonly", "no", "--dir", nodeDir,
			"--logfile", filepath.Join(nodeDir, "redis.log")})
		c.procs = append(c.procs, nil)
		c.addrs = append(c.addrs, "127.0.0.1:"+strconv.Itoa(port))
		c.startNode(t, i)
	}
	for _, a := range c.addrs {
		c.waitUntil(t, 10*time.Second, a+" answers PING", func() bool {
			got, err := redisDo(a, time.Second, "PING")
			return err == nil && got == "PONG"
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append([]string{"--cluster", "create"}, c.addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s\n%s", err, out, c.logs())
	}
	c.clusterOK(t, 20*time.Second)
	return c
}

// startNode starts node i's redis-server (again: a node started again
// reads its nodes.conf and rejoins the cluster, without data).
func (c *redisCluster) startNode(t *testing.T, i int) {
	t.Helper()
	cmd := exec.Command(c.server, c.args[i]...)
	// Its own process group, so that a test's interrupt does not reach it
	// before the cleanup does.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	c.procs[i] = cmd
}

// killNode kills node i (SIGKILL) and waits for it.
func (c *redisCluster) killNode(i int) {
	if p := c.procs[i]; p != nil {
		_ = p.Process.Kill()
		_ = p.Wait()
		c.procs[i] = nil
	}
}

// clusterOK waits until every node reports cluster_state:ok.
func (c *redisCluster) clusterOK(t *testing.T, limit time.Duration) {
	t.Helper()
	for _, a := range c.addrs {
		c.waitUntil(t, limit, a+" reports cluster_state:ok", func() bool {
			s, err := redisDo(a, time.Second, "CLUSTER", "INFO")
			return err == nil && strings.Contains(s, "cluster_state:ok")
		})
	}
}

func (c *redisCluster) waitUntil(t *testing.T, limit time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("Redis Cluster: timed out waiting until %s\n%s", what, c.logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// logs is the tail of every node's log, for a failure message.
func (c *redisCluster) logs() string {
	var b strings.Builder
	for i := range c.procs {
		data, _ := os.ReadFile(filepath.Join(c.dir, strconv.Itoa(i), "redis.log"))
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		fmt.Fprintf(&b, "-- node %d (%s):\n%s\n", i, c.addrs[i], strings.Join(lines[max(0, len(lines)-15):], "\n"))
	}
	return b.String()
}

// stop kills every node and waits for each at most 5 s.
func (c *redisCluster) stop() {
	for _, p := range c.procs {
		if p != nil {
			_ = p.Process.Kill()
		}
	}
	for _, p := range c.procs {
		if p == nil {
			continue
		}
		done := make(chan struct{})
		go func() { _ = p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
	}
	c.procs = nil
}

// TestRedisClusterHarness: the three-primary cluster starts, owns all 16384
// slots, routes a key to its slot's owner (MOVED elsewhere) and stops.
func TestRedisClusterHarness(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster; runs without -short")
	}
	c := startRedisCluster(t)
	info, err := redisDo(c.addrs[0], 2*time.Second, "CLUSTER", "INFO")
	if err != nil || !strings.Contains(info, "cluster_slots_assigned:16384") || !strings.Contains(info, "cluster_known_nodes:3") {
		t.Fatalf("CLUSTER INFO: %v\n%s", err, info)
	}
	key := fmt.Sprintf("starling-e2e:%d:probe", os.Getpid()) // gone with the cluster
	moved := 0
	for _, a := range c.addrs {
		_, err := redisDo(a, 2*time.Second, "SET", key, "1")
		if err != nil {
			if !strings.Contains(err.Error(), "MOVED") {
				t.Fatalf("SET on %s: %v", a, err)
			}
			moved++
		}
	}
	if moved != 2 {
		t.Fatalf("one of three primaries owns a key's slot; %d answered MOVED", moved)
	}
	pids := make([]int, len(c.procs))
	for i, p := range c.procs {
		pids[i] = p.Process.Pid
	}
	// A node killed and started again rejoins the cluster.
	c.killNode(2)
	c.startNode(t, 2)
	c.clusterOK(t, 20*time.Second)
	pids[2] = c.procs[2].Process.Pid
	c.stop()
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); err == nil {
			t.Fatalf("redis-server %d still runs after stop", pid)
		}
	}
}
