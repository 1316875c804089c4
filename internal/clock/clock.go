// Package clock gives the hot path a coarse clock: unix seconds read with one
// atomic load instead of a clock_gettime call per request.
package clock

import (
	"sync/atomic"
	"time"
)

// Coarse is a clock in unix seconds, refreshed by its own goroutine.
type Coarse struct {
	now  atomic.Int64
	stop chan struct{}
	done chan struct{}
}

// NewCoarse starts a clock refreshed every 100 ms. Stop ends its goroutine.
func NewCoarse() *Coarse {
	c := &Coarse{stop: make(chan struct{}), done: make(chan struct{})}
	c.now.Store(time.Now().Unix())
	go c.run()
	return c
}

func (c *Coarse) run() {
	defer close(c.done)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case now := <-t.C:
			c.now.Store(now.Unix())
		}
	}
}

// Now is the current unix time in seconds, at most ~100 ms stale.
func (c *Coarse) Now() int64 { return c.now.Load() }

// Stop ends the refreshing goroutine; Now keeps its last value. Safe to call twice.
func (c *Coarse) Stop() {
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	<-c.done
}

// Manual is a clock that only moves when told to, for tests.
type Manual struct{ now atomic.Int64 }

// NewManual starts a manual clock at t.
func NewManual(t int64) *Manual { m := &Manual{}; m.now.Store(t); return m }

// Now is the clock's current time.
func (m *Manual) Now() int64 { return m.now.Load() }

// Advance moves the clock forward by d seconds.
func (m *Manual) Advance(d int64) { m.now.Add(d) }
