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
	"strconv"
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
// restore was given. Nothing in the input makes it allocate more than a
// chunk of peers.
func Read(r io.Reader, restore func(*swarm.TorrentDump) error, cutoff int64) (Stats, error) {
	began := time.Now()
	crc := crc32.New(castagnoli)
	cr := &countingReader{r: bufio.NewReaderSize(r, 1<<20)}
	in := io.TeeReader(cr, crc)
	var st Stats
	var hdr [headerLen]byte
	if _, err := io.ReadFull(in, hdr[:]); err != nil {
		return st, formatError("%d bytes, shorter than a header", cr.n)
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
	var d swarm.TorrentDump
	peers := make([]swarm.PeerDump, 0, chunk)
	var buf [peerLen6]byte
	for {
		var tag [1]byte
		if _, err := io.ReadFull(in, tag[:]); err != nil {
			return st, truncated(cr.n)
		}
		if tag[0] == 'E' {
			break
		}
		if tag[0] != 'T' {
			return st, formatError("record type %#x at byte %d", tag[0], cr.n-1)
		}
		var th [torrentLen - 1]byte
		if _, err := io.ReadFull(in, th[:]); err != nil {
			return st, truncated(cr.n)
		}
		copy(d.InfoHash[:], th[:20])
		d.Completed = binary.LittleEndian.Uint32(th[20:])
		n := binary.LittleEndian.Uint32(th[24:])
		st.Torrents++
		restored := false
		for left := n; left > 0 || !restored; {
			peers = peers[:0]
			for ; left > 0 && len(peers) < chunk; left-- {
				p, err := readPeer(in, &buf, cr)
				if err != nil {
					return st, err
				}
				st.Peers++
				if p.Updated <= cutoff {
					st.Expired++
					continue
				}
				peers = append(peers, p)
			}
			d.Peers = peers
			if err := restore(&d); err != nil {
				return st, fmt.Errorf("%w: torrent %s: %v", ErrFormat, d.InfoHash, err)
			}
			restored = true
		}
	}
	var end [endLen - 1 - 4]byte
	if _, err := io.ReadFull(in, end[:]); err != nil {
		return st, truncated(cr.n)
	}
	want := crc.Sum32()
	var sum [4]byte
	if _, err := io.ReadFull(cr, sum[:]); err != nil {
		return st, truncated(cr.n)
	}
	if got := binary.LittleEndian.Uint32(sum[:]); got != want {
		return st, formatError("checksum %08x, the content's is %08x: the file is corrupt", got, want)
	}
	if t, p := binary.LittleEndian.Uint64(end[:]), binary.LittleEndian.Uint64(end[8:]); t != st.Torrents || p != st.Peers {
		return st, formatError("the end says %d torrent records and %d peers, the file holds %d and %d", t, p, st.Torrents, st.Peers)
	}
	if _, err := cr.Read(sum[:1]); err != io.EOF {
		return st, formatError("data after the end of the snapshot")
	}
	st.Bytes = cr.n
	st.Took = time.Since(began)
	return st, nil
}

func readPeer(in io.Reader, buf *[peerLen6]byte, cr *countingReader) (swarm.PeerDump, error) {
	var p swarm.PeerDump
	if _, err := io.ReadFull(in, buf[:1]); err != nil {
		return p, truncated(cr.n)
	}
	var ip netip.Addr
	var rest []byte
	switch buf[0] {
	case 4:
		rest = buf[1:peerLen4]
		if _, err := io.ReadFull(in, rest); err != nil {
			return p, truncated(cr.n)
		}
		ip = netip.AddrFrom4([4]byte(rest[:4]))
		rest = rest[4:]
	case 6:
		rest = buf[1:peerLen6]
		if _, err := io.ReadFull(in, rest); err != nil {
			return p, truncated(cr.n)
		}
		ip = netip.AddrFrom16([16]byte(rest[:16]))
		rest = rest[16:]
	default:
		return p, formatError("peer address family %d at byte %d", buf[0], cr.n-1)
	}
	p.Addr = netip.AddrPortFrom(ip, binary.LittleEndian.Uint16(rest))
	copy(p.ID[:], rest[2:22])
	rest = rest[22:]
	p.Updated = int64(binary.LittleEndian.Uint64(rest))
	p.Uploaded = int64(binary.LittleEndian.Uint64(rest[8:]))
	p.Downloaded = int64(binary.LittleEndian.Uint64(rest[16:]))
	p.Left = int64(binary.LittleEndian.Uint64(rest[24:]))
	if rest[32] > byte(bittorrent.EventCompleted) || rest[33] > 1 {
		return p, formatError("peer event %d, counted %d at byte %d", rest[32], rest[33], cr.n)
	}
	p.Event = bittorrent.Event(rest[32])
	p.Counted = rest[33] == 1
	return p, nil
}

func truncated(at int64) error {
	return formatError("the file ends at byte %d, before the end of the snapshot (torn or truncated)", at)
}

func printable(b []byte) string {
	s := strconv.QuoteToASCII(string(b))
	return s[1 : len(s)-1]
}

type countingReader struct {
	r *bufio.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
