package database_test

import (
	"errors"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/starling-tracker/starling/internal/access"
	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/database"
)

// cutProxy forwards TCP from a loopback port to a database server, and can
// be cut (listener and every connection closed: the database is gone) and
// restored on the same port.
type cutProxy struct {
	t      *testing.T
	target string
	addr   string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
	// stall: accept connections but forward nothing, a server that hangs.
	stall bool
}

func startProxy(t *testing.T, target string) *cutProxy {
	p := &cutProxy{t: t, target: target, conns: make(map[net.Conn]struct{})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(p.cut)
	return p
}

func (p *cutProxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
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
			p.mu.Unlock()
			if stall {
				if !p.track(c) {
					return
				}
				continue
			}
			up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
			if err != nil {
				c.Close()
				continue
			}
			if !p.track(c, up) {
				return
			}
			p.wg.Add(2)
			go p.pipe(c, up)
			go p.pipe(up, c)
		}
	}()
}

func (p *cutProxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil { // cut meanwhile
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *cutProxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	io.Copy(dst, src)
	dst.Close()
	src.Close()
}

// cut closes the listener and every open connection, and waits for the
// proxy's goroutines to end.
func (p *cutProxy) cut() {
	p.mu.Lock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// restore listens again on the same port; with stall, it accepts and then
// holds every connection without an answer.
func (p *cutProxy) restore(stall bool) {
	p.mu.Lock()
	p.stall = stall
	p.mu.Unlock()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatalf("restore proxy on %s: %v", p.addr, err)
	}
	p.serve(ln)
}

// TestOutage cuts the connection to a server database under a running
// Batcher: completions keep being accepted without blocking, writes fail
// with a clear error, and everything resumes when the database returns. The
// log holds one failure line and one recovery line, and no password.
func TestOutage(t *testing.T) {
	ran := false
	for _, e := range engines(t) {
		if e.name == "sqlite3" {
			continue // a file does not go away
		}
		ran = true
		t.Run(e.name+"/down", func(t *testing.T) { testOutage(t, e) })
		t.Run(e.name+"/hung", func(t *testing.T) { testHung(t, e) })
		t.Run(e.name+"/long", func(t *testing.T) { testLongOutage(t, e) })
	}
	if !ran {
		t.Skip("neither STARLING_TEST_MYSQL_URL nor STARLING_TEST_POSTGRES_URL is set")
	}
}

// proxied makes a fresh database of e reached through a cutProxy.
func proxied(t *testing.T, e engine) (direct, viaProxy url.URL, proxy *cutProxy) {
	d, err := url.Parse(e.fresh(t))
	if err != nil {
		t.Fatal(err)
	}
	target := d.Host
	if d.Port() == "" {
		target = net.JoinHostPort(d.Hostname(), map[string]string{"mysql": "3306", "postgresql": "5432"}[e.name])
	}
	proxy = startProxy(t, target)
	viaProxy = *d
	viaProxy.Host = proxy.addr
	return *d, viaProxy, proxy
}

func testOutage(t *testing.T, e engine) {
	ctx := t.Context()
	direct, viaProxy, proxy := proxied(t, e)
	// PostgreSQL under trust authentication ignores a password, so one can
	// be put in the URL to check that it never reaches the log. MySQL would
	// check it.
	const password = "s3cret-Pa55word"
	if e.name == "postgresql" {
		viaProxy.User = url.UserPassword(direct.User.Username(), password)
	}

	var logs logBuffer
	db := openDB(t, viaProxy.String(), newLog(&logs))
	db.SetTimeout(2 * time.Second)
	b := database.StartBatcher(db, 20*time.Millisecond, 0, newLog(&logs))
	defer b.Close(ctx)

	k1, k2 := key(t, "BeforeOutage"), key(t, "AfterOutage")
	if err := db.AddKey(ctx, access.KeyRecord{Key: k1, Permanent: true}); err != nil {
		t.Fatal(err)
	}
	b.Completed(hash(1), 1)
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	proxy.cut()

	// The announce path: never waits for the database.
	start := time.Now()
	for i := range 100_000 {
		b.Completed(hash(i%100), uint32(i))
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("100000 completions took %v with the database down", d)
	}

	// Writes fail, promptly, saying what failed.
	start = time.Now()
	err := db.AddKey(ctx, access.KeyRecord{Key: k2, Permanent: true})
	if err == nil {
		t.Fatal("AddKey succeeded with the database cut")
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Fatalf("AddKey took %v to fail; the timeout is 2 s", d)
	}
	if msg := err.Error(); !strings.Contains(msg, "add key") || !strings.Contains(msg, e.name) || strings.Contains(msg, password) {
		t.Fatalf("AddKey error %q should name the operation and the engine, and never the password", msg)
	}
	if errors.Is(err, database.ErrExists) || errors.Is(err, access.ErrNotFound) {
		t.Fatalf("an outage reads as an answer: %v", err)
	}
	if !errors.Is(err, access.ErrUnavailable) {
		t.Fatalf("AddKey error %q during the outage does not wrap access.ErrUnavailable (the API's 503)", err)
	}
	if err := db.Ping(ctx); !errors.Is(err, access.ErrUnavailable) {
		t.Fatalf("Ping during the outage: %v, want ErrUnavailable", err)
	}
	if err := db.AddToWhitelist(ctx, hash(5)); err == nil {
		t.Fatal("AddToWhitelist succeeded with the database cut")
	}
	for range 3 {
		if err := b.Flush(ctx); err == nil {
			t.Fatal("Flush succeeded with the database cut")
		}
	}
	if n := b.Pending(); n != 100 {
		t.Fatalf("Pending = %d with the database down, want 100 (one per torrent)", n)
	}
	if !db.Failing() {
		t.Fatal("Failing() = false during the outage")
	}

	proxy.restore(false)

	// The pool reconnects by itself: the first write after the return works.
	if err := db.AddKey(ctx, access.KeyRecord{Key: k2, Permanent: true}); err != nil {
		t.Fatalf("AddKey after the database returned: %v", err)
	}
	if err := b.Flush(ctx); err != nil {
		t.Fatalf("Flush after the database returned: %v", err)
	}
	if db.Failing() {
		t.Fatal("Failing() = true after the recovery")
	}
	counts, err := db.LoadCompleted(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := make(map[bittorrent.InfoHash]uint32)
	for i := 100_000 - 100; i < 100_000; i++ {
		want[hash(i%100)] = uint32(i)
	}
	checkCounts(t, counts, want)
	keys, err := db.LoadKeys(ctx)
	if err != nil || len(keys) != 2 {
		t.Fatalf("keys after the outage: %v, %v", keys, err)
	}

	text := logs.String()
	t.Logf("log:\n%s", text)
	if n := strings.Count(text, "database failing"); n != 1 {
		t.Errorf("%d failure lines in the log, want 1:\n%s", n, text)
	}
	if n := strings.Count(text, "database recovered"); n != 1 {
		t.Errorf("%d recovery lines in the log, want 1:\n%s", n, text)
	}
	if !strings.Contains(text, proxy.addr) {
		t.Errorf("the log does not name the database (%s):\n%s", proxy.addr, text)
	}
	if strings.Contains(text, password) {
		t.Errorf("the password is in the log:\n%s", text)
	}
}

var _ database.CompletedSaver = (*database.DB)(nil)

// testHung: the server accepts connections and never answers. Writes fail
// when their timeout ends; completions are still accepted at once.
func testHung(t *testing.T, e engine) {
	ctx := t.Context()
	_, viaProxy, proxy := proxied(t, e)
	var logs logBuffer
	db := openDB(t, viaProxy.String(), newLog(&logs))
	const timeout = 500 * time.Millisecond
	db.SetTimeout(timeout)
	b := database.StartBatcher(db, 20*time.Millisecond, 0, newLog(&logs))

	proxy.cut()
	proxy.restore(true)

	start := time.Now()
	for i := range 100_000 {
		b.Completed(hash(i%100), uint32(i))
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("100000 completions took %v with the database hung", d)
	}
	// Twice: the first attempt may meet a pooled connection the cut closed;
	// the second has to dial the hung server.
	for range 2 {
		start = time.Now()
		if err := db.AddToWhitelist(ctx, hash(1)); !errors.Is(err, access.ErrUnavailable) {
			t.Fatalf("AddToWhitelist against a hung database: %v, want ErrUnavailable", err)
		}
		if d := time.Since(start); d > timeout+2*time.Second {
			t.Fatalf("AddToWhitelist took %v to fail; the timeout is %v", d, timeout)
		}
	}
	// Back to a working server; the counts written while hung arrive.
	proxy.cut()
	proxy.restore(false)
	if err := b.Close(ctx); err != nil {
		t.Fatalf("Close after the database returned: %v", err)
	}
	counts, err := db.LoadCompleted(ctx)
	if err != nil || len(counts) != 100 {
		t.Fatalf("counts after the hang: %d, %v", len(counts), err)
	}
	if n := strings.Count(logs.String(), "database failing"); n != 1 {
		t.Errorf("%d failure lines in the log, want 1:\n%s", n, logs.String())
	}
}

// testLongOutage: the counts of 100,000 torrents gathered during an outage
// are all written when the database returns, chunk by chunk, each chunk
// inside the operation timeout.
func testLongOutage(t *testing.T, e engine) {
	ctx := t.Context()
	_, viaProxy, proxy := proxied(t, e)
	db := openDB(t, viaProxy.String(), nil)
	db.SetTimeout(2 * time.Second)
	b := database.StartBatcher(db, time.Hour, 0, nil)
	defer b.Close(ctx)

	proxy.cut()
	const torrents = 100_000
	for i := range torrents {
		b.Completed(hash(i), uint32(i%7+1))
	}
	if err := b.Flush(ctx); err == nil {
		t.Fatal("Flush succeeded with the database cut")
	}
	proxy.restore(false)
	start := time.Now()
	if err := b.Flush(ctx); err != nil {
		t.Fatalf("Flush after the database returned: %v", err)
	}
	t.Logf("%d counts written in %v", torrents, time.Since(start))
	if n := b.Pending(); n != 0 {
		t.Fatalf("Pending = %d after the recovery", n)
	}
	counts, err := db.LoadCompleted(ctx)
	if err != nil || len(counts) != torrents {
		t.Fatalf("counts after the recovery: %d, %v", len(counts), err)
	}
}
