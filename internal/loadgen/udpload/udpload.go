// Package udpload is a load generator for UDP trackers (BEP 15) and a
// matching echo server. The generator simulates many clients: each socket
// connects, then keeps a window of announces and scrapes in flight over a
// configurable set of torrents and peers, with uniform or Zipf-skewed
// torrent popularity (like aquatic's load tester). The echo server answers
// every datagram with a fixed reply through the same batched I/O, so a run
// against it measures the network stack's ceiling on the same machine.
package udpload

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/starling-tracker/starling/internal/udptracker/batch"
)

const (
	protocolID     = 0x41727101980
	actionConnect  = 0
	actionAnnounce = 1
	actionScrape   = 2
	actionError    = 3
	batchSize      = 64
	// reconnectEvery renews connection ids well inside the usual 120 s.
	reconnectEvery = 60 * time.Second
)

// Config describes a run.
type Config struct {
	// Addr is the tracker, host:port, or several trackers separated by
	// commas (the nodes of one cluster): socket i then talks to target
	// i mod len(targets), so the sockets, and the peers each announces for,
	// are spread round-robin over the targets and the run reports the
	// total and each target's share.
	Addr string
	// Warmup runs before counting starts; Duration is the measured time.
	Warmup, Duration time.Duration
	// Requests, when not 0, ends the measured window as soon as at least
	// that many requests were sent in it and as many answers or timeouts
	// came back: exactly that many without a warm-up; with one, up to a
	// batch per socket more, and answers to requests sent before the
	// window count in it. Duration still bounds it.
	Requests uint64
	// Torrents and Peers size the simulated population.
	Torrents, Peers int
	// NumWant is sent in every announce.
	NumWant int32
	// ScrapeShare is the fraction of requests that are scrapes (0..1), each
	// of ScrapeHashes hashes.
	ScrapeShare  float64
	ScrapeHashes int
	// SeederShare is the fraction of peers that announce left = 0.
	SeederShare float64
	// Skew is the Zipf exponent of torrent popularity; 0 means uniform.
	// Values above 1 make a few torrents take most announces (1.3: the top
	// torrent gets about a quarter, the top ten about 60%).
	Skew float64
	// Sockets is the number of client sockets, each with its own goroutine.
	Sockets int
	// SourceIPs spreads the sockets over 127.0.0.1 .. 127.0.0.N (IPv4
	// targets only), so the kernel spreads them over the server's
	// SO_REUSEPORT sockets and the tracker sees several client IPs.
	SourceIPs int
	// Window is the number of requests kept in flight per socket.
	Window int
	// Timeout is how long a socket waits for an answer before it counts
	// its in-flight requests as lost and refills the window.
	Timeout time.Duration
	// ServerPID, when set, is read from /proc to report the server's CPU
	// time during the measured window.
	ServerPID int
	// Seed makes runs repeatable.
	Seed uint64
	// GSO sends each batch of requests with UDP segmentation offload
	// (Linux; see gsoSender), so the generator spends less per request
	// than the server it measures. Without it, or where the kernel
	// refuses it, requests go one datagram each through sendmmsg.
	GSO bool
	// Batch sends and receives whole batches (sendmmsg or GSO, recvmmsg):
	// a socket sends up to a batch, then reads what came back, and sends
	// again once a batch's room is free in its window. Without it each
	// socket is a plain client: one datagram per send (write) and per
	// receive (read) system call, the window refilled with one request per
	// answer, so exactly Window requests are in flight; GSO is then off.
	Batch bool
	// RecvBatch, for a plain client (Batch off, no Rate), reads the answers
	// with recvmmsg, all that have arrived (up to a batch) in one system
	// call, while each request still goes in a write of its own and each
	// answer still frees one, and each socket yields to the others
	// before it reads again (see runPlain). What the tracker sees is a
	// plain client's traffic; the generator spends less per request, so
	// that on one core it can keep ahead of the server it measures.
	RecvBatch bool
	// Rate, when above 0, paces the run at this many requests per second
	// over all sockets: each socket sends one datagram at a time, evenly
	// spaced (one every Sockets/Rate seconds, the sockets' starts
	// staggered), and reads the answers as they come; Window then caps the
	// requests in flight per socket, and a send that finds it full is
	// skipped and counted (Counts.Skipped). A request not answered within
	// Timeout is lost. Batch does not apply.
	Rate float64
	// Poisson, with Rate, sends each socket's requests at the times of a
	// Poisson process (exponential gaps of the same mean) instead of
	// evenly spaced: as many independent clients' requests arrive, and so
	// that two runs side by side do not keep one phase to each other.
	Poisson bool
	// Walk makes each socket announce each of its peers once, in order,
	// and stop: the run ends when every socket has had its answers, so a
	// tracker is loaded with the whole population exactly once (announces
	// only, no warm-up; Duration still bounds it).
	Walk bool
	// SlowLog, when set, receives a line "SENT LATENCY" (unix
	// microseconds, microseconds) for each timed answer slower than
	// SlowOver (default 300 µs); see slowLog.
	SlowLog  io.Writer
	SlowOver time.Duration
	// Burst, when set, makes RunBurst queue this many announces per burst
	// while the server (ServerPID) is paused, Bursts times (see burst.go).
	Burst, Bursts int
}

// DefaultConfig is a 10 s uniform announce-only run.
func DefaultConfig() Config {
	return Config{
		Addr: "127.0.0.1:6969", Warmup: 2 * time.Second, Duration: 10 * time.Second,
		Torrents: 10_000, Peers: 200_000, NumWant: 30, ScrapeHashes: 10,
		SeederShare: 0.5, Sockets: 4, SourceIPs: 4, Window: 512, Timeout: 200 * time.Millisecond, Seed: 1,
		GSO: true, Batch: true,
	}
}

// Profile applies a named profile: "uniform" (10,000 torrents, 200,000
// peers) or "skewed" (1,000,000 torrents, 2,000,000 peers, Zipf 1.3).
func (c *Config) Profile(name string) error {
	switch name {
	case "uniform":
		c.Torrents, c.Peers, c.Skew = 10_000, 200_000, 0
	case "skewed":
		c.Torrents, c.Peers, c.Skew = 1_000_000, 2_000_000, 1.3
	default:
		return fmt.Errorf("unknown profile %q: use uniform or skewed", name)
	}
	return nil
}

// Counts are what a run saw.
type Counts struct {
	Sent      uint64 // requests sent (without connects)
	Received  uint64 // answers received (without connect answers)
	Announces uint64 // announce answers
	Scrapes   uint64 // scrape answers
	Errors    uint64 // error answers (action 3)
	Bad       uint64 // answers that are too short or of an unknown action
	Lost      uint64 // requests given up after Timeout
	Connects  uint64 // connect round trips done
	Skipped   uint64 // with Config.Rate, sends skipped because the window was full
}

func (c *Counts) sub(o Counts) Counts {
	return Counts{c.Sent - o.Sent, c.Received - o.Received, c.Announces - o.Announces, c.Scrapes - o.Scrapes,
		c.Errors - o.Errors, c.Bad - o.Bad, c.Lost - o.Lost, c.Connects - o.Connects, c.Skipped - o.Skipped}
}

func (c *Counts) add(o Counts) Counts {
	return Counts{c.Sent + o.Sent, c.Received + o.Received, c.Announces + o.Announces, c.Scrapes + o.Scrapes,
		c.Errors + o.Errors, c.Bad + o.Bad, c.Lost + o.Lost, c.Connects + o.Connects, c.Skipped + o.Skipped}
}

// Targets is Addr split at its commas, without blanks.
func (c *Config) Targets() []string {
	var out []string
	for _, a := range strings.Split(c.Addr, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// TargetCounts is one target's part of a run with several.
type TargetCounts struct {
	Addr string
	Counts
	Latency Latency
}

// Result is the measured window.
type Result struct {
	Counts
	// Targets is each target's part of Counts, in Config.Addr's order,
	// when the run had more than one.
	Targets []TargetCounts
	Elapsed time.Duration
	// ServerCPU is the server's user+system CPU time in the window (when
	// Config.ServerPID was set); ServerUserCPU the user part of it, the
	// tracker's own code (the rest is the kernel's network stack).
	ServerCPU, ServerUserCPU time.Duration
	// LoadCPU is this generator's own CPU time in the window: near 100 %
	// of its cores means the generator, not the server, may be the limit.
	LoadCPU, LoadUserCPU time.Duration
	// ErrorSample is the text of one error answer, if any.
	ErrorSample string
	// Segmented says every socket sent its requests with UDP segmentation
	// offload (Config.GSO) to the end.
	Segmented bool
	// Batched says the sockets sent and received in batches (Config.Batch
	// without a Rate); Rate is the run's Config.Rate.
	Batched bool
	// RecvBatched says plain sockets read their answers with recvmmsg
	// (Config.RecvBatch).
	RecvBatched bool
	Rate        float64
	// Latency is the round trip of the requests sent in the window and
	// answered in it (answers given up on as lost are not timed).
	Latency Latency
}

// PerSecond is n per second of the measured window.
func (r Result) PerSecond(n uint64) float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(n) / r.Elapsed.Seconds()
}

// String is the summary a run prints.
func (r Result) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "measured:            %.1f s\n", r.Elapsed.Seconds())
	fmt.Fprintf(&b, "requests sent:       %d (%.0f/s)\n", r.Sent, r.PerSecond(r.Sent))
	fmt.Fprintf(&b, "responses received:  %d (%.0f/s)\n", r.Received, r.PerSecond(r.Received))
	fmt.Fprintf(&b, "  announce:          %d (%.0f/s)\n", r.Announces, r.PerSecond(r.Announces))
	fmt.Fprintf(&b, "  scrape:            %d (%.0f/s)\n", r.Scrapes, r.PerSecond(r.Scrapes))
	fmt.Fprintf(&b, "  error:             %d\n", r.Errors)
	fmt.Fprintf(&b, "  malformed:         %d\n", r.Bad)
	fmt.Fprintf(&b, "lost (timed out):    %d\n", r.Lost)
	if r.Rate > 0 {
		fmt.Fprintf(&b, "rate:                %.1f/s achieved of %.0f/s asked (%.2f%%), %d sends skipped (window full)\n",
			r.PerSecond(r.Sent), r.Rate, 100*r.PerSecond(r.Sent)/r.Rate, r.Skipped)
	}
	fmt.Fprintf(&b, "latency:             %s\n", r.Latency)
	if r.ErrorSample != "" {
		fmt.Fprintf(&b, "error sample:        %q\n", r.ErrorSample)
	}
	for _, t := range r.Targets {
		fmt.Fprintf(&b, "  to %-21s %d responses (%.0f/s), %d announces, %d errors, %d lost; latency p50 %s, p99 %s\n",
			t.Addr+":", t.Received, r.PerSecond(t.Received), t.Announces, t.Errors, t.Lost,
			fmtLatency(t.Latency.P50), fmtLatency(t.Latency.P99))
	}
	r.writeCPU(&b, "server CPU:         ", r.ServerCPU, r.ServerUserCPU)
	r.writeCPU(&b, "generator CPU:      ", r.LoadCPU, r.LoadUserCPU)
	switch {
	case r.Rate > 0:
		fmt.Fprintf(&b, "generator sends:     paced, one datagram per send and per receive (write/read), evenly spaced\n")
	case !r.Batched && r.RecvBatched:
		fmt.Fprintf(&b, "generator sends:     one datagram per send (write), answers read by recvmmsg, window refilled per answer\n")
	case !r.Batched:
		fmt.Fprintf(&b, "generator sends:     one datagram per send and per receive (write/read), window refilled per answer\n")
	case r.Segmented:
		fmt.Fprintf(&b, "generator sends:     segmented (UDP GSO), a batch per system call\n")
	default:
		fmt.Fprintf(&b, "generator sends:     one datagram each (sendmmsg), a batch per system call\n")
	}
	return b.String()
}

// writeCPU prints a process's CPU time in the window, per response and
// split into user and system time.
func (r Result) writeCPU(b *strings.Builder, label string, total, user time.Duration) {
	if total <= 0 || r.Received == 0 {
		return
	}
	per := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(r.Received) }
	fmt.Fprintf(b, "%s %.2f s (%.0f%% of one core), %.2f µs per response\n",
		label, total.Seconds(), 100*total.Seconds()/r.Elapsed.Seconds(), per(total))
	fmt.Fprintf(b, "  user / system:     %.2f / %.2f µs per response\n", per(user), per(total-user))
}

// stats are one socket's counters, written by its goroutine only. The
// answers received are the sum of the kinds, not a counter of their own,
// so that a reading taken while an answer is being counted still adds up.
type stats struct {
	sent, announces, scrapes, errors, bad, lost, connects, skipped atomic.Uint64
	_                                                              [64]byte
}

func (s *stats) load() Counts {
	a, sc, e, b := s.announces.Load(), s.scrapes.Load(), s.errors.Load(), s.bad.Load()
	return Counts{s.sent.Load(), a + sc + e + b, a, sc, e, b, s.lost.Load(), s.connects.Load(), s.skipped.Load()}
}

// Run drives the trackers at cfg.Addr for cfg.Warmup + cfg.Duration,
// prints progress to progress every second, and returns the measured
// window.
func Run(ctx context.Context, cfg Config, progress io.Writer) (Result, error) {
	if err := cfg.check(); err != nil {
		return Result{}, err
	}
	names := cfg.Targets()
	if len(names) == 0 {
		return Result{}, errors.New("no tracker address")
	}
	if len(names) > cfg.Sockets {
		return Result{}, fmt.Errorf("%d targets and %d sockets: use at least one socket per target", len(names), cfg.Sockets)
	}
	targets := make([]*net.UDPAddr, len(names))
	for i, a := range names {
		ua, err := net.ResolveUDPAddr("udp", a)
		if err != nil {
			return Result{}, fmt.Errorf("resolve %s: %w", a, err)
		}
		targets[i] = ua
	}
	// Each peer belongs to one torrent, drawn once from the popularity
	// distribution (as in aquatic's load tester): announces then update a
	// bounded population, as real clients do, instead of inventing a new
	// peer with every request.
	pop := newPopulation(&cfg)
	// budget is how many more requests the sockets may send: unbounded
	// until the measured window of a run with Requests starts.
	budget := new(atomic.Int64)
	budget.Store(math.MaxInt64)
	if cfg.Requests > 0 && cfg.Warmup <= 0 {
		budget.Store(int64(min(cfg.Requests, math.MaxInt64)))
	}
	// Answers are timed from the start without a warm-up, and until the
	// window closes.
	win := &window{epoch: time.Now()}
	if cfg.SlowLog != nil {
		win.slow = newSlowLog(cfg.SlowLog, cmp.Or(cfg.SlowOver, 300*time.Microsecond), win.epoch)
	}
	win.to.Store(math.MaxInt64)
	if cfg.Warmup > 0 {
		win.from.Store(math.MaxInt64)
	}
	clients := make([]*client, cfg.Sockets)
	for i := range clients {
		c, err := newClient(&cfg, i, names[i%len(names)], targets[i%len(targets)], pop, budget, win)
		if err != nil {
			for _, c := range clients[:i] {
				c.conn.Close()
			}
			return Result{}, err
		}
		clients[i] = c
	}
	// Every socket gets its connection id before the clock starts, so a
	// tracker that is not there fails the run instead of a quiet window.
	for _, c := range clients {
		if err := c.connect(ctx); err != nil {
			for _, c := range clients {
				c.conn.Close()
			}
			return Result{}, err
		}
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	// A paced run's first sends are due shortly after the sockets start.
	win.paced = win.now() + int64(time.Millisecond)
	var wg sync.WaitGroup
	errc := make(chan error, len(clients))
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.run(runCtx); err != nil {
				errc <- err
				stop()
			}
		}()
	}
	// A walk ends when every socket is done.
	var allDone chan struct{}
	if cfg.Walk {
		allDone = make(chan struct{})
		go func() {
			wg.Wait()
			close(allDone)
		}()
	}
	// Unblock the sockets' reads when the run ends.
	go func() {
		<-runCtx.Done()
		for _, c := range clients {
			_ = c.conn.SetDeadline(time.Unix(1, 0))
		}
	}()
	// total sums the sockets' counts, keeping each in per when not nil.
	total := func(per []Counts) Counts {
		var sum Counts
		for i, c := range clients {
			x := c.st.load()
			if per != nil {
				per[i] = x
			}
			sum = sum.add(x)
		}
		return sum
	}

	start := time.Now()
	measureAt := start.Add(cfg.Warmup)
	endAt := measureAt.Add(cfg.Duration)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	// With Requests, the window's counts are looked at every 10 ms.
	var poll <-chan time.Time
	if cfg.Requests > 0 {
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		poll = t.C
	}
	var base Counts
	// bases are each socket's counts when the window opened, for the
	// targets' shares.
	bases := make([]Counts, len(clients))
	var baseCPU, baseUser, baseLoad, baseLoadUser time.Duration
	var baseAt time.Time
	measuring := cfg.Warmup <= 0
	if measuring {
		baseAt = start
		baseCPU, baseUser, _ = processCPU(cfg.ServerPID)
		baseLoad, baseLoadUser, _ = processCPU(os.Getpid())
	}
	prev, prevAt := Counts{}, start
	var res Result
	var runErr error
	// finish takes the measured window's figures at now.
	finish := func(now time.Time) {
		win.to.Store(int64(now.Sub(win.epoch)))
		cur := make([]Counts, len(clients))
		c := total(cur)
		res.Counts = c.sub(base)
		res.Elapsed = now.Sub(baseAt)
		if len(targets) > 1 {
			res.Targets = make([]TargetCounts, len(targets))
			for i, a := range names {
				res.Targets[i].Addr = a
			}
			for i := range cur {
				t := &res.Targets[i%len(targets)]
				t.Counts = t.add(cur[i].sub(bases[i]))
			}
		}
		if cfg.ServerPID != 0 {
			cpu, user, err := processCPU(cfg.ServerPID)
			if err != nil {
				runErr = err
			}
			res.ServerCPU, res.ServerUserCPU = cpu-baseCPU, user-baseUser
		}
		if load, user, err := processCPU(os.Getpid()); err == nil {
			res.LoadCPU, res.LoadUserCPU = load-baseLoad, user-baseLoadUser
		}
	}
loop:
	for {
		wait := time.Until(endAt)
		if !measuring {
			wait = time.Until(measureAt)
		}
		timer := time.NewTimer(max(wait, 0))
		select {
		case <-runCtx.Done():
			timer.Stop()
			runErr = ctx.Err()
			select {
			case runErr = <-errc:
			default:
			}
			break loop
		case now := <-tick.C:
			timer.Stop()
			cur := total(nil)
			d := cur.sub(prev)
			secs := now.Sub(prevAt).Seconds()
			// Label the second by where it started.
			phase := "measure"
			if prevAt.Before(measureAt) && cfg.Warmup > 0 {
				phase = "warm-up"
			}
			fmt.Fprintf(progress, "%s %4.0fs  sent %8.0f/s  received %8.0f/s  announce %8.0f/s  scrape %7.0f/s  errors %d  lost %d\n",
				phase, now.Sub(start).Seconds(), float64(d.Sent)/secs, float64(d.Received)/secs,
				float64(d.Announces)/secs, float64(d.Scrapes)/secs, cur.Errors, cur.Lost)
			prev, prevAt = cur, now
		case <-allDone:
			timer.Stop()
			if runCtx.Err() != nil {
				allDone = nil
				continue // the error or the end is taken above
			}
			finish(time.Now())
			break loop
		case now := <-poll:
			timer.Stop()
			t := total(nil)
			if w := t.sub(base); measuring && w.Sent >= cfg.Requests && w.Received+w.Lost >= w.Sent {
				finish(now)
				break loop
			}
		case now := <-timer.C:
			if !measuring {
				measuring = true
				if cfg.Requests > 0 {
					budget.Store(0)
				}
				base, baseAt = total(bases), now
				win.from.Store(int64(now.Sub(win.epoch)))
				baseCPU, baseUser, _ = processCPU(cfg.ServerPID)
				baseLoad, baseLoadUser, _ = processCPU(os.Getpid())
				if cfg.Requests > 0 {
					// Sending stops for the snapshot, so only batches that a
					// socket took before it (at most one each) add to the
					// window's Requests.
					budget.Store(int64(min(cfg.Requests, math.MaxInt64)))
				}
				continue
			}
			finish(now)
			break loop
		}
	}
	stop()
	wg.Wait()
	select {
	case err := <-errc:
		if runErr == nil || errors.Is(runErr, context.Canceled) {
			runErr = err
		}
	default:
	}
	res.Segmented = true
	res.Batched = cfg.Batch && cfg.Rate <= 0
	res.RecvBatched = !res.Batched && cfg.Rate <= 0 && cfg.RecvBatch
	res.Rate = cfg.Rate
	var all histogram
	per := make([]histogram, len(targets))
	for i, c := range clients {
		all.merge(&c.hist)
		if len(targets) > 1 {
			per[i%len(targets)].merge(&c.hist)
		}
		res.Segmented = res.Segmented && c.gso != nil
		c.conn.Close()
		if res.ErrorSample == "" {
			if s, ok := c.errSample.Load().(string); ok {
				res.ErrorSample = s
			}
		}
	}
	res.Latency = all.latency()
	for i := range res.Targets {
		res.Targets[i].Latency = per[i].latency()
	}
	if runErr != nil && !errors.Is(runErr, context.Canceled) {
		return res, runErr
	}
	if res.Elapsed == 0 {
		return res, fmt.Errorf("load run stopped before the measured window ended: %w", context.Canceled)
	}
	return res, nil
}

func (c *Config) check() error {
	switch {
	case c.Torrents < 1 || c.Peers < 1:
		return errors.New("torrents and peers must be at least 1")
	case c.Sockets < 1 || c.Window < 1:
		return errors.New("sockets and window must be at least 1")
	case c.Duration <= 0:
		return errors.New("duration must be positive")
	case c.ScrapeShare < 0 || c.ScrapeShare > 1 || c.SeederShare < 0 || c.SeederShare > 1:
		return errors.New("scrape and seeder shares are fractions between 0 and 1")
	case c.Skew != 0 && c.Skew <= 1:
		return errors.New("skew is a Zipf exponent above 1 (or 0 for uniform)")
	case c.ScrapeHashes < 1 || c.ScrapeHashes > 74:
		return errors.New("scrape hashes must be between 1 and 74")
	case c.Warmup < 0 || c.Timeout < 0:
		return errors.New("warmup and timeout must not be negative")
	case c.SourceIPs < 0:
		return errors.New("source IPs must not be negative")
	case c.Burst < 0 || c.Bursts < 0:
		return errors.New("burst and bursts must not be negative")
	case c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0):
		return errors.New("rate must be a number of requests per second, or 0 for as fast as the window allows")
	case c.Walk && (c.Warmup > 0 || c.Requests > 0 || c.ScrapeShare > 0):
		return errors.New("a walk announces every peer once: no warm-up, request count or scrapes")
	}
	if c.Timeout <= 0 {
		c.Timeout = 200 * time.Millisecond
	}
	if c.SourceIPs < 1 {
		c.SourceIPs = 1
	}
	if !c.Batch || c.Rate > 0 {
		c.GSO = false // one datagram per send
	}
	return nil
}

// processCPU is the user+system CPU time of pid, and the user part of it,
// from /proc/<pid>/stat.
func processCPU(pid int) (total, user time.Duration, err error) {
	if pid == 0 {
		return 0, 0, nil
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, fmt.Errorf("read server CPU time: %w", err)
	}
	// Fields after the command name, which is in parentheses and may
	// contain spaces: state is field 3, utime 14, stime 15.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, errors.New("read server CPU time: unexpected /proc stat format")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, 0, errors.New("read server CPU time: unexpected /proc stat format")
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, errors.New("read server CPU time: unexpected /proc stat format")
	}
	// USER_HZ is 100 on every Linux ABI Go supports.
	return time.Duration(ut+st) * 10 * time.Millisecond, time.Duration(ut) * 10 * time.Millisecond, nil
}

// client is one socket and its share of the simulated clients.
type client struct {
	cfg       *Config
	addr      string // the target's host:port
	conn      *net.UDPConn
	bc        *batch.Conn
	st        stats
	rng       *rand.Rand
	torrent   func() uint64 // for scrapes
	pop       *population
	index     int // this socket's number: it announces for peers p with p % Sockets == index
	cid       uint64
	connected time.Time
	txid      uint32
	tx, rx    []batch.Message
	gso       *gsoSender // nil: sendmmsg
	errSample atomic.Value
	budget    *atomic.Int64 // shared by the sockets of a run (see Run)
	walked    uint64        // with Config.Walk, the peers announced so far
	win       *window       // the measured window, for the latency
	ring      inflightRing  // send times of the requests in flight
	hist      histogram     // round trips timed in the window
}

// population is the simulated peers: peerTorrent[p] is peer p's torrent.
type population struct {
	peerTorrent []uint32
}

func newPopulation(cfg *Config) *population {
	rng := rand.New(rand.NewPCG(cfg.Seed, 0xface))
	pick := torrentPicker(cfg, rng)
	p := &population{peerTorrent: make([]uint32, cfg.Peers)}
	for i := range p.peerTorrent {
		p.peerTorrent[i] = uint32(pick())
	}
	return p
}

// torrentPicker draws torrent indexes: uniform, or Zipf with exponent Skew
// so that torrent 0 is the most popular.
func torrentPicker(cfg *Config, rng *rand.Rand) func() uint64 {
	if cfg.Skew > 1 && cfg.Torrents > 1 {
		z := rand.NewZipf(rng, cfg.Skew, 1, uint64(cfg.Torrents-1))
		return z.Uint64
	}
	n := uint64(cfg.Torrents)
	return func() uint64 { return rng.Uint64N(n) }
}

func newClient(cfg *Config, i int, addr string, target *net.UDPAddr, pop *population, budget *atomic.Int64, win *window) (*client, error) {
	var local *net.UDPAddr
	if t4 := target.IP.To4(); t4 != nil && t4.IsLoopback() {
		local = &net.UDPAddr{IP: net.IPv4(127, 0, 0, byte(1+i%cfg.SourceIPs))}
	}
	conn, err := net.DialUDP("udp", local, target)
	if err != nil {
		return nil, fmt.Errorf("open client socket %d: %w", i, err)
	}
	_ = conn.SetReadBuffer(4 << 20)
	_ = conn.SetWriteBuffer(4 << 20)
	bc, err := batch.NewConn(conn, batchSize)
	if err != nil {
		conn.Close()
		return nil, err
	}
	c := &client{cfg: cfg, addr: addr, conn: conn, bc: bc, rng: rand.New(rand.NewPCG(cfg.Seed, uint64(i))), pop: pop, index: i,
		budget: budget, win: win, ring: newInflightRing(cfg.Window)}
	if cfg.GSO {
		c.gso, _ = newGSOSender(conn, batchSize) // nil without it: sendmmsg
	}
	c.torrent = torrentPicker(cfg, c.rng)
	c.tx = make([]batch.Message, batchSize)
	c.rx = make([]batch.Message, batchSize)
	for j := range c.tx {
		c.tx[j].Buf = make([]byte, 16+20*74)
		c.rx[j].Buf = make([]byte, 2048)
	}
	return c, nil
}

// connect gets a connection id, retrying lost packets.
func (c *client) connect(ctx context.Context) error {
	var req [16]byte
	binary.BigEndian.PutUint64(req[0:], protocolID)
	binary.BigEndian.PutUint32(req[8:], actionConnect)
	var buf [2048]byte
	for attempt := 0; ctx.Err() == nil; attempt++ {
		c.txid++
		binary.BigEndian.PutUint32(req[12:], c.txid|1<<31)
		if _, err := c.conn.Write(req[:]); err != nil {
			return fmt.Errorf("send connect: %w", err)
		}
		_ = c.conn.SetReadDeadline(time.Now().Add(time.Second))
		for {
			n, err := c.conn.Read(buf[:])
			if err != nil {
				if batch.IsTimeout(err) {
					break // resend
				}
				if errors.Is(err, syscall.ECONNREFUSED) && attempt < 9 {
					// Nothing bound there yet (a tracker still starting):
					// try again shortly.
					time.Sleep(100 * time.Millisecond)
					break
				}
				return fmt.Errorf("connect to %s: %w", c.addr, err)
			}
			if n >= 16 && binary.BigEndian.Uint32(buf[0:]) == actionConnect && string(buf[4:8]) == string(req[12:16]) {
				c.cid = binary.BigEndian.Uint64(buf[8:])
				c.connected = time.Now()
				c.st.connects.Add(1)
				return nil
			}
			// A late answer to an earlier request: ignore it.
		}
		if attempt == 9 {
			return fmt.Errorf("connect to %s: no answer after 10 tries (is the tracker running?)", c.addr)
		}
	}
	return ctx.Err()
}

// infoHash writes torrent t's hash, its leading bytes spread like a SHA-1's
// (trackers, Starling's store included, may shard by them).
func infoHash(b []byte, t uint64) {
	binary.BigEndian.PutUint64(b, (t+1)*0x9e3779b97f4a7c15)
	binary.BigEndian.PutUint64(b[8:], t)
	binary.BigEndian.PutUint32(b[16:], 0x5354524c) // "STRL"
}

// mine is how many peers this socket announces for: p with p % Sockets ==
// index.
func (c *client) mine() uint64 {
	if c.index >= c.cfg.Peers {
		return 0
	}
	socks := uint64(c.cfg.Sockets)
	return (uint64(c.cfg.Peers-c.index) + socks - 1) / socks
}

// fill writes one request into m.
func (c *client) fill(m *batch.Message) {
	c.txid++
	b := m.Buf
	binary.BigEndian.PutUint64(b[0:], c.cid)
	binary.BigEndian.PutUint32(b[12:], c.txid&^(1<<31))
	if c.cfg.ScrapeShare > 0 && c.rng.Float64() < c.cfg.ScrapeShare {
		binary.BigEndian.PutUint32(b[8:], actionScrape)
		for i := 0; i < c.cfg.ScrapeHashes; i++ {
			infoHash(b[16+20*i:], c.torrent())
		}
		m.N = 16 + 20*c.cfg.ScrapeHashes
		return
	}
	binary.BigEndian.PutUint32(b[8:], actionAnnounce)
	// A peer is always announced from the same socket (source address), so
	// the tracker, which tells peers apart by address and port, sees each
	// simulated peer as one peer.
	socks := uint64(c.cfg.Sockets)
	var p uint64
	if c.cfg.Walk {
		p = c.walked*socks + uint64(c.index)
		c.walked++
	} else if c.index < c.cfg.Peers {
		p = c.rng.Uint64N(c.mine())*socks + uint64(c.index)
	} else {
		p = c.rng.Uint64N(uint64(c.cfg.Peers)) // fewer peers than sockets
	}
	infoHash(b[16:], uint64(c.pop.peerTorrent[p]))
	binary.BigEndian.PutUint64(b[36:], p) // peer id
	copy(b[44:56], "-ST0001-load")
	binary.BigEndian.PutUint64(b[56:], 0) // downloaded
	left := uint64(1 << 20)
	if float64(p%1000)/1000 < c.cfg.SeederShare {
		left = 0
	}
	binary.BigEndian.PutUint64(b[64:], left)
	binary.BigEndian.PutUint64(b[72:], 0)                            // uploaded
	binary.BigEndian.PutUint32(b[80:], 0)                            // event none
	binary.BigEndian.PutUint32(b[84:], 0)                            // ip
	binary.BigEndian.PutUint32(b[88:], uint32(p))                    // key
	binary.BigEndian.PutUint32(b[92:], uint32(c.cfg.NumWant))        // num_want
	binary.BigEndian.PutUint16(b[96:], uint16(1024+(p/socks)%64000)) // port
	m.N = 98
}

// send sends msgs, segmented while the kernel takes it.
func (c *client) send(msgs []batch.Message) (int, error) {
	sent := 0
	if c.gso != nil {
		n, err := c.gso.Send(msgs)
		if !errors.Is(err, errNoGSO) {
			return n, err
		}
		c.gso = nil
		sent, msgs = n, msgs[n:]
	}
	n, err := c.bc.Send(msgs)
	return sent + n, err
}

// txOf is the transaction id of a request or an answer: bytes 12..16 of a
// request, 4..8 of an answer.
func txOf(b []byte) uint32 { return binary.BigEndian.Uint32(b) }

// track records request tx as sent at at, and returns how many requests
// in flight that gave up (0 or 1: see inflightRing.sent), counting them as
// lost.
func (c *client) track(tx uint32, at int64) int {
	if c.ring.sent(tx, at) {
		c.st.lost.Add(1)
		return 1
	}
	return 0
}

// answer takes an answer of n bytes in b, received at now: it counts it by
// kind and, when it answers a request in flight, releases the request and
// times its round trip if both ends fall in the measured window. It
// reports whether a request in flight was answered. from and to are the
// window (loaded once per batch of answers).
func (c *client) answer(b []byte, now, from, to int64) (matched bool, kind int) {
	if len(b) >= 8 {
		if at, ok := c.ring.answered(txOf(b[4:])); ok {
			matched = true
			if at >= from && now <= to {
				c.win.timed(&c.hist, at, now)
			}
		}
	}
	return matched, answerKind(b)
}

// Kinds of answers.
const (
	kindAnnounce = iota
	kindScrape
	kindError
	kindBad
)

func answerKind(b []byte) int {
	if len(b) < 8 {
		return kindBad
	}
	switch binary.BigEndian.Uint32(b) {
	case actionAnnounce:
		if len(b) < 20 {
			return kindBad
		}
		return kindAnnounce
	case actionScrape:
		return kindScrape
	case actionError:
		return kindError
	default:
		return kindBad
	}
}

// giveUp counts the requests in flight as lost: answers to them that come
// later are counted as received but not timed, and free no room.
func (c *client) giveUp(inflight *int) {
	c.st.lost.Add(uint64(*inflight))
	*inflight = 0
	c.ring.forget()
}

func (c *client) run(ctx context.Context) error {
	if c.cfg.Rate > 0 {
		return c.runPaced(ctx)
	}
	if !c.cfg.Batch {
		return c.runPlain(ctx)
	}
	return c.runBatched(ctx)
}

// runBatched sends whole batches (sendmmsg or GSO) and reads with recvmmsg.
func (c *client) runBatched(ctx context.Context) error {
	inflight := 0
	var armed time.Time // when the read deadline was last set
	for ctx.Err() == nil {
		if time.Since(c.connected) > reconnectEvery {
			c.giveUp(&inflight)
			if err := c.connect(ctx); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
		}
		// Send only whole batches (or whatever the window has room for when
		// it is nearly empty), so every sendmmsg carries many datagrams;
		// topping up one at a time would cost a system call per request.
		if c.cfg.Walk && c.walked >= c.mine() && inflight == 0 {
			return nil
		}
		if k := min(batchSize, c.cfg.Window-inflight); k >= min(batchSize, c.cfg.Window) || inflight == 0 {
			if c.cfg.Walk {
				k = min(k, int(c.mine()-c.walked))
			}
			// A run with a request count sends no more than its budget.
			if left := c.budget.Add(-int64(k)); left < 0 {
				k = max(k+int(max(left, -int64(k))), 0)
			}
			for i := 0; i < k; i++ {
				c.fill(&c.tx[i])
			}
			if k > 0 {
				at := c.win.now()
				n, err := c.send(c.tx[:k])
				for i := 0; i < n; i++ {
					inflight += 1 - c.track(txOf(c.tx[i].Buf[12:]), at)
				}
				c.st.sent.Add(uint64(n))
				if err != nil {
					if ctx.Err() != nil {
						return nil
					}
					return fmt.Errorf("send: %w", err)
				}
			}
		}
		// Re-arming the deadline costs more than a receive of a few
		// answers; moving it once a quarter of the timeout has passed
		// lets a silent server be noticed after 3/4 to 1 timeout.
		if now := time.Now(); now.Sub(armed) > c.cfg.Timeout/4 {
			_ = c.conn.SetReadDeadline(now.Add(c.cfg.Timeout))
			armed = now
		}
		n, err := c.bc.Recv(c.rx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if batch.IsTimeout(err) {
				c.giveUp(&inflight)
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			// ECONNREFUSED from an earlier datagram: the tracker is gone.
			return fmt.Errorf("receive from %s: %w", c.addr, err)
		}
		now, from, to := c.win.now(), c.win.from.Load(), c.win.to.Load()
		var kinds [4]uint64
		for i := 0; i < n; i++ {
			m := &c.rx[i]
			matched, kind := c.answer(m.Buf[:m.N], now, from, to)
			if matched {
				inflight--
			}
			kinds[kind]++
			if kind == kindError && c.errSample.Load() == nil {
				c.errSample.Store(string(m.Buf[8:m.N]))
			}
		}
		c.count(&kinds)
	}
	return nil
}

// count adds answers of the given kinds to the socket's counters.
func (c *client) count(kinds *[4]uint64) {
	if kinds[kindAnnounce] != 0 {
		c.st.announces.Add(kinds[kindAnnounce])
	}
	if kinds[kindScrape] != 0 {
		c.st.scrapes.Add(kinds[kindScrape])
	}
	if kinds[kindError] != 0 {
		c.st.errors.Add(kinds[kindError])
	}
	if kinds[kindBad] != 0 {
		c.st.bad.Add(kinds[kindBad])
	}
}

// Echo reply sizes: an empty announce answer, and the largest UDP payload
// of a 1500-byte IPv4 packet.
const (
	EchoReply    = 20
	MaxEchoReply = 1472
)

// Echo answers every datagram of at least 16 bytes (a header with a
// transaction id) on addr with a fixed reply until ctx ends:
// 16 bytes (a connect response) to a 16-byte connect, otherwise reply
// bytes (EchoReply: an empty announce response; more: an announce response
// with zeroed peers), echoing the transaction id so clients match answers.
// ready is called with the bound address.
func Echo(ctx context.Context, addr string, sockets, reply int, ready func(netip.AddrPort)) error {
	if reply < EchoReply || reply > MaxEchoReply {
		return fmt.Errorf("udp echo: a reply of %d bytes: use %d (an empty announce answer) to %d (a full 1500-byte packet)", reply, EchoReply, MaxEchoReply)
	}
	if sockets < 1 {
		return fmt.Errorf("udp echo: %d sockets: use at least 1", sockets)
	}
	conns, err := batch.ListenGroup(ctx, addr, sockets, false)
	if err != nil {
		return fmt.Errorf("udp echo: %w", err)
	}
	if ready != nil {
		ready(conns[0].LocalAddr().(*net.UDPAddr).AddrPort())
	}
	var wg sync.WaitGroup
	for _, uc := range conns {
		bc, err := batch.NewConn(uc, batchSize)
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			echoLoop(bc, reply)
		}()
	}
	<-ctx.Done()
	for _, uc := range conns {
		_ = uc.SetDeadline(time.Unix(1, 0))
	}
	wg.Wait()
	for _, uc := range conns {
		uc.Close()
	}
	return nil
}

func echoLoop(bc *batch.Conn, reply int) {
	rx := make([]batch.Message, batchSize)
	tx := make([]batch.Message, batchSize)
	for i := range rx {
		rx[i].Buf = make([]byte, 2048)
		tx[i].Buf = make([]byte, reply)
	}
	for {
		n, err := bc.Recv(rx)
		if err != nil {
			if batch.IsTimeout(err) || errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		out := 0
		for i := 0; i < n; i++ {
			m := &rx[i]
			if m.N < 16 {
				continue
			}
			t := &tx[out]
			clear(t.Buf[:20])
			copy(t.Buf[4:8], m.Buf[12:16])
			if m.N == 16 && binary.BigEndian.Uint32(m.Buf[8:]) == actionConnect {
				t.N = 16
			} else {
				t.Buf[3] = actionAnnounce
				t.N = reply
			}
			t.Addr, t.Scope = m.Addr, m.Scope
			out++
		}
		_, _ = bc.Send(tx[:out])
	}
}
