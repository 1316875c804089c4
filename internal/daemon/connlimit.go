package daemon

import (
	"fmt"
	"net"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/starling-tracker/starling/internal/connlimit"
)

// The API and the health check are for operators and monitors, not for
// the public: fixed caps, far above their use.
const (
	apiMaxConnections         = 1024
	apiMaxConnectionsPerIP    = 64
	healthMaxConnections      = 128
	healthMaxConnectionsPerIP = 32
)

// limited is a capped listener and its name in metrics.
type limited struct {
	name string
	ln   *connlimit.Listener
}

// limit caps ln and remembers it for starling_connections_refused_total.
func (d *Daemon) limit(name string, ln net.Listener, max, perIP int) net.Listener {
	l := connlimit.New(ln, max, perIP)
	d.limited = append(d.limited, limited{name, l})
	return l
}

var refusedDesc = prometheus.NewDesc("starling_connections_refused_total",
	"TCP connections closed as accepted because a listener held its cap, by listener and cap (total or per_ip).",
	[]string{"listener", "cap"}, nil)

// refusedCollector reads the capped listeners' counts at scrape time.
type refusedCollector struct{ d *Daemon }

func (c refusedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- refusedDesc }

func (c refusedCollector) Collect(ch chan<- prometheus.Metric) {
	refused := func(name string, total, perIP uint64) {
		ch <- prometheus.MustNewConstMetric(refusedDesc, prometheus.CounterValue, float64(total), name, "total")
		ch <- prometheus.MustNewConstMetric(refusedDesc, prometheus.CounterValue, float64(perIP), name, "per_ip")
	}
	for _, l := range c.d.limited {
		refused(l.name, l.ln.RefusedTotal.Load(), l.ln.RefusedPerIP.Load())
	}
	// WebSocket trackers refuse at the upgrade (503 or 429), not at accept.
	for i, w := range c.d.ws {
		total, perIP := w.srv.Refused()
		refused(fmt.Sprintf("websocket_trackers[%d]", i), total, perIP)
	}
}
