package snapshot

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/swarm"
	"github.com/starling-tracker/starling/internal/swarm/memswarm"
	"github.com/starling-tracker/starling/internal/swarm/swarmtest"
)

func announceLog(as ...swarm.Announce) []byte {
	b := AppendAnnouncesHeader(nil)
	for _, a := range as {
		b = AppendAnnounce(b, &a)
	}
	return b
}

func readAll(t *testing.T, b []byte) ([]swarm.Announce, error) {
	t.Helper()
	var got []swarm.Announce
	_, err := ReadAnnounces(bytes.NewReader(b), func(a *swarm.Announce) error {
		got = append(got, *a)
		return nil
	})
	return got, err
}

// TestAnnouncesRoundTrip: what an announce changes comes back field for
// field, IPv4, IPv6 and IPv4-mapped alike, and nothing of what it asks.
func TestAnnouncesRoundTrip(t *testing.T) {
	in := []swarm.Announce{
		swarmtest.Announce(swarmtest.Hash(1), swarmtest.PeerID(1), swarmtest.Addr4(1, 6881), 1_700_000_000),
		swarmtest.Announce(swarmtest.Hash(2), swarmtest.PeerID(2), swarmtest.Addr6(2, 51413), 1_700_000_001),
		swarmtest.Announce(swarmtest.Hash(3), swarmtest.PeerID(3), netip.MustParseAddrPort("[::ffff:10.1.2.3]:1"), -5),
	}
	in[0].Event, in[0].Left, in[0].Uploaded, in[0].Downloaded = bittorrent.EventCompleted, 0, 1<<40, -1
	in[1].Event, in[1].Left = bittorrent.EventStopped, bittorrent.LeftUnknown
	in[2].Event, in[2].NumWant, in[2].Compact, in[2].Sample = bittorrent.EventStarted, 50, true, 99
	got, err := readAll(t, announceLog(in...))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(in) {
		t.Fatalf("%d announces read, %d written", len(got), len(in))
	}
	for i, a := range in {
		want := swarm.Announce{InfoHash: a.InfoHash, PeerID: a.PeerID,
			Addr: netip.AddrPortFrom(a.Addr.Addr().Unmap(), a.Addr.Port()), Uploaded: a.Uploaded,
			Downloaded: a.Downloaded, Left: a.Left, Event: a.Event, Now: a.Now}
		if !reflect.DeepEqual(got[i], want) {
			t.Errorf("announce %d: read %+v, want %+v", i, got[i], want)
		}
	}
}

// TestAnnouncesRefused: a stream that is not a log, of another version,
// cut inside a record or holding a record no announce makes is refused
// with ErrFormat; one that ends between records is whole.
func TestAnnouncesRefused(t *testing.T) {
	one := announceLog(swarmtest.Announce(swarmtest.Hash(1), swarmtest.PeerID(1), swarmtest.Addr4(1, 6881), 1))
	bad := func(at int, v byte) []byte {
		b := bytes.Clone(one)
		b[at] = v
		return b
	}
	for _, tc := range []struct {
		name string
		in   []byte
		ok   bool
		n    int
	}{
		{"header only", one[:announcesHeader], true, 0},
		{"one record", one, true, 1},
		{"empty", nil, false, 0},
		{"cut in the header", one[:5], false, 0},
		{"a snapshot", []byte(magic + "\x01\x00\x00\x00"), false, 0},
		{"version 2", bad(len(announcesMagic), 2), false, 0},
		{"cut in a record", one[:len(one)-1], false, 0},
		{"family 5", bad(announcesHeader, 5), false, 0},
		{"event 4", bad(announcesHeader+17+66, 4), false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := ReadAnnounces(bytes.NewReader(tc.in), func(*swarm.Announce) error { return nil })
			if tc.ok != (err == nil) || err != nil && !errors.Is(err, ErrFormat) || n != tc.n {
				t.Fatalf("read %d, %v; want ok=%v and %d", n, err, tc.ok, tc.n)
			}
		})
	}
	stop := errors.New("stop")
	if n, err := ReadAnnounces(bytes.NewReader(one), func(*swarm.Announce) error { return stop }); err != stop || n != 0 {
		t.Fatalf("apply's error: read %d, %v", n, err)
	}
}

// TestAnnouncesOnTopOfSwarms is an upgrade's handover in small: swarms
// written out, then announces applied to the old store and recorded (new
// peers, role changes, a completion counted before the swarms were
// written, a fresh one, stops); applied in order on top of the swarms read
// back, they give the same swarms, counts and completions as the old store.
func TestAnnouncesOnTopOfSwarms(t *testing.T) {
	ctx := context.Background()
	old := filled(t, 20, 6)
	var stream bytes.Buffer
	if _, err := Stream(&stream, old.Dump, time.Now()); err != nil {
		t.Fatal(err)
	}
	log := AppendAnnouncesHeader(nil)
	do := func(a swarm.Announce) {
		swarmtest.Do(t, old, a)
		log = AppendAnnounce(log, &a)
	}
	for h := range 20 {
		ih := swarmtest.Hash(h)
		for i := range 6 {
			a := swarmtest.Announce(ih, swarmtest.PeerID(i), swarmtest.Addr4(i, 6881), 5000)
			switch i % 3 {
			case 0:
				a.Event, a.Left = bittorrent.EventCompleted, 0 // counted already when i%7 == 3
			case 1:
				a.Event = bittorrent.EventStopped
			}
			do(a)
		}
		a := swarmtest.Announce(ih, swarmtest.PeerID(100), swarmtest.Addr6(100, 7000), 5001)
		a.Event, a.Left = bittorrent.EventStarted, 77
		do(a)
	}
	do(swarmtest.Announce(swarmtest.Hash(1000), swarmtest.PeerID(1), swarmtest.Addr4(9, 9), 5002))

	dst := memswarm.New(opts)
	if _, err := Read(&stream, dst.Restore, 0); err != nil {
		t.Fatal(err)
	}
	n, err := ReadAnnounces(bytes.NewReader(log), func(a *swarm.Announce) error {
		_, err := dst.Announce(ctx, a, &bittorrent.AnnounceResponse{})
		return err
	})
	if err != nil || n != 20*7+1 {
		t.Fatalf("applied %d, %v", n, err)
	}
	sameSwarms(t, old, dst, append(hashes(20), swarmtest.Hash(1000)))
}

// FuzzReadAnnounces: no input panics or hangs; every announce handed out
// has a known event and an address of either family.
func FuzzReadAnnounces(f *testing.F) {
	f.Add(announceLog(swarmtest.Announce(swarmtest.Hash(1), swarmtest.PeerID(1), swarmtest.Addr4(1, 6881), 1),
		swarmtest.Announce(swarmtest.Hash(2), swarmtest.PeerID(2), swarmtest.Addr6(2, 6881), 2)))
	f.Add([]byte(announcesMagic))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := ReadAnnounces(bytes.NewReader(data), func(a *swarm.Announce) error {
			if a.Event > bittorrent.EventCompleted || !a.Addr.Addr().IsValid() || a.NumWant != 0 {
				t.Fatalf("announce %+v handed out", a)
			}
			return nil
		})
		if err != nil && !errors.Is(err, ErrFormat) {
			t.Fatalf("error without ErrFormat: %v", err)
		}
	})
}
