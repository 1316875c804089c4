package trackerclient

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"syscall"
	"time"

	"github.com/starling-tracker/starling/internal/bittorrent"
)

// BEP 15 constants.
const (
	udpProtocolID = 0x41727101980

	actionConnect  = 0
	actionAnnounce = 1
	actionScrape   = 2
	actionError    = 3

	// MaxUDPScrape is the number of hashes per scrape packet: 16 + 20*74
	// bytes fit the 1496-byte buffer of Torrust-compatible trackers.
	MaxUDPScrape = 74

	// connectionIDLifetime is how long BEP 15 lets a client reuse a
	// connection id.
	connectionIDLifetime = 60 * time.Second

	// firstRetransmit is the first wait before a request is sent again;
	// BEP 15's 15 s would exceed any sensible --timeout, so the client
	// retransmits faster and doubles the wait each time.
	firstRetransmit = time.Second

	// BEP 41: the URL data option (type 2) carries the announce URL's path
	// and query, at most 255 bytes an option, so longer data is split over
	// several, which the tracker joins.
	optURLData   = 2
	maxOptionLen = 255
	// MaxUDPURLData bounds the path and query of a udp:// URL, so that an
	// announce with them stays well inside one packet.
	MaxUDPURLData = 1024

	announcePktSize = 98
)

type udpClient struct {
	opts     Options
	hostport string
	// urlData is the URL's path and query, sent after each announce as
	// BEP 41 URL data (a private tracker reads its key there); empty for
	// udp://host:port, which then sends no options.
	urlData string
	conn    *net.UDPConn
	remote  netip.AddrPort
	connID  uint64
	connAt  time.Time
	buf     [2048]byte
	// out holds a request: a scrape of MaxUDPScrape hashes, or an announce
	// with URL data options.
	out [max(16+20*MaxUDPScrape, announcePktSize+MaxUDPURLData+2*(MaxUDPURLData+maxOptionLen-1)/maxOptionLen)]byte
}

func (u *udpClient) close() error {
	if u.conn == nil {
		return nil
	}
	err := u.conn.Close()
	u.conn = nil
	return err
}

// dial resolves the host in the requested family and opens a connected
// socket, so the kernel drops datagrams from anyone but the tracker and
// reports ICMP "port unreachable" as ECONNREFUSED.
func (u *udpClient) dial(ctx context.Context) error {
	if u.conn != nil {
		return nil
	}
	network := "udp"
	switch u.opts.Family {
	case IPv4:
		network = "udp4"
	case IPv6:
		network = "udp6"
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, network, u.hostport)
	if err != nil {
		if deadlineExceeded(ctx, err) {
			return fmt.Errorf("resolve udp://%s: %w", u.hostport, ErrTimeout)
		}
		return fmt.Errorf("resolve udp://%s: %w", u.hostport, err)
	}
	u.conn = c.(*net.UDPConn)
	u.remote = u.conn.RemoteAddr().(*net.UDPAddr).AddrPort()
	u.remote = netip.AddrPortFrom(u.remote.Addr().Unmap(), u.remote.Port())
	return nil
}

// peerSize is 6 bytes (IPv4) or 18 (IPv6): BEP 15 answers with peers of the
// family the request came over.
func (u *udpClient) peerSize() int {
	if u.remote.Addr().Is4() {
		return 6
	}
	return 18
}

func newTransactionID() uint32 {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint32(b[:])
}

func (u *udpClient) connect(ctx context.Context) error {
	if err := u.dial(ctx); err != nil {
		return err
	}
	tid := newTransactionID()
	req := u.out[:16]
	binary.BigEndian.PutUint64(req[0:], udpProtocolID)
	binary.BigEndian.PutUint32(req[8:], actionConnect)
	binary.BigEndian.PutUint32(req[12:], tid)
	ans, err := u.roundTrip(ctx, "connect", req, tid, actionConnect, nil)
	if err != nil {
		return err
	}
	u.connID, u.connAt = ans.connID, time.Now()
	return nil
}

// ensureConnected reuses a connection id younger than BEP 15's minute.
func (u *udpClient) ensureConnected(ctx context.Context) error {
	if u.conn != nil && !u.connAt.IsZero() && time.Since(u.connAt) < connectionIDLifetime {
		return nil
	}
	return u.connect(ctx)
}

// udpEvent maps events to BEP 15's numbers (none, completed, started, stopped).
func udpEvent(e bittorrent.Event) uint32 {
	switch e {
	case bittorrent.EventCompleted:
		return 1
	case bittorrent.EventStarted:
		return 2
	case bittorrent.EventStopped:
		return 3
	}
	return 0
}

func (u *udpClient) announce(ctx context.Context, a Announce) (AnnounceResult, error) {
	if err := u.ensureConnected(ctx); err != nil {
		return AnnounceResult{}, err
	}
	tid := newTransactionID()
	req := u.out[:announcePktSize]
	binary.BigEndian.PutUint64(req[0:], u.connID)
	binary.BigEndian.PutUint32(req[8:], actionAnnounce)
	binary.BigEndian.PutUint32(req[12:], tid)
	copy(req[16:36], a.InfoHash[:])
	copy(req[36:56], a.PeerID[:])
	binary.BigEndian.PutUint64(req[56:], uint64(a.Downloaded))
	binary.BigEndian.PutUint64(req[64:], uint64(a.Left))
	binary.BigEndian.PutUint64(req[72:], uint64(a.Uploaded))
	binary.BigEndian.PutUint32(req[80:], udpEvent(a.Event))
	binary.BigEndian.PutUint32(req[84:], 0) // IP: the tracker uses the source address
	binary.BigEndian.PutUint32(req[88:], a.Key)
	binary.BigEndian.PutUint32(req[92:], uint32(a.NumWant))
	binary.BigEndian.PutUint16(req[96:], a.Port)
	req = appendURLData(req, u.urlData)
	ans, err := u.roundTrip(ctx, "announce", req, tid, actionAnnounce, nil)
	if err != nil {
		return AnnounceResult{}, err
	}
	return ans.announce, nil
}

// appendURLData appends d as BEP 41 URL data options of at most 255 bytes
// each; nothing when d is empty.
func appendURLData(b []byte, d string) []byte {
	for len(d) > 0 {
		n := min(len(d), maxOptionLen)
		b = append(b, optURLData, byte(n))
		b = append(b, d[:n]...)
		d = d[n:]
	}
	return b
}

// udpURLData is the URL data a udp:// URL sends: its path and query, as
// libtorrent sends them. Longer than MaxUDPURLData is an error.
func udpURLData(u *url.URL) (string, error) {
	d := u.EscapedPath()
	if u.RawQuery != "" {
		d += "?" + u.RawQuery
	}
	if len(d) > MaxUDPURLData {
		return "", fmt.Errorf("tracker URL %q: path and query of %d bytes; BEP 41 URL data of at most %d bytes is sent", redact(u), len(d), MaxUDPURLData)
	}
	return d, nil
}

func (u *udpClient) scrape(ctx context.Context, hashes []bittorrent.InfoHash) ([]ScrapeFile, error) {
	files := make([]ScrapeFile, 0, len(hashes))
	for len(hashes) > 0 {
		batch := hashes[:min(len(hashes), MaxUDPScrape)]
		hashes = hashes[len(batch):]
		if err := u.ensureConnected(ctx); err != nil {
			return nil, err
		}
		tid := newTransactionID()
		req := u.out[:16+20*len(batch)]
		binary.BigEndian.PutUint64(req[0:], u.connID)
		binary.BigEndian.PutUint32(req[8:], actionScrape)
		binary.BigEndian.PutUint32(req[12:], tid)
		for i, h := range batch {
			copy(req[16+20*i:], h[:])
		}
		ans, err := u.roundTrip(ctx, "scrape", req, tid, actionScrape, batch)
		if err != nil {
			return nil, err
		}
		files = append(files, ans.scrape...)
	}
	return files, nil
}

// roundTrip sends req and waits for the answer with transaction id tid,
// sending req again after 1 s, 2 s, 4 s... until ctx ends.
func (u *udpClient) roundTrip(ctx context.Context, op string, req []byte, tid, action uint32, hashes []bittorrent.InfoHash) (udpAnswer, error) {
	target := "udp://" + u.remote.String()
	// A cancelled ctx unblocks a pending read at once. The callback may run
	// after this call returned and the client was closed, so it holds the
	// conn itself rather than reading u.conn.
	conn := u.conn
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Now()) })
	defer stop()
	deadline, _ := ctx.Deadline()
	wait := firstRetransmit
	ignored := 0
	// Stop at the deadline itself, not when ctx's timer fires a little
	// later, so no request is sent that cannot be waited for.
	for ctx.Err() == nil && (deadline.IsZero() || time.Now().Before(deadline)) {
		if _, err := u.conn.Write(req); err != nil {
			return udpAnswer{}, u.netError(ctx, op, target, err)
		}
		resend := time.Now().Add(wait)
		if !deadline.IsZero() && deadline.Before(resend) {
			resend = deadline
		}
		wait *= 2
		if err := u.conn.SetReadDeadline(resend); err != nil {
			return udpAnswer{}, fmt.Errorf("udp %s to %s: %w", op, target, err)
		}
		for {
			n, err := u.conn.Read(u.buf[:])
			if err != nil {
				if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
					break
				}
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break // time to send again
				}
				return udpAnswer{}, u.netError(ctx, op, target, err)
			}
			ans, ours, err := decodeUDP(u.buf[:n], tid, action, u.peerSize(), hashes)
			if err != nil {
				return udpAnswer{}, fmt.Errorf("udp %s to %s: %w", op, target, err)
			}
			if ours {
				return ans, nil
			}
			ignored++ // a late answer to an earlier request
		}
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		return udpAnswer{}, fmt.Errorf("udp %s to %s: %w", op, target, ctx.Err())
	}
	msg := ""
	if ignored > 0 {
		msg = fmt.Sprintf(" (%d answers to other transactions ignored)", ignored)
	}
	return udpAnswer{}, fmt.Errorf("udp %s to %s: %w within %s%s; is the tracker running, and is the port open in the firewall?",
		op, target, ErrTimeout, u.opts.timeout(), msg)
}

func (u *udpClient) netError(ctx context.Context, op, target string, err error) error {
	if errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("udp %s to %s: nothing listens on that port (ICMP port unreachable): %w", op, target, err)
	}
	if deadlineExceeded(ctx, err) {
		return fmt.Errorf("udp %s to %s: %w within %s", op, target, ErrTimeout, u.opts.timeout())
	}
	return fmt.Errorf("udp %s to %s: %w", op, target, err)
}

// udpAnswer is a decoded BEP 15 answer of one of the three request kinds.
type udpAnswer struct {
	connID   uint64
	announce AnnounceResult
	scrape   []ScrapeFile
}

// maxErrorMessage bounds the text of an error packet shown to the operator.
const maxErrorMessage = 512

// decodeUDP decodes a datagram from the tracker. ours is false for a valid
// answer to another transaction (a late answer to a retransmission), which the
// caller skips. Anything that cannot be a BEP 15 answer is ErrMalformed:
// the tracker address answered, but not as a tracker.
func decodeUDP(b []byte, tid, action uint32, peerSize int, hashes []bittorrent.InfoHash) (ans udpAnswer, ours bool, err error) {
	if len(b) < 8 {
		return ans, false, fmt.Errorf("%w: %d-byte datagram is shorter than the 8-byte BEP 15 header", ErrMalformed, len(b))
	}
	gotAction := binary.BigEndian.Uint32(b[0:])
	gotTID := binary.BigEndian.Uint32(b[4:])
	if gotAction > actionError {
		return ans, false, fmt.Errorf("%w: unknown action %d in a %d-byte datagram", ErrMalformed, gotAction, len(b))
	}
	// Torrust v3 answers requests it cannot parse with transaction id 0; the
	// socket is connected, so such an error can only be the tracker's.
	if gotTID != tid && !(gotAction == actionError && gotTID == 0) {
		return ans, false, nil
	}
	if gotAction == actionError {
		msg := b[8:]
		if len(msg) > maxErrorMessage {
			msg = msg[:maxErrorMessage]
		}
		return ans, true, &TrackerError{Message: printable(msg)}
	}
	if gotAction != action {
		return ans, false, fmt.Errorf("%w: action %d answers a request of action %d", ErrMalformed, gotAction, action)
	}
	switch action {
	case actionConnect:
		if len(b) < 16 {
			return ans, false, fmt.Errorf("%w: connect answer of %d bytes, want 16", ErrMalformed, len(b))
		}
		ans.connID = binary.BigEndian.Uint64(b[8:])
	case actionAnnounce:
		if len(b) < 20 || (len(b)-20)%peerSize != 0 {
			return ans, false, fmt.Errorf("%w: announce answer of %d bytes is not 20 + a multiple of %d-byte peers", ErrMalformed, len(b), peerSize)
		}
		r := &ans.announce
		r.Interval = binary.BigEndian.Uint32(b[8:])
		r.Leechers = binary.BigEndian.Uint32(b[12:])
		r.Seeders = binary.BigEndian.Uint32(b[16:])
		r.Peers = make([]netip.AddrPort, 0, (len(b)-20)/peerSize)
		for p := b[20:]; len(p) > 0; p = p[peerSize:] {
			var ip netip.Addr
			if peerSize == 6 {
				ip = netip.AddrFrom4([4]byte(p[:4]))
			} else {
				ip = netip.AddrFrom16([16]byte(p[:16]))
			}
			r.Peers = append(r.Peers, netip.AddrPortFrom(ip, binary.BigEndian.Uint16(p[peerSize-2:])))
		}
	case actionScrape:
		if (len(b)-8)%12 != 0 || (len(b)-8)/12 != len(hashes) {
			return ans, false, fmt.Errorf("%w: scrape answer of %d bytes for %d hashes, want %d bytes", ErrMalformed, len(b), len(hashes), 8+12*len(hashes))
		}
		ans.scrape = make([]ScrapeFile, len(hashes))
		for i := range hashes {
			e := b[8+12*i:]
			ans.scrape[i] = ScrapeFile{
				InfoHash:  hashes[i],
				Seeders:   binary.BigEndian.Uint32(e[0:]),
				Completed: binary.BigEndian.Uint32(e[4:]),
				Leechers:  binary.BigEndian.Uint32(e[8:]),
			}
		}
	}
	return ans, true, nil
}
