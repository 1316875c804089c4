// Package snapshot writes the swarms of an in-process store to a file and
// reads them back, so a restart or an upgrade loses no swarm.
//
// The file is versioned and checksummed, written to a temporary file that
// is synced and renamed over the old one, so a crash leaves either the old
// snapshot or the new one whole. Format (little-endian), version 1:
//
//	header  "STRLSNAP", version u32, 0 u32, written (unix seconds) i64, 0 u64
//	torrent 'T', info hash [20], completed u32, peers u32, then each peer:
//	        family u8 (4 or 6), IP [4 or 16], port u16, peer id [20],
//	        updated i64, uploaded i64, downloaded i64, left i64,
//	        event u8, counted u8
//	end     'E', torrents u64, peers u64, CRC-32C of every byte before it u32
//
// A torrent may appear in several records (the store is read a part at a
// time); reading merges them.
package snapshot

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/swarm"
)

// Version is the format this package writes; it reads only this one.
const Version = 1

const (
	magic      = "STRLSNAP"
	headerLen  = 32
	torrentLen = 1 + 20 + 4 + 4
	endLen     = 1 + 8 + 8 + 4
	peerLen4   = 1 + 4 + 2 + 20 + 4*8 + 2
	peerLen6   = peerLen4 + 12
	// chunk is how many peers of one torrent are handed to restore at a
	// time, so a corrupt peer count cannot make the reader allocate more.
	chunk = 4096
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Stats say what a snapshot held.
type Stats struct {
	Torrents uint64 // torrent records (a big swarm may take several)
	Peers    uint64
	Expired  uint64 // peers dropped at load: last seen at or before the cutoff
	Bytes    int64
	Took     time.Duration
}

// ErrFormat is wrapped by every error about the file's content (as opposed
// to the system's): not a snapshot, a newer format, torn or corrupt.
var ErrFormat = errors.New("not a usable swarm snapshot")

func formatError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrFormat, fmt.Sprintf(format, args...))
}

// Write writes what dump hands out to path, atomically: a temporary file
// in the same directory, synced, renamed over path, and the directory
// synced. now is the time written in the header.
func Write(path string, dump func(func(*swarm.TorrentDump) error) error, now time.Time) (Stats, error) {
	began := time.Now()
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return Stats{}, fmt.Errorf("snapshot directory: %w", err)
	}
	f, err := os.CreateTemp(dir, filepath.Base(path)+".tmp-*")
	if err != nil {
		return Stats{}, fmt.Errorf("snapshot: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if f != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	st, err := Stream(f, dump, now)
	if err != nil {
		return Stats{}, fmt.Errorf("write snapshot %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		return Stats{}, fmt.Errorf("sync snapshot %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return Stats{}, fmt.Errorf("close snapshot %s: %w", tmp, err)
	}
	f = nil
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return Stats{}, fmt.Errorf("snapshot: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // the rename is durable once the directory is
		d.Close()
	}
	st.Took = time.Since(began)
	return st, nil
}

// Stream writes what dump hands out to out, in the format Read reads: for
// a reader at the other end of a pipe, which loads while it is written.
func Stream(out io.Writer, dump func(func(*swarm.TorrentDump) error) error, now time.Time) (Stats, error) {
	began := time.Now()
	st, err := newWriter(out).write(dump, now)
	st.Took = time.Since(began)
	return st, err
}

type writer struct {
	bw  *bufio.Writer
	crc hash.Hash32
	buf []byte
	n   int64
}

func newWriter(out io.Writer) *writer {
	w := &writer{crc: crc32.New(castagnoli)}
	w.bw = bufio.NewWriterSize(io.MultiWriter(out, w.crc), 1<<20)
	return w
}

func (w *writer) flushBuf() error {
	n, err := w.bw.Write(w.buf)
	w.n += int64(n)
	w.buf = w.buf[:0]
	return err
}

func (w *writer) write(dump func(func(*swarm.TorrentDump) error) error, now time.Time) (Stats, error) {
	var st Stats
	w.buf = append(w.buf, magic...)
	w.buf = binary.LittleEndian.AppendUint32(w.buf, Version)
	w.buf = binary.LittleEndian.AppendUint32(w.buf, 0)
	w.buf = binary.LittleEndian.AppendUint64(w.buf, uint64(now.Unix()))
	w.buf = binary.LittleEndian.AppendUint64(w.buf, 0)
	err := dump(func(d *swarm.TorrentDump) error {
		w.buf = append(w.buf, 'T')
		w.buf = append(w.buf, d.InfoHash[:]...)
		w.buf = binary.LittleEndian.AppendUint32(w.buf, d.Completed)
		w.buf = binary.LittleEndian.AppendUint32(w.buf, uint32(len(d.Peers)))
		for k := range d.Peers {
			w.buf = appendPeer(w.buf, &d.Peers[k])
			if len(w.buf) >= 64<<10 {
				if err := w.flushBuf(); err != nil {
					return err
				}
			}
		}
		st.Torrents++
		st.Peers += uint64(len(d.Peers))
		return w.flushBuf()
	})
	if err != nil {
		return st, err
	}
	w.buf = append(w.buf, 'E')
	w.buf = binary.LittleEndian.AppendUint64(w.buf, st.Torrents)
	w.buf = binary.LittleEndian.AppendUint64(w.buf, st.Peers)
	if err := w.flushBuf(); err != nil {
		return st, err
	}
	if err := w.bw.Flush(); err != nil {
		return st, err
	}
	// The checksum covers everything before it; it goes out last.
	var sum [4]byte
	binary.LittleEndian.PutUint32(sum[:], w.crc.Sum32())
	if _, err := w.bw.Write(sum[:]); err != nil {
		return st, err
	}
	if err := w.bw.Flush(); err != nil {
		return st, err
	}
	st.Bytes = w.n + 4
	return st, nil
}

func appendPeer(b []byte, p *swarm.PeerDump) []byte {
	ip := p.Addr.Addr().Unmap()
	if ip.Is4() {
		a := ip.As4()
		b = append(b, 4)
		b = append(b, a[:]...)
	} else {
		a := ip.As16()
		b = append(b, 6)
		b = append(b, a[:]...)
	}
	b = binary.LittleEndian.AppendUint16(b, p.Addr.Port())
	b = append(b, p.ID[:]...)
	b = binary.LittleEndian.AppendUint64(b, uint64(p.Updated))
	b = binary.LittleEndian.AppendUint64(b, uint64(p.Uploaded))
	b = binary.LittleEndian.AppendUint64(b, uint64(p.Downloaded))
	b = binary.LittleEndian.AppendUint64(b, uint64(p.Left))
	b = append(b, byte(p.Event))
	if p.Counted {
		return append(b, 1)
	}
	return append(b, 0)
}

// LoadFile reads the snapshot at path into restore (see Read). A missing
// file is reported with an error satisfying errors.Is(err, fs.ErrNotExist).
func LoadFile(path string, restore func(*swarm.TorrentDump) error, cutoff int64) (Stats, error) {
	f, err := os.Open(path)
	if err != nil {
		return Stats{}, err
	}
	defer f.Close()
	return Read(f, restore, cutoff)
}

// Read reads a snapshot and hands its torrents to restore, some peers at a
// time, leaving out peers last seen at or before cutoff (unix seconds):
// they would have expired while the tracker was down. The checksum is
// checked at the end, so on any error the caller must throw away what
// restore was given. With more than one core, restore is called from
// several goroutines at once, but for one torrent from one goroutine, in
// the file's order. Nothing in the input makes it allocate more than a
// few chunks of peers per core.
func Read(r io.Reader, restore func(*swarm.TorrentDump) error, cutoff int64) (Stats, error) {
	began := time.Now()
	in := newInput(r)
	var st Stats
	hdr, ok := in.next(headerLen)
	if !ok {
		return st, formatError("%d bytes, shorter than a header", in.end)
	}
	if string(hdr[:8]) != magic {
		return st, formatError("no snapshot header (the file starts %q)", printable(hdr[:8]))
	}
	if v := binary.LittleEndian.Uint32(hdr[8:]); v != Version {
		if v > Version {
			return st, formatError("format version %d is newer than this Starling's %d", v, Version)
		}
		return st, formatError("unknown format version %d", v)
	}
	rs := newRestorers(restore, runtime.GOMAXPROCS(0))
	defer rs.stop()
	for {
		tag, ok := in.next(1)
		if !ok {
			return st, truncated(in.at())
		}
		if tag[0] == 'E' {
			break
		}
		if tag[0] != 'T' {
			return st, formatError("record type %#x at byte %d", tag[0], in.at()-1)
		}
		th, ok := in.next(torrentLen - 1)
		if !ok {
			return st, truncated(in.at())
		}
		rec := swarm.TorrentDump{InfoHash: [20]byte(th[:20]), Completed: binary.LittleEndian.Uint32(th[20:])}
		n := binary.LittleEndian.Uint32(th[24:])
		st.Torrents++
		restored := false
		for left := n; left > 0 || !restored; {
			b := rs.batch(&rec.InfoHash)
			from := len(b.peers)
			peers := b.peers
			for ; left > 0 && len(peers) < chunk; left-- {
				// Parsed in place, kept by extending the slice over it.
				p := &peers[:len(peers)+1][len(peers)]
				if err := readPeer(in, p); err != nil {
					return st, err
				}
				st.Peers++
				if p.Updated <= cutoff {
					st.Expired++
					continue
				}
				peers = peers[:len(peers)+1]
			}
			b.peers = peers
			d := rec
			d.Peers = peers[from:len(peers):len(peers)]
			b.dumps = append(b.dumps, d)
			if err := rs.added(&rec.InfoHash, b, left > 0); err != nil {
				return st, err
			}
			restored = true
		}
	}
	if err := rs.stop(); err != nil {
		return st, err
	}
	end, ok := in.next(endLen - 1 - 4)
	if !ok {
		return st, truncated(in.at())
	}
	want := in.sum()
	sum, ok := in.next(4)
	if !ok {
		return st, truncated(in.at())
	}
	if got := binary.LittleEndian.Uint32(sum); got != want {
		return st, formatError("checksum %08x, the content's is %08x: the file is corrupt", got, want)
	}
	if t, p := binary.LittleEndian.Uint64(end), binary.LittleEndian.Uint64(end[8:]); t != st.Torrents || p != st.Peers {
		return st, formatError("the end says %d torrent records and %d peers, the file holds %d and %d", t, p, st.Torrents, st.Peers)
	}
	if _, ok := in.next(1); ok || in.err != io.EOF {
		return st, formatError("data after the end of the snapshot")
	}
	st.Bytes = in.at()
	st.Took = time.Since(began)
	return st, nil
}

// restorers hand what Read parses to restore in batches: on the reading
// goroutine when there is one core, else on one goroutine per core, each
// torrent always to the same one (so its records are restored in order),
// while the reader parses on. Loading is a start's wait and an upgrade's
// UDP pause; the store's restore is most of it, and its shards take their
// own locks. A batch holds up to a chunk of peers, of one torrent or of
// many small ones (handing on each record cost more than restoring it),
// and a few batches per goroutine are in flight at most.
type restorers struct {
	restore func(*swarm.TorrentDump) error
	cur     []*restoreBatch // each goroutine's batch being filled
	in      []chan *restoreBatch
	free    chan *restoreBatch
	wg      sync.WaitGroup
	failed  atomic.Pointer[error]
	stopped bool
}

type restoreBatch struct {
	dumps []swarm.TorrentDump // their Peers are parts of peers
	peers []swarm.PeerDump
}

// maxBatchDumps bounds the records of one batch.
const maxBatchDumps = 512

func newRestorers(restore func(*swarm.TorrentDump) error, n int) *restorers {
	n = max(n, 1)
	rs := &restorers{restore: restore, cur: make([]*restoreBatch, n)}
	per := 1
	if n > 1 {
		per = 3
	}
	rs.free = make(chan *restoreBatch, per*n)
	for range per * n {
		rs.free <- &restoreBatch{dumps: make([]swarm.TorrentDump, 0, maxBatchDumps), peers: make([]swarm.PeerDump, 0, chunk)}
	}
	if n == 1 {
		return rs
	}
	rs.in = make([]chan *restoreBatch, n)
	for i := range rs.in {
		ch := make(chan *restoreBatch, 2)
		rs.in[i] = ch
		rs.wg.Add(1)
		go func() {
			defer rs.wg.Done()
			for b := range ch {
				if rs.failed.Load() == nil {
					if err := rs.run(b); err != nil {
						rs.failed.CompareAndSwap(nil, &err)
					}
				}
				b.dumps, b.peers = b.dumps[:0], b.peers[:0]
				rs.free <- b
			}
		}()
	}
	return rs
}

// run restores a batch's records in order.
func (rs *restorers) run(b *restoreBatch) error {
	for k := range b.dumps {
		d := &b.dumps[k]
		if err := rs.restore(d); err != nil {
			return fmt.Errorf("%w: torrent %s: %v", ErrFormat, d.InfoHash, err)
		}
	}
	return nil
}

// who is the goroutine (and batch) of a torrent.
func (rs *restorers) who(ih *bittorrent.InfoHash) int {
	return int((binary.LittleEndian.Uint64(ih[:8]) ^ binary.LittleEndian.Uint64(ih[8:16])) % uint64(len(rs.cur)))
}

// batch is the batch to add ih's next record to, with room for at least
// one more peer (or record, for one without peers).
func (rs *restorers) batch(ih *bittorrent.InfoHash) *restoreBatch {
	k := rs.who(ih)
	b := rs.cur[k]
	if b == nil {
		b = <-rs.free
		rs.cur[k] = b
	}
	return b
}

// added hands b on once a record has been added to it, if it is full, or
// if more of the same torrent follow (they go in a new batch, after this
// one). The error is the first restore's that failed so far.
func (rs *restorers) added(ih *bittorrent.InfoHash, b *restoreBatch, more bool) error {
	if !more && len(b.peers) < chunk && len(b.dumps) < maxBatchDumps {
		return nil
	}
	return rs.send(rs.who(ih))
}

// send hands on goroutine k's batch (restores it, with one core).
func (rs *restorers) send(k int) error {
	b := rs.cur[k]
	if b == nil {
		return nil
	}
	rs.cur[k] = nil
	if rs.in == nil {
		err := rs.run(b)
		b.dumps, b.peers = b.dumps[:0], b.peers[:0]
		rs.free <- b
		return err
	}
	rs.in[k] <- b
	if err := rs.failed.Load(); err != nil {
		return *err
	}
	return nil
}

// stop hands on what is left, waits until everything handed on is
// restored, and returns the first error; later calls do nothing.
func (rs *restorers) stop() error {
	if rs.stopped {
		return nil
	}
	rs.stopped = true
	var err error
	for k := range rs.cur {
		if e := rs.send(k); err == nil {
			err = e
		}
	}
	for _, ch := range rs.in {
		close(ch)
	}
	rs.wg.Wait()
	if e := rs.failed.Load(); e != nil {
		return *e
	}
	return err
}

// readPeer parses the next peer record into p.
func readPeer(in *input, p *swarm.PeerDump) error {
	fam, ok := in.next(1)
	if !ok {
		return truncated(in.at())
	}
	var ip netip.Addr
	var rest []byte
	switch fam[0] {
	case 4:
		if rest, ok = in.next(peerLen4 - 1); !ok {
			return truncated(in.at())
		}
		ip = netip.AddrFrom4([4]byte(rest[:4]))
		rest = rest[4:]
	case 6:
		if rest, ok = in.next(peerLen6 - 1); !ok {
			return truncated(in.at())
		}
		ip = netip.AddrFrom16([16]byte(rest[:16]))
		rest = rest[16:]
	default:
		return formatError("peer address family %d at byte %d", fam[0], in.at()-1)
	}
	p.Addr = netip.AddrPortFrom(ip, binary.LittleEndian.Uint16(rest))
	copy(p.ID[:], rest[2:22])
	rest = rest[22:]
	p.Updated = int64(binary.LittleEndian.Uint64(rest))
	p.Uploaded = int64(binary.LittleEndian.Uint64(rest[8:]))
	p.Downloaded = int64(binary.LittleEndian.Uint64(rest[16:]))
	p.Left = int64(binary.LittleEndian.Uint64(rest[24:]))
	if rest[32] > byte(bittorrent.EventCompleted) || rest[33] > 1 {
		return formatError("peer event %d, counted %d at byte %d", rest[32], rest[33], in.at())
	}
	p.Event = bittorrent.Event(rest[32])
	p.Counted = rest[33] == 1
	return nil
}

// input is Read's buffer: records are parsed where they lie in it, and the
// checksum runs over it a refill at a time. Reading field by field with
// io.ReadFull through a bufio.Reader and a TeeReader into the checksum
// cost 170 ns a peer, a third of an upgrade's pause.
type input struct {
	r        io.Reader
	buf      []byte
	pos, end int // buf[pos:end] is read and not consumed
	summed   int // buf[:summed] is in crc
	crc      uint32
	off      int64 // bytes consumed before buf[0]
	err      error // why the last refill stopped short
}

func newInput(r io.Reader) *input { return &input{r: r, buf: make([]byte, 1<<20)} }

// at is how many bytes have been consumed.
func (in *input) at() int64 { return in.off + int64(in.pos) }

// next consumes the next k bytes (k at most the buffer's size); false if
// the input ends (or fails) first.
func (in *input) next(k int) ([]byte, bool) {
	if in.end-in.pos < k && !in.fill(k) {
		return nil, false
	}
	b := in.buf[in.pos : in.pos+k]
	in.pos += k
	return b, true
}

// fill moves what is not consumed to the front of the buffer, checksumming
// what is, and reads until k bytes are there.
func (in *input) fill(k int) bool {
	in.crc = crc32.Update(in.crc, castagnoli, in.buf[in.summed:in.pos])
	n := copy(in.buf, in.buf[in.pos:in.end])
	in.off += int64(in.pos)
	in.pos, in.end, in.summed = 0, n, 0
	for idle := 0; in.end < k; {
		m, err := in.r.Read(in.buf[in.end:])
		in.end += m
		switch {
		case in.end >= k:
		case err != nil:
			in.err = err
			return false
		case m == 0:
			if idle++; idle == 100 {
				in.err = io.ErrNoProgress
				return false
			}
		}
	}
	return true
}

// sum is the checksum of every byte consumed so far.
func (in *input) sum() uint32 {
	in.crc = crc32.Update(in.crc, castagnoli, in.buf[in.summed:in.pos])
	in.summed = in.pos
	return in.crc
}

func truncated(at int64) error {
	return formatError("the file ends at byte %d, before the end of the snapshot (torn or truncated)", at)
}

func printable(b []byte) string {
	s := strconv.QuoteToASCII(string(b))
	return s[1 : len(s)-1]
}
