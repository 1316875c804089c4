// Package trackerclient is the client side of the tracker protocols: UDP
// (BEP 15) and HTTP(S) (BEP 3, 23, 48), as the operator tools (`starling
// client`, `starling check`) speak them. It is written for clarity and strict
// checking of the tracker's answer, not for speed: every answer that is not
// exactly what the protocol allows is reported, so an operator learns that a
// tracker is broken rather than getting a half-decoded result.
package trackerclient

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/starling-tracker/starling/internal/bittorrent"
)

// DefaultTimeout bounds one announce or scrape when Options.Timeout is zero;
// it is Torrust's client timeout.
const DefaultTimeout = 5 * time.Second

// Family selects the IP family used to resolve and reach the tracker.
type Family int

// Families. AnyFamily lets the resolver and dialer choose.
const (
	AnyFamily Family = 0
	IPv4      Family = 4
	IPv6      Family = 6
)

// ParseFamily reads the value of an --ip-family flag: "", "4" or "6".
func ParseFamily(s string) (Family, error) {
	switch strings.TrimPrefix(strings.ToLower(s), "ipv") {
	case "", "any", "0":
		return AnyFamily, nil
	case "4":
		return IPv4, nil
	case "6":
		return IPv6, nil
	}
	return AnyFamily, fmt.Errorf("ip family %q: use 4 or 6", s)
}

// Options tune a Client.
type Options struct {
	// Timeout bounds each Announce, Scrape and Connect call; zero means
	// DefaultTimeout. UDP requests are retransmitted within it.
	Timeout time.Duration
	// Family restricts name resolution and the connection to IPv4 or IPv6.
	Family Family
	// Insecure accepts any TLS certificate (self-signed test setups).
	Insecure bool
}

func (o Options) timeout() time.Duration {
	if o.Timeout <= 0 {
		return DefaultTimeout
	}
	return o.Timeout
}

// Announce is what the client tells the tracker about itself.
type Announce struct {
	InfoHash   bittorrent.InfoHash
	PeerID     bittorrent.PeerID
	Port       uint16
	Uploaded   int64
	Downloaded int64
	Left       int64
	Event      bittorrent.Event
	// NumWant is the number of peers asked for; negative leaves it to the
	// tracker (UDP sends -1, HTTP omits the parameter).
	NumWant int32
	// Key is BEP 15's random key (UDP only; HTTP private-tracker keys are in
	// the URL path).
	Key uint32
	// NoCompact asks an HTTP tracker for the BEP 3 list of dictionaries
	// instead of BEP 23's compact strings.
	NoCompact bool
}

// AnnounceResult is a decoded announce answer. Peers of both families are
// listed together; JSON shows them as "ip:port".
type AnnounceResult struct {
	Interval uint32 `json:"interval"`
	// MinInterval is sent by HTTP trackers only; zero when absent.
	MinInterval uint32           `json:"min_interval,omitempty"`
	Seeders     uint32           `json:"seeders"`
	Leechers    uint32           `json:"leechers"`
	Peers       []netip.AddrPort `json:"peers"`
	Warning     string           `json:"warning_message,omitempty"`
}

// ScrapeFile is one torrent's counts in a scrape answer.
type ScrapeFile struct {
	InfoHash  bittorrent.InfoHash `json:"-"`
	Seeders   uint32              `json:"seeders"`
	Completed uint32              `json:"completed"`
	Leechers  uint32              `json:"leechers"`
}

// TrackerError is a refusal by the tracker: an HTTP "failure reason" or a
// UDP error packet. The tracker works; it said no.
type TrackerError struct {
	Message string
}

func (e *TrackerError) Error() string { return "tracker answered with an error: " + e.Message }

// ErrMalformed marks an answer that is not valid for the protocol: the
// address answers, but not as a tracker (or a broken one).
var ErrMalformed = errors.New("malformed answer")

// ErrTimeout marks a request that got no valid answer in time.
var ErrTimeout = errors.New("no answer in time")

// Client talks to one tracker URL. A Client is not safe for concurrent use:
// the tools use one per target.
type Client struct {
	url  *url.URL
	opts Options
	udp  *udpClient
	http *httpClient
}

// New parses a tracker URL (udp://host:port[/path], http(s)://host[:port]/path)
// and prepares a client for it. It does not contact the tracker.
func New(rawURL string, opts Options) (*Client, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("tracker URL %q: %w", rawURL, err)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("tracker URL %q has no host: write it as udp://host:port or http://host:port/announce", redact(u))
	}
	c := &Client{url: u, opts: opts}
	switch u.Scheme {
	case "udp":
		if u.Port() == "" {
			return nil, fmt.Errorf("tracker URL %q has no port: UDP trackers have no default port", redact(u))
		}
		d, err := udpURLData(u)
		if err != nil {
			return nil, err
		}
		c.udp = &udpClient{opts: opts, hostport: u.Host, urlData: d}
	case "http", "https":
		c.http = newHTTPClient(u, opts)
	default:
		return nil, fmt.Errorf("tracker URL %q: scheme %q is not udp, http or https", redact(u), u.Scheme)
	}
	return c, nil
}

// URL is the tracker URL the client was made for.
func (c *Client) URL() string { return c.url.String() }

// Protocol is "udp", "http" or "https".
func (c *Client) Protocol() string { return c.url.Scheme }

// Connect prepares the exchange. For UDP it performs BEP 15's connect
// handshake and keeps the connection id; HTTP needs no handshake and Connect
// returns nil.
func (c *Client) Connect(ctx context.Context) error {
	if c.udp == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.timeout())
	defer cancel()
	return c.udp.connect(ctx)
}

// Announce sends one announce and decodes the answer. A refusal by the
// tracker is a *TrackerError; an answer that is not valid wraps ErrMalformed;
// silence wraps ErrTimeout.
func (c *Client) Announce(ctx context.Context, a Announce) (AnnounceResult, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.timeout())
	defer cancel()
	if c.udp != nil {
		return c.udp.announce(ctx, a)
	}
	return c.http.announce(ctx, a)
}

// Scrape asks for the counts of the given torrents and returns them in the
// order asked. UDP requests are split in packets of MaxUDPScrape hashes.
func (c *Client) Scrape(ctx context.Context, hashes []bittorrent.InfoHash) ([]ScrapeFile, error) {
	if len(hashes) == 0 {
		return nil, errors.New("scrape: no info hash given")
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.timeout())
	defer cancel()
	if c.udp != nil {
		return c.udp.scrape(ctx, hashes)
	}
	return c.http.scrape(ctx, hashes)
}

// Close releases the UDP socket, if any.
func (c *Client) Close() error {
	if c.udp != nil {
		return c.udp.close()
	}
	if c.http != nil {
		c.http.client.CloseIdleConnections()
	}
	return nil
}

// Exit statuses of the tools, by error class, so cron jobs and CI can tell a
// refusing tracker from a dead one.
const (
	ExitOK       = 0
	ExitRefused  = 1 // the tracker answered with an error
	ExitUsage    = 2 // bad flags or arguments
	ExitNoAnswer = 3 // no answer, connection refused, or an invalid answer
)

// ExitCode maps an error of Announce, Scrape or Connect to an exit status.
func ExitCode(err error) int {
	var te *TrackerError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &te):
		return ExitRefused
	default:
		return ExitNoAnswer
	}
}

// deadlineExceeded says whether err is the end of ctx's time.
func deadlineExceeded(ctx context.Context, err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil
}

// printable turns text from the network into one line of valid UTF-8 that
// cannot move a terminal's cursor.
func printable(b []byte) string {
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}
