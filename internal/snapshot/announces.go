package snapshot

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"

	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/swarm"
)

// An announce log carries, after an upgrade's swarms, the announces the
// old process answered once its swarms were written: HTTP goes on being
// served there until the new process serves, and what those announces
// changed would otherwise be lost. The new process applies them, in order,
// on top of the swarms. Format (little-endian): the header "STRLANNC",
// version u32, then until the end of the stream one record per announce:
//
//	family u8 (4 or 6), IP [16] (an IPv4 address in its first 4 bytes),
//	port u16, info hash [20], peer id [20], uploaded i64, downloaded i64,
//	left i64, event u8, now (unix seconds) i64
//
// A stream cut inside a record is an error (the old process died while
// writing); one that ends between records is whole.
const (
	announcesMagic = "STRLANNC"
	// AnnouncesVersion is the announce log format this package writes and
	// reads.
	AnnouncesVersion = 1
	announcesHeader  = len(announcesMagic) + 4
	// AnnounceLen is the size of one announce record.
	AnnounceLen = 1 + 16 + 2 + 20 + 20 + 3*8 + 1 + 8
)

// AppendAnnouncesHeader appends the log's header to b.
func AppendAnnouncesHeader(b []byte) []byte {
	b = append(b, announcesMagic...)
	return binary.LittleEndian.AppendUint32(b, AnnouncesVersion)
}

// AppendAnnounce appends a's record (what it changes in a swarm; not what
// it asks for, numwant and the like) to b.
func AppendAnnounce(b []byte, a *swarm.Announce) []byte {
	ip := a.Addr.Addr().Unmap()
	var raw [16]byte
	if ip.Is4() {
		v4 := ip.As4()
		copy(raw[:], v4[:])
		b = append(b, 4)
	} else {
		raw = ip.As16()
		b = append(b, 6)
	}
	b = append(b, raw[:]...)
	b = binary.LittleEndian.AppendUint16(b, a.Addr.Port())
	b = append(b, a.InfoHash[:]...)
	b = append(b, a.PeerID[:]...)
	b = binary.LittleEndian.AppendUint64(b, uint64(a.Uploaded))
	b = binary.LittleEndian.AppendUint64(b, uint64(a.Downloaded))
	b = binary.LittleEndian.AppendUint64(b, uint64(a.Left))
	b = append(b, byte(a.Event))
	return binary.LittleEndian.AppendUint64(b, uint64(a.Now))
}

// ReadAnnounces reads an announce log to its end and hands each announce
// to apply (its argument is reused after apply returns; NumWant is 0). It
// returns how many it applied. Errors about the content wrap ErrFormat;
// an error from apply ends the read and is returned.
func ReadAnnounces(r io.Reader, apply func(*swarm.Announce) error) (int, error) {
	var rec [AnnounceLen]byte
	if _, err := io.ReadFull(r, rec[:announcesHeader]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, formatError("announce log: cut in its header")
		}
		return 0, err
	}
	if string(rec[:len(announcesMagic)]) != announcesMagic {
		return 0, formatError("announce log: not one (header %q)", printable(rec[:len(announcesMagic)]))
	}
	if v := binary.LittleEndian.Uint32(rec[len(announcesMagic):]); v != AnnouncesVersion {
		return 0, formatError("announce log: version %d, this release reads %d", v, AnnouncesVersion)
	}
	var a swarm.Announce
	for n := 0; ; n++ {
		if _, err := io.ReadFull(r, rec[:]); err != nil {
			switch {
			case errors.Is(err, io.EOF):
				return n, nil
			case errors.Is(err, io.ErrUnexpectedEOF):
				return n, formatError("announce log: cut inside record %d", n+1)
			}
			return n, err
		}
		if err := decodeAnnounce(&rec, &a); err != nil {
			return n, fmt.Errorf("announce log: record %d: %w", n+1, err)
		}
		if err := apply(&a); err != nil {
			return n, err
		}
	}
}

func decodeAnnounce(rec *[AnnounceLen]byte, a *swarm.Announce) error {
	var ip netip.Addr
	switch rec[0] {
	case 4:
		ip = netip.AddrFrom4([4]byte(rec[1:5]))
	case 6:
		ip = netip.AddrFrom16([16]byte(rec[1:17]))
	default:
		return formatError("family %d, not 4 or 6", rec[0])
	}
	b := rec[17:]
	port := binary.LittleEndian.Uint16(b)
	*a = swarm.Announce{Addr: netip.AddrPortFrom(ip, port)}
	copy(a.InfoHash[:], b[2:22])
	copy(a.PeerID[:], b[22:42])
	a.Uploaded = int64(binary.LittleEndian.Uint64(b[42:]))
	a.Downloaded = int64(binary.LittleEndian.Uint64(b[50:]))
	a.Left = int64(binary.LittleEndian.Uint64(b[58:]))
	a.Event = bittorrent.Event(b[66])
	if a.Event > bittorrent.EventCompleted {
		return formatError("event %d unknown", b[66])
	}
	a.Now = int64(binary.LittleEndian.Uint64(b[67:]))
	return nil
}
