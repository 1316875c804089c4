// Package fullscrape builds the full scrape (GET /scrape with no info_hash):
// every torrent's counts in BEP 48's shape, bencoded, plain and gzipped. A
// body is built at most once per interval and shared by every request in
// that time, so a thousand requests cost one pass over the swarm store;
// requests that arrive while the first body is being built wait for that
// build instead of starting their own.
//
// It knows no HTTP: transports hand the cached bytes to their clients.
package fullscrape

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/starling-tracker/starling/internal/bencode"
	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/swarm"
)

// Mode is core.full_scrape.
type Mode uint8

const (
	// Off refuses full scrapes, as Torrust does.
	Off Mode = iota
	// API answers them only with an admin token.
	API
	// Public answers them to anyone.
	Public
)

// Defaults of Config.
const (
	DefaultInterval = 60 * time.Second
	DefaultPageSize = 10000
	// DefaultBuildTimeout bounds one build, whoever asked for it.
	DefaultBuildTimeout = 2 * time.Minute
)

// Source lists torrents sorted by hash; every swarm.Store is one.
type Source interface {
	Torrents(ctx context.Context, offset, limit int) ([]swarm.TorrentSummary, error)
}

// Config tunes a Builder.
type Config struct {
	// Interval is how long a body is served before the next request
	// rebuilds it (default 60 s).
	Interval time.Duration
	// Listed, when set, keeps only the torrents it reports true for (the
	// whitelist in listed mode).
	Listed func(bittorrent.InfoHash) bool
	// PageSize is how many torrents one Torrents call reads; the store
	// locks no more than a page's shards at a time (default 10,000).
	PageSize int
	// BuildTimeout bounds a build (default 2 min).
	BuildTimeout time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Body is one built full scrape. Its byte slices are shared by every
// request and must not be changed.
type Body struct {
	// Plain is d5:filesd<hash>d8:completei…e10:downloadedi…e10:incompletei…eee…ee.
	Plain []byte
	// Gzip is Plain gzipped.
	Gzip []byte
	// Torrents is how many torrents it lists.
	Torrents int
	// Built is when the build finished; Took how long it ran.
	Built time.Time
	Took  time.Duration
}

// Builder builds and caches the body. It is safe for concurrent use.
type Builder struct {
	src Source
	cfg Config

	mu       sync.Mutex
	cur      *Body
	building chan struct{} // closed when the running build ends; nil when none runs
	lastErr  error         // the last build's error, for the requests that waited for it

	builds atomic.Uint64
	failed atomic.Uint64
}

// New builds a Builder over src.
func New(src Source, cfg Config) *Builder {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.PageSize <= 0 {
		cfg.PageSize = DefaultPageSize
	}
	if cfg.BuildTimeout <= 0 {
		cfg.BuildTimeout = DefaultBuildTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Builder{src: src, cfg: cfg}
}

// Get returns the cached body, building it first when there is none or it
// is older than the interval. While a rebuild runs, other requests get the
// previous body (at most one interval plus one build old) rather than
// wait; with no previous body they wait for the running build. Only one
// build ever runs at a time. ctx bounds the wait, not the build: a build
// that a departed client started still finishes for the others.
func (b *Builder) Get(ctx context.Context) (*Body, error) {
	b.mu.Lock()
	cur := b.cur
	if cur != nil && b.cfg.Now().Sub(cur.Built) < b.cfg.Interval {
		b.mu.Unlock()
		return cur, nil
	}
	if ch := b.building; ch != nil {
		b.mu.Unlock()
		if cur != nil {
			return cur, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		b.mu.Lock()
		body, err := b.cur, b.lastErr
		b.mu.Unlock()
		if body == nil {
			return nil, err
		}
		return body, nil
	}
	ch := make(chan struct{})
	b.building = ch
	b.mu.Unlock()

	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.cfg.BuildTimeout)
	prev := 0
	if cur != nil {
		prev = len(cur.Plain)
	}
	body, err := b.build(bctx, prev)
	cancel()
	b.mu.Lock()
	b.building = nil
	b.lastErr = err
	if err == nil {
		b.cur = body
	}
	b.mu.Unlock()
	close(ch)
	if err != nil {
		b.failed.Add(1)
		if cur != nil {
			return cur, nil // a stale answer beats none; the next request retries
		}
		return nil, err
	}
	return body, nil
}

// Stats are the builder's counters, for metrics.
type Stats struct {
	Builds, Failed uint64
	// Of the cached body (zero before the first build):
	Torrents          int
	Bytes, GzipBytes  int
	LastBuildDuration time.Duration
}

// Stats reports the builds so far and the cached body's size.
func (b *Builder) Stats() Stats {
	s := Stats{Builds: b.builds.Load(), Failed: b.failed.Load()}
	b.mu.Lock()
	if c := b.cur; c != nil {
		s.Torrents, s.Bytes, s.GzipBytes, s.LastBuildDuration = c.Torrents, len(c.Plain), len(c.Gzip), c.Took
	}
	b.mu.Unlock()
	return s
}

// build reads the store a page at a time (the store holds a lock only
// while it copies out one page) and encodes as it goes. prev, the last
// body's size, sizes the buffer so that a rebuild allocates it once.
func (b *Builder) build(ctx context.Context, prev int) (*Body, error) {
	b.builds.Add(1)
	start := time.Now()
	plain := make([]byte, 0, max(4096, prev+prev/8)) // else grown after the first page
	plain = append(plain, bencode.DictStart)
	plain = append(plain, keyFiles...)
	plain = append(plain, bencode.DictStart)
	n := 0
	var last bittorrent.InfoHash
	haveLast := false
	for offset := 0; ; {
		page, err := b.src.Torrents(ctx, offset, b.cfg.PageSize)
		if err != nil {
			return nil, fmt.Errorf("full scrape: list torrents from %d: %w", offset, err)
		}
		if offset == 0 && len(page) > 0 {
			plain = growFor(plain, len(page), b.cfg.PageSize)
		}
		for i := range page {
			t := &page[i]
			// Torrents created or removed between two pages shift the
			// offsets: a hash at or below the last one written is a
			// repeat, and the files dictionary needs its keys sorted and
			// unique.
			if haveLast && bytes.Compare(t.InfoHash[:], last[:]) <= 0 {
				continue
			}
			last, haveLast = t.InfoHash, true
			if b.cfg.Listed != nil && !b.cfg.Listed(t.InfoHash) {
				continue
			}
			plain = appendEntry(plain, t)
			n++
		}
		offset += len(page)
		if len(page) < b.cfg.PageSize {
			break
		}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("full scrape: %w", err)
		}
	}
	plain = append(plain, bencode.End, bencode.End)
	gz, err := gzipped(plain)
	if err != nil {
		return nil, err
	}
	done := b.cfg.Now()
	return &Body{Plain: plain, Gzip: gz, Torrents: n, Built: done, Took: time.Since(start)}, nil
}

// entryBytes is about one torrent's entry with small counts.
const entryBytes = 3 + 20 + 50

// growFor makes room for the whole answer up front when the first page is
// full (there are probably many more), saving the copies of doubling.
func growFor(b []byte, first, pageSize int) []byte {
	if first < pageSize {
		return b
	}
	// Unknown total: start at 16 pages' worth, doubling after.
	want := 16 * pageSize * entryBytes
	if cap(b) < want {
		nb := make([]byte, len(b), want)
		copy(nb, b)
		b = nb
	}
	return b
}

const (
	keyFiles      = "5:files"
	keyComplete   = "8:complete"
	keyDownloaded = "10:downloaded"
	keyIncomplete = "10:incomplete"
)

func appendEntry(b []byte, t *swarm.TorrentSummary) []byte {
	b = append(b, "20:"...)
	b = append(b, t.InfoHash[:]...)
	b = append(b, bencode.DictStart)
	b = append(b, keyComplete...)
	b = bencode.AppendUint(b, uint64(t.Seeders))
	b = append(b, keyDownloaded...)
	b = bencode.AppendUint(b, uint64(t.Completed))
	b = append(b, keyIncomplete...)
	b = bencode.AppendUint(b, uint64(t.Leechers))
	return append(b, bencode.End)
}

// Append appends the full-scrape encoding of torrents (sorted by hash,
// unique) to b; the builder writes the same bytes page by page.
func Append(b []byte, torrents []swarm.TorrentSummary) []byte {
	b = append(b, bencode.DictStart)
	b = append(b, keyFiles...)
	b = append(b, bencode.DictStart)
	for i := range torrents {
		b = appendEntry(b, &torrents[i])
	}
	return append(b, bencode.End, bencode.End)
}

// gzipped compresses at the fastest level: the info hashes, a third of the
// bytes, do not compress at all, and a higher level costs the build time
// for a few per cent.
func gzipped(plain []byte) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(len(plain)/2 + 64)
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(plain); err != nil {
		return nil, fmt.Errorf("full scrape: gzip: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("full scrape: gzip: %w", err)
	}
	return buf.Bytes(), nil
}
