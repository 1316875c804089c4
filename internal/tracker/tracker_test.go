package tracker

import (
	"context"
	"errors"
	"net/netip"
	"reflect"
	"testing"

	"github.com/starling-tracker/starling/internal/access"
	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/clock"
	"github.com/starling-tracker/starling/internal/swarm"
)

// recordingStore is a swarm.Store that remembers what the rules passed down,
// so these tests check the rules alone; the store's own rules are checked by
// the swarmtest conformance suite.
type recordingStore struct {
	swarm.Store
	last      swarm.Announce
	announces int
	completed bool
	scrape    bittorrent.SwarmStats
}

func (s *recordingStore) Announce(_ context.Context, a *swarm.Announce, resp *bittorrent.AnnounceResponse) (swarm.Result, error) {
	s.last = *a
	s.announces++
	resp.Seeders, resp.Leechers = 1, 2
	return swarm.Result{Completed: 7, CountedCompletion: s.completed}, nil
}

func (s *recordingStore) Scrape(_ context.Context, hs []bittorrent.InfoHash, out []bittorrent.SwarmStats) ([]bittorrent.SwarmStats, error) {
	for range hs {
		out = append(out, s.scrape)
	}
	return out, nil
}

type sinkFunc func(bittorrent.InfoHash, uint32)

func (f sinkFunc) Completed(h bittorrent.InfoHash, n uint32) { f(h, n) }

const now = 1_700_000_000

var (
	hashA   = bittorrent.InfoHash{0xaa}
	hashB   = bittorrent.InfoHash{0xbb}
	goodKey = mustKey("YZSl4lMZupRuOpSRC3krIKR5BPB14nrJ")
	oldKey  = mustKey("abcdefghijklmnopqrstuvwxyz012345")
	nowKey  = mustKey("ABCDEFGHIJKLMNOPQRSTUVWXYZ012345")
	noKey   = mustKey("00000000000000000000000000000000")
)

func mustKey(s string) bittorrent.Key {
	k, err := bittorrent.ParseKey(s)
	if err != nil {
		panic(err)
	}
	return k
}

func newTracker(t *testing.T, cfg Config) (*Tracker, *recordingStore) {
	t.Helper()
	lists := access.New(nil)
	ctx := context.Background()
	for _, r := range []access.KeyRecord{
		{Key: goodKey, Permanent: true},
		{Key: oldKey, ValidUntil: now - 1},
		{Key: nowKey, ValidUntil: now},
	} {
		if err := lists.AddKey(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := lists.AddToWhitelist(ctx, hashA); err != nil {
		t.Fatal(err)
	}
	st := &recordingStore{}
	return New(cfg, st, lists, clock.NewManual(now), nil), st
}

func announce(h bittorrent.InfoHash, key *bittorrent.Key) *bittorrent.AnnounceRequest {
	r := &bittorrent.AnnounceRequest{InfoHash: h, Addr: netip.MustParseAddrPort("10.0.0.1:6881")}
	if key != nil {
		r.Key, r.HasKey = *key, true
	}
	return r
}

func TestModes(t *testing.T) {
	public := DefaultConfig()
	listed := DefaultConfig()
	listed.Listed = true
	private := DefaultConfig()
	private.Private = true
	privateListed := private
	privateListed.Listed = true
	noExpiry := private
	noExpiry.CheckKeysExpiration = false

	tests := []struct {
		name    string
		cfg     Config
		req     *bittorrent.AnnounceRequest
		wantErr string
		kind    bittorrent.ErrorKind
	}{
		{"public any torrent", public, announce(hashB, nil), "", 0},
		{"public ignores a key", public, announce(hashB, &noKey), "", 0},
		{"listed whitelisted", listed, announce(hashA, nil), "", 0},
		{"listed not whitelisted", listed, announce(hashB, nil),
			"The torrent: bb00000000000000000000000000000000000000, is not whitelisted", bittorrent.KindTracker},
		{"private no key", private, announce(hashA, nil),
			"Missing authentication key param for private tracker.", bittorrent.KindAuth},
		{"private unknown key", private, announce(hashA, &noKey),
			"Failed to read key: 00000000000000000000000000000000", bittorrent.KindAuth},
		{"private expired key", private, announce(hashA, &oldKey), "Key has expired", bittorrent.KindAuth},
		{"private key in its last second", private, announce(hashA, &nowKey), "", 0},
		{"private expired key, expiry not checked", noExpiry, announce(hashA, &oldKey), "", 0},
		{"private permanent key", private, announce(hashB, &goodKey), "", 0},
		{"private_listed good key, whitelisted", privateListed, announce(hashA, &goodKey), "", 0},
		{"private_listed good key, not whitelisted", privateListed, announce(hashB, &goodKey),
			"The torrent: bb00000000000000000000000000000000000000, is not whitelisted", bittorrent.KindTracker},
		{"private_listed no key", privateListed, announce(hashA, nil),
			"Missing authentication key param for private tracker.", bittorrent.KindAuth},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, st := newTracker(t, tt.cfg)
			var resp bittorrent.AnnounceResponse
			err := tr.Announce(context.Background(), tt.req, &resp)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				if st.announces != 1 {
					t.Fatalf("store saw %d announces, want 1", st.announces)
				}
				return
			}
			var ce *bittorrent.ClientError
			if !errors.As(err, &ce) || ce.Msg != tt.wantErr || ce.Kind != tt.kind {
				t.Fatalf("error %#v, want %q kind %d", err, tt.wantErr, tt.kind)
			}
			if st.announces != 0 {
				t.Fatal("a refused announce reached the store")
			}
		})
	}
}

func TestNumWantAndIntervals(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Interval, cfg.MinInterval = 300, 60
	tests := []struct {
		numwant int32
		want    int
	}{{0, 74}, {-1, 74}, {1, 1}, {30, 30}, {74, 74}, {75, 74}, {500, 74}}
	for _, tt := range tests {
		tr, st := newTracker(t, cfg)
		req := announce(hashA, nil)
		req.NumWant = tt.numwant
		var resp bittorrent.AnnounceResponse
		if err := tr.Announce(context.Background(), req, &resp); err != nil {
			t.Fatal(err)
		}
		if st.last.NumWant != tt.want {
			t.Errorf("numwant %d: store asked for %d, want %d", tt.numwant, st.last.NumWant, tt.want)
		}
		if resp.Interval != 300 || resp.MinInterval != 60 || resp.Seeders != 1 || resp.Leechers != 2 {
			t.Errorf("response %+v", resp)
		}
		if st.last.Now != now || st.last.Families != bittorrent.BothFamilies {
			t.Errorf("announce passed down %+v", st.last)
		}
	}
	cfg.MaxPeersPerAnnounce = 10
	tr, st := newTracker(t, cfg)
	req := announce(hashA, nil)
	req.NumWant = 50
	if err := tr.Announce(context.Background(), req, &bittorrent.AnnounceResponse{}); err != nil {
		t.Fatal(err)
	}
	if st.last.NumWant != 10 {
		t.Errorf("max_peers_per_announce 10: store asked for %d", st.last.NumWant)
	}
}

func TestClientAddress(t *testing.T) {
	tests := []struct {
		name     string
		external string
		in       string
		want     string
	}{
		{"default keeps loopback", "0.0.0.0", "127.0.0.1:6881", "127.0.0.1:6881"},
		{"unset keeps loopback", "", "127.0.0.1:6881", "127.0.0.1:6881"},
		{"external replaces v4 loopback", "203.0.113.7", "127.0.0.1:6881", "203.0.113.7:6881"},
		{"external replaces v6 loopback", "203.0.113.7", "[::1]:6881", "203.0.113.7:6881"},
		{"external leaves others", "203.0.113.7", "10.1.2.3:6881", "10.1.2.3:6881"},
		{"v4-mapped becomes v4", "", "[::ffff:10.1.2.3]:6881", "10.1.2.3:6881"},
		{"v6 stays v6", "", "[2001:db8::1]:6881", "[2001:db8::1]:6881"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			if tt.external != "" {
				cfg.ExternalIP = netip.MustParseAddr(tt.external)
			}
			tr, st := newTracker(t, cfg)
			req := announce(hashA, nil)
			req.Addr = netip.MustParseAddrPort(tt.in)
			if err := tr.Announce(context.Background(), req, &bittorrent.AnnounceResponse{}); err != nil {
				t.Fatal(err)
			}
			if got := st.last.Addr.String(); got != tt.want {
				t.Fatalf("stored as %s, want %s", got, tt.want)
			}
		})
	}
}

func TestCompletionSink(t *testing.T) {
	tr, st := newTracker(t, DefaultConfig())
	var got []uint32
	tr.sink = sinkFunc(func(h bittorrent.InfoHash, n uint32) { got = append(got, n) })
	ctx := context.Background()
	_ = tr.Announce(ctx, announce(hashA, nil), &bittorrent.AnnounceResponse{})
	st.completed = true
	_ = tr.Announce(ctx, announce(hashA, nil), &bittorrent.AnnounceResponse{})
	if len(got) != 1 || got[0] != 7 {
		t.Fatalf("sink got %v, want one count of 7", got)
	}
}

// TestRecord: a recorder hears every announce the store applied, as the
// store got it, and none it refused or after Record(nil).
func TestRecord(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Listed = true
	tr, st := newTracker(t, cfg)
	ctx := context.Background()
	var heard []swarm.Announce
	tr.Record(func(a *swarm.Announce) { heard = append(heard, *a) })
	_ = tr.Announce(ctx, announce(hashA, nil), &bittorrent.AnnounceResponse{})
	if err := tr.Announce(ctx, announce(hashB, nil), &bittorrent.AnnounceResponse{}); err == nil {
		t.Fatal("an unlisted torrent was announced in listed mode")
	}
	tr.Record(nil)
	_ = tr.Announce(ctx, announce(hashA, nil), &bittorrent.AnnounceResponse{})
	if len(heard) != 1 || heard[0] != st.last || heard[0].InfoHash != hashA {
		t.Fatalf("heard %+v, want the one announce the store applied (%+v)", heard, st.last)
	}
}

func TestScrapeVisibility(t *testing.T) {
	listed := DefaultConfig()
	listed.Listed = true
	private := DefaultConfig()
	private.Private = true
	full := bittorrent.SwarmStats{Seeders: 3, Completed: 4, Leechers: 5}
	tests := []struct {
		name string
		cfg  Config
		req  bittorrent.ScrapeRequest
		want []bittorrent.SwarmStats
	}{
		{"public", DefaultConfig(), bittorrent.ScrapeRequest{InfoHashes: []bittorrent.InfoHash{hashA, hashB}},
			[]bittorrent.SwarmStats{full, full}},
		{"listed zeroes the unlisted", listed, bittorrent.ScrapeRequest{InfoHashes: []bittorrent.InfoHash{hashB, hashA, hashB}},
			[]bittorrent.SwarmStats{{}, full, {}}},
		{"private without key is all zeros", private, bittorrent.ScrapeRequest{InfoHashes: []bittorrent.InfoHash{hashA, hashB}},
			[]bittorrent.SwarmStats{{}, {}}},
		{"private with unknown key is all zeros", private, bittorrent.ScrapeRequest{InfoHashes: []bittorrent.InfoHash{hashA}, Key: noKey, HasKey: true},
			[]bittorrent.SwarmStats{{}}},
		{"private with expired key is all zeros", private, bittorrent.ScrapeRequest{InfoHashes: []bittorrent.InfoHash{hashA}, Key: oldKey, HasKey: true},
			[]bittorrent.SwarmStats{{}}},
		{"private with key", private, bittorrent.ScrapeRequest{InfoHashes: []bittorrent.InfoHash{hashA}, Key: goodKey, HasKey: true},
			[]bittorrent.SwarmStats{full}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, st := newTracker(t, tt.cfg)
			st.scrape = full
			var resp bittorrent.ScrapeResponse
			if err := tr.Scrape(context.Background(), &tt.req, &resp); err != nil {
				t.Fatal(err)
			}
			if len(resp.Files) != len(tt.want) {
				t.Fatalf("got %d entries, want %d", len(resp.Files), len(tt.want))
			}
			for i := range tt.want {
				if resp.Files[i] != tt.want[i] {
					t.Errorf("entry %d = %+v, want %+v", i, resp.Files[i], tt.want[i])
				}
			}
		})
	}
}

func TestMode(t *testing.T) {
	for _, tt := range []struct {
		private, listed bool
		want            string
	}{{false, false, "public"}, {false, true, "listed"}, {true, false, "private"}, {true, true, "private_listed"}} {
		cfg := DefaultConfig()
		cfg.Private, cfg.Listed = tt.private, tt.listed
		tr, _ := newTracker(t, cfg)
		if got := tr.Mode(); got != tt.want {
			t.Errorf("Mode() = %q, want %q", got, tt.want)
		}
	}
}

// TestAnnounceSetsEveryField: Announce fills the pooled swarm.Announce
// field by field, so a field added to it must be set there too, or a
// value from an earlier request would leak into the next.
func TestAnnounceSetsEveryField(t *testing.T) {
	if n := reflect.TypeFor[swarm.Announce]().NumField(); n != 12 {
		t.Fatalf("swarm.Announce has %d fields; Tracker.Announce sets 12: set the new ones there and update this count", n)
	}
}
