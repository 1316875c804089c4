package snapshot

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/swarm"
	"github.com/starling-tracker/starling/internal/swarm/memswarm"
	"github.com/starling-tracker/starling/internal/swarm/swarmtest"
)

var opts = swarm.Options{RemovePeerlessTorrents: true, KeepCompleted: true}

// filled is a store of torrents small and big, IPv4 and IPv6 peers,
// seeders, leechers and completions; peer i of every torrent was last
// seen at 1000+i.
func filled(t testing.TB, torrents, peers int) *memswarm.Store {
	t.Helper()
	s := memswarm.New(opts)
	for h := range torrents {
		n := peers
		if h == 0 {
			n = peers * 20
		}
		for i := range n {
			addr := swarmtest.Addr4(i, 6881)
			if i%4 == 1 {
				addr = swarmtest.Addr6(i, 6881)
			}
			a := swarmtest.Announce(swarmtest.Hash(h), swarmtest.PeerID(i), addr, int64(1000+i))
			a.Left = int64(i % 3)
			if i%7 == 3 {
				a.Event = bittorrent.EventCompleted
			}
			swarmtest.Do(t, s, a)
		}
	}
	return s
}

func encode(t testing.TB, s *memswarm.Store) []byte {
	t.Helper()
	var b bytes.Buffer
	w := newWriter(&b)
	if _, err := w.write(s.Dump, time.Unix(1_700_000_000, 0)); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	src := filled(t, 30, 12)
	if err := src.SetCompleted(ctx, []swarm.CompletedCount{{InfoHash: swarmtest.Hash(500), Completed: 9}}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "sub", "swarms.snapshot")
	wst, err := Write(path, src.Dump, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != wst.Bytes {
		t.Fatalf("file %v (%v), written %d bytes", fi, err, wst.Bytes)
	}
	if left, _ := filepath.Glob(path + ".tmp-*"); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
	dst := memswarm.New(opts)
	rst, err := LoadFile(path, dst.Restore, 0)
	if err != nil {
		t.Fatal(err)
	}
	if rst.Peers != wst.Peers || rst.Expired != 0 || rst.Bytes != wst.Bytes {
		t.Fatalf("read %+v, wrote %+v", rst, wst)
	}
	sameSwarms(t, src, dst, hashes(30))

	t.Run("peers that expired while down are dropped", func(t *testing.T) {
		dst := memswarm.New(opts)
		// Peers 0..5 of each torrent were last seen at 1000..1005.
		st, err := LoadFile(path, dst.Restore, 1005)
		if err != nil {
			t.Fatal(err)
		}
		for h := range 30 {
			tr, _, _ := dst.Torrent(ctx, swarmtest.Hash(h))
			for _, p := range tr.Peers {
				if p.Updated <= 1005 {
					t.Fatalf("torrent %d: peer %v last seen at %d kept", h, p.Addr, p.Updated)
				}
			}
			n := 12
			if h == 0 {
				n = 240
			}
			if len(tr.Peers) != n-6 {
				t.Fatalf("torrent %d: %d peers restored, want %d", h, len(tr.Peers), n-6)
			}
		}
		if st.Expired != 30*6 {
			t.Fatalf("%d expired, want %d", st.Expired, 30*6)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		_, err := LoadFile(filepath.Join(t.TempDir(), "none"), memswarm.New(opts).Restore, 0)
		if !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("got %v", err)
		}
	})
}

// sameSwarms fails t unless got holds want's torrents hs (peers, counts,
// completions) and the same totals.
func sameSwarms(t *testing.T, want, got *memswarm.Store, hs []bittorrent.InfoHash) {
	t.Helper()
	ctx := context.Background()
	for _, h := range hs {
		w, _, _ := want.Torrent(ctx, h)
		g, _, _ := got.Torrent(ctx, h)
		if !reflect.DeepEqual(w, g) {
			t.Fatalf("torrent %x: %+v, want %+v", h[:4], g, w)
		}
	}
	wt, _ := want.Totals(ctx)
	gt, _ := got.Totals(ctx)
	if wt != gt {
		t.Fatalf("totals %+v, want %+v", gt, wt)
	}
}

// withCRC replaces the checksum at the end of b by b's own.
func withCRC(b []byte) []byte {
	b = bytes.Clone(b)
	binary.LittleEndian.PutUint32(b[len(b)-4:], crc32.Checksum(b[:len(b)-4], castagnoli))
	return b
}

// TestRefused: whatever is wrong with a file, Read says so with ErrFormat
// (never a panic), and the text says what.
func TestRefused(t *testing.T) {
	good := encode(t, filled(t, 3, 5))
	newer := bytes.Clone(good)
	binary.LittleEndian.PutUint32(newer[8:], Version+1)
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 0x40
	badFamily := bytes.Clone(good)
	badFamily[headerLen+torrentLen] = 5
	badCount := bytes.Clone(good)
	binary.LittleEndian.PutUint64(badCount[len(badCount)-12:], 1)
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "0 bytes, shorter than a header"},
		{"short", good[:10], "10 bytes, shorter than a header"},
		{"foreign", []byte("[metadata]\nschema_version = \"2.0.0\"\n[core]\n"), "no snapshot header"},
		{"newer format", withCRC(newer), "is newer than"},
		{"flipped byte", flipped, ""},
		{"bad family", withCRC(badFamily), "address family 5"},
		{"end counts disagree", withCRC(badCount), "the end says"},
		{"trailing data", append(bytes.Clone(good), 0), "after the end"},
		{"header only", good[:headerLen], "torn or truncated"},
		{"no checksum", good[:len(good)-4], "torn or truncated"},
	}
	for cut := headerLen + 1; cut < len(good); cut += 37 {
		tests = append(tests, struct {
			name string
			data []byte
			want string
		}{"truncated at " + itoa(cut), good[:cut], ""})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Read(bytes.NewReader(tt.data), memswarm.New(opts).Restore, 0)
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("got %v, want ErrFormat", err)
			}
			if tt.want != "" && !bytes.Contains([]byte(err.Error()), []byte(tt.want)) {
				t.Fatalf("error %q does not say %q", err, tt.want)
			}
		})
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// FuzzRead: no input panics, hangs or allocates beyond a chunk of peers;
// an accepted one restores exactly the peers it counted.
func FuzzRead(f *testing.F) {
	f.Add(encode(f, filled(f, 2, 3)))
	f.Add([]byte(magic))
	f.Fuzz(func(t *testing.T, data []byte) {
		s := memswarm.New(opts)
		st, err := Read(bytes.NewReader(data), s.Restore, 0)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error without ErrFormat: %v", err)
			}
			return
		}
		tot, _ := s.Totals(context.Background())
		if tot.Seeders+tot.Leechers > st.Peers {
			t.Fatalf("restored %d peers from %d", tot.Seeders+tot.Leechers, st.Peers)
		}
	})
}

func netipFrom(v uint32) netip.AddrPort {
	var a [4]byte
	binary.BigEndian.PutUint32(a[:], v|0x0a000000)
	return netip.AddrPortFrom(netip.AddrFrom4(a), 6881)
}

// TestRoundTripBatches: a swarm larger than a chunk of peers (so written
// in several records, restored in order by one goroutine) and more small
// swarms than a batch holds come back as they were, whatever the number
// of cores restoring them.
func TestRoundTripBatches(t *testing.T) {
	ctx := context.Background()
	src := filled(t, 3*maxBatchDumps, 3)
	big := swarmtest.Hash(1 << 20)
	for i := range 2*chunk + 100 {
		a := swarmtest.Announce(big, swarmtest.PeerID(i), swarmtest.Addr4(i, 7000), 5000)
		a.Left = int64(i % 2)
		swarmtest.Do(t, src, a)
	}
	var buf bytes.Buffer
	wst, err := Stream(&buf, src.Dump, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, procs := range []int{1, 2, 4} {
		t.Run(fmt.Sprintf("GOMAXPROCS=%d", procs), func(t *testing.T) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
			dst := memswarm.New(opts)
			rst, err := Read(bytes.NewReader(buf.Bytes()), dst.Restore, 0)
			if err != nil {
				t.Fatal(err)
			}
			if rst.Peers != wst.Peers || rst.Torrents != wst.Torrents {
				t.Fatalf("read %+v, wrote %+v", rst, wst)
			}
			for _, h := range append([]bittorrent.InfoHash{big}, hashes(3*maxBatchDumps)...) {
				want, _, _ := src.Torrent(ctx, h)
				got, _, _ := dst.Torrent(ctx, h)
				if !reflect.DeepEqual(want, got) {
					t.Fatalf("torrent %s: restored %d peers, want %d (or they differ)", h, len(got.Peers), len(want.Peers))
				}
			}
			if wt, gt := first(src.Totals(ctx)), first(dst.Totals(ctx)); wt != gt {
				t.Fatalf("totals %+v, want %+v", gt, wt)
			}
		})
	}
}

func hashes(n int) []bittorrent.InfoHash {
	out := make([]bittorrent.InfoHash, n)
	for i := range out {
		out[i] = swarmtest.Hash(i)
	}
	return out
}

func first[T any](v T, _ error) T { return v }
