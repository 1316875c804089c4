package wstracker

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/starling-tracker/starling/internal/access"
	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/clock"
	"github.com/starling-tracker/starling/internal/metrics"
	"github.com/starling-tracker/starling/internal/swarm"
	"github.com/starling-tracker/starling/internal/swarm/memswarm"
	"github.com/starling-tracker/starling/internal/tracker"
)

// rules is an in-process tracker over memswarm, as the daemon builds it.
type rules struct {
	*tracker.Tracker
	lists    *access.Lists
	store    *memswarm.Store
	counters *metrics.Counters
}

func newRules(t testing.TB, cfg tracker.Config) *rules {
	t.Helper()
	lists := access.New(nil)
	store := memswarm.New(swarm.Options{RemovePeerlessTorrents: true})
	return &rules{
		Tracker:  tracker.New(cfg, store, lists, clock.NewManual(time.Now().Unix()), nil),
		lists:    lists,
		store:    store,
		counters: metrics.NewCounters(2, true),
	}
}

// start serves a WebSocket tracker on 127.0.0.1:0 until the test ends.
func start(t testing.TB, cfg Config, r *rules) *Server {
	t.Helper()
	return startTracker(t, cfg, r, r.counters)
}

// startTracker is start with any Tracker.
func startTracker(t testing.TB, cfg Config, tr Tracker, counters *metrics.Counters) *Server {
	t.Helper()
	srv, err := New(cfg, tr, counters, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	<-srv.Ready()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return srv
}

// client is one WebSocket client of the test. A goroutine reads its
// messages (a gorilla connection is broken for good after a read times
// out), so a test can wait for one with a timeout and read on.
type client struct {
	t    testing.TB
	ws   *websocket.Conn
	msgs chan []byte
	err  chan error
}

func dial(t testing.TB, srv *Server, path string) *client {
	t.Helper()
	return dialWith(t, websocket.DefaultDialer, srv, path, true)
}

// dialWith connects; with reading false nothing is read (a client that
// does not read, and so answers no ping).
func dialWith(t testing.TB, d *websocket.Dialer, srv *Server, path string, reading bool) *client {
	t.Helper()
	ws, _, err := d.Dial(srv.URL()+path, nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { ws.Close() })
	c := &client{t: t, ws: ws, msgs: make(chan []byte, 1024), err: make(chan error, 1)}
	if reading {
		go func() {
			for {
				_, b, err := ws.ReadMessage()
				if err != nil {
					c.err <- err
					return
				}
				c.msgs <- b
			}
		}()
	}
	return c
}

func (c *client) send(msg string) {
	c.t.Helper()
	if err := c.ws.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// msg is a server message with its binary strings read back as bytes.
type msg struct {
	raw  map[string]any
	text string
}

func (m msg) str(k string) string { s, _ := m.raw[k].(string); return s }

func (m msg) id(k string) id {
	var out id
	s, ok := m.raw[k].(string)
	if !ok || !decodeID(s, &out) {
		return id{}
	}
	return out
}

func (m msg) num(k string) int { f, _ := m.raw[k].(float64); return int(f) }

// read returns the next message, failing the test after 5 s.
func (c *client) read() msg {
	c.t.Helper()
	m, err := c.readWithin(5 * time.Second)
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return m
}

var errNothing = errors.New("no message in time")

// readWithin returns the next message, errNothing after d, or the error
// that ended the connection.
func (c *client) readWithin(d time.Duration) (msg, error) {
	var b []byte
	select {
	case b = <-c.msgs:
	case err := <-c.err:
		c.err <- err
		return msg{}, err
	case <-time.After(d):
		return msg{}, errNothing
	}
	var m msg
	m.text = string(b)
	if err := json.Unmarshal(b, &m.raw); err != nil {
		c.t.Fatalf("server sent %q, not JSON: %v", b, err)
	}
	if m.raw["action"] == nil {
		c.t.Fatalf("server sent %s without action", b)
	}
	return m, nil
}

// quiet checks that nothing arrives within d.
func (c *client) quiet(d time.Duration) {
	c.t.Helper()
	if m, err := c.readWithin(d); err == nil {
		c.t.Fatalf("unexpected message %s", m.text)
	} else if err != errNothing {
		c.t.Fatalf("connection failed: %v", err)
	}
}

// announce sends an announce and returns the tracker's answer to it.
func (c *client) announce(h, p id, extra string) msg {
	c.t.Helper()
	c.send(announceJSON(h, p, extra))
	m := c.read()
	if f := m.str("failure reason"); f != "" {
		c.t.Fatalf("announce refused: %s", f)
	}
	if m.id("info_hash") != h || m.raw["complete"] == nil || m.raw["interval"] == nil {
		c.t.Fatalf("not an announce answer: %s", m.text)
	}
	return m
}

func offersJSON(ids ...id) string {
	parts := make([]string, len(ids))
	for i, o := range ids {
		parts[i] = `{"offer":{"type":"offer","sdp":"sdp-` + string(rune('a'+i)) + `"},"offer_id":` + jsonID(o) + `}`
	}
	return `,"offers":[` + strings.Join(parts, ",") + `]`
}

func answerJSON(h, from, to, offer id) string {
	return announceJSON(h, from, `,"answer":{"type":"answer","sdp":"ans"},"to_peer_id":`+jsonID(to)+`,"offer_id":`+jsonID(offer))
}

func scrapeCounts(t testing.TB, r *rules, h id) bittorrent.SwarmStats {
	t.Helper()
	st, err := r.store.Scrape(context.Background(), []bittorrent.InfoHash{h}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return st[0]
}

// eventually polls cond for up to 5 s.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}
