package fullscrape_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anacrolix/torrent/bencode"

	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/fullscrape"
	"github.com/starling-tracker/starling/internal/swarm"
	"github.com/starling-tracker/starling/internal/swarm/memswarm"
)

// sliceSource is a store of fixed torrents sorted by hash.
type sliceSource struct {
	torrents []swarm.TorrentSummary
	calls    atomic.Int64
	delay    time.Duration
	err      error
	// between runs after each page, to change the store mid-build.
	between func(s *sliceSource)
}

func (s *sliceSource) Torrents(ctx context.Context, offset, limit int) ([]swarm.TorrentSummary, error) {
	s.calls.Add(1)
	if s.delay > 0 {
		time.Sleep(s.delay)
	}
	if s.err != nil {
		return nil, s.err
	}
	if offset >= len(s.torrents) {
		return nil, nil
	}
	out := slices.Clone(s.torrents[offset:min(len(s.torrents), offset+limit)])
	if s.between != nil {
		s.between(s)
	}
	return out, nil
}

func randomTorrents(n int, seed uint64) []swarm.TorrentSummary {
	r := rand.New(rand.NewPCG(seed, seed))
	ts := make([]swarm.TorrentSummary, n)
	for i := range ts {
		binary.BigEndian.PutUint64(ts[i].InfoHash[:], r.Uint64())
		binary.BigEndian.PutUint64(ts[i].InfoHash[8:], r.Uint64())
		binary.BigEndian.PutUint32(ts[i].InfoHash[16:], r.Uint32())
		ts[i].Seeders = r.Uint32N(1000)
		ts[i].Leechers = r.Uint32N(5000)
		ts[i].Completed = r.Uint32()
	}
	slices.SortFunc(ts, func(a, b swarm.TorrentSummary) int { return bytes.Compare(a.InfoHash[:], b.InfoHash[:]) })
	return slices.CompactFunc(ts, func(a, b swarm.TorrentSummary) bool { return a.InfoHash == b.InfoHash })
}

type fileStats struct {
	Complete   int64 `bencode:"complete"`
	Downloaded int64 `bencode:"downloaded"`
	Incomplete int64 `bencode:"incomplete"`
}

// decodeFiles decodes a full scrape with anacrolix's decoder, which knows
// nothing of our encoder.
func decodeFiles(t testing.TB, body []byte) map[string]fileStats {
	t.Helper()
	var v struct {
		Files map[string]fileStats `bencode:"files"`
	}
	if err := bencode.Unmarshal(body, &v); err != nil {
		t.Fatalf("anacrolix bencode cannot decode the full scrape: %v", err)
	}
	return v.Files
}

func gunzip(t testing.TB, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func checkCounts(t *testing.T, files map[string]fileStats, want []swarm.TorrentSummary) {
	t.Helper()
	if len(files) != len(want) {
		t.Fatalf("%d torrents in the answer, want %d", len(files), len(want))
	}
	for _, w := range want {
		got, ok := files[string(w.InfoHash[:])]
		if !ok {
			t.Fatalf("torrent %s missing", w.InfoHash)
		}
		if got != (fileStats{int64(w.Seeders), int64(w.Completed), int64(w.Leechers)}) {
			t.Fatalf("torrent %s: got %+v, want %+v", w.InfoHash, got, w.SwarmStats)
		}
	}
}

func TestCounts(t *testing.T) {
	ctx := context.Background()
	want := randomTorrents(100_000, 1)

	mem := memswarm.New(swarm.Options{})
	counts := make([]swarm.CompletedCount, len(want))
	memWant := slices.Clone(want)
	for i := range want {
		memWant[i].Seeders, memWant[i].Leechers = 0, 0
		memWant[i].Completed = max(1, memWant[i].Completed)
		counts[i] = swarm.CompletedCount{InfoHash: want[i].InfoHash, Completed: memWant[i].Completed}
	}
	if err := mem.SetCompleted(ctx, counts); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		src  fullscrape.Source
		want []swarm.TorrentSummary
		page int
	}{
		{"100000 torrents, pages of 10000", &sliceSource{torrents: want}, want, 0},
		{"100000 torrents, odd pages", &sliceSource{torrents: want}, want, 777},
		{"memswarm, 100000 torrents", mem, memWant, 0},
		{"empty", &sliceSource{}, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := fullscrape.New(tt.src, fullscrape.Config{PageSize: tt.page})
			body, err := b.Get(ctx)
			if err != nil {
				t.Fatal(err)
			}
			checkCounts(t, decodeFiles(t, body.Plain), tt.want)
			if !bytes.Equal(gunzip(t, body.Gzip), body.Plain) {
				t.Fatal("gzip body does not decompress to the plain body")
			}
			if body.Torrents != len(tt.want) {
				t.Fatalf("Torrents = %d, want %d", body.Torrents, len(tt.want))
			}
			if !bytes.Equal(body.Plain, fullscrape.Append(nil, tt.want)) {
				t.Fatal("paged build differs from the one-shot encoding")
			}
		})
	}
}

func TestListedKeepsOnlyWhitelisted(t *testing.T) {
	all := randomTorrents(5000, 2)
	listed := map[bittorrent.InfoHash]bool{}
	var want []swarm.TorrentSummary
	for i, ts := range all {
		if i%3 == 0 {
			listed[ts.InfoHash] = true
			want = append(want, ts)
		}
	}
	b := fullscrape.New(&sliceSource{torrents: all}, fullscrape.Config{
		PageSize: 100, Listed: func(h bittorrent.InfoHash) bool { return listed[h] }})
	body, err := b.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	checkCounts(t, decodeFiles(t, body.Plain), want)
}

// TestStoreChangesDuringBuild: torrents added before the offset between two
// pages shift the next page back; the answer must still have sorted, unique
// keys (anacrolix's decoder accepts duplicates, so they are checked here).
func TestStoreChangesDuringBuild(t *testing.T) {
	all := randomTorrents(1000, 3)
	src := &sliceSource{torrents: slices.Clone(all[500:])}
	early := all[:500]
	src.between = func(s *sliceSource) {
		if len(early) == 0 {
			return
		}
		s.torrents = append([]swarm.TorrentSummary{early[len(early)-1]}, s.torrents...)
		early = early[:len(early)-1]
	}
	b := fullscrape.New(src, fullscrape.Config{PageSize: 10})
	body, err := b.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Walk the keys: strictly increasing.
	var v struct {
		Files map[string]fileStats `bencode:"files"`
	}
	if err := bencode.Unmarshal(body.Plain, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Files) != body.Torrents {
		t.Fatalf("%d unique torrents decoded, %d written: a hash was written twice", len(v.Files), body.Torrents)
	}
	if body.Torrents < 500 {
		t.Fatalf("only %d torrents", body.Torrents)
	}
}

// TestThousandRequestsOneBuild: concurrent requests share one build.
func TestThousandRequestsOneBuild(t *testing.T) {
	src := &sliceSource{torrents: randomTorrents(20_000, 4), delay: 20 * time.Millisecond}
	b := fullscrape.New(src, fullscrape.Config{PageSize: 5000})
	var wg sync.WaitGroup
	start := make(chan struct{})
	bodies := make([]*fullscrape.Body, 1000)
	for i := range bodies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			body, err := b.Get(context.Background())
			if err != nil {
				t.Error(err)
			}
			bodies[i] = body
		}()
	}
	close(start)
	wg.Wait()
	if n := b.Stats().Builds; n != 1 {
		t.Fatalf("%d builds for 1000 concurrent requests, want 1", n)
	}
	for _, body := range bodies {
		if body != bodies[0] {
			t.Fatal("requests got different bodies")
		}
	}
}

func TestInterval(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	src := &sliceSource{torrents: randomTorrents(10, 5)}
	b := fullscrape.New(src, fullscrape.Config{Interval: time.Minute, Now: clock})
	ctx := context.Background()
	steps := []struct {
		advance    time.Duration
		wantBuilds uint64
	}{
		{0, 1},
		{30 * time.Second, 1},
		{29 * time.Second, 1},
		{time.Second, 2}, // a minute after the first build
		{59 * time.Second, 2},
		{2 * time.Minute, 3},
	}
	for i, s := range steps {
		advance(s.advance)
		if _, err := b.Get(ctx); err != nil {
			t.Fatal(err)
		}
		if got := b.Stats().Builds; got != s.wantBuilds {
			t.Fatalf("step %d: %d builds, want %d", i, got, s.wantBuilds)
		}
	}
}

func TestBuildError(t *testing.T) {
	src := &sliceSource{torrents: randomTorrents(10, 6), err: errors.New("store down")}
	b := fullscrape.New(src, fullscrape.Config{Interval: time.Nanosecond})
	ctx := context.Background()
	if _, err := b.Get(ctx); err == nil {
		t.Fatal("no error from a failing store")
	}
	src.err = nil
	first, err := b.Get(ctx)
	if err != nil {
		t.Fatalf("the next request did not retry: %v", err)
	}
	src.err = errors.New("down again")
	stale, err := b.Get(ctx)
	if err != nil || stale != first {
		t.Fatalf("a failed rebuild should serve the previous body: %v", err)
	}
	if s := b.Stats(); s.Builds != 3 || s.Failed != 2 {
		t.Fatalf("stats %+v", s)
	}
}

func TestWaitEndsWithContext(t *testing.T) {
	src := &sliceSource{torrents: randomTorrents(10, 7), delay: 300 * time.Millisecond}
	b := fullscrape.New(src, fullscrape.Config{})
	go b.Get(context.Background())
	for src.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := b.Get(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want the context's", err)
	}
}
