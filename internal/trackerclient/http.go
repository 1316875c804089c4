package trackerclient

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"

	"github.com/anacrolix/torrent/bencode"

	"github.com/starling-tracker/starling/internal/bittorrent"
)

// maxHTTPBody bounds a tracker's answer: a full announce is a few kB, and a
// scrape of thousands of torrents stays far below this.
const maxHTTPBody = 8 << 20

type httpClient struct {
	announceURL *url.URL
	scrapeURL   *url.URL // nil when the path gives no way to derive it
	client      *http.Client
}

func newHTTPClient(u *url.URL, opts Options) *httpClient {
	h := &httpClient{}
	h.announceURL, h.scrapeURL = deriveURLs(u)
	network := "tcp"
	switch opts.Family {
	case IPv4:
		network = "tcp4"
	case IPv6:
		network = "tcp6"
	}
	dialer := &net.Dialer{}
	transport := &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, addr)
		},
		// #nosec G402 -- only on the operator's explicit --insecure.
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: opts.Insecure},
		ForceAttemptHTTP2: true,
	}
	h.client = &http.Client{Transport: transport}
	return h
}

// deriveURLs finds the announce and scrape URLs from either one (BEP 48's
// convention: the last "announce" path segment becomes "scrape"). A private
// tracker's key stays in place: /announce/KEY and /scrape/KEY. A bare host
// means /announce and /scrape.
func deriveURLs(u *url.URL) (announce, scrape *url.URL) {
	a, s := *u, *u
	path := u.EscapedPath()
	if path == "" || path == "/" {
		a.Path, a.RawPath = "/announce", ""
		s.Path, s.RawPath = "/scrape", ""
		return &a, &s
	}
	segs := strings.Split(path, "/")
	// BEP 48: a last segment that starts with "announce" (announce.php)
	// becomes "scrape" with the same tail.
	if last := segs[len(segs)-1]; strings.HasPrefix(last, "announce") && last != "announce" {
		segs[len(segs)-1] = "announce" + last[len("announce"):]
		setEscapedPath(&a, strings.Join(segs, "/"))
		segs[len(segs)-1] = "scrape" + last[len("announce"):]
		setEscapedPath(&s, strings.Join(segs, "/"))
		return &a, &s
	}
	for i := len(segs) - 1; i >= 0; i-- {
		if segs[i] == "announce" || segs[i] == "scrape" {
			segs[i] = "announce"
			setEscapedPath(&a, strings.Join(segs, "/"))
			segs[i] = "scrape"
			setEscapedPath(&s, strings.Join(segs, "/"))
			return &a, &s
		}
	}
	return &a, nil
}

func setEscapedPath(u *url.URL, escaped string) {
	if p, err := url.PathUnescape(escaped); err == nil {
		u.Path, u.RawPath = p, escaped
	}
}

// appendEscaped percent-encodes raw bytes for a query: everything but RFC
// 3986's unreserved characters, so info hashes survive any tracker's parser.
func appendEscaped(dst []byte, b []byte) []byte {
	const hexDigits = "0123456789ABCDEF"
	for _, c := range b {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			dst = append(dst, c)
			continue
		}
		dst = append(dst, '%', hexDigits[c>>4], hexDigits[c&15])
	}
	return dst
}

func withQuery(u *url.URL, q []byte) string {
	v := *u
	if v.RawQuery != "" {
		v.RawQuery += "&" + string(q)
	} else {
		v.RawQuery = string(q)
	}
	return v.String()
}

func httpEvent(e bittorrent.Event) string {
	switch e {
	case bittorrent.EventStarted:
		return "started"
	case bittorrent.EventStopped:
		return "stopped"
	case bittorrent.EventCompleted:
		return "completed"
	}
	return ""
}

// announceQuery is the BEP 3 query of an announce.
func announceQuery(a Announce) []byte {
	q := []byte("info_hash=")
	q = appendEscaped(q, a.InfoHash[:])
	q = append(q, "&peer_id="...)
	q = appendEscaped(q, a.PeerID[:])
	q = append(q, "&port="...)
	q = strconv.AppendUint(q, uint64(a.Port), 10)
	q = append(q, "&uploaded="...)
	q = strconv.AppendInt(q, a.Uploaded, 10)
	q = append(q, "&downloaded="...)
	q = strconv.AppendInt(q, a.Downloaded, 10)
	q = append(q, "&left="...)
	q = strconv.AppendInt(q, a.Left, 10)
	if ev := httpEvent(a.Event); ev != "" {
		q = append(q, "&event="...)
		q = append(q, ev...)
	}
	if a.NumWant >= 0 {
		q = append(q, "&numwant="...)
		q = strconv.AppendInt(q, int64(a.NumWant), 10)
	}
	if a.NoCompact {
		q = append(q, "&compact=0"...)
	} else {
		q = append(q, "&compact=1"...)
	}
	return q
}

func (h *httpClient) announce(ctx context.Context, a Announce) (AnnounceResult, error) {
	target := withQuery(h.announceURL, announceQuery(a))
	body, err := h.get(ctx, "announce", target)
	if err != nil {
		return AnnounceResult{}, err
	}
	res, err := decodeHTTPAnnounce(body)
	if err != nil {
		return AnnounceResult{}, fmt.Errorf("http announce to %s: %w", redact(h.announceURL), err)
	}
	return res, nil
}

func (h *httpClient) scrape(ctx context.Context, hashes []bittorrent.InfoHash) ([]ScrapeFile, error) {
	if h.scrapeURL == nil {
		return nil, fmt.Errorf("http scrape: cannot derive a scrape URL from %s: BEP 48 needs a path segment \"announce\" to replace with \"scrape\"; give the scrape URL itself", redact(h.announceURL))
	}
	// Trackers answer a bounded number of hashes per scrape (Starling and
	// UDP: 74), so ask in chunks and keep the request order.
	files := make([]ScrapeFile, 0, len(hashes))
	for len(hashes) > 0 {
		chunk := hashes[:min(len(hashes), MaxUDPScrape)]
		hashes = hashes[len(chunk):]
		var q []byte
		for i, ih := range chunk {
			if i > 0 {
				q = append(q, '&')
			}
			q = append(q, "info_hash="...)
			q = appendEscaped(q, ih[:])
		}
		body, err := h.get(ctx, "scrape", withQuery(h.scrapeURL, q))
		if err != nil {
			return nil, err
		}
		got, err := decodeHTTPScrape(body, chunk)
		if err != nil {
			return nil, fmt.Errorf("http scrape to %s: %w", redact(h.scrapeURL), err)
		}
		files = append(files, got...)
	}
	return files, nil
}

// redact hides a private tracker's key (the path segment after announce or
// scrape) and the query, which may carry a passkey, from messages.
// RedactURL is rawURL as output may show it (JSON results, logs): a
// private tracker's key (the path segment after announce or scrape) is
// replaced, user info and query are dropped. A URL that does not parse is
// returned as it is: nothing was sent to it.
func RedactURL(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return rawURL
	}
	return redact(u)
}

func redact(u *url.URL) string {
	v := *u
	v.RawQuery, v.User = "", nil
	segs := strings.Split(v.EscapedPath(), "/")
	for i := 0; i+1 < len(segs); i++ {
		if (segs[i] == "announce" || segs[i] == "scrape") && segs[i+1] != "" {
			segs[i+1] = "REDACTED"
		}
	}
	// udp://host:port/KEY: a UDP tracker reads a key from the whole path.
	if v.Scheme == "udp" && len(segs) == 2 && segs[1] != "" && segs[1] != "announce" {
		segs[1] = "REDACTED"
	}
	v.Path, v.RawPath = strings.Join(segs, "/"), ""
	return v.String()
}

func (h *httpClient) get(ctx context.Context, op, target string) ([]byte, error) {
	base := redact(h.announceURL)
	if op == "scrape" {
		base = redact(h.scrapeURL)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, fmt.Errorf("http %s to %s: %w", op, base, err)
	}
	req.Header.Set("User-Agent", "starling-client")
	resp, err := h.client.Do(req)
	if err != nil {
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			return nil, fmt.Errorf("http %s to %s: connection refused: nothing listens on that address and port", op, base)
		case deadlineExceeded(ctx, err):
			return nil, fmt.Errorf("http %s to %s: %w; is the tracker running and reachable?", op, base, ErrTimeout)
		}
		// The URL in *url.Error may carry the key; say what failed without it.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("http %s to %s: %w", op, base, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxHTTPBody+1))
	if err != nil {
		if deadlineExceeded(ctx, err) {
			return nil, fmt.Errorf("http %s to %s: reading the answer: %w", op, base, ErrTimeout)
		}
		return nil, fmt.Errorf("http %s to %s: reading the answer: %w", op, base, err)
	}
	if len(body) > maxHTTPBody {
		return nil, fmt.Errorf("http %s to %s: %w: answer larger than %d bytes", op, base, ErrMalformed, maxHTTPBody)
	}
	if resp.StatusCode != http.StatusOK {
		snippet := body
		if len(snippet) > 200 {
			snippet = snippet[:200]
		}
		return nil, fmt.Errorf("http %s to %s: %w: HTTP status %s (trackers answer 200, even for errors): %s",
			op, base, ErrMalformed, resp.Status, printable(snippet))
	}
	return body, nil
}

// decodeBencodeDict decodes a whole answer that must be one dictionary.
func decodeBencodeDict(body []byte) (map[string]any, error) {
	var v any
	if err := bencode.Unmarshal(body, &v); err != nil {
		return nil, fmt.Errorf("%w: not bencode: %v", ErrMalformed, err)
	}
	d, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: bencoded answer is not a dictionary", ErrMalformed)
	}
	return d, nil
}

// failure returns the tracker's "failure reason", if the answer is one.
func failure(d map[string]any) error {
	fr, present := d["failure reason"]
	if !present {
		return nil
	}
	s, ok := fr.(string)
	if !ok {
		return fmt.Errorf("%w: \"failure reason\" is not a string", ErrMalformed)
	}
	if len(s) > maxErrorMessage {
		s = s[:maxErrorMessage]
	}
	return &TrackerError{Message: printable([]byte(s))}
}

// uint32Field reads a non-negative integer that fits 32 bits.
func uint32Field(d map[string]any, key string, required bool) (uint32, error) {
	v, present := d[key]
	if !present {
		if required {
			return 0, fmt.Errorf("%w: no %q", ErrMalformed, key)
		}
		return 0, nil
	}
	i, ok := v.(int64)
	if !ok || i < 0 || i > 1<<32-1 {
		return 0, fmt.Errorf("%w: %q is not an integer between 0 and 2^32-1", ErrMalformed, key)
	}
	return uint32(i), nil
}

// decodeHTTPAnnounce decodes an announce answer in either peer form: BEP 23's
// compact strings ("peers" 6 bytes each, "peers6" 18 bytes each) or BEP 3's
// list of {ip, peer id, port} dictionaries.
func decodeHTTPAnnounce(body []byte) (AnnounceResult, error) {
	var r AnnounceResult
	d, err := decodeBencodeDict(body)
	if err != nil {
		return r, err
	}
	if err := failure(d); err != nil {
		return r, err
	}
	if r.Interval, err = uint32Field(d, "interval", true); err != nil {
		return r, err
	}
	if r.MinInterval, err = uint32Field(d, "min interval", false); err != nil {
		return r, err
	}
	if r.Seeders, err = uint32Field(d, "complete", false); err != nil {
		return r, err
	}
	if r.Leechers, err = uint32Field(d, "incomplete", false); err != nil {
		return r, err
	}
	if w, ok := d["warning message"].(string); ok {
		r.Warning = printable([]byte(w))
	}
	r.Peers = []netip.AddrPort{}
	if r.Peers, err = appendPeers(r.Peers, d["peers"], 6, "peers"); err != nil {
		return r, err
	}
	if r.Peers, err = appendPeers(r.Peers, d["peers6"], 18, "peers6"); err != nil {
		return r, err
	}
	return r, nil
}

func appendPeers(dst []netip.AddrPort, v any, size int, key string) ([]netip.AddrPort, error) {
	switch p := v.(type) {
	case nil:
		return dst, nil
	case string:
		if len(p)%size != 0 {
			return dst, fmt.Errorf("%w: compact %q of %d bytes is not a multiple of %d", ErrMalformed, key, len(p), size)
		}
		for ; len(p) > 0; p = p[size:] {
			ip, _ := netip.AddrFromSlice([]byte(p[:size-2]))
			dst = append(dst, netip.AddrPortFrom(ip.Unmap(), uint16(p[size-2])<<8|uint16(p[size-1])))
		}
		return dst, nil
	case []any:
		for i, e := range p {
			pd, ok := e.(map[string]any)
			if !ok {
				return dst, fmt.Errorf("%w: %q entry %d is not a dictionary", ErrMalformed, key, i)
			}
			ipText, _ := pd["ip"].(string)
			ip, err := netip.ParseAddr(ipText)
			if err != nil {
				return dst, fmt.Errorf("%w: %q entry %d has no valid \"ip\"", ErrMalformed, key, i)
			}
			port, ok := pd["port"].(int64)
			if !ok || port < 0 || port > 65535 {
				return dst, fmt.Errorf("%w: %q entry %d has no valid \"port\"", ErrMalformed, key, i)
			}
			dst = append(dst, netip.AddrPortFrom(ip.Unmap(), uint16(port)))
		}
		return dst, nil
	}
	return dst, fmt.Errorf("%w: %q is neither a string nor a list", ErrMalformed, key)
}

// decodeHTTPScrape decodes a BEP 48 answer and returns the counts in the
// order asked. A hash the tracker left out is an error: Torrust-compatible
// trackers answer every hash, zeros for unknown ones.
func decodeHTTPScrape(body []byte, hashes []bittorrent.InfoHash) ([]ScrapeFile, error) {
	d, err := decodeBencodeDict(body)
	if err != nil {
		return nil, err
	}
	if err := failure(d); err != nil {
		return nil, err
	}
	files, ok := d["files"].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: no \"files\" dictionary", ErrMalformed)
	}
	out := make([]ScrapeFile, len(hashes))
	for i, h := range hashes {
		e, ok := files[string(h[:])].(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%w: no entry for info hash %s", ErrMalformed, h)
		}
		f := ScrapeFile{InfoHash: h}
		if f.Seeders, err = uint32Field(e, "complete", true); err != nil {
			return nil, err
		}
		if f.Completed, err = uint32Field(e, "downloaded", true); err != nil {
			return nil, err
		}
		if f.Leechers, err = uint32Field(e, "incomplete", true); err != nil {
			return nil, err
		}
		out[i] = f
	}
	return out, nil
}
