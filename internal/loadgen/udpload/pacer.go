package udpload

import (
	"errors"
	"sync"
	"time"
)

// A pacer ticks on a fixed schedule: at first, first+every, first+2*every,
// ... (nanoseconds since the window's epoch). wait blocks until the next
// tick is due and returns how many ticks came due since the last wait (more
// than 1 when the caller was late: the schedule does not drift). stop makes
// wait return errPacerStopped, now and from then on.
type pacer interface {
	wait() (ticks uint64, err error)
	stop()
	close()
}

var errPacerStopped = errors.New("pacer stopped")

// timerPacer paces with Go timers. Go's network poller sleeps in
// milliseconds, so a tick can come up to about a millisecond late; the
// timerfd pacer (Linux) is exact to the kernel's timer. It is the fallback
// where there is no timerfd.
type timerPacer struct {
	win          *window
	first, every int64
	k            uint64 // ticks returned so far
	timer        *time.Timer
	stopc        chan struct{}
	once         sync.Once
}

func newTimerPacer(win *window, first, every int64) *timerPacer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &timerPacer{win: win, first: first, every: every, timer: t, stopc: make(chan struct{})}
}

func (p *timerPacer) wait() (uint64, error) {
	for {
		select {
		case <-p.stopc:
			return 0, errPacerStopped
		default:
		}
		now := p.win.now()
		if due := p.due(now); due > p.k {
			n := due - p.k
			p.k = due
			return n, nil
		}
		p.timer.Reset(time.Duration(p.first + int64(p.k)*p.every - now))
		select {
		case <-p.stopc:
			p.timer.Stop()
			return 0, errPacerStopped
		case <-p.timer.C:
		}
	}
}

// due is how many ticks are due at now.
func (p *timerPacer) due(now int64) uint64 {
	if now < p.first {
		return 0
	}
	return uint64((now-p.first)/p.every) + 1
}

func (p *timerPacer) stop()  { p.once.Do(func() { close(p.stopc) }) }
func (p *timerPacer) close() { p.timer.Stop() }
