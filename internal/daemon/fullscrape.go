package daemon

import (
	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/config"
	"github.com/starling-tracker/starling/internal/fullscrape"
	"github.com/starling-tracker/starling/internal/httptracker"
)

// buildFullScrape makes the full-scrape builder core.full_scrape asks for,
// shared by every HTTP listener and the API, and returns the HTTP
// trackers' setting (nil when off). In listed mode only whitelisted
// torrents are listed.
func (d *Daemon) buildFullScrape() *httptracker.FullScrape {
	core := d.cfg.Core
	if core.FullScrape == "" || core.FullScrape == config.FullScrapeOff {
		return nil
	}
	fc := fullscrape.Config{Interval: core.FullScrapeInterval.Duration()}
	// Asked at every build: a reload may turn listed mode on or off.
	fc.Listed = func(h bittorrent.InfoHash) bool { return !d.tracker.Config().Listed || d.lists.Whitelisted(h) }
	d.full = fullscrape.New(d.store, fc)
	hf := &httptracker.FullScrape{Builder: d.full}
	if core.FullScrape == config.FullScrapeAPI {
		var tokens map[string]string
		if d.cfg.HTTPAPI != nil {
			tokens = d.cfg.HTTPAPI.AccessTokens
		}
		hf.Tokens = httptracker.NewTokens(tokens)
		d.reload.fullTokens = hf.Tokens
	}
	d.log.Info("full scrape on", "full_scrape", core.FullScrape, "interval", fc.Interval.String(), "listed_only", core.Listed)
	return hf
}
