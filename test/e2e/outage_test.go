package e2e

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anacrolix/torrent/tracker"
	"github.com/anacrolix/torrent/types/infohash"
	_ "github.com/go-sql-driver/mysql"
)

// cutProxy forwards TCP from a loopback port to a database server and can
// be cut (listener and every connection closed) and restored on the same port.
type cutProxy struct {
	t      *testing.T
	target string
	addr   string
	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	p := &cutProxy{t: t, target: target, conns: map[net.Conn]struct{}{}}
	p.listen("127.0.0.1:0")
	t.Cleanup(func() { p.cut(); p.wg.Wait() })
	return p
}

func (p *cutProxy) listen(addr string) {
	ln, err := net.Listen("tcp4", addr)
	if err != nil {
		p.t.Fatalf("proxy listen %s: %v", addr, err)
	}
	p.mu.Lock()
	p.ln, p.addr = ln, ln.Addr().String()
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns[c], p.conns[up] = struct{}{}, struct{}{}
			p.mu.Unlock()
			for _, pair := range [][2]net.Conn{{c, up}, {up, c}} {
				p.wg.Add(1)
				go func(dst, src net.Conn) {
					defer p.wg.Done()
					_, _ = io.Copy(dst, src)
					dst.Close()
					src.Close()
				}(pair[0], pair[1])
			}
		}
	}()
}

// cut makes the database unreachable: new connections are refused and
// open ones are reset.
func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

func (p *cutProxy) restore() { p.listen(p.addr) }

type outageEngine struct {
	driver string
	// prepare makes a fresh database or schema and returns its URL through
	// the proxy, and a function reading a torrent's completed count directly.
	prepare func(t *testing.T, proxy func(target string) string) (string, func(ih string) int)
}

func outageEngines(t *testing.T) map[string]outageEngine {
	engines := map[string]outageEngine{}
	if base := os.Getenv("STARLING_TEST_POSTGRES_URL"); base != "" {
		engines["postgresql"] = outageEngine{"postgresql", func(t *testing.T, proxy func(string) string) (string, func(string) int) {
			direct := freshSchema(t, base)
			u, _ := url.Parse(direct)
			u.Host = proxy(u.Host)
			return u.String(), completedReader(t, "pgx", direct)
		}}
	}
	if base := os.Getenv("STARLING_TEST_MYSQL_URL"); base != "" {
		engines["mysql"] = outageEngine{"mysql", func(t *testing.T, proxy func(string) string) (string, func(string) int) {
			u, err := url.Parse(base)
			if err != nil {
				t.Fatal(err)
			}
			pass, _ := u.User.Password()
			dsn := u.User.Username() + ":" + pass + "@tcp(" + u.Host + ")/"
			admin, err := sql.Open("mysql", dsn)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { admin.Close() })
			var b [6]byte
			for i := range b {
				b[i] = byte(rand.UintN(256))
			}
			name := "e2e_" + hex.EncodeToString(b[:])
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
				t.Fatalf("STARLING_TEST_MYSQL_URL is set but MariaDB does not answer: %v", err)
			}
			t.Cleanup(func() { admin.Exec("DROP DATABASE IF EXISTS " + name) })
			read := completedReader(t, "mysql", dsn+name)
			u.Host = proxy(u.Host)
			u.Path = "/" + name
			return u.String(), read
		}}
	}
	return engines
}

func completedReader(t *testing.T, driver, dsn string) func(ih string) int {
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return func(ih string) int {
		var n int
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := db.QueryRowContext(ctx, "SELECT completed FROM torrents WHERE info_hash = '"+ih+"'").Scan(&n)
		if errors.Is(err, sql.ErrNoRows) {
			return 0
		}
		if err != nil {
			t.Fatalf("read completed count: %v", err)
		}
		return n
	}
}

// TestDatabaseOutage: with the database connection cut, announces are still
// answered at once from memory, API writes fail with 503, and
// when the database returns, writes and the batched completed counts resume
// by themselves.
func TestDatabaseOutage(t *testing.T) {
	engines := outageEngines(t)
	if len(engines) == 0 {
		t.Skip("set STARLING_TEST_POSTGRES_URL or STARLING_TEST_MYSQL_URL to run against a database server")
	}
	for name, eng := range engines {
		t.Run(name, func(t *testing.T) {
			var proxy *cutProxy
			dbURL, completed := eng.prepare(t, func(target string) string {
				proxy = newCutProxy(t, target)
				return proxy.addr
			})
			dir := t.TempDir()
			p := startWith(t, dir, durabilityConfig("", "persistent_torrent_completed_stat = true",
				dbTarget{eng.driver, dbURL}))
			udp := p.addr("udp") + "/announce"
			api := p.addr("api")
			ih := infohash.T{0xde, 0xad}

			announceWith(t, udp, ih, 1, 7001, 10, tracker.Started)
			announceWith(t, udp, ih, 1, 7001, 0, tracker.Completed)
			waitFor(t, "the first completion in the database", func() bool { return completed(ih.HexString()) == 1 })

			proxy.cut()
			started := time.Now()
			for i := byte(2); i < 6; i++ {
				resp := announceWith(t, udp, ih, i, 7000+uint16(i), 0, tracker.Completed)
				if resp.Seeders != int32(i) {
					t.Fatalf("announce %d during the outage: %+v", i, resp)
				}
			}
			if d := time.Since(started); d > 2*time.Second {
				t.Fatalf("announces took %v during the outage: the database stalls them", d)
			}
			status, body := apiPost(t, api+"/api/v1/whitelist/"+strings.Repeat("ab", 20)+"?token="+e2eToken)
			if status != http.StatusServiceUnavailable || !strings.Contains(body, "failed to whitelist torrent") || !strings.Contains(body, "database unavailable") {
				t.Fatalf("whitelist during the outage: %d %s", status, body)
			}

			proxy.restore()
			waitFor(t, "an API write after the database returned", func() bool {
				status, _ := apiPost(t, api+"/api/v1/whitelist/"+strings.Repeat("ab", 20)+"?token="+e2eToken)
				return status == http.StatusOK
			})
			waitFor(t, "the completions counted during the outage in the database", func() bool {
				return completed(ih.HexString()) == 5
			})
			if n := strings.Count(p.Log(), "database recovered"); n < 1 {
				t.Errorf("no recovery line in the log:\n%s", p.Log())
			}
		})
	}
}

func apiPost(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Post(u, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
