// Package checker checks that trackers answer: the `starling check` tool an
// operator runs from cron or CI, compatible with Torrust's tracker_checker
// configuration ({"udp_trackers":[…],"http_trackers":[…],"health_checks":[…]}).
// A UDP tracker must answer connect, announce and scrape; an HTTP tracker
// announce and scrape; a health-check URL 200 with status "Ok".
package checker

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/trackerclient"
)

// CheckInfoHash is the torrent the checks announce and scrape, the one
// Torrust's checker uses.
const CheckInfoHash = "9c38422213e30bff212b30c360d26f9a02136422"

// checkPort is the port the check announces; the peer is removed again by a
// stopped announce at the end of the check.
const checkPort = 6881

// Config lists the targets, in Torrust's tracker_checker JSON shape.
type Config struct {
	UDPTrackers  []string `json:"udp_trackers"`
	HTTPTrackers []string `json:"http_trackers"`
	HealthChecks []string `json:"health_checks"`
}

// Empty says whether there is nothing to check.
func (c Config) Empty() bool {
	return len(c.UDPTrackers)+len(c.HTTPTrackers)+len(c.HealthChecks) == 0
}

// maxConfig bounds a configuration; a list of targets is a few kB.
const maxConfig = 1 << 20

// ParseConfig decodes the JSON configuration strictly: an unknown key (a typo
// such as "udp_tracker") would silently check nothing, so it is an error that
// names the key.
func ParseConfig(data []byte) (Config, error) {
	var c Config
	if len(data) > maxConfig {
		return c, fmt.Errorf("checker configuration: %d bytes is more than %d", len(data), maxConfig)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, fmt.Errorf("checker configuration: %w (expected {\"udp_trackers\":[…],\"http_trackers\":[…],\"health_checks\":[…]})", err)
	}
	if dec.More() {
		return c, errors.New("checker configuration: data after the JSON object")
	}
	for _, list := range [][]string{c.UDPTrackers, c.HTTPTrackers, c.HealthChecks} {
		for _, u := range list {
			if strings.TrimSpace(u) == "" {
				return c, errors.New("checker configuration: an empty URL in a list")
			}
		}
	}
	return c, nil
}

// Kinds of target.
const (
	KindUDP    = "udp"
	KindHTTP   = "http"
	KindHealth = "health"
)

// Status codes.
const (
	CodeOK    = "ok"
	CodeError = "error"
)

// Status is the outcome of a check or of one of its steps.
type Status struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Step is one exchange of a check (connect, announce, scrape, stop, get).
type Step struct {
	Name   string `json:"step"`
	Status Status `json:"status"`
}

// Result is the outcome of checking one target.
type Result struct {
	URL    string `json:"url"`
	Kind   string `json:"kind"`
	Status Status `json:"status"`
	Steps  []Step `json:"steps,omitempty"`
}

// OK says whether the target passed.
func (r Result) OK() bool { return r.Status.Code == CodeOK }

// AllOK says whether every target passed.
func AllOK(rs []Result) bool {
	for _, r := range rs {
		if !r.OK() {
			return false
		}
	}
	return true
}

// Checker runs checks.
type Checker struct {
	// Timeout bounds each request of a check; zero means 5 s.
	Timeout time.Duration
	// Insecure accepts self-signed TLS certificates.
	Insecure bool
	// Family restricts the checks to IPv4 or IPv6.
	Family trackerclient.Family
	// Parallel bounds the targets checked at once; zero means 8.
	Parallel int
}

func (c Checker) timeout() time.Duration {
	if c.Timeout <= 0 {
		return trackerclient.DefaultTimeout
	}
	return c.Timeout
}

// Run checks every target of cfg, a few at a time, and returns the results in
// the order of the configuration: UDP trackers, HTTP trackers, health checks.
func (c Checker) Run(ctx context.Context, cfg Config) []Result {
	type job struct {
		kind, url string
	}
	var jobs []job
	for _, u := range cfg.UDPTrackers {
		jobs = append(jobs, job{KindUDP, u})
	}
	for _, u := range cfg.HTTPTrackers {
		jobs = append(jobs, job{KindHTTP, u})
	}
	for _, u := range cfg.HealthChecks {
		jobs = append(jobs, job{KindHealth, u})
	}
	results := make([]Result, len(jobs))
	parallel := c.Parallel
	if parallel <= 0 {
		parallel = 8
	}
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			switch j.kind {
			case KindUDP:
				results[i] = c.CheckUDP(ctx, j.url)
			case KindHTTP:
				results[i] = c.CheckHTTP(ctx, j.url)
			default:
				results[i] = c.CheckHealth(ctx, j.url)
			}
		}()
	}
	wg.Wait()
	return results
}

// NormalizeUDP accepts Torrust's "host:port" form and udp:// URLs.
func NormalizeUDP(target string) string {
	if !strings.Contains(target, "://") {
		return "udp://" + target
	}
	return target
}

// CheckUDP connects, announces the check torrent, scrapes it and announces
// stopped, so a check leaves no peer behind. A private tracker's key goes in
// the URL path, udp://host:6969/announce/KEY, and is sent as BEP 41 URL data.
func (c Checker) CheckUDP(ctx context.Context, target string) Result {
	res := c.checkTracker(ctx, KindUDP, NormalizeUDP(target))
	// As the operator wrote it, to match the configuration, but without a
	// private tracker's key (udp://host:port/announce/KEY).
	res.URL = trackerclient.RedactURL(target)
	return res
}

// CheckHTTP announces the check torrent, scrapes it and announces stopped. A
// private tracker's key goes in the URL path: http://host:7070/announce/KEY.
func (c Checker) CheckHTTP(ctx context.Context, target string) Result {
	res := c.checkTracker(ctx, KindHTTP, target)
	res.URL = trackerclient.RedactURL(target) // results end up in cron and CI logs
	return res
}

func (c Checker) checkTracker(ctx context.Context, kind, target string) Result {
	res := Result{URL: target, Kind: kind}
	client, err := trackerclient.New(target, trackerclient.Options{Timeout: c.timeout(), Family: c.Family, Insecure: c.Insecure})
	if err == nil && kind == KindUDP && client.Protocol() != "udp" {
		err = fmt.Errorf("%s is not a udp:// URL", target)
	}
	if err == nil && kind == KindHTTP && client.Protocol() == "udp" {
		err = fmt.Errorf("%s is not an http:// or https:// URL", trackerclient.RedactURL(target))
	}
	if err != nil {
		res.Status = Status{CodeError, err.Error()}
		return res
	}
	defer client.Close()

	ih, _ := bittorrent.ParseInfoHash(CheckInfoHash)
	a := trackerclient.Announce{InfoHash: ih, PeerID: newPeerID(), Port: checkPort, Event: bittorrent.EventStarted, NumWant: -1}
	started := time.Now()
	step := func(name string, f func() (string, error)) bool {
		msg, err := f()
		if err != nil {
			res.Steps = append(res.Steps, Step{name, Status{CodeError, err.Error()}})
			res.Status = Status{CodeError, name + " failed: " + err.Error()}
			return false
		}
		res.Steps = append(res.Steps, Step{name, Status{CodeOK, msg}})
		return true
	}
	if kind == KindUDP && !step("connect", func() (string, error) { return "connection id received", client.Connect(ctx) }) {
		return res
	}
	if !step("announce", func() (string, error) {
		r, err := client.Announce(ctx, a)
		return fmt.Sprintf("interval %d s, %d seeders, %d leechers, %d peers", r.Interval, r.Seeders, r.Leechers, len(r.Peers)), err
	}) {
		return res
	}
	if !step("scrape", func() (string, error) {
		fs, err := client.Scrape(ctx, []bittorrent.InfoHash{ih})
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%d seeders, %d completed, %d leechers", fs[0].Seeders, fs[0].Completed, fs[0].Leechers), nil
	}) {
		return res
	}
	a.Event = bittorrent.EventStopped
	if !step("stop", func() (string, error) { _, err := client.Announce(ctx, a); return "peer removed", err }) {
		return res
	}
	res.Status = Status{CodeOK, fmt.Sprintf("answered in %s", time.Since(started).Round(10*time.Microsecond))}
	return res
}

// newPeerID is a random peer id in Azureus style, so every check is a new
// peer and two checkers never collide.
func newPeerID() bittorrent.PeerID {
	const alnum = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	var id bittorrent.PeerID
	copy(id[:], "-ST0001-")
	var r [12]byte
	_, _ = rand.Read(r[:])
	for i, b := range r {
		id[8+i] = alnum[int(b)%len(alnum)]
	}
	return id
}

// maxHealthBody bounds the health answer; Starling's is a few hundred bytes.
const maxHealthBody = 1 << 20

// CheckHealth GETs url and expects 200 with a JSON body whose "status" is
// "Ok" (Torrust's health-check API and /api/health_check both answer so).
func (c Checker) CheckHealth(ctx context.Context, url string) Result {
	res := Result{URL: url, Kind: KindHealth}
	msg, err := c.getHealth(ctx, url)
	if err != nil {
		res.Status = Status{CodeError, err.Error()}
	} else {
		res.Status = Status{CodeOK, msg}
	}
	return res
}

func (c Checker) getHealth(ctx context.Context, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", fmt.Errorf("health check URL %q: %w", url, err)
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	if c.Insecure {
		if transport.TLSClientConfig == nil {
			transport.TLSClientConfig = &tls.Config{}
		}
		transport.TLSClientConfig.InsecureSkipVerify = true // #nosec G402 -- operator's --insecure
	}
	defer transport.CloseIdleConnections()
	resp, err := (&http.Client{Transport: transport}).Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return "", fmt.Errorf("GET %s: no answer within %s", url, c.timeout())
		}
		return "", fmt.Errorf("GET %s: %w", url, errors.Unwrap(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxHealthBody))
	if err != nil {
		return "", fmt.Errorf("GET %s: reading the answer: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: status %s, want 200 OK: %s", url, resp.Status, snippet(body))
	}
	return healthStatus(body)
}

// healthStatus reads {"status":"Ok", ...}; for another status it reports the
// failing services from Starling's and Torrust's "details" list.
func healthStatus(body []byte) (string, error) {
	var h struct {
		Status  string          `json:"status"`
		Message string          `json:"message"`
		Details json.RawMessage `json:"details"`
	}
	if err := json.Unmarshal(body, &h); err != nil {
		return "", fmt.Errorf("answer is not health-check JSON: %s", snippet(body))
	}
	if h.Status != "Ok" {
		msg := fmt.Sprintf("status %q, want \"Ok\"", h.Status)
		if h.Message != "" {
			msg += ": " + h.Message
		}
		if len(h.Details) > 0 && string(h.Details) != "null" && string(h.Details) != "[]" {
			msg += "; details: " + snippet(h.Details)
		}
		return "", errors.New(msg)
	}
	return "200 OK, status Ok", nil
}

func snippet(b []byte) string {
	const max = 300
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > max {
		s = s[:max] + "…"
	}
	return s
}
