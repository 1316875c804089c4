package daemon

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/starling-tracker/starling/internal/database"
)

var (
	dbUpDesc = prometheus.NewDesc("starling_database_up",
		"1 while the SQL database answers, 0 from its first failed operation until one succeeds again.", nil, nil)
	completedPendingDesc = prometheus.NewDesc("starling_completed_pending",
		"Torrents whose latest completed count waits to be written to the database (persistent_torrent_completed_stat).", nil, nil)
	completedCapacityDesc = prometheus.NewDesc("starling_completed_buffer_capacity",
		"The most torrents whose completed counts wait in memory while the database is down (core.limits.completed_buffer).", nil, nil)
	completedDroppedDesc = prometheus.NewDesc("starling_completed_buffer_dropped_total",
		"Completed counts dropped because the buffer was full while the database was down; each torrent's next completion writes its whole count again.", nil, nil)
)

// dbCollector exposes the database's state and the completed-count buffer.
// It holds the database and the batcher themselves, not the daemon's fields,
// which the shutdown clears.
type dbCollector struct {
	db      *database.DB
	batcher *database.Batcher // nil without persistent_torrent_completed_stat
}

func (c dbCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- dbUpDesc
	ch <- completedPendingDesc
	ch <- completedCapacityDesc
	ch <- completedDroppedDesc
}

func (c dbCollector) Collect(ch chan<- prometheus.Metric) {
	up := 1.0
	if c.db.Failing() {
		up = 0
	}
	ch <- prometheus.MustNewConstMetric(dbUpDesc, prometheus.GaugeValue, up)
	if c.batcher == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(completedPendingDesc, prometheus.GaugeValue, float64(c.batcher.Pending()))
	ch <- prometheus.MustNewConstMetric(completedCapacityDesc, prometheus.GaugeValue, float64(c.batcher.Limit()))
	ch <- prometheus.MustNewConstMetric(completedDroppedDesc, prometheus.CounterValue, float64(c.batcher.Dropped()))
}
