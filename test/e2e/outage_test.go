package e2e

import (
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anacrolix/torrent/tracker"
	"github.com/anacrolix/torrent/types/infohash"
	_ "github.com/go-sql-driver/mysql"
)

// cutProxy forwards TCP from a loopback port to a database server and can
// be cut (listener and every connection closed), stalled (connections
// accepted and held without a byte forwarded: a server that hangs) and
// restored on the same port.
type cutProxy struct {
	t      *testing.T
	target string
	addr   string
	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
	stall  bool
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
			p.mu.Lock()
			stall := p.stall
			if stall {
				p.conns[c] = struct{}{} // held until the next cut
			}
			p.mu.Unlock()
			if stall {
				continue
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

// restore listens again on the same port: forwarding, or with stall
// holding every new connection unanswered.
func (p *cutProxy) restore(stall bool) {
	p.mu.Lock()
	p.stall = stall
	p.mu.Unlock()
	p.listen(p.addr)
}

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
			direct, dsn := freshMySQL(t, base)
			read := completedReader(t, "mysql", dsn)
			u, _ := url.Parse(direct)
			u.Host = proxy(u.Host)
			return u.String(), read
		}}
	}
	return engines
}

// freshMySQL creates a database for one test and returns base with it as
// the URL's database, and the go-sql-driver DSN of the same. A set URL
// whose server does not answer fails the test.
func freshMySQL(t *testing.T, base string) (urlStr, dsn string) {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	pass, _ := u.User.Password()
	server := u.User.Username() + ":" + pass + "@tcp(" + u.Host + ")/"
	admin, err := sql.Open("mysql", server)
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
	u.Path = "/" + name
	return u.String(), server + name
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

// TestDatabaseOutage runs the tracker on a database behind a loopback proxy
// and takes the database away, cut (connections reset, new ones refused)
// or stalled (accepted, never answered), then heals it:
//   - announces are answered at once from memory throughout;
//   - every API write answers 503 "database unavailable" within a bounded
//     time, several at once;
//   - /health_check reports the database as an Err, status Ok "degraded";
//   - completed counts wait in the buffer (core.limits.completed_buffer = 4):
//     the four torrents held keep taking their newest counts, two more are
//     dropped and counted in starling_completed_buffer_dropped_total;
//   - after healing, the held counts reach the database with nothing lost,
//     API writes work again, the health check is Ok, and a dropped torrent's
//     next completion writes its whole count.
func TestDatabaseOutage(t *testing.T) {
	engines := outageEngines(t)
	if len(engines) == 0 {
		t.Skip("set STARLING_TEST_POSTGRES_URL or STARLING_TEST_MYSQL_URL to run against a database server")
	}
	for name, eng := range engines {
		for _, mode := range []string{"cut", "stall"} {
			t.Run(name+"/"+mode, func(t *testing.T) { testDatabaseOutage(t, eng, mode == "stall") })
		}
	}
}

func testDatabaseOutage(t *testing.T, eng outageEngine, stall bool) {
	var proxy *cutProxy
	dbURL, completed := eng.prepare(t, func(target string) string {
		proxy = newCutProxy(t, target)
		return proxy.addr
	})
	dir := t.TempDir()
	p := startWith(t, dir, durabilityConfig("\n[core.limits]\ncompleted_buffer = 4", "persistent_torrent_completed_stat = true",
		dbTarget{eng.driver, dbURL}))
	udp := p.addr("udp") + "/announce"
	api := p.addr("api")
	torrent := func(i byte) infohash.T { return infohash.T{0xde, 0xad, i} }
	// complete announces one completion of torrent i by peer n (each peer
	// its own port), answered within a second.
	port := uint16(7000)
	complete := func(i, n byte) {
		t.Helper()
		port++
		start := time.Now()
		resp := announceWith(t, udp, torrent(i), n, port, 0, tracker.Completed)
		if d := time.Since(start); d > time.Second || resp.Seeders < 1 {
			t.Fatalf("completion of torrent %d by peer %d: %+v after %v", i, n, resp, d)
		}
	}

	complete(0, 1)
	waitFor(t, "the first completion in the database", func() bool { return completed(torrent(0).HexString()) == 1 })

	proxy.cut()
	if stall {
		proxy.restore(true)
	}
	started := time.Now()
	complete(0, 2) // torrent 0 takes a place in the buffer (now 2)...
	complete(0, 3) // ...and its newer count needs no other (3)
	complete(1, 1)
	complete(2, 1)
	complete(3, 1) // the buffer is full: 0, 1, 2, 3
	complete(4, 1) // dropped
	complete(5, 1) // dropped
	complete(1, 2) // held: its newer count (2) replaces the older
	if d := time.Since(started); d > 3*time.Second {
		t.Fatalf("8 announces took %v during the outage: the database stalls them", d)
	}

	// API writes, all at once: each answers 503 well within the database's
	// 5 s operation timeout plus the handler's, none waits for another.
	hex := strings.Repeat("ab", 20)
	writes := []struct{ method, path, body string }{
		{"POST", "/api/v1/whitelist/" + hex, ""},
		{"DELETE", "/api/v1/whitelist/" + hex, ""},
		{"GET", "/api/v1/whitelist/reload", ""},
		{"POST", "/api/v1/keys", `{"seconds_valid":60}`},
		{"POST", "/api/v1/key/60", ""},
		{"DELETE", "/api/v1/key/" + strings.Repeat("K", 32), ""},
		{"GET", "/api/v1/keys/reload", ""},
	}
	var wg sync.WaitGroup
	for _, w := range writes {
		wg.Go(func() {
			start := time.Now()
			status, body, err := apiDo(w.method, api+w.path+"?token="+e2eToken, w.body)
			if d := time.Since(start); err != nil || status != http.StatusServiceUnavailable ||
				!strings.HasPrefix(body, "Unhandled rejection: Err { reason: \"failed to ") ||
				!strings.Contains(body, "database unavailable") || d > 8*time.Second {
				t.Errorf("%s %s during the outage: %d %q %v after %v, want 503 naming the unavailable database", w.method, w.path, status, body, err, d)
			}
		})
	}
	wg.Wait()

	health := healthReport(t, p.addr("health"))
	if health.Status != "Ok" || !strings.HasPrefix(health.Message, "degraded: database unavailable") {
		t.Errorf("health during the outage: %+v, want Ok, degraded", health)
	}
	if d, ok := health.detail("checking the database at: "); !ok || d.Result["Err"] == nil {
		t.Errorf("health during the outage: the database is not reported down: %+v", health)
	}
	waitFor(t, "the outage in /metrics", func() bool {
		m := metricsText(t, api)
		return m["starling_database_up"] == 0 && m["starling_completed_pending"] == 4 &&
			m["starling_completed_buffer_dropped_total"] == 2 && m["starling_completed_buffer_capacity"] == 4
	})
	// Announces still answered after the API writes timed out.
	complete(2, 2)

	proxy.cut()
	proxy.restore(false)
	want := map[byte]int{0: 3, 1: 2, 2: 2, 3: 1, 4: 0, 5: 0}
	waitFor(t, "the counts held during the outage in the database", func() bool {
		for i, n := range want {
			if completed(torrent(i).HexString()) != n {
				return false
			}
		}
		return true
	})
	waitFor(t, "an API write after the database returned", func() bool {
		status, _, err := apiDo("POST", api+"/api/v1/whitelist/"+hex+"?token="+e2eToken, "")
		return err == nil && status == http.StatusOK
	})
	waitFor(t, "the health check after the database returned", func() bool {
		h := healthReport(t, p.addr("health"))
		return h.Status == "Ok" && h.Message == ""
	})
	m := metricsText(t, api)
	if m["starling_database_up"] != 1 || m["starling_completed_pending"] != 0 || m["starling_completed_buffer_dropped_total"] != 2 {
		t.Errorf("metrics after the outage: up %v, pending %v, dropped %v", m["starling_database_up"],
			m["starling_completed_pending"], m["starling_completed_buffer_dropped_total"])
	}
	// A dropped torrent's next completion writes its whole count.
	complete(4, 2)
	waitFor(t, "a dropped torrent's whole count after its next completion", func() bool { return completed(torrent(4).HexString()) == 2 })
	if n := strings.Count(p.Log(), "database recovered"); n < 1 {
		t.Errorf("no recovery line in the log:\n%s", p.Log())
	}
}

// apiDo sends one API request with a 15 s bound.
func apiDo(method, url, body string) (int, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

type healthAnswer struct {
	Status  string `json:"status"`
	Message string `json:"message"`
	Details []struct {
		Binding string                     `json:"binding"`
		Info    string                     `json:"info"`
		Result  map[string]json.RawMessage `json:"result"`
	} `json:"details"`
}

func (h healthAnswer) detail(infoPrefix string) (d struct {
	Binding string                     `json:"binding"`
	Info    string                     `json:"info"`
	Result  map[string]json.RawMessage `json:"result"`
}, ok bool) {
	for _, d := range h.Details {
		if strings.HasPrefix(d.Info, infoPrefix) {
			return d, true
		}
	}
	return d, false
}

// healthReport reads /health_check, which must answer within 5 s even with
// the database hung (its probe has a 1 s deadline).
func healthReport(t *testing.T, base string) healthAnswer {
	t.Helper()
	start := time.Now()
	status, body, err := apiDo("GET", base+"/health_check", "")
	if err != nil || status != http.StatusOK {
		t.Fatalf("health check: %d %q %v", status, body, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("health check took %v", d)
	}
	var h healthAnswer
	if err := json.Unmarshal([]byte(body), &h); err != nil {
		t.Fatalf("health check answer %q: %v", body, err)
	}
	return h
}

// metricsText reads the API's /metrics into name → value for metrics
// without labels.
func metricsText(t *testing.T, api string) map[string]float64 {
	t.Helper()
	status, body, err := apiDo("GET", api+"/metrics", "")
	if err != nil || status != http.StatusOK {
		t.Fatalf("/metrics: %d %v", status, err)
	}
	out := map[string]float64{}
	for line := range strings.Lines(body) {
		name, v, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok || strings.HasPrefix(name, "#") || strings.Contains(name, "{") {
			continue
		}
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			out[name] = f
		}
	}
	return out
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
