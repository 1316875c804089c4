// Package metrics counts what the tracker does. Counters are striped: each
// transport worker increments its own cache-line-separated stripe, and
// readers (the stats endpoint, Prometheus) add the stripes up, so counting
// puts no shared lock or contended cache line on the hot path.
package metrics

import "sync/atomic"

// Counter names one of the tracker's counters.
type Counter int

// The counters. The first twelve are Torrust's /api/v1/stats request counters.
const (
	TCP4Connections Counter = iota
	TCP4Announces
	TCP4Scrapes
	TCP6Connections
	TCP6Announces
	TCP6Scrapes
	UDP4Connections
	UDP4Announces
	UDP4Scrapes
	UDP6Connections
	UDP6Announces
	UDP6Scrapes
	// WebSocket (WebTorrent) trackers, after Torrust's twelve so that
	// their numbers keep their place: announces and scrapes by the family
	// of the connection, and the offers and answers relayed between peers.
	WS4Announces
	WS4Scrapes
	WS6Announces
	WS6Scrapes
	WSOffersRelayed
	WSAnswersRelayed
	// UDPRequests counts datagrams received by the UDP trackers.
	UDPRequests
	// UDPErrors counts error packets sent (bad requests, refusals).
	UDPErrors
	// UDPBadConnectionIDs counts announces and scrapes with a wrong or expired connection id.
	UDPBadConnectionIDs
	// UDPRateLimited counts UDP error answers (bad connection ids,
	// malformed requests) suppressed by the per-IP limit.
	UDPRateLimited
	// HTTPErrors counts HTTP tracker failure responses.
	HTTPErrors
	// WSErrors counts WebSocket tracker failure messages sent.
	WSErrors
	// Panics counts requests whose handler panicked (recovered).
	Panics
	numCounters
)

var counterNames = [numCounters]string{
	"tcp4_connections_handled", "tcp4_announces_handled", "tcp4_scrapes_handled",
	"tcp6_connections_handled", "tcp6_announces_handled", "tcp6_scrapes_handled",
	"udp4_connections_handled", "udp4_announces_handled", "udp4_scrapes_handled",
	"udp6_connections_handled", "udp6_announces_handled", "udp6_scrapes_handled",
	"ws4_announces_handled", "ws4_scrapes_handled", "ws6_announces_handled", "ws6_scrapes_handled",
	"ws_offers_relayed", "ws_answers_relayed",
	"udp_requests", "udp_errors", "udp_bad_connection_ids", "udp_rate_limited",
	"http_errors", "ws_errors", "panics",
}

// String is the counter's name as /api/v1/stats shows it.
func (c Counter) String() string { return counterNames[c] }

// NumCounters is the number of counters.
const NumCounters = int(numCounters)

// Stripe is one worker's set of counters.
type Stripe struct {
	v  [numCounters]atomic.Uint64
	on bool
	_  [64]byte // no false sharing with the next stripe
}

// Inc adds one to c. With statistics off only the request counters stay 0;
// error and panic counters still count, for the operator's metrics.
func (s *Stripe) Inc(c Counter) {
	if s.on || c >= UDPRequests {
		s.v[c].Add(1)
	}
}

// Add adds n to c, as n calls of Inc would.
func (s *Stripe) Add(c Counter, n uint64) {
	if s.on || c >= UDPRequests {
		s.v[c].Add(n)
	}
}

// Tally counts for one goroutine with plain adds and hands its counts to a
// Stripe at once: a UDP worker counts each request of a batch here and
// pays one atomic add per counter per batch instead of two per request.
type Tally struct{ n [numCounters]uint64 }

// Inc adds one to c.
func (t *Tally) Inc(c Counter) { t.n[c]++ }

// FlushTo adds every count to s and starts again from zero.
func (t *Tally) FlushTo(s *Stripe) {
	for c, n := range t.n {
		if n != 0 {
			s.Add(Counter(c), n)
			t.n[c] = 0
		}
	}
}

// Counters are a set of stripes. Allocate one per process.
type Counters struct {
	stripes []Stripe
	next    atomic.Uint32
}

// NewCounters makes counters with n stripes; with enabled false
// (tracker_usage_statistics = false) every counter stays 0.
func NewCounters(n int, enabled bool) *Counters {
	if n < 1 {
		n = 1
	}
	c := &Counters{stripes: make([]Stripe, n)}
	for i := range c.stripes {
		c.stripes[i].on = enabled
	}
	return c
}

// Stripe hands out stripes round-robin; a worker keeps the one it gets.
func (c *Counters) Stripe() *Stripe {
	i := c.next.Add(1) - 1
	return &c.stripes[int(i)%len(c.stripes)]
}

// Value is the sum of c over all stripes.
func (c *Counters) Value(k Counter) uint64 {
	var sum uint64
	for i := range c.stripes {
		sum += c.stripes[i].v[k].Load()
	}
	return sum
}

// Snapshot returns every counter's value, indexed by Counter.
func (c *Counters) Snapshot() [NumCounters]uint64 {
	var out [NumCounters]uint64
	for k := range out {
		out[k] = c.Value(Counter(k))
	}
	return out
}
