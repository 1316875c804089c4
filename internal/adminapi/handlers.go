package adminapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/starling-tracker/starling/internal/access"
	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/metrics"
	"github.com/starling-tracker/starling/internal/swarm"
)

// statsBody is GET /stats, fields in Torrust's order.
type statsBody struct {
	Torrents               uint64 `json:"torrents"`
	Seeders                uint64 `json:"seeders"`
	Completed              uint64 `json:"completed"`
	Leechers               uint64 `json:"leechers"`
	TCP4ConnectionsHandled uint64 `json:"tcp4_connections_handled"`
	TCP4AnnouncesHandled   uint64 `json:"tcp4_announces_handled"`
	TCP4ScrapesHandled     uint64 `json:"tcp4_scrapes_handled"`
	TCP6ConnectionsHandled uint64 `json:"tcp6_connections_handled"`
	TCP6AnnouncesHandled   uint64 `json:"tcp6_announces_handled"`
	TCP6ScrapesHandled     uint64 `json:"tcp6_scrapes_handled"`
	UDP4ConnectionsHandled uint64 `json:"udp4_connections_handled"`
	UDP4AnnouncesHandled   uint64 `json:"udp4_announces_handled"`
	UDP4ScrapesHandled     uint64 `json:"udp4_scrapes_handled"`
	UDP6ConnectionsHandled uint64 `json:"udp6_connections_handled"`
	UDP6AnnouncesHandled   uint64 `json:"udp6_announces_handled"`
	UDP6ScrapesHandled     uint64 `json:"udp6_scrapes_handled"`
	// Starling's: the capacity limits ([core.limits], 0 for none) and
	// their use, after Torrust's fields (which clients read by name).
	Peers              uint64 `json:"peers"`
	MaxTorrents        uint64 `json:"max_torrents"`
	MaxPeers           uint64 `json:"max_peers"`
	MaxPeersPerTorrent uint64 `json:"max_peers_per_torrent"`
}

func (a *API) stats(ctx context.Context, r *http.Request) response {
	t, err := a.deps.Store.Totals(ctx)
	if err != nil {
		// A store that is unavailable (a client error) logged that once.
		var ce *bittorrent.ClientError
		if !errors.As(err, &ce) {
			a.log.WarnContext(ctx, "api stats: read swarm totals", "error", err)
		}
		return rejection("failed to read torrent totals: " + err.Error())
	}
	c := a.deps.Counters.Snapshot()
	s := statsBody{
		Torrents: t.Torrents, Seeders: t.Seeders, Completed: t.Completed, Leechers: t.Leechers,
		TCP4ConnectionsHandled: c[metrics.TCP4Connections],
		TCP4AnnouncesHandled:   c[metrics.TCP4Announces],
		TCP4ScrapesHandled:     c[metrics.TCP4Scrapes],
		TCP6ConnectionsHandled: c[metrics.TCP6Connections],
		TCP6AnnouncesHandled:   c[metrics.TCP6Announces],
		TCP6ScrapesHandled:     c[metrics.TCP6Scrapes],
		UDP4ConnectionsHandled: c[metrics.UDP4Connections],
		UDP4AnnouncesHandled:   c[metrics.UDP4Announces],
		UDP4ScrapesHandled:     c[metrics.UDP4Scrapes],
		UDP6ConnectionsHandled: c[metrics.UDP6Connections],
		UDP6AnnouncesHandled:   c[metrics.UDP6Announces],
		UDP6ScrapesHandled:     c[metrics.UDP6Scrapes],
		Peers:                  t.Seeders + t.Leechers,
		MaxTorrents:            a.deps.Limits.MaxTorrents,
		MaxPeers:               a.deps.Limits.MaxPeers,
		MaxPeersPerTorrent:     a.deps.Limits.MaxPeersPerTorrent,
	}
	format, _, err := single(parseQuery(r.URL.RawQuery), "format")
	if err != nil {
		return textResponse(http.StatusBadRequest, "Failed to deserialize query string: "+err.Error())
	}
	if format == "prometheus" {
		return textResponse(http.StatusOK, statsLines(&s))
	}
	return mustJSON(s)
}

// statsLines is Torrust develop's ?format=prometheus: one "name value" line
// per field, in the JSON order. Unlike Torrust it ends with a newline, which
// the Prometheus text format requires of its last line.
func statsLines(s *statsBody) string {
	vals := []uint64{s.Torrents, s.Seeders, s.Completed, s.Leechers,
		s.TCP4ConnectionsHandled, s.TCP4AnnouncesHandled, s.TCP4ScrapesHandled,
		s.TCP6ConnectionsHandled, s.TCP6AnnouncesHandled, s.TCP6ScrapesHandled,
		s.UDP4ConnectionsHandled, s.UDP4AnnouncesHandled, s.UDP4ScrapesHandled,
		s.UDP6ConnectionsHandled, s.UDP6AnnouncesHandled, s.UDP6ScrapesHandled}
	names := [...]string{"torrents", "seeders", "completed", "leechers"}
	var b strings.Builder
	for i, v := range vals {
		if i < len(names) {
			b.WriteString(names[i])
		} else {
			b.WriteString(metrics.Counter(i - len(names)).String())
		}
		b.WriteByte(' ')
		b.WriteString(strconv.FormatUint(v, 10))
		b.WriteByte('\n')
	}
	return b.String()
}

type peerIDBody struct {
	ID     string  `json:"id"`
	Client *string `json:"client"`
}

type peerBody struct {
	PeerID                 peerIDBody `json:"peer_id"`
	PeerAddr               string     `json:"peer_addr"`
	Updated                int64      `json:"updated"`
	UpdatedMillisecondsAgo int64      `json:"updated_milliseconds_ago"`
	Uploaded               int64      `json:"uploaded"`
	Downloaded             int64      `json:"downloaded"`
	Left                   int64      `json:"left"`
	Event                  string     `json:"event"`
}

type torrentBody struct {
	InfoHash  string      `json:"info_hash"`
	Seeders   uint64      `json:"seeders"`
	Completed uint64      `json:"completed"`
	Leechers  uint64      `json:"leechers"`
	Peers     *[]peerBody `json:"peers,omitempty"`
}

func summaryBody(s swarm.TorrentSummary) torrentBody {
	return torrentBody{
		InfoHash:  s.InfoHash.String(),
		Seeders:   uint64(s.Seeders),
		Completed: uint64(s.Completed),
		Leechers:  uint64(s.Leechers),
	}
}

func peerJSON(p swarm.PeerInfo) peerBody {
	var client *string
	if name := ClientName(p.ID); name != "" {
		client = &name
	}
	// Torrust fills both fields with the last update as epoch milliseconds
	// (the second is misnamed); clients rely on that, so both are kept.
	ms := p.Updated * 1000
	return peerBody{
		PeerID:                 peerIDBody{ID: "0x" + hex.EncodeToString(p.ID[:]), Client: client},
		PeerAddr:               p.Addr.String(),
		Updated:                ms,
		UpdatedMillisecondsAgo: ms,
		Uploaded:               p.Uploaded,
		Downloaded:             p.Downloaded,
		Left:                   p.Left,
		Event:                  p.Event.String(),
	}
}

func badInfoHash(v string) response {
	return textResponse(http.StatusBadRequest,
		`Invalid URL: invalid infohash param: string "`+v+`", expected a 40 character long string`)
}

func (a *API) torrent(ctx context.Context, param string) response {
	h, err := bittorrent.ParseInfoHash(param)
	if err != nil {
		return badInfoHash(param)
	}
	t, ok, err := a.deps.Store.Torrent(ctx, h)
	if err != nil {
		a.log.WarnContext(ctx, "api torrent: read swarm", "info_hash", h.String(), "error", err)
		return rejection("failed to read torrent: " + err.Error())
	}
	if !ok {
		return jsonResponse(http.StatusOK, []byte(`"torrent not known"`))
	}
	body := summaryBody(t.TorrentSummary)
	peers := make([]peerBody, min(len(t.Peers), MaxTorrentPeers))
	for i := range peers {
		peers[i] = peerJSON(t.Peers[i])
	}
	body.Peers = &peers
	return mustJSON(body)
}

func (a *API) torrents(ctx context.Context, r *http.Request) response {
	q, err := parseTorrentsQuery(parseQuery(r.URL.RawQuery))
	if err != nil {
		return textResponse(http.StatusBadRequest, "Failed to deserialize query string: "+err.Error())
	}
	out := []torrentBody{}
	if len(q.hashes) > 0 {
		// Filter mode: pagination ignored, unknown hashes left out, request order.
		for _, v := range q.hashes {
			h, err := bittorrent.ParseInfoHash(v)
			if err != nil {
				return badInfoHash(v)
			}
			t, ok, err := a.deps.Store.Torrent(ctx, h)
			if err != nil {
				a.log.WarnContext(ctx, "api torrents: read swarm", "error", err)
				return rejection("failed to read torrents: " + err.Error())
			}
			if ok {
				out = append(out, summaryBody(t.TorrentSummary))
			}
		}
		return mustJSON(out)
	}
	list, err := a.deps.Store.Torrents(ctx, int(q.offset), int(q.limit))
	if err != nil {
		a.log.WarnContext(ctx, "api torrents: list swarms", "error", err)
		return rejection("failed to read torrents: " + err.Error())
	}
	for _, s := range list {
		out = append(out, summaryBody(s))
	}
	return mustJSON(out)
}

func (a *API) whitelist(ctx context.Context, method, param string) response {
	h, err := bittorrent.ParseInfoHash(param)
	if err != nil {
		return badInfoHash(param)
	}
	if method == http.MethodPost {
		if err := a.deps.Lists.AddToWhitelist(ctx, h); err != nil {
			a.log.WarnContext(ctx, "api whitelist add", "info_hash", h.String(), "error", err)
			return failure("failed to whitelist torrent", err)
		}
		return jsonResponse(http.StatusOK, okBody)
	}
	if err := a.deps.Lists.RemoveFromWhitelist(ctx, h); err != nil {
		a.log.WarnContext(ctx, "api whitelist remove", "info_hash", h.String(), "error", err)
		return failure("failed to remove torrent from whitelist", err)
	}
	return jsonResponse(http.StatusOK, okBody)
}

func (a *API) reloadWhitelist(ctx context.Context) response {
	if err := a.deps.Lists.ReloadWhitelist(ctx); err != nil {
		a.log.WarnContext(ctx, "api whitelist reload", "error", err)
		return failure("failed to reload whitelist", err)
	}
	return jsonResponse(http.StatusOK, okBody)
}

func (a *API) reloadKeys(ctx context.Context) response {
	if err := a.deps.Lists.ReloadKeys(ctx); err != nil {
		a.log.WarnContext(ctx, "api keys reload", "error", err)
		return failure("failed to reload keys", err)
	}
	return jsonResponse(http.StatusOK, okBody)
}

// reload applies the configuration file again, as SIGHUP does. A file
// that does not load leaves everything as it was and is a 400 naming the
// problems.
func (a *API) reload(ctx context.Context) response {
	if a.deps.Reload == nil {
		return response{status: http.StatusNotFound}
	}
	res, err := a.deps.Reload(ctx)
	if err != nil {
		body, _ := json.Marshal(map[string]string{"status": "failed", "error": err.Error()})
		if errors.Is(err, access.ErrUnavailable) {
			return jsonResponse(http.StatusServiceUnavailable, body)
		}
		return jsonResponse(http.StatusBadRequest, body)
	}
	if res.Changed == nil {
		res.Changed = []string{}
	}
	if res.NeedsRestart == nil {
		res.NeedsRestart = []string{}
	}
	body, _ := json.Marshal(struct {
		Status string `json:"status"`
		ReloadResult
	}{"ok", res})
	return jsonResponse(http.StatusOK, body)
}

// maxValidUntil is 9999-12-31T23:59:59Z: later expiries cannot be stored in
// the databases' date types nor formatted as a four-digit year.
const maxValidUntil = 253402300799

type keyBody struct {
	Key        string  `json:"key"`
	ValidUntil *int64  `json:"valid_until"`
	ExpiryTime *string `json:"expiry_time"`
}

// expiryTime formats t as Torrust does (chrono's Display of a UTC time):
// "2023-03-28 13:25:00.058085050 UTC", the fraction cut to 3 or 6 digits
// when the rest are zeros, and left out when it is zero.
func expiryTime(t time.Time) string {
	t = t.UTC()
	s := t.Format("2006-01-02 15:04:05")
	switch ns := t.Nanosecond(); {
	case ns == 0:
	case ns%1_000_000 == 0:
		s += fmt.Sprintf(".%03d", ns/1_000_000)
	case ns%1_000 == 0:
		s += fmt.Sprintf(".%06d", ns/1_000)
	default:
		s += fmt.Sprintf(".%09d", ns)
	}
	return s + " UTC"
}

func (a *API) addKey(ctx context.Context, r *http.Request) response {
	if !isJSON(r.Header.Get("Content-Type")) {
		return textResponse(http.StatusUnsupportedMediaType, "Expected request with `Content-Type: application/json`")
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return textResponse(http.StatusRequestEntityTooLarge, "Failed to buffer the request body: length limit exceeded")
		}
		return textResponse(http.StatusBadRequest, "Failed to buffer the request body: "+err.Error())
	}
	form, err := decodeKeyForm(body)
	if err != nil {
		if _, ok := errors.AsType[errJSONSyntax](err); ok {
			return textResponse(http.StatusBadRequest, "Failed to parse the request body as JSON: "+err.Error())
		}
		return textResponse(http.StatusUnprocessableEntity, "Failed to deserialize the JSON body into the target type: "+err.Error())
	}
	var k bittorrent.Key
	if form.hasKey {
		if k, err = bittorrent.ParseKey(form.key); err != nil {
			return textResponse(http.StatusBadRequest, `Invalid URL: invalid auth key: string "`+form.key+`", `+err.Error())
		}
	} else if k, err = randomKey(); err != nil {
		return rejection("failed to generate key: " + err.Error())
	}
	return a.storeKey(ctx, k, form.seconds, form.hasSeconds)
}

// generateKey is the deprecated POST /key/{seconds}: a random key.
func (a *API) generateKey(ctx context.Context, param string) response {
	secs, err := parseUint(param, 1<<64-1)
	if err != nil {
		return textResponse(http.StatusBadRequest, `Invalid URL: Cannot parse "`+param+"\" to a `u64`")
	}
	k, err := randomKey()
	if err != nil {
		return rejection("failed to generate key: " + err.Error())
	}
	return a.storeKey(ctx, k, secs, true)
}

func (a *API) storeKey(ctx context.Context, k bittorrent.Key, secs uint64, expires bool) response {
	rec := access.KeyRecord{Key: k, Permanent: !expires}
	out := keyBody{Key: k.String()}
	if expires {
		now := a.now()
		if secs > maxValidUntil || now.Unix()+int64(secs) > maxValidUntil {
			return textResponse(http.StatusBadRequest, `Invalid URL: invalid auth key duration: "`+strconv.FormatUint(secs, 10)+`"`)
		}
		// Whole seconds, not a time.Duration, which tops out at 292 years.
		exp := time.Unix(now.Unix()+int64(secs), int64(now.Nanosecond()))
		rec.ValidUntil = exp.Unix()
		s := expiryTime(exp)
		out.ValidUntil, out.ExpiryTime = &rec.ValidUntil, &s
	}
	if err := a.deps.Lists.AddKey(ctx, rec); err != nil {
		// The access layer's errors may quote the key; keep it out of logs.
		a.log.WarnContext(ctx, "api add key", "error", strings.ReplaceAll(err.Error(), k.String(), "[key]"))
		return failure("failed to generate key", err)
	}
	return mustJSON(out)
}

func (a *API) deleteKey(ctx context.Context, param string) response {
	k, err := bittorrent.ParseKey(param)
	if err != nil {
		return textResponse(http.StatusBadRequest, `Invalid auth key id param "`+param+`"`)
	}
	if err := a.deps.Lists.RemoveKey(ctx, k); err != nil {
		msg := strings.ReplaceAll(err.Error(), k.String(), "[key]")
		if errors.Is(err, access.ErrNotFound) {
			// Torrust's wording for a key the database does not hold.
			return rejection("failed to delete key: Failed to remove record from database: " + msg)
		}
		a.log.WarnContext(ctx, "api delete key", "error", msg)
		return failure("failed to delete key", err)
	}
	return jsonResponse(http.StatusOK, okBody)
}

// randomKey makes 32 characters of [0-9A-Za-z] from crypto/rand, rejecting
// bytes that would bias the choice.
func randomKey() (bittorrent.Key, error) {
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	const unbiased = 256 - 256%len(alphabet) // 248
	var k bittorrent.Key
	var buf [64]byte
	n := 0
	for n < len(k) {
		if _, err := rand.Read(buf[:]); err != nil {
			return k, err
		}
		for _, b := range buf {
			if int(b) < unbiased && n < len(k) {
				k[n] = alphabet[int(b)%len(alphabet)]
				n++
			}
		}
	}
	return k, nil
}

// isJSON accepts application/json and application/*+json, as axum does.
func isJSON(ctype string) bool {
	mt, _, err := mime.ParseMediaType(ctype)
	if err != nil {
		return false
	}
	return mt == "application/json" || strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")
}

// mustJSON encodes v, which is always one of this file's plain structs.
func mustJSON(v any) response {
	b, err := json.Marshal(v)
	if err != nil {
		panic("adminapi: encode response: " + err.Error())
	}
	return jsonResponse(http.StatusOK, b)
}

// fullScrape is GET /api/v1/scrape/full: the HTTP tracker's full scrape
// (the same cached body), for core.full_scrape "api" and "public".
func (a *API) fullScrape(ctx context.Context) response {
	if a.deps.FullScrape == nil {
		return response{status: http.StatusNotFound}
	}
	body, err := a.deps.FullScrape.Get(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return response{status: http.StatusRequestTimeout}
		}
		a.log.WarnContext(ctx, "api full scrape", "error", err)
		return rejection("failed to build the full scrape: " + err.Error())
	}
	return response{status: http.StatusOK, ctype: "application/octet-stream", body: body.Plain, gzip: body.Gzip}
}
