package metrics

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/swarm"
)

// TotalsSource gives the store-wide swarm counts; every swarm.Store is one.
type TotalsSource interface {
	Totals(ctx context.Context) (swarm.Totals, error)
}

// Registry is the project's own Prometheus registry (never the global one):
// the tracker's counters and latency histograms, read from their stripes at
// scrape time, the swarm totals, and the Go runtime and process collectors.
type Registry struct {
	reg    *prometheus.Registry
	totals TotalsSource
	log    *slog.Logger
	// scrapeTimeout bounds the swarm-totals query of one scrape.
	scrapeTimeout time.Duration
}

// NewRegistry builds the registry. counters, latency and totals may each be
// nil when the process has none (their metrics are then left out).
func NewRegistry(counters *Counters, latency *Latency, totals TotalsSource, log *slog.Logger) *Registry {
	if log == nil {
		log = slog.Default()
	}
	r := &Registry{reg: prometheus.NewRegistry(), totals: totals, log: log, scrapeTimeout: 4 * time.Second}
	r.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	if counters != nil {
		r.reg.MustRegister(&counterCollector{c: counters})
	}
	if latency != nil {
		r.reg.MustRegister(&latencyCollector{l: latency})
	}
	return r
}

// Prometheus is the underlying registry, for packages that add their own
// collectors (for example database pool statistics).
func (r *Registry) Prometheus() *prometheus.Registry { return r.reg }

// Gather collects every metric family, the swarm totals queried with ctx.
func (r *Registry) Gather(ctx context.Context) ([]*dto.MetricFamily, error) {
	return r.gatherer(ctx).Gather()
}

// gatherer joins the long-lived registry with a per-scrape registry holding
// the swarm totals: Collect has no context, and the totals may need a round
// trip to Redis that must end with the scrape's request.
func (r *Registry) gatherer(ctx context.Context) prometheus.Gatherer {
	if r.totals == nil {
		return r.reg
	}
	per := prometheus.NewRegistry()
	per.MustRegister(&totalsCollector{ctx: ctx, src: r.totals})
	return prometheus.Gatherers{r.reg, per}
}

// ServeHTTP answers a scrape in the format the scraper negotiates (text or
// protobuf). A failing totals query is logged and the rest still served.
func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	ctx, cancel := context.WithTimeout(req.Context(), r.scrapeTimeout)
	defer cancel()
	promhttp.HandlerFor(r.gatherer(ctx), promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError,
		ErrorLog:      promLogger{r.log},
	}).ServeHTTP(w, req)
}

type promLogger struct{ log *slog.Logger }

func (l promLogger) Println(v ...any) {
	l.log.Warn("metrics scrape", "error", v)
}

var (
	requestsDesc = prometheus.NewDesc("starling_requests_total",
		"Requests answered successfully, by protocol, address family and kind.",
		[]string{"protocol", "family", "kind"}, nil)
	udpReceivedDesc = prometheus.NewDesc("starling_udp_datagrams_received_total",
		"Datagrams received by the UDP trackers.", nil, nil)
	errorResponsesDesc = prometheus.NewDesc("starling_error_responses_total",
		"Error answers sent to clients (bad requests and refusals), by protocol.",
		[]string{"protocol"}, nil)
	badConnIDDesc = prometheus.NewDesc("starling_udp_bad_connection_ids_total",
		"UDP announces and scrapes with a wrong or expired connection id.", nil, nil)
	rateLimitedDesc = prometheus.NewDesc("starling_udp_rate_limited_total",
		"UDP error answers (bad connection ids, malformed requests) suppressed by the per-IP limit.", nil, nil)
	wsRelayedDesc = prometheus.NewDesc("starling_websocket_relayed_total",
		"WebRTC offers and answers the WebSocket trackers relayed from one peer to another, by kind.",
		[]string{"kind"}, nil)
	panicsDesc = prometheus.NewDesc("starling_panics_total",
		"Requests whose handler panicked (recovered and logged).", nil, nil)
	latencyDesc = prometheus.NewDesc("starling_request_duration_seconds",
		"Time from reading a request to writing its answer, failures included, by the request's protocol and kind.",
		[]string{"protocol", "kind"}, nil)
	torrentsDesc = prometheus.NewDesc("starling_torrents",
		"Torrents in the swarm store.", nil, nil)
	peersDesc = prometheus.NewDesc("starling_peers",
		"Peers in the swarm store, by role (seeder: left = 0).", []string{"role"}, nil)
	completedDesc = prometheus.NewDesc("starling_completed_downloads",
		"Sum of the completed counts of the torrents in the store (scrape's downloaded).", nil, nil)
)

// requestSeries maps the Torrust request counters onto labels. The
// tcp*_connections_handled counters are left out: they equal announces plus
// scrapes over HTTP and would double-count in sum().
var requestSeries = []struct {
	c                      Counter
	protocol, family, kind string
}{
	{UDP4Connections, "udp", "ipv4", "connect"},
	{UDP4Announces, "udp", "ipv4", "announce"},
	{UDP4Scrapes, "udp", "ipv4", "scrape"},
	{UDP6Connections, "udp", "ipv6", "connect"},
	{UDP6Announces, "udp", "ipv6", "announce"},
	{UDP6Scrapes, "udp", "ipv6", "scrape"},
	{TCP4Announces, "http", "ipv4", "announce"},
	{TCP4Scrapes, "http", "ipv4", "scrape"},
	{TCP6Announces, "http", "ipv6", "announce"},
	{TCP6Scrapes, "http", "ipv6", "scrape"},
	{WS4Announces, "websocket", "ipv4", "announce"},
	{WS4Scrapes, "websocket", "ipv4", "scrape"},
	{WS6Announces, "websocket", "ipv6", "announce"},
	{WS6Scrapes, "websocket", "ipv6", "scrape"},
}

// counterCollector reads the striped counters at scrape time, so counting
// costs the hot path nothing beyond its own stripe's atomic add.
type counterCollector struct{ c *Counters }

func (cc *counterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{requestsDesc, udpReceivedDesc, errorResponsesDesc, badConnIDDesc, rateLimitedDesc, panicsDesc, wsRelayedDesc} {
		ch <- d
	}
}

func (cc *counterCollector) Collect(ch chan<- prometheus.Metric) {
	v := cc.c.Snapshot()
	for _, s := range requestSeries {
		ch <- prometheus.MustNewConstMetric(requestsDesc, prometheus.CounterValue, float64(v[s.c]), s.protocol, s.family, s.kind)
	}
	ch <- prometheus.MustNewConstMetric(udpReceivedDesc, prometheus.CounterValue, float64(v[UDPRequests]))
	ch <- prometheus.MustNewConstMetric(errorResponsesDesc, prometheus.CounterValue, float64(v[UDPErrors]), "udp")
	ch <- prometheus.MustNewConstMetric(errorResponsesDesc, prometheus.CounterValue, float64(v[HTTPErrors]), "http")
	ch <- prometheus.MustNewConstMetric(errorResponsesDesc, prometheus.CounterValue, float64(v[WSErrors]), "websocket")
	ch <- prometheus.MustNewConstMetric(wsRelayedDesc, prometheus.CounterValue, float64(v[WSOffersRelayed]), "offer")
	ch <- prometheus.MustNewConstMetric(wsRelayedDesc, prometheus.CounterValue, float64(v[WSAnswersRelayed]), "answer")
	ch <- prometheus.MustNewConstMetric(badConnIDDesc, prometheus.CounterValue, float64(v[UDPBadConnectionIDs]))
	ch <- prometheus.MustNewConstMetric(rateLimitedDesc, prometheus.CounterValue, float64(v[UDPRateLimited]))
	ch <- prometheus.MustNewConstMetric(panicsDesc, prometheus.CounterValue, float64(v[Panics]))
}

// latencyCollector exposes the striped histograms as Prometheus histograms.
type latencyCollector struct{ l *Latency }

func (lc *latencyCollector) Describe(ch chan<- *prometheus.Desc) { ch <- latencyDesc }

func (lc *latencyCollector) Collect(ch chan<- prometheus.Metric) {
	for op := Op(0); op < numOps; op++ {
		s := lc.l.Snapshot(op)
		buckets := make(map[float64]uint64, numBuckets)
		for i, le := range LatencyBuckets {
			buckets[le] = s.Buckets[i]
		}
		ch <- prometheus.MustNewConstHistogram(latencyDesc, s.Count, s.Sum, buckets, op.Protocol(), op.Kind())
	}
}

// totalsCollector lives for one scrape and queries the store with its context.
type totalsCollector struct {
	ctx context.Context
	src TotalsSource
}

func (tc *totalsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- torrentsDesc
	ch <- peersDesc
	ch <- completedDesc
}

func (tc *totalsCollector) Collect(ch chan<- prometheus.Metric) {
	t, err := tc.src.Totals(tc.ctx)
	var ce *bittorrent.ClientError
	if errors.As(err, &ce) {
		// The store is unavailable (Redis down): it logged that once and
		// its own metrics say so; the totals are left out, unlogged.
		return
	}
	if err != nil {
		ch <- prometheus.NewInvalidMetric(torrentsDesc, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(torrentsDesc, prometheus.GaugeValue, float64(t.Torrents))
	ch <- prometheus.MustNewConstMetric(peersDesc, prometheus.GaugeValue, float64(t.Seeders), "seeder")
	ch <- prometheus.MustNewConstMetric(peersDesc, prometheus.GaugeValue, float64(t.Leechers), "leecher")
	ch <- prometheus.MustNewConstMetric(completedDesc, prometheus.GaugeValue, float64(t.Completed))
}
