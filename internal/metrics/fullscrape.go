package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/starling-tracker/starling/internal/fullscrape"
)

var (
	fullScrapeBuildsDesc = prometheus.NewDesc("starling_full_scrape_builds_total",
		"Full-scrape answers built (at most one per full_scrape_interval, however many requests).", nil, nil)
	fullScrapeFailedDesc = prometheus.NewDesc("starling_full_scrape_build_failures_total",
		"Full-scrape builds that failed.", nil, nil)
	fullScrapeSecondsDesc = prometheus.NewDesc("starling_full_scrape_build_duration_seconds",
		"How long the cached full-scrape answer took to build.", nil, nil)
	fullScrapeTorrentsDesc = prometheus.NewDesc("starling_full_scrape_torrents",
		"Torrents in the cached full-scrape answer.", nil, nil)
	fullScrapeBytesDesc = prometheus.NewDesc("starling_full_scrape_bytes",
		"Size of the cached full-scrape answer, by encoding.", []string{"encoding"}, nil)
)

// RegisterFullScrape adds the full-scrape builder's metrics.
func (r *Registry) RegisterFullScrape(b *fullscrape.Builder) {
	r.reg.MustRegister(fullScrapeCollector{b})
}

type fullScrapeCollector struct{ b *fullscrape.Builder }

func (fullScrapeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{fullScrapeBuildsDesc, fullScrapeFailedDesc, fullScrapeSecondsDesc, fullScrapeTorrentsDesc, fullScrapeBytesDesc} {
		ch <- d
	}
}

func (c fullScrapeCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.b.Stats()
	ch <- prometheus.MustNewConstMetric(fullScrapeBuildsDesc, prometheus.CounterValue, float64(s.Builds))
	ch <- prometheus.MustNewConstMetric(fullScrapeFailedDesc, prometheus.CounterValue, float64(s.Failed))
	ch <- prometheus.MustNewConstMetric(fullScrapeSecondsDesc, prometheus.GaugeValue, s.LastBuildDuration.Seconds())
	ch <- prometheus.MustNewConstMetric(fullScrapeTorrentsDesc, prometheus.GaugeValue, float64(s.Torrents))
	ch <- prometheus.MustNewConstMetric(fullScrapeBytesDesc, prometheus.GaugeValue, float64(s.Bytes), "identity")
	ch <- prometheus.MustNewConstMetric(fullScrapeBytesDesc, prometheus.GaugeValue, float64(s.GzipBytes), "gzip")
}
