package wstracker

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/starling-tracker/starling/internal/access"
	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/metrics"
	"github.com/starling-tracker/starling/internal/tracker"
)

var quietFor = 150 * time.Millisecond

// Offers go to other peers of the swarm and never back to the sender; an
// answer goes to the offerer alone.
func TestOffersAndAnswers(t *testing.T) {
	r := newRules(t, tracker.DefaultConfig())
	srv := start(t, Config{}, r)
	h := tricky
	pa, pb, pc := id{'a', 0xFF}, id{'b', 0x00}, id{'c', 0x5C}
	a, b, c := dial(t, srv, ""), dial(t, srv, "/announce"), dial(t, srv, "/")
	a.announce(h, pa, `,"left":10,"event":"started"`)
	b.announce(h, pb, `,"left":10,"event":"started"`)
	o1, o2, o3 := id{1, 0x22}, id{2, 0x80}, id{3, 0x7F}
	m := c.announce(h, pc, `,"left":0,"event":"started"`+offersJSON(o1, o2, o3))
	if m.num("complete") != 1 || m.num("incomplete") != 2 {
		t.Fatalf("counts %s, want 1 seeder and 2 leechers", m.text)
	}
	// Two other peers: two of the three offers are relayed, one to each.
	got := map[id]id{} // offer id -> receiver
	for _, rc := range []struct {
		cl *client
		id id
	}{{a, pa}, {b, pb}} {
		m := rc.cl.read()
		if m.id("peer_id") != pc || m.id("info_hash") != h || m.raw["offer"] == nil {
			t.Fatalf("peer %x got %s, want an offer from c", rc.id, m.text)
		}
		got[m.id("offer_id")] = rc.id
		rc.cl.quiet(quietFor)
	}
	if len(got) != 2 {
		t.Fatalf("offers relayed: %v", got)
	}
	c.quiet(quietFor) // never its own offer

	// a answers the offer it got: only c hears it, with a's peer id.
	var offerToA id
	for o, to := range got {
		if to == pa {
			offerToA = o
		}
	}
	a.send(answerJSON(h, pa, pc, offerToA))
	m = c.read()
	if m.id("peer_id") != pa || m.id("offer_id") != offerToA || m.id("info_hash") != h || m.raw["answer"] == nil {
		t.Fatalf("c got %s, want a's answer", m.text)
	}
	a.quiet(quietFor)
	b.quiet(quietFor)

	// The same answer again: the offer is used up.
	a.send(answerJSON(h, pa, pc, offerToA))
	if f := a.read().str("failure reason"); f != errNoOffer.Error() {
		t.Fatalf("second answer: %q", f)
	}
	if v := r.counters.Value(metrics.WSOffersRelayed); v != 2 {
		t.Fatalf("offers relayed counter %d", v)
	}
	if v := r.counters.Value(metrics.WSAnswersRelayed); v != 1 {
		t.Fatalf("answers relayed counter %d", v)
	}
}

func TestAnswerRefusals(t *testing.T) {
	r := newRules(t, tracker.DefaultConfig())
	srv := start(t, Config{}, r)
	h := id{9}
	pa, pb, pc := id{'a'}, id{'b'}, id{'c'}
	a, b, c := dial(t, srv, ""), dial(t, srv, ""), dial(t, srv, "")
	a.announce(h, pa, "")
	b.announce(h, pb, "")
	o := id{0xEE}
	c.announce(h, pc, offersJSON(o)) // one offer: to a or to b
	var to *client
	var toID, other id
	var otherCl *client
	if m, err := a.readWithin(time.Second); err == nil && m.raw["offer"] != nil {
		to, toID, otherCl, other = a, pa, b, pb
	} else {
		b.read()
		to, toID, otherCl, other = b, pb, a, pa
	}
	for _, tc := range []struct {
		name string
		cl   *client
		msg  string
	}{
		{"unknown offer id", to, answerJSON(h, toID, pc, id{0x01})},
		{"peer the offer did not go to", otherCl, answerJSON(h, other, pc, o)},
		{"peer id of the receiver from another connection", otherCl, answerJSON(h, toID, pc, o)},
		{"wrong offerer", to, answerJSON(h, toID, pa, o)},
		{"unknown torrent", to, answerJSON(id{8}, toID, pc, o)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cl.send(tc.msg)
			m := tc.cl.read()
			if m.str("failure reason") != errNoOffer.Error() || m.str("action") != "announce" || m.raw["info_hash"] == nil {
				t.Fatalf("got %s", m.text)
			}
			c.quiet(50 * time.Millisecond)
		})
	}
	// The offerer leaves: its offer cannot be answered any more.
	c.ws.Close()
	eventually(t, "c's peer to leave", func() bool { return srv.reg.peers(h) == 2 })
	to.send(answerJSON(h, toID, pc, o))
	if f := to.read().str("failure reason"); f != errNoOffer.Error() {
		t.Fatalf("answer to a closed offerer: %q", f)
	}
}

// Every binary field keeps its bytes, 0x00, '"', '\\', DEL, 0x80 and 0xFF
// included, through the tracker and back.
func TestBinaryFieldsRoundTrip(t *testing.T) {
	r := newRules(t, tracker.DefaultConfig())
	srv := start(t, Config{}, r)
	h := tricky
	pa := id{0xFF, 0x80, 0x7F, 0x5C, 0x22, 0x00}
	pb := id{0x00, 0x22, 0x5C, 0x7F, 0x80, 0xFF}
	o := id{0x5C, 0x5C, 0x22, 0x00, 0xFF, 0x80, 0x7F}
	a, b := dial(t, srv, ""), dial(t, srv, "")
	a.announce(h, pa, "")
	b.announce(h, pb, offersJSON(o))
	m := a.read()
	if m.id("info_hash") != h || m.id("peer_id") != pb || m.id("offer_id") != o {
		t.Fatalf("offer %s", m.text)
	}
	a.send(answerJSON(h, pa, pb, o))
	m = b.read()
	if m.id("info_hash") != h || m.id("peer_id") != pa || m.id("offer_id") != o {
		t.Fatalf("answer %s", m.text)
	}
	b.send(`{"action":"scrape","info_hash":` + jsonID(h) + `}`)
	m = b.read()
	files, _ := m.raw["files"].(map[string]any)
	var key id
	for k := range files {
		decodeID(k, &key)
	}
	if len(files) != 1 || key != h || m.id("info_hash") != h {
		t.Fatalf("scrape %s", m.text)
	}
}

// Refused strings get a failure with action (and info_hash when it was
// read); the connection stays usable.
func TestRefusedStrings(t *testing.T) {
	r := newRules(t, tracker.DefaultConfig())
	srv := start(t, Config{}, r)
	c := dial(t, srv, "")
	h, p := id{1}, id{2}
	for _, tc := range []struct {
		name, field, value string
		named              bool
	}{
		{"info_hash 19", "info_hash", `"` + strings.Repeat("x", 19) + `"`, false},
		{"info_hash 21", "info_hash", `"` + strings.Repeat("x", 21) + `"`, false},
		{"info_hash U+0100", "info_hash", `"` + strings.Repeat("x", 19) + `\u0100"`, false},
		{"peer_id 19", "peer_id", `"` + strings.Repeat("x", 19) + `"`, true},
		{"peer_id 21", "peer_id", `"` + strings.Repeat("x", 21) + `"`, true},
		{"peer_id U+0100", "peer_id", `"` + strings.Repeat("x", 19) + `Ā"`, true},
		{"offer_id 21", "offers", `[{"offer":{"type":"offer","sdp":"x"},"offer_id":"` + strings.Repeat("x", 21) + `"}]`, true},
		{"offer_id U+0100", "offers", `[{"offer":{"type":"offer","sdp":"x"},"offer_id":"` + strings.Repeat("x", 19) + `\u0100"}]`, true},
		{"to_peer_id 19", "to_peer_id", `"` + strings.Repeat("x", 19) + `"`, true},
		{"to_peer_id U+0100", "to_peer_id", `"` + strings.Repeat("x", 19) + `\u0100"`, true},
		{"peer_id a number", "peer_id", `7`, true},
		{"action a number", "action", `1`, true},
		{"action unknown", "action", `"foo"`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fields := map[string]string{"action": `"announce"`, "info_hash": jsonID(h), "peer_id": jsonID(p)}
			if tc.field == "to_peer_id" {
				fields["answer"] = `{"type":"answer","sdp":"x"}`
				fields["offer_id"] = jsonID(p)
			}
			fields[tc.field] = tc.value
			var parts []string
			for k, v := range fields {
				parts = append(parts, `"`+k+`":`+v)
			}
			c.send("{" + strings.Join(parts, ",") + "}")
			m := c.read()
			if m.str("failure reason") == "" || m.str("action") != "announce" {
				t.Fatalf("got %s, want a failure", m.text)
			}
			if tc.named && m.id("info_hash") != h {
				t.Fatalf("failure %s does not name the info_hash", m.text)
			}
		})
	}
	if srv.reg.peers(h) != 0 {
		t.Fatal("a refused announce was recorded")
	}
	c.announce(h, p, "") // still usable
}

// Each client's way of announcing is accepted.
func TestClientVariantsOverTheWire(t *testing.T) {
	r := newRules(t, tracker.DefaultConfig())
	srv := start(t, Config{}, r)
	for i, tc := range []struct {
		extra string
		want  bittorrent.SwarmStats
	}{
		// left null and -1 are leechers; paused with left 0 and completed are seeders.
		{`,"numwant":5,"uploaded":0,"downloaded":0,"left":1234,"event":"started","offers":[]`, bittorrent.SwarmStats{Leechers: 1}}, // reference client
		{`,"left":null,"event":"started"`, bittorrent.SwarmStats{Leechers: 1}},                                                     // webtorrent before metadata
		{`,"left":-1,"event":"<regular>","numwant":1`, bittorrent.SwarmStats{Leechers: 1}},                                         // anacrolix
		{`,"left":0,"event":"paused","corrupt":0,"key":"8a1b2c"`, bittorrent.SwarmStats{Seeders: 1}},                               // libtorrent
		{`,"event":"update","trackerid":"t","future_field":[1,{"x":null}]`, bittorrent.SwarmStats{Leechers: 1}},
		{`,"event":"completed","left":0`, bittorrent.SwarmStats{Seeders: 1, Completed: 1}},
	} {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			c := dial(t, srv, "")
			c.announce(id{byte(i)}, id{byte(i), 1}, tc.extra)
			if got := scrapeCounts(t, r, id{byte(i)}); got != tc.want {
				t.Errorf("counted %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestScrape(t *testing.T) {
	r := newRules(t, tracker.DefaultConfig())
	srv := start(t, Config{MaxScrapeHashes: 3}, r)
	h1, h2, unknown := id{1}, id{2}, id{3}
	a, b := dial(t, srv, ""), dial(t, srv, "")
	a.announce(h1, id{'a'}, `,"left":0,"event":"completed"`)
	b.announce(h1, id{'b'}, `,"left":5`)
	b.announce(h2, id{'b'}, `,"left":5`)
	files := func(m msg) map[id][3]int {
		out := map[id][3]int{}
		fs, _ := m.raw["files"].(map[string]any)
		for k, v := range fs {
			var h id
			decodeID(k, &h)
			f := v.(map[string]any)
			out[h] = [3]int{int(f["complete"].(float64)), int(f["incomplete"].(float64)), int(f["downloaded"].(float64))}
		}
		return out
	}
	a.send(`{"action":"scrape","info_hash":` + jsonID(h1) + `}`)
	if got := files(a.read()); got[h1] != [3]int{1, 1, 1} || len(got) != 1 {
		t.Fatalf("one hash: %v", got)
	}
	a.send(`{"action":"scrape","info_hash":[` + jsonID(h1) + `,` + jsonID(h2) + `,` + jsonID(unknown) + `]}`)
	if got := files(a.read()); got[h1] != [3]int{1, 1, 1} || got[h2] != [3]int{0, 1, 0} || got[unknown] != [3]int{} || len(got) != 3 {
		t.Fatalf("many hashes: %v", got)
	}
	// Past the limit (MaxScrapeHashes here), the rest are ignored, as on HTTP.
	a.send(`{"action":"scrape","info_hash":[` + strings.Repeat(jsonID(h2)+",", 3) + jsonID(h1) + `]}`)
	if got := files(a.read()); got[h2] != [3]int{0, 1, 0} || len(got) != 1 {
		t.Fatalf("too many hashes: %v", got)
	}
	a.send(`{"action":"scrape","info_hash":[]}`)
	if m := a.read(); m.str("failure reason") != "" || len(files(m)) != 0 {
		t.Fatalf("an empty list: %s", m.text)
	}
	a.send(`{"action":"scrape"}`)
	if m := a.read(); m.str("failure reason") != "Full scrapes are not allowed" || m.str("action") != "scrape" {
		t.Fatalf("full scrape: %s", m.text)
	}
	// Closing a connection lowers the counts.
	b.ws.Close()
	eventually(t, "b's peers to leave", func() bool {
		return scrapeCounts(t, r, h1) == bittorrent.SwarmStats{Seeders: 1, Completed: 1} &&
			scrapeCounts(t, r, h2) == bittorrent.SwarmStats{}
	})
	a.send(`{"action":"scrape","info_hash":` + jsonID(h1) + `}`)
	if got := files(a.read()); got[h1] != [3]int{1, 0, 1} {
		t.Fatalf("after close: %v", got)
	}
}

func TestFullScrape(t *testing.T) {
	r := newRules(t, tracker.DefaultConfig())
	srv := start(t, Config{FullScrape: true}, r)
	a := dial(t, srv, "")
	a.announce(id{1}, id{'a'}, "")
	a.announce(id{2}, id{'a'}, "")
	a.send(`{"action":"scrape"}`)
	m := a.read()
	if fs, _ := m.raw["files"].(map[string]any); len(fs) != 2 {
		t.Fatalf("full scrape %s", m.text)
	}
}

func TestStoppedAndCompleted(t *testing.T) {
	r := newRules(t, tracker.DefaultConfig())
	srv := start(t, Config{}, r)
	h := id{1}
	a := dial(t, srv, "")
	a.announce(h, id{'a'}, `,"left":3,"event":"started"`)
	a.announce(h, id{'a'}, `,"left":0,"event":"completed"`)
	a.announce(h, id{'a'}, `,"left":0,"event":"completed"`) // counted once
	if got := scrapeCounts(t, r, h); got != (bittorrent.SwarmStats{Seeders: 1, Completed: 1}) {
		t.Fatalf("after completed: %+v", got)
	}
	m := a.announce(h, id{'a'}, `,"left":0,"event":"stopped"`)
	if m.num("complete") != 0 || srv.reg.peers(h) != 0 {
		t.Fatalf("after stopped: %s, %d peers", m.text, srv.reg.peers(h))
	}
}

// A peer id belongs to the connection that announced it first.
func TestPeerIDBoundToConnection(t *testing.T) {
	r := newRules(t, tracker.DefaultConfig())
	srv := start(t, Config{}, r)
	h, p := id{1}, id{'p'}
	a, b := dial(t, srv, ""), dial(t, srv, "")
	a.announce(h, p, "")
	for _, ev := range []string{"", `,"event":"stopped"`} {
		b.send(announceJSON(h, p, ev))
		if m := b.read(); m.str("failure reason") != errPeerIDInUse.Error() || m.id("info_hash") != h {
			t.Fatalf("b took a's peer id (%q): %s", ev, m.text)
		}
	}
	if srv.reg.peers(h) != 1 {
		t.Fatal("a's peer is gone")
	}
	// Another torrent, the same peer id: free.
	b.announce(id{2}, p, "")
	// Once a leaves, the id is free.
	a.ws.Close()
	eventually(t, "a to leave", func() bool { return srv.reg.peers(h) == 0 })
	b.announce(h, p, "")
}

func TestPrivateMode(t *testing.T) {
	cfg := tracker.DefaultConfig()
	cfg.Private = true
	r := newRules(t, cfg)
	good := "YZSl4lMZupRuOpSRC3krIKR5BPB14nrJ"
	expired := "abcdefghijABCDEFGHIJ0123456789ab"
	ctx := context.Background()
	k, _ := bittorrent.ParseKey(good)
	if err := r.lists.AddKey(ctx, access.KeyRecord{Key: k, Permanent: true}); err != nil {
		t.Fatal(err)
	}
	k2, _ := bittorrent.ParseKey(expired)
	if err := r.lists.AddKey(ctx, access.KeyRecord{Key: k2, ValidUntil: 1}); err != nil {
		t.Fatal(err)
	}
	srv := start(t, Config{}, r)
	h := id{1}
	for _, tc := range []struct{ path, want string }{
		{"", "Authentication error: Missing authentication key param for private tracker."},
		{"/announce", "Authentication error: Missing authentication key param for private tracker."},
		{"/announce/short", "Authentication error: Invalid format for authentication key param."},
		{"/announce/" + strings.Repeat("z", 32), "Authentication error: Failed to read key: " + strings.Repeat("z", 32)},
		{"/announce/" + expired, "Authentication error: Key has expired"},
		{"/announce/" + good, ""},
		{"/" + good, ""},
		{"/announce/" + good + "/", ""},
	} {
		t.Run(tc.path, func(t *testing.T) {
			c := dial(t, srv, tc.path)
			c.send(announceJSON(h, id{'x', byte(len(tc.path)), byte(strings.Count(tc.path, "/"))}, ""))
			m := c.read()
			if got := m.str("failure reason"); got != tc.want {
				t.Fatalf("failure %q, want %q", got, tc.want)
			}
			if tc.want != "" && m.id("info_hash") != h {
				t.Fatalf("failure without info_hash: %s", m.text)
			}
			// A scrape without a valid key gets zeros, as over HTTP.
			c.send(`{"action":"scrape","info_hash":` + jsonID(h) + `}`)
			if m = c.read(); m.raw["files"] == nil {
				t.Fatalf("scrape: %s", m.text)
			}
		})
	}
}

func TestListedMode(t *testing.T) {
	cfg := tracker.DefaultConfig()
	cfg.Listed = true
	r := newRules(t, cfg)
	ok := id{1}
	if err := r.lists.AddToWhitelist(context.Background(), ok); err != nil {
		t.Fatal(err)
	}
	srv := start(t, Config{}, r)
	c := dial(t, srv, "")
	c.announce(ok, id{'a'}, "")
	bad := id{2}
	c.send(announceJSON(bad, id{'a'}, ""))
	want := "Tracker error: The torrent: " + bittorrent.InfoHash(bad).String() + ", is not whitelisted"
	if m := c.read(); m.str("failure reason") != want || m.id("info_hash") != bad {
		t.Fatalf("got %s, want %q", m.text, want)
	}
}

// WebSocket peers are counted in the swarm but never handed to UDP or HTTP
// peers, and those never to WebSocket peers.
func TestTransportsDoNotMix(t *testing.T) {
	r := newRules(t, tracker.DefaultConfig())
	srv := start(t, Config{}, r)
	h := id{1}
	ctx := context.Background()
	udpPeer := func(port uint16, left int64) *bittorrent.AnnounceResponse {
		var resp bittorrent.AnnounceResponse
		req := bittorrent.AnnounceRequest{InfoHash: h, PeerID: id{'u', byte(port)}, Addr: netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), port), Left: left, NumWant: 50}
		if err := r.Announce(ctx, &req, &resp); err != nil {
			t.Fatal(err)
		}
		return &resp
	}
	udpPeer(1000, 5)
	a, b := dial(t, srv, ""), dial(t, srv, "")
	m := a.announce(h, id{'a'}, `,"left":0`)
	if m.num("complete") != 1 || m.num("incomplete") != 1 {
		t.Fatalf("ws answer counts %s, want the UDP leecher counted", m.text)
	}
	b.announce(h, id{'b'}, `,"left":7`+offersJSON(id{1}, id{2}))
	// b's offers: only a, never the UDP peer (which has no connection).
	if m := a.read(); m.raw["offer"] == nil {
		t.Fatalf("a got %s", m.text)
	}
	a.quiet(quietFor)
	// A UDP seeder sees the counts of all, and is handed only the UDP leecher.
	resp := udpPeer(2000, 0)
	if resp.Seeders != 2 || resp.Leechers != 2 {
		t.Fatalf("UDP answer counts %d/%d, want 2/2", resp.Seeders, resp.Leechers)
	}
	if len(resp.Peers4) != 1 || resp.Peers4[0].Addr.Port() != 1000 || len(resp.Peers6) != 0 {
		t.Fatalf("UDP answer peers %v", resp.Peers4)
	}
	// A UDP leecher with only WebSocket leechers and one seeder: gets the UDP seeder.
	resp = udpPeer(3000, 9)
	for _, p := range resp.Peers4 {
		if p.Addr.Port() != 1000 && p.Addr.Port() != 2000 {
			t.Fatalf("UDP peer handed %v", p)
		}
	}
	tot, _ := r.store.Totals(ctx)
	if tot.Seeders != 2 || tot.Leechers != 3 || tot.Torrents != 1 {
		t.Fatalf("totals %+v", tot)
	}
	list, _ := r.store.Torrents(ctx, 0, 10)
	if len(list) != 1 || list[0].Seeders != 2 || list[0].Leechers != 3 {
		t.Fatalf("torrents %+v", list)
	}
	// The WebSocket peers go with their connections; the torrent stays
	// while they are there, even with no stored peer (sweep).
	if _, err := r.store.Sweep(ctx, time.Now().Unix()+10); err != nil {
		t.Fatal(err)
	}
	if got := scrapeCounts(t, r, h); got != (bittorrent.SwarmStats{Seeders: 1, Leechers: 1}) {
		t.Fatalf("after the sweep of the UDP peers: %+v", got)
	}
	a.ws.Close()
	b.ws.Close()
	eventually(t, "the WebSocket peers to leave", func() bool { return scrapeCounts(t, r, h) == bittorrent.SwarmStats{} })
}

// Bounds

func TestMessageSizeLimit(t *testing.T) {
	r := newRules(t, tracker.DefaultConfig())
	srv := start(t, Config{}, r)
	c := dial(t, srv, "")
	big := announceJSON(id{1}, id{2}, `,"pad":"`+strings.Repeat("x", 64<<10)+`"`)
	c.send(big)
	_, err := c.readWithin(5 * time.Second)
	if !websocket.IsCloseError(err, websocket.CloseMessageTooBig) {
		t.Fatalf("a message over 64 KiB: %v, want close 1009", err)
	}
	// Just under the limit is fine.
	c = dial(t, srv, "")
	pad := 64<<10 - len(announceJSON(id{1}, id{2}, `,"pad":""`))
	c.announce(id{1}, id{2}, `,"pad":"`+strings.Repeat("x", pad)+`"`)
}

func TestOfferLimits(t *testing.T) {
	r := newRules(t, tracker.DefaultConfig())
	srv := start(t, Config{MaxOffers: 2, MaxPendingOffers: 3}, r)
	h := id{1}
	var others []*client
	for i := range 4 {
		c := dial(t, srv, "")
		c.announce(h, id{'o', byte(i)}, "")
		others = append(others, c)
	}
	s := dial(t, srv, "")
	count := func() int {
		n := 0
		for _, c := range others {
			for {
				m, err := c.readWithin(quietFor)
				if err != nil {
					break
				}
				if m.raw["offer"] != nil {
					n++
				}
			}
		}
		return n
	}
	s.announce(h, id{'s'}, offersJSON(id{1}, id{2}, id{3}, id{4}))
	if n := count(); n != 2 {
		t.Fatalf("%d offers relayed, want max_offers 2", n)
	}
	// Two offers wait; one more fits under 3 pending.
	s.announce(h, id{'s'}, offersJSON(id{5}, id{6}))
	if n := count(); n != 1 {
		t.Fatalf("%d offers relayed, want 1 (pending cap 3)", n)
	}
	s.announce(h, id{'s'}, offersJSON(id{7}))
	if n := count(); n != 0 {
		t.Fatalf("%d offers relayed past the pending cap", n)
	}
}

func TestOffersExpire(t *testing.T) {
	r := newRules(t, tracker.DefaultConfig())
	srv := start(t, Config{OfferTTL: 200 * time.Millisecond, MaxPendingOffers: 1}, r)
	h := id{1}
	a, s := dial(t, srv, ""), dial(t, srv, "")
	a.announce(h, id{'a'}, "")
	s.announce(h, id{'s'}, offersJSON(id{1}))
	a.read()
	time.Sleep(400 * time.Millisecond)
	a.send(answerJSON(h, id{'a'}, id{'s'}, id{1}))
	if m := a.read(); m.str("failure reason") != errNoOffer.Error() {
		t.Fatalf("answer to an expired offer: %s", m.text)
	}
	// The expired offer no longer counts against the pending cap.
	s.announce(h, id{'s'}, offersJSON(id{2}))
	if m := a.read(); m.id("offer_id") != (id{2}) {
		t.Fatalf("got %s", m.text)
	}
}

func TestConnectionLimits(t *testing.T) {
	r := newRules(t, tracker.DefaultConfig())
	srv := start(t, Config{MaxConnectionsPerIP: 2, MaxConnections: 3}, r)
	dial(t, srv, "")
	dial(t, srv, "")
	_, resp, err := websocket.DefaultDialer.Dial(srv.URL(), nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("third connection from one address: %v %v", err, resp)
	}
	// Another source address (127.0.0.2) fills the total.
	d2 := &websocket.Dialer{NetDial: func(network, addr string) (net.Conn, error) {
		return (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}).Dial(network, addr)
	}}
	ws, _, err := d2.Dial(srv.URL(), nil)
	if err != nil {
		t.Fatalf("another address: %v", err)
	}
	defer ws.Close()
	_, resp, err = d2.Dial(srv.URL(), nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("connection past the total: %v %v", err, resp)
	}
	// The client sees the handshake before the server files the connection,
	// so wait for it to be counted, or the count below could be 2 before
	// it was ever 3 and the slot still taken.
	eventually(t, "the third connection to be counted", func() bool { return srv.Connections() == 3 })
	ws.Close()
	eventually(t, "a slot to free", func() bool { return srv.Connections() == 2 })
	dialWith(t, d2, srv, "", true)
}

func TestPeersPerConnectionLimit(t *testing.T) {
	r := newRules(t, tracker.DefaultConfig())
	srv := start(t, Config{MaxPeersPerConnection: 2}, r)
	c := dial(t, srv, "")
	c.announce(id{1}, id{'a'}, "")
	c.announce(id{2}, id{'a'}, "")
	c.send(announceJSON(id{3}, id{'a'}, ""))
	if m := c.read(); m.str("failure reason") != errTooMany.Error() {
		t.Fatalf("got %s", m.text)
	}
	c.announce(id{1}, id{'a'}, "") // re-announces still work
}

// A connection that sends nothing is closed after IdleTimeout; one that
// answers no ping is closed after two ping intervals.
func TestIdleAndDeadConnections(t *testing.T) {
	t.Run("idle", func(t *testing.T) {
		r := newRules(t, tracker.DefaultConfig())
		srv := start(t, Config{PingInterval: 50 * time.Millisecond, IdleTimeout: 300 * time.Millisecond}, r)
		c := dial(t, srv, "")
		c.announce(id{1}, id{'a'}, "")
		// The client reads (and so answers pings) but sends nothing.
		_, err := c.readWithin(3 * time.Second)
		if !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
			t.Fatalf("idle client: %v", err)
		}
		eventually(t, "the idle peer to leave", func() bool { return scrapeCounts(t, r, id{1}) == bittorrent.SwarmStats{} })
	})
	t.Run("dead", func(t *testing.T) {
		r := newRules(t, tracker.DefaultConfig())
		// Pings far enough apart that the peer is seen joining before
		// two unanswered ones close its connection.
		srv := start(t, Config{PingInterval: 250 * time.Millisecond, WriteTimeout: 50 * time.Millisecond}, r)
		c := dialWith(t, websocket.DefaultDialer, srv, "", false)
		c.send(announceJSON(id{1}, id{'a'}, ""))
		// Once its peer is in, the connection is counted, so the waits
		// below cannot pass before it ever opened.
		eventually(t, "its peer to join", func() bool { return srv.reg.peers(id{1}) == 1 })
		// The client never reads, so pings go unanswered.
		eventually(t, "the dead connection to close", func() bool { return srv.Connections() == 0 })
		eventually(t, "its peer to leave", func() bool { return scrapeCounts(t, r, id{1}) == bittorrent.SwarmStats{} })
	})
}

// A client that does not read is closed rather than buffered for.
func TestSlowReader(t *testing.T) {
	r := newRules(t, tracker.DefaultConfig())
	srv := start(t, Config{MaxQueuedMessages: 4, MaxQueuedBytes: 256 << 10, WriteTimeout: 500 * time.Millisecond}, r)
	h := id{1}
	slow := dialWith(t, websocket.DefaultDialer, srv, "", false)
	slow.send(announceJSON(h, id{'z'}, ""))
	eventually(t, "the slow client's peer", func() bool { return srv.reg.peers(h) == 1 })
	// The slow client reads nothing. A fast sender relays 60 KiB
	// offers to it until the tracker gives up on it.
	fast := dial(t, srv, "")
	sdp, _ := json.Marshal(strings.Repeat("s", 60<<10))
	for i := 0; srv.reg.peers(h) > 1 || i == 0; i++ {
		if i > 2000 {
			t.Fatal("the tracker kept buffering for a client that does not read")
		}
		fast.send(announceJSON(h, id{'f'}, `,"offers":[{"offer":{"type":"offer","sdp":`+string(sdp)+`},"offer_id":`+jsonID(id{byte(i), byte(i >> 8)})+`}]`))
		if m := fast.read(); m.str("failure reason") != "" {
			t.Fatalf("fast: %s", m.text)
		}
		if srv.Connections() < 2 {
			break
		}
	}
	eventually(t, "the slow client to be closed", func() bool { return srv.Connections() == 1 })
}

func TestPlainHTTPRequest(t *testing.T) {
	r := newRules(t, tracker.DefaultConfig())
	srv := start(t, Config{}, r)
	resp, err := http.Get("http://" + srv.Addr().String() + "/announce")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUpgradeRequired {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

func TestShutdownClosesConnections(t *testing.T) {
	r := newRules(t, tracker.DefaultConfig())
	srv, err := New(Config{}, r, r.counters, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, _ := net.Listen("tcp4", "127.0.0.1:0")
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	<-srv.Ready()
	c := dial(t, srv, "")
	c.announce(id{1}, id{'a'}, "")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("second shutdown: %v", err)
	}
	if err := <-done; err != ErrServerClosed {
		t.Fatalf("serve: %v", err)
	}
	if _, err := c.readWithin(time.Second); !websocket.IsCloseError(err, websocket.CloseGoingAway) {
		t.Fatalf("client: %v", err)
	}
	if got := scrapeCounts(t, r, id{1}); got != (bittorrent.SwarmStats{}) {
		t.Fatalf("peers left after shutdown: %+v", got)
	}
}

// Two clients of one page share a socket: both peers of a torrent live on
// one connection, an offer of one reaches the other, and each leaves alone.
func TestPeersSharingAConnection(t *testing.T) {
	r := newRules(t, tracker.DefaultConfig())
	srv := start(t, Config{}, r)
	h, pa, pb := id{1}, id{'a'}, id{'b'}
	c := dial(t, srv, "")
	c.announce(h, pa, `,"left":1`)
	m := c.announce(h, pb, `,"left":1`+offersJSON(id{7}))
	if m.num("incomplete") != 2 {
		t.Fatalf("counts %s", m.text)
	}
	if m := c.read(); m.id("peer_id") != pb || m.raw["offer"] == nil {
		t.Fatalf("got %s, want b's offer (for a)", m.text)
	}
	c.send(answerJSON(h, pa, pb, id{7}))
	if m := c.read(); m.id("peer_id") != pa || m.raw["answer"] == nil {
		t.Fatalf("got %s, want a's answer (for b)", m.text)
	}
	if m := c.announce(h, pa, `,"event":"stopped"`); m.num("incomplete") != 1 || srv.reg.peers(h) != 1 {
		t.Fatalf("after a stopped: %s", m.text)
	}
}
