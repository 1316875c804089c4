package snapshot

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/swarm"
	"github.com/starling-tracker/starling/internal/swarm/memswarm"
)

// bigStore holds peers peers, ten to a torrent, all IPv4, last seen now.
func bigStore(b *testing.B, peers int, now int64) *memswarm.Store {
	s := memswarm.New(opts)
	d := swarm.TorrentDump{Peers: make([]swarm.PeerDump, 10)}
	for t := range peers / 10 {
		binary.BigEndian.PutUint64(d.InfoHash[:], uint64(t)*0x9e3779b97f4a7c15)
		binary.BigEndian.PutUint32(d.InfoHash[16:], uint32(t))
		for i := range d.Peers {
			p := &d.Peers[i]
			v := uint32(t*10 + i)
			p.Addr = netipFrom(v)
			binary.BigEndian.PutUint32(p.ID[:], v)
			p.Updated, p.Left = now, int64(i%2)
		}
		if err := s.Restore(&d); err != nil {
			b.Fatal(err)
		}
	}
	return s
}

// BenchmarkSnapshot writes and reads back snapshots of 1,000,000 and
// 10,000,000 peers and reports the file's size per peer, the write and
// load times, the time of an upgrade's hand-over (written into a pipe
// while another goroutine loads it, as the two processes do), and the
// longest an announce waited while the snapshot was written (against the
// longest without a snapshot, in the same run):
//
//	go test -run '^$' -bench Snapshot -benchtime 1x ./internal/snapshot
func BenchmarkSnapshot(b *testing.B) {
	for _, peers := range []int{1_000_000, 10_000_000} {
		b.Run(fmt.Sprintf("peers=%d", peers), func(b *testing.B) {
			now := time.Now().Unix()
			s := bigStore(b, peers, now)
			path := filepath.Join(b.TempDir(), "swarms.snapshot")
			for b.Loop() {
				quiet := announceWhile(s, peers, func() { time.Sleep(2 * time.Second) })
				var wst Stats
				var err error
				busy := announceWhile(s, peers, func() { wst, err = Write(path, s.Dump, time.Now()) })
				if err != nil {
					b.Fatal(err)
				}
				dst := memswarm.New(opts)
				rst, err := LoadFile(path, dst.Restore, now-900)
				if err != nil {
					b.Fatal(err)
				}
				if rst.Peers < uint64(peers) {
					b.Fatalf("loaded %d peers of %d", rst.Peers, peers)
				}
				handover, err := handOver(s, now-900)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(handover.Seconds(), "handover-s")
				b.ReportMetric(float64(wst.Bytes)/float64(wst.Peers), "file-bytes/peer")
				b.ReportMetric(wst.Took.Seconds(), "write-s")
				b.ReportMetric(rst.Took.Seconds(), "load-s")
				b.ReportMetric(float64(busy.Microseconds()), "max-announce-µs-writing")
				b.ReportMetric(float64(quiet.Microseconds()), "max-announce-µs-quiet")
				os.Remove(path)
			}
		})
	}
}

// handOver streams s through a pipe into a new store loaded at the same
// time, and returns how long it took until the new store had it all.
func handOver(s *memswarm.Store, cutoff int64) (time.Duration, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer r.Close()
	began := time.Now()
	wrote := make(chan error, 1)
	go func() {
		_, err := Stream(w, s.Dump, time.Now())
		w.Close()
		wrote <- err
	}()
	dst := memswarm.New(opts)
	_, err = Read(r, dst.Restore, cutoff)
	took := time.Since(began)
	if werr := <-wrote; err == nil {
		err = werr
	}
	return took, err
}

// announceWhile announces to random torrents of s from one goroutine while
// f runs and returns the longest announce.
func announceWhile(s *memswarm.Store, peers int, f func()) time.Duration {
	var stop atomic.Bool
	done := make(chan time.Duration)
	go func() {
		var longest time.Duration
		var resp bittorrent.AnnounceResponse
		a := swarm.Announce{NumWant: 30, Families: bittorrent.IPv4, Compact: true, Left: 1, Now: time.Now().Unix()}
		for k := uint64(1); !stop.Load(); k++ {
			t := int(k*0x9e3779b97f4a7c15>>20) % (peers / 10)
			binary.BigEndian.PutUint64(a.InfoHash[:], uint64(t)*0x9e3779b97f4a7c15)
			binary.BigEndian.PutUint32(a.InfoHash[16:], uint32(t))
			a.Addr = netipFrom(uint32(1<<31 + k%100000))
			resp.Reset()
			began := time.Now()
			_, _ = s.Announce(context.Background(), &a, &resp)
			longest = max(longest, time.Since(began))
		}
		done <- longest
	}()
	f()
	stop.Store(true)
	return <-done
}

// BenchmarkRead parses a snapshot of 100,000 peers from memory into a
// restore that keeps nothing: the reader's own cost per peer, apart from
// the store's.
//
//	go test -run '^$' -bench Read ./internal/snapshot
func BenchmarkRead(b *testing.B) {
	now := time.Now().Unix()
	var buf bytes.Buffer
	if _, err := Stream(&buf, bigStore(b, 100_000, now).Dump, time.Now()); err != nil {
		b.Fatal(err)
	}
	data := buf.Bytes()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		st, err := Read(bytes.NewReader(data), func(*swarm.TorrentDump) error { return nil }, now-900)
		if err != nil || st.Peers != 100_000 {
			b.Fatal(st, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/100_000, "ns/peer")
}
