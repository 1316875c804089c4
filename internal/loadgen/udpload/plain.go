package udpload

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
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

// readAt takes the answer of n bytes in c.rx[i] and reports whether it
// freed a request in flight.
func (c *client) readAt(i, n int) bool {
	b := c.rx[i].Buf[:n]
	matched, _ := c.answer(b, c.win.now(), c.win.from.Load(), c.win.to.Load())
	c.countOne(b)
	return matched
}

// countOne counts one answer by its kind.
func (c *client) countOne(b []byte) {
	switch answerKind(b) {
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
		// With RecvBatch, each socket lets the others run before it reads
		// again, as separate clients would. Otherwise, against a server
		// that answers before the next read, one goroutine keeps finding
		// answers and never parks, and the other sockets' answers wait in
		// their buffers until the runtime preempts it 10 ms later: a p99
		// of tens of milliseconds that says nothing about the server (a
		// slower server does not show it: its clients park). Plain reads
		// keep the old behaviour: a yield per answer costs them a fifth of
		// their rate on one core, and the generator is their limit.
		if c.cfg.RecvBatch {
			runtime.Gosched()
		}
		// As in the batched mode: the deadline moves once a quarter of the
		// timeout has passed, not with every read.
		if now := time.Now(); now.Sub(armed) > c.cfg.Timeout/4 {
			_ = c.conn.SetReadDeadline(now.Add(c.cfg.Timeout))
			armed = now
		}
		// One answer by read, or all that have arrived by recvmmsg.
		n, err := 1, error(nil)
		if c.cfg.RecvBatch {
			n, err = c.bc.Recv(c.rx)
		} else {
			c.rx[0].N, err = c.conn.Read(c.rx[0].Buf)
		}
		if err != nil {
			timeout, err := c.readErr(ctx, err)
			if !timeout {
				return err
			}
			c.giveUp(&inflight)
			continue
		}
		for i := range n {
			if c.readAt(i, c.rx[i].N) {
				inflight--
			}
		}
	}
	return nil
}

// idMask keeps a transaction id to the 31 bits fill uses.
const idMask = 1<<31 - 1

// paced is what a paced socket's sender and reader share.
type paced struct {
	mu       sync.Mutex // guards the ring, inflight and oldest
	inflight int
	oldest   uint32 // ids from oldest to the last sent may be in flight
	// The connection id is renewed in band: the sender sends a connect,
	// the reader takes the answer.
	cid         atomic.Uint64
	connectTx   atomic.Uint32
	connectedAt atomic.Int64 // since the window's epoch
	quit        atomic.Bool  // one of the two ended: the other ends too
}

// runPaced sends this socket's share of Config.Rate one request at a time
// on a fixed schedule: request k at start + k*interval, where interval is
// Sockets/Rate and socket i starts i/Sockets of an interval after socket 0,
// so the sockets' sends interleave evenly; with Config.Poisson, at the
// times of a Poisson process of the same rate instead. A pacer (a timerfd on Linux)
// wakes the sender for each send; the schedule is absolute, so a late
// wake-up delays that send, not the ones after it. A reader goroutine reads
// the answers as they come, one read each. A send that finds Window
// requests in flight is skipped and counted; a request not answered
// within Timeout is lost, and its answer, if it comes, is not timed.
func (c *client) runPaced(ctx context.Context) error {
	sockets := int64(c.cfg.Sockets)
	every := int64(float64(sockets) / c.cfg.Rate * float64(time.Second))
	every = max(every, 1)
	var rng *rand.Rand
	if c.cfg.Poisson {
		rng = rand.New(rand.NewPCG(c.cfg.Seed, 0x9015_5011+uint64(c.index)))
	}
	p := newPacer(c.win, newArrivals(c.win.paced+every*int64(c.index)/sockets, every, rng))
	defer p.close()
	defer context.AfterFunc(ctx, p.stop)()
	// The reader blocks without a deadline (connect left one set); Run
	// sets one in the past when the run ends, after ctx is done.
	if err := c.conn.SetReadDeadline(time.Time{}); ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
		return nil
	} else if err != nil {
		return fmt.Errorf("clear read deadline: %w", err)
	}
	var s paced
	s.oldest = (c.txid + 1) & idMask
	s.cid.Store(c.cid)
	s.connectedAt.Store(int64(c.connected.Sub(c.win.epoch)))
	done := make(chan error, 1)
	go func() {
		err := c.readPaced(ctx, &s)
		if s.quit.CompareAndSwap(false, true) {
			p.stop()
		}
		done <- err
	}()
	err := c.sendPaced(ctx, p, &s)
	if s.quit.CompareAndSwap(false, true) {
		_ = c.conn.SetReadDeadline(time.Unix(1, 0))
	}
	if rerr := <-done; err == nil {
		err = rerr
	}
	return err
}

// sendPaced is a paced socket's sender.
func (c *client) sendPaced(ctx context.Context, p pacer, s *paced) error {
	timeout := int64(c.cfg.Timeout)
	var connectSent int64 = math.MinInt64
	var connect [16]byte
	binary.BigEndian.PutUint64(connect[0:], protocolID)
	for {
		ticks, err := p.wait()
		if err != nil {
			if errors.Is(err, errPacerStopped) || ctx.Err() != nil {
				return nil
			}
			return err
		}
		for ; ticks > 0; ticks-- {
			now := c.win.now()
			if now-s.connectedAt.Load() > int64(reconnectEvery) && now-connectSent > int64(time.Second) {
				c.txid++
				binary.BigEndian.PutUint32(connect[12:], c.txid|1<<31)
				s.connectTx.Store(c.txid | 1<<31)
				connectSent = now
				if _, err := c.conn.Write(connect[:]); err != nil {
					return c.sendErr(ctx, err)
				}
			}
			m := &c.tx[0]
			s.mu.Lock()
			// Give up on requests older than the timeout, oldest first.
			last := c.txid & idMask
			for s.oldest != (last+1)&idMask {
				slot := &c.ring.slots[s.oldest&c.ring.mask]
				if slot.live && slot.tx == s.oldest {
					if now-slot.at <= timeout {
						break
					}
					slot.live = false
					c.st.lost.Add(1)
					s.inflight--
				}
				s.oldest = (s.oldest + 1) & idMask
			}
			if c.cfg.Walk && c.walked >= c.mine() && s.inflight == 0 {
				s.mu.Unlock()
				return nil
			}
			// Sends are skipped at the window, and while the ids in flight
			// would wrap the ring.
			if span := (last + 1 - s.oldest) & idMask; s.inflight >= c.cfg.Window || int(span) >= len(c.ring.slots) {
				s.mu.Unlock()
				c.st.skipped.Add(1)
				continue
			}
			if !c.take() {
				s.mu.Unlock()
				continue
			}
			c.cid = s.cid.Load()
			c.fill(m)
			s.inflight += 1 - c.track(txOf(m.Buf[12:]), c.win.now())
			s.mu.Unlock()
			if _, err := c.conn.Write(m.Buf[:m.N]); err != nil {
				return c.sendErr(ctx, err)
			}
			c.st.sent.Add(1)
		}
	}
}

func (c *client) sendErr(ctx context.Context, err error) error {
	if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return fmt.Errorf("send: %w", err)
}

// readPaced is a paced socket's reader: one read per answer.
func (c *client) readPaced(ctx context.Context, s *paced) error {
	timeout := int64(c.cfg.Timeout)
	buf := c.rx[0].Buf
	for {
		n, err := c.conn.Read(buf)
		if err != nil {
			if late, err := c.readErr(ctx, err); !late || s.quit.Load() {
				return err
			}
			continue
		}
		now := c.win.now()
		b := buf[:n]
		if n >= 16 && binary.BigEndian.Uint32(b) == actionConnect {
			if txOf(b[4:]) == s.connectTx.Load() {
				s.cid.Store(binary.BigEndian.Uint64(b[8:]))
				s.connectedAt.Store(now)
				c.st.connects.Add(1)
			}
			continue
		}
		var at int64
		ok := false
		if n >= 8 {
			s.mu.Lock()
			if at, ok = c.ring.answered(txOf(b[4:])); ok {
				s.inflight--
			}
			s.mu.Unlock()
		}
		switch {
		case !ok:
		case now-at > timeout:
			c.st.lost.Add(1) // answered, but too late
		case at >= c.win.from.Load() && now <= c.win.to.Load():
			c.win.timed(&c.hist, at, now)
		}
		c.countOne(b)
	}
}
