// Package redisswarm keeps the swarms in Redis (7.x, Valkey, Redis
// Cluster), so that several Starling nodes behind one address serve the
// same swarms. It implements swarm.Store and swarm.RelayCounter and runs
// the conformance suite in swarmtest.
//
// Each announce is one EVALSHA of a Lua script that updates the peer,
// counts, and draws the sample, atomically on Redis (a small swarm, kept
// packed in one string, is returned whole and the node draws from it):
// counts stay exact with any number of nodes, a completion counts once
// per peer, and the answer never holds the announcer. Every key a script touches carries its
// bucket's hash tag (the first bits of the info hash), so one announce is
// one Cluster slot. Redis's clock (TIME) is the only clock: Announce.Now is
// ignored (Config.AnnounceClock turns that around, for tests of one node).
// A node reads TIME twice a second and hands announces Redis's time as of
// that reading plus what its own monotonic clock says has passed, floored
// (see Store.redisNow), which spares the announce script a TIME call; until
// the first reading, and in the sweep, the scripts call TIME themselves.
//
// Redis is a dependency that fails: every call has a deadline, a breaker
// stops calling a Redis that keeps failing and probes it again after
// Config.BreakerOpen, and the calls in flight are bounded. While Redis
// cannot answer, announces and scrapes get ErrUnavailable, a client error
// ("swarm store unavailable, try later") that the transports send as a
// tracker error, and Health reports it.
package redisswarm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/swarm"
)

// Library: rueidis v1.0.80, kept over go-redis v9.23.0. Measured on this
// two-core machine (shared) against a local Redis 7.0.15, the announce
// script (1,000 swarms of 20, re-announces, numwant 30 compact) from 64
// goroutines through each client, two runs of 3 s:
//
//	rueidis   28.3 / 34.7 us per announce, 440 B and 2 allocations
//	go-redis  33.2 / 41.0 us per announce, 1,522 B and 37 allocations
//
// Redis's one thread is the bottleneck of both; rueidis pipelines the
// concurrent calls on one connection (fewer system calls on both sides)
// and allocates a twentieth as much. It also follows MOVED and ASK and
// keeps the Cluster's slot map itself.

// Layouts. A swarm of at most Config.PackMax peers (64) is one packed
// string (see packFormat in scripts.go): a re-announce there is GET,
// string.find and SETRANGE, and the node draws the sample from the
// string it gets back. Larger swarms live in sorted sets, whose draw
// reads only the sample (ZRANDMEMBER). bench-redis.sh, numwant 50, 8 Dec
// 2026 01:07 UTC, three rounds alternating the builds: Redis 8.0-8.8 us
// per announce packed against 17.5-19.0 in sorted sets (the layout
// below), 58,600-63,600 announces/s against 35,200-38,300; under churn
// (TestChurnProfile: a stop, a return and a completion in every ten
// announces) 11.5-11.9 us against 16.0-16.3; memory 29 against 39 bytes
// per IPv4 peer in swarms of 20 (BENCHMARKS.md, "Swarms on Redis").
// What follows measured the sorted sets alone, before the packed layout.
//
// Cost on Redis, issue 17's uniform profile (TestUniformProfile: 10,000
// torrents of 20 IPv4 peers, half seeders, then 100,000 compact
// re-announces at numwant 50 from 64 goroutines, on a private
// redis-server 7.0.15 with no persistence; two-core AMD EPYC VM, kernel
// 6.18, shared with a soak test and other builds; three runs each, old
// and new interleaved; ranges):
//
//	STARLING_TEST_REDIS_URL=redis://127.0.0.1:6379/0 STARLING_REDIS_PROFILE=1 \
//	  go test -run TestUniformProfile -v ./internal/swarm/redisswarm
//
//	                           Redis calls    EVALSHA usec_per_call   INFO cpu (user+sys)   bytes per peer
//	                           per announce   (INFO commandstats)     per announce          (INFO memory)
//	before (98ada46), detail      12.5           25.4-25.7 us            26.8-27.2 us           105.7
//	before, no detail             11.5           23.1-24.9 us            24.4-26.1 us            35.5
//	after, detail                  5.5           17.7-18.3 us            19.3-19.4 us           107.3
//	after, no detail (default)     4.5           16.3-17.5 us            17.5-18.6 us            37.1
//
// (announces answered from the 64 goroutines: 32,000-35,000/s before,
// 42,000-46,000/s after). Later, with the machine busier and the small
// arguments packed (59c21b6), two more runs each: before 25.4-27.4 us per
// EVALSHA, 26.3-28.5 us INFO cpu; after 18.5-22.8 us, 19.5-23.3 us. The
// machine's load moves these by a few us; the ratio holds (0.7-0.85).
//
// A re-announce now makes HGET (record), ZADD XX GT CH, one ZRANGE per
// list drawn from (1.5 on average), and HSET of the detail when kept;
// before 98ada46, also four ZCARDs, a ZSCORE, the relay HGET and an index
// ZADD, and before ffc2498 a TIME (the node now reckons Redis's clock from
// a reading twice a second, see redisNow). Where the rest goes, measured
// by elimination on the busy box (TestScriptVariants with
// STARLING_REDIS_LOOP=200: each variant run 200 times inside one EVAL,
// for 200 peers, Redis's user CPU per run, so the socket, the call's
// dispatch and Redis's turns off the core are not in it; the script of
// 758f3b7):
//
//	the loop itself                                 1.1 us
//	+ unpacking the arguments, defining draw        1.2 us
//	+ HGET and ZADD XX GT CH                        4.0 us  (about 2 us a call)
//	+ the record unpacked, the draw worked out      0.8 us
//	+ ZRANGE of the lists (1.5 calls)               3.2 us  (one member or ten: the same)
//	+ packing the peers and the reply table         1.4 us
//	                                               11.6 us  (the script before 758f3b7: 11.4-11.6
//	                                                         against 9.7-9.8 in an A/B run)
//
// and an EVALSHA of "return 1" with the same keys and arguments costs
// 4.5-5 us a call there (1.7 us on a quiet box). So each redis.call costs
// about 2 us, whatever it returns, and most of the rest is Lua building
// what it runs into: a closure about 0.07 us, a table 0.2 us (measured in
// a loop inside one EVAL), which is why the common case builds neither.
// perf on Redis in bench-redis.sh (tracker and Redis on one core) shows no
// single hot spot: dictFind and key comparisons (key lookups, missing
// the caches the tracker shares), the Lua VM, malloc and the sockets.
// In sorted sets issue 17's 10 us is not met: a re-announce needs its
// record (the counts) and the score written, and a draw reads one or two
// lists, so three or four calls of about 2 us are left plus the call
// itself; fewer take another layout: the packed string above.
// The record (28 bytes per torrent) costs 1.6 bytes per peer in swarms of
// 20; a counted peer's score takes 4 bytes more.
//
// Where Redis's time per announce goes in bench-redis.sh (numwant 50,
// Redis pinned, 7 Dec 2026 04:40-05:15 on a quieter box than the 27 us
// of the run before; 9f3471a): 17.3-19.4 us of INFO cpu per announce,
// of which EVALSHA's own time (commandstats) is 15.8-17.8, so reading the
// calls and writing the replies is about 1.5. Redis alone on the other
// core: 17.0 and 18.4 us, so sharing the core with the tracker costs it
// about 1 us at most. Fewer calls in flight (16 instead of 256) make
// smaller pipelines: 35 us. The flush delay (0 or 100 us) moves the
// node's time, not Redis's. The script's steps, one EVALSHA per announce
// from 64 goroutines on 1,000 swarms of 20, re-announces a second on
// (TestScriptVariants, STARLING_REDIS_BATCH=1, INFO cpu per announce):
// "return 1" with the announce's 9 keys and 4 arguments 5.3-5.8 us,
// unpacking them and defining draw 5.8-7.0, + HGET 6.7-7.2, + ZADD XX GT
// CH 9.9-13.5, + the draw (ZRANGE of one or two lists, packing, the
// reply) 17.0-17.5. The same script run 200 times on one swarm inside
// one EVAL takes 7.2 us a run: half the time is the announce meeting
// another swarm each time (its keys, lists and Lua strings cold), not
// the script's instructions.
//
// One EVALSHA per UDP batch (a wrapper running this script for each
// announce of the batch, standalone Redis only) was measured and not
// built: 16 announces a call 12.8-13.1 us per announce, 64 a call 12.8,
// against 16.9-17.1 one a call (STARLING_REDIS_BATCH=16 and 64, the same
// run). It saves the call's dispatch and its arguments' setup, about a
// quarter, but not the script's own work, which dominates, so 10 us is
// out of reach that way too; and it needs the tracker's rules split
// around the store call (to gather a batch's announces), a second path
// for Cluster, where a batch spans slots, and one Lua error failing a
// whole batch. The node is at 10-15x chihaya without it. Later (7 Dec
// 2026, 22:15) it was built as a group commit inside the store (the
// announces waiting on Redis sent as one call, no change to the tracker)
// and measured in bench-redis.sh: 12.8 announces a call, and Redis's
// time per announce within the spread of one call each (18.1-19.1 us
// against 18.2-19.4). In that load the script's work on cold swarms
// dominates; not kept. A symbol build's profile of Redis and the layouts
// that could reach 10 us (a small swarm as one packed string) are in
// BENCHMARKS.md, "Swarms on Redis".
//
// Memory of other layouts, the same 10,000 swarms of 20 written by a Lua
// loop into an empty Redis: address members only 35 B per peer; the
// 20-byte peer_id in the member (address + id) 57 B; the id in a hash
// beside the sorted set 72 B. No layout that keeps the id meets 40 B,
// hence redis_peer_detail defaults to off.

// epoch is subtracted from unix seconds in scores, so that they stay
// below 2^31 for decades and Redis stores them as small integers.
const epoch = 1_700_000_000

const (
	// goneMax bounds a swarm's memory of completed peers that left, and
	// goneTTL forgets it a day after its last change.
	goneMax = 1024
	goneTTL = 86400
	// scanLimit is how many swarms one sweep call of a bucket lists.
	scanLimit = 256
)

// ErrUnavailable is the answer while Redis cannot be reached in time: a
// client error, so UDP and HTTP clients read it and back off.
var ErrUnavailable = &bittorrent.ClientError{Kind: bittorrent.KindTracker, Msg: "swarm store unavailable, try later"}

// Config says where the store lives and how it behaves when Redis fails.
type Config struct {
	// URL is redis://[user:password@]host:port[/db][?addr=host2:port2],
	// rediss:// (TLS) or unix:///path. A Cluster is found from any node.
	URL string
	// Prefix starts every key (default "starling:"); nodes that share
	// swarms use the same prefix, others another one.
	Prefix string
	// Options are the [core.tracker_policy] settings; every node sharing
	// a prefix must use the same ones. Limits are not applied: Redis's
	// maxmemory bounds the store.
	Options swarm.Options
	// BucketBits is how many leading bits of the info hash name a bucket
	// (default 12, 4096 buckets); fixed for the life of the data.
	BucketBits int
	// NoPeerDetail keeps only what answers need (address, last seen,
	// seeder or leecher): no peer_id, uploaded, downloaded, left or event
	// per peer, about a third of the memory. Answers without the compact
	// form then carry a zero peer_id, and the API shows peers without
	// their detail (a leecher's left as -1).
	NoPeerDetail bool
	// AnnounceClock takes scores from Announce.Now and Sweep's cutoff as
	// given instead of Redis TIME: for tests that drive the clock.
	AnnounceClock bool
	// Timeout bounds an announce or scrape (default 40 ms), ReadTimeout
	// the API's reads, SetCompleted and Sweep steps (default 5 s).
	Timeout     time.Duration
	ReadTimeout time.Duration
	// MaxInFlight bounds the calls waiting on Redis (default 4096);
	// more are answered ErrUnavailable at once.
	MaxInFlight int
	// BreakerErrors consecutive failures open the breaker (default 5);
	// BreakerOpen later one call probes Redis again (default 1 s).
	BreakerErrors int
	BreakerOpen   time.Duration
	// SweepLease is how long a bucket swept by this node is left to it
	// (default 30 s): other nodes skip it in that time.
	SweepLease time.Duration
	// PackMax is the largest swarm kept packed in one string (default
	// defaultPackMax; see packFormat); below 0, every swarm is kept in
	// sorted sets, as before the packed layout. Nodes sharing a prefix
	// should use the same value (mixed values are correct, only slower).
	PackMax int
	// NodeID names this node in sweep leases (default random).
	NodeID string
	Logger *slog.Logger
}

// Store is the Redis swarm store.
type Store struct {
	cfg    Config
	opts   string // options as the scripts take them
	bits   uint
	width  int // hex digits of a bucket number
	client atomic.Pointer[rueidis.Client]
	log    *slog.Logger

	announce, stats, sweepSwarm, setCompleted, relay, scan *luaScript

	bufs sync.Pool

	// clock is the last reading of Redis's TIME (see redisNow); nil
	// before the first.
	clock atomic.Pointer[clockReading]

	inflight atomic.Int64
	brk      breaker
	metrics  [numOps]opMetrics

	stop chan struct{}
	done chan struct{}
}

// New builds the store. It does not need Redis to answer: a node whose
// Redis is down starts degraded and connects once it is back.
func New(cfg Config) (*Store, error) {
	opt, err := ClientOption(cfg.URL)
	if err != nil {
		return nil, err
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "starling:"
	}
	if strings.ContainsAny(cfg.Prefix, "{}") {
		return nil, fmt.Errorf("redis key prefix %q: must not hold { or } (they would replace the hash tag)", cfg.Prefix)
	}
	if cfg.BucketBits == 0 {
		cfg.BucketBits = 12
	}
	if cfg.BucketBits < 0 || cfg.BucketBits > 16 {
		return nil, fmt.Errorf("redis bucket bits %d: want 1 to 16", cfg.BucketBits)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	// 40 ms, so that an announce is answered within the 100 ms issue 17
	// allows even on a busy machine: the rest covers the round trip and
	// the wait for a core. With 50, CI's e2e TestRedisSlow once saw 101 ms
	// while other test binaries took both cores.
	def(&cfg.Timeout, 40*time.Millisecond)
	def(&cfg.ReadTimeout, 5*time.Second)
	def(&cfg.BreakerOpen, time.Second)
	def(&cfg.SweepLease, 30*time.Second)
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 4096
	}
	if cfg.BreakerErrors <= 0 {
		cfg.BreakerErrors = 5
	}
	if cfg.PackMax == 0 {
		cfg.PackMax = defaultPackMax
	}
	if cfg.PackMax > 1<<15 {
		return nil, fmt.Errorf("redis pack max %d: want at most %d", cfg.PackMax, 1<<15)
	}
	if cfg.NodeID == "" {
		cfg.NodeID = strconv.FormatUint(rand.Uint64(), 36)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	o := 0
	if cfg.Options.RemovePeerlessTorrents {
		o |= 1
	}
	if cfg.Options.KeepCompleted {
		o |= 2
	}
	s := &Store{
		cfg: cfg, opts: strconv.Itoa(o), bits: uint(cfg.BucketBits), width: (cfg.BucketBits + 3) / 4,
		log:          cfg.Logger.With("swarm_store", "redis"),
		announce:     script(announceScript, cfg.PackMax),
		stats:        script(statsScript, cfg.PackMax),
		sweepSwarm:   script(sweepSwarmScript, cfg.PackMax),
		setCompleted: script(setCompletedScript, cfg.PackMax),
		relay:        script(relayScript, cfg.PackMax),
		scan:         script(scanScript, cfg.PackMax),
		stop:         make(chan struct{}),
		done:         make(chan struct{}),
	}
	s.bufs.New = func() any { return &callBuf{arena: make([]byte, 0, 1024)} }
	s.brk.threshold = int32(cfg.BreakerErrors)
	s.brk.open = cfg.BreakerOpen
	if err := s.connect(opt); err != nil {
		s.degrade(err)
	}
	go s.watch(opt)
	return s, nil
}

// ClientOption parses a Redis URL as the store reads it.
func ClientOption(raw string) (rueidis.ClientOption, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return rueidis.ClientOption{}, fmt.Errorf("redis URL: %w", err)
	}
	switch u.Scheme {
	case "redis", "rediss":
		if u.Host == "" {
			return rueidis.ClientOption{}, fmt.Errorf("redis URL %q: no host", redact(u))
		}
	case "unix":
		if u.Path == "" {
			return rueidis.ClientOption{}, fmt.Errorf("redis URL %q: no socket path", redact(u))
		}
	default:
		return rueidis.ClientOption{}, fmt.Errorf("redis URL %q: the scheme must be redis://, rediss:// or unix://", redact(u))
	}
	opt, err := rueidis.ParseURL(raw)
	if err != nil {
		return rueidis.ClientOption{}, fmt.Errorf("redis URL %q: %w", redact(u), err)
	}
	// Client-side caching is useless for swarms that change every
	// announce; a dead connection is noticed within a second.
	opt.DisableCache = true
	opt.Dialer.Timeout = time.Second
	opt.ConnWriteTimeout = time.Second
	// Under load the connection's writer waits up to 100 us after each
	// write, so that the calls of many announces (a UDP batch's, handled
	// at once) leave in one write: fewer system calls for the node and
	// Redis. A lone call still leaves at once. bench-redis.sh at numwant
	// 50, one run each on the busy box: 18,900 announces/s with no delay,
	// 20,800 with 20 us, 22,200 with 100 us (tracker 25.5, 21.5 and 19.4
	// us per answer). Later, with one batch deadline and one socket: 0 us
	// 31,500/s (tracker 13.5 us) against 36,600 at 100 us (8.9); 300 us
	// 23,300 and 17,300 against 36,100 and 30,600 at 100 us, interleaved
	// (the batch waits, and the generator's 256 in flight with it).
	opt.MaxFlushDelay = 100 * time.Microsecond
	return opt, nil
}

// Addr is the URL without its password, for logs.
func Addr(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(bad URL)"
	}
	return redact(u)
}

func redact(u *url.URL) string {
	if _, ok := u.User.Password(); ok {
		u2 := *u
		u2.User = url.UserPassword(u.User.Username(), "xxxxx")
		return u2.String()
	}
	return u.String()
}

func (s *Store) connect(opt rueidis.ClientOption) error {
	c, err := rueidis.NewClient(opt)
	if err != nil {
		return err
	}
	s.client.Store(&c)
	return nil
}

// watch connects when New could not, and probes Redis while the breaker
// is open, so that a node with no traffic recovers too.
func (s *Store) watch(opt rueidis.ClientOption) {
	defer close(s.done)
	t := time.NewTicker(min(s.cfg.BreakerOpen/2, clockPeriod))
	defer t.Stop()
	if c := s.client.Load(); c != nil {
		s.readClock(*c)
	}
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		if s.client.Load() == nil {
			if err := s.connect(opt); err != nil {
				s.failed(opProbe, err)
				continue
			}
		}
		if !s.brk.isOpen() {
			s.readClock(*s.client.Load())
			continue
		}
		c := *s.client.Load()
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.BreakerOpen)
		start := time.Now()
		err := c.Do(ctx, c.B().Ping().Build()).Error()
		cancel()
		s.metrics[opProbe].observe(time.Since(start), err)
		if err != nil {
			s.failed(opProbe, err)
			continue
		}
		s.succeeded()
	}
}

// clockPeriod is how often a node reads Redis's TIME for redisNow.
const clockPeriod = 500 * time.Millisecond

// clockReading is Redis's TIME (unix ns) and the node's clock when the
// answer came back.
type clockReading struct {
	redis int64
	at    time.Time
}

// readClock reads Redis's TIME for redisNow. A reading whose round trip
// took more than 10 ms is dropped (the last one stays), so that the
// reckoning is at most that far behind; a failed one too: the breaker
// judges Redis on the announces.
func (s *Store) readClock(c rueidis.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	v, err := c.Do(ctx, c.B().Time().Build()).AsIntSlice()
	at := time.Now()
	if err != nil || len(v) != 2 || at.Sub(start) > 10*time.Millisecond {
		return
	}
	s.clock.Store(&clockReading{redis: v[0]*1e9 + v[1]*1e3, at: at})
}

// redisNow is Redis's clock in store seconds (unix seconds minus epoch)
// as the node reckons it: the last TIME read plus the node's monotonic
// time since, floored. TIME was read before the answer came back, so the
// reckoning is never ahead of Redis's clock (a peer announced now is
// not left out by a sweep that cuts at Redis's now) and at most the
// reading's round trip (10 ms) behind it, plus the two clocks' drift
// since: the second a peer is scored with is Redis's, or now and then the
// one before. On a Cluster it is the clock of the primary that answered
// TIME. ok is false before the first reading.
func (s *Store) redisNow() (now int64, ok bool) {
	r := s.clock.Load()
	if r == nil {
		return 0, false
	}
	return (r.redis+int64(time.Since(r.at)))/1e9 - epoch, true
}

// Close stops the store's goroutine and its connections.
func (s *Store) Close() error {
	select {
	case <-s.stop:
		return nil
	default:
	}
	close(s.stop)
	<-s.done
	if c := s.client.Load(); c != nil {
		(*c).Close()
	}
	return nil
}

// Health is nil while Redis answers, else why the store is degraded.
func (s *Store) Health() error {
	if s.client.Load() == nil || s.brk.isOpen() {
		if e := s.brk.last.Load(); e != nil {
			return fmt.Errorf("swarm store degraded: redis: %w", *e)
		}
		return errors.New("swarm store degraded: redis not connected")
	}
	return nil
}

// Degraded is whether the breaker is open (calls answered ErrUnavailable).
func (s *Store) Degraded() bool { return s.Health() != nil }

// String says where the store is, without a password.
func (s *Store) String() string { return Addr(s.cfg.URL) + " prefix " + s.cfg.Prefix }

// begin admits one call: nil and the client, or ErrUnavailable when the
// breaker is open, Redis was never reached, or too many calls wait.
func (s *Store) begin(op op) (rueidis.Client, error) {
	c := s.client.Load()
	if c == nil || !s.brk.allow() {
		s.metrics[op].refused.Add(1)
		return nil, ErrUnavailable
	}
	if s.inflight.Add(1) > int64(s.cfg.MaxInFlight) {
		s.inflight.Add(-1)
		s.brk.release()
		s.metrics[op].shed.Add(1)
		return nil, ErrUnavailable
	}
	return *c, nil
}

// end records a call's outcome. A Redis reply error about the data (not
// about the server's state) is the caller's bug, not Redis failing, but
// it is counted as an error all the same.
func (s *Store) end(op op, start time.Time, err error) {
	s.inflight.Add(-1)
	s.metrics[op].observe(time.Since(start), err)
	if err != nil {
		s.failed(op, err)
		return
	}
	s.succeeded()
}

func (s *Store) failed(op op, err error) {
	if s.brk.failure(err) {
		s.degrade(err)
	}
}

func (s *Store) degrade(err error) {
	s.brk.forceOpen(err)
	s.log.Error("swarm store degraded: announces and scrapes are answered \"swarm store unavailable, try later\" until Redis answers",
		"redis", Addr(s.cfg.URL), "err", err)
}

func (s *Store) succeeded() {
	if s.brk.success() {
		s.log.Info("swarm store recovered: Redis answers again", "redis", Addr(s.cfg.URL))
	}
}

// breaker opens after threshold consecutive failures; while open, one
// call at a time may probe once open has passed since the last failure.
type breaker struct {
	threshold int32
	open      time.Duration
	fails     atomic.Int32
	until     atomic.Int64 // unix ns until which calls are refused; 0: closed
	probing   atomic.Bool
	last      atomic.Pointer[error]
}

func (b *breaker) isOpen() bool { return b.until.Load() != 0 }

func (b *breaker) allow() bool {
	u := b.until.Load()
	if u == 0 {
		return true
	}
	if time.Now().UnixNano() < u {
		return false
	}
	return b.probing.CompareAndSwap(false, true)
}

// release gives back a probe that was not used.
func (b *breaker) release() {
	if b.until.Load() != 0 {
		b.probing.Store(false)
	}
}

// failure records an error; true when it opened the breaker.
func (b *breaker) failure(err error) bool {
	b.last.Store(&err)
	if b.until.Load() != 0 {
		b.until.Store(time.Now().Add(b.open).UnixNano())
		b.probing.Store(false)
		return false
	}
	if b.fails.Add(1) < b.threshold {
		return false
	}
	return b.until.CompareAndSwap(0, time.Now().Add(b.open).UnixNano())
}

func (b *breaker) forceOpen(err error) {
	b.last.Store(&err)
	b.until.CompareAndSwap(0, time.Now().Add(b.open).UnixNano())
}

// success records an answer; true when it closed the breaker.
func (b *breaker) success() bool {
	if b.fails.Load() != 0 {
		b.fails.Store(0)
	}
	if b.until.Load() == 0 {
		return false
	}
	b.probing.Store(false)
	return b.until.Swap(0) != 0
}

// expand puts the package's constants into a script.
func expand(src string, packMax int) string {
	return strings.NewReplacer("EPOCH", strconv.Itoa(epoch), "GONEMAX", strconv.Itoa(goneMax),
		"GONETTL", strconv.Itoa(goneTTL), "RECORD", recordFormat, "PACKMAX", strconv.Itoa(max(packMax, 0)), "PACK", packFormat, "PHEAD", strconv.Itoa(packHeader), "ANNOUNCE", announceFormat, "COUNTED", strconv.Itoa(counted), "HALF", strconv.Itoa(counted/2)).Replace(src)
}
