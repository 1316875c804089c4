package udpload

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/starling-tracker/starling/internal/udptracker/batch"
)

// The plain and paced modes are what a conventional client does: one
// goroutine per socket, one write system call per request and one read
// per answer, Go's network poller parking the goroutine in between.

// take reports whether the socket may send one more request: not when a
// walk has announced all its peers or a run's request budget is spent.
func (c *client) take() bool {
	if c.cfg.Walk && c.walked >= c.mine() {
		return false
	}
	if c.cfg.Requests > 0 && c.budget.Add(-1) < 0 {
		return false
	}
	return true
}

// sendOne builds one request and sends it with one write, timing it from
// just before the write. It returns how many requests in flight that
// added: 1, or 0 when the request displaced one given up on.
func (c *client) sendOne() (int, error) {
	m := &c.tx[0]
	c.fill(m)
	at := c.win.now()
	if _, err := c.conn.Write(m.Buf[:m.N]); err != nil {
		return 0, err
	}
	c.st.sent.Add(1)
	return 1 - c.track(txOf(m.Buf[12:]), at), nil
}

// readOne takes the answer of n bytes in c.rx[0] and reports whether it
// freed a request in flight.
func (c *client) readOne(n int) bool {
	b := c.rx[0].Buf[:n]
	matched, kind := c.answer(b, c.win.now(), c.win.from.Load(), c.win.to.Load())
	c.st.received.Add(1)
	switch kind {
	case kindAnnounce:
		c.st.announces.Add(1)
	case kindScrape:
		c.st.scrapes.Add(1)
	case kindError:
		c.st.errors.Add(1)
		if c.errSample.Load() == nil {
			c.errSample.Store(string(b[8:]))
		}
	default:
		c.st.bad.Add(1)
	}
	return matched
}

// readErr sorts a failed read: (true, nil) for a deadline that passed,
// (false, nil) when the run is over, and the error otherwise.
func (c *client) readErr(ctx context.Context, err error) (timeout bool, _ error) {
	if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
		return false, nil
	}
	if batch.IsTimeout(err) {
		return true, nil
	}
	// ECONNREFUSED from an earlier datagram: the tracker is gone.
	return false, fmt.Errorf("receive from %s: %w", c.addr, err)
}

// reconnect renews the connection id when it is due, giving up on the
// requests in flight (their answers would carry the old id's fate anyway).
func (c *client) reconnect(ctx context.Context, inflight *int) error {
	if time.Since(c.connected) <= reconnectEvery {
		return nil
	}
	c.giveUp(inflight)
	return c.connect(ctx)
}

// runPlain keeps exactly Window requests in flight, one datagram per
// system call: it fills the window with one write after another, then
// sends one new request for each answer that comes back. A socket that
// hears nothing for Timeout counts what is in flight as lost and refills
// the window, as the batched mode does.
func (c *client) runPlain(ctx context.Context) error {
	inflight := 0
	var armed time.Time // when the read deadline was last set
	for ctx.Err() == nil {
		if err := c.reconnect(ctx, &inflight); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if c.cfg.Walk && c.walked >= c.mine() && inflight == 0 {
			return nil
		}
		for inflight < c.cfg.Window && c.take() {
			added, err := c.sendOne()
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("send: %w", err)
			}
			inflight += added
		}
		// As in the batched mode: the deadline moves once a quarter of the
		// timeout has passed, not with every read.
		if now := time.Now(); now.Sub(armed) > c.cfg.Timeout/4 {
			_ = c.conn.SetReadDeadline(now.Add(c.cfg.Timeout))
			armed = now
		}
		n, err := c.conn.Read(c.rx[0].Buf)
		if err != nil {
			timeout, err := c.readErr(ctx, err)
			if !timeout {
				return err
			}
			c.giveUp(&inflight)
			continue
		}
		if c.readOne(n) {
			inflight--
		}
	}
	return nil
}

// idMask keeps a transaction id to the 31 bits fill uses.
const idMask = 1<<31 - 1

// runPaced sends this socket's share of Config.Rate one request at a time
// on a fixed schedule: request k at start + k*interval, where interval is
// Sockets/Rate and socket i starts i/Sockets of an interval after the
// first, so the sockets' sends interleave evenly. The schedule is absolute,
// so a late wake-up delays one send, not the ones after it. Between sends
// the goroutine waits in a read whose deadline is the next send (or the
// next request to give up on), so answers are read as they come and
// nothing spins. A send that finds Window requests in flight is skipped
// and counted; a request unanswered after Timeout is lost.
func (c *client) runPaced(ctx context.Context) error {
	interval := float64(c.cfg.Sockets) / c.cfg.Rate * float64(time.Second)
	start := c.win.now() + int64(interval*float64(c.index)/float64(c.cfg.Sockets))
	timeout := int64(c.cfg.Timeout)
	var k int64 // sends scheduled so far, made or skipped
	next := start
	inflight := 0
	// Ids from oldest up to the last one sent may be in flight; sends are
	// also skipped while that range would wrap the ring.
	oldest := (c.txid + 1) & idMask
	var armed int64 = -1 // the read deadline set last, since the epoch
	for ctx.Err() == nil {
		if time.Since(c.connected) > reconnectEvery {
			if err := c.reconnect(ctx, &inflight); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			oldest = (c.txid + 1) & idMask
		}
		now := c.win.now()
		// Give up on requests older than the timeout, oldest first.
		last := c.txid & idMask
		for oldest != (last+1)&idMask {
			s := &c.ring.slots[oldest&c.ring.mask]
			if s.live && s.tx == oldest {
				if now-s.at < timeout {
					break
				}
				s.live = false
				c.st.lost.Add(1)
				inflight--
			}
			oldest = (oldest + 1) & idMask
		}
		if c.cfg.Walk && c.walked >= c.mine() && inflight == 0 {
			return nil
		}
		if now >= next {
			span := (last + 1 - oldest) & idMask
			switch {
			case inflight >= c.cfg.Window || int(span) >= len(c.ring.slots):
				c.st.skipped.Add(1)
			case c.take():
				added, err := c.sendOne()
				if err != nil {
					if ctx.Err() != nil {
						return nil
					}
					return fmt.Errorf("send: %w", err)
				}
				inflight += added
			}
			k++
			next = start + int64(float64(k)*interval)
			continue
		}
		// Wait for an answer until the next send, or until the oldest
		// request in flight times out; at most 100 ms, so the end of the
		// run is seen even at low rates.
		deadline := min(next, now+int64(100*time.Millisecond))
		if s := &c.ring.slots[oldest&c.ring.mask]; inflight > 0 && s.live && s.tx == oldest {
			deadline = min(deadline, s.at+timeout)
		}
		if deadline != armed {
			_ = c.conn.SetReadDeadline(c.win.epoch.Add(time.Duration(deadline)))
			armed = deadline
		}
		n, err := c.conn.Read(c.rx[0].Buf)
		if err != nil {
			if late, err := c.readErr(ctx, err); !late {
				return err
			}
			continue // a send or a timeout is due
		}
		if c.readOne(n) {
			inflight--
		}
	}
	return nil
}
