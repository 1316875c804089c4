package udpload

import (
	"errors"
	"math/rand/v2"
	"sync"
	"time"
)

// A pacer ticks on a schedule of send times (see arrivals). wait blocks
// until the next tick is due and returns how many ticks came due since the
// last wait (more than 1 when the caller was late: the schedule does not
// drift). stop makes wait return errPacerStopped, now and from then on.
type pacer interface {
	wait() (ticks uint64, err error)
	stop()
	close()
}

var errPacerStopped = errors.New("pacer stopped")

// arrivals is a schedule of send times, in nanoseconds since the window's
// epoch, starting at first: evenly spaced, every apart, or, with rng set, a
// Poisson process of the same rate (gaps drawn from an exponential
// distribution of mean every), as independent clients' requests arrive
// (Config.Poisson).
type arrivals struct {
	next  int64 // the next tick not yet returned
	every int64
	rng   *rand.Rand // nil: evenly spaced
}

func newArrivals(first, every int64, rng *rand.Rand) *arrivals {
	return &arrivals{next: first, every: max(every, 1), rng: rng}
}

// due counts the ticks due at now and moves next past them.
func (a *arrivals) due(now int64) uint64 {
	if now < a.next {
		return 0
	}
	if a.rng == nil {
		n := (now-a.next)/a.every + 1
		a.next += n * a.every
		return uint64(n)
	}
	var n uint64
	for a.next <= now {
		n++
		a.next += max(int64(a.rng.ExpFloat64()*float64(a.every)), 1)
	}
	return n
}

// timerPacer paces with Go timers. Go's network poller sleeps in
// milliseconds, so a tick can come up to about a millisecond late; the
// timerfd pacer (Linux) is exact to the kernel's timer. It is the fallback
// where there is no timerfd.
type timerPacer struct {
	win   *window
	a     *arrivals
	timer *time.Timer
	stopc chan struct{}
	once  sync.Once
}

func newTimerPacer(win *window, a *arrivals) *timerPacer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &timerPacer{win: win, a: a, timer: t, stopc: make(chan struct{})}
}

func (p *timerPacer) wait() (uint64, error) {
	for {
		select {
		case <-p.stopc:
			return 0, errPacerStopped
		default:
		}
		now := p.win.now()
		if n := p.a.due(now); n > 0 {
			return n, nil
		}
		p.timer.Reset(time.Duration(p.a.next - now))
		select {
		case <-p.stopc:
			p.timer.Stop()
			return 0, errPacerStopped
		case <-p.timer.C:
		}
	}
}

func (p *timerPacer) stop()  { p.once.Do(func() { close(p.stopc) }) }
func (p *timerPacer) close() { p.timer.Stop() }
