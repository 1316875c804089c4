package database

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/swarm"
)

// CompletedSaver is where a Batcher writes: *DB.
type CompletedSaver interface {
	SaveCompleted(ctx context.Context, counts []swarm.CompletedCount) error
}

// DefaultFlushInterval is how often a Batcher writes: at least once a second,
// as decisions.md requires.
const DefaultFlushInterval = time.Second

// FlushChunk is the most counts written in one write (one transaction): a
// fraction of a second on a database nearby, well inside DefaultTimeout.
const FlushChunk = 10_000

// DefaultBufferLimit is how many torrents' counts a Batcher holds while the
// database is down ([core.limits] completed_buffer when 0). Two maps of at
// most this many entries (the pending counts and the batch being written)
// take 53 MB each when full, and writing a full batch briefly as much
// again; a flood of random hashes completes nothing, so this is reached
// only by a long outage of a tracker with that many torrents completing.
const DefaultBufferLimit = 1_000_000

// Batcher collects completed counts from the announce path and writes them in
// batches. It implements tracker.CompletionSink.
//
// Completed only takes a mutex and sets a map entry: the flusher swaps the
// whole map out under that mutex and writes it with the mutex released, so an
// announce never waits on the database. While the database is down the
// latest count of each torrent stays in memory and is retried on the next
// tick.
//
// The counts held are bounded: at most limit torrents, counting the batch
// being written. Counts are absolute, so a torrent already held just takes
// its newer count and never needs room; a torrent not yet held when the
// buffer is full is dropped (Dropped counts it). Its count is not lost for
// good: the store still has it, and its next completion brings the whole
// count back into the buffer.
type Batcher struct {
	saver    CompletedSaver
	interval time.Duration
	limit    int
	log      *slog.Logger
	dropped  atomic.Uint64

	mu      sync.Mutex
	pending map[bittorrent.InfoHash]uint32
	// flushing is the size of the batch being written, under mu, so that
	// Pending counts it in the same critical section as pending: read
	// apart, a failed write moving the batch back into pending between
	// the two reads was counted in neither.
	flushing int
	// overlap is how many torrents in pending are in the batch being
	// written too (under mu): the torrents held are len(pending) +
	// flushing - overlap.
	overlap int

	// Owned by the flushing side, under flushMu: the map swapped out (kept
	// to be reused, so steady state allocates nothing) and the slice handed
	// to the saver. While flushing > 0, batch is not changed and
	// Completed may read it under mu (is a torrent already held?).
	flushMu sync.Mutex
	batch   map[bittorrent.InfoHash]uint32
	buf     []swarm.CompletedCount

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// StartBatcher starts a Batcher that writes to saver every interval
// (DefaultFlushInterval when 0) and holds at most limit torrents' counts
// (DefaultBufferLimit when 0). Its goroutine runs until Close.
func StartBatcher(saver CompletedSaver, interval time.Duration, limit int, log *slog.Logger) *Batcher {
	if interval <= 0 {
		interval = DefaultFlushInterval
	}
	if limit <= 0 {
		limit = DefaultBufferLimit
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &Batcher{
		saver:    saver,
		interval: interval,
		limit:    limit,
		log:      log,
		pending:  make(map[bittorrent.InfoHash]uint32),
		batch:    make(map[bittorrent.InfoHash]uint32),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	go b.run()
	return b
}

// Completed records the latest completed count of h. It never blocks on the
// database. Counts only grow, but two completions of one torrent on two
// cores report theirs after the store's lock is released, in either order:
// the higher of the counts pending wins. With the buffer full, the count of
// a torrent not held yet is dropped.
func (b *Batcher) Completed(h bittorrent.InfoHash, count uint32) {
	b.mu.Lock()
	if old, ok := b.pending[h]; ok {
		if count > old {
			b.pending[h] = count
		}
		b.mu.Unlock()
		return
	}
	inBatch := false
	if b.flushing > 0 {
		_, inBatch = b.batch[h]
	}
	switch {
	case inBatch:
		// Held already, in the batch being written (which a failed write
		// brings back): no room needed.
		b.pending[h] = count
		b.overlap++
	case len(b.pending)+b.flushing-b.overlap < b.limit:
		b.pending[h] = count
	default:
		b.dropped.Add(1)
	}
	b.mu.Unlock()
}

// Dropped is how many counts were dropped because the buffer was full.
func (b *Batcher) Dropped() uint64 { return b.dropped.Load() }

// Limit is the most torrents whose counts the Batcher holds.
func (b *Batcher) Limit() int { return b.limit }

// Pending is the number of torrents whose latest count is not yet written,
// those in a write in progress included. It does not wait for the write.
func (b *Batcher) Pending() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.pending) + b.flushing - b.overlap
}

func (b *Batcher) run() {
	defer close(b.done)
	t := time.NewTicker(b.interval)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
			// Bounded by the database's own timeout; a failure was logged by
			// the database once per outage, and the counts stay pending.
			_ = b.Flush(context.Background())
		}
	}
}

// Flush writes every pending count now. On failure the counts stay pending
// (newer counts that arrived meanwhile win) and the error is returned.
func (b *Batcher) Flush(ctx context.Context) error {
	b.flushMu.Lock()
	defer b.flushMu.Unlock()
	b.mu.Lock()
	if len(b.pending) == 0 {
		b.mu.Unlock()
		return nil
	}
	b.pending, b.batch = b.batch, b.pending
	b.flushing = len(b.batch)
	b.mu.Unlock()

	b.buf = b.buf[:0]
	for h, c := range b.batch {
		b.buf = append(b.buf, swarm.CompletedCount{InfoHash: h, Completed: c})
	}
	// In chunks, each a write of its own under the database's timeout: the
	// buffer of a long outage (a million counts take seconds) is written
	// bit by bit when the database returns, instead of failing its timeout
	// as one write on every retry.
	written := 0
	var err error
	for written < len(b.buf) && err == nil {
		n := min(len(b.buf)-written, FlushChunk)
		if err = b.saver.SaveCompleted(ctx, b.buf[written:written+n]); err == nil {
			written += n
		}
	}
	b.mu.Lock()
	switch {
	case err != nil && written == 0:
		// Put the batch back, under what arrived since unless that is lower
		// (see Completed). The smaller map is merged into the larger, so an
		// announce waits on this lock for the counts of one second, not for
		// the whole buffer of a long outage.
		small, large := b.pending, b.batch
		if len(small) > len(large) {
			small, large = large, small
		}
		for h, c := range small {
			if old, ok := large[h]; !ok || c > old {
				large[h] = c
			}
		}
		b.pending, b.batch = large, small
	case err != nil:
		// Written in part (the database failed again): only the rest goes back.
		for _, c := range b.buf[written:] {
			if old, ok := b.pending[c.InfoHash]; !ok || c.Completed > old {
				b.pending[c.InfoHash] = c.Completed
			}
		}
	}
	b.flushing, b.overlap = 0, 0
	b.mu.Unlock()
	// Completed no longer reads batch (flushing is 0): clear it unlocked.
	clear(b.batch)
	return err
}

// Close stops the flusher and writes what is pending, within ctx (graceful
// shutdown). It returns the final write's error, naming how many counts were
// not written. Safe to call twice.
func (b *Batcher) Close(ctx context.Context) error {
	b.closeOnce.Do(func() {
		close(b.stop)
		<-b.done
		if err := b.Flush(ctx); err != nil {
			b.closeErr = errors.Join(errors.New("write completed counts at shutdown"), err)
			b.log.Error("completed counts not written at shutdown", "torrents", b.Pending(), "err", err)
		}
	})
	return b.closeErr
}
