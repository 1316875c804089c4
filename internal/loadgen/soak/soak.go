// Package soak runs a long, mixed, churning load against a running tracker
// (UDP and HTTP announces and scrapes, peers joining, completing, stopping
// and vanishing, API reads and writes, bursts of random hashes) and samples
// the tracker's own figures (RSS, heap, goroutines, open files, peers,
// torrents) from its API, to show that nothing grows while it serves.
package soak

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/trackerclient"
)

// Config is one soak run.
type Config struct {
	UDP, HTTP string // tracker URLs: udp://host:port, http://host:port
	API       string // http://host:port of the REST API
	Token     string // an admin token
	Duration  time.Duration
	Rate      int           // requests per second, all kinds together
	Workers   int           // requests in flight at most
	Torrents  int           // the population's torrents
	Swarm     int           // peers per torrent at most
	Report    time.Duration // how often a line is printed (and figures sampled)
	Timeout   time.Duration // per request
	Seed      uint64
	Out       io.Writer
}

func (c *Config) defaults() {
	if c.Workers <= 0 {
		c.Workers = 64
	}
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Second
	}
	if c.Report <= 0 {
		c.Report = time.Minute
	}
	if c.Swarm <= 0 {
		c.Swarm = 20
	}
	if c.Out == nil {
		c.Out = io.Discard
	}
}

// Sample is one report line: what was answered in the interval and the
// tracker's figures at its end.
type Sample struct {
	At                    time.Duration
	Answered, Errors      int64
	P50, P99              time.Duration
	RSS, Heap             float64 // bytes
	Goroutines, OpenFiles float64
	Peers, Torrents       float64
	FirstError            string
}

// Result is the whole run and its verdict.
type Result struct {
	Samples  []Sample
	Answered int64
	Errors   int64
	// RSSGrowth is the RSS at the end over the RSS at the half of the run,
	// minus one.
	RSSGrowth float64
	Verdict   string
	OK        bool
}

// op kinds and their share of the requests, in thousandths.
var mix = []struct {
	kind  string
	share int
}{
	{"udp announce", 600}, {"udp scrape", 100}, {"http announce", 150}, {"http scrape", 50},
	{"api read", 50}, {"api write", 20}, {"random burst", 30},
}

type runner struct {
	cfg   Config
	httpc *http.Client
	// peers: joined[t*Swarm+i] says whether peer i of torrent t is in.
	mu     sync.Mutex
	joined []bool
	// the current interval's counts and latencies
	answered, errs atomic.Int64
	latMu          sync.Mutex
	lat            []time.Duration
	firstErr       atomic.Pointer[string]
	clients        sync.Pool
}

// Run soaks the tracker for cfg.Duration and returns the samples and the
// verdict.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg.defaults()
	if cfg.Duration <= 0 || cfg.Rate <= 0 || cfg.Torrents <= 0 {
		return nil, errors.New("soak: duration, rate and torrents must be positive")
	}
	r := &runner{cfg: cfg, httpc: &http.Client{Timeout: cfg.Timeout}, joined: make([]bool, cfg.Torrents*cfg.Swarm)}
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()

	tokens := make(chan struct{}, cfg.Workers)
	var wg sync.WaitGroup
	for w := range cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.worker(ctx, tokens, cfg.Seed+uint64(w)*0x9e3779b97f4a7c15)
		}()
	}
	// Tokens every 10 ms; a token the workers cannot take is dropped (the
	// rate is then what the tracker and the workers manage).
	go func() {
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		var carry float64
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				carry += float64(cfg.Rate) / 100
				for ; carry >= 1; carry-- {
					select {
					case tokens <- struct{}{}:
					default:
					}
				}
			}
		}
	}()

	res := &Result{}
	began := time.Now()
	fmt.Fprintf(cfg.Out, "%8s %10s %7s %9s %9s %9s %9s %6s %6s %9s %9s\n",
		"time", "answered", "errors", "p50", "p99", "RSS MiB", "heap MiB", "gorout", "files", "peers", "torrents")
	tick := time.NewTicker(cfg.Report)
	defer tick.Stop()
	done := false
	last := time.Duration(0)
	for !done {
		select {
		case <-ctx.Done():
			done = true
		case <-tick.C:
		}
		at := time.Since(began)
		if done && at-last < cfg.Report/2 {
			break // the last tick was the end
		}
		last = at
		s := r.sample(at)
		res.Samples = append(res.Samples, s)
		res.Answered += s.Answered
		res.Errors += s.Errors
		fmt.Fprintf(cfg.Out, "%8s %10d %7d %9s %9s %9.1f %9.1f %6.0f %6.0f %9.0f %9.0f\n",
			s.At.Round(time.Second), s.Answered, s.Errors, s.P50.Round(time.Microsecond), s.P99.Round(time.Microsecond),
			s.RSS/(1<<20), s.Heap/(1<<20), s.Goroutines, s.OpenFiles, s.Peers, s.Torrents)
		if s.FirstError != "" {
			fmt.Fprintf(cfg.Out, "         first error: %s\n", s.FirstError)
		}
	}
	wg.Wait()
	res.judge()
	fmt.Fprintln(cfg.Out, res.Verdict)
	return res, nil
}

// judge compares the second half's end with its start.
func (res *Result) judge() {
	ss := res.Samples
	if len(ss) < 2 {
		res.Verdict = "verdict: FAIL (too short to judge: fewer than two samples)"
		return
	}
	mid, end := ss[(len(ss)-1)/2], ss[len(ss)-1]
	var problems []string
	if res.Errors > 0 {
		problems = append(problems, fmt.Sprintf("%d errors", res.Errors))
	}
	if res.Answered == 0 {
		problems = append(problems, "nothing answered")
	}
	if mid.RSS > 0 {
		res.RSSGrowth = end.RSS/mid.RSS - 1
	}
	if res.RSSGrowth >= 0.05 {
		problems = append(problems, fmt.Sprintf("RSS grew %.1f %% over the second half", 100*res.RSSGrowth))
	}
	// Requests in flight hold a few goroutines and connections: a little
	// slack, not growth.
	if end.Goroutines > mid.Goroutines*1.1+10 {
		problems = append(problems, fmt.Sprintf("goroutines grew from %.0f to %.0f", mid.Goroutines, end.Goroutines))
	}
	if end.OpenFiles > mid.OpenFiles+16 {
		problems = append(problems, fmt.Sprintf("open files grew from %.0f to %.0f", mid.OpenFiles, end.OpenFiles))
	}
	line := fmt.Sprintf("answered %d, errors %d; second half (from %v): RSS %+.1f %% (%.1f → %.1f MiB), goroutines %.0f → %.0f, open files %.0f → %.0f",
		res.Answered, res.Errors, mid.At.Round(time.Second), 100*res.RSSGrowth, mid.RSS/(1<<20), end.RSS/(1<<20),
		mid.Goroutines, end.Goroutines, mid.OpenFiles, end.OpenFiles)
	if len(problems) > 0 {
		res.Verdict = "verdict: FAIL: " + strings.Join(problems, "; ") + "\n" + line
		return
	}
	res.OK = true
	res.Verdict = "verdict: OK\n" + line
}

func (r *runner) worker(ctx context.Context, tokens <-chan struct{}, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, seed^0xda3e39cb94b95bdb))
	udp, err := trackerclient.New(r.cfg.UDP, trackerclient.Options{Timeout: r.cfg.Timeout})
	if err != nil {
		r.fail(err)
		return
	}
	defer udp.Close()
	httpt, err := trackerclient.New(r.cfg.HTTP, trackerclient.Options{Timeout: r.cfg.Timeout})
	if err != nil {
		r.fail(err)
		return
	}
	defer httpt.Close()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tokens:
		}
		k := rng.IntN(1000)
		kind := ""
		for _, m := range mix {
			if k < m.share {
				kind = m.kind
				break
			}
			k -= m.share
		}
		began := time.Now()
		err := r.do(ctx, rng, kind, udp, httpt)
		// The run ended under this request: not the tracker's fault. By
		// the clock, not only ctx.Err(): the UDP client gives up at the
		// deadline itself, which can be before ctx's timer has fired
		// (CI counted one such request as an error).
		if end, ok := ctx.Deadline(); ctx.Err() != nil || ok && !time.Now().Before(end) {
			return
		}
		if err != nil {
			r.fail(fmt.Errorf("%s: %w", kind, err))
			continue
		}
		r.answered.Add(1)
		d := time.Since(began)
		r.latMu.Lock()
		r.lat = append(r.lat, d)
		r.latMu.Unlock()
	}
}

func (r *runner) fail(err error) {
	r.errs.Add(1)
	s := err.Error()
	r.firstErr.CompareAndSwap(nil, &s)
}

func hashOf(t int) bittorrent.InfoHash {
	var h bittorrent.InfoHash
	binary.BigEndian.PutUint64(h[:], uint64(t)*0x9e3779b97f4a7c15)
	binary.BigEndian.PutUint64(h[8:], uint64(t))
	h[19] = 0x50
	return h
}

// next moves a random peer of the population one step: a peer out joins;
// one in announces, completes, stops or vanishes (never comes back
// without a stop, as real clients do).
func (r *runner) next(rng *rand.Rand) trackerclient.Announce {
	t, i := rng.IntN(r.cfg.Torrents), rng.IntN(r.cfg.Swarm)
	a := trackerclient.Announce{InfoHash: hashOf(t), Port: uint16(10000 + i), NumWant: 30, Left: int64(rng.IntN(3)) * 1000}
	binary.BigEndian.PutUint32(a.PeerID[:], uint32(t))
	binary.BigEndian.PutUint32(a.PeerID[4:], uint32(i))
	r.mu.Lock()
	in := r.joined[t*r.cfg.Swarm+i]
	switch p := rng.IntN(100); {
	case !in:
		a.Event = bittorrent.EventStarted
		r.joined[t*r.cfg.Swarm+i] = true
	case p < 70:
	case p < 80:
		a.Event, a.Left = bittorrent.EventCompleted, 0
	case p < 90:
		a.Event = bittorrent.EventStopped
		r.joined[t*r.cfg.Swarm+i] = false
	default:
		// Vanishes: forgotten here, left to expire there.
		r.joined[t*r.cfg.Swarm+i] = false
	}
	r.mu.Unlock()
	return a
}

func (r *runner) do(ctx context.Context, rng *rand.Rand, kind string, udp, httpt *trackerclient.Client) error {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	scrape := func(c *trackerclient.Client) error {
		hs := make([]bittorrent.InfoHash, 1+rng.IntN(10))
		for k := range hs {
			hs[k] = hashOf(rng.IntN(r.cfg.Torrents))
		}
		_, err := c.Scrape(ctx, hs)
		return err
	}
	switch kind {
	case "udp announce":
		_, err := udp.Announce(ctx, r.next(rng))
		return err
	case "http announce":
		_, err := httpt.Announce(ctx, r.next(rng))
		return err
	case "udp scrape":
		return scrape(udp)
	case "http scrape":
		return scrape(httpt)
	case "api read":
		paths := []string{"/api/v1/stats", "/api/v1/torrents?limit=20&offset=" + fmt.Sprint(rng.IntN(r.cfg.Torrents)),
			"/api/v1/torrent/" + hashOf(rng.IntN(r.cfg.Torrents)).String()}
		return r.api(ctx, http.MethodGet, paths[rng.IntN(len(paths))])
	case "api write":
		h := hashOf(r.cfg.Torrents + rng.IntN(1000)).String()
		if err := r.api(ctx, http.MethodPost, "/api/v1/whitelist/"+h); err != nil {
			return err
		}
		return r.api(ctx, http.MethodDelete, "/api/v1/whitelist/"+h)
	case "random burst":
		// Hashes never seen again: the kind of flood a tracker must forget.
		for range 10 {
			var a trackerclient.Announce
			for k := range a.InfoHash {
				a.InfoHash[k] = byte(rng.Uint32())
			}
			a.PeerID[0], a.Port, a.Left, a.Event, a.NumWant = 1, uint16(20000+rng.IntN(1000)), 1, bittorrent.EventStarted, 5
			if _, err := udp.Announce(ctx, a); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("unknown kind %q", kind)
}

func (r *runner) api(ctx context.Context, method, path string) error {
	req, err := http.NewRequestWithContext(ctx, method, r.cfg.API+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+r.cfg.Token)
	resp, err := r.httpc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: status %d", method, path, resp.StatusCode)
	}
	return nil
}

// sample takes the interval's counts and latencies and the tracker's
// figures now.
func (r *runner) sample(at time.Duration) Sample {
	s := Sample{At: at, Answered: r.answered.Swap(0), Errors: r.errs.Swap(0)}
	if p := r.firstErr.Swap(nil); p != nil {
		s.FirstError = *p
	}
	r.latMu.Lock()
	lat := r.lat
	r.lat = nil
	r.latMu.Unlock()
	if len(lat) > 0 {
		slices.Sort(lat)
		s.P50, s.P99 = lat[len(lat)/2], lat[len(lat)*99/100]
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.Timeout)
	defer cancel()
	if m, err := r.metrics(ctx); err == nil {
		s.RSS, s.Heap = m["process_resident_memory_bytes"], m["go_memstats_heap_inuse_bytes"]
		s.Goroutines, s.OpenFiles = m["go_goroutines"], m["process_open_fds"]
		s.Torrents = m["starling_torrents"]
		s.Peers = m["starling_peers"]
	} else if s.FirstError == "" {
		s.FirstError = "reading the tracker's metrics: " + err.Error()
	}
	return s
}

// metrics reads the API's /metrics (text format) into name → value,
// adding up a metric's labelled series.
func (r *runner) metrics(ctx context.Context) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.cfg.API+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+r.cfg.Token)
	req.Header.Set("Accept", "text/plain")
	resp, err := r.httpc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics: status %d", resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, err
	}
	return parseMetrics(string(b)), nil
}

// parseMetrics sums each metric's series in Prometheus's text format.
func parseMetrics(text string) map[string]float64 {
	out := map[string]float64{}
	for _, line := range strings.Split(text, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest, ok := strings.Cut(line, " ")
		if i := strings.IndexByte(name, '{'); i >= 0 {
			name = name[:i]
			if j := strings.LastIndexByte(line, '}'); j >= 0 {
				rest, ok = strings.TrimSpace(line[j+1:]), true
			}
		}
		if !ok {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(strings.Fields(rest)[0], &v); err == nil {
			out[name] += v
		}
	}
	return out
}
